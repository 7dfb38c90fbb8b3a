#!/usr/bin/env bash
# A MongoDB-wire server for the prediction-log tests: SecantusDB (WiredTiger storage, survives
# restarts, which the outage test needs) in its own venv at .venv/mongo. No real mongod exists in
# the package registries our CI machines reach. Idempotent: a rerun with the
# pinned version already installed does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.7.0b3
venv=.venv/mongo
if [ -x "$venv/bin/secantusd-py" ]; then
  installed=$("$venv/bin/pip" show secantusdb 2>/dev/null || true)
  grep -qx "Version: $version" <<<"$installed" && exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "secantusdb==$version"
"$venv/bin/secantusd-py" --help >/dev/null
echo "installed secantusdb $version into $venv"
