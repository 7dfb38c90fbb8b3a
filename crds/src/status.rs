//! `AudioDetector.status`: what the operator observed and decided.
//!
//! Besides the usual `observedGeneration`, conditions and counters, status is where a model
//! rollout *lives*: the operator keeps no rollout state in memory, so [`RolloutState`] records
//! everything the next reconcile needs (which versions, which step, since when, and the canary's
//! metric baseline). A restarted operator, or a newly elected leader, reads it and carries on
//! exactly where the previous one stopped.
//!
//! Manual control ([`crate::manual`]) is remembered here for the same reason: `paused`, the
//! tokens of the one-shot commands already handled ([`HandledCommands`]) and what the last
//! command did ([`CommandRecord`]).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition types the operator maintains.
pub mod condition {
    /// The Service has at least one ready pod behind it and the desired pod count is ready.
    pub const READY: &str = "Ready";
    /// The model source resolved to a concrete version (for an alias, through MLflow).
    pub const MODEL_RESOLVED: &str = "ModelResolved";
    /// A rollout (canary or rolling update) is under way.
    pub const PROGRESSING: &str = "Progressing";
    /// The detector serves something other than what was asked for, such as after a rollback.
    pub const DEGRADED: &str = "Degraded";
}

/// What the operator last saw and did.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AudioDetectorStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// `Ready`, `ModelResolved`, `Progressing` and `Degraded`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// A one-word summary for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,

    /// The model URI every stable pod is pinned to (`models:/NAME/VERSION` or a path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_model: Option<String>,

    /// The version the stable pods serve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_version: Option<String>,

    /// The version the model source currently resolves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_version: Option<String>,

    /// The version the canary pods serve, during a canary rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_version: Option<String>,

    /// Percent of the pods on the canary version, during a canary rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_weight: Option<i32>,

    /// Pods that exist (stable and canary); the scale subresource reads it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,

    /// Pods that are ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,

    /// The label selector of the detector's pods, for the scale subresource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,

    /// The in-cluster URL of the detector's Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,

    /// The rollout in progress, if any (the operator's only memory of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutState>,

    /// How the most recent rollout ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_rollout: Option<RolloutResult>,

    /// During a canary rollout, how serving capacity is kept (`spec.rollout.maxSurge`) and how
    /// many pods are ready on each side against the desired count, so that users can see that
    /// capacity was held (or, shrink-first, by how much it may dip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<RolloutCapacity>,

    /// True while the `auralguard.io/pause` annotation holds the detector's rollouts. Kept so
    /// that the operator sees when a pause begins and ends (each is an Event) across restarts.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,

    /// The token of the last `promote`, `abort` and `retry` annotation acted on: a command runs
    /// once per token, however often the detector is reconciled.
    #[serde(default, skip_serializing_if = "HandledCommands::is_empty")]
    pub handled_commands: HandledCommands,

    /// The most recent manual command and what came of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_command: Option<CommandRecord>,
}

/// A one-word summary of a detector.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Phase {
    /// Nothing serving yet (model being resolved, pods starting).
    Pending,
    /// Serving the desired model with every pod ready.
    Running,
    /// A rollout is under way.
    Progressing,
    /// Serving, but not what was asked for (a rollout was rolled back) or not every pod is ready.
    Degraded,
    /// Serving, with rollouts held by the `auralguard.io/pause` annotation.
    Paused,
    /// Nothing can be served (the model cannot be resolved and nothing was serving).
    Failed,
}

