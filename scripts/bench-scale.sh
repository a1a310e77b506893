#!/usr/bin/env bash
# Scale figures of distro's control plane (make bench-scale): a server with
# --disable-agent (scratch data dir, free ports) and the kwok controller
# (build/kwok, sigs.k8s.io/kwok built from scripts/kwok, configured by
# scripts/kwok/kwok.yaml) simulating SCALE_NODES nodes (default 1,000); then
# SCALE_PODS pods (default 30,000) through SCALE_DEPLOYMENTS Deployments
# (default 100) scheduled onto them. tests/bench/scale_test.go creates the
# objects and prints the figures ("scale: " lines): time until every pod is
# scheduled and Running, the scheduler's throughput and time per pod, the
# apiserver's GET, LIST, POST (PUT, PATCH) latency p50/p99 from its own
# metrics, the server's RSS and CPU (beside kwok's and the rest of the
# host's), the etcd db size. Runs as root.
#
#   scripts/bench-scale.sh [BIN [KWOK]]   defaults bin/distro, build/kwok
#
# Environment: SCALE_NODES, SCALE_PODS, SCALE_DEPLOYMENTS (e.g.
# SCALE_NODES=50 SCALE_PODS=1000 for a short run), SCALE_TIMEOUT_SECONDS
# (default 900: the pods' wait), SCALE_SERVER_ARGS (extra server flags, e.g.
# "--kube-controller-manager-arg kube-api-qps=300"), SCALE_KEEP_LOGS=DIR
# (copy the server's and kwok's logs there).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${1:-$ROOT/bin/distro}
KWOK=${2:-$ROOT/build/kwok}
export SCALE_NODES=${SCALE_NODES:-1000} SCALE_PODS=${SCALE_PODS:-30000} SCALE_DEPLOYMENTS=${SCALE_DEPLOYMENTS:-100}
work=$(mktemp -d /tmp/distro-bench-scale.XXXXXX)
data=$work/data
SERVER_PID="" KWOK_PID=""
cleanup() {
	local pid
	for pid in $KWOK_PID $SERVER_PID; do
		kill -TERM "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [ -n "${SCALE_KEEP_LOGS:-}" ]; then
		mkdir -p "$SCALE_KEEP_LOGS" && cp "$work"/*.log "$SCALE_KEEP_LOGS/" 2>/dev/null || true
	fi
	if [ -d "$data" ]; then DISTRO_DATA_DIR="$data" sh "$ROOT/package/distro-killall.sh" >/dev/null 2>&1 || true; fi
	rm -rf "$work"
}
trap cleanup EXIT

# The load generator, compiled before the server starts.
go -C "$ROOT" test -c -o "$work/bench.test" ./tests/bench/

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port) EPORT=$(free_port) PPORT=$(free_port)
SECONDS=0

# The fake nodes each get a /24 of the cluster CIDR from the
# controller-manager, and kwok gives their pods IPs from it: a /12 holds
# 4,096 nodes (the default /16, 256).
: > "$work/config.yaml"
# shellcheck disable=SC2086 # SCALE_SERVER_ARGS is a list of flags
"$BIN" server --disable-agent --disable=coredns,local-storage,metrics-server \
	--config "$work/config.yaml" --data-dir "$data" --write-kubeconfig "$work/kubeconfig.yaml" \
	--https-listen-port "$PORT" --etcd-client-port "$EPORT" --etcd-peer-port "$PPORT" \
	--cluster-cidr 10.64.0.0/12 ${SCALE_SERVER_ARGS:-} > "$work/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 600); do
	grep -q "control plane ready in" "$work/server.log" && break
	if ! kill -0 "$SERVER_PID" 2>/dev/null; then
		echo "server exited:" >&2; tail -20 "$work/server.log" >&2; exit 1
	fi
	sleep 0.1
done
grep -q "control plane ready in" "$work/server.log" || { echo "server not ready in 60 s" >&2; tail -20 "$work/server.log" >&2; exit 1; }

# kwok manages only the Nodes annotated kwok.x-k8s.io/node=fake, with a
# node Lease each (renewed every 10 s, as the kubelet does).
"$KWOK" --kubeconfig "$work/kubeconfig.yaml" --config "$ROOT/scripts/kwok/kwok.yaml" \
	--manage-all-nodes=false --manage-nodes-with-annotation-selector kwok.x-k8s.io/node=fake \
	--node-lease-duration-seconds 40 > "$work/kwok.log" 2>&1 &
KWOK_PID=$!

echo "scale: $SCALE_NODES nodes, $SCALE_PODS pods in $SCALE_DEPLOYMENTS Deployments (server: $(grep -o 'control plane ready in [0-9.]* s' "$work/server.log"))"
status=0
BENCH_KUBECONFIG="$work/kubeconfig.yaml" SCALE_SERVER_PID=$SERVER_PID SCALE_KWOK_PID=$KWOK_PID SCALE_DATA_DIR=$data \
	"$work/bench.test" -test.count=1 -test.v -test.timeout 40m -test.run '^TestScale$' > "$work/test.log" 2>&1 || status=$?
grep '^scale: ' "$work/test.log" || true
if [ "$status" != 0 ]; then
	echo "scale: the benchmark failed:" >&2; grep -v '^scale: ' "$work/test.log" | tail -20 >&2
fi
if ! kill -0 "$KWOK_PID" 2>/dev/null; then
	echo "scale: kwok exited during the run:" >&2; tail -10 "$work/kwok.log" >&2; status=1
fi
echo "scale: benchmark wall time $SECONDS s, server start to the last figure  (target ≤ 1200 s)"
exit "$status"
