#!/usr/bin/env bash
# Installs what hactl's lab and tests need on a fresh Debian 12 machine, and only what is missing:
# the Debian packages (as root, apt-get update first) and the npm dependencies (npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in sshd:openssh-server ssh:openssh-client ssh-keygen:openssh-client etcd:etcd-server etcdctl:etcd-client \
  kamailio:kamailio kamcmd:kamailio ip:iproute2 unshare:util-linux nsenter:util-linux pgrep:procps perl:perl; do
  cmd=${pair%%:*} pkg=${pair#*:}
  if ! command -v "$cmd" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$cmd" ]; then need+=("$pkg"); fi
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${need[*]}; run as root: apt-get update && apt-get install -y ${need[*]}" >&2
    exit 2
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends $(printf '%s\n' "${need[@]}" | sort -u)
fi
if [ ! -d node_modules/@oclif/core ]; then npm ci --no-audit --no-fund; fi
