//! What every reconcile shares: the API client, the operator's settings and the pluggable
//! collaborators (model resolver, canary scraper, clock, event recorder, metrics).
//!
//! Built once at start-up (or by a test with fakes) and handed to the controller in an `Arc`.

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::{Recorder, Reporter};

use crate::builders::BuildConfig;
use crate::clock::Clock;
use crate::metrics::Metrics;
use crate::mlflow::ModelResolver;
use crate::scrape::CanaryMetrics;

/// Operator-wide settings (from the command line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Image defaults for the pods.
    pub build: BuildConfig,
    /// How often an alias is re-resolved (and objects re-checked) when nothing else happens.
    pub poll_interval: Duration,
    /// How often a running rollout looks at its pods while waiting for them.
    pub check_interval: Duration,
}

/// Shared by every reconcile.
pub struct Context {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// Settings.
    pub settings: Settings,
    /// Resolves MLflow aliases.
    pub resolver: Arc<dyn ModelResolver>,
    /// Scrapes canary pods.
    pub canary_metrics: Arc<dyn CanaryMetrics>,
    /// Tells the time.
    pub clock: Arc<dyn Clock>,
    /// Who publishes Kubernetes Events.
    pub reporter: Reporter,
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
}

impl Context {
    /// An Event recorder for one reconcile. A fresh one each time: kube's recorder merges events
    /// with the same reason into a series and keeps the first note, but every rollout transition
    /// (step 1 started, step 2 started, ...) deserves its own Event with its own note.
    pub fn recorder(&self) -> Recorder {
        Recorder::new(self.client.clone(), self.reporter.clone())
    }

    /// A context publishing events as `auralguard-operator` (instance: this pod's name, if known).
    pub fn new(
        client: kube::Client,
        settings: Settings,
        resolver: Arc<dyn ModelResolver>,
        canary_metrics: Arc<dyn CanaryMetrics>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        instance: Option<String>,
    ) -> Self {
        let reporter = Reporter {
            controller: crate::builders::MANAGED_BY.into(),
            instance,
        };
        Self {
            reporter,
            client,
            settings,
            resolver,
            canary_metrics,
            clock,
            metrics,
        }
    }
}
