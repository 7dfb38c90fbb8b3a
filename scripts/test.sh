#!/usr/bin/env bash
# The project's one test command (README "Quick start", and what .ci/run executes).
#
# Installs what the tests need when it is missing (Debian packages, a Python venv for the
# service-backed tests), then runs formatting, lints and every test of the workspace with
# AURALGUARD_NO_SKIP=1: a test that would skip because a service or fixture is unavailable fails
# instead, so a green run means everything really ran.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf "\n=== [%4ds] %s\n" "$SECONDS" "$*"; }

# Disk is the resource a clean build runs out of first (a CI machine's free space varies), so
# every stage reports it: a failure then says "disk" at once instead of a linker's bus error.
disk() {
  local target="${CARGO_TARGET_DIR:-$root/target}"
  printf "    disk: %s free on %s; target/ %s\n" \
    "$(df -h --output=avail "$root" | tail -1 | tr -d ' ')" \
    "$(df --output=target "$root" | tail -1)" \
    "$( (du -sh "$target" 2>/dev/null || echo "0 -") | cut -f1)"
}
# Measured on a clean clone: target/ peaks at 2.9 GB; the venvs take 4 GB (Keras with TensorFlow,
# which writes the import fixtures, is 2.2 of it), the demo split 0.6.
need_free_gb=10
free_gb=$(( $(df -k --output=avail "$root" | tail -1) / 1024 / 1024 ))
if [ "$free_gb" -lt "$need_free_gb" ]; then
  echo "warning: only ${free_gb} GB free on $(df --output=target "$root" | tail -1);" \
       "a clean build needs about ${need_free_gb} GB" >&2
fi
disk

# A one-shot build never reuses incremental state: in CI it only costs time and disk.
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=0; fi

# --- system packages ---------------------------------------------------------------------------
need_apt=()
dpkg -s libhdf5-dev >/dev/null 2>&1 || need_apt+=(libhdf5-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)   # promtool lints /metrics
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# --- service-backed test dependencies and the demo test split, in the background -------------
# The installers (Python venvs under .venv, wheels, Debian speech packages) and the demo corpus's
# test split (Debian TTS + Asterisk prompts, cached in data/demo-test) are mostly downloads and
# unpacking, and only running the tests needs them; fmt and the build, which need neither, run
# meanwhile.
# On a fresh machine each side takes about ten minutes, so this saves most of one of them. Their
# output is kept in a file and printed, in order, once they are done.
deps_log=$(mktemp)
(
  for installer in scripts/install-*-test-deps.sh; do
    [ -e "$installer" ] || continue
    log "running $installer"
    bash "$installer"
  done
  log "building the demo corpus's test split (models/demo is evaluated on it)"
  bash scripts/install-dataset-deps.sh
  .venv/dataset/bin/python examples/dataset/build.py --splits test --out data/demo-test
) >"$deps_log" 2>&1 &
deps_pid=$!
# A failing lint must not leave the installers running on: stop them when this script exits.
trap 'kill "$deps_pid" 2>/dev/null || true; rm -f "$deps_log"' EXIT

export AURALGUARD_NO_SKIP=1
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

log "cargo fmt --check"
cargo fmt --all -- --check

# Lints and the test build are one compilation. `cargo clippy` would type-check all ~570
# dependencies a second time in check mode (about ten minutes on a fresh 2-core machine) only to
# throw the result away before `cargo test` compiles them for real. Instead, the workspace's own
# crates are compiled by clippy-driver, which is rustc with clippy's lints added (what
# `cargo clippy` itself runs, but here producing code too), while dependencies are compiled by
# rustc as usual. Every cargo command below inherits the wrapper, so the soak and fuzz builds
# reuse these artefacts, and the default-feature build of the smoke test is linted as well. It
# checks the same targets and lints as `cargo clippy --workspace --all-targets --features
# auralguard/keras -- -D warnings`; any warning fails the run.
clippy_driver="$(rustc --print sysroot)/bin/clippy-driver"
if [ ! -x "$clippy_driver" ]; then
  echo "error: $clippy_driver not found; install it with: rustup component add clippy" >&2
  exit 1
fi
export RUSTC_WORKSPACE_WRAPPER="$clippy_driver"
# Fails the run on a compiler or clippy warning that cargo reported (or replayed from its cache).
no_warnings() {
  if grep -E '^warning: `[^`]+` \(.*\) generated [0-9]+ warnings?' "$1"; then
    grep -E -A12 '^warning' "$1" | head -80 >&2
    echo "error: the build above has warnings (warnings are errors here)" >&2
    exit 1
  fi
}

log "building every target with clippy's lints (warnings are errors)"
build_log=$(mktemp)
trap 'kill "$deps_pid" 2>/dev/null || true; rm -f "$deps_log" "$build_log"' EXIT
cargo test --workspace --all-targets --features auralguard/keras --no-run 2>&1 | tee "$build_log"
no_warnings "$build_log"
disk

log "waiting for the test dependencies and the demo test split (started before fmt)"
if ! wait "$deps_pid"; then
  cat "$deps_log"
  echo "error: installing the test dependencies failed (its output is above)" >&2
  exit 1
fi
cat "$deps_log"

log "cargo test (workspace)"
cargo test --workspace --no-fail-fast --features auralguard/keras
disk

log "deployment artefacts: Helm chart, CRD, examples, Dockerfiles, docker-compose (offline)"
bash scripts/check-deploy.sh

log "quick start smoke test (the README's first command, verbatim)"
smoke_err=$(mktemp)
out=$(cargo run -p auralguard -- predict examples/audio/speech.wav --model models/demo 2>"$smoke_err")
echo "$out" | head -5
echo "$out" | grep -q '"prediction"'
# This is the one build without the `keras` feature: a compiler warning in it fails the run.
if grep -q '^warning' "$smoke_err"; then
  cat "$smoke_err" >&2
  echo "error: the default-feature build has warnings (above)" >&2
  exit 1
fi
rm -f "$smoke_err"
disk

# The short versions of the hardening proofs (README "Security and limits" reports long runs, on
# the release build the server ships as). Both run on the dev build the steps above compiled: a
# release build from scratch would add a quarter of an hour to a fresh machine's run, and the dev
# build checks integer overflow, which release silently wraps, so a short run finds more with it.
# The fuzzer's seed is fixed here so that CI is repeatable; any other seed is a new search.
log "soak: 2 minutes of good, bad and slow clients, the database frozen and killed (scripts/soak.sh 2)"
export AURALGUARD_CARGO_SELECT="--workspace --features auralguard/keras"
SOAK_PROFILE="${SOAK_PROFILE:-dev}" bash scripts/soak.sh 2
log "fuzzing: regression inputs, then 20 s per target (scripts/fuzz.sh 20)"
FUZZ_PROFILE="${FUZZ_PROFILE:-dev}" FUZZ_SEED="${FUZZ_SEED:-20261206}" bash scripts/fuzz.sh 20
disk

log "all tests passed"
