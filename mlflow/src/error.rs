//! The crate's one error type, and how an MLflow error response becomes one of its variants.
//!
//! Callers mostly need to tell four situations apart, so those are distinct variants:
//! the thing is not there ([`Error::NotFound`]: register it, or fix the name), it is already there
//! ([`Error::AlreadyExists`]: a get-or-create lost a race, fetch it instead), the request itself
//! is wrong ([`Error::InvalidParameter`]), and the server could not be reached
//! ([`Error::Unavailable`]: the detector keeps serving the model it already has and tries again
//! later). Everything else MLflow says comes back verbatim in [`Error::Api`].
//!
//! Every message names the URL or model involved and says what to check, because these errors end
//! up in operator conditions and server logs read by people who did not write the call.

use std::path::PathBuf;

use reqwest::StatusCode;
use serde::Deserialize;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong when talking to MLflow or filling the local model cache.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// MLflow answered `RESOURCE_DOES_NOT_EXIST` (or a plain 404): the experiment, run, model,
    /// version, alias or artifact named in `what` does not exist on that server.
    #[error("not found: {what} (check the name, version or alias, and that MLFLOW_TRACKING_URI points at the right server)")]
    NotFound {
        /// What was looked for, with the URL that was asked.
        what: String,
    },

    /// MLflow answered `RESOURCE_ALREADY_EXISTS`: something with that name is already there.
    #[error("already exists: {what}")]
    AlreadyExists {
        /// What could not be created, with the URL that was asked.
        what: String,
    },

    /// MLflow rejected the request's content (`INVALID_PARAMETER_VALUE`, `BAD_REQUEST`, ...),
    /// or this client refused it before sending (an empty name, a bad alias, ...).
    #[error("invalid parameter: {message}")]
    InvalidParameter {
        /// MLflow's explanation, or ours, with the URL when there was one.
        message: String,
    },

    /// The server refused the credentials (HTTP 401/403).
    #[error("unauthorized at {url}: {message} (check MLFLOW_TRACKING_TOKEN, or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD)")]
    Unauthorized {
        /// The URL that was refused.
        url: String,
        /// What the server said, if anything.
        message: String,
    },

    /// The server could not be reached: connection refused or reset, DNS failure, or a time-out,
    /// after the configured retries. Transient by nature: a detector that already serves a model
    /// keeps serving it and tries again later.
    #[error("MLflow at {url} is unavailable: {source} (check that the tracking server is running and reachable, and MLFLOW_TRACKING_URI)")]
    Unavailable {
        /// The URL that could not be reached.
        url: String,
        /// The transport error.
        #[source]
        source: reqwest::Error,
    },

    /// Any other error response from MLflow, kept verbatim.
    #[error("MLflow error {status} {code} at {url}: {message}")]
    Api {
        /// HTTP status code.
        status: u16,
        /// MLflow's `error_code` (for example `INTERNAL_ERROR`), or `HTTP_<status>` when the body
        /// was not MLflow's JSON error.
        code: String,
        /// MLflow's `message`, or the start of the body.
        message: String,
        /// The URL that answered.
        url: String,
    },

    /// A response arrived but was not the JSON this client expects.
    #[error("could not decode the answer of {url}: {message} (is this an MLflow 2.x/3.x tracking server?)")]
    Decode {
        /// The URL that answered.
        url: String,
        /// What did not fit.
        message: String,
    },

    /// Reading or writing a local file or folder failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "cannot read".
        action: &'static str,
        /// The local path involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// A URI this client cannot use: a malformed `models:/` URI, an artifact URI of an unsupported
    /// scheme, a tracking URI that is not http(s).
    #[error("invalid URI '{uri}': {reason}")]
    InvalidUri {
        /// The URI as given.
        uri: String,
        /// Why it cannot be used, and what would work.
        reason: String,
    },

    /// A download would bring more than the configured cap
    /// ([`crate::ClientConfig::max_download_bytes`]); nothing past the cap was written.
    #[error("artifact at {url} is too large: {size} exceeds the {limit_bytes}-byte download cap (raise it if this artifact is expected to be this big)")]
    TooLarge {
        /// The URL (or artifact folder) being downloaded.
        url: String,
        /// What the listing or the server announced, or "more than the cap" when it streamed past.
        size: String,
        /// The cap in bytes.
        limit_bytes: u64,
    },

    /// A model version's artifacts were downloaded but are not a usable model folder (nothing was
    /// there, or the version never finished registering).
    #[error("model {model} is not usable: {reason}")]
    InvalidModel {
        /// `models:/NAME/VERSION`.
        model: String,
        /// What is wrong and what to check.
        reason: String,
    },
}

