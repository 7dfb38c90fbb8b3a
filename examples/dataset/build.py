#!/usr/bin/env python3
"""Build AuralGuard's labelled demo corpus of real and synthetic speech from Debian packages.

Real speech: the wideband G.722 voice prompts that people recorded for Asterisk
(packages asterisk-core-sounds-{en,fr,it}-g722; one speaker per language), with the
transcripts shipped in asterisk-core-sounds-{en,fr,it} (core-sounds-<lang>.txt.gz).

Synthetic speech, saying the same transcripts:
  espeak-ng    formant synthesis; several voices, voice variants, rates and pitches (en, fr, it)
  flite        its built-in 16 kHz voices kal16, awb, rms, slt (en only)
  festival     the kal_diphone voice from festvox-kallpc16k (en only)
  griffin-lim  each real clip re-synthesised from its mel spectrogram by Griffin-Lim (all languages)

Every clip gets one recipe so that codec, bandwidth and level are not the tell:
  1. "storage" G.722 pass: the real prompts were shipped as G.722, so every fake is G.722
     encoded and decoded once as well (the real ones are simply decoded);
  2. conditioning: DC removal, silence trimmed to 50 ms around the speech, 150 ms of padding
     on both ends, active-speech RMS normalised to -23 dBFS (peak at most -1 dBFS) and a
     -70 dBFS white noise floor (hides digital silence, which only a synthesiser makes);
  3. the common G.722 round trip (ffmpeg -c:a g722, then decoded), then the same level
     normalisation again; written as 16 kHz mono PCM16 WAV.

Splits are by utterance: train/val/test (70/15/15) comes from a SHA-256 of the language and
the normalised transcript, so a recording, its Griffin-Lim copy and every TTS rendering of
the same text (and any other prompt with the same text) share one split; the seed does not
move splits. Prompts shorter than a second are joined, in name order within their folder,
into utterances of at least two seconds.

Output (default data/demo/):
  dataset.csv     filename,label,split,source,utterance (filename relative to the CSV)
  utterances.csv  utterance,lang,split,seconds,members,text
  clips/<source>/<lang>-<name>[_<voice>]-<hash>.wav

Clips are cached: <hash> is a digest of the recipe version, the seed and the clip's render
settings, files are written under a temporary name and renamed into place, and a clip that is
already there is not rendered again. Files under clips/ that the current plan does not name
(an older recipe, a bigger --limit) are removed, so the folder always matches dataset.csv.

Needs ffmpeg, espeak-ng, flite, festival + festvox-kallpc16k and the asterisk sound packages
(scripts/install-dataset-deps.sh installs them and a venv with numpy).
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import csv
import functools
import gzip
import hashlib
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import unicodedata
import wave
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# Bump when anything that changes the audio changes: every clip's file name (its cache key)
# includes it, so the next build renders everything again and prunes the old files.
RECIPE_VERSION = "auralguard-demo-1"

SR = 16000
LANGS = ("en", "fr", "it")  # es and ru are kept out: reserved for an independent evaluation
SPLITS = (("train", 0.70), ("val", 0.15), ("test", 0.15))

SHORT_PROMPT_S = 1.0   # prompts shorter than this are joined with their neighbours ...
JOIN_TARGET_S = 2.0    # ... until the joined utterance is at least this long
JOIN_MAX = 6           # ... or has this many members
MAX_PROMPT_S = 25.0    # the few longer prompts (up to 73 s) are left out
SKIP_DIRS = ("silence",)
# Tones and sound effects whose transcript describes the sound rather than words said.
NON_SPEECH = {"beep", "beeperr", "confbridge-join", "confbridge-leave", "ascending-2tone",
              "descending-2tone", "tt-monkeys"}

TARGET_DBFS = -23.0    # active-speech RMS after normalisation
PEAK_DBFS = -1.0       # peak ceiling
NOISE_DBFS = -70.0     # white noise floor added to every clip
TRIM_KEEP_S = 0.05     # own signal kept around the detected speech
PAD_S = 0.15           # silence added at both ends
CODEC_GAP_S = 0.10     # zeros between clips that share one codec stream
G722_DELAY = 22        # samples ffmpeg's G.722 encode+decode delays the signal (measured)
CHUNK = 6              # utterances per worker task (codec calls are batched per task)

# What the speaker said for keypad symbols in the transcripts, per language.
SYMBOL_WORDS = {
    "en": {"*": "star", "#": "pound"},
    "fr": {"*": "étoile", "#": "dièse"},
    "it": {"*": "asterisco", "#": "cancelletto"},
}

ESPEAK_VOICES = {
    "en": ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
           "en-gb-x-gbcwmd", "en-029"],
    "fr": ["fr", "fr-be", "fr-ch"],
    "it": ["it"],
}
# espeak-ng voice variants (timbre presets); gimmicks such as whisper or robots left out.
ESPEAK_VARIANTS = [None, "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4",
                   "f5", "klatt", "klatt2", "klatt3", "klatt4", "Andy", "Annie", "adam",
                   "anika", "aunty", "belinda", "benjamin", "caleb", "david", "edward",
                   "grandma", "grandpa", "iven", "john", "linda", "max", "michel", "paul",
                   "quincy", "rob", "robert", "steph", "travis", "victor", "zac"]
FLITE_VOICES = ["kal16", "awb", "rms", "slt"]  # "kal" is 8 kHz (a bandwidth tell): left out

SOURCES = ("asterisk-en", "asterisk-fr", "asterisk-it", "espeak-ng", "flite", "festival",
           "griffin-lim")


# --------------------------------------------------------------------------------------
# Inputs: prompts, transcripts, utterances
# --------------------------------------------------------------------------------------

@dataclass
class Prompt:
    lang: str
    name: str        # path under the voice folder without extension, e.g. "digits/1"
    path: str
    seconds: float   # G.722 at 64 kbit/s: 8000 bytes a second
    text: str


@dataclass
class Utterance:
    lang: str
    members: list[Prompt]
    uid: str = ""
    text: str = ""
    split: str = ""
    jobs: list[dict] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(p.seconds for p in self.members)


def dpkg_files(package: str) -> list[str]:
    try:
        out = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True,
                             check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        sys.exit(f"error: Debian package {package} is not installed; "
                 "run scripts/install-dataset-deps.sh")
    return out.splitlines()


def clean_text(raw: str, lang: str) -> str:
    """A transcript line as something a TTS can say; '' for non-speech (tones, silence)."""
    text = raw.strip()
    if re.fullmatch(r"\[[^\]]*\]", text):  # "[ascending tones]", "[sound of monkeys ...]"
        return ""
    text = re.sub(r"\([^)]*\)|<[^>]*>", " ", text)  # "(simple tone sound plays)": notes
    # "[@]" marks the symbol read out, "[quello]" a word the speaker added: keep words only.
    text = re.sub(r"\[([^\]]*)\]",
                  lambda m: m.group(1) if re.search(r"\w", m.group(1)) else " ", text)
    for sym, word in SYMBOL_WORDS[lang].items():
        text = text.replace(sym, f" {word} ")
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    text = re.sub(r"^\W+", "", text)  # "... using your keypad": festival crashes on a leading "..."
    return text if re.search(r"\w", text) else ""


def text_key(text: str) -> str:
    """Normalised transcript: what decides 'the same text'."""
    t = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.findall(r"\w+", t))


def natural_key(name: str):
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name.lower())]


def load_prompts(lang: str) -> tuple[list[Prompt], dict[str, int]]:
    files = [f for f in dpkg_files(f"asterisk-core-sounds-{lang}-g722") if f.endswith(".g722")]
    if not files:
        sys.exit(f"error: asterisk-core-sounds-{lang}-g722 has no .g722 files")
    root = os.path.commonpath([os.path.dirname(f) for f in files])
    # Sub-folders (digits/, letters/, ...) share the root; commonpath of the lot is the voice dir.
    while not any(os.path.dirname(f) == root for f in files):
        root = os.path.dirname(root)
    transcript_path = next((f for f in dpkg_files(f"asterisk-core-sounds-{lang}")
                            if re.search(r"core-sounds-[a-z]+\.txt(\.gz)?$", f)), None)
    if transcript_path is None:
        sys.exit(f"error: no transcript in asterisk-core-sounds-{lang}")
    opener = gzip.open if transcript_path.endswith(".gz") else open
    transcripts: dict[str, str] = {}
    with opener(transcript_path, "rt", encoding="utf-8-sig") as fh:
        for line in fh:
            line = line.strip()
            if not line or line.startswith(";") or ":" not in line:
                continue
            name, _, text = line.partition(":")
            transcripts[name.strip().lower()] = text

    stats = collections.Counter(files=len(files), transcripts=len(transcripts))
    prompts = []
    for path in sorted(files):
        name = os.path.relpath(path, root)[: -len(".g722")]
        if name.split("/")[0] in SKIP_DIRS or name in NON_SPEECH:
            stats["skipped: silence or tones"] += 1
            continue
        raw = transcripts.get(name.lower())
        if raw is None:
            stats["skipped: no transcript"] += 1
            continue
        text = clean_text(raw, lang)
        if not text:
            stats["skipped: not speech"] += 1
            continue
        seconds = os.path.getsize(path) / 8000.0
        if seconds > MAX_PROMPT_S:
            stats[f"skipped: over {MAX_PROMPT_S:g} s"] += 1
            continue
        prompts.append(Prompt(lang, name, path, seconds, text))
    stats["used"] = len(prompts)
    return prompts, dict(stats)


def join_text(texts: list[str]) -> str:
    out = ""
    for t in texts:
        if out:
            out += " " if out[-1] in ".,;:!?…" else ", "
        out += t
    return out


def make_utterances(prompts: list[Prompt]) -> list[Utterance]:
    """One utterance per prompt, except that short prompts are joined in name order."""
    groups: dict[str, list[Prompt]] = collections.defaultdict(list)
    for p in prompts:
        groups[os.path.dirname(p.name)].append(p)
    utts = []
    for folder in sorted(groups):
        pending: list[Prompt] = []
        for p in sorted(groups[folder], key=lambda p: natural_key(p.name)):
            if p.seconds >= SHORT_PROMPT_S:
                utts.append(Utterance(p.lang, [p]))
                continue
            pending.append(p)
            if sum(q.seconds for q in pending) >= JOIN_TARGET_S or len(pending) >= JOIN_MAX:
                utts.append(Utterance(p.lang, pending))
                pending = []
        if pending:
            utts.append(Utterance(pending[0].lang, pending))
    for u in utts:
        u.uid = f"{u.lang}:" + "+".join(p.name for p in u.members)
        u.text = join_text([p.text for p in u.members])
        u.split = split_of(u.lang, u.text)
    return sorted(utts, key=lambda u: natural_key(u.uid))


def split_of(lang: str, text: str) -> str:
    digest = hashlib.sha256(f"{lang}:{text_key(text)}".encode()).digest()
    x = int.from_bytes(digest[:8], "big") / 2.0**64
    edge = 0.0
    for name, share in SPLITS:
        edge += share
        if x < edge:
            return name
    return SPLITS[-1][0]


def limit_utterances(utts: list[Utterance], n: int) -> list[Utterance]:
    """The first n utterances by name, drawn from each split in proportion (at least one of
    each when n >= 3) so that even a tiny corpus has train, val and test."""
    by_split = {name: [u for u in utts if u.split == name] for name, _ in SPLITS}
    if n < len(SPLITS):
        return utts[:n]
    quota = {name: max(1, round(n * share)) for name, share in SPLITS[1:]}
    quota[SPLITS[0][0]] = n - sum(quota.values())
    picked = [u for name, us in by_split.items() for u in us[: quota[name]]]
    return sorted(picked, key=lambda u: natural_key(u.uid))


# --------------------------------------------------------------------------------------
# Plan: which clips each utterance gets
# --------------------------------------------------------------------------------------

def slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_")


def plan_jobs(u: Utterance, seed: int, griffin_lim: bool) -> list[dict]:
    rng = random.Random(hashlib.sha256(f"{seed}:{u.uid}".encode()).digest())
    base = slug(u.members[0].name) + (f"+{len(u.members) - 1}" if len(u.members) > 1 else "")
    specs: list[tuple[str, str, dict]] = [(f"asterisk-{u.lang}", "", {"kind": "real"})]
    if griffin_lim:
        specs.append(("griffin-lim", "", {"kind": "griffin-lim", "n_fft": 1024, "hop": 256,
                                          "n_mels": 80, "iters": 32}))
    # Two TTS renderings per utterance: English mixes espeak-ng with flite or festival,
    # French and Italian get two different espeak-ng voices.
    engines = ["espeak-ng", rng.choices(["flite", "festival"], weights=[3, 2])[0]] \
        if u.lang == "en" else ["espeak-ng", "espeak-ng"]
    used = set()
    for engine in engines:
        if engine == "espeak-ng":
            while True:
                voice = rng.choice(ESPEAK_VOICES[u.lang])
                variant = rng.choice(ESPEAK_VARIANTS)
                if (voice, variant) not in used:
                    break
            used.add((voice, variant))
            full = voice + (f"+{variant}" if variant else "")
            spec = {"kind": "espeak-ng", "voice": full, "rate": rng.randint(130, 185),
                    "pitch": rng.randint(30, 70)}
            tag = f"{full}_s{spec['rate']}_p{spec['pitch']}"
        elif engine == "flite":
            spec = {"kind": "flite", "voice": rng.choice(FLITE_VOICES),
                    "stretch": round(rng.uniform(0.9, 1.2), 2)}
            tag = f"{spec['voice']}_d{spec['stretch']}"
        else:
            spec = {"kind": "festival", "voice": "kal_diphone",
                    "stretch": round(rng.uniform(0.9, 1.2), 2)}
            tag = f"kal_d{spec['stretch']}"
        specs.append((engine, tag, spec))

    jobs = []
    for source, tag, spec in specs:
        key = json.dumps({"recipe": RECIPE_VERSION, "seed": seed, "uid": u.uid,
                          "text": u.text, "spec": spec}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()
        name = f"{u.lang}-{base}" + (f"_{slug(tag)}" if tag else "") + f"-{digest[:10]}.wav"
        jobs.append({"source": source, "label": "real" if spec["kind"] == "real" else "fake",
                     "relpath": f"clips/{source}/{name}", "spec": spec,
                     "noise_seed": int(digest[10:26], 16)})
    return jobs


# --------------------------------------------------------------------------------------
# Signal processing (numpy only)
# --------------------------------------------------------------------------------------

def to_pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 32767 / 32768) * 32768).round().astype("<i2").tobytes()


def from_pcm16(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype="<i2").astype(np.float64) / 32768.0


def read_wav(path: str) -> np.ndarray:
    with wave.open(path, "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: not 16-bit PCM")
        ch, rate = w.getnchannels(), w.getframerate()
        x = from_pcm16(w.readframes(w.getnframes()))
    if ch > 1:
        x = x.reshape(-1, ch).mean(axis=1)
    return resample(x, rate, SR)


def write_wav_atomic(path: Path, x: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(to_pcm16(x))
    os.replace(tmp, path)


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling by FFT (the whole clip at once: clips are short)."""
    if rate == target or len(x) == 0:
        return x
    n_out = int(round(len(x) * target / rate))
    spec = np.fft.rfft(x)
    keep = min(len(spec), n_out // 2 + 1)
    out = np.zeros(n_out // 2 + 1, dtype=complex)
    out[:keep] = spec[:keep]
    return np.fft.irfft(out, n_out) * (n_out / len(x))


def frame_db(x: np.ndarray, hop: int = 160) -> np.ndarray:
    n = len(x) // hop
    if n == 0:
        return np.array([-120.0])
    power = (x[: n * hop].reshape(n, hop) ** 2).mean(axis=1)
    return 10 * np.log10(power + 1e-12)


def active_rms_db(x: np.ndarray) -> float:
    """RMS over the frames within 30 dB of the loudest one: the speech, not the pauses."""
    db = frame_db(x)
    act = db[db > db.max() - 30]
    return float(10 * np.log10(np.mean(10 ** (act / 10))))


def normalise(x: np.ndarray) -> np.ndarray:
    gain = 10 ** ((TARGET_DBFS - active_rms_db(x)) / 20)
    peak = np.abs(x).max() * gain
    if peak > 10 ** (PEAK_DBFS / 20):
        gain *= 10 ** (PEAK_DBFS / 20) / peak
    return x * gain


class Silent(Exception):
    pass


def condition(x: np.ndarray, noise_seed: int) -> np.ndarray:
    """Remove DC, trim silence, pad, normalise the level, add the noise floor."""
    x = x - x.mean()
    db = frame_db(x)
    active = np.flatnonzero(db > max(db.max() - 40, -65))
    if len(active) == 0:
        raise Silent("no speech found (all frames below -65 dBFS)")
    keep = int(TRIM_KEEP_S * SR)
    x = x[max(0, active[0] * 160 - keep): min(len(x), (active[-1] + 1) * 160 + keep)]
    pad = np.zeros(int(PAD_S * SR))
    x = normalise(np.concatenate([pad, x, pad]))
    rng = np.random.default_rng(noise_seed)
    return x + rng.standard_normal(len(x)) * 10 ** (NOISE_DBFS / 20)


def hz_to_mel(f):
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=float)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-9) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f < 1000.0, lin, log)


