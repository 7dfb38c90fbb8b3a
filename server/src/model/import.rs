//! Turning the original service's Keras model into an AuralGuard package.
//!
//! [`super::keras`] reads the layers; this module checks they really are the seed architecture
//! (layer classes, activations, padding, strides, pool size and every shape, each mismatch named)
//! and writes a package whose manifest records where the weights came from.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use candle_core::{Device, Tensor};

use super::arch::seed_cnn::SeedCnn;
use super::arch::Architecture;
use super::keras::{read_keras_model, KerasLayer, KerasModel};
use super::manifest::{Aggregation, ArchitectureRef, Manifest, WindowSpec, FORMAT_VERSION};
use super::package::ModelPackage;
use crate::error::{Error, Result};
use crate::features::FeatureConfig;

/// Choices the Keras file cannot tell us.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Model name for the manifest (defaults to the file stem).
    pub name: Option<String>,
    /// Model version for the manifest.
    pub version: String,
    /// Replace an existing output folder.
    pub overwrite: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            name: None,
            version: "1".into(),
            overwrite: false,
        }
    }
}

/// What each Keras layer of the seed model must be: class, activation, our tensor prefix.
const SEED_LAYERS: [(&str, Option<&str>, Option<&str>); 7] = [
    ("Conv2D", Some("relu"), Some("conv1")),
    ("Conv2D", Some("relu"), Some("conv2")),
    ("MaxPooling2D", None, None),
    ("Flatten", None, None),
    ("Dense", Some("relu"), Some("dense1")),
    ("Dense", Some("relu"), Some("dense2")),
    ("Dense", Some("sigmoid"), Some("dense3")),
];

/// Reads `src` (`.h5` or `.keras`) and writes a seed-cnn package to `out`.
pub fn import_keras(src: &Path, out: &Path, opts: &ImportOptions) -> Result<ModelPackage> {
    let model = read_keras_model(src)?;
    let tensors = seed_tensors(src, &model)?;
    let features = FeatureConfig::default();
    let window = WindowSpec::default();
    let mut training = BTreeMap::new();
    let file_name = src
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    training.insert("imported_from".into(), file_name.clone().into());
    training.insert(
        "source_sha256".into(),
        crate::digest::file_sha256(src)?.into(),
    );
    training.insert("source_format".into(), format!("{:?}", model.format).into());
    if let Some(v) = &model.keras_version {
        training.insert("keras_version".into(), v.clone().into());
    }
    let name = opts.name.clone().unwrap_or_else(|| {
        src.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "imported".into())
    });
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name,
        version: opts.version.clone(),
        architecture: ArchitectureRef {
            name: SeedCnn.name().into(),
            version: SeedCnn.version(),
        },
        features,
        window,
        labels: ["real".into(), "fake".into()],
        threshold: 0.5,
        aggregation: Aggregation::Mean,
        description: Some(format!(
            "Imported from the Keras model {file_name}; the sigmoid output is P(fake)."
        )),
        training,
        metrics: Default::default(),
    };
    ModelPackage::save(out, &manifest, &tensors, opts.overwrite)
}

/// Checks the layer stack and maps its weights to seed-cnn tensor names.
fn seed_tensors(src: &Path, model: &KerasModel) -> Result<HashMap<String, Tensor>> {
    let fail = |reason: String| Error::KerasImport {
        path: src.to_path_buf(),
        reason,
    };
    let layers: Vec<&KerasLayer> = model
        .layers
        .iter()
        .filter(|l| l.class_name.as_deref() != Some("InputLayer"))
        .collect();
    if layers.len() != SEED_LAYERS.len() {
        let names: Vec<&str> = layers.iter().map(|l| l.name.as_str()).collect();
        return Err(fail(format!(
            "expected the seed architecture's 7 layers (Conv2D, Conv2D, MaxPooling2D, Flatten, \
             Dense, Dense, Dense), found {}: {}",
            layers.len(),
            names.join(", ")
        )));
    }
    let (n_mels, frames) = {
        let f = FeatureConfig::default();
        (f.n_mels, f.frames_for(240_000))
    };
    let specs = SeedCnn.params(n_mels, frames)?;
    let mut out = HashMap::new();
    for (layer, (class, activation, prefix)) in layers.iter().zip(SEED_LAYERS) {
        if let Some(c) = &layer.class_name {
            if c != class {
                return Err(fail(format!(
                    "layer '{}' is a {c}, the seed architecture has a {class} there",
                    layer.name
                )));
            }
        }
        if let Some(cfg) = &layer.config {
            check_config(&layer.name, class, activation, cfg).map_err(&fail)?;
        }
        let Some(prefix) = prefix else {
            if !layer.weights.is_empty() {
                return Err(fail(format!(
                    "layer '{}' should have no weights",
                    layer.name
                )));
            }
            continue;
        };
        if layer.weights.len() != 2 {
            return Err(fail(format!(
                "layer '{}' has {} weight tensors, expected kernel and bias",
                layer.name,
                layer.weights.len()
            )));
        }
        for (kind, w) in ["kernel", "bias"].iter().zip(&layer.weights) {
            let name = format!("{prefix}.{kind}");
            let spec = specs
                .iter()
                .find(|s| s.name == name)
                .ok_or_else(|| fail(format!("no parameter named {name}")))?;
            if w.shape != spec.shape {
                return Err(fail(format!(
                    "layer '{}' {kind} has shape {:?}, the seed architecture on a {n_mels}×{frames} \
                     log-mel needs {:?}",
                    layer.name, w.shape, spec.shape
                )));
            }
            let t = Tensor::from_slice(&w.data, w.shape.as_slice(), &Device::Cpu)?;
            out.insert(name, t);
        }
    }
    Ok(out)
}

