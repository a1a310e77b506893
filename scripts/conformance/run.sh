#!/usr/bin/env bash
# Runs the upstream Kubernetes conformance suite against distro, offline:
#
#   make conformance                  1 server + 1 agent in Docker (node image
#                                     distro:dev), every [Conformance] test
#   make conformance QUICK=1          the sample in scripts/conformance/quick.txt
#   KUBECONFIG=… make conformance     an existing distro cluster instead
#   make conformance FOCUS='\[sig-network\] Netpol' SKIP='SCTP'
#                                     other upstream e2e tests (ginkgo regexes)
#
# The suite runs in the cluster from the conformance image, started by
# hydrophone; ginkgo runs the parallel specs first (CONFORMANCE_PARALLEL
# processes, default 6), then the [Serial] ones one at a time. Every image it
# needs is built from source by `make conformance-images` (build/conformance-
# images) and put in the nodes' airgap folder, so nothing is pulled. An
# existing cluster needs those tarballs imported on every node first (copy
# them into <data-dir>/agent/images/ and restart the node, or
# `distro ctr images import FILE`).
#
# Results go to build/conformance/<UTC timestamp>/: e2e.log, junit_01.xml,
# failures.txt, hydrophone.log (and the nodes' logs when a Docker cluster
# failed to come up). The last line is `conformance: N passed, M failed`; the
# exit status is non-zero when a test failed or the run did not complete.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
images=${CONFORMANCE_IMAGES:-$root/build/conformance-images}
hydrophone=${HYDROPHONE:-$root/build/tools/hydrophone}
node_image=${DISTRO_IMAGE:-distro:dev}
procs=${CONFORMANCE_PARALLEL:-6}
k8s_version=${K8S_VERSION:-v1.37.2}
out=${CONFORMANCE_OUT:-$root/build/conformance/$(date -u +%Y%m%dT%H%M%SZ)}
start=$SECONDS
log() { printf '==> [%4ds] %s\n' $((SECONDS - start)) "$*" >&2; }
die() { echo "conformance: $*" >&2; exit 1; }

[ -x "$hydrophone" ] || die "hydrophone not found at $hydrophone (make conformance-images builds it)"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The focus: every [Conformance] test, or the quick sample's exact names.
# Ginkgo matches the focus against "<suite description> <full spec text>",
# so an exact name is anchored on the space before it and on the end.
focus=${FOCUS:-'\[Conformance\]'}
if [ -n "${QUICK:-}" ]; then
	focus=$(grep -v -e '^#' -e '^$' "$root/scripts/conformance/quick.txt" |
		sed -e 's/[][\.*^$()+?{}|/]/\\&/g' -e 's/^/ /' -e 's/$/$/' | paste -sd'|')
	expected=$(grep -cv -e '^#' -e '^$' "$root/scripts/conformance/quick.txt")
	log "quick sample: $expected tests from scripts/conformance/quick.txt"
fi

net=
cleanup() {
	[ -n "$net" ] || return 0
	if [ -n "${KEEP_CLUSTER:-}" ]; then
		log "KEEP_CLUSTER set: leaving $net-s1 and $net-a1 running (kubeconfig $out/kubeconfig)"
		return 0
	fi
	docker rm -f -v "$net-s1" "$net-a1" >/dev/null 2>&1 || true
	docker network rm "$net" >/dev/null 2>&1 || true
}
trap cleanup EXIT

# Keeps test traffic on this machine: a packet from a node container to a pod
# or service address that no rule in the node caught must not leave through
# Docker's NAT. Matches only traffic arriving from Docker's bridges.
guard_docker_user() {
	iptables -nL DOCKER-USER >/dev/null 2>&1 || return 0
	local in cidr rule
	for in in 'br-+' docker0; do
		for cidr in 10.42.0.0/16 10.43.0.0/16; do
			rule=(DOCKER-USER -i "$in" -d "$cidr" -m comment --comment "distro test clusters: keep cluster traffic local" -j REJECT)
			iptables -C "${rule[@]}" 2>/dev/null || iptables -I "${rule[@]}"
		done
	done
}

ndk() { docker exec "$net-s1" distro kubectl "$@"; }

dump_nodes() {
	for c in "$net-s1" "$net-a1"; do docker logs "$c" >"$out/$c.log" 2>&1 || true; done
	ndk get pods -A -o wide >"$out/pods.txt" 2>&1 || true
}

wait_for() { # seconds, what, command...
	local limit=$1 what=$2 t0=$SECONDS next=0
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS - t0 > limit)); then
			dump_nodes
			die "$what: not done after ${limit}s (node logs in $out)"
		fi
		if ((SECONDS >= next)); then
			log "waiting for $what"
			next=$((SECONDS + 15))
		fi
		sleep 2
	done
}

