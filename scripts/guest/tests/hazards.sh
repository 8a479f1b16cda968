# The module where a fence could end while the hardware still owns its buffer, or where unload
# could pull code or tables from under a task (issue: "no fence may end before the hardware is
# done"). vb2r-qtest (qtest/src/races.rs) does the V4L2 work.
# shellcheck shell=bash
TEST_TIMEOUT[stress.rmmod-cycles]=900
TEST_TIMEOUT[stress.random-ops]=600

# A second opener's STREAMOFF/REQBUFS/REMOVE_BUFS/close while the owner streams: vb2 refuses
# them (vivid: the queue is the owner's) or they address the opener's own m2m context (vim2m);
# every fence of the owner stays pending until its buffer really comes back.
t_fence_nonowner_calls() {
	load_drivers vivid || fail "modprobe vivid"
	modprobe vim2m default_transtime=40 || fail "modprobe vim2m"
	insmod_vb2r attach=vivid,vim2m || fail "insmod attach=vivid,vim2m"
	dmesg_mark nonowner
	"$QTEST" nonowner --dev vivid || fail "vivid: a non-owner's call ended the owner's fences"
	"$QTEST" nonowner --dev vim2m || fail "vim2m: another context's calls ended this one's fences"
	local c
	c=$(vb2r_counter 'signaled -ECANCELED')
	echo "debugfs: signaled -ECANCELED: $c"
	dmesg_since nonowner | dmesg_complaints || fail "kernel complained"
	return 0
}

# A late vb2_buf_done event must not end the next cycle's fence. The buffer is on vb2's done
# list before the tracepoint fires, so a non-blocking DQBUF + QBUF on the other CPU can arm the
# next fence first; test_buf_done_delay_us widens that window to make the race certain.
t_fence_requeue_race() {
	# Jobs of 20 ms, a buf_done event handled 2 ms late, a second look 6 ms after each QBUF.
	modprobe vim2m default_transtime=20 || fail "modprobe vim2m"
	insmod_vb2r attach=vim2m test_buf_done_delay_us=2000 || fail "insmod test_buf_done_delay_us"
	dmesg_mark requeue
	"$QTEST" requeue-race --cycles "${VB2R_RACE_CYCLES:-300}" --settle-ms 6 || fail "a queued buffer without its fence"
	dmesg_since requeue | dmesg_complaints || fail "kernel complained"
	return 0
}

# A detach that is slow to kill the queue's state while the owner streams and stops: the node's
# hooks are gone, so DQBUF and STREAMOFF go straight to vivid, and each fence of ours must end
# when vivid returns its buffer (through the buf_done probe), not stay pending until the kill.
# test_kill_delay_ms holds the detach between taking the queue and killing it, which makes
# certain the window stress.rmmod-cycles hit only under heavy load (a preempted rmmod). 5 s (the
# aid's cap): the client must reach its STREAMOFF inside it, also on a loaded machine.
t_kmod_detach_streamoff() {
	load_drivers vivid || fail "modprobe vivid"
	insmod_vb2r attach=vivid test_kill_delay_ms=5000 || fail "insmod test_kill_delay_ms"
	dmesg_mark detach-streamoff
	"$QTEST" detach-streamoff || fail "a fence outlived its buffer's return during a detach"
	rmmod vb2_resv || fail "rmmod"
	dmesg_since detach-streamoff | dmesg_complaints || fail "kernel complained"
	return 0
}

