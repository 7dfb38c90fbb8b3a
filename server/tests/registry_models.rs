//! `models:/` models against a real MLflow server: `predict` with a pinned version (and from the
//! cache with MLflow gone), and `serve` following an alias: it switches versions while a request
//! loop runs, with no failed request, and keeps serving when the new version is broken.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::mlflow::{self, MlflowServer};
use common::server::Server;
use mlflow_client::{CreateModelVersion, CreateRun, MlflowClient, RunStatus};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Logs `dir` as a run's `model` artifact and registers it as the next version of `name`.
fn register(rt: &tokio::runtime::Runtime, client: &MlflowClient, name: &str, dir: &Path) -> u64 {
    rt.block_on(async {
        let exp = client
            .get_or_create_experiment("registry-models-test")
            .await
            .unwrap();
        let run = client
            .create_run(&CreateRun::new(&exp.experiment_id))
            .await
            .unwrap();
        let run_id = run.info.run_id.clone();
        let uploaded = client.log_artifacts(&run_id, dir, "model").await.unwrap();
        client.end_run(&run_id, RunStatus::Finished).await.unwrap();
        client.get_or_create_registered_model(name).await.unwrap();
        let mv = client
            .create_model_version(&CreateModelVersion::from_run(name, &uploaded.uri, &run_id))
            .await
            .unwrap();
        mv.number().unwrap()
    })
}

fn seed_model() -> std::path::PathBuf {
    common::repo_root().join("models/seed-random")
}

fn speech() -> Vec<u8> {
    std::fs::read(common::repo_root().join("examples/audio/speech.wav")).unwrap()
}

fn predict_cli(model: &str, mlflow_uri: &str, cache: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_auralguard"))
        .current_dir(common::repo_root())
        .args(["predict", "examples/audio/speech.wav", "--model", model])
        .args(["--mlflow-uri", mlflow_uri])
        .arg("--model-cache")
        .arg(cache)
        .env_remove("AURALGUARD_MODEL")
        .output()
        .unwrap()
}

#[test]
fn predict_loads_a_pinned_version_and_then_serves_it_from_the_cache() {
    let Some(server) = mlflow::server("predict_loads_a_pinned_version") else {
        return;
    };
    let (rt, client) = (runtime(), server.client());
    let name = mlflow::unique("predict-pinned");
    let version = register(&rt, &client, &name, &seed_model());
    let cache = tempfile::tempdir().unwrap();
    let uri = format!("models:/{name}/{version}");

    let out = predict_cli(&uri, &server.uri, cache.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let verdict: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict["model"]["version"], version.to_string());

    // The pinned version is now cached: no MLflow is needed (nothing listens on port 9).
    let out = predict_cli(&uri, "http://127.0.0.1:9", cache.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An alias needs the server; with none, the error says what failed, without a panic.
    let out = predict_cli(
        &format!("models:/{name}@champion"),
        "http://127.0.0.1:9",
        cache.path(),
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:9") && !err.contains("panicked"),
        "{err}"
    );

    // A version that does not exist is named in the error.
    let out = predict_cli(&format!("models:/{name}/99"), &server.uri, cache.path());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("99") && !err.contains("panicked"), "{err}");
}

/// What the request loop saw.
#[derive(Default)]
struct Seen {
    ok: usize,
    failures: Vec<String>,
    versions: Vec<String>,
}

fn health(server: &Server) -> serde_json::Value {
    reqwest::blocking::get(server.url("/health"))
        .unwrap()
        .json()
        .unwrap()
}

