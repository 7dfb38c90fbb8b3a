//! Log-mel parity with librosa on the golden clips (`testdata/parity`).
//!
//! Tolerances are the fixture README's: 16 kHz clips max |ΔdB| ≤ 0.01 on every bin; resampled
//! clips mean |ΔdB| ≤ 0.1 (44.1/48 kHz), ≤ 0.5 (8 kHz), ≤ 0.25 (MP3).

mod common;

use auralguard::audio::{AudioSource, AudioWindows, WindowConfig};
use auralguard::features::{FeatureConfig, LogMelExtractor};

fn our_log_mels(clip: &str) -> (Vec<Vec<f32>>, u64) {
    let path = common::parity_dir().join(clip);
    let cfg = WindowConfig {
        len: 240_000,
        hop: 240_000,
        min_samples: 16_000,
    };
    let decoder = auralguard::audio::MonoDecoder::from_source(AudioSource::File(path)).unwrap();
    let mut windows = AudioWindows::new(decoder, cfg, 16_000).unwrap();
    let x = LogMelExtractor::new(FeatureConfig::default()).unwrap();
    let mut out = Vec::new();
    while let Some(w) = windows.next_window().unwrap() {
        out.push(x.compute(&w.samples).unwrap());
    }
    (out, windows.samples_seen())
}

/// (max |Δ|, mean |Δ|) over every window and bin.
fn compare(clip: &str) -> (f32, f64) {
    let (shape, reference) =
        common::read_npy_f32(&common::parity_dir().join(format!("{clip}.mel.npy")));
    let (ours, samples) = our_log_mels(clip);
    let exp = common::expected();
    assert_eq!(
        samples,
        exp[clip]["samples_16k"].as_u64().unwrap(),
        "{clip}: 16 kHz sample count"
    );
    assert_eq!(shape[0], ours.len(), "{clip}: window count");
    assert_eq!(&shape[1..], &[128, 469]);
    let mut max = 0f32;
    let mut sum = 0f64;
    for (w, mel) in ours.iter().enumerate() {
        let r = &reference[w * 128 * 469..(w + 1) * 128 * 469];
        for (a, b) in mel.iter().zip(r) {
            let d = (a - b).abs();
            max = max.max(d);
            sum += d as f64;
        }
    }
    let mean = sum / reference.len() as f64;
    eprintln!("{clip}: max |ΔdB| = {max:.5}, mean |ΔdB| = {mean:.5}");
    (max, mean)
}

#[test]
fn clips_at_16k_match_librosa_on_every_bin() {
    for clip in [
        "speech_16k_pcm16.wav",
        "speech_16k_f32.wav",
        "speech_16k_stereo.wav",
        "speech_16k.flac",
        "chirp_noise_16k.wav",
        "silence_16k.wav",
        "tone_16k.wav",
        "long_16k_pcm16.wav",
    ] {
        let (max, _) = compare(clip);
        assert!(max <= 0.01, "{clip}: max |ΔdB| {max} > 0.01");
    }
}

#[test]
fn resampled_clips_match_librosa_on_average() {
    for (clip, bound) in [
        ("speech_44k1.wav", 0.1),
        ("speech_48k_stereo.flac", 0.1),
        ("speech_8k.wav", 0.5),
        ("speech_44k1.mp3", 0.25),
    ] {
        let (_, mean) = compare(clip);
        assert!(mean <= bound, "{clip}: mean |ΔdB| {mean} > {bound}");
    }
}
