//! The four fuzz targets, shared by the fuzzer (`examples/fuzz.rs`) and the regression test
//! (`tests/fuzz_regressions.rs`), so a fixture is replayed through exactly the code it was found
//! with.
//!
//! Each target drives the same entry point the server uses for that kind of hostile input:
//!
//! * `decode` — [`Detector::open_windows`] (symphonia demux/decode, the RIFF re-pack fallback,
//!   rubato resampling to 16 kHz, 15 s windowing, the duration limit), drained to the end;
//! * `oip` — [`oip_tensor::parse`], the typed streaming parse of an Open Inference Protocol
//!   request, with the bounds the server derives from the model and its default limits;
//! * `multipart` — the real axum [`Router`] answering `POST /predict`, in process via
//!   [`tower::ServiceExt::oneshot`]: the multipart extraction has no pure function to call, and
//!   driving the router also covers the raw-body path, the upload guard and the handler;
//! * `manifest` — [`ModelPackage::open`] on a folder holding the input as `auralguard.json`,
//!   then what loading does before the weights are read (the architecture's parameter plan and
//!   the front-end's filter banks), since those are sized by the manifest.
//!
//! A run returns `Ok(outcome)`: a short, normalised description of what happened (numbers are
//! folded so that the set of distinct outcomes stays small), which the fuzzer uses as its cheap
//! coverage signal; or `Err(finding)` when the answer itself is a bug (the server said 500).
//! Panics, hangs and allocation bombs are the caller's to catch: they are properties of the
//! process, not of a return value.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use auralguard::api::oip_tensor::{self, Input, InputBounds};
use auralguard::audio::AudioSource;
use auralguard::pipeline::{Detector, DetectorOptions};

/// Server defaults the targets are configured with (`auralguard serve --help`): the limits
/// decide which code paths an input reaches, so they must be the deployed ones.
pub const MAX_AUDIO_SECONDS: f64 = 600.0;
/// `--max-upload-mb` default, in bytes.
pub const MAX_UPLOAD_BYTES: usize = 50 << 20;
/// `--max-queue-windows` default (also the largest OIP `log_mel` batch).
pub const MAX_QUEUE_WINDOWS: usize = 256;

/// A fuzz target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Audio bytes through the server's decode → resample → window stream.
    Decode,
    /// OIP v2 JSON through the tensor parser.
    Oip,
    /// `Content-Type` line plus body through `POST /predict`.
    Multipart,
    /// `auralguard.json` through the package loader.
    Manifest,
}

impl Target {
    /// Every target, in the order a full run does them.
    pub const ALL: [Target; 4] = [
        Target::Decode,
        Target::Oip,
        Target::Multipart,
        Target::Manifest,
    ];

