//! Bounds on request bodies while they are being read: a minimum upload rate and a shared budget
//! of buffered bytes.
//!
//! Judging permits are taken only once a body is in (so a slow upload cannot hold one), which
//! leaves the reading itself to be bounded here. Two things can go wrong while a body arrives:
//!
//! - **A client trickles its upload** (slowloris on the body): after a grace period, a body must
//!   have arrived at `--min-upload-bytes-per-second` on average since the request started, or the
//!   request ends with 408 `slow_upload`. The check runs on every frame *and* on a timer while the
//!   client sends nothing, so a silent client is caught at the same deadline as a slow one.
//! - **Many uploads are buffered at once**: every body byte read is charged to a process-wide
//!   budget (`--max-buffered-upload-mb`) and released when the request finishes; a body that would
//!   go over it ends with 503 `overloaded` and `Retry-After`. Charging what actually arrived,
//!   rather than what `Content-Length` claims, means a client holds only the memory it really
//!   made the server keep.
//!
//! Both refusals are counted in `auralguard_limit_rejections_total`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use super::error::ApiError;
use super::metrics::Limit;
use super::AppState;

/// Budget unit: permits are KiB so that a `u32` permit count covers 4 TiB.
const UNIT: u64 = 1024;

/// The upload policy a server runs with (from `--min-upload-bytes-per-second`,
/// `--upload-grace-seconds` and `--max-buffered-upload-mb`).
#[derive(Debug, Clone)]
pub struct UploadPolicy {
    /// Average rate every body must keep after the grace period; 0 turns the check off.
    pub min_bytes_per_second: u64,
    /// Time a body may take before the rate is enforced (covers slow starts and small files).
    pub grace: Duration,
    /// Body bytes all requests together may hold while they are read and judged.
    pub max_buffered_bytes: u64,
}

/// The shared byte budget, built once from an [`UploadPolicy`].
#[derive(Debug, Clone)]
pub struct UploadGuard {
    policy: UploadPolicy,
    budget: Arc<Semaphore>,
}

impl UploadGuard {
    /// A guard enforcing `policy`.
    pub fn new(policy: UploadPolicy) -> Self {
        let units = policy
            .max_buffered_bytes
            .div_ceil(UNIT)
            .clamp(1, Semaphore::MAX_PERMITS as u64) as usize;
        Self {
            policy,
            budget: Arc::new(Semaphore::new(units)),
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &UploadPolicy {
        &self.policy
    }
}

/// Why a body was cut off.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Refusal {
    /// Below the minimum rate: bytes received by then, and seconds elapsed.
    TooSlow { received: u64, seconds: f64 },
    /// The shared buffer budget is spent.
    BudgetSpent,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::TooSlow { received, seconds } => {
                write!(f, "upload too slow: {received} bytes in {seconds:.1} s")
            }
            Refusal::BudgetSpent => f.write_str("upload buffer budget spent"),
        }
    }
}

impl std::error::Error for Refusal {}

/// What a paced body shares with the middleware that installed it: the refusal, if any, and the
/// budget it holds until the request is answered.
#[derive(Default)]
struct Ledger {
    refusal: OnceLock<Refusal>,
    held: Mutex<Option<OwnedSemaphorePermit>>,
}

impl Ledger {
    fn refuse(&self, why: Refusal) -> axum::Error {
        let _ = self.refusal.set(why);
        axum::Error::new(why)
    }
}

/// A request body that enforces the rate and charges the budget as frames arrive.
struct PacedBody {
    inner: Body,
    started: Instant,
    received: u64,
    charged_units: u64,
    guard: UploadGuard,
    ledger: Arc<Ledger>,
    /// Armed only while the client sends nothing, so a steady upload allocates no timer.
    timer: Option<Pin<Box<Sleep>>>,
}

