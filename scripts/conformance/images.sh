#!/usr/bin/env bash
# Builds, from source and offline, the images Kubernetes v1.37.2's
# [Conformance] tests and the conformance runner use, as docker-archive
# tarballs for `ctr -n k8s.io images import` (or distro's
# <data-dir>/agent/images/), under the exact upstream names:
#
#   scripts/conformance/images.sh OUT
#
#   OUT/agnhost.tar           registry.k8s.io/e2e-test-images/agnhost:2.66.1 and :2.55
#   OUT/busybox.tar           registry.k8s.io/e2e-test-images/busybox:1.37.0-2 and :1.36.1-1
#   OUT/nginx.tar             registry.k8s.io/e2e-test-images/nginx:1.27.0-2
#   OUT/glibc-dns-testing.tar registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1
#   OUT/kitten.tar            registry.k8s.io/e2e-test-images/kitten:1.8
#   OUT/nautilus.tar          registry.k8s.io/e2e-test-images/nautilus:1.8
#   OUT/nonewprivs.tar        registry.k8s.io/e2e-test-images/nonewprivs:1.4
#   OUT/sample-apiserver.tar  registry.k8s.io/e2e-test-images/sample-apiserver:1.29.2
#   OUT/etcd.tar              registry.k8s.io/etcd:3.7.0-0
#   OUT/conformance.tar       registry.k8s.io/conformance:v1.37.2
#
# (registry.k8s.io/pause:3.10.2 is carried by distro itself.) A tar with two
# tags holds one image config per tag over the same layers: distinct images
# (tests that switch between the tags see an image change), stored once.
#
# Programs are built from their Go modules (scripts/conformance/go.mod, its own
# module so that test-only dependencies stay out of distro's go.mod, pinned to
# the versions k8s.io/kubernetes v1.37.2 requires); userlands from Debian
# packages (apt-get download + dpkg-deb, nothing installed on the host) and a
# busybox; no registry is involved. Upstream's Alpine-based images become an
# Alpine-style busybox userland with Debian's packages for what upstream adds
# with apk; the Debian-based ones (glibc-dns-testing, conformance) a
# bookworm userland. `images.sh --help` lists what differs from upstream.
#
# Inputs: the Go toolchain (PATH or /usr/local/go/bin), apt's package lists
# (apt-get update is run when there are none), the busybox binary that
# scripts/conformance/busybox.sh builds (Debian's busybox-static when that
# script is absent), and the distro binary for the conformance image's
# kubectl: $DISTRO_BIN, else bin/distro.
#
# Idempotent: every binary, root filesystem folder and tarball carries a stamp
# of its inputs under OUT/.work and is rebuilt only when they change. A
# second run with nothing changed takes a few seconds.
#
# Environment: DISTRO_BIN (kubectl for the conformance image), GO_P (go build
# -p, default the number of CPUs; busybox.sh's make -j unless JOBS is set),
# SOURCE_DATE_EPOCH (timestamps in the images, default 0).
set -Eeuo pipefail

usage() {
	sed -n '2,/^set -E/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
	cat <<'EOF'
Differences from upstream's images (no registry, no Alpine packages here):
  - agnhost, kitten, nautilus, nginx, nonewprivs, sample-apiserver: upstream is
    Alpine (musl); here busybox + Debian bookworm packages (glibc) for what
    upstream installs with apk. /etc/os-release keeps upstream's Alpine fields
    (a test reads them) with a comment saying what the image really is.
  - agnhost: no /var/registry (upstream's fake-registry content is pulled from
    registries at build time); /coredns is distro's CoreDNS (scripts/addons),
    not CoreDNS 1.6.2. Both tags are one agnhost build (main.Version=2.66.1).
  - nginx: Debian's nginx 1.22.1 with the official image's configuration,
    user, entrypoint (IPv6 listen script only) and stop signal, not 1.27.
  - glibc-dns-testing: /coredns is distro's CoreDNS, not 1.5.0.
  - etcd: etcd v3.7.0 only (etcdctl/etcdutl 3.7.0 are not on the proxy).
  - conformance: kubectl is the distro binary (it dispatches on argv[0]).
EOF
}
case ${1:-} in
-h | --help) usage; exit 0 ;;
'') usage >&2; exit 2 ;;
esac

start=$SECONDS
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)
work=$out/.work
mkdir -p "$work"/{bin,debs,rootfs,stamps,tmp}

