//! `AudioDetector.spec`: what a user asks for.
//!
//! One object describes one detector service: which model to serve (and where MLflow is), how
//! many pods and on which nodes, the server's limits and secrets, how new model versions are
//! rolled out, and how the service is exposed and scraped. The operator turns it into a
//! Deployment (plus a canary Deployment during a rollout), a Service, an optional
//! HorizontalPodAutoscaler, a PodDisruptionBudget and an optional ServiceMonitor.
//!
//! Validation that a plain OpenAPI schema can express (ranges, patterns, enums) is written with
//! `schemars` attributes; rules spanning fields (replicas *or* autoscaling, min ≤ max, step weights
//! increasing) are CEL `x-kubernetes-validations`, evaluated by the API server on every write and
//! by this crate's tests.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, LocalObjectReference, ResourceRequirements, Toleration,
};
use kube::core::Duration;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::status::AudioDetectorStatus;

/// The model sources the CRD accepts (see [`crate::ModelSource`] for their meaning).
pub const MODEL_SOURCE_PATTERN: &str = r"^(models:/[^/@]+(@[A-Za-z0-9_-]+|/[0-9]+)|pvc://[a-z0-9]([-a-z0-9.]*[a-z0-9])?(/.*)?|/.+|https?://.+)$";

/// Go-style durations (`90s`, `5m`, `1h30m`, `500ms`), as `metav1.Duration` writes them.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

/// The desired state of a detector: its model, pods, server settings, rollout policy and Service.
// Several `printcolumn(type_ = "string", …)` entries look like duplicated attributes to clippy.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "auralguard.io",
    version = "v1alpha1",
    kind = "AudioDetector",
    plural = "audiodetectors",
    singular = "audiodetector",
    shortname = "adet",
    category = "auralguard",
    namespaced,
    status = "AudioDetectorStatus",
    derive = "PartialEq",
    doc = "A deepfake-speech detector service: the AuralGuard server deployed, scaled and upgraded by the AuralGuard operator, with model versions rolled out from MLflow as canaries.",
    printcolumn(
        name = "Model",
        type_ = "string",
        json_path = ".spec.model.source",
        description = "The model source."
    ),
    printcolumn(
        name = "Version",
        type_ = "string",
        json_path = ".status.servingVersion",
        description = "The model version every stable pod serves."
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the detector answers requests."
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.replicas",
        description = "Pods running (stable and canary)."
    ),
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Pending, Running, Progressing, Paused, Degraded or Failed."
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.replicas",
        label_selector_path = ".status.selector"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.replicas) && has(self.autoscaling))",
        "message": "set either replicas or autoscaling, not both"
    },
    {
        "rule": "!self.model.source.startsWith('models:/') || has(self.mlflow)",
        "message": "an MLflow model source (models:/...) needs spec.mlflow.trackingUri"
    }
]))]
pub struct AudioDetectorSpec {
    /// The model to serve.
    pub model: ModelSpec,

    /// Where the MLflow tracking server (and Model Registry) is; required for `models:/` sources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<MlflowSpec>,

    /// A fixed number of pods (default 1). Mutually exclusive with `autoscaling`; `kubectl scale`
    /// sets it through the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,

    /// Scale with load through a HorizontalPodAutoscaler instead of a fixed replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,

    /// Container resources. GPUs are requested with the `nvidia.com/gpu` key in `limits` (or
    /// `requests`); the operator then sets requests equal to limits, adds the NVIDIA toleration,
    /// runs the CUDA image and sets `AURALGUARD_DEVICE=cuda`. Default: requests cpu 500m,
    /// memory 1Gi; limits memory 2Gi.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,

    /// Node labels the pods must match (for example a GPU node group).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,

    /// Extra tolerations for the pods (the NVIDIA GPU toleration is added automatically).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,

    /// Pod affinity and anti-affinity rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,

    /// The server image; default: the operator's `--default-image` (its `-cuda` variant when GPUs
    /// are requested).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub image: Option<String>,

    /// When the kubelet pulls the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<PullPolicy>,

