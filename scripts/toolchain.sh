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

# Mesa from bookworm-backports (25.0.x, built for bookworm; unlike trixie's, safe to install here):
# the verifier's EGL/GLES path. Bookworm's Mesa 22.3 llvmpipe cannot import dma-bufs; 25.0's
# surfaceless EGL has EGL_EXT_image_dma_buf_import(_modifiers). The guest boots the host's root over
# 9p, so this is the guest's Mesa too. The backports source gets a file of its own, with the mirror of
# the system's own bookworm source; only the Mesa packages are taken from it.
MESA_MIN=25.0
MESA_PKGS=(libegl1 libegl-mesa0 libgles2 libgbm1 libgl1-mesa-dri mesa-libgallium)
BPO_SOURCES=/etc/apt/sources.list.d/bookworm-backports.sources
mesa_version() { dpkg-query -W -f='${Version}' libegl-mesa0 2>/dev/null || echo 0; }
mesa_ok() {
	dpkg --compare-versions "$(mesa_version)" ge "$MESA_MIN" || return 1
	for p in "${MESA_PKGS[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || return 1
	done
}
if ! mesa_ok; then
	if [ $check_only = 1 ]; then echo "missing: Mesa >= $MESA_MIN from bookworm-backports (have $(mesa_version))"; missing+=(mesa)
	else
		if [ ! -f "$BPO_SOURCES" ]; then
			mirror=$(awk '/^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") print u }' \
				/etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
			[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
			[ -n "$mirror" ] || die "no bookworm source in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list: cannot add bookworm-backports"
			log "apt: adding bookworm-backports ($BPO_SOURCES)"
			printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
				"$mirror" /usr/share/keyrings/debian-archive-keyring.gpg >"$BPO_SOURCES"
		fi
		log "apt: installing Mesa from bookworm-backports (have $(mesa_version))"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		apt-get install -y -qq --no-install-recommends -t bookworm-backports "${MESA_PKGS[@]}" >/dev/null
		mesa_ok || die "Mesa from bookworm-backports: have $(mesa_version), need >= $MESA_MIN"
	fi
fi

if [ $check_only = 1 ] && [ ${#missing[@]} -gt 0 ]; then exit 1; fi
log "toolchain ready: $(rustc --version), $(bindgen --version 2>/dev/null), libclang $(ls -d /usr/lib/llvm-19 2>/dev/null), Mesa $(mesa_version)"
