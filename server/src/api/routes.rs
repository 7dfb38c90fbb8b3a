//! Request handlers and the router.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, MatchedPath, Multipart, Query, Request, State,
};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json, Router};
use tracing::Instrument;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::ApiError;
use super::schema::{
    ErrorBody, Health, HealthModel, PredictQuery, PredictUpload, PredictionsPage, PredictionsQuery,
    Ready,
};
use super::{oip, openapi, web, AppState};
use crate::audio::AudioSource;
use crate::store::{Statistics, StoreStatus};
use crate::verdict::{Spectrogram, Verdict};

/// Builds the router: every API route is registered together with its OpenAPI operation (so the
/// document at `/openapi.json` cannot miss a route), plus the web page, the docs page, the body
/// limit, the API-key check and the metrics/request-id middleware.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.limits.max_upload_bytes;
    let (api, doc) = api_router().split_for_parts();
    api.merge(web::router(&doc))
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::auth::require_api_key,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::upload_guard::guard_uploads,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), record))
        .with_state(state)
}

/// The documented API routes, each with its OpenAPI operation.
pub(crate) fn api_router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
        .routes(routes!(predict))
        .routes(routes!(statistics))
        .routes(routes!(predictions))
        .routes(routes!(oip::server_metadata))
        .routes(routes!(oip::live))
        .routes(routes!(oip::ready))
        .routes(routes!(oip::model_metadata))
        .routes(routes!(oip::model_ready))
        .routes(routes!(oip::infer))
}

/// The id of one request, always minted here (a UUID) because it is also the prediction log's
/// key: a caller's id could collide. Sent back in `X-Request-Id`, on every log line of the
/// request, and as the verdict's `request_id`; a caller's own `X-Request-Id` is logged beside it
/// as `client_id` for correlation.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Header carrying the ids.
const REQUEST_ID: &str = "x-request-id";

/// A caller-supplied id is logged only if it is short printable ASCII.
fn loggable_client_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic())
}

/// Routes probed or scraped every few seconds: logged at debug, not info.
fn is_probe(route: &str) -> bool {
    matches!(route, "/health" | "/ready" | "/metrics") || route.starts_with("/v2/health/")
}

/// Gives every request an id and a tracing span, then counts and times it by route template and
/// status and logs one line for it.
async fn record(State(state): State<Arc<AppState>>, mut req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let client_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| loggable_client_id(v))
        .map(str::to_string);
    let id = uuid::Uuid::new_v4().to_string();
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!(
        "request",
        id = %id,
        client_id = client_id.as_deref(),
        method = %req.method(),
        route = %route,
    );
    let t0 = Instant::now();
    let mut resp = next.run(req).instrument(span.clone()).await;
    let elapsed = t0.elapsed().as_secs_f64();
    let m = &state.metrics;
    m.latency.with_label_values(&[&route]).observe(elapsed);
    m.requests
        .with_label_values(&[&route, resp.status().as_str()])
        .inc();
    if let Some(&limit) = resp.extensions().get::<super::metrics::Limit>() {
        m.rejected(limit);
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    let status = resp.status().as_u16();
    span.in_scope(|| {
        if is_probe(&route) {
            tracing::debug!(status, seconds = elapsed, "request");
        } else {
            tracing::info!(status, seconds = elapsed, "request");
        }
    });
    resp
}

/// Liveness plus what an operator wants to see at a glance.
///
/// Open to everyone, as probes need; when the server has an API key, a caller without it gets
/// only `status`, `ready` and `version` (the model, registry URI and store state are operational
/// detail an attacker should not read).
#[utoipa::path(
    get,
    path = "/health",
    tag = "operations",
    security(()),
    responses((status = 200, description = "The process is alive (details only with the key, when one is set)", body = Health))
)]
async fn health(State(state): State<Arc<AppState>>, headers: axum::http::HeaderMap) -> Response {
    let ready = state.ready.load(Ordering::Acquire);
    if !super::auth::is_trusted(&state, &headers) {
        return Json(serde_json::json!({
            "status": "healthy",
            "ready": ready,
            "version": env!("CARGO_PKG_VERSION"),
        }))
        .into_response();
    }
    let serving = state.slot.get();
    let m = &serving.detector.model().manifest;
    Json(Health {
        status: "healthy",
        model: HealthModel {
            name: m.name.clone(),
            version: m.version.clone(),
            architecture: m.architecture.name.clone(),
            registry: state.registry_status.as_ref().map(|w| w.snapshot()),
        },
        device: state.device.clone(),
        ready,
        uptime_seconds: state.started.elapsed().as_secs_f64(),
        in_flight: state.metrics.in_flight.get(),
        queued_windows: serving.queued_windows(),
        store: state.store.as_ref().map_or(
            StoreStatus {
                backend: "disabled",
                state: "disabled",
                spooled: 0,
                set_aside: 0,
            },
            |s| s.status(),
        ),
        version: env!("CARGO_PKG_VERSION"),
    })
    .into_response()
}

