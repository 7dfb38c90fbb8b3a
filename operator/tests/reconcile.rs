//! Reconcile scenarios against a scripted API server (kube's mocked client): every request the
//! operator makes is asserted — method, path, field manager, body — and answered from a small
//! simulated cluster, so each test shows exactly what the operator writes and when.
//!
//! The simulated cluster stores applied objects the way the API server does (adding defaults,
//! bumping `metadata.generation`), and the tests play the Deployment controller by marking pods
//! ready. MLflow, the canary pods' metrics and the clock are deterministic fakes.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use auralguard_crds::{
    AudioDetector, AudioDetectorStatus, CapacityMode, Phase, RolloutCapacity, RolloutOutcome,
    RolloutPhase,
};
use auralguard_operator::context::Context;
use auralguard_operator::reconcile::reconcile;
use http::{Method, StatusCode};
use kube::runtime::controller::Action;
use serde_json::{json, Value};
use support::{detector, ApiServer, Fakes};
use tokio::task::JoinHandle;

const STABLE: &str = "/apis/apps/v1/namespaces/voice/deployments/demo";
const CANARY: &str = "/apis/apps/v1/namespaces/voice/deployments/demo-canary";
const SERVICE: &str = "/api/v1/namespaces/voice/services/demo";
const HPA: &str = "/apis/autoscaling/v2/namespaces/voice/horizontalpodautoscalers/demo";
const PDB: &str = "/apis/policy/v1/namespaces/voice/poddisruptionbudgets/demo";
const STATUS: &str = "/apis/auralguard.io/v1alpha1/namespaces/voice/audiodetectors/demo/status";
const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/voice/events";
const MONITORING: &str = "/apis/monitoring.coreos.com/v1";
const MONITOR: &str = "/apis/monitoring.coreos.com/v1/namespaces/voice/servicemonitors/demo";

const DETECTOR: &str = r#"
apiVersion: auralguard.io/v1alpha1
kind: AudioDetector
metadata:
  name: demo
  namespace: voice
  uid: 5f0c1a2b-0000-4000-8000-00000000d3e7
  generation: 1
  resourceVersion: "700"
spec:
  model: {source: "models:/deepfake@champion"}
  mlflow: {trackingUri: "http://mlflow.mlflow.svc:5000"}
  replicas: 4
  rollout:
    steps:
    - {weight: 25, pause: 60s}
    - {weight: 50, pause: 60s}
    analysis: {maxErrorRate: 0.05, maxP99Latency: 1s, minRequests: 20}
"#;

/// The cluster as the API server would hold it.
struct Cluster {
    det: AudioDetector,
    objects: BTreeMap<String, Value>,
}

impl Cluster {
    fn new(yaml: &str) -> Self {
        Self {
            det: detector(yaml),
            objects: BTreeMap::new(),
        }
    }

    /// Starts a reconcile of the detector as it is now.
    fn reconcile(&self, ctx: &Arc<Context>) -> JoinHandle<auralguard_operator::Result<Action>> {
        tokio::spawn(reconcile(Arc::new(self.det.clone()), ctx.clone()))
    }

    /// Answers the reads every reconcile starts with.
    async fn serve_reads(&self, api: &mut ApiServer) {
        for path in [STABLE, CANARY, SERVICE, HPA, PDB] {
            api.expect(Method::GET, path)
                .await
                .answer(self.objects.get(path));
        }
    }

    /// Expects a server-side apply of `path`, stores the object as the API server would and
    /// returns what was applied.
    async fn expect_apply(&mut self, api: &mut ApiServer, path: &str) -> Value {
        let e = api.expect_apply(path).await;
        let applied = e.body.clone();
        assert_eq!(
            applied["metadata"]["ownerReferences"][0]["uid"],
            "5f0c1a2b-0000-4000-8000-00000000d3e7",
            "{path} must be owned by the detector"
        );
        let stored = self.store(path, &applied);
        e.ok(&stored);
        applied
    }

    /// Merges an applied object into the stored one, adding what the API server adds.
    fn store(&mut self, path: &str, applied: &Value) -> Value {
        let mut obj = applied.clone();
        let old = self.objects.get(path);
        // Every apply the operator makes changes something, so the generation moves on.
        let old_gen = old
            .and_then(|o| o["metadata"]["generation"].as_i64())
            .unwrap_or(0);
        obj["metadata"]["generation"] = json!(old_gen + 1);
        obj["metadata"]["resourceVersion"] = json!("1");
        obj["metadata"]["uid"] = json!(format!("uid-{path}"));
        obj["metadata"]["creationTimestamp"] = json!("2030-01-01T00:00:00Z");
        if path.contains("/deployments/") {
            // Server-side defaulting the operator never sets (and must not trip over).
            obj["spec"]["progressDeadlineSeconds"] = json!(600);
            obj["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
            obj["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] =
                json!("/dev/termination-log");
            obj["status"] = old.map(|o| o["status"].clone()).unwrap_or(json!({}));
        }
        if path.contains("/services/") {
            obj["spec"]["clusterIP"] = json!("10.0.0.17");
            obj["spec"]["sessionAffinity"] = json!("None");
        }
        self.objects.insert(path.to_string(), obj.clone());
        obj
    }

    /// Plays the Deployment controller: every pod of the Deployment's current template is up.
    fn pods_ready(&mut self, path: &str) {
        let obj = self.objects.get_mut(path).expect("deployment exists");
        let n = obj["spec"]["replicas"].as_i64().unwrap_or(1);
        obj["status"] = json!({
            "observedGeneration": obj["metadata"]["generation"],
            "replicas": n, "readyReplicas": n, "updatedReplicas": n, "availableReplicas": n,
        });
    }

    /// Expects the status patch; stores the new status and returns it.
    async fn expect_status(&mut self, api: &mut ApiServer) -> AudioDetectorStatus {
        let e = api.expect_apply(STATUS).await;
        assert_eq!(e.body["apiVersion"], "auralguard.io/v1alpha1");
        assert_eq!(e.body["kind"], "AudioDetector");
        assert_eq!(
            e.body["metadata"]["resourceVersion"].as_str(),
            self.det.metadata.resource_version.as_deref(),
            "status is written against the version it was computed from"
        );
        let status: AudioDetectorStatus = serde_json::from_value(e.body["status"].clone()).unwrap();
        self.det.status = Some(status.clone());
        e.ok(&serde_json::to_value(&self.det).unwrap());
        status
    }

    /// Expects the deletion of `path`.
    async fn expect_delete(&mut self, api: &mut ApiServer, path: &str) {
        let e = api.expect(Method::DELETE, path).await;
        assert!(self.objects.remove(path).is_some(), "{path} did not exist");
        e.ok(&json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 200}));
    }
}