    /// Secrets for pulling the image from a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// The pods' ServiceAccount (on EKS, one bound to an IAM role through IRSA or Pod Identity
    /// lets the server read MLflow artifacts from S3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,

    /// Extra annotations on the pods.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub pod_annotations: BTreeMap<String, String>,

    /// The server's limits and secrets.
    #[serde(default)]
    pub server: ServerSpec,

    /// Where predictions are logged: a MongoDB URI from a Secret (default: the server's embedded
    /// store on an emptyDir volume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mongodb: Option<MongoSpec>,

    /// How a new model version reaches the pods; without it (or with no steps) the Deployment is
    /// updated in place with a rolling update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,

    /// How the detector is exposed inside (or outside) the cluster.
    #[serde(default)]
    pub service: ServiceSpec,

    /// A Prometheus-operator ServiceMonitor for the pods (skipped while the ServiceMonitor CRD is
    /// not installed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<ServiceMonitorSpec>,
}

/// Which model the pods load.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    /// `models:/NAME@ALIAS` (an MLflow alias: the operator follows it and rolls out each new
    /// version), `models:/NAME/VERSION`, `pvc://CLAIM/PATH` (a package folder on a
    /// PersistentVolumeClaim, mounted read-only), an absolute path inside the image, or an
    /// `http(s)://` URL.
    #[schemars(pattern(MODEL_SOURCE_PATTERN))]
    pub source: String,
}

/// The MLflow tracking server the registry sources live in.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MlflowSpec {
    /// Base URL of the tracking server, for example `http://mlflow.mlflow.svc:5000`.
    #[schemars(pattern(r"^https?://.+"))]
    pub tracking_uri: String,

    /// A Secret holding MLflow credentials (a token, or a username and password). The operator
    /// reads it to resolve aliases; pods get it as environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<MlflowCredentials>,
}

/// Names the keys of an MLflow credentials Secret. Every key is optional in the Secret: a Secret
/// with only `token` gives `MLFLOW_TRACKING_TOKEN`, one with `username` and `password` gives basic
/// auth.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MlflowCredentials {
    /// The Secret's name, in the detector's namespace.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Key of the bearer token.
    #[serde(default = "default_token_key")]
    pub token_key: String,
    /// Key of the basic-auth user name.
    #[serde(default = "default_username_key")]
    pub username_key: String,
    /// Key of the basic-auth password.
    #[serde(default = "default_password_key")]
    pub password_key: String,
}

fn default_token_key() -> String {
    "token".into()
}
fn default_username_key() -> String {
    "username".into()
}
fn default_password_key() -> String {
    "password".into()
}

/// Load-driven scaling through an `autoscaling/v2` HorizontalPodAutoscaler on the stable pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "(has(self.minReplicas) ? self.minReplicas : 1) <= self.maxReplicas",
        "message": "minReplicas must not exceed maxReplicas"
    },
    {
        "rule": "has(self.targetConcurrency) || has(self.targetCpuUtilization)",
        "message": "set targetConcurrency, targetCpuUtilization or both"
    }
]))]
pub struct AutoscalingSpec {
    /// Fewest pods.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most pods.
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Target in-flight requests per pod (the pods metric `auralguard_in_flight_requests`, which
    /// needs a custom-metrics adapter such as prometheus-adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_concurrency: Option<i32>,
    /// Target average CPU utilisation, in percent of the CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub target_cpu_utilization: Option<i32>,
}

fn one() -> i32 {
    1
}

/// When the kubelet pulls the image.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    /// Every pod start.
    Always,
    /// Only when the node lacks it.
    IfNotPresent,
    /// Never (the image must be on the node).
    Never,
}

impl PullPolicy {
    /// The spelling Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "Always",
            Self::IfNotPresent => "IfNotPresent",
            Self::Never => "Never",
        }
    }
}

