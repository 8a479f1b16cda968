#!/bin/bash
# PID 1 of the test guest (see scripts/qemu.sh). The root file system is the host's, read-only
# over 9p; everything writable is tmpfs, and results go to the 9p share mounted at /tmp/out.
# Environment (from the kernel command line): VB2R_REPO, VB2R_MODDIR, VB2R_KREL, VB2R_JOB,
# optional VB2R_KO, VB2R_TESTS (comma-separated), VB2R_VERBOSE.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb LC_ALL=C.UTF-8

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mkdir -p /dev/pts /dev/shm
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
mount -t tmpfs tmpfs /root
mount -t debugfs debugfs /sys/kernel/debug
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mkdir -p /tmp/out
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 vb2rout /tmp/out

# Our kernel's modules, where modprobe looks for them.
mount -t tmpfs tmpfs /lib/modules
mkdir -p "/lib/modules/$VB2R_KREL"
mount --bind "$VB2R_MODDIR" "/lib/modules/$VB2R_KREL"

echo "guest: kernel $(uname -r), job ${VB2R_JOB}"
case "$VB2R_JOB" in
suite) "$VB2R_REPO/scripts/guest/runner.sh" 2>&1 | tee /tmp/out/runner.log ;;
demo) "$VB2R_REPO/scripts/guest/demo.sh" 2>&1 | tee /tmp/out/demo.log ;;
shell) bash -i </dev/console >/dev/console 2>&1 ;;
*) echo "guest: unknown job '$VB2R_JOB'" ;;
esac

dmesg >/tmp/out/dmesg.txt
touch /tmp/out/guest-done
sync
umount /tmp/out
echo "guest: done"
reboot -f
