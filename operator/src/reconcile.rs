//! One reconcile of one `AudioDetector`: observe, decide, write what differs, report.
//!
//! 1. **Resolve** the model source to a pinned version ([`crate::mlflow::resolve`]); a failure
//!    is reported in status, not fatal: whatever serves keeps serving.
//! 2. **Read** the owned objects (stable and canary Deployments, Service, HPA, PDB and, when
//!    enabled and its CRD is installed, the ServiceMonitor).
//! 3. **Decide** with the rollout state machine ([`crate::rollout::decide`]), scraping the canary
//!    pods only when it asks. A failed scrape does not fail the reconcile: the machine gets the
//!    error instead of the counters and records it (status, a Warning Event, a retry). The
//!    manual commands in the detector's annotations ([`auralguard_crds::manual`]) are part of
//!    its input; the tokens it handled go to status
//!    with everything else, so a command acts once.
//! 4. **Write** each desired object with server-side apply, but only when the observed object
//!    does not already contain it ([`crate::apply`]); delete the canary or HPA when no longer
//!    wanted. Every object carries an owner reference to the detector, so deleting the detector
//!    deletes them (no finalizer needed).
//! 5. **Report**: patch status (through the status subresource, only when it changed) and publish
//!    an Event per transition.
//!
//! With nothing changed, steps 4 and 5 write nothing. Rollout progress lives in status, so the
//! next reconcile (after the requeue, a watch event, or an operator restart) picks up from there.

use std::sync::Arc;
use std::time::Duration;

use auralguard_crds::manual::Commands;
use auralguard_crds::{condition, AudioDetector, AudioDetectorStatus, GROUP, VERSION};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tracing::{debug, info, warn};

use crate::apply::{apply, delete};
use crate::builders::{
    self, deployment::deployment, deployment_name, hpa::hpa, pdb::pdb, selector_labels,
    selector_string, service::service, service_monitor, Role, ANNOTATION_MODEL, FIELD_MANAGER,
};
use crate::context::Context;
use crate::model::ModelRef;
use crate::rollout::{self, Decision, Input, Outcome, PodSet, Policy, Scale, Transition};
use crate::status::{self, Observed};
use crate::{mlflow, Error, Result};

/// How soon to retry after a failed reconcile or a failed model resolution.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Reconciles one detector (the controller's entry point).
pub async fn reconcile(det: Arc<AudioDetector>, ctx: Arc<Context>) -> Result<Action> {
    let timer = ctx.metrics.reconcile_duration.start_timer();
    ctx.metrics.reconciles.inc();
    let result = reconcile_detector(&det, &ctx).await;
    timer.observe_duration();
    result
}

/// What the controller does after a failed reconcile: count it, log it, retry in a while.
pub fn error_policy(det: Arc<AudioDetector>, err: &Error, ctx: Arc<Context>) -> Action {
    warn!(detector = %det.name_any(), namespace = ?det.namespace(), error = %err, "reconcile failed");
    ctx.metrics
        .reconcile_errors
        .with_label_values(&[err.metric_label()])
        .inc();
    Action::requeue(RETRY_AFTER)
}

/// What reconcile read of the owned objects.
struct Snapshot {
    stable: Option<Deployment>,
    canary: Option<Deployment>,
    service: Option<Service>,
    hpa: Option<HorizontalPodAutoscaler>,
    pdb: Option<PodDisruptionBudget>,
    /// `None`: not wanted or its CRD is not installed; `Some(observed)` otherwise.
    service_monitor: Option<Option<DynamicObject>>,
}

