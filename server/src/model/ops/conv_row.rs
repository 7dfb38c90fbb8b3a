//! One output row of a valid, stride-1 2-D convolution, computed directly (no GEMM, no im2col)
//! in channels-last layout, sixteen output channels at a time.
//!
//! The seed CNN's convolutions have 16 output channels and 1 or 16 input channels: far too
//! narrow for a general GEMM to reach the machine's FMA rate (its packing and edge handling cost
//! as much as the arithmetic when `n = 16` and `k = 48`). Sixteen output channels are exactly two
//! AVX2 registers, so a register tile of six output pixels × sixteen channels holds twelve
//! accumulators; each input value is broadcast once and feeds two FMAs, and each kernel vector
//! is loaded once per six pixels. That keeps the loop FMA-bound instead of load-bound.
//!
//! The AVX2+FMA path is chosen at run time ([`Isa::detect`]); a portable path computes the same
//! sums in the same order (without fused rounding) so one binary runs on any CPU.

/// Output channels per kernel block: two 8-lane AVX2 registers.
pub const OC_BLOCK: usize = 16;

/// Output pixels per register tile on the AVX2 path (12 accumulators + 2 kernel vectors + 1
/// broadcast = 15 of the 16 `ymm` registers).
const TILE: usize = 6;

pub use crate::isa::Isa;

/// A convolution's weights repacked for row-at-a-time evaluation.
///
/// Built once per model load: the Keras kernel `[KH, KW, C, O]` becomes `O / 16` blocks of
/// `[KH, KW, C, 16]`, so the sixteen weights one input value multiplies are contiguous.
#[derive(Debug, Clone)]
pub struct ConvRowKernel {
    kh: usize,
    kw: usize,
    c: usize,
    o: usize,
    packed: Vec<f32>,
    bias: Vec<f32>,
    isa: Isa,
}

/// Why a kernel could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The weights do not have the shape their dimensions claim.
    #[error("kernel of {got} values does not match {kh}×{kw}×{c}×{o} (bias {bias})")]
    Shape {
        /// Values in the kernel slice.
        got: usize,
        /// Kernel rows.
        kh: usize,
        /// Kernel columns.
        kw: usize,
        /// Input channels.
        c: usize,
        /// Output channels.
        o: usize,
        /// Values in the bias slice.
        bias: usize,
    },
    /// The output channels are not a whole number of 16-channel blocks.
    #[error("{0} output channels is not a multiple of {OC_BLOCK}")]
    Channels(usize),
}

impl ConvRowKernel {
    /// Packs a Keras-layout kernel `[kh, kw, c, o]` and its bias `[o]` for `isa`
    /// ([`Isa::Avx2Fma`] on a CPU without AVX2+FMA falls back to the portable path, so no
    /// caller can make the kernel run instructions the CPU lacks).
    pub fn pack(
        kernel: &[f32],
        bias: &[f32],
        (kh, kw, c, o): (usize, usize, usize, usize),
        isa: Isa,
    ) -> Result<Self, PackError> {
        if kh == 0 || kw == 0 || c == 0 || kernel.len() != kh * kw * c * o || bias.len() != o {
            return Err(PackError::Shape {
                got: kernel.len(),
                kh,
                kw,
                c,
                o,
                bias: bias.len(),
            });
        }
        if o == 0 || o % OC_BLOCK != 0 {
            return Err(PackError::Channels(o));
        }
        // A caller may ask for AVX2 on a CPU without it; run portably rather than fault.
        let isa = isa.supported();
        let taps = kh * kw * c;
        let mut packed = Vec::with_capacity(kernel.len());
        for block in 0..o / OC_BLOCK {
            for tap in 0..taps {
                let from = tap * o + block * OC_BLOCK;
                packed.extend_from_slice(&kernel[from..from + OC_BLOCK]);
            }
        }
        Ok(Self {
            kh,
            kw,
            c,
            o,
            packed,
            bias: bias.to_vec(),
            isa,
        })
    }

