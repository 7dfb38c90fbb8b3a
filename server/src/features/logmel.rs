//! Centred STFT → power → mel → decibels, for one window at a time.
//!
//! [`LogMelExtractor`] is immutable and `Sync` (FFT plan, Hann window and filter bank are built
//! once at start-up and shared by every thread); each thread brings its own [`LogMelScratch`], so
//! a window costs no allocation at all. The three stages after windowing are vectorised kernels
//! of their own: [`PowerSpectrum`], [`MelFilterBank::apply_strided`] and
//! [`power_to_db_in_place`].

use super::decibels::power_to_db_with;
use super::power_spectrum::{PowerScratch, PowerSpectrum};
use super::{FeatureConfig, MelFilterBank};
use crate::error::{Error, Result};
use crate::isa::Isa;

pub use super::decibels::power_to_db_in_place;

/// Shared, read-only log-mel front-end.
pub struct LogMelExtractor {
    cfg: FeatureConfig,
    spectrum: PowerSpectrum,
    window: Vec<f32>,
    bank: MelFilterBank,
    isa: Isa,
}

/// Per-thread buffers reused across windows.
pub struct LogMelScratch {
    power: Vec<f32>,
    /// The mel bands of up to [`FRAME_GROUP`] frames, frame-major.
    mels: Vec<f32>,
    spectrum: PowerScratch,
}

impl LogMelExtractor {
    /// Plans the FFT and builds the filter bank for `cfg`, with the best kernels this CPU runs.
    pub fn new(cfg: FeatureConfig) -> Result<Self> {
        Self::with_isa(cfg, Isa::detect())
    }

    /// [`LogMelExtractor::new`] on a chosen instruction set: the benchmark's baseline and the
    /// tests' cross-check (one this CPU lacks falls back to the portable kernels).
    pub fn with_isa(cfg: FeatureConfig, isa: Isa) -> Result<Self> {
        cfg.validate()?;
        let isa = isa.supported();
        let spectrum = PowerSpectrum::with_isa(cfg.n_fft, isa);
        // Periodic Hann (scipy `get_window("hann", n_fft, fftbins=True)`), computed in f64.
        let n = cfg.n_fft as f64;
        let window = (0..cfg.n_fft)
            .map(|i| (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n).cos()) as f32)
            .collect();
        let bank = match cfg.kind.as_str() {
            super::LOG_LINEAR => {
                MelFilterBank::linear(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax)
            }
            _ => MelFilterBank::new(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.fmin, cfg.fmax),
        }
        .with_isa(isa);
        Ok(Self {
            cfg,
            spectrum,
            window,
            bank,
            isa,
        })
    }

    /// The configuration this extractor implements.
    pub fn config(&self) -> &FeatureConfig {
        &self.cfg
    }

    /// The mel filter bank in use.
    pub fn filter_bank(&self) -> &MelFilterBank {
        &self.bank
    }

    /// Fresh scratch buffers sized for this extractor.
    pub fn scratch(&self) -> LogMelScratch {
        LogMelScratch {
            power: vec![0.0; self.spectrum.n_bins()],
            mels: vec![0.0; FRAME_GROUP * self.bank.n_mels()],
            spectrum: self.spectrum.scratch(),
        }
    }

    /// Output shape `(n_mels, frames)` for a window of `samples` samples.
    pub fn output_shape(&self, samples: usize) -> (usize, usize) {
        (self.cfg.n_mels, self.cfg.frames_for(samples))
    }

    /// Computes the log-mel of `signal` into `out` (`n_mels × frames`, row-major: band-major).
    pub fn compute_into(
        &self,
        signal: &[f32],
        out: &mut [f32],
        scratch: &mut LogMelScratch,
    ) -> Result<()> {
        let (n_mels, frames) = self.output_shape(signal.len());
        if out.len() != n_mels * frames {
            return Err(Error::InvalidArgument(format!(
                "log-mel output buffer holds {} values, {n_mels}×{frames} needed",
                out.len()
            )));
        }
        self.mel_power_into(signal, out, frames, scratch);
        power_to_db_with(self.isa, out, self.cfg.amin, self.cfg.top_db);
        Ok(())
    }

    /// Convenience wrapper that allocates the output and scratch.
    pub fn compute(&self, signal: &[f32]) -> Result<Vec<f32>> {
        let (m, t) = self.output_shape(signal.len());
        let mut out = vec![0.0; m * t];
        self.compute_into(signal, &mut out, &mut self.scratch())?;
        Ok(out)
    }

    /// Mel power spectrogram (before dB), band-major, `frames` columns (the Whisper front-end
    /// takes its own log of it). Cannot fail: the callers size `out` from this extractor.
    pub(crate) fn mel_power_into(
        &self,
        signal: &[f32],
        out: &mut [f32],
        frames: usize,
        s: &mut LogMelScratch,
    ) {
        let n_fft = self.cfg.n_fft;
        let pad = (n_fft / 2) as isize;
        let hop = self.cfg.hop_length as isize;
        let len = signal.len() as isize;
        let n_mels = self.bank.n_mels();
        for t0 in (0..frames).step_by(FRAME_GROUP) {
            let group = FRAME_GROUP.min(frames - t0);
            for f in 0..group {
                let t = t0 + f;
                // Frame t covers padded[t·hop, t·hop + n_fft) with `pad` zeros on each side of
                // the signal: zero the parts outside it, window the part inside (no per-sample
                // branch).
                let begin = t as isize * hop - pad;
                let lo = (-begin).clamp(0, n_fft as isize) as usize;
                let hi = (len - begin).clamp(lo as isize, n_fft as isize) as usize;
                let frame = self.spectrum.frame(&mut s.spectrum);
                frame[..lo].fill(0.0);
                frame[hi..].fill(0.0);
                let src = &signal[(begin + lo as isize) as usize..(begin + hi as isize) as usize];
                for ((dst, x), w) in frame[lo..hi].iter_mut().zip(src).zip(&self.window[lo..hi]) {
                    *dst = x * w;
                }
                self.spectrum.compute(&mut s.spectrum, &mut s.power);
                self.bank
                    .apply_strided(&s.power, &mut s.mels[f * n_mels..], 1);
            }
            // Band-major output: each band gets the group's frames as one contiguous run
            // instead of one scattered store per band and frame.
            for (m, row) in out.chunks_exact_mut(frames).enumerate() {
                for (f, dst) in row[t0..t0 + group].iter_mut().enumerate() {
                    *dst = s.mels[f * n_mels + m];
                }
            }
        }
    }
}