async fn reconcile_detector(det: &AudioDetector, ctx: &Context) -> Result<Action> {
    if det.meta().deletion_timestamp.is_some() {
        // Owned objects go with their owner through garbage collection.
        debug!(detector = %det.name_any(), "being deleted; nothing to do");
        return Ok(Action::await_change());
    }
    let name = builders::name(det)?;
    let ns = builders::namespace(det)?;
    let now = ctx.clock.now();
    let previous = det.status.clone().unwrap_or_default();

    let resolution = mlflow::resolve(ctx.resolver.as_ref(), det)
        .await
        .map_err(|e| e.to_string());
    if let Err(e) = &resolution {
        warn!(detector = %name, namespace = %ns, error = %e, "model source not resolved");
    }

    let apis = Apis::new(ctx.client.clone(), &ns);
    let observed = read(det, &apis, &name).await?;
    let stable = observed.stable.as_ref().map(pod_set);
    let canary = observed.canary.as_ref().map(pod_set);

    let scale = match &det.spec.autoscaling {
        Some(a) => Scale::Autoscaled {
            current: observed
                .stable
                .as_ref()
                .and_then(|d| d.spec.as_ref()?.replicas)
                .unwrap_or(a.min_replicas),
        },
        None => Scale::Fixed(det.spec.replicas.unwrap_or(1)),
    };
    let policy = Policy::from_spec(det.spec.rollout.as_ref());
    let commands = Commands::from_annotations(det.annotations());
    let input = Input {
        now,
        status: &previous,
        desired: resolution.as_ref().ok(),
        policy: &policy,
        scale,
        stable: stable.as_ref(),
        canary: canary.as_ref(),
        metrics: None,
        metrics_error: None,
        check_interval: ctx.settings.check_interval,
        commands: &commands,
    };
    let decision = match rollout::decide(&input) {
        Outcome::Decided(d) => *d,
        Outcome::NeedMetrics => decide_with_metrics(ctx, &input, &ns, &name).await?,
    };

    write_objects(det, ctx, &apis, &name, &observed, &decision).await?;

    let new_status = status::build(&Observed {
        generation: det.meta().generation,
        previous: &previous,
        resolution: &resolution,
        source: &det.spec.model.source,
        decision: &decision,
        stable: stable.as_ref(),
        canary: canary.as_ref(),
        now,
        endpoint: builders::endpoint(det)?,
        selector: selector_string(&selector_labels(&name)),
    });
    if det.status.as_ref() != Some(&new_status) {
        // Optimistic concurrency: the status was computed from this version of the detector
        // (its previous status included). Should the detector have changed since (another
        // reconcile's status, a spec edit, a watch cache behind), the API server refuses with
        // a conflict; nothing of this decision is reported, and the reconcile reruns at once
        // on the fresh object instead of overwriting it with transitions derived from a stale
        // one.
        let mut body = json!({
            "apiVersion": format!("{GROUP}/{VERSION}"),
            "kind": "AudioDetector",
            "status": new_status,
        });
        if let Some(rv) = det.resource_version() {
            body["metadata"] = json!({ "resourceVersion": rv });
        }
        let written = apis
            .detectors
            .patch_status(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await;
        match written {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {
                info!(detector = %name, "the detector changed while it was reconciled; starting over");
                return Ok(Action::requeue(Duration::from_millis(200)));
            }
            Err(e) => return Err(e.into()),
        }
        ctx.metrics
            .writes
            .with_label_values(&["AudioDetector", "status"])
            .inc();
    }

    report(det, ctx, &previous, &new_status, &decision.transitions).await;

    Ok(next_action(ctx, &resolution, &decision))
}

/// Scrapes the canary and stable pods and decides again. A failed scrape is handed to the state
/// machine as an inconclusive observation ([`Input::metrics_error`]) rather than failing the
/// reconcile: status and a Warning Event then say why the rollout does not move, and the machine
/// decides when enough failures mean a rollback.
async fn decide_with_metrics(
    ctx: &Context,
    input: &Input<'_>,
    ns: &str,
    name: &str,
) -> Result<Decision> {
    let scraped = ctx
        .canary_metrics
        .scrape(ns, name, &input.policy.analysis.routes)
        .await;
    let error = scraped.as_ref().err().map(ToString::to_string);
    if let Some(e) = &error {
        warn!(detector = %name, namespace = %ns, error = %e, "canary analysis scrape failed");
    }
    match rollout::decide(&Input {
        metrics: scraped.as_ref().ok(),
        metrics_error: error.as_deref(),
        ..input.clone()
    }) {
        Outcome::Decided(d) => Ok(*d),
        Outcome::NeedMetrics => Err(Error::Metrics("the rollout asked for metrics twice".into())),
    }
}

/// The typed APIs of one namespace.
struct Apis {
    client: kube::Client,
    ns: String,
    detectors: Api<AudioDetector>,
    deployments: Api<Deployment>,
    services: Api<Service>,
    hpas: Api<HorizontalPodAutoscaler>,
    pdbs: Api<PodDisruptionBudget>,
}

impl Apis {
    fn new(client: kube::Client, ns: &str) -> Self {
        Self {
            detectors: Api::namespaced(client.clone(), ns),
            deployments: Api::namespaced(client.clone(), ns),
            services: Api::namespaced(client.clone(), ns),
            hpas: Api::namespaced(client.clone(), ns),
            pdbs: Api::namespaced(client.clone(), ns),
            ns: ns.to_string(),
            client,
        }
    }

    fn service_monitors(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.ns,
            &service_monitor::api_resource(),
        )
    }
}

