//! `auralguard train` / `eval` / `registry` end to end: a tiny corpus generated here (voiced
//! buzz with breath noise and full bandwidth for "real", the same buzz band-limited and clean
//! for "fake"), two epochs, and a real MLflow server for tracking and registration.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{mlflow, ok};

/// A deterministic tiny dataset with train/val/test splits; returns the CSV path.
fn tiny_dataset(dir: &Path) -> PathBuf {
    common::buzz_corpus(dir, &[("train", 12), ("val", 4), ("test", 4)])
}

fn auralguard(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_auralguard"))
        .current_dir(common::repo_root())
        .args(args)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("AURALGUARD_MODEL")
        .output()
        .unwrap()
}

fn train_args<'a>(csv: &'a str, out: &'a str, cache: &'a str) -> Vec<&'a str> {
    vec![
        "train",
        "--data",
        csv,
        "--out",
        out,
        "--arch",
        "compact-cnn",
        "--window-seconds",
        "1",
        "--epochs",
        "2",
        "--patience",
        "0",
        "--batch-size",
        "8",
        "--learning-rate",
        "0.003",
        "--feature-cache",
        cache,
        "--no-progress",
    ]
}

fn manifest(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("auralguard.json")).unwrap()).unwrap()
}

#[test]
fn a_tiny_training_run_learns_and_is_reproducible() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tiny_dataset(tmp.path());
    let cache = tmp.path().join("features");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (csv_s, cache_s, a_s, b_s) = (s(&csv), s(&cache), s(&a), s(&b));

    let started = std::time::Instant::now();
    ok(&auralguard(&train_args(&csv_s, &a_s, &cache_s)));
    assert!(started.elapsed().as_secs() < 180, "{:?}", started.elapsed());
    let m = manifest(&a);
    let history = m["training"]["history"].as_array().unwrap();
    assert_eq!(history.len(), 2);
    let loss = |i: usize| history[i]["train_loss"].as_f64().unwrap();
    assert!(loss(1) < loss(0), "training loss did not fall: {history:?}");
    assert_eq!(m["architecture"]["name"], "compact-cnn");
    assert_eq!(m["window"]["seconds"], 1.0);
    assert_eq!(m["training"]["data_sha256"].as_str().unwrap().len(), 64);
    for f in ["MLmodel", "model.safetensors", "training_curves.svg"] {
        assert!(a.join(f).is_file(), "{f} missing");
    }

    // Same data, same seed: the same weights bit for bit and the same metrics (features now
    // come from the cache, which must not change anything either).
    ok(&auralguard(&train_args(&csv_s, &b_s, &cache_s)));
    assert_eq!(manifest(&a)["metrics"], manifest(&b)["metrics"]);
    assert_eq!(
        manifest(&a)["training"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["train_loss"].clone(), h["val_loss"].clone()))
            .collect::<Vec<_>>(),
        manifest(&b)["training"]["history"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["train_loss"].clone(), h["val_loss"].clone()))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        std::fs::read(a.join("model.safetensors")).unwrap(),
        std::fs::read(b.join("model.safetensors")).unwrap()
    );

    // The package serves and evaluates like any other.
    let report = ok(&auralguard(&[
        "eval",
        "--data",
        &csv_s,
        "--model",
        &a_s,
        "--plots",
        tmp.path().join("plots").to_str().unwrap(),
        "--no-progress",
    ]));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["split"], "test");
    assert_eq!(report["metrics"]["count"], 8);
    assert_eq!(report["by_source"].as_array().unwrap().len(), 2);
    for f in [
        "roc.svg",
        "det.svg",
        "scores.svg",
        "training_curves.svg",
        "report.md",
    ] {
        assert!(tmp.path().join("plots").join(f).is_file(), "{f} missing");
    }

    // An existing output is not overwritten without --force.
    let out = auralguard(&train_args(&csv_s, &a_s, &cache_s));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
}

