#!/bin/bash
# PID 1 of the arm64 guest (scripts/qemu-arm64.sh), started by the rootfs's /init once it has
# mounted the repository share (read-only) at /vb2r/repo. The root file system is the arm64 rootfs
# (scripts/arm64/rootfs.sh), read-only over 9p; everything writable is tmpfs, results go to the
# 9p share mounted at /tmp/out (the path the shared guest scripts write to), the kernel's build
# tree is a third share at /run/vb2r/kdir (its modules in modroot/; the rootfs is read-only, so
# the mount point is made on /run's tmpfs). The arm64 binaries
# (target/aarch64-unknown-linux-gnu/release) are bind-mounted over target/release, so the shared
# guest tests (scripts/guest/) run unchanged.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LC_ALL=C.UTF-8

mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
ln -s /proc/self/fd /dev/fd
ln -s /proc/self/fd/0 /dev/stdin
ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /root
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mkdir -p /tmp/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 vb2rout /tmp/out
mkdir -p /run/vb2r/kdir
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro vb2rkdir /run/vb2r/kdir

export VB2R_REPO=/vb2r/repo VB2R_KDIR=/run/vb2r/kdir VB2R_MODROOT=/run/vb2r/kdir/modroot
mount --bind "$VB2R_REPO/target/aarch64-unknown-linux-gnu/release" "$VB2R_REPO/target/release"
# busybox's applets for anything the Debian packages do not bring (last in PATH).
mkdir -p /tmp/bb /tmp/bin
/bin/busybox --install -s /tmp/bb 2>/dev/null
ln -s "$VB2R_REPO/scripts/guest/modprobe" /tmp/bin/modprobe
export PATH=/tmp/bin:$PATH:/tmp/bb
echo /tmp/bin/modprobe >/proc/sys/kernel/modprobe
# The kernel command line hands VB2R_KO (the module, relative to the repository share),
# VB2R_TESTS (comma-separated), VB2R_STREAMS and VB2R_VERBOSE to this environment.
[ -n "${VB2R_KO_REL:-}" ] && export VB2R_KO=$VB2R_REPO/$VB2R_KO_REL
[ -n "${VB2R_STREAMS_REL:-}" ] && export VB2R_STREAMS=$VB2R_REPO/$VB2R_STREAMS_REL

echo "guest: kernel $(uname -r) ($(uname -m)), job ${VB2R_JOB:-suite}"
case "${VB2R_JOB:-suite}" in
suite) "$VB2R_REPO/scripts/guest/runner.sh" 2>&1 | tee /tmp/out/runner.log ;;
script) bash /tmp/out/job.sh 2>&1 | tee /tmp/out/job.log ;;
*) echo "guest: unknown job '$VB2R_JOB'" ;;
esac

dmesg >/tmp/out/dmesg.txt
if [ -w /sys/kernel/debug/kmemleak ] && [ "${VB2R_JOB:-suite}" = suite ]; then
	sleep 5
	echo scan >/sys/kernel/debug/kmemleak
	echo scan >/sys/kernel/debug/kmemleak
	cat /sys/kernel/debug/kmemleak >/tmp/out/kmemleak.txt
	dmesg >/tmp/out/dmesg.txt
fi
touch /tmp/out/guest-done
sync
umount /tmp/out
echo "guest: done"
reboot -f
