//! A prediction log that never makes a prediction fail or wait because its database is down.
//!
//! [`DurableLog`] sits in front of a networked backend (MongoDB). While the database answers,
//! records go straight to it — read-your-writes, as users of `/predictions` expect. The first
//! failed write flips the log to *degraded*: that record and every later one are appended to the
//! on-disk [`Spool`] (so their order is kept and they survive a restart of this process), and a
//! background flusher thread replays the spool into the database, oldest first, backing off while
//! it is unreachable. When the spool is empty again the log is healthy and writes go direct.
//!
//! Exactly-once comes from two halves: the spool's offset is committed only after the database
//! acknowledged a batch, and the backend's [`PredictionStore::insert_batch`] skips request ids it
//! already holds, so the replay after a crash between the two writes nothing twice.
//!
//! A record the database refuses for good (not a connectivity problem) is set aside in
//! `rejected.jsonl` beside the spool, logged and counted, so one bad record cannot block the queue.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::spool::{Peeked, Spool, Spooled};
use super::{PredictionRecord, PredictionStore, RecentQuery, Statistics, StoreError, StoreStatus};

/// Records replayed per database call.
const REPLAY_BATCH: usize = 256;
/// First and longest pause between replay attempts while the database is unreachable.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));

/// A backend wrapped with an on-disk spool and a replaying flusher thread.
pub struct DurableLog {
    shared: Arc<Shared>,
    flusher: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    backend: Arc<dyn PredictionStore>,
    state: Mutex<State>,
    /// Signalled when records are spooled, when the spool drains, and on stop.
    changed: Condvar,
    rejected_path: PathBuf,
    rejected: AtomicU64,
}

struct State {
    spool: Spool,
    /// Whether the last database write succeeded; false routes new records through the spool.
    healthy: bool,
    /// Set by [`DurableLog::flush`] (or drop): the flusher exits at its next check.
    stop: bool,
}

impl DurableLog {
    /// Wraps `backend`, keeping the spool in `spool_dir` (at most `spool_limit_bytes` on disk).
    /// Records left in the spool by an earlier run are replayed before any new one.
    pub fn open(
        backend: Arc<dyn PredictionStore>,
        spool_dir: &Path,
        spool_limit_bytes: u64,
    ) -> Result<Self, StoreError> {
        let spool = Spool::open(spool_dir, spool_limit_bytes)?;
        if !spool.is_empty() {
            tracing::info!(
                records = spool.pending(),
                spool = %spool_dir.display(),
                "replaying predictions spooled by an earlier run"
            );
        }
        let healthy = spool.is_empty();
        let shared = Arc::new(Shared {
            backend,
            state: Mutex::new(State {
                spool,
                healthy,
                stop: false,
            }),
            changed: Condvar::new(),
            rejected_path: spool_dir.join("rejected.jsonl"),
            rejected: AtomicU64::new(0),
        });
        let worker = Arc::clone(&shared);
        let flusher = std::thread::Builder::new()
            .name("auralguard-spool".into())
            .spawn(move || worker.replay_loop())
            .map_err(|e| StoreError::Backend(format!("cannot start the spool flusher: {e}")))?;
        Ok(Self {
            shared,
            flusher: Mutex::new(Some(flusher)),
        })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the spool inconsistent on disk (every
        // mutation is a single append, truncate or rename), so the state is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn replay_loop(&self) {
        let mut backoff = BACKOFF.0;
        loop {
            let head = {
                let mut st = self.lock();
                while st.spool.is_empty() && !st.stop {
                    st = self.changed.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                if st.stop {
                    return;
                }
                st.spool.peek(REPLAY_BATCH)
            };
            let head = match head {
                Ok(head) => head,
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the prediction spool");
                    if self.pause(&mut backoff) {
                        return;
                    }
                    continue;
                }
            };
            match self.replay(head) {
                Ok(()) => backoff = BACKOFF.0,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = backoff.as_millis() as u64,
                        "prediction database still unavailable; records stay in the spool"
                    );
                    if self.pause(&mut backoff) {
                        return;
                    }
                }
            }
        }
    }

    /// Writes the leading run of readable records; sets aside an unreadable or refused one.
    fn replay(&self, head: Vec<Peeked>) -> Result<(), StoreError> {
        let readable: Vec<&Spooled> = head.iter().map_while(|r| r.as_ref().ok()).collect();
        let Some(last) = readable.last() else {
            if let Some(Err((line, end))) = head.first() {
                self.set_aside(line, "unreadable spool line");
                self.commit(*end, 1);
            }
            return Ok(());
        };
        let records: Vec<PredictionRecord> = readable.iter().map(|s| s.record.clone()).collect();
        match self.backend.insert_batch(&records) {
            Ok(()) => {
                self.commit(last.end, records.len() as u64);
                Ok(())
            }
            Err(StoreError::Unavailable(e)) => {
                self.lock().healthy = false;
                Err(StoreError::Unavailable(e))
            }
            Err(e) => {
                // Refused for good, but which one? Write them singly; set aside the refusers.
                for s in &readable {
                    match self.backend.insert_batch(std::slice::from_ref(&s.record)) {
                        Ok(()) => {}
                        Err(StoreError::Unavailable(u)) => {
                            self.lock().healthy = false;
                            return Err(StoreError::Unavailable(u));
                        }
                        Err(refused) => {
                            let line = serde_json::to_string(&s.record).unwrap_or_default();
                            self.set_aside(&line, &format!("{e}; alone: {refused}"));
                        }
                    }
                    self.commit(s.end, 1);
                }
                Ok(())
            }
        }
    }

    fn commit(&self, end: u64, records: u64) {
        let mut st = self.lock();
        if let Err(e) = st.spool.commit(end, records) {
            // The records are in the database; a replay after restart is harmless (dedup).
            tracing::error!(error = %e, "cannot record spool progress");
        }
        if st.spool.is_empty() && !st.healthy {
            st.healthy = true;
            tracing::info!("prediction database is back; spool drained");
        }
        self.changed.notify_all();
    }

    fn set_aside(&self, line: &str, reason: &str) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::error!(
            reason,
            file = %self.rejected_path.display(),
            "prediction record refused by the database; set aside"
        );
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.rejected_path)
            .and_then(|mut f| writeln!(f, "{}", line.trim_end()));
        if let Err(e) = written {
            tracing::error!(error = %e, record = line, "cannot keep a refused record");
        }
    }

    /// Sleeps for `backoff` (waking early on stop) and doubles it; true when told to stop.
    fn pause(&self, backoff: &mut Duration) -> bool {
        let st = self.lock();
        let (st, _) = self
            .changed
            .wait_timeout_while(st, *backoff, |s| !s.stop)
            .unwrap_or_else(|p| p.into_inner());
        *backoff = (*backoff * 2).min(BACKOFF.1);
        st.stop
    }
}

