//! Prometheus metrics of the detector, in base units with `auralguard_` names.
//!
//! The operator's canary analysis reads `auralguard_http_requests_total{route,status}` and
//! `auralguard_http_request_duration_seconds{route}`; keep those names and labels stable.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// All metrics, registered in their own registry (no global state).
pub struct Metrics {
    registry: Registry,
    /// Requests by route template and status code.
    pub requests: IntCounterVec,
    /// Request latency by route template.
    pub latency: HistogramVec,
    /// Prediction requests being handled right now (decoding, queued or in the network).
    pub in_flight: IntGauge,
    /// Requests refused because every permit, or the inference queue, was full.
    pub overloaded: IntCounter,
    /// Seconds of audio judged.
    pub audio_seconds: prometheus::Counter,
    /// Windows run through the network.
    pub windows: IntCounter,
    /// Verdicts by label.
    pub verdicts: IntCounterVec,
    /// Time spent in decode + features + network per request.
    pub inference_seconds: Histogram,
    /// Constant 1, labelled with the serving model (for dashboards and rollouts).
    pub model_info: IntGaugeVec,
    /// Prediction-log writes that failed (the prediction itself still succeeded).
    pub store_write_failures: IntCounter,
    /// Predictions waiting in the on-disk spool for the database (set at scrape time).
    pub store_spooled: IntGauge,
    /// Predictions the database refused for good, set aside beside the spool.
    pub store_set_aside: IntGauge,
    /// Windows per network call (the batcher's fill; near `--batch-size` under load).
    pub batch_windows: Histogram,
    /// Requests whose windows shared one network call.
    pub batch_requests: Histogram,
    /// How long a batch's oldest request waited for the network.
    pub queue_wait_seconds: Histogram,
    /// Windows waiting for the network (set at scrape time).
    pub queue_windows: IntGauge,
    /// Model updates from the registry by outcome (`ok`, `failed`).
    pub model_updates: IntCounterVec,
    /// 1 when the last registry check got an answer from MLflow (even "no such alias"), 0 when
    /// MLflow could not be reached or said it was overloaded (only exported when serving a
    /// `models:/NAME@ALIAS`): an alert on it means "MLflow is down", not "misconfigured".
    pub model_registry_up: IntGauge,
    /// Requests refused by a safety limit, by limit (see [`Limit`]): a rising count is an
    /// attack or a misconfigured client, never the model.
    pub limit_rejections: IntCounterVec,
    /// Bytes of the global allocator's large blocks by `state`: `mapped` (in use and kept)
    /// and `kept` (free, held for reuse). Set at scrape time; absent when the process does not
    /// use [`crate::large_blocks::LargeBlockCache`].
    pub large_block_bytes: IntGaugeVec,
}

/// The safety limits a request can hit, as `limit` label values of
/// `auralguard_limit_rejections_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// A tensor shape that overflows, is zero, or exceeds the model's input or the batch bound.
    TensorShape,
    /// A sample rate outside the accepted range.
    SampleRate,
    /// A file name, request id or multipart header longer than allowed.
    NameLength,
    /// Non-finite values in a tensor.
    NonFinite,
    /// A client too slow to send its headers or body.
    SlowClient,
    /// A connection beyond `--max-connections`.
    Connections,
    /// Upload bytes beyond `--max-buffered-upload-mb`, summed over every upload being read.
    UploadBuffer,
}

