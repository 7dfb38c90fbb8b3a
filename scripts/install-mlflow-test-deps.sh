#!/usr/bin/env bash
# Installs the real MLflow tracking server that the `mlflow-client` integration tests start
# (mlflow/tests/common/mod.rs looks for <repo>/.venv/mlflow/bin/mlflow).
#
# Idempotent: when the venv already has exactly the pinned version, it does nothing, so
# scripts/test.sh can run it every time for free. Override the Python with $PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."

MLFLOW_VERSION="3.17.2"
venv=".venv/mlflow"
python="${PYTHON:-python3}"

installed_version() {
  "$venv/bin/python" - <<'PY' 2>/dev/null
from importlib.metadata import version
print(version("mlflow"))
PY
}

if [ -x "$venv/bin/mlflow" ] && [ "$(installed_version || true)" = "$MLFLOW_VERSION" ]; then
  echo "mlflow $MLFLOW_VERSION already installed in $venv"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "creating venv $venv"
  if ! "$python" -m venv "$venv"; then
    echo "error: '$python -m venv' failed; on Debian install python3-venv (apt-get install python3-venv)" >&2
    exit 1
  fi
fi

echo "installing mlflow==$MLFLOW_VERSION into $venv (a few minutes the first time)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "mlflow==$MLFLOW_VERSION"

got="$(installed_version || true)"
if [ "$got" != "$MLFLOW_VERSION" ]; then
  echo "error: expected mlflow $MLFLOW_VERSION in $venv, found '${got:-nothing}'" >&2
  exit 1
fi
"$venv/bin/mlflow" --version
