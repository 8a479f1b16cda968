# The verifier's GPU half: `vb2-resv verify` (userspace/src/gpu/, {classify,verify,evidence}.rs)
# samples every CAPTURE dma-buf through EGL (Mesa's llvmpipe on the surfaceless platform here)
# and classifies what the GPU saw against the CPU view.
# shellcheck shell=bash

EGL_VB2R="$VB2R_REPO/target/release/vb2-resv"
EGL_STREAM="$VB2R_REPO/userspace/tests/streams/baseline-320x240.h264"
TEST_TIMEOUT[verifier.egl.kwin-import]=600
TEST_TIMEOUT[verifier.egl.external-import]=300
TEST_TIMEOUT[verifier.egl.cached-images]=600
TEST_TIMEOUT[verifier.classify]=900
TEST_TIMEOUT[verifier.evidence]=600
TEST_TIMEOUT[verifier.egl.bad-input]=300
TEST_TIMEOUT[verifier.classes]=600
TEST_TIMEOUT[verifier.ground-truth]=900
TEST_TIMEOUT[verifier.busy-proof]=600
TEST_TIMEOUT[verifier.implicit-sync-measured]=300

egl_need() {
	[ -x "$EGL_VB2R" ] || fail "$EGL_VB2R not built"
	[ -f "$EGL_STREAM" ] || fail "no test stream $EGL_STREAM (scripts/make-streams.sh)"
	command -v jq >/dev/null || fail "jq missing"
}

# egl_visl [module params]: loads visl and prints its video node.
egl_visl() {
	local n
	modprobe visl "$@" || fail "modprobe visl $*"
	for n in /sys/class/video4linux/video*; do
		if [ "$(basename "$(readlink -f "$n/device/driver")")" = visl ]; then
			echo "/dev/$(basename "$n")"
			return 0
		fi
	done
	fail "no visl video node"
}

# egl_count JSON IMPORT CLASS [ARM]: frames of that class in arm ARM (default 0) of a --json report.
egl_count() {
	jq -r --arg p "$2" --arg c "$3" ".[${4:-0}].summary[\$p][\$c] // 0" "$1"
}

egl_frames() {
	jq -r ".[${2:-0}].frames | length" "$1"
}

t_verifier_egl_kwin_import() {
	egl_need
	local dev n c
	dev=$(egl_visl)
	# Every visl frame: R8 + GR88 EGLImages of the CAPTURE dma-buf, raw planes read back and
	# compared byte for byte with the CPU view after DQBUF; RGB (BT.601 and BT.709) within 1.
	"$EGL_VB2R" verify "$EGL_STREAM" --device "$dev" --import kwin --json /tmp/kwin.json --strict ||
		fail "kwin import: not every frame equals the CPU view"
	jq -c '.[0].gpu | {gl_renderer, gl_version, platform, formats}' /tmp/kwin.json
	n=$(egl_frames /tmp/kwin.json)
	c=$(egl_count /tmp/kwin.json kwin correct)
	[ "$n" -gt 0 ] && [ "$n" = "$(jq '.[0].decoder.summary.frames' /tmp/kwin.json)" ] ||
		fail "sampled $n frames, decoded $(jq '.[0].decoder.summary.frames' /tmp/kwin.json)"
	[ "$c" = "$n" ] || fail "$c of $n frames correct"
	[ "$(jq '[.[0].frames[].paths[].bytes] | min' /tmp/kwin.json)" = 115200 ] ||
		fail "compared fewer bytes than a 320x240 NV12 frame"
	# A padded stride (300x200 in 320-byte rows) through dma-heap buffers: also byte-exact.
	"$EGL_VB2R" verify --synthetic 6 --size 300x200 --import kwin --strict --json /tmp/kwin-s.json ||
		fail "kwin import of padded dma-heap buffers"
	# The comparison can fail: the chroma plane imported one row early is seen, frame by frame.
	"$EGL_VB2R" verify --synthetic 4 --fault uv-offset --import kwin --json /tmp/kwin-bad.json ||
		fail "uv-offset run failed"
	[ "$(egl_count /tmp/kwin-bad.json kwin mismatch)" = 4 ] ||
		fail "a wrong chroma offset was not seen: $(jq -c '.[0].summary' /tmp/kwin-bad.json)"
	echo "kwin: $c/$n visl frames byte-exact; wrong chroma offset caught"
}

