//! The seed CNN's convolutional trunk as one pass: Conv 3×3 (1 → 16) + ReLU → Conv 3×3
//! (16 → 16) + ReLU → MaxPool 2×2, from `[B, H, W]` log-mels to `[B, (H-4)/2, (W-4)/2, 16]`.
//!
//! Run layer by layer, a 15 s window writes and re-reads two 3.7 MB activation maps, which costs
//! about as much as the arithmetic of the first convolution and a large part of the second on a
//! memory bus shared by two cores. Fused, each task walks a band of pooled rows: the four
//! first-layer rows a pooled row needs are kept in a small ring (≈ 120 kB, cache-resident), the
//! two second-layer rows it pools live in a scratch pair, and only the pooled map — a quarter of
//! the second layer's output — reaches memory. Adjacent bands recompute two first-layer rows,
//! under 1 % of the work.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;
use super::conv_row::{ConvRowKernel, Isa, PackError};

/// Pooled rows one task produces: small enough that a 15 s window splits into eight tasks for
/// two threads at batch 1, large enough that the recomputed band edges stay under 1 %.
const BAND: usize = 8;

/// The fused trunk with its packed weights.
#[derive(Debug, Clone)]
pub struct SeedTrunk {
    conv1: ConvRowKernel,
    conv2: ConvRowKernel,
}

impl SeedTrunk {
    /// Packs Keras-layout weights: `k1` `[3, 3, 1, 16]`, `k2` `[3, 3, 16, 16]`.
    pub fn new(
        k1: &[f32],
        b1: &[f32],
        k2: &[f32],
        b2: &[f32],
        channels: usize,
        isa: Isa,
    ) -> Result<Self, PackError> {
        Ok(Self {
            conv1: ConvRowKernel::pack(k1, b1, (3, 3, 1, channels), isa)?,
            conv2: ConvRowKernel::pack(k2, b2, (3, 3, channels, channels), isa)?,
        })
    }

    /// Applies the trunk to `[B, H, W]`.
    pub fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.apply_op1_no_bwd(self)
    }

    /// Pools one band: pooled rows `first..first + dst.len() / (pw·c)` of window `x` (`h × w`).
    fn band(&self, x: &[f32], w: usize, first: usize, pw: usize, dst: &mut [f32], s: &mut Scratch) {
        let c = self.conv2.out_channels();
        let w2 = 2 * pw; // second-layer columns the pool reads
        let w1 = self.conv2.input_width(w2); // first-layer columns those need
        s.size(w1 * c, w2 * c);
        let conv1_row = |r: usize, ring: &mut [f32]| {
            let rows = [
                &x[r * w..][..w],
                &x[(r + 1) * w..][..w],
                &x[(r + 2) * w..][..w],
            ];
            let slot = &mut ring[(r % RING) * w1 * c..][..w1 * c];
            self.conv1.row(&rows, w1, true, slot);
        };
        // First-layer rows 2·first .. 2·first + 2 prime the ring; each pooled row adds two.
        for r in 2 * first..2 * first + 2 {
            conv1_row(r, &mut s.ring);
        }
        for (k, out) in dst.chunks_exact_mut(pw * c).enumerate() {
            let top = 2 * (first + k);
            conv1_row(top + 2, &mut s.ring);
            conv1_row(top + 3, &mut s.ring);
            let ring = &s.ring;
            let at = |r: usize| &ring[(r % RING) * w1 * c..][..w1 * c];
            let (upper, lower) = s.pair.split_at_mut(w2 * c);
            self.conv2
                .row(&[at(top), at(top + 1), at(top + 2)], w2, true, upper);
            self.conv2
                .row(&[at(top + 1), at(top + 2), at(top + 3)], w2, true, lower);
            for (q, px) in out.chunks_exact_mut(c).enumerate() {
                let cols = 2 * q * c;
                let (a, b) = (&upper[cols..][..2 * c], &lower[cols..][..2 * c]);
                for (ch, o) in px.iter_mut().enumerate() {
                    *o = a[ch].max(a[c + ch]).max(b[ch]).max(b[c + ch]);
                }
            }
        }
    }
}

