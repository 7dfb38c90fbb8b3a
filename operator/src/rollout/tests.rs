//! Unit tests of the rollout state machine, driven by a tiny simulator that plays the parts of
//! the Deployment controller (pods become ready as planned), the clock and the canary's traffic.

use super::*;
use auralguard_crds::{BucketCount, PodCounters};

mod surge;

fn v(n: u32) -> ModelRef {
    ModelRef::registry("deepfake", &n.to_string())
}

fn step(weight: i32, pause_secs: u64) -> CanaryStep {
    CanaryStep {
        weight,
        pause: Duration::from_secs(pause_secs).into(),
    }
}

fn policy() -> Policy {
    Policy {
        steps: vec![step(10, 60), step(50, 120)],
        analysis: AnalysisSpec {
            max_error_rate: 0.05,
            max_p99_latency: Duration::from_secs(1).into(),
            min_requests: 20,
            ..AnalysisSpec::default()
        },
        progress_deadline: Duration::from_secs(600),
        max_surge: 1,
    }
}

fn t0() -> Timestamp {
    "2030-01-01T00:00:00Z".parse().unwrap()
}

/// Traffic one side serves per observation window. Every answer that is not a 5xx is a verdict,
/// `fake` of them "fake".
#[derive(Clone, Copy)]
struct Traffic {
    requests: i64,
    errors: i64,
    slow: i64,
    fake: i64,
}

const GOOD: Traffic = Traffic {
    requests: 100,
    errors: 1,
    slow: 0,
    fake: 30,
};
const ERRORS: Traffic = Traffic {
    requests: 100,
    errors: 20,
    slow: 0,
    fake: 24,
};
const SLOW: Traffic = Traffic {
    requests: 100,
    errors: 0,
    slow: 10,
    fake: 30,
};
const QUIET: Traffic = Traffic {
    requests: 3,
    errors: 0,
    slow: 0,
    fake: 1,
};
/// A model that calls nearly every clip fake: fast and error-free, so only its verdicts show it.
const ALL_FAKE: Traffic = Traffic {
    requests: 100,
    errors: 0,
    slow: 0,
    fake: 97,
};
/// The stable pods' traffic: three times the canary's, 30 % called fake.
const STABLE: Traffic = Traffic {
    requests: 300,
    errors: 0,
    slow: 0,
    fake: 90,
};

/// Plays the cluster around the state machine, the way reconcile does: it stores each decision
/// into status, makes Deployments match the plan (ready at once unless `stuck`), and hands out
/// cumulative canary counters.
struct Sim {
    status: AudioDetectorStatus,
    policy: Policy,
    scale: Scale,
    now: Timestamp,
    stable: Option<PodSet>,
    canary: Option<PodSet>,
    counters: PodCounters,
    traffic: Traffic,
    /// The stable pod's cumulative counters (one pod stands for all of them).
    stable_counters: PodCounters,
    stable_traffic: Traffic,
    stuck: bool,
    stable_stuck: bool,
    /// Serialise and re-read status between reconciles, as a restarted operator would.
    restart_every_time: bool,
    log: Vec<Transition>,
    scrapes: usize,
    /// The detector's manual-command annotations.
    commands: Commands,
    /// When set, every scrape fails with this error.
    scrape_error: Option<String>,
    /// Canary pods that exist but are not ready (besides the one scraped).
    unready: i64,
    /// When set, the Deployments' pods are played one controller pass at a time
    /// ([`surge::Cluster`]) instead of being ready as soon as they are planned.
    cluster: Option<surge::Cluster>,
}

impl Sim {
    fn new(serving: Option<ModelRef>) -> Self {
        let mut status = AudioDetectorStatus::default();
        if let Some(s) = serving {
            status.serving_model = Some(s.uri.clone());
            status.serving_version = Some(s.version.clone());
        }
        let stable = status.serving_model.clone().map(|m| PodSet {
            model: Some(m),
            replicas: 4,
            ready: 4,
            rolled_out: true,
            observed: true,
            old_pods: 0,
        });
        Self {
            status,
            policy: policy(),
            scale: Scale::Fixed(4),
            now: t0(),
            stable,
            canary: None,
            counters: PodCounters {
                pod: "canary-0".into(),
                restarts: Some(0),
                ..PodCounters::default()
            },
            traffic: GOOD,
            stable_counters: PodCounters {
                pod: "stable-0".into(),
                ..PodCounters::default()
            },
            stable_traffic: STABLE,
            stuck: false,
            stable_stuck: false,
            restart_every_time: false,
            log: Vec::new(),
            scrapes: 0,
            commands: Commands::default(),
            scrape_error: None,
            unready: 0,
            cluster: None,
        }
    }

    fn snapshot(&self) -> MetricsSnapshot {
        MetricsSnapshot {
            pods: vec![self.counters.clone()],
            stable: vec![self.stable_counters.clone()],
            unready_pods: self.unready,
        }
    }

    /// One reconcile: decide (scraping when asked), then apply the decision.
    fn reconcile(&mut self, desired: Option<&ModelRef>) -> Decision {
        if self.restart_every_time {
            let json = serde_json::to_string(&self.status).unwrap();
            self.status = serde_json::from_str(&json).unwrap();
        }
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.settle(self.stuck, self.stable_stuck);
            self.stable = cluster.stable();
            self.canary = cluster.canary();
        }
        let snapshot = self.snapshot();
        let mut input = Input {
            now: self.now,
            status: &self.status,
            desired,
            policy: &self.policy,
            scale: self.scale,
            stable: self.stable.as_ref(),
            canary: self.canary.as_ref(),
            metrics: None,
            metrics_error: None,
            check_interval: Duration::from_secs(10),
            commands: &self.commands,
        };
        let decision = match decide(&input) {
            Outcome::Decided(d) => *d,
            Outcome::NeedMetrics => {
                self.scrapes += 1;
                match self.scrape_error.as_deref() {
                    Some(error) => input.metrics_error = Some(error),
                    None => input.metrics = Some(&snapshot),
                }
                match decide(&input) {
                    Outcome::Decided(d) => *d,
                    Outcome::NeedMetrics => panic!("asked for metrics twice"),
                }
            }
        };
        self.apply(&decision);
        decision
    }

    fn apply(&mut self, d: &Decision) {
        self.status.serving_model = d.serving.as_ref().map(|m| m.uri.clone());
        self.status.serving_version = d.serving.as_ref().map(|m| m.version.clone());
        self.status.rollout = d.rollout.clone();
        self.status.last_rollout = d.last_rollout.clone();
        self.status.paused = d.paused;
        self.status.handled_commands = d.handled.clone();
        self.status.last_command = d.last_command.clone();
        self.log.extend(d.transitions.iter().cloned());
        if let Some(cluster) = self.cluster.as_mut() {
            cluster.apply(d);
            self.stable = cluster.stable();
            self.canary = cluster.canary();
            return;
        }
        let ready = |model: &ModelRef, replicas: Option<i32>, stuck: bool| {
            let r = replicas.unwrap_or(4);
            PodSet {
                model: Some(model.uri.clone()),
                replicas: r,
                ready: if stuck { 0 } else { r },
                rolled_out: !stuck,
                observed: true,
                old_pods: 0,
            }
        };
        self.stable = d
            .stable_model
            .as_ref()
            .map(|m| ready(m, d.stable_replicas, self.stable_stuck));
        self.canary = d
            .canary
            .as_ref()
            .map(|c| ready(&c.model, Some(c.replicas), self.stuck));
    }

    /// Starts a rollout to `to`, lets its canary serve the first step's one-minute window, and
    /// returns the decision that judges that window.
    fn judge_first_step(&mut self, to: &ModelRef) -> Decision {
        self.reconcile(Some(to));
        self.reconcile(Some(to));
        self.wait(60);
        self.reconcile(Some(to))
    }

    /// Reconciles while stable moves to the new version (its template first, then its pods
    /// back from the canary, a spare pod at a time) and returns the decision that ends the
    /// promotion.
    fn finish_promotion(&mut self, to: &ModelRef) -> Decision {
        for _ in 0..10 {
            let d = self.reconcile(Some(to));
            if d.rollout.is_none() {
                return d;
            }
        }
        panic!("the promotion does not end: {:?}", self.status.rollout);
    }

    /// Rolls `to` out through one 50 % step with no pause into `Promoting`, where it stays:
    /// from then on the stable Deployment never finishes moving to the new template.
    fn hold_in_promoting(&mut self, to: &ModelRef) {
        self.policy.steps = vec![step(50, 0)];
        // The canary's first pod, its second, then the window opens.
        self.reconcile(Some(to));
        self.reconcile(Some(to));
        self.reconcile(Some(to));
        self.wait(1);
        self.stable_stuck = true;
        self.reconcile(Some(to));
        assert_eq!(
            self.status.rollout.as_ref().unwrap().phase,
            RolloutPhase::Promoting
        );
    }

    /// Lets `secs` pass while the canary and the stable pods each serve one window of traffic.
    fn wait(&mut self, secs: i64) {
        self.now += k8s_openapi::jiff::SignedDuration::from_secs(secs);
        if self.canary.is_some() {
            serve(&mut self.counters, self.traffic);
        }
        if self.stable.is_some() {
            serve(&mut self.stable_counters, self.stable_traffic);
        }
    }

    fn reasons(&self) -> Vec<&'static str> {
        self.log.iter().map(Transition::reason).collect()
    }
}

