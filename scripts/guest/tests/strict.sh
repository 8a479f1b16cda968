# Mode strict, the default: a fence only while a job that writes the buffer is committed (needs
# nothing more from userspace) or running, ended at the job's end (docs/design.md, "Mode
# strict"). vb2r-qtest's strict.rs does the V4L2 and request work.
# shellcheck shell=bash

# No fence that waits for userspace: visl frame-based and slice-based (HOLD_CAPTURE_BUF), vim2m
# and vivid. A CAPTURE buffer queued without what its job needs carries no fence of ours; once
# the job is committed it does; it ends at the job's end, held or not.
t_fence_strict_no_future_fence() {
	load_drivers vivid || fail "modprobe vivid"
	modprobe vim2m default_transtime=200 || fail "modprobe vim2m"
	modprobe visl visl_transtime_ms=300 || fail "modprobe visl"
	insmod_vb2r mode=strict attach=vivid,vim2m,visl || fail "insmod mode=strict"
	dmesg_mark strict
	"$QTEST" strict-capture || fail "vivid"
	"$QTEST" strict-m2m || fail "vim2m"
	"$QTEST" strict-visl --slices 1 || fail "visl, frame-based"
	"$QTEST" strict-visl --slices 3 || fail "visl, slice-based (HOLD_CAPTURE_BUF)"
	dmesg_since strict | dmesg_complaints || fail "kernel complained"
	return 0
}

# The fence covers every hardware write of each job: visl writes the CAPTURE buffer during a
# long job; sampled with the fence, every written-and-still-queued sample has it pending.
t_fence_strict_covers_writes() {
	modprobe visl visl_transtime_ms=500 || fail "modprobe visl"
	insmod_vb2r mode=strict attach=visl || fail "insmod mode=strict"
	dmesg_mark covers
	"$QTEST" strict-visl --slices 1 || fail "a write of the job outside its fence"
	"$QTEST" strict-visl --slices 2 || fail "a write of a slice job outside its fence"
	dmesg_since covers | dmesg_complaints || fail "kernel complained"
	return 0
}

# A fence pending longer than fence_timeout_ms ends with -ETIMEDOUT, counted and logged once per
# queue, and the stream goes on.
t_fence_watchdog() {
	modprobe visl visl_transtime_ms=1200 || fail "modprobe visl"
	insmod_vb2r mode=strict attach=visl fence_timeout_ms=300 || fail "insmod fence_timeout_ms=300"
	dmesg_mark watchdog
	"$QTEST" watchdog || fail "the watchdog"
	local n lines
	n=$(vb2r_counter 'signaled -ETIMEDOUT')
	echo "debugfs: signaled -ETIMEDOUT: $n"
	[ "${n:-0}" -ge 2 ] || fail "the counter says $n, want 2"
	lines=$(dmesg_since watchdog | grep -c 'ended with -ETIMEDOUT')
	dmesg_since watchdog | grep 'ETIMEDOUT'
	[ "$lines" = 1 ] || fail "$lines log lines, want one per queue"
	dmesg_since watchdog | dmesg_complaints || fail "kernel complained"
	return 0
}

# The control device's sync_file (the explicit path) is the fence EXPORT_SYNC_FILE sees, signals
# at job end, and bad fds and indices get clean errors.
t_fence_explicit_sync_file() {
	modprobe visl visl_transtime_ms=300 || fail "modprobe visl"
	insmod_vb2r mode=strict attach=visl || fail "insmod mode=strict"
	dmesg_mark syncfile
	"$QTEST" strict-visl --slices 1 --sync-file || fail "the control device's sync_file"
	dmesg_since syncfile | dmesg_complaints || fail "kernel complained"
	return 0
}

# The reverse hazard: a fence another device left on a CAPTURE dma-buf (vgem, WRITE as panfrost
# attaches its job fence, and READ) holds the hardware off the buffer until signaled, on vivid,
# vim2m and visl; the timeout and signal paths; an O_NONBLOCK client keeps decoding. With
# wait_readers off the QBUF goes through at once (and is counted).
t_fence_waits_for_readers() {
	load_drivers vivid vgem || fail "modprobe vivid vgem"
	modprobe vim2m default_transtime=20 || fail "modprobe vim2m"
	modprobe visl visl_transtime_ms=20 || fail "modprobe visl"
	insmod_vb2r mode=strict attach=vivid,vim2m,visl || fail "insmod mode=strict"
	dmesg_mark readers
	local dev
	for dev in vivid vim2m visl; do
		"$QTEST" waits-for-readers --dev $dev || fail "$dev: the hardware was not held off"
	done
	grep -H 'readers' /sys/kernel/debug/vb2_resv/video*
	dmesg_since readers | grep -c 'wait_readers_timeout_ms' | grep -qx 3 || fail "want one timeout line per device"
	# Off: the QBUF goes through at once; the counter still sees the busy reader.
	echo 0 >/sys/module/vb2_resv/parameters/wait_readers
	if "$QTEST" waits-for-readers --dev vivid >/tmp/readers-off.log 2>&1; then
		cat /tmp/readers-off.log
		fail "passed with wait_readers=0"
	fi
	grep FAIL /tmp/readers-off.log
	local busy
	busy=$(vb2r_counter 'readers busy at QBUF')
	echo "wait_readers=0: readers busy at QBUF: $busy"
	[ "${busy:-0}" -ge 1 ] || fail "the busy reader was not counted with wait_readers=0"
	dmesg_since readers | dmesg_complaints || fail "kernel complained"
	return 0
}