/// 200 once the model is loaded and warm, 503 before.
#[utoipa::path(
    get,
    path = "/ready",
    tag = "operations",
    security(()),
    responses(
        (status = 200, description = "Model loaded and warm", body = Ready),
        (status = 503, description = "Still warming up", body = ErrorBody),
    )
)]
async fn ready(State(state): State<Arc<AppState>>) -> Response {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, Json(Ready { ready: true })).into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the model is warming up",
        )
        .into_response()
    }
}

/// Prometheus text exposition of the server's metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain", body = String))
)]
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    if let Some(store) = &state.store {
        let status = store.status();
        state.metrics.store_spooled.set(status.spooled as i64);
        state.metrics.store_set_aside.set(status.set_aside as i64);
    }
    let queued = i64::try_from(state.slot.get().queued_windows()).unwrap_or(i64::MAX);
    state.metrics.queue_windows.set(queued);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

/// Upload name used when the client sends none.
const DEFAULT_NAME: &str = "upload";

/// Reads the audio from a multipart form (field `audio`, as the original service) or a raw body.
async fn read_audio(
    req: Request,
    raw_name: Option<String>,
    limit: usize,
) -> Result<(String, Vec<u8>), ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("multipart/form-data") {
        let mut form = Multipart::from_request(req, &())
            .await
            .map_err(|e| ApiError::bad_request("bad_multipart", e.body_text()))?;
        while let Some(field) = form
            .next_field()
            .await
            .map_err(|e| upload_error(e.status(), e.body_text()))?
        {
            let checked = if field.name() == Some("audio") {
                checked_name(field.file_name().unwrap_or(DEFAULT_NAME))
                    .and_then(|name| check_part_headers(field.headers()).map(|()| Some(name)))
            } else {
                check_part_headers(field.headers()).map(|()| None)
            };
            let name = match checked {
                Ok(Some(name)) => name,
                Ok(None) => continue,
                Err(refused) => {
                    drop(field);
                    drain_form(&mut form).await;
                    return Err(refused);
                }
            };
            let data = field
                .bytes()
                .await
                .map_err(|e| upload_error(e.status(), e.body_text()))?;
            // Takes over the form's buffer when it is the only owner (it is, once the field is
            // read whole), instead of copying the upload.
            return Ok((name, Vec::from(data)));
        }
        return Err(ApiError::bad_request(
            "missing_audio",
            "the form has no 'audio' file field (curl -F audio=@clip.wav ...)",
        ));
    }
    let known_raw = content_type.starts_with("audio/")
        || content_type.starts_with("application/octet-stream")
        || content_type.starts_with("video/mp4")
        || content_type.starts_with("application/ogg");
    if !known_raw {
        super::drain(req.into_body(), limit).await;
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "send multipart/form-data with an 'audio' field, or a raw body with an audio/* \
                 Content-Type (got '{content_type}')"
            ),
        ));
    }
    let name = match raw_name {
        Some(n) => checked_name(&n)?,
        None => format!("{DEFAULT_NAME}.{}", extension_for(&content_type)),
    };
    let body = Bytes::from_request(req, &())
        .await
        .map_err(|e| upload_error(e.status(), e.body_text()))?;
    Ok((name, Vec::from(body)))
}

/// Longest upload name accepted: names are stored, echoed and logged with every prediction.
pub const MAX_FILENAME_BYTES: usize = 255;

/// Reads and discards the rest of a refused form before the answer goes out: closing a
/// connection with request bytes unread resets it, and the client, still sending, loses the
/// answer. Bounded like any upload (body limit, upload pace); nothing is kept.
async fn drain_form(form: &mut Multipart) {
    while let Ok(Some(mut field)) = form.next_field().await {
        while let Ok(Some(_)) = field.chunk().await {}
    }
}

