#!/usr/bin/env bash
# `make bench`: boot our kernel in QEMU and measure what vb2_resv adds to the CAPTURE QBUF path
# (scripts/guest/bench.sh), printed as a Markdown table and kept in build/bench/bench.log.
# Under TCG every figure is many times what the hardware shows; compare the rows, not the
# numbers with a board's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
run_guest_job bench 900
out=$BUILD/bench
grep -q '^| .*(vim2m) | queue | 4 |' "$out/bench.log" || die "the bench did not finish: see $out/bench.log"
cat "$out/bench.log"
echo
echo "kernel $(cat "$KDIR/include/config/kernel.release"), TCG; kept in $out/bench.log"
