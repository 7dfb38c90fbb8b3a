//! A small, fast detector: 1-D convolutions over time with the mel bands as channels.
//!
//! ```text
//! [B,M,T] ─ per-band standardise (input.mean/std, fitted on the training set) ─ transpose [B,T,M]
//!         ─ Conv1D 64 k5 ReLU ─ MaxPool 2 ─ Conv1D 64 k5 ReLU ─ MaxPool 2 ─ Conv1D 64 k3 ReLU
//!         ─ global mean ‖ global max over time [B,128] ─ Dense 32 ReLU ─ Dense 1 (sigmoid)
//! ```
//!
//! Why this shape: what gives synthetic speech away is mostly spectral (vocoder smearing,
//! missing band energy, too-regular harmonics), which a convolution across all bands at once
//! sees in its first layer; global pooling makes the network indifferent to clip length and
//! keeps the dense part tiny (≈ 80 k parameters, 0.3 MB, against the seed CNN's millions).
//! Convolutions are written as "shifted slices side by side, then one matrix product", which
//! is one GEMM per layer on any device and differentiates cheaply, so the same code trains.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, D};

use super::{take_params, Architecture, Classifier, Init, LogitsNet, ParamSpec};
use crate::error::{Error, Result};

/// Registry entry for the compact architecture.
pub struct CompactCnn;

const CH: usize = 64;
const DENSE: usize = 32;
/// (kernel width, output channels) of each convolution; the first two are followed by pooling.
const CONVS: [(usize, usize); 3] = [(5, CH), (5, CH), (3, CH)];

/// Shortest input (frames) the network accepts: every layer must keep at least one frame.
pub fn min_frames() -> usize {
    // Walk backwards from one output frame.
    let mut t = 1;
    for (i, (k, _)) in CONVS.iter().enumerate().rev() {
        if i < 2 {
            t *= 2;
        }
        t += k - 1;
    }
    t
}

impl Architecture for CompactCnn {
    fn name(&self) -> &'static str {
        "compact-cnn"
    }

    fn version(&self) -> u32 {
        1
    }

    fn flops_per_window(&self, n_mels: usize, frames: usize) -> Option<f64> {
        // Standardisation, then each convolution's GEMM over its output frames.
        let mut flops = 2.0 * (n_mels * frames) as f64;
        let (mut t, mut c_in) = (frames, n_mels);
        for (i, (k, c_out)) in CONVS.iter().enumerate() {
            t = t.checked_sub(k - 1).filter(|t| *t > 0)?;
            flops += 2.0 * (t * k * c_in * c_out) as f64;
            if i < 2 {
                t /= 2;
            }
            c_in = *c_out;
        }
        Some(flops + 2.0 * (2 * c_in * DENSE + DENSE) as f64)
    }

    fn description(&self) -> &'static str {
        "compact CNN: per-band standardisation → 3×Conv1D(64) over time → global mean‖max → Dense 32 → 1 (sigmoid)"
    }

    fn params(&self, n_mels: usize, frames: usize) -> Result<Vec<ParamSpec>> {
        if frames < min_frames() || n_mels == 0 {
            return Err(Error::InvalidArgument(format!(
                "compact-cnn needs at least {} frames and one mel band, got {n_mels}×{frames}",
                min_frames()
            )));
        }
        let p = |name: &str, shape: &[usize]| ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
        };
        let mut specs = vec![p("input.mean", &[n_mels]), p("input.std", &[n_mels])];
        let mut c_in = n_mels;
        for (i, (k, c_out)) in CONVS.iter().enumerate() {
            specs.push(p(&format!("conv{}.kernel", i + 1), &[k * c_in, *c_out]));
            specs.push(p(&format!("conv{}.bias", i + 1), &[*c_out]));
            c_in = *c_out;
        }
        specs.push(p("dense1.kernel", &[2 * c_in, DENSE]));
        specs.push(p("dense1.bias", &[DENSE]));
        specs.push(p("dense2.kernel", &[DENSE, 1]));
        specs.push(p("dense2.bias", &[1]));
        Ok(specs)
    }

    fn init(&self, spec: &ParamSpec) -> Init {
        match spec.name.as_str() {
            "input.mean" => Init::Statistic,
            "input.std" => Init::Statistic,
            _ => Init::default_for(spec),
        }
    }

    fn logits(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        let [mean, std, rest @ ..] = params else {
            return Err(Error::InvalidArgument(
                "compact-cnn: wrong parameter count".into(),
            ));
        };
        if rest.len() != 2 * CONVS.len() + 4 {
            return Err(Error::InvalidArgument(
                "compact-cnn: wrong parameter count".into(),
            ));
        }
        // [B, M, T] → standardised [B, T, M]: channels last, so each conv is one GEMM.
        let mut y = x
            .broadcast_sub(&mean.unsqueeze(1)?)?
            .broadcast_div(&std.unsqueeze(1)?)?
            .transpose(1, 2)?
            .contiguous()?;
        for (i, (k, _)) in CONVS.iter().enumerate() {
            y = conv1d_relu(&y, &rest[2 * i], &rest[2 * i + 1], *k)?;
            if i < 2 {
                y = max_pool_time(&y)?;
            }
        }
        let pooled = Tensor::cat(&[y.mean(1)?, y.max(1)?], D::Minus1)?;
        let d = 2 * CONVS.len();
        let h = pooled
            .matmul(&rest[d])?
            .broadcast_add(&rest[d + 1])?
            .relu()?;
        let z = h.matmul(&rest[d + 2])?.broadcast_add(&rest[d + 3])?;
        Ok(z.squeeze(1)?)
    }

    fn build(
        &self,
        weights: HashMap<String, Tensor>,
        n_mels: usize,
        frames: usize,
        _device: &Device,
    ) -> Result<Box<dyn Classifier>> {
        let specs = self.params(n_mels, frames)?;
        let params = take_params(weights, &specs, Path::new("model.safetensors"))?;
        Ok(Box::new(LogitsNet::new(
            &CompactCnn,
            params,
            n_mels,
            frames,
        )))
    }
}