/// The server's request limits and its API-key secret; unset values keep the server's defaults.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerSpec {
    /// Most windows run through the network in one batch (`AURALGUARD_MAX_BATCH_SIZE`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_batch_size: Option<i32>,
    /// Largest accepted upload in MiB (`AURALGUARD_MAX_UPLOAD_MB`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_upload_mb: Option<i32>,
    /// Longest accepted audio in seconds (`AURALGUARD_MAX_AUDIO_SECONDS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 86400))]
    pub max_audio_seconds: Option<i32>,
    /// Requests judged at once per pod before answering 503 (`AURALGUARD_MAX_CONCURRENT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_concurrent: Option<i32>,
    /// Per-request deadline in seconds (`AURALGUARD_REQUEST_TIMEOUT_SECONDS`); the pods' grace
    /// period on shutdown is this plus 15 seconds so in-flight requests can finish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 3600))]
    pub request_timeout_seconds: Option<i32>,
    /// A Secret key holding the API key clients must send (`AURALGUARD_API_KEY`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret: Option<SecretKeyRef>,
}

/// One key of a Secret in the detector's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The key inside it.
    #[schemars(length(min = 1))]
    pub key: String,
}

/// The MongoDB the server logs predictions to.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongoSpec {
    /// The Secret key holding the connection string (`MONGODB_URI`).
    pub uri_secret: SecretKeyRef,
}

/// How a new model version is rolled out: a canary Deployment takes a growing share of the pods
/// (and so of the traffic behind the one Service), step by step; after each step's pause the
/// canary pods' own metrics must pass the analysis, or the canary is removed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutSpec {
    /// Canary steps, in order; weights (percent of pods on the new version) must increase. Empty:
    /// no canary, the Deployment is updated in place.
    #[serde(default)]
    #[schemars(length(max = 10))]
    #[schemars(extend("x-kubernetes-validations" = [
        {
            "rule": "size(self) < 2 || [1, 2, 3, 4, 5, 6, 7, 8, 9].filter(i, i < size(self)).all(i, self[i].weight > self[i - 1].weight)",
            "message": "canary step weights must increase from one step to the next"
        }
    ]))]
    pub steps: Vec<CanaryStep>,

    /// What the canary pods' metrics must show at the end of every step, on their own and
    /// compared with the stable pods' (the share of "fake" verdicts).
    #[serde(default)]
    pub analysis: AnalysisSpec,

    /// How long the canary (or the promoted stable pods) may take to become ready before the
    /// rollout is rolled back, as a duration such as `10m`.
    #[serde(default = "default_progress_deadline")]
    #[schemars(pattern(DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [
        { "rule": "duration(self) > duration('0s')", "message": "progressDeadline must be a positive duration such as 10m" }
    ]))]
    pub progress_deadline: Duration,

    /// How many pods a rollout may run above the desired replica count (default 1), so that
    /// serving capacity is not lost while pods move to the new version. Each batch of new pods
    /// must become ready within `progressDeadline`.
    ///
    /// * 1 or more (*surge first*): the canary's pods are added first while the stable
    ///   Deployment keeps every pod; stable shrinks only by canary pods that are ready, so the
    ///   ready pods never drop below `replicas` and the pods never exceed `replicas + maxSurge`.
    ///   Promotion moves stable to the new version within the same budget and removes the canary
    ///   only once stable is fully available. The Deployments' rolling updates use this
    ///   `maxSurge` with `maxUnavailable: 0`.
    /// * 0 (*shrink first*, for GPU nodes without a spare GPU): no pod is ever added above
    ///   `replicas`; the stable Deployment gives up one pod before each canary pod starts, so one
    ///   pod's capacity may be missing at a time (`status.capacity.mode: ShrinkFirst` and a
    ///   `RolloutShrinkFirst` Event say so). The Deployments' rolling updates use
    ///   `maxSurge: 0, maxUnavailable: 1`.
    ///
    /// With `autoscaling` the HorizontalPodAutoscaler owns the stable pods' count: the canary is
    /// added on top of them, and `maxSurge` shapes only the Deployments' rolling updates.
    #[serde(default = "default_max_surge")]
    #[schemars(range(min = 0, max = 1000))]
    pub max_surge: i32,
}

/// One spare pod: the least extra capacity that lets a rollout never lose a serving pod.
pub fn default_max_surge() -> i32 {
    1
}

