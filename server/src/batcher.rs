//! Cross-request dynamic batching: the windows of concurrent requests share network calls.
//!
//! Requests decode and featurise their audio on their own (in parallel, on the blocking pool),
//! then hand the log-mels to one worker thread that owns the network. The worker takes the first
//! waiting job, keeps collecting until the batch holds `max_batch` windows or `max_delay` has
//! passed, runs the network once on all of it (candle spreads the GEMMs over every core), and
//! sends each job its slice of the scores. This is the Triton `max_queue_delay` scheme: under
//! load, batches fill to the maximum and throughput rises; idle, a request waits at most
//! `max_delay` for company.
//!
//! The queue is bounded in windows, not requests, because a window's log-mel (128×469 f32 =
//! 240 kB) is what costs memory: a job that does not fit is refused at once with
//! [`SubmitError::QueueFull`] (the API answers 503 + `Retry-After`), so memory never grows without
//! bound. A job whose caller has gone (timeout, closed connection) is dropped unscored.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::error::{Error, Result};
use crate::pipeline::Detector;

/// How batches are formed and how much may wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchingConfig {
    /// Longest time the first job of a batch waits for others to join it.
    pub max_delay: Duration,
    /// Windows allowed to wait for the network at once; a job beyond that is refused. A job
    /// larger than the whole limit is still taken when nothing else is waiting.
    pub max_queued_windows: usize,
}

impl Default for BatchingConfig {
    fn default() -> Self {
        Self {
            max_delay: Duration::from_millis(2),
            max_queued_windows: 256,
        }
    }
}

/// Why a job was not queued.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// Too many windows are waiting already; retry shortly.
    #[error("the inference queue is full: {queued} windows are waiting (limit {limit})")]
    QueueFull {
        /// Windows waiting when the job arrived.
        queued: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The worker thread has exited (only during shutdown or after a panic in candle).
    #[error("the inference worker has stopped")]
    Stopped,
}

/// What one network call did, for metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchReport {
    /// Windows scored together.
    pub windows: usize,
    /// Requests whose windows were in the batch.
    pub jobs: usize,
    /// How long the batch's oldest job waited in the queue.
    pub oldest_wait: Duration,
    /// Time spent in the network.
    pub compute: Duration,
}

/// Scores for one job, or why the batch failed.
pub type Scores = Result<Vec<f32>>;

/// One request's windows waiting for the network.
struct Job {
    features: Vec<f32>,
    windows: usize,
    enqueued: Instant,
    reply: oneshot::Sender<Scores>,
}

/// Handle to the batching worker; cheap to share behind an `Arc`. Dropping the last handle lets
/// the worker finish the jobs already queued and exit.
pub struct Batcher {
    tx: mpsc::Sender<Job>,
    queued: Arc<AtomicUsize>,
    config: BatchingConfig,
}

impl Batcher {
    /// Starts the worker thread for `detector`; batches hold up to `detector.batch_size()`
    /// windows. `on_batch` is called after every network call (keep it cheap).
    pub fn start(
        detector: Arc<Detector>,
        config: BatchingConfig,
        on_batch: impl Fn(BatchReport) + Send + 'static,
    ) -> Result<Self> {
        if config.max_queued_windows == 0 {
            return Err(Error::InvalidArgument(
                "the inference queue must hold at least one window".into(),
            ));
        }
        let (tx, rx) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let worker_queued = Arc::clone(&queued);
        std::thread::Builder::new()
            .name("auralguard-batcher".into())
            .spawn(move || run_worker(&detector, config, &rx, &worker_queued, &on_batch))
            .map_err(|e| Error::io(std::path::Path::new("batcher thread"), e))?;
        Ok(Self { tx, queued, config })
    }

    /// Queues `windows` log-mels laid end to end in `features`; the receiver yields their scores
    /// in order. Refused at once when the queue cannot take them.
    pub fn submit(
        &self,
        features: Vec<f32>,
        windows: usize,
    ) -> std::result::Result<oneshot::Receiver<Scores>, SubmitError> {
        let limit = self.config.max_queued_windows;
        let mut current = self.queued.load(Ordering::Acquire);
        loop {
            if current > 0 && current.saturating_add(windows) > limit {
                return Err(SubmitError::QueueFull {
                    queued: current,
                    limit,
                });
            }
            match self.queued.compare_exchange_weak(
                current,
                current + windows,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(now) => current = now,
            }
        }
        let (reply, rx) = oneshot::channel();
        let job = Job {
            features,
            windows,
            enqueued: Instant::now(),
            reply,
        };
        if self.tx.send(job).is_err() {
            self.queued.fetch_sub(windows, Ordering::AcqRel);
            return Err(SubmitError::Stopped);
        }
        Ok(rx)
    }