impl Error {
    /// True when the thing asked for does not exist (so a get-or-create should create it).
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// True when a create found the thing already there (so a get-or-create should get it).
    pub fn is_already_exists(&self) -> bool {
        matches!(self, Error::AlreadyExists { .. })
    }

    /// True for errors worth retrying later as they are: the server is unreachable, overloaded
    /// or temporarily failing (502/503/504/429). A caller that already serves a model keeps it.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Unavailable { .. } => true,
            Error::Api { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    /// An [`Error::Io`] for `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// The JSON body MLflow sends with every error: `{"error_code": "...", "message": "..."}`.
#[derive(Debug, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    /// FastAPI's error field, used by some MLflow 3 routes (the artifact proxy among them).
    #[serde(default)]
    detail: Option<serde_json::Value>,
}

/// Turns an error response (status, body) from `url` into an [`Error`].
///
/// MLflow's `error_code` decides when present, since its mapping to HTTP statuses has changed
/// between versions; the HTTP status decides otherwise (proxies and the artifact endpoints do not
/// always send MLflow's JSON).
pub fn decode_error_response(status: StatusCode, url: &str, body: &[u8]) -> Error {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|b| b.error_code.clone());
    let message = parsed
        .as_ref()
        .and_then(|b| {
            b.message.clone().or_else(|| match &b.detail {
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(other) => Some(other.to_string()),
                None => None,
            })
        })
        .unwrap_or_else(|| body_excerpt(body));
    let with_url = |m: &str| {
        if m.is_empty() {
            format!("at {url}")
        } else {
            format!("{m} (at {url})")
        }
    };

    match code.as_deref() {
        Some("RESOURCE_DOES_NOT_EXIST" | "NOT_FOUND") => {
            return Error::NotFound {
                what: with_url(&message),
            }
        }
        Some("RESOURCE_ALREADY_EXISTS" | "ALREADY_EXISTS") => {
            return Error::AlreadyExists {
                what: with_url(&message),
            }
        }
        Some("INVALID_PARAMETER_VALUE" | "MALFORMED_REQUEST" | "BAD_REQUEST" | "INVALID_ARGUMENT") => {
            return Error::InvalidParameter {
                message: with_url(&message),
            }
        }
        Some("UNAUTHENTICATED" | "PERMISSION_DENIED" | "UNAUTHORIZED") => {
            return Error::Unauthorized {
                url: url.to_string(),
                message,
            }
        }
        Some("ENDPOINT_NOT_FOUND") => {
            return Error::Api {
                status: status.as_u16(),
                code: "ENDPOINT_NOT_FOUND".to_string(),
                message: format!(
                    "{message} (this server does not offer the endpoint: check that it is MLflow 2.x/3.x, \
                     started with the artifact proxy for artifact calls, and that MLFLOW_TRACKING_URI has no extra path)"
                ),
                url: url.to_string(),
            }
        }
        _ => {}
    }

    match status {
        StatusCode::NOT_FOUND if code.is_none() => Error::NotFound {
            what: with_url(&message),
        },
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::Unauthorized {
            url: url.to_string(),
            message,
        },
        StatusCode::BAD_REQUEST if code.is_none() => Error::InvalidParameter {
            message: with_url(&message),
        },
        _ => Error::Api {
            status: status.as_u16(),
            code: code.unwrap_or_else(|| format!("HTTP_{}", status.as_u16())),
            message,
            url: url.to_string(),
        },
    }
}

