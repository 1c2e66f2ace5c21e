#!/usr/bin/env bash
# The whole test suite in one command, on a fresh Debian machine, as root:
#   1. installs the Debian packages the tests use (slapd, Samba AD, promtool…) and starts the real peers every
#      test shares (LiteLLM on PostgreSQL, through ../shared/peers/litellm/setup.sh, on a free loopback port and
#      its own database);
#   2. runs cargo fmt --check, cargo clippy -D warnings and cargo test --all-targets (unit + integration);
#   3. stops every peer it started, whatever happened (EXIT trap, bounded in time).
# Every check runs even when an earlier one failed; the exit status is non-zero when anything failed.
#
#   scripts/test.sh                       # everything
#   scripts/test.sh -- --nocapture        # extra arguments go to `cargo test --all-targets`
#   scripts/test.sh lifecycle             # e.g. only the tests whose name contains "lifecycle"
#
# Environment: SHARED (default ../shared beside the repo), LITELLM_PEER_ROOT (default /var/tmp/litellm-peer:
# the venv and npm caches live there), LITELLM_PEER_DB (default litellm_sync_test), PEER_SETUP_TIMEOUT and
# STEP_TIMEOUT (seconds). CI=true adds --locked to cargo.
#
# Adding a peer: a long-lived one that every test shares gets start_<peer> (which exports the tests' environment
# variables and calls register_stop stop_<peer>) and stop_<peer>, and start_<peer> goes into PEERS below; one that
# each test starts for itself (slapd, Samba AD) or a tool (promtool) only needs its Debian package in
# DEBIAN_PACKAGES.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${SHARED:-$REPO/../shared}
LITELLM_PEER_ROOT=${LITELLM_PEER_ROOT:-/var/tmp/litellm-peer}
LITELLM_PEER_DB=${LITELLM_PEER_DB:-litellm_sync_test}
PEER_SETUP_TIMEOUT=${PEER_SETUP_TIMEOUT:-1200}
STEP_TIMEOUT=${STEP_TIMEOUT:-3600}
STOP_TIMEOUT=${STOP_TIMEOUT:-20}
PEERS=(start_litellm prepare_postgres)

cd "$REPO"

