//! librosa's Slaney-style mel filter bank (`librosa.filters.mel(htk=False, norm="slaney")`), and
//! the same triangles spaced evenly in hertz for the `log-linear` front-end.
//!
//! Computed in `f64` and stored as `f32` like librosa, but sparse: each filter keeps only its
//! non-zero run of FFT bins, which makes applying the bank ~60× cheaper than a dense matmul.
//! For applying it, each run is also kept zero-padded to whole 8-bin blocks, so every band is a
//! short vectorised dot product with eight independent partial sums (a plain running sum is one
//! long chain of dependent additions, bound by the adder's latency rather than its rate).

use crate::isa::Isa;

/// Bins per block of the padded runs: one AVX2 register of `f32`.
const LANES: usize = 8;

/// One triangular filter: weights for bins `start..start + weights.len()`.
#[derive(Debug, Clone)]
pub struct MelFilter {
    /// First FFT bin with a non-zero weight.
    pub start: usize,
    /// Weights of consecutive bins from `start`.
    pub weights: Vec<f32>,
}

/// Where one band's padded run of weights sits: `packed[offset..offset + len]` multiplies
/// `power[start..start + len]`.
#[derive(Debug, Clone, Copy)]
struct PackedSpan {
    start: usize,
    offset: usize,
    len: usize,
}

/// The whole bank, one filter per mel band.
#[derive(Debug, Clone)]
pub struct MelFilterBank {
    filters: Vec<MelFilter>,
    n_bins: usize,
    /// Every filter's weights, each run widened with zeros to a multiple of [`LANES`] bins.
    packed: Vec<f32>,
    spans: Vec<PackedSpan>,
    isa: Isa,
}

const F_SP: f64 = 200.0 / 3.0;
const MIN_LOG_HZ: f64 = 1000.0;
const MIN_LOG_MEL: f64 = MIN_LOG_HZ / F_SP;

fn log_step() -> f64 {
    6.4f64.ln() / 27.0
}

/// Hz → mel on the Slaney scale (linear below 1 kHz, logarithmic above).
pub fn hz_to_mel(hz: f64) -> f64 {
    if hz >= MIN_LOG_HZ {
        MIN_LOG_MEL + (hz / MIN_LOG_HZ).ln() / log_step()
    } else {
        hz / F_SP
    }
}

/// Mel → Hz on the Slaney scale.
pub fn mel_to_hz(mel: f64) -> f64 {
    if mel >= MIN_LOG_MEL {
        MIN_LOG_HZ * (log_step() * (mel - MIN_LOG_MEL)).exp()
    } else {
        F_SP * mel
    }
}

impl MelFilterBank {
    /// Builds the bank for an `n_fft`-point real FFT at `sample_rate`.
    pub fn new(sample_rate: u32, n_fft: usize, n_mels: usize, fmin: f64, fmax: f64) -> Self {
        let (mel_lo, mel_hi) = (hz_to_mel(fmin), hz_to_mel(fmax));
        let n_pts = n_mels + 2;
        let edges: Vec<f64> = (0..n_pts)
            .map(|i| mel_to_hz(mel_lo + (mel_hi - mel_lo) * i as f64 / (n_pts - 1) as f64))
            .collect();
        Self::from_edges(sample_rate, n_fft, &edges)
    }

    /// The same area-normalised triangles with edges spaced evenly in hertz: as fine at 7 kHz
    /// as at 200 Hz, where the mel scale is coarsest exactly where vocoders and TTS leave their
    /// artefacts (the linear-frequency front-ends of LFCC-style anti-spoofing systems).
    pub fn linear(sample_rate: u32, n_fft: usize, n_bands: usize, fmin: f64, fmax: f64) -> Self {
        let n_pts = n_bands + 2;
        let edges: Vec<f64> = (0..n_pts)
            .map(|i| fmin + (fmax - fmin) * i as f64 / (n_pts - 1) as f64)
            .collect();
        Self::from_edges(sample_rate, n_fft, &edges)
    }

