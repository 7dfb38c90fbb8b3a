"""The original AuralGuard service, reimplemented faithfully for side-by-side benchmarks.

This is the baseline `scripts/compare-seed.sh` measures `auralguard serve` against: the stack the
product replaced (Flask behind gunicorn, librosa for decoding, resampling and features,
Keras/TensorFlow for the seed CNN) doing what the Rust server does for one upload:

* `POST /predict` with a multipart field `audio`: the upload is written to a temporary file
  (librosa reads paths), loaded as 16 kHz mono (`librosa.load`, soxr resampler), cut into 15 s
  windows (the last one zero-padded; a final window under 1 s is dropped unless it is the only
  one), each turned into `power_to_db(melspectrogram(n_mels=128, fmax=8000), ref=max)`
  (128 x 469), all windows of the file judged in one `model.predict` call, and the window
  probabilities averaged; the answer has the same core fields as the Rust server's verdict.
* `GET /health`.

What it leaves out, on purpose: the prediction log (benchmarks compare it with
`auralguard serve --no-store`, and with the Rust server's log on as a second row).

Configuration: AURALGUARD_SEED_MODEL (a Keras .h5 or .keras file, default the parity fixture
testdata/parity/seed_random.h5), AURALGUARD_SEED_THRESHOLD (default 0.5).
"""

import os
import tempfile
import time
import uuid

import keras
import librosa
import numpy as np
from flask import Flask, jsonify, request

SAMPLE_RATE = 16_000
WINDOW = 15 * SAMPLE_RATE
MIN_FINAL = SAMPLE_RATE

MODEL_PATH = os.environ.get("AURALGUARD_SEED_MODEL", "testdata/parity/seed_random.h5")
THRESHOLD = float(os.environ.get("AURALGUARD_SEED_THRESHOLD", "0.5"))

app = Flask(__name__)
model = keras.models.load_model(MODEL_PATH, compile=False)


def windows(y):
    """The 15 s windows of `y` as (start seconds, samples), the rule the parity fixtures use."""
    out = []
    k = 0
    while k * WINDOW < len(y) or k == 0:
        seg = y[k * WINDOW:(k + 1) * WINDOW]
        if k > 0 and len(seg) < MIN_FINAL:
            break
        if len(seg) < WINDOW:
            seg = np.pad(seg, (0, WINDOW - len(seg)))
        out.append((k * 15.0, seg))
        k += 1
    return out


def log_mel(seg):
    s = librosa.feature.melspectrogram(y=seg, sr=SAMPLE_RATE, n_mels=128, fmax=8000)
    return librosa.power_to_db(s, ref=np.max).astype(np.float32)


def error(status, code, message):
    return jsonify({"error": {"code": code, "message": message}}), status


@app.get("/health")
def health():
    return jsonify({"status": "healthy", "model": os.path.basename(MODEL_PATH)})


@app.post("/predict")
def predict():
    upload = request.files.get("audio")
    if upload is None or not upload.filename:
        return error(400, "missing_audio", "send the audio file in the multipart field 'audio'")
    started = time.perf_counter()
    suffix = os.path.splitext(upload.filename)[1] or ".wav"
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        upload.save(tmp.name)
        try:
            y, _ = librosa.load(tmp.name, sr=SAMPLE_RATE, mono=True)
        except Exception as e:  # librosa raises many types for bad input
            return error(422, "corrupt_audio", f"cannot decode the upload: {e}")
    if len(y) == 0:
        return error(422, "empty_audio", "the file holds no audio")
    cut = windows(y)
    batch = np.stack([log_mel(seg) for _, seg in cut])[..., np.newaxis]
    probs = model.predict(batch, verbose=0).reshape(-1).astype(float)
    fake = float(np.mean(probs))
    label = "fake" if fake >= THRESHOLD else "real"
    duration = len(y) / SAMPLE_RATE
    return jsonify({
        "prediction": label,
        "probability": fake if label == "fake" else 1.0 - fake,
        "confidence": abs(2.0 * fake - 1.0),
        "fake_probability": fake,
        "filename": upload.filename,
        "duration_seconds": duration,
        "windows": [
            {"start": start, "end": min(start + 15.0, duration), "fake_probability": float(p)}
            for (start, _), p in zip(cut, probs)
        ],
        "model": {"name": os.path.basename(MODEL_PATH), "version": "seed"},
        "processing_time_seconds": time.perf_counter() - started,
        "request_id": str(uuid.uuid4()),
    })
