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
use serde_json::json;

use super::error::ApiError;
use super::AppState;

/// One input or output tensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tensor {
    /// Tensor name.
    pub name: String,
    /// Shape (`-1` never appears in requests).
    pub shape: Vec<i64>,
    /// Element type; only `FP32` is accepted.
    pub datatype: String,
    /// Row-major values (nested arrays are flattened).
    pub data: serde_json::Value,
}

/// An inference request.
#[derive(Debug, Deserialize)]
pub struct InferRequest {
    /// Echoed back.
    #[serde(default)]
    pub id: Option<String>,
    /// Exactly one input tensor.
    pub inputs: Vec<Tensor>,
}

/// `GET /v2`: server metadata.
pub async fn server_metadata() -> Json<serde_json::Value> {
    Json(json!({"name": "auralguard", "version": env!("CARGO_PKG_VERSION"), "extensions": []}))
}

/// `GET /v2/health/live`.
pub async fn live() -> Json<serde_json::Value> {
    Json(json!({"live": true}))
}

/// `GET /v2/health/ready` and `/v2/models/{name}/ready`.
pub async fn ready(State(state): State<Arc<AppState>>) -> Response {
    let ready = state.ready.load(Ordering::Acquire);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(json!({"ready": ready}))).into_response()
}

fn check_model(state: &AppState, name: &str) -> Result<(), ApiError> {
    let m = &state.detector.model().manifest;
    if name != m.name {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "model_not_found",
            format!("no model '{name}' here; this server serves '{}'", m.name),
        ));
    }
    Ok(())
}

/// `GET /v2/models/{name}/ready`.
pub async fn model_ready(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    check_model(&state, &name)?;
    Ok(ready(State(state)).await)
}

/// `GET /v2/models/{name}`: model metadata.
pub async fn model_metadata(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    check_model(&state, &name)?;
    let m = &state.detector.model().manifest;
    let (mels, frames) = m.input_shape();
    Ok(Json(json!({
        "name": m.name,
        "versions": [m.version],
        "platform": "auralguard_candle",
        "inputs": [
            {"name": "waveform", "datatype": "FP32", "shape": [1, -1]},
            {"name": "log_mel", "datatype": "FP32", "shape": [-1, mels, frames]},
        ],
        "outputs": [
            {"name": "fake_probability", "datatype": "FP32", "shape": [-1]},
            {"name": "window_fake_probability", "datatype": "FP32", "shape": [-1]},
        ],
    })))
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

/// `POST /v2/models/{name}/infer`.
pub async fn infer(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    body: Result<Json<InferRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
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
    let detector = state.detector.clone();
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
            let scores = state.score(prepared.features, windows).await?;
            let v = state
                .detector
                .verdict_from_scores(prepared.layout, &scores)?;
            json!([
                {"name": "fake_probability", "datatype": "FP32", "shape": [1], "data": [v.fake_probability]},
                {"name": "window_fake_probability", "datatype": "FP32", "shape": [scores.len()], "data": scores},
            ])
        }
        ("log_mel", [b, m, f]) if (*m, *f) == (mels, frames) && *b > 0 => {
            let n = *b;
            drop(permit);
            let p = state.score(data, n).await?;
            json!([{"name": "fake_probability", "datatype": "FP32", "shape": [n], "data": p}])
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
    let m = &state.detector.model().manifest;
    Ok(Json(json!({
        "model_name": m.name,
        "model_version": m.version,
        "id": req.id,
        "outputs": outputs,
    })))
}
