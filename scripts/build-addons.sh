#!/usr/bin/env bash
# Builds the packaged add-ons' images from their Go modules (no registry):
#
#   OUT/images/coredns.tar                CoreDNS (scripts/addons: the cluster-DNS plugins only)
#   OUT/images/metrics-server.tar         sigs.k8s.io/metrics-server (its own go.mod)
#   OUT/images/local-path-provisioner.tar github.com/rancher/local-path-provisioner (its own go.mod)
#   OUT/images/busybox.tar                Debian's busybox-static (local-path's helper pods)
#
#   scripts/build-addons.sh [OUT]         OUT defaults to build/addons
#
# Versions and image names: manifests/images.env (the manifests read the same
# file). metrics-server and local-path-provisioner are built with
# `go install module@version`, so with exactly the dependencies their own
# go.mod pins; CoreDNS from scripts/addons/go.mod, whose CoreDNS version must
# match COREDNS_VERSION.
set -euo pipefail

start=$SECONDS
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/build/addons}
mkdir -p "$out/images" "$out/bin"
out=$(cd "$out" && pwd)
if ! command -v go >/dev/null 2>&1; then
	export PATH=/usr/local/go/bin:$PATH
fi
export GOFLAGS=-buildvcs=false CGO_ENABLED=0
NICE=(nice -n 19)
log() { echo "==> $*" >&2; }
# shellcheck source=../manifests/images.env
. "$root/manifests/images.env"

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
	log "installing Debian package busybox-static"
	DEBIAN_FRONTEND=noninteractive apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends busybox-static
fi

got=$(cd "$root/scripts/addons" && go list -m -f '{{.Version}}' github.com/coredns/coredns)
if [ "$got" != "$COREDNS_VERSION" ]; then
	echo "scripts/addons/go.mod has CoreDNS $got but manifests/images.env says $COREDNS_VERSION" >&2
	exit 1
fi

log "mkimage"
(cd "$root/scripts/runtime" && "${NICE[@]}" go build -p 1 -trimpath -ldflags '-s -w' -o "$out/bin/mkimage" ./mkimage)
mkimage() { "$out/bin/mkimage" --arch "$(go env GOARCH)" --os linux "$@"; }

log "CoreDNS $COREDNS_VERSION"
(cd "$root/scripts/addons" && "${NICE[@]}" go build -p 1 -trimpath \
	-ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" \
	-o "$out/bin/coredns" ./coredns)
mkimage --tag "$COREDNS_IMAGE" --out "$out/images/coredns.tar" \
	--entrypoint /coredns --file "$out/bin/coredns:/coredns:0755"

log "metrics-server $METRICS_SERVER_VERSION"
GOBIN=$out/bin "${NICE[@]}" go install -p 1 -trimpath \
	-ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION" \
	"sigs.k8s.io/metrics-server/cmd/metrics-server@$METRICS_SERVER_VERSION"
mkimage --tag "$METRICS_SERVER_IMAGE" --out "$out/images/metrics-server.tar" \
	--user 65534:65534 --entrypoint /metrics-server --dir /tmp:1777 \
	--file "$out/bin/metrics-server:/metrics-server:0755"

log "local-path-provisioner $LOCAL_PATH_PROVISIONER_VERSION"
GOBIN=$out/bin "${NICE[@]}" go install -p 1 -trimpath -ldflags "-s -w" \
	"github.com/rancher/local-path-provisioner@$LOCAL_PATH_PROVISIONER_VERSION"
mkimage --tag "$LOCAL_PATH_PROVISIONER_IMAGE" --out "$out/images/local-path-provisioner.tar" \
	--entrypoint /usr/bin/local-path-provisioner --dir /tmp:1777 \
	--file "$out/bin/local-path-provisioner:/usr/bin/local-path-provisioner:0755"

log "busybox (Debian busybox-static)"
links=()
for a in sh ash mkdir rm rmdir ls cat chmod sleep echo test du; do links+=(--symlink "/bin/$a:busybox"); done
mkimage --tag "$BUSYBOX_IMAGE" --out "$out/images/busybox.tar" --entrypoint /bin/sh \
	--dir /tmp:1777 --file /bin/busybox:/bin/busybox:0755 "${links[@]}"

echo
for f in "$out"/images/*.tar; do printf '%-28s %10d\n' "${f#"$out"/}" "$(stat -c %s "$f")"; done
echo "add-on images built in $((SECONDS - start))s"
