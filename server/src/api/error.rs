//! The one place where failures become HTTP responses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::metrics::Limit;

/// An error as the API reports it: status, stable code, human message.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
    /// Seconds after which a retry may succeed (sent as `Retry-After`).
    pub retry_after: Option<u32>,
    /// The safety limit that refused the request, counted by the metrics middleware.
    pub limit: Option<Limit>,
}

impl ApiError {
    /// A 400 for malformed requests.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// Any status.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            limit: None,
        }
    }

    /// Marks the refusal as a safety limit's, so `auralguard_limit_rejections_total` counts it.
    pub fn because(mut self, limit: Limit) -> Self {
        self.limit = Some(limit);
        self
    }

    /// 503: the network's queue is full.
    pub fn queue_full(message: String) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "overloaded", message)
        }
    }

    /// 503: every permit is taken.
    pub fn overloaded(max: usize) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!("the server is judging {max} requests already; retry shortly"),
            )
        }
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        let status = match &e {
            E::UnsupportedFormat { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            E::CorruptAudio { .. }
            | E::EmptyAudio { .. }
            | E::NonFiniteSamples { .. }
            | E::TooLong { .. }
            | E::UnsupportedSampleRate { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            E::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let limit = matches!(e, E::UnsupportedSampleRate { .. }).then_some(Limit::SampleRate);
        Self {
            limit,
            ..Self::new(status, e.code(), e.to_string())
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(limit) = self.limit {
            resp.extensions_mut().insert(limit);
        }
        if let Some(s) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn audio_errors_map_to_the_documented_statuses() {
        let p = PathBuf::from("x.wav");
        let unsupported = crate::Error::UnsupportedFormat {
            path: p.clone(),
            reason: "r".into(),
        };
        assert_eq!(ApiError::from(unsupported).status, 415);
        let corrupt = crate::Error::CorruptAudio {
            path: p.clone(),
            reason: "r".into(),
        };
        assert_eq!(ApiError::from(corrupt).status, 422);
        let bad = crate::Error::InvalidArgument("x".into());
        assert_eq!(ApiError::from(bad).status, 400);
        let o = ApiError::overloaded(4).into_response();
        assert_eq!(o.status(), 503);
        assert_eq!(o.headers()[header::RETRY_AFTER], "1");
    }
}
