//! The Deployment of one role (stable or canary), following the server process contract.
//!
//! Pods run `auralguard serve` configured through environment variables only: the pinned model
//! URI, MLflow and MongoDB settings (secrets by `secretKeyRef`, never copied), the server's
//! limits, and the paths of the writable emptyDir volumes a read-only root filesystem needs.
//! They are probed on `/ready` (model loaded) and `/health` (process alive), scraped on
//! `/metrics`, run as uid 65532 with no capabilities, and when the spec asks for
//! `nvidia.com/gpu` they get the CUDA image, `AURALGUARD_DEVICE=cuda`, equal GPU requests and
//! limits, and the NVIDIA taint toleration.

use std::collections::BTreeMap;

use auralguard_crds::{AudioDetector, ModelSource, PVC_MOUNT_PATH};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, SecretKeySelector, SecurityContext, Toleration,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{
    deployment_name, owned_meta, pod_labels, role_selector_labels, BuildConfig, Role,
    ANNOTATION_MODEL, CONTAINER_PORT, PORT_NAME,
};
use crate::model::ModelRef;
use crate::Result;

/// The extended resource NVIDIA's device plugin advertises.
pub const GPU_RESOURCE: &str = "nvidia.com/gpu";
/// The uid and gid the server runs as (distroless "nonroot").
pub const RUN_AS: i64 = 65532;
/// The container's name.
pub const CONTAINER_NAME: &str = "auralguard";

const DATA_DIR: &str = "/var/lib/auralguard";
const CACHE_DIR: &str = "/var/cache/auralguard";

/// Builds the Deployment of `role`, serving `model`.
///
/// `replicas` is `None` when a HorizontalPodAutoscaler owns the stable Deployment's size (the
/// field is then left out of the apply, so the operator never fights the autoscaler).
pub fn deployment(
    det: &AudioDetector,
    cfg: &BuildConfig,
    role: Role,
    model: &ModelRef,
    replicas: Option<i32>,
) -> Result<Deployment> {
    let name = super::name(det)?;
    let labels = pod_labels(&name, role, &model.version);
    let mut annotations = det.spec.pod_annotations.clone();
    annotations.extend([
        ("prometheus.io/scrape".to_string(), "true".to_string()),
        ("prometheus.io/port".to_string(), CONTAINER_PORT.to_string()),
        ("prometheus.io/path".to_string(), "/metrics".to_string()),
        (ANNOTATION_MODEL.to_string(), model.uri.clone()),
    ]);
    let source: ModelSource = det.spec.model.source.parse()?;
    let gpus = gpu_count(det.spec.resources.as_ref());

    let pod = PodSpec {
        containers: vec![container(det, cfg, model, &source, gpus.as_ref())],
        volumes: Some(volumes(&source)),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            fs_group: Some(RUN_AS),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".into(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        termination_grace_period_seconds: Some(
            i64::from(det.spec.server.request_timeout_seconds.unwrap_or(30)) + 15,
        ),
        node_selector: non_empty_map(&det.spec.node_selector),
        tolerations: tolerations(det, gpus.is_some()),
        affinity: det.spec.affinity.clone(),
        image_pull_secrets: (!det.spec.image_pull_secrets.is_empty())
            .then(|| det.spec.image_pull_secrets.clone()),
        service_account_name: det.spec.service_account_name.clone(),
        automount_service_account_token: Some(false),
        enable_service_links: Some(false),
        ..PodSpec::default()
    };

    Ok(Deployment {
        metadata: owned_meta(det, deployment_name(&name, role), labels.clone())?,
        spec: Some(DeploymentSpec {
            replicas,
            revision_history_limit: Some(3),
            selector: LabelSelector {
                match_labels: Some(role_selector_labels(&name, role)),
                ..LabelSelector::default()
            },
            strategy: Some(strategy(max_surge(det))),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(annotations),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    })
}

/// `spec.rollout.maxSurge`, or its default when the spec has no rollout block.
fn max_surge(det: &AudioDetector) -> i32 {
    det.spec
        .rollout
        .as_ref()
        .map_or_else(auralguard_crds::default_max_surge, |r| r.max_surge)
}

/// The rolling-update bounds `(maxSurge, maxUnavailable)`, in pods, of both Deployments for a
/// `spec.rollout.maxSurge`: with spare pods a Deployment adds new pods before it removes old
/// ones (`maxUnavailable: 0`), so its ready pods never drop; without (`0`, a GPU node group with
/// no spare GPU) it must remove one pod first (`maxUnavailable: 1`), as Kubernetes refuses
/// both bounds at 0. The rollout's own pod counts ([`crate::rollout::capacity`]) rely on these
/// bounds to stay within `replicas + maxSurge` while a template changes.
pub fn rolling_bounds(max_surge: i32) -> (i32, i32) {
    if max_surge > 0 {
        (max_surge, 0)
    } else {
        (0, 1)
    }
}

/// The Deployment strategy for `max_surge` spare pods ([`rolling_bounds`]).
fn strategy(max_surge: i32) -> DeploymentStrategy {
    let (surge, unavailable) = rolling_bounds(max_surge);
    DeploymentStrategy {
        type_: Some("RollingUpdate".into()),
        rolling_update: Some(RollingUpdateDeployment {
            max_surge: Some(IntOrString::Int(surge)),
            max_unavailable: Some(IntOrString::Int(unavailable)),
        }),
    }
}

/// The number of GPUs the spec asks for (`limits`, else `requests`), if any and non-zero.
pub fn gpu_count(resources: Option<&ResourceRequirements>) -> Option<Quantity> {
    let r = resources?;
    let find = |m: &Option<BTreeMap<String, Quantity>>| {
        m.as_ref().and_then(|m| m.get(GPU_RESOURCE)).cloned()
    };
    find(&r.limits)
        .or_else(|| find(&r.requests))
        .filter(|q| q.0.trim() != "0")
}

fn container(
    det: &AudioDetector,
    cfg: &BuildConfig,
    model: &ModelRef,
    source: &ModelSource,
    gpus: Option<&Quantity>,
) -> Container {
    let image = det.spec.image.clone().unwrap_or_else(|| {
        if gpus.is_some() {
            cfg.default_gpu_image.clone()
        } else {
            cfg.default_image.clone()
        }
    });
    let mut mounts = vec![
        mount("data", DATA_DIR, false),
        mount("model-cache", CACHE_DIR, false),
        mount("tmp", "/tmp", false),
    ];
    if matches!(source, ModelSource::Pvc { .. }) {
        mounts.push(mount("model", PVC_MOUNT_PATH, true));
    }
    Container {
        name: CONTAINER_NAME.into(),
        image: Some(image),
        image_pull_policy: det.spec.image_pull_policy.map(|p| p.as_str().to_string()),
        args: Some(vec!["serve".into()]),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.into()),
            container_port: CONTAINER_PORT,
            protocol: Some("TCP".into()),
            ..ContainerPort::default()
        }]),
        env: Some(env(det, model, source, gpus.is_some())),
        resources: Some(resources(det.spec.resources.as_ref(), gpus)),
        startup_probe: Some(probe("/health", 5, 120)),
        readiness_probe: Some(probe("/ready", 5, 3)),
        liveness_probe: Some(probe("/health", 10, 3)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS),
            run_as_group: Some(RUN_AS),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".into()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(mounts),
        ..Container::default()
    }
}

