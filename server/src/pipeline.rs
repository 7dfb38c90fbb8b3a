//! The detector: audio sources in, verdicts out, with windows batched through the network.
//!
//! Windows from consecutive files share batches (a folder of 3-second clips still fills
//! full batches), log-mels of a batch are computed in parallel with per-thread scratch, and
//! verdicts are emitted in input order as soon as a file's last window is scored. A file that
//! fails mid-way gets an error result; its windows already queued are simply discarded.

use std::collections::VecDeque;
use std::time::Instant;

use candle_core::Tensor;

use crate::audio::{AudioSource, AudioWindows, MonoDecoder, WindowConfig};
use crate::error::{Error, Result};
use crate::features::FrontEnd;
use crate::model::manifest::WindowSpec;
use crate::model::{Aggregation, LoadedModel};
use crate::verdict::{Verdict, Warning, WindowVerdict};

/// Knobs that override the manifest for one run.
#[derive(Debug, Clone, Default)]
pub struct DetectorOptions {
    /// Windows per network call (default [`DEFAULT_BATCH_SIZE`]).
    pub batch_size: Option<usize>,
    /// Window geometry instead of the manifest's.
    pub window: Option<WindowSpec>,
    /// Aggregation rule instead of the manifest's.
    pub aggregation: Option<Aggregation>,
    /// Decision threshold instead of the manifest's.
    pub threshold: Option<f32>,
    /// Refuse audio longer than this many seconds.
    pub max_duration_seconds: Option<f64>,
}

/// Default windows per network call. On CPU a batch's cost per window hardly falls past a
/// handful (one machine ran the seed CNN at 32 windows in 1.1× batch 1's time per window), but
/// its activations grow with every window (about 3.8 MB per 15 s window and layer for the seed
/// CNN), and a server's resident memory follows its largest batch. Eight keeps the GEMMs full
/// and every call's tensors the same few sizes, so freed blocks are reused rather than new
/// ones mapped; a GPU is better served by a larger `--batch-size`.
pub const DEFAULT_BATCH_SIZE: usize = 8;

/// A loaded model plus its front-end, ready to judge audio.
pub struct Detector {
    model: LoadedModel,
    extractor: FrontEnd,
    window: WindowConfig,
    aggregation: Aggregation,
    threshold: f32,
    batch_size: usize,
    max_duration_seconds: Option<f64>,
    input: (usize, usize),
}

/// Where each window of a prepared source sits, so that scores computed elsewhere (in another
/// request's batch) can be turned into this source's verdict.
#[derive(Debug, Clone)]
pub struct WindowLayout {
    name: String,
    started: Instant,
    windows: Vec<(u64, usize)>,
    samples: u64,
    warnings: Vec<Warning>,
}

impl WindowLayout {
    /// Number of windows, i.e. of scores the verdict needs.
    pub fn windows(&self) -> usize {
        self.windows.len()
    }

