#!/usr/bin/env bash
# Regenerates the small format and bad-input fixtures in this folder (checked in; rerun only to
# change them). Needs sox, ffmpeg (with libmp3lame, libvorbis, aac) and python3.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# A 2 s source: a voiced glide with vibrato plus a little noise, at 44.1 kHz float.
sox -n -r 44100 -c 1 -b 32 -e float "$tmp/src.wav" synth 2 sine 180-420 \
  tremolo 5 60 gain -6
sox -n -r 44100 -c 1 -b 32 -e float "$tmp/src2.wav" synth 2 sine 360-840 gain -12
sox -m "$tmp/src.wav" "$tmp/src2.wav" -b 32 -e float "$tmp/voice.wav"
sox -n -r 44100 -c 1 -b 32 -e float "$tmp/noise.wav" synth 2 pinknoise gain -30
sox -m "$tmp/voice.wav" "$tmp/noise.wav" -b 32 -e float "$tmp/mix.wav"

# WAV in every PCM width and float; a stereo and an 8-channel file.
sox "$tmp/mix.wav" -r 16000 -b 8 -e unsigned-integer pcm_u8.wav
sox "$tmp/mix.wav" -r 16000 -b 16 -e signed-integer pcm_s16.wav
sox "$tmp/mix.wav" -r 22050 -b 24 -e signed-integer pcm_s24.wav
sox "$tmp/mix.wav" -r 16000 -b 32 -e signed-integer pcm_s32.wav
sox "$tmp/mix.wav" -r 16000 -b 32 -e float float32.wav
sox "$tmp/mix.wav" -r 8000 -b 64 -e float float64.wav
sox "$tmp/mix.wav" -r 48000 -b 16 -c 2 stereo_48k.wav
sox "$tmp/mix.wav" -r 16000 -b 16 -c 8 eight_channels.wav

# Compressed formats.
sox "$tmp/mix.wav" -r 44100 -b 16 flac_44k1.flac
ffmpeg -loglevel error -y -i "$tmp/mix.wav" -c:a libmp3lame -b:a 64k mp3_44k1.mp3
ffmpeg -loglevel error -y -i "$tmp/mix.wav" -ar 22050 -c:a libvorbis -q:a 2 vorbis_22k.ogg
ffmpeg -loglevel error -y -i "$tmp/mix.wav" -c:a aac -b:a 64k aac_44k1.m4a

# Bad inputs.
: > empty.wav
printf 'This is a text file that pretends to be a WAV.\n' > text_named.wav
head -c 30 pcm_s16.wav > truncated_header.wav
python3 - <<'PY'
import struct
def wav(path, fmt_tag, bits, rate, frames_bytes):
    ch = 1
    block = ch * bits // 8
    hdr = b"RIFF" + struct.pack("<I", 36 + len(frames_bytes)) + b"WAVE"
    hdr += b"fmt " + struct.pack("<IHHIIHH", 16, fmt_tag, ch, rate, rate * block, block, bits)
    hdr += b"data" + struct.pack("<I", len(frames_bytes))
    open(path, "wb").write(hdr + frames_bytes)
wav("zero_samples.wav", 1, 16, 16000, b"")
vals = [0.1, -0.2, float("nan"), 0.3] * 4000
wav("nan_float32.wav", 3, 32, 16000, struct.pack("<%df" % len(vals), *vals))
PY
ls -l
