//! Streaming sample-rate conversion to the model's rate with rubato's synchronous FFT resampler.
//!
//! Rates are fixed for a whole file, so the FFT resampler (an overlap-add filter with a
//! Blackman-Harris anti-aliasing window) fits: it is as sharp as a long windowed sinc but ~10×
//! cheaper per sample (see `auralguard bench`).
//! Matches what `librosa.load(sr=16000)` yields closely enough for the model (see the parity
//! tests): the resampler's start-up delay is trimmed and the output has exactly
//! `ceil(n_in · to / from)` samples, the length librosa produces. When the rates already match the
//! samples pass through untouched, which is what makes 16 kHz input bit-exact with librosa.

use rubato::audioadapter_buffers::direct::InterleavedSlice;
use rubato::{Fft, FixedSync, Indexing, Resampler, WindowFunction};

use crate::error::{Error, Result};

/// Input frames handed to rubato per call; large enough to amortise call overhead.
const CHUNK_FRAMES: usize = 8192;

/// Input frames per FFT sub-chunk: the filter's length, hence the steepness of its transition
/// band (≈1024 keeps the top mel bands within the parity tolerances).
const SUB_CHUNK_FRAMES: usize = 1024;

/// Converts a mono stream from one rate to another, chunk by chunk.
pub struct StreamResampler {
    from_hz: u32,
    to_hz: u32,
    inner: Option<Inner>,
    input_total: u64,
    output_total: u64,
}

struct Inner {
    resampler: Fft<f32>,
    pending: Vec<f32>,
    scratch: Vec<f32>,
    delay_left: usize,
}

impl StreamResampler {
    /// Creates a converter from `from_hz` to `to_hz` (pass-through when equal).
    pub fn new(from_hz: u32, to_hz: u32) -> Result<Self> {
        let err = |reason: String| Error::Resample {
            from_hz,
            to_hz,
            reason,
        };
        if from_hz == 0 || to_hz == 0 {
            return Err(err("sample rates must be positive".into()));
        }
        let inner = if from_hz == to_hz {
            None
        } else {
            // rubato's FFT length is a multiple of `from / gcd(from, to)`; for an odd rate that
            // alone can exceed a sub-chunk, so fewer sub-chunks keep a call's buffers near
            // `max(CHUNK_FRAMES, from / gcd)` frames (≤ 768 k at the highest accepted rate).
            let step = from_hz as usize / num_integer_gcd(from_hz as usize, to_hz as usize);
            let sub_chunks = (CHUNK_FRAMES / step.max(SUB_CHUNK_FRAMES)).max(1);
            let resampler = Fft::<f32>::new_custom(
                from_hz as usize,
                to_hz as usize,
                CHUNK_FRAMES,
                sub_chunks,
                1,
                WindowFunction::BlackmanHarris2,
                FixedSync::Input,
            )
            .map_err(|e| err(e.to_string()))?;
            let delay_left = resampler.output_delay();
            let scratch = vec![0.0; resampler.output_frames_max()];
            Some(Inner {
                resampler,
                pending: Vec::with_capacity(2 * CHUNK_FRAMES),
                scratch,
                delay_left,
            })
        };
        Ok(Self {
            from_hz,
            to_hz,
            inner,
            input_total: 0,
            output_total: 0,
        })
    }

    /// Output samples a stream of `input_len` samples turns into (librosa's length rule).
    pub fn output_len(&self, input_len: u64) -> u64 {
        (input_len * self.to_hz as u64).div_ceil(self.from_hz as u64)
    }

    /// Feeds `input`, appending every output sample that is ready to `out`.
    pub fn push(&mut self, input: &[f32], out: &mut Vec<f32>) -> Result<()> {
        self.input_total += input.len() as u64;
        let Some(inner) = self.inner.as_mut() else {
            out.extend_from_slice(input);
            self.output_total += input.len() as u64;
            return Ok(());
        };
        inner.pending.extend_from_slice(input);
        let mut offset = 0;
        while self
            .inner
            .as_ref()
            .is_some_and(|i| i.pending.len() - offset >= i.resampler.input_frames_next())
        {
            let indexing = Indexing::new().input_offset(offset);
            offset += self.run(Some(&indexing), None, out)?;
        }
        if let Some(inner) = self.inner.as_mut() {
            inner.pending.drain(..offset);
        }
        Ok(())
    }

    /// Flushes the tail: the final partial chunk plus the filter's delay line, trimmed to length.
    pub fn finish(&mut self, out: &mut Vec<f32>) -> Result<()> {
        let target = self.output_len(self.input_total);
        if self.inner.is_none() {
            return Ok(());
        }
        let mut partial = self.inner.as_ref().map_or(0, |i| i.pending.len());
        while self.output_total < target {
            let indexing = Indexing::new().partial_len(partial);
            self.run(Some(&indexing), Some(target), out)?;
            if let Some(inner) = self.inner.as_mut() {
                inner.pending.clear();
            }
            partial = 0;
        }
        Ok(())
    }

