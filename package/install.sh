#!/bin/sh
# Installs distro from a local binary (no download: works air-gapped).
#   sudo ./install.sh                                  # a server
#   sudo DISTRO_URL=https://<server>:6443 DISTRO_TOKEN=K10… ./install.sh   # an agent
# Settings (environment):
#   DISTRO_BIN      the binary to install (default: bin/distro beside this script's parent)
#   DISTRO_EXEC     extra arguments for the service (default: "server", or "agent" with DISTRO_URL)
#   DISTRO_URL, DISTRO_TOKEN   join as an agent
#   DESTDIR         install under another root (packaging, tests); SKIP_START=1 does not start it
set -eu
here=$(cd "$(dirname "$0")" && pwd)
BIN=${DISTRO_BIN:-$here/../bin/distro}
DESTDIR=${DESTDIR:-}
[ -x "$BIN" ] || { echo "install.sh: no distro binary at $BIN (set DISTRO_BIN)" >&2; exit 1; }
if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then echo "install.sh: run as root" >&2; exit 1; fi

exec_args=${DISTRO_EXEC:-}
if [ -n "${DISTRO_URL:-}" ]; then
	[ -n "${DISTRO_TOKEN:-}" ] || { echo "install.sh: DISTRO_URL needs DISTRO_TOKEN" >&2; exit 1; }
	exec_args="agent --server ${DISTRO_URL} ${exec_args}"
elif [ -z "$exec_args" ] || [ "${exec_args#-}" != "$exec_args" ]; then
	exec_args="server ${exec_args}"
fi

install -d "$DESTDIR/usr/local/bin" "$DESTDIR/etc/systemd/system" "$DESTDIR/etc/default" "$DESTDIR/etc/distro"
install -m 0755 "$BIN" "$DESTDIR/usr/local/bin/distro.new"
mv -f "$DESTDIR/usr/local/bin/distro.new" "$DESTDIR/usr/local/bin/distro"
for tool in kubectl ctr crictl; do
	if [ ! -e "$DESTDIR/usr/local/bin/$tool" ] || [ -L "$DESTDIR/usr/local/bin/$tool" ]; then
		ln -sf distro "$DESTDIR/usr/local/bin/$tool"
	else
		echo "install.sh: $DESTDIR/usr/local/bin/$tool exists and is not ours; use 'distro $tool'"
	fi
done
install -m 0755 "$here/distro-killall.sh" "$DESTDIR/usr/local/bin/distro-killall.sh"
install -m 0644 "$here/distro.service" "$DESTDIR/etc/systemd/system/distro.service"
umask 077
{
	echo "DISTRO_EXEC=\"$exec_args\""
	[ -z "${DISTRO_TOKEN:-}" ] || echo "DISTRO_TOKEN=\"$DISTRO_TOKEN\""
} > "$DESTDIR/etc/default/distro.new"
mv -f "$DESTDIR/etc/default/distro.new" "$DESTDIR/etc/default/distro"
echo "installed distro ($exec_args) under ${DESTDIR:-/}"

if [ -z "$DESTDIR" ] && [ "${SKIP_START:-0}" != 1 ] && command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	systemctl enable --now distro.service
	echo "started distro.service; admin kubeconfig: /etc/distro/distro.yaml"
fi
