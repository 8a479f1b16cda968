#!/usr/bin/env bash
# The arm64 (PineTab2) checks: the kernel, the module and the verifier cross-built for arm64, the
# module built against Linux 7.2 as well, and (unless --builds-only) the guest suite's tests that
# matter on the target, run in qemu-system-aarch64. Prints TAP lines ("ok - NAME # detail") and
# writes them to --tap FILE; exits non-zero when any fails.
#
#   scripts/arm64/test.sh [--builds-only | --guest 'NAME...'] [--tap FILE]
#
# make test-arm64 runs it whole; make test with --guest doctor.arm64 (docs/ci.md, "arm64").
# Named tests: arm64.kernel-builds, arm64.kmod-builds, arm64.verifier-builds, kmod.builds-7.2,
# arm64.guest.{load-unload,fence,hardirq-signal,verifier-decode,egl}, doctor.arm64 (each one or
# more tests of the shared guest suite, below) and arm64.guest.dmesg-clean (the guest's kernel log,
# whichever of them ran). --guest runs only the named guest tests it lists (dmesg-clean comes with
# any guest run).
# Work and logs in build/arm64/. The module is built in mirrors of its sources
# (build/arm64/kmod-<tree>/), so the x86 build in the repository is never touched.
set -uo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/lib.sh"

# The guest's named tests, in run order, and the tests of scripts/guest/ each one stands for.
GUEST_NAMED=(arm64.guest.load-unload arm64.guest.fence arm64.guest.hardirq-signal
	arm64.guest.verifier-decode arm64.guest.egl doctor.arm64)
declare -A GUEST_OF=(
	[arm64.guest.load-unload]="kmod.load-unload"
	[arm64.guest.fence]="fence.vivid.queued fence.vim2m.queued fence.error fence.cancel"
	[arm64.guest.hardirq-signal]="kmod.hardirq-signal"
	[arm64.guest.verifier-decode]="verifier.visl.decode"
	[arm64.guest.egl]="verifier.egl.kwin-import"
	[doctor.arm64]="doctor.arm64"
)
builds_only=0 tap="" selected=("${GUEST_NAMED[@]}")
while [ $# -gt 0 ]; do
	case "$1" in
	--builds-only) builds_only=1; shift ;;
	--guest)
		read -r -a selected <<<"${2//,/ }"
		[ ${#selected[@]} -gt 0 ] || die "arm64/test.sh: --guest needs one or more of: ${GUEST_NAMED[*]}"
		for n in "${selected[@]}"; do
			[ -n "${GUEST_OF[$n]:-}" ] || die "arm64/test.sh: --guest: no guest test named $n (one of: ${GUEST_NAMED[*]})"
		done
		shift 2 ;;
	--tap) tap=$2; shift 2 ;;
	*) die "arm64/test.sh: unknown argument $1" ;;
	esac
done
W=$BUILD/arm64
mkdir -p "$W"
tap=${tap:-$W/arm64.tap}
: >"$tap"
failed=0
report() { # report ok|fail|skip NAME DETAIL
	local line
	case "$1" in
	ok) line="ok - $2 # $3" ;;
	skip) line="ok - $2 # SKIP $3" ;;
	*) line="not ok - $2 # $3"; failed=1 ;;
	esac
	echo "$line" | tee -a "$tap"
}
timed() { # timed NAME LOG CMD...: runs CMD with its output in LOG, records the seconds
	local name=$1 logf=$2 t0 rc
	shift 2
	t0=$(date +%s)
	"$@" >"$logf" 2>&1
	rc=$?
	printf '%s\t%s\n' "$name" "$(($(date +%s) - t0))" >>"$W/times.tsv"
	return $rc
}
: >"$W/times.tsv"