K8S_VERSION=v1.37.2
AGNHOST_VERSION=2.66.1
E2E=registry.k8s.io/e2e-test-images
# Maintainer-script machinery that images never run; dpkg's own files would
# only confuse (no status database is written).
DEB_SKIP='^(debconf|cdebconf|dpkg|perl-base|install-info|init-system-helpers|sysvinit-utils|lsb-base|libdebconfclient0|usrmerge|usr-is-merged)$'

step=setup
times=()
log() { printf '==> [%5ds] %s\n' $((SECONDS - start)) "$*" >&2; }
warn() { log "WARNING: $*"; }
die() {
	echo "images.sh: error: $*" >&2
	exit 1
}
# shellcheck disable=SC2154 # rc is assigned in the trap
trap 'rc=$?; echo "images.sh: error: step \"$step\" failed (exit status $rc, line $LINENO); see the output above" >&2; exit $rc' ERR
trap 'rm -rf "$work/tmp"' EXIT

# ---------------------------------------------------------------- helpers

hash() { sha256sum | cut -c1-64; }
# Hash of files' contents (names are not part of it).
hash_files() { sha256sum "$@" | cut -c1-64 | hash; }
# fresh NAME TARGET KEY: TARGET exists and was built from inputs hashing to KEY.
fresh() { [ -e "$2" ] && [ -f "$work/stamps/$1" ] && [ "$(cat "$work/stamps/$1")" = "$3" ]; }
stamp() { echo "$2" >"$work/stamps/$1"; }
# timed LABEL CMD...: runs CMD and records how long it took.
timed() {
	local label=$1 t0=$SECONDS
	shift
	"$@"
	times+=("$(printf '%-34s %5ds' "$label" $((SECONDS - t0)))")
}
NICE=(nice -n 19)

# ---------------------------------------------------------------- host

