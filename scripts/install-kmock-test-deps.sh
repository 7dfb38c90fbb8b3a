#!/usr/bin/env bash
# Installs kmock (the Kubernetes API emulator that the operator's end-to-end test starts) into
# .venv/kmock. Idempotent; scripts/test.sh runs every scripts/install-*-test-deps.sh.
set -euo pipefail
exec bash "$(dirname "$0")/../operator/tests/e2e/install-kmock.sh"
