#!/usr/bin/env bash
# The evidence run on the board, in one command (as root):
#
#   scripts/board-evidence.sh [options] STREAM.h264
#
#   1. `vb2-resv doctor` (text and JSON) into the output directory;
#   2. insmod vb2_resv.ko attach=<the decoder doctor found> (unless vb2_resv is already loaded);
#   3. `vb2-resv verify STREAM` over the arms of docs/rfc-evidence.md (modes off,dqbuf,queue,strict x
#      sampling at dqbuf,queued x images cached,per-frame, KWin's and the external import);
#   4. rmmod vb2_resv (only if this script loaded it);
#   5. a tarball of evidence/ (table.md, arm-*.json, PNG triptychs), the doctor reports, the
#      verifier's output and the kernel log lines of the run.
#
# Options:
#   --out DIR        where everything goes (default: ./board-evidence-<host>-<date>)
#   --ko FILE        the module (default: vb2_resv.ko next to this repository's Kbuild, else
#                    /usr/lib/modules/$(uname -r)/extramodules/vb2_resv.ko as packaging/arch installs it)
#   --bin FILE       the verifier (default: target/release/vb2-resv, else vb2-resv in PATH)
#   --kdir DIR       passed to doctor (the kernel build tree)
#   --attach DRIVER  vb2_resv's attach= (default: the decoder doctor found)
#   -- ARGS...       verify's arguments instead of the default arms (the stream and --evidence
#                    are added)
# Exit status: verify's (0 unless it could not run: the classes in the table are the result), or
# non-zero when a step could not run; the tarball is written whenever verify wrote evidence.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
die() { printf 'board-evidence: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'board-evidence: %s\n' "$*" >&2; }

out="" ko="" bin="" kdir="" attach="" stream="" verify_args=()
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--ko) ko=$2; shift 2 ;;
	--bin) bin=$2; shift 2 ;;
	--kdir) kdir=$2; shift 2 ;;
	--attach) attach=$2; shift 2 ;;
	--) shift; verify_args=("$@"); break ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) [ -z "$stream" ] || die "one stream only ($stream, $1)"; stream=$1; shift ;;
	esac
done
[ -n "$stream" ] || die "usage: scripts/board-evidence.sh [--out DIR] [--ko FILE] [--bin FILE] [--kdir DIR] [--attach DRIVER] STREAM.h264 [-- VERIFY-ARGS]"
[ -f "$stream" ] || die "no stream $stream"
[ "$(id -u)" = 0 ] || die "run it as root (insmod, rmmod, debugfs)"
rel=$(uname -r)
if [ -z "$bin" ]; then
	if [ -x "$repo/target/release/vb2-resv" ]; then bin=$repo/target/release/vb2-resv
	else bin=$(command -v vb2-resv) || die "no vb2-resv: build it (cargo build --release) or pass --bin"; fi
fi
[ -x "$bin" ] || die "--bin $bin is not executable"
if [ -z "$ko" ]; then
	for f in "$repo/vb2_resv.ko" "/usr/lib/modules/$rel/extramodules/vb2_resv.ko" "/usr/lib/modules/$rel/extramodules/vb2_resv.ko.zst"; do
		[ -f "$f" ] && { ko=$f; break; }
	done
