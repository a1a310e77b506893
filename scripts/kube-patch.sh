#!/usr/bin/env bash
# Builds distro against k8s.io/kubernetes, k8s.io/client-go, k8s.io/apiserver
# and github.com/flannel-io/flannel with a few one-line changes to what
# upstream fixes in code (no flag, no config field): timings that are Go
# constants, the key type of the apiserver's throwaway loopback certificate,
# and the gRPC buffers of the apiserver's etcd connections:
#
#   scripts/kube-patch.sh [OUT]      OUT defaults to build/kube
#
# writes
#   OUT/<name>          a symlink to each patched module in GOMODCACHE
#                       (read-only, never modified): OUT/kubernetes,
#                       OUT/flannel, OUT/client-go, OUT/apiserver
#   OUT/patched/<name>/…  the changed files
#   OUT/overlay.json    `go build -overlay`: each changed file over the
#                       symlinked module's original
#   OUT/go.work         the main module, with each patched module replaced
#                       by its symlink
#
# The Makefile runs every Go command of the main module with
# GOWORK=OUT/go.work GOFLAGS=-overlay=OUT/overlay.json. Go refuses an overlay
# of files inside GOMODCACHE; the replacement's path (the symlink) is outside
# it. A plain `go build ./cmd/distro` without these still builds a working
# distro, with upstream's timings.
#
# Every patch names the exact upstream line it replaces: when an update of
# the module changes that line, this script fails naming the file and the
# line instead of building something unpatched.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=${1:-$root/build/kube}
mkdir -p "$out"
out=$(cd "$out" && pwd)

export GOWORK=off GOFLAGS=
goversion=$(sed -n 's/^go //p' "$root/go.mod")