    /// The source's name as given (file path or upload name).
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A source decoded, windowed and turned into log-mels: exactly the network's input for it.
#[derive(Debug, Clone)]
pub struct PreparedAudio {
    /// How the windows map back onto the audio.
    pub layout: WindowLayout,
    /// `layout.windows()` log-mels laid end to end (mels × frames each).
    pub features: Vec<f32>,
}

/// The name a source is reported under.
fn source_name(source: &AudioSource) -> String {
    match source {
        AudioSource::File(p) => p.display().to_string(),
        AudioSource::Bytes { name, .. } => name.clone(),
    }
}

/// One window waiting in a batch.
struct Queued {
    slot: usize,
    start: u64,
    real: usize,
    samples: Vec<f32>,
}

/// Book-keeping for a file whose verdict is not out yet.
struct InFlight {
    name: String,
    started: Instant,
    windows: Vec<Option<(u64, usize, f32)>>,
    total_windows: Option<usize>,
    samples: u64,
    warnings: Vec<Warning>,
    error: Option<Error>,
}

/// Less audio than this gets a `too_short` warning: a verdict on a fraction of a second of
/// sound (mostly padding in a window) is not one to act on.
pub const MIN_RELIABLE_SECONDS: f64 = 1.0;

impl Detector {
    /// Wraps a loaded model, applying `opts` over its manifest.
    pub fn new(model: LoadedModel, opts: &DetectorOptions) -> Result<Self> {
        let m = &model.manifest;
        let spec = opts.window.clone().unwrap_or_else(|| m.window.clone());
        let window = spec.to_config(m.features.sample_rate)?;
        let default_len = m.window.to_config(m.features.sample_rate)?.len;
        if window.len != default_len {
            return Err(Error::InvalidArgument(format!(
                "window length {} s differs from the model's {} s: the network's input size is fixed \
                 (change the hop or the minimum final window instead)",
                spec.seconds, m.window.seconds
            )));
        }
        let threshold = opts.threshold.unwrap_or(m.threshold);
        if !(threshold > 0.0 && threshold < 1.0) {
            return Err(Error::InvalidArgument(format!(
                "threshold {threshold} must be in (0, 1)"
            )));
        }
        let batch_size = opts.batch_size.unwrap_or(DEFAULT_BATCH_SIZE);
        if batch_size == 0 {
            return Err(Error::InvalidArgument(
                "batch size must be at least 1".into(),
            ));
        }
        if let Some(d) = opts.max_duration_seconds {
            if d.is_nan() || d <= 0.0 {
                return Err(Error::InvalidArgument(format!(
                    "maximum duration {d} s must be positive"
                )));
            }
        }
        let extractor = FrontEnd::new(m.features.clone(), &model.device)?;
        let input = extractor.output_shape(window.len);
        Ok(Self {
            aggregation: opts.aggregation.unwrap_or(m.aggregation),
            model,
            extractor,
            window,
            threshold,
            batch_size,
            max_duration_seconds: opts.max_duration_seconds,
            input,
        })
    }

    /// The model in use.
    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    /// The front-end in use (log-mel, log-linear or Whisper).
    pub fn extractor(&self) -> &FrontEnd {
        &self.extractor
    }

    /// The window geometry in use.
    pub fn window_config(&self) -> WindowConfig {
        self.window
    }

    /// Windows per network call.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Opens a source as a stream of model-rate windows with this detector's geometry and limits.
    pub fn open_windows(&self, source: AudioSource) -> Result<AudioWindows> {
        let decoder = MonoDecoder::from_source(source)?;
        let w = AudioWindows::new(decoder, self.window, self.extractor.config().sample_rate)?;
        Ok(match self.max_duration_seconds {
            Some(s) => w.with_max_duration(s),
            None => w,
        })
    }

    /// Log-mel of every window of a source, plus the source's length in model-rate samples.
    pub fn log_mels(&self, source: AudioSource) -> Result<(Vec<Vec<f32>>, u64)> {
        let mut windows = self.open_windows(source)?;
        let mut out = Vec::new();
        while let Some(w) = windows.next_window()? {
            out.push(self.extractor.compute(&w.samples)?);
        }
        Ok((out, windows.samples_seen()))
    }

    /// Runs the network on `n` log-mels laid end to end in `features`; returns P(positive) each.
    pub fn score_log_mels(&self, features: &[f32], n: usize) -> Result<Vec<f32>> {
        let (m, t) = self.input;
        if features.len() != n * m * t {
            return Err(Error::InvalidArgument(format!(
                "expected {n}×{m}×{t} log-mel values, got {}",
                features.len()
            )));
        }
        let mut probs = Vec::with_capacity(n);
        for chunk in features.chunks(self.batch_size * m * t) {
            let b = chunk.len() / (m * t);
            let x = Tensor::from_slice(chunk, (b, m, t), &self.model.device)?;
            let p = self.model.classifier.forward(&x)?;
            probs.extend(p.to_vec1::<f32>()?);
        }
        Ok(probs)
    }

