//! The HTTP API (`auralguard serve`): the original service's routes plus readiness and metrics.
//!
//! HTTP code never touches tensors: handlers turn requests into [`AudioSource`]s, take a permit
//! from a bounded semaphore (no permit → immediate 503 with `Retry-After`, so overload never
//! becomes unbounded memory), and run the [`Detector`] on the blocking thread pool. Errors are
//! mapped to `{"error": {"code", "message"}}` in exactly one place ([`error`]).
//!
//! [`AudioSource`]: crate::audio::AudioSource
//! [`Detector`]: crate::pipeline::Detector

pub mod error;
pub mod metrics;
pub mod oip;
pub mod routes;
pub mod serve;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::pipeline::Detector;

pub use serve::{serve, ServeConfig};

/// Limits a deployment sets (flags with env fallbacks in the CLI).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted upload, bytes.
    pub max_upload_bytes: usize,
    /// Longest accepted audio, seconds.
    pub max_audio_seconds: f64,
    /// Requests judged at once; more get 503.
    pub max_concurrent: usize,
    /// Wall-clock budget of one prediction.
    pub request_timeout: Duration,
}

/// Everything the handlers share, built once at start-up.
pub struct AppState {
    /// The loaded model and its front-end.
    pub detector: Arc<Detector>,
    /// Deployment limits.
    pub limits: Limits,
    /// Permits for in-flight predictions.
    pub permits: Arc<Semaphore>,
    /// Prometheus metrics.
    pub metrics: metrics::Metrics,
    /// Set once the warm-up inference has run.
    pub ready: AtomicBool,
    /// Process start, for `/health`'s uptime.
    pub started: Instant,
    /// Device the model runs on, for `/health`.
    pub device: String,
    /// The prediction log, when enabled.
    pub store: Option<Arc<dyn crate::store::PredictionStore>>,
}