/// Most bytes of headers one multipart part may carry (names, values and separators): a real
/// client sends two or three short lines, and nothing else of them is kept.
pub const MAX_PART_HEADER_BYTES: usize = 8 * 1024;

/// Refuses a part whose headers exceed [`MAX_PART_HEADER_BYTES`], so no field's headers can be
/// megabytes long even though the upload as a whole may be.
fn check_part_headers(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let bytes: usize = headers
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len() + 4)
        .sum();
    if bytes > MAX_PART_HEADER_BYTES {
        return Err(ApiError::bad_request(
            "bad_multipart",
            format!("a form part's headers may take at most {MAX_PART_HEADER_BYTES} bytes"),
        )
        .because(super::metrics::Limit::NameLength));
    }
    Ok(())
}

/// An upload's name, if it is one a file system could hold: at most 255 bytes, no control
/// characters (they would forge log lines and terminal output).
fn checked_name(name: &str) -> Result<String, ApiError> {
    if name.len() > MAX_FILENAME_BYTES || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "bad_filename",
            format!(
                "the file name must be at most {MAX_FILENAME_BYTES} bytes without control characters"
            ),
        )
        .because(super::metrics::Limit::NameLength));
    }
    Ok(name.to_string())
}

/// A file extension symphonia can use as a hint for a raw body's Content-Type.
fn extension_for(content_type: &str) -> &'static str {
    match content_type.split(';').next().unwrap_or("").trim() {
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "wav",
        "audio/flac" | "audio/x-flac" => "flac",
        "audio/mpeg" | "audio/mp3" => "mp3",
        "audio/ogg" | "application/ogg" | "audio/vorbis" => "ogg",
        "audio/mp4" | "audio/m4a" | "audio/x-m4a" | "audio/aac" | "video/mp4" => "m4a",
        _ => "bin",
    }
}

fn upload_error(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(status, "payload_too_large", text)
    } else {
        ApiError::new(status, "bad_upload", text)
    }
}

/// Windows of log-mel returned with `?include=spectrogram` (2 minutes of audio, ≈ 480 kB).
const SPECTROGRAM_WINDOWS: usize = 8;