/// A rollout in progress. Everything the next reconcile needs is here, nothing in memory.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    /// The model URI the stable pods served when the rollout began (the rollback target).
    pub stable_model: String,
    /// Its version.
    pub stable_version: String,
    /// The model URI being rolled out.
    pub canary_model: String,
    /// Its version.
    pub canary_version: String,
    /// Index of the current step in `spec.rollout.steps`.
    pub step: i32,
    /// Where within the step the rollout is.
    pub phase: RolloutPhase,
    /// When the rollout began.
    pub started_at: Time,
    /// When the current phase began (the pause and the progress deadline count from here).
    pub phase_started_at: Time,
    /// The canary pods' counters when the step's observation window opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline: Option<MetricsSnapshot>,
    /// When `auralguard.io/pause` began holding this rollout. On resume `phaseStartedAt` moves
    /// on by the time held, so neither the step's pause nor the progress deadline counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused_at: Option<Time>,
    /// Set when `auralguard.io/promote` skipped the remaining steps, so that the result says the
    /// version was promoted by hand rather than by passing its analysis.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promoted_manually: bool,
    /// Consecutive metric scrapes of this step that failed. A failed scrape keeps the step where
    /// it is; more than `analysis.failureLimit` in a row roll the canary back, and a successful
    /// scrape resets the count. Kept here so that the count survives operator restarts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_scrapes: i64,
    /// Why the most recent of those scrapes failed (cleared by a successful scrape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scrape_error: Option<String>,
    /// Observation windows of this step that could not be judged because the stable pods failed
    /// as much as the canary (a shared outage); the window that reaches
    /// `analysis.inconclusiveLimit` rolls the canary back. Reset when the next step starts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub inconclusive_windows: i64,
}

/// For `skip_serializing_if`: a zero counter is left out of status, as if never set.
fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Serving capacity during a rollout: the mode, the budget and the ready pods of each side.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutCapacity {
    /// `SurgeFirst` (new pods first, ready pods never below `desiredReplicas`) or `ShrinkFirst`
    /// (`maxSurge: 0`: a stable pod goes before each canary pod starts).
    pub mode: CapacityMode,
    /// The pods the detector asks for (`spec.replicas`, or the autoscaler's current count).
    pub desired_replicas: i32,
    /// The pods a rollout may run above `desiredReplicas` (`spec.rollout.maxSurge`).
    pub max_surge: i32,
    /// Ready pods of the stable Deployment, as last observed.
    pub ready_stable: i32,
    /// Ready pods of the canary Deployment, as last observed.
    pub ready_canary: i32,
}

/// How a rollout keeps serving capacity while pods move to the new version.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CapacityMode {
    /// New pods start before old ones go: stable shrinks only by canary pods that are ready.
    SurgeFirst,
    /// No pod above the desired count: a stable pod is removed before each canary pod starts,
    /// so one pod's capacity may be missing at a time.
    ShrinkFirst,
}

/// Where within a step a rollout is.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutPhase {
    /// The canary Deployment is being sized for the step; waiting for its pods to be ready.
    Scaling,
    /// The canary is at the step's weight; its metrics are being watched for the pause.
    Analyzing,
    /// Every step passed; the stable Deployment is being moved to the new version.
    Promoting,
}

/// Counters scraped from the canary and the stable pods at one moment, per pod, restricted to the
/// analysed routes. Both sides are scraped together so that a step's window covers the same time
/// for each, which is what makes their verdicts comparable.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricsSnapshot {
    /// One entry per canary pod scraped.
    #[serde(default)]
    pub pods: Vec<PodCounters>,
    /// One entry per ready stable pod scraped: the reference the canary's verdicts are compared
    /// with. Empty in baselines stored before the operator scraped stable pods.
    #[serde(default)]
    pub stable: Vec<PodCounters>,
    /// Canary pods that exist but were not ready (so not scraped): a crashing canary pod drops
    /// out of `pods`, and only this count still shows it. Pods being deleted or already ended
    /// (evicted) are not counted. Defaults to 0 so that baselines stored by older operators
    /// still parse.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unready_pods: i64,
}

/// One pod's request counters.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodCounters {
    /// The pod's name (counters of a restarted pod start again from zero).
    pub pod: String,
    /// Requests answered.
    pub requests: i64,
    /// Requests answered with a 5xx status.
    pub errors: i64,
    /// Cumulative latency histogram buckets, by upper bound.
    #[serde(default)]
    pub latency_buckets: Vec<BucketCount>,
    /// Verdicts "fake" returned (`auralguard_verdicts_total{label="fake"}`), for the model-quality
    /// guard. Defaults to 0 so that baselines stored by older operators still parse.
    #[serde(default)]
    pub fake: i64,
    /// Verdicts "real" returned (`auralguard_verdicts_total{label="real"}`).
    #[serde(default)]
    pub real: i64,
    /// The restarts of the pod's containers so far (the sum of `restartCount` over
    /// `status.containerStatuses`). A restarted server's counters start again from zero, hiding
    /// the requests it failed before, so a canary pod whose count grew during a step fails it.
    /// Absent in baselines stored by older operators, which are then not compared (absent is not
    /// zero: a pod that had restarted before the window opened must not look restarted in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restarts: Option<i64>,
}