/// Expects one Event per reason, in order, and returns their notes.
async fn expect_events(api: &mut ApiServer, reasons: &[(&str, &str)]) -> Vec<String> {
    let mut notes = Vec::new();
    for (reason, type_) in reasons {
        let e = api.expect(Method::POST, EVENTS).await;
        assert_eq!(e.body["reason"], *reason);
        assert_eq!(e.body["type"], *type_);
        assert_eq!(e.body["regarding"]["kind"], "AudioDetector");
        assert_eq!(e.body["regarding"]["name"], "demo");
        assert_eq!(e.body["reportingController"], "auralguard-operator");
        notes.push(e.body["note"].as_str().unwrap_or_default().to_string());
        let body = e.body.clone();
        e.respond(StatusCode::CREATED, &body);
    }
    notes
}

async fn finish(
    task: JoinHandle<auralguard_operator::Result<Action>>,
    api: &mut ApiServer,
) -> Action {
    let action = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("reconcile finished")
        .expect("reconcile did not panic")
        .expect("reconcile succeeded");
    api.expect_silence().await;
    action
}

fn condition(status: &AudioDetectorStatus, type_: &str) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (c.status.clone(), c.reason.clone())
}

fn env(deployment: &Value, name: &str) -> Value {
    deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

/// The alias moves to version 2: one reconcile applies the canary (one pod) and leaves stable
/// at its four pods (surge first), writes status and reports the rollout's start.
async fn start_rollout_to_v2(
    cluster: &mut Cluster,
    fakes: &Fakes,
    ctx: &Arc<Context>,
    api: &mut ApiServer,
) {
    fakes.resolver.set("champion", Some("2"));
    let task = cluster.reconcile(ctx);
    cluster.serve_reads(api).await;
    assert_eq!(
        cluster.expect_apply(api, CANARY).await["spec"]["replicas"],
        1
    );
    cluster.expect_status(api).await;
    expect_events(
        api,
        &[
            ("RolloutStarted", "Normal"),
            ("CanaryStepStarted", "Normal"),
        ],
    )
    .await;
    finish(task, api).await;
}

/// A reconcile that ends the canary (rollback or abort) answers its reads, gives the stable
/// Deployment its four pods back on version 1 (`stable_back`: it had given one to the canary;
/// otherwise it still has them and is not written), deletes the canary and writes status, which
/// it returns.
async fn expect_canary_removed(
    cluster: &mut Cluster,
    api: &mut ApiServer,
    stable_back: bool,
) -> AudioDetectorStatus {
    cluster.serve_reads(api).await;
    if stable_back {
        let stable = cluster.expect_apply(api, STABLE).await;
        assert_eq!(stable["spec"]["replicas"], 4, "stable gets its pods back");
        assert_eq!(
            env(&stable, "AURALGUARD_MODEL")["value"],
            "models:/deepfake/1"
        );
    }
    assert_eq!(cluster.objects[STABLE]["spec"]["replicas"], 4);
    cluster.expect_delete(api, CANARY).await;
    cluster.expect_status(api).await
}

/// The first step's window passes: one reconcile gives the canary its second pod (step 2,
/// 50 %) while stable keeps its three (surge first: it shrinks once that pod is ready), writes
/// status and reports the step passed and the next one started. Returns the status written and
/// the two Events' notes.
async fn expect_second_step(
    cluster: &mut Cluster,
    ctx: &Arc<Context>,
    api: &mut ApiServer,
) -> (AudioDetectorStatus, Vec<String>) {
    let task = cluster.reconcile(ctx);
    cluster.serve_reads(api).await;
    assert_eq!(
        cluster.expect_apply(api, CANARY).await["spec"]["replicas"],
        2
    );
    assert_eq!(cluster.objects[STABLE]["spec"]["replicas"], 3);
    let status = cluster.expect_status(api).await;
    let notes = expect_events(
        api,
        &[
            ("CanaryStepPassed", "Normal"),
            ("CanaryStepStarted", "Normal"),
        ],
    )
    .await;
    finish(task, api).await;
    (status, notes)
}

/// Every pod turns ready: one reconcile opens the first step's observation window (the
/// baseline scrape of whatever the fake metrics serve now), and stable, now that the canary pod
/// is ready, gives it one of its pods.
async fn open_first_window(cluster: &mut Cluster, ctx: &Arc<Context>, api: &mut ApiServer) {
    cluster.pods_ready(STABLE);
    cluster.pods_ready(CANARY);
    let task = cluster.reconcile(ctx);
    cluster.serve_reads(api).await;
    assert_eq!(
        cluster.expect_apply(api, STABLE).await["spec"]["replicas"],
        3
    );
    cluster.expect_status(api).await;
    finish(task, api).await;
}

/// Promotion goes on: stable's pods are all ready on the new version, so one reconcile gives it
/// `stable` pods (and the canary `canary`, when it shrinks), within the 5-pod budget.
async fn stable_grows(
    cluster: &mut Cluster,
    ctx: &Arc<Context>,
    api: &mut ApiServer,
    stable: i64,
    canary: Option<i64>,
) -> AudioDetectorStatus {
    cluster.pods_ready(STABLE);
    let task = cluster.reconcile(ctx);
    cluster.serve_reads(api).await;
    let applied = cluster.expect_apply(api, STABLE).await;
    assert_eq!(applied["spec"]["replicas"], stable);
    assert_eq!(
        env(&applied, "AURALGUARD_MODEL")["value"],
        "models:/deepfake/2"
    );
    if let Some(c) = canary {
        assert_eq!(
            cluster.expect_apply(api, CANARY).await["spec"]["replicas"],
            c
        );
    }
    let status = cluster.expect_status(api).await;
    assert_eq!(
        status.rollout.clone().unwrap().phase,
        RolloutPhase::Promoting
    );
    finish(task, api).await;
    status
}

/// Creates the detector's objects for version 1 and brings it to Running; returns the context.
async fn create_and_settle(cluster: &mut Cluster, fakes: &Fakes) -> (Arc<Context>, ApiServer) {
    let (ctx, mut api) = fakes.context();
    fakes.resolver.set("champion", Some("1"));

    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let service = cluster.expect_apply(&mut api, SERVICE).await;
    assert_eq!(
        service["spec"]["selector"],
        json!({"app.kubernetes.io/instance": "demo", "app.kubernetes.io/name": "auralguard"})
    );
    let stable = cluster.expect_apply(&mut api, STABLE).await;
    assert_eq!(stable["spec"]["replicas"], 4);
    assert_eq!(
        env(&stable, "AURALGUARD_MODEL")["value"],
        "models:/deepfake/1"
    );
    assert_eq!(
        env(&stable, "MLFLOW_TRACKING_URI")["value"],
        "http://mlflow.mlflow.svc:5000"
    );
    assert_eq!(
        stable["spec"]["template"]["metadata"]["labels"]["auralguard.io/role"],
        "stable"
    );
    let pdb = cluster.expect_apply(&mut api, PDB).await;
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.serving_version.as_deref(), Some("1"));
    assert_eq!(status.serving_model.as_deref(), Some("models:/deepfake/1"));
    assert_eq!(status.phase, Some(Phase::Pending));
    assert_eq!(status.observed_generation, Some(1));
    assert_eq!(condition(&status, "ModelResolved").0, "True");
    assert_eq!(
        condition(&status, "Ready"),
        ("False".into(), "Creating".into())
    );
    assert_eq!(
        status.endpoint.as_deref(),
        Some("http://demo.voice.svc:8080")
    );
    assert_eq!(
        status.selector.as_deref(),
        Some("app.kubernetes.io/instance=demo,app.kubernetes.io/name=auralguard")
    );
    expect_events(&mut api, &[("ModelDeployed", "Normal")]).await;
    assert_eq!(
        finish(task, &mut api).await,
        Action::requeue(Duration::from_secs(60))
    );

    // The Deployment controller brings the pods up; the next reconcile only reports it.
    cluster.pods_ready(STABLE);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.phase, Some(Phase::Running));
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "PodsReady".into())
    );
    assert_eq!(
        condition(&status, "Progressing"),
        ("False".into(), "Complete".into())
    );
    assert_eq!(condition(&status, "Degraded").0, "False");
    assert_eq!((status.replicas, status.ready_replicas), (Some(4), Some(4)));
    finish(task, &mut api).await;
    (ctx, api)
}