host_packages() {
	local need=() p
	for p in "$@"; do
		[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || need+=("$p")
	done
	((${#need[@]})) || return 0
	log "installing host packages: ${need[*]}"
	apt_lists
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" ||
		die "apt-get install ${need[*]} failed"
}

apt_lists() {
	if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
		log "apt-get update (no package lists yet)"
		# Unreachable third-party sources make apt-get update fail; Debian's
		# lists may still have arrived, which the resolution below checks.
		DEBIAN_FRONTEND=noninteractive apt-get update -qq || warn "apt-get update reported errors"
	fi
}

if ! command -v go >/dev/null 2>&1; then
	export PATH=/usr/local/go/bin:$PATH
	command -v go >/dev/null 2>&1 || die "the Go toolchain is required (not in PATH nor /usr/local/go/bin)"
fi
{ command -v apt-get && command -v dpkg-deb; } >/dev/null || die "a Debian host (apt-get, dpkg-deb) is required"
[ "$(id -u)" = 0 ] || die "run as root: the root filesystems keep file owners and setuid bits"
host_packages ca-certificates
apt_lists
export GOFLAGS=-buildvcs=false CGO_ENABLED=0
GO_P=${GO_P:-$(nproc)}
ARCH=$(go env GOARCH)

# ---------------------------------------------------------------- busybox

step=busybox
busybox_note=
if [ -f "$here/busybox.sh" ]; then
	key=$(hash_files "$here/busybox.sh")
	if ! fresh busybox "$work/bin/busybox" "$key"; then
		log "busybox (scripts/conformance/busybox.sh)"
		export JOBS=${JOBS:-$GO_P}
		timed "busybox (busybox.sh)" "${NICE[@]}" bash "$here/busybox.sh" "$work/tmp/busybox"
		[ -x "$work/tmp/busybox" ] || die "scripts/conformance/busybox.sh did not produce $work/tmp/busybox"
		mv "$work/tmp/busybox" "$work/bin/busybox"
		stamp busybox "$key"
	fi
else
	busybox_note="Debian's busybox-static (scripts/conformance/busybox.sh not found): its ash drops environment variables whose names are not shell identifiers, which two ConfigMap/Secret env tests need"
	warn "$busybox_note"
	host_packages busybox-static
	key=$(hash_files /bin/busybox)
	if ! fresh busybox "$work/bin/busybox" "$key"; then
		cp /bin/busybox "$work/tmp/busybox"
		mv "$work/tmp/busybox" "$work/bin/busybox"
		stamp busybox "$key"
	fi
fi
busybox=$work/bin/busybox
"$busybox" true 2>/dev/null || die "$busybox does not run on this host"

# ---------------------------------------------------------------- Debian packages

# resolve NAME PKG...: writes OUT/.work/debs/NAME.list.
resolve() {
	local name=$1
	shift
	: >"$work/tmp/empty-status"
	if ! apt-get -s -o Dir::State::status="$work/tmp/empty-status" -o APT::Install-Recommends=false \
		-o APT::Install-Suggests=false install "$@" >"$work/tmp/sim" 2>&1; then
		cat "$work/tmp/sim" >&2
		die "apt cannot resolve $* (package lists missing or stale? try apt-get update)"
	fi
	awk '/^Inst /{ sub(/^\(/, "", $3); print $2 "=" $3 }' "$work/tmp/sim" |
		awk -F= -v skip="$DEB_SKIP" '$1 !~ skip' | sort >"$work/debs/$name.list"
}

# debs NAME PKG...: resolves PKG and their dependencies (no recommends) as apt
# would install them on an empty system, downloads the .debs once into
# OUT/.work/debs, and writes the "package=version" list to
# OUT/.work/debs/NAME.list.
debs() {
	local name=$1
	shift
	step="resolve Debian packages for $name"
	# The resolution only changes with the request and apt's package lists.
	local key
	key=$( { printf '%s\n' "$@" "$DEB_SKIP"; stat -c '%n %s %Y' /var/lib/apt/lists/*_Packages* 2>/dev/null || true; } | hash)
	if ! fresh "debs-$name" "$work/debs/$name.list" "$key"; then
		resolve "$name" "$@"
		stamp "debs-$name" "$key"
	fi
	local want=() p v
	while IFS='=' read -r p v; do
		compgen -G "$work/debs/${p}_${v//:/%3a}_*.deb" >/dev/null || want+=("$p=$v")
	done <"$work/debs/$name.list"
	if ((${#want[@]})); then
		step="download Debian packages for $name"
		log "downloading ${#want[@]} Debian packages for $name"
		(cd "$work/debs" && apt-get -q -o APT::Sandbox::User=root download "${want[@]}" >/dev/null) ||
			die "apt-get download failed for: ${want[*]}"
	fi
}

# extract DIR LIST: unpacks the packages of LIST into DIR (keeping DIR's
# directory symlinks: /bin -> usr/bin in a merged-/usr tree), then drops
# documentation, manuals and locales as Debian's slim images do.
extract() {
	local dir=$1 list=$2 p v deb
	while IFS='=' read -r p v; do
		deb=$(compgen -G "$work/debs/${p}_${v//:/%3a}_*.deb" | head -1 || true)
		[ -n "$deb" ] || die "no .deb for $p=$v in $work/debs"
		dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$dir" --keep-directory-symlink
	done <"$list"
	rm -rf "$dir"/usr/share/{man,info,lintian,linda,groff,locale,bug,doc-base,bash-completion}
	if [ -d "$dir/usr/share/doc" ]; then
		find "$dir/usr/share/doc" ! -type d ! -name copyright -delete
		find "$dir/usr/share/doc" -depth -type d -empty -delete
	fi
	rm -rf "$dir"/etc/init.d "$dir"/etc/logrotate.d "$dir"/lib/systemd "$dir"/usr/lib/systemd "$dir"/etc/systemd
}

# Packages that some Debian image builds use, resolved now so that their
# versions are part of the layers' keys.
debs agnhost bind9-dnsutils bind9-host curl netcat-openbsd iproute2 iperf bash util-linux socat libc-bin netbase
debs nginx nginx netbase libc-bin
DEBIAN_BASE=(base-files base-passwd bash coreutils dash diffutils findutils grep gzip hostname mawk sed tar libc-bin ncurses-base)
debs debian-base "${DEBIAN_BASE[@]}"
debs glibc-dns-testing "${DEBIAN_BASE[@]}" dnsutils

# ---------------------------------------------------------------- Go programs

# Everything the Go builds read: the module, the tool sources, the toolchain.
gokey=$({
	go version
	echo "$GOFLAGS $CGO_ENABLED $GO_P"
	cat "$here/go.mod" "$here/go.sum"
	find "$here/tools" -type f -name '*.go' | sort | xargs cat
} | hash)

# gobuild NAME build|test PKG FLAGS...: `go build|test FLAGS -o
# OUT/.work/bin/NAME PKG` in scripts/conformance.
gobuild() {
	local name=$1 verb=$2 pkg=$3
	shift 3
	local key
	key=$( { echo "$gokey"; printf '%s\n' "$verb" "$pkg" "$@"; } | hash)
	fresh "go-$name" "$work/bin/$name" "$key" && return 0
	step="go $verb $name"
	log "building $name (go $verb $pkg)"
	timed "go: $name" "${NICE[@]}" go -C "$here" "$verb" -p "$GO_P" "$@" -o "$work/tmp/$name" "$pkg"
	mv "$work/tmp/$name" "$work/bin/$name"
	stamp "go-$name" "$key"
}

build_date=$(date -u -d "@${SOURCE_DATE_EPOCH:-0}" +%Y-%m-%dT%H:%M:%SZ)
kube_ldflags="-s -w"
for kv in gitVersion=$K8S_VERSION gitMajor=1 gitMinor=37 gitTreeState=clean buildDate=$build_date; do
	kube_ldflags+=" -X k8s.io/component-base/version.$kv -X k8s.io/client-go/pkg/version.$kv"
done
# What upstream's release builds use (hack/lib/golang.sh).
kube_tags=selinux,notest,grpcnotrace

gobuild imgtar build ./tools/imgtar -ldflags '-s -w'
gobuild nnp build k8s.io/kubernetes/test/images/nonewprivs -ldflags '-s -w'
gobuild sample-apiserver build k8s.io/sample-apiserver -ldflags '-s -w'
gobuild etcd build ./tools/etcd -ldflags '-s -w'
gobuild agnhost build k8s.io/kubernetes/test/images/agnhost -ldflags "-s -w -X main.Version=$AGNHOST_VERSION"
gobuild ginkgo build github.com/onsi/ginkgo/v2/ginkgo -tags "$kube_tags" -ldflags "$kube_ldflags"
gobuild go-runner build k8s.io/kubernetes/test/conformance/image/go-runner -tags "$kube_tags" -ldflags "$kube_ldflags"
gobuild e2e.test test k8s.io/kubernetes/test/e2e -c -vet=off -tags "$kube_tags" -ldflags "$kube_ldflags"

# CoreDNS for agnhost's and glibc-dns-testing's /coredns: distro's own build
# (scripts/addons, the cluster-DNS plugin set, which has the hosts and log
# plugins test/e2e/network's CoreDNS pods use).
coredns=
if [ -f "$root/scripts/addons/coredns/main.go" ]; then
	key=$( { go version; cat "$root/scripts/addons/go.mod" "$root/scripts/addons/go.sum" "$root/scripts/addons/coredns/main.go"; } | hash)
	if ! fresh go-coredns "$work/bin/coredns" "$key"; then
		step="go build coredns"
		log "building coredns (scripts/addons)"
		timed "go: coredns (scripts/addons)" "${NICE[@]}" go -C "$root/scripts/addons" build -p "$GO_P" -ldflags '-s -w' -o "$work/tmp/coredns" ./coredns
		mv "$work/tmp/coredns" "$work/bin/coredns"
		stamp go-coredns "$key"
	fi
	coredns=$work/bin/coredns
else
	warn "scripts/addons/coredns not found: agnhost and glibc-dns-testing get no /coredns"
fi

# ---------------------------------------------------------------- root filesystems

# layer NAME KEY FUNC: (re)builds the folder OUT/.work/rootfs/NAME with
# `FUNC DIR` unless it was built from inputs hashing to KEY.
layer() {
	local name=$1 key=$2 fn=$3 dir=$work/rootfs/$1
	key=$( { echo "$2"; hash_files "${BASH_SOURCE[0]}"; find "$here/files" -type f | sort | xargs sha256sum | cut -c1-64; } | hash)
	fresh "layer-$name" "$dir" "$key" && return 0
	step="root filesystem $name"
	log "root filesystem $name"
	rm -rf "$dir.new"
	mkdir -p "$dir.new"
	timed "rootfs: $name" "$fn" "$dir.new"
	rm -rf "$dir"
	mv "$dir.new" "$dir"
	stamp "layer-$name" "$key"
}
layerkey() { cat "$work/stamps/layer-$1"; }

# runlink ROOT TARGET: /var/run (and /var/lock) as symlinks into /run, as
# base-files' postinst makes them (the package ships them as folders).
runlink() {
	local r=$1 t=$2
	mkdir -p "$r/var"
	[ -L "$r/var/run" ] || { rmdir "$r/var/run" 2>/dev/null || true; ln -s "$t" "$r/var/run"; }
	[ -L "$r/var/lock" ] || { rmdir "$r/var/lock" 2>/dev/null || true; ln -s "$t/lock" "$r/var/lock"; }
	mkdir -p "$r/run/lock"
	chmod 1777 "$r/run/lock"
}

# ldcache ROOT: /etc/ld.so.cache, as libc-bin's trigger writes it (without
# ldconfig's aux-cache of inode numbers and times, which would make equal
# inputs give different layers).
ldcache() {
	ldconfig -r "$1"
	rm -f "$1/var/cache/ldconfig/aux-cache"
}

# The skeleton of an Alpine-style system: busybox for the userland, its
# applets as symlinks at the paths busybox names (unless a package put a
# program of that name in any of the PATH folders), Alpine's users and groups.
alpine_skel() {
	local r=$1 a
	mkdir -p "$r"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,usr/lib,etc,lib,home,root,tmp,var/tmp,run,proc,sys,dev,mnt,opt,srv,media}
	mkdir -p "$r"/var/{cache,empty,lib,local,log,mail,opt,spool}
	runlink "$r" ../run
	chmod 1777 "$r/tmp" "$r/var/tmp"
	chmod 0700 "$r/root"
	install -m 0755 "$busybox" "$r/bin/busybox"
	for a in $("$busybox" --list-full); do
		local n=${a##*/}
		[ "$n" = busybox ] || [ "$n" = "$a" ] && continue # /linuxrc
		[ -e "$r/bin/$n" ] || [ -L "$r/bin/$n" ] || [ -e "$r/sbin/$n" ] || [ -L "$r/sbin/$n" ] ||
			[ -e "$r/usr/bin/$n" ] || [ -L "$r/usr/bin/$n" ] || [ -e "$r/usr/sbin/$n" ] || [ -L "$r/usr/sbin/$n" ] ||
			ln -s /bin/busybox "$r/$a"
	done
	[ -e "$r/sbin/nologin" ] || install -m 0755 "$here/files/alpine/nologin" "$r/sbin/nologin"
	install -m 0644 "$here/files/alpine/passwd" "$here/files/alpine/group" "$r/etc/"
	install -m 0644 "$here/files/debian/nsswitch.conf" "$r/etc/nsswitch.conf"
	rm -f "$r/etc/os-release" "$r/usr/lib/os-release"
	install -m 0644 "$here/files/alpine/os-release" "$r/usr/lib/os-release"
	ln -s ../usr/lib/os-release "$r/etc/os-release"
	if compgen -G "$r/lib*/ld-linux*" >/dev/null; then
		ldcache "$r"
	fi
}

# A bookworm userland (merged /usr), as Debian's images have it.
debian_rootfs() {
	local r=$1 list=$2 d
	mkdir -p "$r"/usr/{bin,sbin,lib}
	for d in bin sbin lib; do ln -s "usr/$d" "$r/$d"; done
	if [ "$ARCH" = amd64 ]; then mkdir -p "$r/usr/lib64" && ln -s usr/lib64 "$r/lib64"; fi
	extract "$r" "$list"
	mkdir -p "$r"/{etc,home,root,tmp,var/tmp,run,proc,sys,dev}
	runlink "$r" /run
	chmod 1777 "$r/tmp" "$r/var/tmp"
	chmod 0700 "$r/root"
	# What the maintainer scripts would do: base-passwd's users and groups
	# (shadowed, as shadow's pwconv leaves them), alternatives.
	sed 's/^\([^:]*\):\*:/\1:x:/' "$r/usr/share/base-passwd/passwd.master" >"$r/etc/passwd"
	sed 's/^\([^:]*\):\*:/\1:x:/' "$r/usr/share/base-passwd/group.master" >"$r/etc/group"
	cut -d: -f1 "$r/etc/passwd" | sed 's/$/:*:19000:0:99999:7:::/' >"$r/etc/shadow"
	cut -d: -f1 "$r/etc/group" | sed 's/$/:*::/' >"$r/etc/gshadow"
	chmod 0644 "$r/etc/passwd" "$r/etc/group"
	chmod 0640 "$r/etc/shadow" "$r/etc/gshadow"
	chgrp 42 "$r/etc/shadow" "$r/etc/gshadow"
	[ -e "$r/usr/bin/awk" ] || ln -s mawk "$r/usr/bin/awk"
	[ -e "$r/usr/bin/nawk" ] || ln -s mawk "$r/usr/bin/nawk"
	install -m 0644 "$here/files/debian/nsswitch.conf" "$r/etc/nsswitch.conf"
	ldcache "$r"
}

# busybox:1.37.0-2 / 1.36.1-1: Docker Hub's busybox image layout: the binary
# and one hard link per applet in /bin, buildroot's users and groups, their
# home folders, /tmp.
build_busybox() {
	local r=$1 a
	mkdir -p "$r"/{bin,etc,tmp,root,home,usr/sbin,var/spool/mail,var/www}
	chmod 1777 "$r/tmp"
	chmod 0700 "$r/root"
	install -m 0755 "$busybox" "$r/bin/busybox"
	for a in $("$busybox" --list); do
		[ "$a" = busybox ] || [ -e "$r/bin/$a" ] || ln "$r/bin/busybox" "$r/bin/$a"
	done
	install -m 0644 "$here/files/busybox/passwd" "$here/files/busybox/group" "$r/etc/"
	install -m 0640 "$here/files/busybox/shadow" "$r/etc/shadow"
}

build_alpine() { alpine_skel "$1"; }

build_agnhost_base() {
	extract "$1" "$work/debs/agnhost.list"
	# Debian's alternative for what Alpine's netcat-openbsd installs directly
	# (before the busybox applets, which fill only the names still free).
	ln -s /bin/nc.openbsd "$1/usr/bin/nc"
	alpine_skel "$1"
	# from the Dockerfile: ln -s /usr/bin/iperf /usr/local/bin/iperf
	ln -sf /usr/bin/iperf "$1/usr/local/bin/iperf"
	# adduser -u 1000 -D user-defined-in-image && addgroup -g 50000
	# group-defined-in-image && addgroup user-defined-in-image group-defined-in-image
	echo 'user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh' >>"$1/etc/passwd"
	printf '%s\n' 'user-defined-in-image:x:1000:' 'group-defined-in-image:x:50000:user-defined-in-image' >>"$1/etc/group"
	mkdir -p "$1/home/user-defined-in-image"
	chown 1000:1000 "$1/home/user-defined-in-image"
	chmod 2755 "$1/home/user-defined-in-image"
}

build_agnhost_app() {
	local r=$1 src
	src=$(go -C "$here" list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/agnhost
	install -m 0755 "$work/bin/agnhost" "$r/agnhost"
	ln -s agnhost "$r/agnhost-2"
	install -m 0644 "$src/porter/localhost.crt" "$src/porter/localhost.key" "$r/"
	mkdir -p "$r/uploads"
	[ -z "$coredns" ] || install -m 0755 "$coredns" "$r/coredns"
}

# kitten / nautilus: agnhost plus the picture and data.json in /.
build_html() {
	local name=$1 r=$2 src
	src=$(go -C "$here" list -m -f '{{.Dir}}' k8s.io/kubernetes)/test/images/$name/html
	install -m 0644 "$src/$name.jpg" "$src/data.json" "$r/"
}
build_kitten() { build_html kitten "$1"; }
build_nautilus() { build_html nautilus "$1"; }

# nonewprivs: COPY nnp /usr/local/bin/nnp; RUN chmod +s
build_nnp() {
	mkdir -p "$1/usr/local/bin"
	install -m 6755 "$work/bin/nnp" "$1/usr/local/bin/nnp"
}

build_sample_apiserver() { install -m 0755 "$work/bin/sample-apiserver" "$1/sample-apiserver"; }

# The official nginx image's files on Debian's nginx.
build_nginx() {
	local r=$1
	extract "$r" "$work/debs/nginx.list"
	alpine_skel "$r"
	echo 'nginx:x:101:101:nginx:/var/cache/nginx:/sbin/nologin' >>"$r/etc/passwd"
	sed -i 's/^www-data:x:82:$/www-data:x:82:nginx/' "$r/etc/group"
	echo 'nginx:x:101:nginx' >>"$r/etc/group"
	rm -rf "$r/etc/nginx/sites-available" "$r/etc/nginx/sites-enabled" "$r/etc/nginx/snippets" \
		"$r/etc/nginx/modules-enabled" "$r/etc/ufw" "$r/etc/default/nginx" "$r/usr/share/vim" "$r/usr/share/apport"
	mkdir -p "$r/etc/nginx/conf.d" "$r/docker-entrypoint.d" "$r/var/cache/nginx" "$r/var/lib/nginx" "$r/var/log/nginx"
	chown 101:101 "$r/var/cache/nginx"
	install -m 0644 "$here/files/nginx/nginx.conf" "$r/etc/nginx/nginx.conf"
	install -m 0644 "$here/files/nginx/default.conf" "$r/etc/nginx/conf.d/default.conf"
	install -m 0644 "$here/files/nginx/50x.html" "$r/usr/share/nginx/html/50x.html"
	install -m 0755 "$here/files/nginx/docker-entrypoint.sh" "$r/docker-entrypoint.sh"
	install -m 0755 "$here/files/nginx/10-listen-on-ipv6-by-default.sh" "$r/docker-entrypoint.d/"
	ln -sf /dev/stdout "$r/var/log/nginx/access.log"
	ln -sf /dev/stderr "$r/var/log/nginx/error.log"
}

# etcd: a distroless-style tree (users, /tmp) with /usr/local/bin/etcd.
build_etcd() {
	local r=$1
	mkdir -p "$r"/{etc,tmp,root,home/nonroot,usr/local/bin,var/etcd}
	chmod 1777 "$r/tmp"
	chmod 0700 "$r/root"
	chown 65532:65532 "$r/home/nonroot"
	install -m 0644 "$here/files/distroless/passwd" "$here/files/distroless/group" "$r/etc/"
	install -m 0644 "$here/files/debian/nsswitch.conf" "$r/etc/nsswitch.conf"
	install -m 0755 "$work/bin/etcd" "$r/usr/local/bin/etcd"
}

build_glibc_dns() {
	debian_rootfs "$1" "$work/debs/glibc-dns-testing.list"
	[ -z "$coredns" ] || install -m 0755 "$coredns" "$1/coredns"
}

build_debian_base() { debian_rootfs "$1" "$work/debs/debian-base.list"; }

# test/conformance/image/Dockerfile
build_conformance() {
	local r=$1 k8s
	k8s=$(go -C "$here" list -m -f '{{.Dir}}' k8s.io/kubernetes)
	mkdir -p "$r/usr/local/bin" "$r/kubernetes"
	cp -r "$k8s/cluster" "$r/kubernetes/cluster"
	chmod -R u+w,go-w "$r/kubernetes"
	install -m 0755 "$work/bin/ginkgo" "$work/bin/e2e.test" "$r/usr/local/bin/"
	install -m 0755 "$work/bin/go-runner" "$r/usr/local/bin/kubeconformance"
	# Legacy executables: the same go-runner.
	ln "$r/usr/local/bin/kubeconformance" "$r/run_e2e.sh"
	ln "$r/usr/local/bin/kubeconformance" "$r/gorunner"
}

build_kubectl() {
	mkdir -p "$1/usr/local/bin"
	install -m 0755 "$distro_bin" "$1/usr/local/bin/kubectl"
}

bb=$(cat "$work/stamps/busybox")
go_key() { cat "$work/stamps/go-$1"; }
list_key() { hash_files "$work/debs/$1.list"; }
cd_key=$( [ -z "$coredns" ] || go_key coredns)

layer busybox "$bb" build_busybox
layer alpine "$bb" build_alpine
layer agnhost-base "$bb $(list_key agnhost)" build_agnhost_base
layer agnhost "$(go_key agnhost) $cd_key" build_agnhost_app
layer kitten "$gokey" build_kitten
layer nautilus "$gokey" build_nautilus
layer nonewprivs "$(go_key nnp)" build_nnp
layer sample-apiserver "$(go_key sample-apiserver)" build_sample_apiserver
layer nginx "$bb $(list_key nginx)" build_nginx
layer etcd "$(go_key etcd)" build_etcd
layer glibc-dns-testing "$(list_key glibc-dns-testing) $cd_key" build_glibc_dns
layer debian-base "$(list_key debian-base)" build_debian_base
layer conformance "$(go_key ginkgo) $(go_key e2e.test) $(go_key go-runner)" build_conformance

distro_bin=${DISTRO_BIN:-$root/bin/distro}
missing_distro=
if [ -x "$distro_bin" ]; then
	layer kubectl "$(hash_files "$distro_bin")" build_kubectl
else
	missing_distro=1
fi

# ---------------------------------------------------------------- images

# image FILE LAYERS IMGTAR-ARGS...: writes OUT/FILE from the layer folders
# (space-separated names) unless it was written from the same inputs.
image() {
	local file=$1 layers=$2 key l dirs=()
	shift 2
	for l in $layers; do dirs+=("$work/rootfs/$l"); done
	key=$( { go_key imgtar; printf '%s\n' "$@"; for l in $layers; do layerkey "$l"; done; } | hash)
	fresh "image-$file" "$out/$file" "$key" && { log "$file is up to date"; return 0; }
	step="image $file"
	log "writing $file"
	timed "image: $file" "${NICE[@]}" "$work/bin/imgtar" --out "$out/$file" --tmpdir "$work/tmp" "$@" "${dirs[@]}"
	stamp "image-$file" "$key"
}

image agnhost.tar "agnhost-base agnhost" --config-per-tag \
	--tag "$E2E/agnhost:$AGNHOST_VERSION" --tag "$E2E/agnhost:2.55" \
	--entrypoint /agnhost --cmd pause \
	--expose 80 --expose 8080 --expose 8081 --expose 9376 --expose 5000
image kitten.tar "agnhost-base agnhost kitten" --tag "$E2E/kitten:1.8" \
	--entrypoint /agnhost --cmd test-webserver \
	--expose 80 --expose 8080 --expose 8081 --expose 9376 --expose 5000
image nautilus.tar "agnhost-base agnhost nautilus" --tag "$E2E/nautilus:1.8" \
	--entrypoint /agnhost --cmd test-webserver \
	--expose 80 --expose 8080 --expose 8081 --expose 9376 --expose 5000
image busybox.tar busybox --config-per-tag \
	--tag "$E2E/busybox:1.37.0-2" --tag "$E2E/busybox:1.36.1-1" --cmd sh
image nginx.tar nginx --tag "$E2E/nginx:1.27.0-2" \
	--env NGINX_VERSION="$(sed -n 's/^nginx=\([^-]*\).*/\1/p' "$work/debs/nginx.list")" \
	--entrypoint /docker-entrypoint.sh --cmd nginx --cmd -g --cmd 'daemon off;' \
	--expose 80 --stop-signal SIGQUIT
image nonewprivs.tar "alpine nonewprivs" --tag "$E2E/nonewprivs:1.4" --cmd nnp
image sample-apiserver.tar "alpine sample-apiserver" --tag "$E2E/sample-apiserver:1.29.2" \
	--entrypoint /sample-apiserver
image etcd.tar etcd --tag registry.k8s.io/etcd:3.7.0-0 --cmd /usr/local/bin/etcd \
	--expose 2379 --expose 2380 --expose 4001 --expose 7001
image glibc-dns-testing.tar glibc-dns-testing --tag "$E2E/glibc-dns-testing:2.1.1" --cmd bash
if [ -z "$missing_distro" ]; then
	image conformance.tar "debian-base conformance kubectl" --tag "registry.k8s.io/conformance:$K8S_VERSION" \
		--env 'E2E_FOCUS=\[Conformance\]' --env E2E_SKIP= --env E2E_PROVIDER=local \
		--env E2E_PARALLEL=1 --env E2E_VERBOSITY=4 --env RESULTS_DIR=/tmp/results --env KUBECONFIG= \
		--entrypoint kubeconformance
fi

# ---------------------------------------------------------------- summary

echo
shopt -s nullglob
for f in "$out"/*.tar; do
	tags=$(tar -xOf "$f" manifest.json | grep -o '"RepoTags":\[[^]]*\]' | sed 's/"RepoTags":\[//; s/\]//; s/"//g; s/,/ /g' | tr '\n' ' ')
	printf '%-24s %6d MiB  %s\n' "${f##*/}" $(($(stat -c %s "$f") >> 20)) "$tags"
done
if ((${#times[@]})); then
	echo
	echo "built this run:"
	printf '  %s\n' "${times[@]}"
fi
[ -z "$busybox_note" ] || echo "note: busybox is $busybox_note"
echo "conformance images in $out ($((SECONDS - start))s)"
if [ -n "$missing_distro" ]; then
	die "registry.k8s.io/conformance:$K8S_VERSION not built: no distro binary at $distro_bin (run make, or set DISTRO_BIN); it is the image's kubectl"
fi
