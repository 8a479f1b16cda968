#!/usr/bin/env bash
# `make test`: cargo tests of the workspace, then our kernel (cached), the module, and the QEMU
# suite. Prints TAP, ends with 'N passed, N failed[, N skipped]', writes build/results.json and
# exits non-zero on any failure. Phase times are printed at the end.
#
#   VB2R_TESTS='kmod.load-unload kmod.bad-param' make test   run only these guest tests
#   VB2R_GUESTS=1 make test                                   the suite in one guest (default 2)
#   KERNEL=6.12 make test                                     the same against 6.12
#   VB2R_TESTS=setup.clone-anywhere make test                 only that host test (no guest)
#
# It starts with the set-up a fresh machine needs (scripts/toolchain.sh: a no-op when everything
# is there). A set-up step that fails (toolchain, kernel, module, userspace build) ends the output
# with one line naming it and what to do.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
KERNEL=${KERNEL:-7.3}
OUT=$BUILD/test
rm -rf "$OUT"
mkdir -p "$OUT"
phases="$OUT/phases.tsv"
: >"$phases"
host_results="$OUT/host.tap"
: >"$host_results"

# Host tests named setup.* (scripts/test-setup.sh) run in a full run, or when VB2R_TESTS names
# them; VB2R_TESTS's other names are guest tests.
want_host() { [ -z "${VB2R_TESTS:-}" ] || [[ " ${VB2R_TESTS//,/ } " == *" $1 "* ]]; }
WANTED=${VB2R_TESTS:-}
GUEST_TESTS=$(for t in ${WANTED//,/ }; do case "$t" in setup.*) ;; *) printf '%s ' "$t" ;; esac; done)
GUEST_TESTS=${GUEST_TESTS% }

phase() { # phase NAME CMD... : run, time and log a phase; returns its status
	local name=$1 t0 rc
	shift
	t0=$(date +%s)
	log "phase $name"
	"$@" >"$OUT/$name.log" 2>&1
	rc=$?
	printf '%s\t%s\t%s\n' "$name" "$(($(date +%s) - t0))" "$rc" >>"$phases"
	if [ $rc != 0 ]; then
		echo "phase $name failed (exit $rc); last lines of $OUT/$name.log:" >&2
		tail -n 30 "$OUT/$name.log" >&2
	fi
	return $rc
}

# 0. Set-up: what a fresh machine lacks. Nothing else can run without it: stop here when it fails
# (the last line is the toolchain's own, naming the step and what to do).
phase toolchain "$here/toolchain.sh" || exit 1
grep '^toolchain: ' "$OUT/toolchain.log" | tail -n 1 >&2
host_test() { # host_test NAME PHASE: scripts/test-setup.sh NAME as phase PHASE, its TAP line into host.tap
	local st=0
	phase "$2" env SETUP_LOGS="$OUT" "$here/test-setup.sh" "$1" || st=$?
	if grep -E '^(not )?ok - setup\.' "$OUT/$2.log" >>"$host_results"; then return; fi
	echo "not ok - setup.$1 # scripts/test-setup.sh $1 exited $st without a result: see build/test/$2.log" >>"$host_results"
}
want_host setup.toolchain-noop && host_test toolchain-noop setup-noop

# 1. Host: the test streams the cargo tests and the guest use (the small ones are committed; the
# 1080p one is generated into build/streams), then cargo tests (the harness is built by them).
phase streams "$here/make-streams.sh" --big "$BUILD/streams" ||
	echo "not ok - streams # scripts/make-streams.sh failed: see build/test/streams.log" >>"$host_results"
phase cargo-test cargo test --workspace --release
rc=$?
ncargo=$(grep -E '^test result:' "$OUT/cargo-test.log" | awk '{s += $4} END {print s + 0}')
if [ $rc = 0 ]; then echo "ok - cargo.test # $ncargo cargo tests passed" >>"$host_results"
else echo "not ok - cargo.test # see build/test/cargo-test.log" >>"$host_results"; fi

# 2. Kernel, module, userspace binaries the guest runs.
kernel_ok=0
phase kernel "$here/kernel.sh" "$KERNEL" && kernel_ok=1
KDIR=$("$here/kernel.sh" --print-dir "$KERNEL" 2>/dev/null)
# The make arguments the kernel was built with (LLVM=... for a clang-built kernel).
KMAKE=(ARCH=x86_64)
[ -f "$KDIR/.make-args" ] && read -r -a KMAKE <"$KDIR/.make-args"
kmod_ok=0
if [ $kernel_ok = 1 ]; then
	# CLIPPY=1: the kernel's own clippy lints for the Rust part. Always a full build, so that
	# kmod.warnings sees every warning, not only those of files changed since the last run.
	# scripts/kmod.sh: the Kbuild way, `make -C KDIR M=$REPO`, except in a path make cannot take.
	phase kmod "$here/kmod.sh" --full "$KDIR" "${KMAKE[@]}" CLIPPY=1 && kmod_ok=1
	if [ $kmod_ok = 1 ]; then
		if grep -E '(warning|error)(\[[A-Za-z0-9_]+\])?:' "$OUT/kmod.log" >"$OUT/kmod-warnings.txt"; then
			echo "not ok - kmod.warnings # $(head -n 3 "$OUT/kmod-warnings.txt" | tr '\n' ' ')" >>"$host_results"
		else
			echo "ok - kmod.warnings # no compiler or clippy warning" >>"$host_results"
		fi
	fi
fi
phase userspace cargo build --release --workspace
userspace_ok=$?

# 2b. arm64 (the PineTab2) and Linux 7.2: the arm64 kernel (cached), the module and the verifier
# cross-built for it, the module against 7.2, and one test in the arm64 guest, doctor.arm64
# (scripts/arm64/test.sh --guest doctor.arm64, which also reports arm64.guest.dmesg-clean). The
# whole arm64 guest suite runs in `make test-arm64`; VB2R_ARM64_GUEST=1 runs it here too, and a
# VB2R_TESTS that does not name doctor.arm64 leaves the guest out (docs/ci.md, "arm64").
arm64_args=(--guest doctor.arm64)
if [ "${VB2R_ARM64_GUEST:-0}" = 1 ]; then
	arm64_args=()
elif [ -n "${VB2R_TESTS:-}" ] && ! want_host doctor.arm64; then
	arm64_args=(--builds-only)
fi
# The arm64 builds are the PineTab2's, and its kernels are 7.x: a KERNEL=6.12 suite builds them
# against 7.3 (scripts/arm64/kernel.sh knows no other).
case "$KERNEL" in 7.*) arm64_kernel=$KERNEL ;; *) arm64_kernel=7.3 ;; esac
phase arm64 env KERNEL="$arm64_kernel" "$here/arm64/test.sh" --tap "$OUT/arm64.tap" "${arm64_args[@]}"
cat "$OUT/arm64.tap" >>"$host_results"