/// Runs one reconcile that must only read.
async fn expect_no_writes(cluster: &Cluster, ctx: &Arc<Context>, api: &mut ApiServer) -> Action {
    let task = cluster.reconcile(ctx);
    cluster.serve_reads(api).await;
    finish(task, api).await
}

#[tokio::test]
async fn create_then_a_reconcile_without_changes_writes_nothing() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;
    let writes_before = ctx.metrics.render();

    let action = expect_no_writes(&cluster, &ctx, &mut api).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(60)));
    expect_no_writes(&cluster, &ctx, &mut api).await;
    assert_eq!(
        ctx.metrics
            .render()
            .lines()
            .filter(|l| l.starts_with("auralguard_operator_writes_total"))
            .collect::<Vec<_>>(),
        writes_before
            .lines()
            .filter(|l| l.starts_with("auralguard_operator_writes_total"))
            .collect::<Vec<_>>()
    );
    assert!(ctx
        .metrics
        .render()
        .contains("auralguard_operator_writes_total{kind=\"Deployment\",verb=\"apply\"} 1"));
}

#[tokio::test]
async fn hand_edits_to_owned_objects_are_put_back() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;
    cluster.objects.get_mut(STABLE).unwrap()["spec"]["replicas"] = json!(9);

    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let stable = cluster.expect_apply(&mut api, STABLE).await;
    assert_eq!(stable["spec"]["replicas"], 4);
    // Status reports the 9 pods it saw; the next reconcile sees 4 again.
    cluster.expect_status(&mut api).await;
    finish(task, &mut api).await;
}

#[tokio::test]
async fn alias_change_runs_a_canary_step_by_step_and_promotes() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;

    // The alias moves to version 2: a canary with 25% of the pods (1 of 4) starts beside the
    // four stable pods, which are not touched (surge first).
    fakes.resolver.set("champion", Some("2"));
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let canary = cluster.expect_apply(&mut api, CANARY).await;
    assert_eq!(canary["spec"]["replicas"], 1);
    assert_eq!(
        env(&canary, "AURALGUARD_MODEL")["value"],
        "models:/deepfake/2"
    );
    assert_eq!(
        canary["spec"]["selector"]["matchLabels"]["auralguard.io/role"],
        "canary"
    );
    assert_eq!(
        canary["spec"]["template"]["metadata"]["labels"]["auralguard.io/model-version"],
        "2"
    );
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.phase, Some(Phase::Progressing));
    assert_eq!(
        (status.canary_version.as_deref(), status.canary_weight),
        (Some("2"), Some(25))
    );
    assert_eq!(status.desired_version.as_deref(), Some("2"));
    assert_eq!(status.serving_version.as_deref(), Some("1"));
    assert_eq!(
        condition(&status, "Progressing"),
        ("True".into(), "CanaryRollout".into())
    );
    let r = status.rollout.clone().unwrap();
    assert_eq!((r.step, r.phase), (0, RolloutPhase::Scaling));
    let notes = expect_events(
        &mut api,
        &[
            ("RolloutStarted", "Normal"),
            ("CanaryStepStarted", "Normal"),
        ],
    )
    .await;
    assert_eq!(notes[1], "canary step 1/2: 25% of pods on the new version");
    assert_eq!(
        finish(task, &mut api).await,
        Action::requeue(Duration::from_secs(10))
    );

    // Pods come up: the canary's baseline is scraped and the 60 s window opens; stable gives
    // the ready canary pod one of its own.
    cluster.pods_ready(STABLE);
    cluster.pods_ready(CANARY);
    fakes.metrics.serve("demo-canary-0", 5, 0);
    fakes.metrics.verdicts(true, "demo-stable-0", 600, 1400);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let stable = cluster.expect_apply(&mut api, STABLE).await;
    assert_eq!(stable["spec"]["replicas"], 3);
    assert_eq!(
        env(&stable, "AURALGUARD_MODEL")["value"],
        "models:/deepfake/1"
    );
    let status = cluster.expect_status(&mut api).await;
    let r = status.rollout.clone().unwrap();
    assert_eq!((r.step, r.phase), (0, RolloutPhase::Analyzing));
    assert_eq!(r.baseline.unwrap().pods[0].requests, 5);
    assert_eq!(fakes.metrics.scrapes(), 1);
    assert_eq!(
        finish(task, &mut api).await,
        Action::requeue(Duration::from_secs(60))
    );

    // Within the pause nothing is judged (and nothing scraped).
    fakes.clock.advance(20);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    cluster.expect_status(&mut api).await; // the "40s left" message
    assert_eq!(
        finish(task, &mut api).await,
        Action::requeue(Duration::from_secs(40))
    );
    assert_eq!(fakes.metrics.scrapes(), 1);

    // Pause over, good traffic: step 2 at 50% (2 of 4).
    fakes.clock.advance(40);
    fakes.metrics.serve("demo-canary-0", 100, 1);
    fakes.metrics.verdicts(false, "demo-canary-0", 31, 68);
    fakes.metrics.verdicts(true, "demo-stable-0", 84, 216);
    let (status, notes) = expect_second_step(&mut cluster, &ctx, &mut api).await;
    assert_eq!(status.canary_weight, Some(50));
    assert_eq!(
        notes[0],
        "canary step 1 passed: 100 requests, error rate 1.00%, p99 99ms; fake share 31% vs \
         stable 28%"
    );

    // Both canary pods ready: stable goes down to two and the step's window opens.
    cluster.pods_ready(STABLE);
    cluster.pods_ready(CANARY);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    assert_eq!(
        cluster.expect_apply(&mut api, STABLE).await["spec"]["replicas"],
        2
    );
    cluster.expect_status(&mut api).await;
    finish(task, &mut api).await;

    // Last step passes: stable moves to version 2 at the two pods it has beside the canary
    // (its rolling update surges by one pod); the canary keeps its two meanwhile.
    fakes.clock.advance(60);
    fakes.metrics.serve("demo-canary-0", 50, 0);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let stable = cluster.expect_apply(&mut api, STABLE).await;
    assert_eq!(stable["spec"]["replicas"], 2);
    assert_eq!(
        env(&stable, "AURALGUARD_MODEL")["value"],
        "models:/deepfake/2"
    );
    assert_eq!(
        stable["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": 1, "maxUnavailable": 0})
    );
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.rollout.unwrap().phase, RolloutPhase::Promoting);
    expect_events(
        &mut api,
        &[
            ("CanaryStepPassed", "Normal"),
            ("CanaryPromoting", "Normal"),
        ],
    )
    .await;
    finish(task, &mut api).await;

    // Stable's two pods run version 2: it grows by the spare pod, then the canary hands over
    // one pod per stable pod that is ready (never more than 5 pods planned).
    stable_grows(&mut cluster, &ctx, &mut api, 3, None).await;
    stable_grows(&mut cluster, &ctx, &mut api, 4, Some(1)).await;

    // Stable rolled out on version 2: promoted, canary deleted.
    cluster.pods_ready(STABLE);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    cluster.expect_delete(&mut api, CANARY).await;
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.serving_version.as_deref(), Some("2"));
    assert_eq!(
        (status.rollout.clone(), status.canary_version.clone()),
        (None, None)
    );
    assert_eq!(
        status.last_rollout.as_ref().unwrap().outcome,
        RolloutOutcome::Promoted
    );
    assert_eq!(status.phase, Some(Phase::Running));
    let notes = expect_events(&mut api, &[("RolloutPromoted", "Normal")]).await;
    assert_eq!(notes[0], "model version 2 promoted (was 1)");
    finish(task, &mut api).await;
    assert!(ctx
        .metrics
        .render()
        .contains("auralguard_operator_rollouts_total{outcome=\"promoted\"} 1"));
    assert_eq!(fakes.metrics.scrapes(), 4);

    // Steady again: reads only.
    expect_no_writes(&cluster, &ctx, &mut api).await;
}

