//! Helpers shared by the integration tests: fixture lookup and a minimal `.npy` reader.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod mongo;
pub mod server;

/// The MLflow crate's harness: one real `mlflow server` per test binary.
#[path = "../../../mlflow/tests/common/mod.rs"]
pub mod mlflow;

/// Repository root (the workspace folder above `server/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

/// The `auralguard` binary the black-box tests run: this build's, unless
/// `AURALGUARD_TEST_BINARY` names another one (an older release, to show that a test fails
/// there and so tests what it claims to).
pub fn auralguard_binary() -> PathBuf {
    std::env::var_os("AURALGUARD_TEST_BINARY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_auralguard")))
}

/// The checked-in parity fixtures (`testdata/parity`).
pub fn parity_dir() -> PathBuf {
    repo_root().join("testdata/parity")
}

/// The Keras import fixture `name` (`seed_random.keras`, `seed_random_keras2.h5`), written by
/// real Keras 3 and Keras 2 into `testdata/generated/keras` by `scripts/install-keras-test-deps.sh`
/// (which `scripts/test.sh` runs). Missing: the test skips, or fails under `AURALGUARD_NO_SKIP=1`.
pub fn keras_fixture(name: &str) -> Option<PathBuf> {
    let p = repo_root().join("testdata/generated/keras").join(name);
    if p.is_file() {
        return Some(p);
    }
    skip(&format!(
        "{} is missing: run scripts/install-keras-test-deps.sh (saves it with real Keras)",
        p.display()
    ));
    None
}

/// Reads a little-endian float32 C-order `.npy` file: (shape, data).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{} is not .npy", path.display());
    let major = bytes[6];
    let (hlen, hstart) = if major == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        )
    };
    let header = std::str::from_utf8(&bytes[hstart..hstart + hlen]).expect("ascii header");
    assert!(header.contains("'descr': '<f4'"), "not float32: {header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    let shape_txt = header
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("shape");
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("dim"))
        .collect();
    let data: Vec<f32> = bytes[hstart + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(data.len(), shape.iter().product::<usize>());
    (shape, data)
}

/// The parity clips and their expected values.
pub fn expected() -> serde_json::Value {
    let text = std::fs::read_to_string(parity_dir().join("expected.json")).expect("expected.json");
    serde_json::from_str(&text).expect("json")
}

/// Reports a test that cannot run here: prints `SKIP: <why>` and returns, or — when
/// `AURALGUARD_NO_SKIP=1` (set by `scripts/test.sh` and CI) — fails the test, so a green full run
/// proves nothing was skipped.
pub fn skip(reason: &str) {
    if std::env::var("AURALGUARD_NO_SKIP").is_ok_and(|v| v == "1") {
        panic!("required test could not run (AURALGUARD_NO_SKIP=1): {reason}");
    }
    eprintln!("SKIP: {reason}");
}

/// Whether this build can read Keras files; otherwise reports the skip (see [`skip`]).
pub fn keras_available() -> bool {
    if cfg!(feature = "keras") {
        return true;
    }
    skip("built without the `keras` feature (needs libhdf5-dev): cargo test --features keras");
    false
}

/// A deterministic tiny corpus, `n` real/fake pairs per `(split, n)`: voiced buzz with breath
/// noise and full bandwidth for "real", the same buzz band-limited and clean for "fake"; writes
/// the WAVs and `data.csv` (with a `source` column) into `dir` and returns the CSV's path.
pub fn buzz_corpus(dir: &Path, splits: &[(&str, usize)]) -> PathBuf {
    let sr = 16_000u32;
    let mut csv = String::from("filename,label,split,source\n");
    let mut state = 0x1234_5678_u64;
    let mut noise = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f32 / (1u64 << 53) as f32 * 2.0 - 1.0
    };
    for &(split, n) in splits {
        for i in 0..n {
            for fake in [false, true] {
                let f0 = 100.0 + 15.0 * i as f32 + if fake { 7.0 } else { 0.0 };
                let top = if fake { 3000.0 } else { 7800.0 };
                let len = (sr as f32 * (1.2 + 0.1 * i as f32)) as usize;
                let samples: Vec<f32> = (0..len)
                    .map(|t| {
                        let time = t as f32 / sr as f32;
                        let mut v = 0.0;
                        let mut h = 1.0;
                        while h * f0 < top {
                            v += (std::f32::consts::TAU * h * f0 * time).sin() / h;
                            h += 1.0;
                        }
                        let breath = if fake { 0.0 } else { 0.05 * noise() };
                        0.1 * v + breath
                    })
                    .collect();
                let label = if fake { "fake" } else { "real" };
                let name = format!("{split}-{i}-{label}.wav");
                auralguard::audio::wav::write_pcm16(&dir.join(&name), sr, 1, &samples).unwrap();
                csv.push_str(&format!(
                    "{name},{label},{split},{}\n",
                    if fake { "band-limited" } else { "breathy" }
                ));
            }
        }
    }
    let path = dir.join("data.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

/// The stdout of a command that must have succeeded (else panics with its output).
pub fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a command that must have failed.
pub fn failed(out: &std::process::Output) -> String {
    assert!(
        !out.status.success(),
        "expected a failure\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}
