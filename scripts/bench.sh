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
# The guest's clock. Our tinyconfig kernel has neither HPET nor ACPI PM timer to calibrate the TSC
# against, and under TCG on a loaded machine its PIT calibration fails ("tsc: Unable to calibrate
# against PIT"): the guest then runs on jiffies and every ioctl reads 0 or 4000 us. TCG's RDTSC
# counts at the host's TSC rate, so hand the guest that rate (tsc_early_khz) and keep the TSC
# (tsc=reliable: there is no better clocksource to check it against).
host_tsc_khz() {
	local mhz
	mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9.]*\) MHz.*/\1/p' | tail -1)
	[ -n "$mhz" ] || mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9.]*\) MHz processor.*/\1/p' | tail -1)
	# Without the kernel log: /proc/cpuinfo's MHz is the TSC's only when the TSC is invariant.
	[ -n "$mhz" ] || { grep -qw constant_tsc /proc/cpuinfo && mhz=$(sed -n 's/^cpu MHz[[:space:]]*: //p' /proc/cpuinfo | head -1); }
	[ -n "$mhz" ] && awk -v m="$mhz" 'BEGIN { printf "%d", m * 1000 }'
}
tsc_khz=$(host_tsc_khz || true)
if [ -n "$tsc_khz" ]; then
	GUEST_APPEND="tsc_early_khz=$tsc_khz tsc=reliable ${GUEST_APPEND:-}"
else
	log "the host's TSC rate is unknown: the guest calibrates its own (and may end up on jiffies)"
fi
export GUEST_APPEND
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