/// Judges one upload: the original service's request (`curl -F audio=@clip.wav`) or a raw body.
#[utoipa::path(
    post,
    path = "/predict",
    tag = "detector",
    params(PredictQuery),
    request_body(
        description = "Multipart form with the file in field `audio`, or the raw file with an `audio/*` Content-Type",
        content(
            (PredictUpload = "multipart/form-data"),
            ("audio/wav"), ("audio/flac"), ("audio/mpeg"), ("audio/ogg"), ("audio/mp4"),
            ("application/octet-stream"),
        )
    ),
    responses(
        (status = 200, description = "The verdict", body = Verdict),
        (status = 400, description = "Bad form or query", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 413, description = "Upload over --max-upload-mb", body = ErrorBody),
        (status = 415, description = "Not an audio Content-Type, or an audio format not supported", body = ErrorBody),
        (status = 422, description = "Empty, corrupt or too long audio", body = ErrorBody),
        (status = 503, description = "Overloaded, or the verdict's log record could not be kept (`log_unavailable`); Retry-After is set", body = ErrorBody),
        (status = 504, description = "Over --request-timeout-seconds", body = ErrorBody),
    )
)]
async fn predict(
    State(state): State<Arc<AppState>>,
    ConnectInfo(client): ConnectInfo<std::net::SocketAddr>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    req: Request,
) -> Result<Json<Verdict>, ApiError> {
    let max = state.limits.max_upload_bytes;
    let parsed = Query::<PredictQuery>::try_from_uri(req.uri())
        .map_err(|e| ApiError::bad_request("bad_query", e.body_text()))
        .and_then(|Query(q)| match q.include.as_deref() {
            None | Some("") => Ok((q, false)),
            Some("spectrogram") => Ok((q, true)),
            Some(other) => Err(ApiError::bad_request(
                "bad_query",
                format!("include={other}: the only extra is 'spectrogram'"),
            )),
        });
    let (query, want_spectrogram) = match parsed {
        Ok(ok) => ok,
        Err(e) => {
            super::drain(req.into_body(), max).await;
            return Err(e);
        }
    };
    // Refuse a declared-too-large upload from its headers, before reading a byte of it.
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the upload is larger than the {max}-byte limit"),
        ));
    }
    // The upload is read before a permit is taken, so a slow upload never holds one; reading
    // is bounded by the upload guard (minimum rate, shared buffer budget).
    let (name, data) = read_audio(req, query.filename, max).await?;
    if data.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_audio",
            format!("{name}: the upload is empty"),
        ));
    }
    let Ok(permit) = state.permits.clone().try_acquire_owned() else {
        state.metrics.overloaded.inc();
        return Err(ApiError::overloaded(state.limits.max_concurrent));
    };
    let metrics = &state.metrics;
    let in_flight = InFlightGuard::new(&metrics.in_flight);
    let t0 = Instant::now();
    let serving = state.slot.get();
    let judged = async {
        let detector = serving.detector.clone();
        // Decode and featurise on the blocking pool while holding the permit; the permit goes
        // back before queueing, where the batcher's own bound takes over.
        let prepared = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let sha256 = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&data));
            detector
                .prepare(AudioSource::Bytes { name, data })
                .map(|p| (p, sha256))
        })
        .await
        .map_err(|join| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("decoding task failed: {join}"),
            )
        })?;
        let (prepared, sha256) = prepared?;
        let windows = prepared.layout.windows();
        let spectrogram = want_spectrogram.then(|| {
            let (mels, frames) = serving.detector.model().manifest.input_shape();
            Spectrogram::from_log_mels(&prepared.features, mels, frames, SPECTROGRAM_WINDOWS)
        });
        let scores = serving
            .score(&state.metrics, prepared.features, windows)
            .await?;
        let mut verdict = serving
            .detector
            .verdict_from_scores(prepared.layout, &scores)?;
        verdict.spectrogram = spectrogram;
        Ok::<_, ApiError>((verdict, sha256))
    };
    let outcome = tokio::time::timeout(state.limits.request_timeout, judged).await;
    drop(in_flight);
    let (mut verdict, sha256) = match outcome {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!(
                    "judging took longer than {} s",
                    state.limits.request_timeout.as_secs_f64()
                ),
            ))
        }
        Ok(result) => result?,
    };
    metrics
        .inference_seconds
        .observe(t0.elapsed().as_secs_f64());
    metrics.audio_seconds.inc_by(verdict.duration_seconds);
    metrics.windows.inc_by(verdict.windows.len() as u64);
    metrics
        .verdicts
        .with_label_values(&[&verdict.prediction])
        .inc();
    verdict.request_id = Some(request_id);
    if let Some(store) = state.store.clone() {
        if let Err(e) = log_prediction(&state, store, &verdict, sha256, client.to_string()).await {
            if !state.serve_unlogged {
                return Err(ApiError {
                    retry_after: Some(1),
                    ..ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "log_unavailable",
                        "the verdict is withheld because its record could not be kept (the \
                         server log has the cause); try again",
                    )
                });
            }
            tracing::warn!(error = %e, "answering a prediction whose record was not kept (--serve-unlogged)");
            verdict.warnings.push(crate::verdict::Warning {
                code: "not_logged".into(),
                message: "the prediction log could not keep this verdict's record".into(),
            });
        }
    }
    Ok(Json(verdict))
}

/// Counts a request in `auralguard_in_flight_requests` until dropped, even if the client goes
/// away and the handler future is dropped mid-way.
struct InFlightGuard(prometheus::IntGauge);

impl InFlightGuard {
    fn new(gauge: &prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Writes the prediction's record (durably: the store returns once it is on disk). A failure is
/// logged, counted and returned: a verdict is only acknowledged with its record kept, unless the
/// operator chose `--serve-unlogged`.
async fn log_prediction(
    state: &AppState,
    store: Arc<dyn crate::store::PredictionStore>,
    v: &Verdict,
    sha256: String,
    client: String,
) -> Result<(), String> {
    let record = crate::store::PredictionRecord {
        request_id: v.request_id.clone().unwrap_or_default(),
        filename: v.filename.clone(),
        sha256,
        prediction: v.prediction.clone(),
        probability: v.probability,
        confidence: v.confidence,
        fake_probability: v.fake_probability,
        windows: v.windows.clone(),
        model_name: v.model.name.clone(),
        model_version: v.model.version.clone(),
        duration_seconds: v.duration_seconds,
        processing_time_seconds: v.processing_time_seconds,
        client: Some(client),
        timestamp: v.timestamp.clone().unwrap_or_default(),
    };
    let written = tokio::task::spawn_blocking(move || store.insert(&record)).await;
    let failure = match written {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(e) => Some(e.to_string()),
    };
    match failure {
        None => Ok(()),
        Some(e) => {
            state.metrics.store_write_failures.inc();
            tracing::error!(error = %e, request_id = ?v.request_id, "prediction log write failed");
            Err(e)
        }
    }
}

fn store_of(state: &AppState) -> Result<Arc<dyn crate::store::PredictionStore>, ApiError> {
    state.store.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "store_disabled",
            "the prediction log is disabled on this server (--no-store)",
        )
    })
}

