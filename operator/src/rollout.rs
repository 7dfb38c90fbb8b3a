//! The model rollout state machine: a pure function from (what status remembers, what the model
//! source resolves to now, what the Deployments look like, the time, the canary's metrics) to
//! (what to deploy, what status should remember, which transitions happened).
//!
//! ```text
//!            desired ≠ serving                canary ready              pause over, analysis passes
//!  (steady) ─────────────────▶ Scaling(step 0) ─────────▶ Analyzing(0) ──────────────────────────▶ Scaling(1) … Analyzing(last)
//!                                 │ deadline                 │ analysis fails                                      │ passes
//!                                 ▼                          ▼                                                     ▼
//!                             RolledBack ◀──────────────── RolledBack                              Promoting ──stable rolled out──▶ Promoted (steady)
//! ```
//!
//! * A step's weight is a share of pods behind the one Service: with a fixed replica count `n`
//!   the step ends with `ceil(n × weight / 100)` canary pods and the stable Deployment the rest,
//!   at least one each while the budget has room ([`split_replicas`]). It gets there within
//!   `n + maxSurge` pods ([`capacity`]): surge first, stable shrinks only by canary pods that are
//!   ready; with `maxSurge: 0` shrink first, one pod at a time (a `RolloutShrinkFirst` Event).
//!   Each batch of new pods has `progressDeadline` to become ready. With autoscaling the stable
//!   Deployment keeps the size its HPA chose and the canary is sized to be `weight`% of all pods.
//! * The observation window of a step opens when the canary is ready at the step's weight (the
//!   *baseline* scrape) and closes after the step's pause (the second scrape); [`crate::analysis`]
//!   judges the difference: the canary pods' health (no restart, none unready or replaced), the
//!   canary's error rate and p99, then its share of "fake" verdicts against the stable pods'
//!   over the same window. Any failure rolls back the same way.
//! * A scrape that fails (reconcile passes [`Input::metrics_error`]) is an *inconclusive
//!   observation*, not an error: the rollout stays in its phase, counts it
//!   ([`RolloutState::failed_scrapes`], with the last error), says so in a Warning Event
//!   (`AnalysisScrapeFailed`) and in the Progressing condition, and retries after the check
//!   interval. More than `analysis.failureLimit` failures in a row roll back, naming the last
//!   error; a successful scrape resets the count. This holds when a window opens (Scaling) as
//!   well as when it closes (Analyzing).
//! * A window in which the stable pods fail as much as the canary (both error rates above
//!   `maxErrorRate`) is *inconclusive* too: the outage is shared, not the canary's. The closing
//!   scrape becomes the baseline of a new window of the same step (an `AnalysisInconclusive`
//!   Warning Event, [`RolloutState::inconclusive_windows`] counted); more than
//!   `analysis.inconclusiveLimit` such windows in one step roll back.
//! * Promotion moves the stable Deployment to the new version within the same budget (its
//!   template first, beside the canary; then stable grows back as the canary shrinks by the
//!   stable pods that are ready) and removes the canary once the stable pods are all updated and
//!   ready; a rollback removes the canary at once and gives stable its pods back.
//! * A rolled-back (or manually aborted) version is not retried until the model source resolves
//!   to something else or a user asks for a retry.
//! * The machine keeps nothing in memory: [`RolloutState`] in status is its whole state, so a
//!   restarted operator continues any rollout exactly where it stopped.
//!
//! Users steer it through annotations ([`auralguard_crds::manual`], read into
//! [`Input::commands`]). Each new one-shot command (`promote`, `abort`, `retry`) and each change
//! of `pause` is applied to the remembered status first (`manual::apply`), then the regular
//! step runs from there, so a command's effect and the machine's reaction to it (the canary
//! deleted after an abort, a new canary after a retry) happen in one reconcile:
//!
//! * **promote**: a running canary goes straight to `Promoting`, skipping its remaining steps and
//!   their analysis;
//! * **abort**: a running canary is removed at once; the version is blocked like a rollback
//!   ([`RolloutOutcome::ManuallyAborted`]);
//! * **retry**: a blocked version is unblocked ([`RolloutResult::retried`]) and, while the source
//!   still points at it, rolled out again from step 1;
//! * **pause**: while set, nothing happens by itself: no rollout or in-place update starts, no
//!   step advances, no analysis is judged (no scrape), no deadline fires and a source change is
//!   not acted on; the Deployments keep what the current state plans. On resume the current
//!   phase keeps only the time it had run before the pause. The first deployment of a detector
//!   with nothing serving is not held (there is nothing to protect). One-shot commands still act
//!   while paused; what they start (a promotion, a retried rollout) completes after the resume.
//!
//! [`decide`] asks for a metrics scrape ([`Outcome::NeedMetrics`]) only at the two moments it
//! needs one, so reconcile scrapes pods only then.

use std::time::Duration;

use auralguard_crds::manual::{Commands, PAUSE};
use auralguard_crds::{
    AnalysisSpec, AudioDetectorStatus, CanaryStep, CapacityMode, CommandRecord, HandledCommands,
    InsufficientTraffic, ManualCommand, MetricsSnapshot, RolloutOutcome, RolloutPhase,
    RolloutResult, RolloutState,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::analysis::{self, ShareVerdict, Verdict};
use crate::model::ModelRef;

/// The rollout settings of a detector (from `spec.rollout`, with defaults when absent).
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Canary steps; empty means "update in place".
    pub steps: Vec<CanaryStep>,
    /// Thresholds for each step.
    pub analysis: AnalysisSpec,
    /// How long a batch of new pods may take to become ready before the rollout is rolled back.
    pub progress_deadline: Duration,
    /// Pods a rollout may run above the desired count (`spec.rollout.maxSurge`); 0 means
    /// shrink first ([`capacity`]).
    pub max_surge: i32,
}

impl Policy {
    /// The policy of a spec's `rollout` block.
    pub fn from_spec(spec: Option<&auralguard_crds::RolloutSpec>) -> Self {
        match spec {
            Some(r) => Self {
                steps: r.steps.clone(),
                analysis: r.analysis.clone(),
                progress_deadline: r.progress_deadline.into(),
                max_surge: r.max_surge,
            },
            None => Self {
                steps: Vec::new(),
                analysis: AnalysisSpec::default(),
                progress_deadline: Duration::from_secs(600),
                max_surge: auralguard_crds::default_max_surge(),
            },
        }
    }
}