# mirror_kmod DIR: the module's sources (Kbuild, kmod/) copied to DIR, for a build of its own.
mirror_kmod() {
	mkdir -p "$1/kmod"
	cp "$REPO/Kbuild" "$1/"
	rsync -a --delete --include='*.rs' --include='*.c' --include='*.h' --exclude='*' "$REPO/kmod/" "$1/kmod/"
}
# build_kmod KDIR DIR LOG: the module against KDIR in the mirror DIR (kernel's clippy lints on).
build_kmod() {
	local kdir=$1 dir=$2 logf=$3 kmake=()
	read -r -a kmake <"$kdir/.make-args"
	mirror_kmod "$dir"
	rm -f "$dir"/kmod/*.o "$dir"/*.o "$dir"/vb2_resv.ko
	timed "kmod $(basename "$dir")" "$logf" make -C "$kdir" M="$dir" "${kmake[@]}" CLIPPY=1 modules
}
# warnings LOG: compiler/clippy warnings and errors in a build log (modpost's "undefined"
# warnings of a tree without Module.symvers excepted).
warnings() { grep -E '(warning|error)(\[[A-Za-z0-9_]+\])?:' "$1" | grep -v 'modpost: .* undefined!' ; }

# 1. The arm64 kernel: Image, the PineTab2 device trees, the modules the board and the guest need.
KDIR=$("$here/arm64/kernel.sh" --print-dir)
if timed arm64-kernel "$W/kernel.log" "$here/arm64/kernel.sh"; then
	missing=()
	for f in arch/arm64/boot/Image arch/arm64/boot/dts/rockchip/rk3566-pinetab2-v2.0.dtb \
		arch/arm64/boot/dts/rockchip/rk3566-pinetab2-v0.1.dtb rust/libkernel.rmeta; do
		[ -s "$KDIR/$f" ] || missing+=("$f")
	done
	krel=$(cat "$KDIR/include/config/kernel.release")
	for m in hantro-vpu panfrost rockchipdrm vivid vim2m visl vgem; do
		[ -n "$(find "$KDIR/modroot/lib/modules/$krel" -name "$m.ko" -print -quit)" ] || missing+=("$m.ko")
	done
	grep -qx 'CONFIG_RUST=y' "$KDIR/.config" || missing+=(CONFIG_RUST)
	file -L "$KDIR/vmlinux" | grep -q 'ARM aarch64' || missing+=("an aarch64 vmlinux")
	if [ ${#missing[@]} = 0 ]; then
		report ok arm64.kernel-builds "$krel, GCC cross ($(aarch64-linux-gnu-gcc -dumpversion)), Rust, Image + rk3566-pinetab2 dtbs + hantro/panfrost/rockchipdrm and the test drivers as modules ($KDIR)"
	else
		report fail arm64.kernel-builds "missing from the build: ${missing[*]}"
	fi
	kernel_ok=1
else
	report fail arm64.kernel-builds "scripts/arm64/kernel.sh failed: $(tail -n 3 "$W/kernel.log" | tr '\n' ' ')"
	kernel_ok=0
fi

# 2. The module against it.
KO=$W/kmod-arm64/vb2_resv.ko
kmod_ok=0
if [ $kernel_ok = 1 ]; then
	if build_kmod "$KDIR" "$W/kmod-arm64" "$W/kmod-arm64.log"; then
		w=$(warnings "$W/kmod-arm64.log")
		vm=$(modinfo -F vermagic "$KO" 2>/dev/null)
		if ! file "$KO" | grep -q 'ARM aarch64'; then
			report fail arm64.kmod-builds "$KO is not an aarch64 module: $(file -b "$KO")"
		elif [ "${vm%% *}" != "$krel" ]; then
			report fail arm64.kmod-builds "vermagic '$vm' is not the kernel's $krel"
		elif [ -n "$w" ]; then
			report fail arm64.kmod-builds "warnings: $(echo "$w" | head -n 3 | tr '\n' ' ')"
		else
			report ok arm64.kmod-builds "aarch64 vb2_resv.ko for $krel, no compiler or clippy warning"
			kmod_ok=1
		fi
	else
		report fail arm64.kmod-builds "build failed: $(warnings "$W/kmod-arm64.log" | head -n 3 | tr '\n' ' ')"
	fi
else
	report fail arm64.kmod-builds "no arm64 kernel"
fi

# 3. The verifier (and the suite's helpers, vb2r-qtest and vb2r-harness) for aarch64 glibc.
ARM64_BIN=$REPO/target/aarch64-unknown-linux-gnu/release
userspace_ok=0
if timed arm64-userspace "$W/userspace.log" cargo build --release --workspace --target aarch64-unknown-linux-gnu; then
	bad=()
	for b in vb2-resv vb2r-qtest vb2r-harness; do
		readelf -h "$ARM64_BIN/$b" 2>/dev/null | grep -q 'Machine:.*AArch64' || bad+=("$b")
		readelf -l "$ARM64_BIN/$b" 2>/dev/null | grep -q 'ld-linux-aarch64.so.1' || bad+=("$b (interpreter)")
	done
	if [ ${#bad[@]} = 0 ]; then
		report ok arm64.verifier-builds "vb2-resv, vb2r-qtest, vb2r-harness: aarch64 ELF, glibc (ld-linux-aarch64.so.1)"
		userspace_ok=1
	else
		report fail arm64.verifier-builds "not aarch64 glibc binaries: ${bad[*]}"
	fi
else
	report fail arm64.verifier-builds "cargo build --target aarch64-unknown-linux-gnu failed: $(grep -m3 -E '^error' "$W/userspace.log" | tr '\n' ' ')"
fi

# 4. The module against Linux 7.2 (x86, a tree prepared for module builds: scripts/kprep.sh).
if timed prep-7.2 "$W/prep-7.2.log" "$here/kprep.sh" 7.2; then
	P=$("$here/kprep.sh" --print-dir 7.2)
	if build_kmod "$P" "$W/kmod-7.2" "$W/kmod-7.2.log"; then
		w=$(warnings "$W/kmod-7.2.log")
		vm=$(modinfo -F vermagic "$W/kmod-7.2/vb2_resv.ko" 2>/dev/null)
		if [ -n "$w" ]; then
			report fail kmod.builds-7.2 "warnings: $(echo "$w" | head -n 3 | tr '\n' ' ')"
		elif [ "${vm%%.*}" != 7 ] || [ "$(echo "$vm" | cut -d. -f2)" != 2 ]; then
			report fail kmod.builds-7.2 "vermagic '$vm' is not 7.2"
		else
			report ok kmod.builds-7.2 "vb2_resv.ko for ${vm%% *} ($(cat "$P/.source")), no compiler or clippy warning"
		fi
	else
		report fail kmod.builds-7.2 "build failed: $(warnings "$W/kmod-7.2.log" | head -n 3 | tr '\n' ' ')"
	fi
else
	report fail kmod.builds-7.2 "scripts/kprep.sh 7.2 failed: $(tail -n 3 "$W/prep-7.2.log" | tr '\n' ' ')"
fi

# 5. The guest: the selected named tests, in GUEST_NAMED's order.
guest_names="" GUEST_TESTS=""
for n in "${GUEST_NAMED[@]}"; do
	[[ " ${selected[*]} " == *" $n "* ]] || continue
	guest_names+="$n "
	GUEST_TESTS+="${GUEST_OF[$n]} "
done
guest_names+="arm64.guest.dmesg-clean"
GUEST_TESTS=${GUEST_TESTS% }
if [ $builds_only = 1 ]; then
	log "arm64: guest not run (--builds-only; make test-arm64 runs it)"
elif [ $kernel_ok != 1 ] || [ $kmod_ok != 1 ] || [ $userspace_ok != 1 ]; then
	for n in $guest_names; do report fail "$n" "not run: a build above failed"; done
else
	G=$W/guest
	ROOTFS=""
	timed arm64-rootfs "$W/rootfs.log" "$here/arm64/rootfs.sh" && ROOTFS=$("$here/arm64/rootfs.sh" --print-dir 2>/dev/null)
	guest_rc=1
	if [ -n "$ROOTFS" ]; then
		timed arm64-guest "$W/qemu.log" "$REPO/scripts/qemu-arm64.sh" --kdir "$KDIR" --rootfs "$ROOTFS" --out "$G" \
			--ko "$KO" --streams "$REPO/userspace/tests/streams" --tests "$GUEST_TESTS" --timeout "${VB2R_TIMEOUT:-2400}"
		guest_rc=$?
	fi
	# guest_result NAME: "ok", "skip REASON" or "fail REASON" from the guest's TAP.
	# A failure's detail: the test's own "FAIL: ..." lines when it wrote some, else its last lines.
	guest_result() {
		local line why
		line=$(grep -E "^(not )?ok [0-9]+ - $1( |$)" "$G/tap.txt" 2>/dev/null | head -n 1)
		case "$line" in
		"") echo "fail $1 never reported (guest exit $guest_rc, see build/arm64/guest/console.log)" ;;
		not*)
			why=$(grep -m 3 '^FAIL' "$G/logs/$1.log" 2>/dev/null)
			[ -n "$why" ] || why=$(grep -A3 -F "$line" "$G/tap.txt" | tail -n +2)
			echo "fail $1 failed: $(echo "$why" | tr '\n' ' ')" ;;
		*"# SKIP"*) echo "skip ${line#*# SKIP }" ;;
		*) echo "ok ${line#*# }" ;;
		esac
	}
	one() { # one NAME GUESTTEST...: NAME passes when every guest test passed
		local name=$1 t r all=ok detail="" skipped=""
		shift
		for t in "$@"; do
			r=$(guest_result "$t")
			case "$r" in
			ok*) detail+="$t ${r#ok } " ;;
			skip*) skipped+="$t: ${r#skip } " ;;
			*) all=fail; detail+="${r#fail } " ;;
			esac
		done
		if [ $all = fail ]; then report fail "$name" "$detail"
		elif [ -n "$skipped" ]; then report skip "$name" "$skipped"
		else report ok "$name" "$detail"; fi
	}
	for n in $guest_names; do
		# shellcheck disable=SC2086 # GUEST_OF's values are lists of test names
		[ "$n" = arm64.guest.dmesg-clean ] || one "$n" ${GUEST_OF[$n]}
	done
	[ -x "$REPO/target/release/vb2r-harness" ] || cargo build --release -q -p vb2r-harness >/dev/null 2>&1
	if [ -f "$G/dmesg.txt" ] && [ -f "$G/guest-done" ]; then
		if c=$(cat "$G/dmesg.txt" "$G/kmemleak.txt" 2>/dev/null | "$REPO/target/release/vb2r-harness" dmesg-check -); then
			report ok arm64.guest.dmesg-clean "no kernel complaint in the arm64 guest's log (lockdep, atomic sleep, kmemleak on)"
		else
			report fail arm64.guest.dmesg-clean "$(echo "$c" | head -n 3 | tr '\n' ' ')"
		fi
	else
		report fail arm64.guest.dmesg-clean "the guest did not finish (exit $guest_rc): see build/arm64/guest/console.log"
	fi
fi
awk -F'\t' '{ printf "  %-16s %4d s\n", $1, $2 }' "$W/times.tsv" >&2
exit $failed
