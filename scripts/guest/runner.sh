#!/bin/bash
# The guest test runner: runs each test in the suite (or VB2R_TESTS), prints TAP, and writes
# /tmp/out/tap.txt plus a log per test under /tmp/out/logs/. A test is a shell function t_<name>
# (dots become underscores) from scripts/guest/tests/*.sh; it passes with exit 0, is skipped with
# exit 77 (its last output line is the reason), and fails otherwise.
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
for f in "$here"/tests/*.sh; do . "$f"; done

# The suite, in order (scripts/guest/suite.txt; the host may hand this guest a part of it in
# VB2R_TESTS). dmesg-clean is decided on the host from dmesg.txt/kmemleak.txt/console.log.
mapfile -t SUITE < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$here/suite.txt" | awk '{print $1}')
if [ -n "${VB2R_TESTS:-}" ]; then IFS=, read -r -a SUITE <<<"$VB2R_TESTS"; fi

mkdir -p /tmp/out/logs
: >/tmp/out/tap.txt
tap() { echo "$*" | tee -a /tmp/out/tap.txt; }
tap "TAP version 13"
tap "# suite: ${SUITE[*]}"
tap "1..${#SUITE[@]}"
n=0
for name in "${SUITE[@]}"; do
	n=$((n + 1))
	fn="t_${name//[.-]/_}"
	logf=/tmp/out/logs/$name.log
	start=$(date +%s.%N)
	if ! declare -F "$fn" >/dev/null; then
		echo "no such test: $name" >"$logf"
		rc=1
	else
		# Each test runs in a subshell with a time limit of its own.
		( set -u; "$fn" ) >"$logf" 2>&1 &
		pid=$!
		limit=${TEST_TIMEOUT[$name]:-300}
		# Its output goes nowhere: a leftover sleep must not hold the console pipe open.
		( sleep "$limit" && kill -KILL "$pid" 2>/dev/null && echo "timed out after ${limit}s" >>"$logf" ) >/dev/null 2>&1 &
		watchdog=$!
		wait "$pid"
		rc=$?
		kill "$watchdog" 2>/dev/null
		wait "$watchdog" 2>/dev/null
	fi
	secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
	[ -n "${VB2R_VERBOSE:-}" ] && sed 's/^/    /' "$logf"
	if [ $rc = 0 ]; then
		tap "ok $n - $name # time=${secs}s"
	elif [ $rc = 77 ]; then
		tap "ok $n - $name # SKIP $(tail -n 1 "$logf")"
	else
		tap "not ok $n - $name # time=${secs}s exit=$rc"
		tail -n 15 "$logf" | sed 's/^/#   /' | tee -a /tmp/out/tap.txt
	fi
	# Leave nothing loaded behind for the next test.
	cleanup_modules
done