impl PacedBody {
    /// When the body, with what it has sent so far, falls below the minimum rate.
    fn deadline(&self) -> Option<Instant> {
        let rate = self.guard.policy.min_bytes_per_second;
        (rate > 0).then(|| {
            let earned = Duration::from_secs_f64(self.received as f64 / rate as f64);
            self.started + self.guard.policy.grace.max(earned)
        })
    }

    fn too_slow(&self, now: Instant) -> Option<Refusal> {
        self.deadline()
            .filter(|&d| now >= d)
            .map(|_| Refusal::TooSlow {
                received: self.received,
                seconds: (now - self.started).as_secs_f64(),
            })
    }

    /// Charges newly received bytes to the shared budget.
    fn charge(&mut self) -> Result<(), Refusal> {
        let need = self.received.div_ceil(UNIT);
        let more = need.saturating_sub(self.charged_units);
        if more == 0 {
            return Ok(());
        }
        let more32 = u32::try_from(more).map_err(|_| Refusal::BudgetSpent)?;
        let permit = self
            .guard
            .budget
            .clone()
            .try_acquire_many_owned(more32)
            .map_err(|_| Refusal::BudgetSpent)?;
        let mut held = self.ledger.held.lock().unwrap_or_else(|p| p.into_inner());
        match held.as_mut() {
            Some(h) => h.merge(permit),
            None => *held = Some(permit),
        }
        self.charged_units = need;
        Ok(())
    }
}

