#!/usr/bin/env bash
# Fetch Debian's linux-source-$KERNEL, configure it from our fragments and build bzImage + modules.
#
#   scripts/kernel.sh [7.3|6.12]        build (or reuse) the kernel; prints the build dir on stdout
#   scripts/kernel.sh --print-dir [V]   print the build dir the current inputs map to, build nothing
#
# 7.3 comes from trixie-backports. It is only ever *downloaded* through a private apt state dir
# (no sources file is added to the system and nothing is installed from that suite, so libc and
# friends stay bookworm's). 6.12 is bookworm's own linux-source-6.12, from the system's sources.
#
# The build lands in $CACHE/kbuild/<version>-<key>, where <key> hashes the exact source package
# version, our config fragments, KEY_REV and the compiler/rustc/bindgen/libclang versions. A second run
# with the same inputs finds the `.done` stamp and does nothing.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

print_only=0
if [ "${1:-}" = "--print-dir" ]; then print_only=1; shift; fi
KERNEL=${1:-${KERNEL:-7.3}}
JOBS=${JOBS:-$(($(nproc) + 1))}

case "$KERNEL" in
7.3 | 7.2) SUITE=trixie-backports ;;
6.12) SUITE=system ;; # bookworm's own (6.12 comes through bookworm-security/updates)
*) die "KERNEL=$KERNEL is not supported (use 7.3, 7.2 or 6.12)" ;;
esac
PKG=linux-source-$KERNEL

aptx_setup "$SUITE"
SRC_VERSION=$(aptx apt-cache policy "$PKG" | awk '/Candidate:/ {print $2}')
[ -n "$SRC_VERSION" ] && [ "$SRC_VERSION" != "(none)" ] || die "$PKG is not available from $SUITE"

# KASAN=1: build with clang/lld 19 and kconfig/kasan.config (CONFIG_RUST allows KASAN only in a
# clang-built kernel). It doubles the guest suite's time under TCG, which puts a warm 7.x
# `make test` over its 5-minute budget (docs/ci.md), so 7.x defaults to gcc without KASAN;
# 6.12, which has no such budget and was measured with KASAN, defaults to it.
# KERNEL_LLVM and KCONFIG_EXTRA override what KASAN chooses.
KASAN=${KASAN:-}
[ -n "$KASAN" ] || { [ "$KERNEL" = 6.12 ] && KASAN=1 || KASAN=0; }
case "$KASAN" in
1) KERNEL_LLVM=${KERNEL_LLVM--19} KCONFIG_EXTRA=${KCONFIG_EXTRA-kconfig/kasan.config} ;;
0) KERNEL_LLVM=${KERNEL_LLVM-} KCONFIG_EXTRA=${KCONFIG_EXTRA-} ;;
*) die "KASAN=$KASAN: use 0 or 1" ;;
esac
KMAKE=(ARCH=x86_64)
[ -n "${KERNEL_LLVM:-}" ] && KMAKE+=("LLVM=$KERNEL_LLVM")

# --- the cache key ---
FRAGMENTS=("$REPO/kconfig/base.config" "$REPO/kconfig/debug.config")
[ -f "$REPO/kconfig/$KERNEL.config" ] && FRAGMENTS+=("$REPO/kconfig/$KERNEL.config")
# KCONFIG_EXTRA: more fragments (space-separated paths), e.g. kconfig/kasan.config.
for f in ${KCONFIG_EXTRA:-}; do
	[ -f "$f" ] || f=$REPO/$f
	[ -f "$f" ] || die "KCONFIG_EXTRA: no fragment $f"
	FRAGMENTS+=("$f")
done
# Bump KEY_REV when this script changes what it builds (not for refactors).
KEY_REV=1
key=$({
	echo "$PKG $SRC_VERSION rev $KEY_REV"
	cat "${FRAGMENTS[@]}"
	gcc --version | head -1
	rustc --version
	bindgen --version
	echo "$LIBCLANG_PATH"
	if [ -n "${KERNEL_LLVM:-}" ]; then echo "${KMAKE[*]}"; "clang$KERNEL_LLVM" --version | head -1; fi
} | sha256sum | cut -c1-12)
OUT=$CACHE/kbuild/$KERNEL-$key
if [ $print_only = 1 ]; then
	echo "$OUT"
	exit 0
fi
if [ -f "$OUT/.done" ]; then
	log "kernel $KERNEL ($SRC_VERSION) cached at $OUT"
	echo "$OUT"
	exit 0
fi

# --- the source tree, extracted once per source package version ---
SRC=$CACHE/src/$PKG-$SRC_VERSION
if [ ! -f "$SRC/.extracted" ]; then
	log "fetching $PKG $SRC_VERSION from $SUITE"
	tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
	(cd "$tmp" && aptx apt-get download -qq "$PKG=$SRC_VERSION" 2>/dev/null)
	dpkg -x "$tmp"/*.deb "$tmp/x"
	rm -rf "$SRC"
	mkdir -p "$SRC"
	tar -xf "$tmp"/x/usr/src/$PKG.tar.* -C "$SRC" --strip-components=1
	rm -rf "$tmp"
	touch "$SRC/.extracted"
fi

# --- configure: tinyconfig + our fragments, then verify every option we asked for stuck ---
mkdir -p "$OUT"
log "configuring $KERNEL in $OUT"
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" tinyconfig >/dev/null
KCONFIG_CONFIG="$OUT/.config" "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" "$OUT/.config" "${FRAGMENTS[@]}" >/dev/null
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" olddefconfig >/dev/null
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" rustavailable >/dev/null || die "Rust is not available for $KERNEL: run 'make -C $SRC O=$OUT rustavailable'"
"$here/kconfig-check.sh" "$OUT/.config" "${FRAGMENTS[@]}"

# --- build ---
log "building $KERNEL ($SRC_VERSION) with -j$JOBS"
start=$(date +%s)
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" -j"$JOBS" bzImage modules
# What an out-of-tree module build against this tree must pass to make (scripts/test.sh reads it).
echo "${KMAKE[*]}" >"$OUT/.make-args"
rm -rf "$OUT/modroot"
make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" INSTALL_MOD_PATH="$OUT/modroot" modules_install >/dev/null
echo "$PKG $SRC_VERSION" >"$OUT/.source"
log "kernel $KERNEL built in $(($(date +%s) - start)) s"
touch "$OUT/.done"
echo "$OUT"
