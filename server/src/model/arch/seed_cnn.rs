//! The original service's CNN, layer for layer, so its Keras weights load unchanged:
//!
//! ```text
//! [B,128,469,1] ─ Conv2D 16 3×3 valid ReLU ─ Conv2D 16 3×3 valid ReLU ─ MaxPool 2×2
//!              ─ Flatten (channels-last, Keras order) ─ Dense 32 ReLU ─ Dense 16 ReLU ─ Dense 1 sigmoid
//! ```
//!
//! Parameters keep Keras layouts (conv kernels `[KH, KW, C, O]`, dense kernels `[in, out]`). On
//! the CPU the convolutions run through this crate's kernels ([`crate::model::ops`]): the fused
//! trunk where the CPU has AVX2+FMA, the layer-by-layer channels-last kernels elsewhere; on CUDA
//! through candle's `conv2d`, after moving channels first.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, D};

use super::{take_params, Architecture, Classifier, ParamSpec};
use crate::error::{Error, Result};
use crate::model::ops::{conv2d_nhwc, matmul_ksplit, max_pool2d_nhwc, Isa, SeedTrunk};

/// Registry entry for the seed architecture.
pub struct SeedCnn;

const CONV_CH: usize = 16;
const DENSE1: usize = 32;
const DENSE2: usize = 16;

/// Size of the flattened feature vector for an `n_mels × frames` input.
pub fn flat_len(n_mels: usize, frames: usize) -> Option<usize> {
    let (h, w) = (n_mels.checked_sub(4)?, frames.checked_sub(4)?);
    let n = (h / 2) * (w / 2) * CONV_CH;
    (n > 0).then_some(n)
}

impl Architecture for SeedCnn {
    fn name(&self) -> &'static str {
        "seed-cnn"
    }

    fn version(&self) -> u32 {
        1
    }

    fn flops_per_window(&self, n_mels: usize, frames: usize) -> Option<f64> {
        let flat = flat_len(n_mels, frames)? as f64;
        let (h, w) = (n_mels as f64, frames as f64);
        let conv1 = 2.0 * (h - 2.0) * (w - 2.0) * 9.0 * CONV_CH as f64;
        let conv2 = 2.0 * (h - 4.0) * (w - 4.0) * 9.0 * (CONV_CH * CONV_CH) as f64;
        let dense = 2.0 * (flat * DENSE1 as f64 + (DENSE1 * DENSE2) as f64 + DENSE2 as f64);
        Some(conv1 + conv2 + dense)
    }

    fn description(&self) -> &'static str {
        "original AuralGuard CNN: 2×Conv2D(16, 3×3) → MaxPool 2×2 → Dense 32 → 16 → 1 (sigmoid)"
    }

    fn params(&self, n_mels: usize, frames: usize) -> Result<Vec<ParamSpec>> {
        let flat = flat_len(n_mels, frames).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "seed-cnn needs an input of at least 6×6, got {n_mels}×{frames}"
            ))
        })?;
        let p = |name: &str, shape: &[usize]| ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
        };
        Ok(vec![
            p("conv1.kernel", &[3, 3, 1, CONV_CH]),
            p("conv1.bias", &[CONV_CH]),
            p("conv2.kernel", &[3, 3, CONV_CH, CONV_CH]),
            p("conv2.bias", &[CONV_CH]),
            p("dense1.kernel", &[flat, DENSE1]),
            p("dense1.bias", &[DENSE1]),
            p("dense2.kernel", &[DENSE1, DENSE2]),
            p("dense2.bias", &[DENSE2]),
            p("dense3.kernel", &[DENSE2, 1]),
            p("dense3.bias", &[1]),
        ])
    }

    fn logits(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        let [c1k, c1b, c2k, c2b, d1k, d1b, d2k, d2b, d3k, d3b] = params else {
            return Err(Error::InvalidArgument(
                "seed-cnn: wrong parameter count".into(),
            ));
        };
        // Keras layouts in, candle's NCHW convolution inside; every step differentiates.
        let b = x.dim(0)?;
        let oihw = |k: &Tensor| k.permute((3, 2, 0, 1));
        let y = x.unsqueeze(1)?;
        let y = y
            .conv2d(&oihw(c1k)?.contiguous()?, 0, 1, 1, 1)?
            .broadcast_add(&c1b.reshape((1, CONV_CH, 1, 1))?)?
            .relu()?;
        let y = y
            .conv2d(&oihw(c2k)?.contiguous()?, 0, 1, 1, 1)?
            .broadcast_add(&c2b.reshape((1, CONV_CH, 1, 1))?)?
            .relu()?;
        let flat = y
            .max_pool2d(2)?
            .permute((0, 2, 3, 1))?
            .contiguous()?
            .reshape((b, ()))?;
        let h = flat.matmul(d1k)?.broadcast_add(d1b)?.relu()?;
        let h = h.matmul(d2k)?.broadcast_add(d2b)?.relu()?;
        Ok(h.matmul(d3k)?.broadcast_add(d3b)?.squeeze(1)?)
    }

    fn build(
        &self,
        weights: HashMap<String, Tensor>,
        n_mels: usize,
        frames: usize,
        device: &Device,
    ) -> Result<Box<dyn Classifier>> {
        let path = match (device.is_cpu(), Isa::detect()) {
            (true, Isa::Avx2Fma) => ConvPath::FusedTrunk,
            (true, Isa::Portable) => ConvPath::ChannelsLast,
            (false, _) => ConvPath::CandleConv2d,
        };
        build_with(weights, n_mels, frames, path)
    }
}