    /// Decodes, windows and featurises one source without running the network, so that the
    /// server can hand the log-mels to its cross-request batcher. Features of a chunk of windows
    /// are computed in parallel; decoded audio is held one chunk at a time.
    pub fn prepare(&self, source: AudioSource) -> Result<PreparedAudio> {
        let started = Instant::now();
        let name = source_name(&source);
        let mut stream = self.open_windows(source)?;
        let per = self.input.0 * self.input.1;
        let chunk_len = rayon::current_num_threads().max(1) * 2;
        let mut windows = Vec::new();
        let mut features = Vec::new();
        let mut chunk = Vec::with_capacity(chunk_len);
        loop {
            let next = stream.next_window()?;
            let end = next.is_none();
            if let Some(w) = next {
                windows.push((w.start, w.real_samples));
                chunk.push(w.samples);
            }
            if chunk.len() == chunk_len || (end && !chunk.is_empty()) {
                let from = features.len();
                features.resize(from + chunk.len() * per, 0.0);
                let signals: Vec<&[f32]> = chunk.iter().map(Vec::as_slice).collect();
                self.log_mels_into(&signals, &mut features[from..])?;
                chunk.clear();
            }
            if end {
                break;
            }
        }
        let samples = stream.samples_seen();
        Ok(PreparedAudio {
            layout: WindowLayout {
                warnings: self.input_warnings(&stream, samples),
                name,
                started,
                windows,
                samples,
            },
            features,
        })
    }

    /// [`Detector::prepare`] for a mono waveform already at the model's sample rate.
    ///
    /// Samples are clamped to the full-scale range −1..1 as decoded files are (see
    /// [`crate::audio::decode`]), so one huge value cannot set the spectrogram's dB reference.
    pub fn prepare_waveform(&self, name: &str, mut samples: Vec<f32>) -> Result<PreparedAudio> {
        let started = Instant::now();
        if samples.is_empty() {
            return Err(Error::EmptyAudio { path: name.into() });
        }
        if let Some(pos) = samples.iter().position(|s| !s.is_finite()) {
            return Err(Error::NonFiniteSamples {
                path: name.into(),
                first_at: pos as u64,
            });
        }
        crate::audio::clamp_full_scale(&mut samples);
        let rate = self.extractor.config().sample_rate as f64;
        if let Some(max) = self.max_duration_seconds {
            if samples.len() as f64 > max * rate {
                return Err(Error::TooLong {
                    path: name.into(),
                    max_seconds: max,
                });
            }
        }
        let mut windower = crate::audio::Windower::new(self.window)?;
        windower.push(&samples);
        windower.finish();
        let windows: Vec<_> = std::iter::from_fn(|| windower.pop()).collect();
        let mut features = vec![0f32; windows.len() * self.input.0 * self.input.1];
        let signals: Vec<&[f32]> = windows.iter().map(|w| w.samples.as_slice()).collect();
        self.log_mels_into(&signals, &mut features)?;
        Ok(PreparedAudio {
            layout: WindowLayout {
                name: name.to_string(),
                started,
                windows: windows.iter().map(|w| (w.start, w.real_samples)).collect(),
                samples: samples.len() as u64,
                warnings: self.too_short(samples.len() as u64).into_iter().collect(),
            },
            features,
        })
    }

    /// The verdict for a prepared source once the network has scored its windows (in order).
    pub fn verdict_from_scores(&self, layout: WindowLayout, probs: &[f32]) -> Result<Verdict> {
        if probs.len() != layout.windows.len() {
            return Err(Error::Inference(format!(
                "{} scores for the {} windows of {}",
                probs.len(),
                layout.windows.len(),
                layout.name
            )));
        }
        self.verdict_for(InFlight {
            total_windows: Some(layout.windows.len()),
            windows: layout
                .windows
                .iter()
                .zip(probs)
                .map(|(&(start, real), &p)| Some((start, real, p)))
                .collect(),
            name: layout.name,
            started: layout.started,
            samples: layout.samples,
            warnings: layout.warnings,
            error: None,
        })
    }

