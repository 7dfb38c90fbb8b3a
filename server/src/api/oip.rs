//! KServe Open Inference Protocol (v2) routes, so KServe and Triton clients work unchanged.
//!
//! One model is served, under its manifest name. Two inputs are accepted:
//! `waveform` — `FP32 [1, N]`, mono at the model's sample rate (windowed like any upload) — and
//! `log_mel` — `FP32 [B, 128, 469]`, features already computed (the network alone). Outputs are
//! `fake_probability` (`[1]` for a waveform, `[B]` for log-mels) and, for a waveform,
//! `window_fake_probability` (`[W]`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ApiError;
use super::oip_tensor::{self, InferRequest, Input, InputBounds};
use super::schema::{ErrorBody, Ready};
use super::AppState;

/// One output tensor.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Tensor {
    /// `fake_probability` or `window_fake_probability`.
    pub name: String,
    /// Shape.
    pub shape: Vec<i64>,
    /// Element type: `FP32`.
    #[schema(example = "FP32")]
    pub datatype: String,
    /// Values.
    pub data: Vec<f32>,
}

/// An inference response.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponse {
    /// The model's name.
    pub model_name: String,
    /// The model's version.
    pub model_version: String,
    /// The request's `id`, if it had one.
    pub id: Option<String>,
    /// `fake_probability`, and `window_fake_probability` for a waveform.
    pub outputs: Vec<Tensor>,
}

/// `GET /v2`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetadata {
    /// `auralguard`.
    pub name: &'static str,
    /// Server version.
    pub version: &'static str,
    /// Protocol extensions (none).
    pub extensions: Vec<String>,
}

/// `GET /v2/health/live`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Live {
    /// Always true when the process answers.
    pub live: bool,
}

/// Name, type and shape of a model input or output.
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorMetadata {
    /// Tensor name.
    pub name: &'static str,
    /// Element type.
    pub datatype: &'static str,
    /// Shape; `-1` is any size.
    pub shape: Vec<i64>,
}

/// `GET /v2/models/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    /// The model's name.
    pub name: String,
    /// The one version served.
    pub versions: Vec<String>,
    /// `auralguard_candle`.
    pub platform: &'static str,
    /// Accepted inputs (send one).
    pub inputs: Vec<TensorMetadata>,
    /// Produced outputs.
    pub outputs: Vec<TensorMetadata>,
}

/// A named FP32 output tensor.
fn output(name: &str, data: Vec<f32>) -> Tensor {
    Tensor {
        name: name.into(),
        shape: vec![data.len() as i64],
        datatype: "FP32".into(),
        data,
    }
}

/// Server metadata.
#[utoipa::path(
    get,
    path = "/v2",
    operation_id = "oip_server_metadata",
    tag = "oip",
    responses((status = 200, description = "Server metadata", body = ServerMetadata))
)]
pub async fn server_metadata() -> Json<ServerMetadata> {
    Json(ServerMetadata {
        name: "auralguard",
        version: env!("CARGO_PKG_VERSION"),
        extensions: Vec::new(),
    })
}

/// Liveness.
#[utoipa::path(
    get,
    path = "/v2/health/live",
    operation_id = "oip_server_live",
    tag = "oip",
    security(()),
    responses((status = 200, description = "Alive", body = Live))
)]
pub async fn live() -> Json<Live> {
    Json(Live { live: true })
}

/// Readiness of the server.
#[utoipa::path(
    get,
    path = "/v2/health/ready",
    operation_id = "oip_server_ready",
    tag = "oip",
    security(()),
    responses(
        (status = 200, description = "Model loaded and warm", body = Ready),
        (status = 503, description = "Still warming up", body = Ready),
    )
)]
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.ready.load(Ordering::Acquire);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(Ready { ready })).into_response()
}

fn check_model(state: &AppState, name: &str) -> Result<(), ApiError> {
    let serving = state.slot.get();
    let m = &serving.detector.model().manifest;
    if name != m.name {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("no model '{name}' here; this server serves '{}'", m.name),
        ));
    }
    Ok(())
}

/// Readiness of the model.
#[utoipa::path(
    get,
    path = "/v2/models/{name}/ready",
    operation_id = "oip_model_ready",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name")),
    responses(
        (status = 200, description = "Model loaded and warm", body = Ready),
        (status = 404, description = "No such model here", body = ErrorBody),
        (status = 503, description = "Still warming up", body = Ready),
    )
)]
pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    check_model(&state, &name)?;
    Ok(ready(State(state)).await)
}

