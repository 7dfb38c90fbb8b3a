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
        "docs.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/docs.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    ),
];

const INDEX: &str = include_str!("../../static/index.html");
const DOCS: &str = include_str!("../../static/docs.html");

/// The page's content security policy. Everything the pages load is served by this binary, with
/// no inline script or style, so a script injected through a reflected value (a file name, an
/// error message) cannot run, and nothing can be sent to another origin. `frame-ancestors 'none'`
/// stops the page being framed for click-jacking; `blob:`/`data:` cover the spectrogram canvas and
/// the empty icon.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; media-src 'self' blob:; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// An HTML or asset response with the security headers; `no-cache` so a new server version is
/// picked up at once, `nosniff` so a browser never reads an asset as another type.
fn page(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The policy allows no inline code, so a page that gained an inline `<script>`, `<style>`
    /// or `style=` attribute would break in browsers: keep them in `static/` files.
    #[test]
    fn pages_hold_no_inline_code_the_policy_would_block() {
        for (name, html) in [("index.html", INDEX), ("docs.html", DOCS)] {
            for inline in ["<script>", "<style", " style=", "onclick=", "javascript:"] {
                assert!(!html.contains(inline), "{name} holds {inline}");
            }
            for src in html
                .split("src=\"/static/")
                .skip(1)
                .chain(html.split("href=\"/static/").skip(1))
            {
                let asset = src.split('"').next().unwrap_or_default();
                assert!(
                    ASSETS.iter().any(|(n, _, _)| *n == asset),
                    "{name} loads /static/{asset}, which is not served"
                );
            }
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
