//! The status reconcile writes: conditions, phase, versions, counts, and the rollout memory.
//!
//! [`build`] is pure: from the previous status, the rollout decision and what reconcile observed,
//! it computes the next status. A condition keeps its `lastTransitionTime` while its status stays
//! the same, so an unchanged world yields an identical status and reconcile can skip the write.
//!
//! A pause (`auralguard.io/pause`) shows in three places: `paused: true`, the phase `Paused`
//! (unless nothing serves yet), and, while it holds something back, `Progressing=Unknown` with
//! reason `Paused`, as a paused Deployment reports itself.
//!
//! During a canary rollout `capacity` shows the mode (`SurgeFirst` or `ShrinkFirst`), the budget
//! and the ready pods of each side, and the `Ready` condition counts the ready pods of both
//! Deployments against the desired total: stable alone may be planned smaller beside the canary.

use auralguard_crds::{condition, AudioDetectorStatus, Phase, RolloutCapacity, RolloutOutcome};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use crate::model::ModelRef;
use crate::rollout::{Decision, PodSet};

/// Everything [`build`] looks at.
pub struct Observed<'a> {
    /// `metadata.generation` of the detector.
    pub generation: Option<i64>,
    /// Status as it was.
    pub previous: &'a AudioDetectorStatus,
    /// The resolved model, or why resolving failed.
    pub resolution: &'a Result<ModelRef, String>,
    /// `spec.model.source`.
    pub source: &'a str,
    /// The rollout decision of this reconcile.
    pub decision: &'a Decision,
    /// The stable Deployment as observed.
    pub stable: Option<&'a PodSet>,
    /// The canary Deployment as observed.
    pub canary: Option<&'a PodSet>,
    /// Now.
    pub now: Timestamp,
    /// The Service URL.
    pub endpoint: String,
    /// The pods' label selector.
    pub selector: String,
}

