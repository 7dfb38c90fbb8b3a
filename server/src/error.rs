//! The crate's single error type.
//!
//! Every failure a caller can act on has its own variant and a stable machine-readable
//! [`Error::code`], so the CLI, the HTTP layer and tests can tell "this file is not audio" from
//! "this model package is broken" without parsing messages. Messages always name the file or
//! field at fault, because the user who reads them usually has many of both.

use std::path::{Path, PathBuf};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong between an audio file and a verdict.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be opened or read at the OS level.
    #[error("{path}: cannot read: {source}")]
    Io {
        /// File involved.
        path: PathBuf,
        /// Underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a container/codec we can decode (or not audio at all).
    #[error("{path}: unsupported or unrecognised audio format: {reason}")]
    UnsupportedFormat {
        /// File involved.
        path: PathBuf,
        /// What the demuxer or decoder said.
        reason: String,
    },
    /// The file is audio but its content is damaged (corrupt packets, truncated stream).
    #[error("{path}: corrupt audio: {reason}")]
    CorruptAudio {
        /// File involved.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The file decoded to zero samples.
    #[error("{path}: the audio contains no samples")]
    EmptyAudio {
        /// File involved.
        path: PathBuf,
    },
    /// Decoded samples include NaN or infinity, which would poison every feature downstream.
    #[error("{path}: the audio contains non-finite (NaN or infinite) samples, the first at sample {first_at}")]
    NonFiniteSamples {
        /// File involved.
        path: PathBuf,
        /// Index (at the native rate, mono) of the first bad sample.
        first_at: u64,
    },
    /// The audio is longer than the caller allowed.
    #[error("{path}: the audio lasts more than the allowed {max_seconds} s")]
    TooLong {
        /// File involved.
        path: PathBuf,
        /// Limit that was exceeded.
        max_seconds: f64,
    },
    /// A sample rate outside what any real recording uses; refused before a resampler is built,
    /// because rubato's plan grows with the rate and a forged header could ask for gigabytes.
    #[error("{path}: a sample rate of {hz} Hz is not accepted (accepted: {min} to {max} Hz)")]
    UnsupportedSampleRate {
        /// The source.
        path: PathBuf,
        /// The declared rate.
        hz: u32,
        /// Lowest accepted rate.
        min: u32,
        /// Highest accepted rate.
        max: u32,
    },
    /// Resampling failed (bad rate, internal resampler error).
    #[error("resampling from {from_hz} Hz to {to_hz} Hz failed: {reason}")]
    Resample {
        /// Source rate.
        from_hz: u32,
        /// Target rate.
        to_hz: u32,
        /// Resampler's explanation.
        reason: String,
    },
    /// A model package's manifest is missing, malformed, or says something we do not support.
    #[error("{path}: invalid model manifest: {reason}")]
    Manifest {
        /// Manifest file.
        path: PathBuf,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The manifest names an architecture this build does not know.
    #[error("unknown model architecture '{name}' (known: {known})")]
    UnknownArchitecture {
        /// Requested name.
        name: String,
        /// Comma-separated list of supported names.
        known: String,
    },
    /// Weights are missing, have the wrong shape, or the safetensors file is damaged.
    #[error("{path}: invalid model weights: {reason}")]
    Weights {
        /// Weights file.
        path: PathBuf,
        /// What is wrong, naming the tensor.
        reason: String,
    },
    /// A Keras `.h5`/`.keras` file could not be converted.
    #[error("{path}: cannot import Keras model: {reason}")]
    KerasImport {
        /// Source file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A pretrained speech encoder (the Whisper front-end) is missing, tampered with or malformed.
    #[error("{path}: speech encoder unusable: {reason}")]
    Encoder {
        /// Encoder file or source package.
        path: PathBuf,
        /// What is wrong, and how to fix it where that is known.
        reason: String,
    },
    /// The requested compute device is not available in this build or on this machine.
    #[error("device '{device}' is not available: {reason}")]
    Device {
        /// Device spelling given by the user.
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A caller-supplied parameter is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The network failed on a batch shared with other requests (the cause is reported as text
    /// because one failure is handed to every request in the batch).
    #[error("inference failed: {0}")]
    Inference(String),
    /// A tensor operation failed inside candle.
    #[error("tensor computation failed: {0}")]
    Tensor(#[from] candle_core::Error),

    /// The MLflow Model Registry could not resolve or deliver a `models:/` model.
    #[error("model registry: {0}")]
    Registry(#[from] mlflow_client::Error),
}

impl Error {
    /// Stable, machine-readable code of the error kind (used in JSON errors and by tests).
    pub fn code(&self) -> &'static str {
        match self {
            Error::Io { .. } => "io_error",
            Error::UnsupportedFormat { .. } => "unsupported_format",
            Error::CorruptAudio { .. } => "corrupt_audio",
            Error::EmptyAudio { .. } => "empty_audio",
            Error::NonFiniteSamples { .. } => "non_finite_samples",
            Error::TooLong { .. } => "audio_too_long",
            Error::UnsupportedSampleRate { .. } => "unsupported_sample_rate",
            Error::Resample { .. } => "resample_failed",
            Error::Manifest { .. } => "invalid_manifest",
            Error::UnknownArchitecture { .. } => "unknown_architecture",
            Error::Weights { .. } => "invalid_weights",
            Error::KerasImport { .. } => "keras_import_failed",
            Error::Encoder { .. } => "encoder_unusable",
            Error::Device { .. } => "device_unavailable",
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Inference(_) => "inference_failed",
            Error::Tensor(_) => "tensor_error",
            Error::Registry(_) => "registry_error",
        }
    }

    /// Whether the error is the caller's input being bad (as opposed to our model or machine).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::UnsupportedFormat { .. }
                | Error::CorruptAudio { .. }
                | Error::EmptyAudio { .. }
                | Error::NonFiniteSamples { .. }
                | Error::TooLong { .. }
                | Error::UnsupportedSampleRate { .. }
                | Error::InvalidArgument(_)
        )
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn manifest(path: &Path, reason: impl Into<String>) -> Self {
        Error::Manifest {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn encoder(path: &Path, reason: impl Into<String>) -> Self {
        Error::Encoder {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn weights(path: &Path, reason: impl Into<String>) -> Self {
        Error::Weights {
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }
}
