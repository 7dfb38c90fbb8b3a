//! `auralguard bench`: where the time goes, per model window, on this machine.
//!
//! Every number is measured in the same run as its baseline so ratios are meaningful even on a
//! noisy machine: the network with this crate's CPU kernels against the same network on
//! candle's own `conv2d` and on the layer-by-layer kernels, batched against unbatched, and
//! sparse against dense mel filtering. Where a stage's work is countable it is also set against
//! the machine's own ceiling, measured by [`crate::roofline`] in the same run: GFLOP/s against
//! the FMA peak for the features and the network, GB/s against copy bandwidth for decoding.
//! Audio is synthesised (a 16 kHz and a 44.1 kHz WAV) so the bench needs no data.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use serde::Serialize;

use crate::audio::wav::write_pcm16;
use crate::audio::AudioSource;
use crate::error::Result;
use crate::features::LogMelExtractor;
use crate::isa::Isa;
use crate::model::arch::seed_cnn::{build_with, ConvPath};
use crate::model::ModelPackage;
use crate::pipeline::{Detector, DetectorOptions};
use crate::roofline::{real_fft_flops, Achieved, Peaks};

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Model package to run.
    pub model_dir: PathBuf,
    /// Windows of synthetic audio for the decode/feature/end-to-end measurements.
    pub windows: usize,
    /// Batch size for the batched measurements.
    pub batch_size: usize,
    /// Windows run through the (slow) candle-conv2d baseline.
    pub baseline_windows: usize,
    /// Folder for the synthetic audio.
    pub scratch_dir: PathBuf,
}

/// One timing: milliseconds per window, plus the baseline's when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Timing {
    /// What was timed.
    pub name: String,
    /// Milliseconds per window.
    pub ms_per_window: f64,
    /// Baseline's milliseconds per window, measured in the same run.
    pub baseline_ms_per_window: Option<f64>,
    /// What the baseline is.
    pub baseline: Option<String>,
    /// The stage's rate against the machine's ceiling, where its work is countable.
    pub achieved: Option<Achieved>,
}

impl Timing {
    /// Baseline time over our time (>1 means we are faster).
    pub fn speedup(&self) -> Option<f64> {
        self.baseline_ms_per_window.map(|b| b / self.ms_per_window)
    }
}

/// Everything `bench` reports.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Logical CPUs rayon uses.
    pub threads: usize,
    /// Windows measured end to end.
    pub windows: usize,
    /// Batch size used.
    pub batch_size: usize,
    /// The model's window length in seconds (what "per window" means).
    pub window_seconds: f64,
    /// Per-stage timings.
    pub timings: Vec<Timing>,
    /// Whole pipeline throughput (decode → verdict), windows per second.
    pub end_to_end_windows_per_second: f64,
    /// Peak resident memory of the process (VmHWM), MiB, when the OS reports it.
    pub peak_rss_mib: Option<f64>,
    /// The machine's ceilings, measured in this run.
    pub peaks: Peaks,
}

/// `work` units per window done in `ms` per window, as a rate in units per second / 1e9.
fn rate(work: f64, ms: f64) -> f64 {
    work / (ms / 1000.0) / 1e9
}

fn per_window(d: Duration, n: usize) -> f64 {
    d.as_secs_f64() * 1000.0 / n.max(1) as f64
}

/// Synthetic speech-like signal: a gliding harmonic tone with amplitude modulation and noise.
fn synth(seconds: f64, rate: u32) -> Vec<f32> {
    let n = (seconds * rate as f64) as usize;
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            let f0 = 120.0 + 40.0 * (0.7 * t).sin();
            let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 3.0 * t).sin();
            let voice: f64 = (1..6)
                .map(|h| (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin() / h as f64)
                .sum();
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let noise = (state >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
            (0.25 * env * voice + 0.02 * noise) as f32
        })
        .collect()
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn load_weights(dir: &Path) -> Result<HashMap<String, Tensor>> {
    let path = dir.join(crate::model::package::WEIGHTS_FILE);
    candle_core::safetensors::load(&path, &Device::Cpu).map_err(|e| crate::Error::Weights {
        path,
        reason: e.to_string(),
    })
}

