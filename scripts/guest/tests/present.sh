# A real compositor in the loop (issue 14): `vb2-resv present` (userspace/src/present/) shows
# every visl frame through headless Weston 10 (GL renderer on llvmpipe, fullscreen shell) the way
# mpv's dmabuf-wayland output does, captures each presented frame with weston-screenshooter
# (weston --debug) and classifies it against the CPU view in RGB.
# shellcheck shell=bash

VB2R=${VB2R_BIN:-$VB2R_REPO/target/release/vb2-resv}
TEST_TIMEOUT[present.weston.correct]=600
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

t_present_weston_correct() {
	present_need
	insmod_vb2r mode=strict || fail "insmod vb2_resv mode=strict"
	local n=20 out rc mode
	weston_gl wl-correct 320 240
	export WAYLAND_DISPLAY=wl-correct
	for mode in off strict; do
		out=$("$VB2R" present "$PRESENT_STREAM" --frames $n --mode $mode --json "/tmp/present-$mode.json" 2>&1)
		rc=$?
		echo "== mode $mode"
		echo "$out"
		[ $rc = 0 ] || weston_fail "present (mode $mode) exited $rc"
		echo "$out" | grep -q "^captured: $n frames; correct $n;" || weston_fail "mode $mode: not every frame correct"
		echo "$out" | grep -q "^feedback: $n presented, 0 discarded" || weston_fail "mode $mode: feedback"
	done
	# A deliberately wrong chroma offset (16 rows early) must be seen as mismatch.
	out=$("$VB2R" present "$PRESENT_STREAM" --frames 4 --mode strict --chroma-offset $((320 * 224)) 2>&1)
	rc=$?
	echo "== wrong chroma offset"
	echo "$out"
	[ $rc != 0 ] || weston_fail "a wrong chroma offset passed"
	echo "$out" | grep -q "^captured: 4 frames; mismatch 4;" || weston_fail "a wrong chroma offset is not mismatch on every frame"
	# The single-plane descriptor: Weston refuses it.
	out=$("$VB2R" present "$PRESENT_STREAM" --frames 2 --planes one 2>&1)
	rc=$?
	echo "== one plane"
	echo "$out"
	[ $rc != 0 ] || weston_fail "a one-plane NV12 buffer was accepted"
	echo "$out" | grep -q "refused CAPTURE buffer 0 as a 320x240 NV12 dma-buf (1 plane" || weston_fail "one plane: no refusal"
	grep -h "NV12 dmabuf must contain 2 planes" "/tmp/wl-correct.log" | sed 's/^/weston said: /' | head -1
	weston_stop
	unset WAYLAND_DISPLAY
	rmmod vb2_resv
}

t_present_weston_release_requeue() {
	present_need
	insmod_vb2r mode=strict || fail "insmod vb2_resv mode=strict"
	local n=30 out rc
	weston_gl wl-requeue 320 240
	export WAYLAND_DISPLAY=wl-requeue
	out=$("$VB2R" present "$PRESENT_STREAM" --frames $n --mode strict --no-capture --json /tmp/present-requeue.json 2>&1)
	rc=$?
	echo "$out"
	[ $rc = 0 ] || weston_fail "present exited $rc"
	echo "$out" | grep -qE "presented $n, released $n, recaptured [1-9][0-9]*, requeued while held 0, LIFO violations 0" ||
		weston_fail "buffers not requeued only after release, LIFO"
	# The broken client (requeue what the decoder frees, released or not), shown for the record:
	# on this stream the decoder's own reference lifetime outlasts Weston's hold (it releases a
	# buffer when the next commit is applied), so it has not requeued a held buffer here yet.
	out=$("$VB2R" present "$PRESENT_STREAM" --frames $n --mode strict --no-capture --ignore-release 2>&1)
	echo "== --ignore-release (rc $?)"
	echo "$out"
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