/// A failed log query: 503 with a fixed message. The driver's text (hosts, replica-set names,
/// topology) goes to the server log only; a client has no business learning the database's layout.
fn store_failure(e: impl std::fmt::Display) -> ApiError {
    tracing::warn!(error = %e, "prediction log query failed");
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "store_unavailable",
        "the prediction log cannot be read right now (the server log has the cause); try again",
    )
}

/// `GET /statistics`: aggregates of the prediction log.
#[utoipa::path(
    get,
    path = "/statistics",
    tag = "detector",
    responses(
        (status = 200, description = "Aggregates over the prediction log", body = Statistics),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "The prediction log is disabled (--no-store)", body = ErrorBody),
        (status = 503, description = "The prediction log's database is unreachable", body = ErrorBody),
    )
)]
async fn statistics(State(state): State<Arc<AppState>>) -> Result<Json<Statistics>, ApiError> {
    let store = store_of(&state)?;
    let stats = tokio::task::spawn_blocking(move || store.statistics())
        .await
        .map_err(store_failure)?
        .map_err(store_failure)?;
    Ok(Json(stats))
}

/// Largest `limit` accepted by `GET /predictions`.
const MAX_LIMIT: usize = 1000;

/// `GET /predictions?limit=N&since=RFC3339&prediction=real|fake`, newest first.
#[utoipa::path(
    get,
    path = "/predictions",
    tag = "detector",
    params(PredictionsQuery),
    responses(
        (status = 200, description = "Logged predictions, newest first", body = PredictionsPage),
        (status = 400, description = "Bad query", body = ErrorBody),
        (status = 401, description = "Missing or wrong API key", body = ErrorBody),
        (status = 404, description = "The prediction log is disabled (--no-store)", body = ErrorBody),
        (status = 503, description = "The prediction log's database is unreachable", body = ErrorBody),
    )
)]
async fn predictions(
    State(state): State<Arc<AppState>>,
    query: Result<Query<PredictionsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PredictionsPage>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request("bad_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(10);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(
            "bad_query",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        ));
    }
    let since = match q.since {
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(&s)
                .map_err(|e| {
                    ApiError::bad_request("bad_query", format!("since: {e} (RFC 3339 expected)"))
                })?
                .with_timezone(&chrono::Utc)
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ),
        None => None,
    };
    let serving = state.slot.get();
    let labels = &serving.detector.model().manifest.labels;
    if let Some(p) = &q.prediction {
        if !labels.contains(p) {
            return Err(ApiError::bad_request(
                "bad_query",
                format!("prediction must be one of {labels:?}"),
            ));
        }
    }
    let store = store_of(&state)?;
    let rq = crate::store::RecentQuery {
        limit,
        since,
        prediction: q.prediction,
    };
    let records = tokio::task::spawn_blocking(move || store.recent(&rq))
        .await
        .map_err(store_failure)?
        .map_err(store_failure)?;
    Ok(Json(PredictionsPage {
        count: records.len(),
        predictions: records,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_client_ids_are_logged() {
        assert!(loggable_client_id("abc-123_x.y"));
        assert!(!loggable_client_id(""));
        assert!(!loggable_client_id("a b"));
        assert!(!loggable_client_id("line\nbreak"));
        assert!(!loggable_client_id(&"x".repeat(129)));
        assert!(is_probe("/v2/health/live") && is_probe("/metrics") && !is_probe("/predict"));
    }

    #[test]
    fn raw_content_types_get_decoder_hints() {
        assert_eq!(extension_for("audio/wav"), "wav");
        assert_eq!(extension_for("audio/mpeg; charset=x"), "mp3");
        assert_eq!(extension_for("audio/x-m4a"), "m4a");
        assert_eq!(extension_for("audio/unknown"), "bin");
    }
}
