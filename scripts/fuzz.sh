#!/usr/bin/env bash
# Fuzzes the server's hostile-input parsers: scripts/fuzz.sh [SECONDS_PER_TARGET] (default 600).
#
# Builds server/examples/fuzz.rs in release mode (stable toolchain: the mutation loop is our own),
# replays the regression inputs in testdata/fuzz/, then fuzzes each target (decode, oip, multipart,
# manifest) for the given seconds. Any finding (panic, hang over 5 s, allocation over the 512 MiB
# budget, a dead worker, a 500) is written to target/fuzz-findings/<target>/ and makes this
# script exit non-zero.
#
# Environment: FUZZ_SEED (default: from the clock; printed, rerun with it to reproduce),
# FUZZ_TARGETS (default: "decode oip multipart manifest"), FUZZ_ARGS (extra fuzzer flags),
# FUZZ_PROFILE (release, the default: fast and what the server ships as; or dev: slower, but with
# integer-overflow checks on, as the tests build, so arithmetic that release silently wraps
# panics and is reported).
# AURALGUARD_CARGO_SELECT: the packages and features cargo builds (default `-p auralguard`);
# scripts/test.sh passes the selection of its own test build, which then has nothing to recompile.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

seconds="${1:-600}"
if ! [[ "$seconds" =~ ^[0-9]+([.][0-9]+)?$ ]]; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET]" >&2
  exit 2
fi
target_dir="${CARGO_TARGET_DIR:-$root/target}"
seeds="$target_dir/fuzz-seeds"
findings="$target_dir/fuzz-findings"
seed="${FUZZ_SEED:-$(( $(date +%s%N) % 9007199254740991 ))}"

log() { printf "\n=== [%4ds] %s\n" "$SECONDS" "$*"; }

# --- small audio seeds, one per format (cached) -----------------------------------------------
# Short clips keep a decode run fast (the checked-in fixtures are 2 s long). They are cut from the
# repository's own speech with ffmpeg, installed like scripts/test.sh installs its packages; without
# it the fuzzer still starts from the generated WAVs and testdata/formats.
make_seeds() {
  local out="$seeds/decode" src="$root/examples/audio/speech.wav"
  [ -f "$out/.done" ] && return 0
  if ! command -v ffmpeg >/dev/null 2>&1; then
    log "installing ffmpeg (audio seed generation)"
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    if ! { $SUDO apt-get update -qq &&
           DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
             ffmpeg >/dev/null; }; then
      echo "warning: no ffmpeg; fuzzing from the checked-in audio only" >&2
      return 0
    fi
  fi
  log "generating small audio seeds in $out"
  mkdir -p "$out"
  # One 0.4 s clip per format variant; an encoder this ffmpeg lacks skips its seed, no more.
  enc() {
    local name="$1"; shift
    ffmpeg -loglevel error -y -t 0.4 -i "$src" "$@" "$out/$name" ||
      echo "warning: could not make the seed $name" >&2
  }
  enc pcm16_16k.wav -ar 16000 -ac 1 -c:a pcm_s16le
  enc float32_stereo_44k1.wav -ar 44100 -ac 2 -c:a pcm_f32le
  enc u8_8k.wav -ar 8000 -ac 1 -c:a pcm_u8
  enc s24_48k.wav -ar 48000 -ac 1 -c:a pcm_s24le
  enc float64_22k.wav -ar 22050 -ac 1 -c:a pcm_f64le
  enc mp3_44k1.mp3 -ar 44100 -ac 1 -c:a libmp3lame -b:a 64k
  enc mp3_stereo_22k.mp3 -ar 22050 -ac 2 -c:a libmp3lame -b:a 32k
  enc flac_16k.flac -ar 16000 -ac 1 -c:a flac
  enc flac_24bit_stereo.flac -ar 44100 -ac 2 -c:a flac -sample_fmt s32
  enc vorbis_22k.ogg -ar 22050 -ac 1 -c:a libvorbis -q:a 1
  enc aac_44k1.m4a -ar 44100 -ac 1 -c:a aac -b:a 48k
  enc aac_faststart_16k.m4a -ar 16000 -ac 1 -c:a aac -b:a 32k -movflags +faststart
  enc aac_adts.aac -ar 44100 -ac 1 -c:a aac -b:a 48k -f adts
  touch "$out/.done"
  ls -l "$out" | tail -n +2
}
make_seeds

profile="${FUZZ_PROFILE:-release}"
case "$profile" in
  release) build=(--release); bin="$target_dir/release/examples/fuzz" ;;
  dev) build=(); bin="$target_dir/debug/examples/fuzz" ;;
  *) echo "FUZZ_PROFILE must be release or dev" >&2; exit 2 ;;
esac
log "building the fuzzer ($profile)"
read -r -a select <<< "${AURALGUARD_CARGO_SELECT:--p auralguard}"
cargo build "${build[@]}" "${select[@]}" --example fuzz
common=(--findings "$findings" --seeds "$seeds" --work "$target_dir/fuzz-work")

status=0
log "replaying the regression inputs in testdata/fuzz"
"$bin" "${common[@]}" --replay testdata/fuzz || status=1

targets=()
for t in ${FUZZ_TARGETS:-decode oip multipart manifest}; do targets+=(--target "$t"); done
log "fuzzing ${FUZZ_TARGETS:-decode oip multipart manifest} for ${seconds} s each, seed $seed"
# shellcheck disable=SC2086  # FUZZ_ARGS is a list of flags
"$bin" "${common[@]}" "${targets[@]}" --seconds "$seconds" --seed "$seed" ${FUZZ_ARGS:-} ||
  status=1

if [ "$status" -ne 0 ]; then
  echo "fuzz: FAILED — findings in $findings (reproduce with FUZZ_SEED=$seed)" >&2
else
  log "no findings (seed $seed)"
fi
exit "$status"
