//! Log-mel features, numerically equal to librosa's.
//!
//! `librosa.power_to_db(librosa.feature.melspectrogram(y, sr=16000, n_mels=128, fmax=8000), ref=np.max)`
//! is what the original service fed its CNN, so it is what an imported model expects. The
//! pieces: [`filterbank`] builds librosa's Slaney mel filters once (sparse, since each FFT bin
//! feeds at most two filters), [`logmel`] runs the centred STFT with a reusable real-FFT plan and
//! turns power into decibels.
//!
//! A second front-end, [`LOG_LINEAR`], runs the very same code with triangles spaced evenly in
//! hertz instead of mels: synthesis artefacts sit high in the spectrum, where 128 mel bands
//! below 8 kHz are 250 Hz wide and 128 linear ones 62 Hz. A manifest names its front-end in
//! `features.kind`, so training and serving always compute the same one.

pub mod decibels;
pub mod filterbank;
pub mod frontend;
pub mod logmel;
pub mod power_spectrum;

pub use filterbank::MelFilterBank;
pub use frontend::FrontEnd;
pub use logmel::{LogMelExtractor, LogMelScratch};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// `features.kind` of librosa's log-mel (what the original service and its models use).
pub const LOG_MEL: &str = "log-mel";
/// `features.kind` of the linear-frequency variant: `n_mels` triangles evenly spaced in hertz
/// between `fmin` and `fmax`, otherwise computed exactly like [`LOG_MEL`].
pub const LOG_LINEAR: &str = "log-linear";

/// `features.kind` of the pretrained-encoder front-end: Whisper's own log-mel through a frozen
/// Whisper encoder ([`crate::whisper`]), summarised per layer. Needs `features.encoder`.
pub const WHISPER: &str = "whisper";

/// A pretrained encoder a front-end depends on, pinned so that a different or damaged file is
/// refused instead of silently producing different features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderRef {
    /// Name in the encoder store (`auralguard encoder list`), e.g. `whisper-tiny.en`.
    pub name: String,
    /// sha256 of the converted `whisper.safetensors`.
    pub sha256: String,
    /// Transformer blocks of the encoder (the head sees `layers + 1` states).
    pub layers: usize,
    /// Width of the encoder's states.
    pub d_model: usize,
}

/// Parameters of the spectral front-end; stored in every model manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureConfig {
    /// [`LOG_MEL`] (librosa-exact) or [`LOG_LINEAR`] (the same with linear band spacing).
    pub kind: String,
    /// Sample rate the features are computed at (Hz).
    pub sample_rate: u32,
    /// FFT size (librosa `n_fft`).
    pub n_fft: usize,
    /// Hop between frames (librosa `hop_length`).
    pub hop_length: usize,
    /// Number of bands (mel bands, or linear ones for [`LOG_LINEAR`]).
    pub n_mels: usize,
    /// Lowest filter edge (Hz).
    pub fmin: f64,
    /// Highest filter edge (Hz).
    pub fmax: f64,
    /// Clamp for power before taking logs (librosa `amin`).
    pub amin: f32,
    /// Dynamic range kept below the loudest bin, in dB (librosa `top_db`); `None` keeps all.
    pub top_db: Option<f32>,
    /// The pretrained encoder of a [`WHISPER`] front-end; absent for the spectral ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder: Option<EncoderRef>,
}

impl Default for FeatureConfig {
    fn default() -> Self {
        Self {
            kind: LOG_MEL.into(),
            sample_rate: 16_000,
            n_fft: 2048,
            hop_length: 512,
            n_mels: 128,
            fmin: 0.0,
            fmax: 8000.0,
            amin: 1e-10,
            top_db: Some(80.0),
            encoder: None,
        }
    }
}

impl FeatureConfig {
    /// Checks the parameters are usable, naming the offending field.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, why: &str| {
            Err(Error::InvalidArgument(format!("features.{field}: {why}")))
        };
        if self.kind != LOG_MEL && self.kind != LOG_LINEAR && self.kind != WHISPER {
            return bad("kind", "must be \"log-mel\", \"log-linear\" or \"whisper\"");
        }
        match (self.kind == WHISPER, &self.encoder) {
            (true, None) => return bad("encoder", "the whisper front-end needs one"),
            (false, Some(_)) => return bad("encoder", "only the whisper front-end takes one"),
            (true, Some(e)) if e.sha256.len() != 64 => {
                return bad("encoder.sha256", "must be 64 hex digits")
            }
            _ => {}
        }
        if self.kind == WHISPER
            && (self.sample_rate != crate::whisper::mel::SAMPLE_RATE
                || self.n_fft != crate::whisper::mel::N_FFT
                || self.hop_length != crate::whisper::mel::HOP)
        {
            return bad(
                "kind",
                "the whisper front-end runs at 16000 Hz with n_fft 400 and hop_length 160",
            );
        }
        // Upper bounds too: a manifest may come from a registry, and every size here is
        // allocated per window and per batch slot.
        if !(4_000..=96_000).contains(&self.sample_rate) {
            return bad("sample_rate", "must be between 4000 and 96000 Hz");
        }
        if self.n_fft < 2 || !self.n_fft.is_multiple_of(2) || self.n_fft > 16_384 {
            return bad("n_fft", "must be an even number from 2 to 16384");
        }
        if self.hop_length == 0 || self.hop_length > self.n_fft {
            return bad("hop_length", "must be between 1 and n_fft");
        }
        if self.n_mels == 0 || self.n_mels > 1024 {
            return bad("n_mels", "must be between 1 and 1024");
        }
        if let Some(e) = &self.encoder {
            if e.layers == 0 || e.layers > 64 || e.d_model == 0 || e.d_model > 4096 {
                return bad(
                    "encoder",
                    "layers must be between 1 and 64 and d_model between 1 and 4096",
                );
            }
        }
        if !(self.fmin >= 0.0
            && self.fmax > self.fmin
            && self.fmax <= self.sample_rate as f64 / 2.0)
        {
            return bad("fmax", "need 0 ≤ fmin < fmax ≤ sample_rate / 2");
        }
        if self.amin.is_nan() || self.amin <= 0.0 {
            return bad("amin", "must be positive");
        }
        if let Some(t) = self.top_db {
            if t.is_nan() || t < 0.0 {
                return bad("top_db", "must be non-negative");
            }
        }
        Ok(())
    }

    /// Frames produced for a window of `samples` samples (centred STFT).
    pub fn frames_for(&self, samples: usize) -> usize {
        1 + samples / self.hop_length
    }

    /// Shape `(rows, columns)` of one window's features: `(n_mels, frames)` for the spectral
    /// front-ends, `(2·(layers + 1), d_model)` (per-layer means and deviations) for Whisper.
    pub fn output_shape(&self, samples: usize) -> (usize, usize) {
        match &self.encoder {
            Some(e) if self.kind == WHISPER => (2 * (e.layers + 1), e.d_model),
            _ => (self.n_mels, self.frames_for(samples)),
        }
    }
}
