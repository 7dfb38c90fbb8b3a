//! The Prometheus-operator ServiceMonitor (`monitoring.coreos.com/v1`).
//!
//! Built as a [`DynamicObject`] because its CRD belongs to another project and may not be
//! installed; reconcile checks API discovery first and skips it when absent. Pod role and model
//! version are copied onto the scraped series so dashboards can compare canary and stable.

use auralguard_crds::AudioDetector;
use kube::api::{ApiResource, DynamicObject};
use serde_json::json;

use super::{
    common_labels, owned_meta, selector_labels, LABEL_MODEL_VERSION, LABEL_ROLE, PORT_NAME,
};
use crate::Result;

/// The ServiceMonitor's group.
pub const GROUP: &str = "monitoring.coreos.com";
/// The ServiceMonitor's version.
pub const VERSION: &str = "v1";

/// Where ServiceMonitors live in the API.
pub fn api_resource() -> ApiResource {
    ApiResource {
        group: GROUP.into(),
        version: VERSION.into(),
        api_version: format!("{GROUP}/{VERSION}"),
        kind: "ServiceMonitor".into(),
        plural: "servicemonitors".into(),
    }
}

/// Builds the ServiceMonitor, or `None` when the spec does not enable one.
pub fn service_monitor(det: &AudioDetector) -> Result<Option<DynamicObject>> {
    let Some(sm) = det.spec.service_monitor.as_ref().filter(|s| s.enabled) else {
        return Ok(None);
    };
    let name = super::name(det)?;
    let mut labels = sm.labels.clone();
    labels.extend(common_labels(&name));
    let mut endpoint = json!({"port": PORT_NAME, "path": "/metrics"});
    if let Some(interval) = &sm.interval {
        endpoint["interval"] = json!(interval.to_string());
    }
    let mut obj = DynamicObject::new(&name, &api_resource());
    obj.metadata = owned_meta(det, name.clone(), labels)?;
    obj.data = json!({
        "spec": {
            "selector": {"matchLabels": selector_labels(&name)},
            "endpoints": [endpoint],
            "podTargetLabels": [LABEL_ROLE, LABEL_MODEL_VERSION],
        }
    });
    Ok(Some(obj))
}
