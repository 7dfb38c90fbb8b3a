//! Reading the original service's Keras models: layers and weights, in model order.
//!
//! Three layouts exist in the wild and all are read:
//!
//! * Keras 3 legacy `.h5`: `/model_weights/<layer>/sequential/<layer>/kernel`;
//! * Keras 2 (`tf_keras`) `.h5`: `/model_weights/<layer>/<layer>/kernel:0`;
//! * Keras 3 `.keras`: a zip with `config.json` and `model.weights.h5`
//!   (`/layers/<layer>/vars/0` = kernel, `vars/1` = bias).
//!
//! Order matters because the layer stack *is* the architecture: the caller maps the n-th
//! convolution to its n-th convolution, so layers come back in the order the model applies them
//! (the `layer_names` attribute, or the model config), never in HDF5's alphabetical order.
//! This is one-shot import code, not a hot path; the HDF5 library is not thread-safe and
//! `hdf5-metno` serialises calls to it.

use std::path::Path;

use crate::error::{Error, Result};

/// One weight tensor of a layer: Keras's variable name ("kernel", "bias", ...), shape, data
/// (row-major f32).
#[derive(Debug, Clone, PartialEq)]
pub struct KerasTensor {
    /// Variable name without Keras 2's `:0` suffix.
    pub name: String,
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Values, row-major.
    pub data: Vec<f32>,
}

/// One layer of the model, in model order.
#[derive(Debug, Clone)]
pub struct KerasLayer {
    /// Layer name, e.g. `conv2d_1`.
    pub name: String,
    /// Keras class (`Conv2D`, `Dense`, ...) from the model config, when the file has one.
    pub class_name: Option<String>,
    /// The layer's `config` object (activation, padding, strides, ...), when present.
    pub config: Option<serde_json::Value>,
    /// Kernel first, then bias; empty for weightless layers.
    pub weights: Vec<KerasTensor>,
}

/// Which of the three layouts a file used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KerasFormat {
    /// Legacy `.h5` written by Keras 3.
    H5Keras3,
    /// Legacy `.h5` written by Keras 2 / `tf_keras`.
    H5Keras2,
    /// Native `.keras` zip.
    KerasZip,
}

/// What was read: layers plus file-level facts.
#[derive(Debug, Clone)]
pub struct KerasModel {
    /// Layers in the order the model applies them.
    pub layers: Vec<KerasLayer>,
    /// `keras_version` recorded by the writer.
    pub keras_version: Option<String>,
    /// Backend recorded by the writer (e.g. `tensorflow`).
    pub backend: Option<String>,
    /// Layout detected.
    pub format: KerasFormat,
}

/// Reads `.h5` (both layouts) or `.keras`, picking by content, not extension.
#[cfg(feature = "keras")]
pub fn read_keras_model(path: &Path) -> Result<KerasModel> {
    reader::read_keras_model(path)
}

/// Without the `keras` feature there is no HDF5 library to read with: say how to get one.
#[cfg(not(feature = "keras"))]
pub fn read_keras_model(path: &Path) -> Result<KerasModel> {
    Err(Error::KerasImport {
        path: path.to_path_buf(),
        reason: "this binary was built without Keras support; rebuild with \
                 `cargo build --release --features keras` (needs libhdf5-dev)"
            .into(),
    })
}

/// The HDF5/zip reading itself, compiled only with the `keras` feature.
#[cfg(feature = "keras")]
mod reader {
    use super::*;
    use std::io::Read;
    use std::path::PathBuf;

    use hdf5_metno as hdf5;
    use hdf5_metno::types::{VarLenAscii, VarLenUnicode};

    pub(super) const HDF5_MAGIC: &[u8] = b"\x89HDF\r\n\x1a\n";
    pub(super) const ZIP_MAGIC: &[u8] = b"PK\x03\x04";

    pub(super) fn read_keras_model(path: &Path) -> Result<KerasModel> {
        let fail = |reason: String| Error::KerasImport {
            path: path.to_path_buf(),
            reason,
        };
        let mut head = [0u8; 8];
        let n = std::fs::File::open(path)
            .and_then(|mut f| f.read(&mut head))
            .map_err(|e| Error::io(path, e))?;
        if n >= 8 && head == HDF5_MAGIC {
            read_h5(path).map_err(fail)
        } else if n >= 4 && &head[..4] == ZIP_MAGIC {
            read_keras_zip(path).map_err(fail)
        } else {
            Err(fail(
                "not an HDF5 (.h5) or zip (.keras) file; expected a model saved by Keras".into(),
            ))
        }
    }