/// Which convolution implementation a network uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConvPath {
    /// The fused trunk ([`SeedTrunk`]): both convolutions and the pool in one cache-resident pass
    /// (CPU only; the default where the CPU has AVX2+FMA).
    FusedTrunk,
    /// This crate's layer-by-layer channels-last CPU kernels (CPU only; the default elsewhere,
    /// and the baseline the fused pass is benchmarked against).
    ChannelsLast,
    /// candle's `conv2d` in NCHW (any device; the CUDA path, and the CPU baseline in benchmarks).
    CandleConv2d,
}

/// Builds the seed network with an explicit convolution path (benchmarks and equality tests).
pub fn build_with(
    weights: HashMap<String, Tensor>,
    n_mels: usize,
    frames: usize,
    path: ConvPath,
) -> Result<Box<dyn Classifier>> {
    let specs = SeedCnn.params(n_mels, frames)?;
    let t = take_params(weights, &specs, Path::new("model.safetensors"))?;
    let [c1k, c1b, c2k, c2b, d1k, d1b, d2k, d2b, d3k, d3b]: [Tensor; 10] = t
        .try_into()
        .map_err(|_| Error::InvalidArgument("seed-cnn: wrong parameter count".into()))?;
    let parameter_count = specs
        .iter()
        .map(|s| s.shape.iter().product::<usize>())
        .sum();
    let conv = match path {
        ConvPath::FusedTrunk => {
            let v = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1::<f32>()?) };
            let trunk = SeedTrunk::new(
                &v(&c1k)?,
                &v(&c1b)?,
                &v(&c2k)?,
                &v(&c2b)?,
                CONV_CH,
                Isa::detect(),
            )
            .map_err(|e| Error::InvalidArgument(format!("seed-cnn: {e}")))?;
            ConvWeights::Fused(trunk)
        }
        ConvPath::ChannelsLast => ConvWeights::ChannelsLast {
            k1: c1k,
            b1: c1b,
            k2: c2k,
            b2: c2b,
        },
        // candle's conv2d wants OIHW kernels and NCHW input.
        ConvPath::CandleConv2d => ConvWeights::ChannelsFirst {
            k1: c1k.permute((3, 2, 0, 1))?.contiguous()?,
            b1: c1b.reshape((1, CONV_CH, 1, 1))?,
            k2: c2k.permute((3, 2, 0, 1))?.contiguous()?,
            b2: c2b.reshape((1, CONV_CH, 1, 1))?,
        },
    };
    Ok(Box::new(SeedCnnNet {
        conv,
        dense: [(d1k, d1b), (d2k, d2b), (d3k, d3b)],
        n_mels,
        frames,
        parameter_count,
    }))
}

enum ConvWeights {
    Fused(SeedTrunk),
    ChannelsLast {
        k1: Tensor,
        b1: Tensor,
        k2: Tensor,
        b2: Tensor,
    },
    ChannelsFirst {
        k1: Tensor,
        b1: Tensor,
        k2: Tensor,
        b2: Tensor,
    },
}

struct SeedCnnNet {
    conv: ConvWeights,
    dense: [(Tensor, Tensor); 3],
    n_mels: usize,
    frames: usize,
    parameter_count: usize,
}

impl SeedCnnNet {
    /// Convolutional trunk: `[B, H, W]` → pooled features flattened in Keras (channels-last) order.
    fn trunk(&self, x: &Tensor) -> Result<Tensor> {
        let b = x.dim(0)?;
        let pooled = match &self.conv {
            ConvWeights::Fused(trunk) => trunk.forward(&x.contiguous()?)?,
            ConvWeights::ChannelsLast { k1, b1, k2, b2 } => {
                let x = x.unsqueeze(D::Minus1)?.contiguous()?;
                let y = conv2d_nhwc(&x, k1, b1, true)?;
                let y = conv2d_nhwc(&y, k2, b2, true)?;
                max_pool2d_nhwc(&y, 2, 2)?
            }
            ConvWeights::ChannelsFirst { k1, b1, k2, b2 } => {
                let x = x.unsqueeze(1)?;
                let y = x.conv2d(k1, 0, 1, 1, 1)?.broadcast_add(b1)?.relu()?;
                let y = y.conv2d(k2, 0, 1, 1, 1)?.broadcast_add(b2)?.relu()?;
                y.max_pool2d(2)?.permute((0, 2, 3, 1))?.contiguous()?
            }
        };
        Ok(pooled.reshape((b, ()))?)
    }
}

