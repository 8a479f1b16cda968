# Helpers for guest tests (sourced by runner.sh and demo.sh).
# shellcheck shell=bash
declare -A TEST_TIMEOUT=()

KO=${VB2R_KO:-}
QTEST="$VB2R_REPO/target/release/vb2r-qtest"

fail() { echo "FAIL: $*"; exit 1; }
skip() { echo "$*"; exit 77; }

# Mark the kernel log so that a test can read only what it caused.
dmesg_mark() { echo "vb2r-mark-$1" >/dev/kmsg; }
dmesg_since() { dmesg | sed -n "/vb2r-mark-$1/,\$p" | tail -n +2; }
# Prints the kernel-log lines on stdin that are complaints (the host's dmesg-clean list); exit 1 if any.
dmesg_complaints() { "$VB2R_REPO/target/release/vb2r-harness" dmesg-check -; }

load_drivers() {
	for m in "$@"; do
		modprobe "$m" || return 1
	done
}

cleanup_modules() {
	rmmod vb2_resv 2>/dev/null
	for m in visl vivid vim2m vicodec vgem; do rmmod "$m" 2>/dev/null; done
	return 0
}

# insmod does not resolve dependencies: videobuf2_common (its vb2_buf_done tracepoint) first.
# Without a mode= argument it loads mode=queue: most fence tests check the RFC v1 semantics (a
# fence from QBUF), which the default mode, strict, narrows; the fence.strict.* tests pass
# mode=strict and kmod.load-unload checks the module's own default.
insmod_vb2r() {
	[ -n "$KO" ] && [ -f "$KO" ] || fail "vb2_resv.ko not built (VB2R_KO='$KO')"
	modprobe videobuf2_common || fail "modprobe videobuf2_common"
	case " $* " in
	*" mode="*) insmod "$KO" "$@" ;;
	*) insmod "$KO" mode=queue "$@" ;;
	esac
}

# vb2r_counter NAME: a counter from the first node file in /sys/kernel/debug/vb2_resv/.
vb2r_counter() {
	local f
	for f in /sys/kernel/debug/vb2_resv/video*; do
		sed -n "s/^$1: \([0-9]*\).*/\1/p" "$f"
		return
	done
}