    type Res<T> = std::result::Result<T, String>;

    fn h5err(what: &str) -> impl Fn(hdf5::Error) -> String + '_ {
        move |e| format!("{what}: {e}")
    }

    /// Reads a string attribute whatever string flavour the writer used.
    fn string_attr(loc: &hdf5::Location, name: &str) -> Option<String> {
        let a = loc.attr(name).ok()?;
        if let Ok(s) = a.read_scalar::<VarLenUnicode>() {
            return Some(s.as_str().to_string());
        }
        if let Ok(s) = a.read_scalar::<VarLenAscii>() {
            return Some(s.as_str().to_string());
        }
        None
    }

    /// Reads a 1-D string-array attribute (`layer_names`, `weight_names`).
    fn string_list_attr(loc: &hdf5::Location, name: &str) -> Option<Vec<String>> {
        let a = loc.attr(name).ok()?;
        if let Ok(v) = a.read_raw::<VarLenUnicode>() {
            return Some(v.iter().map(|s| s.as_str().to_string()).collect());
        }
        if let Ok(v) = a.read_raw::<VarLenAscii>() {
            return Some(v.iter().map(|s| s.as_str().to_string()).collect());
        }
        if let Ok(v) = a.read_raw::<hdf5::types::FixedAscii<256>>() {
            return Some(v.iter().map(|s| s.as_str().to_string()).collect());
        }
        None
    }

    fn read_tensor(ds: &hdf5::Dataset, name: &str) -> Res<KerasTensor> {
        let dtype = ds.dtype().map_err(h5err(name))?;
        if !dtype.is::<f32>() && !dtype.is::<f64>() {
            return Err(format!("weight '{name}' is not a floating-point dataset"));
        }
        let data = ds.read_raw::<f32>().map_err(h5err(name))?;
        let shape = ds.shape();
        if data.len() != shape.iter().product::<usize>() {
            return Err(format!(
                "weight '{name}' has {} values for shape {shape:?}",
                data.len()
            ));
        }
        Ok(KerasTensor {
            name: name.to_string(),
            shape,
            data,
        })
    }

    /// `(class_name, config)` of each non-input layer of a Sequential model config.
    fn config_layers(config: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
        config
            .pointer("/config/layers")
            .and_then(|l| l.as_array())
            .map(|layers| {
                layers
                    .iter()
                    .filter_map(|l| {
                        let class = l.get("class_name")?.as_str()?.to_string();
                        let cfg = l.get("config").cloned().unwrap_or_default();
                        (class != "InputLayer").then_some((class, cfg))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Attaches class names and configs from the model config to layers, matching by name.
    fn annotate(layers: &mut [KerasLayer], config: Option<&serde_json::Value>) {
        let Some(config) = config else { return };
        for (class, cfg) in config_layers(config) {
            let name = cfg.get("name").and_then(|n| n.as_str()).map(str::to_string);
            if let Some(layer) = layers.iter_mut().find(|l| Some(&l.name) == name.as_ref()) {
                layer.class_name = Some(class);
                layer.config = Some(cfg);
            }
        }
    }

    fn read_h5(path: &Path) -> Res<KerasModel> {
        let file = hdf5::File::open(path).map_err(h5err("cannot open as HDF5"))?;
        let config: Option<serde_json::Value> =
            string_attr(&file, "model_config").and_then(|s| serde_json::from_str(&s).ok());
        let keras_version = string_attr(&file, "keras_version");
        let backend = string_attr(&file, "backend");
        let weights = file.group("model_weights").map_err(|_| {
            "no /model_weights group: not a Keras model saved with its weights".to_string()
        })?;
        let names = string_list_attr(&weights, "layer_names")
            .ok_or("/model_weights has no layer_names attribute")?;
        let mut keras2 = false;
        let mut layers = Vec::with_capacity(names.len());
        for name in names {
            let group = weights
                .group(&name)
                .map_err(|_| format!("layer '{name}' is listed but has no weights group"))?;
            let weight_names = string_list_attr(&group, "weight_names").unwrap_or_default();
            let mut tensors = Vec::with_capacity(weight_names.len());
            for wn in weight_names {
                let ds = group
                    .dataset(&wn)
                    .map_err(|_| format!("layer '{name}': weight '{wn}' is listed but missing"))?;
                let leaf = wn.rsplit('/').next().unwrap_or(&wn);
                keras2 |= leaf.ends_with(":0");
                let short = leaf.trim_end_matches(":0");
                tensors.push(read_tensor(&ds, short).map_err(|e| format!("layer '{name}': {e}"))?);
            }
            layers.push(KerasLayer {
                name,
                class_name: None,
                config: None,
                weights: tensors,
            });
        }
        annotate(&mut layers, config.as_ref());
        Ok(KerasModel {
            layers,
            keras_version,
            backend,
            format: if keras2 {
                KerasFormat::H5Keras2
            } else {
                KerasFormat::H5Keras3
            },
        })
    }

    /// A temporary file removed on drop (the HDF5 library reads only from paths).
    pub(super) struct TempFile(pub(super) PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn read_keras_zip(path: &Path) -> Res<KerasModel> {
        let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
        let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a readable zip: {e}"))?;
        let mut read_entry = |name: &str| -> Res<Vec<u8>> {
            let mut entry = zip
                .by_name(name)
                .map_err(|_| format!("the .keras archive has no {name}"))?;
            let mut buf = Vec::new();
            entry
                .read_to_end(&mut buf)
                .map_err(|e| format!("{name}: {e}"))?;
            Ok(buf)
        };
        let config: serde_json::Value = serde_json::from_slice(&read_entry("config.json")?)
            .map_err(|e| format!("config.json: {e}"))?;
        let metadata: Option<serde_json::Value> = read_entry("metadata.json")
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let weights_bytes = read_entry("model.weights.h5")?;
        let tmp = TempFile(std::env::temp_dir().join(format!(
        "auralguard-keras-{}-{}.h5",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )));
        std::fs::write(&tmp.0, &weights_bytes).map_err(|e| format!("temporary file: {e}"))?;
        let h5 = hdf5::File::open(&tmp.0).map_err(h5err("model.weights.h5"))?;
        let root = h5
            .group("layers")
            .map_err(|_| "model.weights.h5 has no /layers group".to_string())?;
        let mut layers = Vec::new();
        for (class, cfg) in config_layers(&config) {
            let name = cfg
                .get("name")
                .and_then(|n| n.as_str())
                .ok_or_else(|| format!("a {class} layer in config.json has no name"))?
                .to_string();
            let mut tensors = Vec::new();
            if let Ok(vars) = root.group(&format!("{name}/vars")) {
                let mut idx: Vec<usize> = vars
                    .member_names()
                    .map_err(h5err(&name))?
                    .iter()
                    .filter_map(|n| n.parse().ok())
                    .collect();
                idx.sort_unstable();
                for i in idx {
                    let ds = vars.dataset(&i.to_string()).map_err(h5err(&name))?;
                    let var = match i {
                        0 => "kernel".to_string(),
                        1 => "bias".to_string(),
                        n => format!("var{n}"),
                    };
                    tensors
                        .push(read_tensor(&ds, &var).map_err(|e| format!("layer '{name}': {e}"))?);
                }
            }
            layers.push(KerasLayer {
                name,
                class_name: Some(class),
                config: Some(cfg),
                weights: tensors,
            });
        }
        if layers.is_empty() {
            return Err("config.json lists no layers".into());
        }
        Ok(KerasModel {
            layers,
            keras_version: metadata
                .as_ref()
                .and_then(|m| m.get("keras_version"))
                .and_then(|v| v.as_str())
                .map(str::to_string),
            backend: None,
            format: KerasFormat::KerasZip,
        })
    }
}

#[cfg(all(test, feature = "keras"))]
mod tests {
    use super::reader::{TempFile, HDF5_MAGIC, ZIP_MAGIC};
    use super::*;

    fn write_temp(name: &str, bytes: &[u8]) -> TempFile {
        let p = std::env::temp_dir().join(format!("ag-keras-test-{}-{name}", std::process::id()));
        std::fs::write(&p, bytes).unwrap();
        TempFile(p)
    }

    #[test]
    fn text_and_empty_files_are_refused_cleanly() {
        for (name, bytes) in [("a.h5", &b"hello, not a model"[..]), ("b.h5", &b""[..])] {
            let f = write_temp(name, bytes);
            let e = read_keras_model(&f.0).unwrap_err();
            assert_eq!(e.code(), "keras_import_failed", "{e}");
        }
    }

    #[test]
    fn truncated_hdf5_and_zip_are_errors_not_panics() {
        let mut h = HDF5_MAGIC.to_vec();
        h.extend_from_slice(&[0u8; 100]);
        let f = write_temp("t.h5", &h);
        assert!(read_keras_model(&f.0).is_err());
        let mut z = ZIP_MAGIC.to_vec();
        z.extend_from_slice(&[1u8; 60]);
        let f = write_temp("t.keras", &z);
        assert!(read_keras_model(&f.0).is_err());
    }
}
