#!/usr/bin/env bash
# Install everything a fresh Debian bookworm machine lacks to build and test vb2-resv.
# Idempotent: every step checks first and does nothing when its result is already there; a run
# that finds everything present changes nothing and says so ("nothing to do"), in well under a
# second. `make demo`, `make test` and `make bench` run it first. A failed step ends with one
# line naming it, its log (build/toolchain/STEP.log) and what to do.
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
	# a real compositor in the loop (vb2-resv present, issue 14): headless GL Weston with --debug
	# for its screenshooter; wayland-protocols for the XML files the client's protocol code is
	# generated from
	weston wayland-protocols
)

check_only=0
[ "${1:-}" = "--check" ] && check_only=1

# What this run installed (empty: nothing to do) and what --check found missing.
did=() missing=()
LOGDIR=$BUILD/toolchain
# step_run STEP WHAT CMD...: run one install step with its output in $LOGDIR/STEP.log; on failure,
# show the log's last lines and end with one line naming the step and what to do.
step_run() {
	local step=$1 what=$2
	shift 2
	mkdir -p "$LOGDIR"
	run_logged "$LOGDIR/$step.log" 15 \
		"toolchain: $what failed (log: $LOGDIR/$step.log); check the network and apt sources, then run 'make toolchain' again" "$@"
}
need_root() { # need_root WHAT: installing WHAT needs apt, i.e. root
	[ "$(id -u)" = 0 ] || die "toolchain: $1 missing; run 'make toolchain' as root (apt-get needs it)"
}

# rustup's stable Rust is the one thing the README asks for: it cannot be apt-installed here.
RUST_MIN=1.85
command -v rustup >/dev/null && command -v cargo >/dev/null && command -v rustc >/dev/null ||
	die "toolchain: no rustup, cargo or rustc in PATH (nor in ~/.cargo/bin); install rustup's stable Rust >= $RUST_MIN (see https://rustup.rs), then run 'make toolchain'"
rust_version=$(rustc --version | awk '{print $2}')
dpkg --compare-versions "$rust_version" ge "$RUST_MIN" ||
	die "toolchain: rustc $rust_version is older than $RUST_MIN; run 'rustup update stable', then 'make toolchain'"

