//! Where a model comes from: a package folder, or a version in the MLflow Model Registry.
//!
//! Everywhere a model is accepted (`predict`, `eval`, `serve`, `AURALGUARD_MODEL`) the value is
//! either a folder or a `models:/NAME/VERSION` / `models:/NAME@ALIAS` URI. [`ModelSource`] tells
//! them apart; [`ModelRegistry`] turns a URI into a local folder through the version-keyed
//! [`ModelCache`] of the `mlflow-client` crate (filled atomically under a lock, so a crash or a
//! concurrent start never leaves half a model in the cache), and checks that what arrived is an
//! AuralGuard package before anyone tries to load it. A pinned version already in the cache is
//! served without MLflow, so a pod restarted while MLflow is down still starts.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use mlflow_client::{ClientConfig, MlflowClient, ModelCache, ModelUri};

use super::package::ModelPackage;
use crate::error::{Error, Result};

/// A model reference as users write it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A package folder on local disk.
    Folder(PathBuf),
    /// A registered model version or alias.
    Registry(ModelUri),
}

impl FromStr for ModelSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        if ModelUri::is_model_uri(s) {
            Ok(ModelSource::Registry(s.parse()?))
        } else if s.trim().is_empty() {
            Err(Error::InvalidArgument(
                "the model is empty: give a package folder or a models:/ URI".into(),
            ))
        } else {
            Ok(ModelSource::Folder(PathBuf::from(s)))
        }
    }
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelSource::Folder(p) => write!(f, "{}", p.display()),
            ModelSource::Registry(u) => write!(f, "{u}"),
        }
    }
}

/// A registry model version on local disk, validated as an AuralGuard package.
#[derive(Debug, Clone)]
pub struct FetchedModel {
    /// The opened package (in the cache folder).
    pub package: ModelPackage,
    /// `models:/NAME/VERSION` it came from.
    pub uri: ModelUri,
    /// The registry's version number.
    pub version: u64,
}

impl FetchedModel {
    /// Loads the package onto `device` under its registry identity: verdicts, metrics and the
    /// Open Inference Protocol routes carry the registered name and version number rather than
    /// whatever the package was trained as. Without the name, two versions trained into
    /// different folders would be served under different names, and `/v2/models/{name}/infer`
    /// clients would get 404s as soon as the alias moved.
    pub fn load(&self, device: &candle_core::Device) -> Result<super::package::LoadedModel> {
        let mut model = self.package.load(device)?;
        model.manifest.name = self.uri.name().to_string();
        model.manifest.version = self.version.to_string();
        Ok(model)
    }
}

/// The MLflow registry plus the local cache its models are downloaded into.
#[derive(Debug, Clone)]
pub struct ModelRegistry {
    client: MlflowClient,
    cache: ModelCache,
}

/// The cache folder used when `AURALGUARD_MODEL_CACHE` is not set:
/// [`default_cache_root`]`/models`.
pub fn default_cache_dir() -> PathBuf {
    default_cache_root().join("models")
}

/// Where AuralGuard keeps what it can download or recompute (models, training features): the
/// user's cache folder (`$XDG_CACHE_HOME/auralguard` or `~/.cache/auralguard`), else
/// `.auralguard-cache` in the working folder, never a generic name that could be someone else's.
pub fn default_cache_root() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        });
    match base {
        Some(b) => b.join("auralguard"),
        None => PathBuf::from(".auralguard-cache"),
    }
}

impl ModelRegistry {
    /// A registry client for `tracking_uri` (or `MLFLOW_TRACKING_URI` when `None`), with
    /// credentials and time-outs from the usual `MLFLOW_TRACKING_*` variables, caching into
    /// `cache_dir`; one download may bring at most `max_download_bytes`.
    pub fn connect(
        tracking_uri: Option<&str>,
        cache_dir: &Path,
        max_download_bytes: u64,
    ) -> Result<Self> {
        let config = ClientConfig::from_lookup(|key| {
            if key == mlflow_client::ENV_TRACKING_URI {
                if let Some(uri) = tracking_uri {
                    return Some(uri.to_string());
                }
            }
            std::env::var(key).ok()
        })?
        .with_max_download_bytes(max_download_bytes);
        Ok(Self::new(MlflowClient::new(config)?, cache_dir))
    }

