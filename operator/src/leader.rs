//! Leader election with a `coordination.k8s.io/v1` Lease, so that of several operator replicas
//! exactly one reconciles at a time.
//!
//! The protocol is the one client-go uses:
//!
//! * A replica *holds* the Lease while `spec.holderIdentity` is its identity and
//!   `spec.renewTime + spec.leaseDurationSeconds` lies in the future.
//! * The holder renews (`renewTime = now`) every `renew_interval`; the others look every
//!   `retry_interval` and take the Lease over once it has expired or been released.
//! * Every write carries the `resourceVersion` that was read, so when two replicas race the API
//!   server accepts one write and rejects the other with a conflict.
//! * A holder that cannot renew within its *renew deadline* (shorter than the lease duration)
//!   stops leading, so it has stepped down before any standby can consider the Lease expired:
//!   there is never a moment with two leaders. Only a successful write counts as a renewal, and
//!   its time is taken from *before* the request went out. Every request has a timeout, so an
//!   API server that stops answering cannot hold a round (and the step-down) up.
//! * On a clean shutdown the holder *releases* the Lease (clears the holder) so a standby takes
//!   over at once instead of waiting for expiry.
//!
//! [`decide`] is the pure rule; [`LeaderElector::round`] performs one read-decide-write round and
//! [`LeaderElector::run`] loops and publishes leadership on a watch channel.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::clock::Clock;
use crate::{Error, Result};

/// Lease timing and identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// Its namespace (the operator's own).
    pub namespace: String,
    /// This replica's identity (its pod name).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How long the holder keeps leading without a successful renewal. Shorter than
    /// `lease_duration`: the margin covers clock rate differences and the time a write takes.
    pub renew_deadline: Duration,
    /// How often the holder renews while renewals succeed.
    pub renew_interval: Duration,
    /// How often a standby replica tries to acquire, and how soon a holder retries a failed
    /// renewal.
    pub retry_interval: Duration,
    /// Longest wait for one round (read and write) while not leading; a leader's rounds are
    /// bounded by what is left of its renew deadline instead.
    pub request_timeout: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, 10 s renew deadline, retry every 2 s; renew every 5 s
    /// while all is well, and give a standby's round 5 s.
    pub fn new(name: String, namespace: String, identity: String) -> Self {
        Self {
            name,
            namespace,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            renew_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
        }
    }

    /// Refuses timings that would allow two leaders or a leader that never renews in time.
    pub fn validate(&self) -> Result<()> {
        let fail = |m: &str| Err(Error::Lease(format!("leader election timing: {m}")));
        if self.lease_duration.as_secs() < 1 {
            return fail("the lease duration must be at least 1 s");
        }
        if self.renew_deadline >= self.lease_duration {
            return fail("the renew deadline must be shorter than the lease duration");
        }
        if self.renew_interval >= self.renew_deadline || self.retry_interval >= self.renew_deadline
        {
            return fail("the renew and retry intervals must be shorter than the renew deadline");
        }
        if self.retry_interval.is_zero() || self.renew_interval.is_zero() {
            return fail("the renew and retry intervals must be positive");
        }
        if self.request_timeout.is_zero() {
            return fail("the request timeout must be positive");
        }
        Ok(())
    }
}

/// What to do with the Lease as read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// No Lease exists: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or the holder's time ran out: take it over.
    TakeOver,
    /// Someone else holds it.
    Wait,
}

/// The rule of the protocol.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> LeaseAction {
    let Some(spec) = lease.map(|l| l.spec.clone().unwrap_or_default()) else {
        return LeaseAction::Create;
    };
    match spec.holder_identity.as_deref() {
        Some(holder) if holder == identity => LeaseAction::Renew,
        None | Some("") => LeaseAction::TakeOver,
        Some(_) => {
            let last = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            match last {
                Some(t) if t + duration > now => LeaseAction::Wait,
                _ => LeaseAction::TakeOver,
            }
        }
    }
}

/// Runs the protocol for one replica.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    clock: Arc<dyn Clock>,
}

