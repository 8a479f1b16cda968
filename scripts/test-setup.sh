#!/usr/bin/env bash
# The set-up tests of `make test`: host-side checks that the README's two commands work for a
# newcomer. scripts/test.sh runs them and adds their TAP lines to build/test/host.tap; each can be
# run by hand. Each prints one TAP line on stdout (`ok - setup.NAME # detail`), what it did on
# stderr, and exits 0 when it passes, 1 when it fails.
#
#   scripts/test-setup.sh toolchain-noop    `make toolchain` where everything is present changes
#                                            nothing, says so, and takes < 5 s
#   scripts/test-setup.sh clone-anywhere    the committed HEAD cloned into /tmp/vb2r-XXXXXX and into
#                                            "$HOME/vb2r clone XXXXXX" (/root, and a space) runs the
#                                            guest part of `make demo` from each: the evidence table
#                                            appears. Uses the cached kernel, and copies this tree's
#                                            target/release binaries in (a cold cargo build takes
#                                            minutes); builds vb2_resv.ko in each clone (scripts/kmod.sh).
#
# Logs: $SETUP_LOGS (default build/test-setup/). VB2R_SETUP_FRAMES: frames per demo run (4).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
LOGS=${SETUP_LOGS:-$BUILD/test-setup}
mkdir -p "$LOGS"

ok() { echo "ok - setup.$1 # $2"; exit 0; }
notok() { echo "not ok - setup.$1 # $2"; exit 1; }

# What a no-op toolchain run must leave as it was: the package database, apt's lists, cache, log
# and sources, the bindgen binary, the UAPI headers, cargo's installed crates, rustup's components.
toolchain_state() {
	sha256sum /var/lib/dpkg/status
	stat -c '%n %s %Y' "$(command -v bindgen)" /var/lib/apt/lists /var/cache/apt/pkgcache.bin \
		/var/log/apt/history.log /etc/apt/sources.list.d /etc/apt/sources.list.d/* \
		"$CACHE/uapi" "$CACHE/uapi/include/linux/v4l2-controls.h" "$HOME/.cargo/.crates.toml" 2>/dev/null
	rustup component list --installed 2>/dev/null
	return 0
}

t_toolchain_noop() {
	local before after out rc t0 ms
	before=$(toolchain_state)
	t0=$(date +%s%N)
	out=$("$here/toolchain.sh" 2>&1)
	rc=$?
	ms=$((($(date +%s%N) - t0) / 1000000))
	after=$(toolchain_state)
	echo "$out" >"$LOGS/toolchain-noop.log"
	echo "$out" >&2
	[ $rc = 0 ] || notok toolchain-noop "scripts/toolchain.sh exited $rc: $(tail -n 1 <<<"$out")"
	if [ "$before" != "$after" ]; then
		diff <(echo "$before") <(echo "$after") >&2
		notok toolchain-noop "the run changed the machine: $(diff <(echo "$before") <(echo "$after") | grep '^>' | head -n 3 | tr '\n' ' ')"
	fi
	grep -q 'nothing to do' <<<"$out" || notok toolchain-noop "it did not say 'nothing to do': $(tail -n 1 <<<"$out")"
	[ $ms -lt 5000 ] || notok toolchain-noop "took ${ms} ms (limit 5000)"
	ok toolchain-noop "nothing to do, in $ms ms; dpkg status, apt lists/cache/log/sources, bindgen, UAPI headers, cargo crates, rustup components unchanged"
}

t_clone_anywhere() {
	local kdir head f d i pids=() dirs=() rc bad="" frames=${VB2R_SETUP_FRAMES:-4} t0 secs
	kdir=$("$here/kernel.sh" --print-dir "${KERNEL:-7.3}") || notok clone-anywhere "kernel.sh --print-dir failed"
	[ -f "$kdir/.done" ] || notok clone-anywhere "kernel ${KERNEL:-7.3} is not built ($kdir)"
	for f in vb2-resv vb2r-qtest vb2r-harness; do
		[ -x "$REPO/target/release/$f" ] || notok clone-anywhere "no target/release/$f in $REPO (cargo build --release first)"
	done
	head=$(git -C "$REPO" rev-parse HEAD) || notok clone-anywhere "$REPO is not a git repository"
	dirs=("$(mktemp -d /tmp/vb2r-XXXXXX)" "$(mktemp -d "$HOME/vb2r clone XXXXXX")")
	t0=$(date +%s)
	for i in "${!dirs[@]}"; do
		d=${dirs[$i]}
		echo "clone $((i + 1)): $d (HEAD ${head:0:12})" >&2
		(
			set -e
			git clone -q --no-checkout "$REPO" "$d"
			git -C "$d" checkout -q --detach "$head"
			mkdir -p "$d/target/release"
			for f in vb2-resv vb2r-qtest vb2r-harness; do cp -p "$REPO/target/release/$f" "$d/target/release/"; done
			cd "$d"
			# The clone's own scripts, with its own build dir: nothing of this tree's environment.
			env -u BUILD scripts/kmod.sh "$kdir"
			env -u BUILD VB2R_DEMO_FRAMES="$frames" scripts/demo.sh --guest-only
		) >"$LOGS/clone-$((i + 1)).log" 2>&1 &
		pids+=($!)
	done
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}"
		rc=$?
		d=${dirs[$i]}
		if [ $rc != 0 ] || ! [ "$(grep -c '^|' "$d/evidence/table.md" 2>/dev/null)" -ge 3 ]; then
			bad+="'$d': no evidence table (exit $rc; $LOGS/clone-$((i + 1)).log ends: $(tail -n 2 "$LOGS/clone-$((i + 1)).log" | tr '\n' ' ')) "
		fi
	done
	secs=$(($(date +%s) - t0))
	[ -z "$bad" ] || notok clone-anywhere "$bad(clones kept)"
	for d in "${dirs[@]}"; do
		rm -rf "$d" "$CACHE/kmod-src/$(printf '%s' "$d" | sha256sum | cut -c1-12)"
	done
	ok clone-anywhere "HEAD ${head:0:12} cloned into /tmp and into '$HOME/vb2r clone ...': evidence table from each, guests at once, $frames frames, ${secs} s"
}

case "${1:-}" in
toolchain-noop) t_toolchain_noop ;;
clone-anywhere) t_clone_anywhere ;;
*) die "usage: scripts/test-setup.sh toolchain-noop|clone-anywhere" ;;
esac
