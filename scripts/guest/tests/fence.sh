# The module's semantics, checked the way a consumer sees them (vb2r-qtest does the V4L2 and
# dma-buf work; see qtest/src/).
# shellcheck shell=bash

t_fence_absent_without_module() {
	load_drivers vivid || fail "modprobe vivid"
	grep -q '^vb2_resv ' /proc/modules && fail "vb2_resv is loaded"
	"$QTEST" absent
}

t_fence_vivid_queued() {
	load_drivers vivid || fail "modprobe vivid"
	insmod_vb2r attach=vivid || fail "insmod attach=vivid"
	"$QTEST" queued --dev vivid
}

t_fence_vim2m_queued() {
	# A transaction time of tens of ms, so that the fence is seen pending and poll blocks.
	modprobe vim2m default_transtime=40 || fail "modprobe vim2m"
	insmod_vb2r || fail "insmod"
	# Attached at run time through /dev/vb2_resv (the other tests use the attach= parameter).
	"$QTEST" --attach queued --dev vim2m
}

t_fence_multi_export() {
	load_drivers vivid || fail "modprobe vivid"
	insmod_vb2r attach=vivid || fail "insmod attach=vivid"
	"$QTEST" multi-export
}

t_fence_dmabuf_import() {
	load_drivers vivid || fail "modprobe vivid"
	[ -c /dev/dma_heap/system ] || fail "no /dev/dma_heap/system"
	insmod_vb2r attach=vivid || fail "insmod attach=vivid"
	"$QTEST" dmabuf-import
}

# What it proves: the fence is in the dma-buf's shared resv, where another driver (vgem)
# sees it and honours it. (What a GPU's implicit sync does with it: verifier.implicit-sync-measured.)
t_fence_vgem_sees_resv_fence() {
	load_drivers vivid vgem || fail "modprobe vivid vgem"
	insmod_vb2r attach=vivid || fail "insmod attach=vivid"
	"$QTEST" vgem-sees-resv-fence
}

t_fence_error() {
	load_drivers vivid || fail "modprobe vivid"
	insmod_vb2r attach=vivid || fail "insmod attach=vivid"
	"$QTEST" error
}

t_fence_cancel() {
	load_drivers vivid || fail "modprobe vivid"
	insmod_vb2r attach=vivid || fail "insmod attach=vivid"
	"$QTEST" cancel
}

t_fence_mode_dqbuf() {
	load_drivers vivid || fail "modprobe vivid"
	insmod_vb2r attach=vivid || fail "insmod attach=vivid"
	# Switched at run time, without rmmod.
	"$QTEST" --mode dqbuf mode-dqbuf || exit 1
	[ "$(cat /sys/kernel/debug/vb2_resv/mode)" = dqbuf ] || fail "debugfs mode is not dqbuf after the switch"
	# The fence attached at DQBUF is signaled before anyone sees it, so its names are gone by
	# the time userspace looks (7.x): the module's own counters show it was there.
	local n
	n=$(vb2r_counter "fences attached")
	cat /sys/kernel/debug/vb2_resv/video*
	[ "${n:-0}" -gt 0 ] || fail "mode dqbuf attached no fence"
	[ "$(vb2r_counter "pending now")" = 0 ] || fail "mode dqbuf left a fence pending"
	rmmod vb2_resv
	insmod_vb2r mode=dqbuf attach=vivid || fail "insmod mode=dqbuf"
	"$QTEST" mode-dqbuf || exit 1
	n=$(vb2r_counter "fences attached")
	[ "${n:-0}" -gt 0 ] || fail "mode=dqbuf at load attached no fence"
}

t_fence_mode_off() {
	load_drivers vivid || fail "modprobe vivid"
	insmod_vb2r mode=off attach=vivid || fail "insmod mode=off"
	"$QTEST" mode-off || exit 1
	cat /sys/kernel/debug/vb2_resv/video*
	[ "$(vb2r_counter "fences attached")" = 0 ] || fail "mode off attached a fence"
	# And back on, without rmmod.
	"$QTEST" --mode queue queued --dev vivid
}

