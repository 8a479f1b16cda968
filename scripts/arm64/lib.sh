# Helpers for the arm64 scripts (source after scripts/lib.sh).
# shellcheck shell=bash

# A private apt view for arm64 packages: its own state dir under the cache, an empty dpkg status
# (so that dependencies are resolved as for an empty arm64 system, never against the host's
# amd64 packages), APT::Architecture=arm64. Packages are only ever downloaded through it and
# unpacked with dpkg -x; nothing is installed on the host. The mirrors are the host's own (read
# from its apt sources), so this works wherever `make toolchain` does.
#   arm64_apt_setup NAME SUITE...   then   arm64_apt apt-get download PKG / apt-get install -d ...
arm64_mirror() { # arm64_mirror SUITE: the URI the host's sources use for SUITE (or its base suite)
	local want=$1 f uri
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		uri=$(awk -v s="$want" '
			/^URIs:/ { u = $2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) { print u; exit } }
			/^$/ { u = "" }' "$f")
		[ -n "$uri" ] && { echo "$uri"; return 0; }
	done
	[ -f /etc/apt/sources.list ] && awk -v s="$want" '$1 == "deb" && $3 == s { print $2; exit }' /etc/apt/sources.list
}
arm64_apt_setup() {
	local name=$1 s uri key base
	shift
	ARM64_APT=$CACHE/apt-arm64-$name
	mkdir -p "$ARM64_APT/lists/partial" "$ARM64_APT/cache/archives/partial" "$ARM64_APT/etc"
	: >"$ARM64_APT/sources.list.new"
	for s in "$@"; do
		base=${s%%-*}
		case "$s" in
		trixie*) uri=$(arm64_mirror bookworm) key=/usr/share/keyrings/debian-archive-trixie-automatic.gpg ;;
		*-security) uri=$(arm64_mirror "$s") key=/usr/share/keyrings/debian-archive-keyring.gpg ;;
		*) uri=$(arm64_mirror "$s"); [ -n "$uri" ] || uri=$(arm64_mirror "$base"); key=/usr/share/keyrings/debian-archive-keyring.gpg ;;
		esac
		[ -n "$uri" ] || die "arm64 apt: no mirror for $s in the host's apt sources"
		echo "deb [arch=arm64 signed-by=$key] $uri $s main" >>"$ARM64_APT/sources.list.new"
	done
	if ! cmp -s "$ARM64_APT/sources.list.new" "$ARM64_APT/sources.list" 2>/dev/null; then
		mv "$ARM64_APT/sources.list.new" "$ARM64_APT/sources.list"
		rm -f "$ARM64_APT"/lists/*Packages* "$ARM64_APT"/lists/*Release*
	else
		rm -f "$ARM64_APT/sources.list.new"
	fi
	: >"$ARM64_APT/status"
	# Refresh at most once a day.
	if [ -z "$(find "$ARM64_APT/lists" -maxdepth 1 -name '*Packages*' -mtime -1 2>/dev/null)" ]; then
		arm64_apt apt-get update -qq >/dev/null
	fi
}
arm64_apt() {
	local tool=$1
	shift
	"$tool" -o Dir::Etc::SourceList="$ARM64_APT/sources.list" -o Dir::Etc::SourceParts=/dev/null \
		-o Dir::State::Lists="$ARM64_APT/lists" -o Dir::Cache="$ARM64_APT/cache" \
		-o Dir::State::status="$ARM64_APT/status" -o Dir::Etc::Preferences=/dev/null \
		-o Dir::Etc::PreferencesParts=/dev/null \
		-o APT::Architecture=arm64 -o APT::Architectures=arm64 \
		-o APT::Sandbox::User=root "$@"
}
