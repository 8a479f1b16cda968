# A real compositor in the loop (issue 14): `vb2-resv present` (userspace/src/present/) shows
# every visl frame through headless Weston 10 (GL renderer on llvmpipe, fullscreen shell) the way
# mpv's dmabuf-wayland output does, captures each presented frame with weston-screenshooter
# (weston --debug) and classifies it against the CPU view in RGB.
# shellcheck shell=bash

VB2R=${VB2R_BIN:-$VB2R_REPO/target/release/vb2-resv}
TEST_TIMEOUT[present.weston.correct]=900
TEST_TIMEOUT[present.weston.release-requeue]=300
TEST_TIMEOUT[present.bad-input]=180
PRESENT_STREAM=$VB2R_REPO/userspace/tests/streams/baseline-320x240.h264

export XDG_RUNTIME_DIR=/run/vb2r-wayland
WESTON_PID='' WESTON_LOG=''

# weston_start SOCKET LOG ARGS...: headless Weston on $XDG_RUNTIME_DIR/SOCKET, waits for the
# socket (30 s). The suite owns its life: weston_stop ends it (by its pid).
weston_start() {
	local sock=$1 i
	WESTON_LOG=$2
	shift 2
	mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
	rm -f "$XDG_RUNTIME_DIR/$sock" "$XDG_RUNTIME_DIR/$sock.lock"
	weston --backend=headless-backend.so --socket="$sock" "$@" >"$WESTON_LOG" 2>&1 &
	WESTON_PID=$!
	for i in $(seq 300); do
		[ -S "$XDG_RUNTIME_DIR/$sock" ] && return 0
		kill -0 "$WESTON_PID" 2>/dev/null || break
		sleep 0.1
	done
	weston_fail "weston did not create its socket $XDG_RUNTIME_DIR/$sock"
}

weston_stop() {
	[ -n "$WESTON_PID" ] || return 0
	kill "$WESTON_PID" 2>/dev/null
	wait "$WESTON_PID" 2>/dev/null
	WESTON_PID=''
}

# The failure message, with the compositor's log kept in the test's log.
weston_fail() {
	[ -n "$WESTON_LOG" ] && [ -f "$WESTON_LOG" ] && sed 's/^/weston: /' "$WESTON_LOG" | tail -40
	weston_stop
	fail "$@"
}

present_need() {
	[ -x "$VB2R" ] || fail "$VB2R not built"
	command -v weston >/dev/null || fail "weston not installed (make toolchain)"
	[ -f "$PRESENT_STREAM" ] || fail "no $PRESENT_STREAM"
	load_drivers visl || fail "modprobe visl"
}

# The GL compositor the arms run on: fullscreen shell, output the picture's size.
weston_gl() {
	weston_start "$1" "/tmp/$1.log" --use-gl --debug --shell=fullscreen-shell.so \
		--width="$2" --height="$3"
	echo "compositor: $(weston --version 2>&1 | head -1), headless, GL renderer (llvmpipe), fullscreen shell, ${2}x$3"
}

# The PineTab2 geometry: 1920x1080 visible in 1920x1088 coded. make test's streams phase writes
# build/streams/high-1920x1080.h264 (scripts/make-streams.sh --big: High, B-pyramid); without
# it (a targeted guest run) a few frames are encoded here, as make-streams.sh would, into /tmp.
present_stream_1080() {
	local s=$VB2R_REPO/build/streams/high-1920x1080.h264
	if [ -f "$s" ]; then echo "$s"; return 0; fi
	s=/tmp/present-1920x1080.h264
	[ -s "$s" ] || ffmpeg -nostdin -hide_banner -loglevel error -f lavfi -i testsrc2=size=1920x1080:rate=30 \
		-frames:v 6 -pix_fmt yuv420p -f rawvideo - |
		x264 --quiet --threads 1 --no-progress --input-res 1920x1080 --fps 30 --profile high \
			--preset ultrafast --bframes 2 -o "$s" - 2>/dev/null || return 1
	echo "$s"
}

# present_arm NAME W H FRAMES STREAM ARGS...: one present run, its output shown; the evidence
# goes to $PRESENT_EVIDENCE. Sets OUT and RC.
present_arm() {
	local name=$1 w=$2 h=$3 n=$4 stream=$5
	shift 5
	OUT=$("$VB2R" present "$stream" --frames "$n" --evidence "$PRESENT_EVIDENCE" "$@" 2>&1)
	RC=$?
	echo "== $name (${w}x$h, rc $RC)"
	echo "$OUT"
}

