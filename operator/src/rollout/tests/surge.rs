//! Serving capacity during rollouts (`spec.rollout.maxSurge`). Here the simulator's pods are
//! played by [`Cluster`], a small Deployment controller: pods it creates are ready only after
//! the next reconcile's wait, old-template pods go only as the Deployment's rolling bounds
//! ([`crate::builders::deployment::rolling_bounds`]) allow, and every state between two
//! controller passes is recorded, so the tests see the ready pods and the pods in existence at
//! each moment, not only what the operator planned.

use super::*;
use crate::builders::deployment::rolling_bounds;

/// One Deployment's pods.
#[derive(Clone, Debug)]
struct FakeDeployment {
    /// The model of its current template.
    model: String,
    /// `spec.replicas`.
    replicas: i32,
    /// Ready pods of older templates.
    old: i32,
    /// Pods of the current template.
    new: i32,
    /// How many of those are ready.
    ready: i32,
}

impl FakeDeployment {
    fn set(&mut self, model: &str, replicas: i32) {
        if model != self.model {
            // A new template: the ready pods become old ones, the starting ones are dropped.
            self.old += self.ready;
            self.new = 0;
            self.ready = 0;
            self.model = model.to_string();
        }
        self.replicas = replicas;
    }

    /// One pass of the Deployment controller: old pods go while enough stay available, new
    /// ones start within the surge; a smaller spec drops starting pods first.
    fn control(&mut self, (surge, unavailable): (i32, i32)) {
        let min_available = (self.replicas - unavailable).max(0);
        let removable = (self.old + self.ready - min_available).clamp(0, self.old);
        self.old -= removable;
        if self.new > self.replicas {
            let starting = self.new - self.ready;
            let drop = self.new - self.replicas;
            self.ready -= drop - starting.min(drop);
            self.new = self.replicas;
        } else {
            let room = (self.replicas + surge - self.old - self.new).max(0);
            self.new += room.min(self.replicas - self.new);
        }
    }

    fn start(&mut self) {
        self.ready = self.new;
    }

    fn pod_set(&self) -> PodSet {
        PodSet {
            model: Some(self.model.clone()),
            replicas: self.replicas,
            ready: self.old + self.ready,
            rolled_out: self.old == 0 && self.new == self.replicas && self.ready == self.replicas,
            observed: true,
            old_pods: self.old,
        }
    }
}

/// The two Deployments and what was seen of them.
pub(super) struct Cluster {
    bounds: (i32, i32),
    stable: Option<FakeDeployment>,
    canary: Option<FakeDeployment>,
    /// `(ready pods, pods)` of both Deployments together after every controller pass.
    seen: Vec<(i32, i32)>,
}

impl Cluster {
    /// Time passes before a reconcile: the pods that were starting are ready (unless stuck) and
    /// the controllers go on.
    pub(super) fn settle(&mut self, canary_stuck: bool, stable_stuck: bool) {
        if let Some(c) = self.canary.as_mut().filter(|_| !canary_stuck) {
            c.start();
        }
        if let Some(s) = self.stable.as_mut().filter(|_| !stable_stuck) {
            s.start();
        }
        self.control();
    }

    /// A decision is applied: specs change, the controllers act at once.
    pub(super) fn apply(&mut self, d: &Decision) {
        if let Some(m) = &d.stable_model {
            let s = self.stable.get_or_insert_with(|| FakeDeployment {
                model: m.uri.clone(),
                replicas: 0,
                old: 0,
                new: 0,
                ready: 0,
            });
            let replicas = d.stable_replicas.unwrap_or(s.replicas);
            s.set(&m.uri, replicas);
        }
        match &d.canary {
            Some(plan) => {
                let c = self.canary.get_or_insert_with(|| FakeDeployment {
                    model: plan.model.uri.clone(),
                    replicas: 0,
                    old: 0,
                    new: 0,
                    ready: 0,
                });
                c.set(&plan.model.uri, plan.replicas);
            }
            None => self.canary = None,
        }
        self.control();
    }

    fn control(&mut self) {
        for d in [self.stable.as_mut(), self.canary.as_mut()]
            .into_iter()
            .flatten()
        {
            d.control(self.bounds);
        }
        let sum = |f: fn(&FakeDeployment) -> i32| {
            self.stable
                .iter()
                .chain(self.canary.iter())
                .map(f)
                .sum::<i32>()
        };
        self.seen
            .push((sum(|d| d.old + d.ready), sum(|d| d.old + d.new)));
    }

    pub(super) fn stable(&self) -> Option<PodSet> {
        self.stable.as_ref().map(FakeDeployment::pod_set)
    }

    pub(super) fn canary(&self) -> Option<PodSet> {
        self.canary.as_ref().map(FakeDeployment::pod_set)
    }

    fn min_ready(&self) -> i32 {
        self.seen.iter().map(|s| s.0).min().unwrap_or(0)
    }

