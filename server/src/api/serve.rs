//! Running the server: bind, warm up, serve, and drain on SIGTERM/Ctrl-C.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::listener::{serve_connections, ConnectionLimits};
use super::metrics::Metrics;
use super::model_watch::{self, WatchConfig, WatchState};
use super::serving::{ModelSlot, Serving};
use super::upload_guard::{UploadGuard, UploadPolicy};
use super::{routes, AppState, Limits};
use crate::batcher::BatchingConfig;
use crate::error::{Error, Result};
use crate::pipeline::Detector;

/// Where to listen and what to allow.
#[derive(Clone)]
pub struct ServeConfig {
    /// Address to bind (`0.0.0.0:8080` in a pod).
    pub addr: SocketAddr,
    /// Deployment limits.
    pub limits: Limits,
    /// Device name for `/health`.
    pub device: String,
    /// Prediction log; `None` disables logging.
    pub store: Option<Arc<dyn crate::store::PredictionStore>>,
    /// Cross-request batching (the batch size itself is the detector's).
    pub batching: BatchingConfig,
    /// Key required on every route but probes and scrapes; `None` leaves the API open.
    pub api_key: Option<String>,
    /// The registry URI the model came from (as given) and the version loaded, if it did.
    pub registry_model: Option<(mlflow_client::ModelUri, u64)>,
    /// Follow a registry alias: switch to the version it points at, checking at an interval.
    pub watch: Option<WatchConfig>,
    /// Connection limit, header-read timeout and shutdown drain.
    pub connections: ConnectionLimits,
    /// Minimum upload rate and the shared budget of buffered upload bytes.
    pub uploads: UploadPolicy,
    /// Answer predictions whose log record could not be kept instead of refusing them.
    pub serve_unlogged: bool,
}

/// Serves until SIGTERM or Ctrl-C, then stops accepting, lets in-flight requests finish (for at
/// most the configured drain time), and returns. `on_bound` is told the bound address (useful with port 0).
pub async fn serve(
    detector: Detector,
    config: ServeConfig,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<()> {
    let metrics = Metrics::new().map_err(|e| Error::InvalidArgument(format!("metrics: {e}")))?;
    metrics.set_model(&detector.model().manifest);
    if config.watch.is_some() {
        metrics
            .export_model_watch()
            .map_err(|e| Error::InvalidArgument(format!("metrics: {e}")))?;
        metrics.model_registry_up.set(1);
    }
    let registry_status = config.registry_model.as_ref().map(|(uri, version)| {
        WatchState::new(uri, &mlflow_client::ModelUri::version(uri.name(), *version))
    });
    let first = Serving::start(detector, config.batching, &metrics)?;
    let state = Arc::new(AppState {
        slot: ModelSlot::new(first),
        registry_status,
        permits: Arc::new(Semaphore::new(config.limits.max_concurrent)),
        limits: config.limits,
        metrics,
        ready: AtomicBool::new(false),
        started: Instant::now(),
        device: config.device,
        store: config.store,
        api_key: config.api_key,
        uploads: UploadGuard::new(config.uploads),
        serve_unlogged: config.serve_unlogged,
    });
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|e| Error::io(std::path::Path::new(&config.addr.to_string()), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::io(std::path::Path::new("listener"), e))?;
    on_bound(bound);

    // Warm up off the runtime threads: /health answers at once, /ready once this is done.
    let warm = state.clone();
    tokio::task::spawn_blocking(
        move || match model_watch::warm_up(&warm.slot.get().detector) {
            Ok(()) => {
                warm.ready.store(true, Ordering::Release);
                tracing::info!("model warm; ready");
            }
            Err(e) => tracing::error!(error = %e, "warm-up inference failed; staying unready"),
        },
    );
    if let (Some(watch), Some((_, version))) = (config.watch, config.registry_model) {
        tracing::info!(uri = %watch.uri, version, interval_seconds = watch.interval.as_secs_f64(),
            "following the model alias");
        tokio::spawn(model_watch::watch(state.clone(), watch, version));
    }

    let app = routes::router(state.clone());
    tracing::info!(%bound, "serving");
    serve_connections(
        listener,
        app,
        config.connections,
        &state.metrics,
        shutdown_signal(),
    )
    .await;
    if let Some(store) = &state.store {
        // Give a recovering database a moment to take the spool; whatever is left stays on disk
        // and is replayed at the next start.
        let store = store.clone();
        let _ = tokio::task::spawn_blocking(move || store.flush(std::time::Duration::from_secs(5)))
            .await;
    }
    tracing::info!("drained; exiting");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining in-flight requests");
}
