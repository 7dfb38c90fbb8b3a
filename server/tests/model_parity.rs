//! The imported seed model reproduces Keras: on librosa's reference log-mels within 1e-4, and end
//! to end from the audio files within 1e-3 (16 kHz clips), for every Keras file layout.

mod common;

use std::path::Path;

use auralguard::audio::AudioSource;
use auralguard::model::import::{import_keras, ImportOptions};
use auralguard::model::ModelPackage;
use auralguard::pipeline::{Detector, DetectorOptions};
use candle_core::Device;

fn import(src: &Path, dir: &Path) -> ModelPackage {
    import_keras(
        src,
        dir,
        &ImportOptions {
            name: Some("seed-random".into()),
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("import {}: {e}", src.display()))
}

fn detector(pkg: &ModelPackage) -> Detector {
    Detector::new(pkg.load(&Device::Cpu).unwrap(), &DetectorOptions::default()).unwrap()
}

fn clips() -> Vec<(String, serde_json::Value)> {
    let exp = common::expected();
    exp.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn expected_windows(v: &serde_json::Value) -> Vec<f32> {
    v["window_fake_probability"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap() as f32)
        .collect()
}

/// Max |Δp| of the model on the reference log-mels over all clips.
fn reference_feature_error(det: &Detector) -> f32 {
    let mut worst = 0f32;
    for (clip, v) in clips() {
        let (shape, mel) =
            common::read_npy_f32(&common::parity_dir().join(format!("{clip}.mel.npy")));
        let probs = det.score_log_mels(&mel, shape[0]).unwrap();
        let want = expected_windows(&v);
        assert_eq!(probs.len(), want.len(), "{clip}");
        for (p, q) in probs.iter().zip(&want) {
            worst = worst.max((p - q).abs());
        }
    }
    worst
}

#[test]
fn bundled_seed_model_matches_keras_on_reference_features_and_end_to_end() {
    // models/seed-random is the import of testdata/parity/seed_random.h5 (checked by
    // `bundled_model_is_the_import_of_the_checked_in_h5`), so this needs no HDF5 library.
    let pkg = ModelPackage::open(&common::repo_root().join("models/seed-random")).unwrap();
    let det = detector(&pkg);
    let worst = reference_feature_error(&det);
    eprintln!("reference features: max |Δp| = {worst:.2e}");
    assert!(worst <= 1e-4, "max |Δp| {worst} > 1e-4");

    for (clip, v) in clips() {
        let verdict = det
            .predict(AudioSource::File(common::parity_dir().join(&clip)))
            .unwrap();
        let want = expected_windows(&v);
        assert_eq!(verdict.windows.len(), want.len(), "{clip}: windows");
        let mean = v["fake_probability_mean"].as_f64().unwrap() as f32;
        let d = (verdict.fake_probability - mean).abs();
        eprintln!("{clip}: end-to-end |Δp| = {d:.2e}");
        if clip.contains("_16k") {
            assert!(d <= 1e-3, "{clip}: |Δp| {d} > 1e-3");
            for (w, q) in verdict.windows.iter().zip(&want) {
                assert!((w.fake_probability - q).abs() <= 1e-3, "{clip}");
            }
        }
        let samples = v["samples_16k"].as_f64().unwrap();
        assert!((verdict.duration_seconds - samples / 16_000.0).abs() < 1e-9);
    }
}

#[test]
fn bundled_model_is_the_import_of_the_checked_in_h5() {
    if !common::keras_available() {
        return;
    }
    let bundled = common::repo_root().join("models/seed-random");
    let tmp = tempfile::tempdir().unwrap();
    let pkg = import(
        &common::parity_dir().join("seed_random.h5"),
        &tmp.path().join("m"),
    );
    let a = std::fs::read(bundled.join("model.safetensors")).unwrap();
    let b = std::fs::read(pkg.dir().join("model.safetensors")).unwrap();
    assert!(
        a == b,
        "models/seed-random is stale: re-run import-keras (see README)"
    );
}

fn assert_same_weights_as_h5(other: &str) {
    if !common::keras_available() {
        return;
    }
    let Some(src) = common::keras_fixture(other) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let base = import(
        &common::parity_dir().join("seed_random.h5"),
        &tmp.path().join("a"),
    );
    let pkg = import(&src, &tmp.path().join("b"));
    let load = |p: &ModelPackage| {
        candle_core::safetensors::load(p.dir().join("model.safetensors"), &Device::Cpu).unwrap()
    };
    let (wa, wb) = (load(&base), load(&pkg));
    assert_eq!(wa.len(), wb.len());
    for (name, ta) in &wa {
        let va = ta.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let vb = wb[name].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(
            va == vb,
            "{other}: tensor {name} differs from seed_random.h5"
        );
    }
    let worst = reference_feature_error(&detector(&pkg));
    assert!(worst <= 1e-4, "{other}: max |Δp| {worst}");
}

#[test]
fn keras2_h5_imports_to_identical_weights() {
    assert_same_weights_as_h5("seed_random_keras2.h5");
}

#[test]
fn native_keras_zip_imports_to_identical_weights() {
    assert_same_weights_as_h5("seed_random.keras");
}

#[test]
fn a_file_that_is_not_a_keras_model_is_refused_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let fake = tmp.path().join("x.h5");
    std::fs::write(&fake, b"\x89HDF\r\n\x1a\n not really").unwrap();
    let e = import_keras(&fake, &tmp.path().join("o"), &ImportOptions::default()).unwrap_err();
    assert_eq!(e.code(), "keras_import_failed");
    assert!(!tmp.path().join("o").exists(), "no half-written package");
}
