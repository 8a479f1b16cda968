#!/usr/bin/env bash
# The arm64 (PineTab2) kernel: Debian's linux-source-$KERNEL cross-built with GCC
# (aarch64-linux-gnu-, as danctnix and Debian build theirs) for QEMU's `-M virt` guest and for the
# PineTab2 itself: Image, modules and the rk3566-pinetab2 device trees.
#
#   scripts/arm64/kernel.sh [7.3]              build (or reuse) it; prints the build dir on stdout
#   scripts/arm64/kernel.sh --print-dir [7.3]  print the build dir the current inputs map to
#
# Config: arm64 tinyconfig + kconfig/base.config + kconfig/debug.config (the same test drivers
# and debug options as the x86 guest) + kconfig/arm64.config (QEMU virt) +
# kconfig/arm64-pinetab2.config (the board), each option checked after olddefconfig.
# Cached in $CACHE/kbuild/arm64-<version>-<key>; the key hashes the source package version, the
# fragments, KEY_REV and the cross gcc/rustc/bindgen/libclang versions, and is distinct from every
# x86 key (it starts with "arm64"). The source tree is shared with the x86 build.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/lib.sh"

print_only=0
if [ "${1:-}" = "--print-dir" ]; then print_only=1; shift; fi
KERNEL=${1:-${KERNEL:-7.3}}
JOBS=${JOBS:-$(($(nproc) + 1))}
case "$KERNEL" in
7.3 | 7.2) SUITE=trixie-backports ;;
*) die "arm64: KERNEL=$KERNEL is not supported (use 7.3 or 7.2)" ;;
esac
PKG=linux-source-$KERNEL
CROSS=aarch64-linux-gnu-
command -v "${CROSS}gcc" >/dev/null || die "no ${CROSS}gcc: run 'make toolchain' (scripts/toolchain-arm64.sh)"
KMAKE=(ARCH=arm64 "CROSS_COMPILE=$CROSS")
DTBS=(rockchip/rk3566-pinetab2-v0.1.dtb rockchip/rk3566-pinetab2-v2.0.dtb)

aptx_setup "$SUITE"
SRC_VERSION=$(aptx apt-cache policy "$PKG" | awk '/Candidate:/ {print $2}')
[ -n "$SRC_VERSION" ] && [ "$SRC_VERSION" != "(none)" ] || die "$PKG is not available from $SUITE"

FRAGMENTS=("$REPO/kconfig/base.config" "$REPO/kconfig/debug.config")
[ -f "$REPO/kconfig/$KERNEL.config" ] && FRAGMENTS+=("$REPO/kconfig/$KERNEL.config")
FRAGMENTS+=("$REPO/kconfig/arm64.config" "$REPO/kconfig/arm64-pinetab2.config")
# Bump KEY_REV when this script changes what it builds (not for refactors).
KEY_REV=1
key=$({
	echo "arm64 $PKG $SRC_VERSION rev $KEY_REV ${KMAKE[*]} ${DTBS[*]}"
	cat "${FRAGMENTS[@]}"
	"${CROSS}gcc" --version | head -1
	rustc --version
	bindgen --version
	echo "$LIBCLANG_PATH"
} | sha256sum | cut -c1-12)
OUT=$CACHE/kbuild/arm64-$KERNEL-$key
if [ $print_only = 1 ]; then
	echo "$OUT"
	exit 0
fi
if [ -f "$OUT/.done" ]; then
	log "arm64 kernel $KERNEL ($SRC_VERSION) cached at $OUT"
	echo "$OUT"
	exit 0
fi
mkdir -p "$CACHE/kbuild"
# One build of this tree at a time (a second caller waits, then finds it done).
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
log "configuring arm64 $KERNEL in $OUT"
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" tinyconfig >/dev/null
KCONFIG_CONFIG="$OUT/.config" "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" "$OUT/.config" "${FRAGMENTS[@]}" >/dev/null
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" olddefconfig >/dev/null
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" rustavailable >/dev/null ||
	die "Rust is not available for arm64 $KERNEL: run 'make -C $SRC O=$OUT ${KMAKE[*]} rustavailable'"
"$here/kconfig-check.sh" "$OUT/.config" "${FRAGMENTS[@]}"

log "building arm64 $KERNEL ($SRC_VERSION) with -j$JOBS"
start=$(date +%s)
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" -j"$JOBS" Image modules "${DTBS[@]}"
echo "${KMAKE[*]}" >"$OUT/.make-args"
rm -rf "$OUT/modroot"
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" INSTALL_MOD_PATH="$OUT/modroot" modules_install >/dev/null
echo "$PKG $SRC_VERSION" >"$OUT/.source"
echo "$(($(date +%s) - start))" >"$OUT/.build-seconds"
log "arm64 kernel $KERNEL built in $(($(date +%s) - start)) s"
touch "$OUT/.done"
echo "$OUT"
