// AuralGuard web page: upload or record audio, show the verdict, the log-mel the model saw, the
// per-window fake probability, and the recent predictions. Plain browser JavaScript, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const KEY_STORAGE = "auralguard.apiKey";

/** Headers for API calls: the API key when one was entered. */
function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

/** The error message of a failed API response, from the `{"error": {code, message}}` body. */
async function apiError(resp) {
  try {
    const body = await resp.json();
    if (body && body.error) return `${resp.status} ${body.error.code}: ${body.error.message}`;
  } catch (_) { /* not JSON */ }
  return `${resp.status} ${resp.statusText}`;
}

async function loadHealth() {
  try {
    const h = await (await fetch("/health")).json();
    $("model").textContent = `${h.model.name} v${h.model.version} on ${h.device}`;
  } catch (_) {
    $("model").textContent = "(unreachable)";
  }
}

/** Posts one audio file (a File or Blob with a name) and renders the answer. */
async function judge(blob, name) {
  setStatus(`judging ${name} …`);
  const form = new FormData();
  form.append("audio", blob, name);
  let resp;
  try {
    resp = await fetch("/predict?include=spectrogram", { method: "POST", body: form, headers: authHeaders() });
  } catch (e) {
    setStatus(`request failed: ${e}`, true);
    return;
  }
  if (!resp.ok) {
    setStatus(await apiError(resp), true);
    return;
  }
  const v = await resp.json();
  setStatus(`judged ${v.filename}`);
  showVerdict(v);
  loadRecent();
}

function showVerdict(v) {
  $("result").hidden = false;
  const label = $("verdict");
  label.textContent = `${v.prediction} (${(100 * v.probability).toFixed(1)} %)`;
  label.className = v.prediction;
  const facts = [
    ["file", v.filename],
    ["fake probability", v.fake_probability.toFixed(4)],
    ["confidence", v.confidence.toFixed(4)],
    ["duration", `${v.duration_seconds.toFixed(2)} s in ${v.windows.length} window(s)`],
    ["processing time", `${(1000 * v.processing_time_seconds).toFixed(0)} ms`],
    ["model", `${v.model.name} v${v.model.version}`],
    ["request id", v.request_id || ""],
  ];
  const dl = $("facts");
  dl.replaceChildren();
  for (const [k, val] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = val;
    dl.append(dt, dd);
  }
  drawSpectrogram(v.spectrogram);
  drawTimeline(v.windows, v.threshold ?? 0.5);
}

/** Colour map from 0..255 (−80..0 dB) to RGB: dark blue → purple → orange → yellow. */
function colour(x) {
  const t = x / 255;
  const r = Math.min(255, Math.max(0, Math.round(255 * (1.6 * t - 0.1))));
  const g = Math.min(255, Math.max(0, Math.round(255 * (t * t * 1.1))));
  const b = Math.min(255, Math.max(0, Math.round(255 * (0.55 + 0.6 * t - 1.2 * t * t))));
  return [r, g, b];
}

/** Draws the server's quantised log-mel (u8 per cell, mel-major per window, windows side by side). */
function drawSpectrogram(spec) {
  const canvas = $("spectrogram");
  const ctx = canvas.getContext("2d");
  if (!spec) {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    $("spec-windows").textContent = "0";
    return;
  }
  const raw = atob(spec.data);
  const { mels, frames, windows } = spec;
  const width = frames * windows;
  canvas.width = width;
  canvas.height = mels;
  const img = ctx.createImageData(width, mels);
  for (let w = 0; w < windows; w++) {
    for (let m = 0; m < mels; m++) {
      for (let f = 0; f < frames; f++) {
        const value = raw.charCodeAt(w * mels * frames + m * frames + f);
        const [r, g, b] = colour(value);
        // Low mels at the bottom, as spectrograms are read.
        const px = ((mels - 1 - m) * width + w * frames + f) * 4;
        img.data[px] = r;
        img.data[px + 1] = g;
        img.data[px + 2] = b;
        img.data[px + 3] = 255;
      }
    }
  }
  ctx.putImageData(img, 0, 0);
  $("spec-windows").textContent = String(windows);
}

/** One bar per window, height = fake probability, with the decision threshold as a line. */
function drawTimeline(windows, threshold) {
  const svg = $("timeline");
  const ns = "http://www.w3.org/2000/svg";
  svg.replaceChildren();
  const W = 600, H = 160, n = Math.max(1, windows.length);
  const bw = W / n;
  windows.forEach((w, i) => {
    const h = Math.max(1, w.fake_probability * (H - 10));
    const rect = document.createElementNS(ns, "rect");
    rect.setAttribute("x", String(i * bw + 1));
    rect.setAttribute("y", String(H - h));
    rect.setAttribute("width", String(Math.max(1, bw - 2)));
    rect.setAttribute("height", String(h));
    rect.setAttribute("fill", w.fake_probability >= threshold ? "#c0392b" : "#1e8449");
    rect.setAttribute("class", "window-bar");
    const title = document.createElementNS(ns, "title");
    title.textContent = `${w.start.toFixed(1)}–${w.end.toFixed(1)} s: ${w.fake_probability.toFixed(3)}`;
    rect.append(title);
    svg.append(rect);
  });
  const y = H - threshold * (H - 10);
  const line = document.createElementNS(ns, "line");
  line.setAttribute("x1", "0");
  line.setAttribute("x2", String(W));
  line.setAttribute("y1", String(y));
  line.setAttribute("y2", String(y));
  line.setAttribute("stroke", "#333");
  line.setAttribute("stroke-dasharray", "4 3");
  svg.append(line);
}

