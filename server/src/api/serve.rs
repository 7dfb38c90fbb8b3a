//! Running the server: bind, warm up, serve, and drain on SIGTERM/Ctrl-C.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use super::metrics::Metrics;
use super::{routes, AppState, Limits};
use crate::batcher::{BatchReport, Batcher, BatchingConfig};
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
}

/// Serves until SIGTERM or Ctrl-C, then stops accepting, lets in-flight requests finish, and
/// returns. `on_bound` is told the bound address (useful with port 0).
pub async fn serve(
    detector: Detector,
    config: ServeConfig,
    on_bound: impl FnOnce(SocketAddr),
) -> Result<()> {
    let metrics = Metrics::new().map_err(|e| Error::InvalidArgument(format!("metrics: {e}")))?;
    let m = &detector.model().manifest;
    metrics
        .model_info
        .with_label_values(&[&m.name, &m.version, &m.architecture.name])
        .set(1);
    let detector = Arc::new(detector);
    let (batch_windows, batch_requests, queue_wait) = (
        metrics.batch_windows.clone(),
        metrics.batch_requests.clone(),
        metrics.queue_wait_seconds.clone(),
    );
    let batcher = Batcher::start(detector.clone(), config.batching, move |r: BatchReport| {
        batch_windows.observe(r.windows as f64);
        batch_requests.observe(r.jobs as f64);
        queue_wait.observe(r.oldest_wait.as_secs_f64());
    })?;
    let state = Arc::new(AppState {
        detector,
        batcher,
        permits: Arc::new(Semaphore::new(config.limits.max_concurrent)),
        limits: config.limits,
        metrics,
        ready: AtomicBool::new(false),
        started: Instant::now(),
        device: config.device,
        store: config.store,
        api_key: config.api_key,
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
    tokio::task::spawn_blocking(move || {
        let det = &warm.detector;
        let (m, t) = det.extractor().output_shape(det.window_config().len);
        match det.score_log_mels(&vec![-80.0; m * t], 1) {
            Ok(_) => {
                warm.ready.store(true, Ordering::Release);
                tracing::info!("model warm; ready");
            }
            Err(e) => tracing::error!(error = %e, "warm-up inference failed; staying unready"),
        }
    });

    let app = routes::router(state.clone());
    tracing::info!(%bound, "serving");
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(|e| Error::io(std::path::Path::new("server"), e))?;
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