fn default_progress_deadline() -> Duration {
    std::time::Duration::from_secs(600).into()
}

/// One canary step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStep {
    /// Percent of the pods that run the new version during this step (1–100).
    #[schemars(range(min = 1, max = 100))]
    pub weight: i32,
    /// How long to watch the canary at this weight before judging it, as a duration such as
    /// `5m` (default 1m).
    #[serde(default = "default_pause")]
    #[schemars(pattern(DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [
        { "rule": "duration(self) >= duration('0s')", "message": "pause must be a duration such as 30s or 5m" }
    ]))]
    pub pause: Duration,
}

fn default_pause() -> Duration {
    std::time::Duration::from_secs(60).into()
}

/// The thresholds a canary must hold, computed from its pods' `/metrics` over each step (and,
/// for the fake share, from the stable pods' over the same window).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisSpec {
    /// Highest accepted share of 5xx answers (0–1).
    #[serde(default = "default_max_error_rate")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,
    /// Highest accepted 99th-percentile latency, as a duration such as `2s` or `500ms`.
    #[serde(default = "default_max_p99")]
    #[schemars(pattern(DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [
        { "rule": "duration(self) > duration('0s')", "message": "maxP99Latency must be a positive duration such as 2s" }
    ]))]
    pub max_p99_latency: Duration,
    /// Fewest requests the canary must have answered during the step for its numbers to count.
    #[serde(default = "default_min_requests")]
    #[schemars(range(min = 0))]
    pub min_requests: i64,
    /// What to do when the step ends with fewer than `minRequests` requests: `Wait` for more
    /// (default), `Pass` the step anyway, or `Fail` the rollout.
    #[serde(default)]
    pub insufficient_traffic: InsufficientTraffic,
    /// With `insufficientTraffic: Wait`, the longest a step waits past its pause for
    /// `minRequests` before the rollout is rolled back: a canary nobody sends traffic to must
    /// not hold a rollout (and its pods) open forever.
    #[serde(default = "default_traffic_deadline")]
    #[schemars(pattern(DURATION_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [
        { "rule": "duration(self) > duration('0s')", "message": "trafficDeadline must be a positive duration such as 30m" }
    ]))]
    pub traffic_deadline: Duration,
    /// The routes (server route templates) whose requests count; probes and scrapes are not
    /// traffic.
    #[serde(default = "default_routes")]
    pub routes: Vec<String>,
    /// A model-quality guard: the canary's share of "fake" verdicts must stay close to the stable
    /// pods' over the same window. Error rate and latency cannot see a model that calls
    /// everything fake (or everything real); the stable pods, judging the same mix of traffic at
    /// the same time, are the reference.
    #[serde(default)]
    pub fake_share: FakeShareSpec,
    /// How many consecutive failed metric scrapes (a pod that does not answer `/metrics`, the
    /// pod list refused) a step tolerates. Each failure keeps the step where it is, is counted in
    /// `status.rollout.failedScrapes` and reported as a Warning Event `AnalysisScrapeFailed`,
    /// and the scrape is retried at the next check; one more failure than this rolls the canary
    /// back, naming the last error. A successful scrape resets the count.
    #[serde(default = "default_failure_limit")]
    #[schemars(range(min = 1))]
    pub failure_limit: i64,
    /// How many inconclusive observation windows one step may have before the canary is rolled
    /// back. A window is inconclusive when the canary's error rate exceeds `maxErrorRate` but
    /// the stable pods' (with at least `minRequests` requests) does too over the same window: a
    /// shared outage (a dependency, the network, the clients) is not blamed on the canary, and
    /// the step observes a new window instead. One more inconclusive window than this rolls the
    /// canary back (counted like `failureLimit`: the limit is what is tolerated).
    #[serde(default = "default_inconclusive_limit")]
    #[schemars(range(min = 1))]
    pub inconclusive_limit: i64,
}

