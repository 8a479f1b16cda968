#!/bin/bash
# The demo job in the guest (scripts/demo.sh boots it and shows demo.log).
#  1. vivid: a queued CAPTURE buffer's exported dma-buf without vb2_resv (no fence: the gap) and
#     with it in its default mode, strict (no fence while no job is committed, a pending WRITE
#     fence once vivid streams, none after DQBUF).
#  2. visl: the verifier's view of the machine (probe), then the bundled H.264 stream decoded
#     through the request API and sampled through EGL (Mesa llvmpipe, KWin's R8 + GR88 import)
#     under each module mode and both sampling points; the evidence (table.md, JSON, PNG
#     triptychs) goes to /tmp/out/evidence, which is build/demo/evidence on the host.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
set -e
say() { printf '\n=== %s\n' "$*"; }
VB2R="$VB2R_REPO/target/release/vb2-resv"
STREAM="$VB2R_REPO/userspace/tests/streams/baseline-320x240.h264"
# visl's transaction time: long enough that a GPU sampling right after queueing can beat it.
TRANSTIME_MS=${VB2R_DEMO_TRANSTIME_MS:-200}
FRAMES=${VB2R_DEMO_FRAMES:-20}

modprobe videobuf2_common
modprobe vivid
say "without vb2_resv: a queued vivid CAPTURE buffer's exported dma-buf"
"$QTEST" absent
say "insmod vb2_resv.ko attach=vivid (the default mode, strict)"
insmod "$KO" attach=vivid
dmesg | grep 'vb2_resv:' | tail -n 3
say "with vb2_resv: no fence while the buffers wait for STREAMON (no job is committed), a pending WRITE fence once vivid streams, and none after DQBUF"
"$QTEST" strict-capture
say "debugfs: /sys/kernel/debug/vb2_resv/"
for f in /sys/kernel/debug/vb2_resv/*; do
	echo "--- $f"
	cat "$f"
done
rmmod vb2_resv
rmmod vivid

say "modprobe visl visl_transtime_ms=$TRANSTIME_MS; insmod vb2_resv.ko attach=visl"
modprobe visl visl_transtime_ms="$TRANSTIME_MS"
insmod "$KO" attach=visl
say "vb2-resv probe"
"$VB2R" probe

say "vb2-resv verify $(basename "$STREAM"): $FRAMES frames x modes off,dqbuf,queue,strict x GPU sampling at dqbuf and queued"
echo "(llvmpipe stands in for panfrost: it does no kernel implicit sync, so sampling at 'queued' races"
echo " visl in every mode; on the PineTab2, panfrost waits on the vb2_resv fence in mode 'queue')"
rm -rf /tmp/out/evidence
# verify exits 0 unless it could not run; the classes are the result, not an error.
"$VB2R" verify "$STREAM" --frames "$FRAMES" --import kwin --no-rgb --async-queue \
	--modes off,dqbuf,queue,strict --sample-at dqbuf,queued --evidence /tmp/out/evidence
say "vb2_resv debugfs after the runs"
for f in /sys/kernel/debug/vb2_resv/video*; do
	echo "--- $f"
	grep -v '^buffer' "$f" || true
done
rmmod vb2_resv
rmmod visl
