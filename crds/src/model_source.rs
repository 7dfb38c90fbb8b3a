//! Where a detector's model comes from, parsed once from `spec.model.source`.
//!
//! Users write one string; the operator needs to know which of four kinds it is, because each
//! kind is deployed differently:
//!
//! | source | meaning | how pods get it |
//! |---|---|---|
//! | `models:/NAME@ALIAS` | an MLflow registered model's alias | the operator resolves the alias to a version and pins pods to `models:/NAME/VERSION` |
//! | `models:/NAME/VERSION` | one MLflow model version | passed as is |
//! | `pvc://CLAIM/PATH` | a package folder on a PersistentVolumeClaim | the claim is mounted read-only at [`PVC_MOUNT_PATH`] |
//! | `/PATH`, `http(s)://…` | a folder inside the image or a URL the server can fetch | passed as is |
//!
//! The CRD's CEL rule accepts exactly these shapes, so a parse error here means the object was
//! written without the schema (for example by a test) rather than by a user.

use std::fmt;
use std::str::FromStr;

use crate::Error;

/// Where a `pvc://` model's claim is mounted inside serving pods.
pub const PVC_MOUNT_PATH: &str = "/models";

/// The scheme prefix of MLflow Model Registry URIs.
const REGISTRY_PREFIX: &str = "models:/";
/// The scheme prefix of claim-backed sources.
const PVC_PREFIX: &str = "pvc://";

/// One parsed `spec.model.source`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelSource {
    /// An MLflow registered model, by alias or by version.
    Registry {
        /// The registered model's name.
        name: String,
        /// Which version of it.
        selector: RegistrySelector,
    },
    /// A folder on a PersistentVolumeClaim.
    Pvc {
        /// The claim's name (same namespace as the detector).
        claim: String,
        /// The package folder inside the claim, without a leading slash (may be empty).
        path: String,
    },
    /// An absolute path inside the container image.
    Path(String),
    /// An `http://` or `https://` URL handed to the server.
    Url(String),
}

/// How a registry source names its version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegistrySelector {
    /// `@ALIAS`: moves when someone re-points the alias, which is what triggers a rollout.
    Alias(String),
    /// `/VERSION`: fixed.
    Version(String),
}

impl ModelSource {
    /// True when the version must be looked up in MLflow before anything can be deployed.
    pub fn needs_resolution(&self) -> bool {
        matches!(
            self,
            Self::Registry {
                selector: RegistrySelector::Alias(_),
                ..
            }
        )
    }

    /// True for sources served from the MLflow registry (pods need the tracking URI).
    pub fn is_registry(&self) -> bool {
        matches!(self, Self::Registry { .. })
    }

    /// The value pods get in `AURALGUARD_MODEL` for sources that need no resolution.
    ///
    /// `None` for an alias: only a resolved version may reach pods, so that every pod of one
    /// Deployment serves the same model even while the alias moves.
    pub fn fixed_uri(&self) -> Option<String> {
        match self {
            Self::Registry {
                selector: RegistrySelector::Alias(_),
                ..
            } => None,
            Self::Registry {
                name,
                selector: RegistrySelector::Version(v),
            } => Some(pinned_registry_uri(name, v)),
            Self::Pvc { path, .. } => Some(if path.is_empty() {
                PVC_MOUNT_PATH.to_string()
            } else {
                format!("{PVC_MOUNT_PATH}/{path}")
            }),
            Self::Path(p) | Self::Url(p) => Some(p.clone()),
        }
    }
}

/// The `models:/NAME/VERSION` URI that pins a registry model to one version.
pub fn pinned_registry_uri(name: &str, version: &str) -> String {
    format!("{REGISTRY_PREFIX}{name}/{version}")
}