/// The next status.
pub fn build(o: &Observed<'_>) -> AudioDetectorStatus {
    let d = o.decision;
    let stable_ready = o.stable.map_or(0, |s| s.ready);
    let expected = d
        .stable_replicas
        .or_else(|| o.stable.map(|s| s.replicas))
        .unwrap_or(1);

    let resolved = match o.resolution {
        Ok(m) => cond(
            condition::MODEL_RESOLVED,
            true,
            "Resolved",
            format!("{} resolves to {}", o.source, m.uri),
        ),
        Err(e) => cond(
            condition::MODEL_RESOLVED,
            false,
            "ResolutionFailed",
            e.clone(),
        ),
    };

    // During a rollout both Deployments serve: the pods ready on either side count against the
    // desired total (stable alone may be planned smaller, even empty, beside the canary).
    let rollout_capacity = d.capacity.filter(|_| d.rollout.is_some());
    let canary_ready = o.canary.map_or(0, |c| c.ready);
    let ready = match (&d.stable_model, o.stable, rollout_capacity) {
        (Some(_), _, Some(c)) if c.desired > 0 => {
            let all = stable_ready + canary_ready;
            let ok = all >= c.desired;
            cond(
                condition::READY,
                ok,
                if ok { "PodsReady" } else { "PodsNotReady" },
                format!(
                    "{all} of {} pods ready during the rollout ({stable_ready} stable, \
                     {canary_ready} canary)",
                    c.desired
                ),
            )
        }
        (None, _, _) => cond(
            condition::READY,
            false,
            "NoModel",
            "no model version to serve yet".into(),
        ),
        _ if expected == 0 => cond(
            condition::READY,
            false,
            "ScaledToZero",
            "replicas is 0".into(),
        ),
        (Some(_), None, _) => cond(
            condition::READY,
            false,
            "Creating",
            "creating the Deployment".into(),
        ),
        (Some(_), Some(_), _) if stable_ready >= expected => cond(
            condition::READY,
            true,
            "PodsReady",
            format!("{stable_ready} of {expected} stable pods ready"),
        ),
        (Some(_), Some(_), _) => cond(
            condition::READY,
            false,
            "PodsNotReady",
            format!("{stable_ready} of {expected} stable pods ready"),
        ),
    };

    let rolling_update = d.stable_model.as_ref().is_some_and(|m| {
        o.stable
            .is_none_or(|s| s.model.as_deref() != Some(m.uri.as_str()) || !s.rolled_out)
    });
    let progressing = match (&d.rollout, &d.stable_model) {
        _ if d.holding => Condition {
            status: "Unknown".into(),
            ..cond(
                condition::PROGRESSING,
                false,
                "Paused",
                d.waiting
                    .clone()
                    .unwrap_or_else(|| "paused by auralguard.io/pause".into()),
            )
        },
        (Some(r), _) => cond(
            condition::PROGRESSING,
            true,
            "CanaryRollout",
            d.waiting
                .clone()
                .unwrap_or_else(|| format!("rolling out model version {}", r.canary_version)),
        ),
        (None, Some(m)) if rolling_update => cond(
            condition::PROGRESSING,
            true,
            "RollingUpdate",
            format!("updating pods to model version {}", m.version),
        ),
        (None, Some(m)) => cond(
            condition::PROGRESSING,
            false,
            "Complete",
            format!("every pod serves model version {}", m.version),
        ),
        (None, None) => cond(
            condition::PROGRESSING,
            false,
            "NoModel",
            d.waiting
                .clone()
                .unwrap_or_else(|| "nothing to roll out".into()),
        ),
    };

    let failed_rollout = d.last_rollout.as_ref().filter(|l| {
        l.blocks()
            && d.rollout.is_none()
            && match o.resolution {
                Ok(m) => m.uri == l.model,
                Err(_) => true,
            }
    });
    let degraded = match failed_rollout {
        Some(l) => cond(
            condition::DEGRADED,
            true,
            if l.outcome == RolloutOutcome::ManuallyAborted {
                "ManuallyAborted"
            } else {
                "RolledBack"
            },
            l.message.clone(),
        ),
        None => cond(
            condition::DEGRADED,
            false,
            "AsExpected",
            "serving the desired model version".into(),
        ),
    };

    let phase = if d.stable_model.is_none() {
        if o.resolution.is_err() {
            Phase::Failed
        } else {
            Phase::Pending
        }
    } else if stable_ready + rollout_capacity.map_or(0, |_| canary_ready) == 0 && expected > 0 {
        Phase::Pending
    } else if d.paused {
        Phase::Paused
    } else if d.rollout.is_some() {
        Phase::Progressing
    } else if failed_rollout.is_some() {
        Phase::Degraded
    } else if rolling_update {
        Phase::Progressing
    } else if ready.status != "True" && expected > 0 {
        Phase::Degraded
    } else {
        Phase::Running
    };

    let mut conditions = Vec::new();
    for mut c in [ready, resolved, progressing, degraded] {
        c.observed_generation = o.generation;
        c.last_transition_time = o
            .previous
            .conditions
            .iter()
            .find(|p| p.type_ == c.type_ && p.status == c.status)
            .map_or_else(|| Time(o.now), |p| p.last_transition_time.clone());
        conditions.push(c);
    }

    let canary = d.canary.as_ref().filter(|_| d.rollout.is_some());
    // Counts describe what this reconcile leaves behind: the planned replicas (the HPA's for an
    // autoscaled stable Deployment), and ready pods of the Deployments that remain.
    let planned = d.stable_model.as_ref().map_or(0, |_| {
        d.stable_replicas
            .or_else(|| o.stable.map(|s| s.replicas))
            .unwrap_or(0)
    }) + d.canary.as_ref().map_or(0, |c| c.replicas);
    let ready_pods = stable_ready + d.canary.as_ref().and(o.canary).map_or(0, |c| c.ready);
    AudioDetectorStatus {
        observed_generation: o.generation,
        conditions,
        phase: Some(phase),
        serving_model: d.serving.as_ref().map(|m| m.uri.clone()),
        serving_version: d.serving.as_ref().map(|m| m.version.clone()),
        desired_version: match o.resolution {
            Ok(m) => Some(m.version.clone()),
            Err(_) => o.previous.desired_version.clone(),
        },
        canary_version: canary.map(|c| c.model.version.clone()),
        canary_weight: canary.map(|c| c.weight),
        replicas: Some(planned),
        ready_replicas: Some(ready_pods),
        selector: Some(o.selector.clone()),
        endpoint: Some(o.endpoint.clone()),
        rollout: d.rollout.clone(),
        last_rollout: d.last_rollout.clone(),
        capacity: rollout_capacity.map(|c| RolloutCapacity {
            mode: c.mode,
            desired_replicas: c.desired,
            max_surge: c.max_surge,
            ready_stable: stable_ready,
            ready_canary: canary_ready,
        }),
        paused: d.paused,
        handled_commands: d.handled.clone(),
        last_command: d.last_command.clone(),
    }
}

fn cond(type_: &str, status: bool, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { "True" } else { "False" }.into(),
        reason: reason.into(),
        message,
        observed_generation: None,
        last_transition_time: Time(Timestamp::UNIX_EPOCH),
    }
}

/// The condition of `type_` in a status, if present.
pub fn find<'a>(status: &'a AudioDetectorStatus, type_: &str) -> Option<&'a Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}
