//! Artifact URIs: which folder of which run or model a URI names, as a path behind the tracking
//! server's artifact proxy.
//!
//! MLflow names artifact folders with URIs. This client reads and writes them only through the
//! proxy (`/api/2.0/mlflow-artifacts/artifacts/<path>`), so the detector and the operator need
//! nothing but the tracking URI and its credentials, whatever storage sits behind the server.
//! [`ArtifactLocation`] parses the URI forms the server hands out:
//!
//! - `mlflow-artifacts:/<path>`: the proxy's own form (a run's `artifact_uri` looks like
//!   `mlflow-artifacts:/<experiment_id>/<run_id>/artifacts`);
//! - `runs:/<run_id>/<path>`: relative to a run's artifact root (one `runs/get` to resolve);
//! - `models:/m-<id>[/<path>]`: an MLflow 3 logged model (one `logged-models/<id>` to resolve);
//! - `http(s)://<server>/api/2.0/mlflow-artifacts/artifacts/<path>`: the proxy as a plain URL.
//!
//! Storage URIs such as `s3://` or `file://` mean the server was started without the proxy; they
//! are refused with a message that says so. Paths are normalised and `..` is refused, here, before
//! any request or local file is made from them.

use std::fmt;

use reqwest::Url;

use crate::error::{Error, Result};

/// Where a folder or file of artifacts lives, as far as this client can reach it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ArtifactLocation {
    /// Behind the tracking server's artifact proxy; `path` is relative to the proxy's root and
    /// has no leading or trailing `/` (e.g. `1/<run_id>/artifacts/model`).
    Proxied {
        /// Path under the proxy root.
        path: String,
    },
    /// `runs:/<run_id>/<path>`: `path` relative to the run's artifact root (may be empty).
    Run {
        /// The run.
        run_id: String,
        /// Path under the run's artifact root.
        path: String,
    },
    /// `models:/m-<id>[/<path>]`: an MLflow 3 logged model's artifacts.
    LoggedModel {
        /// The logged model's id, `m-...`.
        model_id: String,
        /// Path under the logged model's artifact root (may be empty).
        path: String,
    },
}

impl ArtifactLocation {
    /// Parses an artifact URI (see the module documentation for the accepted forms).
    pub fn parse(uri: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUri {
            uri: uri.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = uri.trim();
        if let Some(rest) = trimmed.strip_prefix("mlflow-artifacts:") {
            // `mlflow-artifacts:/p`, `mlflow-artifacts:///p`, or `mlflow-artifacts://host:port/p`:
            // the host, if any, is the server this client is configured for anyway.
            let path = match rest.strip_prefix("//") {
                Some(with_authority) => with_authority
                    .find('/')
                    .map_or("", |i| &with_authority[i..]),
                None => rest,
            };
            return Ok(ArtifactLocation::Proxied {
                path: clean_path(path).map_err(|r| invalid(&r))?,
            });
        }
        if let Some(rest) = trimmed.strip_prefix("runs:/") {
            let rest = rest.trim_start_matches('/');
            let (run_id, path) = rest.split_once('/').unwrap_or((rest, ""));
            if run_id.is_empty() {
                return Err(invalid("no run id; expected runs:/<run_id>/<path>"));
            }
            return Ok(ArtifactLocation::Run {
                run_id: run_id.to_string(),
                path: clean_path(path).map_err(|r| invalid(&r))?,
            });
        }
        if let Some(rest) = trimmed.strip_prefix("models:/") {
            let rest = rest.trim_start_matches('/');
            let (model_id, path) = rest.split_once('/').unwrap_or((rest, ""));
            if model_id.starts_with("m-") && model_id.len() > 2 {
                return Ok(ArtifactLocation::LoggedModel {
                    model_id: model_id.to_string(),
                    path: clean_path(path).map_err(|r| invalid(&r))?,
                });
            }
            return Err(invalid(
                "a registered model URI is not an artifact location; resolve it to a model version first",
            ));
        }
        if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
            const MARKER: &str = "/api/2.0/mlflow-artifacts/artifacts";
            if let Ok(url) = Url::parse(trimmed) {
                if let Some(i) = url.path().find(MARKER) {
                    let tail = &url.path()[i + MARKER.len()..];
                    let decoded = percent_decode(tail).map_err(|r| invalid(&r))?;
                    return Ok(ArtifactLocation::Proxied {
                        path: clean_path(&decoded).map_err(|r| invalid(&r))?,
                    });
                }
            }
        }
        Err(invalid(
            "this client reaches artifacts only through the tracking server's artifact proxy \
             (mlflow-artifacts:/, runs:/ or models:/m-... URIs); start `mlflow server` with the proxy \
             on (the default, with --artifacts-destination) so that runs get mlflow-artifacts:/ URIs",
        ))
    }