# 3. The guest suite, split over VB2R_GUESTS guests that run at the same time (each is one QEMU
# process; TCG keeps about one host core busy per guest, so two guests use a 2-core machine).
# The split balances the weights in scripts/guest/suite.txt; every guest boots the same kernel,
# runs its part in suite order, and leaves its output in build/test/guest-N/.
guest_split() { # prints one line of test names per guest
	local want=$GUEST_TESTS
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/guest/suite.txt" |
		awk -v want="$want" -v n="${VB2R_GUESTS:-2}" '
		BEGIN { if (want != "") k = split(want, w, /[ ,]+/) }
		{ weight[$1] = $2 + 0; if (want == "") order[++m] = $1 }
		END {
			if (want != "") { m = 0; for (i = 1; i <= k; i++) if (w[i] != "") order[++m] = w[i] }
			if (n > m) n = m
			if (n < 1) n = 1
			# A test missing from suite.txt weighs 10.
			for (i = 1; i <= m; i++) { idx[i] = i; wt[i] = (order[i] in weight) ? weight[order[i]] : 10 }
			# Largest first onto the least-loaded guest.
			for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++)
				if (wt[idx[j]] > wt[idx[i]]) { t = idx[i]; idx[i] = idx[j]; idx[j] = t }
			for (i = 1; i <= m; i++) {
				best = 1
				for (g = 2; g <= n; g++) if (load[g] < load[best]) best = g
				load[best] += wt[idx[i]]; guest[idx[i]] = best
			}
			# Each guest keeps suite order.
			for (g = 1; g <= n; g++) {
				line = ""
				for (i = 1; i <= m; i++) if (guest[i] == g) line = line (line == "" ? "" : " ") order[i]
				print line
			}
		}'
}

