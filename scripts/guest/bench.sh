#!/bin/bash
# The benchmark job in the guest (scripts/bench.sh boots it): what vb2_resv costs on the QBUF
# path, per configuration: module absent, then attached in modes off, dqbuf and queue, on vivid
# (capture) and vim2m (m2m, 1 ms jobs), and in mode queue with four exports per buffer.
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
set -e
# vivid draws its test pattern on the CPU: about 5 frames/s under TCG, so fewer frames there.
declare -A FRAMES=([vivid]=${VB2R_BENCH_FRAMES_VIVID:-60} [vim2m]=${VB2R_BENCH_FRAMES:-300})
row() { "$QTEST" "$@" | grep '^|'; }
modprobe videobuf2_common
modprobe vivid
modprobe vim2m default_transtime=1
echo "| node | vb2_resv | exports per buffer | QBUFs timed | QBUF mean (us) | p50 (us) | p99 (us) | frames/s |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
for d in vivid vim2m; do row bench --dev $d --frames "${FRAMES[$d]}" --label absent; done
# A fresh module per mode: each row attaches to its node through /dev/vb2_resv.
for m in off dqbuf queue; do
	insmod "$KO"
	for d in vivid vim2m; do row --attach --mode $m bench --dev $d --frames "${FRAMES[$d]}" --label "$m"; done
	rmmod vb2_resv
done
insmod "$KO"
row --attach --mode queue bench --dev vim2m --frames "${FRAMES[vim2m]}" --exports 4 --label queue
rmmod vb2_resv
