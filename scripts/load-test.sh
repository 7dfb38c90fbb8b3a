#!/usr/bin/env bash
# Load test of `auralguard serve` on this machine (loopback only), with its baseline in the same
# run: 8 clients × 30 s of a 15 s WAV against the server with cross-request batching off
# (--batch-size 1) and on (defaults), then 32 clients × 15 s against a tiny queue to show excess
# requests get 503 and memory stays bounded. Prints each run's JSON (server/examples/loadgen.rs)
# and the ratios.
#   scripts/load-test.sh [CLIENTS] [SECONDS] [FILE]   (default FILE: the first 15 s of
#                                                      testdata/parity/long_16k_pcm16.wav)
# LOADTEST_BINARY=PATH loads another build of the server (e.g. an older release, to compare
# throughput before and after a change on the same machine); the load generator is this tree's.
set -euo pipefail
cd "$(dirname "$0")/.."
clients=${1:-8}
seconds=${2:-30}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
file=${3:-$out/clip15.wav}
[ -n "${3:-}" ] || python3 scripts/clip15.py "$file"

cargo build -q --release -p auralguard --bin auralguard --example loadgen
bin=${LOADTEST_BINARY:-target/release/auralguard}
gen=target/release/examples/loadgen

# run NAME CLIENTS SECONDS SERVER-FLAGS...: starts a server on a free port, loads it, stops it.
run() {
  local name=$1 c=$2 s=$3
  shift 3
  "$bin" serve --model models/seed-random --host 127.0.0.1 --port 0 --no-store "$@" \
    >"$out/$name.addr" 2>"$out/$name.log" &
  local pid=$!
  for _ in $(seq 100); do grep -q listening "$out/$name.addr" 2>/dev/null && break; sleep 0.1; done
  local url
  url=$(sed -n 's/^listening on //p' "$out/$name.addr")
  until curl -fs "$url/ready" >/dev/null; do sleep 0.1; done
  echo "--- $name: $c clients × $s s, server flags: ${*:-(defaults)}" >&2
  "$gen" --url "$url" --clients "$c" --seconds "$s" --file "$file" --pid "$pid" | tee "$out/$name.json"
  kill -TERM "$pid"
  wait "$pid"
}

run unbatched "$clients" "$seconds" --batch-size 1
run batched "$clients" "$seconds"
run tiny-queue 32 15 --max-queue-windows 4 --max-concurrent 2

python3 - "$out" <<'PY'
import json, sys, pathlib
d = pathlib.Path(sys.argv[1])
r = {n: json.loads((d / f"{n}.json").read_text()) for n in ("unbatched", "batched", "tiny-queue")}
u, b, t = r["unbatched"], r["batched"], r["tiny-queue"]
print(f"\nthroughput: batched {b['ok_per_second']:.2f} req/s vs unbatched {u['ok_per_second']:.2f} req/s "
      f"= {b['ok_per_second'] / u['ok_per_second']:.2f}x")
print(f"p50 latency: batched {b['latency_seconds']['p50']:.3f} s vs unbatched {u['latency_seconds']['p50']:.3f} s")
print(f"mean windows per network call: batched {b['mean_windows_per_call']:.1f}, unbatched {u['mean_windows_per_call']:.1f}")
print(f"tiny queue, 32 clients: responses {t['responses']}, server peak RSS {t['server_peak_rss_mib']:.0f} MiB "
      f"(batched run with {b['clients']} clients: {b['server_peak_rss_mib']:.0f} MiB)")
PY
