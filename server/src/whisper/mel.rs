//! Whisper's own log-mel: 25 ms Hann frames every 10 ms (n_fft 400, hop 160 at 16 kHz), Slaney
//! mel bands up to 8 kHz, `log10`, floored 8 decades (80 dB) below the loudest bin, then scaled
//! by `(x + 4) / 4`. The encoder was trained on exactly this, so it is fixed, not configurable.
//!
//! The STFT and filter bank are the librosa-exact ones of [`crate::features`] (Whisper's bank
//! *is* librosa's `mel(sr=16000, n_fft=400, n_mels=80)`); like Whisper, the last STFT frame is
//! dropped, so `n` samples give `n / 160` frames.

use crate::error::{Error, Result};
use crate::features::{FeatureConfig, LogMelExtractor, LogMelScratch, LOG_MEL};

/// Whisper's sample rate.
pub const SAMPLE_RATE: u32 = 16_000;
/// Whisper's FFT size.
pub const N_FFT: usize = 400;
/// Whisper's hop.
pub const HOP: usize = 160;
/// Samples in Whisper's 30-second context.
pub const CONTEXT_SAMPLES: usize = 30 * SAMPLE_RATE as usize;

/// Whisper log-mel front-end for `n_mels` bands (80, or 128 for large-v3).
pub struct WhisperMel {
    stft: LogMelExtractor,
    n_mels: usize,
}

impl WhisperMel {
    /// Builds the filter bank and FFT plan once.
    pub fn new(n_mels: usize) -> Result<Self> {
        let cfg = FeatureConfig {
            kind: LOG_MEL.into(),
            sample_rate: SAMPLE_RATE,
            n_fft: N_FFT,
            hop_length: HOP,
            n_mels,
            fmin: 0.0,
            fmax: SAMPLE_RATE as f64 / 2.0,
            amin: 1e-10,
            top_db: None,
            encoder: None,
        };
        Ok(Self {
            stft: LogMelExtractor::new(cfg)?,
            n_mels,
        })
    }

    /// Frames for `samples` samples.
    pub fn frames(samples: usize) -> usize {
        samples / HOP
    }

    /// Mel bands.
    pub fn n_mels(&self) -> usize {
        self.n_mels
    }

    /// Fresh per-thread buffers.
    pub fn scratch(&self) -> WhisperMelScratch {
        WhisperMelScratch {
            stft: self.stft.scratch(),
            power: Vec::new(),
        }
    }

    /// Log-mel of `signal` into `out` (`n_mels × signal.len() / 160`, band-major).
    pub fn compute_into(
        &self,
        signal: &[f32],
        out: &mut [f32],
        scratch: &mut WhisperMelScratch,
    ) -> Result<()> {
        let frames = Self::frames(signal.len());
        if frames == 0 {
            return Err(Error::InvalidArgument(format!(
                "{} samples are shorter than one Whisper frame ({HOP})",
                signal.len()
            )));
        }
        if out.len() != self.n_mels * frames {
            return Err(Error::InvalidArgument(format!(
                "Whisper mel buffer holds {} values, {}×{frames} needed",
                out.len(),
                self.n_mels
            )));
        }
        let all = frames + 1;
        scratch.power.resize(self.n_mels * all, 0.0);
        self.stft
            .mel_power_into(signal, &mut scratch.power, all, &mut scratch.stft);
        let mut max = f32::NEG_INFINITY;
        for (band, row) in out.chunks_exact_mut(frames).enumerate() {
            let src = &scratch.power[band * all..band * all + frames];
            for (o, &p) in row.iter_mut().zip(src) {
                *o = p.max(1e-10).log10();
                max = max.max(*o);
            }
        }
        let floor = max - 8.0;
        for v in out.iter_mut() {
            *v = (v.max(floor) + 4.0) / 4.0;
        }
        Ok(())
    }
}

/// Per-thread buffers of [`WhisperMel`].
pub struct WhisperMelScratch {
    stft: LogMelScratch,
    power: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_gives_a_hundred_frames_in_whispers_range() {
        let mel = WhisperMel::new(80).unwrap();
        let x: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.2).sin() * 0.3).collect();
        let mut out = vec![0.0; 80 * 100];
        mel.compute_into(&x, &mut out, &mut mel.scratch()).unwrap();
        let max = out.iter().cloned().fold(f32::MIN, f32::max);
        let min = out.iter().cloned().fold(f32::MAX, f32::min);
        // The loudest bin sets the top; everything sits within 8 decades (2.0 after scaling).
        assert!(
            (max - min - 2.0).abs() < 1e-4 || max - min < 2.0,
            "{min}..{max}"
        );
        // 0.2 rad/sample ≈ 509 Hz lands in the low bands, not the top ones.
        let band_mean = |b: usize| out[b * 100..(b + 1) * 100].iter().sum::<f32>() / 100.0;
        assert!(band_mean(15) > band_mean(70));
    }

    #[test]
    fn wrong_sizes_are_errors() {
        let mel = WhisperMel::new(80).unwrap();
        let mut s = mel.scratch();
        assert!(mel.compute_into(&[0.0; 100], &mut [], &mut s).is_err());
        assert!(mel
            .compute_into(&[0.0; 1600], &mut [0.0; 10], &mut s)
            .is_err());
    }
}