has_token() { docker exec "$net-s1" cat /var/lib/distro/server/token | grep -q '^K10'; }

two_nodes_ready() {
	[ "$(ndk get nodes -o 'jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {end}' | grep -o True | wc -l)" -ge 2 ]
}

if [ -n "${KUBECONFIG:-}" ]; then
	kubeconfig=$KUBECONFIG
	log "existing cluster: KUBECONFIG=$kubeconfig (its nodes must hold the images of build/conformance-images)"
else
	command -v docker >/dev/null && docker info >/dev/null 2>&1 || die "no Docker engine runs here (or set KUBECONFIG to use an existing cluster)"
	docker image inspect "$node_image" >/dev/null 2>&1 || die "node image $node_image not found: make image"
	compgen -G "$images/*.tar" >/dev/null || die "no image tarballs in $images: make conformance-images"
	net=distro-conformance-$$
	opts=(--cap-add ALL --cap-drop SYS_RESOURCE --security-opt seccomp=unconfined
		--security-opt apparmor=unconfined --security-opt systempaths=unconfined --device /dev/kmsg
		--tmpfs /run --tmpfs /var/run --cgroupns host -v /sys/fs/cgroup:/sys/fs/cgroup:rw
		--network "$net" -v "$images:/var/lib/distro/agent/images:ro")
	guard_docker_user
	docker network create "$net" >/dev/null
	log "starting $net-s1 (server) with the conformance images in its airgap folder ($(du -sh "$images" | cut -f1))"
	docker run -d --name "$net-s1" --hostname "$net-s1" "${opts[@]}" "$node_image" server >/dev/null
	wait_for 180 "the server's join token" has_token
	token=$(docker exec "$net-s1" cat /var/lib/distro/server/token)
	log "starting $net-a1 (agent)"
	docker run -d --name "$net-a1" --hostname "$net-a1" "${opts[@]}" "$node_image" \
		agent --server "https://$net-s1:6443" --token "$token" >/dev/null
	wait_for 600 "2 nodes Ready (each imports the images first)" two_nodes_ready
	wait_for 300 "CoreDNS available" ndk -n kube-system wait --for=condition=Available deployment/coredns --timeout=5s
	ip=$(docker inspect -f "{{(index .NetworkSettings.Networks \"$net\").IPAddress}}" "$net-s1")
	kubeconfig=$out/kubeconfig
	docker exec "$net-s1" cat /etc/distro/distro.yaml | sed -E "s#server: https://[^ ]+#server: https://$ip:6443#" >"$kubeconfig"
	chmod 600 "$kubeconfig"
	ndk get nodes -o wide | sed 's/^/    /' >&2
fi

log "running the suite with hydrophone ($procs processes; results in $out)"
set +e
"$hydrophone" --kubeconfig "$kubeconfig" --focus "$focus" ${SKIP:+--skip "$SKIP"} -p "$procs" --output-dir "$out" \
	--conformance-image "registry.k8s.io/conformance:$k8s_version" \
	--busybox-image registry.k8s.io/e2e-test-images/busybox:1.36.1-1 \
	--startup-timeout 10m 2>&1 | tee "$out/hydrophone.log"
set -e
if [ -n "$net" ]; then dump_nodes; fi

junit=$out/junit_01.xml
[ -s "$junit" ] || die "no junit_01.xml in $out: the run did not complete (see hydrophone.log)"
# Counts and the failed tests' names from the JUnit report (the suite's
# setup and report nodes are not tests).
read -r passed failed < <(python3 - "$junit" "$out/failures.txt" <<'EOF'
import sys, xml.etree.ElementTree as ET
passed, failed = 0, []
for c in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    name = c.get("name", "")
    if c.find("skipped") is not None or c.get("status") == "skipped" or name.startswith(
            ("[SynchronizedBeforeSuite]", "[SynchronizedAfterSuite]", "[ReportAfterSuite]", "[ReportBeforeSuite]")):
        continue
    if c.find("failure") is not None or c.find("error") is not None:
        failed.append(name)
    else:
        passed += 1
with open(sys.argv[2], "w") as f:
    f.writelines(n + "\n" for n in failed)
for n in failed:
    print("FAILED: " + n, file=sys.stderr)
print(passed, len(failed))
EOF
)
log "done in $(((SECONDS - start) / 60)) min; results in $out"
echo "conformance: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || exit 1
# A focus that matched fewer tests than asked for is a failure too (a name
# in quick.txt that the suite does not have, or a focus that matched nothing).
ran=$((passed + failed))
[ "$ran" -gt 0 ] || die "no test ran: the focus matched nothing"
[ -z "${expected:-}" ] || [ "$ran" -eq "$expected" ] || die "$ran of the $expected tests in quick.txt ran"

