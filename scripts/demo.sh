#!/usr/bin/env bash
# `make demo`: build what is needed, boot our kernel in QEMU and run the main job on the stand-in
# drivers: a vivid CAPTURE buffer's dma-buf without vb2_resv (no fence: the gap) and with it
# (a pending vb2_resv WRITE fence that poll() waits on, signaled at DQBUF), then the module's
# debugfs view. The guest's output is shown and kept in build/demo/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
KERNEL=${KERNEL:-7.3}
"$here/kernel.sh" "$KERNEL" >/dev/null
KDIR=$("$here/kernel.sh" --print-dir "$KERNEL")
KMAKE=(ARCH=x86_64)
[ -f "$KDIR/.make-args" ] && read -r -a KMAKE <"$KDIR/.make-args"
make -s -C "$KDIR" M="$REPO" "${KMAKE[@]}" modules >/dev/null
cargo build --release --workspace -q
out=$BUILD/demo
rm -rf "$out"
"$here/qemu.sh" --kdir "$KDIR" --out "$out" --ko "$REPO/vb2_resv.ko" --job demo --timeout 600 ||
	die "the demo guest failed (see $out/console.log)"
cat "$out/demo.log"
echo
echo "demo output kept in $out/"
