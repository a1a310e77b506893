#!/usr/bin/env bash
# Build a static busybox with *upstream* behaviour for the Kubernetes
# conformance test images (registry.k8s.io/e2e-test-images/busybox, which
# upstream is Docker Hub's busybox: upstream defconfig, no distro patches).
#
# Usage: scripts/conformance/busybox.sh OUTPUT_PATH
#
# Why not Debian's busybox-static?
#   * Debian patches ash (revert-9c143ce52da11ec3d21a3491c3749841d3dc10f0.patch
#     + temp-deb-installer-hack.patch) so that environment variables whose
#     names are not valid shell identifiers ("data-1", "1abc") are dropped on
#     shell start-up unless CONFIG_FEATURE_DI_ENV_HACK=y (only set for the
#     udeb). Upstream ash keeps them (commit 9c143ce52), and the conformance
#     tests "[sig-node] ConfigMap ... environment variable names with various
#     prefixes" and "[sig-node] Secrets ... consumable via the environment"
#     rely on that (`sh -c env`).
#   * Debian's config has "# CONFIG_FEATURE_WGET_TIMEOUT is not set"; with
#     that, `wget -T N` writes through a NULL getopt pointer and segfaults.
#
# What this does (offline apart from Debian's apt repositories):
#   1. installs build deps via apt-get if missing (gcc make libc6-dev bzip2 ...)
#   2. downloads Debian's busybox *source package* with
#      `apt-get source --download-only` (signature/checksum-verified by apt),
#      using the system's deb-src entries or, if there are none, a private apt
#      configuration derived from the system's deb entries (the system apt
#      configuration is not modified)
#   3. builds the pristine upstream tarball (busybox_*.orig.tar.*), without
#      any Debian patches, with `make defconfig` + CONFIG_STATIC=y
#      (tc is dropped when the kernel headers no longer provide CBQ)
#   4. self-tests the result and installs it to OUTPUT_PATH
#
# Idempotent: does nothing if OUTPUT_PATH exists and is newer than this script.
# Environment: JOBS (make -j, default nproc), TMPDIR, KEEP_WORKDIR=1.
set -euo pipefail