def mel_to_hz(m):
    m = np.asarray(m, dtype=float)
    return np.where(m < 15.0, m * (200.0 / 3), 1000.0 * np.exp((m - 15.0) * np.log(6.4) / 27.0))


def mel_filterbank(n_fft: int, n_mels: int) -> np.ndarray:
    bins = np.linspace(0, SR / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0), hz_to_mel(SR / 2), n_mels + 2))
    fb = np.zeros((n_mels, len(bins)))
    for i in range(n_mels):
        lo, mid, hi = edges[i], edges[i + 1], edges[i + 2]
        rise = (bins - lo) / (mid - lo)
        fall = (hi - bins) / (hi - mid)
        fb[i] = np.maximum(0, np.minimum(rise, fall)) * (2.0 / (hi - lo))
    return fb


@functools.lru_cache(maxsize=4)
def mel_basis(n_fft: int, n_mels: int) -> tuple[np.ndarray, np.ndarray]:
    fb = mel_filterbank(n_fft, n_mels)
    return fb, np.linalg.pinv(fb)


def stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred (reflect-padded) STFT with a periodic Hann window, frames along axis 0."""
    win = np.hanning(n_fft + 1)[:-1].astype(x.dtype)
    x = np.pad(x, n_fft // 2, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]
    return np.fft.rfft(frames * win, axis=1)


def istft(spec: np.ndarray, n_fft: int, hop: int, length: int,
          norm: np.ndarray | None = None) -> np.ndarray:
    """Weighted overlap-add inverse of stft(); hop must divide n_fft. `norm` (the summed
    squared window, from ola_norm) can be passed in when called repeatedly."""
    win = np.hanning(n_fft + 1)[:-1].astype(spec.real.dtype)
    frames = np.fft.irfft(spec, n_fft, axis=1) * win
    n, k = len(frames), n_fft // hop
    out = np.zeros(hop * (n + k - 1), dtype=frames.dtype)
    for i in range(k):  # the n_fft/hop phases of the overlap, each one vectorised
        out[i * hop: i * hop + n * hop] += frames[:, i * hop:(i + 1) * hop].reshape(-1)
    if norm is None:
        norm = ola_norm(n, n_fft, hop)
    return (out / norm)[n_fft // 2: n_fft // 2 + length]


def ola_norm(n: int, n_fft: int, hop: int) -> np.ndarray:
    win2 = np.hanning(n_fft + 1)[:-1] ** 2
    norm = np.zeros(hop * (n + n_fft // hop - 1))
    for i in range(n):
        norm[i * hop: i * hop + n_fft] += win2
    return np.maximum(norm, 1e-8).astype(np.float32)


def griffin_lim_resynth(x: np.ndarray, spec: dict, seed: int) -> np.ndarray:
    """Real clip -> mel spectrogram -> linear magnitude (pseudo-inverse of the mel
    filterbank) -> fast Griffin-Lim (momentum 0.99) from random phases. float32 throughout."""
    n_fft, hop, iters = spec["n_fft"], spec["hop"], spec["iters"]
    fb, fb_inv = mel_basis(n_fft, spec["n_mels"])
    x = x.astype(np.float32)
    mel = np.abs(stft(x, n_fft, hop)) @ fb.T.astype(np.float32)
    mag = np.maximum(mel @ fb_inv.T.astype(np.float32), 0.0)
    norm = ola_norm(len(mag), n_fft, hop)
    rng = np.random.default_rng(seed)
    angles = np.exp(2j * np.pi * rng.random(mag.shape, dtype=np.float32)).astype(np.complex64)
    prev = np.zeros_like(angles)
    momentum = np.float32(0.99 / 1.99)
    for _ in range(iters):
        rebuilt = stft(istft(mag * angles, n_fft, hop, len(x), norm), n_fft, hop)
        accel = rebuilt - momentum * prev
        prev = rebuilt
        angles = accel / np.maximum(np.abs(accel), np.float32(1e-12))
    return istft(mag * angles, n_fft, hop, len(x), norm).astype(np.float64)


# --------------------------------------------------------------------------------------
# External tools
# --------------------------------------------------------------------------------------

def run(cmd: list[str], data: bytes | None = None) -> bytes:
    r = subprocess.run(cmd, input=data, capture_output=True)
    if r.returncode != 0:
        msg = r.stderr.decode(errors="replace").strip()[-500:]
        raise RuntimeError(f"{cmd[0]} failed ({r.returncode}): {msg}")
    return r.stdout


FFMPEG = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error"]


def g722_encode(x: np.ndarray) -> bytes:
    return run(FFMPEG + ["-f", "s16le", "-ar", str(SR), "-ac", "1", "-i", "pipe:0",
                         "-c:a", "g722", "-f", "g722", "pipe:1"], to_pcm16(x))


def g722_decode(b: bytes) -> np.ndarray:
    return from_pcm16(run(FFMPEG + ["-f", "g722", "-i", "pipe:0", "-f", "s16le", "-ac", "1",
                                    "-ar", str(SR), "pipe:1"], b))


def g722_round_trip(signals: list[np.ndarray]) -> list[np.ndarray]:
    """Encode and decode several clips as one stream, zeros between them (two ffmpeg calls
    instead of two per clip); each clip is cut back out, the codec delay taken off."""
    if not signals:
        return []
    gap = np.zeros(int(CODEC_GAP_S * SR))
    parts, starts, pos = [], [], 0
    for s in signals:
        parts += [gap, s]
        starts.append(pos + len(gap))
        pos += len(gap) + len(s)
    parts.append(gap)
    y = g722_decode(g722_encode(np.concatenate(parts)))
    return [y[a + G722_DELAY: a + G722_DELAY + len(s)] for a, s in zip(starts, signals)]


_G722_GAP: bytes | None = None


def decode_prompts(paths: list[str]) -> list[np.ndarray]:
    """Decode shipped .g722 files in one ffmpeg call, encoded zeros between them so that
    each decodes as if on its own."""
    global _G722_GAP
    if _G722_GAP is None:
        _G722_GAP = g722_encode(np.zeros(int(CODEC_GAP_S * SR)))
    blobs = [Path(p).read_bytes() for p in paths]
    stream, starts, pos = [], [], 0
    for b in blobs:
        stream += [_G722_GAP, b]
        starts.append(pos + len(_G722_GAP))
        pos += len(_G722_GAP) + len(b)
    y = g722_decode(b"".join(stream))
    return [y[2 * a: 2 * (a + len(b))] for a, b in zip(starts, blobs)]


def synthesise(spec: dict, text: str, tmp: str) -> np.ndarray:
    txt, out = os.path.join(tmp, "in.txt"), os.path.join(tmp, "out.wav")
    Path(txt).write_text(text + "\n", encoding="utf-8")
    kind = spec["kind"]
    if kind == "espeak-ng":
        run(["espeak-ng", "-b", "1", "-v", spec["voice"], "-s", str(spec["rate"]),
             "-p", str(spec["pitch"]), "-f", txt, "-w", out])
    elif kind == "flite":
        run(["flite", "-voice", spec["voice"], "--setf", f"duration_stretch={spec['stretch']}",
             "-f", txt, "-o", out])
    elif kind == "festival":
        run(["text2wave", "-o", out, "-eval", f"(voice_{spec['voice']})",
             "-eval", f"(Parameter.set 'Duration_Stretch {spec['stretch']})", txt])
    else:
        raise ValueError(kind)
    return read_wav(out)


# --------------------------------------------------------------------------------------
# Worker: render one chunk of utterances
# --------------------------------------------------------------------------------------

def render_chunk(out_dir: str, items: list[dict]) -> dict:
    """items: [{"uid", "text", "members": [paths], "jobs": [job, ...]}]; renders the jobs
    whose files are missing. Returns counts and errors."""
    result = {"rendered": 0, "cached": 0, "errors": []}
    todo = []
    for it in items:
        missing = [j for j in it["jobs"] if not (Path(out_dir) / j["relpath"]).exists()]
        result["cached"] += len(it["jobs"]) - len(missing)
        if missing:
            todo.append((it, missing))
    if not todo:
        return result

    # The real recordings (needed for the real clip and for Griffin-Lim).
    need_real = [(it, m) for it, m in todo
                 if any(j["spec"]["kind"] in ("real", "griffin-lim") for j in m)]
    decoded = decode_prompts([p for it, _ in need_real for p in it["members"]])
    real: dict[str, np.ndarray] = {}
    for it, _ in need_real:
        real[it["uid"]] = np.concatenate(decoded[: len(it["members"])])
        decoded = decoded[len(it["members"]):]

    # Stage 1: raw signals; fakes then get the "storage" G.722 pass the real prompts had.
    raw: list[tuple[dict, np.ndarray]] = []
    fakes: list[tuple[dict, np.ndarray]] = []
    with tempfile.TemporaryDirectory(prefix="auralguard-ds-") as tmp:
        for it, missing in todo:
            for j in missing:
                kind = j["spec"]["kind"]
                try:
                    if kind == "real":
                        raw.append((j, real[it["uid"]]))
                        continue
                    if kind == "griffin-lim":
                        x = griffin_lim_resynth(real[it["uid"]], j["spec"], j["noise_seed"])
                    else:
                        x = synthesise(j["spec"], it["text"], tmp)
                    if frame_db(x).max() < -60:
                        raise Silent("synthesiser produced silence")
                    fakes.append((j, normalise(x - x.mean())))
                except Exception as e:  # noqa: BLE001 - reported per clip, build goes on
                    result["errors"].append(f"{j['relpath']}: {e}")
    stored = g722_round_trip([x for _, x in fakes])
    raw += [(j, x) for (j, _), x in zip(fakes, stored)]

    # Stage 2: the same conditioning and G.722 round trip for every clip.
    ready = []
    for j, x in raw:
        try:
            ready.append((j, condition(x, j["noise_seed"])))
        except Silent as e:
            result["errors"].append(f"{j['relpath']}: {e}")
    for (j, _), y in zip(ready, g722_round_trip([x for _, x in ready])):
        write_wav_atomic(Path(out_dir) / j["relpath"], normalise(y))
        result["rendered"] += 1
    return result


# --------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------

def wav_seconds(path: Path) -> float:
    return max(0, path.stat().st_size - 44) / (2 * SR)


def write_csv_atomic(path: Path, header: list[str], rows: list[list]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    os.replace(tmp, path)


def print_summary(rows: list[list], out: Path) -> None:
    by = collections.defaultdict(lambda: collections.Counter())
    secs = collections.Counter()
    for filename, label, split, source, _ in rows:
        by[(source, label)][split] += 1
        secs[(source, label)] += wav_seconds(out / filename)
    splits = [s for s, _ in SPLITS]
    line = f"{'source':<13}{'label':<6}" + "".join(f"{s:>7}" for s in splits) + \
        f"{'total':>7}{'hours':>7}"
    print(line)
    print("-" * len(line))
    order = sorted(by, key=lambda k: (SOURCES.index(k[0]) if k[0] in SOURCES else 99, k))
    for label in ("real", "fake"):
        for key in order:
            if key[1] != label:
                continue
            c = by[key]
            print(f"{key[0]:<13}{label:<6}" + "".join(f"{c[s]:>7}" for s in splits) +
                  f"{sum(c.values()):>7}{secs[key] / 3600:>7.2f}")
    print("-" * len(line))
    for label in ("real", "fake", None):
        keys = [k for k in by if label is None or k[1] == label]
        tot = collections.Counter()
        for k in keys:
            tot.update(by[k])
        hours = sum(secs[k] for k in keys) / 3600
        print(f"{'all':<13}{label or 'both':<6}" + "".join(f"{tot[s]:>7}" for s in splits) +
              f"{sum(tot.values()):>7}{hours:>7.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Build the AuralGuard demo corpus (real Asterisk prompts vs. espeak-ng, "
                    "flite, festival and Griffin-Lim fakes), all through one G.722 round trip.",
        epilog="Example: .venv/dataset/bin/python examples/dataset/build.py --out data/demo")
    ap.add_argument("--out", default="data/demo", help="output folder (default: %(default)s)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                    help="worker processes (default: CPU count, %(default)s)")
    ap.add_argument("--limit", type=int, default=None, metavar="N",
                    help="at most N utterances per language, taken from every split "
                         "(quick tests)")
    ap.add_argument("--seed", type=int, default=0,
                    help="picks voices, rates, noise and Griffin-Lim phases; splits do not "
                         "depend on it (default: %(default)s)")
    ap.add_argument("--no-griffin-lim", dest="griffin_lim", action="store_false",
                    help="leave out the Griffin-Lim re-synthesis")
    ap.add_argument("--splits", default=",".join(name for name, _ in SPLITS),
                    help="comma-separated splits to render, e.g. 'test' to evaluate a model "
                         "without building the training data (default: %(default)s)")
    args = ap.parse_args(argv)
    wanted = {s.strip() for s in args.splits.split(",") if s.strip()}
    known = {name for name, _ in SPLITS}
    if not wanted or not wanted <= known:
        ap.error(f"--splits takes a comma-separated subset of {sorted(known)}")
    sys.stdout.reconfigure(line_buffering=True)  # keep stdout and stderr lines in order
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    if args.limit is not None and args.limit < 1:
        ap.error("--limit must be at least 1")

    t0 = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    utts: list[Utterance] = []
    for lang in LANGS:
        prompts, stats = load_prompts(lang)
        lang_utts = make_utterances(prompts)
        joined = sum(1 for u in lang_utts if len(u.members) > 1)
        print(f"{lang}: {stats['files']} recordings, {stats['transcripts']} transcript lines, "
              f"{stats['used']} prompts used -> {len(lang_utts)} utterances "
              f"({joined} joined from short prompts); "
              + ", ".join(f"{v} {k}" for k, v in stats.items() if k.startswith("skipped")))
        if args.limit is not None:
            lang_utts = limit_utterances(lang_utts, args.limit)
        utts += [u for u in lang_utts if u.split in wanted]
    for u in utts:
        u.jobs = plan_jobs(u, args.seed, args.griffin_lim)

    items = [{"uid": u.uid, "text": u.text, "members": [p.path for p in u.members],
              "jobs": u.jobs} for u in utts]
    chunks = [items[i: i + CHUNK] for i in range(0, len(items), CHUNK)]
    total_clips = sum(len(it["jobs"]) for it in items)
    print(f"{len(utts)} utterances, {total_clips} clips, {len(chunks)} tasks, "
          f"{args.jobs} workers -> {out}")

    rendered = cached = done = 0
    errors: list[str] = []
    tty = sys.stderr.isatty()
    last_report = 0.0

    last_msg = ""

    def progress(final: bool = False) -> None:
        nonlocal last_report, last_msg
        now = time.monotonic()
        if not final and not tty and now - last_report < 15:
            return
        last_report = now
        msg = (f"[{done:>4}/{len(utts)} utterances] {rendered} clips rendered, {cached} cached, "
               f"{len(errors)} failed, {now - t0:.0f} s")
        if final and not tty and msg == last_msg:
            return
        last_msg = msg
        print(("\r" + msg) if tty else msg, end="\n" if (final or not tty) else "",
              file=sys.stderr, flush=True)

    if args.jobs == 1:
        results = ((len(c), render_chunk(str(out), c)) for c in chunks)
        pool = None
    else:
        pool = cf.ProcessPoolExecutor(max_workers=args.jobs)
        futures = {pool.submit(render_chunk, str(out), c): len(c) for c in chunks}
        results = ((futures[f], f.result()) for f in cf.as_completed(futures))
    try:
        for n, r in results:
            done += n
            rendered += r["rendered"]
            cached += r["cached"]
            errors += r["errors"]
            progress()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    progress(final=True)

    # Prune what the plan does not name (older recipes, a bigger --limit, stray temp files).
    planned = {j["relpath"] for it in items for j in it["jobs"]}
    pruned = 0
    clips_dir = out / "clips"
    for path in sorted(clips_dir.rglob("*")) if clips_dir.exists() else []:
        if path.is_file() and path.relative_to(out).as_posix() not in planned:
            path.unlink()
            pruned += 1
    for d in sorted(clips_dir.glob("*"), reverse=True) if clips_dir.exists() else []:
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    if pruned:
        print(f"removed {pruned} files not in this plan")

    by_uid = {u.uid: u for u in utts}
    rows = []
    for it in items:
        u = by_uid[it["uid"]]
        for j in it["jobs"]:
            if (out / j["relpath"]).exists():
                rows.append([j["relpath"], j["label"], u.split, j["source"], u.uid])
    rows.sort()
    write_csv_atomic(out / "dataset.csv", ["filename", "label", "split", "source", "utterance"],
                     rows)
    write_csv_atomic(out / "utterances.csv",
                     ["utterance", "lang", "split", "seconds", "members", "text"],
                     sorted([u.uid, u.lang, u.split, f"{u.seconds:.2f}",
                             " ".join(p.name for p in u.members), u.text]
                            for u in utts))
    print(f"wrote {out / 'dataset.csv'} ({len(rows)} clips) and {out / 'utterances.csv'} "
          f"({len(utts)} utterances) in {time.monotonic() - t0:.1f} s")
    print_summary(rows, out)
    return report_failures(errors)


def report_failures(errors: list[str]) -> int:
    """Lists failed clips on stderr (the first 20) and gives the build's exit status: 1 when
    any failed (they are left out of dataset.csv and retried by the next run), else 0."""
    if not errors:
        return 0
    print(f"\n{len(errors)} clips failed (left out of dataset.csv; a rerun retries them):",
          file=sys.stderr)
    for e in errors[:20]:
        print("  " + e, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
