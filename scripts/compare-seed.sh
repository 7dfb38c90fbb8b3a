#!/usr/bin/env bash
# The original service against `auralguard serve`, side by side: same machine, same run, same
# weights (the seed CNN of testdata/parity/seed_random.h5, which models/seed-random was imported
# from), same client (server/examples/loadgen.rs), loopback only.
#
#   scripts/compare-seed.sh [CLIENTS] [SECONDS] [FILE]
#     default: 8 clients, 30 s per server, the first 15 s of testdata/parity/long_16k_pcm16.wav
#
# The baseline is examples/seed-service/app.py, a faithful reimplementation of the original
# Flask + librosa + Keras service, run as it was deployed (gunicorn, 2 workers), from a venv at
# .venv/seed-service with the pinned examples/seed-service/requirements.txt. Both servers first
# judge the clip once and must agree on its fake probability (|Δp| ≤ 1e-3), which shows they run
# the same weights on the same features. Then each is loaded for SECONDS: the original service,
# `auralguard serve --no-store` and with its SQLite log (the seed CNN), and the shipped default
# model (models/demo, with its log). The script prints every run's numbers and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
clients=${1:-8}
seconds=${2:-30}
out=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$out"
}
trap cleanup EXIT
file=${3:-$out/clip15.wav}
[ -n "${3:-}" ] || python3 scripts/clip15.py "$file"

# --- the original stack, pinned ----------------------------------------------------------------
venv=.venv/seed-service
reqs=examples/seed-service/requirements.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$reqs" | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the original service's stack into $venv (Flask, gunicorn, librosa, Keras/TensorFlow)" >&2
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$reqs"
  echo "$want" >"$stamp"
fi

# --- the same weights on both sides ------------------------------------------------------------
h5="$root/testdata/parity/seed_random.h5"
python3 - "$h5" <<'PY'
import hashlib, json, sys
h5 = hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest()
src = json.load(open("models/seed-random/auralguard.json"))["training"]["source_sha256"]
if h5 != src:
    sys.exit(f"models/seed-random was not imported from {sys.argv[1]} ({src} != {h5})")
PY

cargo build -q --release -p auralguard --bin auralguard --example loadgen
gen=target/release/examples/loadgen
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { # URL
  for _ in $(seq 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "error: $1 never answered" >&2
  return 1
}
# One prediction; prints its fake probability.
judge() { # URL
  curl -fs -F "audio=@$file" "$1/predict" | python3 -c 'import json,sys; print(json.load(sys.stdin)["fake_probability"])'
}

# run NAME URL PID: loads a started server; the JSON goes to $out/NAME.json.
run() {
  local name=$1 url=$2 pid=$3
  echo "--- $name: $clients clients × $seconds s" >&2
  "$gen" --url "$url" --clients "$clients" --seconds "$seconds" --file "$file" ${pid:+--pid "$pid"} \
    | tee "$out/$name.json" >&2
}

# 1. The original service: gunicorn, 2 workers (each loads the model).
port=$(free_port)
AURALGUARD_SEED_MODEL="$h5" "$venv/bin/gunicorn" --workers 2 --timeout 300 \
  --bind "127.0.0.1:$port" --chdir examples/seed-service app:app \
  >"$out/seed.log" 2>&1 &
seed_pid=$!
pids+=("$seed_pid")
wait_for "http://127.0.0.1:$port/health"
p_seed=$(judge "http://127.0.0.1:$port")
judge "http://127.0.0.1:$port" >/dev/null   # both workers warm
run original "http://127.0.0.1:$port" ""
kill -TERM "$seed_pid"; wait "$seed_pid" 2>/dev/null || true

# 2. auralguard serve, without and with its prediction log.
serve() { # NAME MODEL FLAGS...
  local name=$1 model=$2
  shift 2
  target/release/auralguard serve --model "$model" --host 127.0.0.1 --port 0 "$@" \
    >"$out/$name.addr" 2>"$out/$name.log" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do grep -q listening "$out/$name.addr" 2>/dev/null && break; sleep 0.1; done
  local url
  url=$(sed -n 's/^listening on //p' "$out/$name.addr")
  wait_for "$url/ready"
  [ "$name" = auralguard-no-store ] && judge "$url" >"$out/p_rust"
  run "$name" "$url" "$pid"
  kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
}
serve auralguard-no-store models/seed-random --no-store
serve auralguard models/seed-random --store-path "$out/predictions.db"
# 3. What ships as the default model (a different network: no baseline can run it, so its row
#    shows what a user of the product gets against the original service).
serve auralguard-demo models/demo --store-path "$out/predictions-demo.db"

python3 - "$out" "$p_seed" "$(cat "$out/p_rust")" <<'PY'
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
p_seed, p_rust = float(sys.argv[2]), float(sys.argv[3])
print(f"same clip, fake probability: original {p_seed:.6f}, auralguard {p_rust:.6f} "
      f"(|Δp| = {abs(p_seed - p_rust):.2e})")
if abs(p_seed - p_rust) > 1e-3:
    sys.exit("the two servers disagree on the clip: not the same model or features")
names = ("original", "auralguard-no-store", "auralguard", "auralguard-demo")
runs = {n: json.loads((d / f"{n}.json").read_text()) for n in names}
base = runs["original"]["ok_per_second"]
print("\n| server | responses | req/s | × original | p50 / p90 / p99 | server peak RSS |")
print("|---|---|---:|---:|---|---:|")
for name, r in runs.items():
    lat = r["latency_seconds"]
    rss = r.get("server_peak_rss_mib")
    print(f"| {name} | {r['responses']} | {r['ok_per_second']:.1f} | {r['ok_per_second'] / base:.2f} | "
          f"{lat['p50']*1000:.0f} / {lat['p90']*1000:.0f} / {lat['p99']*1000:.0f} ms | "
          f"{'%.0f MiB' % rss if rss else 'n/a (gunicorn: 3 processes)'} |")
PY