    /// Features of `signals` into consecutive slots of `out` (in parallel or batched, as the
    /// front-end does best).
    fn log_mels_into(&self, signals: &[&[f32]], out: &mut [f32]) -> Result<()> {
        self.extractor.compute_many(signals, out)
    }

    /// Judges one source.
    pub fn predict(&self, source: AudioSource) -> Result<Verdict> {
        let mut out = None;
        self.predict_many(std::iter::once(source), |_, r| out = Some(r));
        out.unwrap_or_else(|| Err(Error::InvalidArgument("no result produced".into())))
    }

    /// Judges many sources, sharing batches between them; `done(i, result)` is called once per
    /// source, in input order.
    pub fn predict_many<I, F>(&self, sources: I, mut done: F)
    where
        I: IntoIterator<Item = AudioSource>,
        F: FnMut(usize, Result<Verdict>),
    {
        let mut files: VecDeque<InFlight> = VecDeque::new();
        let mut first_slot = 0usize; // index of files[0]
        let mut batch: Vec<Queued> = Vec::with_capacity(self.batch_size);
        let mut feats = vec![0f32; self.batch_size * self.input.0 * self.input.1];

        for (idx, source) in sources.into_iter().enumerate() {
            let name = source_name(&source);
            files.push_back(InFlight {
                name,
                started: Instant::now(),
                windows: Vec::new(),
                total_windows: None,
                samples: 0,
                warnings: Vec::new(),
                error: None,
            });
            let slot = idx;
            match self.open_windows(source) {
                Err(e) => files.back_mut().map_or((), |f| f.error = Some(e)),
                Ok(mut stream) => loop {
                    match stream.next_window() {
                        Ok(Some(w)) => {
                            if let Some(f) = files.back_mut() {
                                f.windows.push(None);
                            }
                            batch.push(Queued {
                                slot,
                                start: w.start,
                                real: w.real_samples,
                                samples: w.samples,
                            });
                            if batch.len() == self.batch_size {
                                self.run_batch(&mut batch, &mut feats, &mut files, first_slot);
                                self.emit_ready(&mut files, &mut first_slot, &mut done);
                            }
                        }
                        Ok(None) => {
                            if let Some(f) = files.back_mut() {
                                f.total_windows = Some(f.windows.len());
                                f.samples = stream.samples_seen();
                                f.warnings = self.input_warnings(&stream, f.samples);
                            }
                            break;
                        }
                        Err(e) => {
                            if let Some(f) = files.back_mut() {
                                f.error = Some(e);
                            }
                            // Its queued windows would only be scored for nothing.
                            batch.retain(|q| q.slot != slot);
                            break;
                        }
                    }
                },
            }
            self.emit_ready(&mut files, &mut first_slot, &mut done);
        }
        if !batch.is_empty() {
            self.run_batch(&mut batch, &mut feats, &mut files, first_slot);
        }
        self.emit_ready(&mut files, &mut first_slot, &mut done);
    }

