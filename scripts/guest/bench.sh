#!/bin/bash
# The benchmark job in the guest (scripts/bench.sh boots it): what vb2_resv adds to the ioctls it
# wraps on a decode loop, on vivid (capture), vim2m (m2m) and visl (stateless H.264 through the
# request API), with the module absent and attached in each mode, all in this one boot.
#
# Configurations: absent, off, strict (only when this vb2_resv.ko knows it), queue; a fresh
# insmod per configuration (mode=M attach=vivid,vim2m,visl). The configurations are interleaved
# over VB2R_BENCH_ROUNDS rounds (absent, off, strict, queue, absent, ...) so that a slow spell
# of the machine lands on all of them; `vb2r-qtest bench table` pools the rounds.
#
# Per node:
#  - vivid: `vb2r-qtest bench run` (CAPTURE DQBUF, CAPTURE QBUF);
#  - vim2m: the same with its OUTPUT queue (in modes strict and queue also with 4 exports per
#    buffer, what each extra dma-buf costs); OUTPUT DQBUF and QBUF go through the module's
#    wrappers too. default_transtime=1: 0 is refused (the driver's transaction-time control
#    has min 1, so an open with default 0 fails), and 1 ms is one jiffy (4 ms at HZ=250) per
#    job: the loop is paced by the timer, not by the CPU;
#  - visl: `vb2-resv decode` of the bundled 320x240 stream with visl_transtime_ms=0 (visl runs
#    the job inside MEDIA_REQUEST_IOC_QUEUE: CPU-bound), its per-frame capture_qbuf_ns,
#    request_queue_ns, capture_dqbuf_ns turned into records by `vb2r-qtest bench decode-record`.
# Records: /tmp/out/bench.jsonl (build/bench/ on the host); the table: /tmp/out/table.md.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
set -eo pipefail
VB2R="$VB2R_REPO/target/release/vb2-resv"
STREAM="$VB2R_REPO/userspace/tests/streams/baseline-320x240.h264"
ROUNDS=${VB2R_BENCH_ROUNDS:-3}
FRAMES_VIVID=${VB2R_BENCH_FRAMES_VIVID:-40}
FRAMES_VIM2M=${VB2R_BENCH_FRAMES:-250}
# Decodes of the 60-frame stream per configuration and round.
DECODES=${VB2R_BENCH_DECODES:-3}
REC=/tmp/out/bench.jsonl
rm -f "$REC"

clock=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource)
{
	echo "guest CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(nproc) cpus online"
	echo "guest clocksource: $clock ($(grep -o 'tsc_early_khz=[0-9]*' /proc/cmdline || echo 'TSC self-calibrated'))"
} | tee /tmp/out/machine.txt
# On jiffies every ioctl reads 0 or one tick (4000 us): no figure would mean anything.
case "$clock" in
jiffies | refined-jiffies)
	echo "the guest's clocksource is $clock: ioctl times would be 0 or a whole tick; not measuring"
	exit 1
	;;
esac

modprobe videobuf2_common
modprobe vivid
modprobe vim2m default_transtime=1
modprobe visl visl_transtime_ms=0

# Does this module know mode strict? insmod refuses an unknown mode= value.
MODES="off strict queue"
if insmod "$KO" mode=strict 2>/dev/null; then
	rmmod vb2_resv
else
	echo "strict: skipped: this vb2_resv.ko refuses mode=strict (modinfo: $(modinfo -F parm "$KO" 2>/dev/null | sed -n 's/^mode://p'))" |
		tee /tmp/out/skipped.txt
	MODES="off queue"
fi

# measure LABEL ROUND: one run per node in the current configuration.
measure() {
	local label=$1 round=$2 k files=()
	"$QTEST" bench run --dev vivid --frames "$FRAMES_VIVID" --label "$label" --record "$REC" | grep -v '^device:'
	"$QTEST" bench run --dev vim2m --frames "$FRAMES_VIM2M" --label "$label" --record "$REC" | grep -v '^device:'
	# Arming cost per export (each export of a buffer is its own dma-buf with its own resv).
	case "$label" in strict | queue)
		"$QTEST" bench run --dev vim2m --frames "$FRAMES_VIM2M" --exports 4 --label "$label" --record "$REC" | grep -v '^device:' ;;
	esac
	for k in $(seq "$DECODES"); do
		files+=("/tmp/visl-$label-$round-$k.json")
		"$VB2R" decode "$STREAM" -q --json "${files[-1]}" >/dev/null
	done
	"$QTEST" bench decode-record --label "$label" --record "$REC" "${files[@]}"
	rm -f "${files[@]}"
}

# A first pass, thrown away: the first decode of a boot runs cold (page cache, first faults) and
# would otherwise land on `absent`, which runs first in every round.
echo "--- warm-up (not recorded)"
REC_KEEP=$REC
REC=/dev/null
measure warmup 0 >/dev/null
REC=$REC_KEEP

for round in $(seq "$ROUNDS"); do
	echo "--- round $round of $ROUNDS"
	measure absent "$round"
	# The floor: the absent loop plus the kernel's own one-fence attach (qtest bench: FLOOR_LABEL).
	"$QTEST" bench run --dev vivid --frames "$FRAMES_VIVID" --label floor --record "$REC" | grep -v '^device:'
	"$QTEST" bench run --dev vim2m --frames "$FRAMES_VIM2M" --label floor --record "$REC" | grep -v '^device:'
	for m in $MODES; do
		insmod "$KO" mode="$m" attach=vivid,vim2m,visl
		got=$(cat /sys/module/vb2_resv/parameters/mode)
		[ "$got" = "$m" ] || { echo "vb2_resv loaded in mode '$got', not '$m'"; exit 1; }
		measure "$m" "$round"
		rmmod vb2_resv
	done
done

echo
"$QTEST" bench table --record "$REC" | tee /tmp/out/table.md
