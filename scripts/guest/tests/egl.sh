# The verifier's GPU half: `vb2-resv verify` (userspace/src/{gpu,classify,verify,evidence}.rs)
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

t_verifier_classify() {
	egl_need
	local f want got n dev
	# Made-up cases through the real GPU path: a CPU-written stand-in decoder on dma-heap
	# buffers misbehaves in one way each; the GPU samples right after "queued".
	for f in none:correct late:sentinel half:torn zero:zero skip:sentinel error:error uv-offset:mismatch previous:previous; do
		want=${f#*:}
		f=${f%%:*}
		"$EGL_VB2R" verify --synthetic 5 --fault "$f" --sample-at queued --import kwin --no-rgb \
			--json "/tmp/cls-$f.json" >/dev/null || fail "synthetic fault $f: verify failed"
		got=$(egl_count "/tmp/cls-$f.json" kwin "$want")
		# Frame 0 has no older frame to hold: the previous-frame fault starts at frame 1.
		n=5
		[ "$f" = previous ] && n=4
		[ "$got" = $n ] || fail "fault $f: want $n x $want, got $(jq -c '.[0].summary.kwin' "/tmp/cls-$f.json")"
		echo "fault $f -> $want x $got"
	done
	[ "$(jq '.[0].frames[3].paths[0].previous_frame' /tmp/cls-previous.json)" = 2 ] ||
		fail "previous: frame 3 should show frame 2"

	# The real race on visl: a long transaction time, requests queued from a second thread,
	# the GPU sampling right after the request is handed over (before visl has run the job:
	# its queue thread is still busy with the previous one) and after DQBUF.
	dev=$(egl_visl visl_transtime_ms=500)
	insmod_vb2r || fail "insmod vb2_resv"
	"$EGL_VB2R" verify "$EGL_STREAM" --device "$dev" --import kwin --frames 8 --no-rgb --async-queue \
		--sample-at queued,dqbuf --modes off,queue --json /tmp/race.json || fail "visl race run failed"
	jq -r '.[] | "\(.mode) \(.sample_at): \(.summary.kwin)"' /tmp/race.json
	local i sa bad racy=0
	for i in 0 1 2 3; do
		sa=$(jq -r ".[$i].sample_at" /tmp/race.json)
		bad=$(jq "[.[$i].frames[].paths[].class | select(. != \"correct\" and . != \"sentinel\" and . != \"torn\")] | length" /tmp/race.json)
		[ "$bad" = 0 ] || fail "arm $i: frames that are neither correct, sentinel nor torn"
		if [ "$sa" = dqbuf ]; then
			# The V4L2 contract: after DQBUF the GPU sees what the CPU sees, in every mode.
			[ "$(egl_count /tmp/race.json kwin correct $i)" = 8 ] || fail "arm $i (dqbuf): not all correct"
		else
			racy=$((racy + $(egl_count /tmp/race.json kwin sentinel $i) + $(egl_count /tmp/race.json kwin torn $i)))
		fi
	done
	# llvmpipe does no implicit sync: sampling before visl ran shows the sentinel, with the
	# module's fence (mode queue) or without it. How many frames race is timing; none is a bug.
	[ "$racy" -gt 0 ] || fail "no queued sample raced visl (sentinel/torn) in 16 frames"
	echo "visl race: $racy of 16 queued samples read before the decoder wrote"
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
		grep -q "^| $m | dqbuf | cached | kwin | 10 | 10 |" /tmp/out/evidence/table.md || fail "table: no row for mode $m"
		jq -e ".schema == \"vb2-resv.verify/1\" and .mode == \"$m\" and .decoder.vb2_resv.mode == \"$m\"" \
			"/tmp/out/evidence/arm-$m-dqbuf-cached.json" >/dev/null || fail "arm-$m JSON: wrong schema or mode"
	done
	grep -q 'kernel implicit sync by the GPU driver: no' /tmp/out/evidence/table.md || fail "table: no implicit-sync line"
	# The last column: frames with a pending vb2_resv fence just after QBUF. None without a
	# queue-time fence; with one, every frame visl had not finished before the look.
	local fenced
	for m in off dqbuf queue; do
		fenced=$(grep "^| $m | dqbuf |" /tmp/out/evidence/table.md | awk -F'|' '{print $(NF-1)}' | tr -d ' ')
		case "$m:$fenced" in
		off:0 | dqbuf:0) ;;
		queue:[1-9]*) ;;
		*) fail "table: mode $m shows '$fenced' frames fenced after QBUF" ;;
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