# present_correct W H FRAMES STREAM WRONG_CHROMA: every frame correct with the module off and in
# mode strict, and the picture with its chroma plane at WRONG_CHROMA `mismatch` on every frame.
present_correct() {
	local w=$1 h=$2 n=$3 stream=$4 wrong=$5 mode nw=3
	weston_gl "wl-correct-$w" "$w" "$h"
	export WAYLAND_DISPLAY=wl-correct-$w
	for mode in off strict; do
		present_arm "mode $mode" "$w" "$h" "$n" "$stream" --mode $mode
		[ "$RC" = 0 ] || weston_fail "${w}x$h: present (mode $mode) exited $RC"
		echo "$OUT" | grep -q "^present: $n frames .* NV12 ${w}x$h in " || weston_fail "${w}x$h mode $mode: not $n frames of ${w}x$h"
		echo "$OUT" | grep -q "^captured: $n frames; correct $n;" || weston_fail "${w}x$h mode $mode: not every frame correct"
		echo "$OUT" | grep -q "^feedback: $n presented, 0 discarded" || weston_fail "${w}x$h mode $mode: feedback"
	done
	present_arm "wrong chroma offset $wrong" "$w" "$h" $nw "$stream" --mode strict --chroma-offset "$wrong"
	[ "$RC" != 0 ] || weston_fail "${w}x$h: a wrong chroma offset passed"
	echo "$OUT" | grep -q "^captured: $nw frames; mismatch $nw;" || weston_fail "${w}x$h: a wrong chroma offset is not mismatch on every frame"
}

t_present_weston_correct() {
	present_need
	local big
	big=$(present_stream_1080) || fail "no 1920x1080 stream (scripts/make-streams.sh --big build/streams, or ffmpeg and x264 here)"
	PRESENT_EVIDENCE=/tmp/out/present-evidence
	rm -rf "$PRESENT_EVIDENCE"
	insmod_vb2r mode=strict || fail "insmod vb2_resv mode=strict"
	# 320x240: chroma 16 rows early.
	present_correct 320 240 20 "$PRESENT_STREAM" $((320 * 224))
	# The single-plane descriptor: Weston refuses it.
	OUT=$("$VB2R" present "$PRESENT_STREAM" --frames 2 --planes one 2>&1)
	RC=$?
	echo "== one plane (rc $RC)"
	echo "$OUT"
	[ $RC != 0 ] || weston_fail "a one-plane NV12 buffer was accepted"
	echo "$OUT" | grep -q "refused CAPTURE buffer 0 as a 320x240 NV12 dma-buf (1 plane" || weston_fail "one plane: no refusal"
	grep -h "NV12 dmabuf must contain 2 planes" "/tmp/wl-correct-320.log" | sed 's/^/weston said: /' | head -1
	weston_stop
	# The PineTab2 geometry: chroma at stride x visible height (1080) instead of x coded height
	# (1088), the descriptor bug a player makes when it takes the visible size for the buffer's.
	present_correct 1920 1080 6 "$big" $((1920 * 1080))
	echo "$OUT" | grep -q " in 1920x1088, 2 planes from one fd, stride 1920, chroma at $((1920 * 1080))" ||
		weston_fail "1920x1080: not a 1920x1088 coded buffer"
	weston_stop
	unset WAYLAND_DISPLAY
	rmmod vb2_resv
	# The evidence: a table row per run labelled with the compositor and its version, a triptych
	# (CPU view | compositor | difference: 3 x visible width by visible height) per run.
	cat "$PRESENT_EVIDENCE/present.md"
	python3 - "$PRESENT_EVIDENCE" "$(weston --version 2>&1 | head -1)" <<'EOF' || fail "the evidence"
import json, os, struct, sys
d, version = sys.argv[1], sys.argv[2]
errs = []
md = open(os.path.join(d, "present.md")).read()
want = {"off-320x240": "correct", "strict-320x240": "correct", "off-1920x1080": "correct",
        "strict-1920x1080": "correct", "strict-320x240-chroma-71680": "mismatch",
        "strict-1920x1080-chroma-2073600": "mismatch"}
for label, cls in want.items():
    j = json.load(open(os.path.join(d, f"present-{label}.json")))
    row = j["row"]
    if row["compositor"] != version:
        errs.append(f"{label}: compositor '{row['compositor']}', weston says '{version}'")
    if set(row["classes"]) != {cls}:
        errs.append(f"{label}: classes {row['classes']}, want all {cls}")
    with open(os.path.join(d, row["triptych"]), "rb") as f:
        head = f.read(24)
    w, h = struct.unpack(">II", head[16:24])
    vw, vh = (int(x) for x in label.split("-")[1].split("x"))
    if head[:8] != b"\x89PNG\r\n\x1a\n" or (w, h) != (3 * vw, vh):
        errs.append(f"{row['triptych']}: {w}x{h}, want {3 * vw}x{vh}")
    if f"| {version}: {vw}x{vh} in " not in md:
        errs.append(f"present.md: no row for {version} at {vw}x{vh}")
rows = [l for l in md.splitlines() if l.startswith("| ") and version in l]
if len(rows) != len(want):
    errs.append(f"present.md: {len(rows)} rows labelled '{version}', want {len(want)}")
print("\n".join(errs) if errs else f"evidence: {len(rows)} rows labelled '{version}', {len(want)} triptychs")
sys.exit(1 if errs else 0)
EOF
}

