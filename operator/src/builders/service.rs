//! The detector's one Service.
//!
//! It selects the detector's pods by application and instance labels only, not by role, so
//! stable and canary pods sit behind it together and a canary's traffic share is its share of
//! the ready pods. No service mesh is needed for weighted rollouts.

use auralguard_crds::AudioDetector;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{common_labels, owned_meta, selector_labels, PORT_NAME};
use crate::Result;

/// Builds the Service (name = the detector's name).
pub fn service(det: &AudioDetector) -> Result<Service> {
    let name = super::name(det)?;
    let spec = &det.spec.service;
    let mut metadata = owned_meta(det, name.clone(), common_labels(&name))?;
    if !spec.annotations.is_empty() {
        metadata.annotations = Some(spec.annotations.clone());
    }
    Ok(Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(spec.type_.as_str().to_string()),
            selector: Some(selector_labels(&name)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.into()),
                port: spec.port,
                target_port: Some(IntOrString::String(PORT_NAME.into())),
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}
