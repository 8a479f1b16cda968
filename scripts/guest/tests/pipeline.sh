# The verifier's pipeline arms (issue 13): what a consumer waits for (`--consumer-wait`,
# userspace/src/consumer_wait.rs), the mpv + KWin pipeline with its GPU read in flight and early
# release (`--pipeline mpv-kwin`, userspace/src/pipeline/), and the PineTab2 geometry.
# shellcheck shell=bash

# The binary, the stream, egl_need and egl_visl are egl.sh's.
PIPE_VB2R=$EGL_VB2R
PIPE_STREAM=$EGL_STREAM
# Made by `make test` (scripts/make-streams.sh --big): 1920x1080, coded 1920x1088, B-frames.
PIPE_BIG="$VB2R_REPO/build/streams/high-1920x1080.h264"
TEST_TIMEOUT[verifier.consumer-wait]=900
TEST_TIMEOUT[verifier.pipeline.reverse-hazard]=600
TEST_TIMEOUT[verifier.geometry.pinetab2]=900
TEST_TIMEOUT[verifier.demo]=600

# pipe_arm JSON ARM: "mode/sample_at/consumer_wait[/wait_readers]" of arm ARM.
pipe_arm() {
	jq -r ".[$2] | \"\(.mode)/\(.sample_at)/\(.consumer_wait)\" + (if .wait_readers == null then \"\" else \"/wr=\(.wait_readers)\" end)" "$1"
}

# pipe_classes JSON ARM CLASSES...: frames of arm ARM whose class is one of CLASSES.
pipe_classes() {
	local j=$1 i=$2
	shift 2
	jq --argjson c "$(printf '%s\n' "$@" | jq -R . | jq -s .)" \
		"[.[$i].frames[].paths[0].class | select(. as \$k | \$c | index(\$k))] | length" "$j"
}

pipe_frames() { jq ".[$2].frames | length" "$1"; }

# Every frame of arm ARM is correct, asserted frame by frame (the failing ones are named).
pipe_all_correct() {
	local bad
	bad=$(jq -r ".[$2].frames[] | select(.paths[0].class != \"correct\") | \"frame \(.frame) (buffer \(.buffer)): \(.paths[0].class)\"" "$1")
	[ -z "$bad" ] || fail "arm $(pipe_arm "$1" "$2"): not every frame correct: $(echo "$bad" | tr '\n' ';')"
	[ "$(pipe_frames "$1" "$2")" -gt 0 ] || fail "arm $(pipe_arm "$1" "$2"): no frames"
}

