#!/usr/bin/env bash
# What examples/dataset/build.py needs: Debian's ffmpeg (G.722 codec), the speech synthesisers
# (espeak-ng, flite, festival with the kal diphone voice), the Asterisk prompts recorded by people
# (G.722, en/fr/it) with their transcripts, and a venv at .venv/dataset with a pinned numpy.
# Idempotent: a rerun with everything in place does nothing (no apt-get update, no pip).
set -euo pipefail
cd "$(dirname "$0")/.."
numpy=2.4.6
venv=.venv/dataset
packages=(
  ffmpeg espeak-ng flite festival festvox-kallpc16k
  asterisk-core-sounds-en-g722 asterisk-core-sounds-fr-g722 asterisk-core-sounds-it-g722
  asterisk-core-sounds-en asterisk-core-sounds-fr asterisk-core-sounds-it
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

if [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$numpy" <<'PY' 2>/dev/null; then
import importlib.metadata as m, sys
sys.exit(m.version("numpy") != sys.argv[1])
PY
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "numpy==$numpy"
echo "installed numpy $numpy into $venv"