/// The Event reasons of a decision's transitions, in order.
fn reasons_of(d: &Decision) -> Vec<&'static str> {
    d.transitions.iter().map(Transition::reason).collect()
}

/// Adds one window of traffic `t` to a pod's cumulative counters.
fn serve(c: &mut PodCounters, t: Traffic) {
    c.requests += t.requests;
    c.errors += t.errors;
    c.fake += t.fake;
    c.real += t.requests - t.errors - t.fake;
    let fast = c.latency_buckets.first().map_or(0, |b| b.count) + t.requests - t.slow;
    c.latency_buckets = vec![
        BucketCount {
            le: "0.5".into(),
            count: fast,
        },
        BucketCount {
            le: "5".into(),
            count: c.requests,
        },
        BucketCount {
            le: "+Inf".into(),
            count: c.requests,
        },
    ];
}

#[test]
fn split_replicas_follows_the_weight() {
    let f = |n, w| {
        let s = split_replicas(Scale::Fixed(n), w, 1);
        (s.stable.unwrap(), s.canary)
    };
    assert_eq!(f(10, 10), (9, 1));
    assert_eq!(f(10, 25), (7, 3));
    assert_eq!(f(4, 50), (2, 2));
    assert_eq!(f(4, 10), (3, 1), "ceil gives the canary at least one pod");
    assert_eq!(
        f(1, 10),
        (1, 1),
        "both sides keep a pod while a canary runs"
    );
    assert_eq!(f(3, 100), (1, 3));
    let a = |current, w| split_replicas(Scale::Autoscaled { current }, w, 1);
    assert_eq!(
        a(4, 20),
        Split {
            stable: None,
            canary: 1
        }
    );
    assert_eq!(
        a(4, 50),
        Split {
            stable: None,
            canary: 4
        }
    );
    assert_eq!(
        a(6, 25),
        Split {
            stable: None,
            canary: 2
        }
    );
    assert_eq!(
        a(4, 100),
        Split {
            stable: None,
            canary: 4
        }
    );
}

#[test]
fn first_version_is_deployed_directly() {
    let mut sim = Sim::new(None);
    let d = sim.reconcile(None);
    assert_eq!(d.stable_model, None);
    assert!(d.waiting.is_some());
    let d = sim.reconcile(Some(&v(1)));
    assert_eq!(d.stable_model, Some(v(1)));
    assert_eq!(d.stable_replicas, Some(4));
    assert_eq!(d.serving, Some(v(1)));
    assert_eq!(d.canary, None);
    assert_eq!(sim.reasons(), ["ModelDeployed"]);
}

#[test]
fn nothing_changes_when_nothing_changed() {
    let mut sim = Sim::new(Some(v(1)));
    let first = sim.reconcile(Some(&v(1)));
    let second = sim.reconcile(Some(&v(1)));
    assert_eq!(first, second);
    assert!(first.transitions.is_empty());
    assert_eq!(first.requeue_after, None);
    // A failed resolution keeps serving what was serving.
    assert_eq!(sim.reconcile(None).stable_model, Some(v(1)));
}

#[test]
fn without_steps_a_new_version_updates_in_place() {
    let mut sim = Sim::new(Some(v(1)));
    sim.policy.steps.clear();
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.stable_model, Some(v(2)));
    assert_eq!(d.canary, None);
    assert_eq!(d.rollout, None);
    assert_eq!(sim.reasons(), ["ModelUpdated"]);
}