/// The start of a non-JSON error body, as one line, for messages.
fn body_excerpt(body: &[u8]) -> String {
    const MAX: usize = 300;
    let text = String::from_utf8_lossy(body);
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > MAX {
        let cut: String = one_line.chars().take(MAX).collect();
        format!("{cut}...")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "http://127.0.0.1:5000/api/2.0/mlflow/registered-models/get?name=x";

    #[test]
    fn resource_does_not_exist_is_not_found_and_names_the_url() {
        let body = br#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Registered Model with name=x not found"}"#;
        let err = decode_error_response(StatusCode::NOT_FOUND, URL, body);
        assert!(err.is_not_found(), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains("Registered Model with name=x not found"),
            "{text}"
        );
        assert!(text.contains(URL), "{text}");
        assert!(text.contains("MLFLOW_TRACKING_URI"), "{text}");
    }

    #[test]
    fn error_code_wins_over_status() {
        // Older MLflow versions answered RESOURCE_DOES_NOT_EXIST with 400.
        let body =
            br#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run 'abc' not found"}"#;
        let err = decode_error_response(StatusCode::BAD_REQUEST, URL, body);
        assert!(err.is_not_found(), "{err:?}");
    }

    #[test]
    fn already_exists_and_invalid_parameter() {
        let body = br#"{"error_code": "RESOURCE_ALREADY_EXISTS", "message": "Experiment 'e' already exists."}"#;
        let err = decode_error_response(StatusCode::BAD_REQUEST, URL, body);
        assert!(err.is_already_exists(), "{err:?}");

        let body = br#"{"error_code": "INVALID_PARAMETER_VALUE", "message": "Missing value for required parameter 'name'."}"#;
        match decode_error_response(StatusCode::BAD_REQUEST, URL, body) {
            Error::InvalidParameter { message } => {
                assert!(message.contains("Missing value for required parameter 'name'."));
                assert!(message.contains(URL));
            }
            other => panic!("expected InvalidParameter, got {other:?}"),
        }
    }

    #[test]
    fn plain_404_without_json_is_not_found() {
        let err = decode_error_response(StatusCode::NOT_FOUND, URL, b"<html>Not Found</html>");
        assert!(err.is_not_found(), "{err:?}");
    }

    #[test]
    fn unauthorized_statuses_and_codes() {
        let err =
            decode_error_response(StatusCode::UNAUTHORIZED, URL, b"You are not authenticated.");
        assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
        assert!(err.to_string().contains("MLFLOW_TRACKING_TOKEN"));
        let body = br#"{"error_code": "PERMISSION_DENIED", "message": "Permission denied"}"#;
        let err = decode_error_response(StatusCode::FORBIDDEN, URL, body);
        assert!(matches!(err, Error::Unauthorized { .. }), "{err:?}");
    }

    #[test]
    fn other_errors_are_kept_verbatim() {
        let body = br#"{"error_code": "INTERNAL_ERROR", "message": "database is locked"}"#;
        match decode_error_response(StatusCode::INTERNAL_SERVER_ERROR, URL, body) {
            Error::Api {
                status,
                code,
                message,
                url,
            } => {
                assert_eq!(status, 500);
                assert_eq!(code, "INTERNAL_ERROR");
                assert_eq!(message, "database is locked");
                assert_eq!(url, URL);
            }
            other => panic!("expected Api, got {other:?}"),
        }
        let err = decode_error_response(StatusCode::BAD_GATEWAY, URL, b"upstream\n  down");
        match &err {
            Error::Api { code, message, .. } => {
                assert_eq!(code, "HTTP_502");
                assert_eq!(message, "upstream down");
            }
            other => panic!("expected Api, got {other:?}"),
        }
        assert!(err.is_transient());
    }

    #[test]
    fn endpoint_not_found_is_an_api_error_with_a_hint() {
        let body = br#"{"error_code": "ENDPOINT_NOT_FOUND", "message": "No API route for /api/2.0/mlflow/x"}"#;
        let err = decode_error_response(StatusCode::NOT_FOUND, URL, body);
        assert!(!err.is_not_found());
        assert!(err.to_string().contains("MLflow 2.x/3.x"), "{err}");
    }

    #[test]
    fn fastapi_detail_is_used_as_the_message() {
        let body = br#"{"detail": "Artifact path refers to a directory, not a file: '1/abc/artifacts/model'"}"#;
        match decode_error_response(StatusCode::BAD_REQUEST, URL, body) {
            Error::InvalidParameter { message } => {
                assert!(message.contains("refers to a directory"), "{message}")
            }
            other => panic!("expected InvalidParameter, got {other:?}"),
        }
    }

    #[test]
    fn long_bodies_are_cut() {
        let body = vec![b'x'; 5000];
        match decode_error_response(StatusCode::INTERNAL_SERVER_ERROR, URL, &body) {
            Error::Api { message, .. } => assert!(message.len() < 400, "{}", message.len()),
            other => panic!("expected Api, got {other:?}"),
        }
    }
}