impl Default for AnalysisSpec {
    fn default() -> Self {
        Self {
            max_error_rate: default_max_error_rate(),
            max_p99_latency: default_max_p99(),
            min_requests: default_min_requests(),
            insufficient_traffic: InsufficientTraffic::default(),
            traffic_deadline: default_traffic_deadline(),
            routes: default_routes(),
            fake_share: FakeShareSpec::default(),
            failure_limit: default_failure_limit(),
            inconclusive_limit: default_inconclusive_limit(),
        }
    }
}

fn default_max_error_rate() -> f64 {
    0.05
}
fn default_max_p99() -> Duration {
    std::time::Duration::from_secs(2).into()
}
fn default_traffic_deadline() -> Duration {
    std::time::Duration::from_secs(30 * 60).into()
}
fn default_min_requests() -> i64 {
    20
}
fn default_failure_limit() -> i64 {
    3
}
fn default_inconclusive_limit() -> i64 {
    3
}
fn default_routes() -> Vec<String> {
    vec!["/predict".into(), "/v2/models/{name}/infer".into()]
}

/// How far the canary's share of "fake" verdicts may drift from the stable pods' during a step.
///
/// Both shares are measured over the same observation window, so a change in what clients send
/// moves both alike; only a difference the numbers make statistically clear fails the step, so a
/// small sample's noise does not roll back a good model.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FakeShareSpec {
    /// The largest accepted absolute difference between the canary's and the stable pods' share
    /// of "fake" verdicts over the same window (0–1; 0.2 means 20 percentage points). 1 disables
    /// the check.
    #[serde(default = "default_max_fake_share_difference")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_difference: f64,
    /// Fewest verdicts each side (canary and stable) needs in the window for the comparison to be
    /// made; with fewer the step is not held or failed over it, and its Event says the shares were
    /// not compared.
    #[serde(default = "default_min_verdicts")]
    #[schemars(range(min = 0))]
    pub min_verdicts: i64,
    /// How sure the operator must be that the difference exceeds `maxDifference` before it fails
    /// the step (0.5–0.9999). The excess over `maxDifference` must reach this confidence's
    /// two-sided normal quantile in standard errors (2.58 for 0.99): higher values fail fewer
    /// good canaries on small samples but need more traffic to catch a bad one.
    #[serde(default = "default_fake_share_confidence")]
    #[schemars(range(min = 0.5, max = 0.9999))]
    pub confidence: f64,
}

impl Default for FakeShareSpec {
    fn default() -> Self {
        Self {
            max_difference: default_max_fake_share_difference(),
            min_verdicts: default_min_verdicts(),
            confidence: default_fake_share_confidence(),
        }
    }
}

fn default_max_fake_share_difference() -> f64 {
    0.2
}
fn default_min_verdicts() -> i64 {
    50
}
fn default_fake_share_confidence() -> f64 {
    0.99
}

/// What a step with too little traffic to judge does.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum InsufficientTraffic {
    /// Keep the canary at this weight until enough requests arrived.
    #[default]
    Wait,
    /// Judge the step as passed (quiet test environments).
    Pass,
    /// Roll back.
    Fail,
}

/// How the detector's Service looks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// ClusterIP (default), NodePort or LoadBalancer.
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// The Service port (the pods always listen on 8080).
    #[serde(default = "default_service_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Annotations on the Service, for example an AWS load balancer's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Default for ServiceSpec {
    fn default() -> Self {
        Self {
            type_: ServiceType::default(),
            port: default_service_port(),
            annotations: BTreeMap::new(),
        }
    }
}

fn default_service_port() -> i32 {
    8080
}

/// The Kubernetes Service types a detector may use.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Also on a port of every node.
    NodePort,
    /// Also through a cloud load balancer.
    LoadBalancer,
}

impl ServiceType {
    /// The spelling Kubernetes uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClusterIP => "ClusterIP",
            Self::NodePort => "NodePort",
            Self::LoadBalancer => "LoadBalancer",
        }
    }
}

/// The Prometheus-operator ServiceMonitor for the detector's pods.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    /// Create it (default true once the block is present).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Scrape interval, such as `30s` (default: Prometheus' own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(DURATION_PATTERN))]
    pub interval: Option<Duration>,
    /// Extra labels, typically the ones your Prometheus selects ServiceMonitors by.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}
