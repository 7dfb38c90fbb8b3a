//! 2-D max pooling (valid, stride = pool size) in channels-last layout, as Keras's
//! `MaxPooling2D` does by default: trailing rows/columns that do not fill a pool are dropped.

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::contiguous_f32;

/// The custom op: pools `[B, H, W, C]` to `[B, H/ph, W/pw, C]`.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool2dNhwc {
    /// Pool height.
    pub ph: usize,
    /// Pool width.
    pub pw: usize,
}

/// Convenience wrapper: `max_pool2d_nhwc(x, 2, 2)`.
pub fn max_pool2d_nhwc(x: &Tensor, ph: usize, pw: usize) -> candle_core::Result<Tensor> {
    x.apply_op1_no_bwd(&MaxPool2dNhwc { ph, pw })
}

impl CustomOp1 for MaxPool2dNhwc {
    fn name(&self) -> &'static str {
        "max-pool2d-nhwc"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(self.name(), "input", s, l)?;
        let (b, h, w, c) = l.shape().dims4()?;
        let (ph, pw) = (self.ph, self.pw);
        if ph == 0 || pw == 0 || ph > h || pw > w {
            candle_core::bail!("{}: pool {ph}×{pw} does not fit {h}×{w}", self.name());
        }
        let (oh, ow) = (h / ph, w / pw);
        let mut out = vec![f32::NEG_INFINITY; b * oh * ow * c];
        out.par_chunks_mut(ow * c)
            .enumerate()
            .for_each(|(row, dst)| {
                let (bi, r) = (row / oh, row % oh);
                for i in 0..ph {
                    let src = &x[((bi * h) + r * ph + i) * w * c..][..w * c];
                    for (q, px) in dst.chunks_exact_mut(c).enumerate() {
                        for j in 0..pw {
                            let inp = &src[(q * pw + j) * c..][..c];
                            for (d, v) in px.iter_mut().zip(inp) {
                                *d = d.max(*v);
                            }
                        }
                    }
                }
            });
        Ok((CpuStorage::F32(out), Shape::from((b, oh, ow, c))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn equals_candle_max_pool_and_drops_odd_edges() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 9, 11, 3), &dev).unwrap();
        let got = max_pool2d_nhwc(&x, 2, 2).unwrap();
        let want = x
            .permute((0, 3, 1, 2))
            .unwrap()
            .contiguous()
            .unwrap()
            .max_pool2d(2)
            .unwrap()
            .permute((0, 2, 3, 1))
            .unwrap()
            .contiguous()
            .unwrap();
        assert_eq!(got.dims(), &[2, 4, 5, 3]);
        let a = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(a, b);
    }
}
