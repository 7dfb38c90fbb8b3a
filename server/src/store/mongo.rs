//! The prediction log in MongoDB, as the original service kept it.
//!
//! One document per prediction in the `predictions` collection of the URI's database
//! (`auralguard` when the URI names none), keyed by request id (`_id`), so a replayed write is
//! refused by the database itself instead of being stored twice. `timestamp` is a BSON date, which
//! is what the indexes (`timestamp`, `prediction + timestamp`), the `since` filter and the per-day
//! grouping work on. `/statistics` is one aggregation pipeline (`$facet` of `$group`s) run by the
//! database; nothing loads every record.
//!
//! Connectivity failures come back as [`StoreError::Unavailable`] after a short server-selection
//! timeout (2 s unless the URI sets `serverSelectionTimeoutMS`), which is what lets
//! [`super::durable::DurableLog`] spool instead of making predictions wait.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mongodb::bson::{doc, Bson, DateTime, Document};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::{Acknowledgment, ClientOptions, IndexOptions, WriteConcern};
use mongodb::sync::{Client, Collection};
use mongodb::IndexModel;
use serde::{Deserialize, Serialize};

use super::{PredictionRecord, PredictionStore, RecentQuery, Statistics, StoreError};
use crate::verdict::WindowVerdict;

/// Database used when the URI names none.
pub const DEFAULT_DATABASE: &str = "auralguard";
/// Collection holding one document per prediction.
pub const COLLECTION: &str = "predictions";
/// MongoDB's "duplicate key" error code.
const DUPLICATE_KEY: i32 = 11000;

/// MongoDB-backed [`PredictionStore`].
pub struct MongoStore {
    coll: Collection<MongoRecord>,
    indexes_ready: AtomicBool,
}

/// The stored shape: the record with `_id` = request id and a BSON date for `timestamp`.
#[derive(Debug, Serialize, Deserialize)]
struct MongoRecord {
    #[serde(rename = "_id")]
    request_id: String,
    filename: String,
    sha256: String,
    prediction: String,
    probability: f32,
    confidence: f32,
    fake_probability: f32,
    windows: Vec<WindowVerdict>,
    model_name: String,
    model_version: String,
    duration_seconds: f64,
    processing_time_seconds: f64,
    client: Option<String>,
    timestamp: DateTime,
}

fn parse_time(s: &str) -> Result<DateTime, StoreError> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| DateTime::from_millis(t.timestamp_millis()))
        .map_err(|e| StoreError::Backend(format!("timestamp {s:?} is not RFC 3339: {e}")))
}

