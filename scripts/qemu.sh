#!/usr/bin/env bash
# Boot our kernel under QEMU (TCG) with the host's root file system read-only over virtio-9p and run
# the guest runner (scripts/guest/init.sh) in it.
#
# The repository gets a 9p share of its own (read-only), which the guest's init mounts at
# /run/vb2r/repo (VB2R_REPO in the guest): a clone anywhere (/tmp, /root, a path with spaces) is
# found there, whatever tmpfs the guest mounts over the host's view. The kernel command line
# cannot carry such a path, so PID 1 is a copy of scripts/guest/init.sh in the cache
# ($CACHE/guest/init-<sha256>.sh, named by its content so that guests started at once do not race).
#
#   scripts/qemu.sh --kdir DIR --out DIR [--timeout S] [--ko FILE] [--tests 'a b c'] [--job suite|demo|bench]
#                   [--script FILE]   (run FILE in the guest instead of a job)
#
# The guest writes tap.txt, dmesg.txt and whatever the tests leave into --out (a second 9p share,
# read-write). The console goes to OUT/console.log. Exit status: 0 when the guest ran to its end
# and powered off, 2 on a timeout (the last console lines are shown), 3 when the guest died early.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

kdir="" out="" timeout_s=1200 ko="" tests="" job=suite mem=1024 smp=2 extra="" script=""
while [ $# -gt 0 ]; do
	case "$1" in
	--kdir) kdir=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--ko) ko=$2; shift 2 ;;
	--tests) tests=$2; shift 2 ;;
	--job) job=$2; shift 2 ;;
	--append) extra=$2; shift 2 ;;
	--script) script=$2; job=script; shift 2 ;;
	*) die "qemu.sh: unknown argument $1" ;;
	esac
done
[ -n "$kdir" ] && [ -f "$kdir/arch/x86/boot/bzImage" ] || die "qemu.sh: no bzImage under --kdir '$kdir'"
[ -n "$out" ] || die "qemu.sh: --out is required"
mkdir -p "$out"
rm -f "$out"/tap.txt "$out"/dmesg.txt "$out"/kmemleak.txt "$out"/console.log "$out"/guest-done
[ -n "$script" ] && cp "$script" "$out/job.sh"

krel=$(cat "$kdir/include/config/kernel.release")
moddir="$kdir/modroot/lib/modules/$krel"
[ -d "$moddir" ] || die "qemu.sh: no installed modules at $moddir"

# guest_visible WHAT PATH: PATH goes on the kernel command line and is read through the host's
# root: no whitespace, and not under what the guest's init mounts tmpfs over.
guest_visible() {
	case "$2" in
	*[[:space:]]*) die "qemu.sh: $1 '$2' has whitespace, which the kernel command line cannot carry; set VB2_RESV_CACHE to a path without" ;;
	/tmp/* | /run/* | /root/* | /dev/*) die "qemu.sh: $1 '$2' is hidden in the guest (its init mounts tmpfs over /tmp, /run, /root, /dev/shm); set VB2_RESV_CACHE to a path elsewhere, e.g. under /var/cache" ;;
	esac
}
guest_visible "the kernel build dir" "$kdir"

# PID 1: a copy of init.sh named by its content, written once (rename is atomic).
init_sum=$(sha256sum "$REPO/scripts/guest/init.sh" | cut -c1-16)
init=$CACHE/guest/init-$init_sum.sh
guest_visible "the guest init" "$init"
if [ ! -x "$init" ]; then
	mkdir -p "$CACHE/guest"
	tmp_init=$(mktemp "$CACHE/guest/.init.XXXXXX")
	cp "$REPO/scripts/guest/init.sh" "$tmp_init"
	chmod 755 "$tmp_init"
	mv -f "$tmp_init" "$init"
fi

# The guest's view of the repository, and of the module (under the repository: through its share;
# elsewhere: copied into the output share).
GUEST_REPO=/run/vb2r/repo
if [ -n "$ko" ]; then
	[ -f "$ko" ] || die "qemu.sh: no module at --ko '$ko'"
	ko=$(cd "$(dirname "$ko")" && pwd)/$(basename "$ko")
	case "$ko" in
	"$REPO"/*) guest_ko=$GUEST_REPO/${ko#"$REPO"/} ;;
	*) mkdir -p "$out/ko" && cp "$ko" "$out/ko/" && guest_ko=/tmp/out/ko/$(basename "$ko") ;;
	esac
	case "$guest_ko" in *[[:space:]]*) cp "$ko" "$out/vb2_resv.ko" && guest_ko=/tmp/out/vb2_resv.ko ;; esac
fi
# QEMU's option syntax: a comma in a value is written twice.
qarg() { printf '%s' "${1//,/,,}"; }

# Unknown key=value words on the kernel command line land in init's environment.
# Spaces cannot be passed there, so the test list is comma-separated.
append="console=ttyS0 root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro"
append+=" init=$init panic=-1 loglevel=6 kmemleak=on"
append+=" VB2R_MODROOT=$kdir/modroot VB2R_KREL=$krel VB2R_JOB=$job"
[ -n "$ko" ] && append+=" VB2R_KO=$guest_ko"
[ -n "$tests" ] && append+=" VB2R_TESTS=${tests// /,}"
[ -n "${VB2R_VERBOSE:-}" ] && append+=" VB2R_VERBOSE=1"
append+=" $extra"

accel=tcg,thread=multi
# KVM aborts or hangs on these machines (nested MSR errors): use it only when asked to.
[ "${VB2R_KVM:-0}" = 1 ] && [ -w /dev/kvm ] && accel=kvm

log "booting $krel ($accel, ${smp} cpus, ${mem} MiB), job $job, timeout ${timeout_s}s"
set +e
timeout --kill-after=10 "$timeout_s" qemu-system-x86_64 \
	-machine pc -accel "$accel" -cpu max -smp "$smp" -m "$mem" \
	-nographic -no-reboot -monitor none \
	-chardev "file,id=con,path=$(qarg "$out/console.log")" -serial chardev:con \
	-kernel "$kdir/arch/x86/boot/bzImage" -append "$append" \
	-fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=root,mount_tag=/dev/root \
	-fsdev "local,id=repo,path=$(qarg "$REPO"),security_model=none,readonly=on,multidevs=remap" \
	-device virtio-9p-pci,fsdev=repo,mount_tag=vb2rrepo \
	-fsdev "local,id=out,path=$(qarg "$out"),security_model=none" \
	-device virtio-9p-pci,fsdev=out,mount_tag=vb2rout \
	</dev/null >"$out/qemu.log" 2>&1
rc=$?
set -e
if [ $rc = 124 ] || [ $rc = 137 ]; then
	echo "qemu.sh: the guest did not finish within ${timeout_s}s; last console lines:" >&2
	tail -n 40 "$out/console.log" >&2
	exit 2
fi
if [ ! -f "$out/guest-done" ]; then
	echo "qemu.sh: the guest stopped before its runner finished (qemu exit $rc); last console lines:" >&2
	tail -n 40 "$out/console.log" >&2
	cat "$out/qemu.log" >&2
	exit 3
fi
exit 0
