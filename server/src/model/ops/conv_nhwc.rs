//! Valid (unpadded), stride-1 2-D convolution in channels-last layout with fused bias and ReLU.
//!
//! Layouts are Keras's, so imported weights are used as stored: input `[B, H, W, C]`, kernel
//! `[KH, KW, C, O]`, bias `[O]`, output `[B, H-KH+1, W-KW+1, O]`.
//!
//! For one output row `oh` and kernel row `i`, the needed inputs `x[b, oh+i, ow+j, c]` over
//! `(ow, (j, c))` form a matrix whose rows are `KW·C` contiguous floats starting every `C` floats:
//! an overlapping strided view of the input row. Multiplying that view by kernel row `i`
//! (`[KW·C, O]`) and summing over `i` gives the output row, so the convolution is `KH` GEMMs per
//! row with no im2col buffer.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;

/// The custom op; `relu` fuses the activation into the output pass.
#[derive(Debug, Clone, Copy)]
pub struct Conv2dNhwc {
    /// Apply `max(0, ·)` after adding the bias.
    pub relu: bool,
}

/// Convenience wrapper: `conv2d_nhwc(x, kernel, bias, relu)`.
pub fn conv2d_nhwc(
    x: &Tensor,
    kernel: &Tensor,
    bias: &Tensor,
    relu: bool,
) -> candle_core::Result<Tensor> {
    x.apply_op3_no_bwd(kernel, bias, &Conv2dNhwc { relu })
}

impl CustomOp3 for Conv2dNhwc {
    fn name(&self) -> &'static str {
        "conv2d-nhwc"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ks: &CpuStorage,
        kl: &Layout,
        bs: &CpuStorage,
        bl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let name = self.name();
        let x = contiguous_f32(name, "input", xs, xl)?;
        let k = contiguous_f32(name, "kernel", ks, kl)?;
        let bias = contiguous_f32(name, "bias", bs, bl)?;
        let (b, h, w, c) = xl.shape().dims4()?;
        let (kh, kw, kc, o) = kl.shape().dims4()?;
        if kc != c || bias.len() != o {
            candle_core::bail!(
                "{name}: input has {c} channels, kernel expects {kc} → {o}, bias has {}",
                bias.len()
            );
        }
        if kh > h || kw > w || kh == 0 || kw == 0 {
            candle_core::bail!("{name}: kernel {kh}×{kw} larger than input {h}×{w}");
        }
        let (oh, ow) = (h - kh + 1, w - kw + 1);
        let mut out = vec![0f32; b * oh * ow * o];
        let row_in = w * c;
        let relu = self.relu;
        out.par_chunks_mut(ow * o)
            .enumerate()
            .for_each(|(row, dst)| {
                let (bi, r) = (row / oh, row % oh);
                for px in dst.chunks_exact_mut(o) {
                    px.copy_from_slice(bias);
                }
                for i in 0..kh {
                    let src = &x[(bi * h + r + i) * row_in..(bi * h + r + i + 1) * row_in];
                    let krow = &k[i * kw * c * o..(i + 1) * kw * c * o];
                    // SAFETY: the lhs view reads rows ow' ∈ [0, ow) of kw·c floats starting at
                    // ow'·c, whose last element (ow-1)·c + kw·c - 1 = w·c - 1 is inside `src`;
                    // rhs is `krow` as [kw·c, o] row-major; dst is [ow, o] row-major. No aliasing.
                    unsafe {
                        gemm::gemm(
                            ow,
                            o,
                            kw * c,
                            dst.as_mut_ptr(),
                            1,
                            o as isize,
                            true,
                            src.as_ptr(),
                            1,
                            c as isize,
                            krow.as_ptr(),
                            1,
                            o as isize,
                            1.0f32,
                            1.0f32,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
                if relu {
                    for v in dst.iter_mut() {
                        *v = v.max(0.0);
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, oh, ow, o))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, IndexOp};

    /// Reference: candle's own conv2d in NCHW/OIHW, converted back to NHWC.
    fn reference(x: &Tensor, k: &Tensor, b: &Tensor, relu: bool) -> Tensor {
        let xn = x.permute((0, 3, 1, 2)).unwrap().contiguous().unwrap();
        let kn = k.permute((3, 2, 0, 1)).unwrap().contiguous().unwrap();
        let y = xn.conv2d(&kn, 0, 1, 1, 1).unwrap();
        let o = b.dims1().unwrap();
        let y = y.broadcast_add(&b.reshape((1, o, 1, 1)).unwrap()).unwrap();
        let y = if relu { y.relu().unwrap() } else { y };
        y.permute((0, 2, 3, 1)).unwrap().contiguous().unwrap()
    }

    fn check(b: usize, h: usize, w: usize, c: usize, o: usize, relu: bool) {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (b, h, w, c), &dev).unwrap();
        let k = Tensor::randn(0f32, 0.3, (3, 3, c, o), &dev).unwrap();
        let bias = Tensor::randn(0f32, 0.1, o, &dev).unwrap();
        let got = conv2d_nhwc(&x, &k, &bias, relu).unwrap();
        let want = reference(&x, &k, &bias, relu);
        assert_eq!(got.dims(), want.dims());
        let diff = (got - want)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff < 1e-4, "max diff {diff}");
    }

    #[test]
    fn equals_candle_conv2d_single_channel() {
        check(2, 20, 31, 1, 16, true);
    }

    #[test]
    fn equals_candle_conv2d_multi_channel_no_relu() {
        check(3, 17, 29, 16, 16, false);
    }

    #[test]
    fn equals_candle_conv2d_at_seed_size() {
        check(1, 126, 467, 16, 16, true);
    }

    #[test]
    fn rejects_mismatched_channels() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 5, 5, 2), DType::F32, &dev).unwrap();
        let k = Tensor::zeros((3, 3, 3, 4), DType::F32, &dev).unwrap();
        let b = Tensor::zeros(4, DType::F32, &dev).unwrap();
        assert!(conv2d_nhwc(&x, &k, &b, true).is_err());
    }

    #[test]
    fn non_contiguous_input_is_refused_not_misread() {
        let dev = Device::Cpu;
        let x = Tensor::zeros((1, 6, 5, 1), DType::F32, &dev)
            .unwrap()
            .transpose(1, 2)
            .unwrap();
        let k = Tensor::zeros((3, 3, 1, 1), DType::F32, &dev).unwrap();
        let b = Tensor::zeros(1, DType::F32, &dev).unwrap();
        assert!(conv2d_nhwc(&x.i(..).unwrap(), &k, &b, false).is_err());
    }
}