/// Runs every measurement; `progress` is told what is being measured.
pub fn run(opts: &BenchOptions, mut progress: impl FnMut(&str)) -> Result<BenchReport> {
    let pkg = ModelPackage::open(&opts.model_dir)?;
    let model = pkg.load(&Device::Cpu)?;
    let b = opts.batch_size.max(1);
    let window_s = pkg.manifest().window.seconds;
    let detector = Detector::new(
        model,
        &DetectorOptions {
            batch_size: Some(opts.batch_size),
            ..Default::default()
        },
    )?;
    progress("machine ceilings (FMA and copy probes)");
    let peaks = crate::roofline::measure();
    let seconds = window_s * opts.windows as f64;
    std::fs::create_dir_all(&opts.scratch_dir)
        .map_err(|e| crate::Error::io(&opts.scratch_dir, e))?;
    let wav16 = opts.scratch_dir.join("bench_16k.wav");
    let wav44 = opts.scratch_dir.join("bench_44k1.wav");
    progress("synthesising audio");
    write_pcm16(&wav16, 16_000, 1, &synth(seconds, 16_000))?;
    write_pcm16(&wav44, 44_100, 1, &synth(seconds, 44_100))?;

    let mut timings = Vec::new();

    // Decode (+ resample) + windowing.
    let mut decoded = Vec::new();
    for (label, path) in [
        ("decode 16 kHz WAV", &wav16),
        ("decode + resample 44.1 kHz WAV", &wav44),
    ] {
        progress(label);
        let t0 = Instant::now();
        let mut w = detector.open_windows(AudioSource::File(path.clone()))?;
        let mut n = 0;
        while let Some(win) = w.next_window()? {
            if decoded.len() < opts.windows {
                decoded.push(win.samples);
            }
            n += 1;
        }
        let ms = per_window(t0.elapsed(), n);
        // A 16 kHz PCM16 file is only reformatted: its input bytes against copy bandwidth.
        let achieved = (label == "decode 16 kHz WAV").then(|| Achieved {
            rate: rate(window_s * 16_000.0 * 2.0, ms),
            unit: "GB/s",
            ceiling: peaks.copy_gb_per_s,
        });
        timings.push(Timing {
            name: label.into(),
            ms_per_window: ms,
            baseline_ms_per_window: None,
            baseline: None,
            achieved,
        });
    }

    if detector.extractor().spectral().is_some() {
        spectral_timings(
            opts,
            &pkg,
            &detector,
            &decoded,
            &peaks,
            &mut timings,
            &mut progress,
        )?;
    } else {
        encoder_timings(&detector, &decoded, &mut timings, &mut progress)?;
    }

    // End to end through the detector (decode → features → batched network → verdict).
    progress("end to end");
    let t0 = Instant::now();
    let mut n_windows = 0usize;
    let mut err = None;
    detector.predict_many(
        [
            AudioSource::File(wav16.clone()),
            AudioSource::File(wav44.clone()),
        ],
        |_, r| match r {
            Ok(v) => n_windows += v.windows.len(),
            Err(e) => err = Some(e),
        },
    );
    if let Some(e) = err {
        return Err(e);
    }
    let e2e = n_windows as f64 / t0.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&wav16);
    let _ = std::fs::remove_file(&wav44);
    Ok(BenchReport {
        threads: rayon::current_num_threads(),
        windows: n_windows,
        batch_size: b,
        window_seconds: window_s,
        timings,
        end_to_end_windows_per_second: e2e,
        peak_rss_mib: peak_rss_mib(),
        peaks,
    })
}