#[tokio::test]
async fn a_failing_canary_is_rolled_back_and_marked_degraded() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;

    start_rollout_to_v2(&mut cluster, &fakes, &ctx, &mut api).await;
    open_first_window(&mut cluster, &ctx, &mut api).await;

    // 30 of 100 requests fail on the canary.
    fakes.clock.advance(60);
    fakes.metrics.serve("demo-canary-0", 100, 30);
    let task = cluster.reconcile(&ctx);
    let status = expect_canary_removed(&mut cluster, &mut api, true).await;
    assert_eq!(status.phase, Some(Phase::Degraded));
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "RolledBack".into())
    );
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(
        degraded.message,
        "canary analysis failed at step 1: error rate 30.00% (30 of 100 requests) exceeds 5.00%"
    );
    assert_eq!(status.serving_version.as_deref(), Some("1"));
    assert_eq!(status.desired_version.as_deref(), Some("2"));
    let last = status.last_rollout.unwrap();
    assert_eq!(
        (last.outcome, last.version.as_str()),
        (RolloutOutcome::RolledBack, "2")
    );
    expect_events(&mut api, &[("RolloutRolledBack", "Warning")]).await;
    finish(task, &mut api).await;
    assert!(ctx
        .metrics
        .render()
        .contains("auralguard_operator_rollouts_total{outcome=\"rolled_back\"} 1"));

    // The alias still points at the failed version: no retry, nothing written.
    cluster.pods_ready(STABLE);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let status = cluster.expect_status(&mut api).await; // the 4 stable pods are ready again
    assert_eq!(status.phase, Some(Phase::Degraded));
    finish(task, &mut api).await;
    expect_no_writes(&cluster, &ctx, &mut api).await;
}

/// A canary that answers fast and without errors but calls nearly every clip fake, while the
/// stable pods call 30 % fake: the model-quality guard rolls it back with both shares in the
/// Degraded condition and the Warning Event.
#[tokio::test]
async fn a_canary_calling_everything_fake_is_rolled_back() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;
    start_rollout_to_v2(&mut cluster, &fakes, &ctx, &mut api).await;
    fakes.metrics.verdicts(true, "demo-stable-0", 300, 700);
    open_first_window(&mut cluster, &ctx, &mut api).await;

    fakes.clock.advance(60);
    fakes.metrics.serve("demo-canary-0", 400, 0);
    fakes.metrics.verdicts(false, "demo-canary-0", 388, 12);
    fakes.metrics.verdicts(true, "demo-stable-0", 114, 266);
    let task = cluster.reconcile(&ctx);
    let status = expect_canary_removed(&mut cluster, &mut api, true).await;
    let reason = "canary analysis failed at step 1: canary called 97% of 400 clips fake, stable \
                  30% of 380: the difference exceeds 20 points at 99% confidence";
    let degraded = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Degraded")
        .unwrap();
    assert_eq!(degraded.message, reason);
    assert_eq!(
        status.last_rollout.unwrap().outcome,
        RolloutOutcome::RolledBack
    );
    let notes = expect_events(&mut api, &[("RolloutRolledBack", "Warning")]).await;
    assert!(notes[0].contains(reason), "{}", notes[0]);
    finish(task, &mut api).await;
}

