//! Embedded prediction log in a SQLite file: the default backend, no server needed.
//!
//! WAL mode with two connections: one writer and one reader. In WAL mode readers see the last
//! committed state without blocking the writer, so a `/statistics` scan over a large log never
//! holds up the insert a `/predict` answer waits for. `synchronous=FULL` makes every commit reach
//! the disk before it returns: an acknowledged prediction survives a power cut, not only a crash
//! of this process (the cost is one fsync per commit, about what the spool pays for MongoDB).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OpenFlags};

use super::{PredictionRecord, PredictionStore, RecentQuery, Statistics, StoreError};

/// SQLite-backed [`PredictionStore`].
pub struct SqliteStore {
    writer: Mutex<Connection>,
    /// A read-only connection for queries; `None` for `:memory:`, whose data only the connection
    /// that made it can see (queries then share the writer).
    reader: Option<Mutex<Connection>>,
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS predictions (
    request_id TEXT PRIMARY KEY,
    filename TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    prediction TEXT NOT NULL,
    probability REAL NOT NULL,
    confidence REAL NOT NULL,
    fake_probability REAL NOT NULL,
    windows TEXT NOT NULL,
    model_name TEXT NOT NULL,
    model_version TEXT NOT NULL,
    duration_seconds REAL NOT NULL,
    processing_time_seconds REAL NOT NULL,
    client TEXT,
    timestamp TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS predictions_timestamp ON predictions (timestamp);
CREATE INDEX IF NOT EXISTS predictions_prediction ON predictions (prediction, timestamp);
";

impl SqliteStore {
    /// Opens (creating if needed) the log at `path`; `:memory:` gives a throwaway one.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(format!("{}: {e}", dir.display())))?;
        }
        let at = |e: rusqlite::Error| err(format!("{}: {e}", path.display()));
        let conn = Connection::open(path).map_err(at)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        let in_memory = path.as_os_str() == ":memory:";
        let reader = if in_memory {
            None
        } else {
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
            Some(Mutex::new(
                Connection::open_with_flags(path, flags).map_err(at)?,
            ))
        };
        Ok(Self {
            writer: Mutex::new(conn),
            reader,
        })
    }

    fn lock(m: &Mutex<Connection>) -> Result<MutexGuard<'_, Connection>, StoreError> {
        m.lock()
            .map_err(|_| err("a previous store operation panicked"))
    }

    /// Runs a query on the reader connection (the writer for `:memory:`).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T, StoreError> {
        let conn = Self::lock(self.reader.as_ref().unwrap_or(&self.writer))?;
        f(&conn).map_err(err)
    }
}

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<PredictionRecord> {
    let windows: String = r.get("windows")?;
    Ok(PredictionRecord {
        request_id: r.get("request_id")?,
        filename: r.get("filename")?,
        sha256: r.get("sha256")?,
        prediction: r.get("prediction")?,
        probability: r.get::<_, f64>("probability")? as f32,
        confidence: r.get::<_, f64>("confidence")? as f32,
        fake_probability: r.get::<_, f64>("fake_probability")? as f32,
        windows: serde_json::from_str(&windows).unwrap_or_default(),
        model_name: r.get("model_name")?,
        model_version: r.get("model_version")?,
        duration_seconds: r.get("duration_seconds")?,
        processing_time_seconds: r.get("processing_time_seconds")?,
        client: r.get("client")?,
        timestamp: r.get("timestamp")?,
    })
}

