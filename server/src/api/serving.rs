//! The model a request is judged with, and how it is replaced while requests are in flight.
//!
//! A [`Serving`] is one loaded [`Detector`] together with the [`Batcher`] whose worker owns its
//! network: features made by a model's front-end are only ever scored by that same model, even
//! when a new version (with other feature or window settings) takes over mid-request. Each
//! request takes an `Arc<Serving>` from the [`ModelSlot`] once, at its start, and keeps it to the
//! end; a swap only changes what later requests get. The old batcher's worker finishes what is
//! queued and exits when the last request holding it is done, so a swap fails no request.
//!
//! The queue bound (`--max-queue-windows`) is per [`Serving`]: for the moments while the old
//! version drains, the two queues together may hold up to twice the bound, and the queue gauge
//! and `/health` show the new one. Each batcher stays self-contained that way; the overshoot
//! is bounded (one extra queue) and lasts only until the old one drains.

use std::sync::{Arc, RwLock};

use axum::http::StatusCode;

use super::error::ApiError;
use super::metrics::Metrics;
use crate::batcher::{BatchReport, Batcher, BatchingConfig, SubmitError};
use crate::error::Result;
use crate::pipeline::Detector;

/// One model version being served: the detector and the queue in front of its network.
pub struct Serving {
    /// The loaded model and its front-end.
    pub detector: Arc<Detector>,
    /// The network's queue, shared by every request judged with this model.
    batcher: Batcher,
}

impl Serving {
    /// Starts the batching worker for `detector`, reporting batch metrics into `metrics`.
    pub fn start(detector: Detector, batching: BatchingConfig, metrics: &Metrics) -> Result<Self> {
        let detector = Arc::new(detector);
        let (windows, requests, wait) = (
            metrics.batch_windows.clone(),
            metrics.batch_requests.clone(),
            metrics.queue_wait_seconds.clone(),
        );
        let batcher = Batcher::start(detector.clone(), batching, move |r: BatchReport| {
            windows.observe(r.windows as f64);
            requests.observe(r.jobs as f64);
            wait.observe(r.oldest_wait.as_secs_f64());
        })?;
        Ok(Self { detector, batcher })
    }

    /// Windows waiting for this model's network.
    pub fn queued_windows(&self) -> usize {
        self.batcher.queued_windows()
    }

    /// Scores `windows` log-mels laid end to end (made by this model's front-end).
    pub async fn score(
        &self,
        metrics: &Metrics,
        features: Vec<f32>,
        windows: usize,
    ) -> std::result::Result<Vec<f32>, ApiError> {
        let rx = self
            .batcher
            .submit(features, windows)
            .map_err(|e| match e {
                SubmitError::QueueFull { .. } => {
                    metrics.overloaded.inc();
                    ApiError::queue_full(e.to_string())
                }
                SubmitError::Stopped => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting_down",
                    e.to_string(),
                ),
            })?;
        let scores = rx.await.map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the inference worker dropped the request",
            )
        })?;
        Ok(scores?)
    }
}

/// Holds the [`Serving`] new requests get; replaced whole by a model update.
pub struct ModelSlot {
    current: RwLock<Arc<Serving>>,
}

impl ModelSlot {
    /// A slot serving `first`.
    pub fn new(first: Serving) -> Self {
        Self {
            current: RwLock::new(Arc::new(first)),
        }
    }

    /// The model to judge a new request with (keep it for the whole request).
    pub fn get(&self) -> Arc<Serving> {
        // A poisoned lock only means a panic elsewhere while swapping an Arc; the Arc inside
        // is always whole, so keep serving it.
        match self.current.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Makes `next` the model for new requests; returns the one it replaced (still finishing
    /// the requests that hold it).
    pub fn replace(&self, next: Serving) -> Arc<Serving> {
        let next = Arc::new(next);
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        std::mem::replace(&mut *guard, next)
    }
}