    /// The name used on the command line and as the folder of fixtures and findings.
    pub fn name(self) -> &'static str {
        match self {
            Target::Decode => "decode",
            Target::Oip => "oip",
            Target::Multipart => "multipart",
            Target::Manifest => "manifest",
        }
    }

    /// The target called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    /// Largest input the mutator may grow to: big enough for every structure the target reads,
    /// small enough that a run stays fast.
    pub fn max_len(self) -> usize {
        match self {
            Target::Decode => 512 << 10,
            Target::Oip => 512 << 10,
            Target::Multipart => 256 << 10,
            Target::Manifest => 64 << 10,
        }
    }

    /// Whether inputs are text, so that the token-level (JSON, MIME) mutations are worth trying.
    pub fn is_text(self) -> bool {
        !matches!(self, Target::Decode)
    }

    /// Tokens the mutator inserts or overwrites with: the structure words of the format, which
    /// random bytes would take forever to spell (JSON's own for the JSON targets).
    pub fn dictionary(self) -> Vec<&'static [u8]> {
        let own: &[&[u8]] = match self {
            Target::Decode => &[
                b"RIFF",
                b"RIFX",
                b"WAVE",
                b"fmt ",
                b"data",
                b"LIST",
                b"JUNK",
                b"fact",
                b"fLaC",
                b"OggS",
                b"\x01vorbis",
                b"ID3",
                b"\xff\xfb",
                b"\xff\xf1",
                b"ftyp",
                b"moov",
                b"trak",
                b"mdia",
                b"stsd",
                b"stsz",
                b"stco",
                b"mp4a",
                b"esds",
                b"M4A ",
            ],
            Target::Oip => &[
                b"\"inputs\"",
                b"\"name\"",
                b"\"shape\"",
                b"\"datatype\"",
                b"\"data\"",
                b"\"id\"",
                b"\"waveform\"",
                b"\"log_mel\"",
                b"\"FP32\"",
                b"\"FP16\"",
                b"\"BYTES\"",
                b"\"",
                b"true",
                b"[[[[[[[[",
                b"-1e309",
                b"NaN",
                b"144115188075855872",
                b"9223372036854775807",
                b"18446744073709551615",
                b"-9223372036854775808",
                b"4294967296",
                b"-1",
                b"0",
                b"1e-400",
                b"0.5",
                b"128",
                b"469",
                b"256",
                b"257",
                b"9600000",
                b"9600001",
                b"\\u0000",
                b"\\ud800",
            ],
            Target::Multipart => &[
                b"\r\n",
                b"\r\n\r\n",
                b"--",
                b"--XyZ",
                b"--XyZ--",
                b"boundary=",
                b"multipart/form-data",
                b"Content-Disposition: form-data; ",
                b"name=\"audio\"",
                b"name=\"other\"",
                b"filename=\"",
                b"filename*=UTF-8''",
                b"Content-Type: ",
                b"audio/wav",
                b"application/octet-stream",
                b"Content-Length: 0",
                b"Content-Transfer-Encoding: base64",
                b"\"",
                b";",
                b"\x00",
                b"\xff\xfe",
                b"\xc3\xa9",
                b"RIFF",
                b"WAVE",
            ],
            Target::Manifest => &[
                b"\"format_version\"",
                b"\"architecture\"",
                b"\"features\"",
                b"\"window\"",
                b"\"labels\"",
                b"\"threshold\"",
                b"\"aggregation\"",
                b"\"encoder\"",
                b"\"seed-cnn\"",
                b"\"compact-cnn\"",
                b"\"whisper-head\"",
                b"\"log-mel\"",
                b"\"log-linear\"",
                b"\"whisper\"",
                b"\"max\"",
                b"\"mean\"",
                b"\"sample_rate\"",
                b"\"n_fft\"",
                b"\"hop_length\"",
                b"\"n_mels\"",
                b"\"fmin\"",
                b"\"fmax\"",
                b"\"top_db\"",
                b"\"seconds\"",
                b"\"hop_seconds\"",
                b"\"min_final_seconds\"",
                b"-0.0",
                b"1e-320",
                b"4294967295",
                b"4294967296",
                b"18446744073709551615",
                b"16384",
                b"16386",
                b"1024",
                b"96000",
                b"60.0",
                b"60.000001",
                b"NaN",
            ],
        };
        let json: &[&[u8]] = match self {
            Target::Oip | Target::Manifest => JSON_TOKENS,
            Target::Decode | Target::Multipart => &[],
        };
        own.iter().chain(json).copied().collect()
    }
}

/// The punctuation and odd literals of JSON, shared by the JSON targets' dictionaries.
const JSON_TOKENS: &[&[u8]] = &[b"[", b"]", b"{", b"}", b",", b":", b"null", b"1e309"];

/// A target ready to run inputs: everything sized once (model, router, runtime) is built here,
/// so that a run costs only the input's own work.
pub struct Ctx {
    state: State,
}

enum State {
    Decode(Arc<Detector>),
    Oip(InputBounds),
    Multipart {
        runtime: tokio::runtime::Runtime,
        app: axum::Router,
    },
    Manifest(PathBuf),
}

/// The model `models/seed-random` (or `model`) loaded on the CPU with the server's defaults.
fn detector(model: &Path) -> anyhow::Result<Detector> {
    let device = candle_core::Device::Cpu;
    let loaded = auralguard::model::ModelPackage::open(model)?.load(&device)?;
    let opts = DetectorOptions {
        max_duration_seconds: Some(MAX_AUDIO_SECONDS),
        ..Default::default()
    };
    Ok(Detector::new(loaded, &opts)?)
}