impl Limit {
    /// Every limit, for pre-creating the series so dashboards see zeros.
    pub const ALL: [Limit; 7] = [
        Limit::TensorShape,
        Limit::SampleRate,
        Limit::NameLength,
        Limit::NonFinite,
        Limit::SlowClient,
        Limit::Connections,
        Limit::UploadBuffer,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Limit::TensorShape => "tensor_shape",
            Limit::SampleRate => "sample_rate",
            Limit::NameLength => "name_length",
            Limit::NonFinite => "non_finite",
            Limit::SlowClient => "slow_client",
            Limit::Connections => "connections",
            Limit::UploadBuffer => "upload_buffer",
        }
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> prometheus::Result<Self> {
        let registry = Registry::new();
        let latency_buckets = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        let requests = IntCounterVec::new(
            Opts::new(
                "auralguard_http_requests_total",
                "HTTP requests by route and status.",
            ),
            &["route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "auralguard_http_request_duration_seconds",
                "HTTP request latency by route.",
            )
            .buckets(latency_buckets.clone()),
            &["route"],
        )?;
        let in_flight = IntGauge::new(
            "auralguard_in_flight_requests",
            "Prediction requests being judged now.",
        )?;
        let overloaded = IntCounter::new(
            "auralguard_overloaded_requests_total",
            "Requests refused with 503 because every permit or the inference queue was full.",
        )?;
        let audio_seconds =
            prometheus::Counter::new("auralguard_audio_seconds_total", "Seconds of audio judged.")?;
        let windows = IntCounter::new(
            "auralguard_inference_windows_total",
            "Windows run through the network.",
        )?;
        let verdicts = IntCounterVec::new(
            Opts::new("auralguard_verdicts_total", "Verdicts by predicted label."),
            &["label"],
        )?;
        let inference_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "auralguard_inference_duration_seconds",
                "Decode, features and network time per request.",
            )
            .buckets(latency_buckets),
        )?;
        let model_info = IntGaugeVec::new(
            Opts::new(
                "auralguard_model_info",
                "The model being served (value is 1).",
            ),
            &["name", "version", "architecture"],
        )?;
        let store_write_failures = IntCounter::new(
            "auralguard_store_write_failures_total",
            "Prediction-log writes that failed.",
        )?;
        registry.register(Box::new(store_write_failures.clone()))?;
        let store_spooled = IntGauge::new(
            "auralguard_store_spooled_records",
            "Predictions waiting in the on-disk spool for the database.",
        )?;
        registry.register(Box::new(store_spooled.clone()))?;
        let store_set_aside = IntGauge::new(
            "auralguard_store_set_aside_records",
            "Predictions the database refused for good (kept in rejected.jsonl beside the spool).",
        )?;
        registry.register(Box::new(store_set_aside.clone()))?;
        let size_buckets = vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];
        let batch_windows = Histogram::with_opts(
            HistogramOpts::new(
                "auralguard_batch_windows",
                "Windows per network call (dynamic batching across requests).",
            )
            .buckets(size_buckets.clone()),
        )?;
        let batch_requests = Histogram::with_opts(
            HistogramOpts::new(
                "auralguard_batch_requests",
                "Requests whose windows shared one network call.",
            )
            .buckets(size_buckets),
        )?;
        let queue_wait_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "auralguard_queue_wait_seconds",
                "How long the oldest request of a batch waited for the network.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        )?;
        let queue_windows = IntGauge::new(
            "auralguard_queue_windows",
            "Windows waiting for the network (the inference queue depth).",
        )?;
        for m in [&batch_windows, &batch_requests, &queue_wait_seconds] {
            registry.register(Box::new(m.clone()))?;
        }
        registry.register(Box::new(queue_windows.clone()))?;
        let model_updates = IntCounterVec::new(
            Opts::new(
                "auralguard_model_updates_total",
                "Switches to a new registry model version, by outcome (ok, failed).",
            ),
            &["outcome"],
        )?;
        let model_registry_up = IntGauge::new(
            "auralguard_model_registry_up",
            "1 when the last check of the served model alias reached MLflow, else 0.",
        )?;
        let limit_rejections = IntCounterVec::new(
            Opts::new(
                "auralguard_limit_rejections_total",
                "Requests refused by a safety limit, by limit.",
            ),
            &["limit"],
        )?;
        for limit in Limit::ALL {
            limit_rejections.with_label_values(&[limit.label()]);
        }
        registry.register(Box::new(limit_rejections.clone()))?;
        let large_block_bytes = IntGaugeVec::new(
            Opts::new(
                "auralguard_large_block_bytes",
                "Bytes of the allocator's large blocks: mapped (in use and kept) and kept (free, for reuse).",
            ),
            &["state"],
        )?;
        registry.register(Box::new(large_block_bytes.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(in_flight.clone()))?;
        registry.register(Box::new(overloaded.clone()))?;
        registry.register(Box::new(audio_seconds.clone()))?;
        registry.register(Box::new(windows.clone()))?;
        registry.register(Box::new(verdicts.clone()))?;
        registry.register(Box::new(inference_seconds.clone()))?;
        registry.register(Box::new(model_info.clone()))?;
        Ok(Self {
            registry,
            requests,
            latency,
            in_flight,
            overloaded,
            audio_seconds,
            windows,
            verdicts,
            inference_seconds,
            model_info,
            store_write_failures,
            store_spooled,
            store_set_aside,
            batch_windows,
            batch_requests,
            queue_wait_seconds,
            queue_windows,
            model_updates,
            model_registry_up,
            limit_rejections,
            large_block_bytes,
        })
    }

    /// Exports the model-update metrics; called when serving an alias that is watched, so a
    /// folder-served detector does not show a registry gauge that means nothing.
    pub fn export_model_watch(&self) -> prometheus::Result<()> {
        self.registry
            .register(Box::new(self.model_updates.clone()))?;
        self.registry
            .register(Box::new(self.model_registry_up.clone()))?;
        for outcome in ["ok", "failed"] {
            self.model_updates.with_label_values(&[outcome]);
        }
        Ok(())
    }

    /// Records which model is served (replacing the previous one's series).
    pub fn set_model(&self, manifest: &crate::model::Manifest) {
        self.model_info.reset();
        self.model_info
            .with_label_values(&[
                &manifest.name,
                &manifest.version,
                &manifest.architecture.name,
            ])
            .set(1);
    }

    /// Counts one refusal by `limit`.
    pub fn rejected(&self, limit: Limit) {
        self.limit_counter(limit).inc();
    }

    /// The counter of one limit, for code that counts without holding the metrics (the accept
    /// loop's connection tasks).
    pub fn limit_counter(&self, limit: Limit) -> prometheus::IntCounter {
        self.limit_rejections.with_label_values(&[limit.label()])
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Some(cache) = crate::large_blocks::published() {
            let stats = cache.stats();
            let gauge = |state: &str, bytes: usize| {
                let bytes = i64::try_from(bytes).unwrap_or(i64::MAX);
                self.large_block_bytes
                    .with_label_values(&[state])
                    .set(bytes);
            };
            gauge("mapped", stats.mapped_bytes);
            gauge("kept", stats.kept_bytes);
        }
        let mut buf = Vec::new();
        // Encoding our own well-formed families into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_contract_names() {
        let m = Metrics::new().unwrap();
        m.requests.with_label_values(&["/predict", "200"]).inc();
        m.latency.with_label_values(&["/predict"]).observe(0.2);
        let text = m.render();
        assert!(
            text.contains("auralguard_http_requests_total{route=\"/predict\",status=\"200\"} 1")
        );
        assert!(text.contains(
            "auralguard_http_request_duration_seconds_bucket{route=\"/predict\",le=\"0.25\"} 1"
        ));
    }

    #[test]
    fn reports_the_published_allocator_blocks() {
        use crate::large_blocks::{LargeBlockCache, DEFAULT_CAP_BYTES, MIN_LARGE};
        use std::alloc::{GlobalAlloc, Layout};
        static CACHE: LargeBlockCache = LargeBlockCache::new(DEFAULT_CAP_BYTES);
        CACHE.publish();
        let layout = Layout::from_size_align(MIN_LARGE, 8).unwrap();
        // SAFETY: a block allocated and freed with the same layout, never read.
        unsafe { CACHE.dealloc(CACHE.alloc(layout), layout) };
        let kept = CACHE.stats().kept_bytes;
        assert!(kept > MIN_LARGE);
        let text = Metrics::new().unwrap().render();
        assert!(
            text.contains(&format!(
                "auralguard_large_block_bytes{{state=\"kept\"}} {kept}"
            )),
            "{text}"
        );
        assert!(text.contains(&format!(
            "auralguard_large_block_bytes{{state=\"mapped\"}} {kept}"
        )));
        CACHE.release_all();
    }
}