impl FromStr for ModelSource {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = |why: &str| Error::InvalidModelSource {
            source_uri: s.to_string(),
            reason: why.to_string(),
        };
        if let Some(rest) = s.strip_prefix(REGISTRY_PREFIX) {
            if let Some((name, alias)) = rest.split_once('@') {
                if name.is_empty() || name.contains('/') {
                    return Err(invalid("the model name must be non-empty and have no '/'"));
                }
                if alias.is_empty() || !alias.chars().all(is_alias_char) {
                    return Err(invalid("an alias is letters, digits, '-' and '_'"));
                }
                return Ok(Self::Registry {
                    name: name.to_string(),
                    selector: RegistrySelector::Alias(alias.to_string()),
                });
            }
            return match rest.rsplit_once('/') {
                Some((name, version))
                    if !name.is_empty()
                        && !name.contains('/')
                        && !version.is_empty()
                        && version.chars().all(|c| c.is_ascii_digit()) =>
                {
                    Ok(Self::Registry {
                        name: name.to_string(),
                        selector: RegistrySelector::Version(version.to_string()),
                    })
                }
                _ => Err(invalid(
                    "expected models:/NAME@ALIAS or models:/NAME/VERSION",
                )),
            };
        }
        if let Some(rest) = s.strip_prefix(PVC_PREFIX) {
            let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
            if claim.is_empty() {
                return Err(invalid("expected pvc://CLAIM/PATH"));
            }
            return Ok(Self::Pvc {
                claim: claim.to_string(),
                path: path.trim_matches('/').to_string(),
            });
        }
        if s.starts_with("http://") || s.starts_with("https://") {
            return Ok(Self::Url(s.to_string()));
        }
        if s.starts_with('/') {
            return Ok(Self::Path(s.to_string()));
        }
        Err(invalid(
            "expected models:/NAME@ALIAS, models:/NAME/VERSION, pvc://CLAIM/PATH, an absolute path or an http(s) URL",
        ))
    }
}

/// Characters MLflow accepts in an alias (and that are safe in labels and URIs).
fn is_alias_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Registry {
                name,
                selector: RegistrySelector::Alias(a),
            } => write!(f, "{REGISTRY_PREFIX}{name}@{a}"),
            Self::Registry {
                name,
                selector: RegistrySelector::Version(v),
            } => write!(f, "{REGISTRY_PREFIX}{name}/{v}"),
            Self::Pvc { claim, path } => write!(f, "{PVC_PREFIX}{claim}/{path}"),
            Self::Path(p) | Self::Url(p) => f.write_str(p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ModelSource {
        s.parse().unwrap()
    }

    #[test]
    fn registry_alias_and_version() {
        assert_eq!(
            parse("models:/deepfake@champion"),
            ModelSource::Registry {
                name: "deepfake".into(),
                selector: RegistrySelector::Alias("champion".into())
            }
        );
        assert_eq!(
            parse("models:/deepfake/12"),
            ModelSource::Registry {
                name: "deepfake".into(),
                selector: RegistrySelector::Version("12".into())
            }
        );
        assert!(parse("models:/deepfake@champion").needs_resolution());
        assert_eq!(parse("models:/deepfake@champion").fixed_uri(), None);
        assert_eq!(
            parse("models:/deepfake/12").fixed_uri().as_deref(),
            Some("models:/deepfake/12")
        );
    }

    #[test]
    fn pvc_path_and_url() {
        assert_eq!(
            parse("pvc://models/demo/v1"),
            ModelSource::Pvc {
                claim: "models".into(),
                path: "demo/v1".into()
            }
        );
        assert_eq!(
            parse("pvc://models/demo/").fixed_uri().as_deref(),
            Some("/models/demo")
        );
        assert_eq!(
            parse("pvc://models").fixed_uri().as_deref(),
            Some("/models")
        );
        assert_eq!(
            parse("/opt/models/demo"),
            ModelSource::Path("/opt/models/demo".into())
        );
        assert_eq!(
            parse("https://example.org/m.tar.gz"),
            ModelSource::Url("https://example.org/m.tar.gz".into())
        );
    }

    #[test]
    fn rejects_malformed_sources_with_the_reason() {
        for bad in [
            "models:/",
            "models:/@prod",
            "models:/a/b/3",
            "models:/a/latest",
            "models:/a@",
            "models:/a@pro d",
            "pvc://",
            "relative/path",
            "s3://bucket/model",
        ] {
            let err = bad.parse::<ModelSource>().unwrap_err();
            assert!(err.to_string().contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "models:/deepfake@champion",
            "models:/deepfake/3",
            "pvc://claim/a/b",
            "/opt/m",
            "http://h/m",
        ] {
            assert_eq!(parse(s).to_string(), s);
        }
    }
}