    /// One rubato call over `pending` (or silence past its end); returns input frames consumed.
    fn run(
        &mut self,
        indexing: Option<&Indexing>,
        cap: Option<u64>,
        out: &mut Vec<f32>,
    ) -> Result<usize> {
        let (from_hz, to_hz) = (self.from_hz, self.to_hz);
        let err = |reason: String| Error::Resample {
            from_hz,
            to_hz,
            reason,
        };
        let Some(inner) = self.inner.as_mut() else {
            return Ok(0);
        };
        let needed = inner.resampler.input_frames_next();
        // rubato reads `needed` frames past the offset even with `partial_len`; pad with zeros.
        let offset = indexing.map_or(0, |i| i.input_offset);
        if inner.pending.len() < offset + needed {
            inner.pending.resize(offset + needed, 0.0);
        }
        let frames_in = inner.pending.len();
        let input = InterleavedSlice::new(&inner.pending[..], 1, frames_in)
            .map_err(|e| err(e.to_string()))?;
        let frames_out = inner.scratch.len();
        let mut output = InterleavedSlice::new_mut(&mut inner.scratch[..], 1, frames_out)
            .map_err(|e| err(e.to_string()))?;
        let (consumed, produced) = inner
            .resampler
            .process_into_buffer(&input, &mut output, indexing)
            .map_err(|e| err(e.to_string()))?;
        let skip = inner.delay_left.min(produced);
        inner.delay_left -= skip;
        let mut ready = &inner.scratch[skip..produced];
        if let Some(cap) = cap {
            let room = cap.saturating_sub(self.output_total) as usize;
            ready = &ready[..ready.len().min(room)];
        }
        out.extend_from_slice(ready);
        self.output_total += ready.len() as u64;
        Ok(consumed)
    }
}

/// Greatest common divisor (Euclid).
fn num_integer_gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resample_all(input: &[f32], from: u32, to: u32, piece: usize) -> Vec<f32> {
        let mut r = StreamResampler::new(from, to).unwrap();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            r.push(chunk, &mut out).unwrap();
        }
        r.finish(&mut out).unwrap();
        out
    }

    #[test]
    fn passthrough_when_rates_match() {
        let x: Vec<f32> = (0..1000).map(|i| i as f32).collect();
        assert_eq!(resample_all(&x, 16_000, 16_000, 333), x);
    }

    #[test]
    fn output_length_follows_librosa_rule() {
        for (n, from) in [
            (44_100usize, 44_100u32),
            (12_345, 48_000),
            (7, 8_000),
            (100_003, 22_050),
        ] {
            let x = vec![0.25f32; n];
            let y = resample_all(&x, from, 16_000, 1000);
            let expected = (n as u64 * 16_000).div_ceil(from as u64) as usize;
            assert_eq!(y.len(), expected, "n={n} from={from}");
        }
    }

    #[test]
    fn chunking_does_not_change_the_result() {
        let x: Vec<f32> = (0..50_000).map(|i| ((i as f32) * 0.01).sin()).collect();
        let a = resample_all(&x, 44_100, 16_000, 50_000);
        let b = resample_all(&x, 44_100, 16_000, 517);
        assert_eq!(a.len(), b.len());
        let max = a
            .iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs())
            .fold(0.0, f32::max);
        assert!(max < 1e-6, "max diff {max}");
    }

    #[test]
    fn a_low_tone_survives_aligned_to_within_half_a_sample() {
        // 440 Hz at 48 kHz → 16 kHz. rubato trims its delay in whole output samples, so up to
        // half a sample (31 µs) of fractional delay may remain; amplitude must be intact.
        let from = 48_000;
        let tone = |t: f32| (2.0 * std::f32::consts::PI * 440.0 * t).sin();
        let x: Vec<f32> = (0..48_000).map(|i| tone(i as f32 / from as f32)).collect();
        let y = resample_all(&x, from, 16_000, 4000);
        let worst_at = |shift: f32| {
            (1000..15_000)
                .map(|i| (y[i] - tone((i as f32 - shift) / 16_000.0)).abs())
                .fold(0.0, f32::max)
        };
        let (best_shift, best) = (-100..=100)
            .map(|k| k as f32 / 100.0)
            .map(|s| (s, worst_at(s)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap();
        assert!(best < 2e-3, "residual {best} at shift {best_shift}");
        assert!(best_shift.abs() <= 0.5, "shift {best_shift}");
    }

    #[test]
    fn the_oddest_accepted_rate_resamples_quickly_with_bounded_buffers() {
        // 767 999 Hz is prime: gcd(767 999, 16 000) = 1, the worst plan an accepted rate gets.
        let from = 767_999;
        let t0 = std::time::Instant::now();
        let x = vec![0.1f32; from as usize];
        let y = resample_all(&x, from, 16_000, 100_000);
        assert_eq!(y.len(), 16_000);
        assert!(t0.elapsed().as_secs_f64() < 5.0, "{:?}", t0.elapsed());
        let r = StreamResampler::new(from, 16_000).unwrap();
        let inner = r.inner.as_ref().unwrap();
        assert!(inner.resampler.input_frames_max() <= 2 * from as usize);
    }

    #[test]
    fn zero_rate_is_refused() {
        assert!(matches!(
            StreamResampler::new(0, 16_000),
            Err(Error::Resample { .. })
        ));
    }
}
