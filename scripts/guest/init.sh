#!/bin/bash
# PID 1 of the test guest (see scripts/qemu.sh, which boots a copy of this file from the cache).
# The root file system is the host's, read-only over 9p; everything writable is tmpfs, results go
# to the 9p share mounted at /tmp/out, and the repository is a 9p share of its own, mounted
# read-only at /run/vb2r/repo (VB2R_REPO), so that no tmpfs here can hide it wherever it was cloned.
# Environment (from the kernel command line): VB2R_MODROOT, VB2R_KREL, VB2R_JOB, optional VB2R_KO
# (a guest path), VB2R_TESTS (comma-separated), VB2R_VERBOSE.
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
export VB2R_REPO=/run/vb2r/repo
mkdir -p "$VB2R_REPO"
if ! mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro vb2rrepo "$VB2R_REPO"; then
	# No guest-done: qemu.sh reports the guest as failed, with these console lines.
	echo "guest: cannot mount the repository share (vb2rrepo) at $VB2R_REPO"
	umount /tmp/out
	reboot -f
fi

# Our kernel's modules are under VB2R_MODROOT: scripts/guest/modprobe points modprobe there, for
# the tests and for the kernel's own request_module() calls.
export VB2R_MODROOT
mkdir -p /tmp/bin
ln -s "$VB2R_REPO/scripts/guest/modprobe" /tmp/bin/modprobe
export PATH=/tmp/bin:$PATH
echo /tmp/bin/modprobe >/proc/sys/kernel/modprobe

echo "guest: kernel $(uname -r), job ${VB2R_JOB}"
case "$VB2R_JOB" in
suite) "$VB2R_REPO/scripts/guest/runner.sh" 2>&1 | tee /tmp/out/runner.log ;;
demo) "$VB2R_REPO/scripts/guest/demo.sh" 2>&1 | tee /tmp/out/demo.log ;;
bench) "$VB2R_REPO/scripts/guest/bench.sh" 2>&1 | tee /tmp/out/bench.log ;;
script) bash /tmp/out/job.sh 2>&1 | tee /tmp/out/job.log ;;
*) echo "guest: unknown job '$VB2R_JOB'" ;;
esac

dmesg >/tmp/out/dmesg.txt
# kmemleak: objects younger than 5 s are not reported; scan twice, as its documentation advises.
if [ -w /sys/kernel/debug/kmemleak ] && [ "$VB2R_JOB" = suite ]; then
	sleep 5
	t0=$(date +%s)
	echo scan >/sys/kernel/debug/kmemleak
	echo scan >/sys/kernel/debug/kmemleak
	cat /sys/kernel/debug/kmemleak >/tmp/out/kmemleak.txt
	echo "guest: kmemleak scans took $(($(date +%s) - t0)) s"
	dmesg >/tmp/out/dmesg.txt
fi
touch /tmp/out/guest-done
sync
umount /tmp/out
echo "guest: done"
reboot -f
