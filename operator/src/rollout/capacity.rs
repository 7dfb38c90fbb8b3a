//! How many pods the stable and canary Deployments of a fixed-size detector run at each moment
//! of a rollout, so that serving capacity is not lost while pods move to the new version.
//!
//! The budget is `spec.replicas` (*desired*) plus `spec.rollout.maxSurge` extra pods:
//!
//! * **surge first** (`maxSurge ≥ 1`): canary pods are added first while stable keeps its pods;
//!   stable shrinks only by canary pods that are *ready*, never below `desired − ready canary`,
//!   and stable + canary never exceed `desired + maxSurge`. Ready pods therefore never drop below
//!   `desired` (as long as the stable pods themselves are ready).
//! * **shrink first** (`maxSurge = 0`, GPU nodes without a spare GPU): no pod above `desired`;
//!   stable gives up one pod before each canary pod starts (the canary's next increment), so at
//!   most one pod's capacity is missing at a time.
//!
//! Promotion ([`Budget::promotion`]) moves the stable Deployment to the new version within the
//! same budget: first its template changes at the size it has beside the canary (the
//! Deployment's own rolling update, `maxSurge`/`maxUnavailable` from
//! [`crate::builders::deployment::rolling_bounds`], keeps that within budget), then stable grows
//! back to `desired` surge-first while the canary shrinks by the stable pods that are ready. The
//! canary Deployment is deleted only once stable is fully available on the new version.
//!
//! Every count is a pure function of the budget and what reconcile observed, so an operator
//! restart continues where the cluster is.

use auralguard_crds::CapacityMode;

/// Replica counts of the two Deployments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pods {
    /// The stable Deployment's replicas.
    pub stable: i32,
    /// The canary Deployment's replicas.
    pub canary: i32,
}

/// The pods a rollout may use: `desired` serving pods plus `max_surge` extra.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// `spec.replicas`.
    pub desired: i32,
    /// `spec.rollout.maxSurge` (negative values count as 0).
    pub max_surge: i32,
}

/// What promotion needs to know of the stable Deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StableState {
    /// Its template still runs the old version (or it does not exist).
    Old,
    /// Its template runs the new version, but its controller has not seen the latest spec yet:
    /// the counts are stale, so nothing is changed until they are fresh.
    Unobserved {
        /// Its current `spec.replicas`.
        replicas: i32,
    },
    /// Its template runs the new version and pods of the old one remain.
    Rolling,
    /// Every pod it runs has the new template.
    New {
        /// How many of them are ready.
        ready: i32,
    },
}

/// What reconcile observed during promotion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Promotion {
    /// The canary Deployment's `spec.replicas` (0 when it is gone).
    pub canary_replicas: i32,
    /// Its ready pods.
    pub canary_ready: i32,
    /// The stable Deployment.
    pub stable: StableState,
}

impl Budget {
    /// Surge first with at least one spare pod, shrink first without.
    pub fn mode(self) -> CapacityMode {
        if self.max_surge > 0 {
            CapacityMode::SurgeFirst
        } else {
            CapacityMode::ShrinkFirst
        }
    }

    /// Ready pods that may be missing at once: none surge-first, one shrink-first (the
    /// Deployments' `maxUnavailable`).
    pub fn unavailable(self) -> i32 {
        match self.mode() {
            CapacityMode::SurgeFirst => 0,
            CapacityMode::ShrinkFirst => 1,
        }
    }

    /// The most pods both Deployments may run together.
    fn ceiling(self) -> i32 {
        self.desired.max(0).saturating_add(self.max_surge.max(0))
    }

    /// Where a step of `weight` percent ends: the canary gets `ceil(desired × weight / 100)`
    /// pods (at least one), stable the rest, and stable keeps one pod while the budget has room
    /// for it, so the analysis has stable pods to compare the canary with.
    pub fn target(self, weight: i32) -> Pods {
        let desired = i64::from(self.desired.max(0));
        let weight = i64::from(weight.clamp(1, 100));
        let canary = ((desired * weight + 99) / 100).max(1);
        let room = i64::from(self.ceiling()) - canary;
        let stable = (desired - canary).max(room.min(1)).max(0);
        Pods {
            stable: to_i32(stable),
            canary: to_i32(canary),
        }
    }

    /// The pods to run now on the way to `target`, with `canary_ready` canary pods ready: stable
    /// shrinks only by ready canary pods (by one more pod shrink-first), and the canary gets
    /// whatever the budget leaves, up to its target.
    pub fn toward(self, target: Pods, canary_ready: i32) -> Pods {
        let ready = canary_ready.max(0).min(target.canary);
        let stable = self
            .desired
            .saturating_sub(ready)
            .saturating_sub(self.unavailable())
            .max(target.stable)
            .min(self.desired.max(target.stable));
        let canary = self
            .ceiling()
            .saturating_sub(stable)
            .max(0)
            .min(target.canary);
        Pods { stable, canary }
    }

