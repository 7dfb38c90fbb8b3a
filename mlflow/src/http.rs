//! The transport: builds URLs under the tracking URI, adds credentials and time-outs, retries
//! what is safe to retry, and turns every failure into an [`Error`].
//!
//! The other modules never see `reqwest`: they call [`Transport::get`], [`Transport::post`],
//! [`Transport::delete`] for the JSON REST API, and [`Transport::run`] with a closure for the
//! artifact transfers, which stream bodies and need the same retry and error rules.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::{HeaderMap, CONTENT_TYPE, RETRY_AFTER};
use reqwest::{Client, Method, RequestBuilder, Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::config::{Auth, ClientConfig, RetryPolicy};
use crate::error::{decode_error_response, Error, Result};

/// The REST API's root, relative to the tracking URI.
const API_PREFIX: &str = "api/2.0/mlflow/";
/// The artifact proxy's root, relative to the tracking URI.
const ARTIFACTS_PREFIX: &str = "api/2.0/mlflow-artifacts/artifacts";

/// Whether repeating a call can change the outcome. Decides what the retry loop may repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Idempotency {
    /// Repeating the call leaves the server as one call would (reads, set-tag, set-alias,
    /// artifact PUTs, ...): retried on connection errors, time-outs, 429 and 5xx.
    Idempotent,
    /// Repeating could create a second object (create run, create model version, ...): retried only
    /// when the connection could not even be opened.
    NotIdempotent,
}

/// One attempt's failure, as the retry loop sees it.
pub(crate) enum Failure {
    /// Worth another attempt, after at least the given wait (a server's `Retry-After`).
    Retry(Error, Option<Duration>),
    /// Final: return it.
    Fatal(Error),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Fatal(e)
    }
}

/// A configured HTTP client for one tracking server. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub(crate) struct Transport {
    client: Client,
    base: Url,
    auth: Auth,
    timeout: Duration,
    transfer_timeout: Duration,
    retry: RetryPolicy,
    max_download_bytes: u64,
}