fn format_time(t: DateTime) -> String {
    chrono::DateTime::from_timestamp_millis(t.timestamp_millis())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl MongoRecord {
    fn from_record(r: &PredictionRecord) -> Result<Self, StoreError> {
        Ok(Self {
            request_id: r.request_id.clone(),
            filename: r.filename.clone(),
            sha256: r.sha256.clone(),
            prediction: r.prediction.clone(),
            probability: r.probability,
            confidence: r.confidence,
            fake_probability: r.fake_probability,
            windows: r.windows.clone(),
            model_name: r.model_name.clone(),
            model_version: r.model_version.clone(),
            duration_seconds: r.duration_seconds,
            processing_time_seconds: r.processing_time_seconds,
            client: r.client.clone(),
            timestamp: parse_time(&r.timestamp)?,
        })
    }

    fn into_record(self) -> PredictionRecord {
        PredictionRecord {
            request_id: self.request_id,
            filename: self.filename,
            sha256: self.sha256,
            prediction: self.prediction,
            probability: self.probability,
            confidence: self.confidence,
            fake_probability: self.fake_probability,
            windows: self.windows,
            model_name: self.model_name,
            model_version: self.model_version,
            duration_seconds: self.duration_seconds,
            processing_time_seconds: self.processing_time_seconds,
            client: self.client,
            timestamp: format_time(self.timestamp),
        }
    }
}

/// Server error codes that describe the server's state, not the document: a write that failed
/// with one of these can succeed later (shutdown, elections, timeouts, write-concern failures).
const TRANSIENT_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Sorts a driver error into "try again later" (the spool keeps the record) or "refused for
/// good" (the record is set aside). Only what is wrong with the document itself is permanent: a
/// document-level write error with a code outside [`TRANSIENT_CODES`], or a document the driver
/// cannot encode. Everything else — connectivity, authentication, write-concern errors, unknown
/// kinds — is retried, because a fixed password or a recovered replica set makes it succeed, and
/// setting a record aside would lose it from the log for good.
fn classify(e: mongodb::error::Error) -> StoreError {
    if is_permanent(&e) {
        StoreError::Backend(e.to_string())
    } else {
        StoreError::Unavailable(e.to_string())
    }
}

fn is_permanent(e: &mongodb::error::Error) -> bool {
    if e.contains_label("RetryableWriteError") || e.contains_label("TransientTransactionError") {
        return false;
    }
    let document_error = |code: i32| !TRANSIENT_CODES.contains(&code);
    match &*e.kind {
        ErrorKind::Write(WriteFailure::WriteError(w)) => document_error(w.code),
        ErrorKind::InsertMany(failure) => {
            failure.write_concern_error.is_none()
                && failure
                    .write_errors
                    .as_ref()
                    .is_some_and(|errors| errors.iter().any(|w| document_error(w.code)))
        }
        ErrorKind::BsonSerialization(_) | ErrorKind::InvalidArgument { .. } => true,
        _ => false,
    }
}

/// Journaled acknowledgement by default (`j: true`; `w: majority` when the URI names a replica
/// set), so a record leaves the spool only once it survives a crash of the database too. An
/// unjournaled `w: 1` acknowledgement can be lost when the database is killed before its next
/// checkpoint. Whatever the URI sets (`journal=`, `w=`) is kept.
fn durable_write_concern(options: &mut ClientOptions) {
    let replica_set = options.repl_set_name.is_some();
    let wc = options
        .write_concern
        .get_or_insert_with(WriteConcern::default);
    wc.journal.get_or_insert(true);
    if replica_set && wc.w.is_none() {
        wc.w = Some(Acknowledgment::Majority);
    }
}

impl MongoStore {
    /// Connects to `uri` (`mongodb://…` or `mongodb+srv://…`). The URI is checked now; the
    /// database need not be up yet (records are spooled until it is), so an unreachable server
    /// only logs a warning here.
    pub fn connect(uri: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(uri)
            .run()
            .map_err(|e| StoreError::Backend(format!("--mongodb-uri is not usable: {e}")))?;
        options
            .server_selection_timeout
            .get_or_insert(Duration::from_secs(2));
        options
            .connect_timeout
            .get_or_insert(Duration::from_secs(2));
        options.app_name.get_or_insert_with(|| "auralguard".into());
        durable_write_concern(&mut options);
        let client = Client::with_options(options).map_err(classify)?;
        let db = client
            .default_database()
            .unwrap_or_else(|| client.database(DEFAULT_DATABASE));
        let store = Self {
            coll: db.collection(COLLECTION),
            indexes_ready: AtomicBool::new(false),
        };
        if let Err(e) = store.ensure_indexes() {
            tracing::warn!(error = %e, "MongoDB not reachable at start-up; predictions are spooled until it is");
        }
        Ok(store)
    }

    /// Creates the indexes `/predictions` and `/statistics` rely on (idempotent).
    fn ensure_indexes(&self) -> Result<(), StoreError> {
        if self.indexes_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let index = |keys: Document, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).build())
                .build()
        };
        self.coll
            .create_indexes([
                index(doc! { "timestamp": -1 }, "timestamp"),
                index(
                    doc! { "prediction": 1, "timestamp": -1 },
                    "prediction_timestamp",
                ),
            ])
            .run()
            .map_err(classify)?;
        self.indexes_ready.store(true, Ordering::Release);
        Ok(())
    }
}