# Buffers go back to the decoder only after wl_buffer.release, the most recently released first
# (LIFO, as ffmpeg's av_buffer_pool), counted from the events as they happened (present's
# "order:" line replays commits, releases and QBUFs on its own). The stream has B-frames
# (pyramid: display order differs from decode order, several frames become presentable at once)
# and two frames stay queued ahead of the display, as a player keeps them: the compositor then
# holds buffers the decoder no longer references, and two or more released buffers compete for
# one QBUF. Both must happen in the run (else neither rule was tested), and two broken clients
# must fail on the same run: one that requeues whatever the decoder frees, one that is FIFO.
t_present_weston_release_requeue() {
	present_need
	insmod_vb2r mode=strict || fail "insmod vb2_resv mode=strict"
	local n=30 out rc stream=$VB2R_REPO/userspace/tests/streams/high-bpyramid-320x240.h264
	[ -f "$stream" ] || fail "no $stream"
	weston_gl wl-requeue 320 240
	export WAYLAND_DISPLAY=wl-requeue
	local run=("$VB2R" present "$stream" --frames $n --mode strict --no-capture --queue-ahead 2)
	out=$("${run[@]}" --json /tmp/present-requeue.json 2>&1)
	rc=$?
	echo "$out"
	[ $rc = 0 ] || weston_fail "present exited $rc"
	echo "$out" | grep -qE "presented $n, released $n, recaptured [1-9][0-9]*, requeued while held 0, LIFO violations 0" ||
		weston_fail "buffers not requeued only after release, LIFO"
	echo "$out" | grep -qE "^order: $n commits, $n releases, $n QBUFs .*: recaptured [1-9][0-9]*, requeued while held 0, LIFO violations 0; " ||
		weston_fail "the replay of the events found buffers requeued while held or not LIFO"
	echo "$out" | grep -qE "^order: .*compositor held [1-9][0-9]*, with 2\+ released buffers to choose from [1-9][0-9]*$" ||
		weston_fail "the run never offered the decoder a held buffer or a choice between released ones: it tests nothing"
	out=$("${run[@]}" --ignore-release 2>&1)
	rc=$?
	echo "== --ignore-release (rc $rc)"
	echo "$out"
	[ $rc != 0 ] || weston_fail "a client that ignores wl_buffer.release passed"
	echo "$out" | grep -qE "^order: .*requeued while held [1-9][0-9]*, LIFO" || weston_fail "--ignore-release: no requeue while held seen"
	out=$("${run[@]}" --fifo 2>&1)
	rc=$?
	echo "== --fifo (rc $rc)"
	echo "$out"
	[ $rc != 0 ] || weston_fail "a FIFO client passed"
	echo "$out" | grep -qE "^order: .*requeued while held 0, LIFO violations [1-9][0-9]*;" || weston_fail "--fifo: no LIFO violation seen"
	weston_stop
	unset WAYLAND_DISPLAY
	rmmod vb2_resv
}

# one_line WHAT EXPECTED CMD...: CMD must fail with exactly one line matching EXPECTED.
present_one_line() {
	local what=$1 want=$2 out rc
	shift 2
	out=$("$@" 2>&1)
	rc=$?
	echo "$what: rc $rc: $out"
	[ $rc != 0 ] || weston_fail "$what: exit 0"
	[ "$(echo "$out" | wc -l)" = 1 ] || weston_fail "$what: more than one line"
	echo "$out" | grep -q "$want" || weston_fail "$what: expected '$want'"
}

t_present_bad_input() {
	present_need
	present_one_line "no compositor" "no Wayland compositor at $XDG_RUNTIME_DIR/wl-none" \
		env WAYLAND_DISPLAY=wl-none "$VB2R" present "$PRESENT_STREAM"
	# Weston's pixman renderer offers no zwp_linux_dmabuf_v1.
	weston_start wl-pixman /tmp/wl-pixman.log --debug --shell=fullscreen-shell.so
	present_one_line "no linux-dmabuf" "does not offer zwp_linux_dmabuf_v1" \
		env WAYLAND_DISPLAY=wl-pixman "$VB2R" present "$PRESENT_STREAM"
	weston_stop
	# NV12 with a modifier the compositor does not list (AFBC's, as a Mali decoder might
	# report).
	weston_gl wl-format 320 240
	present_one_line "no such format" "does not take NV12 dma-bufs with modifier 0x800000000000001" \
		env WAYLAND_DISPLAY=wl-format "$VB2R" present "$PRESENT_STREAM" --modifier 0x0800000000000001
	weston_stop
}