impl Transport {
    /// A transport for `config`'s server.
    pub(crate) fn new(config: &ClientConfig) -> Result<Self> {
        let client = Client::builder()
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("mlflow-client-rs/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::InvalidUri {
                uri: config.tracking_uri.to_string(),
                reason: format!("cannot build an HTTP client for it: {e}"),
            })?;
        Ok(Transport {
            client,
            base: config.tracking_uri.clone(),
            auth: config.auth.clone(),
            timeout: config.timeout,
            transfer_timeout: config.transfer_timeout,
            retry: config.retry,
            max_download_bytes: config.max_download_bytes,
        })
    }

    /// The most bytes one download may bring.
    pub(crate) fn max_download_bytes(&self) -> u64 {
        self.max_download_bytes
    }

    /// The tracking URI (ends in `/`).
    pub(crate) fn base(&self) -> &Url {
        &self.base
    }

    /// The time limit of one artifact file transfer.
    pub(crate) fn transfer_timeout(&self) -> Duration {
        self.transfer_timeout
    }

    /// `<tracking uri>/api/2.0/mlflow/<endpoint>?<query>`.
    pub(crate) fn api_url(&self, endpoint: &str, query: &[(&str, &str)]) -> Result<Url> {
        let mut url = self
            .base
            .join(&format!("{API_PREFIX}{endpoint}"))
            .map_err(|e| Error::InvalidUri {
                uri: format!("{}{API_PREFIX}{endpoint}", self.base),
                reason: e.to_string(),
            })?;
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// `<tracking uri>/api/2.0/mlflow-artifacts/artifacts[/<path segments>]`, each segment of the
    /// `/`-separated `path` percent-encoded.
    pub(crate) fn artifact_url(&self, path: &str) -> Result<Url> {
        let mut url = self
            .base
            .join(ARTIFACTS_PREFIX)
            .map_err(|e| Error::InvalidUri {
                uri: format!("{}{ARTIFACTS_PREFIX}", self.base),
                reason: e.to_string(),
            })?;
        {
            let mut segments = url.path_segments_mut().map_err(|()| Error::InvalidUri {
                uri: self.base.to_string(),
                reason: "the tracking URI cannot carry a path".into(),
            })?;
            segments.pop_if_empty();
            segments.extend(path.split('/').filter(|s| !s.is_empty()));
        }
        Ok(url)
    }

    /// A request with credentials and the REST time-out; callers may override the time-out.
    pub(crate) fn request(&self, method: Method, url: Url) -> RequestBuilder {
        let builder = self.client.request(method, url).timeout(self.timeout);
        match &self.auth {
            Auth::None => builder,
            Auth::Bearer(token) => builder.bearer_auth(token),
            Auth::Basic { username, password } => builder.basic_auth(username, Some(password)),
        }
    }

    /// `GET <api>/<endpoint>?<query>` and decode the JSON answer. Always idempotent.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        query: &[(&str, &str)],
    ) -> Result<T> {
        let url = self.api_url(endpoint, query)?;
        self.json_call(Method::GET, url, None, Idempotency::Idempotent)
            .await
    }

    /// `POST <api>/<endpoint>` with a JSON body and decode the JSON answer.
    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &B,
        idempotency: Idempotency,
    ) -> Result<T> {
        let url = self.api_url(endpoint, &[])?;
        let body = encode_body(&url, body)?;
        self.json_call(Method::POST, url, Some(body), idempotency)
            .await
    }

    /// `PATCH <api>/<endpoint>` with a JSON body and decode the JSON answer. Idempotent.
    pub(crate) async fn patch<B: Serialize, T: DeserializeOwned>(
        &self,
        endpoint: &str,
        body: &B,
    ) -> Result<T> {
        let url = self.api_url(endpoint, &[])?;
        let body = encode_body(&url, body)?;
        self.json_call(Method::PATCH, url, Some(body), Idempotency::Idempotent)
            .await
    }

    /// `DELETE <api>/<endpoint>` with the parameters both in the query string and as a JSON body:
    /// MLflow versions differ in where they read a DELETE's parameters from.
    pub(crate) async fn delete<T: DeserializeOwned>(
        &self,
        endpoint: &str,
        params: &[(&str, &str)],
    ) -> Result<T> {
        let url = self.api_url(endpoint, params)?;
        let map: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_string(),
                    serde_json::Value::String((*v).to_string()),
                )
            })
            .collect();
        let body = encode_body(&url, &map)?;
        self.json_call(Method::DELETE, url, Some(body), Idempotency::Idempotent)
            .await
    }

    /// One JSON REST call with retries: send, check the status, read and decode the body.
    async fn json_call<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
        idempotency: Idempotency,
    ) -> Result<T> {
        let (method_ref, url_ref, body_ref) = (&method, &url, &body);
        let bytes = self
            .run(&url, move || async move {
                let (method, url) = (method_ref, url_ref);
                let mut request = self.request(method.clone(), url.clone());
                if let Some(body) = body_ref {
                    request = request
                        .header(CONTENT_TYPE, "application/json")
                        .body(body.clone());
                }
                let response = self.send(request, url, idempotency).await?;
                response
                    .bytes()
                    .await
                    .map_err(|e| self.transport_failure(url, e, idempotency))
            })
            .await?;
        // Endpoints that answer an empty object may also answer an empty body.
        let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(bytes).map_err(|e| Error::Decode {
            url: url.to_string(),
            message: e.to_string(),
        })
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries are spent, sleeping with
    /// exponential backoff (and a little jitter) between attempts.
    pub(crate) async fn run<T, F, Fut>(&self, url: &Url, mut attempt: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Failure>>,
    {
        let mut retries = 0;
        loop {
            match attempt().await {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(e, retry_after)) => {
                    if retries >= self.retry.max_retries {
                        return Err(e);
                    }
                    retries += 1;
                    let backoff = jitter(self.retry.backoff(retries));
                    let wait = retry_after
                        .map_or(backoff, |after| after.max(backoff))
                        .min(self.retry.max_backoff);
                    tracing::warn!(url = %url, retry = retries, wait_ms = wait.as_millis() as u64, error = %e, "MLflow call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Sends one request; a non-2xx answer becomes a [`Failure`] (retryable when `idempotency`
    /// allows and the status is 429 or 5xx).
    pub(crate) async fn send(
        &self,
        request: RequestBuilder,
        url: &Url,
        idempotency: Idempotency,
    ) -> Result<Response, Failure> {
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_failure(url, e, idempotency))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry_after(response.headers());
        // A failed read of the error body leaves an empty body: the status still tells.
        let body = response.bytes().await.unwrap_or_default();
        let error = decode_error_response(status, url.as_str(), &body);
        let retryable = idempotency == Idempotency::Idempotent
            && (status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error());
        Err(if retryable {
            Failure::Retry(error, retry_after)
        } else {
            Failure::Fatal(error)
        })
    }

    /// Classifies a `reqwest` error: connection failures may always be retried (nothing reached
    /// the server), other network failures only for idempotent calls.
    pub(crate) fn transport_failure(
        &self,
        url: &Url,
        error: reqwest::Error,
        idempotency: Idempotency,
    ) -> Failure {
        if error.is_builder() {
            return Failure::Fatal(Error::InvalidUri {
                uri: url.to_string(),
                reason: error.to_string(),
            });
        }
        if error.is_decode() {
            return Failure::Fatal(Error::Decode {
                url: url.to_string(),
                message: error.to_string(),
            });
        }
        let retryable = error.is_connect() || idempotency == Idempotency::Idempotent;
        let error = Error::Unavailable {
            url: url.to_string(),
            source: error,
        };
        if retryable {
            Failure::Retry(error, None)
        } else {
            Failure::Fatal(error)
        }
    }
}

/// Serialises a request body, naming the URL if that fails (it cannot for this crate's types).
fn encode_body<B: Serialize>(url: &Url, body: &B) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| Error::InvalidParameter {
        message: format!("cannot encode the request for {url}: {e}"),
    })
}

/// A `Retry-After: <seconds>` header, if any (the HTTP-date form is ignored).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// Adds up to 20 % to `wait`, so that many clients retrying together spread out.
fn jitter(wait: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let fraction = f64::from(nanos % 1000) / 1000.0 * 0.2;
    wait.mul_f64(1.0 + fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transport(uri: &str) -> Transport {
        Transport::new(&ClientConfig::new(uri).unwrap()).unwrap()
    }

    #[test]
    fn api_urls_join_under_the_tracking_uri_and_encode_queries() {
        let t = transport("http://127.0.0.1:5000/prefix");
        let url = t
            .api_url(
                "registered-models/alias",
                &[("name", "a b&c"), ("alias", "champion")],
            )
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/prefix/api/2.0/mlflow/registered-models/alias?name=a+b%26c&alias=champion"
        );
    }

    #[test]
    fn artifact_urls_encode_each_segment() {
        let t = transport("http://127.0.0.1:5000");
        let url = t.artifact_url("1/abc/artifacts/my model/a#b.json").unwrap();
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts/1/abc/artifacts/my%20model/a%23b.json"
        );
        let root = t.artifact_url("").unwrap();
        assert_eq!(
            root.as_str(),
            "http://127.0.0.1:5000/api/2.0/mlflow-artifacts/artifacts"
        );
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(3)));
    }

    #[test]
    fn jitter_adds_at_most_a_fifth() {
        let base = Duration::from_millis(1000);
        let waited = jitter(base);
        assert!(
            waited >= base && waited <= Duration::from_millis(1200),
            "{waited:?}"
        );
    }
}
