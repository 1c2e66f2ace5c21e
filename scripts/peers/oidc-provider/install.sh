#!/usr/bin/env bash
# Installs the OIDC test peer's npm packages (oidc-provider, pinned in package-lock.json) into this folder's
# node_modules. Idempotent: does nothing when node_modules already matches the lock file. Needs node 20+ and npm,
# and the npm registry (nothing else from the internet).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
command -v npm >/dev/null || { echo "npm not found: install Node.js 20 or newer" >&2; exit 1; }
# npm ci rewrites node_modules every time; skip it when the installed tree is the locked one (npm writes its copy
# of the lock to node_modules/.package-lock.json on every install).
if [ -f node_modules/.package-lock.json ] && [ -d node_modules/oidc-provider ] \
  && [ node_modules/.package-lock.json -nt package-lock.json ]; then
  echo "oidc-provider peer: node_modules is up to date"
  exit 0
fi
npm ci --no-audit --no-fund --loglevel=error
echo "oidc-provider peer: installed $(node -p 'require("./node_modules/oidc-provider/package.json").version')"