# One dpkg-query for every package: a package dpkg has never heard of prints nothing on stdout.
installed=$({ dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${APT_PKGS[@]}" 2>/dev/null || true; } | awk '$2 == "installed" {print $1}')
for p in "${APT_PKGS[@]}"; do
	grep -qx -- "$p" <<<"$installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
	if [ $check_only = 1 ]; then
		echo "missing Debian packages: ${missing[*]}"
	else
		need_root "Debian packages ${missing[*]}"
		log "apt: installing ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		step_run apt-update "apt-get update" apt-get update -q
		step_run apt-install "apt-get install ${missing[*]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
		did+=("${#missing[@]} Debian packages")
	fi
fi

# rust-src: Rust-for-Linux builds `core` and `alloc` from source.
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-src'; then
	if [ $check_only = 1 ]; then echo "missing: rustup component rust-src"; missing+=(rust-src)
	else
		log "rustup: adding rust-src"
		step_run rust-src "rustup component add rust-src" rustup component add rust-src
		did+=(rust-src)
	fi
fi

# bindgen-cli, pinned: the kernel's rust/ Makefile runs it on the C headers.
if ! bindgen --version 2>/dev/null | grep -q "bindgen $BINDGEN_VERSION"; then
	if [ $check_only = 1 ]; then echo "missing: bindgen-cli $BINDGEN_VERSION"; missing+=(bindgen)
	else
		log "cargo: installing bindgen-cli $BINDGEN_VERSION (builds from source: about a minute)"
		step_run bindgen "cargo install bindgen-cli $BINDGEN_VERSION" cargo install bindgen-cli --locked --version "$BINDGEN_VERSION"
		did+=("bindgen $BINDGEN_VERSION")
	fi
fi

# Kernel UAPI headers newer than bookworm's 6.1 ones: v4l2r runs bindgen on videodev2.h at build
# time and needs the stateless-codec controls of recent kernels. Debian's linux-libc-dev from
# trixie-backports (the headers of the kernel we test on) is downloaded and unpacked into the cache,
# never installed; .cargo/config.toml points v4l2r's build at $CACHE/uapi.
fetch_uapi() { # runs in a subshell (step_run): its trap removes the download, whatever happens
	aptx_setup trixie-backports
	# Not local: the EXIT trap runs after the function has returned.
	uapi_tmp=$(mktemp -d)
	trap 'rm -rf "${uapi_tmp:-}"' EXIT
	local tmp=$uapi_tmp
	(cd "$tmp" && aptx apt-get download -q linux-libc-dev)
	dpkg -x "$tmp"/linux-libc-dev_*.deb "$tmp/x"
	rm -rf "$CACHE/uapi.new"
	mkdir -p "$CACHE/uapi.new/include"
	# Dereferenced: linux-libc-dev 7.x ships asm/ as symlinks into /usr/lib/linux/uapi/, which
	# would dangle here (bindgen then silently falls back to the host's 6.1 asm/ headers).
	cp -rL "$tmp/x/usr/include/linux" "$tmp/x/usr/include/asm-generic" "$CACHE/uapi.new/include/"
	cp -rL "$tmp/x/usr/include/$(gcc -dumpmachine)/asm" "$CACHE/uapi.new/include/asm"
	rm -rf "$CACHE/uapi"
	mv "$CACHE/uapi.new" "$CACHE/uapi"
}
if [ ! -f "$CACHE/uapi/include/linux/v4l2-controls.h" ] || ! grep -q V4L2_CID_STATELESS_AV1_SEQUENCE "$CACHE/uapi/include/linux/v4l2-controls.h" ||
	[ ! -f "$CACHE/uapi/include/asm/unistd.h" ]; then
	if [ $check_only = 1 ]; then echo "missing: UAPI headers in $CACHE/uapi"; missing+=(uapi)
	else
		log "fetching linux-libc-dev from trixie-backports for the UAPI headers"
		step_run uapi "fetching linux-libc-dev (UAPI headers) from trixie-backports" fetch_uapi
		did+=("UAPI headers")
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
	[ "$(dpkg-query -W -f='${db:Status-Status}\n' "${MESA_PKGS[@]}" 2>/dev/null | grep -cx installed)" = ${#MESA_PKGS[@]} ]
}
add_backports() {
	local mirror
	mirror=$(awk '/^URIs:/ { u = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == "bookworm") print u }' \
		/etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n 1)
	[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
	[ -n "$mirror" ] || die "toolchain: no bookworm source in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list, so bookworm-backports (Mesa $MESA_MIN) cannot be added; add one, then run 'make toolchain'"
	log "apt: adding bookworm-backports ($BPO_SOURCES)"
	printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: %s\n' \
		"$mirror" /usr/share/keyrings/debian-archive-keyring.gpg >"$BPO_SOURCES"
}
if ! mesa_ok; then
	if [ $check_only = 1 ]; then echo "missing: Mesa >= $MESA_MIN from bookworm-backports (have $(mesa_version))"; missing+=(mesa)
	else
		need_root "Mesa >= $MESA_MIN (have $(mesa_version))"
		[ -f "$BPO_SOURCES" ] || add_backports
		log "apt: installing Mesa from bookworm-backports (have $(mesa_version))"
		export DEBIAN_FRONTEND=noninteractive
		step_run apt-update "apt-get update" apt-get update -q
		step_run mesa "apt-get install -t bookworm-backports ${MESA_PKGS[*]}" \
			apt-get install -y -q --no-install-recommends -t bookworm-backports "${MESA_PKGS[@]}"
		mesa_ok || die "toolchain: Mesa from bookworm-backports is $(mesa_version), need >= $MESA_MIN; check $BPO_SOURCES, then run 'make toolchain'"
		did+=("Mesa $(mesa_version)")
	fi
fi

if [ $check_only = 1 ]; then
	[ ${#missing[@]} -gt 0 ] && exit 1
	echo "toolchain: everything present"
	exit 0
fi
have="${#APT_PKGS[@]} Debian packages, rust-src, bindgen $BINDGEN_VERSION, UAPI headers, Mesa $(mesa_version), rustc $rust_version"
if [ ${#did[@]} = 0 ]; then
	echo "toolchain: everything present, nothing to do ($have)"
else
	old_ifs=$IFS IFS=,
	echo "toolchain: installed ${did[*]}; ready ($have)"
	IFS=$old_ifs
fi
