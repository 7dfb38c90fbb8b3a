//! The PodDisruptionBudget (`policy/v1`) over all of a detector's pods.
//!
//! `maxUnavailable: 1` lets node drains proceed one pod at a time, including for single-replica
//! detectors (a `minAvailable` budget would block drains there forever), and unhealthy pods may
//! always be evicted so a crash-looping pod never blocks a node upgrade.

use auralguard_crds::AudioDetector;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{common_labels, owned_meta, selector_labels};
use crate::Result;

/// Builds the PDB (name = the detector's name).
pub fn pdb(det: &AudioDetector) -> Result<PodDisruptionBudget> {
    let name = super::name(det)?;
    Ok(PodDisruptionBudget {
        metadata: owned_meta(det, name.clone(), common_labels(&name))?,
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector {
                match_labels: Some(selector_labels(&name)),
                ..LabelSelector::default()
            }),
            unhealthy_pod_eviction_policy: Some("AlwaysAllow".into()),
            ..PodDisruptionBudgetSpec::default()
        }),
        status: None,
    })
}
