//! Optional API-key check (`--api-key` / `AURALGUARD_API_KEY`).
//!
//! Probes and scrapes stay open so that kubelets and Prometheus need no secret: `/health`,
//! `/ready`, `/metrics`, the OIP health routes, and the static web page and API description
//! (they hold no data; the page asks for the key before calling the API). Everything else needs
//! `Authorization: Bearer <key>` or `X-API-Key: <key>`; a missing or wrong key is a 401 in the
//! usual error shape. Keys are compared in constant time. `/health` stays open but, with a key
//! configured, tells a caller without it only that the process is alive and whether it is ready.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// Paths served without a key.
const OPEN_PATHS: &[&str] = &[
    "/",
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/v2/health/live",
    "/v2/health/ready",
];

/// Whether `path` is served without a key.
fn is_open(path: &str) -> bool {
    OPEN_PATHS.contains(&path) || path.starts_with("/static/")
}

/// The key a request presents, from either accepted header.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let (scheme, token) = v.trim().split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then_some(token.trim());
    }
    headers.get("x-api-key").and_then(|v| v.to_str().ok())
}

/// Equality whose time does not depend on where the inputs first differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(!x));
    }
    diff == 0
}

/// Whether a request may see operational detail: no key is configured, or it presents the key.
/// `/health` answers everyone, but only these callers see the registry URI and raw errors.
pub fn is_trusted(state: &AppState, headers: &HeaderMap) -> bool {
    match state.api_key.as_deref() {
        None => true,
        Some(expected) => presented_key(headers)
            .is_some_and(|k| constant_time_eq(k.as_bytes(), expected.as_bytes())),
    }
}

/// Middleware: lets a request through when no key is configured, the path is open, or the
/// presented key matches.
pub async fn require_api_key(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.api_key.as_deref() else {
        return next.run(req).await;
    };
    if is_open(req.uri().path()) {
        return next.run(req).await;
    }
    let refused = match presented_key(req.headers()) {
        Some(k) if constant_time_eq(k.as_bytes(), expected.as_bytes()) => None,
        presented => Some(if presented.is_some() {
            "the API key is not valid"
        } else {
            "this server needs an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        }),
    };
    let Some(message) = refused else {
        return next.run(req).await;
    };
    super::drain(req.into_body(), state.limits.max_upload_bytes).await;
    let mut resp = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"auralguard\""),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert("x-api-key", HeaderValue::from_static("k1"));
        assert_eq!(presented_key(&h), Some("k1"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  k2 "),
        );
        assert_eq!(presented_key(&h), Some("k2"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&h), None, "other schemes are not a key");
    }

    #[test]
    fn comparison_needs_every_byte_and_the_length() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"secret2", b"secret"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn probes_scrapes_and_the_page_are_open_the_api_is_not() {
        for p in [
            "/",
            "/health",
            "/ready",
            "/metrics",
            "/v2/health/ready",
            "/static/app.js",
        ] {
            assert!(is_open(p), "{p}");
        }
        for p in [
            "/predict",
            "/statistics",
            "/predictions",
            "/v2",
            "/v2/models/m/infer",
        ] {
            assert!(!is_open(p), "{p}");
        }
    }
}