/// Review of the rollout analysis, point 1: a scrape that fails when the step's window closes
/// does not fail the reconcile. Status records it (the count and the error, also in the
/// Progressing condition), a Warning Event says it, and the reconcile comes back after the check
/// interval; the next good scrape judges the window and clears the count.
#[tokio::test]
async fn a_failing_scrape_is_reported_in_status_and_an_event_instead_of_an_error() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;
    start_rollout_to_v2(&mut cluster, &fakes, &ctx, &mut api).await;
    fakes.metrics.serve("demo-canary-0", 5, 0);
    open_first_window(&mut cluster, &ctx, &mut api).await;

    fakes.clock.advance(60);
    fakes.metrics.serve("demo-canary-0", 100, 1);
    fakes.metrics.fail(Some(
        "scraping pod demo-canary-0 at http://10.0.0.5:8080/metrics: connection refused",
    ));
    let error = "canary metrics: scraping pod demo-canary-0 at \
                 http://10.0.0.5:8080/metrics: connection refused";
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let status = cluster.expect_status(&mut api).await;
    let r = status.rollout.clone().unwrap();
    assert_eq!(
        (r.step, r.phase, r.failed_scrapes),
        (0, RolloutPhase::Analyzing, 1)
    );
    assert_eq!(r.last_scrape_error.as_deref(), Some(error));
    assert_eq!(status.phase, Some(Phase::Progressing));
    let progressing = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        (progressing.status.as_str(), progressing.message.clone()),
        (
            "True",
            format!("metrics scrape failed (1 of 3 failures tolerated), retrying in 10s: {error}")
        )
    );
    let notes = expect_events(&mut api, &[("AnalysisScrapeFailed", "Warning")]).await;
    assert_eq!(
        notes[0],
        format!(
            "canary step 1: metrics scrape failed (1 of 3 failures tolerated), retrying in \
             10s: {error}"
        )
    );
    assert_eq!(
        finish(task, &mut api).await,
        Action::requeue(Duration::from_secs(10))
    );
    let counted = "auralguard_operator_analysis_results_total{result=\"scrape_failed\"} 1";
    assert!(ctx.metrics.render().contains(counted));

    // The pods answer again: the window is judged, step 2 starts, the count is gone.
    fakes.metrics.fail(None);
    fakes.clock.advance(10);
    let (status, notes) = expect_second_step(&mut cluster, &ctx, &mut api).await;
    let r = status.rollout.unwrap();
    assert_eq!((r.step, r.phase), (1, RolloutPhase::Scaling));
    assert_eq!((r.failed_scrapes, r.last_scrape_error), (0, None));
    assert!(
        notes[0].starts_with("canary step 1 passed: 100 requests, error rate 1.00%"),
        "{}",
        notes[0]
    );
    assert_eq!(fakes.metrics.scrapes(), 3);
}

/// Review of the rollout analysis, point 3: a canary pod that crashed during the step restarts
/// with fresh (here: clean) counters; its restart count gives it away and the canary is rolled
/// back, naming the pod.
#[tokio::test]
async fn a_canary_pod_restarting_during_the_step_is_rolled_back() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;
    start_rollout_to_v2(&mut cluster, &fakes, &ctx, &mut api).await;
    fakes.metrics.serve("demo-canary-0", 50, 0);
    open_first_window(&mut cluster, &ctx, &mut api).await;

    fakes.clock.advance(60);
    fakes.metrics.restart("demo-canary-0", 2);
    fakes.metrics.serve("demo-canary-0", 100, 0);
    let task = cluster.reconcile(&ctx);
    let status = expect_canary_removed(&mut cluster, &mut api, true).await;
    let reason = "canary analysis failed at step 1: canary pod demo-canary-0 restarted 2 times \
                  during the step";
    assert_eq!(status.last_rollout.unwrap().message, reason);
    let notes = expect_events(&mut api, &[("RolloutRolledBack", "Warning")]).await;
    assert!(notes[0].ends_with(reason), "{}", notes[0]);
    finish(task, &mut api).await;
}

#[tokio::test]
async fn a_restarted_operator_continues_a_rollout_from_status() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;
    start_rollout_to_v2(&mut cluster, &fakes, &ctx, &mut api).await;
    fakes.metrics.serve("demo-canary-0", 10, 0);
    open_first_window(&mut cluster, &ctx, &mut api).await;

    // The operator restarts mid-window: a new process with nothing in memory. The detector as
    // stored (round-tripped through JSON) is all it has.
    drop((ctx, api));
    let stored = serde_json::to_string(&cluster.det).unwrap();
    cluster.det = serde_json::from_str(&stored).unwrap();
    let (ctx, mut api) = fakes.context();

    fakes.clock.advance(61);
    fakes.metrics.serve("demo-canary-0", 40, 0);
    let (status, notes) = expect_second_step(&mut cluster, &ctx, &mut api).await;
    let r = status.rollout.unwrap();
    assert_eq!((r.step, r.phase), (1, RolloutPhase::Scaling));
    // The window measured exactly the 40 requests since the baseline taken before the restart.
    assert!(
        notes[0].starts_with("canary step 1 passed: 40 requests"),
        "{}",
        notes[0]
    );
}

#[tokio::test]
async fn an_mlflow_outage_keeps_serving_and_is_reported_once() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;

    fakes.resolver.set("champion", None);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(
        condition(&status, "ModelResolved"),
        ("False".into(), "ResolutionFailed".into())
    );
    assert_eq!(
        status.phase,
        Some(Phase::Running),
        "still serving version 1"
    );
    assert_eq!(status.desired_version.as_deref(), Some("1"));
    let notes = expect_events(&mut api, &[("ModelResolutionFailed", "Warning")]).await;
    assert!(notes[0].contains("MLflow answered 503"), "{}", notes[0]);
    assert_eq!(
        finish(task, &mut api).await,
        Action::requeue(Duration::from_secs(30))
    );

    // Still down: no new status, no new event.
    let action = expect_no_writes(&cluster, &ctx, &mut api).await;
    assert_eq!(action, Action::requeue(Duration::from_secs(30)));

    // Back: reported once more.
    fakes.resolver.set("champion", Some("1"));
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(condition(&status, "ModelResolved").0, "True");
    expect_events(&mut api, &[("ModelResolved", "Normal")]).await;
    finish(task, &mut api).await;
}

const WITH_MONITOR: &str = r#"
apiVersion: auralguard.io/v1alpha1
kind: AudioDetector
metadata: {name: demo, namespace: voice, uid: 5f0c1a2b-0000-4000-8000-00000000d3e7, generation: 1}
spec:
  model: {source: /models/demo}
  serviceMonitor: {labels: {release: prometheus}}
"#;

