//! librosa's Slaney-style mel filter bank (`librosa.filters.mel(htk=False, norm="slaney")`), and
//! the same triangles spaced evenly in hertz for the `log-linear` front-end.
//!
//! Computed in `f64` and stored as `f32` like librosa, but sparse: each filter keeps only its
//! non-zero run of FFT bins, which makes applying the bank ~60× cheaper than a dense matmul.

/// One triangular filter: weights for bins `start..start + weights.len()`.
#[derive(Debug, Clone)]
pub struct MelFilter {
    /// First FFT bin with a non-zero weight.
    pub start: usize,
    /// Weights of consecutive bins from `start`.
    pub weights: Vec<f32>,
}

/// The whole bank, one filter per mel band.
#[derive(Debug, Clone)]
pub struct MelFilterBank {
    filters: Vec<MelFilter>,
    n_bins: usize,
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
            .collect();
        Self { filters, n_bins }
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
    #[inline]
    pub fn apply_strided(&self, power: &[f32], out: &mut [f32], stride: usize) {
        for (m, f) in self.filters.iter().enumerate() {
            let bins = &power[f.start..f.start + f.weights.len()];
            let acc: f32 = bins.iter().zip(&f.weights).map(|(p, w)| p * w).sum();
            out[m * stride] = acc;
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
}