# ---------------------------------------------------------------------------------------------------- output
if [ -t 1 ]; then BOLD=$'\033[1m' PLAIN=$'\033[0m'; else BOLD='' PLAIN=''; fi
section() { printf '\n%s==== %s ====%s\n' "$BOLD" "$*" "$PLAIN"; }
log() { printf '[%s] %s\n' "$(date +%T)" "$*"; }
die() { printf '[%s] ERROR: %s\n' "$(date +%T)" "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------------- clean-up
STOPS=()
register_stop() { STOPS+=("$1"); }

on_exit() {
  local rc=$?
  trap - EXIT INT TERM
  if [ -n "$CURRENT" ]; then
    log "interrupted: stopping the running step"
    stop_pid "$CURRENT" "the running step" || true
    kill -KILL -- "-$CURRENT" 2>/dev/null || true
  fi
  if [ "${#STOPS[@]}" -gt 0 ]; then
    section "Stopping peers"
    local i
    for ((i = ${#STOPS[@]} - 1; i >= 0; i--)); do "${STOPS[i]}" || log "${STOPS[i]} failed (ignored)"; done
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------------------------------------------- processes
# shellcheck source=scripts/lib/processes.sh
source "$REPO/scripts/lib/processes.sh"

# Runs `command…` under `timeout` in the background and waits for it, so that an interrupt reaches this script's
# traps at once (bash runs no trap while a foreground command runs). timeout passes signals on to the command.
CURRENT=
bounded() { # seconds command… → the command's exit status (124 on timeout)
  local limit=$1 rc=0
  shift
  timeout --kill-after=30 "$limit" "$@" </dev/null &
  CURRENT=$!
  wait "$CURRENT" || rc=$?
  CURRENT=
  return "$rc"
}


# ---------------------------------------------------------------------------------------------------- prerequisites
check_prerequisites() {
  section "Prerequisites"
  [ "$(id -u)" = 0 ] || die "run as root: the peers install Debian packages and start PostgreSQL"
  command -v cargo >/dev/null || die "cargo not found: install Rust (rustup, toolchain 1.88 or newer)"
  local c
  for c in rustfmt clippy; do
    if ! cargo "${c/rustfmt/fmt}" --version >/dev/null 2>&1; then
      command -v rustup >/dev/null || die "cargo $c is missing and there is no rustup to add it"
      log "adding the $c component"
      rustup component add "$c"
    fi
  done
  local missing=()
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    die "node and npm (11 or newer) are needed by $SHARED/peers/litellm/setup.sh"
  fi
  [ -f "$SHARED/peers/litellm/setup.sh" ] \
    || die "$SHARED/peers/litellm/setup.sh not found: clone the project's shared directory beside the repo (or set SHARED)"
  log "$(cargo --version), $(node --version 2>/dev/null) node, $(python3 --version)"
}

# ---------------------------------------------------------------------------------------------------- Debian packages
# What the tests start themselves (slapd and Samba AD per test, through scripts/peers/) or run (promtool, openssl).
# Installed here, up front and in one apt run, so that tests starting peers in parallel never race for the dpkg lock.
DEBIAN_PACKAGES=(openssl prometheus slapd ldap-utils samba-ad-dc samba-ad-provision)

install_packages() {
  section "Debian packages"
  local missing=() p
  for p in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" = 0 ]; then
    log "all present: ${DEBIAN_PACKAGES[*]}"
    return 0
  fi
  log "installing ${missing[*]}"
  # Packaged services (slapd on 389, prometheus on 9090) must not start: the tests run their own instances.
  local policy=/usr/sbin/policy-rc.d made_policy=
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=1
  fi
  local rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null; } || rc=$?
  [ -z "$made_policy" ] || rm -f "$policy"
  [ "$rc" = 0 ] || die "apt-get install ${missing[*]} failed (exit $rc)"
}

# ---------------------------------------------------------------------------------------------------- peer: LiteLLM
# setup.sh writes its pid file into LITELLM_PEER_ROOT, which another LiteLLM (a developer's, on port 4000) may
# share. So the pid we stop is the one setup.sh wrote during this run, and only if that process listens on our
# port; the previous pid file is put back afterwards.
LITELLM_PID=
LITELLM_PIDFILE_BEFORE=

start_litellm() {
  section "Peer: LiteLLM (real proxy on PostgreSQL)"
  local port pidfile=$LITELLM_PEER_ROOT/litellm.pid
  port=$(free_port)
  LITELLM_PIDFILE_BEFORE=$(cat "$pidfile" 2>/dev/null || true)
  register_stop stop_litellm_peer
  log "ROOT=$LITELLM_PEER_ROOT PORT=$port DB=$LITELLM_PEER_DB"
  local rc=0
  bounded "$PEER_SETUP_TIMEOUT" env ROOT="$LITELLM_PEER_ROOT" PORT="$port" DB="$LITELLM_PEER_DB" \
    bash "$SHARED/peers/litellm/setup.sh" || rc=$?
  local pid; pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$pid" != "$LITELLM_PIDFILE_BEFORE" ] \
    && { tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null | grep -q -- "--port $port "; then
    LITELLM_PID=$pid
  fi
  if [ "$rc" != 0 ]; then
    log "setup.sh failed (exit $rc)"
    if [ -n "$LITELLM_PID" ]; then # our LiteLLM started (the log is shared with other instances otherwise)
      log "last lines of $LITELLM_PEER_ROOT/litellm.log:"
      tail -n 30 "$LITELLM_PEER_ROOT/litellm.log" 2>/dev/null || true
    fi
    return 1
  fi
  [ -n "$LITELLM_PID" ] || die "setup.sh succeeded but $pidfile does not name a LiteLLM on port $port"
  export LITELLM_SYNC_TEST_LITELLM_URL=http://127.0.0.1:$port
  export LITELLM_SYNC_TEST_LITELLM_KEY=sk-test-master
  log "LiteLLM is up at $LITELLM_SYNC_TEST_LITELLM_URL (pid $LITELLM_PID)"
}


# ---------------------------------------------------------------------------------------------------- peer: PostgreSQL
# The HA tests and the PostgreSQL store suite use the PostgreSQL that setup.sh runs for LiteLLM: a role that may
# create databases, each test making (and dropping) a database of its own.
PG_TEST_ROLE=litellm_sync_test
PG_TEST_PASSWORD=litellm-sync-test

prepare_postgres() {
  section "Peer: PostgreSQL (a test role for the HA tests)"
  command -v psql >/dev/null || die "psql not found: setup.sh installs PostgreSQL"
  if ! su postgres -c "psql -tAc \"SELECT 1 FROM pg_roles WHERE rolname='$PG_TEST_ROLE'\"" | grep -q 1; then
    su postgres -c "psql -q -c \"CREATE ROLE $PG_TEST_ROLE LOGIN CREATEDB PASSWORD '$PG_TEST_PASSWORD';\"" \
      || die "cannot create the PostgreSQL test role"
  fi
  export LITELLM_SYNC_TEST_PG_URL="postgres://$PG_TEST_ROLE@127.0.0.1:5432/postgres"
  export LITELLM_SYNC_TEST_PG_PASSWORD=$PG_TEST_PASSWORD
  log "PostgreSQL test role $PG_TEST_ROLE ready"
}

# ---------------------------------------------------------------------------------------------------- checks
PASSED=()
FAILED=()

step() { # name command… → runs it bounded by STEP_TIMEOUT and records the outcome
  local name=$1; shift
  section "$name"
  log "$*"
  local start=$SECONDS rc=0
  bounded "$STEP_TIMEOUT" "$@" || rc=$?
  if [ "$rc" = 0 ]; then
    PASSED+=("$name ($((SECONDS - start)) s)")
  else
    [ "$rc" = 124 ] && log "$name timed out after ${STEP_TIMEOUT}s"
    FAILED+=("$name (exit $rc, $((SECONDS - start)) s)")
  fi
}

summary() {
  section "Summary"
  local s
  for s in "${PASSED[@]}"; do printf '  ok      %s\n' "$s"; done
  for s in "${FAILED[@]}"; do printf '  FAILED  %s\n' "$s"; done
  [ "${#FAILED[@]}" = 0 ]
}

main() {
  check_prerequisites
  install_packages
  section "Test peer: oidc-provider (npm)"
  bounded "$PEER_SETUP_TIMEOUT" bash scripts/peers/oidc-provider/install.sh \
    || die "scripts/peers/oidc-provider/install.sh failed: the oidc integration tests need it"
  section "Test peer: SCIM conformance testers (PyPI)"
  bounded "$PEER_SETUP_TIMEOUT" bash scripts/peers/scim-testers/install.sh \
    || die "scripts/peers/scim-testers/install.sh failed: the scim conformance test needs it"
  local peer
  for peer in "${PEERS[@]}"; do
    "$peer" || die "$peer failed: the integration tests need it"
  done
  local locked=()
  [ "${CI:-}" = true ] && locked=(--locked)
  export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
  step "cargo fmt" cargo fmt --all -- --check
  step "cargo clippy" cargo clippy "${locked[@]}" --all-targets -- -D warnings
  step "cargo test" cargo test "${locked[@]}" --all-targets "$@"
  # hadolint, checkov, kubernetes-validate, check-jsonschema, yamllint, promtool and the Rust cross-file checks
  # (deploy/README.md, "Checks").
  step "deployment artefacts" scripts/check-deploy.sh
  summary
}

main "$@"