    fn max_pods(&self) -> i32 {
        self.seen.iter().map(|s| s.1).max().unwrap_or(0)
    }
}

/// A simulator serving v1 on `replicas` ready pods, with `max_surge` spare pods, whose pods are
/// played by a [`Cluster`].
fn sim(replicas: i32, max_surge: i32) -> Sim {
    let mut sim = Sim::new(Some(v(1)));
    sim.scale = Scale::Fixed(replicas);
    sim.policy.max_surge = max_surge;
    sim.cluster = Some(Cluster {
        bounds: rolling_bounds(max_surge),
        stable: Some(FakeDeployment {
            model: v(1).uri,
            replicas,
            old: 0,
            new: replicas,
            ready: replicas,
        }),
        canary: None,
        seen: Vec::new(),
    });
    sim.reconcile(Some(&v(1)));
    sim
}

impl Sim {
    fn seen(&self) -> &Cluster {
        self.cluster.as_ref().expect("a simulated cluster")
    }

    /// Reconciles (each after `secs` of traffic) until the rollout to `to` ends; returns every
    /// decision.
    fn run_to_the_end(&mut self, to: &ModelRef, secs: i64) -> Vec<Decision> {
        let mut decisions = vec![self.reconcile(Some(to))];
        while self.status.rollout.is_some() {
            assert!(decisions.len() < 100, "the rollout does not end");
            self.wait(secs);
            decisions.push(self.reconcile(Some(to)));
        }
        decisions
    }
}

fn split(d: &Decision) -> (Option<i32>, Option<i32>) {
    (d.stable_replicas, d.canary.as_ref().map(|c| c.replicas))
}

/// The old behaviour shrank stable to 3 of 4 pods in the reconcile that created the unready
/// canary: here stable keeps all 4 until the canary pod is ready.
#[test]
fn a_canary_that_is_not_ready_yet_leaves_stable_at_full_size() {
    let mut sim = sim(4, 1);
    sim.stuck = true;
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(split(&d), (Some(4), Some(1)));
    assert_eq!(d.stable_model, Some(v(1)));
    let c = d.capacity.unwrap();
    assert_eq!(
        (c.mode, c.desired, c.max_surge),
        (CapacityMode::SurgeFirst, 4, 1)
    );
    sim.wait(30);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(split(&d), (Some(4), Some(1)), "still not ready");
    assert_eq!(
        d.waiting.as_deref(),
        Some("waiting for 1 canary pod(s) of version 2 to be ready")
    );
    assert!(sim.seen().min_ready() >= 4);

    sim.stuck = false;
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(split(&d), (Some(3), Some(1)), "ready: stable gives one pod");
    assert_eq!(d.rollout.unwrap().phase, RolloutPhase::Analyzing);
    assert_eq!((sim.seen().min_ready(), sim.seen().max_pods()), (4, 5));
}

/// Stable goes down only by canary pods that are ready, one surge pod at a time.
#[test]
fn stable_shrinks_only_by_canary_pods_that_are_ready() {
    let mut sim = sim(6, 1);
    sim.policy.steps = vec![step(50, 60)];
    let mut splits = Vec::new();
    loop {
        let d = sim.reconcile(Some(&v(2)));
        // What the reconcile saw ready (applying the decision only adds canary pods).
        let ready_canary = sim.canary.as_ref().map_or(0, |c| c.ready);
        let stable = d.stable_replicas.unwrap();
        assert!(
            stable >= 6 - ready_canary,
            "{stable} with {ready_canary} ready"
        );
        splits.push(split(&d));
        if d.rollout.unwrap().phase == RolloutPhase::Analyzing {
            break;
        }
        assert!(splits.len() < 10);
    }
    let s = |stable, canary| (Some(stable), Some(canary));
    assert_eq!(splits, [s(6, 1), s(5, 2), s(4, 3), s(3, 3)]);
    assert_eq!((sim.seen().min_ready(), sim.seen().max_pods()), (6, 7));
}

/// Whole rollouts, promotion included, for several sizes and surges: the ready pods never drop
/// below the desired count and the pods never exceed it by more than `maxSurge`.
#[test]
fn with_a_surge_ready_pods_never_drop_below_desired_nor_pods_exceed_the_budget() {
    for (replicas, max_surge) in [(4, 1), (6, 2), (1, 1), (3, 1), (5, 3)] {
        let mut sim = sim(replicas, max_surge);
        sim.policy.steps = vec![step(25, 60), step(50, 60), step(100, 60)];
        sim.run_to_the_end(&v(2), 60);
        let case = format!("{replicas} pods, maxSurge {max_surge}");
        let last = sim.status.last_rollout.clone().unwrap();
        assert_eq!(last.outcome, RolloutOutcome::Promoted, "{case}: {last:?}");
        assert_eq!(sim.canary, None, "{case}");
        assert_eq!(sim.stable.clone().unwrap().ready, replicas, "{case}");
        assert!(
            sim.seen().min_ready() >= replicas,
            "{case}: {:?}",
            sim.seen().seen
        );
        assert!(
            sim.seen().max_pods() <= replicas + max_surge,
            "{case}: {:?}",
            sim.seen().seen
        );
    }
}

