#!/bin/sh
# The first process of a lab host. `hactl lab up` starts it as
#   ip netns exec NS unshare -m -u --propagation private /bin/sh host-init.sh HOSTDIR
# so it already runs in the host's own network, mount and UTS namespaces. It names the host,
# configures its interfaces, makes the host's private directories and the lab's commands appear
# at their usual paths (bind mounts listed in HOSTDIR/mounts), then becomes the host's supervisor.
set -eu
H="$1"
. "$H/host.env"

hostname "$HOST_NAME"
# No IPv6 inside the lab: the hosts talk IPv4 on the lab bridge and nothing else.
for f in all default lo eth0; do
  [ -w "/proc/sys/net/ipv6/conf/$f/disable_ipv6" ] && echo 1 > "/proc/sys/net/ipv6/conf/$f/disable_ipv6" || true
done
ip link set lo up
ip addr add "$HOST_IP/$HOST_PREFIX" dev eth0
ip link set eth0 up
# Every lab host as a permanent neighbour: no ARP, and no share of the kernel's global neighbour
# table limit (a lab of 200 hosts would overflow it otherwise).
ip -batch "$H/neigh"

# hactl's own checkout (the lab scripts, bin/run.js for agents) must stay visible at its path even
# when it lies under a directory the host gets privately (a clone in /tmp or /root): keep a handle
# on it before the private mounts hide it, and bind it back over them afterwards.
if [ -n "${HOST_REPO:-}" ]; then
  mkdir -p "$H/repo"
  mount --bind "$HOST_REPO" "$H/repo"
fi

# "SRC<TAB>DST" per line; DST exists (hactl lab up made placeholders where needed).
TAB="$(printf '\t')"
while IFS="$TAB" read -r src dst; do
  [ -n "$src" ] || continue
  mount --bind "$src" "$dst"
done < "$H/mounts"

if [ -n "${HOST_REPO:-}" ]; then
  mkdir -p "$HOST_REPO"
  mount --bind "$H/repo" "$HOST_REPO"
fi

exec "$HOST_NODE" "$HOST_LAB_SCRIPTS/supervisor.mjs" "$H"