/// The container's environment, in a fixed order (so the rendered object is stable).
fn env(det: &AudioDetector, model: &ModelRef, source: &ModelSource, gpu: bool) -> Vec<EnvVar> {
    let mut env = vec![
        value("AURALGUARD_MODEL", &model.uri),
        value("AURALGUARD_HOST", "0.0.0.0"),
        value("AURALGUARD_PORT", &CONTAINER_PORT.to_string()),
        value(
            "AURALGUARD_STORE_PATH",
            &format!("{DATA_DIR}/predictions.db"),
        ),
        value("AURALGUARD_MODEL_CACHE", CACHE_DIR),
    ];
    if gpu {
        env.push(value("AURALGUARD_DEVICE", "cuda"));
    }
    if let Some(mlflow) = det.spec.mlflow.as_ref().filter(|_| source.is_registry()) {
        env.push(value("MLFLOW_TRACKING_URI", &mlflow.tracking_uri));
        if let Some(c) = &mlflow.credentials_secret {
            env.push(secret("MLFLOW_TRACKING_TOKEN", &c.name, &c.token_key, true));
            env.push(secret(
                "MLFLOW_TRACKING_USERNAME",
                &c.name,
                &c.username_key,
                true,
            ));
            env.push(secret(
                "MLFLOW_TRACKING_PASSWORD",
                &c.name,
                &c.password_key,
                true,
            ));
        }
    }
    if let Some(m) = &det.spec.mongodb {
        env.push(secret(
            "MONGODB_URI",
            &m.uri_secret.name,
            &m.uri_secret.key,
            false,
        ));
    }
    let s = &det.spec.server;
    if let Some(k) = &s.api_key_secret {
        env.push(secret("AURALGUARD_API_KEY", &k.name, &k.key, false));
    }
    for (name, v) in [
        ("AURALGUARD_MAX_BATCH_SIZE", s.max_batch_size),
        ("AURALGUARD_MAX_UPLOAD_MB", s.max_upload_mb),
        ("AURALGUARD_MAX_AUDIO_SECONDS", s.max_audio_seconds),
        ("AURALGUARD_MAX_CONCURRENT", s.max_concurrent),
        (
            "AURALGUARD_REQUEST_TIMEOUT_SECONDS",
            s.request_timeout_seconds,
        ),
    ] {
        if let Some(v) = v {
            env.push(value(name, &v.to_string()));
        }
    }
    env
}