/// The application state `auralguard serve` builds, with its default limits and no store.
fn app_state(detector: Detector) -> anyhow::Result<Arc<auralguard::api::AppState>> {
    use auralguard::api::{metrics, serving, upload_guard, AppState, Limits};
    let metrics = metrics::Metrics::new()?;
    metrics.set_model(&detector.model().manifest);
    let first = serving::Serving::start(
        detector,
        auralguard::batcher::BatchingConfig::default(),
        &metrics,
    )?;
    let max_concurrent = 8;
    Ok(Arc::new(AppState {
        slot: serving::ModelSlot::new(first),
        registry_status: None,
        limits: Limits {
            max_upload_bytes: MAX_UPLOAD_BYTES,
            max_audio_seconds: MAX_AUDIO_SECONDS,
            max_concurrent,
            request_timeout: Duration::from_secs(120),
            max_tensor_windows: MAX_QUEUE_WINDOWS,
        },
        permits: Arc::new(tokio::sync::Semaphore::new(max_concurrent)),
        metrics,
        ready: std::sync::atomic::AtomicBool::new(true),
        started: std::time::Instant::now(),
        device: "cpu".into(),
        store: None,
        api_key: None,
        uploads: upload_guard::UploadGuard::new(upload_guard::UploadPolicy {
            min_bytes_per_second: 16_384,
            grace: Duration::from_secs(10),
            max_buffered_bytes: 512 << 20,
        }),
        serve_unlogged: false,
    }))
}

impl Ctx {
    /// Prepares `target` with the model package in `model` (used by `decode`, `oip` and
    /// `multipart`; the shipped `models/seed-random` is what the server tests use). `scratch`
    /// is a folder of this context's own, for targets that write files (`manifest`): the caller
    /// owns it and removes it, because a worker that hangs is killed and never runs `Drop`.
    pub fn open(target: Target, model: &Path, scratch: &Path) -> anyhow::Result<Self> {
        let state = match target {
            Target::Decode => State::Decode(Arc::new(detector(model)?)),
            Target::Oip => {
                let manifest = auralguard::model::ModelPackage::open(model)?
                    .manifest()
                    .clone();
                let (rows, columns) = manifest.input_shape();
                let rate = f64::from(manifest.features.sample_rate);
                State::Oip(InputBounds {
                    rows,
                    columns,
                    max_batch: MAX_QUEUE_WINDOWS,
                    max_samples: (MAX_AUDIO_SECONDS * rate).floor() as usize,
                })
            }
            Target::Multipart => {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()?;
                let state = app_state(detector(model)?)?;
                let app = {
                    let _guard = runtime.enter();
                    auralguard::api::routes::router(state)
                };
                State::Multipart { runtime, app }
            }
            Target::Manifest => {
                std::fs::create_dir_all(scratch)?;
                State::Manifest(scratch.to_path_buf())
            }
        };
        Ok(Self { state })
    }

    /// Runs one input. `ext` is the upload's file extension for `decode` (symphonia takes it as
    /// a hint; an attacker picks it, so it is part of the input); other targets ignore it.
    pub fn run(&self, input: &[u8], ext: &str) -> Result<String, String> {
        match &self.state {
            State::Decode(detector) => Ok(run_decode(detector, input, ext)),
            State::Oip(bounds) => Ok(run_oip(bounds, input)),
            State::Multipart { runtime, app } => run_multipart(runtime, app, input),
            State::Manifest(dir) => Ok(run_manifest(dir, input)),
        }
    }
}

impl Drop for Ctx {
    fn drop(&mut self) {
        if let State::Manifest(dir) = &self.state {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Folds what varies with the input out of a message, so that messages carrying sizes,
/// offsets and echoed values map to a few distinct outcomes instead of one per input (which
/// keeps the corpus made of inputs that reached new code rather than new spellings): a JSON
/// position (`at line # column #`), an echoed `got …` and everything from the first quote on
/// are dropped (the quote becomes `'…'`), digit runs become `#`, any word that is not plain letters (a number, an echoed value) `_`
/// (runs of them one `_`), and the result is cut at ten words and `max` characters.
pub fn normalize(text: &str, max: usize) -> String {
    /// Words kept: an error's class is in its first words; the rest tends to echo the input.
    const MAX_WORDS: usize = 10;
    let text = text.split(" at line ").next().unwrap_or(text);
    let text = text.split(" (got ").next().unwrap_or(text);
    let text = text.split(" got ").next().unwrap_or(text);
    // Quotes and digits first: a quoted value may hold spaces.
    let mut folded = String::new();
    let mut in_digits = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                folded.push('#');
            }
            in_digits = true;
            continue;
        }
        in_digits = false;
        if matches!(c, '\'' | '"' | '`') {
            // What follows an opening quote is the input's (mutated keys hold quotes of their
            // own, so the closing one cannot be trusted): the message ends here.
            folded.push_str("'…'");
            break;
        }
        folded.push(c);
    }
    let mut words: Vec<&str> = Vec::new();
    for word in folded.split_whitespace() {
        let core = word.trim_end_matches([':', ',', '.', ';', ')']);
        let plain = core == "'…'"
            || (!core.is_empty()
                && core
                    .chars()
                    .all(|c| c.is_alphabetic() || c == '-' || c == '_'));
        let w = if plain { word } else { "_" };
        if !(w == "_" && words.last() == Some(&"_")) {
            words.push(w);
        }
    }
    words.truncate(MAX_WORDS);
    words.join(" ").chars().take(max).collect()
}