/// Valid 1-D convolution over time of `[B, T, C]` with a `[k·C, O]` kernel, plus bias and ReLU.
fn conv1d_relu(x: &Tensor, kernel: &Tensor, bias: &Tensor, k: usize) -> Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    let out_t = t.checked_sub(k - 1).filter(|n| *n > 0).ok_or_else(|| {
        Error::InvalidArgument(format!("input too short for a width-{k} convolution"))
    })?;
    let shifted: Vec<Tensor> = (0..k)
        .map(|s| x.narrow(1, s, out_t))
        .collect::<candle_core::Result<_>>()?;
    let cols = Tensor::cat(&shifted, D::Minus1)?.reshape((b * out_t, k * c))?;
    let o = kernel.dim(1)?;
    Ok(cols
        .matmul(kernel)?
        .broadcast_add(bias)?
        .relu()?
        .reshape((b, out_t, o))?)
}

/// Max over pairs of neighbouring frames of `[B, T, C]` (a trailing odd frame is dropped).
fn max_pool_time(x: &Tensor) -> Result<Tensor> {
    let (b, t, c) = x.dims3()?;
    let half = t / 2;
    Ok(x.narrow(1, 0, half * 2)?.reshape((b, half, 2, c))?.max(2)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flops_follow_the_layers() {
        // 4 s at hop 512: 126 frames → conv 122 → pool 61 → conv 57 → pool 28 → conv 26.
        let want = 2.0 * (128.0 * 126.0)
            + 2.0 * (122.0 * 5.0 * 128.0 * 64.0)
            + 2.0 * (57.0 * 5.0 * 64.0 * 64.0)
            + 2.0 * (26.0 * 3.0 * 64.0 * 64.0)
            + 2.0 * (128.0 * 32.0 + 32.0);
        assert_eq!(CompactCnn.flops_per_window(128, 126), Some(want));
        assert_eq!(CompactCnn.flops_per_window(128, 3), None);
    }
    use crate::model::arch::random_weights;
    use candle_core::DType;

    #[test]
    fn min_frames_is_the_shortest_input_that_runs() {
        let n = min_frames();
        let w = random_weights(&CompactCnn, 8, n, 0.1, &Device::Cpu).unwrap();
        let net = CompactCnn.build(w, 8, n, &Device::Cpu).unwrap();
        let x = Tensor::zeros((3, 8, n), DType::F32, &Device::Cpu).unwrap();
        assert_eq!(net.forward(&x).unwrap().dims(), &[3]);
        assert!(CompactCnn.params(8, n - 1).is_err());
    }

    #[test]
    fn outputs_are_probabilities_and_per_example() {
        let (m, t) = (16, 40);
        let mut w = random_weights(&CompactCnn, m, t, 0.3, &Device::Cpu).unwrap();
        w.insert(
            "input.std".into(),
            Tensor::ones(m, DType::F32, &Device::Cpu).unwrap(),
        );
        let net = CompactCnn.build(w, m, t, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (4, m, t), &Device::Cpu).unwrap();
        let p: Vec<f32> = net.forward(&x).unwrap().to_vec1().unwrap();
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        // Each example's score depends only on that example.
        let single: Vec<f32> = net
            .forward(&x.narrow(0, 2, 1).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((single[0] - p[2]).abs() < 1e-5);
    }

    #[test]
    fn parameter_count_is_small() {
        let n: usize = CompactCnn
            .params(128, 126)
            .unwrap()
            .iter()
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        assert!(n < 100_000, "{n}");
    }
}