async function loadRecent() {
  const note = $("recent-note");
  let resp;
  try {
    resp = await fetch("/predictions?limit=20", { headers: authHeaders() });
  } catch (e) {
    note.textContent = `cannot load: ${e}`;
    return;
  }
  if (!resp.ok) {
    note.textContent = await apiError(resp);
    return;
  }
  const rows = await resp.json();
  const list = Array.isArray(rows) ? rows : rows.predictions || [];
  const body = $("recent-rows");
  body.replaceChildren();
  for (const p of list) {
    const tr = document.createElement("tr");
    const cells = [
      (p.timestamp || "").replace("T", " ").replace(/\.\d+Z$/, ""),
      p.filename,
      p.prediction,
      Number(p.fake_probability).toFixed(4),
      Number(p.duration_seconds ?? 0).toFixed(1),
      `${p.model_name} v${p.model_version}`,
    ];
    cells.forEach((c, i) => {
      const td = document.createElement("td");
      td.textContent = c;
      if (i === 2) td.className = p.prediction;
      tr.append(td);
    });
    body.append(tr);
  }
  note.textContent = list.length ? "" : "no predictions logged yet";
}

// --- recording: raw PCM from the microphone, encoded as a 16-bit WAV in the browser ----------
// (MediaRecorder would give WebM/Opus, which the server's decoders do not read.)
let recording = null;

function encodeWav(chunks, rate) {
  const n = chunks.reduce((s, c) => s + c.length, 0);
  const buf = new ArrayBuffer(44 + 2 * n);
  const v = new DataView(buf);
  const text = (o, s) => [...s].forEach((ch, i) => v.setUint8(o + i, ch.charCodeAt(0)));
  text(0, "RIFF"); v.setUint32(4, 36 + 2 * n, true); text(8, "WAVE");
  text(12, "fmt "); v.setUint32(16, 16, true); v.setUint16(20, 1, true); v.setUint16(22, 1, true);
  v.setUint32(24, rate, true); v.setUint32(28, 2 * rate, true); v.setUint16(32, 2, true); v.setUint16(34, 16, true);
  text(36, "data"); v.setUint32(40, 2 * n, true);
  let o = 44;
  for (const c of chunks) {
    for (const x of c) {
      v.setInt16(o, Math.max(-1, Math.min(1, x)) * 0x7fff, true);
      o += 2;
    }
  }
  return new Blob([buf], { type: "audio/wav" });
}

async function toggleRecording() {
  const button = $("record");
  if (recording) {
    const { ctx, stream, node, chunks, timer } = recording;
    recording = null;
    clearInterval(timer);
    node.disconnect();
    stream.getTracks().forEach((t) => t.stop());
    await ctx.close();
    button.textContent = "● record";
    button.classList.remove("on");
    $("rec-time").textContent = "";
    judge(encodeWav(chunks, ctx.sampleRate), "recording.wav");
    return;
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true });
  } catch (e) {
    setStatus(`microphone unavailable: ${e}`, true);
    return;
  }
  const ctx = new AudioContext();
  const source = ctx.createMediaStreamSource(stream);
  const node = ctx.createScriptProcessor(4096, 1, 1);
  const chunks = [];
  node.onaudioprocess = (ev) => chunks.push(new Float32Array(ev.inputBuffer.getChannelData(0)));
  source.connect(node);
  node.connect(ctx.destination);
  const started = Date.now();
  const timer = setInterval(() => {
    $("rec-time").textContent = `${((Date.now() - started) / 1000).toFixed(0)} s — click to stop`;
  }, 250);
  recording = { ctx, stream, node, chunks, timer };
  button.textContent = "■ stop";
  button.classList.add("on");
}

// --- wiring ------------------------------------------------------------------------------------
function init() {
  $("api-key").value = localStorage.getItem(KEY_STORAGE) || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem(KEY_STORAGE, $("api-key").value.trim());
    loadRecent();
  });
  $("file").addEventListener("change", (e) => {
    const f = e.target.files[0];
    if (f) judge(f, f.name);
    e.target.value = "";
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    const f = e.dataTransfer.files[0];
    if (f) judge(f, f.name);
  });
  $("record").addEventListener("click", toggleRecording);
  $("refresh").addEventListener("click", loadRecent);
  loadHealth();
  loadRecent();
}

init();