t_verifier_consumer_wait() {
	egl_need
	local dev j=/tmp/cw-queued.json k=/tmp/cw-committed.json i n arm racy busy held
	# visl draws the picture when its job starts and then waits out 500 ms: a read that begins
	# before the job starts sees the sentinel, one after it the finished picture.
	dev=$(egl_visl visl_transtime_ms=500)
	# The watchdog later than the longest hold below: a QBUF-time fence whose job does not come
	# is ended by it (-ETIMEDOUT, upstream's objection to such fences), which this run is not
	# about.
	insmod_vb2r attach=visl mode=strict fence_timeout_ms=8000 || fail "insmod vb2_resv"
	# 1. Right after the request is handed over, while its job waits for the hardware (the
	#    queue thread queues it once the sample is done, or after 1 s: a busy decoder; visl
	#    alone never makes a job wait). No fence (off): every consumer reads the sentinel. The
	#    RFC v1 fence (mode queue, armed at QBUF) holds a consumer that waits for it (poll as
	#    KWin, sync-file), not one that does not (none: llvmpipe does no implicit sync). Mode
	#    strict arms at the job's commit, by upstream's rule: before it there is nothing to wait
	#    for, and the report shows no fence at any of those reads.
	"$PIPE_VB2R" verify "$PIPE_STREAM" --device "$dev" --frames 6 --no-rgb --async-queue \
		--queue-after-sample 4000 --implicit-sync-hold-ms 0 --modes off,queue,strict --sample-at queued \
		--consumer-wait none,poll,sync-file --json $j >/tmp/cw1.log || fail "verify (queued) failed: $(tail -3 /tmp/cw1.log)"
	grep '^verdict' /tmp/cw1.log
	for i in 0 1 2 3 4 5 6 7 8; do
		arm=$(pipe_arm $j $i)
		racy=$(pipe_classes $j $i sentinel torn)
		case $arm in
		off/* | queue/queued/none | strict/*)
			[ "$racy" = 6 ] || fail "arm $arm: $racy of 6 frames raced visl (the read came first every time: all must)"
			[ "$(jq -r ".[$i].verdict.verdict" $j)" = forward ] || fail "arm $arm: verdict is not 'forward'"
			;;
		queue/*)
			pipe_all_correct $j $i
			busy=$(jq ".[$i].busy.busy" $j)
			held=$(jq ".[$i].busy.busy_held" $j)
			[ "$busy" -gt 0 ] && [ "$held" = "$busy" ] ||
				fail "arm $arm: $held of $busy samples taken while visl owned the buffer were held until it was done"
			[ "$(jq -r ".[$i].verdict.verdict" $j)" = none ] || fail "arm $arm: verdict is not 'none'"
			;;
		esac
		case $arm in
		strict/*)
			[ "$(jq "[.[$i].frames[] | select(.sample.fence_pending)] | length" $j)" = 0 ] ||
				fail "arm $arm: a fence before the job was committed (strict must not arm one)"
			;;
		esac
		echo "arm $arm: $racy of 6 raced"
	done
	# 2. Right after the driver took the request (the job is committed): the fence of mode
	#    strict, armed at commit, holds every consumer that waits (poll, sync-file, and the
	#    module's explicit sync_file): every read that began while visl owned the buffer waited
	#    until the job ended.
	"$PIPE_VB2R" verify "$PIPE_STREAM" --device "$dev" --frames 8 --no-rgb --async-queue \
		--implicit-sync-hold-ms 0 --modes strict --sample-at committed \
		--consumer-wait poll,sync-file,explicit --json $k >/tmp/cw2.log || fail "verify (committed) failed: $(tail -3 /tmp/cw2.log)"
	grep '^verdict' /tmp/cw2.log
	for i in 0 1 2; do
		arm=$(pipe_arm $k $i)
		pipe_all_correct $k $i
		busy=$(jq ".[$i].busy.busy" $k)
		held=$(jq ".[$i].busy.busy_held" $k)
		[ "$busy" -gt 0 ] && [ "$held" = "$busy" ] ||
			fail "arm $arm: $held of $busy samples taken while visl owned the buffer were held until it was done"
		n=$(jq "[.[$i].frames[] | select(.sample.busy_before) | .sample.wait | select(.busy and .waited_us >= 100000)] | length" $k)
		[ "$n" = "$busy" ] || fail "arm $arm: only $n of $busy busy samples waited on a pending fence (>= 100 ms)"
		[ "$(jq -r ".[$i].consumer_wait" $k)" = "$(echo "$arm" | cut -d/ -f3)" ] || fail "the report does not name the policy"
		echo "arm $arm: all 8 correct, $busy busy at read, all held"
	done
	# The table names the policy of every arm.
	"$PIPE_VB2R" verify "$PIPE_STREAM" --device "$dev" --frames 2 --no-rgb --async-queue \
		--implicit-sync-hold-ms 0 --modes strict --sample-at committed --consumer-wait explicit \
		--evidence /tmp/cw-ev >/dev/null || fail "verify --evidence failed"
	grep -q '| direct | strict | - | committed | explicit |' /tmp/cw-ev/table.md || fail "table.md does not name the consumer wait"
	rmmod vb2_resv
	rmmod visl
}

t_verifier_pipeline_reverse_hazard() {
	egl_need
	local dev j=/tmp/rev.json waited
	# A 10 ms job: the decoder is done with the next picture long before the compositor's
	# 200 ms GPU read of the buffer it released ends.
	dev=$(egl_visl visl_transtime_ms=10)
	load_drivers vgem || fail "modprobe vgem"
	insmod_vb2r attach=visl mode=strict || fail "insmod vb2_resv"
	"$PIPE_VB2R" verify "$PIPE_STREAM" --device "$dev" --frames 12 --no-rgb \
		--implicit-sync-hold-ms 0 --modes strict --pipeline mpv-kwin --consumer-wait poll \
		--wait-readers off,on --gpu-read-ms 200 --json $j >/tmp/rev.log || fail "verify (mpv-kwin) failed: $(tail -3 /tmp/rev.log)"
	grep -E '^(verdict|arm .*mpv\+KWin)' /tmp/rev.log
	[ "$(jq -r '.[0].pipeline' $j)/$(jq -r '.[0].wait_readers' $j)" = mpv-kwin/false ] || fail "arm 0 is not mpv-kwin with wait_readers off"
	[ "$(jq -r '.[1].wait_readers' $j)" = true ] || fail "arm 1 is not wait_readers on"
	# ffmpeg's pool really is LIFO and buffers go back only after their release.
	[ "$(jq '.[0].pipeline_stats.pool.recaptured' $j)" -gt 0 ] || fail "no buffer was decoded into again after its release"
	[ "$(jq '[.[].pipeline_stats.pool.lifo_violations, .[].pipeline_stats.pool.requeued_while_held] | add' $j)" = 0 ] ||
		fail "the pool broke LIFO order or requeued a buffer the compositor held"
	[ "$(jq '.[0].pipeline_stats.released_in_flight' $j)" -gt 0 ] || fail "no buffer was released while its GPU read was in flight"
	# wait_readers off: the decoder overwrote buffers the GPU was still reading.
	[ "$(pipe_classes $j 0 later torn)" -gt 0 ] || fail "wait_readers off: no 'later' or 'torn' frame"
	[ "$(jq '.[0].pipeline_stats.reverse' $j)" -gt 0 ] || fail "wait_readers off: no reverse-hazard frame counted"
	[ "$(jq -r '.[0].verdict.verdict' $j)" = reverse ] || fail "wait_readers off: verdict $(jq -r '.[0].verdict.verdict' $j), not 'reverse'"
	# wait_readers on: the decoder waited for the GPU's fence: every frame correct.
	pipe_all_correct $j 1
	[ "$(jq -r '.[1].verdict.verdict' $j)" = none ] || fail "wait_readers on: verdict is not 'none'"
	waited=$(vb2r_counter "readers waited for")
	[ "${waited:-0}" -gt 0 ] || fail "debugfs counts no wait for readers"
	echo "wait_readers off: $(pipe_classes $j 0 later torn) of 12 frames later/torn; on: all correct, $waited waits"
	rmmod vb2_resv
	rmmod visl
	rmmod vgem
}

t_verifier_geometry_pinetab2() {
	egl_need
	local dev j=/tmp/geo.json s=/tmp/geo-syn.json u=/tmp/geo-uv.json png
	[ -f "$PIPE_BIG" ] || fail "no $PIPE_BIG (make test generates it: scripts/make-streams.sh --big)"
	# The synthetic decoder with hantro's CAPTURE layout: NV12 1920x1088 coded, 1080 visible,
	# stride 1920, chroma at 2088960, sizeimage 3655712 (motion vectors after the chroma).
	"$PIPE_VB2R" verify --synthetic 3 --size 1920x1080 --sizeimage 3655712 --json $s --strict \
		--implicit-sync-hold-ms 0 >/tmp/geo1.log || fail "synthetic 1920x1080 (hantro sizeimage): not byte for byte: $(tail -3 /tmp/geo1.log)"
	[ "$(jq -c '.[0].layout | [.width, .height, .visible_height, .stride, .uv_offset, .size]' $s)" = "[1920,1088,1080,1920,2088960,3655712]" ] ||
		fail "synthetic layout is $(jq -c .[0].layout $s), not hantro's"
	pipe_all_correct $s 0
	# The same with the chroma plane imported one row early: mismatch, a layout verdict.
	"$PIPE_VB2R" verify --synthetic 2 --size 1920x1080 --sizeimage 3655712 --fault uv-offset \
		--json $u --implicit-sync-hold-ms 0 >/dev/null || fail "synthetic uv-offset run failed"
	[ "$(pipe_classes $u 0 mismatch)" = 2 ] || fail "a wrong chroma offset is not 'mismatch'"
	[ "$(jq -r '.[0].verdict.verdict' $u)" = layout ] || fail "a wrong chroma offset is not a 'layout' verdict"
	# visl at 1920x1088 (its own sizeimage), three frames sampled after DQBUF: byte for byte.
	dev=$(egl_visl)
	rm -rf /tmp/geo-ev
	"$PIPE_VB2R" verify "$PIPE_BIG" --device "$dev" --frames 3 --no-rgb --json $j --strict \
		--implicit-sync-hold-ms 0 --evidence /tmp/geo-ev >/tmp/geo2.log || fail "visl 1920x1080: not byte for byte: $(tail -3 /tmp/geo2.log)"
	# The triptych: CPU view | GPU view | difference at the visible 1920x1080 (PNG IHDR).
	png=$(ls /tmp/geo-ev/frame-*.png | head -1)
	[ -n "$png" ] || fail "no triptych written"
	[ "$(od -An -tu1 -j16 -N8 "$png" | tr -s ' ' | sed 's/^ //')" = "0 0 22 128 0 0 4 56" ] ||
		fail "the triptych $png is not 5760x1080: $(od -An -tu1 -j16 -N8 "$png")"
	[ "$(jq -c '.[0].layout | [.width, .height, .visible_height, .stride, .uv_offset]' $j)" = "[1920,1088,1080,1920,2088960]" ] ||
		fail "visl layout is $(jq -c .[0].layout $j)"
	pipe_all_correct $j 0
	echo "synthetic (hantro sizeimage) and visl at 1920x1088: every frame byte for byte; uv offset one row early: mismatch"
	rmmod visl
}

t_verifier_demo() {
	egl_need
	local st=/tmp/demo-test/evidence/stories.md n
	cleanup_modules
	# `make demo`'s guest half, as it runs there (scripts/guest/demo.sh), into a scratch dir.
	VB2R_DEMO_OUT=/tmp/demo-test "$VB2R_REPO/scripts/guest/demo.sh" >/tmp/demo-test.log 2>&1 ||
		fail "the demo failed: $(tail -5 /tmp/demo-test.log)"
	[ -f "$st" ] || fail "the demo wrote no stories.md"
	cat "$st"
	grep -q '^| story |' /tmp/demo-test/evidence/table.md || fail "table.md does not start with the stories"
	# The four stories in order, each with its expected verdict.
	n=$(grep -c '^| [1-4] |' "$st")
	[ "$n" = 5 ] || fail "$n story rows, want 5 (stories 1, 2 twice, 3, 4)"
	[ "$(grep '^| [1-4] |' "$st" | cut -d'|' -f2 | tr -d ' ' | tr -d '\n')" = 12234 ] || fail "the stories are not in order 1, 2, 2, 3, 4"
	grep '^| [1-4] |' "$st" | grep -v '| yes |$' && fail "a story without its expected verdict"
	grep -q '^| 1 | .* | forward | forward |' "$st" || fail "story 1 is not a forward race"
	grep -q '^| 3 | .* | reverse | reverse |' "$st" || fail "story 3 is not the reverse hazard"
	return 0
}