impl PredictionStore for DurableLog {
    fn backend(&self) -> &'static str {
        self.shared.backend.backend()
    }

    fn insert_batch(&self, records: &[PredictionRecord]) -> Result<(), StoreError> {
        let mut st = self.shared.lock();
        if st.healthy && st.spool.is_empty() {
            match self.shared.backend.insert_batch(records) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "prediction database write failed; spooling to disk");
                    st.healthy = false;
                }
            }
        }
        for record in records {
            st.spool.append(record)?;
        }
        self.shared.changed.notify_all();
        Ok(())
    }

    fn recent(&self, q: &RecentQuery) -> Result<Vec<PredictionRecord>, StoreError> {
        self.shared.backend.recent(q)
    }

    fn statistics(&self) -> Result<Statistics, StoreError> {
        self.shared.backend.statistics()
    }

    fn status(&self) -> StoreStatus {
        let st = self.shared.lock();
        StoreStatus {
            backend: self.backend(),
            state: if st.healthy && st.spool.is_empty() {
                "ok"
            } else {
                "degraded"
            },
            spooled: st.spool.pending(),
            set_aside: self.shared.rejected.load(Ordering::Relaxed),
        }
    }

    fn flush(&self, deadline: Duration) {
        let until = Instant::now() + deadline;
        let mut st = self.shared.lock();
        while !st.spool.is_empty() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(
                    records = st.spool.pending(),
                    "shutting down with predictions still spooled; they are replayed at the next start"
                );
                break;
            }
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        st.stop = true;
        drop(st);
        self.shared.changed.notify_all();
        let handle = self.flusher.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

impl Drop for DurableLog {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use std::sync::atomic::AtomicBool;

    /// A real SQLite store behind a switch that makes it look unreachable — the outage is the
    /// only simulated part; every write that "succeeds" really lands in SQLite.
    struct Flaky {
        inner: SqliteStore,
        down: AtomicBool,
        refuse_id: Option<String>,
    }

