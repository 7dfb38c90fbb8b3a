//! End-to-end tests against a real MLflow tracking server (see `common/mod.rs`).

mod common;

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use mlflow_client::{
    ClientConfig, CreateModelVersion, CreateRun, Error, MlflowClient, ModelCache, ModelUri,
    RetryPolicy, RunBatch, RunStatus, MANIFEST_FILE, WEIGHTS_FILE,
};

/// Upper bound of one test, server start included.
const TEST_LIMIT: Duration = Duration::from_secs(300);

async fn bounded<F: Future<Output = ()>>(name: &str, test: F) {
    let started = Instant::now();
    if tokio::time::timeout(TEST_LIMIT, test).await.is_err() {
        panic!("{name} did not finish within {TEST_LIMIT:?}");
    }
    eprintln!("{name}: {:.1?}", started.elapsed());
}

/// Writes an AuralGuard-shaped model folder whose weights depend on `seed`.
fn write_model_dir(dir: &Path, seed: u8, weight_bytes: usize) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join(MANIFEST_FILE),
        format!(r#"{{"architecture": "cnn", "version": 1, "seed": {seed}}}"#),
    )
    .unwrap();
    let weights: Vec<u8> = (0..weight_bytes)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(dir.join(WEIGHTS_FILE), weights).unwrap();
    std::fs::write(
        dir.join("MLmodel"),
        "flavors:\n  auralguard:\n    manifest: auralguard.json\n",
    )
    .unwrap();
}

fn assert_same_files(expected: &Path, actual: &Path) {
    for name in [MANIFEST_FILE, WEIGHTS_FILE, "MLmodel"] {
        assert_eq!(
            std::fs::read(expected.join(name)).unwrap(),
            std::fs::read(actual.join(name)).unwrap(),
            "{name} differs"
        );
    }
}

