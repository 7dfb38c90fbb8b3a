//! `|rfft(frame)|²` for one windowed frame: a half-length complex FFT plus one fused pass that
//! unpacks it and squares it.
//!
//! A real FFT of `N` points is a complex FFT of `M = N / 2` points on the even samples as real
//! parts and the odd ones as imaginary parts, followed by an unpacking step with `M` twiddle
//! factors. A spectrogram needs only the power of each bin, so the unpacking and `|X|²` are one
//! pass here, two bins (`k` and `M − k`) per step, written so the compiler vectorises it (the
//! mirrored half is a separate output slice, so the reversed stores cannot alias the forward
//! ones). General-purpose real-FFT wrappers unpack into complex bins first, in scalar code:
//! measured on one 2-core Zen 4 machine, that step cost more than the complex FFT itself.
//!
//! [`PowerSpectrum`] is immutable and shared; each thread brings a [`PowerScratch`].

use std::sync::Arc;

use rustfft::num_complex::Complex32;
use rustfft::{Fft, FftPlanner};

use crate::isa::Isa;

/// A planned power spectrum for frames of `n_fft` samples (`n_fft` even).
pub struct PowerSpectrum {
    n_fft: usize,
    fft: Arc<dyn Fft<f32>>,
    /// Real and imaginary parts of `exp(−2πik / n_fft)` for `k = 1..=(M − 1) / 2`.
    twiddle_re: Vec<f32>,
    twiddle_im: Vec<f32>,
    isa: Isa,
}

/// Per-thread buffers for [`PowerSpectrum::compute`].
pub struct PowerScratch {
    packed: Vec<Complex32>,
    spectrum: Vec<Complex32>,
    fft: Vec<Complex32>,
}

impl PowerSpectrum {
    /// Plans the FFT for `n_fft`-sample frames, with the best kernels this CPU runs.
    ///
    /// # Panics
    /// If `n_fft` is odd or zero (feature configurations are validated before this).
    pub fn new(n_fft: usize) -> Self {
        Self::with_isa(n_fft, Isa::detect())
    }

    /// [`PowerSpectrum::new`] with a chosen instruction set (for tests and benchmarks); one this
    /// CPU lacks falls back to the portable path.
    pub fn with_isa(n_fft: usize, isa: Isa) -> Self {
        assert!(
            n_fft >= 2 && n_fft.is_multiple_of(2),
            "n_fft must be even, got {n_fft}"
        );
        let m = n_fft / 2;
        let fft = FftPlanner::<f32>::new().plan_fft_forward(m);
        let pairs = (m - 1) / 2;
        let angle = |k: usize| -2.0 * std::f64::consts::PI * k as f64 / n_fft as f64;
        let twiddle_re = (1..=pairs).map(|k| angle(k).cos() as f32).collect();
        let twiddle_im = (1..=pairs).map(|k| angle(k).sin() as f32).collect();
        Self {
            n_fft,
            fft,
            twiddle_re,
            twiddle_im,
            isa: isa.supported(),
        }
    }

    /// Samples per frame.
    pub fn n_fft(&self) -> usize {
        self.n_fft
    }

    /// Bins per spectrum: `n_fft / 2 + 1`.
    pub fn n_bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Fresh scratch buffers for this plan.
    pub fn scratch(&self) -> PowerScratch {
        let m = self.n_fft / 2;
        PowerScratch {
            packed: vec![Complex32::default(); m],
            spectrum: vec![Complex32::default(); m],
            fft: vec![Complex32::default(); self.fft.get_outofplace_scratch_len()],
        }
    }

    /// The frame buffer of `s`: write the `n_fft` windowed samples here, then call
    /// [`Self::compute`]. It is the FFT's input itself (even samples as real parts, odd ones as
    /// imaginary parts), so windowing writes straight into it with no packing pass.
    pub fn frame<'s>(&self, s: &'s mut PowerScratch) -> &'s mut [f32] {
        let len = 2 * s.packed.len();
        // SAFETY: `Complex32` is `repr(C)` with exactly two `f32` fields and no padding, so
        // `M` of them are `2M` consecutive, aligned `f32`s; the view borrows `s` mutably.
        unsafe { std::slice::from_raw_parts_mut(s.packed.as_mut_ptr().cast::<f32>(), len) }
    }

    /// Writes `|X[k]|²` of the real FFT of the frame in `s` ([`Self::frame`]) to `power`
    /// (`n_bins` values). The frame buffer's contents are undefined afterwards.
    ///
    /// # Panics
    /// If `power` has another length than [`Self::n_bins`] (a caller bug, not an input error).
    pub fn compute(&self, s: &mut PowerScratch, power: &mut [f32]) {
        assert_eq!(power.len(), self.n_bins(), "power spectrum length");
        self.fft
            .process_outofplace_with_scratch(&mut s.packed, &mut s.spectrum, &mut s.fft);
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                // SAFETY: `isa` is `Avx2Fma` only when the CPU reports AVX2 and FMA
                // (`Isa::supported`).
                unsafe { unpack_power_avx2(&s.spectrum, &self.twiddle_re, &self.twiddle_im, power) }
            }
            _ => unpack_power(&s.spectrum, &self.twiddle_re, &self.twiddle_im, power),
        }
    }
}