/// The tiny corpus with groups: three "speakers" among the real clips, two generators among the
/// fakes (each split has clips of every group).
fn grouped_dataset(dir: &Path) -> PathBuf {
    let csv = std::fs::read_to_string(tiny_dataset(dir)).unwrap();
    let mut out = String::from("filename,label,split,source,speaker\n");
    let (mut fakes, mut reals) = (0, 0);
    for line in csv.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        let (source, speaker) = if f[1] == "fake" {
            fakes += 1;
            (format!("gen{}", fakes % 2), String::new())
        } else {
            reals += 1;
            ("recordings".to_string(), format!("s{}", reals % 3))
        };
        out.push_str(&format!("{},{},{},{source},{speaker}\n", f[0], f[1], f[2]));
    }
    let path = dir.join("grouped.csv");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn crossval_trains_once_per_held_out_group_and_names_the_worst() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = grouped_dataset(tmp.path());
    let cache = tmp.path().join("cache");
    let report_dir = tmp.path().join("report");
    let mut args = train_args(csv.to_str().unwrap(), "unused", cache.to_str().unwrap());
    args.retain(|a| *a != "--out" && *a != "unused");
    args[0] = "crossval";
    args.extend(["--protocol", "logo", "--out", report_dir.to_str().unwrap()]);
    let report: serde_json::Value = serde_json::from_str(&ok(&auralguard(&args))).unwrap();
    let folds = report["folds"].as_array().unwrap();
    let held: Vec<&str> = folds
        .iter()
        .map(|f| f["held_out"].as_str().unwrap())
        .collect();
    assert_eq!(held, ["gen0", "gen1"]);
    for f in folds {
        // The held-out generator's clips (all splits: 10 of 20 fakes) against the test reals.
        assert_eq!(f["test_fake"], 10, "{f}");
        assert_eq!(f["test_real"], 4, "{f}");
        assert!(f["eer"].as_f64().is_some_and(|e| (0.0..=1.0).contains(&e)));
    }
    let worst = report["summary"]["worst_eer"]["held_out"].as_str().unwrap();
    assert!(held.contains(&worst));
    assert!(
        report["calibration"].is_null(),
        "calibration is a loso figure"
    );
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(md.contains("| gen0 |") && md.contains("worst"), "{md}");

    // Leave one speaker out, one fold only: calibrated on that speaker's genuine clips.
    let mut loso = args.clone();
    let at = loso.iter().position(|a| *a == "logo").unwrap();
    loso[at] = "loso";
    loso.truncate(loso.len() - 2);
    loso.extend(["--only", "s1"]);
    let report: serde_json::Value = serde_json::from_str(&ok(&auralguard(&loso))).unwrap();
    assert_eq!(report["folds"].as_array().unwrap().len(), 1);
    assert_eq!(report["folds"][0]["held_out"], "s1");
    let cal = &report["calibration"];
    assert!(cal["false_alarm_rate"].as_f64().unwrap() <= 0.02, "{cal}");

    // A group the data does not have is an error that lists the real ones.
    let mut typo = loso.clone();
    *typo.last_mut().unwrap() = "s9";
    let out = auralguard(&typo);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("s0, s1, s2") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn bad_training_input_is_refused_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let csv = tmp.path().join("bad.csv");
    std::fs::write(&csv, "filename,label\na.wav,maybe\n").unwrap();
    let out = auralguard(&[
        "train",
        "--data",
        csv.to_str().unwrap(),
        "--out",
        tmp.path().join("m").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.csv:2") && !err.contains("panicked"),
        "{err}"
    );

    let out = auralguard(&[
        "train",
        "--data",
        csv.to_str().unwrap(),
        "--out",
        tmp.path().join("m").to_str().unwrap(),
        "--register",
        "x",
    ]);
    assert!(!out.status.success());
}

#[test]
fn training_is_tracked_in_mlflow_and_registered() {
    let Some(server) = mlflow::server("training_is_tracked_in_mlflow_and_registered") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let csv = tiny_dataset(tmp.path());
    let out_dir = tmp.path().join("model");
    let name = mlflow::unique("trained");
    let experiment = mlflow::unique("train-cli");
    let features = tmp.path().join("features");
    let mut args = train_args(
        csv.to_str().unwrap(),
        out_dir.to_str().unwrap(),
        features.to_str().unwrap(),
    );
    args.extend([
        "--mlflow-uri",
        &server.uri,
        "--experiment",
        &experiment,
        "--register",
        &name,
    ]);
    let stdout = ok(&auralguard(&args));
    assert_eq!(stdout.trim(), format!("models:/{name}/1"));

    let client = server.client();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let version = client.get_model_version(&name, 1).await.unwrap();
        let run = client.get_run(&version.run_id).await.unwrap();
        assert_eq!(run.info.status, mlflow_client::RunStatus::Finished);
        assert_eq!(run.data.param("epochs"), Some("2"));
        assert_eq!(run.data.param("arch"), Some("compact-cnn"));
        let data_hash = manifest(&out_dir)["training"]["data_sha256"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(run.data.param("data_sha256"), Some(data_hash.as_str()));
        assert_eq!(
            run.data.tag("auralguard.data_sha256"),
            Some(data_hash.as_str())
        );
        let history = client
            .get_metric_history(&run.info.run_id, "val_loss")
            .await
            .unwrap();
        let steps: Vec<i64> = history.iter().map(|m| m.step).collect();
        assert_eq!(steps, vec![1, 2], "{history:?}");
        let files = client
            .list_artifacts_recursive(&format!("runs:/{}/model", run.info.run_id))
            .await
            .unwrap();
        let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        for f in [
            "MLmodel",
            "auralguard.json",
            "model.safetensors",
            "training_curves.svg",
        ] {
            assert!(
                names.iter().any(|n| n.ends_with(f)),
                "{f} not among {names:?}"
            );
        }
    });

    // Aliases through the CLI, then the aliased model evaluated straight from the registry.
    let cache = tmp.path().join("cache");
    let reg = |extra: &[&str]| {
        let mut a = vec![
            "registry",
            "--mlflow-uri",
            &server.uri,
            "--model-cache",
            cache.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        auralguard(&a)
    };
    assert!(ok(&reg(&["alias", &name, "challenger", "1"])).contains("-> 1"));
    assert!(ok(&reg(&["promote", &name])).contains(&format!("models:/{name}@champion -> 1")));
    assert!(ok(&reg(&["list", &name])).contains("champion"));
    assert!(!reg(&["alias", &name, "champion", "7"]).status.success());
    let report = ok(&auralguard(&[
        "eval",
        "--data",
        csv.to_str().unwrap(),
        "--model",
        &format!("models:/{name}@champion"),
        "--mlflow-uri",
        &server.uri,
        "--model-cache",
        cache.to_str().unwrap(),
        "--no-progress",
    ]));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["model"]["version"], "1");
}
