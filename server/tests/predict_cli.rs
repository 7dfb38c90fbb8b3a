//! The `auralguard` binary as users run it: output formats, folders, exit codes, and the inputs
//! that break naive detectors (a one-hour file, eight channels, damaged files among good ones).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use auralguard::audio::wav::write_pcm16;

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_auralguard"));
    c.current_dir(common::repo_root())
        .env_remove("AURALGUARD_MODEL");
    c
}

fn model() -> PathBuf {
    common::repo_root().join("models/seed-random")
}

fn predict(args: &[&str]) -> Output {
    bin()
        .arg("predict")
        .args(args)
        .arg("--model")
        .arg(model())
        .output()
        .expect("run auralguard")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn parity(name: &str) -> String {
    common::parity_dir().join(name).display().to_string()
}

fn formats(name: &str) -> String {
    common::repo_root()
        .join("testdata/formats")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn one_file_gives_one_verdict_object_matching_keras() {
    let out = predict(&[&parity("long_16k_pcm16.wav")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["filename"], "long_16k_pcm16.wav");
    assert_eq!(v["model"]["name"], "seed-random");
    assert_eq!(v["windows"].as_array().unwrap().len(), 3);
    let p = v["fake_probability"].as_f64().unwrap();
    assert!((p - 0.4214043).abs() < 1e-3, "{p}");
    assert_eq!(v["prediction"], "real");
    assert!((v["probability"].as_f64().unwrap() - (1.0 - p)).abs() < 1e-6);
    assert!((v["confidence"].as_f64().unwrap() - (1.0 - 2.0 * p).abs()).abs() < 1e-6);
    let last = &v["windows"][2];
    assert_eq!(last["start"], 30.0);
    assert!((last["end"].as_f64().unwrap() - 538_455.0 / 16_000.0).abs() < 1e-9);
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
}

#[test]
fn several_files_give_an_array_in_input_order_with_errors_inline() {
    let out = predict(&[
        &parity("speech_16k.flac"),
        &formats("text_named.wav"),
        &parity("speech_44k1.mp3"),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed file makes the exit code 1"
    );
    let v = json(&out);
    let a = v.as_array().unwrap();
    assert_eq!(a.len(), 3);
    assert_eq!(a[0]["filename"], "speech_16k.flac");
    assert_eq!(a[1]["error"]["code"], "unsupported_format");
    assert_eq!(a[2]["filename"], "speech_44k1.mp3");
    assert!(String::from_utf8_lossy(&out.stderr).contains("text_named.wav"));
}

#[test]
fn folders_recurse_and_csv_has_one_row_per_file() {
    let tmp = tempfile::tempdir().unwrap();
    let sub = tmp.path().join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    for (src, dst) in [
        (parity("speech_16k.flac"), sub.join("one.flac")),
        (parity("speech_8k.wav"), tmp.path().join("two.wav")),
    ] {
        std::fs::copy(src, dst).unwrap();
    }
    std::fs::write(tmp.path().join("notes.txt"), "not audio").unwrap();
    let out = predict(&[tmp.path().to_str().unwrap(), "--format", "csv"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(lines[0].starts_with("path,prediction,probability"));
    assert!(
        lines[1].contains("a/b/one.flac") && lines[2].contains("two.wav"),
        "{text}"
    );
}

#[test]
fn eight_channel_file_gets_a_verdict() {
    let out = predict(&[&formats("eight_channels.wav")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["windows"].as_array().unwrap().len(), 1);
    assert!((v["duration_seconds"].as_f64().unwrap() - 2.0).abs() < 1e-3);
    let p = v["fake_probability"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&p));
}

#[test]
fn one_hour_file_gets_240_windows_and_respects_max_duration() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("hour.wav");
    // One hour at 16 kHz: a quiet tone whose level changes every minute.
    let samples: Vec<f32> = (0..3600 * 16_000)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            let level = 0.05 + 0.04 * ((i / (60 * 16_000)) % 5) as f32;
            level * (2.0 * std::f32::consts::PI * 220.0 * t).sin()
        })
        .collect();
    write_pcm16(&path, 16_000, 1, &samples).unwrap();
    drop(samples);
    let p = path.to_str().unwrap();
    let out = predict(&[p]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    let w = v["windows"].as_array().unwrap();
    assert_eq!(w.len(), 240);
    assert_eq!(w[239]["end"], 3600.0);
    assert_eq!(v["duration_seconds"], 3600.0);
    let mean: f64 = w
        .iter()
        .map(|x| x["fake_probability"].as_f64().unwrap())
        .sum::<f64>()
        / 240.0;
    assert!((v["fake_probability"].as_f64().unwrap() - mean).abs() < 1e-5);

    let out = predict(&[p, "--max-duration", "600"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["error"]["code"], "audio_too_long");
}

#[test]
fn aggregation_and_hop_overrides_change_the_windows() {
    let f = parity("long_16k_pcm16.wav");
    let out = predict(&[&f, "--aggregation", "max"]);
    let v = json(&out);
    let max = v["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["fake_probability"].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert!((v["fake_probability"].as_f64().unwrap() - max).abs() < 1e-6);
    let out = predict(&[&f, "--hop-seconds", "5"]);
    assert_eq!(json(&out)["windows"].as_array().unwrap().len(), 7);
}

#[test]
fn usage_errors_exit_2_with_a_message() {
    let out = bin()
        .args([
            "predict",
            &parity("speech_16k.flac"),
            "--model",
            "no/such/model",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/model"));
    let out = predict(&[&parity("speech_16k.flac"), "--device", "cuda:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cuda"));
    let out = predict(&[&parity("speech_16k.flac"), "--batch-size", "0"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn inspect_reports_shape_and_parameters() {
    let out = bin()
        .args(["inspect", "--json"])
        .arg(model())
        .output()
        .unwrap();
    assert!(out.status.success());
    let v = json(&out);
    assert_eq!(v["parameters"], 7_367_665);
    assert_eq!(v["input_shape"], serde_json::json!([128, 469, 1]));
}

#[test]
fn import_keras_writes_a_loadable_package_and_refuses_to_overwrite() {
    if !common::keras_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("pkg");
    let run = |extra: &[&str]| {
        bin()
            .arg("import-keras")
            .arg(common::parity_dir().join("seed_random.h5"))
            .arg("--out")
            .arg(&out_dir)
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(run(&[]).status.success());
    assert!(Path::new(&out_dir).join("auralguard.json").is_file());
    let again = run(&[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert!(run(&["--force"]).status.success());
}

/// `bench` runs on every bundled spectral package: the seed CNN with its conv2d baseline, the
/// compact CNN of the quick start (which it once refused, assuming the seed CNN's weights).
#[test]
fn bench_measures_every_bundled_package() {
    for (package, window, conv2d_baseline) in [("seed-random", 15.0, true), ("demo", 4.0, false)] {
        let out = bin()
            .args([
                "bench",
                "--windows",
                "2",
                "--batch-size",
                "2",
                "--json",
                "--model",
            ])
            .arg(common::repo_root().join("models").join(package))
            .output()
            .expect("run auralguard");
        assert!(
            out.status.success(),
            "{package}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report = json(&out);
        assert_eq!(report["window_seconds"], window, "{package}: {report}");
        let timings = report["timings"].as_array().unwrap();
        let batch1 = timings
            .iter()
            .find(|t| t["name"] == "network, batch 1")
            .unwrap_or_else(|| panic!("{package}: {report}"));
        assert!(batch1["ms_per_window"].as_f64().unwrap() > 0.0);
        assert_eq!(
            batch1["baseline"] == "candle conv2d (NCHW)",
            conv2d_baseline,
            "{package}: {batch1}"
        );
        assert!(report["end_to_end_windows_per_second"].as_f64().unwrap() > 0.0);
        // The network, the features and 16 kHz decoding are set against the machine's
        // ceilings measured in the same run.
        let peaks = &report["peaks"];
        assert!(
            peaks["gflops_one_thread"].as_f64().unwrap() > 0.0,
            "{peaks}"
        );
        for (stage, unit, ceiling) in [
            ("network, batch 1", "GFLOP/s", "gflops_all_threads"),
            ("log-mel (1 thread)", "GFLOP/s", "gflops_one_thread"),
            ("decode 16 kHz WAV", "GB/s", "copy_gb_per_s"),
        ] {
            let t = timings.iter().find(|t| t["name"] == stage).unwrap();
            let a = &t["achieved"];
            assert_eq!(a["unit"], unit, "{package} {stage}: {t}");
            assert_eq!(a["ceiling"], peaks[ceiling], "{package} {stage}: {t}");
            assert!(a["rate"].as_f64().unwrap() > 0.0, "{package} {stage}: {t}");
        }
    }
}
