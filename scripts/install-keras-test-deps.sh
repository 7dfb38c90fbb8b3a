#!/usr/bin/env bash
# Makes the Keras import fixtures with real Keras: a venv at .venv/keras with pinned Keras 3 and
# Keras 2 (tf_keras on TensorFlow), which re-saves testdata/parity/seed_random.h5 as a native
# `.keras` zip and as a Keras 2 `.h5` into testdata/generated/keras/ (git-ignored). The tests in
# server/tests/model_parity.rs and server/src/model/keras.rs import both and fail (under
# AURALGUARD_NO_SKIP=1) when they are missing.
#
# Idempotent and cached: when the venv has the pinned versions and the fixtures were made from the
# current seed_random.h5 by them, it does nothing. Override the Python with $PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."

KERAS_VERSION="3.15.1"
TF_KERAS_VERSION="2.21.0"
TENSORFLOW_VERSION="2.21.0"
H5PY_VERSION="3.14.0"
venv=".venv/keras"
out="testdata/generated/keras"
src="testdata/parity/seed_random.h5"
python="${PYTHON:-python3}"

versions_ok() {
  "$venv/bin/python" - "$KERAS_VERSION" "$TF_KERAS_VERSION" "$TENSORFLOW_VERSION" <<'PY' 2>/dev/null
import importlib.metadata as m, sys
want = dict(zip(["keras", "tf-keras", "tensorflow"], sys.argv[1:]))
sys.exit(any(m.version(k) != v for k, v in want.items()))
PY
}

if ! { [ -x "$venv/bin/python" ] && versions_ok; }; then
  if [ ! -x "$venv/bin/python" ]; then
    echo "creating venv $venv"
    if ! "$python" -m venv "$venv"; then
      echo "error: '$python -m venv' failed; on Debian install python3-venv" >&2
      exit 1
    fi
  fi
  echo "installing keras $KERAS_VERSION, tf-keras $TF_KERAS_VERSION (tensorflow $TENSORFLOW_VERSION) into $venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "keras==$KERAS_VERSION" "tf-keras==$TF_KERAS_VERSION" \
    "tensorflow==$TENSORFLOW_VERSION" "h5py==$H5PY_VERSION"
  versions_ok || { echo "error: $venv does not have the pinned versions after install" >&2; exit 1; }
fi

# Fresh when made from this seed_random.h5 by these versions.
fresh() {
  [ -f "$out/seed_random.keras" ] && [ -f "$out/seed_random_keras2.h5" ] && [ -f "$out/fixtures.json" ] || return 1
  "$venv/bin/python" - "$out/fixtures.json" "$src" "$KERAS_VERSION" "$TF_KERAS_VERSION" <<'PY'
import hashlib, json, sys
meta = json.load(open(sys.argv[1]))
digest = hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest()
sys.exit(not (meta["source_sha256"] == digest and meta["keras"] == sys.argv[3]
              and meta["tf_keras"] == sys.argv[4]))
PY
}

if fresh; then
  echo "Keras fixtures in $out are current"
  exit 0
fi
rm -rf "$out.tmp"
"$venv/bin/python" scripts/keras_fixtures.py "$src" "$out.tmp" 2> >(grep -v -e cuInit -e "UserWarning" -e "saving_api" -e "compile_metrics" >&2)
rm -rf "$out"
mv "$out.tmp" "$out"
