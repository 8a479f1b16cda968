#!/usr/bin/env bash
# The package.pkgbuild host test: what can be checked of packaging/arch/PKGBUILD without makepkg
# (not on Debian). Prints one TAP line.
#
#   scripts/test-pkgbuild.sh KDIR [MAKE-ARGS...]
#
# 1. bash sources it in a subshell (as makepkg does, with startdir/srcdir/pkgdir/CARCH set): no
#    error, pkgname/pkgver/arch/license/source set, prepare/build/package/pkgver defined;
# 2. its kernel-tree check refuses a copy of KDIR without rust/ (one line naming rust/) and a
#    tree without CONFIG_RUST, and accepts KDIR itself;
# 3. build() runs for real against KDIR in a srcdir whose vb2-resv/ is this repository (makepkg
#    would clone the commit there; the cargo build is then the one `make userspace` already did);
# 4. package() runs into a scratch pkgdir; every module in the build's modules.order and the
#    vb2-resv binary cargo built (a [[bin]] of userspace/Cargo.toml) are installed, byte-equal
#    to what the build produced, and every other installed file is the repository's own.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
T=package.pkgbuild
kdir=${1:?usage: scripts/test-pkgbuild.sh KDIR [MAKE-ARGS...]}
shift
kmake="$*"
pk=$REPO/packaging/arch/PKGBUILD
work=$BUILD/test-pkgbuild
rm -rf "$work"
mkdir -p "$work/src" "$work/pkg"
logf=$work/log
exec 3>&1 >"$logf" 2>&1
result() { echo "$1 - $T # $2" >&3; exit 0; }
notok() { result "not ok" "$* (log: $logf)"; }
case "$REPO" in *[[:space:]]*) result ok "SKIP the repository path has whitespace: make M= cannot take it (scripts/kmod.sh mirrors it; this test builds in place)" ;; esac
ln -s "$REPO" "$work/src/vb2-resv"

# in_pkgbuild CMD...: a subshell with the PKGBUILD sourced the way makepkg does it.
in_pkgbuild() {
	(
		set -eu
		startdir=$REPO/packaging/arch srcdir=$work/src pkgdir=$work/pkg CARCH=$(uname -m)
		VB2R_KDIR=$kdir VB2R_KERNVER=$(cat "$kdir/include/config/kernel.release") VB2R_KMAKE=$kmake
		export VB2R_KDIR VB2R_KERNVER VB2R_KMAKE
		# shellcheck disable=SC1090
		. "$pk"
		"$@"
	)
}