/// Model metadata: its inputs and outputs.
#[utoipa::path(
    get,
    path = "/v2/models/{name}",
    operation_id = "oip_model_metadata",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name")),
    responses(
        (status = 200, description = "Model metadata", body = ModelMetadata),
        (status = 404, description = "No such model here", body = ErrorBody),
    )
)]
pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<ModelMetadata>, ApiError> {
    check_model(&state, &name)?;
    let serving = state.slot.get();
    let m = &serving.detector.model().manifest;
    let (mels, frames) = m.input_shape();
    let any = |name, shape| TensorMetadata {
        name,
        datatype: "FP32",
        shape,
    };
    Ok(Json(ModelMetadata {
        name: m.name.clone(),
        versions: vec![m.version.clone()],
        platform: "auralguard_candle",
        inputs: vec![
            any("waveform", vec![1, -1]),
            any("log_mel", vec![-1, mels as i64, frames as i64]),
        ],
        outputs: vec![
            any("fake_probability", vec![-1]),
            any("window_fake_probability", vec![-1]),
        ],
    }))
}

/// Inference: a mono 16 kHz waveform (`waveform`, FP32 `[1, N]`), windowed like an upload, or
/// ready log-mels (`log_mel`, FP32 `[B, 128, 469]`) for the network alone.
#[utoipa::path(
    post,
    path = "/v2/models/{name}/infer",
    operation_id = "oip_model_infer",
    tag = "oip",
    params(("name" = String, Path, description = "The served model's name")),
    request_body = InferRequest,
    responses(
        (status = 200, description = "Fake probabilities", body = InferResponse),
        (status = 400, description = "Bad request or tensor", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "No such model here", body = ErrorBody),
        (status = 422, description = "Empty, non-finite or too long waveform", body = ErrorBody),
        (status = 503, description = "Overloaded (Retry-After is set)", body = ErrorBody),
    )
)]
pub async fn infer(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<InferResponse>, ApiError> {
    check_model(&state, &name)?;
    // The body is in (bounded by --max-upload-mb) before a permit is taken, so a slow sender
    // never holds one; parsing and validation then run on the blocking pool under the permit.
    let body = body.map_err(|e| ApiError::new(e.status(), "bad_request", e.body_text()))?;
    let Ok(permit) = state.permits.clone().try_acquire_owned() else {
        state.metrics.overloaded.inc();
        return Err(ApiError::overloaded(state.limits.max_concurrent));
    };
    let serving = state.slot.get();
    let detector = serving.detector.clone();
    let (rows, columns) = detector.model().manifest.input_shape();
    let rate = detector.extractor().config().sample_rate as f64;
    let bounds = InputBounds {
        rows,
        columns,
        max_batch: state.limits.max_tensor_windows,
        max_samples: (state.limits.max_audio_seconds * rate).floor() as usize,
    };
    let internal = |e: tokio::task::JoinError| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    };
    let (id, job) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let parsed = oip_tensor::parse(&body, &bounds)?;
        let job = match parsed.input {
            Input::Waveform(samples) => {
                Job::Waveform(detector.prepare_waveform("waveform", samples)?)
            }
            Input::Features { batch, data } => Job::Features { batch, data },
        };
        Ok::<_, ApiError>((parsed.id, job))
    })
    .await
    .map_err(internal)??;
    let outputs = match job {
        Job::Waveform(prepared) => {
            let windows = prepared.layout.windows();
            let scores = serving
                .score(&state.metrics, prepared.features, windows)
                .await?;
            let v = serving
                .detector
                .verdict_from_scores(prepared.layout, &scores)?;
            vec![
                output("fake_probability", vec![v.fake_probability]),
                output("window_fake_probability", scores),
            ]
        }
        Job::Features { batch, data } => {
            let p = serving.score(&state.metrics, data, batch).await?;
            if p.iter().any(|v| !v.is_finite()) {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "inference_failed",
                    "the network produced a non-finite score; no answer is given",
                ));
            }
            vec![output("fake_probability", p)]
        }
    };
    let m = &serving.detector.model().manifest;
    Ok(Json(InferResponse {
        model_name: m.name.clone(),
        model_version: m.version.clone(),
        id,
        outputs,
    }))
}

/// What a parsed request asks of the network.
enum Job {
    /// A waveform, windowed and featurised.
    Waveform(crate::pipeline::PreparedAudio),
    /// Features sent ready.
    Features { batch: usize, data: Vec<f32> },
}