/// The spectral front-end and the CNN: log-mel on one thread, the mel filter bank sparse
/// against dense, and the network on this crate's kernels against candle's conv2d.
fn spectral_timings(
    opts: &BenchOptions,
    pkg: &ModelPackage,
    detector: &Detector,
    decoded: &[Vec<f32>],
    peaks: &Peaks,
    timings: &mut Vec<Timing>,
    progress: &mut impl FnMut(&str),
) -> Result<()> {
    let (n_mels, frames) = pkg.input_shape();
    let one_thread = |gflop: f64, ms: f64| Achieved {
        rate: rate(gflop, ms),
        unit: "GFLOP/s",
        ceiling: peaks.gflops_one_thread,
    };
    progress("log-mel features");
    let Some(x) = detector.extractor().spectral() else {
        return Err(crate::Error::InvalidArgument(
            "not a spectral front-end".into(),
        ));
    };
    let mut scratch = x.scratch();
    let mut mel = vec![0f32; n_mels * frames];
    let t0 = Instant::now();
    for w in decoded {
        x.compute_into(w, &mut mel, &mut scratch)?;
    }
    let bank = x.filter_bank();
    let mel_flops = 2.0
        * bank
            .filters()
            .iter()
            .map(|f| f.weights.len())
            .sum::<usize>() as f64;
    let n_fft = x.config().n_fft;
    // Per frame: windowing, the real FFT, |X|², the sparse mel product, the log.
    let logmel_flops = frames as f64
        * (n_fft as f64 + real_fft_flops(n_fft) + 3.0 * bank.n_bins() as f64 + mel_flops)
        + (n_mels * frames) as f64;
    let ms = per_window(t0.elapsed(), decoded.len());
    // Baseline: the same front-end on the portable kernels (what a CPU without AVX2 runs).
    let portable = LogMelExtractor::with_isa(x.config().clone(), Isa::Portable)?;
    let mut portable_scratch = portable.scratch();
    let t0 = Instant::now();
    for w in decoded {
        portable.compute_into(w, &mut mel, &mut portable_scratch)?;
    }
    let portable_ms = per_window(t0.elapsed(), decoded.len());
    timings.push(Timing {
        name: "log-mel (1 thread)".into(),
        ms_per_window: ms,
        baseline_ms_per_window: Some(portable_ms),
        baseline: Some("portable kernels (no AVX2)".into()),
        achieved: Some(one_thread(logmel_flops, ms)),
    });
    let dense = bank.to_dense();
    let bins = bank.n_bins();
    let power: Vec<f32> = (0..bins).map(|k| 1.0 / (1.0 + k as f32)).collect();
    let reps = decoded.len().clamp(1, 8);
    let t0 = Instant::now();
    for _ in 0..reps {
        for t in 0..frames {
            bank.apply_strided(&power, &mut mel[t..], frames);
        }
    }
    let sparse_ms = per_window(t0.elapsed(), reps);
    let t0 = Instant::now();
    for _ in 0..reps {
        for t in 0..frames {
            for m in 0..n_mels {
                let row = &dense[m * bins..(m + 1) * bins];
                mel[m * frames + t] = row.iter().zip(&power).map(|(a, b)| a * b).sum();
            }
        }
    }
    let dense_ms = per_window(t0.elapsed(), reps);
    std::hint::black_box(&mel);
    timings.push(Timing {
        name: "mel filter bank only".into(),
        ms_per_window: sparse_ms,
        baseline_ms_per_window: Some(dense_ms),
        baseline: Some("dense 128×1025 matmul".into()),
        achieved: Some(one_thread(mel_flops * frames as f64, sparse_ms)),
    });

    // Network, unbatched and batched. The seed CNN is also run on candle's own conv2d, the
    // baseline its channels-last kernels replaced; other architectures run as loaded.
    let input1 = Tensor::randn(-40f32, 20.0, (1, n_mels, frames), &Device::Cpu)?;
    let b = opts.batch_size.max(1);
    let input_b = Tensor::randn(-40f32, 20.0, (b, n_mels, frames), &Device::Cpu)?;
    let time_net =
        |net: &dyn crate::model::arch::Classifier, x: &Tensor, reps: usize| -> Result<f64> {
            net.forward(x)?; // warm-up
            let t0 = Instant::now();
            for _ in 0..reps {
                net.forward(x)?;
            }
            Ok(per_window(t0.elapsed(), reps * x.dim(0)?))
        };
    // The network runs on every thread: its ceiling is all of them.
    let net_flops = crate::model::arch::lookup(&pkg.manifest().architecture.name)?
        .flops_per_window(n_mels, frames);
    let all_threads = |ms: f64| {
        net_flops.map(|f| Achieved {
            rate: rate(f, ms),
            unit: "GFLOP/s",
            ceiling: peaks.gflops_all_threads,
        })
    };
    let base_reps = opts.baseline_windows.max(1);
    progress("network, batch 1");
    let net = detector.model().classifier.as_ref();
    let one = time_net(net, &input1, base_reps.max(4))?;
    // The seed CNN's weights, read once, for the same network on other kernels (tensors share
    // their storage, so each build below is a view, not a copy).
    let seed_weights = match pkg.manifest().architecture.name.as_str() {
        "seed-cnn" => Some(load_weights(pkg.dir())?),
        _ => None,
    };
    let seed_net =
        |weights: &HashMap<String, Tensor>, path| build_with(weights.clone(), n_mels, frames, path);
    let (baseline, baseline_name) = if let Some(w) = &seed_weights {
        let slow = seed_net(w, ConvPath::CandleConv2d)?;
        (
            Some(time_net(slow.as_ref(), &input1, base_reps)?),
            Some("candle conv2d (NCHW)".to_string()),
        )
    } else {
        (None, None)
    };
    timings.push(Timing {
        name: "network, batch 1".into(),
        ms_per_window: one,
        baseline_ms_per_window: baseline,
        baseline: baseline_name,
        achieved: all_threads(one),
    });
    progress("network, batched");
    let batched = time_net(net, &input_b, 2)?;
    timings.push(Timing {
        name: format!("network, batch {b}"),
        ms_per_window: batched,
        baseline_ms_per_window: Some(one),
        baseline: Some("the same network at batch 1".into()),
        achieved: all_threads(batched),
    });
    if let Some(w) = &seed_weights {
        // The layer-by-layer kernels the fused trunk replaced, at the same batch: what fusing
        // and the direct convolution bought, in this run. (At batch 1 both wait mostly on the
        // first dense layer's 29 MB of weights.)
        let layered = seed_net(w, ConvPath::ChannelsLast)?;
        let ms = time_net(layered.as_ref(), &input_b, 2)?;
        timings.push(Timing {
            name: format!("network, batch {b} (vs layered)"),
            ms_per_window: batched,
            baseline_ms_per_window: Some(ms),
            baseline: Some("layer-by-layer kernels".into()),
            achieved: all_threads(batched),
        });
    }

    Ok(())
}