/// Compares the parts of a layer's Keras config that change its maths.
fn check_config(
    layer: &str,
    class: &str,
    activation: Option<&str>,
    cfg: &serde_json::Value,
) -> std::result::Result<(), String> {
    let field = |k: &str| cfg.get(k);
    if let (Some(want), Some(got)) = (activation, field("activation").and_then(|v| v.as_str())) {
        if got != want {
            return Err(format!(
                "layer '{layer}' uses activation '{got}', the seed architecture uses '{want}'"
            ));
        }
    }
    let pair = |k: &str| -> Option<Vec<i64>> {
        field(k)?.as_array()?.iter().map(|v| v.as_i64()).collect()
    };
    match class {
        "Conv2D" => {
            if let Some(p) = field("padding").and_then(|v| v.as_str()) {
                if p != "valid" {
                    return Err(format!(
                        "layer '{layer}' uses padding '{p}', expected 'valid'"
                    ));
                }
            }
            if let Some(s) = pair("strides") {
                if s != [1, 1] {
                    return Err(format!(
                        "layer '{layer}' uses strides {s:?}, expected [1, 1]"
                    ));
                }
            }
            if let Some(d) = pair("dilation_rate") {
                if d != [1, 1] {
                    return Err(format!(
                        "layer '{layer}' uses dilation {d:?}, expected [1, 1]"
                    ));
                }
            }
            if let Some(f) = field("data_format").and_then(|v| v.as_str()) {
                if f != "channels_last" {
                    return Err(format!(
                        "layer '{layer}' uses data_format '{f}', expected channels_last"
                    ));
                }
            }
        }
        "MaxPooling2D" => {
            if let Some(p) = pair("pool_size") {
                if p != [2, 2] {
                    return Err(format!("layer '{layer}' pools {p:?}, expected [2, 2]"));
                }
            }
            if let Some(p) = field("padding").and_then(|v| v.as_str()) {
                if p != "valid" {
                    return Err(format!(
                        "layer '{layer}' uses padding '{p}', expected 'valid'"
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn layer(name: &str, class: &str, shapes: &[&[usize]]) -> KerasLayer {
        KerasLayer {
            name: name.into(),
            class_name: Some(class.into()),
            config: None,
            weights: shapes
                .iter()
                .zip(["kernel", "bias"])
                .map(|(s, n)| super::super::keras::KerasTensor {
                    name: n.into(),
                    shape: s.to_vec(),
                    data: vec![0.0; s.iter().product()],
                })
                .collect(),
        }
    }

    fn model(layers: Vec<KerasLayer>) -> KerasModel {
        KerasModel {
            layers,
            keras_version: None,
            backend: None,
            format: super::super::keras::KerasFormat::H5Keras3,
        }
    }

    fn seed_layers() -> Vec<KerasLayer> {
        vec![
            layer("conv2d", "Conv2D", &[&[3, 3, 1, 16], &[16]]),
            layer("conv2d_1", "Conv2D", &[&[3, 3, 16, 16], &[16]]),
            layer("max_pooling2d", "MaxPooling2D", &[]),
            layer("flatten", "Flatten", &[]),
            layer("dense", "Dense", &[&[230_144, 32], &[32]]),
            layer("dense_1", "Dense", &[&[32, 16], &[16]]),
            layer("dense_2", "Dense", &[&[16, 1], &[1]]),
        ]
    }

    #[test]
    fn the_seed_stack_maps_to_named_tensors() {
        let t = seed_tensors(Path::new("m.h5"), &model(seed_layers())).unwrap();
        assert_eq!(t.len(), 10);
        assert_eq!(t["dense1.kernel"].dims(), &[230_144, 32]);
    }

    #[test]
    fn another_architecture_is_refused_naming_the_layer() {
        let mut l = seed_layers();
        l[1] = layer("lstm", "LSTM", &[&[3, 3, 16, 16], &[16]]);
        let e = seed_tensors(Path::new("m.h5"), &model(l))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'lstm'") && e.contains("LSTM"), "{e}");
        let mut l = seed_layers();
        l[4] = layer("dense", "Dense", &[&[1000, 32], &[32]]);
        let e = seed_tensors(Path::new("m.h5"), &model(l))
            .unwrap_err()
            .to_string();
        assert!(e.contains("'dense'") && e.contains("230144"), "{e}");
        let mut l = seed_layers();
        l.pop();
        let e = seed_tensors(Path::new("m.h5"), &model(l))
            .unwrap_err()
            .to_string();
        assert!(e.contains("found 6"), "{e}");
    }

    #[test]
    fn config_checks_name_the_layer() {
        let e = check_config(
            "conv2d",
            "Conv2D",
            Some("relu"),
            &json!({"activation": "tanh"}),
        )
        .unwrap_err();
        assert!(e.contains("conv2d") && e.contains("tanh"));
        let e = check_config("c", "Conv2D", Some("relu"), &json!({"padding": "same"})).unwrap_err();
        assert!(e.contains("same"));
        let e = check_config("p", "MaxPooling2D", None, &json!({"pool_size": [3, 3]})).unwrap_err();
        assert!(e.contains("[3, 3]"));
        assert!(check_config(
            "c",
            "Conv2D",
            Some("relu"),
            &json!({"activation": "relu", "padding": "valid", "strides": [1, 1]})
        )
        .is_ok());
    }
}