log() { echo "==> $*"; }
die() { echo "==> ERROR: $*" >&2; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || die "usage: $0 OUTPUT_PATH"
out=$1
case "$out" in /*) ;; *) out="$PWD/$out" ;; esac
self=$(readlink -f "${BASH_SOURCE[0]}")

if [ -x "$out" ] && [ "$out" -nt "$self" ]; then
  log "busybox: $out is up to date (newer than $self), skipping"
  exit 0
fi

jobs=${JOBS:-$(nproc 2>/dev/null || echo 1)}
start=$(date +%s)

# --- 1. build dependencies -------------------------------------------------
# tar/coreutils(od,dd)/sed/grep/gawk-or-mawk are essential on Debian.
deps=(gcc make libc6-dev bzip2 xz-utils)
missing=()
for p in "${deps[@]}"; do
  [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$(id -u)" -eq 0 ] || die "missing build dependencies (${missing[*]}) and not root; install them with: apt-get install ${missing[*]}"
  log "busybox: installing build dependencies: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
    apt-get update -qq || die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
      || die "apt-get install ${missing[*]} failed"
  fi
fi
command -v gcc >/dev/null || die "gcc not found after installing dependencies"
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || ls /usr/lib/*/libc.a >/dev/null 2>&1 \
  || die "static libc (libc.a from libc6-dev) not found"

# --- 2. fetch Debian's busybox source package -------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/busybox-build.XXXXXX")
cleanup() { if [ "${KEEP_WORKDIR:-0}" = 1 ]; then log "busybox: keeping $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
chmod 755 "$work"   # lets apt's _apt sandbox user write the downloads
mkdir -p "$work/src"

fetch_source() { # $@: extra apt options
  (cd "$work/src" && apt-get "$@" -qq source --download-only busybox) >"$work/apt-source.log" 2>&1
}

log "busybox: downloading Debian source package (upstream tarball) via apt-get source"
if apt-cache showsrc busybox >/dev/null 2>&1 && fetch_source; then
  :
else
  # No deb-src configured: derive one from the system's deb entries in a
  # private apt configuration, leaving /etc/apt untouched.
  log "busybox: no usable deb-src entry; using a private deb-src list derived from /etc/apt"
  a="$work/apt"
  mkdir -p "$a/sources.list.d" "$a/lists/partial"
  : >"$a/sources.list"
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    sed -n 's/^[[:space:]]*deb\([[:space:]]\)/deb-src\1/p' "$f" >>"$a/sources.list"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    sed 's/^Types:.*/Types: deb-src/' "$f" >"$a/sources.list.d/$(basename "$f")"
  done
  apt_opts=(-o Dir::Etc::SourceList="$a/sources.list"
            -o Dir::Etc::SourceParts="$a/sources.list.d"
            -o Dir::State::Lists="$a/lists"
            -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=
            -o APT::Sandbox::User=root)
  # Third-party repos may have no source indices; only the final
  # `apt-get source` result matters.
  apt-get "${apt_opts[@]}" -qq update >"$work/apt-update.log" 2>&1 \
    || log "busybox: warning: apt-get update (deb-src) reported errors (see below if the download fails)"
  fetch_source "${apt_opts[@]}" || {
    cat "$work/apt-update.log" "$work/apt-source.log" >&2 || true
    die "could not download the busybox source package with apt-get source"
  }
fi

orig=$(find "$work/src" -maxdepth 1 -name 'busybox_*.orig.tar.*' ! -name '*.asc' -print -quit)
[ -n "$orig" ] || { cat "$work/apt-source.log" >&2; die "no busybox_*.orig.tar.* in the downloaded source package"; }
log "busybox: using pristine upstream tarball $(basename "$orig") (Debian patches NOT applied)"

# --- 3. build (upstream defconfig, static) ----------------------------------
tar -xf "$orig" -C "$work" || die "failed to extract $orig"
srcdir=$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'busybox-*' -print -quit)
[ -n "$srcdir" ] || die "unexpected layout of $orig"
cd "$srcdir"

log "busybox: configuring (make defconfig, CONFIG_STATIC=y)"
nice -n 19 make -s defconfig >"$work/config.log" 2>&1 || { tail -n 30 "$work/config.log" >&2; die "make defconfig failed"; }
set_cfg() { # $1=NAME $2=y|n
  sed -i -e "/^CONFIG_$1=/d" -e "/^# CONFIG_$1 is not set/d" .config
  if [ "$2" = y ]; then echo "CONFIG_$1=y" >>.config; else echo "# CONFIG_$1 is not set" >>.config; fi
}
set_cfg STATIC y
# tc uses the CBQ qdisc API that was removed from the kernel UAPI headers in
# Linux 6.8; drop it when building against such headers (not used by e2e).
if ! grep -q TCA_CBQ_MAX /usr/include/linux/pkt_sched.h 2>/dev/null; then
  log "busybox: kernel headers lack CBQ; disabling tc"
  set_cfg TC n
  set_cfg FEATURE_TC_INGRESS n
fi
{ yes '' || true; } | nice -n 19 make -s oldconfig >>"$work/config.log" 2>&1 || { tail -n 30 "$work/config.log" >&2; die "make oldconfig failed"; }
grep -q '^CONFIG_STATIC=y' .config || die "CONFIG_STATIC=y did not stick"
grep -q '^CONFIG_FEATURE_WGET_TIMEOUT=y' .config || die "unexpected config: FEATURE_WGET_TIMEOUT off"

log "busybox: compiling (make -j$jobs busybox; log: build.log)"
if ! nice -n 19 make -j"$jobs" busybox >"$work/build.log" 2>&1; then
  grep -E 'error|Error' "$work/build.log" | head -n 20 >&2 || true
  tail -n 30 "$work/build.log" >&2
  die "busybox build failed (rerun with KEEP_WORKDIR=1 to inspect $work)"
fi
bb="$srcdir/busybox"
[ -x "$bb" ] || die "build produced no busybox binary"

# --- 4. self-test ------------------------------------------------------------
log "busybox: self-testing $("$bb" --help 2>&1 | sed -n 1p)"
if command -v file >/dev/null; then
  ftype=$(file "$bb")
  grep -q 'statically linked' <<<"$ftype" || die "binary is not statically linked: $ftype"
fi
envout=$(env -i 'data-1=x' '1abc=y' "$bb" sh -c "$bb env") || die "sh -c env failed"
grep -qx 'data-1=x' <<<"$envout" || die "ash dropped env var 'data-1' (non-upstream behaviour)"
grep -qx '1abc=y' <<<"$envout"   || die "ash dropped env var '1abc' (non-upstream behaviour)"
set +e
"$bb" wget -q -T 1 -O /dev/null http://127.0.0.1:1/ >/dev/null 2>&1; rc=$?
set -e
[ "$rc" -lt 128 ] || die "busybox wget -T crashed (exit $rc)"
applets=$("$bb" --list) || die "busybox --list failed"
for a in sh env wget nc nslookup sleep cat ls hostname test echo mkdir touch id stat grep sed awk date dd tail head; do
  grep -qx "$a" <<<"$applets" || die "applet '$a' missing from build"
done
[ "$("$bb" sh -c 'echo ok')" = ok ] || die "sh sanity check failed"

mkdir -p "$(dirname "$out")"
install -m 0755 "$bb" "$out.tmp.$$"
mv -f "$out.tmp.$$" "$out"
log "busybox: wrote $out ($(wc -l <<<"$applets") applets, $(( $(date +%s) - start ))s)"