/// The Whisper front-end: log-mel plus the frozen encoder, one window per call against
/// batches of windows (what the server does), measured in the same run. The head itself is a
/// few matrix products; its cost shows in the end-to-end figure.
fn encoder_timings(
    detector: &Detector,
    decoded: &[Vec<f32>],
    timings: &mut Vec<Timing>,
    progress: &mut impl FnMut(&str),
) -> Result<()> {
    let front = detector.extractor();
    let Some(first) = decoded.first() else {
        return Ok(());
    };
    let (rows, cols) = front.output_shape(first.len());
    let windows: Vec<&[f32]> = decoded.iter().map(Vec::as_slice).collect();
    let mut out = vec![0f32; windows.len() * rows * cols];
    progress("Whisper log-mel + encoder, one window per call");
    front.compute_many(&windows[..1], &mut out[..rows * cols])?; // warm-up
    let single = windows.len().min(4);
    let t0 = Instant::now();
    for w in &windows[..single] {
        front.compute_many(std::slice::from_ref(w), &mut out[..rows * cols])?;
    }
    let one = per_window(t0.elapsed(), single);
    progress("Whisper log-mel + encoder, batched");
    let t0 = Instant::now();
    front.compute_many(&windows, &mut out)?;
    let batched = per_window(t0.elapsed(), windows.len());
    std::hint::black_box(&out);
    timings.push(Timing {
        name: "Whisper mel + encoder, 1 window".into(),
        ms_per_window: one,
        baseline_ms_per_window: None,
        baseline: None,
        achieved: None,
    });
    timings.push(Timing {
        name: "Whisper mel + encoder, batched".into(),
        ms_per_window: batched,
        baseline_ms_per_window: Some(one),
        baseline: Some("one window per call".into()),
        achieved: None,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synth_is_bounded_and_not_silent() {
        let x = synth(0.5, 16_000);
        assert_eq!(x.len(), 8000);
        assert!(x.iter().all(|v| v.abs() < 1.0));
        assert!(x.iter().any(|v| v.abs() > 0.1));
    }
}
