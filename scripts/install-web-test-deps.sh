#!/usr/bin/env bash
# What the web-page test drives: Debian's Chromium and its WebDriver, plus a venv at .venv/web with
# Selenium (the Python WebDriver client) and openapi-spec-validator (checks /openapi.json).
# Idempotent: a rerun with everything in place does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
selenium=4.50.0
validator=0.9.0
venv=.venv/web

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver fonts-dejavu-core >/dev/null
fi

if [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$selenium" "$validator" <<'PY' 2>/dev/null; then
import importlib.metadata as m, sys
sys.exit(not (m.version("selenium") == sys.argv[1] and m.version("openapi-spec-validator") == sys.argv[2]))
PY
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
  "selenium==$selenium" "openapi-spec-validator==$validator"
echo "installed selenium $selenium and openapi-spec-validator $validator into $venv"
