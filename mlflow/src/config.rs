//! Where the MLflow server is and how to talk to it: URI, credentials, time-outs, retries.
//!
//! The detector server, the trainer and the operator all read the same MLflow environment
//! variables as MLflow's own Python client ([`ClientConfig::from_env`]), so one Kubernetes Secret
//! or shell profile configures every tool. Tests and embedding code use the builder methods
//! instead and never touch the process environment.

use std::fmt;
use std::time::Duration;

use reqwest::Url;

use crate::error::{Error, Result};

/// Environment variable with the tracking server's URI, e.g. `http://mlflow:5000`.
pub const ENV_TRACKING_URI: &str = "MLFLOW_TRACKING_URI";
/// Environment variable with a bearer token (takes precedence over basic auth).
pub const ENV_TOKEN: &str = "MLFLOW_TRACKING_TOKEN";
/// Environment variable with the basic-auth user name.
pub const ENV_USERNAME: &str = "MLFLOW_TRACKING_USERNAME";
/// Environment variable with the basic-auth password.
pub const ENV_PASSWORD: &str = "MLFLOW_TRACKING_PASSWORD";
/// Environment variable with the per-request time-out in seconds (MLflow's own name for it).
pub const ENV_TIMEOUT: &str = "MLFLOW_HTTP_REQUEST_TIMEOUT";
/// Environment variable with the number of retries of idempotent calls (MLflow's own name).
pub const ENV_MAX_RETRIES: &str = "MLFLOW_HTTP_REQUEST_MAX_RETRIES";

/// How requests authenticate. `Debug` never prints the secret.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header (a server without auth, or auth done by a sidecar).
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(String),
    /// HTTP basic auth, as MLflow's `basic-auth` app expects.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: String,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Auth::Basic { username, .. } => write!(
                f,
                "Basic {{ username: {username:?}, password: <redacted> }}"
            ),
        }
    }
}

