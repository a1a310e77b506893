#!/usr/bin/env bash
# Installs the Debian packages building and testing distro needs, only when
# missing. Run as root (CI and the project's machines are).
#   iptables iproute2 mount conntrack: what kube-proxy, CNI and the kubelet call
#   nftables: the NetworkPolicy controller (nft)
#   busybox-static: the integration tests' image is built from it
#   gcc libc6-dev libseccomp-dev pkg-config: runc (cgo, static, seccomp)
#   python3: reads the conformance suite's JUnit report
#   zstd: compresses the runtime bundle carried in the binary
set -euo pipefail
pkgs=(iptables nftables iproute2 mount conntrack git curl busybox-static gcc libc6-dev libseccomp-dev pkg-config python3 zstd)
need=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if ((${#need[@]})); then
	echo "installing host packages: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! command -v go >/dev/null 2>&1; then
	echo "Go 1.26.6 or newer is required (not found in PATH; /usr/local/go/bin?)" >&2
	exit 1
fi