    impl PredictionStore for Flaky {
        fn backend(&self) -> &'static str {
            "flaky-sqlite"
        }
        fn insert_batch(&self, records: &[PredictionRecord]) -> Result<(), StoreError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(StoreError::Unavailable("switched off".into()));
            }
            if let Some(bad) = &self.refuse_id {
                if records.iter().any(|r| &r.request_id == bad) {
                    return Err(StoreError::Backend("refused".into()));
                }
            }
            self.inner.insert_batch(records)
        }
        fn recent(&self, q: &RecentQuery) -> Result<Vec<PredictionRecord>, StoreError> {
            self.inner.recent(q)
        }
        fn statistics(&self) -> Result<Statistics, StoreError> {
            self.inner.statistics()
        }
    }

    fn rec(id: usize) -> PredictionRecord {
        crate::store::sample_record(
            &format!("r{id:04}"),
            &format!("2026-11-25T10:00:{:02}.{:03}Z", id / 1000, id % 1000),
        )
    }

    fn ids(store: &dyn PredictionStore) -> Vec<String> {
        let mut v: Vec<String> = store
            .recent(&RecentQuery {
                limit: 10_000,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|r| r.request_id)
            .collect();
        v.reverse();
        v
    }

    fn wait_drained(log: &DurableLog) {
        let until = Instant::now() + Duration::from_secs(10);
        while log.status().spooled > 0 {
            assert!(
                Instant::now() < until,
                "spool did not drain: {:?}",
                log.status()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn flaky(dir: &Path, refuse_id: Option<String>) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: SqliteStore::open(&dir.join("db.sqlite")).unwrap(),
            down: AtomicBool::new(false),
            refuse_id,
        })
    }

    #[test]
    fn an_outage_loses_nothing_and_doubles_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let backend = flaky(dir.path(), None);
        let log = DurableLog::open(backend.clone(), &dir.path().join("spool"), 1 << 20).unwrap();
        for i in 0..10 {
            log.insert(&rec(i)).unwrap();
        }
        assert_eq!(log.status().state, "ok");
        backend.down.store(true, Ordering::SeqCst);
        for i in 10..40 {
            log.insert(&rec(i)).unwrap();
        }
        assert_eq!(log.status().state, "degraded");
        assert!(log.status().spooled > 0);
        backend.down.store(false, Ordering::SeqCst);
        for i in 40..50 {
            log.insert(&rec(i)).unwrap();
        }
        wait_drained(&log);
        let expected: Vec<String> = (0..50).map(|i| rec(i).request_id).collect();
        assert_eq!(ids(&*backend), expected);
        assert_eq!(log.status().state, "ok");
    }

    #[test]
    fn the_spool_survives_a_restart_and_is_replayed_first() {
        let dir = tempfile::tempdir().unwrap();
        let backend = flaky(dir.path(), None);
        backend.down.store(true, Ordering::SeqCst);
        {
            let log =
                DurableLog::open(backend.clone(), &dir.path().join("spool"), 1 << 20).unwrap();
            for i in 0..5 {
                log.insert(&rec(i)).unwrap();
            }
            log.flush(Duration::from_millis(50));
            assert_eq!(log.status().spooled, 5);
        }
        backend.down.store(false, Ordering::SeqCst);
        let log = DurableLog::open(backend.clone(), &dir.path().join("spool"), 1 << 20).unwrap();
        // A new record while the old ones are still queued must land after them.
        log.insert(&rec(5)).unwrap();
        wait_drained(&log);
        let expected: Vec<String> = (0..6).map(|i| rec(i).request_id).collect();
        assert_eq!(ids(&*backend), expected);
    }

    #[test]
    fn a_refused_record_is_set_aside_without_blocking_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let backend = flaky(dir.path(), Some(rec(2).request_id));
        backend.down.store(true, Ordering::SeqCst);
        let log = DurableLog::open(backend.clone(), &dir.path().join("spool"), 1 << 20).unwrap();
        for i in 0..5 {
            log.insert(&rec(i)).unwrap();
        }
        backend.down.store(false, Ordering::SeqCst);
        wait_drained(&log);
        assert_eq!(ids(&*backend), ["r0000", "r0001", "r0003", "r0004"]);
        assert_eq!(log.status().set_aside, 1);
        let aside = std::fs::read_to_string(dir.path().join("spool/rejected.jsonl")).unwrap();
        assert!(aside.contains("r0002"), "{aside}");
    }
}
