#!/usr/bin/env bash
# Soak test (server/examples/soak.rs): good, bad and slow clients against the release server for
# MINUTES minutes (default 30) on loopback, while the MongoDB-wire database behind its prediction
# log is killed and restarted and frozen (SIGSTOP). Fails on any acknowledged prediction missing
# from the database, any duplicate, any 5xx other than 503/504, or RSS growth over 10 %.
# CI runs `scripts/soak.sh 2`; the README reports a 30-minute run.
#   scripts/soak.sh [MINUTES] [-- EXTRA DRIVER FLAGS]     (see: target/release/examples/soak --help)
# Prints a Markdown summary on stdout; progress and per-case detail on stderr. Exit status: 0 pass,
# 1 a check failed (the work folder with both logs is kept and named), 2 the soak could not run.
# SOAK_PROFILE: release (the default: the build the server ships as, what long runs measure) or
# dev (the build the tests already made, with integer-overflow checks on: scripts/test.sh uses it
# for its short run, which checks behaviour rather than speed, and so skips a release build).
# AURALGUARD_CARGO_SELECT: the packages and features cargo builds (default `-p auralguard`);
# scripts/test.sh passes the selection of its own test build, which then has nothing to recompile.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes=${1:-30}
shift $(( $# > 0 ? 1 : 0 ))
[ "${1:-}" = "--" ] && shift
if ! [[ "$minutes" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "usage: scripts/soak.sh [MINUTES] [-- DRIVER FLAGS]" >&2
  exit 2
fi

# The database the tests use (SecantusDB in .venv/mongo); idempotent, like scripts/test.sh.
bash scripts/install-mongo-test-deps.sh

profile="${SOAK_PROFILE:-release}"
case "$profile" in
  release) build=(--release); out=release ;;
  dev) build=(); out=debug ;;
  *) echo "SOAK_PROFILE must be release or dev" >&2; exit 2 ;;
esac
read -r -a select <<< "${AURALGUARD_CARGO_SELECT:--p auralguard}"
cargo build "${build[@]}" "${select[@]}" --bin auralguard --example soak
target_dir=$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')

# The driver kills its children on exit, panic, Ctrl-C and SIGTERM; `exec` makes it the process
# a CI timeout signals.
exec "$target_dir/$out/examples/soak" --minutes "$minutes" \
  --binary "$target_dir/$out/auralguard" "$@"
