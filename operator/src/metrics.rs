//! The operator's own Prometheus metrics, served on `--http-addr` at `/metrics`.
//!
//! One [`Metrics`] value owns its registry (no global state); reconcile and the runtime get it
//! through the shared context.

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::Result;

/// Every metric of the operator.
pub struct Metrics {
    registry: Registry,
    /// Reconciles run.
    pub reconciles: IntCounter,
    /// Reconciles that failed, by error kind.
    pub reconcile_errors: IntCounterVec,
    /// Reconcile wall time.
    pub reconcile_duration: Histogram,
    /// Rollouts by outcome (`started`, `promoted`, `rolled_back`, `aborted`, `aborted_manually`,
    /// `updated_in_place`).
    pub rollouts: IntCounterVec,
    /// Canary analysis results by kind (`passed`, `inconclusive`, `scrape_failed`): the ones
    /// that do not end a rollout, so an alert can see a rollout that keeps failing to observe.
    pub analysis: IntCounterVec,
    /// Writes (applies, deletes, status patches) the operator made.
    pub writes: IntCounterVec,
    /// 1 while this replica holds the leader lease.
    pub leader: IntGauge,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let reconciles = IntCounter::new(
            "auralguard_operator_reconciles_total",
            "AudioDetector reconciles run.",
        )?;
        let reconcile_errors = IntCounterVec::new(
            Opts::new(
                "auralguard_operator_reconcile_errors_total",
                "AudioDetector reconciles that failed, by error kind.",
            ),
            &["error"],
        )?;
        let reconcile_duration = Histogram::with_opts(
            HistogramOpts::new(
                "auralguard_operator_reconcile_duration_seconds",
                "Wall time of one AudioDetector reconcile.",
            )
            .buckets(vec![0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        )?;
        let rollouts = IntCounterVec::new(
            Opts::new(
                "auralguard_operator_rollouts_total",
                "Model rollouts by outcome.",
            ),
            &["outcome"],
        )?;
        let analysis = IntCounterVec::new(
            Opts::new(
                "auralguard_operator_analysis_results_total",
                "Canary analysis windows passed or inconclusive, and failed metric scrapes.",
            ),
            &["result"],
        )?;
        let writes = IntCounterVec::new(
            Opts::new(
                "auralguard_operator_writes_total",
                "Kubernetes writes made, by kind of object and verb.",
            ),
            &["kind", "verb"],
        )?;
        let leader = IntGauge::new(
            "auralguard_operator_leader",
            "1 while this replica holds the leader lease.",
        )?;
        registry.register(Box::new(reconciles.clone()))?;
        registry.register(Box::new(reconcile_errors.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(rollouts.clone()))?;
        registry.register(Box::new(analysis.clone()))?;
        registry.register(Box::new(writes.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            registry,
            reconciles,
            reconcile_errors,
            reconcile_duration,
            rollouts,
            analysis,
            writes,
            leader,
        })
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        let m = Metrics::new().unwrap();
        m.reconciles.inc();
        m.reconcile_errors.with_label_values(&["kube"]).inc();
        m.reconcile_duration.observe(0.02);
        m.rollouts.with_label_values(&["promoted"]).inc();
        m.analysis.with_label_values(&["scrape_failed"]).inc();
        m.writes.with_label_values(&["Deployment", "apply"]).inc();
        m.leader.set(1);
        let text = m.render();
        for needle in [
            "auralguard_operator_reconciles_total 1",
            "auralguard_operator_reconcile_errors_total{error=\"kube\"} 1",
            "auralguard_operator_reconcile_duration_seconds_bucket{le=\"0.025\"} 1",
            "auralguard_operator_rollouts_total{outcome=\"promoted\"} 1",
            "auralguard_operator_analysis_results_total{result=\"scrape_failed\"} 1",
            "auralguard_operator_writes_total{kind=\"Deployment\",verb=\"apply\"} 1",
            "auralguard_operator_leader 1",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
