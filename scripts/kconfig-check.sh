#!/usr/bin/env bash
# kconfig-check.sh CONFIG FRAGMENT...
# Fails, naming each option, when an option a fragment sets (=y/=m/value) did not end up in CONFIG
# with that value: Kconfig silently drops options whose dependencies are missing.
set -euo pipefail
config=$1
shift
bad=0
while IFS= read -r line; do
	case "$line" in CONFIG_*=*) ;; *) continue ;; esac
	name=${line%%=*}
	if ! grep -qxF "$line" "$config"; then
		got=$(grep -E "^$name=|^# $name is not set" "$config" || echo "absent")
		echo "kconfig: wanted $line, got: $got" >&2
		bad=1
	fi
done < <(cat "$@")
[ $bad = 0 ] || { echo "kconfig: some options did not stick (missing dependencies?)" >&2; exit 1; }
