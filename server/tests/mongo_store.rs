//! The prediction log in a real MongoDB-wire server (SecantusDB): the store on its own, then the
//! whole server through a database outage and a hard restart of itself.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use auralguard::store::mongo::MongoStore;
use auralguard::store::{PredictionRecord, PredictionStore, RecentQuery};
use common::mongo::MongoServer;
use common::server::Server;
use mongodb::bson::{doc, Document};
use reqwest::blocking::{multipart, Client};

fn rec(id: &str, label: &str, ts: &str, version: &str) -> PredictionRecord {
    PredictionRecord {
        request_id: id.into(),
        filename: format!("{id}.wav"),
        sha256: "ab".repeat(32),
        prediction: label.into(),
        probability: 0.75,
        confidence: 0.5,
        fake_probability: if label == "fake" { 0.75 } else { 0.25 },
        windows: vec![auralguard::verdict::WindowVerdict {
            start: 0.0,
            end: 15.0,
            fake_probability: 0.25,
        }],
        model_name: "seed".into(),
        model_version: version.into(),
        duration_seconds: 6.0,
        processing_time_seconds: 0.25,
        client: Some("127.0.0.1:4000".into()),
        timestamp: ts.into(),
    }
}

#[test]
fn mongodb_store_inserts_queries_and_aggregates_in_the_database() {
    let Some(bin) = common::mongo::binary() else {
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let db = MongoServer::start(&bin, data.path());
    let store = MongoStore::connect(&db.uri("store_test")).unwrap();
    assert_eq!(store.backend(), "mongodb");

    let a = rec("a", "real", "2026-11-23T10:00:00.000Z", "1");
    store.insert(&a).unwrap();
    store
        .insert_batch(&[
            rec("b", "fake", "2026-11-24T10:00:00.000Z", "1"),
            rec("c", "fake", "2026-11-24T11:00:00.000Z", "2"),
        ])
        .unwrap();
    // A replay (same request ids, in the middle of a batch) writes only what is new.
    store
        .insert_batch(&[
            rec("b", "fake", "2026-11-24T10:00:00.000Z", "1"),
            rec("d", "real", "2026-11-25T09:00:00.000Z", "2"),
            rec("c", "fake", "2026-11-24T11:00:00.000Z", "2"),
        ])
        .unwrap();

    let all = store
        .recent(&RecentQuery {
            limit: 10,
            ..Default::default()
        })
        .unwrap();
    let ids: Vec<&str> = all.iter().map(|r| r.request_id.as_str()).collect();
    assert_eq!(ids, ["d", "c", "b", "a"]);
    assert_eq!(all[3], a, "a record must come back exactly as written");

    let fakes = store
        .recent(&RecentQuery {
            limit: 1,
            prediction: Some("fake".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(fakes.len(), 1);
    assert_eq!(fakes[0].request_id, "c");
    let since = store
        .recent(&RecentQuery {
            limit: 10,
            since: Some("2026-11-24T10:30:00.000Z".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(since.len(), 2);

    let st = store.statistics().unwrap();
    assert_eq!(
        (st.total_predictions, st.real_count, st.fake_count),
        (4, 2, 2)
    );
    assert!((st.fake_ratio - 0.5).abs() < 1e-12);
    assert!((st.mean_confidence - 0.5).abs() < 1e-9);
    assert!((st.mean_processing_time_seconds - 0.25).abs() < 1e-9);
    assert_eq!(st.by_model_version["seed@1"], 2);
    assert_eq!(st.by_model_version["seed@2"], 2);
    assert_eq!(st.by_day["2026-11-24"], 2);
    assert_eq!(st.by_day["2026-11-25"], 1);

    // The indexes the queries rely on exist.
    let client = mongodb::sync::Client::with_uri_str(db.uri("store_test")).unwrap();
    let names: Vec<String> = client
        .database("store_test")
        .collection::<Document>("predictions")
        .list_index_names()
        .run()
        .unwrap();
    for name in ["timestamp", "prediction_timestamp"] {
        assert!(names.iter().any(|n| n == name), "index {name} in {names:?}");
    }
}

/// Posts the bundled clip; the request id on success.
fn predict(client: &Client, server: &str) -> Result<String, String> {
    let bytes = std::fs::read(common::repo_root().join("examples/audio/speech.wav")).unwrap();
    let part = multipart::Part::bytes(bytes).file_name("speech.wav");
    let r = client
        .post(format!("{server}/predict"))
        .multipart(multipart::Form::new().part("audio", part))
        .send()
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body: serde_json::Value = r.json().map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("{status}: {body}"));
    }
    Ok(body["request_id"].as_str().unwrap_or_default().to_string())
}

/// `clients` threads posting until `done(acknowledged so far)` says stop; every request must
/// succeed. `progress` counts acknowledgements as they happen so another thread can act mid-load.
/// Returns the acknowledged request ids.
fn load(
    server: &str,
    clients: usize,
    progress: &AtomicUsize,
    done: &(dyn Fn(usize) -> bool + Sync),
) -> Vec<String> {
    let ids = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let client = Client::builder()
                    .timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                while !done(progress.load(Ordering::SeqCst)) {
                    let id = predict(&client, server).expect("a prediction failed during the load");
                    ids.lock().unwrap().push(id);
                    progress.fetch_add(1, Ordering::SeqCst);
                }
            });
        }
    });
    ids.into_inner().unwrap()
}