/// Drives a whole successful rollout and returns the simulator.
fn full_rollout(restart_every_time: bool) -> Sim {
    let mut sim = Sim::new(Some(v(1)));
    sim.restart_every_time = restart_every_time;

    // The alias moves: a canary at 10% (1 of 4 pods) starts beside the 4 stable pods, which
    // stable keeps until it is ready (surge first).
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(sim.reasons(), ["RolloutStarted", "CanaryStepStarted"]);
    assert_eq!(
        d.canary,
        Some(CanaryPlan {
            model: v(2),
            replicas: 1,
            weight: 10
        })
    );
    assert_eq!(
        (d.stable_model.clone(), d.stable_replicas),
        (Some(v(1)), Some(4))
    );
    assert_eq!(d.serving, Some(v(1)));
    assert_eq!(sim.scrapes, 0, "the canary was not ready yet");

    // Canary ready: the baseline is scraped and the window opens; stable gives up one pod.
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(sim.scrapes, 1);
    assert_eq!(d.stable_replicas, Some(3));
    let r = d.rollout.clone().unwrap();
    assert_eq!((r.step, r.phase), (0, RolloutPhase::Analyzing));
    assert_eq!(r.baseline, Some(sim.snapshot()));
    assert_eq!(d.requeue_after, Some(Duration::from_secs(60)));

    // Half-way through the pause: nothing to judge yet, no scrape.
    sim.wait(30);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(sim.scrapes, 1);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(30)));
    assert!(d.transitions.is_empty());

    // Pause over: the window is judged, step 2 begins at 50% (2 of 4): the canary's second pod
    // first, stable keeps 3 until it is ready.
    sim.wait(30);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(sim.scrapes, 2);
    assert_eq!(
        d.canary,
        Some(CanaryPlan {
            model: v(2),
            replicas: 2,
            weight: 50
        })
    );
    assert_eq!(d.stable_replicas, Some(3));
    let r = d.rollout.clone().unwrap();
    assert_eq!(
        (r.step, r.phase, r.baseline),
        (1, RolloutPhase::Scaling, None)
    );

    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(sim.scrapes, 3);
    assert_eq!(d.stable_replicas, Some(2));
    sim.wait(120);
    // Last step passes: stable moves to v2 at the 2 pods it has beside the canary, then grows
    // back as the canary hands its pods over; the canary stays until stable has every pod.
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.stable_model, Some(v(2)));
    assert_eq!(d.stable_replicas, Some(2));
    assert!(d.canary.is_some());
    assert_eq!(d.serving, Some(v(1)));
    assert_eq!(d.rollout.as_ref().unwrap().phase, RolloutPhase::Promoting);
    for (stable, canary) in [(3, 2), (4, 1)] {
        let d = sim.reconcile(Some(&v(2)));
        assert_eq!(
            (d.stable_replicas, d.canary.map(|c| c.replicas)),
            (Some(stable), Some(canary))
        );
        assert_eq!(d.serving, Some(v(1)));
    }

    // Stable rolled out: promoted, the canary goes away.
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.serving, Some(v(2)));
    assert_eq!(d.canary, None);
    assert_eq!(d.rollout, None);
    let last = d.last_rollout.clone().unwrap();
    assert_eq!(last.outcome, RolloutOutcome::Promoted);
    assert_eq!(
        (last.version.as_str(), last.from_version.as_str()),
        ("2", "1")
    );
    assert_eq!(
        sim.reasons(),
        [
            "RolloutStarted",
            "CanaryStepStarted",
            "CanaryStepPassed",
            "CanaryStepStarted",
            "CanaryStepPassed",
            "CanaryPromoting",
            "RolloutPromoted"
        ]
    );
    // And then it is steady.
    let d = sim.reconcile(Some(&v(2)));
    assert!(d.transitions.is_empty());
    assert_eq!(d.requeue_after, None);
    sim
}

#[test]
fn alias_change_rolls_out_step_by_step_and_promotes() {
    full_rollout(false);
}

#[test]
fn a_restarted_operator_continues_from_status_alone() {
    // Every reconcile starts from status re-read from JSON, as after a restart: same decisions,
    // same transitions, same scrapes.
    let remembered = full_rollout(false);
    let restarted = full_rollout(true);
    assert_eq!(remembered.log, restarted.log);
    assert_eq!(remembered.status, restarted.status);
    assert_eq!(remembered.scrapes, restarted.scrapes);
}

#[test]
fn failing_analysis_rolls_back_and_blocks_that_version() {
    for (traffic, why) in [
        (ERRORS, "error rate 20.00%"),
        (SLOW, "p99 latency"),
        (ALL_FAKE, "canary called 97% of 100 clips fake"),
    ] {
        let mut sim = Sim::new(Some(v(1)));
        sim.traffic = traffic;
        let d = sim.judge_first_step(&v(2));
        assert_eq!(d.canary, None);
        assert_eq!(d.rollout, None);
        assert_eq!(
            (d.serving.clone(), d.stable_model.clone()),
            (Some(v(1)), Some(v(1)))
        );
        assert_eq!(d.stable_replicas, Some(4));
        let last = d.last_rollout.clone().unwrap();
        assert_eq!(last.outcome, RolloutOutcome::RolledBack);
        assert!(last.message.contains(why), "{}", last.message);
        assert!(
            last.message.starts_with("canary analysis failed at step 1"),
            "{}",
            last.message
        );
        assert!(matches!(
            sim.log.last(),
            Some(Transition::RolledBack { .. })
        ));
        assert!(sim.log.last().unwrap().is_warning());

        // The alias still points at v2: no second attempt.
        let d = sim.reconcile(Some(&v(2)));
        assert!(d.transitions.is_empty());
        assert_eq!(d.canary, None);
        // A newer version is tried.
        sim.reconcile(Some(&v(3)));
        assert_eq!(sim.status.rollout.as_ref().unwrap().canary_version, "3");
    }
}

/// Finding 8 of the rollout review: "not tried again until the model source points somewhere
/// else" must hold when that somewhere else is the serving version. 2c3c99f kept v2 blocked
/// for good after the alias went v2 → v1 → v2.
#[test]
fn a_rolled_back_version_is_tried_again_after_the_source_moved_away_and_back() {
    let mut sim = Sim::new(Some(v(1)));
    sim.traffic = ERRORS;
    let d = sim.judge_first_step(&v(2));
    assert_eq!(d.last_rollout.unwrap().outcome, RolloutOutcome::RolledBack);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.rollout, None, "still blocked while the alias stays on v2");

    // The alias goes back to v1 (what serves): the block is lifted, once, in status.
    let d = sim.reconcile(Some(&v(1)));
    assert_eq!((d.rollout, d.canary), (None, None));
    assert!(d.transitions.is_empty());
    let last = d.last_rollout.unwrap();
    assert!(last.superseded, "{last:?}");
    assert_eq!(last.outcome, RolloutOutcome::RolledBack);
    assert_eq!(sim.reconcile(Some(&v(1))).last_rollout, Some(last));

    // And forward to v2 again: a new canary, judged afresh.
    sim.traffic = GOOD;
    sim.reconcile(Some(&v(2)));
    assert_eq!(sim.status.rollout.as_ref().unwrap().canary_version, "2");
}

#[test]
fn a_canary_that_never_gets_ready_is_rolled_back_after_the_deadline() {
    let mut sim = Sim::new(Some(v(1)));
    sim.stuck = true;
    sim.reconcile(Some(&v(2)));
    sim.wait(599);
    let d = sim.reconcile(Some(&v(2)));
    assert!(d.rollout.is_some(), "still within the deadline");
    assert_eq!(d.requeue_after, Some(Duration::from_secs(10)));
    sim.wait(2);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.rollout, None);
    assert_eq!(
        d.last_rollout.unwrap().message,
        "canary pods were not ready within 10m"
    );
    assert_eq!(sim.scrapes, 0);
}

#[test]
fn insufficient_traffic_waits_passes_or_fails_as_configured() {
    let run = |mode| {
        let mut sim = Sim::new(Some(v(1)));
        sim.policy.analysis.insufficient_traffic = mode;
        sim.traffic = QUIET;
        sim.reconcile(Some(&v(2)));
        sim.reconcile(Some(&v(2)));
        sim.wait(60);
        (sim.reconcile(Some(&v(2))), sim)
    };
    let (d, mut sim) = run(InsufficientTraffic::Wait);
    let r = d.rollout.clone().unwrap();
    assert_eq!((r.step, r.phase), (0, RolloutPhase::Analyzing));
    assert_eq!(
        d.waiting.as_deref(),
        Some("waiting for traffic: 3 of the 20 requests needed to judge the canary (30m left)")
    );
    // The window stays open (same baseline) until enough requests arrived: 3 → 6 → … → 21.
    sim.traffic = Traffic {
        requests: 6,
        errors: 0,
        slow: 0,
        fake: 2,
    };
    for _ in 0..3 {
        sim.wait(10);
        sim.reconcile(Some(&v(2)));
    }
    assert_eq!(sim.status.rollout.as_ref().unwrap().step, 1);

    let (d, _) = run(InsufficientTraffic::Pass);
    assert_eq!(d.rollout.unwrap().step, 1);
    let (d, _) = run(InsufficientTraffic::Fail);
    assert_eq!(d.last_rollout.unwrap().outcome, RolloutOutcome::RolledBack);
}