impl LeaderElector {
    /// An elector for `cfg`, talking through `client`.
    pub fn new(client: kube::Client, cfg: LeaseConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            clock,
        }
    }

    /// One round: read the Lease, decide, write. Returns whether this replica holds the Lease
    /// afterwards. A lost race (conflict on write) is "not leader", not an error.
    pub async fn round(&self) -> Result<bool> {
        let now = self.clock.now();
        let lease = self.api.get_opt(&self.cfg.name).await?;
        let action = decide(lease.as_ref(), &self.cfg.identity, now);
        let written = match action {
            LeaseAction::Wait => return Ok(false),
            LeaseAction::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.held_spec(now, now, 0)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            LeaseAction::Renew | LeaseAction::TakeOver => {
                let mut lease = lease.unwrap_or_default();
                let old = lease.spec.clone().unwrap_or_default();
                lease.spec = Some(if action == LeaseAction::Renew {
                    let acquired = old.acquire_time.map_or(now, |t| t.0);
                    self.held_spec(acquired, now, old.lease_transitions.unwrap_or(0))
                } else {
                    self.held_spec(now, now, old.lease_transitions.unwrap_or(0) + 1)
                });
                self.api
                    .replace(&self.cfg.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => {
                if action != LeaseAction::Renew {
                    info!(lease = %self.cfg.name, identity = %self.cfg.identity, "acquired the leader lease");
                }
                Ok(true)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn held_spec(&self, acquired: Timestamp, renewed: Timestamp, transitions: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(MicroTime(acquired)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Gives the Lease up if this replica holds it, so a standby takes over immediately. Bounded
    /// by `request_timeout`: shutdown never waits on an API server that stopped answering (the
    /// Lease then simply expires).
    pub async fn release(&self) -> Result<()> {
        tokio::time::timeout(self.cfg.request_timeout, self.release_now())
            .await
            .map_err(|_| {
                Error::Lease(format!(
                    "no answer within {:?} while releasing the lease",
                    self.cfg.request_timeout
                ))
            })?
    }

    async fn release_now(&self) -> Result<()> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(self.clock.now()));
        lease.spec = Some(spec);
        self.api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await?;
        info!(lease = %self.cfg.name, "released the leader lease");
        Ok(())
    }

    /// Keeps acquiring or renewing until `stop` turns true, publishing leadership on `leader`.
    ///
    /// Leadership lasts until `renew_deadline` after the start of the last successful round. A
    /// failed or unanswered renewal is retried every `retry_interval` within that time, and each
    /// try is cut off where the deadline falls, so `false` is published at the deadline at the
    /// latest, well before a standby may take the Lease over (`lease_duration` after the
    /// renewal it last saw). Losing the Lease to another holder (or a write conflict) ends
    /// leadership at once.
    pub async fn run(&self, leader: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let mut renewed_at: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let budget = match renewed_at {
                Some(t) => (t + self.cfg.renew_deadline).saturating_duration_since(started),
                None => self.cfg.request_timeout,
            };
            let outcome = if budget.is_zero() {
                Err("the renew deadline passed".to_string())
            } else {
                match tokio::time::timeout(budget, self.round()).await {
                    Ok(Ok(held)) => Ok(held),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {budget:?}")),
                }
            };
            let failed = outcome.is_err();
            renewed_at = match outcome {
                Ok(true) => Some(started),
                Ok(false) => None,
                Err(e) => {
                    warn!(error = %e, "leader election round failed");
                    renewed_at.filter(|t| Instant::now() < *t + self.cfg.renew_deadline)
                }
            };
            let held = renewed_at.is_some();
            let changed = leader.send_if_modified(|v| std::mem::replace(v, held) != held);
            if changed && !held {
                warn!(lease = %self.cfg.name, identity = %self.cfg.identity, "stopped leading");
            }
            let wait = match renewed_at {
                // Wake at the deadline at the latest, to step down on time.
                Some(t) => {
                    let every = if failed {
                        self.cfg.retry_interval
                    } else {
                        self.cfg.renew_interval
                    };
                    every.min(
                        (t + self.cfg.renew_deadline).saturating_duration_since(Instant::now()),
                    )
                }
                None => self.cfg.retry_interval,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}

/// An error for a leadership that was lost while reconciling.
pub fn lost() -> Error {
    Error::Lease("lost the leader lease; exiting so another replica takes over".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed: &str, secs: i32) -> Lease {
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                lease_duration_seconds: Some(secs),
                ..LeaseSpec::default()
            }),
        }
    }

    #[test]
    fn the_rule_of_the_protocol() {
        let now: Timestamp = "2030-01-01T00:00:30Z".parse().unwrap();
        assert_eq!(decide(None, "me", now), LeaseAction::Create);
        let fresh = lease(Some("other"), "2030-01-01T00:00:20Z", 15);
        assert_eq!(decide(Some(&fresh), "me", now), LeaseAction::Wait);
        assert_eq!(decide(Some(&fresh), "other", now), LeaseAction::Renew);
        let expired = lease(Some("other"), "2030-01-01T00:00:10Z", 15);
        assert_eq!(decide(Some(&expired), "me", now), LeaseAction::TakeOver);
        let released = lease(None, "2030-01-01T00:00:29Z", 1);
        assert_eq!(decide(Some(&released), "me", now), LeaseAction::TakeOver);
        let empty = Lease::default();
        assert_eq!(decide(Some(&empty), "me", now), LeaseAction::TakeOver);
    }

    #[test]
    fn timings_that_could_make_two_leaders_are_refused() {
        let ok = LeaseConfig::new("l".into(), "ns".into(), "me".into());
        ok.validate().unwrap();
        let mut late = ok.clone();
        late.renew_deadline = late.lease_duration;
        assert!(late.validate().is_err());
        let mut slow = ok.clone();
        slow.retry_interval = slow.renew_deadline;
        assert!(slow.validate().is_err());
        let mut busy = ok;
        busy.request_timeout = Duration::ZERO;
        assert!(busy.validate().is_err());
    }
}