/// The bins the pair loop does not cover: `0`, `M` and, for even `M`, `M / 2`; returns the
/// number of pairs and the two output slices `lo` (bins `1..=pairs`) and `hi` (bins
/// `M − pairs..M`), which do not overlap.
#[inline(always)]
fn unpack_edges<'p>(z: &[Complex32], power: &'p mut [f32]) -> (&'p mut [f32], &'p mut [f32]) {
    let m = z.len();
    let pairs = (m - 1) / 2;
    debug_assert_eq!(power.len(), m + 1);
    let (z0r, z0i) = (z[0].re, z[0].im);
    power[0] = (z0r + z0i) * (z0r + z0i);
    power[m] = (z0r - z0i) * (z0r - z0i);
    if m.is_multiple_of(2) {
        // k = M/2 pairs with itself: X = conj(z[M/2]).
        let h = z[m / 2];
        power[m / 2] = h.re * h.re + h.im * h.im;
    }
    // power = [0 | lo (1..=pairs) | middle | hi (M − pairs..M) | M]
    let (head, rest) = power.split_at_mut(1 + pairs);
    let hi_start = m - pairs - (1 + pairs);
    (&mut head[1..], &mut rest[hi_start..hi_start + pairs])
}

/// Turns the `M`-point complex FFT `z` of the packed frame into the `M + 1` bin powers.
///
/// With `A = z[k]`, `C = z[M − k]` and `W = exp(−2πik / 2M)`: the even samples' spectrum is
/// `E = (A + C̄) / 2`, the odd samples' `O = −i (A − C̄) / 2`, and `X[k] = E + W·O`,
/// `X[M − k] = conj(E − W·O)`, so both powers come from one `E` and one `T = W·O`.
fn unpack_power(z: &[Complex32], tw_re: &[f32], tw_im: &[f32], power: &mut [f32]) {
    let m = z.len();
    let (lo, hi) = unpack_edges(z, power);
    let pairs = lo.len();
    debug_assert_eq!(pairs, tw_re.len());
    unpack_pairs(&z[1..=pairs], &z[m - pairs..m], tw_re, tw_im, lo, hi, 0);
}

/// The pair loop from pair `from` on, one pair at a time.
#[inline(always)]
fn unpack_pairs(
    fwd: &[Complex32],
    back: &[Complex32],
    tw_re: &[f32],
    tw_im: &[f32],
    lo: &mut [f32],
    hi: &mut [f32],
    from: usize,
) {
    let pairs = fwd.len();
    for i in from..pairs {
        (lo[i], hi[pairs - 1 - i]) = pair_power(fwd[i], back[pairs - 1 - i], tw_re[i], tw_im[i]);
    }
}

/// `|X[k]|²` and `|X[M − k]|²` from `A = z[k]`, `C = z[M − k]` and the twiddle `W = wr + i·wi`.
/// The AVX2 kernel performs exactly these operations, in this order, on eight pairs at once.
#[inline(always)]
fn pair_power(a: Complex32, c: Complex32, wr: f32, wi: f32) -> (f32, f32) {
    let (er, ei) = (a.re + c.re, a.im - c.im);
    let (or, oi) = (a.im + c.im, c.re - a.re);
    let tr = wr * or - wi * oi;
    let ti = wr * oi + wi * or;
    let (lr, li) = (er + tr, ei + ti);
    let (hr, hi) = (er - tr, ei - ti);
    (0.25 * (lr * lr + li * li), 0.25 * (hr * hr + hi * hi))
}