#[tokio::test]
async fn train_register_alias_resolve_and_cache() {
    let Some(server) = common::server("train_register_alias_resolve_and_cache") else {
        return;
    };
    bounded("train_register_alias_resolve_and_cache", async {
        let client = server.client();
        client.health().await.unwrap();

        // Experiment: get-or-create is stable.
        let experiment_name = common::unique("auralguard-train");
        let experiment = client
            .get_or_create_experiment(&experiment_name)
            .await
            .unwrap();
        let again = client
            .get_or_create_experiment(&experiment_name)
            .await
            .unwrap();
        assert_eq!(experiment.experiment_id, again.experiment_id);
        assert_eq!(experiment.name, experiment_name);

        // Run with tags and a name.
        let run = client
            .create_run(
                &CreateRun::new(&experiment.experiment_id)
                    .name("cnn-e20")
                    .tag("auralguard.data", "demo.csv"),
            )
            .await
            .unwrap();
        let run_id = run.info.run_id.clone();
        assert_eq!(run.info.status, RunStatus::Running);
        assert_eq!(run.info.run_name, "cnn-e20");
        assert!(
            run.info.artifact_uri.starts_with("mlflow-artifacts:/"),
            "{}",
            run.info.artifact_uri
        );

        // A batch far over MLflow's per-call limits: 1200 loss points + 1100 other metrics,
        // 150 params, 120 tags, a NaN.
        let mut batch = RunBatch::new();
        for step in 0..1200 {
            batch = batch.metric_at(
                "loss",
                1.0 / (step as f64 + 1.0),
                step,
                1_700_000_000_000 + step,
            );
        }
        for i in 0..1100 {
            batch = batch.metric(format!("m{i:04}"), i as f64, 0);
        }
        batch = batch.metric("diverged", f64::NAN, 0);
        for i in 0..150 {
            batch = batch.param(format!("p{i:03}"), i);
        }
        for i in 0..120 {
            batch = batch.tag(format!("t{i:03}"), format!("v{i}"));
        }
        assert!(batch.split().len() >= 3);
        client.log_batch(&run_id, &batch).await.unwrap();
        client
            .set_tag(&run_id, "auralguard.stage", "trained")
            .await
            .unwrap();

        let logged = client.get_run(&run_id).await.unwrap();
        assert_eq!(logged.data.params.len(), 150);
        assert_eq!(logged.data.param("p149"), Some("149"));
        assert_eq!(
            logged.data.metrics.len(),
            1102,
            "latest point per metric key"
        );
        assert!(logged.data.metric("diverged").unwrap().value.is_nan());
        assert_eq!(logged.data.metric("loss").unwrap().step, 1199);
        assert_eq!(logged.data.tag("t119"), Some("v119"));
        assert_eq!(logged.data.tag("auralguard.stage"), Some("trained"));
        assert_eq!(logged.data.tag("auralguard.data"), Some("demo.csv"));
        let history = client.get_metric_history(&run_id, "loss").await.unwrap();
        assert_eq!(history.len(), 1200);

        // Upload the model folder through the artifact proxy.
        let work = tempfile::tempdir().unwrap();
        let model_v1 = work.path().join("model-v1");
        write_model_dir(&model_v1, 1, 300_000);
        let uploaded = client
            .log_artifacts(&run_id, &model_v1, "model")
            .await
            .unwrap();
        assert_eq!(uploaded.files, 3);
        assert_eq!(uploaded.uri, format!("{}/model", run.info.artifact_uri));
        let listed = client
            .list_artifacts(&format!("runs:/{run_id}/model"))
            .await
            .unwrap();
        let mut names: Vec<&str> = listed.iter().map(|f| f.path.as_str()).collect();
        names.sort();
        assert_eq!(names, ["MLmodel", MANIFEST_FILE, WEIGHTS_FILE]);
        let weights = listed.iter().find(|f| f.path == WEIGHTS_FILE).unwrap();
        assert_eq!(weights.file_size, Some(300_000));

        let ended = client.end_run(&run_id, RunStatus::Finished).await.unwrap();
        assert_eq!(ended.status, RunStatus::Finished);
        assert!(ended.end_time.is_some());

        // Register version 1 from the run's model folder and point `champion` at it.
        let model_name = common::unique("detector");
        client
            .get_or_create_registered_model(&model_name)
            .await
            .unwrap();
        client
            .get_or_create_registered_model(&model_name)
            .await
            .unwrap();
        let v1 = client
            .create_model_version(&CreateModelVersion::from_run(
                &model_name,
                &uploaded.uri,
                &run_id,
            ))
            .await
            .unwrap();
        assert_eq!(v1.number().unwrap(), 1);
        client.set_alias(&model_name, "champion", 1).await.unwrap();

        let champion: ModelUri = format!("models:/{model_name}@champion").parse().unwrap();
        let pinned: ModelUri = format!("models:/{model_name}/1").parse().unwrap();
        assert_eq!(
            client.resolve(&champion).await.unwrap().number().unwrap(),
            1
        );
        let resolved = client.resolve(&pinned).await.unwrap();
        assert_eq!(resolved.run_id, run_id);
        assert_eq!(resolved.source, uploaded.uri);

        // Download into the cache: bytes equal; a second call does not download again.
        let cache = ModelCache::new(work.path().join("cache"));
        let cached = client.download_model(&champion, &cache).await.unwrap();
        assert!(cached.downloaded);
        assert_eq!(cached.version, 1);
        assert!(cached.is_auralguard_package());
        assert_same_files(&model_v1, &cached.dir);
        let again = client.download_model(&champion, &cache).await.unwrap();
        assert!(!again.downloaded);
        assert_eq!(again.dir, cached.dir);

        // Version 2 from a second run, registered with a runs:/ source; the alias moves.
        let run2 = client
            .create_run(&CreateRun::new(&experiment.experiment_id).name("cnn-e40"))
            .await
            .unwrap();
        let model_v2 = work.path().join("model-v2");
        write_model_dir(&model_v2, 2, 200_000);
        client
            .log_artifacts(&run2.info.run_id, &model_v2, "model")
            .await
            .unwrap();
        client
            .end_run(&run2.info.run_id, RunStatus::Finished)
            .await
            .unwrap();
        let v2 = client
            .create_model_version(&CreateModelVersion::from_run(
                &model_name,
                format!("runs:/{}/model", run2.info.run_id),
                &run2.info.run_id,
            ))
            .await
            .unwrap();
        assert_eq!(v2.number().unwrap(), 2);
        client.set_alias(&model_name, "champion", 2).await.unwrap();
        assert_eq!(
            client.resolve(&champion).await.unwrap().number().unwrap(),
            2
        );
        let cached2 = client.download_model(&champion, &cache).await.unwrap();
        assert!(cached2.downloaded);
        assert_eq!(cached2.version, 2);
        assert_same_files(&model_v2, &cached2.dir);
        assert_same_files(&model_v1, &cache.path_for(&model_name, 1));

        // Registry reads.
        let versions = client.list_model_versions(&model_name).await.unwrap();
        let numbers: Vec<u64> = versions.iter().map(|v| v.number().unwrap()).collect();
        assert_eq!(numbers, [2, 1]);
        let searched = client
            .search_model_versions(&format!("name='{model_name}'"))
            .await
            .unwrap();
        assert_eq!(searched.len(), 2);
        let latest = client.get_latest_versions(&model_name, &[]).await.unwrap();
        assert!(latest.iter().any(|v| v.version == "2"), "{latest:?}");
        let registered = client.get_registered_model(&model_name).await.unwrap();
        assert_eq!(registered.alias_version("champion"), Some(2));
        let all = client.list_registered_models().await.unwrap();
        assert!(all.iter().any(|m| m.name == model_name));
        assert_eq!(
            client
                .model_version_artifact_uri(&model_name, 2)
                .await
                .unwrap(),
            format!("{}/model", run2.info.artifact_uri)
        );

        // Delete the alias: resolving it is NotFound, naming the URI.
        client.delete_alias(&model_name, "champion").await.unwrap();
        let err = client.resolve(&champion).await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(err.to_string().contains(&champion.to_string()), "{err}");
        let err = client.download_model(&champion, &cache).await.unwrap_err();
        assert!(err.is_not_found(), "{err:?}");

        // A pinned, cached version needs no server at all.
        let offline = MlflowClient::new(
            ClientConfig::new(&format!("http://127.0.0.1:{}", common::free_port()))
                .unwrap()
                .with_retry(RetryPolicy::none()),
        )
        .unwrap();
        let hit = offline.download_model(&pinned, &cache).await.unwrap();
        assert!(!hit.downloaded);
        assert_same_files(&model_v1, &hit.dir);
    })
    .await;
}