/// Reads every owned object (all reads happen before any write).
async fn read(det: &AudioDetector, apis: &Apis, name: &str) -> Result<Snapshot> {
    let stable = apis
        .deployments
        .get_opt(&deployment_name(name, Role::Stable))
        .await?;
    let canary = apis
        .deployments
        .get_opt(&deployment_name(name, Role::Canary))
        .await?;
    let service = apis.services.get_opt(name).await?;
    let hpa = apis.hpas.get_opt(name).await?;
    let pdb = apis.pdbs.get_opt(name).await?;
    let wants_monitor = det.spec.service_monitor.as_ref().is_some_and(|s| s.enabled);
    let service_monitor = if wants_monitor && service_monitor_installed(&apis.client).await? {
        Some(apis.service_monitors().get_opt(name).await?)
    } else {
        None
    };
    Ok(Snapshot {
        stable,
        canary,
        service,
        hpa,
        pdb,
        service_monitor,
    })
}

/// Whether the API server serves `monitoring.coreos.com/v1` ServiceMonitors.
async fn service_monitor_installed(client: &kube::Client) -> Result<bool> {
    let api_version = format!("{}/{}", service_monitor::GROUP, service_monitor::VERSION);
    match client.list_api_group_resources(&api_version).await {
        Ok(list) => Ok(list.resources.iter().any(|r| r.name == "servicemonitors")),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Applies what differs and deletes what is no longer wanted.
async fn write_objects(
    det: &AudioDetector,
    ctx: &Context,
    apis: &Apis,
    name: &str,
    observed: &Snapshot,
    decision: &Decision,
) -> Result<()> {
    let Some(stable_model) = &decision.stable_model else {
        // Nothing resolved and nothing serving: nothing to deploy yet.
        return Ok(());
    };
    let m = ctx.metrics.as_ref();
    let cfg = &ctx.settings.build;

    apply(
        &apis.services,
        "Service",
        name,
        observed.service.as_ref(),
        &service(det)?,
        m,
    )
    .await?;

    let stable = deployment(
        det,
        cfg,
        Role::Stable,
        stable_model,
        decision.stable_replicas,
    )?;
    let stable_name = deployment_name(name, Role::Stable);
    if apply(
        &apis.deployments,
        "Deployment",
        &stable_name,
        observed.stable.as_ref(),
        &stable,
        m,
    )
    .await?
    {
        info!(detector = %name, version = %stable_model.version, "applied the stable Deployment");
    }

    let canary_name = deployment_name(name, Role::Canary);
    match (&decision.canary, &observed.canary) {
        (Some(plan), seen) => {
            let canary = deployment(det, cfg, Role::Canary, &plan.model, Some(plan.replicas))?;
            if apply(
                &apis.deployments,
                "Deployment",
                &canary_name,
                seen.as_ref(),
                &canary,
                m,
            )
            .await?
            {
                info!(detector = %name, version = %plan.model.version, replicas = plan.replicas, "applied the canary Deployment");
            }
        }
        (None, Some(_)) => {
            delete(&apis.deployments, "Deployment", &canary_name, m).await?;
            info!(detector = %name, "deleted the canary Deployment");
        }
        (None, None) => {}
    }

    match (hpa(det)?, &observed.hpa) {
        (Some(desired), seen) => {
            apply(
                &apis.hpas,
                "HorizontalPodAutoscaler",
                name,
                seen.as_ref(),
                &desired,
                m,
            )
            .await?;
        }
        (None, Some(_)) => delete(&apis.hpas, "HorizontalPodAutoscaler", name, m).await?,
        (None, None) => {}
    }

    apply(
        &apis.pdbs,
        "PodDisruptionBudget",
        name,
        observed.pdb.as_ref(),
        &pdb(det)?,
        m,
    )
    .await?;

    if let (Some(seen), Some(desired)) = (
        &observed.service_monitor,
        service_monitor::service_monitor(det)?,
    ) {
        apply(
            &apis.service_monitors(),
            "ServiceMonitor",
            name,
            seen.as_ref(),
            &desired,
            m,
        )
        .await?;
    }
    Ok(())
}

/// Summarises a Deployment for the state machine.
fn pod_set(d: &Deployment) -> PodSet {
    let spec = d.spec.as_ref();
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1);
    let model = spec
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(ANNOTATION_MODEL))
        .cloned();
    let st = d.status.clone().unwrap_or_default();
    let current = st.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0);
    PodSet {
        model,
        replicas,
        ready: st.ready_replicas.unwrap_or(0),
        rolled_out: current
            && st.updated_replicas.unwrap_or(0) == replicas
            && st.available_replicas.unwrap_or(0) >= replicas
            && st.replicas.unwrap_or(0) == replicas,
        observed: current,
        old_pods: (st.replicas.unwrap_or(0) - st.updated_replicas.unwrap_or(0)).max(0),
    }
}

