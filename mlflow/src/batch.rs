//! What a training run logs (metrics, params, tags) and how it is cut into requests MLflow
//! accepts.
//!
//! A training loop collects a [`RunBatch`] and hands it to [`crate::MlflowClient::log_batch`]
//! whole; [`RunBatch::split`] cuts it into pieces within MLflow's `log-batch` limits (1000 metrics,
//! 100 params, 100 tags, 1000 entries in all per call), so callers never count.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Most metrics MLflow accepts in one `log-batch` call.
pub const MAX_METRICS_PER_BATCH: usize = 1000;
/// Most params MLflow accepts in one `log-batch` call.
pub const MAX_PARAMS_PER_BATCH: usize = 100;
/// Most tags MLflow accepts in one `log-batch` call.
pub const MAX_TAGS_PER_BATCH: usize = 100;
/// Most entries (metrics + params + tags) MLflow accepts in one `log-batch` call.
pub const MAX_ENTRIES_PER_BATCH: usize = 1000;

/// A key/value tag, on an experiment, run, registered model or model version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Tag {
    /// Tag name, e.g. `auralguard.dataset`.
    pub key: String,
    /// Tag value.
    pub value: String,
}

impl Tag {
    /// A tag from anything string-like.
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Tag {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// A run parameter: logged once, immutable afterwards (MLflow refuses a different value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Param {
    /// Parameter name, e.g. `epochs`.
    pub key: String,
    /// Parameter value, as text.
    pub value: String,
}

/// One point of a metric's history.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Metric {
    /// Metric name, e.g. `val_loss`.
    pub key: String,
    /// The value; NaN and infinities are allowed and travel as MLflow expects.
    #[serde(
        serialize_with = "crate::wire::f64_mlflow",
        deserialize_with = "crate::wire::f64_lenient"
    )]
    pub value: f64,
    /// When it was measured, in milliseconds since the Unix epoch.
    #[serde(deserialize_with = "crate::wire::i64_lenient")]
    pub timestamp: i64,
    /// Training step or epoch it belongs to.
    #[serde(deserialize_with = "crate::wire::i64_lenient")]
    pub step: i64,
}

/// Milliseconds since the Unix epoch, the unit of every MLflow timestamp.
pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Metrics, params and tags to log to one run, of any size.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct RunBatch {
    /// Metric points.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<Metric>,
    /// Parameters.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<Param>,
    /// Tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
}

impl RunBatch {
    /// An empty batch.
    pub fn new() -> Self {
        RunBatch::default()
    }

    /// Adds a metric point measured now.
    pub fn metric(self, key: impl Into<String>, value: f64, step: i64) -> Self {
        self.metric_at(key, value, step, now_millis())
    }

    /// Adds a metric point with an explicit timestamp (milliseconds since the epoch).
    pub fn metric_at(
        mut self,
        key: impl Into<String>,
        value: f64,
        step: i64,
        timestamp: i64,
    ) -> Self {
        self.metrics.push(Metric {
            key: key.into(),
            value,
            timestamp,
            step,
        });
        self
    }

    /// Adds a parameter.
    pub fn param(mut self, key: impl Into<String>, value: impl ToString) -> Self {
        self.params.push(Param {
            key: key.into(),
            value: value.to_string(),
        });
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.push(Tag::new(key, value));
        self
    }

    /// Number of entries (metrics + params + tags).
    pub fn len(&self) -> usize {
        self.metrics.len() + self.params.len() + self.tags.len()
    }

    /// True when there is nothing to log.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Cuts the batch into pieces that each respect MLflow's per-call limits, keeping the order of
    /// entries (so a metric's points stay in step order). Params and tags go first, so a run's
    /// configuration is logged before its long metric history. An empty batch gives no pieces.
    pub fn split(&self) -> Vec<RunBatch> {
        let mut pieces = Vec::new();
        let (mut metrics, mut params, mut tags) =
            (&self.metrics[..], &self.params[..], &self.tags[..]);
        while !(metrics.is_empty() && params.is_empty() && tags.is_empty()) {
            let n_params = params.len().min(MAX_PARAMS_PER_BATCH);
            let n_tags = tags.len().min(MAX_TAGS_PER_BATCH);
            let room = MAX_ENTRIES_PER_BATCH - n_params - n_tags;
            let n_metrics = metrics.len().min(MAX_METRICS_PER_BATCH).min(room);
            pieces.push(RunBatch {
                metrics: metrics[..n_metrics].to_vec(),
                params: params[..n_params].to_vec(),
                tags: tags[..n_tags].to_vec(),
            });
            metrics = &metrics[n_metrics..];
            params = &params[n_params..];
            tags = &tags[n_tags..];
        }
        pieces
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(metrics: usize, params: usize, tags: usize) -> RunBatch {
        let mut b = RunBatch::new();
        for i in 0..metrics {
            b = b.metric_at("loss", i as f64, i as i64, 1);
        }
        for i in 0..params {
            b = b.param(format!("p{i}"), i);
        }
        for i in 0..tags {
            b = b.tag(format!("t{i}"), "v");
        }
        b
    }

    fn assert_within_limits(pieces: &[RunBatch]) {
        for p in pieces {
            assert!(p.metrics.len() <= MAX_METRICS_PER_BATCH);
            assert!(p.params.len() <= MAX_PARAMS_PER_BATCH);
            assert!(p.tags.len() <= MAX_TAGS_PER_BATCH);
            assert!(p.len() <= MAX_ENTRIES_PER_BATCH);
            assert!(!p.is_empty());
        }
    }

    fn rejoin(pieces: &[RunBatch]) -> RunBatch {
        let mut all = RunBatch::new();
        for p in pieces {
            all.metrics.extend(p.metrics.iter().cloned());
            all.params.extend(p.params.iter().cloned());
            all.tags.extend(p.tags.iter().cloned());
        }
        all
    }

    #[test]
    fn empty_and_small_batches() {
        assert!(RunBatch::new().split().is_empty());
        let small = batch(10, 3, 2);
        assert_eq!(small.split(), vec![small.clone()]);
    }

    #[test]
    fn large_batches_split_within_limits_and_keep_order() {
        for (m, p, t) in [
            (2500, 0, 0),
            (1000, 0, 0),
            (1001, 0, 0),
            (0, 250, 0),
            (0, 0, 101),
            (1500, 150, 120),
            (999, 100, 100),
        ] {
            let original = batch(m, p, t);
            let pieces = original.split();
            assert_within_limits(&pieces);
            assert_eq!(rejoin(&pieces), original, "({m}, {p}, {t})");
        }
        // 2500 metrics need exactly three calls.
        assert_eq!(batch(2500, 0, 0).split().len(), 3);
        // Params and tags share the 1000-entry budget with metrics.
        let pieces = batch(1000, 100, 100).split();
        assert_eq!(pieces[0].metrics.len(), 800);
        assert_eq!(pieces.len(), 2);
    }

    #[test]
    fn batch_serialises_like_mlflow_expects() {
        let json = serde_json::to_value(
            RunBatch::new()
                .metric_at("acc", 0.5, 2, 7)
                .param("lr", 0.001),
        )
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "metrics": [{"key": "acc", "value": 0.5, "timestamp": 7, "step": 2}],
                "params": [{"key": "lr", "value": "0.001"}]
            })
        );
    }
}
