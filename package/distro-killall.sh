#!/bin/sh
# Stops everything a distro node started: the distro process, its
# containerd, every shim and container, pod mounts, network namespaces,
# the cni0/flannel.1 interfaces and the iptables rules of kube-proxy, CNI and
# distro. Pods outlive a server stop by design; this is the full clean-up.
# DISTRO_DATA_DIR selects the data dir (default /var/lib/distro).
set -u
[ "$(id -u)" = 0 ] || { echo "distro-killall.sh: run as root" >&2; exit 1; }
DATA_DIR=${DISTRO_DATA_DIR:-/var/lib/distro}
RUN_DIR=/run/distro

# pids_of PATTERN: processes whose command line matches.
pids_of() { pgrep -f "$1" 2>/dev/null || true; }

# tree PID: the pid and all its descendants.
tree() {
	echo "$1"
	for c in $(pgrep -P "$1" 2>/dev/null); do tree "$c"; done
}

# 1. distro itself (server or agent), then its containerd.
for p in $(pids_of "distro (server|agent)"); do kill -TERM "$p" 2>/dev/null; done
sleep 1
for p in $(pids_of "distro (server|agent)"); do kill -KILL "$p" 2>/dev/null; done
for p in $(pids_of "containerd --config .*/agent/etc/containerd/config.toml"); do kill -KILL "$p" 2>/dev/null; done

# 2. Shims started from distro's bundle, with every container under them.
for p in $(pgrep -f containerd-shim-runc-v2 2>/dev/null); do
	exe=$(readlink "/proc/$p/exe" 2>/dev/null || true)
	case "$exe" in
	"$DATA_DIR"/data/*) kill -KILL $(tree "$p") 2>/dev/null ;;
	esac
done
sleep 0.5

# 3. Mounts: pod volumes, container rootfs, sandboxes' network namespaces.
do_unmount() {
	awk -v p="$1" '$2 ~ "^"p {print $2}' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}
do_unmount "$RUN_DIR"
do_unmount /run/netns/cni-
do_unmount /var/lib/kubelet/pods
do_unmount /var/lib/kubelet/plugins
do_unmount "$DATA_DIR/agent/containerd"
rm -f /run/netns/cni-* 2>/dev/null

# 4. Interfaces.
for i in cni0 flannel.1; do ip link delete "$i" 2>/dev/null || true; done

# 5. iptables rules of kube-proxy, CNI and distro; kube-proxy's nftables tables.
for t in iptables ip6tables; do
	command -v "$t-save" >/dev/null 2>&1 || continue
	"$t-save" | grep -v -E 'KUBE-|CNI-|distro' | "$t-restore" 2>/dev/null || true
done
if command -v nft >/dev/null 2>&1; then
	nft delete table ip kube-proxy 2>/dev/null || true
	nft delete table ip6 kube-proxy 2>/dev/null || true
fi

rm -rf "$RUN_DIR" /var/lib/cni
echo "distro-killall.sh: done"
