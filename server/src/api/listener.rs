//! The accept loop: HTTP/1.1 connections with a header-read timeout, a connection limit, and a
//! drain on shutdown that is bounded in time.
//!
//! `axum::serve` gives none of the three: it sets no timer (so hyper's header-read timeout is
//! off and a client may take forever to send its headers), accepts without bound, and waits for
//! every connection to close on shutdown, so one idle keep-alive client can hold a pod in
//! `Terminating` until the kubelet kills it mid-request.
//!
//! Only HTTP/1.1 is served: the API is REST (the OIP's REST binding included), and TLS with
//! HTTP/2 terminates at the ingress or mesh in front of a pod. Cleartext HTTP/2 would add a
//! protocol with its own slow-client modes and no header-read timeout in hyper.
//!
//! A connection over the limit is not left in the kernel's backlog, where the client cannot tell
//! overload from a dead server: it is accepted, told `503` with `Retry-After` and closed.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use super::metrics::{Limit, Metrics};

/// Connection-level limits (from `--max-connections`, `--header-timeout-seconds`,
/// `--drain-seconds`).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Open connections at once; beyond it new ones get 503 and are closed.
    pub max_connections: usize,
    /// Time a client has to send a request's headers (also how long an idle keep-alive
    /// connection is kept).
    pub header_read_timeout: Duration,
    /// Time in-flight requests get to finish after SIGTERM before their connections are closed.
    pub drain_timeout: Duration,
}

/// The answer to a connection over the limit: complete, so a client reads a clean refusal.
static OVER_LIMIT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = r#"{"error":{"code":"too_many_connections","message":"the server's connection limit is reached; retry shortly"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting, lets open
/// requests finish for at most `limits.drain_timeout`, and closes what is left.
pub async fn serve_connections(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: &Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (closing_tx, closing_rx) = watch::channel(false);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let over_limit = metrics.limit_counter(Limit::Connections);
    let slow_headers = metrics.limit_counter(Limit::SlowClient);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        // Reap finished connections so the set does not grow with the server's lifetime.
        while connections.try_join_next().is_some() {}
        let (stream, remote) = match accepted {
            Ok(ok) => ok,
            Err(e) => {
                // Typically EMFILE: back off instead of spinning on a full descriptor table.
                tracing::warn!(error = %e, "accept failed; pausing 50 ms");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            over_limit.inc();
            connections.spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let http = http.clone();
        let app = app.clone();
        let mut closing = closing_rx.clone();
        let slow_headers = slow_headers.clone();
        connections.spawn(async move {
            let _slot = slot;
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(remote));
                    app.clone().oneshot(req)
                });
            let conn = http.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let finished = tokio::select! {
                finished = conn.as_mut() => finished,
                () = async { let _ = closing.wait_for(|c| *c).await; } => {
                    // Finish the request in flight, then close instead of keeping alive.
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = finished {
                // Header timeouts, resets and malformed requests end here; none is the
                // server's fault, so they are not warnings.
                if e.is_timeout() {
                    slow_headers.inc();
                }
                tracing::debug!(error = %e, %remote, "connection ended with an error");
            }
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let open = connections.len();
    if open > 0 {
        tracing::info!(connections = open, "draining open connections");
    }
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            drain_seconds = limits.drain_timeout.as_secs_f64(),
            "drain deadline passed; closing the connections still open"
        );
        connections.shutdown().await;
    }
}

/// Tells a connection over the limit why it is being closed (bounded: a client that does not
/// read is dropped after a second).
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(&OVER_LIMIT).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
