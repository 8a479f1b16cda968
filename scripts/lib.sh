# Shared helpers for the scripts in this folder. Source it; it defines no side effects.
# shellcheck shell=bash

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${BUILD:-$REPO/build}
# Kernel trees and their builds are big and slow: keep them outside the work tree so that
# a fresh clone on the same machine (as CI makes) reuses them.
CACHE=${VB2_RESV_CACHE:-/var/cache/vb2-resv}
export LIBCLANG_PATH=${LIBCLANG_PATH:-/usr/lib/llvm-19/lib}
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# --- a private apt view of one Debian suite, so that the system's sources stay untouched ---
# aptx_setup SUITE, then: aptx apt-get download PKG / aptx apt-cache policy PKG.
# Packages from another suite are only ever downloaded and unpacked this way, never installed.
aptx_setup() {
	APTX_SUITE=$1
	# "system": the machine's own sources (bookworm and its updates), used as they are.
	[ "$APTX_SUITE" = system ] && return 0
	APTX=$CACHE/apt-$APTX_SUITE
	mkdir -p "$APTX/lists/partial" "$APTX/cache/archives/partial"
	local key=/usr/share/keyrings/debian-archive-keyring.gpg
	case "$APTX_SUITE" in trixie*) key=/usr/share/keyrings/debian-archive-trixie-automatic.gpg ;; esac
	echo "deb [signed-by=$key] http://deb.debian.org/debian $APTX_SUITE main" >"$APTX/sources.list"
	# Refresh at most once a day.
	if [ -z "$(find "$APTX/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
		aptx apt-get update -qq >/dev/null
	fi
}
aptx() {
	local tool=$1
	shift
	if [ "$APTX_SUITE" = system ]; then
		"$tool" "$@"
		return
	fi
	"$tool" -o Dir::Etc::SourceList="$APTX/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$APTX/lists" -o Dir::Cache="$APTX/cache" "$@"
}

# run_guest_job JOB TIMEOUT: builds (or reuses) the kernel $KERNEL (default 7.3), the module and
# the userspace binaries, then boots the kernel in QEMU with the job JOB (scripts/guest/JOB.sh)
# and its output in $BUILD/JOB/. Sets KDIR. Dies when the guest fails.
run_guest_job() {
	local job=$1 timeout_s=$2 kmake=(ARCH=x86_64)
	KERNEL=${KERNEL:-7.3}
	"$REPO/scripts/kernel.sh" "$KERNEL" >/dev/null
	KDIR=$("$REPO/scripts/kernel.sh" --print-dir "$KERNEL")
	[ -f "$KDIR/.make-args" ] && read -r -a kmake <"$KDIR/.make-args"
	make -s -C "$KDIR" M="$REPO" "${kmake[@]}" modules >/dev/null
	cargo build --release --workspace -q
	rm -rf "${BUILD:?}/$job"
	"$REPO/scripts/qemu.sh" --kdir "$KDIR" --out "$BUILD/$job" --ko "$REPO/vb2_resv.ko" \
		--job "$job" --timeout "$timeout_s" ||
		die "the $job guest failed (see $BUILD/$job/console.log)"
}