    /// Kernel height: how many input rows one output row reads.
    pub fn rows(&self) -> usize {
        self.kh
    }

    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.o
    }

    /// Input columns needed for `out_w` output columns.
    pub fn input_width(&self, out_w: usize) -> usize {
        out_w + self.kw - 1
    }

    /// Computes output row `dst` (`out_w × o`, channels last) from `kh` input rows, each at
    /// least `input_width(out_w) × c` values, then adds the bias and, if `relu`, clamps at 0.
    ///
    /// # Panics
    /// If the row count or a slice length is wrong: callers size these from the same shapes the
    /// kernel was packed with, so a mismatch is a bug in the caller, not bad input.
    pub fn row(&self, src: &[&[f32]], out_w: usize, relu: bool, dst: &mut [f32]) {
        assert_eq!(src.len(), self.kh, "conv row: wrong number of input rows");
        let need = self.input_width(out_w) * self.c;
        assert!(
            src.iter().all(|r| r.len() >= need),
            "conv row: input row shorter than {need}"
        );
        assert!(
            dst.len() >= out_w * self.o,
            "conv row: output row too short"
        );
        let taps = self.kh * self.kw * self.c;
        for block in 0..self.o / OC_BLOCK {
            let kernel = &self.packed[block * taps * OC_BLOCK..][..taps * OC_BLOCK];
            let bias = &self.bias[block * OC_BLOCK..][..OC_BLOCK];
            let dst = &mut dst[block * OC_BLOCK..];
            match self.isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2Fma => {
                    let mut rows = [std::ptr::null::<f32>(); MAX_ROWS];
                    assert!(
                        self.kh <= MAX_ROWS,
                        "conv row: kernel taller than {MAX_ROWS}"
                    );
                    for (p, r) in rows.iter_mut().zip(src) {
                        *p = r.as_ptr();
                    }
                    // SAFETY: `pack` keeps `Isa::Avx2Fma` only after `detect` found AVX2 and
                    // FMA on this CPU; the asserts above bound every read (`need` values per input row,
                    // `taps × 16` kernel values, 16 bias values) and every write (`out_w` pixels
                    // at stride `o`, 16 channels from this block's offset).
                    unsafe {
                        avx2::row(
                            &rows[..self.kh],
                            self.c,
                            self.kw,
                            kernel.as_ptr(),
                            bias.as_ptr(),
                            out_w,
                            relu,
                            dst.as_mut_ptr(),
                            self.o,
                        )
                    }
                }
                _ => self.portable_row(src, kernel, bias, out_w, relu, dst),
            }
        }
    }

    /// Reference path: the same sums in the same order, one pixel at a time.
    fn portable_row(
        &self,
        src: &[&[f32]],
        kernel: &[f32],
        bias: &[f32],
        out_w: usize,
        relu: bool,
        dst: &mut [f32],
    ) {
        let (kw, c) = (self.kw, self.c);
        for p in 0..out_w {
            let mut acc = [0f32; OC_BLOCK];
            for (i, row) in src.iter().enumerate() {
                for j in 0..kw {
                    let x = &row[(p + j) * c..][..c];
                    let k = &kernel[(i * kw + j) * c * OC_BLOCK..][..c * OC_BLOCK];
                    for (xv, kv) in x.iter().zip(k.chunks_exact(OC_BLOCK)) {
                        for (a, w) in acc.iter_mut().zip(kv) {
                            *a += xv * w;
                        }
                    }
                }
            }
            let out = &mut dst[p * self.o..][..OC_BLOCK];
            for ((d, a), b) in out.iter_mut().zip(acc).zip(bias) {
                let v = a + b;
                *d = if relu { v.max(0.0) } else { v };
            }
        }
    }
}

