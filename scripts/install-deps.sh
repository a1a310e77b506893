#!/usr/bin/env bash
# Installs what building and running distro needs on a Debian host, only
# when missing. Run as root (CI and the project's machines are).
set -euo pipefail
need=()
for pair in "iptables:iptables" "ip:iproute2" "mount:mount" "git:git" "curl:curl"; do
	cmd=${pair%%:*} pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
if ((${#need[@]})); then
	echo "installing host packages: ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
	echo "Go 1.26.6 or newer is required (not found in PATH or /usr/local/go)" >&2
	exit 1
fi
