#!/bin/sh
# Stops everything the distro node of one data dir started: the distro
# process, its containerd, its shims and containers, pod mounts, network
# namespaces, the cni0/flannel.1 interfaces and the iptables/nftables rules
# of kube-proxy, flannel, CNI, network policies and distro. Pods outlive a
# server stop by design; this is the full clean-up.
#
# DISTRO_DATA_DIR selects the data dir (default /var/lib/distro). Only what
# belongs to it is touched: distro processes whose data dir (--data-dir, else
# the config file's data-dir, else the default) is this one and that run in
# this mount namespace (distro nodes in containers have their own, even when
# their data dir has the same path), the containerd and shims started from
# this data dir, and the mounts under its containerd root. What all nodes of a mount namespace
# share (/run/distro, the kubelet's pod folders, /run/netns, /var/lib/cni)
# and of a network namespace (cni0, flannel.1, iptables, nftables) is
# cleaned only when no other distro node uses it.
set -u
[ "$(id -u)" = 0 ] || { echo "distro-killall.sh: run as root" >&2; exit 1; }
me=distro-killall.sh

# abs DIR [BASE]: DIR made absolute against BASE (default $PWD), without
# trailing slashes.
abs() {
	case "$1" in
	/*) p=$1 ;;
	*) p=${2:-$PWD}/$1 ;;
	esac
	while [ "${#p}" -gt 1 ] && [ "${p%/}" != "$p" ]; do p=${p%/}; done
	printf '%s\n' "$p"
}

# canon DIR: DIR with symlinks resolved, DIR itself when it does not exist.
canon() { (cd -P "$1" 2>/dev/null && pwd -P) || printf '%s\n' "$1"; }

DATA_DIR=$(abs "${DISTRO_DATA_DIR:-/var/lib/distro}")
DATA_CANON=$(canon "$DATA_DIR")
MNT_NS=$(readlink /proc/self/ns/mnt)
NET_NS=$(readlink /proc/self/ns/net)

# is_data_dir DIR: DIR is this data dir.
is_data_dir() { [ "$1" = "$DATA_DIR" ] || [ "$(canon "$1")" = "$DATA_CANON" ]; }

# under_data_dir PATH: PATH is below this data dir.
under_data_dir() {
	case "$1" in
	"$DATA_DIR"/* | "$DATA_CANON"/*) return 0 ;;
	esac
	return 1
}

# yaml_value FILE KEY: a top-level scalar of a distro config file.
yaml_value() {
	[ -r "$1" ] || return 0
	sed -n "s/^$2:[[:space:]]*//p" "$1" 2>/dev/null | head -n 1 |
		sed -e 's/[[:space:]]#.*$//' -e 's/[[:space:]]*$//' -e "s/^[\"']//" -e "s/[\"']\$//"
}

# distro_info PID: for a `distro server` or `distro agent`, one line
# "<data dir>|<1 when it runs a node, else 0>|<kubelet root dir or empty>";
# nothing for any other process. The data dir and config file paths are
# read as that process sees them (its cwd and root).
distro_info() {
	pid=$1
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 0
	exe=${exe% (deleted)}
	[ "${exe##*/}" = distro ] || return 0
	cwd=$(readlink "/proc/$pid/cwd" 2>/dev/null) || return 0
	parsed=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | awk '
		function karg(s) { if (s ~ /^-*root-dir=/) { sub(/^-*root-dir=/, "", s); root = s } }
		NR == 1 { next }
		NR == 2 { if ($0 != "server" && $0 != "agent") exit; kind = $0; next }
		want == "k" { karg($0); want = ""; next }
		want != "" { v[want] = $0; want = ""; next }
		$0 == "--data-dir" || $0 == "-d" { want = "d"; next }
		$0 == "--config" || $0 == "-c" { want = "c"; next }
		$0 == "--kubelet-arg" { want = "k"; next }
		/^--data-dir=/ { v["d"] = substr($0, 12); next }
		/^--config=/ { v["c"] = substr($0, 10); next }
		/^--kubelet-arg=/ { karg(substr($0, 15)); next }
		/^-d./ { s = substr($0, 3); sub(/^=/, "", s); v["d"] = s; next }
		/^-c./ { s = substr($0, 3); sub(/^=/, "", s); v["c"] = s; next }
		$0 == "--disable-agent" || $0 == "--disable-agent=true" { noagent = 1 }
		END { if (kind != "") printf "%s|%s|%s|%s|%s\n", kind, v["d"], v["c"], noagent + 0, root }')
	[ -n "$parsed" ] || return 0
	IFS='|' read -r kind dir cfg noagent kroot <<EOF
$parsed
EOF
	cfg=$(abs "${cfg:-/etc/distro/config.yaml}" "$cwd")
	cfg=/proc/$pid/root$cfg
	[ -n "$dir" ] || dir=$(yaml_value "$cfg" data-dir)
	dir=$(abs "${dir:-/var/lib/distro}" "$cwd")
	node=1
	if [ "$kind" = server ]; then
		[ "$noagent" = 1 ] && node=0
		[ "$(yaml_value "$cfg" disable-agent)" = true ] && node=0
	fi
	[ -n "$kroot" ] && kroot=$(abs "$kroot" "$cwd")
	printf '%s|%s|%s\n' "$dir" "$node" "$kroot"
}

