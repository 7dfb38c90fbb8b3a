//! Golden YAML snapshots of every object builder.
//!
//! Each case builds a detector from the YAML a user would write, renders every object the
//! operator would create for it, and compares the result with `tests/snapshots/<case>.yaml`.
//! Review those files by eye when they change; rewrite them with
//! `UPDATE_SNAPSHOTS=1 cargo test -p auralguard-operator --test snapshots`.
//!
//! Next to the snapshots, a few assertions pin the properties that matter most (GPU handling,
//! security context, the server contract), so an accidental snapshot update cannot silently
//! drop them.

mod support;

use std::path::{Path, PathBuf};

use auralguard_operator::builders::{
    deployment::deployment, hpa::hpa, pdb::pdb, service::service, service_monitor::service_monitor,
    BuildConfig, Role,
};
use auralguard_operator::model::ModelRef;
use k8s_openapi::api::apps::v1::Deployment;
use serde_json::Value;
use support::detector;

fn cfg() -> BuildConfig {
    BuildConfig::for_version("0.1.0")
}

fn snapshot_path(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("{case}.yaml"))
}

/// Renders `docs` as a multi-document YAML file and compares it with the snapshot.
fn check(case: &str, docs: Vec<Value>) {
    let rendered = docs
        .iter()
        .map(|d| serde_saphyr::to_string(&auralguard_crds::sorted_keys(d.clone())).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    let path = snapshot_path(case);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some_and(|v| v == "1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &rendered).unwrap();
        return;
    }
    let Ok(expected) = std::fs::read_to_string(&path) else {
        panic!(
            "snapshot {} is missing; create it with: UPDATE_SNAPSHOTS=1 cargo test -p auralguard-operator --test snapshots",
            path.display()
        );
    };
    if rendered != expected {
        let line = rendered
            .lines()
            .zip(expected.lines())
            .position(|(a, b)| a != b)
            .map_or_else(|| "length".to_string(), |i| format!("line {}", i + 1));
        panic!(
            "snapshot {} differs at {line}.\n--- rendered ---\n{rendered}\n\
             Review the change, then run: UPDATE_SNAPSHOTS=1 cargo test -p auralguard-operator --test snapshots",
            path.display()
        );
    }
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

/// Every object of a detector serving `model`, as reconcile would apply them outside a rollout.
fn all_objects(yaml: &str, model: &ModelRef, replicas: Option<i32>) -> Vec<Value> {
    let det = detector(yaml);
    let mut docs = vec![
        json(&deployment(&det, &cfg(), Role::Stable, model, replicas).unwrap()),
        json(&service(&det).unwrap()),
        json(&pdb(&det).unwrap()),
    ];
    if let Some(h) = hpa(&det).unwrap() {
        docs.push(json(&h));
    }
    if let Some(sm) = service_monitor(&det).unwrap() {
        docs.push(json(&sm));
    }
    docs
}

const CPU: &str = r#"
apiVersion: auralguard.io/v1alpha1
kind: AudioDetector
metadata: {name: demo, namespace: voice, uid: 0b7c6d3e-1111-4222-8333-944455556666}
spec:
  model: {source: /models/demo}
"#;

const GPU_EKS: &str = r#"
apiVersion: auralguard.io/v1alpha1
kind: AudioDetector
metadata: {name: detector-gpu, namespace: voice, uid: 0b7c6d3e-1111-4222-8333-944455556666}
spec:
  model: {source: "models:/deepfake@champion"}
  mlflow:
    trackingUri: http://mlflow.mlflow.svc:5000
    credentialsSecret: {name: mlflow-token}
  replicas: 2
  resources:
    requests: {cpu: "2", memory: 8Gi}
    limits: {memory: 16Gi, nvidia.com/gpu: "1"}
  nodeSelector:
    eks.amazonaws.com/nodegroup: gpu
  tolerations:
  - {key: dedicated, operator: Equal, value: inference, effect: NoSchedule}
  serviceAccountName: auralguard-s3-reader
  server:
    maxBatchSize: 64
    maxConcurrent: 16
    requestTimeoutSeconds: 60
    apiKeySecret: {name: auralguard-api, key: api-key}
  mongodb:
    uriSecret: {name: mongodb, key: uri}
  service:
    type: LoadBalancer
    port: 80
    annotations:
      service.beta.kubernetes.io/aws-load-balancer-type: external
      service.beta.kubernetes.io/aws-load-balancer-scheme: internal
  serviceMonitor:
    interval: 30s
    labels: {release: prometheus}
"#;

const AUTOSCALED_PVC: &str = r#"
apiVersion: auralguard.io/v1alpha1
kind: AudioDetector
metadata: {name: scaled, namespace: voice, uid: 0b7c6d3e-1111-4222-8333-944455556666}
spec:
  model: {source: "pvc://models/deepfake/v3"}
  autoscaling: {minReplicas: 2, maxReplicas: 10, targetCpuUtilization: 70, targetConcurrency: 4}
  image: myorg/auralguard:custom
  imagePullPolicy: Always
  imagePullSecrets: [{name: regcred}]
  podAnnotations: {team: voice}
"#;

#[test]
fn cpu_detector() {
    let docs = all_objects(
        CPU,
        &ModelRef::fixed(&"/models/demo".parse().unwrap()).unwrap(),
        Some(1),
    );
    check("cpu", docs);
}

#[test]
fn gpu_detector_on_eks() {
    let model = ModelRef::registry("deepfake", "7");
    check("gpu-eks", all_objects(GPU_EKS, &model, Some(2)));
}

#[test]
fn autoscaled_detector_with_a_pvc_model() {
    let model = ModelRef::fixed(&"pvc://models/deepfake/v3".parse().unwrap()).unwrap();
    check("autoscaled-pvc", all_objects(AUTOSCALED_PVC, &model, None));
}

#[test]
fn canary_deployment() {
    let det = detector(GPU_EKS);
    let canary = deployment(
        &det,
        &cfg(),
        Role::Canary,
        &ModelRef::registry("deepfake", "8"),
        Some(1),
    )
    .unwrap();
    let stable = deployment(
        &det,
        &cfg(),
        Role::Stable,
        &ModelRef::registry("deepfake", "7"),
        Some(1),
    )
    .unwrap();
    check("canary", vec![json(&stable), json(&canary)]);
}

fn container(d: &Deployment) -> &k8s_openapi::api::core::v1::Container {
    &d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

fn env(d: &Deployment, name: &str) -> Option<Value> {
    container(d)
        .env
        .as_ref()
        .unwrap()
        .iter()
        .find(|e| e.name == name)
        .map(json)
}

/// A GPU node group without a spare GPU (`spec.rollout.maxSurge: 0`): both Deployments roll one
/// pod at a time without surging (`maxUnavailable: 1`), so no rolling update ever asks for a GPU
/// beyond the detector's replicas; the default (1 spare pod) surges without losing a ready pod.
#[test]
fn gpu_detectors_without_a_spare_gpu_roll_without_surging() {
    let strategy = |yaml: &str, role| {
        let model = ModelRef::registry("deepfake", "7");
        let d = deployment(&detector(yaml), &cfg(), role, &model, Some(2)).unwrap();
        json(&d)["spec"]["strategy"].clone()
    };
    let no_spare = GPU_EKS.replace(
        "  replicas: 2\n",
        "  replicas: 2\n  rollout: {maxSurge: 0}\n",
    );
    for role in [Role::Stable, Role::Canary] {
        assert_eq!(
            strategy(&no_spare, role),
            serde_json::json!({"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}})
        );
        assert_eq!(
            strategy(GPU_EKS, role),
            serde_json::json!({"type": "RollingUpdate",
                               "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
        );
    }
}

#[test]
fn gpu_pods_get_the_cuda_image_equal_gpu_requests_and_the_nvidia_toleration() {
    let det = detector(GPU_EKS);
    let d = deployment(
        &det,
        &cfg(),
        Role::Stable,
        &ModelRef::registry("deepfake", "7"),
        Some(2),
    )
    .unwrap();
    let c = container(&d);
    assert_eq!(c.image.as_deref(), Some("auralguard/auralguard:0.1.0-cuda"));
    let r = c.resources.as_ref().unwrap();
    let gpu = |m: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        m.as_ref()
            .unwrap()
            .get("nvidia.com/gpu")
            .map(|q| q.0.clone())
    };
    assert_eq!(gpu(&r.requests), Some("1".into()));
    assert_eq!(gpu(&r.limits), Some("1".into()));
    let pod = d.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    let tolerations = json(pod.tolerations.as_ref().unwrap());
    assert!(tolerations.as_array().unwrap().iter().any(|t| t
        == &serde_json::json!({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})));
    assert_eq!(env(&d, "AURALGUARD_DEVICE").unwrap()["value"], "cuda");
    assert_eq!(
        env(&d, "AURALGUARD_MODEL").unwrap()["value"],
        "models:/deepfake/7"
    );
    assert_eq!(
        env(&d, "MLFLOW_TRACKING_TOKEN").unwrap()["valueFrom"]["secretKeyRef"],
        serde_json::json!({"name": "mlflow-token", "key": "token", "optional": true})
    );
    // A CPU detector gets neither.
    let cpu = detector(CPU);
    let d = deployment(
        &cpu,
        &cfg(),
        Role::Stable,
        &ModelRef::fixed(&"/models/demo".parse().unwrap()).unwrap(),
        Some(1),
    )
    .unwrap();
    assert_eq!(
        container(&d).image.as_deref(),
        Some("auralguard/auralguard:0.1.0")
    );
    assert!(env(&d, "AURALGUARD_DEVICE").is_none());
    assert!(env(&d, "MLFLOW_TRACKING_URI").is_none());
}

#[test]
fn pods_follow_the_server_process_contract_and_run_unprivileged() {
    let det = detector(GPU_EKS);
    let d = deployment(
        &det,
        &cfg(),
        Role::Canary,
        &ModelRef::registry("deepfake", "8"),
        Some(1),
    )
    .unwrap();
    let c = json(container(&d));
    assert_eq!(c["args"], serde_json::json!(["serve"]));
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    let template = json(&d.spec.as_ref().unwrap().template);
    assert_eq!(
        template["spec"]["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let annotations = &template["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], "8080");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    let labels = &template["metadata"]["labels"];
    assert_eq!(labels["auralguard.io/role"], "canary");
    assert_eq!(labels["auralguard.io/model-version"], "8");
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "auralguard-operator"
    );
    let mounts: Vec<&str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    assert_eq!(
        mounts,
        ["/var/lib/auralguard", "/var/cache/auralguard", "/tmp"]
    );
    assert_eq!(
        env(&d, "AURALGUARD_STORE_PATH").unwrap()["value"],
        "/var/lib/auralguard/predictions.db"
    );
    assert_eq!(
        env(&d, "AURALGUARD_MODEL_CACHE").unwrap()["value"],
        "/var/cache/auralguard"
    );
    // Every object is owned by the detector, as its controller.
    let owner = &json(&d.metadata)["ownerReferences"][0];
    assert_eq!(owner["kind"], "AudioDetector");
    assert_eq!(owner["controller"], true);
    assert_eq!(owner["uid"], "0b7c6d3e-1111-4222-8333-944455556666");
}

#[test]
fn the_service_selects_stable_and_canary_pods_alike() {
    let det = detector(GPU_EKS);
    let s = json(&service(&det).unwrap());
    let selector = s["spec"]["selector"].as_object().unwrap();
    assert!(!selector.contains_key("auralguard.io/role"));
    let stable = deployment(
        &det,
        &cfg(),
        Role::Stable,
        &ModelRef::registry("deepfake", "7"),
        Some(1),
    )
    .unwrap();
    let canary = deployment(
        &det,
        &cfg(),
        Role::Canary,
        &ModelRef::registry("deepfake", "8"),
        Some(1),
    )
    .unwrap();
    for d in [stable, canary] {
        let labels = json(&d.spec.unwrap().template.metadata.unwrap().labels.unwrap());
        for (k, v) in selector {
            assert_eq!(&labels[k], v);
        }
    }
}

#[test]
fn no_hpa_or_service_monitor_unless_asked() {
    let det = detector(CPU);
    assert!(hpa(&det).unwrap().is_none());
    assert!(service_monitor(&det).unwrap().is_none());
    let autoscaled = detector(AUTOSCALED_PVC);
    let d = deployment(
        &autoscaled,
        &cfg(),
        Role::Stable,
        &ModelRef::registry("m", "1"),
        None,
    )
    .unwrap();
    assert_eq!(
        d.spec.unwrap().replicas,
        None,
        "the HPA owns the replica count"
    );
}

#[test]
fn objects_need_the_detectors_uid() {
    let mut det = detector(CPU);
    det.metadata.uid = None;
    let err = service(&det).unwrap_err();
    assert_eq!(err.to_string(), "the AudioDetector has no metadata.uid");
}
