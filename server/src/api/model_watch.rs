//! Following a registry alias: `serve --model models:/NAME@ALIAS` checks the alias every
//! `--model-poll-seconds` and switches to the version it points at, with no failed request.
//!
//! A new version is downloaded into the cache, loaded, and run once on silence *before* it
//! replaces the served model in the [`ModelSlot`]; requests already running finish on the
//! old one. When MLflow cannot be asked, or the new version cannot be downloaded or loaded, the
//! old version keeps serving and the failure shows in the logs (warn), in `/health`
//! (`model.registry.last_error`) and in metrics (`auralguard_model_registry_up`,
//! `auralguard_model_updates_total{outcome="failed"}`). A version that failed is evicted from
//! the cache and tried again later, at growing intervals (one check, two, four, … at most
//! [`MAX_RETRY_DELAY`]), so a package fixed in place is picked up without a broken one being
//! downloaded and loaded at every check; the alias moving to another version is acted on at once.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use candle_core::Device;
use mlflow_client::ModelUri;
use serde::Serialize;
use utoipa::ToSchema;

use super::serving::Serving;
use super::AppState;
use crate::batcher::BatchingConfig;
use crate::error::{Error, Result};
use crate::model::ModelRegistry;
use crate::pipeline::{Detector, DetectorOptions};

/// What the watcher needs to load a new version the way the first one was loaded.
#[derive(Clone)]
pub struct WatchConfig {
    /// The alias URI being followed.
    pub uri: ModelUri,
    /// The registry and the local cache.
    pub registry: ModelRegistry,
    /// Time between checks.
    pub interval: Duration,
    /// Device new versions are loaded onto.
    pub device: Device,
    /// Overrides applied to every version (batch size, longest audio).
    pub options: DetectorOptions,
    /// Batching of the new version's queue.
    pub batching: BatchingConfig,
}

/// The longest wait before a version that failed to load is tried again.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(600);

/// A version that failed to load, and when to try it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Retry {
    version: u64,
    failures: u32,
    not_before: Instant,
}

impl Retry {
    /// The state after `version` failed once more at `now`: the wait doubles per failure of the
    /// same version, starting at one `interval`, capped at [`MAX_RETRY_DELAY`].
    fn after_failure(
        previous: Option<Retry>,
        version: u64,
        interval: Duration,
        now: Instant,
    ) -> Retry {
        let failures = match previous {
            Some(r) if r.version == version => r.failures.saturating_add(1),
            _ => 1,
        };
        let factor = 1u32 << (failures - 1).min(16);
        let delay = interval.saturating_mul(factor).min(MAX_RETRY_DELAY);
        Retry {
            version,
            failures,
            not_before: now + delay,
        }
    }

    /// Whether `version` may be tried at `now`.
    fn allows(retry: Option<Retry>, version: u64, now: Instant) -> bool {
        match retry {
            Some(r) if r.version == version => now >= r.not_before,
            _ => true,
        }
    }
}

/// Where a registry model came from, for `/health` (`model.registry`).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct RegistryStatus {
    /// The URI the server was started with (`models:/NAME@ALIAS` or `models:/NAME/VERSION`).
    pub uri: String,
    /// `models:/NAME/VERSION` being served.
    pub serving: String,
    /// When the alias was last checked (RFC 3339), successful or not.
    pub last_check: Option<String>,
    /// Why the last check or update failed; `null` once one succeeds.
    pub last_error: Option<String>,
    /// Versions switched to since start.
    pub updates: u64,
}

/// Shared, lock-protected [`RegistryStatus`].
#[derive(Debug, Default)]
pub struct WatchState(Mutex<RegistryStatus>);

impl WatchState {
    /// Started from `uri`, serving `serving`.
    pub fn new(uri: &ModelUri, serving: &ModelUri) -> Self {
        Self(Mutex::new(RegistryStatus {
            uri: uri.to_string(),
            serving: serving.to_string(),
            ..Default::default()
        }))
    }

