# Foundation tests: the guest, its drivers and the module's load/unload path.
# shellcheck shell=bash

t_guest_drivers() {
	load_drivers visl vivid vim2m vicodec vgem || fail "modprobe failed"
	local m
	for m in visl vivid vim2m vicodec vgem; do
		grep -q "^$m " /proc/modules || fail "$m is not loaded"
	done
	ls /dev/media* /dev/video* /dev/dri/* 2>&1
	compgen -G '/dev/media*' >/dev/null || fail "no /dev/media* node"
	compgen -G '/dev/video*' >/dev/null || fail "no /dev/video* node"
	local rn found=""
	for rn in /sys/class/drm/renderD*; do
		[ -e "$rn/device/driver" ] || [ -e "$rn" ] || continue
		if grep -qs vgem "$rn/device/uevent" || [ "$(basename "$(readlink -f "$rn/device/driver" 2>/dev/null)")" = vgem ] \
			|| grep -qs vgem "/sys/kernel/debug/dri/${rn##*renderD}/name" 2>/dev/null; then
			found=/dev/dri/${rn##*/}
		fi
	done
	[ -z "$found" ] && found=$(ls /dev/dri/renderD* 2>/dev/null | head -n 1)
	[ -n "$found" ] && [ -c "$found" ] || fail "no vgem render node under /dev/dri"
	echo "render node: $found"
	# Each V4L2 driver registered a video node of its own (the node's device is bound to it).
	for m in visl vivid vim2m vicodec; do
		local n hit=""
		for n in /sys/class/video4linux/video*; do
			[ "$(basename "$(readlink -f "$n/device/driver")")" = "$m" ] && hit=$n
		done
		[ -n "$hit" ] || fail "no video node of driver $m"
		echo "$m: /dev/$(basename "$hit") ($(cat "$hit/name"))"
	done
}

t_kmod_load_unload() {
	modinfo "$KO" >/tmp/modinfo.txt || fail "modinfo failed"
	cat /tmp/modinfo.txt
	grep -qE '^license: +GPL$' /tmp/modinfo.txt || fail "modinfo: no 'license: GPL'"
	grep -qE '^description: +.+' /tmp/modinfo.txt || fail "modinfo: no description"
	grep -qE '^parm: +mode:' /tmp/modinfo.txt || fail "modinfo: no parameter 'mode'"
	grep -qE '^parm: +attach:' /tmp/modinfo.txt || fail "modinfo: no parameter 'attach'"
	grep -qE '^version: +[0-9]' /tmp/modinfo.txt || fail "modinfo: no version"
	grep -qE '^parm: +fence_timeout_ms:' /tmp/modinfo.txt || fail "modinfo: no parameter 'fence_timeout_ms'"
	dmesg_mark load
	# The module's own default, not the helper's mode=queue.
	modprobe videobuf2_common || fail "modprobe videobuf2_common"
	insmod "$KO" || fail "insmod failed"
	grep -q '^vb2_resv ' /proc/modules || fail "vb2_resv not in /proc/modules after insmod"
	dmesg_since load | grep -q 'vb2_resv: vb2_resv .* loaded: mode=strict' || fail "no load line with version and the default mode (strict) in dmesg"
	rmmod vb2_resv || fail "rmmod failed"
	grep -q '^vb2_resv ' /proc/modules && fail "vb2_resv still loaded after rmmod"
	[ -e /sys/module/vb2_resv ] && fail "/sys/module/vb2_resv left behind"
	dmesg_since load
	dmesg_since load | dmesg_complaints || fail "kernel complained during load/unload"
	dmesg_since load | grep -q 'vb2_resv unloaded' || fail "no unload line in dmesg"
	return 0
}

t_kmod_bad_param() {
	local args want
	# Each bad value must fail insmod and leave a dmesg line naming the parameter.
	while IFS='|' read -r args want; do
		dmesg_mark bad
		if insmod_vb2r "$args" 2>/tmp/insmod.err; then
			rmmod vb2_resv
			fail "insmod $args succeeded"
		fi
		grep -q '^vb2_resv ' /proc/modules && fail "module loaded after insmod $args failed"
		dmesg_since bad | grep -E "$want" || { dmesg_since bad; fail "no dmesg line matching /$want/ for $args"; }
	done <<'CASES'
mode=bogus|vb2_resv: invalid value 'bogus' for parameter 'mode'
mode=|vb2_resv: invalid value '' for parameter 'mode'
attach=visl,,vivid|vb2_resv: invalid value 'visl,,vivid' for parameter 'attach'
attach="vi sl"|vb2_resv: invalid value .vi sl. for parameter .attach.
mode=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa|mode.*(doesn't fit|too long)
CASES
	# And a good value still loads.
	insmod_vb2r mode=off || fail "insmod mode=off failed"
	rmmod vb2_resv
}

t_kmod_attach_errors() {
	load_drivers vivid || fail "modprobe vivid"
	local args want
	# attach= targets that cannot be attached fail the load, naming the target and the reason.
	while IFS='|' read -r args want; do
		dmesg_mark att
		if insmod_vb2r "$args" 2>/dev/null; then
			rmmod vb2_resv
			fail "insmod $args succeeded"
		fi
		dmesg_since att | grep -E "$want" || { dmesg_since att; fail "no dmesg line matching /$want/ for $args"; }
	done <<'CASES'
attach=/dev/null|vb2_resv: parameter 'attach': /dev/null: not a V4L2 video node
attach=/nonexistent|vb2_resv: parameter 'attach': /nonexistent: no such file
attach=nosuchdriver|vb2_resv: parameter 'attach': no V4L2 video capture node of driver 'nosuchdriver'
CASES
	insmod_vb2r || fail "insmod"
	"$QTEST" attach-errors
}
