//! The AuralGuard operator: runs `AudioDetector` resources on Kubernetes.
//!
//! For each detector it keeps a stable Deployment of the AuralGuard server, a Service, a
//! PodDisruptionBudget, an optional HorizontalPodAutoscaler and an optional Prometheus
//! ServiceMonitor, and rolls new MLflow model versions out through a canary Deployment whose
//! share of pods grows step by step while its own metrics are judged.
//!
//! How the pieces meet:
//!
//! * [`builders`]: pure functions from the detector (and the model version, role and replica
//!   count) to each desired object. No I/O; snapshot-tested.
//! * [`rollout`]: the pure rollout state machine; its whole state lives in the detector's
//!   status. [`analysis`] parses `/metrics` scrapes and judges a canary's window (against
//!   stable's verdicts for the fake share).
//! * [`mlflow`] resolves an alias to a version, [`scrape`] fetches the canary and stable pods'
//!   metrics: both behind traits so [`reconcile`] can be tested against a mocked API server.
//! * [`reconcile`]: observe → decide → write what differs ([`apply`]) → report ([`status`],
//!   Events). [`context`] carries what reconciles share.
//! * The runtime: [`controller`] wires the kube-rs `Controller`, [`leader`] elects one active
//!   replica with a Lease, [`metrics`] and [`http`] serve `/metrics`, `/healthz` and `/readyz`.

#![warn(missing_docs)]

pub mod analysis;
pub mod apply;
pub mod builders;
pub mod clock;
pub mod context;
pub mod controller;
pub mod error;
pub mod http;
pub mod leader;
pub mod metrics;
pub mod mlflow;
pub mod model;
pub mod reconcile;
pub mod rollout;
pub mod scrape;
pub mod status;

pub use error::{Error, Result};

/// Makes aws-lc-rs the process's TLS crypto provider, before the first Kubernetes client is
/// built. kube's client takes rustls's process default, which rustls only infers when exactly
/// one provider is compiled in; a build that also links *ring* (the MongoDB driver in a workspace
/// build, any future dependency) would otherwise panic at the first connection. Idempotent: a
/// provider installed earlier is kept.
pub fn install_tls_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