# tree PID: the pid and all its descendants.
tree() {
	echo "$1"
	for c in $(pgrep -P "$1" 2>/dev/null); do tree "$c"; done
}

# 1. What runs: this data dir's distro, containerd and shims (in this mount
# namespace), and whether another distro node shares this mount or network
# namespace (a distro process with a node, or the shims of its pods).
MINE="" CONTAINERD="" SHIMS=""
OTHER_MNT=0 OTHER_NET=0
KUBELET_DIR=/var/lib/kubelet
for d in /proc/[0-9]*; do
	p=${d#/proc/}
	[ "$p" = "$$" ] && continue
	exe=$(readlink "$d/exe" 2>/dev/null) || continue
	exe=${exe% (deleted)}
	case "${exe##*/}" in
	distro | containerd | containerd-shim-runc-v2) ;;
	*) continue ;;
	esac
	same_mnt=0 same_net=0
	[ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$MNT_NS" ] && same_mnt=1
	[ "$(readlink "$d/ns/net" 2>/dev/null)" = "$NET_NS" ] && same_net=1
	case "${exe##*/}" in
	distro)
		info=$(distro_info "$p")
		[ -n "$info" ] || continue
		IFS='|' read -r dir node kroot <<EOF
$info
EOF
		if [ "$same_mnt" = 1 ] && is_data_dir "$dir"; then
			MINE="$MINE $p"
			[ -n "$kroot" ] && KUBELET_DIR=$kroot
		elif [ "$node" = 1 ]; then
			[ "$same_mnt" = 1 ] && OTHER_MNT=1
			[ "$same_net" = 1 ] && OTHER_NET=1
		fi
		;;
	containerd)
		[ "$same_mnt" = 1 ] || continue
		cfg=$(tr '\0' '\n' <"$d/cmdline" 2>/dev/null | awk 'prev == "--config" { print; exit } { prev = $0 }')
		case "$cfg" in
		*/agent/etc/containerd/config.toml)
			is_data_dir "${cfg%/agent/etc/containerd/config.toml}" && CONTAINERD="$CONTAINERD $p"
			;;
		esac
		;;
	containerd-shim-runc-v2)
		if [ "$same_mnt" = 1 ] && under_data_dir "$exe"; then
			SHIMS="$SHIMS $p"
			continue
		fi
		case "$exe" in
		*/data/*/bin/containerd-shim-runc-v2) # a shim of another distro node's pods
			[ "$same_mnt" = 1 ] && OTHER_MNT=1
			[ "$same_net" = 1 ] && OTHER_NET=1
			;;
		esac
		;;
	esac
done

# 2. distro itself (server or agent), then its containerd.
if [ -n "$MINE" ]; then
	kill -TERM $MINE 2>/dev/null
	i=0
	while [ "$i" -lt 50 ]; do
		alive=""
		for p in $MINE; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
		[ -n "$alive" ] || break
		sleep 0.1
		i=$((i + 1))
	done
	for p in $MINE; do kill -KILL "$p" 2>/dev/null; done
fi
for p in $CONTAINERD; do kill -KILL "$p" 2>/dev/null; done

# 3. Shims started from this data dir's bundle, with every container
# under them.
for p in $SHIMS; do kill -KILL $(tree "$p") 2>/dev/null; done
[ -n "$SHIMS" ] && sleep 0.5

# 4. Mounts: those under this data dir's containerd root; pod volumes,
# container rootfs and sandboxes' network namespaces where no other node
# shares them.
do_unmount() {
	awk -v p="$1" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null || true
	done
}
do_unmount "$DATA_DIR/agent/containerd/"
[ "$DATA_CANON" != "$DATA_DIR" ] && do_unmount "$DATA_CANON/agent/containerd/"
if [ "$OTHER_MNT" = 0 ]; then
	do_unmount /run/distro/
	do_unmount /run/netns/cni-
	do_unmount "$KUBELET_DIR/pods/"
	do_unmount "$KUBELET_DIR/plugins/"
	rm -f /run/netns/cni-* 2>/dev/null
	rm -rf /run/distro /var/lib/cni
else
	echo "$me: another distro node runs in this mount namespace: leaving /run/distro, $KUBELET_DIR/pods, /run/netns and /var/lib/cni"
fi

# 5. Interfaces and the rules of kube-proxy, flannel, CNI, network
# policies and distro, where no other node shares this network namespace.
if [ "$OTHER_NET" = 0 ]; then
	for i in cni0 flannel.1; do ip link delete "$i" 2>/dev/null || true; done
	for t in iptables ip6tables; do
		command -v "$t-save" >/dev/null 2>&1 || continue
		"$t-save" | grep -v -E 'KUBE-|CNI-|FLANNEL-|flanneld|distro' | "$t-restore" 2>/dev/null || true
	done
	if command -v nft >/dev/null 2>&1; then
		nft delete table ip kube-proxy 2>/dev/null || true
		nft delete table ip6 kube-proxy 2>/dev/null || true
		nft delete table inet distro-netpol 2>/dev/null || true
	fi
else
	echo "$me: another distro node runs in this network namespace: leaving cni0, flannel.1, iptables and nftables rules"
fi
echo "$me: done ($DATA_DIR)"
