#!/usr/bin/env bash
# Installs the SCIM conformance testers from PyPI (scim2-cli with scim2-tester, and scim-sanity) into a venv at
# $SCIM_TESTERS_VENV (default /var/tmp/scim-testers/venv). Idempotent: does nothing when the pinned versions are
# installed. Needs python3 (3.10+) with venv, and the PyPI registry (nothing else from the internet).
# The integration test `scim::conformance` runs $SCIM_TESTERS_VENV/bin/scim2 against the daemon.
set -Eeuo pipefail
VENV=${SCIM_TESTERS_VENV:-/var/tmp/scim-testers/venv}
PINS=(scim2-cli==0.6.0 scim2-tester==0.5.2 scim2-client==0.13.2 scim-sanity==0.7.4)
command -v python3 >/dev/null || { echo "python3 not found" >&2; exit 1; }
if [ -x "$VENV/bin/scim2" ] && "$VENV/bin/python" -m pip freeze 2>/dev/null | grep -qx "scim2-tester==0.5.2"; then
  echo "scim testers: $VENV is up to date"
  exit 0
fi
mkdir -p "$(dirname "$VENV")"
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
echo "scim testers: installed $("$VENV/bin/python" -m pip freeze | grep -E '^scim' | tr '\n' ' ')"
