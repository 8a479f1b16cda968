#!/usr/bin/env bash
# The arm64 guest's root file system, built offline from Debian bookworm arm64 packages: the
# package closure is resolved and downloaded through a private arm64 apt state (scripts/arm64/lib.sh,
# nothing is installed on the host) and each .deb is unpacked with dpkg -x, no maintainer scripts
# run (none are needed: the guest mounts what it needs and runs no services). Mesa comes from
# bookworm-backports, as on the host (bookworm's 22.3 llvmpipe cannot import dma-bufs).
#
#   scripts/arm64/rootfs.sh               build (or reuse) it; prints its directory on stdout
#   scripts/arm64/rootfs.sh --print-dir
#
# Cached in $CACHE/arm64-rootfs-<key>; the key hashes the package list, KEY_REV and the list of
# .debs the closure resolved to (so a security update makes a new rootfs on the next day's apt update).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/lib.sh"
. "$here/arm64/lib.sh"

print_only=0
[ "${1:-}" = "--print-dir" ] && print_only=1

# What the guest suite runs: bash and the usual tools (the test scripts), kmod (modprobe with
# -d), v4l-utils, jq and python3 (the verifier tests read its JSON), busybox for the rest, and the
# verifier's run-time libraries (glibc; Mesa's EGL/GLES with llvmpipe, loaded with dlopen).
PKGS=(
	bash libc-bin coreutils grep sed gawk findutils util-linux mount procps kmod busybox-static
	v4l-utils jq python3
	libegl1 libegl-mesa0 libgles2 libgbm1 libgl1-mesa-dri mesa-libgallium
)
# -t: Mesa (and what it needs) from bookworm-backports; everything else has no backport.
APT_T=(-t bookworm-backports)
KEY_REV=2
arm64_apt_setup bookworm bookworm bookworm-updates bookworm-security bookworm-backports
# The closure, as apt resolves it for an empty arm64 system: "name version" per package.
closure=$(arm64_apt apt-get install -s -y --no-install-recommends "${APT_T[@]}" "${PKGS[@]}" 2>"$ARM64_APT/resolve.err" |
	awk '$1 == "Inst" { v = $3; gsub(/[()]/, "", v); print $2, v }' | sort) ||
	{ cat "$ARM64_APT/resolve.err" >&2; die "arm64 rootfs: apt could not resolve ${PKGS[*]}"; }
[ -n "$closure" ] || { cat "$ARM64_APT/resolve.err" >&2; die "arm64 rootfs: apt resolved nothing for ${PKGS[*]}"; }
key=$({ echo "rev $KEY_REV ${PKGS[*]}"; echo "$closure"; } | sha256sum | cut -c1-12)
OUT=$CACHE/arm64-rootfs-$key
if [ $print_only = 1 ]; then echo "$OUT"; exit 0; fi
if [ -f "$OUT/.done" ]; then
	log "arm64 rootfs cached at $OUT"
	echo "$OUT"
	exit 0
fi
exec 9>"$OUT.lock"
flock 9
if [ -f "$OUT/.done" ]; then echo "$OUT"; exit 0; fi

log "arm64 rootfs: downloading $(echo "$closure" | grep -c .) packages"
arm64_apt apt-get install -qq -y --no-install-recommends "${APT_T[@]}" --download-only "${PKGS[@]}" >/dev/null
rm -rf "$OUT"
mkdir -p "$OUT"
n=0
while read -r name version; do
	f=$(compgen -G "$ARM64_APT/cache/archives/${name}_${version/:/%3a}_*.deb" | head -n 1) ||
		die "arm64 rootfs: $name $version was not downloaded"
	dpkg -x "$f" "$OUT"
	n=$((n + 1))
done <<<"$closure"
# Mount points and writable places (the guest mounts tmpfs/proc/sys/devtmpfs/9p on them).
mkdir -p "$OUT"/{proc,sys,dev,tmp,run,root,mnt,etc} "$OUT/vb2r/repo"
[ -e "$OUT/bin/sh" ] || ln -s bash "$OUT/bin/sh"
# bookworm is not merged-/usr for these; the shared guest scripts call /usr/sbin/modprobe.
for t in modprobe insmod rmmod modinfo lsmod; do
	[ -e "$OUT/usr/sbin/$t" ] || ln -s "/sbin/$t" "$OUT/usr/sbin/$t"
done
echo "root:x:0:0:root:/root:/bin/bash" >"$OUT/etc/passwd"
echo "root:x:0:" >"$OUT/etc/group"
# PID 1 is scripts/arm64/init.sh from the repository share; /init finds it there.
cat >"$OUT/init" <<'INIT'
#!/bin/bash
mount -t proc proc /proc
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose,ro vb2rrepo /vb2r/repo
exec /bin/bash /vb2r/repo/scripts/arm64/init.sh "$@"
INIT
chmod +x "$OUT/init"
echo "$closure" >"$OUT/.packages"
log "arm64 rootfs: $n packages unpacked in $OUT ($(du -sh "$OUT" | cut -f1))"
touch "$OUT/.done"
echo "$OUT"