#[tokio::test]
async fn mlflow3_logged_model_source_and_concurrent_download() {
    let Some(server) = common::server("mlflow3_logged_model_source_and_concurrent_download") else {
        return;
    };
    bounded(
        "mlflow3_logged_model_source_and_concurrent_download",
        async {
            let client = server.client();
            let experiment = client
                .get_or_create_experiment(&common::unique("auralguard-logged"))
                .await
                .unwrap();
            let run = client
                .create_run(&CreateRun::new(&experiment.experiment_id))
                .await
                .unwrap();

            // Log the model the MLflow 3 way: a logged model with its own artifact folder.
            let logged = client
                .create_logged_model(&experiment.experiment_id, "model", Some(&run.info.run_id))
                .await
                .unwrap();
            let model_id = logged.info.model_id.clone();
            assert!(model_id.starts_with("m-"), "{model_id}");
            let work = tempfile::tempdir().unwrap();
            let model_dir = work.path().join("model");
            write_model_dir(&model_dir, 7, 50_000);
            let uploaded = client
                .upload_dir(&logged.info.model_uri(), &model_dir)
                .await
                .unwrap();
            assert_eq!(uploaded.uri, logged.info.artifact_uri);
            let ready = client.finalize_logged_model(&model_id, true).await.unwrap();
            assert_eq!(ready.info.status, "LOGGED_MODEL_READY");
            client
                .end_run(&run.info.run_id, RunStatus::Finished)
                .await
                .unwrap();

            let name = common::unique("detector-m");
            client.get_or_create_registered_model(&name).await.unwrap();
            let version = client
                .create_model_version(&CreateModelVersion {
                    name: name.clone(),
                    source: logged.info.model_uri(),
                    model_id: Some(model_id.clone()),
                    ..CreateModelVersion::default()
                })
                .await
                .unwrap();
            assert_eq!(version.source, format!("models:/{model_id}"));
            // MLflow 3 maps the logged-model source to the model's own folder.
            assert_eq!(
                client
                    .get_model_version_download_uri(&name, 1)
                    .await
                    .unwrap(),
                logged.info.artifact_uri
            );

            // Two concurrent downloads of the same version: one downloads, the other waits and reuses.
            let cache = ModelCache::new(work.path().join("cache"));
            let uri = ModelUri::version(&name, 1);
            let (a, b) = tokio::join!(
                client.download_model(&uri, &cache),
                client.download_model(&uri, &cache)
            );
            let (a, b) = (a.unwrap(), b.unwrap());
            assert_eq!(usize::from(a.downloaded) + usize::from(b.downloaded), 1);
            assert_eq!(a.dir, b.dir);
            assert_same_files(&model_dir, &a.dir);
            let leftovers = std::fs::read_dir(cache.root().join(".tmp"))
                .unwrap()
                .count();
            assert_eq!(leftovers, 0, "no temporary folders left");
        },
    )
    .await;
}

