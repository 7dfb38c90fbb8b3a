//! `librosa.power_to_db(S, ref=np.max, amin, top_db)`, vectorised.
//!
//! A 15 s spectrogram has 60 032 values; a call to the C library's `log10f` for each cost about
//! a seventh of the whole log-mel front-end. Here the logarithm is a polynomial on the mantissa
//! (Cephes' `logf` coefficients, a few ulp from the exact value) over whole blocks of eight values, and
//! the maximum, the conversion and the floor run as lane-wise loops the compiler vectorises.
//! The reference level goes through the same polynomial as every value, so the loudest cell is
//! exactly 0 dB, as librosa's is. Values or an `amin` the polynomial does not cover (infinite,
//! subnormal) take the exact path.

use crate::isa::Isa;

const LANES: usize = 8;

/// `10 / ln 10`: decibels per neper of power.
const DB_PER_NEPER: f32 = 4.342_944_8;

/// Converts a power spectrogram to decibels in place, relative to its maximum, clipped to
/// `top_db` below the peak.
///
/// Accurate to about 1e-5 dB against an exact `10·log10` (see the tests); librosa itself
/// computes in `f32`.
pub fn power_to_db_in_place(s: &mut [f32], amin: f32, top_db: Option<f32>) {
    power_to_db_with(Isa::detect(), s, amin, top_db)
}

