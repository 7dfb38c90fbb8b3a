//! The HTTP API (`auralguard serve`): the original service's routes plus readiness and metrics.
//!
//! HTTP code never touches tensors: handlers turn requests into [`AudioSource`]s, take a permit
//! from a bounded semaphore (no permit → immediate 503 with `Retry-After`), decode and featurise
//! on the blocking thread pool with the [`Detector`], then queue the log-mels on the cross-request
//! [`Batcher`] (full queue → 503 too), so overload never becomes unbounded memory. Errors are
//! mapped to `{"error": {"code", "message"}}` in exactly one place ([`error`]). The model
//! itself sits in a [`serving::ModelSlot`], so a registry update ([`model_watch`]) can replace it
//! while requests are in flight.
//!
//! [`AudioSource`]: crate::audio::AudioSource
//! [`Detector`]: crate::pipeline::Detector
//! [`Batcher`]: crate::batcher::Batcher

pub mod auth;
pub mod error;
pub mod listener;
pub mod metrics;
pub mod model_watch;
pub mod oip;
pub mod oip_tensor;
pub mod openapi;
pub mod routes;
pub mod schema;
pub mod serve;
pub mod serving;
pub mod upload_guard;
pub mod web;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

pub use serve::{serve, ServeConfig};

/// Limits a deployment sets (flags with env fallbacks in the CLI).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest accepted upload, bytes.
    pub max_upload_bytes: usize,
    /// Longest accepted audio, seconds.
    pub max_audio_seconds: f64,
    /// Requests decoded and featurised at once; more get 503.
    pub max_concurrent: usize,
    /// Wall-clock budget of one prediction.
    pub request_timeout: Duration,
    /// Most windows one OIP `log_mel` tensor may carry (the inference queue's size: a bigger
    /// one could never be queued fairly).
    pub max_tensor_windows: usize,
}

/// Everything the handlers share, built once at start-up.
pub struct AppState {
    /// The model (and its queue) new requests are judged with; replaced by model updates.
    pub slot: serving::ModelSlot,
    /// The registry alias being followed, when serving `models:/NAME@ALIAS`.
    pub registry_status: Option<model_watch::WatchState>,
    /// Deployment limits.
    pub limits: Limits,
    /// Permits for requests being decoded and featurised.
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
    /// Key every non-probe route requires, when set.
    pub api_key: Option<String>,
    /// Pace and buffer budget of request bodies.
    pub uploads: upload_guard::UploadGuard,
    /// Answer a prediction whose log record could not be kept (with a `not_logged` warning)
    /// instead of refusing it with 503.
    pub serve_unlogged: bool,
}

/// Reads and drops up to `limit` bytes of a body, so that a client still uploading reads a clean
/// refusal (401, 503) instead of a connection closed under its upload.
pub(crate) async fn drain(body: axum::body::Body, limit: usize) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut seen = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Some(data) = frame.data_ref() {
            seen += data.len();
            if seen > limit {
                break;
            }
        }
    }
}