#[tokio::test]
async fn the_service_monitor_is_skipped_without_its_crd_and_applied_with_it() {
    let fakes = Fakes::new();
    let (ctx, mut api) = fakes.context();
    let mut cluster = Cluster::new(WITH_MONITOR);

    // No Prometheus operator: discovery says 404, nothing is tried.
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    api.expect(Method::GET, MONITORING).await.not_found();
    cluster.expect_apply(&mut api, SERVICE).await;
    cluster.expect_apply(&mut api, STABLE).await;
    cluster.expect_apply(&mut api, PDB).await;
    cluster.expect_status(&mut api).await;
    expect_events(&mut api, &[("ModelDeployed", "Normal")]).await;
    finish(task, &mut api).await;

    // With it installed: the ServiceMonitor is applied.
    cluster.pods_ready(STABLE);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    api.expect(Method::GET, MONITORING).await.ok(&json!({
        "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "monitoring.coreos.com/v1",
        "resources": [{"name": "servicemonitors", "singularName": "servicemonitor", "namespaced": true,
                       "kind": "ServiceMonitor", "verbs": ["get", "list", "watch", "create", "patch"]}]
    }));
    api.expect(Method::GET, MONITOR).await.not_found();
    let sm = cluster.expect_apply(&mut api, MONITOR).await;
    assert_eq!(sm["kind"], "ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(
        sm["spec"]["endpoints"],
        json!([{"port": "http", "path": "/metrics"}])
    );
    cluster.expect_status(&mut api).await;
    finish(task, &mut api).await;
}

#[tokio::test]
async fn a_detector_being_deleted_is_left_to_garbage_collection() {
    let fakes = Fakes::new();
    let (ctx, mut api) = fakes.context();
    let mut cluster = Cluster::new(DETECTOR);
    cluster.det.metadata.deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2030-01-01T00:00:00Z".parse().unwrap(),
        ));
    cluster.det.metadata.finalizers = Some(vec!["foregroundDeletion".into()]);
    let task = cluster.reconcile(&ctx);
    assert_eq!(finish(task, &mut api).await, Action::await_change());
    assert_eq!(*fakes.resolver.calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn removing_autoscaling_deletes_the_hpa_and_restores_fixed_replicas() {
    let fakes = Fakes::new();
    let (ctx, mut api) = fakes.context();
    let autoscaled = DETECTOR.replace(
        "  replicas: 4\n",
        "  autoscaling: {minReplicas: 2, maxReplicas: 6, targetCpuUtilization: 70}\n",
    );
    let mut cluster = Cluster::new(&autoscaled);
    fakes.resolver.set("champion", Some("1"));
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    cluster.expect_apply(&mut api, SERVICE).await;
    let stable = cluster.expect_apply(&mut api, STABLE).await;
    assert!(
        stable["spec"].get("replicas").is_none(),
        "the HPA owns replicas"
    );
    let hpa = cluster.expect_apply(&mut api, HPA).await;
    assert_eq!(
        hpa["spec"]["scaleTargetRef"],
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "name": "demo"})
    );
    assert_eq!(
        (
            hpa["spec"]["minReplicas"].clone(),
            hpa["spec"]["maxReplicas"].clone()
        ),
        (json!(2), json!(6))
    );
    cluster.expect_apply(&mut api, PDB).await;
    cluster.expect_status(&mut api).await;
    expect_events(&mut api, &[("ModelDeployed", "Normal")]).await;
    finish(task, &mut api).await;

    // The user switches to a fixed count.
    let fixed = cluster.det.status.clone();
    cluster.det = detector(DETECTOR);
    cluster.det.status = fixed;
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    assert_eq!(
        cluster.expect_apply(&mut api, STABLE).await["spec"]["replicas"],
        4
    );
    cluster.expect_delete(&mut api, HPA).await;
    cluster.expect_status(&mut api).await;
    finish(task, &mut api).await;
}

/// Finding 7 of the rollout review: status is written with the detector's `resourceVersion`, so a
/// reconcile working from a stale copy (here: the API server answers that the detector changed)
/// writes nothing, reports no Event for transitions it derived from the stale copy, and runs
/// again at once. 2c3c99f force-applied status without a version and then reported the
/// transitions, duplicating them or resurrecting what another reconcile had finished.
#[tokio::test]
async fn a_status_computed_from_a_stale_detector_is_refused_and_not_reported() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = fakes.context();
    fakes.resolver.set("champion", Some("1"));

    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    for path in [SERVICE, STABLE, PDB] {
        cluster.expect_apply(&mut api, path).await;
    }
    let e = api.expect_apply(STATUS).await;
    assert_eq!(e.body["metadata"]["resourceVersion"], "700");
    e.respond(
        StatusCode::CONFLICT,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": "Conflict", "code": 409,
                "message": "the object has been modified; please apply your changes to the latest version"}),
    );
    // No ModelDeployed Event: `finish` fails on any further request.
    let action = finish(task, &mut api).await;
    assert!(
        action == Action::requeue(Duration::from_millis(200)),
        "a conflict reruns the reconcile at once: {action:?}"
    );
}

/// Sets (`Some`) or removes (`None`) an annotation on the detector, as `kubectl annotate` does.
fn annotate(cluster: &mut Cluster, key: &str, value: Option<&str>) {
    let annotations = cluster
        .det
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new);
    match value {
        Some(v) => annotations.insert(key.into(), v.into()),
        None => annotations.remove(key),
    };
}

/// Expects the Events of manual commands, in order (reason, type), each with the action
/// `ManualControl`, and returns their notes.
async fn expect_manual_events(api: &mut ApiServer, reasons: &[(&str, &str)]) -> Vec<String> {
    let mut notes = Vec::new();
    for (reason, type_) in reasons {
        let e = api.expect(Method::POST, EVENTS).await;
        assert_eq!(
            (e.body["reason"].as_str(), e.body["type"].as_str()),
            (Some(*reason), Some(*type_))
        );
        let action = if reason.starts_with("Manual") || ["Paused", "Resumed"].contains(reason) {
            "ManualControl"
        } else {
            "Rollout"
        };
        assert_eq!(e.body["action"], action, "{reason}");
        assert_eq!(e.body["regarding"]["name"], "demo");
        notes.push(e.body["note"].as_str().unwrap_or_default().to_string());
        let body = e.body.clone();
        e.respond(StatusCode::CREATED, &body);
    }
    notes
}