run_guests() { # runs every guest at once; writes "dir<TAB>status" lines to $OUT/guests.tsv
	local ko="" g=0 pids=() dirs=() tests rc=0 i st
	[ $kmod_ok = 1 ] && ko=$REPO/vb2_resv.ko
	while read -r tests; do
		g=$((g + 1))
		dirs+=("$OUT/guest-$g")
		echo "guest-$g: $tests"
		"$here/qemu.sh" --kdir "$KDIR" --out "$OUT/guest-$g" --ko "$ko" --tests "$tests" \
			--timeout "${VB2R_TIMEOUT:-2400}" >"$OUT/qemu-$g.log" 2>&1 &
		pids+=($!)
	done < <(guest_split)
	: >"$OUT/guests.tsv"
	for i in "${!pids[@]}"; do
		wait "${pids[$i]}"
		st=$?
		printf '%s\t%s\n' "${dirs[$i]}" "$st" >>"$OUT/guests.tsv"
		if [ "$st" != 0 ]; then
			rc=$st
			echo "guest-$((i + 1)) failed (qemu.sh exit $st):"
			cat "$OUT/qemu-$((i + 1)).log"
		fi
	done
	return $rc
}

# The board kit's host tests (docs/pinetab2.md): run when VB2R_TESTS is unset or names them.
# kconfig.pinetab2 (four arm64 olddefconfigs, mostly one core) runs alongside the guests.
# doctor.arm64 ran in the arm64 phase above: not one for the x86 guests either.
want_board() { [ -z "${VB2R_TESTS:-}" ] || [[ " ${VB2R_TESTS//,/ } " == *" $1 "* ]]; }
GUEST_TESTS=$(for t in $GUEST_TESTS; do case "$t" in kconfig.pinetab2 | package.pkgbuild | doctor.arm64) ;; *) printf '%s ' "$t" ;; esac; done)
GUEST_TESTS=${GUEST_TESTS% }
kconfig_pid=""
if want_board kconfig.pinetab2; then "$here/kconfig-pinetab2.sh" check >"$OUT/kconfig-pinetab2.log" 2>&1 & kconfig_pid=$!; fi

guest_args=()
if [ -n "${VB2R_TESTS:-}" ] && [ -z "$GUEST_TESTS" ]; then
	: # only host tests were asked for: no guest
elif [ $kernel_ok = 1 ]; then
	phase qemu run_guests
	while IFS=$'\t' read -r d st; do guest_args+=(--guest-dir "$d" --guest-status "$st"); done <"$OUT/guests.tsv"
else
	guest_args=(--guest-dir "$OUT/guest-1" --guest-status 1)
fi

# The set-up test that boots guests of its own (after the suite's, so that they do not compete
# for the cores): clones of HEAD elsewhere run the demo's guest part.
if want_host setup.clone-anywhere; then
	if [ $kernel_ok = 1 ] && [ $kmod_ok = 1 ] && [ "$userspace_ok" = 0 ]; then
		host_test clone-anywhere setup-clones
	else
		echo "not ok - setup.clone-anywhere # not run: the kernel, the module or the userspace binaries did not build" >>"$host_results"
	fi
fi

if want_board package.pkgbuild; then
	if [ $kmod_ok = 1 ] && [ "$userspace_ok" = 0 ]; then
		phase package-pkgbuild "$here/test-pkgbuild.sh" "$KDIR" "${KMAKE[@]}"
		grep -E '^(not )?ok - package\.pkgbuild' "$OUT/package-pkgbuild.log" >>"$host_results" ||
			echo "not ok - package.pkgbuild # no result: see build/test/package-pkgbuild.log" >>"$host_results"
	else
		echo "not ok - package.pkgbuild # not run: the module or the userspace binaries did not build" >>"$host_results"
	fi
fi
if [ -n "$kconfig_pid" ]; then
	wait "$kconfig_pid"
	grep -E '^(not )?ok - kconfig\.pinetab2' "$OUT/kconfig-pinetab2.log" >>"$host_results" ||
		echo "not ok - kconfig.pinetab2 # no result: see build/test/kconfig-pinetab2.log" >>"$host_results"
fi

# 4. Report.
rc=0
"$REPO/target/release/vb2r-harness" report \
	--host "$host_results" \
	"${guest_args[@]}" \
	--kernel-ok "$kernel_ok" --kmod-ok "$kmod_ok" --userspace-ok "$([ "$userspace_ok" = 0 ] && echo 1 || echo 0)" \
	--phases "$phases" \
	--json "$BUILD/results.json" || rc=$?

# A failed set-up step ends the output with one line: its own error line, or a pointer to its log.
for p in kernel kmod userspace; do
	st=$(awk -F'\t' -v p="$p" '$1 == p { print $3 }' "$phases")
	[ -n "$st" ] && [ "$st" != 0 ] || continue
	last=$(grep '^error: ' "$OUT/$p.log" | tail -n 1)
	echo "${last:-error: $p: the $p step failed (log: $OUT/$p.log); if a tool is missing run 'make toolchain'}" >&2
	break
done
exit $rc