/// The variant name of an error (`CorruptAudio`, `Manifest`, …) from its `Debug` form.
fn variant(e: &auralguard::Error) -> String {
    format!("{e:?}")
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("")
        .to_string()
}

/// An audio error's message without the upload's name (constant here) in front.
fn describe(e: &auralguard::Error) -> String {
    let text = e.to_string();
    let text = text
        .split_once(": ")
        .map_or(text.as_str(), |(_, rest)| rest);
    normalize(text, 90)
}

fn run_decode(detector: &Detector, input: &[u8], ext: &str) -> String {
    let name = if ext.is_empty() || ext == "bin" {
        "upload".to_string()
    } else {
        format!("upload.{ext}")
    };
    let source = AudioSource::Bytes {
        name,
        data: input.to_vec(),
    };
    let mut stream = match detector.open_windows(source) {
        Ok(s) => s,
        Err(e) => return format!("open {}: {}", variant(&e), describe(&e)),
    };
    let (rate, channels) = (stream.source_sample_rate(), stream.source_channels());
    let mut windows = 0usize;
    let end = loop {
        match stream.next_window() {
            Ok(Some(_)) => windows += 1,
            Ok(None) => break "end".to_string(),
            Err(e) => break format!("{}: {}", variant(&e), describe(&e)),
        }
    };
    format!(
        "ok rate~2^{} ch={} windows~2^{} truncated={} {end}",
        rate.max(1).ilog2(),
        channels.min(9),
        (windows + 1).ilog2(),
        stream.truncation().is_some()
    )
}

fn run_oip(bounds: &InputBounds, input: &[u8]) -> String {
    match oip_tensor::parse(input, bounds) {
        Ok(p) => match p.input {
            Input::Waveform(v) => format!("ok waveform n~2^{}", (v.len() + 1).ilog2()),
            Input::Features { batch, data } => {
                format!("ok log_mel batch={batch} values={}", data.len())
            }
        },
        Err(e) => format!(
            "{} {} {}",
            e.status.as_u16(),
            e.code,
            normalize(&e.message, 60)
        ),
    }
}

/// Splits a `multipart` input into its `Content-Type` (the first line) and the body.
pub fn split_multipart(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == b'\n') {
        Some(at) => (&input[..at], &input[at + 1..]),
        None => (input, &[]),
    }
}

