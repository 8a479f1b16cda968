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
	# Written only when it changes, and atomically: another run may be reading it right now.
	local line="deb [signed-by=$key] http://deb.debian.org/debian $APTX_SUITE main"
	if [ "$(cat "$APTX/sources.list" 2>/dev/null)" != "$line" ]; then
		echo "$line" >"$APTX/sources.list.$$"
		mv -f "$APTX/sources.list.$$" "$APTX/sources.list"
	fi
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
	# No on-disk package cache (pkgcache.bin): two runs at once (make test's two clones) would
	# rebuild the shared one under each other, and one of them then saw no candidate at all.
	"$tool" -o Dir::Etc::SourceList="$APTX/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$APTX/lists" -o Dir::Cache="$APTX/cache" \
		-o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache= "$@"
}

# run_step STEP LOG WHAT-TO-DO CMD...: run a set-up command with its output in LOG; a failure shows
# the log's last lines and ends with one line naming the step, its log and what to do.
run_step() {
	local step=$1 logf=$2 todo=$3 rc=0
	shift 3
	mkdir -p "$(dirname "$logf")"
	"$@" >"$logf" 2>&1 || rc=$?
	if [ $rc != 0 ]; then
		tail -n 20 "$logf" >&2
		die "$step failed (log: $logf); $todo"
	fi
}

# run_guest_job JOB TIMEOUT [--guest-only]: installs what the machine lacks (scripts/toolchain.sh,
# a no-op when everything is there), builds (or reuses) the kernel $KERNEL (default 7.3), the module
# and the userspace binaries, then boots the kernel in QEMU with the job JOB (scripts/guest/JOB.sh)
# and its output in $BUILD/JOB/. --guest-only builds nothing: the kernel must be in the cache and
# vb2_resv.ko and target/release/ in this tree. GUEST_APPEND: more key=value words for the guest's
# environment (kernel command line). Sets KDIR. Dies when a step or the guest fails.
run_guest_job() {
	local job=$1 timeout_s=$2 guest_only=${3:-} logd=$BUILD/setup f append=()
	KERNEL=${KERNEL:-7.3}
	if [ "$guest_only" = --guest-only ]; then
		KDIR=$("$REPO/scripts/kernel.sh" --print-dir "$KERNEL")
		[ -f "$KDIR/.done" ] || die "$job --guest-only: kernel $KERNEL is not built ($KDIR); run 'make $job' once"
		for f in vb2_resv.ko target/release/vb2-resv target/release/vb2r-qtest; do
			[ -f "$REPO/$f" ] || die "$job --guest-only: no $f in $REPO; run 'make $job' once"
		done
	else
		"$REPO/scripts/toolchain.sh"
		"$REPO/scripts/kernel.sh" "$KERNEL" >/dev/null
		KDIR=$("$REPO/scripts/kernel.sh" --print-dir "$KERNEL")
		log "building vb2_resv.ko against $KDIR"
		run_step "kmod: building vb2_resv.ko" "$logd/kmod.log" \
			"if a tool is missing run 'make toolchain'; otherwise see the log" "$REPO/scripts/kmod.sh" "$KDIR"
		log "building the userspace binaries (cargo build --release: a few minutes the first time)"
		run_step "userspace: cargo build --release" "$logd/cargo.log" \
			"if a tool or a header is missing run 'make toolchain'; otherwise see the log" \
			cargo build --release --workspace
	fi
	rm -rf "${BUILD:?}/$job"
	[ -n "${GUEST_APPEND:-}" ] && append=(--append "$GUEST_APPEND")
	log "booting the $job guest (QEMU, TCG; console: $BUILD/$job/console.log)"
	"$REPO/scripts/qemu.sh" --kdir "$KDIR" --out "$BUILD/$job" --ko "$REPO/vb2_resv.ko" \
		--job "$job" --timeout "$timeout_s" "${append[@]}" ||
		die "the $job guest failed (console: $BUILD/$job/console.log)"
}

# fetch_kernel_source: Debian's $PKG=$SRC_VERSION, downloaded through aptx (aptx_setup first) and
# unpacked into $SRC, stamped with $SRC/.extracted. Run it in a subshell: its EXIT trap removes
# the download whatever happens (the variable is not local: the trap runs after the return).
fetch_kernel_source() {
	# Each step checked here: set -e does not hold in a subshell run as `(...) || die`.
	src_tmp=$(mktemp -d "$CACHE/tmp.XXXXXX") || return 1
	trap 'rm -rf "${src_tmp:-}"' EXIT
	# apt's sandbox user must be able to write the download.
	chmod 755 "$src_tmp" || return 1
	(cd "$src_tmp" && aptx apt-get download -q "$PKG=$SRC_VERSION") || return 1
	dpkg -x "$src_tmp"/*.deb "$src_tmp/x" || return 1
	rm -rf "$SRC" && mkdir -p "$SRC" || return 1
	tar -xf "$src_tmp"/x/usr/src/$PKG.tar.* -C "$SRC" --strip-components=1 || return 1
	touch "$SRC/.extracted"
}

# run_logged LOG LINES MESSAGE CMD...: runs CMD with set -e in a subshell, its output to LOG; on
# failure shows LOG's last LINES lines and dies with MESSAGE. Not `if ! "$@"` nor
# `"$@" || rc=$?`: bash ignores set -e in a function run as a condition, and in all it calls.
run_logged() {
	local logf=$1 lines=$2 msg=$3 rc
	shift 3
	set +e
	(set -e; "$@") >"$logf" 2>&1
	rc=$?
	set -e
	if [ $rc != 0 ]; then
		tail -n "$lines" "$logf" >&2
		die "$msg"
	fi
}
