//! Desired Kubernetes objects as pure functions of an `AudioDetector`.
//!
//! Every object the operator owns is computed here from (the detector, the model version each
//! Deployment should run, its role and replica count, the operator's image defaults) and nothing
//! else: no API calls, no clock, no randomness. That is what lets the golden snapshot tests in
//! `tests/snapshots.rs` pin every field, and what lets reconcile compare "desired" with
//! "observed" to skip writes that would change nothing.
//!
//! * [`deployment`]: the stable Deployment, and the canary Deployment during a rollout.
//! * [`service`]: one Service selecting both, so traffic splits by pod count.
//! * [`hpa`]: an `autoscaling/v2` HorizontalPodAutoscaler on the stable Deployment.
//! * [`pdb`]: a `policy/v1` PodDisruptionBudget over all the detector's pods.
//! * [`service_monitor`]: a Prometheus-operator ServiceMonitor, as a dynamic object because
//!   its CRD may be absent.
//!
//! Names, labels and the owner reference shared by all of them live in this module.

pub mod deployment;
pub mod hpa;
pub mod pdb;
pub mod service;
pub mod service_monitor;

use std::collections::BTreeMap;

use auralguard_crds::AudioDetector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};

use crate::{Error, Result};

/// The field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "auralguard-operator";

/// `app.kubernetes.io/name` of everything the operator creates.
pub const APP_NAME: &str = "auralguard";
/// Label: the detector an object belongs to.
pub const LABEL_INSTANCE: &str = "app.kubernetes.io/instance";
/// Label: the application.
pub const LABEL_NAME: &str = "app.kubernetes.io/name";
/// Label: who manages the object (the operator watches only objects carrying it).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Label: `stable` or `canary`.
pub const LABEL_ROLE: &str = "auralguard.io/role";
/// Label: the model version a pod serves.
pub const LABEL_MODEL_VERSION: &str = "auralguard.io/model-version";
/// Pod-template annotation: the exact model URI the pods load (how reconcile reads back which
/// model a Deployment runs).
pub const ANNOTATION_MODEL: &str = "auralguard.io/model";
/// The value of [`LABEL_MANAGED_BY`].
pub const MANAGED_BY: &str = "auralguard-operator";

/// The port the server listens on inside every pod (the server process contract).
pub const CONTAINER_PORT: i32 = 8080;
/// The name of that port.
pub const PORT_NAME: &str = "http";

/// Which of a detector's two pod sets an object is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The pods serving the established version (always present).
    Stable,
    /// The pods serving the version being rolled out (only during a canary).
    Canary,
}

impl Role {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stable => "stable",
            Self::Canary => "canary",
        }
    }
}

/// The operator-wide defaults builders need (from the command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuildConfig {
    /// The server image when the spec names none.
    pub default_image: String,
    /// The CUDA server image when the spec names none and GPUs are requested.
    pub default_gpu_image: String,
}

impl BuildConfig {
    /// Defaults for an operator of the given version: `auralguard/auralguard:VERSION` and its
    /// `-cuda` variant.
    pub fn for_version(version: &str) -> Self {
        Self::from_default_image(format!("auralguard/auralguard:{version}"))
    }

    /// Uses `image` for CPU pods and `image` + `-cuda` for GPU pods.
    pub fn from_default_image(image: String) -> Self {
        Self {
            default_gpu_image: format!("{image}-cuda"),
            default_image: image,
        }
    }
}

/// The name of the Deployment for a role (the Service, HPA, PDB and ServiceMonitor share the
/// detector's own name).
pub fn deployment_name(detector: &str, role: Role) -> String {
    match role {
        Role::Stable => detector.to_string(),
        Role::Canary => format!("{detector}-canary"),
    }
}

/// The labels selecting every pod of a detector, stable and canary (Service, PDB).
pub fn selector_labels(detector: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_string(), APP_NAME.to_string()),
        (LABEL_INSTANCE.to_string(), detector.to_string()),
    ])
}

/// Labels on every object the operator owns.
pub fn common_labels(detector: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(detector);
    labels.insert(LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string());
    labels
}

/// The immutable selector of one role's Deployment: the pods of that role only.
pub fn role_selector_labels(detector: &str, role: Role) -> BTreeMap<String, String> {
    let mut labels = selector_labels(detector);
    labels.insert(LABEL_ROLE.to_string(), role.as_str().to_string());
    labels
}

/// Labels of one role's Deployment and pods.
pub fn pod_labels(detector: &str, role: Role, version: &str) -> BTreeMap<String, String> {
    let mut labels = common_labels(detector);
    labels.insert(LABEL_ROLE.to_string(), role.as_str().to_string());
    labels.insert(LABEL_MODEL_VERSION.to_string(), version.to_string());
    labels
}

/// A `key=value,…` label selector string for list calls and the scale subresource.
pub fn selector_string(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// The detector's name, namespace and a controller owner reference to it: what every owned
/// object's metadata starts from. Kubernetes' garbage collector deletes owned objects with their
/// owner, so the operator needs no finalizer.
pub(crate) fn owned_meta(
    det: &AudioDetector,
    name: String,
    labels: BTreeMap<String, String>,
) -> Result<ObjectMeta> {
    Ok(ObjectMeta {
        name: Some(name),
        namespace: Some(namespace(det)?),
        labels: Some(labels),
        owner_references: Some(vec![owner_reference(det)?]),
        ..ObjectMeta::default()
    })
}

/// The controller owner reference to the detector (needs its uid, which the API server sets).
pub fn owner_reference(det: &AudioDetector) -> Result<OwnerReference> {
    det.controller_owner_ref(&())
        .ok_or(Error::MissingField("metadata.uid"))
}

/// The detector's namespace.
pub fn namespace(det: &AudioDetector) -> Result<String> {
    det.namespace()
        .ok_or(Error::MissingField("metadata.namespace"))
}

/// The detector's name.
pub fn name(det: &AudioDetector) -> Result<String> {
    det.meta()
        .name
        .clone()
        .ok_or(Error::MissingField("metadata.name"))
}

/// The in-cluster URL clients use.
pub fn endpoint(det: &AudioDetector) -> Result<String> {
    Ok(format!(
        "http://{}.{}.svc:{}",
        name(det)?,
        namespace(det)?,
        det.spec.service.port
    ))
}