# 1. sources, defines what makepkg needs.
bash -n "$pk" || notok "bash -n: syntax error"
# shellcheck disable=SC2016
in_pkgbuild bash -c : || notok "sourcing it failed"
in_pkgbuild eval '
	[[ $pkgname == vb2-resv && -n $pkgver && -n $pkgrel ]] || { echo "pkgname/pkgver/pkgrel"; exit 1; }
	[[ " ${arch[*]} " == *" aarch64 "* && ${#license[@]} -gt 0 && ${#source[@]} -gt 0 ]] || { echo "arch/license/source"; exit 1; }
	for f in prepare build package pkgver _vb2r_check_kdir; do declare -F "$f" >/dev/null || { echo "no function $f"; exit 1; }; done
	[[ ${source[0]} == "vb2-resv::git+file://$REPO" ]] || { echo "source ${source[0]} is not this repository"; exit 1; }
' || notok "variables or functions missing: $(tail -n 1 "$logf")"

# 2. the kernel-tree check.
fake=$work/kdir-no-rust
mkdir -p "$fake/include/config"
cp "$kdir/Makefile" "$kdir/.config" "$fake/"
cp "$kdir/include/config/auto.conf" "$fake/include/config/"
if in_pkgbuild _vb2r_check_kdir "$fake" 2>"$work/no-rust.err"; then notok "a tree without rust/ was accepted"; fi
grep -q 'rust/' "$work/no-rust.err" || notok "the error for a tree without rust/ does not name rust/: $(cat "$work/no-rust.err")"
sed -i 's/^CONFIG_RUST=y$/# CONFIG_RUST is not set/' "$fake/.config"
if in_pkgbuild _vb2r_check_kdir "$fake" 2>"$work/no-config-rust.err"; then notok "a kernel without CONFIG_RUST was accepted"; fi
grep -q 'CONFIG_RUST' "$work/no-config-rust.err" || notok "the error for a kernel without CONFIG_RUST does not say so"
in_pkgbuild _vb2r_check_kdir "$kdir" || notok "the real tree $kdir was refused: $(tail -n 1 "$logf")"

# 3. build() for real.
t0=$(date +%s)
in_pkgbuild build || notok "build() failed"
tb=$(($(date +%s) - t0))

# 4. package(), and what it installed against what the build produced.
in_pkgbuild package || notok "package() failed"
krel=$(cat "$kdir/include/config/kernel.release")
(cd "$work/pkg" && find . -type f | sed 's|^\./||' | sort) >"$work/installed.txt"
bad=()
nmod=0
while read -r o; do
	ko=${o%.o}.ko
	inst=usr/lib/modules/$krel/extramodules/$(basename "$ko")
	nmod=$((nmod + 1))
	if [ ! -f "$work/pkg/$inst" ]; then bad+=("the built $ko is not installed (want $inst)")
	elif ! cmp -s "$REPO/$ko" "$work/pkg/$inst"; then bad+=("$inst differs from the built $ko"); fi
done <"$REPO/modules.order"
[ $nmod -gt 0 ] || bad+=("modules.order lists no module")
bins=$(cargo metadata --no-deps --format-version 1 --manifest-path "$REPO/Cargo.toml" 2>/dev/null |
	python3 -c 'import json,sys; print(" ".join(t["name"] for p in json.load(sys.stdin)["packages"] if p["name"] == "vb2-resv" for t in p["targets"] if "bin" in t["kind"]))')
[[ " $bins " == *" vb2-resv "* ]] || bad+=("cargo metadata has no vb2-resv binary (bins: $bins)")
if [ ! -f "$work/pkg/usr/bin/vb2-resv" ]; then bad+=("usr/bin/vb2-resv not installed")
elif ! cmp -s "$REPO/target/release/vb2-resv" "$work/pkg/usr/bin/vb2-resv"; then bad+=("usr/bin/vb2-resv differs from target/release/vb2-resv"); fi
# Everything else comes from the repository, unchanged (the kernel-release file is generated).
while read -r f; do
	case "$f" in
	usr/lib/modules/*/extramodules/* | usr/bin/vb2-resv) continue ;;
	usr/share/vb2-resv/kernel-release) [ "$(cat "$work/pkg/$f")" = "$krel" ] || bad+=("$f is not $krel"); continue ;;
	usr/share/vb2-resv/*) src=${f#usr/share/vb2-resv/} ;;
	usr/share/doc/vb2-resv/*) src=$(cd "$REPO" && { ls "${f##*/}" "docs/${f##*/}" 2>/dev/null | head -n 1; }) ;;
	*) bad+=("unexpected file $f"); continue ;;
	esac
	[ -z "$src" ] && [ "${f#usr/share/vb2-resv/streams/}" != "$f" ] && src=userspace/tests/streams/${f##*/}
	case "$f" in usr/share/vb2-resv/streams/*) src=userspace/tests/streams/${f##*/} ;; esac
	[ -n "$src" ] && cmp -s "$REPO/$src" "$work/pkg/$f" || bad+=("$f is not the repository's ${src:-file}")
done <"$work/installed.txt"
# board-evidence.sh finds the installed module where package() puts it.
grep -q '/usr/lib/modules/$rel/extramodules/vb2_resv.ko' "$REPO/scripts/board-evidence.sh" ||
	bad+=("scripts/board-evidence.sh does not look for the module in extramodules/")
[ ${#bad[@]} = 0 ] || notok "$(printf '%s; ' "${bad[@]}")"
result ok "sourced; refuses a tree without rust/ or CONFIG_RUST; build() ${tb}s; package() installed $(wc -l <"$work/installed.txt") files: $nmod module(s) from modules.order and the vb2-resv binary byte-equal to the build's, the rest the repository's"