t_verifier_egl_external_import() {
	egl_need
	local dev out rc renderer
	dev=$(egl_visl)
	out=$("$EGL_VB2R" verify "$EGL_STREAM" --device "$dev" --import external --frames 10 --json /tmp/ext.json --strict 2>&1)
	rc=$?
	echo "$out"
	if [ $rc = 0 ]; then
		[ "$(egl_count /tmp/ext.json external correct)" = 10 ] || fail "external: not all 10 frames correct"
		return 0
	fi
	# llvmpipe advertises NV12 for import but refuses the second plane of any multi-planar
	# dma-buf (Mesa 25.0 lp_texture.c llvmpipe_resource_from_handle: "Multiplanar surfaces are
	# not supported"), so eglCreateImage(NV12) fails with EGL_BAD_ALLOC. Anything else fails.
	renderer=$(echo "$out" | sed -n 's/^GPU: \(.*\) on .*/\1/p')
	echo "$out" | grep -q '^vb2-resv: frame 0, external import: eglCreateImage(NV12 320x240 pitch 320 chroma at 76800 of buffer [0-9]*): BadAlloc' ||
		fail "external import failed for another reason"
	[ "$(echo "$out" | grep -c '^vb2-resv:')" = 1 ] || fail "more than one error line"
	case "$renderer" in
	llvmpipe*) skip "NV12 import unsupported by $renderer (Mesa: multi-planar dma-buf import refused, EGL_BAD_ALLOC); see docs/rfc-evidence.md" ;;
	*) fail "external import failed on $renderer" ;;
	esac
}

t_verifier_egl_cached_images() {
	egl_need
	local dev n b cached per
	dev=$(egl_visl)
	"$EGL_VB2R" verify "$EGL_STREAM" --device "$dev" --import kwin --images cached,per-frame --frames 30 \
		--no-rgb --json /tmp/img.json --strict || fail "verify failed"
	jq -c '.[] | {images, buffers, images_created, frames: (.frames | length)}' /tmp/img.json
	n=$(egl_frames /tmp/img.json 0)
	b=$(jq '.[0].buffers' /tmp/img.json)
	cached=$(jq '.[0].images_created.kwin' /tmp/img.json)
	per=$(jq '.[1].images_created.kwin' /tmp/img.json)
	[ "$(jq -r '.[0].images' /tmp/img.json)" = cached ] || fail "arm 0 is not the cached one"
	[ "$n" -gt "$b" ] || fail "$n frames in $b buffers: no buffer was reused"
	# KWin: one R8 and one GR88 image per buffer, created once and reused for every later frame.
	[ "$cached" = $((2 * b)) ] || fail "cached: $cached EGLImages for $b buffers (want $((2 * b)))"
	# Weston-like: two per frame.
	[ "$per" = $((2 * $(egl_frames /tmp/img.json 1))) ] || fail "per-frame: $per EGLImages for $(egl_frames /tmp/img.json 1) frames"
	echo "cached: $cached images for $b buffers over $n frames; per-frame: $per"
}

