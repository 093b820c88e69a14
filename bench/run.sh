#!/usr/bin/env bash
# npm run bench: hactl against Ansible, side by side on the same lab (issue #10).
# As root: installs what is missing (the lab's Debian packages, npm dependencies, Debian's ansible
# package, GNU time), builds hactl, runs bench/bench.mjs, and takes down every lab it started, also
# when the run fails or is interrupted. Options are environment variables, see bench/bench.mjs
# (BENCH_RUNS, BENCH_ONLY, ...); BENCH_SKIP_BUILD=1 uses the dist/ already built.
set -euo pipefail
cd "$(dirname "$0")/.."
start_ms=$(date +%s%3N)

if [ "$(id -u)" -ne 0 ]; then
  echo "npm run bench needs root: it brings up hactl labs (network namespaces, a bridge, mounts)" >&2
  exit 2
fi

# bench.mjs takes down the labs it started; it lists them in this file first, and if it dies
# without doing so, the trap below takes them down.
started_file=$(mktemp "${TMPDIR:-/tmp}/hactl-bench-labs.XXXXXX")
export BENCH_STARTED_FILE="$started_file"
bench_pid=
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$bench_pid" ] && kill -0 "$bench_pid" 2>/dev/null; then
    kill -TERM "$bench_pid" 2>/dev/null || true
    wait "$bench_pid" 2>/dev/null || true
  fi
  while read -r name; do
    if [ -n "$name" ] && [ -e "/var/lib/hactl-lab/$name/state.json" ]; then
      echo "== bench: taking down lab $name" >&2
      node bin/run.js lab down --name "$name" >&2 || true
    fi
  done < <(sort -u "$started_file")
  rm -f "$started_file"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== bench: dependencies" >&2
bash scripts/ensure-deps.sh
missing=()
command -v ansible-playbook >/dev/null 2>&1 || missing+=(ansible)
[ -x /usr/bin/time ] || missing+=(time)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y "${missing[@]}"
fi

if [ "${BENCH_SKIP_BUILD:-0}" != 1 ]; then
  echo "== bench: building hactl" >&2
  npm run build >/dev/null
fi

# bench.mjs starts no new round after this (14 min after this script started, so that the
# teardown still fits in 15 minutes).
export BENCH_DEADLINE="${BENCH_DEADLINE:-$((start_ms + 14 * 60 * 1000))}"
echo "== bench: running (logs of each run in a scratch directory under ${TMPDIR:-/tmp})" >&2
node bench/bench.mjs &
bench_pid=$!
set +e
wait "$bench_pid"
rc=$?
set -e
bench_pid=
exit "$rc"