    /// Features + network for the queued windows; results go into their files' slots.
    fn run_batch(
        &self,
        batch: &mut Vec<Queued>,
        feats: &mut [f32],
        files: &mut VecDeque<InFlight>,
        first_slot: usize,
    ) {
        let n = batch.len();
        let used = &mut feats[..n * self.input.0 * self.input.1];
        let signals: Vec<&[f32]> = batch.iter().map(|q| q.samples.as_slice()).collect();
        let extracted = self.log_mels_into(&signals, used);
        let scored = extracted.and_then(|_| self.score_log_mels(used, n));
        match scored {
            Ok(probs) => {
                for (q, p) in batch.iter().zip(probs) {
                    let Some(i) = q.slot.checked_sub(first_slot) else {
                        continue;
                    };
                    if let Some(f) = files.get_mut(i) {
                        if let Some(w) = f.windows.iter_mut().find(|w| w.is_none()) {
                            *w = Some((q.start, q.real, p));
                        }
                    }
                }
            }
            Err(e) => {
                // A failure of the network itself fails every file that had windows in the batch.
                let msg = e.to_string();
                for q in batch.iter() {
                    let Some(i) = q.slot.checked_sub(first_slot) else {
                        continue;
                    };
                    if let Some(f) = files.get_mut(i) {
                        if f.error.is_none() {
                            f.error =
                                Some(Error::InvalidArgument(format!("inference failed: {msg}")));
                        }
                    }
                }
            }
        }
        batch.clear();
    }

    /// Emits, in order, every leading file that is finished (all windows scored, or failed).
    fn emit_ready<F: FnMut(usize, Result<Verdict>)>(
        &self,
        files: &mut VecDeque<InFlight>,
        first_slot: &mut usize,
        done: &mut F,
    ) {
        while let Some(f) = files.front() {
            let complete = f.error.is_some()
                || (f.total_windows.is_some() && f.windows.iter().all(|w| w.is_some()));
            if !complete {
                break;
            }
            let Some(f) = files.pop_front() else { break };
            let result = match f.error {
                Some(e) => Err(e),
                None => self.verdict_for(f),
            };
            done(*first_slot, result);
            *first_slot += 1;
        }
    }

    /// Fails closed: a NaN compares as "below the threshold", so a non-finite score would read
    /// as the first label (real). No verdict is better than that one.
    fn verdict_for(&self, f: InFlight) -> Result<Verdict> {
        let rate = self.extractor.config().sample_rate as f64;
        if let Some((start, _, p)) = f.windows.iter().flatten().find(|w| !w.2.is_finite()) {
            return Err(Error::Inference(format!(
                "{}: the network scored the window at {:.1} s as {p}; no verdict is given",
                f.name,
                *start as f64 / rate
            )));
        }
        let windows = f
            .windows
            .into_iter()
            .flatten()
            .map(|(start, real, p)| WindowVerdict {
                start: start as f64 / rate,
                end: (start + real as u64) as f64 / rate,
                fake_probability: p,
            })
            .collect();
        let name = std::path::Path::new(&f.name)
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or(f.name);
        let mut verdict = Verdict::from_windows(
            name,
            f.samples as f64 / rate,
            windows,
            &self.model.manifest,
            self.aggregation,
            self.threshold,
            f.started.elapsed().as_secs_f64(),
        );
        verdict.warnings = f.warnings;
        Ok(verdict)
    }

    /// What an exhausted stream of `samples` (at the model's rate) warns about.
    fn input_warnings(&self, stream: &AudioWindows, samples: u64) -> Vec<Warning> {
        let mut out = Vec::new();
        if let Some((declared, held)) = stream.truncation() {
            let rate = f64::from(stream.source_sample_rate());
            out.push(Warning {
                code: "truncated".into(),
                message: format!(
                    "the file's header declares {:.2} s of audio but it holds {:.2} s; it was \
                     probably cut off, and only what it holds was judged",
                    declared as f64 / rate,
                    held as f64 / rate
                ),
            });
        }
        out.extend(self.too_short(samples));
        out
    }

    /// A `too_short` warning when `samples` (at the model's rate) are under
    /// [`MIN_RELIABLE_SECONDS`].
    fn too_short(&self, samples: u64) -> Option<Warning> {
        let seconds = samples as f64 / f64::from(self.extractor.config().sample_rate);
        (seconds < MIN_RELIABLE_SECONDS).then(|| Warning {
            code: "too_short".into(),
            message: format!(
                "only {seconds:.3} s of audio; verdicts on less than {MIN_RELIABLE_SECONDS} s \
                 are unreliable"
            ),
        })
    }
}