/// The spec's resources (or the defaults), with GPU requests forced equal to GPU limits, which
/// Kubernetes requires for extended resources.
fn resources(spec: Option<&ResourceRequirements>, gpus: Option<&Quantity>) -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_string());
    let mut r = spec.cloned().unwrap_or_else(|| ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), q("500m")),
            ("memory".to_string(), q("1Gi")),
        ])),
        limits: Some(BTreeMap::from([("memory".to_string(), q("2Gi"))])),
        ..ResourceRequirements::default()
    });
    if let Some(g) = gpus {
        r.limits
            .get_or_insert_with(BTreeMap::new)
            .insert(GPU_RESOURCE.to_string(), g.clone());
        r.requests
            .get_or_insert_with(BTreeMap::new)
            .insert(GPU_RESOURCE.to_string(), g.clone());
    }
    r
}

/// The spec's tolerations, plus NVIDIA's (`nvidia.com/gpu:NoSchedule`, as GPU node groups on
/// EKS are tainted) when GPUs are requested and the spec does not already tolerate it.
fn tolerations(det: &AudioDetector, gpu: bool) -> Option<Vec<Toleration>> {
    let mut t = det.spec.tolerations.clone();
    if gpu && !t.iter().any(|x| x.key.as_deref() == Some(GPU_RESOURCE)) {
        t.push(Toleration {
            key: Some(GPU_RESOURCE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoSchedule".into()),
            ..Toleration::default()
        });
    }
    (!t.is_empty()).then_some(t)
}

fn volumes(source: &ModelSource) -> Vec<Volume> {
    let empty = |name: &str, limit: Option<&str>| Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: limit.map(|l| Quantity(l.into())),
            ..EmptyDirVolumeSource::default()
        }),
        ..Volume::default()
    };
    let mut v = vec![
        empty("data", Some("1Gi")),
        empty("model-cache", Some("4Gi")),
        empty("tmp", Some("1Gi")),
    ];
    if let ModelSource::Pvc { claim, .. } = source {
        v.push(Volume {
            name: "model".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.clone(),
                read_only: Some(true),
            }),
            ..Volume::default()
        });
    }
    v
}

fn probe(path: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String(PORT_NAME.into()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        timeout_seconds: Some(3),
        failure_threshold: Some(failures),
        ..Probe::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn value(name: &str, v: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(v.into()),
        value_from: None,
    }
}

fn secret(name: &str, secret: &str, key: &str, optional: bool) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.into(),
                key: key.into(),
                optional: optional.then_some(true),
            }),
            ..EnvVarSource::default()
        }),
    }
}

fn non_empty_map(m: &BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!m.is_empty()).then(|| m.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(d: &DeploymentStrategy) -> (Option<IntOrString>, Option<IntOrString>) {
        let r = d.rolling_update.clone().unwrap_or_default();
        (r.max_surge, r.max_unavailable)
    }

    #[test]
    fn spare_pods_surge_without_losing_a_ready_pod() {
        assert_eq!(rolling_bounds(1), (1, 0));
        assert_eq!(rolling_bounds(3), (3, 0));
        let s = strategy(2);
        assert_eq!(s.type_.as_deref(), Some("RollingUpdate"));
        assert_eq!(
            bounds(&s),
            (Some(IntOrString::Int(2)), Some(IntOrString::Int(0)))
        );
    }

    #[test]
    fn no_spare_pod_rolls_one_pod_at_a_time_without_surging() {
        assert_eq!(rolling_bounds(0), (0, 1));
        assert_eq!(rolling_bounds(-1), (0, 1), "a negative surge is none");
        assert_eq!(
            bounds(&strategy(0)),
            (Some(IntOrString::Int(0)), Some(IntOrString::Int(1)))
        );
    }
}