/// Publishes one Event per rollout transition and per change of the ModelResolved condition,
/// and counts rollouts. A failed publish is logged, not fatal: the state is already in status.
async fn report(
    det: &AudioDetector,
    ctx: &Context,
    before: &AudioDetectorStatus,
    after: &AudioDetectorStatus,
    transitions: &[Transition],
) {
    let mut events: Vec<Event> = transitions
        .iter()
        .map(|t| Event {
            type_: if t.is_warning() {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: t.reason().into(),
            note: Some(t.note()),
            action: t.action().into(),
            secondary: None,
        })
        .collect();
    let resolved = |s: &AudioDetectorStatus| {
        status::find(s, condition::MODEL_RESOLVED).map(|c| (c.status.clone(), c.message.clone()))
    };
    match (resolved(before), resolved(after)) {
        (old, Some((new, message))) if old.as_ref().map(|o| &o.0) != Some(&new) => {
            let failed = new != "True";
            // The first successful resolution is implied by ModelDeployed; say only changes.
            if failed || old.is_some() {
                events.insert(
                    0,
                    Event {
                        type_: if failed {
                            EventType::Warning
                        } else {
                            EventType::Normal
                        },
                        reason: if failed {
                            "ModelResolutionFailed"
                        } else {
                            "ModelResolved"
                        }
                        .into(),
                        note: Some(message),
                        action: "ResolveModel".into(),
                        secondary: None,
                    },
                );
            }
        }
        _ => {}
    }
    let reference = det.object_ref(&());
    let recorder = ctx.recorder();
    for e in &events {
        if let Err(err) = recorder.publish(e, &reference).await {
            warn!(detector = %det.name_any(), reason = %e.reason, error = %err, "cannot publish event");
        } else {
            info!(detector = %det.name_any(), reason = %e.reason, note = ?e.note, "event");
        }
    }
    for t in transitions {
        if let Some(outcome) = t.rollout_metric() {
            ctx.metrics.rollouts.with_label_values(&[outcome]).inc();
        }
        if let Some(result) = t.analysis_metric() {
            ctx.metrics.analysis.with_label_values(&[result]).inc();
        }
    }
}

/// When to look again.
fn next_action(ctx: &Context, resolution: &Result<ModelRef, String>, d: &Decision) -> Action {
    let poll = ctx.settings.poll_interval;
    let after = match (d.requeue_after, resolution) {
        (Some(r), _) => r.min(poll),
        (None, Err(_)) => RETRY_AFTER.min(poll),
        (None, Ok(_)) => poll,
    };
    Action::requeue(after.max(Duration::from_secs(1)))
}