/// [`power_to_db_in_place`] on a chosen instruction set (for tests and benchmarks).
pub fn power_to_db_with(isa: Isa, s: &mut [f32], amin: f32, top_db: Option<f32>) {
    match isa.supported() {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2Fma => {
            // SAFETY: `supported` returns `Avx2Fma` only when the CPU reports AVX2 and FMA.
            unsafe { to_db_avx2(s, amin, top_db) }
        }
        _ => to_db(s, amin, top_db),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn to_db_avx2(s: &mut [f32], amin: f32, top_db: Option<f32>) {
    to_db(s, amin, top_db)
}

#[inline(always)]
fn to_db(s: &mut [f32], amin: f32, top_db: Option<f32>) {
    let reference = lane_max(s);
    // NaN inputs become `amin` on both paths (`f32::max` prefers the number); an infinite
    // reference or a subnormal `amin` is outside the polynomial's range.
    let in_range = reference.is_finite() && amin.is_finite() && amin >= f32::MIN_POSITIVE;
    if !in_range {
        exact_to_db(s, amin, top_db);
        return;
    }
    let ref_db = DB_PER_NEPER * ln_normal(reference.max(amin));
    let mut peak = [f32::NEG_INFINITY; LANES];
    let mut blocks = s.chunks_exact_mut(LANES);
    for b in &mut blocks {
        for j in 0..LANES {
            let v = DB_PER_NEPER * ln_normal(b[j].max(amin)) - ref_db;
            b[j] = v;
            peak[j] = peak[j].max(v);
        }
    }
    let mut top = peak.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for v in blocks.into_remainder() {
        *v = DB_PER_NEPER * ln_normal(v.max(amin)) - ref_db;
        top = top.max(*v);
    }
    clip_to_top_db(s, top, top_db);
}

/// Raises every value to at least `top_db` below `peak` (librosa's `top_db` clipping).
#[inline(always)]
fn clip_to_top_db(s: &mut [f32], peak: f32, top_db: Option<f32>) {
    if let Some(t) = top_db {
        let floor = peak - t;
        for v in s.iter_mut() {
            *v = v.max(floor);
        }
    }
}

/// The largest value, NaNs ignored (as `f32::max` does), eight running maxima at a time.
#[inline(always)]
fn lane_max(s: &[f32]) -> f32 {
    let mut m = [f32::NEG_INFINITY; LANES];
    let blocks = s.chunks_exact(LANES);
    let tail = blocks
        .remainder()
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    for b in blocks {
        for j in 0..LANES {
            m[j] = m[j].max(b[j]);
        }
    }
    m.iter().copied().fold(tail, f32::max)
}

/// The exact conversion, for inputs the fast one does not cover.
fn exact_to_db(s: &mut [f32], amin: f32, top_db: Option<f32>) {
    let reference = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let ref_db = 10.0 * reference.max(amin).log10();
    let mut peak = f32::NEG_INFINITY;
    for v in s.iter_mut() {
        *v = 10.0 * v.max(amin).log10() - ref_db;
        peak = peak.max(*v);
    }
    clip_to_top_db(s, peak, top_db);
}

/// Natural logarithm of a positive, finite, normal `x`, branch-free.
///
/// `x = m · 2^e` with `m` in `[√½, √2)`; `ln x = e·ln 2 + ln m`, and `ln(1 + z)` for the small
/// `z = m − 1` is `z − z²/2 + z³·P(z)` with Cephes' minimax `P`. `ln 2` is split in two parts
/// so that `e·ln 2` keeps full precision.
#[inline(always)]
fn ln_normal(x: f32) -> f32 {
    const SQRT_HALF: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let bits = x.to_bits();
    let exponent = ((bits >> 23) & 0xff) as i32 - 126;
    // The mantissa scaled to [0.5, 1).
    let m = f32::from_bits((bits & 0x007f_ffff) | 0x3f00_0000);
    let low = m < SQRT_HALF;
    let e = (exponent - low as i32) as f32;
    let z = if low { m + m - 1.0 } else { m - 1.0 };
    let z2 = z * z;
    let mut p = 7.037_683_6e-2_f32;
    p = p * z - 1.151_461e-1;
    p = p * z + 1.167_699_9e-1;
    p = p * z - 1.242_014_1e-1;
    p = p * z + 1.424_932_3e-1;
    p = p * z - 1.666_805_8e-1;
    p = p * z + 2.000_071_5e-1;
    p = p * z - 2.499_999_4e-1;
    p = p * z + 3.333_333e-1;
    let mut y = p * z * z2;
    y += e * -2.121_944_4e-4;
    y += -0.5 * z2;
    z + y + e * 0.693_359_4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_logarithm_is_within_a_few_ulp_over_the_whole_normal_range() {
        let mut worst = 0.0f64;
        let mut x = f32::MIN_POSITIVE;
        while x < f32::MAX / 1.0001 {
            let want = (x as f64).ln();
            let got = ln_normal(x) as f64;
            // Relative to the value's magnitude, at least 1 (near x = 1 the result is tiny).
            worst = worst.max((got - want).abs() / want.abs().max(1.0));
            x *= 1.000_37;
        }
        assert!(worst < 3e-7, "worst relative error {worst}");
    }

    #[test]
    fn decibels_match_an_exact_log10_within_1e5_db() {
        let s: Vec<f32> = (0..1003)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3 * 10f32.powi(i % 13 - 9))
            .collect();
        for isa in [Isa::Portable, Isa::detect()] {
            let mut fast = s.clone();
            power_to_db_with(isa, &mut fast, 1e-10, Some(80.0));
            let mut exact = s.clone();
            exact_to_db(&mut exact, 1e-10, Some(80.0));
            for (i, (f, e)) in fast.iter().zip(&exact).enumerate() {
                assert!((f - e).abs() < 1e-5, "{isa:?} value {i}: {f} vs {e} dB");
            }
            assert_eq!(fast.iter().copied().fold(f32::MIN, f32::max), 0.0);
        }
    }

    #[test]
    fn both_paths_give_the_same_bits() {
        let s: Vec<f32> = (0..517)
            .map(|i| (i as f32 * 0.37).sin().abs() * 1e3)
            .collect();
        let (mut a, mut b) = (s.clone(), s);
        power_to_db_with(Isa::Portable, &mut a, 1e-10, Some(80.0));
        power_to_db_with(Isa::detect(), &mut b, 1e-10, Some(80.0));
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn silence_is_zero_db_and_the_floor_is_top_db_below_the_peak() {
        let mut s = vec![0.0f32; 20];
        power_to_db_in_place(&mut s, 1e-10, Some(80.0));
        assert!(s.iter().all(|&v| v == 0.0));
        let mut s = vec![1.0, 1e-12, 1e-3, 0.0, 1.0, 1e-12, 1e-3, 0.0, 1.0];
        power_to_db_in_place(&mut s, 1e-10, Some(80.0));
        assert_eq!(s[0], 0.0);
        assert!((s[2] + 30.0).abs() < 1e-4);
        assert_eq!(s[1], -80.0);
        assert_eq!(s[3], -80.0);
        let mut s = vec![1.0, 1e-12];
        power_to_db_in_place(&mut s, 1e-10, None);
        assert!((s[1] + 100.0).abs() < 1e-3);
    }

    #[test]
    fn infinite_nan_and_subnormal_inputs_keep_the_exact_semantics() {
        for (input, amin) in [
            (vec![1.0, f32::INFINITY, 2.0], 1e-10),
            (
                vec![1.0, f32::NAN, 2.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
                1e-10,
            ),
            (vec![1.0, 1e-42, 2.0], 1e-44),
        ] {
            let mut fast = input.clone();
            power_to_db_in_place(&mut fast, amin, Some(80.0));
            let mut exact = input;
            exact_to_db(&mut exact, amin, Some(80.0));
            for (f, e) in fast.iter().zip(&exact) {
                assert!(
                    f.to_bits() == e.to_bits() || (f - e).abs() < 1e-5,
                    "{f} vs {e}"
                );
            }
        }
    }
}
