#!/usr/bin/env bash
# Assembles the userland a distro node needs inside a container (iptables,
# nftables, mount, iproute2, conntrack, a busybox shell) from Debian's packages, with
# their library dependencies, into OUT (default build/rootfs). The Dockerfile
# copies it into an image FROM scratch: no registry is involved.
set -euo pipefail
out=${1:-build/rootfs}
want=(iptables nftables mount iproute2 busybox-static conntrack)
# Packaging machinery the image never runs.
skip='^(debconf|cdebconf|dpkg|install-info|libdebian-installer4|libnewt0.52|libslang2|libtextwrap1|tar|perl-base|debianutils|readline-common|libreadline8|libssl3|openssl|libcap2-bin)$'
[ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock)" ] || apt-get update -qq
pkgs=$(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances "${want[@]}" |
	grep -E '^[a-z0-9]' | sort -u | grep -vE "$skip")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download $pkgs >/dev/null)
rm -rf "$out.new" && mkdir -p "$out.new"
for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$out.new"; done
# What Debian's maintainer scripts would set up.
r=$out.new
for t in iptables ip6tables; do
	for s in "" -save -restore; do ln -sf "$t-nft$s" "$r/usr/sbin/$t$s"; done
done
mkdir -p "$r/bin" "$r/tmp" "$r/run" "$r/var/lib/distro" "$r/var/lib/kubelet" "$r/var/log" "$r/etc" "$r/root"
chmod 1777 "$r/tmp"
for app in sh ls cat ps mkdir rm grep sed awk find xargs pgrep pkill sleep echo mktemp readlink id head sort tr kill umount; do
	[ -e "$r/bin/$app" ] || [ -e "$r/usr/bin/$app" ] || ln -s busybox "$r/bin/$app"
done
echo 'root:x:0:0:root:/root:/bin/sh' > "$r/etc/passwd"
echo 'root:x:0:' > "$r/etc/group"
echo 'hosts: files dns' > "$r/etc/nsswitch.conf"
# The kubelet reports PRETTY_NAME as the node's OS image (kubectl get nodes
# -o wide): a node in a container says it runs distro, not "Unknown".
ver=${DISTRO_VERSION:-dev}
cat > "$r/etc/os-release" <<EOR
NAME="distro"
ID=distro
VERSION_ID="$ver"
PRETTY_NAME="distro $ver"
EOR
# Every tool the node runs must find its libraries (a dependency left out
# above fails here, not silently in a node).
for tool in "/usr/sbin/iptables --version" "/usr/sbin/nft --version" "/bin/ip -V" "/usr/sbin/conntrack --version" "/bin/mount --version"; do
	chroot "$r" $tool >/dev/null 2>&1 || { echo "docker-rootfs: '$tool' does not run in the image's userland:" >&2; chroot "$r" $tool >&2; exit 1; }
done
rm -rf "$out" && mv "$r" "$out"
echo "rootfs: $(du -sh "$out" | cut -f1) in $out ($(echo $pkgs | wc -w) packages)"