impl http_body::Body for PacedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.ledger.refusal.get().is_some() {
            return Poll::Ready(None);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.timer = None;
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                    if let Some(why) = this.too_slow(Instant::now()) {
                        return Poll::Ready(Some(Err(this.ledger.refuse(why))));
                    }
                    if let Err(why) = this.charge() {
                        return Poll::Ready(Some(Err(this.ledger.refuse(why))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Pending => {
                let Some(deadline) = this.deadline() else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if timer.as_mut().poll(cx).is_ready() {
                    if let Some(why) = this.too_slow(Instant::now()) {
                        return Poll::Ready(Some(Err(this.ledger.refuse(why))));
                    }
                    // Woken early (cannot happen with tokio's timer, but stay correct): re-arm.
                    this.timer = None;
                    cx.waker().wake_by_ref();
                }
                Poll::Pending
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware: reads every request body through a [`PacedBody`] and, when one was cut off,
/// answers with the guard's refusal instead of whatever the handler made of the broken body.
pub async fn guard_uploads(
    State(state): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    if http_body::Body::is_end_stream(req.body()) {
        return next.run(req).await;
    }
    let ledger = Arc::new(Ledger::default());
    let (parts, inner) = req.into_parts();
    let body = PacedBody {
        inner,
        started: Instant::now(),
        received: 0,
        charged_units: 0,
        guard: state.uploads.clone(),
        ledger: ledger.clone(),
        timer: None,
    };
    let response = next.run(Request::from_parts(parts, Body::new(body))).await;
    let refusal = ledger.refusal.get().copied();
    // The budget is released only now: the handler has dropped the body's bytes by the time
    // its response exists.
    drop(ledger.held.lock().map(|mut h| h.take()));
    match refusal {
        None => response,
        Some(why) => refusal_response(why, state.uploads.policy()),
    }
}

fn refusal_response(why: Refusal, policy: &UploadPolicy) -> Response {
    match why {
        Refusal::TooSlow { received, seconds } => ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "slow_upload",
            format!(
                "the upload arrived too slowly ({received} bytes in {seconds:.1} s); after {} s \
                 a body must average at least {} bytes/s",
                policy.grace.as_secs_f64(),
                policy.min_bytes_per_second
            ),
        )
        .because(Limit::SlowClient)
        .into_response(),
        Refusal::BudgetSpent => ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                format!(
                    "the server is already holding {} MB of uploads; retry shortly",
                    policy.max_buffered_bytes / (1 << 20)
                ),
            )
            .because(Limit::UploadBuffer)
        }
        .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use tokio::sync::mpsc;

    fn guard(rate: u64, grace_ms: u64, budget: u64) -> UploadGuard {
        UploadGuard::new(UploadPolicy {
            min_bytes_per_second: rate,
            grace: Duration::from_millis(grace_ms),
            max_buffered_bytes: budget,
        })
    }

    /// A body fed by a channel: the test decides when each chunk arrives.
    struct Fed(mpsc::Receiver<Bytes>);

    impl http_body::Body for Fed {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            self.0.poll_recv(cx).map(|c| c.map(|b| Ok(Frame::data(b))))
        }
    }

    fn paced(guard: &UploadGuard) -> (mpsc::Sender<Bytes>, PacedBody, Arc<Ledger>) {
        let (tx, rx) = mpsc::channel(16);
        let ledger = Arc::new(Ledger::default());
        let body = PacedBody {
            inner: Body::new(Fed(rx)),
            started: Instant::now(),
            received: 0,
            charged_units: 0,
            guard: guard.clone(),
            ledger: ledger.clone(),
            timer: None,
        };
        (tx, body, ledger)
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_client_is_cut_off_at_the_grace_deadline() {
        let g = guard(1000, 2000, 1 << 20);
        let (_tx, body, ledger) = paced(&g);
        let t0 = Instant::now();
        let Err(err) = body.collect().await else {
            panic!("a silent body must fail");
        };
        assert!(err.to_string().contains("too slow"), "{err}");
        let waited = t0.elapsed();
        assert!(waited >= Duration::from_millis(2000), "{waited:?}");
        assert!(waited < Duration::from_millis(2100), "{waited:?}");
        assert!(matches!(
            ledger.refusal.get(),
            Some(Refusal::TooSlow { .. })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_is_cut_off_once_below_the_rate_and_a_steady_upload_is_not() {
        let g = guard(1000, 1000, 1 << 20);
        // 10 bytes every 100 ms is 100 B/s: under 1000 B/s, refused soon after the grace.
        let (tx, body, ledger) = paced(&g);
        tokio::spawn(async move {
            for _ in 0..100 {
                if tx.send(Bytes::from_static(&[7; 10])).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        assert!(body.collect().await.is_err());
        assert!(
            matches!(ledger.refusal.get(), Some(Refusal::TooSlow { received, .. }) if *received < 200)
        );

        // 500 bytes every 100 ms is 5000 B/s: the whole body arrives.
        let (tx, body, ledger) = paced(&g);
        tokio::spawn(async move {
            for _ in 0..30 {
                let _ = tx.send(Bytes::from_static(&[7; 500])).await;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let all = body.collect().await.expect("steady upload").to_bytes();
        assert_eq!(all.len(), 15_000);
        assert!(ledger.refusal.get().is_none());
    }

    #[tokio::test]
    async fn the_budget_is_shared_and_given_back() {
        let g = guard(0, 0, 4096);
        let (tx1, mut a, ledger_a) = paced(&g);
        let (tx2, b, ledger_b) = paced(&g);
        tx1.send(Bytes::from(vec![0u8; 3000])).await.unwrap();
        assert!(a.frame().await.unwrap().is_ok(), "3000 bytes fit in 4096");
        tx2.send(Bytes::from(vec![0u8; 3000])).await.unwrap();
        drop(tx2);
        assert!(
            b.collect().await.is_err(),
            "together they are over the budget"
        );
        assert_eq!(ledger_b.refusal.get(), Some(&Refusal::BudgetSpent));
        // Releasing the first upload's hold frees the room again.
        drop(ledger_a.held.lock().unwrap().take());
        let (tx3, c, _) = paced(&g);
        tx3.send(Bytes::from(vec![0u8; 3000])).await.unwrap();
        drop(tx3);
        assert_eq!(c.collect().await.unwrap().to_bytes().len(), 3000);
        drop(tx1);
    }
}
