//! The prediction log: one record per judged upload, and the aggregates `/statistics` shows.
//!
//! Backends sit behind [`PredictionStore`] so the HTTP layer does not care where records go. This
//! build has the embedded SQLite store ([`sqlite::SqliteStore`], no server needed); statistics
//! are computed by the database (SQL aggregation), never by loading every record.

pub mod sqlite;

use serde::{Deserialize, Serialize};

use crate::verdict::WindowVerdict;

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database rejected or failed an operation.
    #[error("prediction store: {0}")]
    Backend(String),
}

/// One logged prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionRecord {
    /// Request id (also in the verdict).
    pub request_id: String,
    /// Upload name.
    pub filename: String,
    /// SHA-256 of the uploaded bytes (hex).
    pub sha256: String,
    /// Predicted label.
    pub prediction: String,
    /// Probability of the predicted label.
    pub probability: f32,
    /// `|2p − 1|`.
    pub confidence: f32,
    /// Aggregated probability of "fake".
    pub fake_probability: f32,
    /// Per-window scores.
    pub windows: Vec<WindowVerdict>,
    /// Model name.
    pub model_name: String,
    /// Model version.
    pub model_version: String,
    /// Audio length, seconds.
    pub duration_seconds: f64,
    /// Time to judge, seconds.
    pub processing_time_seconds: f64,
    /// Client address as seen by the server.
    pub client: Option<String>,
    /// When (RFC 3339, UTC).
    pub timestamp: String,
}

/// Filter of `GET /predictions`.
#[derive(Debug, Clone, Default)]
pub struct RecentQuery {
    /// At most this many, newest first.
    pub limit: usize,
    /// Only records at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Only this label.
    pub prediction: Option<String>,
}

/// What `GET /statistics` reports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Statistics {
    /// Records in the log.
    pub total_predictions: u64,
    /// Records labelled real.
    pub real_count: u64,
    /// Records labelled fake.
    pub fake_count: u64,
    /// `fake_count / total` (0 when empty).
    pub fake_ratio: f64,
    /// Mean confidence (0 when empty).
    pub mean_confidence: f64,
    /// Mean processing time, seconds (0 when empty).
    pub mean_processing_time_seconds: f64,
    /// Records per `name@version`.
    pub by_model_version: std::collections::BTreeMap<String, u64>,
    /// Records per UTC day (`YYYY-MM-DD`).
    pub by_day: std::collections::BTreeMap<String, u64>,
}

/// A place to log predictions.
pub trait PredictionStore: Send + Sync {
    /// Short backend name for `/health` (`"sqlite"`, ...).
    fn backend(&self) -> &'static str;
    /// Appends one record.
    fn insert(&self, record: &PredictionRecord) -> Result<(), StoreError>;
    /// Newest records matching `q`.
    fn recent(&self, q: &RecentQuery) -> Result<Vec<PredictionRecord>, StoreError>;
    /// Aggregates over the whole log.
    fn statistics(&self) -> Result<Statistics, StoreError>;
}