/// `maxSurge: 0`: never a pod above the desired count, at most one pod's capacity missing, the
/// mode in the decision and one `RolloutShrinkFirst` Event for the whole rollout.
#[test]
fn without_a_surge_stable_shrinks_first_one_pod_at_a_time_and_says_so() {
    let mut sim = sim(4, 0);
    sim.policy.steps = vec![step(50, 60), step(100, 60)];
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(split(&d), (Some(3), Some(1)));
    assert_eq!(
        reasons_of(&d),
        ["RolloutStarted", "RolloutShrinkFirst", "CanaryStepStarted"]
    );
    assert_eq!(d.capacity.unwrap().mode, CapacityMode::ShrinkFirst);
    let note = d.transitions[1].note();
    assert!(note.contains("1 of 4 pods may be unavailable"), "{note}");
    sim.wait(10);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(split(&d), (Some(2), Some(2)));
    sim.run_to_the_end(&v(2), 60);
    assert_eq!(
        sim.status.last_rollout.clone().unwrap().outcome,
        RolloutOutcome::Promoted
    );
    assert_eq!(count(&sim, "RolloutShrinkFirst"), 1);
    assert!(sim.seen().max_pods() <= 4, "{:?}", sim.seen().seen);
    assert!(sim.seen().min_ready() >= 3, "{:?}", sim.seen().seen);
}

/// Promotion: stable's template changes at the size it has beside the canary, then stable grows
/// back as the canary shrinks by stable pods that are ready; the canary goes only once stable
/// runs every pod, ready, on the new version. The old behaviour asked for 4 new stable pods
/// beside the 2 canary pods (6 pods, 7 with the rolling update's surge, for a budget of 5).
#[test]
fn promotion_keeps_the_budget_and_removes_the_canary_only_once_stable_is_fully_available() {
    let mut sim = sim(4, 1);
    sim.policy.steps = vec![step(50, 60)];
    sim.reconcile(Some(&v(2)));
    sim.reconcile(Some(&v(2)));
    sim.reconcile(Some(&v(2)));
    sim.wait(60);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(d.rollout.as_ref().unwrap().phase, RolloutPhase::Promoting);
    assert_eq!(d.stable_model, Some(v(2)));
    assert_eq!(split(&d), (Some(2), Some(2)), "the template changes first");
    let mut splits = vec![split(&d)];
    loop {
        let d = sim.reconcile(Some(&v(2)));
        if d.canary.is_none() {
            assert_eq!(d.last_rollout.unwrap().outcome, RolloutOutcome::Promoted);
            // What the reconcile saw: its decision leaves stable as it was.
            let seen = sim.stable.clone().unwrap();
            assert_eq!(
                (seen.model, seen.ready, seen.rolled_out),
                (Some(v(2).uri), 4, true),
                "the canary goes once stable is fully available"
            );
            break;
        }
        splits.push(split(&d));
        assert!(splits.len() < 10);
    }
    let s = |stable, canary| (Some(stable), Some(canary));
    assert_eq!(splits, [s(2, 2), s(2, 2), s(3, 2), s(4, 1)]);
    assert_eq!((sim.seen().min_ready(), sim.seen().max_pods()), (4, 5));
}

/// A step moving many pods one surge pod at a time takes longer than `progressDeadline` in all,
/// but each batch is ready well within it: no rollback. A batch that stops becoming ready still
/// rolls back once the deadline passes.
#[test]
fn each_batch_of_new_pods_gets_the_whole_progress_deadline() {
    let mut sim = sim(8, 1);
    sim.policy.steps = vec![step(50, 60)];
    sim.reconcile(Some(&v(2)));
    for _ in 0..4 {
        sim.wait(500);
        sim.reconcile(Some(&v(2)));
    }
    let r = sim.status.rollout.clone().unwrap();
    assert_eq!(r.phase, RolloutPhase::Analyzing, "{:?}", sim.reasons());

    let mut sim = self::sim(8, 1);
    sim.policy.steps = vec![step(50, 60)];
    sim.reconcile(Some(&v(2)));
    sim.wait(500);
    sim.reconcile(Some(&v(2)));
    sim.stuck = true;
    sim.wait(500);
    sim.reconcile(Some(&v(2)));
    sim.wait(101);
    let d = sim.reconcile(Some(&v(2)));
    assert_eq!(split(&d), (Some(8), None), "stable gets every pod back");
    assert_eq!(
        d.last_rollout.unwrap().message,
        "canary pods were not ready within 10m"
    );
}