t_verifier_classes() {
	egl_need
	local f want got n off
	# Made-up cases through the real GPU path: a CPU-written stand-in decoder on dma-heap
	# buffers misbehaves in one way each; the GPU samples right after "queued". RGB readbacks
	# stay on: they are the GPU's own conversion of what it sampled, so a sampler that handed
	# back a CPU read would not produce them.
	for f in none:correct late:sentinel half:torn zero:zero previous:previous stale:stale \
		skip:unwritten partial:partial error:error uv-offset:mismatch; do
		want=${f#*:}
		f=${f%%:*}
		"$EGL_VB2R" verify --synthetic 5 --fault "$f" --sample-at queued --import kwin \
			--implicit-sync-hold-ms 0 --json "/tmp/cls-$f.json" >/dev/null || fail "synthetic fault $f: verify failed"
		got=$(egl_count "/tmp/cls-$f.json" kwin "$want")
		# Frame 0 has no older frame to hold: the previous-frame and stale faults start at 1.
		n=5
		case $f in previous | stale) n=4 ;; esac
		[ "$got" = $n ] || fail "fault $f: want $n x $want, got $(jq -c '.[0].summary.kwin' "/tmp/cls-$f.json")"
		[ "$(jq '[.[0].frames[].paths[0].rgb | length] | min' "/tmp/cls-$f.json")" = 2 ] ||
			fail "fault $f: not every frame has its two GPU RGB readbacks"
		echo "fault $f -> $want x $got"
	done
	# The old order (the CPU copy first, then the GPU) is still an arm: after DQBUF a late
	# writer has finished, so it is correct.
	"$EGL_VB2R" verify --synthetic 3 --fault late --sample-at dqbuf-cpu-first --import kwin --no-rgb \
		--implicit-sync-hold-ms 0 --json /tmp/cls-cpu-first.json >/dev/null || fail "dqbuf-cpu-first: verify failed"
	[ "$(egl_count /tmp/cls-cpu-first.json kwin correct)" = 3 ] || fail "dqbuf-cpu-first: not all correct"
	# The GPU's RGB agrees with the CPU's conversion exactly where the bytes agree.
	off=$(jq '.[0].rgb_off.kwin' /tmp/cls-none.json)
	[ "$off" = 0 ] || fail "fault none: $off frames with RGB off"
	[ "$(jq '.[0].rgb_off.kwin' /tmp/cls-late.json)" = 5 ] || fail "fault late: the GPU's RGB of the sentinel matches the CPU's picture"
	[ "$(jq '.[0].frames[3].paths[0].previous_frame' /tmp/cls-previous.json)" = 2 ] ||
		fail "previous: frame 3 should show frame 2"
	# (An older byte can equal the sentinel's by chance, 1 in 255: a few count as sentinel.)
	[ "$(jq '[.[0].frames[1:][].paths[0].mix | select(.previous > 100 * .sentinel)] | length' /tmp/cls-stale.json)" = 4 ] ||
		fail "stale: the mix does not show the older frame's bytes"
	[ "$(jq '[.[0].frames[].paths[0].cpu_unwritten] | min' /tmp/cls-partial.json)" -gt 0 ] ||
		fail "partial: no unwritten CPU bytes counted"
}

# egl_race_run DEV OUT ARGS...: visl (long transaction time) with requests queued from a second
# thread, the GPU sampling where ARGS say; prints one line per arm.
egl_race_run() {
	local dev=$1 out=$2
	shift 2
	"$EGL_VB2R" verify "$EGL_STREAM" --device "$dev" --import kwin --frames 8 --no-rgb --async-queue \
		--implicit-sync-hold-ms 0 --modes off,queue --json "$out" "$@" >/dev/null || fail "visl race run failed ($*)"
	jq -r '.[] | "\(.mode) \(.sample_at) wait \(.consumer_wait): \(.summary.kwin) busy \(.busy)"' "$out"
}

t_verifier_classify() {
	egl_need
	local dev i m l racy bad busy
	dev=$(egl_visl visl_transtime_ms=500)
	insmod_vb2r || fail "insmod vb2_resv"
	# After DQBUF the GPU sees what the CPU sees, in every mode (the V4L2 contract).
	egl_race_run "$dev" /tmp/race-dq.json --sample-at dqbuf
	for i in 0 1; do
		[ "$(egl_count /tmp/race-dq.json kwin correct $i)" = 8 ] || fail "arm $i (dqbuf): not all correct"
	done
	# Right after queueing (the request handed to the queue thread, visl still busy with the
	# previous job): no latch (llvmpipe does no implicit sync, so it races in both modes), and
	# KWin's latch, poll(POLLIN) on the dma-buf before the GPU reads.
	egl_race_run "$dev" /tmp/race.json --sample-at queued --consumer-wait none,poll
	for i in 0 1 2 3; do
		m=$(jq -r ".[$i].mode" /tmp/race.json)
		l=$(jq -r ".[$i].consumer_wait" /tmp/race.json)
		bad=$(jq "[.[$i].frames[].paths[].class | select(. != \"correct\" and . != \"sentinel\" and . != \"torn\")] | length" /tmp/race.json)
		[ "$bad" = 0 ] || fail "arm $m/$l: frames that are neither correct, sentinel nor torn"
		racy=$(($(egl_count /tmp/race.json kwin sentinel $i) + $(egl_count /tmp/race.json kwin torn $i)))
		busy=$(jq ".[$i].busy.busy" /tmp/race.json)
		[ "$busy" -gt 0 ] || fail "arm $m/$l: no sample began while visl still owned the buffer"
		case $m:$l in
		off:*)
			# No fence: whatever waits for one does not wait. Races only on buffers visl owned.
			[ "$racy" -gt 0 ] || fail "mode off, latch $l: no queued sample raced visl in 8 frames"
			[ "$(jq ".[$i].busy.busy_raced" /tmp/race.json)" = "$racy" ] || fail "mode off: a race on a buffer visl did not own"
			;;
		queue:none)
			# llvmpipe reads at once, fence or not.
			[ "$racy" -gt 0 ] || fail "mode queue, no latch: llvmpipe did not race (does it wait now? see implicit-sync-measured)"
			;;
		queue:poll)
			# The module's fence holds KWin's latch until visl is done: no race at all, and
			# every busy sample was held until the buffer was DONE, then read it correctly.
			[ "$racy" = 0 ] || fail "mode queue, latch poll: $racy samples raced despite the fence"
			[ "$(jq ".[$i].busy.busy_held" /tmp/race.json)" = "$busy" ] || fail "mode queue, latch poll: busy samples not held"
			[ "$(jq "[.[$i].frames[] | select(.sample.busy_before) | .sample.wait.waited_us | select(. < 100000)] | length" /tmp/race.json)" = 0 ] ||
				fail "mode queue, latch poll: a busy sample's latch waited less than 100 ms"
			;;
		esac
		echo "mode $m latch $l: $racy of 8 raced, $busy busy at read"
	done
}