fn health(server: &Server) -> serde_json::Value {
    Client::new()
        .get(server.url("/health"))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

/// A database on its own data folder, and the server flags that log to its database `name`
/// through a spool folder of their own. Fields drop in order: the database stops before its
/// folders go.
struct LoggedTo {
    db: MongoServer,
    uri: String,
    spool: String,
    _folders: (tempfile::TempDir, tempfile::TempDir),
}

impl LoggedTo {
    /// A database that syncs every commit. `None` (the test skips) when the database binary is
    /// missing.
    fn start(name: &str) -> Option<Self> {
        Self::start_flags(name, &["--sync-on-commit"])
    }

    /// [`LoggedTo::start`] with the database's flags chosen (none: a commit is on disk only
    /// when the client asked for a journaled write).
    fn start_flags(name: &str, flags: &[&str]) -> Option<Self> {
        let bin = common::mongo::binary()?;
        let data = tempfile::tempdir().unwrap();
        let work = tempfile::tempdir().unwrap();
        let db = MongoServer::start_flags(&bin, data.path(), flags);
        let uri = db.uri(name);
        let spool = work.path().join("spool").to_str().unwrap().to_string();
        Some(Self {
            db,
            uri,
            spool,
            _folders: (data, work),
        })
    }

    /// `serve` flags for this database and spool.
    fn args(&self) -> [&str; 4] {
        ["--mongodb-uri", &self.uri, "--spool-dir", &self.spool]
    }
}

/// Findings 7 and 8. The database runs as mongod does by default: a commit reaches its disk
/// only when the write asks for the journal. It is SIGKILLed under load, so only journaled
/// writes survive; 2c3c99f acknowledged a prediction on an unjournaled write and lost the
/// records the database had not synced yet.
#[test]
fn no_prediction_is_lost_or_doubled_when_the_database_dies_mid_load_and_the_server_is_killed() {
    let Some(mut logged) = LoggedTo::start_flags("outage", &[]) else {
        return;
    };
    let mut acknowledged = Vec::new();

    // 1. Database up: four clients. Once 12 predictions have landed in the database it is killed,
    //    and the clients go on until 24 more have been acknowledged with the database gone. Driven by
    //    counts, not sleeps, so a fast machine cannot finish the load before the outage.
    let server = Server::start_with(&logged.args());
    let progress = AtomicUsize::new(0);
    let killed_at = AtomicUsize::new(usize::MAX);
    std::thread::scope(|s| {
        let load_thread = s.spawn(|| {
            load(&server.base, 4, &progress, &|n| {
                n >= killed_at.load(Ordering::SeqCst).saturating_add(24)
            })
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        while progress.load(Ordering::SeqCst) < 12 {
            assert!(
                Instant::now() < deadline,
                "the first 12 predictions never came back"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        logged.db.kill();
        killed_at.store(progress.load(Ordering::SeqCst), Ordering::SeqCst);
        acknowledged.extend(load_thread.join().unwrap());
    });
    assert!(acknowledged.len() >= 36, "every prediction must succeed");
    // Predictions never wait for the database, so the writer may still be inside its first
    // failing call when the load ends; /health says "degraded" once that call has failed or
    // has been stuck for a second.
    let deadline = Instant::now() + Duration::from_secs(15);
    let h = loop {
        let h = health(&server);
        if h["store"]["state"] == "degraded" || Instant::now() > deadline {
            break h;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(h["store"]["backend"], "mongodb", "{h}");
    assert_eq!(h["store"]["state"], "degraded", "{h}");
    assert!(h["store"]["spooled"].as_u64().unwrap() > 0, "{h}");

    // 2. The server dies hard (no flush) while records sit in the spool, and comes back.
    server.kill();
    let server = Server::start_with(&logged.args());
    let before = acknowledged.len();
    acknowledged.extend(load(&server.base, 2, &AtomicUsize::new(0), &|n| n >= 10));
    assert!(acknowledged.len() >= before + 10);

    // 3. The database returns: the spool drains, in order, exactly once.
    logged.db.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let h = health(&server);
        if h["store"]["state"] == "ok" && h["store"]["spooled"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "spool never drained: {h}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // A prediction after recovery reaches the database too: acknowledged once spooled, then
    // delivered by the writer (predictions never wait for the database, so wait for the spool).
    acknowledged.push(predict(&Client::new(), &server.base).unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let h = health(&server);
        if h["store"]["spooled"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the last record was never delivered: {h}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    assert_holds_exactly(&stored_ids(&logged.uri, "outage"), &acknowledged);

    // /statistics is answered by the database's aggregation and agrees.
    let st: serde_json::Value = Client::new()
        .get(server.url("/statistics"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(st["total_predictions"], acknowledged.len() as u64, "{st}");
    assert_eq!(server.terminate().code(), Some(0));
}

/// A database that stops answering (SIGSTOP) must not stall predictions or probes: records go
/// to the spool and the writer delivers them once it is back. Against 2c3c99f, where a
/// prediction waited on the database write under a mutex the probes also took, this test fails.
#[test]
fn a_frozen_database_stalls_neither_predictions_nor_probes() {
    let Some(logged) = LoggedTo::start("frozen") else {
        return;
    };
    let server = Server::start_with(&logged.args());
    let client = Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut acknowledged = vec![predict(&client, &server.base).unwrap()];

    logged.db.freeze();
    let frozen_for = Duration::from_secs(6);
    let started = Instant::now();
    let mut slowest_predict = Duration::ZERO;
    let mut slowest_probe = Duration::ZERO;
    while started.elapsed() < frozen_for {
        let t = Instant::now();
        acknowledged.push(
            predict(&client, &server.base).expect("a prediction failed while the database froze"),
        );
        slowest_predict = slowest_predict.max(t.elapsed());
        for path in ["/health", "/ready", "/metrics"] {
            let t = Instant::now();
            let status = client.get(server.url(path)).send().unwrap().status();
            assert!(status.is_success(), "{path}: {status}");
            slowest_probe = slowest_probe.max(t.elapsed());
        }
    }
    logged.db.thaw();
    assert!(
        slowest_predict < Duration::from_secs(2),
        "a prediction took {slowest_predict:?} while the database was frozen"
    );
    assert!(
        slowest_probe < Duration::from_secs(1),
        "a probe took {slowest_probe:?} while the database was frozen"
    );
    assert!(
        acknowledged.len() >= 10,
        "only {} predictions in {frozen_for:?}",
        acknowledged.len()
    );

    // Thawed: everything acknowledged reaches the database.
    let deadline = Instant::now() + Duration::from_secs(60);
    let coll = mongodb::sync::Client::with_uri_str(&logged.uri)
        .unwrap()
        .database("frozen")
        .collection::<Document>("predictions");
    loop {
        let stored = coll.count_documents(doc! {}).run().unwrap();
        if stored as usize == acknowledged.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{stored} of {} acknowledged predictions reached the database",
            acknowledged.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits (up to `within`) until `/health`'s store section satisfies `done`; returns it.
fn wait_for_store(
    server: &Server,
    within: Duration,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let h = health(server);
        if done(&h["store"]) {
            return h;
        }
        assert!(Instant::now() < deadline, "{what}: {h}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The database's request ids are exactly the acknowledged ones: none lost, none doubled.
fn assert_holds_exactly(stored: &[String], acknowledged: &[String]) {
    let want: BTreeSet<&String> = acknowledged.iter().collect();
    let got: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(want.len(), acknowledged.len(), "request ids must be unique");
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "no record doubled or lost"
    );
    assert_eq!(
        got, want,
        "the database holds exactly the acknowledged predictions"
    );
}

/// The request ids in `db`'s `predictions` collection, read through `uri`.
fn stored_ids(uri: &str, db: &str) -> Vec<String> {
    mongodb::sync::Client::with_uri_str(uri)
        .unwrap()
        .database(db)
        .collection::<Document>("predictions")
        .find(doc! {})
        .run()
        .unwrap()
        .map(|d| d.unwrap().get_str("_id").unwrap().to_string())
        .collect()
}

/// Finding 9: a refused login or a missing privilege is the deployment's fault, not the
/// record's. Records written while the server logs in with a wrong password, and then as a user
/// who may only read, wait in the spool and reach the database once the server runs as a user
/// who may write. 2c3c99f took the privilege error (`Unauthorized`, a command error) as a
/// verdict on the records and set every one of them aside for good.
#[test]
fn records_refused_for_credentials_or_privileges_wait_for_good_ones() {
    let Some(mut logged) = LoggedTo::start("authz") else {
        return;
    };
    let admin = mongodb::sync::Client::with_uri_str(logged.db.uri("admin")).unwrap();
    for (user, role) in [("reader", "read"), ("writer", "readWrite")] {
        admin
            .database("admin")
            .run_command(doc! {
                "createUser": user, "pwd": "secret", "roles": [{"role": role, "db": "authz"}],
            })
            .run()
            .unwrap();
    }
    drop(admin);
    logged.db.restart_with(&["--sync-on-commit", "--auth"]);
    let uri = |user: &str, password: &str| {
        format!(
            "mongodb://{user}:{password}@127.0.0.1:{}/authz?authSource=admin",
            logged.db.port
        )
    };
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // 1. A wrong password, then a user without the insert privilege: predictions are answered
    //    from the spool, the log says degraded, and the writer keeps trying (several rounds of
    //    its back-off) without setting anything aside.
    let mut acknowledged = Vec::new();
    for (user, password) in [("writer", "wrong"), ("reader", "secret")] {
        let server = Server::start_with(&[
            "--mongodb-uri",
            &uri(user, password),
            "--spool-dir",
            &logged.spool,
        ]);
        for _ in 0..3 {
            acknowledged.push(predict(&client, &server.base).expect("a prediction"));
        }
        wait_for_store(&server, Duration::from_secs(15), "never degraded", |s| {
            s["state"] == "degraded"
        });
        std::thread::sleep(Duration::from_secs(3));
        let h = health(&server);
        assert_eq!(
            h["store"]["set_aside"], 0,
            "records set aside when logged in as {user}: {h}"
        );
        assert_eq!(h["store"]["spooled"], acknowledged.len(), "{h}");
        assert_eq!(server.terminate().code(), Some(0));
    }

    // 2. A user who may write: everything that waited is delivered.
    let writer = uri("writer", "secret");
    let server = Server::start_with(&["--mongodb-uri", &writer, "--spool-dir", &logged.spool]);
    wait_for_store(
        &server,
        Duration::from_secs(60),
        "the spool never drained",
        |s| s["state"] == "ok" && s["spooled"] == 0,
    );
    assert_holds_exactly(&stored_ids(&writer, "authz"), &acknowledged);
}

/// Finding 7: the disk under the spool fills up (a file-size limit on the server process makes
/// its writes fail part-way, exactly as ENOSPC does), then has room again, then the database
/// returns. Every prediction answered 200 must reach the database, and a prediction whose record
/// could not be written must not be answered 200. On 2c3c99f a write that failed part-way left
/// its bytes in the spool, the next record was appended onto them, and the pair came back as one
/// unreadable line that was set aside; and a record that could not be kept was answered anyway.
#[test]
fn a_full_disk_under_the_spool_loses_no_acknowledged_prediction() {
    let Some(mut logged) = LoggedTo::start("fulldisk") else {
        return;
    };
    logged.db.kill();
    common::server::ignore_file_size_signal();
    let server = Server::start_with(&logged.args());
    server.limit_file_size(16 * 1024);
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let (mut acknowledged, mut refused) = (Vec::new(), 0);
    while refused < 3 && acknowledged.len() < 200 {
        match predict(&client, &server.base) {
            Ok(id) => acknowledged.push(id),
            Err(e) => {
                assert!(
                    e.starts_with("503") && e.contains("log_unavailable"),
                    "a record that cannot be kept is a 503 log_unavailable, got {e}"
                );
                refused += 1;
            }
        }
    }
    assert_eq!(
        refused,
        3,
        "{} predictions were answered although the spool could hold only 16 KiB",
        acknowledged.len()
    );

    // Room again: predictions are kept and answered.
    server.limit_file_size(libc::RLIM_INFINITY);
    for _ in 0..5 {
        acknowledged.push(predict(&client, &server.base).expect("the disk has room again"));
    }

    logged.db.restart();
    let h = wait_for_store(
        &server,
        Duration::from_secs(60),
        "the spool never drained",
        |s| s["state"] == "ok" && s["spooled"] == 0,
    );
    assert_eq!(h["store"]["set_aside"], 0, "{h}");
    assert_holds_exactly(&stored_ids(&logged.uri, "fulldisk"), &acknowledged);
}
