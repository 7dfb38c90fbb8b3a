//! Reading the canary and stable pods' `/metrics`.
//!
//! Reconcile asks for a scrape only when the rollout state machine needs one (a step's window
//! opening or closing). [`CanaryMetrics`] hides how: tests return prepared counters, and
//! [`PodScraper`] lists the detector's ready canary pods and its ready stable pods and fetches
//! each one's `/metrics` over plain HTTP from its pod IP (so the operator needs only `list` on
//! pods, not the broader `pods/proxy`; a NetworkPolicy in front of the detector must admit the
//! operator on port 8080). Stable pods are scraped at the same moments as the canary so that the
//! model-quality guard compares both sides' verdicts over the same window; a stable pod that
//! cannot be scraped fails the scrape like a canary pod does, since a window missing a pod at one
//! end would count that pod's whole lifetime at the other. A failed scrape is not fatal: reconcile
//! hands its error to the rollout state machine, which records it and retries.
//!
//! Counters alone cannot see a crashing canary: a restarted server counts from zero again and an
//! unready pod is not scraped. So the scraper also records, per scraped pod, its containers'
//! total `restartCount` ([`PodCounters::restarts`]), and the number of canary pods that exist
//! but are not ready ([`MetricsSnapshot::unready_pods`]; pods being deleted or already ended,
//! such as evicted ones, are not counted), for the analysis to fail the step on.

use std::time::Duration;

use async_trait::async_trait;
use auralguard_crds::{MetricsSnapshot, PodCounters};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kube::ResourceExt;

use crate::analysis;
use crate::builders::{role_selector_labels, selector_string, Role, CONTAINER_PORT};
use crate::{Error, Result};

/// Scrapes a detector's canary and stable pods.
#[async_trait]
pub trait CanaryMetrics: Send + Sync {
    /// Per-pod counters of every ready canary pod (`pods`) and every ready stable pod (`stable`)
    /// of `detector`, over the analysed `routes`, with each pod's restart count and the number
    /// of canary pods not ready (`unreadyPods`).
    async fn scrape(
        &self,
        namespace: &str,
        detector: &str,
        routes: &[String],
    ) -> Result<MetricsSnapshot>;
}

/// Scrapes pods directly by IP.
#[derive(Clone)]
pub struct PodScraper {
    client: kube::Client,
    http: reqwest::Client,
    port: u16,
}

impl PodScraper {
    /// A scraper listing pods through `client`, giving each pod `timeout` to answer.
    pub fn new(client: kube::Client, timeout: Duration) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::Metrics(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            http,
            port: CONTAINER_PORT.unsigned_abs().try_into().unwrap_or(8080),
        })
    }

    /// Scrapes `port` instead of the server's 8080 (for tests that serve metrics locally).
    pub fn with_port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
}

/// True when the pod is running and its Ready condition is true.
fn is_ready(pod: &Pod) -> bool {
    pod.status.as_ref().is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            && s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

#[async_trait]
impl CanaryMetrics for PodScraper {
    async fn scrape(
        &self,
        namespace: &str,
        detector: &str,
        routes: &[String],
    ) -> Result<MetricsSnapshot> {
        let canary = self
            .scrape_role(namespace, detector, Role::Canary, routes)
            .await?;
        let stable = self
            .scrape_role(namespace, detector, Role::Stable, routes)
            .await?;
        Ok(MetricsSnapshot {
            pods: canary.counters,
            stable: stable.counters,
            unready_pods: canary.unready,
        })
    }
}

/// What one role's pods showed.
struct RoleScrape {
    /// The ready pods' counters, sorted by pod name.
    counters: Vec<PodCounters>,
    /// Pods that exist but are not ready (not counting pods on their way out).
    unready: i64,
}

/// True for a pod being deleted or whose containers have all ended (evicted, completed): it is
/// leaving, not failing to start, so it is not counted as unready.
fn is_leaving(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        || pod
            .status
            .as_ref()
            .is_some_and(|s| matches!(s.phase.as_deref(), Some("Succeeded" | "Failed")))
}

/// The sum of the pod's containers' `restartCount`: it grows when the server crashes or its
/// liveness probe fails, which resets the counters the analysis reads.
fn restarts(pod: &Pod) -> i64 {
    pod.status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .map(|c| i64::from(c.restart_count))
        .sum()
}

impl PodScraper {
    /// Per-pod counters of every ready pod of one role, sorted by pod name, and how many of its
    /// pods are not ready.
    async fn scrape_role(
        &self,
        namespace: &str,
        detector: &str,
        role: Role,
        routes: &[String],
    ) -> Result<RoleScrape> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let selector = selector_string(&role_selector_labels(detector, role));
        let list = pods.list(&ListParams::default().labels(&selector)).await?;
        let unready = list
            .items
            .iter()
            .filter(|p| !is_ready(p) && !is_leaving(p))
            .count();
        let mut counters = Vec::new();
        for pod in list.items.iter().filter(|p| is_ready(p)) {
            let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()) else {
                continue;
            };
            let name = pod.name_any();
            let text = self.fetch(&name, ip).await?;
            let mut pod_counters = analysis::pod_counters(&name, &text, routes)?;
            pod_counters.restarts = Some(restarts(pod));
            if role == Role::Stable {
                // Only the stable pods' verdicts are compared; their latency histograms would
                // just grow the baseline kept in status by ~1 KB per pod (an HPA may run many).
                pod_counters.latency_buckets.clear();
            }
            counters.push(pod_counters);
        }
        counters.sort_by(|a, b| a.pod.cmp(&b.pod));
        Ok(RoleScrape {
            counters,
            unready: i64::try_from(unready).unwrap_or(i64::MAX),
        })
    }

    /// One pod's `/metrics` text, fetched from its IP.
    async fn fetch(&self, name: &str, ip: &str) -> Result<String> {
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_string()
        };
        let url = format!("http://{host}:{}/metrics", self.port);
        self.http
            .get(&url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| Error::Metrics(format!("scraping pod {name} at {url}: {e}")))?
            .text()
            .await
            .map_err(|e| Error::Metrics(format!("reading pod {name}'s metrics: {e}")))
    }
}