t_verifier_busy_proof() {
	egl_need
	local dev out
	dev=$(egl_visl visl_transtime_ms=300)
	insmod_vb2r || fail "insmod vb2_resv"
	# visl without --async-queue: a queued sample would be taken after the decode. Refused.
	out=$("$EGL_VB2R" verify "$EGL_STREAM" --device "$dev" --frames 2 --sample-at queued 2>&1 >/dev/null) &&
		fail "verify --sample-at queued on visl without --async-queue ran"
	echo "$out"
	echo "$out" | grep -q 'needs --async-queue' || fail "refusal does not say why"
	"$EGL_VB2R" verify "$EGL_STREAM" --device "$dev" --frames 6 --no-rgb --async-queue --import kwin \
		--implicit-sync-hold-ms 0 --modes off,queue --sample-at queued,dqbuf --json /tmp/busy.json >/dev/null ||
		fail "verify failed"
	jq -c '.[] | {mode, sample_at, busy, frame1: .frames[1].sample}' /tmp/busy.json
	python3 - /tmp/busy.json <<'EOF' || fail "busy proof missing or wrong"
import json, sys
QUEUED, DONE = 0x2, 0x4
errs = []
for arm in json.load(open(sys.argv[1])):
    tag = f"{arm['mode']}/{arm['sample_at']}"
    for f in arm["frames"]:
        p = f["sample"]
        if p["flags_before"] is None or p["flags_after"] is None or p["busy_before"] is None:
            errs.append(f"{tag} frame {f['frame']}: no QUERYBUF flags")
            continue
        b = bool(p["flags_before"] & QUEUED) and not p["flags_before"] & DONE
        if b != p["busy_before"]:
            errs.append(f"{tag} frame {f['frame']}: busy_before {p['busy_before']} but flags 0x{p['flags_before']:x}")
        if arm["sample_at"] == "dqbuf" and p["busy_before"]:
            errs.append(f"{tag} frame {f['frame']}: busy after DQBUF")
        if arm["sample_at"] == "queued" and arm["mode"] == "queue" and p["busy_before"] and p["fence_driver"] != "vb2_resv":
            errs.append(f"{tag} frame {f['frame']}: busy, but no pending vb2_resv fence ({p['fence_driver']})")
        if arm["mode"] == "off" and p["fence_pending"]:
            errs.append(f"{tag} frame {f['frame']}: a pending fence in mode off")
        if p["gpu_read_us"] <= 0:
            errs.append(f"{tag} frame {f['frame']}: no GPU read time")
    busy = sum(1 for f in arm["frames"] if f["sample"]["busy_before"])
    if arm["busy"]["busy"] != busy:
        errs.append(f"{tag}: busy count {arm['busy']['busy']}, frames say {busy}")
    if arm["sample_at"] == "queued" and busy == 0:
        errs.append(f"{tag}: no queued sample began while visl owned the buffer")
for e in errs:
    print("FAIL:", e)
sys.exit(1 if errs else 0)
EOF
}

