//! The `AudioDetector` custom resource (`auralguard.io/v1alpha1`, short name `adet`).
//!
//! This crate is the operator's public API: the Rust types users' YAML deserialises into
//! ([`AudioDetectorSpec`], [`AudioDetectorStatus`]), the parsing of the model source string
//! ([`ModelSource`]), and the CRD manifest generated from the types ([`crd_yaml`]). The manifest
//! is checked in as `crds/audiodetector.yaml` (the Helm chart ships a copy); the `crdgen` binary
//! prints it and a test fails when the checked-in file is stale.
//!
//! * [`spec`]: what users write.
//! * [`status`]: what the operator reports, including the state of a model rollout, which lives
//!   only there so that it survives operator restarts.
//! * [`model_source`]: the four kinds of model source and the pinned URI pods receive.
//! * [`manual`]: the annotations (`auralguard.io/promote`, `abort`, `retry`, `pause`) through
//!   which users steer a rollout by hand.

#![warn(missing_docs)]

pub mod error;
pub mod manual;
pub mod model_source;
pub mod spec;
pub mod status;

pub use error::Error;
pub use model_source::{pinned_registry_uri, ModelSource, RegistrySelector, PVC_MOUNT_PATH};
pub use spec::*;
pub use status::*;

use kube::CustomResourceExt;

/// The API group of every AuralGuard resource.
pub const GROUP: &str = "auralguard.io";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";

/// `value` with every object's keys in sorted order, recursively.
///
/// Generated YAML (the CRD, the operator's snapshots) must not depend on whether another crate in
/// the same build turned on serde_json's `preserve_order` feature (bson, via the server's MongoDB
/// driver, does in a workspace-wide build), which changes the key order of every JSON map.
pub fn sorted_keys(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, sorted_keys(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted_keys).collect())
        }
        other => other,
    }
}

/// The CRD manifest as YAML, exactly as checked in at `crds/audiodetector.yaml`.
///
/// A header comment says the file is generated and how to regenerate it, so nobody edits it by
/// hand.
pub fn crd_yaml() -> Result<String, Error> {
    let crd = serde_json::to_value(AudioDetector::crd()).map_err(|e| Error::Yaml(e.to_string()))?;
    let body =
        serde_saphyr::to_string(&sorted_keys(crd)).map_err(|e| Error::Yaml(e.to_string()))?;
    Ok(format!(
        "# Generated from crds/src/spec.rs and crds/src/status.rs; do not edit.\n\
         # Regenerate: cargo run -p auralguard-crds --bin crdgen > crds/audiodetector.yaml\n\
         {body}"
    ))
}