/// The index of the first duplicate-key error when every write error is one; `None` otherwise.
fn only_duplicates(e: &mongodb::error::Error) -> Option<usize> {
    let ErrorKind::InsertMany(failure) = &*e.kind else {
        return None;
    };
    if failure.write_concern_error.is_some() {
        return None;
    }
    let errors = failure.write_errors.as_ref()?;
    errors
        .iter()
        .all(|w| w.code == DUPLICATE_KEY)
        .then(|| errors.iter().map(|w| w.index).min())
        .flatten()
}

fn count(doc: &Document, key: &str) -> u64 {
    match doc.get(key) {
        Some(Bson::Int32(n)) => *n as u64,
        Some(Bson::Int64(n)) => *n as u64,
        Some(Bson::Double(n)) => *n as u64,
        _ => 0,
    }
}

fn mean(doc: &Document, key: &str) -> f64 {
    match doc.get(key) {
        Some(Bson::Double(x)) => *x,
        Some(Bson::Int32(n)) => *n as f64,
        Some(Bson::Int64(n)) => *n as f64,
        _ => 0.0,
    }
}

fn grouped(facet: &Document, key: &str) -> BTreeMap<String, u64> {
    facet
        .get_array(key)
        .map(|rows| {
            rows.iter()
                .filter_map(|row| row.as_document())
                .filter_map(|row| Some((row.get_str("_id").ok()?.to_string(), count(row, "n"))))
                .collect()
        })
        .unwrap_or_default()
}