t_verifier_implicit_sync_measured() {
	egl_need
	local g p w
	# Without vgem there is nothing to hold a fence with: said so, no verdict.
	grep -q '^vgem ' /proc/modules && fail "vgem is loaded"
	"$EGL_VB2R" verify --synthetic 2 --no-rgb --json /tmp/isync0.json >/dev/null || fail "verify without vgem failed"
	jq -e '.[0].implicit_sync.status == "not measured" and .[0].implicit_sync.waits == null' /tmp/isync0.json >/dev/null ||
		fail "without vgem: $(jq -c '.[0].implicit_sync' /tmp/isync0.json)"
	load_drivers vgem || fail "modprobe vgem"
	"$EGL_VB2R" verify --synthetic 2 --no-rgb --implicit-sync-hold-ms 400 --json /tmp/isync.json \
		--evidence /tmp/isync-ev >/dev/null || fail "verify with vgem failed"
	jq -c '.[0].implicit_sync' /tmp/isync.json
	grep 'implicit sync' /tmp/isync-ev/table.md
	g=$(jq '.[0].implicit_sync.gpu_blocked_ms | floor' /tmp/isync.json)
	p=$(jq '.[0].implicit_sync.poll_blocked_ms | floor' /tmp/isync.json)
	w=$(jq -r '.[0].implicit_sync.waits' /tmp/isync.json)
	[ "$(jq -r '.[0].implicit_sync.status' /tmp/isync.json)" = measured ] || fail "not measured with vgem loaded"
	[ "$(jq -r '.[0].implicit_sync.fence_driver' /tmp/isync.json)" = vgem ] || fail "the held fence was not vgem's"
	# The control: a CPU reader (KWin's poll) on the same buffer waits for the held fence.
	[ "$p" -ge 360 ] || fail "poll(POLLIN) waited $p ms for a fence held 400 ms: the probe holds nothing"
	# llvmpipe reads through a CPU mapping and waits for no fence.
	[ "$g" -lt 200 ] && [ "$w" = false ] || fail "llvmpipe: GPU read took $g ms with the fence held 400 ms (waits: $w)"
	grep -q 'GPU waits for dma-buf fences (implicit sync): no (measured)' /tmp/isync-ev/table.md ||
		fail "table does not show the measurement"
	echo "llvmpipe: GPU read $g ms, poll $p ms, fence held 400 ms: does not wait"
}