/// Bounded retries with exponential backoff, for idempotent calls only.
///
/// Retried: connection failures, time-outs, HTTP 429 and 5xx. A call that is not idempotent
/// (creating an experiment, run or model version) is retried only when the connection could not be
/// opened at all, since then the server cannot have acted on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// How many times a failed attempt is repeated (0 = try once).
    pub max_retries: u32,
    /// Wait before the first retry; doubles each time.
    pub initial_backoff: Duration,
    /// Upper bound of one wait (also caps a server's `Retry-After`).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// No retries at all: fail on the first error (useful for health probes and tests).
    pub fn none() -> Self {
        RetryPolicy {
            max_retries: 0,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (1-based), without jitter.
    pub fn backoff(&self, retry: u32) -> Duration {
        let factor = 2u32.saturating_pow(retry.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// Everything a [`crate::MlflowClient`] needs to know. Build it with [`ClientConfig::new`] and the
/// `with_*` methods, or read it from the environment with [`ClientConfig::from_env`].
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The tracking server, e.g. `http://mlflow:5000` (a path prefix such as `/mlflow` is kept).
    pub tracking_uri: Url,
    /// Credentials sent with every request, artifact transfers included.
    pub auth: Auth,
    /// Time limit of one REST call (connect, send, whole answer).
    pub timeout: Duration,
    /// Time limit of one artifact file transfer (upload or download), which can be large.
    pub transfer_timeout: Duration,
    /// Time limit for opening a TCP connection.
    pub connect_timeout: Duration,
    /// Retry policy for idempotent calls.
    pub retry: RetryPolicy,
    /// Most bytes one download (a file, or a whole artifact folder) may bring. A registry
    /// version is input from outside: a wrong or hostile artifact must not fill the disk or the
    /// cache volume a detector serves from.
    pub max_download_bytes: u64,
}

/// Default of [`ClientConfig::max_download_bytes`]: 2 GiB, far above a model package (a few MB)
/// or a packaged speech encoder (a few hundred MB).
pub const DEFAULT_MAX_DOWNLOAD_BYTES: u64 = 2 << 30;

impl ClientConfig {
    /// A configuration for the server at `tracking_uri` (http, or https with the `rustls`
    /// feature), without credentials, with default time-outs (30 s per call, 10 min per artifact
    /// file, 10 s to connect) and [`RetryPolicy::default`].
    pub fn new(tracking_uri: &str) -> Result<Self> {
        Ok(ClientConfig {
            tracking_uri: parse_tracking_uri(tracking_uri)?,
            auth: Auth::None,
            timeout: Duration::from_secs(30),
            transfer_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            retry: RetryPolicy::default(),
            max_download_bytes: DEFAULT_MAX_DOWNLOAD_BYTES,
        })
    }

    /// Reads `MLFLOW_TRACKING_URI` (required), `MLFLOW_TRACKING_TOKEN` or
    /// `MLFLOW_TRACKING_USERNAME` + `MLFLOW_TRACKING_PASSWORD`, `MLFLOW_HTTP_REQUEST_TIMEOUT`
    /// (seconds) and `MLFLOW_HTTP_REQUEST_MAX_RETRIES` from the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Like [`ClientConfig::from_env`], with variables read through `lookup` (a map in tests, a
    /// config file, ...). Empty values count as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |key: &str| {
            lookup(key)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let uri = get(ENV_TRACKING_URI).ok_or_else(|| Error::InvalidUri {
            uri: String::new(),
            reason: format!("{ENV_TRACKING_URI} is not set; set it to the tracking server, e.g. http://mlflow:5000"),
        })?;
        let mut config = ClientConfig::new(&uri)?;

        if let Some(token) = get(ENV_TOKEN) {
            config.auth = Auth::Bearer(token);
        } else if let Some(username) = get(ENV_USERNAME) {
            let password = get(ENV_PASSWORD).ok_or_else(|| Error::InvalidParameter {
                message: format!(
                    "{ENV_USERNAME} is set but {ENV_PASSWORD} is not; set both for basic auth"
                ),
            })?;
            config.auth = Auth::Basic { username, password };
        }
        if let Some(secs) = get(ENV_TIMEOUT) {
            let secs: f64 = secs
                .parse()
                .ok()
                .filter(|s: &f64| s.is_finite() && *s > 0.0)
                .ok_or_else(|| Error::InvalidParameter {
                    message: format!("{ENV_TIMEOUT}='{secs}' is not a positive number of seconds"),
                })?;
            config.timeout = Duration::from_secs_f64(secs);
        }
        if let Some(retries) = get(ENV_MAX_RETRIES) {
            config.retry.max_retries = retries.parse().map_err(|_| Error::InvalidParameter {
                message: format!("{ENV_MAX_RETRIES}='{retries}' is not a non-negative integer"),
            })?;
        }
        Ok(config)
    }

    /// Caps what one download may bring (see [`ClientConfig::max_download_bytes`]).
    pub fn with_max_download_bytes(mut self, bytes: u64) -> Self {
        self.max_download_bytes = bytes;
        self
    }

    /// Sends `Authorization: Bearer <token>` with every request.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.auth = Auth::Bearer(token.into());
        self
    }

    /// Sends HTTP basic credentials with every request.
    pub fn with_basic_auth(
        mut self,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.auth = Auth::Basic {
            username: username.into(),
            password: password.into(),
        };
        self
    }

    /// Sets the time limit of one REST call.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the time limit of one artifact file transfer.
    pub fn with_transfer_timeout(mut self, timeout: Duration) -> Self {
        self.transfer_timeout = timeout;
        self
    }

    /// Sets the time limit for opening a connection.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the retry policy.
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// Checks the tracking URI's scheme and makes its path end in `/` so that API paths join under it.
fn parse_tracking_uri(uri: &str) -> Result<Url> {
    let invalid = |reason: String| Error::InvalidUri {
        uri: uri.to_string(),
        reason,
    };
    let mut url = Url::parse(uri.trim()).map_err(|e| {
        invalid(format!(
            "{e}; expected the tracking server's http URL, e.g. http://127.0.0.1:5000"
        ))
    })?;
    match url.scheme() {
        "http" => {}
        "https" if cfg!(feature = "rustls") => {}
        "https" => {
            return Err(invalid(
                "https needs mlflow-client's `rustls` cargo feature; build with it or use http".into(),
            ))
        }
        other => {
            return Err(invalid(format!(
                "scheme '{other}' is not a tracking server this client can reach; use http://HOST:PORT \
                 (file stores and 'databricks' URIs are not supported)"
            )))
        }
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host; expected http://HOST:PORT".into()));
    }
    url.set_query(None);
    url.set_fragment(None);
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn from_lookup_reads_uri_token_timeout_and_retries() {
        let config = ClientConfig::from_lookup(lookup(&[
            (ENV_TRACKING_URI, "http://mlflow:5000"),
            (ENV_TOKEN, "t0k"),
            (ENV_USERNAME, "ignored-when-token-set"),
            (ENV_TIMEOUT, "2.5"),
            (ENV_MAX_RETRIES, "7"),
        ]))
        .unwrap();
        assert_eq!(config.tracking_uri.as_str(), "http://mlflow:5000/");
        assert_eq!(config.auth, Auth::Bearer("t0k".into()));
        assert_eq!(config.timeout, Duration::from_millis(2500));
        assert_eq!(config.retry.max_retries, 7);
        assert!(
            !format!("{config:?}").contains("t0k"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn basic_auth_needs_both_variables() {
        let config = ClientConfig::from_lookup(lookup(&[
            (ENV_TRACKING_URI, "http://mlflow:5000/prefix"),
            (ENV_USERNAME, "u"),
            (ENV_PASSWORD, "p"),
        ]))
        .unwrap();
        assert_eq!(config.tracking_uri.as_str(), "http://mlflow:5000/prefix/");
        assert_eq!(
            config.auth,
            Auth::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let err = ClientConfig::from_lookup(lookup(&[
            (ENV_TRACKING_URI, "http://m"),
            (ENV_USERNAME, "u"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(ENV_PASSWORD), "{err}");
    }

    #[test]
    fn missing_or_unusable_uris_are_refused_with_a_hint() {
        let err = ClientConfig::from_lookup(lookup(&[])).unwrap_err();
        assert!(err.to_string().contains(ENV_TRACKING_URI), "{err}");
        for bad in [
            "file:///tmp/mlruns",
            "databricks",
            "sqlite:///x.db",
            "http://",
        ] {
            assert!(
                matches!(ClientConfig::new(bad), Err(Error::InvalidUri { .. })),
                "{bad}"
            );
        }
        let err = ClientConfig::from_lookup(lookup(&[
            (ENV_TRACKING_URI, "http://m"),
            (ENV_TIMEOUT, "soon"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains(ENV_TIMEOUT), "{err}");
    }

    #[test]
    fn https_needs_the_rustls_feature() {
        let result = ClientConfig::new("https://mlflow.internal:8443");
        if cfg!(feature = "rustls") {
            assert!(result.is_ok(), "{result:?}");
        } else {
            let err = result.unwrap_err().to_string();
            assert!(err.contains("rustls"), "{err}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
        };
        assert_eq!(policy.backoff(1), Duration::from_millis(100));
        assert_eq!(policy.backoff(2), Duration::from_millis(200));
        assert_eq!(policy.backoff(3), Duration::from_millis(350));
        assert_eq!(policy.backoff(40), Duration::from_millis(350));
    }
}
