#!/usr/bin/env bash
# The PineTab2 kernel fragments (kconfig/pinetab2.config, kconfig/pinetab2-debug.config).
#
#   scripts/kconfig-pinetab2.sh apply CONFIG [--debug]
#       Merge the fragment(s) into CONFIG (a distribution's .config) in place, "at least"
#       semantics: an option the fragment wants as a module (=m) that CONFIG already builds in
#       (=y) stays built in. Then run `make ARCH=arm64 olddefconfig` in the kernel tree and
#       check the result with `scripts/kconfig-check.sh .config "$CONFIG.pinetab2-wanted"` (the
#       effective fragment this writes next to CONFIG).
#   scripts/kconfig-pinetab2.sh check [--src DIR]
#       The kconfig.pinetab2 test: the fragments applied to Debian's arm64 7.3 config (from
#       linux-base-7.3.*-arm64 of trixie-backports: downloaded and unpacked, never installed)
#       and to arm64 defconfig, `make ARCH=arm64 olddefconfig` in a scratch O= dir of the 7.3
#       source tree, every option checked (scripts/kconfig-check.sh, plus the "is not set" lines
#       of the effective fragments). Prints one TAP line; exit 0 also for a skip (no aarch64
#       cross compiler: Kconfig's compiler checks need it).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
FRAG=$REPO/kconfig/pinetab2.config
DEBUG_FRAG=$REPO/kconfig/pinetab2-debug.config
TEST=kconfig.pinetab2

# effective BASE FRAGMENT...: the fragments' lines as they must end up in BASE's merge.
effective() {
	local base=$1 line name
	shift
	cat "$@" | while IFS= read -r line; do
		case "$line" in CONFIG_*=m) ;; CONFIG_*=*) echo "$line"; continue ;; *) continue ;; esac
		name=${line%%=*}
		if grep -qxF "$name=y" "$base"; then echo "$name=y"; else echo "$line"; fi
	done
}

# apply CONFIG FRAGMENT...: appends the effective fragment (Kconfig takes an option's last
# assignment) and keeps it as CONFIG.pinetab2-wanted for the check.
apply() {
	local cfg=$1 eff
	shift
	eff=$(effective "$cfg" "$@")
	printf '%s\n' "$eff" >"$cfg.pinetab2-wanted"
	{ echo "# --- vb2-resv kconfig/pinetab2*.config (scripts/kconfig-pinetab2.sh apply)"; echo "$eff"; } >>"$cfg"
}

case "${1:-}" in
apply)
	[ $# -ge 2 ] || die "usage: scripts/kconfig-pinetab2.sh apply CONFIG [--debug]"
	cfg=$2
	[ -f "$cfg" ] || die "no config file $cfg"
	frags=("$FRAG")
	[ "${3:-}" = --debug ] && frags+=("$DEBUG_FRAG")
	apply "$cfg" "${frags[@]}"
	echo "merged ${frags[*]##*/} into $cfg; now: make ARCH=arm64 olddefconfig, then scripts/kconfig-check.sh .config $cfg.pinetab2-wanted" >&2
	exit 0
	;;
check) shift ;;
*) die "usage: scripts/kconfig-pinetab2.sh apply CONFIG [--debug] | check [--src DIR]" ;;
esac

src=""
[ "${1:-}" = --src ] && src=$2
if [ -z "$src" ]; then
	src=$(ls -d "$CACHE"/src/linux-source-7.3-*/ 2>/dev/null | sort | tail -n 1)
	src=${src%/}
fi
skip() { echo "ok - $TEST # SKIP $*"; exit 0; }
[ -n "$src" ] && [ -f "$src/Makefile" ] || skip "no 7.3 source tree under $CACHE/src (scripts/kernel.sh 7.3 unpacks it)"
command -v aarch64-linux-gnu-gcc >/dev/null ||
	skip "no aarch64-linux-gnu-gcc (Kconfig's compiler checks need the cross compiler: apt-get install gcc-aarch64-linux-gnu, or the arm64 branch's 'make toolchain')"
for t in rustc bindgen; do
	command -v $t >/dev/null || { echo "not ok - $TEST # no $t: CONFIG_RUST needs it at configure time (run 'make toolchain')"; exit 1; }
done

work=$BUILD/kconfig-pinetab2
rm -rf "$work"
mkdir -p "$work"
logf=$work/log

