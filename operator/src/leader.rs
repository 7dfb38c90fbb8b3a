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
//! * A holder that cannot renew for a whole lease duration must assume someone else took over
//!   and stop reconciling; on a clean shutdown it *releases* the Lease (clears the holder) so a
//!   standby takes over at once instead of waiting for expiry.
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
    /// How often the holder renews.
    pub renew_interval: Duration,
    /// How often a standby replica tries to acquire.
    pub retry_interval: Duration,
}

impl LeaseConfig {
    /// client-go's defaults: 15 s lease, renew every 5 s, retry every 2 s.
    pub fn new(name: String, namespace: String, identity: String) -> Self {
        Self {
            name,
            namespace,
            identity,
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(5),
            retry_interval: Duration::from_secs(2),
        }
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

    /// Gives the Lease up if this replica holds it, so a standby takes over immediately.
    pub async fn release(&self) -> Result<()> {
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
    /// A holder whose renewals keep failing publishes `false` once a whole lease duration has
    /// passed since its last successful renewal: by then another replica may have taken over.
    pub async fn run(&self, leader: watch::Sender<bool>, mut stop: watch::Receiver<bool>) {
        let mut last_renewal: Option<Timestamp> = None;
        loop {
            let held = match self.round().await {
                Ok(held) => held,
                Err(e) => {
                    warn!(error = %e, "leader election round failed");
                    let lease = SignedDuration::try_from(self.cfg.lease_duration)
                        .unwrap_or(SignedDuration::from_secs(15));
                    last_renewal.is_some_and(|t| t + lease > self.clock.now())
                }
            };
            if held {
                last_renewal = Some(self.clock.now());
            } else {
                last_renewal = None;
            }
            leader.send_if_modified(|v| std::mem::replace(v, held) != held);
            let wait = if held {
                self.cfg.renew_interval
            } else {
                self.cfg.retry_interval
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
}
