#!/usr/bin/env bash
# Installs PyPI `kmock` (the Kubernetes API emulator the operator's end-to-end test starts) into
# the venv .venv/kmock (gitignored). Idempotent. Wire it into scripts/test.sh by calling it from
# a scripts/install-*-test-deps.sh, or set AURALGUARD_KMOCK_PYTHON to a Python that has kmock.
set -euo pipefail
cd "$(dirname "$0")/../../.."

KMOCK_VERSION="0.8"
venv=".venv/kmock"
python="${PYTHON:-python3}"

if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('kmock') != '$KMOCK_VERSION')" 2>/dev/null; then
  echo "kmock $KMOCK_VERSION already installed in $venv"
  exit 0
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "kmock==$KMOCK_VERSION"
"$venv/bin/python" -c "import kmock; print('kmock', kmock.__version__)"
