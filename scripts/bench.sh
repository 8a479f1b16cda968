#!/usr/bin/env bash
# `make bench`: boot our kernel in QEMU and measure what vb2_resv adds to the CAPTURE QBUF path
# (scripts/guest/bench.sh), printed as a Markdown table and kept in build/bench/bench.log.
# Under TCG every figure is many times what the hardware shows; compare the rows, not the
# numbers with a board's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
KERNEL=${KERNEL:-7.3}
"$here/kernel.sh" "$KERNEL" >/dev/null
KDIR=$("$here/kernel.sh" --print-dir "$KERNEL")
KMAKE=(ARCH=x86_64)
[ -f "$KDIR/.make-args" ] && read -r -a KMAKE <"$KDIR/.make-args"
make -s -C "$KDIR" M="$REPO" "${KMAKE[@]}" modules >/dev/null
cargo build --release --workspace -q
out=$BUILD/bench
rm -rf "$out"
"$here/qemu.sh" --kdir "$KDIR" --out "$out" --ko "$REPO/vb2_resv.ko" --job bench --timeout 900 ||
	die "the bench guest failed (see $out/console.log)"
grep -q '^| .*(vim2m) | queue | 4 |' "$out/bench.log" || die "the bench did not finish: see $out/bench.log"
cat "$out/bench.log"
echo
echo "kernel $(cat "$KDIR/include/config/kernel.release"), TCG; kept in $out/bench.log"