    /// One triangle per three consecutive `edges` (Hz): band `i` rises from `edges[i]` to
    /// `edges[i + 1]` and falls to `edges[i + 2]`, scaled to unit area (Slaney norm).
    fn from_edges(sample_rate: u32, n_fft: usize, edges: &[f64]) -> Self {
        let n_bins = n_fft / 2 + 1;
        let fft_freqs: Vec<f64> = (0..n_bins)
            .map(|k| k as f64 * sample_rate as f64 / n_fft as f64)
            .collect();
        let mel_f = edges;
        let filters = (0..edges.len().saturating_sub(2))
            .map(|i| {
                let (lo, mid, hi) = (mel_f[i], mel_f[i + 1], mel_f[i + 2]);
                let enorm = 2.0 / (hi - lo);
                let dense: Vec<f32> = fft_freqs
                    .iter()
                    .map(|&f| {
                        let lower = (f - lo) / (mid - lo);
                        let upper = (hi - f) / (hi - mid);
                        (lower.min(upper).max(0.0) * enorm) as f32
                    })
                    .collect();
                let first = dense.iter().position(|&w| w != 0.0);
                let last = dense.iter().rposition(|&w| w != 0.0);
                match (first, last) {
                    (Some(a), Some(b)) => MelFilter {
                        start: a,
                        weights: dense[a..=b].to_vec(),
                    },
                    // An empty filter (possible with many mels and a small FFT), as librosa warns.
                    _ => MelFilter {
                        start: 0,
                        weights: Vec::new(),
                    },
                }
            })
            .collect::<Vec<_>>();
        let (packed, spans) = pack(&filters, n_bins);
        Self {
            filters,
            n_bins,
            packed,
            spans,
            isa: Isa::detect(),
        }
    }

    /// The same bank, applied with the given instruction set (for tests and benchmarks); one
    /// this CPU lacks falls back to the portable path.
    pub fn with_isa(mut self, isa: Isa) -> Self {
        self.isa = isa.supported();
        self
    }

    /// Number of mel bands.
    pub fn n_mels(&self) -> usize {
        self.filters.len()
    }

    /// Number of FFT bins the bank expects (`n_fft / 2 + 1`).
    pub fn n_bins(&self) -> usize {
        self.n_bins
    }

    /// The filters, lowest band first.
    pub fn filters(&self) -> &[MelFilter] {
        &self.filters
    }

    /// Applies the bank to one power spectrum, writing band `m` to `out[m * stride]`.
    ///
    /// # Panics
    /// If `power` holds fewer than [`Self::n_bins`] values or `out` is too short for the last
    /// band (caller bugs: the extractors size both from this bank).
    #[inline]
    pub fn apply_strided(&self, power: &[f32], out: &mut [f32], stride: usize) {
        assert!(power.len() >= self.n_bins, "power spectrum too short");
        assert!(
            self.spans.is_empty() || out.len() > (self.spans.len() - 1) * stride,
            "mel output too short"
        );
        match self.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2Fma => {
                // SAFETY: `isa` is `Avx2Fma` only when the CPU reports AVX2 and FMA.
                unsafe { apply_packed_avx2(&self.spans, &self.packed, power, out, stride) }
            }
            _ => apply_packed(&self.spans, &self.packed, power, out, stride),
        }
    }

    /// The bank as a dense `n_mels × n_bins` row-major matrix (for inspection and tests).
    pub fn to_dense(&self) -> Vec<f32> {
        let mut dense = vec![0.0; self.filters.len() * self.n_bins];
        for (m, f) in self.filters.iter().enumerate() {
            let row = &mut dense[m * self.n_bins..(m + 1) * self.n_bins];
            row[f.start..f.start + f.weights.len()].copy_from_slice(&f.weights);
        }
        dense
    }
}

