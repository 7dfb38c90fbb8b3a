//! Architectures by name.
//!
//! A model package names its architecture in the manifest; [`lookup`] turns the name into an
//! [`Architecture`] that knows its parameter shapes and builds a [`Classifier`]. Adding an
//! architecture means adding a module and one line to [`REGISTRY`]; nothing that loads or runs
//! models changes.

pub mod seed_cnn;

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

/// Every architecture this build knows.
pub static REGISTRY: &[&dyn Architecture] = &[&seed_cnn::SeedCnn];

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
