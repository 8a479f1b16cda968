#!/usr/bin/env bash
# A kernel tree prepared for out-of-tree module builds only: configured like our test kernel,
# `make prepare` plus the Rust crates in rust/ (core, kernel, macros, bindings), but no vmlinux
# and no modules of its own. Enough to compile and link vb2_resv.ko against another kernel line
# (modpost has no Module.symvers here, so unresolved symbols are warnings: KBUILD_MODPOST_WARN=1;
# the module is never loaded from this tree). About a third of a full build.
#
#   scripts/kprep.sh [7.2]              prepare (or reuse) it; prints the tree on stdout
#   scripts/kprep.sh --print-dir [7.2]
#
# Cached in $CACHE/kbuild/prep-<version>-<key> (the key hashes what scripts/kernel.sh hashes,
# with a "prep" prefix of its own, so it never names a full build's directory).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

print_only=0
if [ "${1:-}" = "--print-dir" ]; then print_only=1; shift; fi
KERNEL=${1:-7.2}
JOBS=${JOBS:-$(($(nproc) + 1))}
case "$KERNEL" in
7.2 | 7.3) SUITE=trixie-backports ;;
*) die "kprep: KERNEL=$KERNEL is not supported (use 7.2)" ;;
esac
PKG=linux-source-$KERNEL
KMAKE=(ARCH=x86_64)
aptx_setup "$SUITE"
SRC_VERSION=$(aptx apt-cache policy "$PKG" | awk '/Candidate:/ {print $2}')
[ -n "$SRC_VERSION" ] && [ "$SRC_VERSION" != "(none)" ] || die "$PKG is not available from $SUITE"

FRAGMENTS=("$REPO/kconfig/base.config" "$REPO/kconfig/debug.config")
[ -f "$REPO/kconfig/$KERNEL.config" ] && FRAGMENTS+=("$REPO/kconfig/$KERNEL.config")
KEY_REV=1
key=$({
	echo "prep $PKG $SRC_VERSION rev $KEY_REV ${KMAKE[*]}"
	cat "${FRAGMENTS[@]}"
	gcc --version | head -1
	rustc --version
	bindgen --version
	echo "$LIBCLANG_PATH"
} | sha256sum | cut -c1-12)
OUT=$CACHE/kbuild/prep-$KERNEL-$key
if [ $print_only = 1 ]; then echo "$OUT"; exit 0; fi
if [ -f "$OUT/.done" ]; then
	log "prepared tree $KERNEL ($SRC_VERSION) cached at $OUT"
	echo "$OUT"
	exit 0
fi
mkdir -p "$CACHE/kbuild"
exec 9>"$OUT.lock"
flock 9
if [ -f "$OUT/.done" ]; then echo "$OUT"; exit 0; fi

SRC=$CACHE/src/$PKG-$SRC_VERSION
if [ ! -f "$SRC/.extracted" ]; then
	log "fetching $PKG $SRC_VERSION from $SUITE"
	mkdir -p "$CACHE/src"
	(fetch_kernel_source) || die "fetching $PKG $SRC_VERSION from $SUITE failed: check the network and apt"
fi

mkdir -p "$OUT"
log "configuring $KERNEL (prepared tree) in $OUT"
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" tinyconfig >/dev/null
KCONFIG_CONFIG="$OUT/.config" "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" "$OUT/.config" "${FRAGMENTS[@]}" >/dev/null
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" olddefconfig >/dev/null
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" rustavailable >/dev/null || die "Rust is not available for $KERNEL"
"$here/kconfig-check.sh" "$OUT/.config" "${FRAGMENTS[@]}"
log "preparing $KERNEL ($SRC_VERSION): prepare + rust/, -j$JOBS"
start=$(date +%s)
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" -j"$JOBS" prepare
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" -j"$JOBS" rust/
# modpost and the module linker script, which a full build makes on its way to vmlinux.
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" -j"$JOBS" scripts/mod/ scripts/module.lds 2>/dev/null ||
	make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" -j"$JOBS" modules_prepare
echo "${KMAKE[*]} KBUILD_MODPOST_WARN=1" >"$OUT/.make-args"
echo "$PKG $SRC_VERSION" >"$OUT/.source"
log "prepared $KERNEL in $(($(date +%s) - start)) s"
touch "$OUT/.done"
echo "$OUT"