/// [`unpack_power`] with eight pairs per step in AVX2 registers: the complex values are split
/// into real and imaginary vectors with two shuffles, the mirrored ones reversed with one
/// permute, and the mirrored powers reversed back before their store.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn unpack_power_avx2(z: &[Complex32], tw_re: &[f32], tw_im: &[f32], power: &mut [f32]) {
    use std::arch::x86_64::*;

    /// Eight consecutive complex values (16 floats from `p`) as (re, im) vectors, in order.
    #[inline(always)]
    unsafe fn split(p: *const f32) -> (__m256, __m256) {
        let v0 = _mm256_loadu_ps(p);
        let v1 = _mm256_loadu_ps(p.add(8));
        // Per 128-bit half: [v0 re re | v1 re re]; the 64-bit permute restores the order.
        let re = _mm256_shuffle_ps::<0b10_00_10_00>(v0, v1);
        let im = _mm256_shuffle_ps::<0b11_01_11_01>(v0, v1);
        (
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(re))),
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(im))),
        )
    }

    let m = z.len();
    let (lo, hi) = unpack_edges(z, power);
    let pairs = lo.len();
    assert!(tw_re.len() == pairs && tw_im.len() == pairs);
    let (fwd, back) = (&z[1..=pairs], &z[m - pairs..m]);
    let reverse = _mm256_setr_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    let quarter = _mm256_set1_ps(0.25);
    let blocks = pairs / 8;
    for b in 0..blocks {
        let i = b * 8;
        let j = pairs - i - 8;
        // SAFETY: i + 8 ≤ pairs and j + 8 ≤ pairs, so every load and store below stays inside
        // `fwd`, `back`, the twiddles, `lo` and `hi`; `Complex32` is `repr(C)` (re, im).
        let (ar, ai) = split(fwd.as_ptr().add(i).cast::<f32>());
        let (cr, ci) = split(back.as_ptr().add(j).cast::<f32>());
        let cr = _mm256_permutevar8x32_ps(cr, reverse);
        let ci = _mm256_permutevar8x32_ps(ci, reverse);
        let wr = _mm256_loadu_ps(tw_re.as_ptr().add(i));
        let wi = _mm256_loadu_ps(tw_im.as_ptr().add(i));
        let er = _mm256_add_ps(ar, cr);
        let ei = _mm256_sub_ps(ai, ci);
        let or = _mm256_add_ps(ai, ci);
        let oi = _mm256_sub_ps(cr, ar);
        let tr = _mm256_sub_ps(_mm256_mul_ps(wr, or), _mm256_mul_ps(wi, oi));
        let ti = _mm256_add_ps(_mm256_mul_ps(wr, oi), _mm256_mul_ps(wi, or));
        let (lr, li) = (_mm256_add_ps(er, tr), _mm256_add_ps(ei, ti));
        let (hr, hi_) = (_mm256_sub_ps(er, tr), _mm256_sub_ps(ei, ti));
        let l = _mm256_mul_ps(
            quarter,
            _mm256_add_ps(_mm256_mul_ps(lr, lr), _mm256_mul_ps(li, li)),
        );
        let h = _mm256_mul_ps(
            quarter,
            _mm256_add_ps(_mm256_mul_ps(hr, hr), _mm256_mul_ps(hi_, hi_)),
        );
        _mm256_storeu_ps(lo.as_mut_ptr().add(i), l);
        _mm256_storeu_ps(hi.as_mut_ptr().add(j), _mm256_permutevar8x32_ps(h, reverse));
    }
    unpack_pairs(fwd, back, tw_re, tw_im, lo, hi, blocks * 8);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `|DFT|²` straight from the definition, in f64.
    fn naive_power(x: &[f32]) -> Vec<f64> {
        let n = x.len();
        (0..=n / 2)
            .map(|k| {
                let (mut re, mut im) = (0.0f64, 0.0f64);
                for (t, &v) in x.iter().enumerate() {
                    let a = -2.0 * std::f64::consts::PI * (k * t % n) as f64 / n as f64;
                    re += v as f64 * a.cos();
                    im += v as f64 * a.sin();
                }
                re * re + im * im
            })
            .collect()
    }

    fn power_of(p: &PowerSpectrum, x: &[f32], out: &mut [f32]) {
        let mut s = p.scratch();
        p.frame(&mut s).copy_from_slice(x);
        p.compute(&mut s, out);
    }

    fn signal(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn matches_the_definition_for_every_even_size_shape() {
        // Odd and even M, the smallest sizes, Whisper's 400 and the CNN's 2048.
        for n in [2, 4, 6, 8, 10, 12, 30, 400, 2048] {
            for isa in [Isa::Portable, Isa::detect()] {
                let p = PowerSpectrum::with_isa(n, isa);
                let x = signal(n, n as u64);
                let mut got = vec![0.0; p.n_bins()];
                power_of(&p, &x, &mut got);
                let want = naive_power(&x);
                let scale = want.iter().cloned().fold(0.0, f64::max);
                for (k, (g, w)) in got.iter().zip(&want).enumerate() {
                    assert!(
                        (*g as f64 - w).abs() <= 1e-5 * scale,
                        "n {n} {isa:?} bin {k}: {g} vs {w}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_avx2_path_gives_the_portable_bits() {
        // Same operations in the same order (no fused rounding): identical results, so the
        // choice of path never changes a verdict.
        let n = 2048;
        let x = signal(n, 7);
        let run = |isa| {
            let p = PowerSpectrum::with_isa(n, isa);
            let mut out = vec![0.0; p.n_bins()];
            power_of(&p, &x, &mut out);
            out
        };
        assert_eq!(run(Isa::Portable), run(Isa::detect()));
    }

    #[test]
    fn a_tone_lands_in_its_bin() {
        let n = 64;
        let x: Vec<f32> = (0..n)
            .map(|t| (std::f32::consts::TAU * 5.0 * t as f32 / n as f32).cos())
            .collect();
        let p = PowerSpectrum::new(n);
        let mut out = vec![0.0; p.n_bins()];
        power_of(&p, &x, &mut out);
        let best = (0..out.len())
            .max_by(|&a, &b| out[a].total_cmp(&out[b]))
            .unwrap();
        assert_eq!(best, 5);
        assert!((out[5] - (n as f32 / 2.0).powi(2)).abs() < 1e-2);
    }
}