fn wait_for(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn set_alias(rt: &tokio::runtime::Runtime, server: &MlflowServer, name: &str, version: u64) {
    rt.block_on(server.client().set_alias(name, "champion", version))
        .unwrap();
}

#[test]
fn serve_follows_the_alias_without_failing_a_request() {
    let Some(mlflow) = mlflow::server("serve_follows_the_alias") else {
        return;
    };
    let (rt, client) = (runtime(), mlflow.client());
    let name = mlflow::unique("serve-alias");
    let v1 = register(&rt, &client, &name, &seed_model());
    // Version 2 was trained under another name: it must still be served as `name`.
    let renamed = tempfile::tempdir().unwrap();
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(seed_model().join("auralguard.json")).unwrap())
            .unwrap();
    manifest["name"] = "trained-elsewhere".into();
    std::fs::write(
        renamed.path().join("auralguard.json"),
        serde_json::to_vec(&manifest).unwrap(),
    )
    .unwrap();
    std::fs::copy(
        seed_model().join("model.safetensors"),
        renamed.path().join("model.safetensors"),
    )
    .unwrap();
    let v2 = register(&rt, &client, &name, renamed.path());
    // A broken package: the manifest is fine, the weights are not.
    let broken = tempfile::tempdir().unwrap();
    std::fs::copy(
        seed_model().join("auralguard.json"),
        broken.path().join("auralguard.json"),
    )
    .unwrap();
    std::fs::write(broken.path().join("model.safetensors"), b"not weights").unwrap();
    let v3 = register(&rt, &client, &name, broken.path());
    set_alias(&rt, mlflow, &name, v1);

    let cache = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let server = Server::start_model(
        &format!("models:/{name}@champion"),
        &[
            "--mlflow-uri",
            &mlflow.uri,
            "--model-cache",
            cache.path().to_str().unwrap(),
            "--model-poll-seconds",
            "0.3",
            "--no-store",
        ],
    );
    let _ = store;
    let h = health(&server);
    assert_eq!(h["model"]["version"], v1.to_string(), "{h}");
    assert_eq!(
        h["model"]["name"],
        name.as_str(),
        "the registered name: {h}"
    );
    assert_eq!(
        h["model"]["registry"]["serving"],
        format!("models:/{name}/{v1}")
    );

    // Four clients post audio in a loop for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let audio = speech();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (stop, seen, audio, url) = (
                stop.clone(),
                seen.clone(),
                audio.clone(),
                server.url("/predict?filename=speech.wav"),
            );
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                while !stop.load(Ordering::Relaxed) {
                    let result = http
                        .post(&url)
                        .header("content-type", "audio/wav")
                        .body(audio.clone())
                        .send();
                    let mut s = seen.lock().unwrap();
                    match result {
                        Ok(r) if r.status() == 200 => {
                            let v: serde_json::Value = r.json().unwrap();
                            s.ok += 1;
                            s.versions
                                .push(v["model"]["version"].as_str().unwrap().to_string());
                        }
                        Ok(r) => s.failures.push(format!("{}: {:?}", r.status(), r.text())),
                        Err(e) => s.failures.push(e.to_string()),
                    }
                }
            })
        })
        .collect();
    wait_for("requests on version 1", Duration::from_secs(30), || {
        seen.lock().unwrap().ok >= 8
    });

    // The alias moves: the server switches while the clients keep posting.
    set_alias(&rt, mlflow, &name, v2);
    wait_for("the switch to version 2", Duration::from_secs(60), || {
        health(&server)["model"]["version"].as_str() == Some(v2.to_string().as_str())
    });
    let after_switch = seen.lock().unwrap().ok;
    wait_for("requests on version 2", Duration::from_secs(30), || {
        seen.lock().unwrap().ok >= after_switch + 8
    });

    // The alias moves to a broken version: it is refused, version 2 keeps serving.
    set_alias(&rt, mlflow, &name, v3);
    wait_for("the refusal of version 3", Duration::from_secs(60), || {
        health(&server)["model"]["registry"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains(&format!("version {v3}")))
    });
    let after_refusal = seen.lock().unwrap().ok;
    wait_for(
        "requests after the refusal",
        Duration::from_secs(30),
        || seen.lock().unwrap().ok >= after_refusal + 8,
    );
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }

    let h = health(&server);
    assert_eq!(h["model"]["version"], v2.to_string(), "{h}");
    assert_eq!(h["model"]["name"], name.as_str(), "{h}");
    assert_eq!(h["model"]["registry"]["updates"], 1, "{h}");
    let oip = reqwest::blocking::get(server.url(&format!("/v2/models/{name}/ready"))).unwrap();
    assert_eq!(oip.status(), 200, "the OIP name survives the switch");
    // The broken version is dropped from the cache, so a fixed one would be downloaded afresh.
    // (Polled: a backed-off retry briefly downloads it again before evicting it again. Without
    // eviction the folder would stay for good.)
    assert!(cache.path().join(&name).join(v2.to_string()).is_dir());
    let v3_dir = cache.path().join(&name).join(v3.to_string());
    wait_for(
        "version 3 evicted from the cache",
        Duration::from_secs(10),
        || !v3_dir.exists(),
    );
    let metrics = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains("auralguard_model_updates_total{outcome=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("auralguard_model_updates_total{outcome=\"failed\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("auralguard_model_registry_up 1"));
    assert!(metrics.contains(&format!("version=\"{v2}\"")));

    let seen = seen.lock().unwrap();
    assert!(
        seen.failures.is_empty(),
        "failed requests: {:?}",
        seen.failures
    );
    // Versions only move forward: every request after the first v2 answer was judged by v2.
    let first_v2 = seen
        .versions
        .iter()
        .position(|v| *v == v2.to_string())
        .expect("some requests were judged by version 2");
    assert!(seen.versions[..first_v2]
        .iter()
        .all(|v| *v == v1.to_string()));
    assert!(
        seen.versions[first_v2..]
            .iter()
            .filter(|v| **v == v1.to_string())
            .count()
            <= 4,
        "at most the requests in flight at the switch finish on version 1"
    );
    assert!(!seen.versions.contains(&v3.to_string()));
}

/// A loopback TCP forwarder to MLflow that can be shut, cutting every open connection too: an
/// MLflow outage as the detector sees it, while the real server keeps running for the test.
struct Gate {
    uri: String,
    open: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<std::net::TcpStream>>>,
}

impl Gate {
    fn start(target: &str) -> Self {
        let target: std::net::SocketAddr = target
            .trim_start_matches("http://")
            .parse()
            .expect("MLflow at ip:port");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uri = format!("http://{}", listener.local_addr().unwrap());
        let open = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<std::net::TcpStream>>> = Arc::default();
        let (o, c) = (open.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(target) else {
                    continue;
                };
                let mut open_now = c.lock().unwrap();
                open_now.push(client.try_clone().unwrap());
                open_now.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Self { uri, open, conns }
    }

    fn shut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for s in self.conns.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
    }

    fn reopen(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

fn metric(server: &Server, name: &str) -> Option<f64> {
    let text = reqwest::blocking::get(server.url("/metrics"))
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn serve_keeps_its_model_while_mlflow_is_down_and_catches_up_after() {
    let Some(mlflow) = mlflow::server("serve_keeps_its_model_while_mlflow_is_down") else {
        return;
    };
    let (rt, client) = (runtime(), mlflow.client());
    let name = mlflow::unique("serve-outage");
    let v1 = register(&rt, &client, &name, &seed_model());
    set_alias(&rt, mlflow, &name, v1);
    let gate = Gate::start(&mlflow.uri);
    let cache = tempfile::tempdir().unwrap();
    let server = Server::start_model(
        &format!("models:/{name}@champion"),
        &[
            "--mlflow-uri",
            &gate.uri,
            "--model-cache",
            cache.path().to_str().unwrap(),
            "--model-poll-seconds",
            "0.3",
            "--no-store",
        ],
    );
    let judge = || {
        let r = reqwest::blocking::Client::new()
            .post(server.url("/predict?filename=speech.wav"))
            .header("content-type", "audio/wav")
            .body(speech())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().unwrap();
        v["model"]["version"].as_str().unwrap().to_string()
    };
    assert_eq!(judge(), v1.to_string());

    // MLflow becomes unreachable; meanwhile the alias moves to a new version.
    gate.shut();
    let v2 = register(&rt, &client, &name, &seed_model());
    set_alias(&rt, mlflow, &name, v2);
    wait_for("the outage to show", Duration::from_secs(60), || {
        metric(&server, "auralguard_model_registry_up") == Some(0.0)
            && health(&server)["model"]["registry"]["last_error"].is_string()
    });
    for _ in 0..5 {
        assert_eq!(judge(), v1.to_string(), "still serving version 1");
    }

    // MLflow is back: the server catches up with the alias on its own.
    gate.reopen();
    wait_for("the switch to version 2", Duration::from_secs(60), || {
        health(&server)["model"]["version"].as_str() == Some(v2.to_string().as_str())
    });
    assert_eq!(judge(), v2.to_string());
    assert_eq!(metric(&server, "auralguard_model_registry_up"), Some(1.0));
    assert!(health(&server)["model"]["registry"]["last_error"].is_null());
}
