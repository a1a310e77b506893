#!/usr/bin/env bash
# Builds the node's runtime bundle, the programs distro runs as separate
# processes rather than links into bin/distro:
#
#   OUT/bin/runc                       opencontainers/runc (cgo, static, seccomp)
#   OUT/bin/containerd                 containerd/containerd/v2 (CGO_ENABLED=0)
#   OUT/bin/containerd-shim-runc-v2    containerd/containerd/v2 (CGO_ENABLED=0)
#   OUT/bin/{bridge,host-local,loopback,portmap,bandwidth,firewall}
#                                      containernetworking/plugins (CGO_ENABLED=0)
#   OUT/bin/crictl                     kubernetes-sigs/cri-tools (CGO_ENABLED=0), run
#                                      by `distro crictl` (its main package cannot
#                                      be linked into distro)
#   OUT/images/pause.tar               registry.k8s.io/pause:3.10.2 (scripts/build-pause.sh)
#
#   scripts/build-runtime.sh [OUT]     OUT defaults to build/runtime
#
# Versions are pinned by scripts/runtime/go.mod (its own module, so runc's
# dependency graph never enters distro's). Change one with
#   (cd scripts/runtime && go get -tool github.com/opencontainers/runc@vX.Y.Z && go mod tidy)
# Builds run under `nice -n 19` with `go build -p 1`: the machines have two
# cores and usually something else compiling.
#
# Environment: RUNC_SECCOMP=0 skips the seccomp build of runc;
# SKIP_PAUSE=1 skips the pause image.
set -euo pipefail

start=$SECONDS
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/build/runtime}
mkdir -p "$out/bin"
out=$(cd "$out" && pwd)
mod=$root/scripts/runtime

if ! command -v go >/dev/null 2>&1; then
	export PATH=/usr/local/go/bin:$PATH
fi
export GOFLAGS=-buildvcs=false
NICE=(nice -n 19)
GOBUILD=("${NICE[@]}" go build -p 1 -trimpath)

log() { echo "==> $*" >&2; }
warn() { echo "WARNING: $*" >&2; }

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

cd "$mod"
modver() { go list -m -f '{{.Version}}' "$1"; }
RUNC_MOD=github.com/opencontainers/runc
CTRD_MOD=github.com/containerd/containerd/v2
CNI_MOD=github.com/containernetworking/plugins
CRI_TOOLS_MOD=sigs.k8s.io/cri-tools
runc_v=$(modver $RUNC_MOD)
ctrd_v=$(modver $CTRD_MOD)
cni_v=$(modver $CNI_MOD)
crictl_v=$(modver $CRI_TOOLS_MOD)
log "versions (scripts/runtime/go.mod): runc $runc_v, containerd $ctrd_v, CNI plugins $cni_v, crictl $crictl_v, $(go env GOVERSION)"
log "output: $out"

# --- runc: needs cgo (libcontainer/nsenter); static, with seccomp if possible.
command -v gcc >/dev/null 2>&1 || apt_need gcc
seccomp=${RUNC_SECCOMP:-1}
if [ "$seccomp" = 1 ] && ! apt_need libc6-dev libseccomp-dev pkg-config; then
	warn "could not install libseccomp-dev/pkg-config"
	seccomp=0
fi
# Tags as runc's Makefile `static` target, minus libpathrs (needs the Rust
# libpathrs library); -extldflags -static instead of its static-pie.
runc_ldflags="-s -w -extldflags -static"
build_runc() { # build_runc TAGS
	CGO_ENABLED=1 "${GOBUILD[@]}" -tags "$1" -ldflags "$runc_ldflags" -o "$out/bin/runc" $RUNC_MOD
}
runc_seccomp=no
if [ "$seccomp" = 1 ]; then
	log "runc $runc_v (cgo, static, seccomp)"
	if build_runc "seccomp urfave_cli_no_docs netgo osusergo"; then
		runc_seccomp=yes
	else
		warn "static runc with seccomp failed to build; building it WITHOUT seccomp support"
	fi
fi
if [ "$runc_seccomp" = no ]; then
	[ "$seccomp" = 1 ] || log "runc $runc_v (cgo, static, no seccomp)"
	build_runc "urfave_cli_no_docs netgo osusergo"
fi

# --- containerd-shim-runc-v2: pure Go, as containerd's Makefile builds it.
log "containerd-shim-runc-v2 $ctrd_v (CGO_ENABLED=0)"
CGO_ENABLED=0 "${GOBUILD[@]}" -tags no_grpc \
	-ldflags "-s -w -X $CTRD_MOD/version.Version=$ctrd_v -X $CTRD_MOD/version.Package=$CTRD_MOD" \
	-o "$out/bin/containerd-shim-runc-v2" $CTRD_MOD/cmd/containerd-shim-runc-v2

# --- containerd itself: its own binary, so its process does not carry (and
# initialise) every Kubernetes package linked into distro.
log "containerd $ctrd_v (CGO_ENABLED=0)"
CGO_ENABLED=0 "${GOBUILD[@]}" -tags "no_btrfs no_devmapper no_zfs" \
	-ldflags "-s -w -X $CTRD_MOD/version.Version=$ctrd_v -X $CTRD_MOD/version.Package=$CTRD_MOD" \
	-o "$out/bin/containerd" $CTRD_MOD/cmd/containerd

# --- CNI plugins: one `go build` for all six (shared compile work).
cni_plugins=(main/bridge ipam/host-local main/loopback meta/portmap meta/bandwidth meta/firewall)
log "CNI plugins $cni_v (CGO_ENABLED=0): ${cni_plugins[*]##*/}"
CGO_ENABLED=0 "${GOBUILD[@]}" \
	-ldflags "-s -w -X $CNI_MOD/pkg/utils/buildversion.BuildVersion=$cni_v" \
	-o "$out/bin/" "${cni_plugins[@]/#/$CNI_MOD/plugins/}"

# --- crictl, as cri-tools' Makefile builds it.
log "crictl $crictl_v (CGO_ENABLED=0)"
CGO_ENABLED=0 "${GOBUILD[@]}" \
	-ldflags "-s -w -X $CRI_TOOLS_MOD/pkg/version.Version=${crictl_v#v}" \
	-o "$out/bin/crictl" $CRI_TOOLS_MOD/cmd/crictl

# --- pause image.
if [ "${SKIP_PAUSE:-0}" != 1 ]; then
	"$root/scripts/build-pause.sh" "$out"
fi

# --- summary.
echo
printf '%-28s %10s  %s\n' FILE BYTES KIND
nonstatic=0
for f in "$out"/bin/* "$out"/images/*; do
	[ -f "$f" ] || continue
	kind=
	case $f in
	*/bin/*)
		if command -v file >/dev/null 2>&1; then
			kind=$(file -b "$f")
			case $kind in *"statically linked"* | *"static-pie linked"*) kind=static ;; *) kind="NOT STATIC: $kind"; nonstatic=1 ;; esac
		fi ;;
	*.tar) kind=image ;;
	esac
	printf '%-28s %10d  %s\n' "${f#"$out"/}" "$(stat -c %s "$f")" "$kind"
done
echo "runc seccomp support: $runc_seccomp"
echo "total: $(du -sh "$out" | cut -f1) in $out, $((SECONDS - start))s"
if ((nonstatic)); then
	warn "some binaries are not statically linked"
	exit 1
fi