    /// A registry over an existing client.
    pub fn new(client: MlflowClient, cache_dir: &Path) -> Self {
        Self {
            client,
            cache: ModelCache::new(cache_dir),
        }
    }

    /// The MLflow client (for tracking and registry commands).
    pub fn client(&self) -> &MlflowClient {
        &self.client
    }

    /// The version `uri` names right now (asks MLflow for an alias; a pinned version is itself).
    pub async fn resolve_version(&self, uri: &ModelUri) -> Result<u64> {
        match uri {
            ModelUri::Version { version, .. } => Ok(*version),
            ModelUri::Alias { .. } => Ok(self.client.resolve(uri).await?.number()?),
        }
    }

    /// Downloads (or finds in the cache) the model `uri` names and opens it as a package. A
    /// folder that is not a valid package is an error naming it, never loaded, and is evicted
    /// from the cache so that the next try downloads it again (the version may be fixed in
    /// place in the registry meanwhile).
    pub async fn fetch(&self, uri: &ModelUri) -> Result<FetchedModel> {
        let cached = self.client.download_model(uri, &self.cache).await?;
        let pinned = cached.uri();
        let opened = if cached.is_auralguard_package() {
            ModelPackage::open(&cached.dir)
        } else {
            Err(Error::manifest(
                &cached.dir,
                format!(
                    "{pinned} (from {uri}) is not an AuralGuard model package: it needs {} and \
                     {} at the top of the model's artifact folder",
                    super::manifest::MANIFEST_FILE,
                    super::package::WEIGHTS_FILE
                ),
            ))
        };
        match opened {
            Ok(package) => Ok(FetchedModel {
                package,
                uri: pinned,
                version: cached.version,
            }),
            Err(e) => {
                self.evict(&pinned).await;
                Err(e)
            }
        }
    }

    /// Drops a pinned version from the cache after it proved unusable (see [`Self::fetch`]).
    /// Best effort: a failure is logged, since the caller is already reporting the real error.
    pub async fn evict(&self, pinned: &ModelUri) {
        let ModelUri::Version { name, version } = pinned else {
            return;
        };
        match self.cache.evict(name, *version).await {
            Ok(true) => {
                tracing::info!(model = %pinned, "removed the unusable model from the cache")
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(model = %pinned, error = %e,
                "cannot remove the unusable model from the cache; delete it by hand"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_uris_are_told_apart() {
        assert_eq!(
            "models/demo".parse::<ModelSource>().unwrap(),
            ModelSource::Folder("models/demo".into())
        );
        assert_eq!(
            "models:/detector@champion".parse::<ModelSource>().unwrap(),
            ModelSource::Registry(ModelUri::alias("detector", "champion"))
        );
        assert_eq!(
            "models:/detector/3".parse::<ModelSource>().unwrap(),
            ModelSource::Registry(ModelUri::version("detector", 3))
        );
    }

    #[test]
    fn malformed_uris_and_empty_values_are_refused() {
        for bad in [
            "models:/",
            "models:/detector/zero",
            "models:/detector@",
            "  ",
        ] {
            let e = bad.parse::<ModelSource>().unwrap_err();
            assert!(
                matches!(e, Error::Registry(_) | Error::InvalidArgument(_)),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "models/demo",
            "models:/detector@champion",
            "models:/detector/3",
        ] {
            assert_eq!(s.parse::<ModelSource>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn a_pinned_version_resolves_without_a_server() {
        // Port 9 (discard) on loopback: nothing answers, and nothing needs to.
        let reg = ModelRegistry::connect(
            Some("http://127.0.0.1:9"),
            Path::new("/nonexistent"),
            1 << 30,
        )
        .unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let v = rt
            .block_on(reg.resolve_version(&ModelUri::version("m", 7)))
            .unwrap();
        assert_eq!(v, 7);
    }
}