#[tokio::test]
async fn single_files_and_error_mapping() {
    let Some(server) = common::server("single_files_and_error_mapping") else {
        return;
    };
    bounded("single_files_and_error_mapping", async {
        let client = server.client();
        let experiment_name = common::unique("auralguard-errors");
        let experiment = client
            .get_or_create_experiment(&experiment_name)
            .await
            .unwrap();
        let run = client
            .create_run(&CreateRun::new(&experiment.experiment_id))
            .await
            .unwrap();
        let run_id = &run.info.run_id;

        // One file up and down, with an awkward name.
        let work = tempfile::tempdir().unwrap();
        let report = work.path().join("eval report.json");
        std::fs::write(&report, br#"{"eer": 0.031}"#).unwrap();
        let uri = client.log_artifact(run_id, &report, "eval").await.unwrap();
        assert!(uri.ends_with("/eval/eval report.json"), "{uri}");
        let back = work.path().join("down/report.json");
        assert_eq!(client.download_file(&uri, &back).await.unwrap(), 14);
        assert_eq!(
            std::fs::read(&back).unwrap(),
            std::fs::read(&report).unwrap()
        );
        let dir = client
            .download_dir(&format!("runs:/{run_id}/eval"), &work.path().join("eval"))
            .await
            .unwrap();
        assert_eq!(dir.files, 1);
        assert!(work.path().join("eval/eval report.json").is_file());

        // The download cap: refused from the listing (a folder), from Content-Length (a file),
        // and nothing is left behind.
        let capped = MlflowClient::new(
            ClientConfig::new(&server.uri)
                .unwrap()
                .with_max_download_bytes(10),
        )
        .unwrap();
        let err = capped
            .download_dir(&format!("runs:/{run_id}/eval"), &work.path().join("big"))
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::TooLarge {
                    limit_bytes: 10,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(!work.path().join("big").exists());
        let err = capped
            .download_file(&uri, &work.path().join("big.json"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err:?}");
        assert!(err.to_string().contains("14 bytes"), "{err}");
        assert!(!work.path().join("big.json").exists());
        let exact = MlflowClient::new(
            ClientConfig::new(&server.uri)
                .unwrap()
                .with_max_download_bytes(14),
        )
        .unwrap();
        assert_eq!(
            exact
                .download_file(&uri, &work.path().join("exact.json"))
                .await
                .unwrap(),
            14
        );

        // NotFound.
        let err = client
            .get_run("0123456789abcdef0123456789abcdef")
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(err.to_string().contains("runs/get"), "names the URL: {err}");
        assert!(client
            .get_experiment_by_name(&common::unique("missing"))
            .await
            .unwrap_err()
            .is_not_found());
        let missing_model = ModelUri::version(common::unique("missing-model"), 1);
        let err = client.resolve(&missing_model).await.unwrap_err();
        assert!(
            err.is_not_found() && err.to_string().contains(&missing_model.to_string()),
            "{err}"
        );
        let err = client
            .download_file(
                &format!("runs:/{run_id}/eval/nothing.json"),
                &work.path().join("x"),
            )
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err:?}");

        // AlreadyExists.
        let err = client
            .create_experiment(&experiment_name, None, &[])
            .await
            .unwrap_err();
        assert!(err.is_already_exists(), "{err:?}");

        // InvalidParameter: a param cannot change value; reserved alias names.
        client
            .log_batch(run_id, &RunBatch::new().param("lr", "0.001"))
            .await
            .unwrap();
        let err = client
            .log_batch(run_id, &RunBatch::new().param("lr", "0.1"))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err:?}");
        let name = common::unique("detector-e");
        client.get_or_create_registered_model(&name).await.unwrap();
        let err = client.set_alias(&name, "latest", 1).await.unwrap_err();
        assert!(matches!(err, Error::InvalidParameter { .. }), "{err:?}");

        // A version whose source has no files: the cache stays clean.
        let empty = client
            .create_model_version(&CreateModelVersion::from_run(
                &name,
                format!("{}/no-model-here", run.info.artifact_uri),
                run_id,
            ))
            .await
            .unwrap();
        let cache = ModelCache::new(work.path().join("cache"));
        let err = client
            .download_model_version(&empty, &cache)
            .await
            .unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(
            err.to_string().contains(&format!("models:/{name}/1")),
            "{err}"
        );
        assert!(!cache.path_for(&name, 1).exists());
    })
    .await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    bounded("unreachable_server_is_unavailable", async {
        // A port that was just free: nothing listens there.
        let uri = format!("http://127.0.0.1:{}", common::free_port());
        let config = ClientConfig::new(&uri)
            .unwrap()
            .with_connect_timeout(Duration::from_secs(2))
            .with_retry(RetryPolicy {
                max_retries: 2,
                initial_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_millis(200),
            });
        let client = MlflowClient::new(config).unwrap();
        let started = Instant::now();

        let err = client.get_experiment_by_name("x").await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(err.is_transient());
        assert!(err.to_string().contains(&uri), "names the URL: {err}");

        let err = client.health().await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        let err = client.create_run(&CreateRun::new("1")).await.unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");

        let cache = ModelCache::new(tempfile::tempdir().unwrap().path().join("cache"));
        let err = client
            .download_model(&"models:/detector@champion".parse().unwrap(), &cache)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unavailable { .. }), "{err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{:?}",
            started.elapsed()
        );
    })
    .await;
}
