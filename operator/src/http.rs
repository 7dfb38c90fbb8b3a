//! The operator's HTTP endpoint: `/metrics` (Prometheus), `/healthz` (the process is alive) and
//! `/readyz` (start-up finished: the API server answered and the controller runs or waits for
//! the lease). Standby replicas are ready too, so a rolling update of the operator never waits
//! on leadership.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::{Error, Result};

/// What the endpoints report on.
pub struct Health {
    /// The operator's metrics.
    pub metrics: Arc<Metrics>,
    /// Set once start-up finished.
    pub ready: AtomicBool,
}

/// The routes.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn metrics(State(h): State<Arc<Health>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        h.metrics.render(),
    )
}

async fn readyz(State(h): State<Arc<Health>>) -> impl IntoResponse {
    if h.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

/// Serves the routes on `addr` until `stop` turns true.
pub async fn serve(
    addr: SocketAddr,
    health: Arc<Health>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Http(format!("cannot listen on {addr}: {e}")))?;
    axum::serve(listener, router(health))
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
        .map_err(|e| Error::Http(format!("serving on {addr}: {e}")))
}