impl Classifier for SeedCnnNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, h, w) = x.dims3()?;
        if (h, w) != (self.n_mels, self.frames) {
            return Err(Error::InvalidArgument(format!(
                "seed-cnn expects inputs of {}×{}, got {h}×{w}",
                self.n_mels, self.frames
            )));
        }
        let mut y = self.trunk(x)?;
        for (i, (k, b)) in self.dense.iter().enumerate() {
            y = if i == 0 && !matches!(self.conv, ConvWeights::ChannelsFirst { .. }) {
                matmul_ksplit(&y, k)?
            } else {
                y.matmul(k)?
            };
            y = y.broadcast_add(b)?;
            y = if i < 2 {
                y.relu()?
            } else {
                candle_nn::ops::sigmoid(&y)?
            };
        }
        Ok(y.squeeze(1)?)
    }

    fn parameter_count(&self) -> usize {
        self.parameter_count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_costs_about_three_tenths_of_a_gflop() {
        // conv1 16.9 M + conv2 265.7 M + dense 14.7 M multiply-adds ×2, for 128 × 469.
        let f = SeedCnn.flops_per_window(128, 469).unwrap();
        assert!((f / 1e9 - 0.2974).abs() < 0.001, "{f}");
        assert_eq!(SeedCnn.flops_per_window(4, 469), None);
    }
    use candle_core::DType;

    fn random_weights(n_mels: usize, frames: usize) -> HashMap<String, Tensor> {
        super::super::random_weights(&SeedCnn, n_mels, frames, 0.1, &Device::Cpu).unwrap()
    }

    #[test]
    fn seed_flat_length_matches_keras() {
        assert_eq!(flat_len(128, 469), Some(230_144));
        assert_eq!(flat_len(3, 469), None);
    }

    #[test]
    fn cpu_kernels_equal_candle_reference_path() {
        let (m, f) = (20, 37);
        let w = random_weights(m, f);
        let reference = build_with(w.clone(), m, f, ConvPath::CandleConv2d).unwrap();
        let x = Tensor::randn(0f32, 10.0, (3, m, f), &Device::Cpu).unwrap();
        let b = reference.forward(&x).unwrap().to_vec1::<f32>().unwrap();
        let default = SeedCnn.build(w.clone(), m, f, &Device::Cpu).unwrap();
        let fused = build_with(w.clone(), m, f, ConvPath::FusedTrunk).unwrap();
        let layered = build_with(w, m, f, ConvPath::ChannelsLast).unwrap();
        for net in [default, fused, layered] {
            let a = net.forward(&x).unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(a.len(), 3);
            for (p, q) in a.iter().zip(&b) {
                assert!((p - q).abs() < 1e-5, "{p} vs {q}");
            }
        }
    }

    #[test]
    fn training_logits_match_the_inference_network() {
        let (m, f) = (12, 19);
        let w = random_weights(m, f);
        let specs = SeedCnn.params(m, f).unwrap();
        let params: Vec<Tensor> = specs.iter().map(|s| w[&s.name].clone()).collect();
        let net = SeedCnn.build(w, m, f, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (3, m, f), &Device::Cpu).unwrap();
        let expected: Vec<f32> = net.forward(&x).unwrap().to_vec1().unwrap();
        let z = SeedCnn.logits(&params, &x).unwrap();
        let got: Vec<f32> = candle_nn::ops::sigmoid(&z).unwrap().to_vec1().unwrap();
        for (a, b) in expected.iter().zip(&got) {
            assert!((a - b).abs() < 1e-4, "{expected:?} vs {got:?}");
        }
    }

    #[test]
    fn wrong_input_size_is_an_error() {
        let net = SeedCnn
            .build(random_weights(10, 10), 10, 10, &Device::Cpu)
            .unwrap();
        let x = Tensor::zeros((1, 10, 11), DType::F32, &Device::Cpu).unwrap();
        assert!(net.forward(&x).is_err());
    }

    #[test]
    fn missing_and_misshapen_weights_are_named() {
        let mut w = random_weights(10, 10);
        w.remove("dense2.bias");
        let e = SeedCnn.build(w, 10, 10, &Device::Cpu).err().unwrap();
        assert!(e.to_string().contains("dense2.bias"), "{e}");
        let mut w = random_weights(10, 10);
        w.insert(
            "conv1.bias".into(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        let e = SeedCnn.build(w, 10, 10, &Device::Cpu).err().unwrap();
        assert!(e.to_string().contains("conv1.bias"), "{e}");
    }
}