/// First-layer rows kept per band: the four one pooled row reads.
const RING: usize = 4;

/// Per-task buffers, reused across the bands one rayon job runs.
#[derive(Default)]
struct Scratch {
    ring: Vec<f32>,
    pair: Vec<f32>,
}

impl Scratch {
    fn size(&mut self, row1: usize, row2: usize) {
        self.ring.resize(RING * row1, 0.0);
        self.pair.resize(2 * row2, 0.0);
    }
}

impl CustomOp1 for SeedTrunk {
    fn name(&self) -> &'static str {
        "seed-trunk"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), "input", s, l)?;
        let (b, h, w) = l.shape().dims3()?;
        if h < 6 || w < 6 {
            candle_core::bail!("{}: input {h}×{w} is smaller than 6×6", self.name());
        }
        let c = self.conv2.out_channels();
        let (ph, pw) = ((h - 4) / 2, (w - 4) / 2);
        let mut out = vec![0f32; b * ph * pw * c];
        out.par_chunks_mut(ph * pw * c)
            .zip(x.par_chunks(h * w))
            .for_each(|(window_out, window)| {
                window_out
                    .par_chunks_mut(BAND * pw * c)
                    .enumerate()
                    .for_each_init(Scratch::default, |scratch, (band, dst)| {
                        self.band(window, w, band * BAND, pw, dst, scratch)
                    });
            });
        Ok((CpuStorage::F32(out), Shape::from((b, ph, pw, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::{conv2d_nhwc, max_pool2d_nhwc};
    use candle_core::{Device, D};

    /// The layer-by-layer kernels the fused pass replaces.
    fn layered(x: &Tensor, k1: &Tensor, b1: &Tensor, k2: &Tensor, b2: &Tensor) -> Tensor {
        let y = conv2d_nhwc(&x.unsqueeze(D::Minus1).unwrap(), k1, b1, true).unwrap();
        let y = conv2d_nhwc(&y, k2, b2, true).unwrap();
        max_pool2d_nhwc(&y, 2, 2).unwrap()
    }

    fn check(isa: Isa, b: usize, h: usize, w: usize) {
        let dev = Device::Cpu;
        let x = Tensor::randn(-40f32, 20.0, (b, h, w), &dev).unwrap();
        let k1 = Tensor::randn(0f32, 0.3, (3, 3, 1, 16), &dev).unwrap();
        let b1 = Tensor::randn(0f32, 0.1, 16, &dev).unwrap();
        let k2 = Tensor::randn(0f32, 0.3, (3, 3, 16, 16), &dev).unwrap();
        let b2 = Tensor::randn(0f32, 0.1, 16, &dev).unwrap();
        let v = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let trunk = SeedTrunk::new(&v(&k1), &v(&b1), &v(&k2), &v(&b2), 16, isa).unwrap();
        let got = trunk.forward(&x).unwrap();
        let want = layered(&x, &k1, &b1, &k2, &b2);
        assert_eq!(got.dims(), want.dims());
        for (g, e) in v(&got).iter().zip(v(&want)) {
            assert!(
                (g - e).abs() <= 1e-4 * (1.0 + e.abs()),
                "{isa:?} {g} vs {e}"
            );
        }
    }

    #[test]
    fn equals_the_layered_kernels_on_odd_sizes_and_partial_bands() {
        // 45 rows → 20 pooled rows: two full bands and a partial one; odd widths drop a column.
        check(Isa::detect(), 2, 45, 31);
        check(Isa::Portable, 1, 23, 12);
    }

    #[test]
    fn equals_the_layered_kernels_at_the_seed_size() {
        check(Isa::detect(), 1, 128, 469);
    }

    #[test]
    fn too_small_an_input_is_an_error() {
        let z = vec![0f32; 144];
        let trunk = SeedTrunk::new(
            &z[..144],
            &z[..16],
            &vec![0.0; 2304],
            &z[..16],
            16,
            Isa::Portable,
        )
        .unwrap();
        let x = Tensor::zeros((1, 5, 40), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(trunk.forward(&x).is_err());
    }
}