/// Tallest kernel the AVX2 path takes (row pointers live on the stack).
const MAX_ROWS: usize = 8;

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{OC_BLOCK, TILE};
    use std::arch::x86_64::*;

    /// One output row for one 16-channel block.
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; each `rows[i]` points at `(out_w + kw - 1) × c` readable
    /// values; `kernel` at `rows.len() × kw × c × 16`; `bias` at 16; `dst` at
    /// `(out_w - 1) × dst_stride + 16` writable values.
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn row(
        rows: &[*const f32],
        c: usize,
        kw: usize,
        kernel: *const f32,
        bias: *const f32,
        out_w: usize,
        relu: bool,
        dst: *mut f32,
        dst_stride: usize,
    ) {
        let t = Tile {
            rows,
            c,
            kw,
            kernel,
            bias,
            relu,
            dst,
            dst_stride,
        };
        let mut p = 0;
        while p + TILE <= out_w {
            t.run::<TILE>(p);
            p += TILE;
        }
        match out_w - p {
            1 => t.run::<1>(p),
            2 => t.run::<2>(p),
            3 => t.run::<3>(p),
            4 => t.run::<4>(p),
            5 => t.run::<5>(p),
            _ => {}
        }
    }

    /// The arguments every tile of a row shares.
    struct Tile<'a> {
        rows: &'a [*const f32],
        c: usize,
        kw: usize,
        kernel: *const f32,
        bias: *const f32,
        relu: bool,
        dst: *mut f32,
        dst_stride: usize,
    }

    impl Tile<'_> {
        /// `P` output pixels starting at column `p0`, all 16 channels, in registers.
        #[target_feature(enable = "avx2,fma")]
        #[inline]
        unsafe fn run<const P: usize>(&self, p0: usize) {
            let (c, kw) = (self.c, self.kw);
            let mut lo = [_mm256_setzero_ps(); P];
            let mut hi = [_mm256_setzero_ps(); P];
            for (i, &row) in self.rows.iter().enumerate() {
                for j in 0..kw {
                    let x = row.add((p0 + j) * c);
                    let k = self.kernel.add((i * kw + j) * c * OC_BLOCK);
                    for ci in 0..c {
                        let k0 = _mm256_loadu_ps(k.add(ci * OC_BLOCK));
                        let k1 = _mm256_loadu_ps(k.add(ci * OC_BLOCK + 8));
                        for q in 0..P {
                            let a = _mm256_broadcast_ss(&*x.add(q * c + ci));
                            lo[q] = _mm256_fmadd_ps(a, k0, lo[q]);
                            hi[q] = _mm256_fmadd_ps(a, k1, hi[q]);
                        }
                    }
                }
            }
            let b0 = _mm256_loadu_ps(self.bias);
            let b1 = _mm256_loadu_ps(self.bias.add(8));
            let zero = _mm256_setzero_ps();
            for q in 0..P {
                let mut v0 = _mm256_add_ps(lo[q], b0);
                let mut v1 = _mm256_add_ps(hi[q], b1);
                if self.relu {
                    v0 = _mm256_max_ps(v0, zero);
                    v1 = _mm256_max_ps(v1, zero);
                }
                let out = self.dst.add((p0 + q) * self.dst_stride);
                _mm256_storeu_ps(out, v0);
                _mm256_storeu_ps(out.add(8), v1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Straightforward reference over a whole `[h, w, c]` image, row `r` of the output.
    fn reference_row(
        x: &[f32],
        (w, c): (usize, usize),
        k: &[f32],
        (kh, kw, o): (usize, usize, usize),
        bias: &[f32],
        r: usize,
        relu: bool,
    ) -> Vec<f32> {
        let ow = w - kw + 1;
        let mut out = vec![0f32; ow * o];
        for p in 0..ow {
            for oc in 0..o {
                let mut s = 0f64;
                for i in 0..kh {
                    for j in 0..kw {
                        for ci in 0..c {
                            s += x[((r + i) * w + p + j) * c + ci] as f64
                                * k[((i * kw + j) * c + ci) * o + oc] as f64;
                        }
                    }
                }
                let v = s as f32 + bias[oc];
                out[p * o + oc] = if relu { v.max(0.0) } else { v };
            }
        }
        out
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn check(isa: Isa, h: usize, w: usize, c: usize, o: usize, relu: bool) {
        let (kh, kw) = (3, 3);
        let mut s = 7 + (w * 31 + c) as u64;
        let x: Vec<f32> = (0..h * w * c).map(|_| lcg(&mut s) * 10.0).collect();
        let k: Vec<f32> = (0..kh * kw * c * o).map(|_| lcg(&mut s) * 0.3).collect();
        let b: Vec<f32> = (0..o).map(|_| lcg(&mut s)).collect();
        let kernel = ConvRowKernel::pack(&k, &b, (kh, kw, c, o), isa).unwrap();
        let ow = w - kw + 1;
        for r in 0..h - kh + 1 {
            let rows: Vec<&[f32]> = (0..kh).map(|i| &x[(r + i) * w * c..][..w * c]).collect();
            let mut got = vec![f32::NAN; ow * o];
            kernel.row(&rows, ow, relu, &mut got);
            let want = reference_row(&x, (w, c), &k, (kh, kw, o), &b, r, relu);
            for (i, (g, e)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                    "{isa:?} [{i}] {g} vs {e}"
                );
            }
        }
    }

    #[test]
    fn portable_path_matches_the_definition() {
        check(Isa::Portable, 5, 20, 1, 16, true);
        check(Isa::Portable, 4, 13, 16, 32, false);
    }

    #[test]
    fn detected_path_matches_the_definition_at_every_tile_remainder() {
        let isa = Isa::detect();
        // Output widths 1..=13 cover full tiles and every remainder of the six-pixel tile.
        for w in 3..=15 {
            check(isa, 4, w, 16, 16, w % 2 == 0);
        }
        check(isa, 5, 40, 1, 16, true);
        check(isa, 3, 23, 3, 48, false);
    }

    #[test]
    fn only_writes_its_own_pixels_and_channels() {
        let isa = Isa::detect();
        let (w, c, o) = (9, 2, 16);
        let x = vec![1f32; 3 * w * c];
        let kernel =
            ConvRowKernel::pack(&vec![1.0; 9 * c * o], &[0.5; 16], (3, 3, c, o), isa).unwrap();
        let rows: Vec<&[f32]> = (0..3).map(|i| &x[i * w * c..][..w * c]).collect();
        let mut dst = vec![-7f32; 7 * o + 5];
        kernel.row(&rows, 7, false, &mut dst);
        assert!(dst[..7 * o].iter().all(|&v| v == 18.5), "{dst:?}");
        assert!(dst[7 * o..].iter().all(|&v| v == -7.0));
    }

    #[test]
    fn misshapen_weights_are_refused() {
        assert!(matches!(
            ConvRowKernel::pack(&[0.0; 10], &[0.0; 16], (3, 3, 1, 16), Isa::Portable),
            Err(PackError::Shape { .. })
        ));
        assert!(matches!(
            ConvRowKernel::pack(&[0.0; 72], &[0.0; 8], (3, 3, 1, 8), Isa::Portable),
            Err(PackError::Channels(8))
        ));
    }
}
