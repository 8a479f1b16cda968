#!/usr/bin/env bash
# Install everything a fresh Debian bookworm machine lacks to build and test vb2-resv.
# Idempotent: every step checks first and does nothing when its result is already there.
#
#   scripts/toolchain.sh            # everything
#   scripts/toolchain.sh --check    # report what is missing, install nothing, exit 1 if anything is
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

BINDGEN_VERSION=0.73.2

# Debian packages from bookworm (and bookworm-updates/security).
APT_PKGS=(
	# kernel build
	build-essential bc bison flex libelf-dev libssl-dev cpio xz-utils kmod rsync python3 pkg-config
	# Rust-for-Linux bindgen (kernel) and v4l2r's bindgen (userspace)
	libclang-19-dev clang-19 linux-libc-dev
	# an LLVM-built kernel (KERNEL_LLVM=-19): Rust + KASAN needs clang
	lld-19 llvm-19
	# guest
	qemu-system-x86 busybox-static
	# V4L2 tools used by the suite (v4l2-compliance, v4l2-ctl)
	v4l-utils
	# test streams
	ffmpeg x264
)

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

missing=()
for p in "${APT_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ $check_only = 1 ]; then
		echo "missing Debian packages: ${missing[*]}"
	else
		log "apt: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
fi

# rust-src: Rust-for-Linux builds `core` and `alloc` from source.
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
	if [ $check_only = 1 ]; then echo "missing: rustup component rust-src"; missing+=(rust-src)
	else log "rustup: adding rust-src"; rustup component add rust-src; fi
fi

# bindgen-cli, pinned: the kernel's rust/ Makefile runs it on the C headers.
if ! bindgen --version 2>/dev/null | grep -q "bindgen $BINDGEN_VERSION"; then
	if [ $check_only = 1 ]; then echo "missing: bindgen-cli $BINDGEN_VERSION"; missing+=(bindgen)
	else log "cargo: installing bindgen-cli $BINDGEN_VERSION"; cargo install bindgen-cli --locked --version "$BINDGEN_VERSION"; fi
fi

# Kernel UAPI headers newer than bookworm's 6.1 ones: v4l2r runs bindgen on videodev2.h at build
# time and needs the stateless-codec controls of recent kernels. Debian's linux-libc-dev from
# trixie-backports (the headers of the kernel we test on) is downloaded and unpacked into the cache,
# never installed; .cargo/config.toml points v4l2r's build at $CACHE/uapi.
if [ ! -f "$CACHE/uapi/include/linux/v4l2-controls.h" ] || ! grep -q V4L2_CID_STATELESS_AV1_SEQUENCE "$CACHE/uapi/include/linux/v4l2-controls.h"; then
	if [ $check_only = 1 ]; then echo "missing: UAPI headers in $CACHE/uapi"; missing+=(uapi)
	else
		aptx_setup trixie-backports
		log "fetching linux-libc-dev from trixie-backports for the UAPI headers"
		tmp=$(mktemp -d)
		(cd "$tmp" && aptx apt-get download -qq linux-libc-dev 2>/dev/null)
		dpkg -x "$tmp"/linux-libc-dev_*.deb "$tmp/x"
		rm -rf "$CACHE/uapi.new"
		mkdir -p "$CACHE/uapi.new/include"
		cp -a "$tmp/x/usr/include/linux" "$tmp/x/usr/include/asm-generic" "$CACHE/uapi.new/include/"
		cp -a "$tmp/x/usr/include/$(gcc -dumpmachine)/asm" "$CACHE/uapi.new/include/asm"
		rm -rf "$CACHE/uapi" "$tmp"
		mv "$CACHE/uapi.new" "$CACHE/uapi"
	fi
fi

if [ $check_only = 1 ] && [ ${#missing[@]} -gt 0 ]; then exit 1; fi
log "toolchain ready: $(rustc --version), $(bindgen --version 2>/dev/null), libclang $(ls -d /usr/lib/llvm-19 2>/dev/null)"