/// The `kubectl annotate` commands end to end through reconcile: a pause freezes the canary
/// (status, phase, condition and Event say so, and nothing is scraped or judged however long it
/// lasts), resume + promote moves stable to the new version at once, the promote token acts once,
/// and a command that makes no sense is answered with a Warning Event and recorded as ignored.
#[tokio::test]
async fn annotations_pause_resume_and_promote_a_canary_with_events_and_status() {
    use auralguard_crds::{CommandResult, ManualCommand};
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;
    start_rollout_to_v2(&mut cluster, &fakes, &ctx, &mut api).await;
    fakes.metrics.serve("demo-canary-0", 5, 0);
    open_first_window(&mut cluster, &ctx, &mut api).await;
    assert_eq!(fakes.metrics.scrapes(), 1);

    // kubectl annotate adet demo auralguard.io/pause=true
    annotate(&mut cluster, "auralguard.io/pause", Some("true"));
    fakes.clock.advance(20);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let status = cluster.expect_status(&mut api).await;
    assert!(status.paused);
    assert_eq!(status.phase, Some(Phase::Paused));
    assert_eq!(
        condition(&status, "Progressing"),
        ("Unknown".into(), "Paused".into())
    );
    let r = status.rollout.clone().unwrap();
    assert_eq!((r.step, r.phase), (0, RolloutPhase::Analyzing));
    assert!(r.paused_at.is_some());
    assert_eq!(
        (status.canary_version.as_deref(), status.canary_weight),
        (Some("2"), Some(25))
    );
    let cmd = status.last_command.clone().unwrap();
    assert_eq!(
        (cmd.command, cmd.result, cmd.token),
        (ManualCommand::Pause, CommandResult::Applied, None)
    );
    let notes = expect_manual_events(&mut api, &[("Paused", "Normal")]).await;
    assert!(
        notes[0].starts_with("auralguard.io/pause set: holding the rollout of model version 2"),
        "{}",
        notes[0]
    );
    finish(task, &mut api).await;

    // Long past the step's 60 s: still held, nothing judged, nothing written.
    fakes.clock.advance(600);
    fakes.metrics.serve("demo-canary-0", 100, 90);
    expect_no_writes(&cluster, &ctx, &mut api).await;
    assert_eq!(fakes.metrics.scrapes(), 1);

    // Resume and promote in one go:
    //   kubectl annotate adet demo auralguard.io/pause- auralguard.io/promote=1712000000
    annotate(&mut cluster, "auralguard.io/pause", None);
    annotate(&mut cluster, "auralguard.io/promote", Some("1712000000"));
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let stable = cluster.expect_apply(&mut api, STABLE).await;
    assert_eq!(stable["spec"]["replicas"], 3, "beside the canary's pod");
    assert_eq!(
        env(&stable, "AURALGUARD_MODEL")["value"],
        "models:/deepfake/2"
    );
    let status = cluster.expect_status(&mut api).await;
    assert!(!status.paused);
    assert_eq!(status.phase, Some(Phase::Progressing));
    let r = status.rollout.clone().unwrap();
    assert_eq!(
        (r.phase, r.promoted_manually, r.paused_at),
        (RolloutPhase::Promoting, true, None)
    );
    assert_eq!(
        status.handled_commands.promote.as_deref(),
        Some("1712000000")
    );
    let cmd = status.last_command.clone().unwrap();
    assert_eq!(
        (cmd.command, cmd.result, cmd.token.as_deref()),
        (
            ManualCommand::Promote,
            CommandResult::Applied,
            Some("1712000000")
        )
    );
    let notes = expect_manual_events(
        &mut api,
        &[("Resumed", "Normal"), ("ManualPromote", "Normal")],
    )
    .await;
    assert_eq!(
        notes[1],
        "promoting model version 2 by hand at step 1/2, skipping the remaining steps and \
         analysis (auralguard.io/promote=1712000000)"
    );
    finish(task, &mut api).await;
    assert_eq!(fakes.metrics.scrapes(), 1, "a promotion judges nothing");
    stable_grows(&mut cluster, &ctx, &mut api, 4, None).await;

    // Stable rolled out: promoted, canary deleted.
    cluster.pods_ready(STABLE);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    cluster.expect_delete(&mut api, CANARY).await;
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.serving_version.as_deref(), Some("2"));
    assert_eq!(status.phase, Some(Phase::Running));
    let last = status.last_rollout.unwrap();
    assert_eq!(last.outcome, RolloutOutcome::Promoted);
    assert!(
        last.message.starts_with("promoted by hand"),
        "{}",
        last.message
    );
    expect_manual_events(&mut api, &[("RolloutPromoted", "Normal")]).await;
    finish(task, &mut api).await;

    // The promote annotation is still there: it acted once, so reconciles only read.
    expect_no_writes(&cluster, &ctx, &mut api).await;

    // An abort with no rollout running: a Warning Event, recorded as ignored, once.
    annotate(&mut cluster, "auralguard.io/abort", Some("a1"));
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.handled_commands.abort.as_deref(), Some("a1"));
    let cmd = status.last_command.unwrap();
    assert_eq!(
        (cmd.command, cmd.result, cmd.message.as_str()),
        (
            ManualCommand::Abort,
            CommandResult::Ignored,
            "ignored: no rollout is running"
        )
    );
    assert_eq!(status.phase, Some(Phase::Running));
    let notes = expect_manual_events(&mut api, &[("ManualCommandIgnored", "Warning")]).await;
    assert_eq!(
        notes[0],
        "abort ignored (auralguard.io/abort=a1): no rollout is running"
    );
    finish(task, &mut api).await;
    expect_no_writes(&cluster, &ctx, &mut api).await;
}

