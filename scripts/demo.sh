#!/usr/bin/env bash
# `make demo`: build what is needed, boot our kernel in QEMU and run the main job on the stand-in
# drivers: a vivid CAPTURE buffer's dma-buf without vb2_resv (no fence: the gap) and with it
# (a pending vb2_resv WRITE fence that poll() waits on, signaled at DQBUF), the module's debugfs
# view, then the verifier on visl + Mesa: the bundled H.264 stream decoded through the request API
# and sampled through EGL under modes off/dqbuf/queue (scripts/guest/demo.sh). The guest's output
# is kept in build/demo/; the evidence (table.md, JSON reports, PNG triptychs) is copied to
# evidence/ and its table printed at the end.
#
#   scripts/demo.sh [--guest-only]
#
# It first installs what the machine lacks (scripts/toolchain.sh; a no-op when all is there).
# --guest-only: build nothing, boot the cached kernel with this tree's vb2_resv.ko and
# target/release binaries (what the setup.clone-anywhere test runs in its clones).
# VB2R_DEMO_FRAMES (20) and VB2R_DEMO_TRANSTIME_MS (200) are passed to the guest's demo.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
mode=""
case "${1:-}" in
"") ;;
--guest-only) mode=--guest-only ;;
*) die "usage: scripts/demo.sh [--guest-only]" ;;
esac
GUEST_APPEND=""
[ -n "${VB2R_DEMO_FRAMES:-}" ] && GUEST_APPEND+=" VB2R_DEMO_FRAMES=$VB2R_DEMO_FRAMES"
[ -n "${VB2R_DEMO_TRANSTIME_MS:-}" ] && GUEST_APPEND+=" VB2R_DEMO_TRANSTIME_MS=$VB2R_DEMO_TRANSTIME_MS"
run_guest_job demo 600 $mode
out=$BUILD/demo
cat "$out/demo.log"
[ -f "$out/evidence/table.md" ] || die "the demo guest wrote no evidence table (see $out/demo.log)"
rm -rf "$REPO/evidence"
cp -r "$out/evidence" "$REPO/evidence"
echo
echo "=== the four stories (evidence/stories.md; per-arm tables in evidence/table.md)"
cat "$REPO/evidence/stories.md"
echo
echo "demo output kept in $out/; evidence (table, JSON reports, PNG triptychs) in $REPO/evidence/:"
ls "$REPO/evidence"