/// Lays the filters' runs out zero-padded to whole blocks of [`LANES`] bins.
///
/// A padded run that would pass the last bin is moved down (zeros before the weights instead of
/// after), so it always reads inside the spectrum; a spectrum shorter than one block keeps the
/// runs unpadded, and the remainder loop of [`apply_packed`] covers them.
fn pack(filters: &[MelFilter], n_bins: usize) -> (Vec<f32>, Vec<PackedSpan>) {
    let mut packed = Vec::new();
    let mut spans = Vec::with_capacity(filters.len());
    for f in filters {
        let len = f.weights.len();
        let padded = len.div_ceil(LANES) * LANES;
        let (start, len) = if padded <= n_bins {
            (f.start.min(n_bins - padded), padded)
        } else {
            (f.start, len)
        };
        let offset = packed.len();
        packed.resize(offset + len, 0.0);
        let at = offset + (f.start - start);
        packed[at..at + f.weights.len()].copy_from_slice(&f.weights);
        spans.push(PackedSpan { start, offset, len });
    }
    (packed, spans)
}

/// [`apply_packed`] with each band's eight partial sums in one AVX2 register, reduced in the
/// portable path's order, so both give the same bits.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn apply_packed_avx2(
    spans: &[PackedSpan],
    packed: &[f32],
    power: &[f32],
    out: &mut [f32],
    stride: usize,
) {
    use std::arch::x86_64::*;
    for (m, s) in spans.iter().enumerate() {
        let w = &packed[s.offset..s.offset + s.len];
        let p = &power[s.start..s.start + s.len];
        let whole = s.len / LANES * LANES;
        let mut acc = _mm256_setzero_ps();
        let mut k = 0;
        while k < whole {
            // SAFETY: k + 8 ≤ whole ≤ len of both `w` and `p`.
            let prod = _mm256_mul_ps(
                _mm256_loadu_ps(w.as_ptr().add(k)),
                _mm256_loadu_ps(p.as_ptr().add(k)),
            );
            acc = _mm256_add_ps(acc, prod);
            k += LANES;
        }
        let tail: f32 = w[whole..].iter().zip(&p[whole..]).map(|(a, b)| a * b).sum();
        // [a0+a4, a1+a5, a2+a6, a3+a7] → [(a0+a4)+(a1+a5), (a2+a6)+(a3+a7), ..] → their sum.
        let quads = _mm_add_ps(_mm256_castps256_ps128(acc), _mm256_extractf128_ps::<1>(acc));
        let halves = _mm_hadd_ps(quads, quads);
        let sum = _mm_cvtss_f32(halves) + _mm_cvtss_f32(_mm_movehdup_ps(halves));
        out[m * stride] = sum + tail;
    }
}

