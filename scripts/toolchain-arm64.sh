#!/usr/bin/env bash
# What the arm64 (PineTab2) builds and the arm64 guest need on top of scripts/toolchain.sh, from
# bookworm's own sources: the GCC cross toolchain (kernel, module, and the verifier's linker and
# glibc), QEMU for aarch64, and rustup's aarch64-unknown-linux-gnu standard library.
# Idempotent: a second run checks and installs nothing.
#
#   scripts/toolchain-arm64.sh            # install what is missing
#   scripts/toolchain-arm64.sh --check    # report what is missing, exit 1 if anything is
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
. "$here/arm64/lib.sh"

APT_PKGS=(
	# the kernel and the module: GCC, as danctnix and Debian build their arm64 kernels
	gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu
	# the verifier: glibc for aarch64-unknown-linux-gnu (its link and v4l2r's bindgen sysroot)
	libc6-dev-arm64-cross linux-libc-dev-arm64-cross
	# the arm64 guest (qemu-system-aarch64)
	qemu-system-arm
)
check_only=0
[ "${1:-}" = "--check" ] && check_only=1
missing=()
while read -r p st; do
	[ "$st" = installed ] || missing+=("$p")
done < <(for p in "${APT_PKGS[@]}"; do
	printf '%s %s\n' "$p" "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || echo none)"
done)
if [ ${#missing[@]} -gt 0 ]; then
	if [ $check_only = 1 ]; then echo "missing Debian packages: ${missing[*]}"
	else
		log "apt: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
			{ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
	fi
fi
if ! rustup target list --installed 2>/dev/null | grep -qx aarch64-unknown-linux-gnu; then
	if [ $check_only = 1 ]; then echo "missing: rustup target aarch64-unknown-linux-gnu"; missing+=(rust-target)
	else log "rustup: adding target aarch64-unknown-linux-gnu"; rustup target add aarch64-unknown-linux-gnu; fi
fi
# arm64 UAPI headers for v4l2r's bindgen when cross-building the verifier: the same
# linux-libc-dev (trixie-backports, 7.x) as scripts/toolchain.sh unpacks for x86, its arm64 build,
# whose asm/ is aarch64's. Downloaded and unpacked into the cache, never installed; .cargo/config.toml
# points BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu at it.
UAPI=$CACHE/uapi-arm64
if [ ! -f "$UAPI/include/asm/sve_context.h" ] || ! grep -qs V4L2_CID_STATELESS_AV1_SEQUENCE "$UAPI/include/linux/v4l2-controls.h"; then
	if [ $check_only = 1 ]; then echo "missing: arm64 UAPI headers in $UAPI"; missing+=(uapi-arm64)
	else
		log "fetching linux-libc-dev:arm64 from trixie-backports for the arm64 UAPI headers"
		arm64_apt_setup trixie-backports trixie-backports
		tmp=$(mktemp -d "$CACHE/tmp.XXXXXX")
		chmod 755 "$tmp"
		(cd "$tmp" && arm64_apt apt-get download -qq linux-libc-dev:arm64 >/dev/null)
		dpkg -x "$tmp"/linux-libc-dev_*.deb "$tmp/x"
		rm -rf "$UAPI.new"
		mkdir -p "$UAPI.new/include"
		cp -a "$tmp/x/usr/include/linux" "$tmp/x/usr/include/asm-generic" "$UAPI.new/include/"
		# -L: the package's asm/ headers are symlinks into /usr/lib/linux/uapi/arm64/.
		cp -rL "$tmp/x/usr/include/aarch64-linux-gnu/asm" "$UAPI.new/include/asm"
		rm -rf "$UAPI" "$tmp"
		mv "$UAPI.new" "$UAPI"
	fi
fi
if [ $check_only = 1 ] && [ ${#missing[@]} -gt 0 ]; then exit 1; fi
log "arm64 toolchain ready: $(aarch64-linux-gnu-gcc --version 2>/dev/null | head -1), $(qemu-system-aarch64 --version 2>/dev/null | head -1)"