    /// This location with `relative` (a `/`-separated path) appended.
    pub fn join(&self, relative: &str) -> Result<Self> {
        let extra = clean_path(relative).map_err(|reason| Error::InvalidUri {
            uri: relative.to_string(),
            reason,
        })?;
        let joined = |base: &str| match (base.is_empty(), extra.is_empty()) {
            (_, true) => base.to_string(),
            (true, false) => extra.clone(),
            (false, false) => format!("{base}/{extra}"),
        };
        Ok(match self {
            ArtifactLocation::Proxied { path } => ArtifactLocation::Proxied { path: joined(path) },
            ArtifactLocation::Run { run_id, path } => ArtifactLocation::Run {
                run_id: run_id.clone(),
                path: joined(path),
            },
            ArtifactLocation::LoggedModel { model_id, path } => ArtifactLocation::LoggedModel {
                model_id: model_id.clone(),
                path: joined(path),
            },
        })
    }
}

impl fmt::Display for ArtifactLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = |p: &str| {
            if p.is_empty() {
                String::new()
            } else {
                format!("/{p}")
            }
        };
        match self {
            ArtifactLocation::Proxied { path } => write!(f, "mlflow-artifacts:/{path}"),
            ArtifactLocation::Run { run_id, path } => write!(f, "runs:/{run_id}{}", suffix(path)),
            ArtifactLocation::LoggedModel { model_id, path } => {
                write!(f, "models:/{model_id}{}", suffix(path))
            }
        }
    }
}

/// `base/extra`, either side possibly empty.
pub(crate) fn join_proxied(base: &str, extra: &str) -> String {
    match (base.is_empty(), extra.is_empty()) {
        (_, true) => base.to_string(),
        (true, false) => extra.to_string(),
        (false, false) => format!("{base}/{extra}"),
    }
}

/// Normalises a `/`-separated artifact path: drops empty and `.` segments, refuses `..` and
/// backslashes (the server refuses them too, and they could escape a local folder).
pub(crate) fn clean_path(path: &str) -> std::result::Result<String, String> {
    let mut segments = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => return Err("'..' is not allowed in artifact paths".into()),
            s if s.contains('\\') => return Err("'\\' is not allowed in artifact paths".into()),
            s => segments.push(s),
        }
    }
    Ok(segments.join("/"))
}

/// Decodes `%XX` escapes of a URL path (UTF-8).
pub(crate) fn percent_decode(s: &str) -> std::result::Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| format!("bad %-escape '%{hex}'"))?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the path is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxied(path: &str) -> ArtifactLocation {
        ArtifactLocation::Proxied { path: path.into() }
    }

    #[test]
    fn parses_the_uri_forms_the_server_hands_out() {
        assert_eq!(
            ArtifactLocation::parse("mlflow-artifacts:/1/abc/artifacts").unwrap(),
            proxied("1/abc/artifacts")
        );
        assert_eq!(
            ArtifactLocation::parse("mlflow-artifacts://mlflow:5000/1/abc/artifacts/model/")
                .unwrap(),
            proxied("1/abc/artifacts/model")
        );
        assert_eq!(
            ArtifactLocation::parse("mlflow-artifacts:///1/x").unwrap(),
            proxied("1/x")
        );
        assert_eq!(
            ArtifactLocation::parse("runs:/abc/model").unwrap(),
            ArtifactLocation::Run {
                run_id: "abc".into(),
                path: "model".into()
            }
        );
        assert_eq!(
            ArtifactLocation::parse("runs:/abc").unwrap(),
            ArtifactLocation::Run {
                run_id: "abc".into(),
                path: "".into()
            }
        );
        assert_eq!(
            ArtifactLocation::parse("models:/m-0123abcd").unwrap(),
            ArtifactLocation::LoggedModel {
                model_id: "m-0123abcd".into(),
                path: "".into()
            }
        );
        assert_eq!(
            ArtifactLocation::parse(
                "http://h:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/my%20model"
            )
            .unwrap(),
            proxied("1/abc/artifacts/my model")
        );
    }

    #[test]
    fn refuses_storage_uris_and_traversal() {
        for bad in [
            "s3://bucket/1/abc",
            "file:///tmp/mlruns/1",
            "/tmp/mlruns",
            "runs:/",
            "models:/detector/1",
            "mlflow-artifacts:/1/../2",
            "runs:/abc/../../etc",
        ] {
            assert!(
                matches!(ArtifactLocation::parse(bad), Err(Error::InvalidUri { .. })),
                "{bad}"
            );
        }
        let err = ArtifactLocation::parse("s3://bucket/x")
            .unwrap_err()
            .to_string();
        assert!(err.contains("artifact proxy"), "{err}");
    }

    #[test]
    fn display_round_trips_and_join_appends() {
        for uri in [
            "mlflow-artifacts:/1/abc/artifacts",
            "runs:/abc/model",
            "runs:/abc",
            "models:/m-1/x",
        ] {
            assert_eq!(ArtifactLocation::parse(uri).unwrap().to_string(), uri);
        }
        let run = ArtifactLocation::parse("runs:/abc").unwrap();
        assert_eq!(run.join("model/").unwrap().to_string(), "runs:/abc/model");
        assert_eq!(proxied("1/a").join("").unwrap(), proxied("1/a"));
        assert!(proxied("1/a").join("../b").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("/a%20b/c%C3%A9").unwrap(), "/a b/cé");
        assert!(percent_decode("%2").is_err());
        assert!(percent_decode("%zz").is_err());
    }
}