t_verifier_ground_truth() {
	egl_need
	local f b n wrong dev
	# ffmpeg's decode of every repo stream (raw NV12, every frame once) written into dma-heap
	# buffers with a decoder's layout by the stand-in decoder: every CPU view's MD5 must equal
	# the framemd5 line make-streams.sh wrote beside the stream.
	for f in "$VB2R_REPO"/userspace/tests/streams/*.h264; do
		b=$(basename "$f" .h264)
		case $b in bad-*) continue ;; esac
		[ -s "${f%.h264}.framemd5.txt" ] || fail "no ${f%.h264}.framemd5.txt (scripts/make-streams.sh)"
		ffmpeg -nostdin -loglevel error -threads 1 -i "$f" -fps_mode passthrough -pix_fmt nv12 \
			-f rawvideo "/tmp/$b.nv12" || fail "$f: ffmpeg decode failed"
		n=$(($(stat -c %s "/tmp/$b.nv12") / 115200))
		"$EGL_VB2R" verify --synthetic "$n" --yuv "/tmp/$b.nv12" --framemd5 "${f%.h264}.framemd5.txt" \
			--import kwin --no-rgb --implicit-sync-hold-ms 0 --json "/tmp/gt-$b.json" >/dev/null || fail "$b: verify failed"
		wrong=$(jq '.[0].decoder_wrong' "/tmp/gt-$b.json")
		echo "$b: $n frames, decoder wrong: $wrong ($(jq -r '.[0].ground_truth.status' "/tmp/gt-$b.json"))"
		[ "$wrong" = 0 ] || fail "$b: $wrong frames differ from ffmpeg's framemd5"
		[ "$(jq '[.[0].frames[] | select(.decode_ok == true)] | length' "/tmp/gt-$b.json")" = "$n" ] ||
			fail "$b: not every frame has decode_ok"
	done
	# A padded layout (300x200: 320-byte rows, 208 coded rows): only the visible area counts.
	ffmpeg -nostdin -loglevel error -threads 1 -i "$EGL_STREAM" -frames:v 5 -vf scale=300:200 -pix_fmt nv12 \
		-f rawvideo /tmp/s300.nv12 || fail "ffmpeg scale"
	ffmpeg -nostdin -loglevel error -threads 1 -f rawvideo -pix_fmt nv12 -s 300x200 -i /tmp/s300.nv12 \
		-f framemd5 /tmp/s300.framemd5 || fail "ffmpeg framemd5"
	"$EGL_VB2R" verify --synthetic 5 --size 300x200 --yuv /tmp/s300.nv12 --framemd5 /tmp/s300.framemd5 \
		--import kwin --no-rgb --implicit-sync-hold-ms 0 --json /tmp/gt-300.json >/dev/null || fail "300x200: verify failed"
	[ "$(jq '.[0].layout.stride' /tmp/gt-300.json)" = 320 ] || fail "300x200: not a padded layout"
	[ "$(jq '.[0].decoder_wrong' /tmp/gt-300.json)" = 0 ] || fail "300x200 (padded): frames differ"
	# A decoder that writes one wrong byte in one frame: the GPU and the CPU agree (correct), the
	# ground truth does not.
	b=baseline-320x240
	"$EGL_VB2R" verify --synthetic 10 --fault corrupt --yuv "/tmp/$b.nv12" \
		--framemd5 "$VB2R_REPO/userspace/tests/streams/$b.framemd5.txt" --import kwin --no-rgb \
		--implicit-sync-hold-ms 0 --json /tmp/gt-bad.json --evidence /tmp/gt-ev >/dev/null || fail "corrupt: verify failed"
	[ "$(jq '.[0].decoder_wrong' /tmp/gt-bad.json)" = 1 ] || fail "corrupt: decoder wrong $(jq '.[0].decoder_wrong' /tmp/gt-bad.json), want 1"
	[ "$(jq '.[0].frames[5].decode_ok' /tmp/gt-bad.json)" = false ] || fail "corrupt: frame 5 not flagged"
	[ "$(jq -r '.[0].frames[5].paths[0].class' /tmp/gt-bad.json)" = correct ] || fail "corrupt: the GPU/CPU class changed"
	grep -q '^| direct | unchanged | - | dqbuf | none | cached | kwin | [a-z+]* | 10 | 1 |' /tmp/gt-ev/table.md || fail "table: no 'decoder wrong' 1"
	# visl draws a pattern: n/a, never "wrong".
	dev=$(egl_visl)
	"$EGL_VB2R" verify "$EGL_STREAM" --device "$dev" --frames 3 --import kwin --no-rgb --implicit-sync-hold-ms 0 \
		--json /tmp/gt-visl.json --evidence /tmp/gt-visl >/dev/null || fail "visl: verify failed"
	jq -e '.[0].ground_truth.status == "n/a" and .[0].decoder_wrong == null and ([.[0].frames[].decode_ok | select(. != null)] | length) == 0' \
		/tmp/gt-visl.json >/dev/null || fail "visl: ground truth not n/a: $(jq -c '.[0].ground_truth' /tmp/gt-visl.json)"
	grep -q '^| direct | unchanged | - | dqbuf | none | cached | kwin | none | 3 | n/a |' /tmp/gt-visl/table.md || fail "visl table: no n/a"
	grep -q 'ground truth: n/a: visl draws a test pattern' /tmp/gt-visl/table.md || fail "visl table: n/a not explained"
}

t_verifier_evidence() {
	egl_need
	local dev png w h
	dev=$(egl_visl)
	insmod_vb2r || fail "insmod vb2_resv"
	rm -rf /tmp/out/evidence
	"$EGL_VB2R" verify "$EGL_STREAM" --device "$dev" --import kwin --frames 10 --no-rgb \
		--modes off,dqbuf,queue --evidence /tmp/out/evidence || fail "verify --modes failed"
	cat /tmp/out/evidence/table.md
	for m in off dqbuf queue; do
		grep -q "^| direct | $m | - | dqbuf | none | cached | kwin | none | 10 | n/a | 10 |" /tmp/out/evidence/table.md || fail "table: no row for mode $m"
		jq -e ".schema == \"vb2-resv.verify/1\" and .mode == \"$m\" and .decoder.vb2_resv.mode == \"$m\"" \
			"/tmp/out/evidence/arm-$m-dqbuf-cached.json" >/dev/null || fail "arm-$m JSON: wrong schema or mode"
	done
	# No vgem in this guest: the implicit-sync line says it was not measured (never a guess).
	grep -q 'GPU waits for dma-buf fences (implicit sync): not measured (no vgem' /tmp/out/evidence/table.md ||
		fail "table: no implicit-sync line"
	# Frames with a pending vb2_resv fence just after QBUF: none without a queue-time fence;
	# with one, every frame (the fence is looked at before the request is queued, so even visl,
	# which runs the job inside the queue call, cannot have finished).
	local fenced
	for m in off dqbuf queue; do
		fenced=$(grep "^| direct | $m | - | dqbuf |" /tmp/out/evidence/table.md | awk -F'|' '{print $(NF-4)}' | tr -d ' ')
		case "$m:$fenced" in
		off:0 | dqbuf:0 | queue:10) ;;
		*) fail "table: mode $m shows '$fenced' frames fenced after QBUF (want 0, 0, 10)" ;;
		esac
	done
	png=/tmp/out/evidence/frame-off-dqbuf-cached-kwin.png
	w=$(jq '.layout.visible_width' /tmp/out/evidence/arm-off-dqbuf-cached.json)
	h=$(jq '.layout.visible_height' /tmp/out/evidence/arm-off-dqbuf-cached.json)
	# Decode the PNG (zlib-inflate its IDAT) and check it is the triptych of a frame: 3 x W by H.
	python3 - "$png" "$((3 * w))" "$h" <<'EOF' || fail "$png does not decode as a ${w}x${h} triptych"
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
pos, idat, ihdr = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        ihdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
w, h, depth, color = ihdr[:4]
raw = zlib.decompress(idat)
assert (w, h) == (int(sys.argv[2]), int(sys.argv[3])), (w, h)
assert (depth, color) == (8, 2) and len(raw) == h * (1 + 3 * w), "not 8-bit RGB"
print(f"{sys.argv[1]}: {w}x{h} RGB, {len(raw)} bytes decoded")
EOF
}

t_verifier_egl_bad_input() {
	egl_need
	local out rc
	# egl_bad WANT ARGS...: must exit non-zero with one "vb2-resv:" line containing WANT, no panic.
	egl_bad() {
		local want=$1
		shift
		out=$("$EGL_VB2R" "$@" 2>&1 >/dev/null)
		rc=$?
		echo "$* -> rc=$rc: $out"
		[ $rc != 0 ] || fail "$*: exit 0"
		echo "$out" | grep -q panicked && fail "$*: panic"
		[ "$(echo "$out" | grep -c '^vb2-resv: ')" = 1 ] || fail "$*: not one error line"
		echo "$out" | grep '^vb2-resv: ' | grep -qF -- "$want" || fail "$*: error does not say '$want'"
	}
	# No EGL: libEGL loading pointed at a file that does not exist.
	export VB2R_LIBEGL=/nonexistent/libEGL.so.1
	egl_bad "no EGL: cannot load /nonexistent/libEGL.so.1" verify --synthetic 2
	unset VB2R_LIBEGL
	# No render node when GBM is asked (no DRM driver loaded in this guest).
	[ -e /dev/dri ] && [ -n "$(ls /dev/dri/renderD* 2>/dev/null)" ] && fail "a render node exists already"
	egl_bad "no DRM render node under /dev/dri for --platform gbm" verify --synthetic 2 --platform gbm
	egl_bad "no render node: cannot open /dev/dri/renderD200" verify --synthetic 2 --platform gbm --render-node /dev/dri/renderD200
	# A modifier the GPU cannot import (I915_FORMAT_MOD_X_TILED for llvmpipe).
	egl_bad "the GPU cannot import R8 with modifier 0x100000000000001: EGL reports 0x0" \
		verify --synthetic 2 --modifier 0x0100000000000001
	# Missing format support on this GPU: NV12 cannot be imported by llvmpipe (see external-import).
	egl_bad "eglCreateImage(NV12" verify --synthetic 2 --import external
	# Bad arguments and inputs.
	egl_bad "no such file" verify /nonexistent.h264
	egl_bad "give either INPUT or --synthetic N" verify "$EGL_STREAM" --synthetic 2
	egl_bad "--frames must be at least 1" verify "$EGL_STREAM" --frames 0
	egl_bad "--in-flight must be at least 2" verify "$EGL_STREAM" --in-flight 1
	egl_bad "--modes needs a decoder" verify --synthetic 2 --modes off
	egl_bad "cannot open /dev/vb2_resv" verify "$EGL_STREAM" --modes off,queue
	return 0
}