#[test]
fn waiting_for_traffic_ends_in_a_rollback_at_the_traffic_deadline() {
    let mut sim = Sim::new(Some(v(1)));
    sim.policy.analysis.traffic_deadline = Duration::from_secs(300).into();
    sim.traffic = QUIET;
    let d = sim.judge_first_step(&v(2));
    assert!(d.rollout.is_some(), "the pause just ended: waiting");
    sim.wait(299);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(
        d.waiting.as_deref(),
        Some("waiting for traffic: 6 of the 20 requests needed to judge the canary (1s left)")
    );
    sim.wait(2);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.rollout, None);
    assert_eq!(d.canary, None);
    let last = d.last_rollout.unwrap();
    assert_eq!(last.outcome, RolloutOutcome::RolledBack);
    assert_eq!(
        last.message,
        "canary analysis failed at step 1: only 9 of the 20 requests needed to judge the canary \
         within 5m of waiting (analysis.trafficDeadline)"
    );
}

/// The model-quality guard's message names both shares, both counts, the tolerance and the
/// confidence (the rollback itself is checked with the other failures above).
#[test]
fn a_canary_calling_nearly_everything_fake_is_rolled_back_naming_both_shares() {
    let mut sim = Sim::new(Some(v(1)));
    sim.traffic = ALL_FAKE;
    // Error rate 0 and p99 fast: only the verdicts give it away.
    let d = sim.judge_first_step(&v(2));
    let reason = "canary analysis failed at step 1: canary called 97% of 100 clips fake, \
                  stable 30% of 300: the difference exceeds 20 points at 99% confidence";
    assert_eq!(d.last_rollout.unwrap().message, reason);
    match sim.log.last() {
        Some(Transition::RolledBack { reason: why, .. }) => assert_eq!(why, reason),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_canary_whose_fake_share_matches_stables_is_promoted() {
    let mut sim = Sim::new(Some(v(1)));
    // 36 % fake against stable's 30 %: within the 20-point tolerance.
    sim.traffic = Traffic { fake: 36, ..GOOD };
    sim.reconcile(Some(&v(2)));
    sim.reconcile(Some(&v(2)));
    sim.wait(60);
    sim.reconcile(Some(&v(2)));
    sim.reconcile(Some(&v(2)));
    sim.wait(120);
    sim.reconcile(Some(&v(2)));
    let d = sim.finish_promotion(&v(2));
    assert_eq!(d.last_rollout.unwrap().outcome, RolloutOutcome::Promoted);
    let summaries: Vec<&str> = sim
        .log
        .iter()
        .filter_map(|t| match t {
            Transition::StepPassed { summary, .. } => Some(summary.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(summaries.len(), 2);
    for s in summaries {
        assert!(s.ends_with("; fake share 36% vs stable 30%"), "{s}");
    }
}

#[test]
fn too_few_verdicts_pass_the_step_without_comparing_fake_shares() {
    let mut sim = Sim::new(Some(v(1)));
    // Enough requests for error rate and latency, but nearly all fake on only 40 verdicts.
    sim.traffic = Traffic {
        requests: 40,
        errors: 0,
        slow: 0,
        fake: 40,
    };
    let d = sim.judge_first_step(&v(2));
    assert_eq!(d.rollout.unwrap().step, 1, "passed, not held or failed");
    match &d.transitions[0] {
        Transition::StepPassed { summary, .. } => assert!(
            summary.ends_with(
                "; fake share not compared: canary 40, stable 300 verdicts, 50 needed each"
            ),
            "{summary}"
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pointing_the_alias_back_aborts_and_a_newer_version_supersedes() {
    let mut sim = Sim::new(Some(v(1)));
    sim.reconcile(Some(&v(2)));
    let d = sim.reconcile(Some(&v(1)));
    assert_eq!(d.rollout, None);
    assert_eq!(d.canary, None);
    assert_eq!(d.last_rollout.unwrap().outcome, RolloutOutcome::Aborted);

    sim.reconcile(Some(&v(2)));
    sim.reconcile(Some(&v(2)));
    let d = sim.reconcile(Some(&v(3)));
    let r = d.rollout.unwrap();
    assert_eq!(
        (r.canary_version.as_str(), r.stable_version.as_str(), r.step),
        ("3", "1", 0)
    );
    assert_eq!(r.phase, RolloutPhase::Scaling);
    assert_eq!(d.last_rollout.unwrap().outcome, RolloutOutcome::Aborted);
    assert_eq!(
        sim.reasons()[sim.log.len() - 3..],
        ["RolloutAborted", "RolloutStarted", "CanaryStepStarted"]
    );
}

#[test]
fn promotion_that_never_completes_rolls_back() {
    let mut sim = Sim::new(Some(v(1)));
    sim.hold_in_promoting(&v(2));
    sim.wait(600);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(
        d.rollout.unwrap().phase,
        RolloutPhase::Promoting,
        "still within the deadline"
    );
    sim.wait(1);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.stable_model, Some(v(1)));
    let last = d.last_rollout.unwrap();
    assert_eq!(last.outcome, RolloutOutcome::RolledBack);
    assert_eq!(
        last.message,
        "stable pods did not become ready on the new version within 10m"
    );
}

#[test]
fn autoscaled_detectors_leave_stable_replicas_to_the_hpa() {
    let mut sim = Sim::new(Some(v(1)));
    sim.scale = Scale::Autoscaled { current: 6 };
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.stable_replicas, None);
    assert_eq!(d.canary.unwrap().replicas, 1);
}

#[test]
fn zero_replicas_update_in_place() {
    let mut sim = Sim::new(Some(v(1)));
    sim.scale = Scale::Fixed(0);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.canary, None);
    assert_eq!(d.stable_model, Some(v(2)));
}

#[test]
fn human_durations() {
    assert_eq!(human(Duration::from_secs(45)), "45s");
    assert_eq!(human(Duration::from_secs(600)), "10m");
    assert_eq!(human(Duration::from_secs(90)), "1m30s");
    assert_eq!(human(Duration::from_secs(7260)), "2h1m");
}

// Manual control (`auralguard.io/{promote,abort,retry,pause}`).

fn token(t: &str) -> Option<String> {
    Some(t.to_string())
}

/// Starts a rollout to v2 and opens the first step's window.
fn analyzing_step_1(sim: &mut Sim) {
    sim.reconcile(Some(&v(2)));
    sim.reconcile(Some(&v(2)));
    let r = sim.status.rollout.as_ref().unwrap();
    assert_eq!((r.step, r.phase), (0, RolloutPhase::Analyzing));
}

fn count(sim: &Sim, reason: &str) -> usize {
    sim.reasons().iter().filter(|r| **r == reason).count()
}

#[test]
fn promote_mid_canary_skips_the_remaining_steps_and_analysis() {
    let mut sim = Sim::new(Some(v(1)));
    // Traffic that would fail the analysis: a promotion must not judge it.
    sim.traffic = ERRORS;
    analyzing_step_1(&mut sim);
    assert_eq!(sim.scrapes, 1);
    sim.wait(30);
    sim.commands.promote = token("t1");
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(sim.scrapes, 1, "no analysis on a manual promotion");
    let r = d.rollout.clone().unwrap();
    assert_eq!(
        (r.phase, r.promoted_manually),
        (RolloutPhase::Promoting, true)
    );
    assert_eq!(
        (d.stable_model.clone(), d.stable_replicas),
        (Some(v(2)), Some(3)),
        "beside the canary's pod"
    );
    assert_eq!(
        d.serving,
        Some(v(1)),
        "not promoted until stable is rolled out"
    );
    assert!(d.canary.is_some(), "the canary serves until then");
    assert_eq!(
        d.transitions,
        [Transition::ManualPromote {
            version: "2".into(),
            step: 1,
            of: 2,
            token: "t1".into()
        }]
    );
    assert!(!d.transitions[0].is_warning());
    assert_eq!(d.transitions[0].action(), "ManualControl");
    let cmd = d.last_command.clone().unwrap();
    assert_eq!(
        (cmd.command, cmd.token.as_deref(), cmd.result),
        (ManualCommand::Promote, Some("t1"), CommandResult::Applied)
    );
    assert_eq!(
        cmd.message,
        "promoting model version 2 at step 1 of 2, skipping the remaining steps and their analysis"
    );
    assert_eq!(cmd.at, Time(sim.now));
    assert_eq!(d.handled.promote.as_deref(), Some("t1"));

    // Stable rolled out on v2: promoted, the canary goes.
    let d = sim.finish_promotion(&v(2));
    assert_eq!((d.serving.clone(), d.canary.clone()), (Some(v(2)), None));
    assert_eq!(d.rollout, None);
    let last = d.last_rollout.unwrap();
    assert_eq!(last.outcome, RolloutOutcome::Promoted);
    assert_eq!(
        last.message,
        "promoted by hand (auralguard.io/promote) before every canary step had passed"
    );
    assert_eq!(
        sim.reasons(),
        [
            "RolloutStarted",
            "CanaryStepStarted",
            "ManualPromote",
            "RolloutPromoted"
        ]
    );
    assert!(sim.reconcile(Some(&v(2))).transitions.is_empty());
}

use auralguard_crds::{CommandResult, ManualCommand};

#[test]
fn a_command_acts_once_per_token_across_reconciles_and_restarts() {
    let mut sim = Sim::new(Some(v(1)));
    sim.restart_every_time = true;
    sim.commands.promote = token("t1");
    // Nothing to promote: ignored once, not on every reconcile.
    let d = sim.reconcile(Some(&v(1)));
    assert_eq!(sim.reasons(), ["ManualCommandIgnored"]);
    assert!(d.transitions[0].is_warning());
    for _ in 0..3 {
        assert!(sim.reconcile(Some(&v(1))).transitions.is_empty());
    }
    // A rollout starts later: the old token does not promote it.
    analyzing_step_1(&mut sim);
    assert_eq!(count(&sim, "ManualPromote"), 0);
    // A new token does, once.
    sim.commands.promote = token("t2");
    sim.reconcile(Some(&v(2)));
    sim.finish_promotion(&v(2));
    assert_eq!(sim.status.serving_version.as_deref(), Some("2"));
    assert_eq!(count(&sim, "ManualPromote"), 1);
    // The next rollout, with the annotation still at t2, runs its steps.
    sim.reconcile(Some(&v(3)));
    sim.reconcile(Some(&v(3)));
    let r = sim.status.rollout.as_ref().unwrap();
    assert_eq!(
        (r.canary_version.as_str(), r.phase, r.promoted_manually),
        ("3", RolloutPhase::Analyzing, false)
    );
    assert_eq!(count(&sim, "ManualPromote"), 1);
    assert_eq!(sim.status.handled_commands.promote.as_deref(), Some("t2"));
}

#[test]
fn abort_mid_canary_rolls_back_and_blocks_the_version_until_retried() {
    let mut sim = Sim::new(Some(v(1)));
    analyzing_step_1(&mut sim);
    sim.wait(60);
    sim.reconcile(Some(&v(2)));
    sim.reconcile(Some(&v(2)));
    let r = sim.status.rollout.as_ref().unwrap();
    assert_eq!((r.step, r.phase), (1, RolloutPhase::Analyzing));

    sim.commands.abort = token("a1");
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!((d.rollout.clone(), d.canary.clone()), (None, None));
    assert_eq!(
        (d.serving.clone(), d.stable_model.clone(), d.stable_replicas),
        (Some(v(1)), Some(v(1)), Some(4))
    );
    let last = d.last_rollout.clone().unwrap();
    assert_eq!(
        (
            last.outcome,
            last.version.as_str(),
            last.from_version.as_str()
        ),
        (RolloutOutcome::ManuallyAborted, "2", "1")
    );
    assert!(last.blocks());
    assert!(
        last.message
            .starts_with("aborted by auralguard.io/abort at step 2"),
        "{}",
        last.message
    );
    let t = &d.transitions[0];
    assert_eq!(
        (t.reason(), t.is_warning(), t.rollout_metric()),
        ("ManualAbort", true, Some("aborted_manually"))
    );
    assert_eq!(d.transitions.len(), 1);

    // The source still points at v2: not tried again, however often reconciled.
    for _ in 0..3 {
        sim.wait(60);
        let d = sim.reconcile(Some(&v(2)));
        assert!(d.transitions.is_empty());
        assert_eq!(d.rollout, None);
    }

    // Retry: v2 gets a fresh canary from step 1 in the same reconcile.
    sim.commands.retry = token("r1");
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(
        reasons_of(&d),
        ["ManualRetry", "RolloutStarted", "CanaryStepStarted"]
    );
    let r = d.rollout.unwrap();
    assert_eq!(
        (r.canary_version.as_str(), r.step, r.phase),
        ("2", 0, RolloutPhase::Scaling)
    );
    let last = d.last_rollout.unwrap();
    assert!(last.retried && !last.blocks(), "{last:?}");
    assert_eq!(sim.status.handled_commands.abort.as_deref(), Some("a1"));
    // The abort token is still on the detector: the new canary is not aborted again.
    sim.reconcile(Some(&v(2)));
    assert!(sim.status.rollout.is_some());
    assert_eq!(count(&sim, "ManualAbort"), 1);
}

#[test]
fn retry_unblocks_a_rolled_back_version() {
    let mut sim = Sim::new(Some(v(1)));
    sim.traffic = ERRORS;
    analyzing_step_1(&mut sim);
    sim.wait(60);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.last_rollout.unwrap().outcome, RolloutOutcome::RolledBack);
    assert_eq!(sim.reconcile(Some(&v(2))).rollout, None, "blocked");

    sim.traffic = GOOD;
    sim.commands.retry = token("r1");
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(
        d.transitions[0],
        Transition::ManualRetry {
            version: "2".into(),
            token: "r1".into()
        }
    );
    assert_eq!(d.rollout.unwrap().canary_version, "2");
    assert_eq!(
        d.last_command.unwrap().message,
        "model version 2 is no longer blocked"
    );
    // This time the canary is good and is promoted.
    sim.reconcile(Some(&v(2)));
    sim.wait(60);
    sim.reconcile(Some(&v(2)));
    sim.reconcile(Some(&v(2)));
    sim.wait(120);
    sim.reconcile(Some(&v(2)));
    let d = sim.finish_promotion(&v(2));
    let last = d.last_rollout.unwrap();
    assert_eq!(
        (last.outcome, last.retried),
        (RolloutOutcome::Promoted, false)
    );
    assert_eq!(d.serving, Some(v(2)));
    assert_eq!(count(&sim, "ManualRetry"), 1);
}

#[test]
fn commands_that_make_no_sense_now_are_ignored_with_a_warning_and_marked_handled() {
    let mut sim = Sim::new(Some(v(1)));
    sim.commands = Commands {
        promote: token("p"),
        abort: token("a"),
        retry: token("r"),
        pause: false,
    };
    let d = sim.reconcile(Some(&v(1)));
    let ignored = |command, token: &str, reason: &str| Transition::CommandIgnored {
        command,
        token: token.into(),
        reason: reason.into(),
    };
    assert_eq!(
        d.transitions,
        [
            ignored(ManualCommand::Abort, "a", "no rollout is running"),
            ignored(
                ManualCommand::Retry,
                "r",
                "no rolled-back or aborted model version is blocked"
            ),
            ignored(ManualCommand::Promote, "p", "no rollout is running"),
        ]
    );
    assert!(d.transitions.iter().all(Transition::is_warning));
    assert_eq!(
        d.transitions[2].note(),
        "promote ignored (auralguard.io/promote=p): no rollout is running"
    );
    assert_eq!(
        d.handled,
        HandledCommands {
            promote: token("p"),
            abort: token("a"),
            retry: token("r"),
        }
    );
    let cmd = d.last_command.clone().unwrap();
    assert_eq!(
        (cmd.command, cmd.result, cmd.message.as_str()),
        (
            ManualCommand::Promote,
            CommandResult::Ignored,
            "ignored: no rollout is running"
        )
    );
    assert_eq!((d.serving, d.rollout), (Some(v(1)), None));
    assert!(sim.reconcile(Some(&v(1))).transitions.is_empty());

    // Promote while the canary is already being promoted.
    sim.hold_in_promoting(&v(2));
    sim.commands.promote = token("p2");
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(
        d.transitions,
        [ignored(
            ManualCommand::Promote,
            "p2",
            "model version 2 is already being promoted"
        )]
    );
    assert!(!d.rollout.unwrap().promoted_manually);
}

#[test]
fn pause_holds_the_step_and_its_analysis_and_resume_keeps_the_time_left() {
    let mut sim = Sim::new(Some(v(1)));
    sim.restart_every_time = true;
    analyzing_step_1(&mut sim);
    sim.wait(20);
    sim.commands.pause = true;
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(reasons_of(&d), ["Paused"]);
    assert!(d.paused && d.holding);
    let r = d.rollout.clone().unwrap();
    assert_eq!((r.step, r.phase), (0, RolloutPhase::Analyzing));
    assert_eq!(r.paused_at, Some(Time(sim.now)));
    assert_eq!(d.canary.as_ref().map(|c| c.replicas), Some(1), "kept");
    assert_eq!(d.requeue_after, None);
    assert_eq!(
        d.last_command.map(|c| (c.command, c.result)),
        Some((ManualCommand::Pause, CommandResult::Applied))
    );

    // Well past the step's pause and the progress deadline: nothing is judged or scraped.
    let scrapes = sim.scrapes;
    sim.wait(900);
    let d = sim.reconcile(Some(&v(2)));
    assert!(d.transitions.is_empty());
    assert_eq!(
        d.rollout.as_ref().map(|r| (r.step, r.phase)),
        Some((0, RolloutPhase::Analyzing))
    );
    assert!(
        d.waiting
            .as_deref()
            .unwrap()
            .starts_with("paused (auralguard.io/pause)"),
        "{:?}",
        d.waiting
    );
    // A source change is held too.
    let d = sim.reconcile(Some(&v(3)));
    assert!(d.transitions.is_empty());
    assert_eq!(d.canary.unwrap().model, v(2));
    assert_eq!(sim.scrapes, scrapes);

    // Resume: the window has the 40 s it had left.
    sim.commands.pause = false;
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(reasons_of(&d), ["Resumed"]);
    assert!(!d.paused && !d.holding);
    assert_eq!(d.requeue_after, Some(Duration::from_secs(40)));
    assert_eq!(d.rollout.unwrap().paused_at, None);
    sim.wait(39);
    let d = sim.reconcile(Some(&v(2)));
    assert!(d.transitions.is_empty());
    assert_eq!(sim.scrapes, scrapes);
    sim.wait(1);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(reasons_of(&d), ["CanaryStepPassed", "CanaryStepStarted"]);
    assert_eq!(sim.scrapes, scrapes + 1);
}

#[test]
fn the_progress_deadline_does_not_run_while_paused() {
    let mut sim = Sim::new(Some(v(1)));
    sim.stuck = true;
    sim.reconcile(Some(&v(2)));
    sim.wait(500);
    sim.commands.pause = true;
    sim.reconcile(Some(&v(2)));
    sim.wait(1000);
    let d = sim.reconcile(Some(&v(2)));
    assert!(d.rollout.is_some() && d.transitions.is_empty());
    sim.commands.pause = false;
    let d = sim.reconcile(Some(&v(2)));
    assert!(d.rollout.is_some(), "500 s of the 600 s deadline had run");
    sim.wait(100);
    assert!(sim.reconcile(Some(&v(2))).rollout.is_some());
    sim.wait(1);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.rollout, None);
    assert_eq!(
        d.last_rollout.unwrap().message,
        "canary pods were not ready within 10m"
    );
}

#[test]
fn pause_holds_a_new_version_but_not_the_first_deployment() {
    let mut sim = Sim::new(None);
    sim.commands.pause = true;
    let d = sim.reconcile(Some(&v(1)));
    assert_eq!(d.stable_model, Some(v(1)));
    assert_eq!(sim.reasons(), ["Paused", "ModelDeployed"]);
    assert!(d.paused && !d.holding);

    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(
        (d.rollout.clone(), d.stable_model.clone()),
        (None, Some(v(1)))
    );
    assert!(d.holding && d.transitions.is_empty());
    assert_eq!(
        d.waiting.as_deref(),
        Some(
            "paused (auralguard.io/pause): model version 2 is rolled out once the pause is lifted"
        )
    );
    // An in-place update is held as well.
    sim.policy.steps.clear();
    assert_eq!(sim.reconcile(Some(&v(2))).stable_model, Some(v(1)));

    sim.policy = policy();
    sim.commands.pause = false;
    sim.reconcile(Some(&v(2)));
    assert_eq!(
        sim.reasons()[2..],
        ["Resumed", "RolloutStarted", "CanaryStepStarted"]
    );
}

#[test]
fn promote_while_paused_moves_stable_and_completes_after_the_resume() {
    let mut sim = Sim::new(Some(v(1)));
    analyzing_step_1(&mut sim);
    sim.commands.pause = true;
    sim.commands.promote = token("p1");
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(reasons_of(&d), ["Paused", "ManualPromote"]);
    assert_eq!(d.stable_model, Some(v(2)));
    assert_eq!(d.rollout.unwrap().phase, RolloutPhase::Promoting);
    assert!(d
        .last_command
        .unwrap()
        .message
        .ends_with("; the promotion completes when the pause is lifted"));
    // Stable is on v2 now, but the paused machine records nothing.
    sim.wait(700);
    let d = sim.reconcile(Some(&v(2)));
    assert!(d.transitions.is_empty());
    assert_eq!(d.serving, Some(v(1)));
    sim.commands.pause = false;
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(reasons_of(&d), ["Resumed", "RolloutPromoted"]);
    assert_eq!(d.serving, Some(v(2)));
}

#[test]
fn abort_and_retry_together_restart_the_canary_from_step_one() {
    let mut sim = Sim::new(Some(v(1)));
    analyzing_step_1(&mut sim);
    sim.wait(60);
    sim.reconcile(Some(&v(2)));
    assert_eq!(sim.status.rollout.as_ref().unwrap().step, 1);
    sim.commands.abort = token("x");
    sim.commands.retry = token("x");
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(
        reasons_of(&d),
        [
            "ManualAbort",
            "ManualRetry",
            "RolloutStarted",
            "CanaryStepStarted"
        ]
    );
    let r = d.rollout.unwrap();
    assert_eq!((r.step, r.phase), (0, RolloutPhase::Scaling));
    assert_eq!(d.canary.unwrap().weight, 10);
}

const SCRAPE_ERROR: &str = "canary metrics: scraping pod canary-0 at \
                            http://10.0.0.9:8080/metrics: connection refused";

/// The one transition of a decision, which must be a tolerated scrape failure; returns its note.
fn scrape_failed_note(d: &Decision) -> String {
    match &d.transitions[..] {
        [t @ Transition::ScrapeFailed { .. }] => {
            assert!(t.is_warning());
            assert_eq!(t.reason(), "AnalysisScrapeFailed");
            t.note()
        }
        other => panic!("{other:?}"),
    }
}

/// Review of the rollout analysis, point 1: a scrape that fails while a window closes keeps the
/// step (same window, same baseline), is counted in status with its error, is a Warning Event and
/// is retried after the check interval; the next good scrape judges the window and clears the
/// count. Status is re-read from JSON every time, as after restarts.
#[test]
fn failed_scrapes_below_the_limit_hold_the_step_and_a_good_scrape_resets_the_count() {
    let mut sim = Sim::new(Some(v(1)));
    sim.restart_every_time = true;
    sim.reconcile(Some(&v(2)));
    sim.reconcile(Some(&v(2)));
    let baseline = sim.status.rollout.as_ref().unwrap().baseline.clone();
    sim.wait(60);
    sim.scrape_error = Some(SCRAPE_ERROR.into());
    for n in 1..=3 {
        let d = sim.reconcile(Some(&v(2)));
        let r = d.rollout.clone().unwrap();
        assert_eq!(
            (r.step, r.phase, r.failed_scrapes),
            (0, RolloutPhase::Analyzing, n)
        );
        assert_eq!(r.last_scrape_error.as_deref(), Some(SCRAPE_ERROR));
        assert_eq!(r.baseline, baseline, "the same window stays open");
        assert!(d.canary.is_some());
        assert_eq!(d.requeue_after, Some(Duration::from_secs(10)));
        let text = format!(
            "metrics scrape failed ({n} of 3 failures tolerated), retrying in 10s: {SCRAPE_ERROR}"
        );
        assert_eq!(d.waiting.as_deref(), Some(text.as_str()));
        assert_eq!(scrape_failed_note(&d), format!("canary step 1: {text}"));
        sim.wait(10);
    }
    assert_eq!(sim.scrapes, 4);

    // The pods answer again: the window is judged (from the same baseline) and passes.
    sim.scrape_error = None;
    let d = sim.reconcile(Some(&v(2)));
    let r = d.rollout.clone().unwrap();
    assert_eq!((r.step, r.phase), (1, RolloutPhase::Scaling));
    assert_eq!((r.failed_scrapes, r.last_scrape_error), (0, None));
    assert_eq!(d.transitions[0].reason(), "CanaryStepPassed");
    assert!(
        d.transitions[0].note().contains("400 requests"),
        "the window ran from the baseline to the good scrape: {}",
        d.transitions[0].note()
    );

    // A failure while step 2's window opens stays in Scaling; the next good scrape opens the
    // window with a clean count.
    sim.scrape_error = Some(SCRAPE_ERROR.into());
    let d = sim.reconcile(Some(&v(2)));
    let r = d.rollout.clone().unwrap();
    assert_eq!(
        (r.step, r.phase, r.failed_scrapes),
        (1, RolloutPhase::Scaling, 1)
    );
    assert_eq!(r.baseline, None);
    assert!(scrape_failed_note(&d).starts_with("canary step 2: metrics scrape failed (1 of 3"));
    sim.scrape_error = None;
    let d = sim.reconcile(Some(&v(2)));
    let r = d.rollout.clone().unwrap();
    assert_eq!(
        (r.step, r.phase, r.failed_scrapes),
        (1, RolloutPhase::Analyzing, 0)
    );
    assert_eq!(r.last_scrape_error, None);
    assert_eq!(r.baseline, Some(sim.snapshot()));
    assert!(d.transitions.is_empty());
}

/// Review of the rollout analysis, point 1: one failed scrape more than `analysis.failureLimit`
/// in a row rolls back, naming the last error, also while a window opens.
#[test]
fn failed_scrapes_beyond_the_limit_roll_back_naming_the_last_error() {
    let mut sim = Sim::new(Some(v(1)));
    sim.policy.analysis.failure_limit = 2;
    sim.reconcile(Some(&v(2)));
    // The canary is ready, but its window cannot open.
    sim.scrape_error = Some(SCRAPE_ERROR.into());
    for n in 1..=2 {
        let d = sim.reconcile(Some(&v(2)));
        let r = d.rollout.clone().unwrap();
        assert_eq!((r.phase, r.failed_scrapes), (RolloutPhase::Scaling, n));
        sim.wait(10);
    }
    sim.scrape_error = Some("canary metrics: the pod list timed out".into());
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!((d.rollout, d.canary), (None, None));
    assert_eq!(d.stable_model, Some(v(1)));
    let last = d.last_rollout.unwrap();
    assert_eq!(last.outcome, RolloutOutcome::RolledBack);
    assert_eq!(
        last.message,
        "canary analysis failed at step 1: 3 metric scrapes failed in a row \
         (analysis.failureLimit 2); last error: canary metrics: the pod list timed out"
    );
    assert_eq!(
        sim.reasons(),
        [
            "RolloutStarted",
            "CanaryStepStarted",
            "AnalysisScrapeFailed",
            "AnalysisScrapeFailed",
            "RolloutRolledBack"
        ]
    );
}

#[test]
fn a_long_scrape_error_is_shortened_for_status_and_events() {
    let mut sim = Sim::new(Some(v(1)));
    sim.reconcile(Some(&v(2)));
    sim.scrape_error = Some("é".repeat(1000));
    let d = sim.reconcile(Some(&v(2)));
    let stored = d.rollout.clone().unwrap().last_scrape_error.unwrap();
    assert_eq!(
        stored,
        format!("{}…", "é".repeat(200)),
        "400 bytes, whole characters"
    );
    assert!(
        scrape_failed_note(&d).len() < 1024,
        "an Event note is at most 1 KiB"
    );
}

/// The stable pods fail as often as the canary: 28 % of their answers are 5xx.
const STABLE_OUTAGE: Traffic = Traffic {
    requests: 300,
    errors: 84,
    slow: 0,
    fake: 90,
};

const OUTAGE: &str = "canary and stable both failing (canary 20.00%, stable 28.00% errors)";

/// Review of the rollout analysis, point 2: the canary's errors are shared by the stable pods, so
/// the window is inconclusive: a new window of the same step opens from the closing scrape, and
/// once the outage is over the step is judged on the new window alone.
#[test]
fn a_shared_outage_is_inconclusive_and_the_step_is_judged_on_a_new_window() {
    let mut sim = Sim::new(Some(v(1)));
    sim.traffic = ERRORS;
    sim.stable_traffic = STABLE_OUTAGE;
    let d = sim.judge_first_step(&v(2));
    let r = d.rollout.clone().unwrap();
    assert_eq!((r.step, r.phase), (0, RolloutPhase::Analyzing));
    assert_eq!(r.inconclusive_windows, 1);
    assert_eq!(
        r.baseline,
        Some(sim.snapshot()),
        "the closing scrape opens the next window"
    );
    assert_eq!(r.phase_started_at, Time(sim.now));
    assert_eq!(d.requeue_after, Some(Duration::from_secs(60)));
    assert!(d.canary.is_some());
    assert_eq!(
        d.waiting.as_deref(),
        Some(
            format!(
                "{OUTAGE}: not blamed on the canary; observing again for 1m (inconclusive \
                 window 1 of 3)"
            )
            .as_str()
        )
    );
    match &d.transitions[..] {
        [t @ Transition::WindowInconclusive { .. }] => {
            assert_eq!((t.reason(), t.is_warning()), ("AnalysisInconclusive", true));
            assert_eq!(
                t.note(),
                format!(
                    "canary step 1: {OUTAGE}: not blamed on the canary; observing again \
                     (inconclusive window 1 of 3)"
                )
            );
        }
        other => panic!("{other:?}"),
    }

    // The outage is over: the new window holds only good traffic and passes.
    sim.traffic = GOOD;
    sim.stable_traffic = STABLE;
    sim.wait(60);
    let d = sim.reconcile(Some(&v(2)));
    let r = d.rollout.clone().unwrap();
    assert_eq!(
        (r.step, r.phase, r.inconclusive_windows),
        (1, RolloutPhase::Scaling, 0)
    );
    assert!(
        d.transitions[0]
            .note()
            .starts_with("canary step 1 passed: 100 requests, error rate 1.00%"),
        "{}",
        d.transitions[0].note()
    );
}

/// The stable pods recover but the canary keeps failing: now it is the canary's fault.
#[test]
fn a_canary_failing_alone_after_a_shared_outage_is_rolled_back() {
    let mut sim = Sim::new(Some(v(1)));
    sim.traffic = ERRORS;
    sim.stable_traffic = STABLE_OUTAGE;
    sim.judge_first_step(&v(2));
    sim.stable_traffic = STABLE;
    sim.wait(60);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(
        d.last_rollout.unwrap().message,
        "canary analysis failed at step 1: error rate 20.00% (20 of 100 requests) exceeds 5.00%"
    );
}

/// Review of the rollout analysis, point 2: a step tolerates `analysis.inconclusiveLimit`
/// inconclusive windows, and the one after them rolls back.
#[test]
fn inconclusive_windows_beyond_the_limit_roll_back() {
    let mut sim = Sim::new(Some(v(1)));
    sim.restart_every_time = true;
    sim.traffic = ERRORS;
    sim.stable_traffic = STABLE_OUTAGE;
    sim.judge_first_step(&v(2));
    for windows in 2..=3 {
        sim.wait(60);
        let d = sim.reconcile(Some(&v(2)));
        assert_eq!(d.rollout.unwrap().inconclusive_windows, windows);
    }
    sim.wait(60);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!((d.rollout, d.canary), (None, None));
    assert_eq!(
        d.last_rollout.unwrap().message,
        format!(
            "canary analysis failed at step 1: could not judge the canary: {OUTAGE} in 4 \
             observation windows (analysis.inconclusiveLimit 3)"
        )
    );
    assert_eq!(count(&sim, "AnalysisInconclusive"), 3);
    assert_eq!(count(&sim, "RolloutRolledBack"), 1);
}

/// What happens to the canary's pods during a window.
type Crash = fn(&mut Sim);

/// Review of the rollout analysis, point 3: a canary pod that crashed during the window counts
/// from zero again (here its fresh counters even look good), one that is not ready is not
/// scraped at all, and one that was replaced covers part of the window: each fails the step,
/// and a restart is named before the error rate.
#[test]
fn a_restarted_unready_or_replaced_canary_pod_fails_the_step() {
    let cases: [(&str, Crash); 4] = [
        (
            "canary pod canary-0 restarted 2 times during the step",
            |sim| {
                sim.counters = PodCounters {
                    pod: "canary-0".into(),
                    restarts: Some(2),
                    ..PodCounters::default()
                };
            },
        ),
        (
            "canary pod canary-0 restarted 1 time during the step",
            |sim| {
                sim.traffic = ERRORS;
                sim.counters.restarts = Some(1);
            },
        ),
        (
            "1 of 2 canary pods not ready at the end of the step",
            |sim| {
                sim.unready = 1;
            },
        ),
        (
            "canary pod canary-0 was replaced by canary-1 during the step",
            |sim| {
                sim.counters.pod = "canary-1".into();
            },
        ),
    ];
    for (why, crash) in cases {
        let mut sim = Sim::new(Some(v(1)));
        sim.reconcile(Some(&v(2)));
        sim.reconcile(Some(&v(2)));
        crash(&mut sim);
        sim.wait(60);
        let d = sim.reconcile(Some(&v(2)));
        assert_eq!((d.rollout, d.canary), (None, None), "{why}");
        let last = d.last_rollout.unwrap();
        assert_eq!(last.outcome, RolloutOutcome::RolledBack);
        assert_eq!(
            last.message,
            format!("canary analysis failed at step 1: {why}")
        );
    }
}

/// Analysis results that leave a rollout running are counted by result; a failed analysis is
/// counted once, as the rollout's `rolled_back` outcome, not again here.
#[test]
fn analysis_results_that_leave_a_rollout_running_have_a_metric_label() {
    let passed = Transition::StepPassed {
        step: 1,
        summary: "100 requests".into(),
    };
    let inconclusive = Transition::WindowInconclusive {
        step: 1,
        windows: 1,
        limit: 3,
        reason: "both failing".into(),
    };
    let scrape = Transition::ScrapeFailed {
        step: 1,
        failures: 1,
        limit: 3,
        retry_in: Duration::from_secs(10),
        error: "connection refused".into(),
    };
    let rolled_back = Transition::RolledBack {
        version: "2".into(),
        serving: "1".into(),
        reason: "error rate".into(),
    };
    assert_eq!(
        [&passed, &inconclusive, &scrape, &rolled_back].map(Transition::analysis_metric),
        [
            Some("passed"),
            Some("inconclusive"),
            Some("scrape_failed"),
            None
        ]
    );
    assert_eq!(rolled_back.rollout_metric(), Some("rolled_back"));
}