    /// The pods to run while promoting. While stable's template changes it keeps the size it
    /// has beside the canary (its rolling update surges within the budget); once every stable
    /// pod is new, stable grows back to `desired` first and the canary shrinks by the stable
    /// pods that are ready (by one more shrink-first). Unready canary pods give no capacity and
    /// are let go.
    pub fn promotion(self, seen: &Promotion) -> Pods {
        let canary_left = seen.canary_replicas.min(seen.canary_ready).max(0);
        match seen.stable {
            StableState::Unobserved { replicas } => Pods {
                stable: replicas,
                canary: seen.canary_replicas,
            },
            StableState::Old | StableState::Rolling => Pods {
                stable: self.desired.saturating_sub(canary_left).max(0),
                canary: canary_left,
            },
            StableState::New { ready } => {
                let canary = self
                    .desired
                    .saturating_sub(ready)
                    .saturating_sub(self.unavailable())
                    .max(0)
                    .min(canary_left);
                let stable = self
                    .ceiling()
                    .saturating_sub(canary)
                    .min(self.desired)
                    .max(0);
                Pods { stable, canary }
            }
        }
    }
}

fn to_i32(v: i64) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods(stable: i32, canary: i32) -> Pods {
        Pods { stable, canary }
    }

    #[test]
    fn targets_split_by_weight_and_keep_a_stable_pod_while_the_budget_allows() {
        let t = |desired, max_surge, weight| Budget { desired, max_surge }.target(weight);
        assert_eq!(t(4, 1, 10), pods(3, 1));
        assert_eq!(t(4, 1, 50), pods(2, 2));
        assert_eq!(t(3, 1, 100), pods(1, 3), "a spare pod keeps one stable pod");
        assert_eq!(t(1, 1, 10), pods(1, 1));
        assert_eq!(t(4, 0, 50), pods(2, 2));
        assert_eq!(
            t(3, 0, 100),
            pods(0, 3),
            "no spare pod: the canary takes them all"
        );
        assert_eq!(t(1, 0, 10), pods(0, 1));
    }

    /// Walks `toward` the way the cluster would: each round the canary pods planned before are
    /// ready. At every moment the pods stay within the ceiling and the ready pods within one
    /// `unavailable` of desired; the target is reached in `ceil(canary / max(surge, 1))` rounds
    /// or fewer plus the last.
    #[test]
    fn toward_never_exceeds_the_budget_nor_loses_more_than_allowed_and_converges() {
        for desired in 1..=12 {
            for max_surge in 0..=3 {
                for weight in [1, 10, 25, 50, 75, 100] {
                    let b = Budget { desired, max_surge };
                    let target = b.target(weight);
                    let mut ready = 0;
                    let mut rounds = 0;
                    loop {
                        let now = b.toward(target, ready);
                        let case = format!("{desired} pods, surge {max_surge}, {weight}%: {now:?}");
                        assert!(now.stable + now.canary <= desired + max_surge, "{case}");
                        assert!(
                            now.stable + ready.min(now.canary) >= desired - b.unavailable(),
                            "{case}"
                        );
                        if now == target && ready == target.canary {
                            break;
                        }
                        ready = now.canary;
                        rounds += 1;
                        assert!(rounds <= target.canary + 1, "{case} does not converge");
                    }
                }
            }
        }
    }

    #[test]
    fn a_canary_that_is_not_ready_takes_nothing_from_stable() {
        let b = Budget {
            desired: 6,
            max_surge: 1,
        };
        let target = b.target(50);
        assert_eq!(b.toward(target, 0), pods(6, 1));
        assert_eq!(b.toward(target, 1), pods(5, 2));
        assert_eq!(b.toward(target, 2), pods(4, 3));
        assert_eq!(b.toward(target, 3), pods(3, 3));
    }

    #[test]
    fn shrink_first_moves_one_pod_at_a_time() {
        let b = Budget {
            desired: 4,
            max_surge: 0,
        };
        let target = b.target(50);
        assert_eq!(b.toward(target, 0), pods(3, 1));
        assert_eq!(b.toward(target, 1), pods(2, 2));
        assert_eq!(b.toward(target, 2), pods(2, 2));
    }

    #[test]
    fn promotion_changes_the_template_beside_the_canary_then_hands_pods_back() {
        let b = Budget {
            desired: 4,
            max_surge: 1,
        };
        let seen = |stable| Promotion {
            canary_replicas: 2,
            canary_ready: 2,
            stable,
        };
        assert_eq!(b.promotion(&seen(StableState::Old)), pods(2, 2));
        assert_eq!(b.promotion(&seen(StableState::Rolling)), pods(2, 2));
        assert_eq!(
            b.promotion(&seen(StableState::Unobserved { replicas: 3 })),
            pods(3, 2),
            "stale counts change nothing"
        );
        assert_eq!(
            b.promotion(&seen(StableState::New { ready: 2 })),
            pods(3, 2)
        );
        assert_eq!(
            b.promotion(&seen(StableState::New { ready: 3 })),
            pods(4, 1)
        );
        assert_eq!(
            b.promotion(&seen(StableState::New { ready: 4 })),
            pods(4, 0)
        );
        // Shrink first: one pod may be missing, none is added.
        let b = Budget {
            desired: 4,
            max_surge: 0,
        };
        assert_eq!(
            b.promotion(&seen(StableState::New { ready: 2 })),
            pods(3, 1)
        );
        // A canary pod that is not ready is let go rather than counted.
        let b = Budget {
            desired: 4,
            max_surge: 1,
        };
        let starting = Promotion {
            canary_replicas: 1,
            canary_ready: 0,
            stable: StableState::Old,
        };
        assert_eq!(b.promotion(&starting), pods(4, 0));
    }
}
