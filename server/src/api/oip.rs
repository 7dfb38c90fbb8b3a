//! KServe Open Inference Protocol (v2) routes, so KServe and Triton clients work unchanged.
//!
//! One model is served, under its manifest name. Two inputs are accepted:
//! `waveform` — `FP32 [1, N]`, mono at the model's sample rate (windowed like any upload) — and
//! `log_mel` — `FP32 [B, 128, 469]`, features already computed (the network alone). Outputs are
//! `fake_probability` (`[1]` for a waveform, `[B]` for log-mels) and, for a waveform,
//! `window_fake_probability` (`[W]`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::ApiError;
use super::schema::{ErrorBody, Ready};
use super::AppState;

/// One input or output tensor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tensor {
    /// Tensor name: `waveform` or `log_mel` in, `fake_probability` or
    /// `window_fake_probability` out.
    pub name: String,
    /// Shape (`-1` never appears in requests).
    pub shape: Vec<i64>,
    /// Element type; only `FP32` is accepted.
    #[schema(example = "FP32")]
    pub datatype: String,
    /// Row-major values (nested arrays are flattened).
    #[schema(value_type = Vec<f32>)]
    pub data: serde_json::Value,
}

/// An inference request.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InferRequest {
    /// Echoed back.
    #[serde(default)]
    pub id: Option<String>,
    /// Exactly one input tensor.
    pub inputs: Vec<Tensor>,
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
        data: serde_json::Value::from(data),
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

/// Flattens `data` (flat or nested arrays of numbers) into `out`.
fn flatten(v: &serde_json::Value, out: &mut Vec<f32>) -> Result<(), ApiError> {
    match v {
        serde_json::Value::Array(items) => items.iter().try_for_each(|i| flatten(i, out)),
        serde_json::Value::Number(n) => {
            let x = n
                .as_f64()
                .ok_or_else(|| ApiError::bad_request("bad_tensor", "bad number"))?;
            out.push(x as f32);
            Ok(())
        }
        _ => Err(ApiError::bad_request(
            "bad_tensor",
            "tensor data must be an array of numbers",
        )),
    }
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
    body: Result<Json<InferRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<InferResponse>, ApiError> {
    check_model(&state, &name)?;
    let Json(req) = body.map_err(|e| ApiError::bad_request("bad_request", e.body_text()))?;
    let [input]: [Tensor; 1] = req.inputs.try_into().map_err(|v: Vec<Tensor>| {
        ApiError::bad_request(
            "bad_request",
            format!("expected exactly one input, got {}", v.len()),
        )
    })?;
    if input.datatype != "FP32" {
        return Err(ApiError::bad_request(
            "bad_tensor",
            format!(
                "input '{}' must be FP32, got {}",
                input.name, input.datatype
            ),
        ));
    }
    let mut data = Vec::new();
    flatten(&input.data, &mut data)?;
    let dims: Vec<usize> = input
        .shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| ApiError::bad_request("bad_tensor", "shape entries must be non-negative"))?;
    if dims.iter().product::<usize>() != data.len() {
        return Err(ApiError::bad_request(
            "bad_tensor",
            format!(
                "shape {:?} needs {} values, got {}",
                dims,
                dims.iter().product::<usize>(),
                data.len()
            ),
        ));
    }
    let Ok(permit) = state.permits.clone().try_acquire_owned() else {
        state.metrics.overloaded.inc();
        return Err(ApiError::overloaded(state.limits.max_concurrent));
    };
    let serving = state.slot.get();
    let detector = serving.detector.clone();
    let (mels, frames) = detector.model().manifest.input_shape();
    let internal = |e: tokio::task::JoinError| {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
    };
    let outputs = match (input.name.as_str(), dims.as_slice()) {
        ("waveform", [1, _]) => {
            let prepared = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                detector.prepare_waveform("waveform", &data)
            })
            .await
            .map_err(internal)??;
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
        ("log_mel", [b, m, f]) if (*m, *f) == (mels, frames) && *b > 0 => {
            let n = *b;
            drop(permit);
            let p = serving.score(&state.metrics, data, n).await?;
            vec![output("fake_probability", p)]
        }
        (name, shape) => {
            return Err(ApiError::bad_request(
                "bad_tensor",
                format!(
                    "unsupported input '{name}' with shape {shape:?}: send 'waveform' [1, N] or \
                     'log_mel' [B, {mels}, {frames}]"
                ),
            ))
        }
    };
    let m = &serving.detector.model().manifest;
    Ok(Json(InferResponse {
        model_name: m.name.clone(),
        model_version: m.version.clone(),
        id: req.id,
        outputs,
    }))
}