tmp=$(mktemp -d "$out/.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
overlay=() replaces=() links=()

# module NAME PATH: the patches that follow apply to module PATH (at the
# version go.mod requires), linked as OUT/NAME.
module() {
	name=$1 modpath=$2
	version=$(cd "$root" && go list -m -f '{{.Version}}' "$modpath")
	dir=$(cd "$root" && go mod download -json "$modpath@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		echo "kube-patch: $modpath@$version is not in the module cache (go mod download failed)" >&2
		exit 1
	fi
	replaces+=("replace $modpath $version => ./$name")
	links+=("$name=$dir")
}

# patch FILE OLD NEW: replace the line OLD (exact, once) of the current
# module's FILE by NEW; several patches of one file apply in turn to its
# copy.
patch() {
	local file=$1 old=$2 new=$3
	local dst=$tmp/patched/$name/$file
	if [ ! -f "$dst" ]; then
		mkdir -p "$(dirname "$dst")"
		cp "$dir/$file" "$dst"
		chmod u+w "$dst"
		overlay+=("\"$out/$name/$file\": \"$out/patched/$name/$file\"")
	fi
	if [ "$(grep -cxF -- "$old" "$dst")" != 1 ]; then
		echo "kube-patch: $file of $modpath@$version no longer has exactly one line" >&2
		echo "kube-patch:   $old" >&2
		echo "kube-patch: update the patch in scripts/kube-patch.sh for this version" >&2
		exit 1
	fi
	OLD=$old NEW=$new awk '$0 == ENVIRON["OLD"] { print ENVIRON["NEW"]; next } { print }' "$dst" > "$dst.new"
	mv "$dst.new" "$dst"
}

module kubernetes k8s.io/kubernetes

# A starting pod waits for its volumes (every pod has at least its
# service-account token) in three loops of the kubelet's volume manager:
# the desired-state populator adds the pod's volumes every 100 ms, the
# reconciler mounts what is missing every 100 ms, and the pod's worker
# checks every 300 ms whether all are mounted. The mounts themselves take a
# few milliseconds, so a pod waited ~50 + 50 + 150 ms on average (up to
# 500) for nothing but the loops' periods. Each loop is a pass over the
# kubelet's in-memory state of the node's volumes; at 20-25 ms an idle
# server with its node measured 7.1 % of one core against 6.6 % with
# upstream's periods (one pair of 90 s runs, within their noise).
patch pkg/kubelet/volumemanager/volume_manager.go \
	$'\treconcilerLoopSleepPeriod = 100 * time.Millisecond' \
	$'\treconcilerLoopSleepPeriod = 25 * time.Millisecond'
patch pkg/kubelet/volumemanager/volume_manager.go \
	$'\tdesiredStateOfWorldPopulatorLoopSleepPeriod = 100 * time.Millisecond' \
	$'\tdesiredStateOfWorldPopulatorLoopSleepPeriod = 25 * time.Millisecond'
patch pkg/kubelet/volumemanager/volume_manager.go \
	$'\tpodAttachAndMountRetryInterval = 300 * time.Millisecond' \
	$'\tpodAttachAndMountRetryInterval = 20 * time.Millisecond'

# The apiserver is ready once its post-start hooks are done; two of them,
# which create the bootstrap RBAC roles and the system PriorityClasses,
# wait a whole second before their first attempt (wait.Poll), so every
# start, cold or warm, waited ~1 s with nothing to do (readyz listed only
# these two). They try at once now, and every second after a failure as
# upstream does.
patch pkg/registry/rbac/rest/storage_rbac.go \
	$'\t\terr := wait.Poll(1*time.Second, 30*time.Second, func() (done bool, err error) {' \
	$'\t\terr := wait.PollImmediate(1*time.Second, 30*time.Second, func() (done bool, err error) {'
patch pkg/registry/scheduling/rest/storage_scheduling.go \
	$'\t\terr := wait.Poll(1*time.Second, 30*time.Second, func() (done bool, err error) {' \
	$'\t\terr := wait.PollImmediate(1*time.Second, 30*time.Second, func() (done bool, err error) {'

module flannel github.com/flannel-io/flannel

# flannel's subnet manager starts its node informer, then checks whether it
# has synced at once (it has not, a few milliseconds in) and then once a
# second: a node's pod network, and so its Ready, waited ~1 s for an
# informer that had synced long before. It checks every 50 ms now.
patch pkg/subnet/kube/kube.go \
	$'\t\terr = wait.PollUntilContextTimeout(ctx, time.Second, nodeControllerSyncTimeout, true, func(context.Context) (bool, error) {' \
	$'\t\terr = wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, nodeControllerSyncTimeout, true, func(context.Context) (bool, error) {'

module client-go k8s.io/client-go

# Every named work queue of a component that exports metrics (117 in a
# server with its node: the controller-manager's controllers, the
# scheduler's, the kubelet's) runs a goroutine that wakes every 500 ms, for
# ever, only to refresh two gauges of its metrics (unfinished work seconds,
# longest running processor). At idle that was ~230 wakeups a second, the
# largest periodic source in the process; they refresh every 5 s now, which
# is still finer than any scrape interval.
patch util/workqueue/queue.go \
	$'const defaultUnfinishedWorkUpdatePeriod = 500 * time.Millisecond' \
	$'const defaultUnfinishedWorkUpdatePeriod = 5 * time.Second'

# Every start of the apiserver makes a throwaway certificate for its
# loopback client (its own controllers and post-start hooks talking to it,
# never seen outside the process): a CA and a serving certificate, each
# with a new 2048-bit RSA key. RSA key generation searches for primes and
# took ~0.13 s of CPU on the apiserver's critical path (more when the search
# is unlucky); P-256 keys take microseconds. Only the key type changes: same
# names, lifetime and PEM layout (an "EC PRIVATE KEY" block). distro gives
# every other component its certificate, so this is the only caller.
patch util/cert/cert.go \
	$'\t"crypto/rsa"' \
	$'\t"crypto/ecdsa"; "crypto/elliptic"'
patch util/cert/cert.go \
	$'\tcaKey, err := rsa.GenerateKey(cryptorand.Reader, 2048)' \
	$'\tcaKey, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)'
patch util/cert/cert.go \
	$'\tpriv, err := rsa.GenerateKey(cryptorand.Reader, 2048)' \
	$'\tpriv, err := ecdsa.GenerateKey(elliptic.P256(), cryptorand.Reader)'
patch util/cert/cert.go \
	$'\tif err := pem.Encode(&keyBuffer, &pem.Block{Type: keyutil.RSAPrivateKeyBlockType, Bytes: x509.MarshalPKCS1PrivateKey(priv)}); err != nil {' \
	$'\tif keyPEM, err := keyutil.MarshalPrivateKeyToPEM(priv); err != nil { return nil, nil, err } else if _, err := keyBuffer.Write(keyPEM); err != nil {'

module apiserver k8s.io/apiserver

# The apiserver opens one etcd client, so one gRPC connection, per resource
# it stores (~70 in a server), and gRPC gives each connection a 32 KB read
# buffer and a 32 KB write buffer for its lifetime: ~4.5 MB idle between
# requests. Writes take a buffer from gRPC's shared pool for each flush
# instead, and reads go to the TLS connection directly (it buffers a whole
# record itself). etcd's end of the same connections gets the same options
# (pkg/etcd).
patch pkg/storage/storagebackend/factory/etcd3.go \
	$'\t\tgrpc.WithChainStreamInterceptor(grpcpromClientMetrics.StreamClientInterceptor()),' \
	$'\t\tgrpc.WithChainStreamInterceptor(grpcpromClientMetrics.StreamClientInterceptor()), grpc.WithSharedWriteBuffer(true), grpc.WithReadBufferSize(0),'

{
	echo '{"Replace": {'
	for i in "${!overlay[@]}"; do
		sep=,
		[ "$i" = $((${#overlay[@]} - 1)) ] && sep=
		echo "  ${overlay[$i]}$sep"
	done
	echo '}}'
} > "$tmp/overlay.json"
{
	echo "// Generated by scripts/kube-patch.sh: the main module with the patched"
	echo "// modules replaced by their copies (see that script)."
	echo "go $goversion"
	echo
	echo "use $root"
	echo
	printf '%s\n' "${replaces[@]}"
} > "$tmp/go.work"

# Swap the results in only once all of them are written.
rm -rf "$out/patched"
mv "$tmp/patched" "$out/patched"
for l in "${links[@]}"; do
	ln -sfn "${l#*=}" "$out/${l%%=*}"
done
mv "$tmp/overlay.json" "$out/overlay.json"
mv "$tmp/go.work" "$out/go.work"
echo "kube-patch: ${#overlay[@]} patched file(s) of ${#links[@]} module(s) in $out: ${replaces[*]}"
