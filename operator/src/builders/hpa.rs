//! The HorizontalPodAutoscaler (`autoscaling/v2`) of the stable Deployment.
//!
//! CPU targets use the built-in resource metric; concurrency targets use the pods metric
//! `auralguard_in_flight_requests` the server exports, which a custom-metrics adapter (such as
//! prometheus-adapter) must serve to the HPA. During a canary the HPA keeps sizing the stable
//! Deployment and the canary is sized relative to it (see `rollout::split_replicas`).

use auralguard_crds::AudioDetector;
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::{common_labels, deployment_name, owned_meta, Role};
use crate::Result;

/// The pods metric a concurrency target scales on.
pub const CONCURRENCY_METRIC: &str = "auralguard_in_flight_requests";

/// Builds the HPA, or `None` when the spec has no `autoscaling`.
pub fn hpa(det: &AudioDetector) -> Result<Option<HorizontalPodAutoscaler>> {
    let Some(a) = &det.spec.autoscaling else {
        return Ok(None);
    };
    let name = super::name(det)?;
    let mut metrics = Vec::new();
    if let Some(cpu) = a.target_cpu_utilization {
        metrics.push(MetricSpec {
            type_: "Resource".into(),
            resource: Some(ResourceMetricSource {
                name: "cpu".into(),
                target: MetricTarget {
                    type_: "Utilization".into(),
                    average_utilization: Some(cpu),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    if let Some(c) = a.target_concurrency {
        metrics.push(MetricSpec {
            type_: "Pods".into(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier {
                    name: CONCURRENCY_METRIC.into(),
                    selector: None,
                },
                target: MetricTarget {
                    type_: "AverageValue".into(),
                    average_value: Some(Quantity(c.to_string())),
                    ..MetricTarget::default()
                },
            }),
            ..MetricSpec::default()
        });
    }
    Ok(Some(HorizontalPodAutoscaler {
        metadata: owned_meta(det, name.clone(), common_labels(&name))?,
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: deployment_name(&name, Role::Stable),
            },
            min_replicas: Some(a.min_replicas),
            max_replicas: a.max_replicas,
            metrics: Some(metrics),
            behavior: None,
        }),
        status: None,
    }))
}
