//! Getting a registered model version onto local disk: resolve, locate, download into the cache.
//!
//! [`MlflowClient::download_model`] is what the detector calls with `AURALGUARD_MODEL=models:/...`
//! and what the operator's init step runs. A pinned version already in the cache is returned
//! without contacting MLflow at all, so a restart while MLflow is down still serves. Otherwise the
//! version's files are located the way the registry says
//! (`model-versions/get-download-uri`, which maps MLflow 3 `models:/m-<id>` sources to the
//! logged model's folder), falling back to the version's `source`; `runs:/` and `models:/m-`
//! locations are resolved through the server, and the files come through the artifact proxy into
//! [`ModelCache::get_or_fill`].

use crate::artifact_location::ArtifactLocation;
use crate::cache::{CachedModel, ModelCache};
use crate::client::MlflowClient;
use crate::error::{Error, Result};
use crate::model_uri::ModelUri;
use crate::registry::{ModelVersion, ModelVersionStatus};

/// How many `models:/NAME/VERSION` sources (a version registered from another version) are
/// followed before giving up on a cycle.
const MAX_SOURCE_HOPS: usize = 4;
/// How long a version still registering is waited for.
const READY_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

impl MlflowClient {
    /// The local folder of the model `uri` names, downloaded into `cache` if needed.
    /// For `models:/NAME@ALIAS` the alias is resolved first (so this needs the server); for
    /// `models:/NAME/VERSION` a cached copy is returned without any request.
    pub async fn download_model(&self, uri: &ModelUri, cache: &ModelCache) -> Result<CachedModel> {
        if let ModelUri::Version { name, version } = uri {
            if let Some(hit) = cache.get(name, *version) {
                return Ok(hit);
            }
        }
        let version = self.resolve(uri).await?;
        self.download_model_version(&version, cache).await
    }

    /// The local folder of model version `version`, downloaded into `cache` if needed.
    pub async fn download_model_version(
        &self,
        version: &ModelVersion,
        cache: &ModelCache,
    ) -> Result<CachedModel> {
        let number = version.number()?;
        if let Some(hit) = cache.get(&version.name, number) {
            return Ok(hit);
        }
        let model = ModelUri::version(version.name.clone(), number);
        match version.status {
            ModelVersionStatus::FailedRegistration => {
                return Err(Error::InvalidModel {
                    model: model.to_string(),
                    reason: format!("registration failed: {}", version.status_message),
                })
            }
            ModelVersionStatus::PendingRegistration => {
                self.wait_model_version_ready(&version.name, number, READY_WAIT)
                    .await?;
            }
            _ => {}
        }
        let path = self
            .model_version_proxy_path(&version.name, number, &version.source)
            .await?;
        let cached = cache
            .get_or_fill(&version.name, number, |dir| async move {
                self.download_proxied_dir(&path, &dir).await.map(|_| ())
            })
            .await
            .map_err(|e| name_model(e, &model))?;
        if cached.downloaded {
            tracing::info!(model = %model, dir = %cached.dir.display(), "downloaded model version");
        }
        Ok(cached)
    }

    /// The `mlflow-artifacts:/` URI of version `version` of `name`'s files.
    pub async fn model_version_artifact_uri(&self, name: &str, version: u64) -> Result<String> {
        let mv = self.get_model_version(name, version).await?;
        let path = self
            .model_version_proxy_path(name, version, &mv.source)
            .await?;
        Ok(format!("mlflow-artifacts:/{path}"))
    }

    /// The proxy path of a version's files: the registry's download URI (or `source` when the
    /// server has no such endpoint), with `runs:/`, `models:/m-` and `models:/NAME/VERSION`
    /// resolved.
    async fn model_version_proxy_path(
        &self,
        name: &str,
        version: u64,
        source: &str,
    ) -> Result<String> {
        let model = ModelUri::version(name, version);
        let mut uri = match self.get_model_version_download_uri(name, version).await {
            Ok(uri) if !uri.is_empty() => uri,
            Ok(_) => source.to_string(),
            Err(Error::Api { code, .. }) if code == "ENDPOINT_NOT_FOUND" => source.to_string(),
            Err(e) => return Err(name_model(e, &model)),
        };
        for _ in 0..MAX_SOURCE_HOPS {
            // A version registered from another registered version: follow it.
            if let Ok(ModelUri::Version { name, version }) = uri.parse::<ModelUri>() {
                uri = self
                    .get_model_version_download_uri(&name, version)
                    .await
                    .map_err(|e| name_model(e, &model))?;
                continue;
            }
            let location = ArtifactLocation::parse(&uri).map_err(|e| match e {
                Error::InvalidUri { uri, reason } => Error::InvalidUri {
                    uri,
                    reason: format!("{reason} (the files of {model})"),
                },
                other => other,
            })?;
            return self
                .resolve_artifact_location(&location)
                .await
                .map_err(|e| name_model(e, &model));
        }
        Err(Error::InvalidModel {
            model: model.to_string(),
            reason: format!(
                "its source chain is longer than {MAX_SOURCE_HOPS} hops (a cycle?); last: {uri}"
            ),
        })
    }
}

/// Prefixes a not-found error with the model it was about.
fn name_model(e: Error, model: &ModelUri) -> Error {
    match e {
        Error::NotFound { what } if !what.contains(&model.to_string()) => Error::NotFound {
            what: format!("{model}: {what}"),
        },
        other => other,
    }
}