/// How a detector's pod count is decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// `spec.replicas` (default 1).
    Fixed(i32),
    /// An HPA sizes the stable Deployment; `current` is its present size (or `minReplicas`).
    Autoscaled {
        /// The stable Deployment's current replica count.
        current: i32,
    },
}

/// Pod counts for one moment of a rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// Replicas of the stable Deployment; `None` when the HPA owns them.
    pub stable: Option<i32>,
    /// Replicas of the canary Deployment.
    pub canary: i32,
}

/// Where a step of `weight` percent ends, pods split between stable and canary (with
/// `max_surge` spare pods for a fixed count, see [`capacity::Budget::target`]); on the way there
/// [`capacity::Budget::toward`] decides.
pub fn split_replicas(scale: Scale, weight: i32, max_surge: i32) -> Split {
    match scale {
        Scale::Fixed(total) => {
            let target = capacity::Budget {
                desired: total,
                max_surge,
            }
            .target(weight);
            Split {
                stable: Some(target.stable),
                canary: target.canary,
            }
        }
        Scale::Autoscaled { current } => {
            let weight = i64::from(weight.clamp(1, 100));
            let current = i64::from(current.max(1));
            let canary = if weight >= 100 {
                current
            } else {
                ceil_div(current * weight, 100 - weight)
            };
            Split {
                stable: None,
                canary: to_i32(canary.max(1)),
            }
        }
    }
}

fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1) / b
}

