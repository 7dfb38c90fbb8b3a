//! Replays the fuzzing regression inputs in `testdata/fuzz/<target>/` through the fuzzer's own
//! target functions (`examples/fuzz/targets.rs`, included below), with the fuzzer's oracles:
//! no panic, an answer within the time limit, and no allocation above the budget (the same
//! counting allocator is installed in this test binary; an allocation bomb aborts the test
//! with a message naming its size instead of exhausting the machine).
//!
//! The inputs are crashes the fuzzer found (fixed since) and the known attack inputs of the
//! hardening work; a few of the latter also have their expected refusal checked here, so a
//! regression that turns a refusal into a silent success is caught too. `scripts/fuzz.sh`
//! (and `cargo run --release --example fuzz -- --replay testdata/fuzz`) runs the same replay
//! out of process.

#[global_allocator]
static ALLOCATOR: alloc::Counting = alloc::Counting;

#[path = "../examples/fuzz/alloc.rs"]
#[allow(dead_code)]
mod alloc;
#[path = "../examples/fuzz/mutate.rs"]
#[allow(dead_code)]
mod mutate;
#[path = "../examples/fuzz/targets.rs"]
#[allow(dead_code)]
mod targets;

use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use targets::{Ctx, Target};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repository root")
        .to_path_buf()
}

/// Per-input time limit. The fuzzer's is 5 s on a release build; a test build is slower
/// (opt-level 1 for our code), and a hang is still far beyond this.
const TIME_LIMIT: Duration = Duration::from_secs(30);

/// Runs `input` on a worker thread; panics (fails the test) on a panic, a hang or a peak of
/// live bytes above the budget, and returns the outcome.
fn run_checked(ctx: &Arc<Ctx>, input: Vec<u8>, ext: String, what: &str) -> String {
    let (tx, rx) = mpsc::channel();
    let worker = Arc::clone(ctx);
    let handle = std::thread::spawn(move || {
        let baseline = alloc::reset_peak();
        let outcome = worker.run(&input, &ext);
        let _ = tx.send((outcome, alloc::peak_since_reset(baseline)));
    });
    match rx.recv_timeout(TIME_LIMIT) {
        Ok((outcome, peak)) => {
            let _ = handle.join();
            assert!(
                peak <= alloc::DEFAULT_BUDGET,
                "{what}: peak of {peak} live bytes, budget {}",
                alloc::DEFAULT_BUDGET
            );
            match outcome {
                Ok(o) => o,
                Err(finding) => panic!("{what}: {finding}"),
            }
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            let why = handle.join().err().map(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            });
            panic!("{what}: panicked: {why:?}")
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: no answer within {TIME_LIMIT:?}")
        }
    }
}

/// Outcomes some attack fixtures must have (a prefix of the normalised outcome).
const EXPECTED: &[(&str, &str, &str)] = &[
    (
        "decode",
        "rate_4294967291hz.wav",
        "open UnsupportedSampleRate",
    ),
    ("decode", "rate_1hz.wav", "open UnsupportedSampleRate"),
    // Found by the fuzzer: symphonia computed `channels × bytes per sample` in 16 bits and
    // panicked (debug) or wrapped (release); the header is now refused before it reads it.
    ("decode", "channels_65535.wav", "open CorruptAudio"),
    // Found by the fuzzer in CI's dev build: an extensible header with 64 channels and a one-bit
    // mask made symphonia's mask repair shift by 63 (a panic with overflow checks).
    (
        "decode",
        "extensible_64ch_mask_overflow.wav",
        "open CorruptAudio",
    ),
    // Found by the dev-profile fuzzer: the same overflow behind 16 bytes of junk, which the
    // demuxer's probe skips to find the header; only the header at offset 0 was checked.
    (
        "decode",
        "junk_then_channels_60415.wav",
        "open CorruptAudio",
    ),
    // Found by the dev-profile fuzzer (multipart target): a file that starts with `RIFF` but is
    // not WAVE, which the probe skips, then a WAVE header declaring 47 104 channels; only files
    // starting with `RIFF` were exempt from the full scan.
    (
        "decode",
        "riff_not_wave_then_wave_47104ch.bin",
        "open CorruptAudio",
    ),
    (
        "multipart",
        "riff_not_wave_then_wave_47104ch.form",
        "422 corrupt_audio",
    ),
    ("oip", "log_mel_shape_2p57.json", "400 bad_tensor"),
    ("oip", "waveform_u64_max.json", "400 bad_request"),
    (
        "multipart",
        "audio_rate_1hz.form",
        "422 unsupported_sample_rate",
    ),
    ("manifest", "window_seconds_1e6.json", "open Manifest"),
];

#[test]
fn every_fuzz_regression_input_is_handled() {
    // The fuzzer's hard limit: one allocation above the budget aborts with a message.
    alloc::set_hard_limit(alloc::DEFAULT_BUDGET);
    let root = repo().join("testdata/fuzz");
    let model = repo().join("models/seed-random");
    let mut ran = 0;
    for target in Target::ALL {
        let files = targets::inputs_in(&root.join(target.name()));
        if files.is_empty() {
            continue;
        }
        let scratch = tempfile::tempdir().expect("scratch folder");
        let ctx = Arc::new(Ctx::open(target, &model, scratch.path()).expect("target context"));
        for file in files {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let what = format!("{}/{name}", target.name());
            let input = std::fs::read(&file).expect("fixture");
            let outcome = run_checked(&ctx, input, targets::ext_of(&file), &what);
            if let Some((_, _, want)) = EXPECTED
                .iter()
                .find(|(t, f, _)| *t == target.name() && *f == name)
            {
                assert!(
                    outcome.starts_with(want),
                    "{what}: expected '{want}…', got '{outcome}'"
                );
            }
            ran += 1;
        }
    }
    assert!(
        ran >= EXPECTED.len(),
        "only {ran} fixtures in {}",
        root.display()
    );
}

/// The fuzzer's runs are reproducible from their seed: the same seed makes the same mutants.
#[test]
fn mutations_are_deterministic_per_seed() {
    let corpus = vec![targets::wav(1, 1, 16_000, 16, 16, &[], false)];
    let dictionary = Target::Decode.dictionary();
    let env = mutate::Env {
        corpus: &corpus,
        dictionary: &dictionary,
        text: false,
        max_len: Target::Decode.max_len(),
    };
    let run = |seed| {
        let mut rng = mutate::Rng::new(seed);
        (0..200)
            .map(|_| mutate::mutate(&corpus[0], &mut rng, &env))
            .collect::<Vec<_>>()
    };
    assert_eq!(run(42), run(42));
    assert_ne!(run(42), run(43));
}
