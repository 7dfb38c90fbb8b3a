//! Architectures by name.
//!
//! A model package names its architecture in the manifest; [`lookup`] turns the name into an
//! [`Architecture`] that knows its parameter shapes and builds a [`Classifier`]. Adding an
//! architecture means adding a module and one line to [`REGISTRY`]; nothing that loads or runs
//! models changes.

pub mod compact_cnn;
pub mod seed_cnn;
pub mod whisper_head;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};

use crate::error::{Error, Result};

/// Expected name and shape of one parameter tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Tensor name in `model.safetensors`.
    pub name: String,
    /// Exact shape.
    pub shape: Vec<usize>,
}

/// A network family: parameter layout and how to build a runnable network from weights.
pub trait Architecture: Send + Sync {
    /// Registry name (what manifests say).
    fn name(&self) -> &'static str;

    /// Current revision of the definition; manifests with another revision are refused.
    fn version(&self) -> u32;

    /// One-line description for `auralguard inspect`.
    fn description(&self) -> &'static str;

    /// Parameters for an input of `n_mels × frames`; fails when the input size is unusable.
    fn params(&self, n_mels: usize, frames: usize) -> Result<Vec<ParamSpec>>;

    /// How a parameter starts before training (biases at zero, kernels scaled to their fan-in,
    /// data statistics filled in by the trainer).
    fn init(&self, spec: &ParamSpec) -> Init {
        Init::default_for(spec)
    }

    /// Whether SpecAugment-style band and frame masking makes sense for the input (it does for
    /// spectrograms, not for the Whisper front-end's per-layer statistics).
    fn spec_augment(&self) -> bool {
        true
    }

    /// Floating-point operations one window of `n_mels × frames` costs (a multiply-add counts
    /// two), so `bench` can report how close the network runs to the machine's FMA ceiling;
    /// `None` where they have not been counted.
    fn flops_per_window(&self, _n_mels: usize, _frames: usize) -> Option<f64> {
        None
    }

    /// The network's pre-sigmoid output `[batch]` for `x` `[batch, n_mels, frames]`, built
    /// only from differentiable tensor operations on `params` (in [`Architecture::params`]
    /// order), so the trainer can take gradients through it.
    fn logits(&self, params: &[Tensor], x: &Tensor) -> Result<Tensor>;

    /// Builds the network from named tensors already on `device`.
    fn build(
        &self,
        weights: HashMap<String, Tensor>,
        n_mels: usize,
        frames: usize,
        device: &Device,
    ) -> Result<Box<dyn Classifier>>;
}

/// A runnable network: log-mel batch in, probability of the positive label out.
pub trait Classifier: Send + Sync {
    /// `x` is `[batch, n_mels, frames]` f32 on the model's device; returns `[batch]` probabilities.
    fn forward(&self, x: &Tensor) -> Result<Tensor>;

    /// Number of scalar parameters.
    fn parameter_count(&self) -> usize;
}

/// How a parameter is initialised before training.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// All zeros (biases).
    Zeros,
    /// Uniform in ±sqrt(6 / fan_in) (He/Kaiming for ReLU layers; kernels in `[.., in, out]`
    /// layout have fan-in = the product of all dimensions but the last).
    FanIn(usize),
    /// Not trained: a statistic of the training data the trainer computes (input mean/std).
    Statistic,
}

impl Init {
    /// Zeros for `*.bias`, fan-in scaling for everything else.
    pub fn default_for(spec: &ParamSpec) -> Init {
        if spec.name.ends_with(".bias") {
            Init::Zeros
        } else {
            let fan_in = spec.shape[..spec.shape.len().saturating_sub(1)]
                .iter()
                .product::<usize>()
                .max(1);
            Init::FanIn(fan_in)
        }
    }
}

/// A network run through its architecture's [`Architecture::logits`] plus a sigmoid: the
/// inference side of architectures whose training forward is also their fastest one.
pub struct LogitsNet {
    arch: &'static dyn Architecture,
    params: Vec<Tensor>,
    n_mels: usize,
    frames: usize,
}

impl LogitsNet {
    /// Wraps `params` (in `arch.params()` order) for inputs of `n_mels × frames`.
    pub fn new(
        arch: &'static dyn Architecture,
        params: Vec<Tensor>,
        n_mels: usize,
        frames: usize,
    ) -> Self {
        Self {
            arch,
            params,
            n_mels,
            frames,
        }
    }
}

impl Classifier for LogitsNet {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (_, h, w) = x.dims3()?;
        if (h, w) != (self.n_mels, self.frames) {
            return Err(Error::InvalidArgument(format!(
                "{} expects inputs of {}×{}, got {h}×{w}",
                self.arch.name(),
                self.n_mels,
                self.frames
            )));
        }
        let z = self.arch.logits(&self.params, x)?;
        Ok(candle_nn::ops::sigmoid(&z)?)
    }

    fn parameter_count(&self) -> usize {
        self.params.iter().map(|t| t.elem_count()).sum()
    }
}

/// Every architecture this build knows.
pub static REGISTRY: &[&dyn Architecture] = &[
    &seed_cnn::SeedCnn,
    &compact_cnn::CompactCnn,
    &whisper_head::WhisperHead,
];

/// Finds an architecture by name.
pub fn lookup(name: &str) -> Result<&'static dyn Architecture> {
    REGISTRY
        .iter()
        .copied()
        .find(|a| a.name() == name)
        .ok_or_else(|| Error::UnknownArchitecture {
            name: name.to_string(),
            known: REGISTRY
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Takes the tensors `specs` lists out of `weights`, checking every name and shape.
///
/// Extra tensors are an error too: they mean the file was written for another architecture.
pub fn take_params(
    mut weights: HashMap<String, Tensor>,
    specs: &[ParamSpec],
    file: &Path,
) -> Result<Vec<Tensor>> {
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let t = weights
            .remove(&spec.name)
            .ok_or_else(|| Error::weights(file, format!("tensor '{}' is missing", spec.name)))?;
        if t.dims() != spec.shape.as_slice() {
            return Err(Error::weights(
                file,
                format!(
                    "tensor '{}' has shape {:?}, expected {:?}",
                    spec.name,
                    t.dims(),
                    spec.shape
                ),
            ));
        }
        if t.dtype() != candle_core::DType::F32 {
            return Err(Error::weights(
                file,
                format!("tensor '{}' is {:?}, expected f32", spec.name, t.dtype()),
            ));
        }
        out.push(t);
    }
    if let Some(extra) = weights.keys().next() {
        return Err(Error::weights(
            file,
            format!("unexpected tensor '{extra}' (written for another architecture?)"),
        ));
    }
    Ok(out)
}

/// Weights drawn from N(0, `std`²) for every parameter of `arch`: a network that runs, for tests,
/// benchmarks and as a starting point before training.
pub fn random_weights(
    arch: &dyn Architecture,
    n_mels: usize,
    frames: usize,
    std: f32,
    device: &Device,
) -> Result<HashMap<String, Tensor>> {
    arch.params(n_mels, frames)?
        .into_iter()
        .map(|s| {
            Ok((
                s.name,
                Tensor::randn(0f32, std, s.shape.as_slice(), device)?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_lists_known_ones() {
        let e = lookup("resnet-9000").err().unwrap();
        assert_eq!(e.code(), "unknown_architecture");
        assert!(e.to_string().contains("seed-cnn"));
    }

    #[test]
    fn seed_is_registered() {
        assert_eq!(lookup("seed-cnn").unwrap().name(), "seed-cnn");
    }
}
