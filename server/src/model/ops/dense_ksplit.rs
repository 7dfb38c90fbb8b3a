//! A matrix product for a long, thin weight matrix and a small batch: `[B, K] × [K, N]` with
//! `K` in the hundreds of thousands, `N` a few dozen and `B` a handful.
//!
//! The seed CNN's first dense layer is `230 144 × 32`: 29 MB of weights for 15 MFLOP per window.
//! At the batch sizes a server sees (1–8 windows) the product only streams those weights from
//! memory, and a GEMM parallelised over its output (32 columns, one row per window) leaves most of
//! the bus idle: candle's CPU matmul took 1.27 ms at batch 1, against 0.56 ms for a pass that
//! splits `K` across threads. This op splits `K` into fixed chunks, multiplies each chunk on its
//! own thread with a single-threaded GEMM (every weight is read once for the whole batch), and
//! sums the partial products **in chunk order**, so the result does not depend on how the work
//! was scheduled.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;

/// Rows of the weight matrix per task: 4096 × 32 floats = 512 kB, a cache-sized slice.
const K_CHUNK: usize = 4096;

/// The custom op; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct DenseKSplit;

/// `x [B, K] × w [K, N]` with the reduction dimension split across threads.
pub fn matmul_ksplit(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.apply_op2_no_bwd(w, &DenseKSplit)
}

impl CustomOp2 for DenseKSplit {
    fn name(&self) -> &'static str {
        "dense-ksplit"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let x = contiguous_f32(name, "input", xs, xl)?;
        let w = contiguous_f32(name, "weights", ws, wl)?;
        let (b, k) = xl.shape().dims2()?;
        let (kw, n) = wl.shape().dims2()?;
        if k != kw {
            candle_core::bail!("{name}: input has {k} features, weights expect {kw}");
        }
        if b == 0 || n == 0 || k == 0 {
            return Ok((CpuStorage::F32(vec![0f32; b * n]), Shape::from((b, n))));
        }
        let chunks = k.div_ceil(K_CHUNK);
        let mut partial = vec![0f32; chunks * b * n];
        partial
            .par_chunks_mut(b * n)
            .enumerate()
            .for_each(|(chunk, dst)| {
                let k0 = chunk * K_CHUNK;
                let kc = K_CHUNK.min(k - k0);
                // SAFETY: lhs reads x[r, k0..k0+kc] for r < b (row stride k), rhs reads
                // w[k0..k0+kc, 0..n] (row stride n), dst is this chunk's own [b, n] block;
                // all inside their slices, and the blocks do not overlap.
                unsafe {
                    gemm::gemm(
                        b,
                        n,
                        kc,
                        dst.as_mut_ptr(),
                        1,
                        n as isize,
                        false,
                        x.as_ptr().add(k0),
                        1,
                        k as isize,
                        w.as_ptr().add(k0 * n),
                        1,
                        n as isize,
                        0.0f32,
                        1.0f32,
                        false,
                        false,
                        false,
                        gemm::Parallelism::None,
                    );
                }
            });
        let mut out = vec![0f32; b * n];
        for block in partial.chunks_exact(b * n) {
            for (o, p) in out.iter_mut().zip(block) {
                *o += p;
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((b, n))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    fn max_rel_diff(a: &Tensor, b: &Tensor) -> f32 {
        let a = a.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = b.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a.len(), b.len());
        a.iter()
            .zip(&b)
            .map(|(p, q)| (p - q).abs() / (1.0 + q.abs()))
            .fold(0.0, f32::max)
    }

    #[test]
    fn equals_matmul_across_partial_chunks_and_batches() {
        let dev = Device::Cpu;
        for (b, k, n) in [(1, 3 * K_CHUNK + 17, 32), (5, 100, 7), (8, K_CHUNK, 16)] {
            let x = Tensor::randn(0f32, 1.0, (b, k), &dev).unwrap();
            let w = Tensor::randn(0f32, 0.1, (k, n), &dev).unwrap();
            let got = matmul_ksplit(&x, &w).unwrap();
            assert_eq!(got.dims(), &[b, n]);
            let d = max_rel_diff(&got, &x.matmul(&w).unwrap());
            assert!(d < 1e-4, "b={b} k={k} n={n}: {d}");
        }
    }

    #[test]
    fn the_same_input_gives_bit_identical_output() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (3, 5 * K_CHUNK), &dev).unwrap();
        let w = Tensor::randn(0f32, 0.1, (5 * K_CHUNK, 32), &dev).unwrap();
        let first = matmul_ksplit(&x, &w).unwrap().to_vec2::<f32>().unwrap();
        for _ in 0..5 {
            assert_eq!(
                matmul_ksplit(&x, &w).unwrap().to_vec2::<f32>().unwrap(),
                first
            );
        }
    }

    #[test]
    fn mismatched_inner_dimensions_are_an_error() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((2, 10), candle_core::DType::F32, &dev).unwrap();
        let w = Tensor::zeros((11, 3), candle_core::DType::F32, &dev).unwrap();
        assert!(matmul_ksplit(&x, &w).is_err());
    }
}
