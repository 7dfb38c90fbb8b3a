//! [`MlflowClient`]: the handle every call goes through.
//!
//! It only holds the shared transport; the calls themselves live in the module of their topic
//! (`tracking`, `artifacts`, `registry`, `logged_models`, `fetch`), each adding an `impl
//! MlflowClient` block. Clones are cheap and share one connection pool, so build one client at
//! start-up and pass clones around.

use std::sync::Arc;

use reqwest::{Method, Url};

use crate::config::ClientConfig;
use crate::error::{Error, Result};
use crate::http::{Idempotency, Transport};

/// A client of one MLflow tracking server (REST API, Model Registry and artifact proxy).
#[derive(Debug, Clone)]
pub struct MlflowClient {
    pub(crate) transport: Arc<Transport>,
}

impl MlflowClient {
    /// A client for the server and credentials in `config`. Does not contact the server.
    pub fn new(config: ClientConfig) -> Result<Self> {
        Ok(MlflowClient {
            transport: Arc::new(Transport::new(&config)?),
        })
    }

    /// A client configured from the `MLFLOW_TRACKING_*` environment variables
    /// (see [`ClientConfig::from_env`]).
    pub fn from_env() -> Result<Self> {
        Self::new(ClientConfig::from_env()?)
    }

    /// The tracking server's URI, as used for every request (ends in `/`).
    pub fn tracking_uri(&self) -> &Url {
        self.transport.base()
    }

    /// Checks that the server is up: `GET /health` must answer `OK`. A cheap probe for readiness
    /// checks; [`Error::Unavailable`] when it cannot be reached.
    pub async fn health(&self) -> Result<()> {
        let url = self
            .transport
            .base()
            .join("health")
            .map_err(|e| Error::InvalidUri {
                uri: self.transport.base().to_string(),
                reason: e.to_string(),
            })?;
        let url_ref = &url;
        let body = self
            .transport
            .run(url_ref, move || async move {
                let request = self.transport.request(Method::GET, url_ref.clone());
                let response = self
                    .transport
                    .send(request, url_ref, Idempotency::Idempotent)
                    .await?;
                response.text().await.map_err(|e| {
                    self.transport
                        .transport_failure(url_ref, e, Idempotency::Idempotent)
                })
            })
            .await?;
        if body.trim() == "OK" {
            Ok(())
        } else {
            Err(Error::Api {
                status: 200,
                code: "UNHEALTHY".into(),
                message: format!("health check answered {:?}, not \"OK\"", body.trim()),
                url: url.to_string(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CreateRun, ModelCache, ModelUri, RunBatch};

    fn assert_send<T: Send>(_: &T) {}

    /// The detector and the operator run these calls inside `tokio::spawn`, which needs `Send`
    /// futures; creating (not polling) them is enough for the compiler to check.
    #[test]
    fn futures_are_send_and_the_client_is_shareable() {
        fn assert_sync<T: Send + Sync + Clone>() {}
        assert_sync::<MlflowClient>();

        let client = MlflowClient::new(ClientConfig::new("http://127.0.0.1:9").unwrap()).unwrap();
        let cache = ModelCache::new("/nonexistent");
        let uri = ModelUri::alias("m", "champion");
        let dir = std::path::Path::new("/nonexistent");
        assert_send(&client.download_model(&uri, &cache));
        assert_send(&client.resolve(&uri));
        assert_send(&client.log_batch("r", &RunBatch::new()));
        assert_send(&client.create_run(&CreateRun::new("1")));
        assert_send(&client.log_artifacts("r", dir, "model"));
        assert_send(&client.download_dir("runs:/r/model", dir));
        assert_send(&client.health());
    }
}
