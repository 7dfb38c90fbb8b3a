//! A prediction log whose database can be slow, frozen or gone without a prediction noticing.
//!
//! [`DurableLog`] sits in front of a networked backend (MongoDB). Every record is first appended
//! to the on-disk [`Spool`] and flushed (that is the acknowledgement: a record the caller was told
//! about survives a crash of this process), and a background writer thread moves the spool into the
//! database, oldest first, in batches, backing off while it is unreachable. No request path ever
//! waits for the database: `/predict` waits for a local append, `/health` and `/metrics` read two
//! atomics. A record leaves the spool only once the database acknowledged it with the backend's
//! write concern (journaled by default, see [`super::mongo`]).
//!
//! Exactly-once comes from two halves: the spool's position is committed only after the database
//! acknowledged a batch, and the backend's [`PredictionStore::insert_batch`] skips request ids it
//! already holds, so the replay after a crash between the two writes nothing twice.
//!
//! Read-your-writes: `/predictions` right after `/predict` must show the new record even if the
//! writer has not delivered it yet, so the newest acknowledged-but-undelivered records are kept in
//! memory too and merged into [`PredictionStore::recent`]'s answer. `/statistics` counts what has
//! reached the database.
//!
//! A record the database refuses for good (a document-level error, not a connectivity, auth or
//! write-concern problem) is set aside in `rejected.jsonl` beside the spool, logged and counted, so
//! one bad record cannot block the queue.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::spool::{Peeked, Spool, Spooled};
use super::{PredictionRecord, PredictionStore, RecentQuery, Statistics, StoreError, StoreStatus};

/// Records written per database call.
const WRITE_BATCH: usize = 256;
/// First and longest pause between write attempts while the database is unreachable.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(100), Duration::from_secs(5));
/// Undelivered records kept in memory for `/predictions` (the newest ones; older undelivered
/// records are only on disk, which matters only during a long outage, when `/predictions`
/// cannot answer anyway).
const RECENT_UNDELIVERED: usize = 1024;

/// A backend behind an on-disk spool and a writer thread.
pub struct DurableLog {
    shared: Arc<Shared>,
    writer: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    backend: Arc<dyn PredictionStore>,
    state: Mutex<State>,
    /// Signalled when records are spooled, when records are delivered, and on stop.
    changed: Condvar,
    /// Whether the last database write succeeded (read by `/health` without any lock).
    healthy: AtomicBool,
    /// Records in the spool (mirrors [`Spool::pending`] for lock-free status reads).
    pending: AtomicU64,
    /// When the database call in progress began (milliseconds since `epoch`, 0 when none), so
    /// `/health` reports a frozen database as degraded before its call fails.
    call_started_ms: AtomicU64,
    epoch: Instant,
    rejected_path: PathBuf,
    rejected: AtomicU64,
}

/// A database call stuck longer than this makes the log report itself degraded.
const STUCK_CALL: Duration = Duration::from_secs(1);

struct State {
    spool: Spool,
    /// Sequence number of the next appended record (records left by an earlier run come first).
    appended: u64,
    /// Records delivered (or set aside) so far, in the same numbering.
    delivered: u64,
    /// The newest undelivered records with their sequence numbers, oldest first.
    undelivered: VecDeque<(u64, PredictionRecord)>,
    /// Set by [`DurableLog::flush`] (or drop): the writer exits at its next check.
    stop: bool,
}