# Whether fences of ours hold a reference on the module: below 7.2 (VB2R_FENCE_INDEPENDENT in
# kmod/glue_fence.c). 6.12 and 7.0 neither detach a fence's ops when it signals nor have the inline
# fence lock; 7.1 has both but its dma_fence tracepoints oops on detached ops (docs/design.md).
fences_pin_module() {
	local rel major minor
	rel=$(uname -r)
	major=${rel%%.*}
	minor=${rel#*.}
	minor=${minor%%[!0-9]*}
	[ "$major" -lt 7 ] || { [ "$major" = 7 ] && [ "$minor" -lt 2 ]; }
}

t_kmod_unload_while_streaming() {
	load_drivers vivid || fail "modprobe vivid"
	insmod_vb2r attach=vivid || fail "insmod attach=vivid"
	dmesg_mark unload
	"$QTEST" stream --seconds 8 >/tmp/stream.log 2>&1 &
	local pid=$!
	sleep 3
	if fences_pin_module; then
		# $(uname -r): our fences keep the module, so rmmod must be refused while the stream
		# holds some, and the stream must go on unharmed; once it ended and closed its buffers
		# (every fence released), rmmod must work.
		echo "$(uname -r): fences pin the module; rmmod must be refused while streaming"
		rmmod vb2_resv 2>/tmp/rmmod.err && fail "rmmod succeeded while fences of ours exist"
		cat /tmp/rmmod.err
		grep -q '^vb2_resv ' /proc/modules || fail "vb2_resv gone after a refused rmmod"
		wait $pid
		local rc=$?
		cat /tmp/stream.log
		[ $rc = 0 ] || fail "the stream failed (a fence pending at DQBUF, or the device broke)"
		grep -q 'fenced [1-9]' /tmp/stream.log || fail "no QBUF was fenced"
		rmmod vb2_resv || fail "rmmod after the stream ended (its fences released) failed"
		dmesg_since unload | dmesg_complaints || fail "kernel complained"
		return 0
	fi
	rmmod vb2_resv || fail "rmmod while streaming failed"
	wait $pid
	local rc=$?
	cat /tmp/stream.log
	[ $rc = 0 ] || fail "the stream failed (a fence pending at DQBUF, or the device broke)"
	local fenced unfenced
	fenced=$(sed -n 's/.*fenced \([0-9]*\) unfenced.*/\1/p' /tmp/stream.log)
	unfenced=$(sed -n 's/.*unfenced \([0-9]*\).*/\1/p' /tmp/stream.log)
	[ "${fenced:-0}" -gt 0 ] || fail "no QBUF was fenced before rmmod"
	[ "${unfenced:-0}" -gt 0 ] || fail "streaming did not go on (unfenced) after rmmod"
	dmesg_since unload | dmesg_complaints || fail "kernel complained"
	return 0
}

# The signalling path in hard IRQ, where hantro runs it: test_hardirq_signal=1 makes glue.c hand
# every vb2_buf_done event to an irq_work, which runs in hard IRQ as a threadable interrupt
# handler would. The fence checks must hold as before, lockdep must stay quiet (an IRQ-unsafe
# lock on that path is an "inconsistent lock state" report, a lock invalid there an "Invalid
# wait context"), and the module must say at unload that events really ran in hard IRQ.
t_kmod_hardirq_signal() {
	load_drivers vivid || fail "modprobe vivid"
	modprobe vim2m default_transtime=20 || fail "modprobe vim2m"
	insmod_vb2r attach=vivid test_hardirq_signal=1 || fail "insmod test_hardirq_signal=1"
	dmesg_mark hardirq
	"$QTEST" queued --dev vivid || fail "vivid: the fence checks fail with hard-IRQ signalling"
	"$QTEST" --attach queued --dev vim2m || fail "vim2m: the fence checks fail with hard-IRQ signalling"
	"$QTEST" stream --seconds 3 || fail "vivid stream with hard-IRQ signalling"
	if fences_pin_module; then
		rmmod vb2_resv || fail "rmmod"
	else
		# Unload while events are being handed to irq_works (glue exit waits for them).
		"$QTEST" stream --seconds 4 >/tmp/hardirq-stream.log 2>&1 &
		local pid=$!
		sleep 2
		rmmod vb2_resv || fail "rmmod while streaming"
		wait $pid || { cat /tmp/hardirq-stream.log; fail "the stream broke at unload"; }
	fi
	local line n
	line=$(dmesg_since hardirq | grep 'vb2_resv: test_hardirq_signal:')
	echo "$line"
	n=$(echo "$line" | sed -n 's/.*: \([0-9]*\) buffer-done events handled in hard IRQ.*/\1/p')
	[ "${n:-0}" -gt 0 ] || fail "no buffer-done event was handled in hard IRQ"
	dmesg_since hardirq | dmesg_complaints || fail "kernel complained"
	return 0
}

t_kmod_cycles() {
	load_drivers vivid || fail "modprobe vivid"
	local i
	dmesg_mark cycles
	for i in $(seq 1 20); do
		insmod_vb2r || fail "cycle $i: insmod"
		"$QTEST" --attach stream --seconds 0.3 --detach >/tmp/cycle.log 2>&1 || { cat /tmp/cycle.log; fail "cycle $i: stream"; }
		grep -q 'fenced [1-9]' /tmp/cycle.log || { cat /tmp/cycle.log; fail "cycle $i: nothing fenced"; }
		rmmod vb2_resv || fail "cycle $i: rmmod"
	done
	echo "20 cycles done"
	if [ -w /sys/kernel/debug/kmemleak ]; then
		echo clear >/sys/kernel/debug/kmemleak
		sleep 6
		echo scan >/sys/kernel/debug/kmemleak
		if grep -q 'vb2_resv\|vb2r_' /sys/kernel/debug/kmemleak; then
			cat /sys/kernel/debug/kmemleak
			fail "kmemleak reports objects from vb2_resv"
		fi
	fi
	dmesg_since cycles | dmesg_complaints >/dev/null || { dmesg_since cycles | dmesg_complaints; fail "kernel complained"; }
	return 0
}

t_kmod_kunit() {
	[ -d /sys/kernel/debug/kunit ] || fail "no /sys/kernel/debug/kunit (CONFIG_KUNIT_DEBUGFS)"
	insmod_vb2r || fail "insmod"
	local suite r
	for suite in vb2_resv_params vb2_resv_policy; do
		r=/sys/kernel/debug/kunit/$suite/results
		if [ ! -r "$r" ]; then
			# The suites are built only for 7.x (Kbuild: 6.12 has no #[kunit_tests], added in 6.15).
			local rel major minor
			rel=$(uname -r)
			major=${rel%%.*}
			minor=${rel#*.}
			minor=${minor%%[!0-9]*}
			if [ "$major" -lt 6 ] || { [ "$major" = 6 ] && [ "$minor" -lt 15 ]; }; then
				skip "KUnit suites vb2_resv_params, vb2_resv_policy are 7.x-only: Linux $rel has no #[kunit_tests] (6.15+)"
			fi
			fail "no KUnit suite $suite after insmod"
		fi
		cat "$r"
		grep -q '^not ok' "$r" && fail "a KUnit case of $suite failed"
		grep -qE "^ok [0-9]+ $suite" "$r" || fail "suite $suite did not pass"
	done
	return 0
}

# The checks above must be able to fail: with the module attached in mode off, each of them has
# to fail, and `absent` has to fail once the module fences.
t_fence_negative_control() {
	load_drivers vivid vgem || fail "modprobe"
	insmod_vb2r mode=off attach=vivid || fail "insmod mode=off"
	local c
	for c in "queued --dev vivid" multi-export dmabuf-import vgem-sees-resv-fence error cancel mode-dqbuf \
		"stream --seconds 1 --expect-fenced"; do
		# shellcheck disable=SC2086
		if "$QTEST" $c >/tmp/neg.log 2>&1; then
			cat /tmp/neg.log
			fail "'$c' passed although the module added no fence"
		fi
		echo "$c fails as it must: $(grep FAIL /tmp/neg.log)"
	done
	local c2
	for c2 in absent mode-off; do
		if "$QTEST" --mode queue $c2 >/tmp/neg.log 2>&1; then
			cat /tmp/neg.log
			fail "'$c2' passed although the module fences"
		fi
		echo "$c2 fails as it must: $(grep FAIL /tmp/neg.log)"
	done
}