/// One cumulative histogram bucket.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BucketCount {
    /// The bucket's upper bound in seconds, as the exposition writes it (`0.25`, `+Inf`).
    pub le: String,
    /// Observations at or below it.
    pub count: i64,
}

/// How a rollout ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RolloutResult {
    /// Promoted, RolledBack, Aborted or ManuallyAborted.
    pub outcome: RolloutOutcome,
    /// The model URI that was being rolled out.
    pub model: String,
    /// Its version.
    pub version: String,
    /// The version serving before.
    pub from_version: String,
    /// Why it ended this way.
    pub message: String,
    /// When it ended.
    pub finished_at: Time,
    /// Set once the model source has pointed at another version since a rollback: the
    /// rolled-back version is then tried again if the source comes back to it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub superseded: bool,
    /// Set by `auralguard.io/retry`: the block on a rolled-back or manually aborted version is
    /// lifted and the version is rolled out again while the model source points at it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retried: bool,
}

impl RolloutResult {
    /// Whether this result keeps its version from being rolled out again: it was rolled back or
    /// aborted by hand, and neither did the model source move away since nor did a user ask for
    /// a retry.
    pub fn blocks(&self) -> bool {
        matches!(
            self.outcome,
            RolloutOutcome::RolledBack | RolloutOutcome::ManuallyAborted
        ) && !self.superseded
            && !self.retried
    }
}

/// The ways a rollout ends.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum RolloutOutcome {
    /// The new version serves everywhere.
    Promoted,
    /// The canary failed its analysis or its deadline and was removed; the new version is not
    /// tried again until the model source points somewhere else.
    RolledBack,
    /// The model source moved (back to the serving version, or to yet another one) mid-rollout.
    Aborted,
    /// A user aborted the rollout (`auralguard.io/abort`); like a rollback, the version is not
    /// tried again until the model source points somewhere else or a user asks for a retry.
    ManuallyAborted,
}

/// The one-shot commands' tokens already acted on (the annotation values).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HandledCommands {
    /// The last `auralguard.io/promote` token handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promote: Option<String>,
    /// The last `auralguard.io/abort` token handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<String>,
    /// The last `auralguard.io/retry` token handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<String>,
}

impl HandledCommands {
    /// True when no command was ever handled (the field is then left out of status).
    pub fn is_empty(&self) -> bool {
        self.promote.is_none() && self.abort.is_none() && self.retry.is_none()
    }
}

/// What a manual command did.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandRecord {
    /// Which command.
    pub command: ManualCommand,
    /// The annotation's value for one-shot commands; absent for pause and resume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Whether it was carried out or ignored.
    pub result: CommandResult,
    /// What it did, or why it was ignored.
    pub message: String,
    /// When the operator handled it.
    pub at: Time,
}

/// The manual commands (see [`crate::manual`]).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum ManualCommand {
    /// `auralguard.io/promote`: skip the remaining steps and promote now.
    Promote,
    /// `auralguard.io/abort`: roll the canary back now and block its version.
    Abort,
    /// `auralguard.io/retry`: lift the block on a rolled-back or aborted version.
    Retry,
    /// `auralguard.io/pause` appeared: rollouts hold.
    Pause,
    /// `auralguard.io/pause` went away: rollouts continue.
    Resume,
}

impl ManualCommand {
    /// The command's name as users write it (the annotation's last segment, or `resume`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promote => "promote",
            Self::Abort => "abort",
            Self::Retry => "retry",
            Self::Pause => "pause",
            Self::Resume => "resume",
        }
    }
}

/// How a manual command ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum CommandResult {
    /// It did what it says.
    Applied,
    /// It made no sense in the detector's state (say, promote with no rollout running); nothing
    /// changed, and its token counts as handled so that it is not retried on every reconcile.
    Ignored,
}
