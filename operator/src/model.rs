//! A model pinned to one version: what pods are told to load.
//!
//! The spec may name a moving target (`models:/NAME@ALIAS`); pods never see it. Each reconcile
//! resolves the source to a [`ModelRef`], and every Deployment is built from a `ModelRef`, so all
//! pods of one Deployment load the same bytes and a new version only arrives through a rollout.

use sha2::{Digest, Sha256};

use auralguard_crds::ModelSource;

/// One concrete model: the URI pods load and a short version for labels, status and events.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelRef {
    /// `AURALGUARD_MODEL` for the pods: `models:/NAME/VERSION` or a path/URL.
    pub uri: String,
    /// The registry version, or for path and URL sources a digest of the URI, so a changed path
    /// is a new version and rolls out like one. Always a valid label value.
    pub version: String,
}

impl ModelRef {
    /// A registry model version.
    pub fn registry(name: &str, version: &str) -> Self {
        Self {
            uri: auralguard_crds::pinned_registry_uri(name, version),
            version: version.to_string(),
        }
    }

    /// The pinned model of a source that needs no lookup (`None` for an alias).
    pub fn fixed(source: &ModelSource) -> Option<Self> {
        let uri = source.fixed_uri()?;
        let version = match source {
            ModelSource::Registry {
                selector: auralguard_crds::RegistrySelector::Version(v),
                ..
            } => v.clone(),
            _ => path_version(&uri),
        };
        Some(Self { uri, version })
    }
}

/// `p-` and the first 10 hex digits of the URI's SHA-256: short, stable and label-safe.
fn path_version(uri: &str) -> String {
    let digest = Sha256::digest(uri.as_bytes());
    format!("p-{}", &hex::encode(digest)[..10])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_sources_pin_themselves() {
        let m = ModelRef::fixed(&"models:/deepfake/7".parse().unwrap()).unwrap();
        assert_eq!(m, ModelRef::registry("deepfake", "7"));
        assert_eq!(m.uri, "models:/deepfake/7");
        assert!(ModelRef::fixed(&"models:/deepfake@prod".parse().unwrap()).is_none());
        let p = ModelRef::fixed(&"pvc://claim/demo".parse().unwrap()).unwrap();
        assert_eq!(p.uri, "/models/demo");
        assert!(p.version.starts_with("p-") && p.version.len() == 12);
        let q = ModelRef::fixed(&"pvc://claim/demo2".parse().unwrap()).unwrap();
        assert_ne!(p.version, q.version);
    }
}