# Unload with clients asleep inside V4L2: threads in blocking DQBUF and threads contending for
# the queue lock (which the V4L2 core takes after reading vdev->ioctl_ops), while the module is
# unloaded and loaded again, repeatedly. Every thread returns, the kernel stays quiet (run it
# under KASAN=1 too: a table or text freed under a sleeper is a use-after-free).
# test_unload_tail_ms: during unload, every hooked call that ends spins that long on our text
# after it has left the in-flight count (a preemption there, made certain); only the RCU-tasks
# wait after the drain keeps the text. The pause after rmmod lets such a task come back before
# the next insmod can map a fresh copy of the module at the same address.
t_kmod_unload_blocked_clients() {
	local tail=300
	load_drivers vivid || fail "modprobe vivid"
	insmod_vb2r attach=vivid test_unload_tail_ms=$tail || fail "insmod attach=vivid test_unload_tail_ms"
	dmesg_mark blocked
	# An unload with the clients running takes seconds (the RCU-tasks waits end when every
	# client has gone to sleep or back to user space): the clients run until the last cycle is
	# done (the stop file), or at most $seconds.
	local cycles=${VB2R_UNLOAD_CYCLES:-6} i seconds=300 stop=/tmp/blocked.stop
	rm -f $stop
	"$QTEST" blocked-clients --seconds $seconds --stop-file $stop --sleepers 3 --hammers 3 >/tmp/blocked.log 2>&1 &
	local pid=$! deadline
	sleep 1
	for i in $(seq 1 "$cycles"); do
		if fences_pin_module; then
			# 6.12: our fences pin the module while the stream holds some: a refused rmmod
			# is the expected answer; the module must stay whole.
			rmmod vb2_resv 2>/dev/null || { sleep 0.5; continue; }
		else
			rmmod vb2_resv || fail "cycle $i: rmmod with clients blocked in V4L2"
		fi
		sleep 0.7
		insmod "$KO" attach=vivid test_unload_tail_ms=$tail || fail "cycle $i: insmod"
		sleep 0.5
	done
	touch $stop
	# A thread that never returns (one killed by an oops in the kernel) would hang the wait.
	deadline=$((SECONDS + 30))
	while kill -0 $pid 2>/dev/null && [ $SECONDS -lt $deadline ]; do
		sleep 1
	done
	if kill -0 $pid 2>/dev/null; then
		kill -9 $pid 2>/dev/null
		cat /tmp/blocked.log
		dmesg_since blocked | dmesg_complaints
		fail "the client threads did not return within 30 s of the last cycle"
	fi
	wait $pid
	local rc=$?
	cat /tmp/blocked.log
	[ $rc = 0 ] || fail "a client thread failed or did not return"
	dmesg_since blocked | grep -c 'vb2_resv: attached' | sed 's/^/attaches: /'
	# The test aid must have put calls in the window, or the test proved nothing about it.
	local tails
	tails=$(dmesg_since blocked | sed -n 's/.*test_unload_tail_ms: \([0-9]*\) hooked call.*/\1/p' |
		awk '{s += $1} END {print s + 0}')
	echo "hooked calls that spun during unload after leaving the in-flight count: $tails"
	fences_pin_module || [ "$tails" -gt 0 ] || fail "no hooked call ended during an unload: the window was not exercised"
	dmesg_since blocked | dmesg_complaints || fail "kernel complained"
	return 0
}

# Unbinding the driver of an attached node ends every fence of that node, queued-but-not-started
# buffers included, before and after STREAMON; the node detaches cleanly at rmmod and the driver
# binds again.
t_kmod_unbind_while_streaming() {
	load_drivers vivid || fail "modprobe vivid"
	modprobe vim2m default_transtime=40 || fail "modprobe vim2m"
	local dev streaming
	for dev in vivid vim2m; do
		for streaming in "" --streaming; do
			insmod_vb2r attach=$dev || fail "$dev: insmod attach=$dev"
			dmesg_mark "unbind-$dev$streaming"
			"$QTEST" unbind --dev $dev $streaming || fail "$dev $streaming: a fence outlived the unbind"
			for f in /sys/kernel/debug/vb2_resv/video*; do
				grep -H 'pending now\|^node' "$f"
				grep -q '^pending now: 0' "$f" || fail "$dev $streaming: $f: fences still pending"
			done
			rmmod vb2_resv || fail "$dev $streaming: rmmod after the unbind"
			dmesg_since "unbind-$dev$streaming" | grep 'vb2_resv' | tail -n 4
			dmesg_since "unbind-$dev$streaming" | dmesg_complaints || fail "$dev $streaming: kernel complained"
		done
	done
	return 0
}

