#!/usr/bin/env bash
# Boot the arm64 kernel (scripts/arm64/kernel.sh) in qemu-system-aarch64 (TCG, -M virt) with the
# arm64 rootfs (scripts/arm64/rootfs.sh) read-only over virtio-9p and run the shared guest runner
# (scripts/guest/runner.sh) in it, through scripts/arm64/init.sh.
#
#   scripts/qemu-arm64.sh --kdir DIR --rootfs DIR --out DIR [--timeout S] [--ko FILE]
#                         [--tests 'a b c'] [--streams DIR] [--script FILE] [--append WORDS]
#
# Shares: the rootfs (/), the repository (/vb2r/repo, read-only; the arm64 binaries are bind-
# mounted over target/release there), the kernel's build tree (/run/vb2r/kdir, read-only: its
# installed modules under modroot/, and what `vb2-resv doctor --kdir` reads) and OUT (/tmp/out,
# read-write: tap.txt, dmesg.txt, logs/). --ko and --streams must be inside the
# repository. The CPU is cortex-a76 (ARMv8.2-A like the RK3566's Cortex-A55, and without pointer
# authentication, whose emulation is expensive under TCG); VB2R_ARM64_CPU overrides it
# (e.g. max,pauth-impdef=on). Exit status as scripts/qemu.sh: 0 when the guest ran to its end,
# 2 on a timeout, 3 when it died early.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

extra="" kdir="" rootfs="" out="" timeout_s=1800 ko="" tests="" streams="" script="" job=suite mem=2048 smp=2
while [ $# -gt 0 ]; do
	case "$1" in
	--kdir) kdir=$2; shift 2 ;;
	--rootfs) rootfs=$2; shift 2 ;;
	--out) out=$2; shift 2 ;;
	--timeout) timeout_s=$2; shift 2 ;;
	--ko) ko=$2; shift 2 ;;
	--tests) tests=$2; shift 2 ;;
	--streams) streams=$2; shift 2 ;;
	--script) script=$2; job=script; shift 2 ;;
	--append) extra=$2; shift 2 ;;
	*) die "qemu-arm64.sh: unknown argument $1" ;;
	esac
done
[ -n "$kdir" ] && [ -f "$kdir/arch/arm64/boot/Image" ] || die "qemu-arm64.sh: no arm64 Image under --kdir '$kdir'"
[ -n "$rootfs" ] && [ -f "$rootfs/.done" ] || die "qemu-arm64.sh: no arm64 rootfs at --rootfs '$rootfs'"
[ -n "$out" ] || die "qemu-arm64.sh: --out is required"
[ -x "$REPO/target/aarch64-unknown-linux-gnu/release/vb2r-qtest" ] ||
	die "qemu-arm64.sh: the arm64 binaries are not built (make userspace ARCH=arm64)"
mkdir -p "$out"
rm -rf "$out"/tap.txt "$out"/dmesg.txt "$out"/kmemleak.txt "$out"/console.log "$out"/guest-done "$out"/logs
[ -n "$script" ] && cp "$script" "$out/job.sh"
in_repo() { # the path of $1 relative to the repository, or die
	local p
	p=$(realpath "$1")
	case "$p" in "$REPO"/*) echo "${p#"$REPO"/}" ;; *) die "qemu-arm64.sh: $1 is not inside $REPO" ;; esac
}
krel=$(cat "$kdir/include/config/kernel.release")
modroot=$kdir/modroot
[ -d "$modroot/lib/modules/$krel" ] || die "qemu-arm64.sh: no installed modules at $modroot/lib/modules/$krel"

append="console=ttyAMA0 root=/dev/root rootfstype=9p rootflags=trans=virtio,version=9p2000.L,msize=262144,cache=loose ro"
append+=" init=/init panic=-1 loglevel=6 kmemleak=on VB2R_KREL=$krel VB2R_JOB=$job"
[ -n "$ko" ] && append+=" VB2R_KO_REL=$(in_repo "$ko")"
[ -n "$streams" ] && append+=" VB2R_STREAMS_REL=$(in_repo "$streams")"
[ -n "$tests" ] && append+=" VB2R_TESTS=${tests// /,}"
[ -n "${VB2R_VERBOSE:-}" ] && append+=" VB2R_VERBOSE=1"
# --append: more words for the kernel command line (KEY=value words reach the tests' environment).
[ -n "$extra" ] && append+=" $extra"

cpu=${VB2R_ARM64_CPU:-cortex-a76}
log "booting arm64 $krel (TCG, -cpu $cpu, ${smp} cpus, ${mem} MiB), job $job, timeout ${timeout_s}s"
start=$(date +%s)
set +e
timeout --kill-after=10 "$timeout_s" qemu-system-aarch64 \
	-machine virt -accel tcg,thread=multi -cpu "$cpu" -smp "$smp" -m "$mem" \
	-nographic -no-reboot -serial "file:$out/console.log" -monitor none \
	-kernel "$kdir/arch/arm64/boot/Image" -append "$append" \
	-fsdev local,id=root,path="$rootfs",security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=root,mount_tag=/dev/root \
	-fsdev local,id=repo,path="$REPO",security_model=none,readonly=on,multidevs=remap \
	-device virtio-9p-pci,fsdev=repo,mount_tag=vb2rrepo \
	-fsdev local,id=kdir,path="$kdir",security_model=none,readonly=on \
	-device virtio-9p-pci,fsdev=kdir,mount_tag=vb2rkdir \
	-fsdev local,id=out,path="$out",security_model=none \
	-device virtio-9p-pci,fsdev=out,mount_tag=vb2rout \
	</dev/null >"$out/qemu.log" 2>&1
rc=$?
set -e
echo "$(($(date +%s) - start))" >"$out/seconds"
if [ $rc = 124 ] || [ $rc = 137 ]; then
	echo "qemu-arm64.sh: the guest did not finish within ${timeout_s}s; last console lines:" >&2
	tail -n 40 "$out/console.log" >&2
	exit 2
fi
if [ ! -f "$out/guest-done" ]; then
	echo "qemu-arm64.sh: the guest stopped before its runner finished (qemu exit $rc); last console lines:" >&2
	tail -n 40 "$out/console.log" >&2
	cat "$out/qemu.log" >&2
	exit 3
fi
exit 0
