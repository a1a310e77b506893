#!/usr/bin/env bash
# Builds the sandbox ("pause") image the node's containerd imports:
#   OUT/images/pause.tar  docker-archive, tagged registry.k8s.io/pause:3.10.2,
#                         linux/<host arch>, Entrypoint ["/pause"], User 65535:65535
# from Kubernetes' own build/pause/linux/pause.c (module k8s.io/kubernetes,
# taken from the Go module cache), compiled with `gcc -static -Os` and packed
# by scripts/runtime/mkimage (standard-library Go, no registry tools).
#
#   scripts/build-pause.sh [OUT]        OUT defaults to build/runtime
#
# Import it with: ctr -n k8s.io images import OUT/images/pause.tar
# Set SOURCE_DATE_EPOCH for the image timestamps (default: the Unix epoch);
# the archive is byte-identical for equal inputs.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.37.2}
PAUSE_VERSION=${PAUSE_VERSION:-3.10.2}
PAUSE_IMAGE=${PAUSE_IMAGE:-registry.k8s.io/pause:${PAUSE_VERSION}}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/build/runtime}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if ! command -v go >/dev/null 2>&1; then
	export PATH=/usr/local/go/bin:$PATH
fi
export GOFLAGS=-buildvcs=false
NICE=(nice -n 19)

log() { echo "==> $*" >&2; }

# apt_need PKG...: installs the Debian packages that are not installed yet.
apt_need() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

work=$(mktemp -d "${TMPDIR:-/tmp}/build-pause.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The C source, from the module cache (downloaded once if missing).
modcache=$(go env GOMODCACHE)
src=$modcache/k8s.io/kubernetes@$K8S_VERSION/build/pause/linux/pause.c
if [ ! -f "$src" ]; then
	log "downloading k8s.io/kubernetes@$K8S_VERSION into the module cache"
	# Outside any module, so no go.mod/go.sum is touched.
	(cd "$work" && GOFLAGS=-mod=mod go mod download k8s.io/kubernetes@"$K8S_VERSION")
fi
[ -f "$src" ] || { echo "pause.c not found at $src" >&2; exit 1; }

command -v gcc >/dev/null 2>&1 || apt_need gcc
apt_need libc6-dev # libc.a for -static

log "pause: gcc -static -Os $src"
# Same flags as kubernetes/build/pause/Makefile, plus -s (strip).
"${NICE[@]}" gcc -Os -Wall -Werror -static -s \
	-DVERSION="v${PAUSE_VERSION}-${K8S_VERSION}" -o "$work/pause" "$src"

log "mkimage: building scripts/runtime/mkimage"
(cd "$root/scripts/runtime" && "${NICE[@]}" go build -p 1 -trimpath -ldflags '-s -w' -o "$work/mkimage" ./mkimage)

mkdir -p "$out/images"
"$work/mkimage" --tag "$PAUSE_IMAGE" --out "$out/images/pause.tar" \
	--arch "$(go env GOARCH)" --os linux --user 65535:65535 --entrypoint /pause \
	--file "$work/pause:/pause:0755"
