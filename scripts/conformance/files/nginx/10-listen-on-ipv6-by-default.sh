#!/bin/sh
# As in the official nginx image: when the pod has IPv6, make the packaged
# default server also listen on [::]:80 (left alone once edited).
set -e

ME=$(basename "$0")
DEFAULT_CONF_FILE="etc/nginx/conf.d/default.conf"

if [ ! -f "/proc/net/if_inet6" ]; then
    echo "$ME: info: ipv6 not available"
    exit 0
fi
if [ ! -f "/$DEFAULT_CONF_FILE" ]; then
    echo "$ME: info: /$DEFAULT_CONF_FILE is not a file or does not exist"
    exit 0
fi
touch "/$DEFAULT_CONF_FILE" 2>/dev/null || { echo "$ME: info: can not modify /$DEFAULT_CONF_FILE (read-only file system?)"; exit 0; }
if grep -q 'listen  \[::\]:80;' "/$DEFAULT_CONF_FILE"; then
    exit 0
fi
if ! grep -q '^    listen       80;$' "/$DEFAULT_CONF_FILE"; then
    echo "$ME: info: /$DEFAULT_CONF_FILE differs from the packaged version"
    exit 0
fi
sed -i -E 's,listen       80;,listen       80;\n    listen  [::]:80;,' "/$DEFAULT_CONF_FILE"
echo "$ME: info: Enabled listen on IPv6 in /$DEFAULT_CONF_FILE"
