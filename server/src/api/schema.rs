//! Request and response bodies that exist only in the HTTP API (the verdict and the prediction
//! log's records live with the library). Typed rather than `json!` so that the OpenAPI document
//! is generated from the same definitions the handlers serialise.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::store::{PredictionRecord, StoreStatus};

/// The error envelope of every failed request.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What failed.
    pub error: ErrorDetail,
}

/// A failure: a stable code for programs, a message for people.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code (`audio_too_long`, `overloaded`, `unauthorized`, ...).
    #[schema(example = "audio_too_long")]
    pub code: String,
    /// What went wrong and what to do about it.
    pub message: String,
}

/// The model `/health` reports.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthModel {
    /// Manifest name.
    pub name: String,
    /// Manifest version.
    pub version: String,
    /// Architecture name.
    pub architecture: String,
    /// The registry alias being followed (only when serving `models:/NAME@ALIAS`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registry: Option<super::model_watch::RegistryStatus>,
}

/// `GET /health`: liveness plus what an operator wants at a glance.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `"healthy"` when the process answers.
    #[schema(example = "healthy")]
    pub status: &'static str,
    /// The model being served.
    pub model: HealthModel,
    /// Compute device (`cpu`, `cuda:0`).
    pub device: String,
    /// Whether the warm-up inference has run.
    pub ready: bool,
    /// Seconds since start.
    pub uptime_seconds: f64,
    /// Prediction requests being handled now.
    pub in_flight: i64,
    /// Windows waiting for the network.
    pub queued_windows: usize,
    /// The prediction log (backend `disabled` with `--no-store`).
    pub store: StoreStatus,
    /// Server version.
    pub version: &'static str,
}

/// `GET /ready`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ready {
    /// True once the model is loaded and warm.
    pub ready: bool,
}

/// `GET /predictions`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PredictionsPage {
    /// Records returned.
    pub count: usize,
    /// The records.
    pub predictions: Vec<PredictionRecord>,
}

/// The multipart form of `POST /predict` (the original service's request).
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // Describes the form for the OpenAPI document; the handler streams it.
pub struct PredictUpload {
    /// The audio file: WAV, FLAC, MP3, OGG/Vorbis or M4A/AAC.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    pub audio: Vec<u8>,
}

/// Query of `POST /predict`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PredictQuery {
    /// Name of a raw-body upload (multipart uploads carry their own file name).
    pub filename: Option<String>,
    /// `spectrogram`: also return the log-mel the network saw (first 8 windows), for display.
    pub include: Option<String>,
}

/// Query of `GET /predictions`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PredictionsQuery {
    /// At most this many records (1–1000, default 10).
    pub limit: Option<usize>,
    /// Only records at or after this time (RFC 3339).
    pub since: Option<String>,
    /// Only records with this label (`real` or `fake`).
    pub prediction: Option<String>,
}