fi
out=${out:-$PWD/board-evidence-$(hostname 2>/dev/null || echo board)-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
mountpoint -q /sys/kernel/debug 2>/dev/null || mount -t debugfs none /sys/kernel/debug 2>/dev/null || true

# 1. doctor: the reports go into the tarball whatever they say.
dargs=()
[ -n "$kdir" ] && dargs=(--kdir "$kdir")
say "1/5 vb2-resv doctor (before) -> $out/doctor.txt, doctor.json"
"$bin" doctor "${dargs[@]}" >"$out/doctor.txt" || die "vb2-resv doctor could not run (see above)"
"$bin" doctor --json "${dargs[@]}" >"$out/doctor.json" || die "vb2-resv doctor --json could not run"
cat "$out/doctor.txt" >&2
# The decoder doctor found (its JSON: "decoder": {"path": ..., "driver": ...}).
dec_driver=$(tr -d '\n' <"$out/doctor.json" | grep -o '"decoder": *{[^}]*}' | grep -o '"driver": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' || true)
dec_path=$(tr -d '\n' <"$out/doctor.json" | grep -o '"decoder": *{[^}]*}' | grep -o '"path": *"[^"]*"' | sed 's/.*"\([^"]*\)"$/\1/' || true)
[ -n "$dec_driver" ] || die "doctor found no stateless H.264 decoder (see $out/doctor.txt: its fix says what to load)"
attach=${attach:-$dec_driver}

# 2. insmod, unless it is there already.
loaded_here=0
echo "vb2r-board-evidence-start" >/dev/kmsg 2>/dev/null || true
if [ -d /sys/module/vb2_resv ]; then
	say "2/5 vb2_resv already loaded: left as it is (doctor.txt says whether it is attached to $dec_path)"
else
	[ -n "$ko" ] && [ -f "$ko" ] || die "vb2_resv is not loaded and no vb2_resv.ko was found (make kmod KDIR=/lib/modules/$rel/build, or --ko FILE)"
	say "2/5 insmod $ko attach=$attach"
	modprobe videobuf2_common 2>/dev/null || true
	case "$ko" in
	*.zst) zstd -dc "$ko" >"$out/.vb2_resv.ko" && ko_load=$out/.vb2_resv.ko ;;
	*) ko_load=$ko ;;
	esac
	insmod "$ko_load" attach="$attach" || die "insmod $ko failed: dmesg | tail says why (docs/pinetab2.md, 'What fails')"
	loaded_here=1
	[ "${ko_load}" = "$out/.vb2_resv.ko" ] && rm -f "$ko_load"
fi
unload() { if [ $loaded_here = 1 ] && [ -d /sys/module/vb2_resv ]; then say "4/5 rmmod vb2_resv"; rmmod vb2_resv || say "rmmod vb2_resv failed"; loaded_here=0; fi; }
trap unload EXIT

# 3. the verifier's arms.
[ ${#verify_args[@]} -gt 0 ] || verify_args=(--import both --modes off,dqbuf,queue,strict --sample-at dqbuf,queued --images cached,per-frame)
say "3/5 vb2-resv verify $(basename "$stream") --device $dec_path ${verify_args[*]} --evidence $out/evidence"
rm -rf "$out/evidence"
vrc=0
"$bin" verify "$stream" --device "$dec_path" "${verify_args[@]}" --evidence "$out/evidence" 2>&1 | tee "$out/verify.log" || vrc=${PIPESTATUS[0]}
"$bin" doctor --json "${dargs[@]}" >"$out/doctor-after.json" 2>/dev/null || true

# 4. rmmod.
unload
trap - EXIT

# 5. the tarball.
dmesg | sed -n '/vb2r-board-evidence-start/,$p' >"$out/dmesg.txt" 2>/dev/null || true
{
	echo "stream: $stream ($(wc -c <"$stream") bytes, sha256 $(sha256sum "$stream" | cut -d' ' -f1))"
	echo "kernel: $(uname -a)"
	echo "vb2-resv: $("$bin" --version 2>/dev/null) ($bin)"
	echo "module: ${ko:-already loaded} attach=$attach"
	echo "verify: ${verify_args[*]} (exit $vrc)"
	echo "repository: $(git -C "$repo" describe --always --dirty 2>/dev/null || echo unknown)"
} >"$out/run.txt"
[ -f "$out/evidence/table.md" ] || die "verify wrote no evidence table (exit $vrc; see $out/verify.log)"
tarball=$out.tar.gz
tar -czf "$tarball" -C "$(dirname "$out")" "$(basename "$out")"
say "5/5 $tarball: evidence/ (table.md, $(ls "$out"/evidence/*.json 2>/dev/null | wc -l) JSON reports, $(ls "$out"/evidence/*.png 2>/dev/null | wc -l) PNG), doctor.txt/json, verify.log, dmesg.txt, run.txt"
cat "$out/evidence/table.md"
echo "$tarball"
exit "$vrc"
