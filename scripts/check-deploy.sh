#!/usr/bin/env bash
# Offline checks of the deployment artefacts: Helm chart (lint, render, Kubernetes schema
# validation, RBAC/security assertions), CRD and examples, Dockerfiles (hadolint), and
# docker-compose.yml (Compose's own loader). The checks themselves are scripts/deploy_checks.py.
#
#   scripts/check-deploy.sh            # from anywhere; extra arguments go to pytest (e.g. -k rbac)
#
# Installs its tools into .venv/deploy on first use (scripts/install-deploy-test-deps.sh, a no-op
# once done). Needs no cluster, no Docker engine and no network after that install.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deploy-test-deps.sh >/dev/null

# No .pytest_cache or __pycache__ left in the work tree.
export PYTHONDONTWRITEBYTECODE=1
exec .venv/deploy/bin/python -m pytest -p no:cacheprovider -q --no-header --tb=short -rfEs \
  scripts/deploy_checks.py "$@"
