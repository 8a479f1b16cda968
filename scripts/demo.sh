#!/usr/bin/env bash
# `make demo`: build what is needed, boot our kernel in QEMU and run the main job on the stand-in
# drivers: a vivid CAPTURE buffer's dma-buf without vb2_resv (no fence: the gap) and with it
# (a pending vb2_resv WRITE fence that poll() waits on, signaled at DQBUF), the module's debugfs
# view, then the verifier on visl + Mesa: the bundled H.264 stream decoded through the request API
# and sampled through EGL under modes off/dqbuf/queue (scripts/guest/demo.sh). The guest's output
# is kept in build/demo/; the evidence (table.md, JSON reports, PNG triptychs) is copied to
# evidence/ and its table printed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
run_guest_job demo 600
out=$BUILD/demo
cat "$out/demo.log"
[ -f "$out/evidence/table.md" ] || die "the demo guest wrote no evidence table (see $out/demo.log)"
rm -rf "$REPO/evidence"
cp -r "$out/evidence" "$REPO/evidence"
echo
echo "=== the evidence table (evidence/table.md)"
cat "$REPO/evidence/table.md"
echo
echo "demo output kept in $out/; evidence (table, JSON reports, PNG triptychs) in $REPO/evidence/:"
ls "$REPO/evidence"
