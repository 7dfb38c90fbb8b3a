//! Resolving a detector's model source to a pinned version.
//!
//! Only `models:/NAME@ALIAS` needs a lookup; everything else pins itself
//! ([`ModelRef::fixed`]). The lookup goes through the [`ModelResolver`] trait so reconcile can be
//! tested with a deterministic resolver and run in production against MLflow's REST API.
//! [`resolve`] is the one entry point reconcile calls; [`MlflowResolver`] is the production
//! resolver (over the workspace's `mlflow-client` crate) and [`CachedResolver`] keeps its
//! answers for a while so watch-triggered reconciles do not each call MLflow.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use auralguard_crds::{AudioDetector, MlflowSpec, ModelSource, RegistrySelector};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::model::ModelRef;
use crate::{Error, Result};

/// Where to ask: the detector's namespace (for its credentials Secret) and its MLflow settings.
#[derive(Clone, Copy, Debug)]
pub struct RegistryTarget<'a> {
    /// The detector's namespace.
    pub namespace: &'a str,
    /// `spec.mlflow`.
    pub mlflow: &'a MlflowSpec,
}

/// Looks up which version an MLflow alias points at.
#[async_trait]
pub trait ModelResolver: Send + Sync {
    /// The version number (as MLflow writes it) that `alias` of registered model `model` points
    /// at.
    async fn alias_version(
        &self,
        target: RegistryTarget<'_>,
        model: &str,
        alias: &str,
    ) -> Result<String>;
}

/// Resolves the detector's model source to the model its pods must load.
pub async fn resolve(resolver: &dyn ModelResolver, det: &AudioDetector) -> Result<ModelRef> {
    let source: ModelSource = det.spec.model.source.parse()?;
    if let Some(fixed) = ModelRef::fixed(&source) {
        return Ok(fixed);
    }
    let ModelSource::Registry {
        name,
        selector: RegistrySelector::Alias(alias),
    } = &source
    else {
        return Err(Error::Resolve {
            source_uri: source.to_string(),
            message: "unsupported source".into(),
        });
    };
    let mlflow = det.spec.mlflow.as_ref().ok_or_else(|| Error::Resolve {
        source_uri: source.to_string(),
        message: "spec.mlflow.trackingUri is not set".into(),
    })?;
    let namespace = crate::builders::namespace(det)?;
    let target = RegistryTarget {
        namespace: &namespace,
        mlflow,
    };
    let version = resolver.alias_version(target, name, alias).await?;
    Ok(ModelRef::registry(name, &version))
}

/// (tracking URI, registered model, alias).
type AliasKey = (String, String, String);

/// Remembers each alias' version for a while, so the many reconciles that watch events trigger
/// do not each call MLflow; an alias move is seen within the time-to-live.
pub struct CachedResolver<R> {
    inner: R,
    ttl: Duration,
    cache: Mutex<HashMap<AliasKey, (Instant, String)>>,
}

impl<R: ModelResolver> CachedResolver<R> {
    /// Caches `inner`'s answers for `ttl`.
    pub fn new(inner: R, ttl: Duration) -> Self {
        Self {
            inner,
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl<R: ModelResolver> ModelResolver for CachedResolver<R> {
    async fn alias_version(
        &self,
        target: RegistryTarget<'_>,
        model: &str,
        alias: &str,
    ) -> Result<String> {
        let key = (
            target.mlflow.tracking_uri.clone(),
            model.to_string(),
            alias.to_string(),
        );
        if let Ok(cache) = self.cache.lock() {
            if let Some((at, version)) = cache.get(&key) {
                if at.elapsed() < self.ttl {
                    return Ok(version.clone());
                }
            }
        }
        let version = self.inner.alias_version(target, model, alias).await?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (Instant::now(), version.clone()));
        }
        Ok(version)
    }
}

/// Resolves aliases through MLflow's REST API, with the credentials of the detector's
/// `spec.mlflow.credentialsSecret` (read from its namespace).
pub struct MlflowResolver {
    kube: kube::Client,
}

impl MlflowResolver {
    /// A resolver reading credential Secrets through `kube`.
    pub fn new(kube: kube::Client) -> Self {
        Self { kube }
    }

    /// The MLflow client for one detector.
    async fn client(&self, target: RegistryTarget<'_>) -> Result<mlflow_client::MlflowClient> {
        let uri = &target.mlflow.tracking_uri;
        let fail = |message: String| Error::Resolve {
            source_uri: uri.clone(),
            message,
        };
        let mut config = mlflow_client::ClientConfig::new(uri).map_err(|e| fail(e.to_string()))?;
        if let Some(creds) = &target.mlflow.credentials_secret {
            let secrets: Api<Secret> = Api::namespaced(self.kube.clone(), target.namespace);
            let secret = secrets.get(&creds.name).await?;
            let data = secret.data.unwrap_or_default();
            let text = |key: &str| {
                data.get(key)
                    .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
                    .filter(|s| !s.is_empty())
            };
            if let Some(token) = text(&creds.token_key) {
                config = config.with_token(token);
            } else if let (Some(user), Some(password)) =
                (text(&creds.username_key), text(&creds.password_key))
            {
                config = config.with_basic_auth(user, password);
            } else {
                return Err(fail(format!(
                    "Secret {} has neither key {:?} nor keys {:?} and {:?}",
                    creds.name, creds.token_key, creds.username_key, creds.password_key
                )));
            }
        }
        mlflow_client::MlflowClient::new(config).map_err(|e| fail(e.to_string()))
    }
}

#[async_trait]
impl ModelResolver for MlflowResolver {
    async fn alias_version(
        &self,
        target: RegistryTarget<'_>,
        model: &str,
        alias: &str,
    ) -> Result<String> {
        let client = self.client(target).await?;
        let version = client
            .get_model_version_by_alias(model, alias)
            .await
            .map_err(|e| Error::Resolve {
                source_uri: format!("models:/{model}@{alias}"),
                message: e.to_string(),
            })?;
        Ok(version.version)
    }
}