/// One dot product per band, eight partial sums per band, added in a fixed order: the same
/// result on every instruction set.
fn apply_packed(
    spans: &[PackedSpan],
    packed: &[f32],
    power: &[f32],
    out: &mut [f32],
    stride: usize,
) {
    for (m, s) in spans.iter().enumerate() {
        let w = &packed[s.offset..s.offset + s.len];
        let p = &power[s.start..s.start + s.len];
        let mut acc = [0f32; LANES];
        let (wb, pb) = (w.chunks_exact(LANES), p.chunks_exact(LANES));
        let tail: f32 = wb
            .remainder()
            .iter()
            .zip(pb.remainder())
            .map(|(a, b)| a * b)
            .sum();
        for (wc, pc) in wb.zip(pb) {
            for j in 0..LANES {
                acc[j] += wc[j] * pc[j];
            }
        }
        out[m * stride] = (((acc[0] + acc[4]) + (acc[1] + acc[5]))
            + ((acc[2] + acc[6]) + (acc[3] + acc[7])))
            + tail;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slaney_scale_round_trips_and_matches_librosa_points() {
        for hz in [0.0, 100.0, 999.0, 1000.0, 4321.0, 8000.0] {
            assert!((mel_to_hz(hz_to_mel(hz)) - hz).abs() < 1e-9);
        }
        // librosa.hz_to_mel(1000) == 15.0, hz_to_mel(8000) == 45.245640471924965
        assert!((hz_to_mel(1000.0) - 15.0).abs() < 1e-12);
        assert!((hz_to_mel(8000.0) - 45.245_640_471_924_965).abs() < 1e-9);
    }

    #[test]
    fn the_linear_bank_has_equal_width_bands_up_to_fmax() {
        let bank = MelFilterBank::linear(16_000, 2048, 128, 0.0, 8000.0);
        assert_eq!(bank.n_mels(), 128);
        let df = 16_000.0 / 2048.0;
        // Edges every 8000 / 129 Hz: every band spans two of those, about 16 FFT bins.
        for f in &bank.filters()[1..] {
            assert!((15..=17).contains(&f.weights.len()), "{}", f.weights.len());
            let area: f32 = f.weights.iter().sum::<f32>() * df;
            assert!((area - 1.0).abs() < 0.05, "area {area}");
        }
        // The top band peaks near 8000 - 62 Hz; the top mel band is far wider.
        let top = &bank.filters()[127];
        let peak = top.start
            + top
                .weights
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i)
                .unwrap();
        assert!((peak as f32 * df - 7938.0).abs() < 10.0);
        let mel = MelFilterBank::new(16_000, 2048, 128, 0.0, 8000.0);
        assert!(mel.filters()[127].weights.len() > 2 * top.weights.len());
    }

    #[test]
    fn bank_is_sparse_and_area_normalised() {
        let bank = MelFilterBank::new(16_000, 2048, 128, 0.0, 8000.0);
        assert_eq!(bank.n_mels(), 128);
        assert_eq!(bank.n_bins(), 1025);
        let nnz: usize = bank.filters().iter().map(|f| f.weights.len()).sum();
        assert!(nnz < 2 * 1025 + 128, "nnz {nnz}");
        // Slaney norm: each triangle's area in Hz is 1, i.e. Σ w · Δf ≈ 1 for wide filters.
        let df = 16_000.0 / 2048.0;
        let last = &bank.filters()[127];
        let area: f32 = last.weights.iter().sum::<f32>() * df;
        assert!((area - 1.0).abs() < 0.02, "area {area}");
    }

    /// The product straight from the sparse filters, in f64.
    fn reference(bank: &MelFilterBank, power: &[f32]) -> Vec<f64> {
        bank.filters()
            .iter()
            .map(|f| {
                f.weights
                    .iter()
                    .zip(&power[f.start..])
                    .map(|(w, p)| *w as f64 * *p as f64)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn the_packed_product_equals_the_sparse_one_on_every_path() {
        // The CNN's bank, Whisper's (n_fft 400, 80 bands), a linear one, and one with fewer bins
        // than a block, where the runs stay unpadded.
        let banks = [
            MelFilterBank::new(16_000, 2048, 128, 0.0, 8000.0),
            MelFilterBank::new(16_000, 400, 80, 0.0, 8000.0),
            MelFilterBank::linear(16_000, 2048, 128, 0.0, 8000.0),
            MelFilterBank::linear(16_000, 8, 2, 0.0, 8000.0),
        ];
        for bank in banks {
            let power: Vec<f32> = (0..bank.n_bins())
                .map(|k| 1.0 + ((k * 7919) % 101) as f32)
                .collect();
            let want = reference(&bank, &power);
            let mut outs = Vec::new();
            for isa in [Isa::Portable, Isa::detect()] {
                let bank = bank.clone().with_isa(isa);
                let stride = 3;
                let mut out = vec![f32::NAN; bank.n_mels() * stride];
                bank.apply_strided(&power, &mut out, stride);
                for (m, w) in want.iter().enumerate() {
                    let g = out[m * stride] as f64;
                    assert!(
                        (g - w).abs() <= 1e-6 * w.abs().max(1.0),
                        "band {m}: {g} vs {w}"
                    );
                }
                outs.push(out);
            }
            assert_eq!(
                outs[0].iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                outs[1].iter().map(|v| v.to_bits()).collect::<Vec<_>>()
            );
        }
    }
}
