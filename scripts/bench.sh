#!/usr/bin/env bash
# The performance table of issue 9 in one command (benches/provision.rs): first provisioning, no-op and
# --refresh syncs, a budget change, the daemon's first and scheduled runs and an LDAP no-op run, each next to
# its floor measured in the same run, printed as a table with ratios.
#
#   scripts/bench.sh                                         # default sizes, a few minutes on 2 cores
#   BENCH_USERS=10000 BENCH_LDAP_USERS=100000 scripts/bench.sh   # the issue's sizes
#   BENCH_LDAP_USERS=100000 BENCH_ONLY=ldap scripts/bench.sh  # only the LDAP lines
#   LITELLM_SYNC_BENCH_URL=http://127.0.0.1:4000 LITELLM_SYNC_BENCH_KEY=sk-... scripts/bench.sh
#
# Without LITELLM_SYNC_BENCH_URL it starts a real LiteLLM of its own through ../shared/peers/litellm/setup.sh
# (as root: PostgreSQL and LiteLLM in a venv under LITELLM_PEER_ROOT) on a free loopback port with its own
# database (LITELLM_PEER_DB, default litellm_bench, dropped afterwards), so the figures are not disturbed by other
# users of a shared proxy. With it, the bench creates users under a unique prefix and bulk-deletes them at the end.
# slapd and ldap-utils are installed by scripts/peers/slapd.sh when missing (Debian, as root).
#
# Environment (see benches/provision.rs for the bench's own): SHARED (default ../shared beside the repo),
# LITELLM_PEER_ROOT (default /var/tmp/litellm-peer), LITELLM_PEER_DB, PEER_SETUP_TIMEOUT (default 1200 s),
# BENCH_TIMEOUT (default 5400 s: the build and the bench together), BENCH_OUT (also write the table there).
# Everything it starts is stopped on exit, whatever happened.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$REPO/../shared}
LITELLM_PEER_ROOT=${LITELLM_PEER_ROOT:-/var/tmp/litellm-peer}
LITELLM_PEER_DB=${LITELLM_PEER_DB:-litellm_bench}
PEER_SETUP_TIMEOUT=${PEER_SETUP_TIMEOUT:-1200}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-5400}
STOP_TIMEOUT=${STOP_TIMEOUT:-20}
cd "$REPO"

log() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# shellcheck source=scripts/lib/processes.sh
source "$REPO/scripts/lib/processes.sh"

# Runs a command under `timeout` in the background, so that an interrupt reaches the EXIT trap at once.
CURRENT=
bounded() { # seconds command… → its exit status (124 on timeout)
  local limit=$1 rc=0
  shift
  timeout --kill-after=30 "$limit" "$@" </dev/null &
  CURRENT=$!
  wait "$CURRENT" || rc=$?
  CURRENT=
  return "$rc"
}

# ---------------------------------------------------------------------------------------------------- LiteLLM
# setup.sh writes its pid file into LITELLM_PEER_ROOT, which other LiteLLMs (a developer's on port 4000, the test
# suite's) may share: the pid we stop is the one written during this run, and only if it listens on our port.
LITELLM_PID=
LITELLM_PIDFILE_BEFORE=
OWN_DB=

start_litellm() {
  local port pidfile=$LITELLM_PEER_ROOT/litellm.pid rc=0
  [ "$(id -u)" = 0 ] || die "starting LiteLLM needs root (PostgreSQL, apt); or set LITELLM_SYNC_BENCH_URL"
  [ -f "$SHARED/peers/litellm/setup.sh" ] || die "$SHARED/peers/litellm/setup.sh not found (set SHARED, or LITELLM_SYNC_BENCH_URL)"
  port=$(free_port)
  LITELLM_PIDFILE_BEFORE=$(cat "$pidfile" 2>/dev/null || true)
  log "starting LiteLLM: ROOT=$LITELLM_PEER_ROOT PORT=$port DB=$LITELLM_PEER_DB"
  OWN_DB=$LITELLM_PEER_DB
  bounded "$PEER_SETUP_TIMEOUT" env ROOT="$LITELLM_PEER_ROOT" PORT="$port" DB="$LITELLM_PEER_DB" \
    bash "$SHARED/peers/litellm/setup.sh" >&2 || rc=$?
  local pid; pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$pid" != "$LITELLM_PIDFILE_BEFORE" ] \
    && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q -- "--port $port "; then
    LITELLM_PID=$pid
  fi
  [ "$rc" = 0 ] || die "setup.sh failed (exit $rc)"
  [ -n "$LITELLM_PID" ] || die "setup.sh succeeded but $pidfile does not name a LiteLLM on port $port"
  export LITELLM_SYNC_BENCH_URL=http://127.0.0.1:$port
  export LITELLM_SYNC_BENCH_KEY=sk-test-master
  LITELLM_SYNC_BENCH_LITELLM_VERSION=$("$LITELLM_PEER_ROOT/venv/bin/python" -c \
    'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null || echo unknown)
  export LITELLM_SYNC_BENCH_LITELLM_VERSION
  # Its own database is dropped afterwards: no need to delete what the bench created.
  export BENCH_CLEANUP=${BENCH_CLEANUP:-0}
  log "LiteLLM is up at $LITELLM_SYNC_BENCH_URL (pid $LITELLM_PID)"
}

stop_litellm() {
  [ -n "$LITELLM_PID" ] || return 0
  stop_litellm_peer
  if [ -n "$OWN_DB" ]; then
    timeout 60 su postgres -c "psql -q -c 'DROP DATABASE IF EXISTS $OWN_DB;'" >/dev/null 2>&1 \
      || log "could not drop database $OWN_DB (ignored)"
  fi
}

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CURRENT" ]; then
    kill -TERM "$CURRENT" 2>/dev/null || true
    wait "$CURRENT" 2>/dev/null || true
  fi
  stop_litellm || log "stopping LiteLLM failed (ignored)"
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------------- main
command -v cargo >/dev/null || die "cargo not found"
if [ "${BENCH_LDAP_USERS:-20000}" != 0 ] && ! command -v ldapsearch >/dev/null; then
  [ "$(id -u)" = 0 ] || die "ldapsearch/slapd missing: apt-get install slapd ldap-utils (or BENCH_LDAP_USERS=0)"
  log "installing slapd and ldap-utils (their service is not started)"
  policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1; fi
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slapd ldap-utils \
    >/dev/null; } || { [ -z "$made_policy" ] || rm -f "$policy"; die "apt-get install slapd ldap-utils failed"; }
  [ -z "$made_policy" ] || rm -f "$policy"
fi

if [ -z "${LITELLM_SYNC_BENCH_URL:-}" ]; then
  start_litellm
else
  log "using the LiteLLM at $LITELLM_SYNC_BENCH_URL (users are created under a unique prefix and deleted afterwards)"
fi

locked=()
[ "${CI:-}" = true ] && locked=(--locked)
log "building the release binary and the bench"
bounded "$BENCH_TIMEOUT" cargo bench "${locked[@]}" --bench provision --no-run >&2
log "running the bench (progress on stderr, the table on stdout)"
if [ -n "${BENCH_OUT:-}" ]; then
  bounded "$BENCH_TIMEOUT" cargo bench "${locked[@]}" --bench provision | tee "$BENCH_OUT"
else
  bounded "$BENCH_TIMEOUT" cargo bench "${locked[@]}" --bench provision
fi