    /// A copy for `/health`.
    pub fn snapshot(&self) -> RegistryStatus {
        match self.0.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    fn update(&self, f: impl FnOnce(&mut RegistryStatus)) {
        let mut g = match self.0.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f(&mut g);
    }
}

/// Checks the alias every `config.interval` until the process ends, switching versions as it
/// moves. `serving` is the version loaded at start.
pub async fn watch(state: Arc<AppState>, config: WatchConfig, mut serving: u64) {
    let Some(watch_state) = state.registry_status.as_ref() else {
        return;
    };
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await; // the first tick is immediate; the start-up load was that check
    let mut retry: Option<Retry> = None;
    loop {
        ticker.tick().await;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        watch_state.update(|s| s.last_check = Some(now));
        let target = match config.registry.resolve_version(&config.uri).await {
            Ok(v) => {
                state.metrics.model_registry_up.set(1);
                v
            }
            Err(e) => {
                // MLflow answering "no such alias" is up (and misconfigured); only an MLflow
                // that cannot be reached, or says it is overloaded, is down.
                let reachable = !matches!(&e, Error::Registry(m) if m.is_transient());
                state.metrics.model_registry_up.set(i64::from(reachable));
                tracing::warn!(uri = %config.uri, error = %e,
                    "cannot check the model alias; still serving version {serving}");
                watch_state.update(|s| s.last_error = Some(e.to_string()));
                continue;
            }
        };
        if target == serving {
            retry = None;
            watch_state.update(|s| s.last_error = None);
            continue;
        }
        if !Retry::allows(retry, target, Instant::now()) {
            continue; // it failed recently; `last_error` still says why
        }
        tracing::info!(uri = %config.uri, from = serving, to = target, "model alias moved; loading");
        match switch_to(&state, &config, target).await {
            Ok(pinned) => {
                retry = None;
                state.metrics.model_updates.with_label_values(&["ok"]).inc();
                tracing::info!(uri = %config.uri, from = serving, to = target, "now serving {pinned}");
                serving = target;
                watch_state.update(|s| {
                    s.serving = pinned;
                    s.last_error = None;
                    s.updates += 1;
                });
            }
            Err(e) => {
                retry = Some(Retry::after_failure(
                    retry,
                    target,
                    config.interval,
                    Instant::now(),
                ));
                state
                    .metrics
                    .model_updates
                    .with_label_values(&["failed"])
                    .inc();
                tracing::warn!(uri = %config.uri, version = target, error = %e,
                    "cannot switch to the new model version; still serving version {serving}");
                watch_state.update(|s| {
                    s.last_error = Some(format!("version {target}: {e}"));
                });
            }
        }
    }
}

/// Downloads, loads and warms version `target`, then makes it the served model. Returns its
/// `models:/NAME/VERSION`.
async fn switch_to(state: &Arc<AppState>, config: &WatchConfig, target: u64) -> Result<String> {
    let pinned = ModelUri::version(config.uri.name(), target);
    let fetched = config.registry.fetch(&pinned).await?;
    let (device, options, batching) = (
        config.device.clone(),
        config.options.clone(),
        config.batching,
    );
    let loaded = tokio::task::spawn_blocking(move || -> Result<Detector> {
        let model = fetched.load(&device)?;
        let detector = Detector::new(model, &options)?;
        warm_up(&detector)?;
        Ok(detector)
    })
    .await
    .map_err(|e| Error::Inference(format!("model loading task failed: {e}")))?;
    let detector = match loaded {
        Ok(d) => d,
        Err(e) => {
            // Its files arrived but do not load: fetch it afresh next time.
            config.registry.evict(&pinned).await;
            return Err(e);
        }
    };
    let manifest = detector.model().manifest.clone();
    let next = Serving::start(detector, batching, &state.metrics)?;
    state.slot.replace(next);
    state.metrics.set_model(&manifest);
    // A server whose first warm-up failed recovers here: this version ran.
    state.ready.store(true, Ordering::Release);
    Ok(pinned.to_string())
}

/// Runs the network once on a silent window, so a model that cannot run never serves and the
/// first request after a switch pays no start-up cost.
pub fn warm_up(detector: &Detector) -> Result<()> {
    let (m, t) = detector
        .extractor()
        .output_shape(detector.window_config().len);
    detector.score_log_mels(&vec![-80.0; m * t], 1).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_version_waits_longer_each_time_and_others_go_at_once() {
        let (t0, poll) = (Instant::now(), Duration::from_secs(30));
        let first = Retry::after_failure(None, 3, poll, t0);
        assert_eq!(first.not_before, t0 + poll);
        assert!(!Retry::allows(Some(first), 3, t0 + poll / 2));
        assert!(Retry::allows(Some(first), 3, t0 + poll));
        assert!(
            Retry::allows(Some(first), 4, t0),
            "a new target is tried at once"
        );

        let second = Retry::after_failure(Some(first), 3, poll, t0);
        assert_eq!(second.not_before, t0 + poll * 2);
        let third = Retry::after_failure(Some(second), 3, poll, t0);
        assert_eq!(third.not_before, t0 + poll * 4);

        let mut r = third;
        for _ in 0..40 {
            r = Retry::after_failure(Some(r), 3, poll, t0);
        }
        assert_eq!(r.not_before, t0 + MAX_RETRY_DELAY, "capped, no overflow");

        let other = Retry::after_failure(Some(r), 5, poll, t0);
        assert_eq!((other.failures, other.not_before), (1, t0 + poll));
    }
}
