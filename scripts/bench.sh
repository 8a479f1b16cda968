#!/usr/bin/env bash
# `make bench`: boot the bench kernel (KERNEL_VARIANT=bench: the test kernel without lockdep,
# atomic-sleep and mutex checks, kmemleak and KASAN; scripts/kernel.sh) in QEMU and measure what
# vb2_resv adds to the ioctls it wraps on the decode loops of vivid, vim2m and visl, with the
# module absent and in each mode (scripts/guest/bench.sh). Prints one Markdown table with the
# machine, the kernel and the ratios to the module absent, kept in build/bench/bench.log (the
# guest's own output in build/bench/guest.log, the raw samples in build/bench/bench.jsonl).
# KERNEL_VARIANT=test measures the suite's (lockdep + kmemleak) kernel instead.
# Under TCG every figure is many times what the hardware shows: compare rows, not the numbers
# with a board's.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
export KERNEL_VARIANT=${KERNEL_VARIANT:-bench}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
run_guest_job bench 1500
out=$BUILD/bench
[ -s "$out/table.md" ] || die "the bench did not finish: see $out/bench.log"
mv "$out/bench.log" "$out/guest.log"
{
	echo "# make bench: $(date -u +'%Y-%m-%d %H:%M UTC')"
	echo
	echo "- host: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cores;" \
		"load average $load_before before the run, $(cut -d' ' -f1-3 /proc/loadavg) after"
	echo "- QEMU TCG (no KVM), -cpu max, -smp 2; $(sed 's/$/;/' "$out/machine.txt" | tr '\n' ' ')"
	echo "- kernel: $(cat "$KDIR/include/config/kernel.release"), variant $KERNEL_VARIANT ($(basename "$KDIR"))"
	[ -s "$out/skipped.txt" ] && echo "- $(cat "$out/skipped.txt")"
	echo "- times in microseconds; (Nx): the p50 (or frames/s) over the same node's with the module absent"
	echo
	cat "$out/table.md"
} >"$out/bench.log"
cat "$out/bench.log"