    /// Windows waiting for the network right now (the queue-depth gauge).
    pub fn queued_windows(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}

/// The worker loop: gather, score, reply, until every handle is dropped and the queue is empty.
fn run_worker(
    detector: &Detector,
    config: BatchingConfig,
    rx: &mpsc::Receiver<Job>,
    queued: &AtomicUsize,
    on_batch: &dyn Fn(BatchReport),
) {
    let max_batch = detector.batch_size();
    let mut jobs: Vec<Job> = Vec::new();
    let mut features: Vec<f32> = Vec::new();
    while let Ok(first) = rx.recv() {
        let deadline = Instant::now() + config.max_delay;
        let mut windows = first.windows;
        jobs.push(first);
        while windows < max_batch {
            let left = deadline.saturating_duration_since(Instant::now());
            let next = if left.is_zero() {
                rx.try_recv().ok()
            } else {
                // Timeout or every sender gone: the batch is as full as it will get.
                rx.recv_timeout(left).ok()
            };
            let Some(job) = next else { break };
            windows += job.windows;
            jobs.push(job);
        }
        queued.fetch_sub(windows, Ordering::AcqRel);
        // Callers that gave up (timeout, closed connection) are not worth a network call.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let oldest_wait = jobs
            .iter()
            .map(|j| j.enqueued.elapsed())
            .max()
            .unwrap_or_default();
        let n: usize = jobs.iter().map(|j| j.windows).sum();
        let job_count = jobs.len();
        let t0 = Instant::now();
        let scored = if jobs.len() == 1 {
            detector.score_log_mels(&jobs[0].features, n)
        } else {
            features.clear();
            for j in &jobs {
                features.extend_from_slice(&j.features);
            }
            detector.score_log_mels(&features, n)
        };
        let compute = t0.elapsed();
        match scored {
            Ok(probs) => {
                let mut rest = probs.as_slice();
                for job in jobs.drain(..) {
                    let (mine, tail) = rest.split_at(job.windows.min(rest.len()));
                    rest = tail;
                    let _ = job.reply.send(Ok(mine.to_vec()));
                }
            }
            Err(e) => {
                let msg = e.to_string();
                tracing::error!(error = %msg, windows = n, "batch inference failed");
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(Error::Inference(msg.clone())));
                }
            }
        }
        on_batch(BatchReport {
            windows: n,
            jobs: job_count,
            oldest_wait,
            compute,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ModelPackage;
    use crate::pipeline::DetectorOptions;
    use std::sync::mpsc::{Receiver, SyncSender};

    /// The bundled seed-random model with `batch` windows per network call.
    fn detector(batch: usize) -> Arc<Detector> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/seed-random");
        let model = ModelPackage::open(&dir)
            .and_then(|p| p.load(&candle_core::Device::Cpu))
            .expect("bundled model");
        let opts = DetectorOptions {
            batch_size: Some(batch),
            ..Default::default()
        };
        Arc::new(Detector::new(model, &opts).expect("detector"))
    }

    /// `n` distinct log-mels for `det`.
    fn features(det: &Detector, n: usize, seed: f32) -> Vec<f32> {
        let (m, t) = det.model().manifest.input_shape();
        (0..n * m * t)
            .map(|i| -80.0 + ((i as f32 * 0.37 + seed).sin() + 1.0) * 40.0)
            .collect()
    }

    /// A batcher whose worker stops after each batch until the test lets it go on, so the
    /// queue's state can be observed and arranged deterministically.
    fn gated(
        det: &Arc<Detector>,
        config: BatchingConfig,
    ) -> (Batcher, Receiver<BatchReport>, SyncSender<()>) {
        let (report_tx, report_rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::sync_channel::<()>(0);
        let go_rx = std::sync::Mutex::new(go_rx);
        let b = Batcher::start(Arc::clone(det), config, move |r| {
            let _ = report_tx.send(r);
            let _ = go_rx.lock().map(|g| g.recv());
        })
        .unwrap();
        (b, report_rx, go_tx)
    }

    fn blocking_scores(rx: oneshot::Receiver<Scores>) -> Vec<f32> {
        rx.blocking_recv().expect("reply").expect("scores")
    }

    #[test]
    fn concurrent_jobs_share_one_network_call_and_get_their_own_scores() {
        let det = detector(8);
        let inputs: Vec<Vec<f32>> = (0..3).map(|k| features(&det, k + 1, k as f32)).collect();
        let alone: Vec<Vec<f32>> = inputs
            .iter()
            .enumerate()
            .map(|(k, f)| det.score_log_mels(f, k + 1).unwrap())
            .collect();
        let config = BatchingConfig {
            max_delay: Duration::from_secs(1),
            max_queued_windows: 64,
        };
        let (b, reports, go) = gated(&det, config);
        // 1 + 2 + 3 = 6 windows < 8: the worker waits for more until the delay runs out, so all
        // three jobs (submitted well within 1 s) land in one batch.
        let rxs: Vec<_> = inputs
            .iter()
            .enumerate()
            .map(|(k, f)| b.submit(f.clone(), k + 1).unwrap())
            .collect();
        let report = reports.recv().unwrap();
        assert_eq!((report.windows, report.jobs), (6, 3));
        go.send(()).unwrap();
        for (rx, want) in rxs.into_iter().zip(&alone) {
            let got = blocking_scores(rx);
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(want) {
                assert!((g - w).abs() < 1e-5, "batched {g} vs alone {w}");
            }
        }
    }

    #[test]
    fn a_full_batch_does_not_wait_for_the_delay() {
        let det = detector(2);
        let config = BatchingConfig {
            max_delay: Duration::from_secs(60),
            max_queued_windows: 64,
        };
        let b = Batcher::start(Arc::clone(&det), config, |_| {}).unwrap();
        let t0 = Instant::now();
        let rx = b.submit(features(&det, 2, 0.0), 2).unwrap();
        assert_eq!(blocking_scores(rx).len(), 2);
        assert!(t0.elapsed() < Duration::from_secs(30));
    }

    #[test]
    fn the_queue_is_bounded_in_windows_and_refuses_at_once() {
        let det = detector(1);
        let config = BatchingConfig {
            max_delay: Duration::ZERO,
            max_queued_windows: 3,
        };
        let (b, reports, go) = gated(&det, config);
        // A job larger than the whole limit is taken when nothing waits.
        let big = b.submit(features(&det, 4, 0.0), 4).unwrap();
        assert_eq!(reports.recv().unwrap().windows, 4);
        // The worker is held after that batch: these wait in the queue.
        let two = b.submit(features(&det, 2, 1.0), 2).unwrap();
        let one = b.submit(features(&det, 1, 2.0), 1).unwrap();
        assert_eq!(b.queued_windows(), 3);
        assert_eq!(
            b.submit(features(&det, 1, 3.0), 1).unwrap_err(),
            SubmitError::QueueFull {
                queued: 3,
                limit: 3
            }
        );
        go.send(()).unwrap();
        assert_eq!(blocking_scores(big).len(), 4);
        for _ in 0..2 {
            reports.recv().unwrap();
            go.send(()).unwrap();
        }
        assert_eq!(blocking_scores(two).len(), 2);
        assert_eq!(blocking_scores(one).len(), 1);
        assert_eq!(b.queued_windows(), 0);
    }

    #[test]
    fn abandoned_jobs_are_not_scored() {
        let det = detector(1);
        let config = BatchingConfig {
            max_delay: Duration::ZERO,
            max_queued_windows: 16,
        };
        let (b, reports, go) = gated(&det, config);
        let first = b.submit(features(&det, 1, 0.0), 1).unwrap();
        reports.recv().unwrap();
        drop(b.submit(features(&det, 1, 1.0), 1).unwrap()); // the caller went away
        let kept = b.submit(features(&det, 1, 2.0), 1).unwrap();
        go.send(()).unwrap();
        assert_eq!(blocking_scores(first).len(), 1);
        // The abandoned job is skipped without a network call: the next batch is the kept one.
        let next = reports.recv().unwrap();
        assert_eq!((next.windows, next.jobs), (1, 1));
        go.send(()).unwrap();
        assert_eq!(blocking_scores(kept).len(), 1);
    }

    #[test]
    fn dropping_the_handle_finishes_queued_jobs_then_stops() {
        let det = detector(4);
        let b = Batcher::start(Arc::clone(&det), BatchingConfig::default(), |_| {}).unwrap();
        let rx = b.submit(features(&det, 3, 0.0), 3).unwrap();
        drop(b);
        assert_eq!(blocking_scores(rx).len(), 3);
    }

    #[test]
    fn a_zero_sized_queue_is_refused() {
        let det = detector(4);
        let config = BatchingConfig {
            max_delay: Duration::ZERO,
            max_queued_windows: 0,
        };
        assert!(Batcher::start(det, config, |_| {}).is_err());
    }
}
