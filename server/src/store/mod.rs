//! The prediction log: one record per judged upload, and the aggregates `/statistics` shows.
//!
//! Backends sit behind [`PredictionStore`] so the HTTP layer does not care where records go: the
//! embedded SQLite store ([`sqlite::SqliteStore`], no server needed, the default) and MongoDB
//! ([`mongo::MongoStore`]). Statistics are computed by the database (SQL or an aggregation
//! pipeline), never by loading every record.
//!
//! A networked backend is wrapped in a [`durable::DurableLog`]: when the database is unreachable,
//! records go to an on-disk [`spool::Spool`] and are replayed, in order and exactly once, when it
//! comes back — predictions never fail or wait because the log is down.

pub mod durable;
pub mod mongo;
pub mod spool;
pub mod sqlite;

use serde::{Deserialize, Serialize};

use crate::verdict::WindowVerdict;

/// Errors of a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database rejected or failed an operation (retrying the same call will not help).
    #[error("prediction store: {0}")]
    Backend(String),
    /// The database could not be reached in time (retrying later may help; writes are spooled).
    #[error("prediction store unavailable: {0}")]
    Unavailable(String),
    /// The on-disk spool could not keep a record.
    #[error(transparent)]
    Spool(#[from] spool::SpoolError),
}

/// One logged prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
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

/// What `/health` says about the prediction log.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct StoreStatus {
    /// Backend name (`"sqlite"`, `"mongodb"`).
    #[schema(value_type = String, example = "sqlite")]
    pub backend: &'static str,
    /// `"ok"`, or `"degraded"` while records wait in the spool for the database.
    #[schema(value_type = String, example = "ok")]
    pub state: &'static str,
    /// Records waiting in the on-disk spool.
    pub spooled: u64,
    /// Records the database refused for good, kept in the spool folder's `rejected.jsonl`.
    pub set_aside: u64,
}

/// A place to log predictions.
pub trait PredictionStore: Send + Sync {
    /// Short backend name for `/health` (`"sqlite"`, ...).
    fn backend(&self) -> &'static str;
    /// Appends one record.
    fn insert(&self, record: &PredictionRecord) -> Result<(), StoreError> {
        self.insert_batch(std::slice::from_ref(record))
    }
    /// Appends records in order. A record whose request id is already stored is skipped, so
    /// replaying a batch after an ambiguous failure (written, but the answer was lost) never
    /// doubles it: this is what makes the spool's replay exactly-once.
    fn insert_batch(&self, records: &[PredictionRecord]) -> Result<(), StoreError>;
    /// Newest records matching `q`.
    fn recent(&self, q: &RecentQuery) -> Result<Vec<PredictionRecord>, StoreError>;
    /// Aggregates over the whole log.
    fn statistics(&self) -> Result<Statistics, StoreError>;
    /// Health for `/health` and the metrics; a plain backend is always `ok` with nothing spooled.
    fn status(&self) -> StoreStatus {
        StoreStatus {
            backend: self.backend(),
            state: "ok",
            spooled: 0,
            set_aside: 0,
        }
    }
    /// Writes out whatever is buffered (called once at shutdown, bounded by `deadline`).
    fn flush(&self, deadline: std::time::Duration) {
        let _ = deadline;
    }
}

/// A plain record for the store tests (one shape shared by every backend's tests).
#[cfg(test)]
pub(crate) fn sample_record(id: &str, timestamp: &str) -> PredictionRecord {
    PredictionRecord {
        request_id: id.into(),
        filename: format!("{id}.wav"),
        sha256: "ab".repeat(32),
        prediction: "real".into(),
        probability: 0.9,
        confidence: 0.8,
        fake_probability: 0.1,
        windows: vec![],
        model_name: "m".into(),
        model_version: "1".into(),
        duration_seconds: 1.0,
        processing_time_seconds: 0.1,
        client: None,
        timestamp: timestamp.into(),
    }
}