# start_streaming fails (vivid's injected STREAMON error) and vb2 hands the buffers back QUEUED:
# still queued, so their fences stay pending, and end normally after the next STREAMON.
t_fence_streamon_error() {
	load_drivers vivid || fail "modprobe vivid"
	insmod_vb2r attach=vivid || fail "insmod attach=vivid"
	dmesg_mark streamon-error
	"$QTEST" streamon-error || fail "a fence ended at a failed STREAMON"
	dmesg_since streamon-error | dmesg_complaints || fail "kernel complained"
	return 0
}

# A seeded random walk (vb2r-qtest random-ops: QBUF/DQBUF blocking and not, STREAMON/OFF,
# REQBUFS, EXPBUF and closing exports, close, attach/detach, mode switches; two clients per node)
# on vivid, vim2m and visl, with the invariants checked after every step. The seed is in the
# output; VB2R_SEED=0x... replays it.
t_stress_random_ops() {
	load_drivers vivid visl || fail "modprobe vivid visl"
	modprobe vim2m default_transtime=10 || fail "modprobe vim2m"
	insmod_vb2r || fail "insmod"
	dmesg_mark random-ops
	local dev total=0 n
	for dev in vivid vim2m visl; do
		if ! "$QTEST" random-ops --dev $dev --ops "${VB2R_RANDOM_OPS:-400}" >/tmp/random-$dev.log 2>&1; then
			cat /tmp/random-$dev.log
			# A walk in which no buffer ever got a fence checked nothing (the two clients can
			# keep each other off vivid's one queue): one more walk, with a new seed. A broken
			# invariant fails at once.
			grep -q 'the walk checked nothing' /tmp/random-$dev.log || fail "$dev: an invariant broke"
			"$QTEST" random-ops --dev $dev --ops "${VB2R_RANDOM_OPS:-400}" >/tmp/random-$dev.log 2>&1 || {
				cat /tmp/random-$dev.log
				fail "$dev: an invariant broke, or two walks checked nothing"
			}
		fi
		cat /tmp/random-$dev.log
		n=$(sed -n 's/^\([0-9]*\) operations, invariants held.*/\1/p' /tmp/random-$dev.log)
		total=$((total + ${n:-0}))
	done
	echo "$total operations in all"
	[ "$total" -ge 1000 ] || fail "only $total operations"
	dmesg_since random-ops | dmesg_complaints || fail "kernel complained"
	return 0
}

# 100 cycles of load, stream, unload in the middle of the stream (KASAN=1 make stress runs it on
# the KASAN kernel: docs/ci.md).
t_stress_rmmod_cycles() {
	load_drivers vivid || fail "modprobe vivid"
	local i n=${VB2R_RMMOD_CYCLES:-100} pid
	dmesg_mark rmmod-cycles
	for i in $(seq 1 "$n"); do
		insmod_vb2r attach=vivid || fail "cycle $i: insmod"
		"$QTEST" stream --seconds 0.5 >/tmp/rc-stream.log 2>&1 &
		pid=$!
		sleep 0.$((RANDOM % 3 + 1))
		if fences_pin_module; then
			wait $pid
			rmmod vb2_resv || fail "cycle $i: rmmod"
		else
			rmmod vb2_resv || fail "cycle $i: rmmod mid-stream"
			wait $pid
		fi || { cat /tmp/rc-stream.log; fail "cycle $i: the stream broke"; }
	done
	echo "$n load/stream/unload cycles"
	dmesg_since rmmod-cycles | dmesg_complaints || fail "kernel complained"
	return 0
}