fn run_multipart(
    runtime: &tokio::runtime::Runtime,
    app: &axum::Router,
    input: &[u8],
) -> Result<String, String> {
    use axum::http::{header, HeaderValue, Request};
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    let (content_type, body) = split_multipart(input);
    let Ok(content_type) = HeaderValue::from_bytes(content_type) else {
        // hyper would refuse such a header before any handler runs.
        return Ok("unsendable content-type".into());
    };
    let mut req = Request::post("/predict")
        .body(axum::body::Body::from(body.to_vec()))
        .map_err(|e| format!("harness: request: {e}"))?;
    req.headers_mut().insert(header::CONTENT_TYPE, content_type);
    req.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
            [127, 0, 0, 1],
            40_000,
        ))));
    let (status, text) = runtime.block_on(async {
        let resp = app
            .clone()
            .oneshot(req)
            .await
            .map_err(|e| format!("harness: router: {e}"))?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("response body: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, String::from_utf8_lossy(&bytes).into_owned()))
    })?;
    let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
    let code = json
        .as_ref()
        .and_then(|j| j.pointer("/error/code"))
        .and_then(|c| c.as_str())
        .unwrap_or("");
    let message = json
        .as_ref()
        .and_then(|j| j.pointer("/error/message"))
        .and_then(|c| c.as_str())
        .unwrap_or("");
    // A 500 is the server admitting a bug (a panicked decode task is one); 503 and 504 are load
    // answers and cannot happen to one request at a time within the budget.
    if status.is_server_error() {
        return Err(format!("POST /predict answered {status}: {text:.300}"));
    }
    if status.is_success() {
        let prediction = json
            .as_ref()
            .and_then(|j| j.get("prediction"))
            .and_then(|c| c.as_str())
            .unwrap_or("?");
        return Ok(format!("200 prediction={prediction}"));
    }
    if json.is_none() || code.is_empty() {
        return Ok(format!(
            "{} non-json {}",
            status.as_u16(),
            normalize(&text, 60)
        ));
    }
    // Audio errors start with the upload's name, which the mutator varies freely, and their
    // detail is the `decode` target's business: the code says enough here.
    let message = match (status.as_u16(), code) {
        (_, "unsupported_media_type") => message,
        (415 | 422, _) => "",
        _ => message,
    };
    Ok(format!(
        "{} {code} {}",
        status.as_u16(),
        normalize(message, 80)
    ))
}

fn run_manifest(dir: &Path, input: &[u8]) -> String {
    use auralguard::features::{FrontEnd, WHISPER};
    use auralguard::model::{arch, ModelPackage};

    if let Err(e) = std::fs::write(dir.join("auralguard.json"), input) {
        return format!("harness: cannot write the manifest: {e}");
    }
    // Messages name the package folder, a temporary path: cut it so the outcome is the error.
    let folder = dir.display().to_string();
    let describe = |stage: &str, e: &auralguard::Error| {
        let text = e.to_string().replace(&folder, "");
        format!("{stage} {}: {}", variant(e), normalize(&text, 90))
    };
    let package = match ModelPackage::open(dir) {
        Ok(p) => p,
        Err(e) => return describe("open", &e),
    };
    let m = package.manifest();
    let (rows, columns) = package.input_shape();
    let params = match arch::lookup(&m.architecture.name).and_then(|a| a.params(rows, columns)) {
        Ok(p) => p.len(),
        Err(e) => return describe("params", &e),
    };
    // The Whisper front-end loads an encoder from the local store: a file lookup, not the
    // manifest's doing; its sizes were checked by `validate` above.
    if m.features.kind != WHISPER {
        if let Err(e) = FrontEnd::new(m.features.clone(), &candle_core::Device::Cpu) {
            return format!(
                "front-end {}: {}",
                variant(&e),
                normalize(&e.to_string(), 90)
            );
        }
    }
    format!(
        "ok {} {} params={params} input~2^{}",
        m.features.kind,
        m.architecture.name,
        (rows.saturating_mul(columns) + 1).ilog2()
    )
}

// ---------------------------------------------------------------------------------------------
// Seeds
// ---------------------------------------------------------------------------------------------

/// One seed: the bytes and, for `decode`, the upload's extension.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Where it came from (a path, or a description of a generated one).
    pub origin: String,
    /// The input.
    pub data: Vec<u8>,
    /// File extension used as the decoder hint (`bin`: none).
    pub ext: String,
}

