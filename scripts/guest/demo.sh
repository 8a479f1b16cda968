#!/bin/bash
# The demo job in the guest (scripts/demo.sh boots it).
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
set -e
say() { printf '\n=== %s\n' "$*"; }
modprobe vivid
say "without vb2_resv: a queued vivid CAPTURE buffer's exported dma-buf"
"$QTEST" absent
say "insmod vb2_resv.ko attach=vivid"
insmod "$KO" attach=vivid
dmesg | grep 'vb2_resv:' | tail -n 3
say "with vb2_resv: the same buffer after QBUF, while vivid fills it, and at DQBUF"
"$QTEST" queued --dev vivid
say "debugfs: /sys/kernel/debug/vb2_resv/"
for f in /sys/kernel/debug/vb2_resv/*; do echo "--- $f"; cat "$f"; done
rmmod vb2_resv
