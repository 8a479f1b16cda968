#!/usr/bin/env bash
# Fetch Debian's linux-source-$KERNEL, configure it from our fragments and build bzImage + modules.
#
#   scripts/kernel.sh [7.3|6.12]        build (or reuse) the kernel; prints the build dir on stdout
#   scripts/kernel.sh --print-dir [V]   print the build dir the current inputs map to, build nothing
#
# KERNEL_VARIANT=test (the default) is the suite's kernel: kconfig/base.config + debug.config
# (lockdep, DEBUG_ATOMIC_SLEEP, DEBUG_MUTEXES, kmemleak; KASAN=1 adds kasan.config).
# KERNEL_VARIANT=bench (`make bench`) is the same kernel without those checkers: base.config +
# bench.config, gcc, never KASAN, so that timings are not mostly lockdep's; its build dir is
# $CACHE/kbuild/<version>-bench-<key> (the test kernel's key and dir do not change).
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

KERNEL_VARIANT=${KERNEL_VARIANT:-test}
case "$KERNEL_VARIANT" in
test | bench) ;;
*) die "KERNEL_VARIANT=$KERNEL_VARIANT is not supported (use test or bench)" ;;
esac

aptx_setup "$SUITE" || die "kernel $KERNEL: apt-get update for $SUITE failed; check the network and apt, then run the command again"
SRC_VERSION=$(aptx apt-cache policy "$PKG" | awk '/Candidate:/ {print $2}')
[ -n "$SRC_VERSION" ] && [ "$SRC_VERSION" != "(none)" ] ||
	die "kernel $KERNEL: $PKG is not available from $SUITE; check the network and apt (apt-cache policy $PKG), then run the command again"

# KASAN=1: build with clang/lld 19 and kconfig/kasan.config (CONFIG_RUST allows KASAN only in a
# clang-built kernel). It doubles the guest suite's time under TCG, which puts a warm 7.x
# `make test` over its 5-minute budget (docs/ci.md), so 7.x defaults to gcc without KASAN;
# 6.12, which has no such budget and was measured with KASAN, defaults to it.
# KERNEL_LLVM and KCONFIG_EXTRA override what KASAN chooses.
KASAN=${KASAN:-}
if [ "$KERNEL_VARIANT" = bench ]; then
	[ "$KASAN" != 1 ] || die "KERNEL_VARIANT=bench is the kernel without KASAN: drop KASAN=1"
	KASAN=0
fi
[ -n "$KASAN" ] || { [ "$KERNEL" = 6.12 ] && KASAN=1 || KASAN=0; }
case "$KASAN" in
1) KERNEL_LLVM=${KERNEL_LLVM--19} KCONFIG_EXTRA=${KCONFIG_EXTRA-kconfig/kasan.config} ;;
0) KERNEL_LLVM=${KERNEL_LLVM-} KCONFIG_EXTRA=${KCONFIG_EXTRA-} ;;
*) die "KASAN=$KASAN: use 0 or 1" ;;
esac
KMAKE=(ARCH=x86_64)
[ -n "${KERNEL_LLVM:-}" ] && KMAKE+=("LLVM=$KERNEL_LLVM")

# --- prerequisites: one line naming what is missing, instead of an error from deep inside Kbuild ---
kernel_prereqs() {
	local miss=() t sysroot
	for t in make gcc flex bison bc cpio perl rsync rustc bindgen; do
		command -v "$t" >/dev/null || miss+=("$t")
	done
	[ -f /usr/include/libelf.h ] || miss+=("libelf headers")
	[ -f /usr/include/openssl/opensslv.h ] || miss+=("OpenSSL headers")
	compgen -G "$LIBCLANG_PATH/libclang*.so*" >/dev/null || miss+=("libclang in $LIBCLANG_PATH")
	if command -v rustc >/dev/null; then
		sysroot=$(rustc --print sysroot)
		[ -f "$sysroot/lib/rustlib/src/rust/library/core/src/lib.rs" ] || miss+=("rustup's rust-src")
	fi
	if [ -n "${KERNEL_LLVM:-}" ]; then
		for t in "clang$KERNEL_LLVM" "ld.lld$KERNEL_LLVM" "llvm-ar$KERNEL_LLVM"; do
			command -v "$t" >/dev/null || miss+=("$t")
		done
	fi
	[ ${#miss[@]} = 0 ] && return 0
	die "kernel $KERNEL: missing $(printf '%s, ' "${miss[@]}" | sed 's/, $//'); run 'make toolchain' (or 'scripts/toolchain.sh --check' to see what it would install)"
}
kernel_prereqs

# --- the cache key ---
if [ "$KERNEL_VARIANT" = bench ]; then
	FRAGMENTS=("$REPO/kconfig/base.config" "$REPO/kconfig/bench.config")
else
	FRAGMENTS=("$REPO/kconfig/base.config" "$REPO/kconfig/debug.config")
fi
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
	# Only the bench variant adds a line: the test kernel's key stays what it always was.
	[ "$KERNEL_VARIANT" = test ] || echo "variant $KERNEL_VARIANT"
	cat "${FRAGMENTS[@]}"
	gcc --version | head -1
	rustc --version
	bindgen --version
	echo "$LIBCLANG_PATH"
	if [ -n "${KERNEL_LLVM:-}" ]; then echo "${KMAKE[*]}"; "clang$KERNEL_LLVM" --version | head -1; fi
} | sha256sum | cut -c1-12)
OUT=$CACHE/kbuild/$KERNEL-$key
[ "$KERNEL_VARIANT" = test ] || OUT=$CACHE/kbuild/$KERNEL-$KERNEL_VARIANT-$key
if [ $print_only = 1 ]; then
	echo "$OUT"
	exit 0
