//! The head on the frozen Whisper encoder: a learned mix of its layers, then a small MLP.
//!
//! ```text
//! [B, 2L, d] (rows 0..L: per-layer time-means, L..2L: time-deviations; see whisper::frontend)
//!   ─ element-wise standardise (input.element_mean/std, fitted on the training set)
//!   ─ softmax(layer.weights) over the L layers, applied to means and deviations alike → [B, 2d]
//!   ─ Dense 64 ReLU ─ Dense 1 (sigmoid)
//! ```
//!
//! Why so small: the encoder has already turned audio into a description of speech learned from
//! far more voices than any corpus here; a head with tens of thousands of parameters cannot
//! memorise speakers the way a CNN trained from scratch does, and the layer weighting lets it
//! pick the depth where synthesis shows (usually the middle, not the top, which Whisper tuned to
//! text and so to ignoring *how* something was said).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use super::{take_params, Architecture, Classifier, Init, LogitsNet, ParamSpec};
use crate::error::{Error, Result};

/// Registry entry for the Whisper head.
pub struct WhisperHead;

const HIDDEN: usize = 64;

impl WhisperHead {
    /// `(layers, d_model)` of an input of `rows × cols`.
    fn dims(rows: usize, cols: usize) -> Result<(usize, usize)> {
        if rows < 2 || !rows.is_multiple_of(2) || cols == 0 {
            return Err(Error::InvalidArgument(format!(
                "whisper-head takes per-layer statistics (2·layers × d_model), got {rows}×{cols}; \
                 train it with --front-end whisper"
            )));
        }
        Ok((rows / 2, cols))
    }
}

impl Architecture for WhisperHead {
    fn name(&self) -> &'static str {
        "whisper-head"
    }

    fn version(&self) -> u32 {
        1
    }

    fn description(&self) -> &'static str {
        "Whisper head: standardised per-layer encoder statistics → softmax layer mix → Dense 64 → 1 (sigmoid)"
    }

    fn params(&self, rows: usize, cols: usize) -> Result<Vec<ParamSpec>> {
        let (layers, d) = Self::dims(rows, cols)?;
        let p = |name: &str, shape: &[usize]| ParamSpec {
            name: name.into(),
            shape: shape.to_vec(),
        };
        Ok(vec![
            p("input.element_mean", &[rows * cols]),
            p("input.element_std", &[rows * cols]),
            p("layer.weights", &[layers]),
            p("dense1.kernel", &[2 * d, HIDDEN]),
            p("dense1.bias", &[HIDDEN]),
            p("dense2.kernel", &[HIDDEN, 1]),
            p("dense2.bias", &[1]),
        ])
    }

    fn init(&self, spec: &ParamSpec) -> Init {
        match spec.name.as_str() {
            "input.element_mean" | "input.element_std" => Init::Statistic,
            // Equal weights to start with: every layer has its say until training decides.
            "layer.weights" => Init::Zeros,
            _ => Init::default_for(spec),
        }
    }

    fn spec_augment(&self) -> bool {
        false
    }

    fn logits(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor> {
        let [mean, std, layer_w, w1, b1, w2, b2] = params else {
            return Err(Error::InvalidArgument(
                "whisper-head: wrong parameter count".into(),
            ));
        };
        let (b, rows, d) = x.dims3()?;
        let layers = rows / 2;
        let z = x
            .reshape((b, rows * d))?
            .broadcast_sub(mean)?
            .broadcast_div(std)?
            .reshape((b, 2, layers, d))?;
        // `softmax`, not `softmax_last_dim`: the fused kernel has no backward pass, so the layer
        // mix would silently stay uniform during training.
        let mix =
            candle_nn::ops::softmax(layer_w, candle_core::D::Minus1)?.reshape((1, 1, layers, 1))?;
        let pooled = z.broadcast_mul(&mix)?.sum(2)?.reshape((b, 2 * d))?;
        let h = pooled.matmul(w1)?.broadcast_add(b1)?.relu()?;
        Ok(h.matmul(w2)?.broadcast_add(b2)?.squeeze(1)?)
    }

    fn build(
        &self,
        weights: HashMap<String, Tensor>,
        rows: usize,
        cols: usize,
        _device: &Device,
    ) -> Result<Box<dyn Classifier>> {
        let specs = self.params(rows, cols)?;
        let params = take_params(weights, &specs, Path::new("model.safetensors"))?;
        Ok(Box::new(LogitsNet::new(&WhisperHead, params, rows, cols)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::arch::random_weights;
    use candle_core::DType;

    fn net(rows: usize, cols: usize) -> Box<dyn Classifier> {
        let mut w = random_weights(&WhisperHead, rows, cols, 0.3, &Device::Cpu).unwrap();
        w.insert(
            "input.element_std".into(),
            Tensor::ones(rows * cols, DType::F32, &Device::Cpu).unwrap(),
        );
        WhisperHead.build(w, rows, cols, &Device::Cpu).unwrap()
    }

    #[test]
    fn scores_are_per_example_probabilities() {
        let n = net(10, 16);
        let x = Tensor::randn(0f32, 1.0, (4, 10, 16), &Device::Cpu).unwrap();
        let p: Vec<f32> = n.forward(&x).unwrap().to_vec1().unwrap();
        assert!(p.iter().all(|v| (0.0..=1.0).contains(v)));
        let one: Vec<f32> = n
            .forward(&x.narrow(0, 1, 1).unwrap())
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!((one[0] - p[1]).abs() < 1e-5);
    }

    #[test]
    fn the_layer_mix_receives_gradients() {
        let (rows, cols) = (6, 4);
        let specs = WhisperHead.params(rows, cols).unwrap();
        let vars: Vec<candle_core::Var> = specs
            .iter()
            .map(|s| {
                let t = if s.name == "input.element_std" {
                    Tensor::ones(s.shape.as_slice(), DType::F32, &Device::Cpu)
                } else if s.name == "layer.weights" {
                    Tensor::zeros(s.shape.as_slice(), DType::F32, &Device::Cpu)
                } else {
                    Tensor::randn(0f32, 0.5, s.shape.as_slice(), &Device::Cpu)
                };
                candle_core::Var::from_tensor(&t.unwrap()).unwrap()
            })
            .collect();
        let params: Vec<Tensor> = vars.iter().map(|v| v.as_tensor().clone()).collect();
        let x = Tensor::randn(0f32, 1.0, (3, rows, cols), &Device::Cpu).unwrap();
        let loss = WhisperHead.logits(&params, &x).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let at = specs
            .iter()
            .position(|s| s.name == "layer.weights")
            .unwrap();
        let g: Vec<f32> = grads
            .get(&params[at])
            .expect("a gradient")
            .to_vec1()
            .unwrap();
        assert!(g.iter().any(|v| v.abs() > 1e-6), "{g:?}");
    }

    #[test]
    fn odd_row_counts_are_refused_with_the_front_end_named() {
        let err = WhisperHead.params(9, 16).unwrap_err().to_string();
        assert!(err.contains("--front-end whisper"), "{err}");
    }

    #[test]
    fn the_head_is_small() {
        let n: usize = WhisperHead
            .params(14, 512)
            .unwrap()
            .iter()
            .filter(|s| !s.name.starts_with("input."))
            .map(|s| s.shape.iter().product::<usize>())
            .sum();
        assert!(n < 100_000, "{n}");
    }
}