/// A WAV file with a free format tag, channel count, rate and sample width; `frames` frames of
/// a low sine. `extra` chunks (tag, payload) go before `fmt ` when `extra_first`, else after
/// `data`.
pub fn wav(
    format_tag: u16,
    channels: u16,
    rate: u32,
    bits: u16,
    frames: usize,
    extra: &[(&[u8; 4], &[u8])],
    extra_first: bool,
) -> Vec<u8> {
    let block = u32::from(channels) * u32::from(bits / 8);
    let mut data = Vec::new();
    for i in 0..frames {
        let v = (i as f64 * 0.07).sin() * 0.3;
        for _ in 0..channels {
            match (format_tag, bits) {
                (3, 32) => data.extend_from_slice(&(v as f32).to_le_bytes()),
                (3, 64) => data.extend_from_slice(&v.to_le_bytes()),
                (_, 8) => data.push((v * 127.0 + 128.0) as u8),
                (_, 24) => data.extend_from_slice(&((v * 8_388_607.0) as i32).to_le_bytes()[..3]),
                (_, 32) => data.extend_from_slice(&((v * 2_147_483_647.0) as i32).to_le_bytes()),
                _ => data.extend_from_slice(&((v * 32767.0) as i16).to_le_bytes()),
            }
        }
    }
    let mut chunks: Vec<u8> = Vec::new();
    let mut push_chunk = |tag: &[u8; 4], payload: &[u8]| {
        chunks.extend_from_slice(tag);
        chunks.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        chunks.extend_from_slice(payload);
        if payload.len() % 2 == 1 {
            chunks.push(0);
        }
    };
    let mut fmt = Vec::new();
    fmt.extend_from_slice(&format_tag.to_le_bytes());
    fmt.extend_from_slice(&channels.to_le_bytes());
    fmt.extend_from_slice(&rate.to_le_bytes());
    fmt.extend_from_slice(&rate.wrapping_mul(block).to_le_bytes());
    fmt.extend_from_slice(&(block as u16).to_le_bytes());
    fmt.extend_from_slice(&bits.to_le_bytes());
    if format_tag == 0xFFFE {
        // WAVE_FORMAT_EXTENSIBLE: cbSize, valid bits, channel mask, PCM sub-format GUID.
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&bits.to_le_bytes());
        fmt.extend_from_slice(&(if channels == 2 { 3u32 } else { 4u32 }).to_le_bytes());
        fmt.extend_from_slice(&[
            1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71,
        ]);
    }
    if extra_first {
        for (tag, payload) in extra {
            push_chunk(tag, payload);
        }
    }
    push_chunk(b"fmt ", &fmt);
    push_chunk(b"data", &data);
    if !extra_first {
        for (tag, payload) in extra {
            push_chunk(tag, payload);
        }
    }
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(4 + chunks.len() as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(&chunks);
    out
}

/// An OIP request with one tensor.
pub fn oip_request(name: &str, shape: &str, data: &str) -> Vec<u8> {
    format!(
        r#"{{"id":"fuzz","inputs":[{{"name":"{name}","shape":{shape},"datatype":"FP32","data":{data}}}]}}"#
    )
    .into_bytes()
}