impl DurableLog {
    /// Wraps `backend`, keeping the spool in `spool_dir` (at most `spool_limit_bytes` of
    /// undelivered records). Records left in the spool by an earlier run are delivered before any
    /// new one.
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
                "delivering predictions spooled by an earlier run"
            );
        }
        let pending = spool.pending();
        let shared = Arc::new(Shared {
            backend,
            state: Mutex::new(State {
                spool,
                appended: pending,
                delivered: 0,
                undelivered: VecDeque::new(),
                stop: false,
            }),
            changed: Condvar::new(),
            healthy: AtomicBool::new(pending == 0),
            pending: AtomicU64::new(pending),
            call_started_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            rejected_path: spool_dir.join("rejected.jsonl"),
            rejected: AtomicU64::new(0),
        });
        let worker = Arc::clone(&shared);
        let writer = std::thread::Builder::new()
            .name("auralguard-spool".into())
            .spawn(move || worker.write_loop())
            .map_err(|e| StoreError::Backend(format!("cannot start the spool writer: {e}")))?;
        Ok(Self {
            shared,
            writer: Mutex::new(Some(writer)),
        })
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the spool inconsistent on disk (every
        // mutation is an all-or-nothing append, a commit or a rename), so the state is usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_loop(&self) {
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
                st.spool.peek(WRITE_BATCH)
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
            match self.deliver(head) {
                Ok(()) => backoff = BACKOFF.0,
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        retry_in_ms = backoff.as_millis() as u64,
                        "prediction database unavailable; records stay in the spool"
                    );
                    if self.pause(&mut backoff) {
                        return;
                    }
                }
            }
        }
    }

    /// Calls the database with the call timed for [`DurableLog::status`].
    fn write(&self, records: &[PredictionRecord]) -> Result<(), StoreError> {
        let started = self.epoch.elapsed().as_millis().max(1) as u64;
        self.call_started_ms.store(started, Ordering::Release);
        let written = self.backend.insert_batch(records);
        self.call_started_ms.store(0, Ordering::Release);
        written
    }

    /// Whether a database call has been in progress for longer than [`STUCK_CALL`].
    fn stuck(&self) -> bool {
        let started = self.call_started_ms.load(Ordering::Acquire);
        started != 0
            && self.epoch.elapsed().as_millis() as u64
                > started.saturating_add(STUCK_CALL.as_millis() as u64)
    }

    /// Writes the leading run of readable records; sets aside an unreadable or refused one.
    fn deliver(&self, head: Vec<Peeked>) -> Result<(), StoreError> {
        let readable: Vec<&Spooled> = head.iter().map_while(|r| r.as_ref().ok()).collect();
        let Some(last) = readable.last() else {
            if let Some(Err((line, end))) = head.first() {
                self.set_aside(line, "damaged spool line");
                self.commit(*end, 1);
            }
            return Ok(());
        };
        let records: Vec<PredictionRecord> = readable.iter().map(|s| s.record.clone()).collect();
        match self.write(&records) {
            Ok(()) => {
                self.mark_healthy();
                self.commit(last.end, records.len() as u64);
                Ok(())
            }
            Err(StoreError::Unavailable(e)) => {
                self.mark_unhealthy(&e);
                Err(StoreError::Unavailable(e))
            }
            Err(e) => {
                // Refused for good, but which one? Write them singly; set aside the refusers.
                for s in &readable {
                    match self.write(std::slice::from_ref(&s.record)) {
                        Ok(()) => self.mark_healthy(),
                        Err(StoreError::Unavailable(u)) => {
                            self.mark_unhealthy(&u);
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

    fn mark_healthy(&self) {
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!("prediction database is back; delivering the spool");
        }
    }

    fn mark_unhealthy(&self, why: &str) {
        if self.healthy.swap(false, Ordering::AcqRel) {
            tracing::warn!(
                error = why,
                "prediction database write failed; records wait in the spool"
            );
        }
    }

    fn commit(&self, end: u64, records: u64) {
        let mut st = self.lock();
        if let Err(e) = st.spool.commit(end, records) {
            // The records are in the database; delivering them again after a restart is
            // harmless (the backend skips known request ids).
            tracing::error!(error = %e, "cannot record spool progress");
        }
        st.delivered += records;
        let delivered = st.delivered;
        while st
            .undelivered
            .front()
            .is_some_and(|(seq, _)| *seq < delivered)
        {
            st.undelivered.pop_front();
        }
        self.pending.store(st.spool.pending(), Ordering::Release);
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
            .and_then(|mut f| writeln!(f, "{}", line.trim_end()).and_then(|()| f.sync_data()));
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

/// Whether `r` passes `q`'s filters (the limit is applied after merging).
fn matches(r: &PredictionRecord, q: &RecentQuery) -> bool {
    if q.prediction.as_ref().is_some_and(|p| *p != r.prediction) {
        return false;
    }
    match &q.since {
        None => true,
        Some(since) => match (instant(since), instant(&r.timestamp)) {
            (Some(since), Some(t)) => t >= since,
            _ => r.timestamp.as_str() >= since.as_str(),
        },
    }
}

fn instant(s: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

impl PredictionStore for DurableLog {
    fn backend(&self) -> &'static str {
        self.shared.backend.backend()
    }

    fn insert_batch(&self, records: &[PredictionRecord]) -> Result<(), StoreError> {
        let mut st = self.shared.lock();
        st.spool.append_all(records)?;
        for record in records {
            let seq = st.appended;
            st.appended += 1;
            st.undelivered.push_back((seq, record.clone()));
        }
        while st.undelivered.len() > RECENT_UNDELIVERED {
            st.undelivered.pop_front();
        }
        self.shared
            .pending
            .store(st.spool.pending(), Ordering::Release);
        self.shared.changed.notify_all();
        Ok(())
    }

    fn recent(&self, q: &RecentQuery) -> Result<Vec<PredictionRecord>, StoreError> {
        // Undelivered first, then the database: a record delivered in between is in the
        // database's answer, so none acknowledged before this call can be missed.
        let undelivered: Vec<PredictionRecord> = self
            .shared
            .lock()
            .undelivered
            .iter()
            .rev()
            .map(|(_, r)| r)
            .filter(|r| matches(r, q))
            .take(q.limit)
            .cloned()
            .collect();
        let stored = self.shared.backend.recent(q)?;
        if undelivered.is_empty() {
            return Ok(stored);
        }
        let mut seen = std::collections::HashSet::new();
        let mut all: Vec<PredictionRecord> = undelivered
            .into_iter()
            .chain(stored)
            .filter(|r| seen.insert(r.request_id.clone()))
            .collect();
        // Newest first, as the backends sort: by time, then by id.
        all.sort_by(|a, b| {
            let (ta, tb) = (instant(&a.timestamp), instant(&b.timestamp));
            tb.cmp(&ta).then_with(|| b.request_id.cmp(&a.request_id))
        });
        all.truncate(q.limit);
        Ok(all)
    }

    fn statistics(&self) -> Result<Statistics, StoreError> {
        self.shared.backend.statistics()
    }

    fn status(&self) -> StoreStatus {
        StoreStatus {
            backend: self.backend(),
            state: if self.shared.healthy.load(Ordering::Acquire) && !self.shared.stuck() {
                "ok"
            } else {
                "degraded"
            },
            spooled: self.shared.pending.load(Ordering::Acquire),
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
                    "shutting down with predictions still spooled; they are delivered after the next start"
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
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(handle) = handle {
            // The writer may be inside a database call that never returns (a frozen server on
            // an open connection): wait a bounded time, then leave it. What it was writing is
            // still in the spool, so nothing is lost; a shutdown must not hang on it.
            let until = Instant::now() + WRITER_EXIT;
            while !handle.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(10));
            }
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                tracing::warn!(
                    "the prediction database call in progress did not return; leaving it, its records stay in the spool"
                );
            }
        }
    }
}

/// How long [`DurableLog::flush`] waits for the writer thread to leave a database call.
const WRITER_EXIT: Duration = Duration::from_secs(2);

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

    /// A real SQLite store behind switches that make it look unreachable or frozen — the fault
    /// is the only simulated part; every write that "succeeds" really lands in SQLite.
    struct Flaky {
        inner: SqliteStore,
        down: AtomicBool,
        /// While set, writes block (a SIGSTOPped database: the call neither fails nor returns).
        frozen: Mutex<bool>,
        thawed: Condvar,
        refuse_id: Option<String>,
    }

    impl Flaky {
        fn freeze(&self, on: bool) {
            *self.frozen.lock().unwrap() = on;
            self.thawed.notify_all();
        }
    }

    impl PredictionStore for Flaky {
        fn backend(&self) -> &'static str {
            "flaky-sqlite"
        }
        fn insert_batch(&self, records: &[PredictionRecord]) -> Result<(), StoreError> {
            let mut frozen = self.frozen.lock().unwrap();
            while *frozen {
                frozen = self.thawed.wait(frozen).unwrap();
            }
            drop(frozen);
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

    fn ids_of(records: Vec<PredictionRecord>) -> Vec<String> {
        let mut v: Vec<String> = records.into_iter().map(|r| r.request_id).collect();
        v.reverse();
        v
    }

    fn all(limit: usize) -> RecentQuery {
        RecentQuery {
            limit,
            ..Default::default()
        }
    }

    fn ids(store: &dyn PredictionStore) -> Vec<String> {
        ids_of(store.recent(&all(10_000)).unwrap())
    }

    fn wait_until(what: &str, log: &DurableLog, done: impl Fn(&StoreStatus) -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !done(&log.status()) {
            assert!(Instant::now() < until, "{what}: {:?}", log.status());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn wait_drained(log: &DurableLog) {
        wait_until("spool did not drain", log, |s| s.spooled == 0);
    }

    fn flaky(dir: &Path, refuse_id: Option<String>) -> Arc<Flaky> {
        Arc::new(Flaky {
            inner: SqliteStore::open(&dir.join("db.sqlite")).unwrap(),
            down: AtomicBool::new(false),
            frozen: Mutex::new(false),
            thawed: Condvar::new(),
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
        wait_drained(&log);
        assert_eq!(log.status().state, "ok");
        backend.down.store(true, Ordering::SeqCst);
        for i in 10..40 {
            log.insert(&rec(i)).unwrap();
        }
        wait_until("never degraded", &log, |s| s.state == "degraded");
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
    fn a_frozen_database_blocks_neither_inserts_nor_status() {
        let dir = tempfile::tempdir().unwrap();
        let backend = flaky(dir.path(), None);
        let log = DurableLog::open(backend.clone(), &dir.path().join("spool"), 1 << 20).unwrap();
        backend.freeze(true);
        let t0 = Instant::now();
        for i in 0..200 {
            log.insert(&rec(i)).unwrap();
            let _ = log.status();
        }
        // 200 fsynced appends and status reads while the writer is stuck inside the database.
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "took {:?}",
            t0.elapsed()
        );
        assert!(log.status().spooled > 0);
        wait_until("a frozen database looked healthy", &log, |s| {
            s.state == "degraded"
        });
        // Read-your-writes holds even though nothing reached the database yet.
        let newest = log.recent(&all(3)).unwrap();
        assert_eq!(ids_of(newest), ["r0197", "r0198", "r0199"]);
        backend.freeze(false);
        wait_drained(&log);
        let expected: Vec<String> = (0..200).map(|i| rec(i).request_id).collect();
        assert_eq!(ids(&*backend), expected);
        assert_eq!(ids(&log), expected, "merged view must not double records");
    }

    #[test]
    fn a_frozen_database_does_not_hang_the_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let backend = flaky(dir.path(), None);
        let log = DurableLog::open(backend.clone(), &dir.path().join("spool"), 1 << 20).unwrap();
        backend.freeze(true);
        log.insert(&rec(0)).unwrap();
        wait_until("the writer never entered the call", &log, |s| {
            s.state == "degraded"
        });
        let t0 = Instant::now();
        log.flush(Duration::from_millis(200));
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        drop(log);
        // The record is still on disk for the next start.
        let spool = Spool::open(&dir.path().join("spool"), 1 << 20).unwrap();
        assert_eq!(spool.pending(), 1);
        backend.freeze(false);
    }

    #[test]
    fn recent_filters_undelivered_records_like_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let backend = flaky(dir.path(), None);
        let log = DurableLog::open(backend.clone(), &dir.path().join("spool"), 1 << 20).unwrap();
        for i in 0..4 {
            log.insert(&rec(i)).unwrap();
        }
        wait_drained(&log);
        backend.freeze(true);
        let mut fake = rec(4);
        fake.prediction = "fake".into();
        log.insert(&fake).unwrap();
        log.insert(&rec(5)).unwrap();
        let only_fake = log
            .recent(&RecentQuery {
                limit: 10,
                prediction: Some("fake".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ids_of(only_fake), ["r0004"]);
        let since = log
            .recent(&RecentQuery {
                limit: 10,
                since: Some("2026-11-25T10:00:00.003Z".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(ids_of(since), ["r0003", "r0004", "r0005"]);
        backend.freeze(false);
        wait_drained(&log);
    }

    #[test]
    fn the_spool_survives_a_restart_and_is_delivered_first() {
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

    #[test]
    fn a_full_spool_refuses_the_record_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let backend = flaky(dir.path(), None);
        backend.down.store(true, Ordering::SeqCst);
        let log = DurableLog::open(backend.clone(), &dir.path().join("spool"), 2048).unwrap();
        let mut refused = 0;
        for i in 0..20 {
            if let Err(e) = log.insert(&rec(i)) {
                assert!(matches!(e, StoreError::Spool(_)), "{e}");
                refused += 1;
            }
        }
        assert!(refused > 0, "a 2 kB spool took 20 records");
        let kept = log.status().spooled as usize;
        assert_eq!(kept + refused, 20);
        backend.down.store(false, Ordering::SeqCst);
        wait_drained(&log);
        assert_eq!(ids(&*backend).len(), kept);
    }
}
