#!/usr/bin/env bash
# The README's demo, in one command, on a fresh Debian 12 machine as root:
#   sudo bash scripts/demo.sh
# installs what the lab needs, builds hactl, brings up a local cluster (`hactl lab up`: 4 Asterisk,
# 2 Kamailio, 3 etcd hosts in network namespaces) and shows it with `hactl status`.
# Environment: LAB_NAME (default hactl), LAB_ARGS (extra `hactl lab up` flags, e.g. "--asterisk 8").
set -euo pipefail
cd "$(dirname "$0")/.."
LAB_NAME="${LAB_NAME:-hactl}"
LAB_ARGS="${LAB_ARGS:-}"

if [ "$(id -u)" -ne 0 ]; then
  echo "the lab needs root (network namespaces, a bridge, mounts): sudo bash scripts/demo.sh" >&2
  exit 2
fi

echo "== installing the lab's Debian packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
  openssh-server openssh-client etcd-server etcd-client kamailio iproute2 procps util-linux

if ! command -v node >/dev/null 2>&1; then
  echo "hactl needs Node.js >= 20.17 (Debian 12's own nodejs is 18): install Node 20, then run this again" >&2
  exit 2
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=17)?0:1)'; then
  echo "hactl needs Node.js >= 20.17; this is $(node --version)" >&2
  exit 2
fi

if [ ! -d node_modules ]; then
  echo "== npm ci" >&2
  npm ci --no-audit --no-fund
fi
echo "== building hactl" >&2
# tsc over dist/ in place (npm run build would first remove dist/, under anyone using it).
npx tsc -p tsconfig.json
npx oclif manifest >/dev/null

HACTL="node $PWD/bin/run.js"
CONFIG="/var/lib/hactl-lab/$LAB_NAME/hactl.yaml"
if [ -f "/var/lib/hactl-lab/$LAB_NAME/state.json" ]; then
  echo "== lab $LAB_NAME is already up; using it" >&2
else
  echo "== hactl lab up --name $LAB_NAME $LAB_ARGS" >&2
  # shellcheck disable=SC2086
  $HACTL lab up --name "$LAB_NAME" $LAB_ARGS >/dev/null
fi
export HACTL_CONFIG="$CONFIG"

if [ -f dist/commands/status.js ]; then
  echo "== hactl status" >&2
  $HACTL status || true
else
  echo "== hactl lab status (this build has no hactl status yet)" >&2
  $HACTL lab status --name "$LAB_NAME" || true
fi

down="hactl lab down"
[ "$LAB_NAME" = hactl ] || down="hactl lab down --name $LAB_NAME"
cat <<MSG

The lab is up. To use it:
  alias hactl="node $PWD/bin/run.js"
  export HACTL_CONFIG=$CONFIG
  hactl status
  hactl lab status --name $LAB_NAME                  # the lab's own view (no SSH)
  hactl lab calls ast1 5 --duration 60 --name $LAB_NAME   # simulated calls on ast1
  ssh -i /var/lib/hactl-lab/$LAB_NAME/id_ed25519 -o UserKnownHostsFile=/var/lib/hactl-lab/$LAB_NAME/known_hosts root@\$(awk '/ast1:/{getline; print \$2}' $CONFIG)

Tear it down with:
  $down
MSG