impl PredictionStore for MongoStore {
    fn backend(&self) -> &'static str {
        "mongodb"
    }

    fn insert_batch(&self, records: &[PredictionRecord]) -> Result<(), StoreError> {
        let mut docs = records
            .iter()
            .map(MongoRecord::from_record)
            .collect::<Result<Vec<_>, _>>()?;
        // Ordered, so the log keeps the spool's order; on a duplicate (a replay of a record the
        // database already has) skip it and go on with the rest.
        while !docs.is_empty() {
            match self.coll.insert_many(&docs).ordered(true).run() {
                Ok(_) => break,
                Err(e) => match only_duplicates(&e) {
                    Some(i) => {
                        docs.drain(..=i);
                    }
                    None => return Err(classify(e)),
                },
            }
        }
        if let Err(e) = self.ensure_indexes() {
            tracing::warn!(error = %e, "cannot create the prediction log's indexes yet");
        }
        Ok(())
    }

    fn recent(&self, q: &RecentQuery) -> Result<Vec<PredictionRecord>, StoreError> {
        let mut filter = Document::new();
        if let Some(since) = &q.since {
            filter.insert("timestamp", doc! { "$gte": parse_time(since)? });
        }
        if let Some(label) = &q.prediction {
            filter.insert("prediction", label.as_str());
        }
        self.coll
            .find(filter)
            .sort(doc! { "timestamp": -1, "_id": -1 })
            .limit(q.limit.min(i64::MAX as usize) as i64)
            .run()
            .map_err(classify)?
            .map(|r| r.map(MongoRecord::into_record).map_err(classify))
            .collect()
    }

    fn statistics(&self) -> Result<Statistics, StoreError> {
        let fake = doc! { "$cond": [{ "$eq": ["$prediction", "fake"] }, 1, 0] };
        let real = doc! { "$cond": [{ "$eq": ["$prediction", "real"] }, 1, 0] };
        let pipeline = [doc! { "$facet": {
            "totals": [{ "$group": {
                "_id": Bson::Null,
                "n": { "$sum": 1 },
                "fake": { "$sum": fake },
                "real": { "$sum": real },
                "confidence": { "$avg": "$confidence" },
                "time": { "$avg": "$processing_time_seconds" },
            }}],
            "by_model_version": [{ "$group": {
                "_id": { "$concat": ["$model_name", "@", "$model_version"] },
                "n": { "$sum": 1 },
            }}],
            "by_day": [{ "$group": {
                "_id": { "$dateToString": { "format": "%Y-%m-%d", "date": "$timestamp" } },
                "n": { "$sum": 1 },
            }}],
        }}];
        let facet = self
            .coll
            .aggregate(pipeline)
            .run()
            .map_err(classify)?
            .next()
            .transpose()
            .map_err(classify)?
            .unwrap_or_default();
        let totals = facet
            .get_array("totals")
            .ok()
            .and_then(|a| a.first())
            .and_then(|t| t.as_document())
            .cloned()
            .unwrap_or_default();
        let (total, fake) = (count(&totals, "n"), count(&totals, "fake"));
        Ok(Statistics {
            total_predictions: total,
            real_count: count(&totals, "real"),
            fake_count: fake,
            fake_ratio: if total > 0 {
                fake as f64 / total as f64
            } else {
                0.0
            },
            mean_confidence: mean(&totals, "confidence"),
            mean_processing_time_seconds: mean(&totals, "time"),
            by_model_version: grouped(&facet, "by_model_version"),
            by_day: grouped(&facet, "by_day"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        let t = parse_time("2026-11-25T10:11:12.345Z").unwrap();
        assert_eq!(format_time(t), "2026-11-25T10:11:12.345Z");
        let offset = parse_time("2026-11-25T12:11:12.345+02:00").unwrap();
        assert_eq!(format_time(offset), "2026-11-25T10:11:12.345Z");
        assert!(parse_time("yesterday").is_err());
    }

    fn concern(uri: &str) -> WriteConcern {
        let mut options = ClientOptions::parse(uri).run().unwrap();
        durable_write_concern(&mut options);
        options.write_concern.unwrap()
    }

    #[test]
    fn writes_are_journaled_unless_the_uri_says_otherwise() {
        let plain = concern("mongodb://127.0.0.1:27017/db");
        assert_eq!((plain.journal, plain.w), (Some(true), None));
        let rs = concern("mongodb://127.0.0.1:27017/db?replicaSet=rs0");
        assert_eq!(rs.journal, Some(true));
        assert_eq!(rs.w, Some(Acknowledgment::Majority));
        let chosen = concern("mongodb://127.0.0.1:27017/db?replicaSet=rs0&journal=false&w=1");
        assert_eq!(chosen.journal, Some(false));
        assert_eq!(chosen.w, Some(Acknowledgment::Nodes(1)));
    }

    fn write_error(code: i32) -> mongodb::error::Error {
        let raw = doc! { "code": code, "errmsg": "x" };
        let w: mongodb::error::WriteError = mongodb::bson::from_document(raw).unwrap();
        mongodb::error::Error::from(ErrorKind::Write(WriteFailure::WriteError(w)))
    }

    #[test]
    fn only_document_errors_are_permanent() {
        // Document validation failed / document too large: retrying cannot help.
        assert!(matches!(classify(write_error(121)), StoreError::Backend(_)));
        assert!(matches!(
            classify(write_error(10334)),
            StoreError::Backend(_)
        ));
        // The server stepping down or shutting down: the same write succeeds later.
        assert!(matches!(
            classify(write_error(189)),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            classify(write_error(91)),
            StoreError::Unavailable(_)
        ));
        // Anything that is not about the document (auth, unknown kinds): retried.
        let auth = mongodb::error::Error::custom("authentication failed");
        assert!(matches!(classify(auth), StoreError::Unavailable(_)));
        let io = mongodb::error::Error::from(ErrorKind::Io(std::sync::Arc::new(
            std::io::Error::other("reset"),
        )));
        assert!(matches!(classify(io), StoreError::Unavailable(_)));
    }

    #[test]
    fn a_malformed_uri_is_refused_at_start() {
        let Err(e) = MongoStore::connect("postgres://nope") else {
            panic!("accepted a non-MongoDB URI");
        };
        assert!(e.to_string().contains("--mongodb-uri"), "{e}");
    }
}