/// `auralguard.io/abort` through reconcile: the canary Deployment is deleted, stable gets its
/// pods back, status says `ManuallyAborted` and `Degraded`, a Warning Event and the rollout
/// metric record it, and the version is not tried again until `auralguard.io/retry`.
#[tokio::test]
async fn an_abort_annotation_rolls_back_and_a_retry_annotation_tries_again() {
    use auralguard_crds::{CommandResult, ManualCommand};
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;
    start_rollout_to_v2(&mut cluster, &fakes, &ctx, &mut api).await;
    cluster.pods_ready(STABLE);
    cluster.pods_ready(CANARY);

    annotate(&mut cluster, "auralguard.io/abort", Some("1712000000"));
    let task = cluster.reconcile(&ctx);
    // The abort is handled before the reconcile could act on the ready canary pod, so stable
    // never gave up a pod (surge first): it keeps its four and is not written.
    let status = expect_canary_removed(&mut cluster, &mut api, false).await;
    assert_eq!(status.rollout, None);
    let last = status.last_rollout.clone().unwrap();
    assert_eq!(
        (last.outcome, last.version.as_str()),
        (RolloutOutcome::ManuallyAborted, "2")
    );
    assert_eq!(status.phase, Some(Phase::Degraded));
    assert_eq!(
        condition(&status, "Degraded"),
        ("True".into(), "ManuallyAborted".into())
    );
    let cmd = status.last_command.clone().unwrap();
    assert_eq!(
        (cmd.command, cmd.result),
        (ManualCommand::Abort, CommandResult::Applied)
    );
    let notes = expect_manual_events(&mut api, &[("ManualAbort", "Warning")]).await;
    assert!(
        notes[0].starts_with("rollout of model version 2 aborted by hand, still serving 1"),
        "{}",
        notes[0]
    );
    finish(task, &mut api).await;
    assert!(ctx
        .metrics
        .render()
        .contains("auralguard_operator_rollouts_total{outcome=\"aborted_manually\"} 1"));

    // Blocked: the alias still says 2, the same token is still there, nothing happens.
    expect_no_writes(&cluster, &ctx, &mut api).await;
    expect_no_writes(&cluster, &ctx, &mut api).await;

    // kubectl annotate adet demo auralguard.io/retry="$(date +%s)" --overwrite
    annotate(&mut cluster, "auralguard.io/retry", Some("1712000100"));
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    assert_eq!(
        cluster.expect_apply(&mut api, CANARY).await["spec"]["replicas"],
        1
    );
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.phase, Some(Phase::Progressing));
    assert!(status.last_rollout.unwrap().retried);
    assert_eq!(status.rollout.unwrap().canary_version, "2");
    expect_manual_events(
        &mut api,
        &[
            ("ManualRetry", "Normal"),
            ("RolloutStarted", "Normal"),
            ("CanaryStepStarted", "Normal"),
        ],
    )
    .await;
    finish(task, &mut api).await;
}

/// Finding 2 of the operator review (capacity lost during a rollout): the reconcile that creates
/// the canary leaves the stable Deployment at its four pods (surge first, `maxSurge` 1 by
/// default); while the canary pod is not ready nothing changes; stable gives up a pod only in
/// the reconcile that sees the canary pod ready. Status shows the capacity held on each side.
/// The old operator applied stable with 3 replicas in the first reconcile.
#[tokio::test]
async fn the_canary_surges_first_and_status_shows_the_capacity_held() {
    let fakes = Fakes::new();
    let mut cluster = Cluster::new(DETECTOR);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;

    fakes.resolver.set("champion", Some("2"));
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let canary = cluster.expect_apply(&mut api, CANARY).await;
    assert_eq!(canary["spec"]["replicas"], 1);
    assert_eq!(
        canary["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": 1, "maxUnavailable": 0})
    );
    let status = cluster.expect_status(&mut api).await;
    let capacity = |ready_stable, ready_canary| {
        Some(RolloutCapacity {
            mode: CapacityMode::SurgeFirst,
            desired_replicas: 4,
            max_surge: 1,
            ready_stable,
            ready_canary,
        })
    };
    assert_eq!(status.capacity, capacity(4, 0));
    assert_eq!((status.replicas, status.ready_replicas), (Some(5), Some(4)));
    assert_eq!(
        condition(&status, "Ready"),
        ("True".into(), "PodsReady".into())
    );
    expect_events(
        &mut api,
        &[
            ("RolloutStarted", "Normal"),
            ("CanaryStepStarted", "Normal"),
        ],
    )
    .await;
    finish(task, &mut api).await;
    assert_eq!(cluster.objects[STABLE]["spec"]["replicas"], 4);

    // The canary pod is still starting: stable keeps every pod (only the Progressing message
    // changes: it waits for the canary pod), and after that nothing is written at all.
    fakes.clock.advance(30);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.capacity, capacity(4, 0));
    finish(task, &mut api).await;
    fakes.clock.advance(10);
    expect_no_writes(&cluster, &ctx, &mut api).await;

    // Ready: stable hands one pod over and the step's window opens.
    cluster.pods_ready(CANARY);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    assert_eq!(
        cluster.expect_apply(&mut api, STABLE).await["spec"]["replicas"],
        3
    );
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.capacity, capacity(4, 1));
    assert_eq!(status.rollout.unwrap().phase, RolloutPhase::Analyzing);
    finish(task, &mut api).await;
}

/// `spec.rollout.maxSurge: 0` (GPU nodes without a spare GPU): both Deployments roll with
/// `maxSurge: 0, maxUnavailable: 1`, the first canary pod takes a stable pod's place (3 + 1, never
/// 5 pods), status says `ShrinkFirst` and one `RolloutShrinkFirst` Event says what it costs.
#[tokio::test]
async fn without_a_surge_the_rollout_shrinks_first_and_says_so() {
    let fakes = Fakes::new();
    let yaml = DETECTOR.replace("    analysis:", "    maxSurge: 0\n    analysis:");
    let mut cluster = Cluster::new(&yaml);
    let (ctx, mut api) = create_and_settle(&mut cluster, &fakes).await;
    assert_eq!(
        cluster.objects[STABLE]["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": 0, "maxUnavailable": 1})
    );

    fakes.resolver.set("champion", Some("2"));
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    assert_eq!(
        cluster.expect_apply(&mut api, STABLE).await["spec"]["replicas"],
        3
    );
    let canary = cluster.expect_apply(&mut api, CANARY).await;
    assert_eq!(canary["spec"]["replicas"], 1);
    assert_eq!(
        canary["spec"]["strategy"]["rollingUpdate"],
        json!({"maxSurge": 0, "maxUnavailable": 1})
    );
    let status = cluster.expect_status(&mut api).await;
    let capacity = status.capacity.unwrap();
    assert_eq!(
        (capacity.mode, capacity.max_surge, capacity.desired_replicas),
        (CapacityMode::ShrinkFirst, 0, 4)
    );
    assert_eq!(status.replicas, Some(4));
    let notes = expect_events(
        &mut api,
        &[
            ("RolloutStarted", "Normal"),
            ("RolloutShrinkFirst", "Normal"),
            ("CanaryStepStarted", "Normal"),
        ],
    )
    .await;
    assert_eq!(
        notes[1],
        "spec.rollout.maxSurge is 0: no pod runs above the 4 desired; a stable pod is removed \
         before each canary pod starts (and before each stable pod moves to the new version), so \
         1 of 4 pods may be unavailable at a time"
    );
    finish(task, &mut api).await;

    // The window opens once the canary pod is ready (the split is already there, so only status
    // is written) and no second Event about the mode.
    cluster.pods_ready(STABLE);
    cluster.pods_ready(CANARY);
    let task = cluster.reconcile(&ctx);
    cluster.serve_reads(&mut api).await;
    let status = cluster.expect_status(&mut api).await;
    assert_eq!(status.rollout.unwrap().phase, RolloutPhase::Analyzing);
    finish(task, &mut api).await;
}