# Debian's arm64 7.3 config: linux-base-<release>-arm64 carries /usr/lib/modules/<release>/config
# (7.3's packaging split the image package; linux-image-* only depends on it).
APTD=$CACHE/apt-board-arm64-trixie-backports
mkdir -p "$APTD/lists/partial" "$APTD/cache/archives/partial"
echo "deb [arch=arm64 signed-by=/usr/share/keyrings/debian-archive-trixie-automatic.gpg] http://deb.debian.org/debian trixie-backports main" >"$APTD/sources.list"
touch "$APTD/status"
A=(-o Dir::Etc::SourceList="$APTD/sources.list" -o Dir::Etc::SourceParts=/dev/null -o Dir::State::Lists="$APTD/lists"
	-o Dir::Cache="$APTD/cache" -o Dir::State::status="$APTD/status" -o APT::Architecture=arm64 -o APT::Architectures=arm64)
if [ -z "$(find "$APTD/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
	apt-get "${A[@]}" update -qq >>"$logf" 2>&1 || { echo "not ok - $TEST # apt-get update (arm64, trixie-backports) failed: see $logf"; exit 1; }
fi
pkg=$(apt-cache "${A[@]}" search '^linux-base-7\.3\.[0-9.]+\+deb[0-9]+-arm64$' 2>>"$logf" | awk '{print $1}' | sort -V | tail -n 1)
[ -n "$pkg" ] || { echo "not ok - $TEST # no linux-base-7.3.*-arm64 in trixie-backports (arm64)"; exit 1; }
deb=$(ls "$APTD"/cache/archives/"${pkg}"_*.deb 2>/dev/null | tail -n 1 || true)
if [ -z "$deb" ]; then
	(cd "$APTD/cache/archives" && apt-get "${A[@]}" download "$pkg" >>"$logf" 2>&1) ||
		{ echo "not ok - $TEST # downloading $pkg failed: see $logf"; exit 1; }
	deb=$(ls "$APTD"/cache/archives/"${pkg}"_*.deb | tail -n 1)
fi
mkdir -p "$work/deb"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$work/deb" --wildcards '*/config'
debcfg=$(ls "$work"/deb/usr/lib/modules/*/config 2>/dev/null | head -n 1 || true)
[ -f "$debcfg" ] || { echo "not ok - $TEST # $pkg has no usr/lib/modules/*/config"; exit 1; }

KM=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-)
bad=()
# one NAME BASE-CONFIG FRAGMENT...: O= dir, the base, the fragments merged, olddefconfig, checked.
one() {
	local name=$1 base=$2 o=$work/$1 wanted line n
	shift 2
	mkdir -p "$o"
	if [ "$base" = defconfig ]; then
		make -C "$src" O="$o" "${KM[@]}" defconfig >>"$o.log" 2>&1 || { bad+=("$name: defconfig failed ($o.log)"); return; }
	else
		cp "$base" "$o/.config"
	fi
	apply "$o/.config" "$@"
	wanted=$o/.config.pinetab2-wanted
	make -C "$src" O="$o" "${KM[@]}" olddefconfig >>"$o.log" 2>&1 || { bad+=("$name: olddefconfig failed ($o.log)"); return; }
	if ! "$REPO/scripts/kconfig-check.sh" "$o/.config" "$wanted" 2>"$o.check"; then
		bad+=("$name: $(grep -c '^kconfig: wanted' "$o.check") options did not stick: $(grep '^kconfig: wanted' "$o.check" | head -n 3 | sed 's/^kconfig: //' | tr '\n' ';')")
	fi
	# kconfig-check.sh checks the set options; the MODULE_SIG_FORCE rule is checked here.
	if grep -qx 'CONFIG_MODULE_SIG_FORCE=y' "$o/.config"; then bad+=("$name: MODULE_SIG_FORCE=y: an unsigned vb2_resv.ko would be refused"); fi
	n=$(wc -l <"$wanted")
	echo "$name: $n options checked after olddefconfig ($(grep -c '=y$' "$wanted") =y, $(grep -c '=m$' "$wanted") =m)" >>"$logf"
}
one debian-arm64 "$debcfg" "$FRAG"
one debian-arm64-debug "$debcfg" "$FRAG" "$DEBUG_FRAG"
one defconfig defconfig "$FRAG"
one defconfig-debug defconfig "$FRAG" "$DEBUG_FRAG"
if [ ${#bad[@]} = 0 ]; then
	echo "ok - $TEST # $(basename "$deb" .deb) config and arm64 defconfig, each with pinetab2.config and with pinetab2-debug.config: every option as wanted after olddefconfig ($(tr '\n' ' ' <"$logf" | grep -o '[0-9]* options' | head -n 4 | tr '\n' ' '| sed 's/ $//'))"
else
	echo "not ok - $TEST # $(printf '%s | ' "${bad[@]}" | sed 's/ | $//')"
	exit 1
fi
