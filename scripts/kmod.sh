#!/usr/bin/env bash
# Build vb2_resv.ko the Kbuild way (`make -C KDIR M=<this repository> modules`) into ./vb2_resv.ko.
#
#   scripts/kmod.sh [--full] KDIR [MAKE-ARGS...]
#
# MAKE-ARGS default to what KDIR was built with (KDIR/.make-args, written by scripts/kernel.sh:
# ARCH=x86_64 [LLVM=-19]), else ARCH=x86_64. --full removes the module's objects first, so that
# every warning shows again. The output goes to stdout/stderr; a failure ends with one line naming
# the step.
#
# Make splits words on whitespace (and treats ':', '#', '$' specially), so Kbuild cannot build a
# module whose directory has them in its path, e.g. a clone in "/root/my work/vb2-resv". Such a
# clone builds in a mirror of Kbuild and kmod/ under $CACHE/kmod-src/<hash of the path> (the same
# mirror every time, so make stays incremental), and the .ko is copied back.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

full=0
if [ "${1:-}" = "--full" ]; then full=1; shift; fi
[ $# -ge 1 ] || die "usage: scripts/kmod.sh [--full] KDIR [MAKE-ARGS...]"
kdir=$1
shift
[ -f "$kdir/Makefile" ] || die "kmod: no kernel build tree at KDIR '$kdir'; run 'make kernel' (or give the board kernel's build tree)"
kmake=("$@")
if [ ${#kmake[@]} = 0 ]; then
	kmake=(ARCH=x86_64)
	[ -f "$kdir/.make-args" ] && read -r -a kmake <"$kdir/.make-args"
fi

m=$REPO
if [[ $REPO =~ [[:space:]:#\$] ]]; then
	m=$CACHE/kmod-src/$(printf '%s' "$REPO" | sha256sum | cut -c1-12)
	mkdir -p "$m/kmod"
	# No --delete: the mirror keeps its objects (incremental builds); sources are copied over.
	rsync -a "$REPO/Kbuild" "$m/"
	rsync -a "$REPO/kmod/" "$m/kmod/"
	echo "kmod: '$REPO' has characters make cannot take in a path; building in $m" >&2
fi
if [ $full = 1 ]; then
	rm -f "$m"/kmod/*.o "$m"/*.o "$m"/vb2_resv.ko "$REPO/vb2_resv.ko"
fi
make -C "$kdir" M="$m" "${kmake[@]}" modules ||
	die "kmod: building vb2_resv.ko against $kdir failed (the compiler's messages are above); if a tool is missing run 'make toolchain'"
if [ "$m" != "$REPO" ]; then
	cp "$m/vb2_resv.ko" "$REPO/vb2_resv.ko"
fi
