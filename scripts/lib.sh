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
