#!/usr/bin/env bash
# Boot our kernel under QEMU (TCG) with the host's root file system read-only over virtio-9p and run
# the guest runner (scripts/guest/init.sh) in it.
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

# Unknown key=value words on the kernel command line land in init's environment.
# Spaces cannot be passed there, so the test list is comma-separated.
append="console=ttyS0 root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro"
append+=" init=$REPO/scripts/guest/init.sh panic=-1 loglevel=6 kmemleak=on"
append+=" VB2R_REPO=$REPO VB2R_MODROOT=$kdir/modroot VB2R_KREL=$krel VB2R_JOB=$job"
[ -n "$ko" ] && append+=" VB2R_KO=$ko"
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
	-nographic -no-reboot -serial "file:$out/console.log" -monitor none \
	-kernel "$kdir/arch/x86/boot/bzImage" -append "$append" \
	-fsdev local,id=root,path=/,security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=root,mount_tag=/dev/root \
	-fsdev local,id=out,path="$out",security_model=none \
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