/// One part of a form: field name, file name, part `Content-Type`, content.
pub type FormPart<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A `multipart` target input: `Content-Type` line, then a form with `parts` under `boundary`.
pub fn multipart_input(boundary: &str, parts: &[FormPart]) -> Vec<u8> {
    let mut out = format!("multipart/form-data; boundary={boundary}\n").into_bytes();
    for (name, file, ctype, content) in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disp = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = file {
            disp.push_str(&format!("; filename=\"{f}\""));
        }
        out.extend_from_slice(disp.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(c) = ctype {
            out.extend_from_slice(format!("Content-Type: {c}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

/// Files of `dir` (not recursive), sorted, skipping notes (`*.md`, `*.txt`) and dot-files.
pub fn inputs_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.') && !name.ends_with(".md") && !name.ends_with(".txt")
        })
        .collect();
    files.sort();
    files
}

/// The decoder hint a fixture file carries: its extension (`bin` or none: no hint).
pub fn ext_of(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or("bin")
        .to_string()
}

fn read_seeds(dir: &Path, max_len: usize, out: &mut Vec<Seed>) {
    for path in inputs_in(dir) {
        if let Ok(data) = std::fs::read(&path) {
            if data.len() <= max_len {
                out.push(Seed {
                    origin: path.display().to_string(),
                    ext: ext_of(&path),
                    data,
                });
            }
        }
    }
}

/// The starting corpus of `target`: generated inputs covering each format's variants, the
/// repository's real files of that kind, the regression fixtures in `fixtures/<target>/`, and
/// whatever `extra/<target>/` holds (the small ffmpeg-made audio seeds `scripts/fuzz.sh`
/// caches there).
pub fn seeds(target: Target, repo: &Path, fixtures: &Path, extra: &Path) -> Vec<Seed> {
    let mut out = Vec::new();
    let generated = |origin: &str, data: Vec<u8>, ext: &str| Seed {
        origin: origin.to_string(),
        data,
        ext: ext.to_string(),
    };
    match target {
        Target::Decode => {
            let list: &[u8] = b"INFOISFT\x05\x00\x00\x00fuzz\x00\x00";
            let variants: [(&str, Vec<u8>); 10] = [
                ("pcm16 16k", wav(1, 1, 16_000, 16, 1_600, &[], false)),
                ("float32 16k", wav(3, 1, 16_000, 32, 1_600, &[], false)),
                ("float64 8k", wav(3, 1, 8_000, 64, 800, &[], false)),
                ("u8 11k", wav(1, 1, 11_025, 8, 1_100, &[], false)),
                ("s24 22k", wav(1, 1, 22_050, 24, 2_205, &[], false)),
                ("s32 stereo 48k", wav(1, 2, 48_000, 32, 4_800, &[], false)),
                (
                    "extensible stereo",
                    wav(0xFFFE, 2, 44_100, 16, 4_410, &[], false),
                ),
                (
                    "LIST before fmt",
                    wav(1, 1, 16_000, 16, 1_600, &[(b"LIST", list)], true),
                ),
                (
                    "odd JUNK after data",
                    wav(1, 1, 16_000, 16, 1_601, &[(b"JUNK", b"abc")], false),
                ),
                ("six channels", wav(1, 6, 16_000, 16, 400, &[], false)),
            ];
            for (what, data) in variants {
                out.push(generated(&format!("generated WAV {what}"), data, "wav"));
            }
            read_seeds(&repo.join("testdata/formats"), 200 << 10, &mut out);
            read_seeds(&repo.join("examples/audio"), 200 << 10, &mut out);
        }
        Target::Oip => {
            let zeros = |n: usize| format!("[{}]", vec!["0"; n].join(","));
            out.push(generated(
                "waveform [1,8]",
                oip_request("waveform", "[1,8]", "[0.1,-0.2,0.3,0,1,-1,0.5,0.25]"),
                "bin",
            ));
            out.push(generated(
                "waveform [1,1600]",
                oip_request("waveform", "[1,1600]", &zeros(1600)),
                "bin",
            ));
            out.push(generated(
                "log_mel [1,128,469] flat",
                oip_request("log_mel", "[1,128,469]", &zeros(128 * 469)),
                "bin",
            ));
            let row = zeros(469);
            let nested = format!("[[{}]]", vec![row.as_str(); 128].join(","));
            out.push(generated(
                "log_mel [1,128,469] nested",
                oip_request("log_mel", "[1,128,469]", &nested),
                "bin",
            ));
            out.push(generated(
                "log_mel shape 2^57",
                oip_request("log_mel", "[144115188075855872,128,469]", "[]"),
                "bin",
            ));
            out.push(generated(
                "two inputs",
                br#"{"inputs":[{"name":"waveform","shape":[1,1],"datatype":"FP32","data":[0]},{"name":"waveform","shape":[1,1],"datatype":"FP32","data":[0]}]}"#.to_vec(),
                "bin",
            ));
        }
        Target::Multipart => {
            let clip = wav(1, 1, 16_000, 16, 800, &[], false);
            let forms: [(&str, Vec<u8>); 5] = [
                (
                    "audio file",
                    multipart_input(
                        "XyZ",
                        &[("audio", Some("clip.wav"), Some("audio/wav"), &clip)],
                    ),
                ),
                (
                    "text field then audio without file name",
                    multipart_input(
                        "----WebKitFormBoundary7MA4YWxkTrZu0gW",
                        &[("note", None, None, b"hello"), ("audio", None, None, &clip)],
                    ),
                ),
                (
                    "no audio field",
                    multipart_input("XyZ", &[("file", Some("clip.wav"), None, &clip)]),
                ),
                (
                    "unicode file name",
                    multipart_input("b", &[("audio", Some("\u{e9}t\u{e9} 1.wav"), None, &clip)]),
                ),
                ("raw body", [b"audio/wav\n".as_slice(), &clip].concat()),
            ];
            for (what, data) in forms {
                out.push(generated(&format!("generated form: {what}"), data, "bin"));
            }
        }
        Target::Manifest => {
            for entry in std::fs::read_dir(repo.join("models"))
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path().join("auralguard.json");
                if let Ok(data) = std::fs::read(&path) {
                    out.push(Seed {
                        origin: path.display().to_string(),
                        data,
                        ext: "json".into(),
                    });
                }
            }
            out.sort_by(|a, b| a.origin.cmp(&b.origin));
        }
    }
    read_seeds(&fixtures.join(target.name()), target.max_len(), &mut out);
    read_seeds(&extra.join(target.name()), target.max_len(), &mut out);
    out
}