/// Frames whose mel bands are gathered before they are written out band-major.
const FRAME_GROUP: usize = 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_matches_librosa_for_15_seconds() {
        let x = LogMelExtractor::new(FeatureConfig::default()).unwrap();
        assert_eq!(x.output_shape(240_000), (128, 469));
    }

    #[test]
    fn silence_is_all_zero_db() {
        let x = LogMelExtractor::new(FeatureConfig::default()).unwrap();
        let out = x.compute(&vec![0.0; 16_000]).unwrap();
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn a_tone_peaks_in_the_right_band_at_zero_db() {
        let x = LogMelExtractor::new(FeatureConfig::default()).unwrap();
        let sig: Vec<f32> = (0..16_000)
            .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin())
            .collect();
        let out = x.compute(&sig).unwrap();
        let (m, t) = x.output_shape(sig.len());
        let mid = t / 2;
        let col: Vec<f32> = (0..m).map(|b| out[b * t + mid]).collect();
        let best = col
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .unwrap();
        let bank = x.filter_bank();
        let f = &bank.filters()[best];
        let centre_bin = 440.0 * 2048.0 / 16_000.0;
        assert!((f.start as f32..(f.start + f.weights.len()) as f32).contains(&centre_bin));
        assert!(out.iter().all(|&v| (-80.0..=0.0).contains(&v)));
        assert!(out.contains(&0.0));
    }

    #[test]
    fn the_log_linear_front_end_resolves_high_tones_the_mel_one_merges() {
        let linear = LogMelExtractor::new(FeatureConfig {
            kind: crate::features::LOG_LINEAR.into(),
            ..FeatureConfig::default()
        })
        .unwrap();
        let mel = LogMelExtractor::new(FeatureConfig::default()).unwrap();
        let peak_band = |x: &LogMelExtractor, hz: f32| {
            let sig: Vec<f32> = (0..16_000)
                .map(|i| (std::f32::consts::TAU * hz * i as f32 / 16_000.0).sin())
                .collect();
            let out = x.compute(&sig).unwrap();
            let (m, t) = x.output_shape(sig.len());
            (0..m)
                .max_by(|&a, &b| out[a * t + t / 2].total_cmp(&out[b * t + t / 2]))
                .unwrap()
        };
        // Linear bands peak every 8000 / 129 = 62 Hz: 7050 Hz lands in band 113, 7120 Hz in 114.
        assert_eq!(peak_band(&linear, 7050.0), 113);
        assert_eq!(peak_band(&linear, 7120.0), 114);
        // Mel band peaks are ~170 Hz apart up there (6922, 7091, 7264 Hz): both tones fall in
        // the band peaking at 7091 Hz.
        assert_eq!(peak_band(&mel, 7050.0), 123);
        assert_eq!(peak_band(&mel, 7120.0), 123);
    }

    #[test]
    fn every_instruction_set_computes_the_same_bits() {
        let sig: Vec<f32> = (0..40_000)
            .map(|i| (i as f32 * 0.031).sin() * 0.4 + ((i * 7919) % 97) as f32 * 1e-3)
            .collect();
        let run = |isa| {
            LogMelExtractor::with_isa(FeatureConfig::default(), isa)
                .unwrap()
                .compute(&sig)
                .unwrap()
        };
        let (a, b) = (run(Isa::Portable), run(Isa::detect()));
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn wrong_output_size_is_an_error_not_a_panic() {
        let x = LogMelExtractor::new(FeatureConfig::default()).unwrap();
        let mut out = vec![0.0; 3];
        let r = x.compute_into(&[0.0; 1000], &mut out, &mut x.scratch());
        assert!(matches!(r, Err(Error::InvalidArgument(_))));
    }
}
