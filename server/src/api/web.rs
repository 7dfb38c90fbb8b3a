//! The web page at `/`, the API docs page at `/docs`, their static assets, and the generated
//! OpenAPI document at `/openapi.json`. Plain HTML/JS compiled into the binary: nothing to
//! install, nothing fetched from elsewhere, so the page works in an air-gapped cluster.

use std::sync::Arc;

use axum::extract::Path;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::error::ApiError;
use super::AppState;

/// Assets under `/static/`: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    ),
];

const INDEX: &str = include_str!("../../static/index.html");
const DOCS: &str = include_str!("../../static/docs.html");

/// An HTML or asset response; `no-cache` so a new server version is picked up at once.
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => page(content_type, body),
        None => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no static file '{name}'"),
        )
        .into_response(),
    }
}

/// Routes of the page, the docs and the document (serialised once, here).
pub fn router(doc: &utoipa::openapi::OpenApi) -> Router<Arc<AppState>> {
    let json: Arc<str> = serde_json::to_string_pretty(doc)
        .unwrap_or_else(|e| {
            format!("{{\"error\": \"cannot serialise the OpenAPI document: {e}\"}}")
        })
        .into();
    Router::new()
        .route(
            "/",
            get(|| async { page("text/html; charset=utf-8", INDEX) }),
        )
        .route(
            "/docs",
            get(|| async { page("text/html; charset=utf-8", DOCS) }),
        )
        .route("/static/{name}", get(asset))
        .route(
            "/openapi.json",
            get(move || {
                let json = Arc::clone(&json);
                async move {
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        json.to_string(),
                    )
                }
            }),
        )
}