fi
if [ -f "$OUT/.done" ]; then
	log "kernel $KERNEL ($SRC_VERSION) cached at $OUT"
	echo "$OUT"
	exit 0
fi

# One build per key at a time: a second run (another clone, another make) waits here, then finds
# the result.
mkdir -p "$CACHE/kbuild"
exec 9>"$OUT.lock"
if ! flock -n 9; then
	log "another build of $OUT is running; waiting for it"
	flock 9
fi
if [ -f "$OUT/.done" ]; then
	log "kernel $KERNEL ($SRC_VERSION) cached at $OUT"
	echo "$OUT"
	exit 0
fi

# step NAME LOG WHAT-TO-DO CMD...: run one step with its output in LOG; a failure shows the log's
# last lines and ends with one line naming the step, the log and what to do.
step() {
	local name=$1 logf=$2 todo=$3
	shift 3
	run_logged "$logf" 20 "kernel $KERNEL: $name failed (log: $logf); $todo" "$@"
}

# --- the source tree, extracted once per source package version ---
SRC=$CACHE/src/$PKG-$SRC_VERSION
if [ ! -f "$SRC/.extracted" ]; then
	log "fetching $PKG $SRC_VERSION from $SUITE"
	mkdir -p "$CACHE/src"
	step "fetching $PKG" "$CACHE/src/$PKG-$SRC_VERSION.fetch.log" \
		"check the network and apt, then run the command again" fetch_kernel_source
fi

# --- configure: tinyconfig + our fragments, then verify every option we asked for stuck ---
# .configured is written once configure and the check have passed. A build dir without it was left
# by a run that failed or was killed while configuring: start it over. A build dir with it and
# without .done had its build interrupted: make resumes it.
if [ -d "$OUT" ] && [ ! -f "$OUT/.configured" ]; then
	log "$OUT is half-configured (an earlier run failed): starting it over"
	rm -rf "$OUT"
fi
configure() {
	make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" tinyconfig
	KCONFIG_CONFIG="$OUT/.config" "$SRC/scripts/kconfig/merge_config.sh" -m -O "$OUT" "$OUT/.config" "${FRAGMENTS[@]}"
	make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" olddefconfig
	make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" rustavailable ||
		{ echo "Rust is not available for $KERNEL: run 'make -C $SRC O=$OUT rustavailable'"; return 1; }
	"$here/kconfig-check.sh" "$OUT/.config" "${FRAGMENTS[@]}"
	if [ "$KERNEL_VARIANT" = bench ]; then
		# What bench.config turns off must be off (kconfig-check only checks what is set).
		local o bad=0
		for o in PROVE_LOCKING LOCKDEP DEBUG_LOCK_ALLOC DEBUG_ATOMIC_SLEEP DEBUG_MUTEXES DEBUG_KMEMLEAK KASAN; do
			if grep -q "^CONFIG_$o=y" "$OUT/.config"; then
				echo "kconfig: the bench kernel must not have CONFIG_$o"
				bad=1
			fi
		done
		[ $bad = 0 ]
	fi
}
if [ ! -f "$OUT/.configured" ]; then
	mkdir -p "$OUT"
	log "configuring $KERNEL in $OUT"
	step configure "$OUT.configure.log" \
		"if a tool is missing run 'make toolchain'; otherwise see the log (the next run starts the configuration over)" configure
	touch "$OUT/.configured"
fi

# --- build ---
log "building $KERNEL ($SRC_VERSION) with -j$JOBS (log: $OUT.build.log)"
start=$(date +%s)
build() {
	make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" -j"$JOBS" bzImage modules
	rm -rf "$OUT/modroot"
	make -s -C "$SRC" O="$OUT" "${KMAKE[@]}" INSTALL_MOD_PATH="$OUT/modroot" modules_install
}
step build "$OUT.build.log" "see the log; the next run resumes the build where it stopped" build
# What an out-of-tree module build against this tree must pass to make (scripts/test.sh reads it).
echo "${KMAKE[*]}" >"$OUT/.make-args"
echo "$PKG $SRC_VERSION" >"$OUT/.source"
log "kernel $KERNEL built in $(($(date +%s) - start)) s"
touch "$OUT/.done"
echo "$OUT"
