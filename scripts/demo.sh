#!/usr/bin/env bash
# The demo: file source (config/demo-users.yaml) → a real LiteLLM: plan, sync, plan again ("in sync").
#
#   scripts/demo.sh                                   # starts a LiteLLM for you (see below), then runs the demo
#   LITELLM_URL=http://host:4000 LITELLM_API_KEY=sk-... scripts/demo.sh   # use your own LiteLLM
#
# Where no LITELLM_URL is given, a local LiteLLM on PostgreSQL is started: with ../shared/peers/litellm/setup.sh
# when it is there (offline machines), otherwise with an ordinary `pip install 'litellm[proxy]'` (needs internet
# and root for PostgreSQL). It keeps running afterwards; the script prints how to stop it.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
cd "$REPO"
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

PORT=${DEMO_PORT:-4100}
if [ -z "${LITELLM_URL:-}" ]; then
  LITELLM_API_KEY=${LITELLM_API_KEY:-sk-demo-master}
  if [ -x "$REPO/../shared/peers/litellm/setup.sh" ]; then
    say "Starting a real LiteLLM on 127.0.0.1:$PORT (../shared/peers/litellm/setup.sh)"
    LITELLM_API_KEY=sk-test-master
    ROOT=/var/tmp/litellm-sync-demo PORT=$PORT DB=litellm_sync_demo "$REPO/../shared/peers/litellm/setup.sh"
    STOP="kill \$(cat /var/tmp/litellm-sync-demo/litellm.pid)"
  else
    say "Starting LiteLLM 1.106.2 from PyPI on 127.0.0.1:$PORT with PostgreSQL"
    command -v pg_ctlcluster >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
    pg_lsclusters | grep -q online || pg_ctlcluster "$(pg_lsclusters -h | awk '{print $1; exit}')" main start
    su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='litellm'\"" | grep -q 1 \
      || su postgres -c "psql -q -c \"CREATE USER litellm WITH PASSWORD 'litellm' CREATEDB;\""
    su postgres -c "psql -q -c 'DROP DATABASE IF EXISTS litellm_sync_demo;' -c 'CREATE DATABASE litellm_sync_demo OWNER litellm;'"
    VENV=${DEMO_VENV:-/var/tmp/litellm-sync-demo-venv}
    [ -x "$VENV/bin/litellm" ] || { python3 -m venv "$VENV"; "$VENV/bin/pip" install -q 'litellm[proxy]==1.106.2' 'prisma==0.11.0'; }
    DATABASE_URL=postgresql://litellm:litellm@127.0.0.1:5432/litellm_sync_demo LITELLM_MASTER_KEY=$LITELLM_API_KEY \
      nohup "$VENV/bin/litellm" --host 127.0.0.1 --port "$PORT" > /var/tmp/litellm-sync-demo.log 2>&1 &
    echo $! > /var/tmp/litellm-sync-demo.pid
    STOP="kill \$(cat /var/tmp/litellm-sync-demo.pid)"
    for _ in $(seq 1 120); do curl -fsS -m 2 "127.0.0.1:$PORT/health/liveliness" >/dev/null 2>&1 && break; sleep 2; done
  fi
  LITELLM_URL=http://127.0.0.1:$PORT
fi
export LITELLM_SYNC__LITELLM__API_KEY=${LITELLM_API_KEY:?set LITELLM_API_KEY to your LiteLLM admin key}

say "Building litellm-sync"
cargo build --quiet
BIN=$REPO/target/debug/litellm-sync
run() { echo "\$ litellm-sync $*"; "$BIN" --config config/demo.toml --litellm-url "$LITELLM_URL" "$@"; }

say "Checking the configuration and reaching LiteLLM"
run check-config
say "1. plan (exit code 2: changes pending)"
set +e; run plan; code=$?; set -e; echo "exit code: $code"
say "2. sync"
run sync
say "3. plan again (exit code 0: in sync)"
run plan
say "4. explain one user"
run explain alice
echo
echo "Done. LiteLLM: $LITELLM_URL  ${STOP:+(stop it with: $STOP)}"