impl PredictionStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn insert_batch(&self, records: &[PredictionRecord]) -> Result<(), StoreError> {
        let windows = records
            .iter()
            .map(|r| serde_json::to_string(&r.windows))
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        let mut conn = Self::lock(&self.writer)?;
        let tx = conn.transaction().map_err(err)?;
        {
            // OR IGNORE: a request id already logged is a replay, not a new prediction.
            let mut stmt = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO predictions (request_id, filename, sha256, prediction,
                       probability, confidence, fake_probability, windows, model_name,
                       model_version, duration_seconds, processing_time_seconds, client, timestamp)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
                )
                .map_err(err)?;
            for (rec, windows) in records.iter().zip(&windows) {
                stmt.execute(params![
                    rec.request_id,
                    rec.filename,
                    rec.sha256,
                    rec.prediction,
                    rec.probability as f64,
                    rec.confidence as f64,
                    rec.fake_probability as f64,
                    windows,
                    rec.model_name,
                    rec.model_version,
                    rec.duration_seconds,
                    rec.processing_time_seconds,
                    rec.client,
                    rec.timestamp
                ])
                .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    fn recent(&self, q: &RecentQuery) -> Result<Vec<PredictionRecord>, StoreError> {
        self.read(|c| {
            let mut stmt = c.prepare(
                "SELECT * FROM predictions
                 WHERE (?1 IS NULL OR timestamp >= ?1) AND (?2 IS NULL OR prediction = ?2)
                 ORDER BY timestamp DESC, rowid DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![q.since, q.prediction, q.limit as i64],
                row_to_record,
            )?;
            rows.collect()
        })
    }

    fn statistics(&self) -> Result<Statistics, StoreError> {
        self.read(|c| {
            let (total, fake, real, conf, time): (i64, i64, i64, f64, f64) = c.query_row(
                "SELECT COUNT(*),
                        COALESCE(SUM(prediction = 'fake'), 0),
                        COALESCE(SUM(prediction = 'real'), 0),
                        COALESCE(AVG(confidence), 0),
                        COALESCE(AVG(processing_time_seconds), 0)
                 FROM predictions",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )?;
            let grouped = |sql: &str| -> rusqlite::Result<std::collections::BTreeMap<String, u64>> {
                let mut stmt = c.prepare(sql)?;
                let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?;
                rows.collect()
            };
            Ok(Statistics {
                total_predictions: total as u64,
                real_count: real as u64,
                fake_count: fake as u64,
                fake_ratio: if total > 0 { fake as f64 / total as f64 } else { 0.0 },
                mean_confidence: conf,
                mean_processing_time_seconds: time,
                by_model_version: grouped(
                    "SELECT model_name || '@' || model_version, COUNT(*) FROM predictions GROUP BY 1",
                )?,
                by_day: grouped("SELECT substr(timestamp, 1, 10), COUNT(*) FROM predictions GROUP BY 1")?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, label: &str, ts: &str, version: &str) -> PredictionRecord {
        PredictionRecord {
            request_id: id.into(),
            filename: format!("{id}.wav"),
            sha256: "00".repeat(32),
            prediction: label.into(),
            probability: 0.8,
            confidence: 0.6,
            fake_probability: if label == "fake" { 0.8 } else { 0.2 },
            windows: vec![crate::verdict::WindowVerdict {
                start: 0.0,
                end: 3.0,
                fake_probability: 0.2,
            }],
            model_name: "m".into(),
            model_version: version.into(),
            duration_seconds: 3.0,
            processing_time_seconds: 0.5,
            client: Some("127.0.0.1:5000".into()),
            timestamp: ts.into(),
        }
    }

    #[test]
    fn insert_recent_and_statistics() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("sub/log.db")).unwrap();
        s.insert(&rec("a", "real", "2026-11-23T10:00:00.000Z", "1"))
            .unwrap();
        s.insert(&rec("b", "fake", "2026-11-24T10:00:00.000Z", "1"))
            .unwrap();
        s.insert(&rec("c", "fake", "2026-11-24T11:00:00.000Z", "2"))
            .unwrap();
        let all = s
            .recent(&RecentQuery {
                limit: 10,
                ..Default::default()
            })
            .unwrap();
        let ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert_eq!(all[2], rec("a", "real", "2026-11-23T10:00:00.000Z", "1"));
        let fakes = s
            .recent(&RecentQuery {
                limit: 1,
                prediction: Some("fake".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(fakes.len(), 1);
        assert_eq!(fakes[0].request_id, "c");
        let since = s
            .recent(&RecentQuery {
                limit: 10,
                since: Some("2026-11-24T00:00:00Z".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(since.len(), 2);
        let st = s.statistics().unwrap();
        assert_eq!(
            (st.total_predictions, st.real_count, st.fake_count),
            (3, 1, 2)
        );
        assert!((st.fake_ratio - 2.0 / 3.0).abs() < 1e-12);
        assert!((st.mean_confidence - 0.6).abs() < 1e-6);
        assert_eq!(st.by_model_version["m@1"], 2);
        assert_eq!(st.by_day["2026-11-24"], 2);
        // A replayed request id is skipped, never doubled, and the first record is kept.
        s.insert_batch(&[
            rec("a", "real", "2026-11-25T10:00:00.000Z", "1"),
            rec("d", "real", "2026-11-25T10:00:00.000Z", "1"),
        ])
        .unwrap();
        let st = s.statistics().unwrap();
        assert_eq!(st.total_predictions, 4);
        assert_eq!(st.by_day["2026-11-23"], 1);
    }

    #[test]
    fn records_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.db");
        SqliteStore::open(&path)
            .unwrap()
            .insert(&rec("a", "real", "2026-11-23T10:00:00.000Z", "1"))
            .unwrap();
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.statistics().unwrap().total_predictions, 1);
    }

    #[test]
    fn a_query_in_progress_does_not_hold_up_inserts() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("log.db")).unwrap();
        s.insert(&rec("a", "real", "2026-11-23T10:00:00.000Z", "1"))
            .unwrap();
        // A reader mid-transaction (a long `/statistics` scan) holds the reader connection and a
        // WAL read snapshot; the writer must still commit, and the next query sees its row.
        let reader = SqliteStore::lock(s.reader.as_ref().unwrap()).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let seen: i64 = reader
            .query_row("SELECT COUNT(*) FROM predictions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 1);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let written = s.insert(&rec("b", "fake", "2026-11-24T10:00:00.000Z", "1"));
                tx.send(written).unwrap();
            });
            let written = rx
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("an insert waited for a reader");
            written.unwrap();
        });
        reader.execute_batch("COMMIT").unwrap();
        drop(reader);
        assert_eq!(s.statistics().unwrap().total_predictions, 2);
    }

    #[test]
    fn commits_are_synchronous_and_queries_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("log.db")).unwrap();
        let sync: i64 = SqliteStore::lock(&s.writer)
            .unwrap()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let reader = SqliteStore::lock(s.reader.as_ref().unwrap()).unwrap();
        assert!(reader.execute_batch("DELETE FROM predictions").is_err());
    }

    #[test]
    fn empty_log_has_zero_statistics() {
        let s = SqliteStore::open(Path::new(":memory:")).unwrap();
        let st = s.statistics().unwrap();
        assert_eq!(st.total_predictions, 0);
        assert_eq!(st.fake_ratio, 0.0);
    }
}