fn to_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// What reconcile saw of one Deployment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PodSet {
    /// The model URI in its pod template (`auralguard.io/model`).
    pub model: Option<String>,
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.readyReplicas`.
    pub ready: i32,
    /// The controller has seen the latest template and every pod is updated and available.
    pub rolled_out: bool,
    /// The controller has seen the latest spec (`status.observedGeneration`), so the counts
    /// describe it; promotion does not act on stale counts.
    pub observed: bool,
    /// Pods still running an older template (`status.replicas − status.updatedReplicas`): while
    /// any remain, `ready` counts old and new pods alike.
    pub old_pods: i32,
}

impl PodSet {
    /// True when this Deployment serves `model` with at least `replicas` pods, all current.
    fn serves(&self, model: &str, replicas: Option<i32>) -> bool {
        self.model.as_deref() == Some(model)
            && self.rolled_out
            && replicas.is_none_or(|r| self.replicas == r && self.ready >= r)
    }
}

/// Everything [`decide`] looks at.
#[derive(Clone, Debug)]
pub struct Input<'a> {
    /// Now.
    pub now: Timestamp,
    /// Status as last written (serving version, rollout state, last rollout).
    pub status: &'a AudioDetectorStatus,
    /// What the model source resolves to now; `None` when resolving failed.
    pub desired: Option<&'a ModelRef>,
    /// The rollout settings.
    pub policy: &'a Policy,
    /// How pods are counted.
    pub scale: Scale,
    /// The stable Deployment as observed, if it exists.
    pub stable: Option<&'a PodSet>,
    /// The canary Deployment as observed, if it exists.
    pub canary: Option<&'a PodSet>,
    /// The canary and stable pods' counters, when [`decide`] asked for them.
    pub metrics: Option<&'a MetricsSnapshot>,
    /// Why the scrape [`decide`] asked for failed (instead of [`Input::metrics`]): the machine
    /// then records an inconclusive observation rather than reconcile failing without a trace.
    pub metrics_error: Option<&'a str>,
    /// How soon to look again while waiting for pods.
    pub check_interval: Duration,
    /// The manual commands in the detector's annotations.
    pub commands: &'a Commands,
}

/// The result of [`decide`].
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Scrape the canary and stable pods and call again with [`Input::metrics`] set (or
    /// [`Input::metrics_error`], should the scrape fail).
    NeedMetrics,
    /// What to do.
    Decided(Box<Decision>),
}

/// What to deploy and remember.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The version the stable pods are considered to serve (status `servingModel`/`Version`).
    pub serving: Option<ModelRef>,
    /// The model the stable Deployment must run; `None` when there is nothing to deploy yet.
    pub stable_model: Option<ModelRef>,
    /// The stable Deployment's replicas (`None`: the HPA's, or not deployed).
    pub stable_replicas: Option<i32>,
    /// The canary Deployment, if one must exist.
    pub canary: Option<CanaryPlan>,
    /// The rollout state to store.
    pub rollout: Option<RolloutState>,
    /// The last rollout result to store.
    pub last_rollout: Option<RolloutResult>,
    /// What happened, in order (each becomes an Event and maybe a metric).
    pub transitions: Vec<Transition>,
    /// Why the rollout is waiting, for the Progressing condition.
    pub waiting: Option<String>,
    /// When to reconcile again at the latest, while a rollout runs.
    pub requeue_after: Option<Duration>,
    /// Whether `auralguard.io/pause` is in force (status `paused`).
    pub paused: bool,
    /// True when the pause holds back something the machine would otherwise do (a running
    /// rollout, or a new version waiting to start), for the Progressing condition.
    pub holding: bool,
    /// The one-shot command tokens handled, this reconcile's included (status
    /// `handledCommands`).
    pub handled: HandledCommands,
    /// The most recent manual command and its result (status `lastCommand`).
    pub last_command: Option<CommandRecord>,
    /// How the rollout keeps serving capacity (status `capacity`, with the observed ready pods);
    /// `None` outside a rollout.
    pub capacity: Option<CapacityPlan>,
}

/// The capacity a rollout keeps, for status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapacityPlan {
    /// Surge first or shrink first.
    pub mode: CapacityMode,
    /// The pods the detector asks for.
    pub desired: i32,
    /// The pods allowed above that.
    pub max_surge: i32,
}

/// The canary Deployment to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CanaryPlan {
    /// Its model.
    pub model: ModelRef,
    /// Its replicas.
    pub replicas: i32,
    /// The step's weight in percent.
    pub weight: i32,
}

/// A state change worth an Event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The first version was deployed.
    Deployed {
        /// Its version.
        version: String,
    },
    /// The stable Deployment was moved to a new version directly (no canary steps).
    Updated {
        /// The version before.
        from: String,
        /// The version now.
        to: String,
    },
    /// A canary rollout began.
    RolloutStarted {
        /// The serving version.
        from: String,
        /// The canary version.
        to: String,
    },
    /// `spec.rollout.maxSurge` is 0: the rollout removes a stable pod before each canary pod
    /// starts, so one pod's capacity may be missing at a time (said once per rollout).
    ShrinkFirst {
        /// The detector's desired pods.
        desired: i32,
    },
    /// The canary is being scaled to a step's weight.
    StepStarted {
        /// 1-based step number.
        step: usize,
        /// Of how many.
        of: usize,
        /// The weight in percent.
        weight: i32,
    },
    /// A metric scrape of a step's analysis failed; the step stays where it is and retries.
    ScrapeFailed {
        /// 1-based step number.
        step: usize,
        /// Consecutive failures so far, this one included.
        failures: i64,
        /// How many in a row are tolerated (`analysis.failureLimit`).
        limit: i64,
        /// When the scrape is tried again.
        retry_in: Duration,
        /// Why it failed.
        error: String,
    },
    /// A step's window could not be judged (the stable pods failed as much as the canary); a new
    /// window of the same step opens.
    WindowInconclusive {
        /// 1-based step number.
        step: usize,
        /// Inconclusive windows of this step so far, this one included.
        windows: i64,
        /// How many are tolerated in one step (`analysis.inconclusiveLimit`).
        limit: i64,
        /// What was seen.
        reason: String,
    },
    /// A step's analysis passed.
    StepPassed {
        /// 1-based step number.
        step: usize,
        /// The numbers.
        summary: String,
    },
    /// Every step passed; the stable pods are moving to the canary version.
    Promoting {
        /// The version being promoted.
        version: String,
    },
    /// The new version serves everywhere.
    Promoted {
        /// The version before.
        from: String,
        /// The version now.
        to: String,
    },
    /// The canary was removed.
    RolledBack {
        /// The version that failed.
        version: String,
        /// The version still serving.
        serving: String,
        /// Why.
        reason: String,
    },
    /// The rollout stopped because the model source moved.
    Aborted {
        /// The version that was being rolled out.
        version: String,
        /// Why.
        reason: String,
    },
    /// `auralguard.io/promote`: the canary skips its remaining steps and is promoted.
    ManualPromote {
        /// The version being promoted.
        version: String,
        /// The 1-based step it was at.
        step: usize,
        /// Of how many.
        of: usize,
        /// The annotation's value.
        token: String,
    },
    /// `auralguard.io/abort`: the canary was removed by hand; its version is blocked.
    ManualAbort {
        /// The version that was being rolled out.
        version: String,
        /// The version still serving.
        serving: String,
        /// The annotation's value.
        token: String,
    },
    /// `auralguard.io/retry`: a blocked version may be rolled out again.
    ManualRetry {
        /// The version unblocked.
        version: String,
        /// The annotation's value.
        token: String,
    },
    /// `auralguard.io/pause` appeared.
    Paused {
        /// The rollout held, if one is running.
        holding: Option<String>,
    },
    /// `auralguard.io/pause` was removed.
    Resumed {
        /// The rollout that continues, if one is running.
        continuing: Option<String>,
    },
    /// A one-shot command that makes no sense in the current state; nothing changed.
    CommandIgnored {
        /// Which command.
        command: ManualCommand,
        /// The annotation's value.
        token: String,
        /// Why it was ignored.
        reason: String,
    },
}

impl Transition {
    /// The Event reason (`PascalCase`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Deployed { .. } => "ModelDeployed",
            Self::Updated { .. } => "ModelUpdated",
            Self::RolloutStarted { .. } => "RolloutStarted",
            Self::ShrinkFirst { .. } => "RolloutShrinkFirst",
            Self::StepStarted { .. } => "CanaryStepStarted",
            Self::ScrapeFailed { .. } => "AnalysisScrapeFailed",
            Self::WindowInconclusive { .. } => "AnalysisInconclusive",
            Self::StepPassed { .. } => "CanaryStepPassed",
            Self::Promoting { .. } => "CanaryPromoting",
            Self::Promoted { .. } => "RolloutPromoted",
            Self::RolledBack { .. } => "RolloutRolledBack",
            Self::Aborted { .. } => "RolloutAborted",
            Self::ManualPromote { .. } => "ManualPromote",
            Self::ManualAbort { .. } => "ManualAbort",
            Self::ManualRetry { .. } => "ManualRetry",
            Self::Paused { .. } => "Paused",
            Self::Resumed { .. } => "Resumed",
            Self::CommandIgnored { .. } => "ManualCommandIgnored",
        }
    }

    /// True for transitions users should look at (Warning events).
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            Self::RolledBack { .. }
                | Self::ScrapeFailed { .. }
                | Self::WindowInconclusive { .. }
                | Self::Aborted { .. }
                | Self::ManualAbort { .. }
                | Self::CommandIgnored { .. }
        )
    }

    /// The Event action: `ManualControl` for what a user's annotation caused, `Rollout` for what
    /// the machine did by itself.
    pub fn action(&self) -> &'static str {
        match self {
            Self::ManualPromote { .. }
            | Self::ManualAbort { .. }
            | Self::ManualRetry { .. }
            | Self::Paused { .. }
            | Self::Resumed { .. }
            | Self::CommandIgnored { .. } => "ManualControl",
            _ => "Rollout",
        }
    }

    /// The Event note.
    pub fn note(&self) -> String {
        match self {
            Self::Deployed { version } => format!("serving model version {version}"),
            Self::Updated { from, to } => format!("updating model version {from} → {to} in place"),
            Self::RolloutStarted { from, to } => {
                format!("canary rollout of model version {to} started (serving {from})")
            }
            Self::ShrinkFirst { desired } => format!(
                "spec.rollout.maxSurge is 0: no pod runs above the {desired} desired; a stable \
                 pod is removed before each canary pod starts (and before each stable pod moves \
                 to the new version), so 1 of {desired} pods may be unavailable at a time"
            ),
            Self::StepStarted { step, of, weight } => {
                format!("canary step {step}/{of}: {weight}% of pods on the new version")
            }
            Self::ScrapeFailed {
                step,
                failures,
                limit,
                retry_in,
                error,
            } => format!(
                "canary step {step}: {}",
                scrape_failure(*failures, *limit, *retry_in, error)
            ),
            Self::WindowInconclusive {
                step,
                windows,
                limit,
                reason,
            } => format!(
                "canary step {step}: {reason}: not blamed on the canary; observing again \
                 (inconclusive window {windows} of {limit})"
            ),
            Self::StepPassed { step, summary } => format!("canary step {step} passed: {summary}"),
            Self::Promoting { version } => {
                format!("all canary steps passed; moving stable pods to model version {version}")
            }
            Self::Promoted { from, to } => format!("model version {to} promoted (was {from})"),
            Self::RolledBack {
                version,
                serving,
                reason,
            } => format!("model version {version} rolled back, still serving {serving}: {reason}"),
            Self::Aborted { version, reason } => {
                format!("rollout of model version {version} aborted: {reason}")
            }
            Self::ManualPromote {
                version,
                step,
                of,
                token,
            } => format!(
                "promoting model version {version} by hand at step {step}/{of}, skipping the \
                 remaining steps and analysis ({}={token})",
                auralguard_crds::manual::PROMOTE
            ),
            Self::ManualAbort {
                version,
                serving,
                token,
            } => format!(
                "rollout of model version {version} aborted by hand, still serving {serving}; \
                 {version} stays blocked until the model source moves away or {} is set \
                 ({}={token})",
                auralguard_crds::manual::RETRY,
                auralguard_crds::manual::ABORT
            ),
            Self::ManualRetry { version, token } => format!(
                "model version {version} is no longer blocked and is rolled out again while the \
                 model source points at it ({}={token})",
                auralguard_crds::manual::RETRY
            ),
            Self::Paused { holding } => match holding {
                Some(h) => format!("{PAUSE} set: holding {h}; no step, analysis or deadline acts"),
                None => format!("{PAUSE} set: no rollout starts until it is removed"),
            },
            Self::Resumed { continuing } => match continuing {
                Some(h) => format!("{PAUSE} removed: continuing {h}"),
                None => format!("{PAUSE} removed: rollouts may start again"),
            },
            Self::CommandIgnored {
                command,
                token,
                reason,
            } => format!(
                "{} ignored ({}={token}): {reason}",
                command.as_str(),
                annotation_of(*command)
            ),
        }
    }

    /// The result label of `auralguard_operator_analysis_results_total`, for the analysis
    /// results that leave a rollout running (a failed analysis ends it: `rolled_back`).
    pub fn analysis_metric(&self) -> Option<&'static str> {
        match self {
            Self::StepPassed { .. } => Some("passed"),
            Self::WindowInconclusive { .. } => Some("inconclusive"),
            Self::ScrapeFailed { .. } => Some("scrape_failed"),
            _ => None,
        }
    }

    /// The outcome label of `auralguard_operator_rollouts_total`, for transitions that end or
    /// start a rollout.
    pub fn rollout_metric(&self) -> Option<&'static str> {
        match self {
            Self::RolloutStarted { .. } => Some("started"),
            Self::Promoted { .. } => Some("promoted"),
            Self::RolledBack { .. } => Some("rolled_back"),
            Self::Aborted { .. } => Some("aborted"),
            Self::ManualAbort { .. } => Some("aborted_manually"),
            Self::Updated { .. } => Some("updated_in_place"),
            _ => None,
        }
    }
}

/// The annotation of a command (pause and resume share one).
fn annotation_of(command: ManualCommand) -> &'static str {
    match command {
        ManualCommand::Promote => auralguard_crds::manual::PROMOTE,
        ManualCommand::Abort => auralguard_crds::manual::ABORT,
        ManualCommand::Retry => auralguard_crds::manual::RETRY,
        ManualCommand::Pause | ManualCommand::Resume => PAUSE,
    }
}

fn decided(d: Decision) -> Outcome {
    Outcome::Decided(Box::new(d))
}

/// The state machine's single step: apply new manual commands to the remembered status, then
/// advance from there.
pub fn decide(input: &Input<'_>) -> Outcome {
    let manual = manual::apply(input);
    let input = &Input {
        status: &manual.status,
        ..input.clone()
    };
    let serving = serving_of(input.status);
    let outcome = match input.status.rollout.as_ref() {
        None => decided(steady(input, serving)),
        Some(r) => in_rollout(input, r),
    };
    match outcome {
        Outcome::NeedMetrics => Outcome::NeedMetrics,
        Outcome::Decided(mut d) => {
            let mut transitions = manual.transitions;
            transitions.append(&mut d.transitions);
            d.transitions = transitions;
            d.paused = input.commands.pause;
            d.handled = manual.handled;
            d.last_command = manual.last_command;
            Outcome::Decided(d)
        }
    }
}

/// The serving model recorded in status.
fn serving_of(status: &AudioDetectorStatus) -> Option<ModelRef> {
    Some(ModelRef {
        uri: status.serving_model.clone()?,
        version: status.serving_version.clone()?,
    })
}

/// No rollout in progress: keep serving, deploy the first version, or start a rollout.
fn steady(input: &Input<'_>, serving: Option<ModelRef>) -> Decision {
    let last = input.status.last_rollout.clone();
    let fixed = fixed_replicas(input.scale);
    match (serving, input.desired) {
        (None, None) => Decision {
            last_rollout: last,
            waiting: Some("waiting for the model source to resolve".into()),
            ..Decision::default()
        },
        (None, Some(d)) => Decision {
            serving: Some(d.clone()),
            stable_model: Some(d.clone()),
            stable_replicas: fixed,
            last_rollout: last,
            transitions: vec![Transition::Deployed {
                version: d.version.clone(),
            }],
            ..Decision::default()
        },
        (Some(s), desired) => {
            let keep = Decision {
                serving: Some(s.clone()),
                stable_model: Some(s.clone()),
                stable_replicas: fixed,
                last_rollout: last.clone(),
                ..Decision::default()
            };
            let Some(d) = desired.filter(|d| d.uri != s.uri) else {
                // The source points at what serves: a rolled-back version is no longer
                // wanted, so it may be tried again should the source come back to it.
                return match (&last, desired) {
                    (Some(l), Some(_)) if l.blocks() => Decision {
                        last_rollout: Some(RolloutResult {
                            superseded: true,
                            ..l.clone()
                        }),
                        ..keep
                    },
                    _ => keep,
                };
            };
            let blocked = last
                .as_ref()
                .is_some_and(|l| l.blocks() && l.model == d.uri);
            if blocked {
                return keep;
            }
            if input.commands.pause {
                return Decision {
                    waiting: Some(format!(
                        "paused ({PAUSE}): model version {} is rolled out once the pause is lifted",
                        d.version
                    )),
                    holding: true,
                    ..keep
                };
            }
            if input.policy.steps.is_empty() || input.scale == Scale::Fixed(0) {
                return Decision {
                    serving: Some(d.clone()),
                    stable_model: Some(d.clone()),
                    transitions: vec![Transition::Updated {
                        from: s.version.clone(),
                        to: d.version.clone(),
                    }],
                    ..keep
                };
            }
            start(input, &s, d, last, Vec::new())
        }
    }
}

/// Begins a canary rollout from `stable` to `canary` at step 1.
fn start(
    input: &Input<'_>,
    stable: &ModelRef,
    canary: &ModelRef,
    last: Option<RolloutResult>,
    mut transitions: Vec<Transition>,
) -> Decision {
    let now = Time(input.now);
    let state = RolloutState {
        stable_model: stable.uri.clone(),
        stable_version: stable.version.clone(),
        canary_model: canary.uri.clone(),
        canary_version: canary.version.clone(),
        step: 0,
        phase: RolloutPhase::Scaling,
        started_at: now.clone(),
        phase_started_at: now,
        baseline: None,
        paused_at: None,
        promoted_manually: false,
        failed_scrapes: 0,
        last_scrape_error: None,
        inconclusive_windows: 0,
    };
    transitions.push(Transition::RolloutStarted {
        from: stable.version.clone(),
        to: canary.version.clone(),
    });
    if let Some(budget) = budget_of(input) {
        if budget.mode() == CapacityMode::ShrinkFirst {
            transitions.push(Transition::ShrinkFirst {
                desired: budget.desired,
            });
        }
    }
    transitions.push(step_started(input.policy, 0));
    let mut d = plan(input, &state, last);
    d.transitions = transitions;
    d.waiting = Some(format!(
        "waiting for canary pods of version {}",
        canary.version
    ));
    d.requeue_after = Some(input.check_interval);
    d
}

fn step_started(policy: &Policy, step: usize) -> Transition {
    Transition::StepStarted {
        step: step + 1,
        of: policy.steps.len(),
        weight: policy.steps.get(step).map_or(100, |s| s.weight),
    }
}

/// The Deployments a rollout state implies: the step's split (or promotion) reached as fast as
/// the capacity budget and the pods' readiness allow ([`capacity`]).
fn plan(input: &Input<'_>, state: &RolloutState, last: Option<RolloutResult>) -> Decision {
    let stable = ModelRef {
        uri: state.stable_model.clone(),
        version: state.stable_version.clone(),
    };
    let canary = ModelRef {
        uri: state.canary_model.clone(),
        version: state.canary_version.clone(),
    };
    let weight = weight_of(input.policy, state);
    let promoting = state.phase == RolloutPhase::Promoting;
    let pods = pods_now(input, state, weight);
    Decision {
        serving: Some(stable.clone()),
        stable_model: Some(if promoting { canary.clone() } else { stable }),
        stable_replicas: pods.stable,
        canary: Some(CanaryPlan {
            model: canary,
            replicas: pods.canary,
            weight,
        }),
        rollout: Some(state.clone()),
        last_rollout: last,
        capacity: Some(capacity_plan(input)),
        ..Decision::default()
    }
}

/// The weight of the state's step (the last step's past the end, 100 without steps).
fn weight_of(policy: &Policy, state: &RolloutState) -> i32 {
    let step = usize::try_from(state.step).unwrap_or(0);
    policy
        .steps
        .get(step)
        .or(policy.steps.last())
        .map_or(100, |s| s.weight)
}

/// The capacity budget of a fixed-size detector (`None` when an HPA sizes stable: the canary is
/// then added on top of the pods the HPA keeps).
fn budget_of(input: &Input<'_>) -> Option<capacity::Budget> {
    match input.scale {
        Scale::Fixed(desired) => Some(capacity::Budget {
            desired,
            max_surge: input.policy.max_surge,
        }),
        Scale::Autoscaled { .. } => None,
    }
}

/// What status reports of the capacity kept (an autoscaled detector's canary always comes on top
/// of the HPA's pods, so it counts as surge first).
fn capacity_plan(input: &Input<'_>) -> CapacityPlan {
    let max_surge = input.policy.max_surge.max(0);
    match budget_of(input) {
        Some(b) => CapacityPlan {
            mode: b.mode(),
            desired: b.desired,
            max_surge,
        },
        None => CapacityPlan {
            mode: CapacityMode::SurgeFirst,
            desired: match input.scale {
                Scale::Fixed(n) | Scale::Autoscaled { current: n } => n,
            },
            max_surge,
        },
    }
}

/// The pods each Deployment runs now.
fn pods_now(input: &Input<'_>, state: &RolloutState, weight: i32) -> Split {
    let Some(budget) = budget_of(input) else {
        return split_replicas(input.scale, weight, input.policy.max_surge);
    };
    let pods = if state.phase == RolloutPhase::Promoting {
        budget.promotion(&promotion_seen(input, state))
    } else {
        let canary_ready = input.canary.map_or(0, |c| c.ready.min(c.replicas));
        budget.toward(budget.target(weight), canary_ready)
    };
    Split {
        stable: Some(pods.stable),
        canary: pods.canary,
    }
}

/// The step's canary pod count once the step's split is reached.
fn target_canary(input: &Input<'_>, state: &RolloutState) -> i32 {
    split_replicas(
        input.scale,
        weight_of(input.policy, state),
        input.policy.max_surge,
    )
    .canary
}

/// What promotion looks at of the two Deployments.
fn promotion_seen(input: &Input<'_>, state: &RolloutState) -> capacity::Promotion {
    use capacity::StableState;
    let stable = match input.stable {
        Some(s) if s.model.as_deref() == Some(state.canary_model.as_str()) => {
            if !s.observed {
                StableState::Unobserved {
                    replicas: s.replicas,
                }
            } else if s.old_pods > 0 {
                StableState::Rolling
            } else {
                StableState::New { ready: s.ready }
            }
        }
        _ => StableState::Old,
    };
    capacity::Promotion {
        canary_replicas: input.canary.map_or(0, |c| c.replicas),
        canary_ready: input.canary.map_or(0, |c| c.ready),
        stable,
    }
}

/// `r` with its progress deadline started again when `growing` (the Deployment that takes the
/// new version, as observed) has every pod ready and is given more: the previous batch made
/// it, a new one is asked for, and each batch gets the whole `progressDeadline`. A batch that
/// never becomes ready asks for nothing more, so its deadline runs out.
fn restart_deadline_on_growth(
    input: &Input<'_>,
    r: &RolloutState,
    growing: Option<&PodSet>,
    planned: Option<i32>,
) -> RolloutState {
    let (replicas, ready) = growing.map_or((0, 0), |g| (g.replicas, g.ready));
    let grows = ready >= replicas && planned.is_some_and(|p| p > replicas);
    if grows {
        RolloutState {
            phase_started_at: Time(input.now),
            ..r.clone()
        }
    } else {
        r.clone()
    }
}

fn fixed_replicas(scale: Scale) -> Option<i32> {
    match scale {
        Scale::Fixed(n) => Some(n),
        Scale::Autoscaled { .. } => None,
    }
}

/// A rollout is in progress: hold, supersede, abort, or advance it.
fn in_rollout(input: &Input<'_>, r: &RolloutState) -> Outcome {
    let last = input.status.last_rollout.clone();
    if input.commands.pause {
        // Keep what the state plans (the canary at its weight, or stable on the new version
        // while promoting) and decide nothing: no scrape, no verdict, no deadline.
        let mut d = plan(input, r, last);
        d.waiting = Some(format!(
            "paused ({PAUSE}): the rollout of model version {} holds in {:?} at step {}/{}",
            r.canary_version,
            r.phase,
            r.step.saturating_add(1),
            input.policy.steps.len()
        ));
        d.holding = true;
        return decided(d);
    }
    let stable = ModelRef {
        uri: r.stable_model.clone(),
        version: r.stable_version.clone(),
    };
    if let Some(d) = input.desired {
        if d.uri == r.stable_model {
            let reason = "the model source points back to the serving version".to_string();
            return decided(Decision {
                serving: Some(stable.clone()),
                stable_model: Some(stable),
                stable_replicas: fixed_replicas(input.scale),
                last_rollout: Some(result(input, r, RolloutOutcome::Aborted, &reason)),
                transitions: vec![Transition::Aborted {
                    version: r.canary_version.clone(),
                    reason,
                }],
                ..Decision::default()
            });
        }
        if d.uri != r.canary_model {
            let reason = format!("superseded by model version {}", d.version);
            let aborted = Transition::Aborted {
                version: r.canary_version.clone(),
                reason: reason.clone(),
            };
            let last = Some(result(input, r, RolloutOutcome::Aborted, &reason));
            return decided(start(input, &stable, d, last, vec![aborted]));
        }
    }
    let steps = input.policy.steps.len();
    let step = usize::try_from(r.step).unwrap_or(0);
    match r.phase {
        RolloutPhase::Scaling if step >= steps => decided(promote(input, r, last, vec![])),
        RolloutPhase::Scaling => scaling(input, r, last),
        RolloutPhase::Analyzing => analyzing(input, r, last, step),
        RolloutPhase::Promoting => decided(promoting(input, r, last)),
    }
}

/// Waiting for the canary to be ready at the step's weight; then open the window.
fn scaling(input: &Input<'_>, r: &RolloutState, last: Option<RolloutResult>) -> Outcome {
    let d = plan(input, r, last.clone());
    let Some(canary_plan) = d.canary.clone() else {
        return decided(d);
    };
    let target = target_canary(input, r);
    let ready = input
        .canary
        .is_some_and(|c| c.serves(&r.canary_model, Some(target)));
    if ready {
        let metrics = match scraped(input) {
            Scraped::Missing => return Outcome::NeedMetrics,
            Scraped::Failed(error) => return decided(scrape_failed(input, r, last, error)),
            Scraped::Got(metrics) => metrics,
        };
        let mut next = scrape_ok(r);
        next.phase = RolloutPhase::Analyzing;
        next.phase_started_at = Time(input.now);
        next.baseline = Some(metrics.clone());
        let mut d = plan(input, &next, last);
        d.waiting = Some(format!(
            "observing the canary at {}% for {}",
            canary_plan.weight,
            human(pause_of(input.policy, r))
        ));
        d.requeue_after = Some(pause_of(input.policy, r));
        return decided(d);
    }
    let r = &restart_deadline_on_growth(input, r, input.canary, Some(canary_plan.replicas));
    if elapsed(input.now, &r.phase_started_at) > input.policy.progress_deadline {
        return decided(rollback(
            input,
            r,
            format!(
                "canary pods were not ready within {}",
                human(input.policy.progress_deadline)
            ),
        ));
    }
    decided(Decision {
        waiting: Some(format!(
            "waiting for {target} canary pod(s) of version {} to be ready",
            r.canary_version
        )),
        requeue_after: Some(input.check_interval),
        rollout: Some(r.clone()),
        ..d
    })
}

fn pause_of(policy: &Policy, r: &RolloutState) -> Duration {
    usize::try_from(r.step)
        .ok()
        .and_then(|i| policy.steps.get(i))
        .map_or(Duration::ZERO, |s| s.pause.into())
}

/// The window is open; at the end of the pause, judge it.
fn analyzing(
    input: &Input<'_>,
    r: &RolloutState,
    last: Option<RolloutResult>,
    step: usize,
) -> Outcome {
    let pause = pause_of(input.policy, r);
    let waited = elapsed(input.now, &r.phase_started_at);
    if waited < pause {
        let mut d = plan(input, r, last);
        d.waiting = Some(format!(
            "observing the canary at {}% ({} left)",
            d.canary.as_ref().map_or(100, |c| c.weight),
            human(pause - waited)
        ));
        d.requeue_after = Some(pause - waited);
        return decided(d);
    }
    match scraped(input) {
        Scraped::Missing => Outcome::NeedMetrics,
        Scraped::Failed(error) => decided(scrape_failed(input, r, last, error)),
        Scraped::Got(metrics) => {
            let closed = Closed {
                metrics,
                overtime: waited.saturating_sub(pause),
            };
            judge_window(input, &scrape_ok(r), last, step, &closed)
        }
    }
}

/// The closing scrape of a window and how long past the step's pause it came.
struct Closed<'a> {
    metrics: &'a MetricsSnapshot,
    overtime: Duration,
}

/// Judges a closed window: the canary pods' health, a shared outage (inconclusive), error rate
/// and latency, then the fake share.
fn judge_window(
    input: &Input<'_>,
    r: &RolloutState,
    last: Option<RolloutResult>,
    step: usize,
    closed: &Closed<'_>,
) -> Outcome {
    let baseline = r.baseline.clone().unwrap_or_default();
    let metrics = closed.metrics;
    // A restarted or unready canary pod hides its failures from the counters: judge it first.
    if let Some(reason) = analysis::unhealthy_canary_pods(&baseline, metrics) {
        return decided(analysis_failed(input, r, step, &reason));
    }
    let spec = &input.policy.analysis;
    let canary = analysis::window(&baseline, metrics);
    let stable = analysis::stable_window(&baseline, metrics);
    if let Some(outage) = analysis::shared_outage(&canary, &stable, spec) {
        return decided(inconclusive(input, r, last, step, metrics, outage));
    }
    let summary = match analysis::judge(&canary, spec) {
        Verdict::Pass(summary) => summary,
        Verdict::Fail(reason) => return decided(analysis_failed(input, r, step, &reason)),
        Verdict::Insufficient { seen, needed } => {
            let why = format!("{seen} of the {needed} requests needed to judge the canary");
            match spec.insufficient_traffic {
                InsufficientTraffic::Pass => format!("passed without enough traffic ({why})"),
                InsufficientTraffic::Fail => {
                    return decided(analysis_failed(input, r, step, &format!("only {why}")))
                }
                InsufficientTraffic::Wait => {
                    return wait_for_traffic(input, r, last, step, &why, closed.overtime)
                }
            }
        }
    };
    // Error rate and latency held: the model's verdicts must still look like stable's.
    let summary = match analysis::judge_fake_share(&canary, &stable, &spec.fake_share) {
        ShareVerdict::Fail(reason) => return decided(analysis_failed(input, r, step, &reason)),
        ShareVerdict::Pass(share) | ShareVerdict::NotCompared(share) => {
            format!("{summary}; {share}")
        }
    };
    step_passed(input, r, last, step, summary)
}

/// What the scrape [`decide`] asked for brought, as [`Input`] carries it.
enum Scraped<'a> {
    /// Not scraped yet: ask for it.
    Missing,
    /// The scrape failed, for this reason.
    Failed(&'a str),
    /// The counters.
    Got(&'a MetricsSnapshot),
}

/// Reads [`Input::metrics`] and [`Input::metrics_error`] as one answer (counters win, should a
/// caller pass both).
fn scraped<'a>(input: &Input<'a>) -> Scraped<'a> {
    match (input.metrics, input.metrics_error) {
        (Some(metrics), _) => Scraped::Got(metrics),
        (None, Some(error)) => Scraped::Failed(error),
        (None, None) => Scraped::Missing,
    }
}

/// `r` after a successful scrape: the run of failed scrapes is over.
fn scrape_ok(r: &RolloutState) -> RolloutState {
    RolloutState {
        failed_scrapes: 0,
        last_scrape_error: None,
        ..r.clone()
    }
}

/// Longest scrape error kept in status and Events, in bytes: an Event's note may not exceed
/// 1 KiB, and the API server refuses a longer one.
const MAX_ERROR_BYTES: usize = 400;

/// A failed scrape: stay in the phase and retry after the check interval, or roll back once
/// more than `analysis.failureLimit` failed in a row.
fn scrape_failed(
    input: &Input<'_>,
    r: &RolloutState,
    last: Option<RolloutResult>,
    error: &str,
) -> Decision {
    let error = shorten(error, MAX_ERROR_BYTES);
    let failures = r.failed_scrapes.saturating_add(1);
    let limit = input.policy.analysis.failure_limit.max(1);
    let step = usize::try_from(r.step).unwrap_or(0);
    if failures > limit {
        let reason = format!(
            "{failures} metric scrapes failed in a row (analysis.failureLimit {limit}); last \
             error: {error}"
        );
        return analysis_failed(input, r, step, &reason);
    }
    let next = RolloutState {
        failed_scrapes: failures,
        last_scrape_error: Some(error.clone()),
        ..r.clone()
    };
    let retry_in = input.check_interval;
    let mut d = plan(input, &next, last);
    d.waiting = Some(scrape_failure(failures, limit, retry_in, &error));
    d.transitions = vec![Transition::ScrapeFailed {
        step: step + 1,
        failures,
        limit,
        retry_in,
        error,
    }];
    d.requeue_after = Some(retry_in);
    d
}

/// The text of a tolerated scrape failure, for the Progressing condition and the Event.
fn scrape_failure(failures: i64, limit: i64, retry_in: Duration, error: &str) -> String {
    format!(
        "metrics scrape failed ({failures} of {limit} failures tolerated), retrying in {}: \
         {error}",
        human(retry_in)
    )
}

/// At most `max` bytes of `text` (cut at a character boundary), marked when cut.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let cut = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &text[..cut])
}

/// A window in which canary and stable failed alike: open a new one from its closing scrape,
/// or roll back when this one is more than `analysis.inconclusiveLimit` (counted like
/// `failureLimit`: the limit is what is tolerated).
fn inconclusive(
    input: &Input<'_>,
    r: &RolloutState,
    last: Option<RolloutResult>,
    step: usize,
    metrics: &MetricsSnapshot,
    outage: String,
) -> Decision {
    let windows = r.inconclusive_windows.saturating_add(1);
    let limit = input.policy.analysis.inconclusive_limit.max(1);
    if windows > limit {
        let reason = format!(
            "could not judge the canary: {outage} in {windows} observation windows \
             (analysis.inconclusiveLimit {limit})"
        );
        return analysis_failed(input, r, step, &reason);
    }
    let next = RolloutState {
        phase_started_at: Time(input.now),
        baseline: Some(metrics.clone()),
        inconclusive_windows: windows,
        ..r.clone()
    };
    let pause = pause_of(input.policy, r);
    let mut d = plan(input, &next, last);
    d.waiting = Some(format!(
        "{outage}: not blamed on the canary; observing again for {} (inconclusive window \
         {windows} of {limit})",
        human(pause)
    ));
    d.transitions = vec![Transition::WindowInconclusive {
        step: step + 1,
        windows,
        limit,
        reason: outage,
    }];
    d.requeue_after = Some(pause);
    d
}

/// A step passed its analysis: start the next one, or promote after the last.
fn step_passed(
    input: &Input<'_>,
    r: &RolloutState,
    last: Option<RolloutResult>,
    step: usize,
    summary: String,
) -> Outcome {
    let passed = Transition::StepPassed {
        step: step + 1,
        summary,
    };
    if step + 1 < input.policy.steps.len() {
        let mut next = entering(r, RolloutPhase::Scaling, input.now);
        next.step += 1;
        let mut d = plan(input, &next, last);
        d.transitions = vec![passed, step_started(input.policy, step + 1)];
        d.waiting = Some(format!("waiting for canary pods of step {}", step + 2));
        d.requeue_after = Some(input.check_interval);
        return decided(d);
    }
    decided(promote(input, r, last, vec![passed]))
}

/// Rolls back a step whose analysis failed (error rate, latency, traffic or fake share), with
/// the one message prefix users and alerts match on.
fn analysis_failed(input: &Input<'_>, r: &RolloutState, step: usize, reason: &str) -> Decision {
    rollback(
        input,
        r,
        format!("canary analysis failed at step {}: {reason}", step + 1),
    )
}

/// Too little traffic with `insufficientTraffic: Wait`: keep the window open, or roll back once
/// `overtime` (time past the pause) exceeds `analysis.trafficDeadline`.
fn wait_for_traffic(
    input: &Input<'_>,
    r: &RolloutState,
    last: Option<RolloutResult>,
    step: usize,
    why: &str,
    overtime: Duration,
) -> Outcome {
    let deadline: Duration = input.policy.analysis.traffic_deadline.into();
    if overtime > deadline {
        let reason = format!(
            "only {why} within {} of waiting (analysis.trafficDeadline)",
            human(deadline)
        );
        return decided(analysis_failed(input, r, step, &reason));
    }
    let mut d = plan(input, r, last);
    d.waiting = Some(format!(
        "waiting for traffic: {why} ({} left)",
        human(deadline.saturating_sub(overtime))
    ));
    d.requeue_after = Some(input.check_interval);
    decided(d)
}

/// `r` entering `phase` now: no window open, nothing counted yet.
fn entering(r: &RolloutState, phase: RolloutPhase, now: Timestamp) -> RolloutState {
    RolloutState {
        phase,
        phase_started_at: Time(now),
        baseline: None,
        failed_scrapes: 0,
        last_scrape_error: None,
        inconclusive_windows: 0,
        ..r.clone()
    }
}

/// Enters the Promoting phase.
fn promote(
    input: &Input<'_>,
    r: &RolloutState,
    last: Option<RolloutResult>,
    mut transitions: Vec<Transition>,
) -> Decision {
    let next = entering(r, RolloutPhase::Promoting, input.now);
    transitions.push(Transition::Promoting {
        version: r.canary_version.clone(),
    });
    let mut d = plan(input, &next, last);
    d.transitions = transitions;
    d.waiting = Some(format!(
        "moving stable pods to model version {}",
        r.canary_version
    ));
    d.requeue_after = Some(input.check_interval);
    d
}

/// The stable Deployment is moving to the new version; finish when it is all there.
fn promoting(input: &Input<'_>, r: &RolloutState, last: Option<RolloutResult>) -> Decision {
    let done = input
        .stable
        .is_some_and(|s| s.serves(&r.canary_model, fixed_replicas(input.scale)));
    if done {
        let new = ModelRef {
            uri: r.canary_model.clone(),
            version: r.canary_version.clone(),
        };
        return Decision {
            serving: Some(new.clone()),
            stable_model: Some(new),
            stable_replicas: fixed_replicas(input.scale),
            last_rollout: Some(result(
                input,
                r,
                RolloutOutcome::Promoted,
                &if r.promoted_manually {
                    format!(
                        "promoted by hand ({}) before every canary step had passed",
                        auralguard_crds::manual::PROMOTE
                    )
                } else {
                    "every canary step passed".to_string()
                },
            )),
            transitions: vec![Transition::Promoted {
                from: r.stable_version.clone(),
                to: r.canary_version.clone(),
            }],
            ..Decision::default()
        };
    }
    let d = plan(input, r, last.clone());
    let on_new = input
        .stable
        .filter(|s| s.model.as_deref() == Some(r.canary_model.as_str()));
    let r = &restart_deadline_on_growth(
        input,
        r,
        on_new,
        d.stable_replicas.filter(|_| on_new.is_some()),
    );
    if elapsed(input.now, &r.phase_started_at) > input.policy.progress_deadline {
        return rollback(
            input,
            r,
            format!(
                "stable pods did not become ready on the new version within {}",
                human(input.policy.progress_deadline)
            ),
        );
    }
    let mut d = Decision {
        rollout: Some(r.clone()),
        ..d
    };
    d.waiting = Some(format!(
        "moving stable pods to model version {}",
        r.canary_version
    ));
    d.requeue_after = Some(input.check_interval);
    d
}

/// Removes the canary, keeps (or restores) the stable version and records why.
fn rollback(input: &Input<'_>, r: &RolloutState, reason: String) -> Decision {
    let stable = ModelRef {
        uri: r.stable_model.clone(),
        version: r.stable_version.clone(),
    };
    Decision {
        serving: Some(stable.clone()),
        stable_model: Some(stable),
        stable_replicas: fixed_replicas(input.scale),
        last_rollout: Some(result(input, r, RolloutOutcome::RolledBack, &reason)),
        transitions: vec![Transition::RolledBack {
            version: r.canary_version.clone(),
            serving: r.stable_version.clone(),
            reason,
        }],
        ..Decision::default()
    }
}

fn result(
    input: &Input<'_>,
    r: &RolloutState,
    outcome: RolloutOutcome,
    message: &str,
) -> RolloutResult {
    RolloutResult {
        outcome,
        model: r.canary_model.clone(),
        version: r.canary_version.clone(),
        from_version: r.stable_version.clone(),
        message: message.to_string(),
        finished_at: Time(input.now),
        superseded: false,
        retried: false,
    }
}

/// Time from `since` to `now`, zero if the clock went backwards.
fn elapsed(now: Timestamp, since: &Time) -> Duration {
    let d = now.duration_since(since.0);
    if d.is_negative() {
        Duration::ZERO
    } else {
        d.unsigned_abs()
    }
}

/// `90s` → `1m30s`, for messages.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

pub mod capacity;
mod manual;

#[cfg(test)]
mod tests;
