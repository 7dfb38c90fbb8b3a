//! Reading the original service's Keras models: every layer of a Sequential model, with its
//! weights, in model order.
//!
//! The model we replace was trained and saved with Keras, and users hold it in one of three
//! layouts, all of which are read here (the layout is recognised from the file's first bytes,
//! never from its extension, because users rename files):
//!
//! * **Keras 3 legacy `.h5`**: root attributes `keras_version`, `backend` and `model_config` (the
//!   model's JSON config); `/model_weights` lists the layers in its `layer_names` attribute and
//!   each layer group lists its datasets in `weight_names`
//!   (`/model_weights/conv2d/sequential/conv2d/kernel`).
//! * **Keras 2 (`tf_keras`) `.h5`**: the same, with datasets named `kernel:0`, `bias:0` under
//!   `/model_weights/<layer>/<layer>/`; the `:0` suffix is dropped so callers see one spelling.
//! * **Keras 3 `.keras`**: a zip holding `config.json` (the model config), `metadata.json`
//!   (`keras_version`) and `model.weights.h5`, whose `/layers/<layer>/vars/0`, `/vars/1`, ... hold
//!   the variables in creation order (kernel, then bias) without their names.
//!
//! Order matters because for a Sequential model the layer stack *is* the architecture: the
//! caller maps the n-th convolution of the file to the n-th convolution of its own network and
//! checks weightless layers (pooling, flatten) too, so layers come back in the order the model
//! applies them (the model config, else `layer_names`), never in HDF5's alphabetical order, and
//! weightless layers are kept with no weights. The `InputLayer` Keras 3 lists in the config is
//! not a layer of the stack and is left out.
//!
//! Reading needs the system HDF5 library, so the reader is compiled only with the `keras` cargo
//! feature; without it [`read_keras_model`] returns an error that says how to rebuild.
//!
//! This is one-shot import code, not a hot path: the HDF5 C library is not thread-safe and
//! `hdf5-metno` serialises every call into it behind one process-wide lock, so concurrent
//! imports simply queue.

use std::path::Path;

use crate::error::{Error, Result};

/// One weight tensor of a layer, as Keras stored it, so the caller can map it by name and
/// check its shape before trusting it.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasTensor {
    /// Keras's variable name (`kernel`, `bias`, ...), without Keras 2's `:0` suffix so the three
    /// layouts agree. A `.keras` file stores no names; they are inferred from the layer class
    /// (`kernel`, `bias` for `Dense`/`Conv*`) and are the variable index (`"0"`, `"1"`, ...) for
    /// classes this reader does not know.
    pub name: String,
    /// Shape as stored (Keras's own layout, e.g. `[kh, kw, in, out]` for `Conv2D`).
    pub shape: Vec<usize>,
    /// Values in row-major order, converted to `f32` when the file holds `f64`.
    pub data: Vec<f32>,
}

/// One layer of the model, in model order, with what the caller needs to verify the
/// architecture (class and config) as well as load it (weights).
#[derive(Debug, Clone, PartialEq)]
pub struct KerasLayer {
    /// Layer name, e.g. `conv2d_1`; it names the layer in error messages.
    pub name: String,
    /// Keras class (`Conv2D`, `Dense`, `MaxPooling2D`, `Flatten`, ...) from the model config;
    /// `None` only for an `.h5` file that carries no model config.
    pub class_name: Option<String>,
    /// The layer's `config` object from the model config (activation, padding, strides,
    /// pool size, ...), present whenever [`KerasLayer::class_name`] is.
    pub config: Option<serde_json::Value>,
    /// Kernel first, then bias (the order Keras created them); empty for weightless layers.
    pub weights: Vec<KerasTensor>,
}

/// What was read: the layer stack plus file-level facts worth recording in a package's
/// provenance.
#[derive(Debug, Clone, PartialEq)]
pub struct KerasModel {
    /// Layers in the order the model applies them (no `InputLayer`).
    pub layers: Vec<KerasLayer>,
    /// Version of Keras that wrote the file, when recorded.
    pub keras_version: Option<String>,
    /// Backend that wrote the file (e.g. `tensorflow`), when recorded (`.keras` files do not).
    pub backend: Option<String>,
    /// Which layout the file used.
    pub format: KerasFormat,
}

/// The layout a file used, recorded so a package says where its weights came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KerasFormat {
    /// Legacy HDF5 written by Keras 3 (`model.save("m.h5")`).
    H5Keras3,
    /// Legacy HDF5 written by Keras 2 / `tf_keras` (variable names end in `:0`).
    H5Keras2,
    /// Native Keras 3 zip (`model.save("m.keras")`).
    KerasZip,
}

/// Reads a Keras model saved as `.h5` (Keras 2 or 3) or `.keras`, picking the reader by the
/// file's content (HDF5 or zip signature), not by its extension.
///
/// Every failure is an [`Error::KerasImport`] whose reason says what is wrong with the file
/// (not HDF5/zip, no `model_weights` group, a listed layer missing, a non-float weight, ...),
/// except that a path that cannot be opened at all is an [`Error::Io`].
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

/// The HDF5 and zip reading, compiled only with the `keras` feature.
#[cfg(feature = "keras")]
mod reader {
    use std::collections::{HashMap, HashSet};
    use std::io::{Read, Write};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU64, Ordering};

    use hdf5_metno as hdf5;
    use hdf5_metno::types::{
        FixedAscii, FixedUnicode, FloatSize, TypeDescriptor, VarLenAscii, VarLenUnicode,
    };
    use serde_json::Value;

    use super::*;

    /// First bytes of every HDF5 file written without a user block (all Keras files).
    pub(super) const HDF5_MAGIC: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    /// First bytes of a zip archive with at least one entry.
    pub(super) const ZIP_MAGIC: &[u8; 4] = b"PK\x03\x04";
    /// First bytes of an empty zip archive (read as zip so the error names the missing entry).
    const ZIP_EMPTY_MAGIC: &[u8; 4] = b"PK\x05\x06";

    /// Largest tensor accepted (2^31 values, 8 GiB as f32): a damaged or hostile header must
    /// yield an error, not an allocation that aborts the process.
    const MAX_TENSOR_VALUES: usize = 1 << 31;
    /// Largest string attribute (in bytes, all elements together) accepted, for the same reason.
    const MAX_ATTR_BYTES: usize = 256 << 20;
    /// Largest `config.json` / `metadata.json` read from a `.keras` archive.
    const MAX_JSON_BYTES: u64 = 64 << 20;
    /// Largest `model.weights.h5` extracted from a `.keras` archive (guards against zip bombs).
    const MAX_WEIGHTS_BYTES: u64 = 64 << 30;
    /// Deepest group nesting walked when a layer has no `weight_names` (HDF5 allows cycles).
    const MAX_WALK_DEPTH: usize = 8;

    /// Errors inside the reader are plain reasons; the entry point attaches the path.
    type Res<T> = std::result::Result<T, String>;

    pub(super) fn read_keras_model(path: &Path) -> Result<KerasModel> {
        let fail = |reason: String| Error::KerasImport {
            path: path.to_path_buf(),
            reason,
        };
        let mut head = [0u8; 8];
        let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let n = read_prefix(&mut file, &mut head).map_err(|e| Error::io(path, e))?;
        drop(file);
        if n == 0 {
            Err(fail("the file is empty".into()))
        } else if head[..n] == HDF5_MAGIC[..] {
            read_h5(path).map_err(fail)
        } else if n >= 4 && (head[..4] == ZIP_MAGIC[..] || head[..4] == ZIP_EMPTY_MAGIC[..]) {
            read_keras_zip(path).map_err(fail)
        } else {
            Err(fail(
                "not a Keras model: the file starts with neither the HDF5 signature (.h5) nor \
                 the zip signature (.keras); save the model with model.save(\"model.keras\") \
                 or model.save(\"model.h5\")"
                    .into(),
            ))
        }
    }

    /// Fills `buf` as far as the file allows (a short file is not an error here).
    fn read_prefix(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() {
            match file.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    // ---------------------------------------------------------------- model config (JSON)

    /// One non-input layer of the model config.
    #[derive(Debug)]
    pub(super) struct ConfigLayer {
        pub(super) class_name: String,
        pub(super) name: String,
        pub(super) config: Value,
    }

    /// The non-input layers of a model config, in model order; `None` when the config has no
    /// layer list (a subclassed model), which is not an error for `.h5` files.
    pub(super) fn config_layers(model_config: &Value) -> Res<Option<Vec<ConfigLayer>>> {
        let inner = model_config.get("config");
        // Keras >= 2.2 nests the list under "layers"; older Keras 2 made "config" the list.
        let list = match inner.and_then(|c| c.get("layers")).or(inner) {
            Some(Value::Array(list)) => list,
            _ => return Ok(None),
        };
        let mut layers = Vec::with_capacity(list.len());
        let mut seen = HashSet::new();
        for (i, entry) in list.iter().enumerate() {
            let class_name = entry
                .get("class_name")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("layer #{i} of the model config has no class_name"))?;
            if class_name == "InputLayer" {
                continue;
            }
            let config = entry.get("config").cloned().unwrap_or(Value::Null);
            // Functional configs also carry the name beside the config.
            let name = config
                .get("name")
                .or_else(|| entry.get("name"))
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    format!("layer #{i} ({class_name}) of the model config has no name")
                })?;
            if !seen.insert(name.to_string()) {
                return Err(format!("the model config names two layers '{name}'"));
            }
            layers.push(ConfigLayer {
                class_name: class_name.to_string(),
                name: name.to_string(),
                config,
            });
        }
        Ok(Some(layers))
    }

    /// Keras's `to_snake_case`, which names a layer's group in a `.keras` weights file from its
    /// class (`MaxPooling2D` -> `max_pooling2d`), not from its (user-chosen) name.
    pub(super) fn snake_case(class_name: &str) -> String {
        let chars: Vec<char> = class_name
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        // `(.)([A-Z][a-z]+)` -> `\1_\2`
        let mut step1 = Vec::with_capacity(chars.len() + 4);
        let mut i = 0;
        while i < chars.len() {
            step1.push(chars[i]);
            let upper_then_lower = i + 2 < chars.len()
                && chars[i + 1].is_ascii_uppercase()
                && chars[i + 2].is_ascii_lowercase();
            if upper_then_lower {
                step1.push('_');
                let mut j = i + 1;
                step1.push(chars[j]);
                j += 1;
                while j < chars.len() && chars[j].is_ascii_lowercase() {
                    step1.push(chars[j]);
                    j += 1;
                }
                i = j;
            } else {
                i += 1;
            }
        }
        // `([a-z])([A-Z])` -> `\1_\2`
        let mut out = String::with_capacity(step1.len() + 4);
        let mut i = 0;
        while i < step1.len() {
            out.push(step1[i]);
            if i + 1 < step1.len()
                && step1[i].is_ascii_lowercase()
                && step1[i + 1].is_ascii_uppercase()
            {
                out.push('_');
                out.push(step1[i + 1]);
                i += 2;
            } else {
                i += 1;
            }
        }
        out.to_lowercase()
    }

    /// Keras's variable name from a stored path: the last component without Keras 2's `:0`.
    pub(super) fn variable_name(stored: &str) -> String {
        let leaf = stored.rsplit('/').next().unwrap_or(stored);
        match leaf.rsplit_once(':') {
            Some((base, idx)) if !base.is_empty() && idx.bytes().all(|b| b.is_ascii_digit()) => {
                base.to_string()
            }
            _ => leaf.to_string(),
        }
    }

    /// Names of a `.keras` layer's variables, which the file stores only by index.
    pub(super) fn zip_variable_names(layer: &ConfigLayer, count: usize) -> Vec<String> {
        let flag = |key: &str| {
            layer
                .config
                .get(key)
                .and_then(Value::as_bool)
                .unwrap_or(true)
        };
        let known: Vec<&str> = match layer.class_name.as_str() {
            "Dense" | "EinsumDense" | "Conv1D" | "Conv2D" | "Conv3D" | "Conv1DTranspose"
            | "Conv2DTranspose" | "Conv3DTranspose" => vec!["kernel", "bias"],
            "BatchNormalization" => {
                let mut v = Vec::new();
                if flag("scale") {
                    v.push("gamma");
                }
                if flag("center") {
                    v.push("beta");
                }
                v.extend(["moving_mean", "moving_variance"]);
                v
            }
            "Embedding" => vec!["embeddings"],
            _ => Vec::new(),
        };
        (0..count)
            .map(|i| {
                known
                    .get(i)
                    .map_or_else(|| i.to_string(), |s| s.to_string())
            })
            .collect()
    }

    // ---------------------------------------------------------------- HDF5 helpers

    fn h5err(what: &str) -> impl Fn(hdf5::Error) -> String + '_ {
        move |e| format!("{what}: {e}")
    }

    /// Reads every element of a string attribute whatever string flavour the writer used
    /// (h5py writes variable-length strings; old Keras 2 wrote fixed-length byte strings).
    /// An empty attribute of any type is an empty list: Keras writes a weightless layer's
    /// `weight_names` as an empty float64 array.
    fn read_strings(attr: &hdf5::Attribute, what: &str) -> Res<Vec<String>> {
        let count = attr.space().map_err(h5err(what))?.size();
        if count == 0 {
            return Ok(Vec::new());
        }
        let desc = attr
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(h5err(what))?;
        let too_big = |width: usize| {
            count
                .checked_mul(width.max(1))
                .is_none_or(|b| b > MAX_ATTR_BYTES)
        };
        if too_big(16) {
            return Err(format!(
                "{what}: attribute with {count} strings is too large"
            ));
        }
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        match desc {
            TypeDescriptor::VarLenUnicode => Ok(attr
                .read_raw::<VarLenUnicode>()
                .map_err(h5err(what))?
                .iter()
                .map(|s| lossy(s.as_bytes()))
                .collect()),
            TypeDescriptor::VarLenAscii => Ok(attr
                .read_raw::<VarLenAscii>()
                .map_err(h5err(what))?
                .iter()
                .map(|s| lossy(s.as_bytes()))
                .collect()),
            TypeDescriptor::FixedAscii(width) | TypeDescriptor::FixedUnicode(width) => {
                if too_big(width) {
                    return Err(format!(
                        "{what}: attribute of {count}×{width} bytes is too large"
                    ));
                }
                let unicode = matches!(desc, TypeDescriptor::FixedUnicode(_));
                // HDF5 converts a fixed string into any wider fixed string, so a few buffer
                // widths cover every attribute.
                match width {
                    0..=256 => read_fixed::<256>(attr, unicode, what),
                    257..=4096 => read_fixed::<4096>(attr, unicode, what),
                    4097..=65536 => read_fixed::<65536>(attr, unicode, what),
                    65537..=1048576 => read_fixed::<1048576>(attr, unicode, what),
                    _ => Err(format!("{what}: {width}-byte fixed strings are too long")),
                }
            }
            other => Err(format!("{what} holds {other}, not strings")),
        }
    }

    fn read_fixed<const N: usize>(
        attr: &hdf5::Attribute,
        unicode: bool,
        what: &str,
    ) -> Res<Vec<String>> {
        let lossy = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if unicode {
            Ok(attr
                .read_raw::<FixedUnicode<N>>()
                .map_err(h5err(what))?
                .iter()
                .map(|s| lossy(s.as_bytes()))
                .collect())
        } else {
            Ok(attr
                .read_raw::<FixedAscii<N>>()
                .map_err(h5err(what))?
                .iter()
                .map(|s| lossy(s.as_bytes()))
                .collect())
        }
    }

    /// A string-list attribute (`layer_names`, `weight_names`), or `None` when absent. Keras
    /// splits lists over 64 KiB into `name0`, `name1`, ...; those are joined back.
    fn string_list_attr(loc: &hdf5::Location, name: &str, what: &str) -> Res<Option<Vec<String>>> {
        let present = loc.attr_names().map_err(h5err(what))?;
        if present.iter().any(|a| a == name) {
            let attr = loc.attr(name).map_err(h5err(what))?;
            return read_strings(&attr, &format!("{what} attribute {name}")).map(Some);
        }
        let mut joined: Option<Vec<String>> = None;
        for chunk in 0.. {
            let chunk_name = format!("{name}{chunk}");
            if !present.contains(&chunk_name) {
                break;
            }
            let attr = loc.attr(&chunk_name).map_err(h5err(what))?;
            let part = read_strings(&attr, &format!("{what} attribute {chunk_name}"))?;
            joined.get_or_insert_with(Vec::new).extend(part);
        }
        Ok(joined)
    }

    /// A scalar string attribute (`keras_version`, `model_config`), or `None` when absent.
    fn string_attr(loc: &hdf5::Location, name: &str, what: &str) -> Res<Option<String>> {
        match string_list_attr(loc, name, what)? {
            None => Ok(None),
            Some(mut v) if v.len() == 1 => Ok(v.pop()),
            Some(v) => Err(format!(
                "{what} attribute {name} should hold one string, it holds {}",
                v.len()
            )),
        }
    }

    /// Reads one weight dataset as f32, refusing anything that is not floating point (an
    /// integer or quantised weight would silently change the model if converted).
    fn read_tensor(ds: &hdf5::Dataset, name: String, what: &str) -> Res<KerasTensor> {
        let space = ds.space().map_err(h5err(what))?;
        let shape = space.shape();
        let count = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= MAX_TENSOR_VALUES)
            .ok_or_else(|| {
                format!("{what} has shape {shape:?}, more than {MAX_TENSOR_VALUES} values")
            })?;
        if space.size() != count {
            return Err(format!("{what} has no data (null dataspace)"));
        }
        let desc = ds
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| format!("{what}: unsupported data type ({e}); weights must be float32"))?;
        let data = match desc {
            TypeDescriptor::Float(FloatSize::U4) => ds.read_raw::<f32>().map_err(h5err(what))?,
            TypeDescriptor::Float(FloatSize::U8) => ds
                .read_raw::<f64>()
                .map_err(h5err(what))?
                .into_iter()
                .map(|x| x as f32)
                .collect(),
            other => {
                return Err(format!(
                    "{what} is stored as {other}, not as float32/float64; quantised or \
                     integer weights cannot be imported, save the model in float32"
                ))
            }
        };
        if data.len() != count {
            return Err(format!(
                "{what} has {} values for shape {shape:?}",
                data.len()
            ));
        }
        Ok(KerasTensor { name, shape, data })
    }

    /// Paths (relative to `group`) of every dataset below it, for layers without
    /// `weight_names`; kernel first, then bias, then the rest by path, as Keras creates them.
    fn walk_datasets(group: &hdf5::Group, what: &str) -> Res<Vec<String>> {
        fn walk(
            g: &hdf5::Group,
            prefix: &str,
            depth: usize,
            what: &str,
            out: &mut Vec<String>,
        ) -> Res<()> {
            if depth > MAX_WALK_DEPTH {
                return Err(format!("{what}: groups nested too deeply"));
            }
            for member in g.member_names().map_err(h5err(what))? {
                let rel = if prefix.is_empty() {
                    member.clone()
                } else {
                    format!("{prefix}/{member}")
                };
                match g.loc_type_by_name(&member) {
                    Ok(hdf5::LocationType::Dataset) => out.push(rel),
                    Ok(hdf5::LocationType::Group) => {
                        let sub = g.group(&member).map_err(h5err(what))?;
                        walk(&sub, &rel, depth + 1, what, out)?;
                    }
                    _ => {}
                }
            }
            Ok(())
        }
        let mut out = Vec::new();
        walk(group, "", 0, what, &mut out)?;
        let rank = |p: &str| match variable_name(p).as_str() {
            "kernel" => 0,
            "bias" => 1,
            _ => 2,
        };
        out.sort_by(|a, b| rank(a).cmp(&rank(b)).then_with(|| a.cmp(b)));
        Ok(out)
    }

    // ---------------------------------------------------------------- legacy .h5

    fn read_h5(path: &Path) -> Res<KerasModel> {
        let file = hdf5::File::open(path)
            .map_err(|e| format!("cannot open as HDF5 (is the file truncated or damaged?): {e}"))?;
        let weights = if file.link_exists("model_weights") {
            file.group("model_weights")
                .map_err(|e| format!("/model_weights is not a group: {e}"))?
        } else if string_list_attr(&file, "layer_names", "/")?.is_some() {
            return Err(
                "this is a weights-only file (model.save_weights): it has no model \
                        config and no /model_weights group; save the whole model with \
                        model.save(\"model.h5\") or model.save(\"model.keras\")"
                    .into(),
            );
        } else {
            return Err(
                "no /model_weights group: this HDF5 file is not a Keras model saved \
                        with model.save(\"model.h5\")"
                    .into(),
            );
        };
        // Keras writes these at the root; the group's copies serve files that lost them.
        let keras_version = match string_attr(&file, "keras_version", "/")? {
            Some(v) => Some(v),
            None => string_attr(&weights, "keras_version", "/model_weights")?,
        };
        let backend = match string_attr(&file, "backend", "/")? {
            Some(v) => Some(v),
            None => string_attr(&weights, "backend", "/model_weights")?,
        };
        let config = match string_attr(&file, "model_config", "/")? {
            Some(text) => {
                let json: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("the model_config attribute is not valid JSON: {e}"))?;
                config_layers(&json)?
            }
            None => None,
        };
        let names = string_list_attr(&weights, "layer_names", "/model_weights")?
            .ok_or("/model_weights has no layer_names attribute, so the layer order is unknown")?;

        let mut keras2 = false;
        let mut by_name: HashMap<String, Vec<KerasTensor>> = HashMap::with_capacity(names.len());
        for name in &names {
            if by_name.contains_key(name) {
                return Err(format!("layer_names lists layer '{name}' twice"));
            }
            let what = format!("/model_weights/{name}");
            if name.is_empty() || !weights.link_exists(name) {
                return Err(format!(
                    "layer '{name}' is listed in layer_names but {what} does not exist"
                ));
            }
            let group = weights
                .group(name)
                .map_err(|e| format!("{what} is not a group: {e}"))?;
            let weight_names = match string_list_attr(&group, "weight_names", &what)? {
                Some(listed) => listed,
                None => walk_datasets(&group, &what)?,
            };
            let mut tensors = Vec::with_capacity(weight_names.len());
            for stored in &weight_names {
                let ds_what = format!("weight {what}/{stored}");
                if stored.is_empty() || !group.link_exists(stored) {
                    return Err(format!(
                        "layer '{name}' lists weight '{stored}' in weight_names but the file \
                         has no such dataset"
                    ));
                }
                let ds = group
                    .dataset(stored)
                    .map_err(|e| format!("{ds_what} is not a dataset: {e}"))?;
                keras2 |= stored.rsplit('/').next().is_some_and(|l| l.contains(':'));
                tensors.push(read_tensor(&ds, variable_name(stored), &ds_what)?);
            }
            by_name.insert(name.clone(), tensors);
        }

        let layers = match config {
            Some(config) => {
                let listed: HashSet<&str> = config.iter().map(|l| l.name.as_str()).collect();
                if let Some(extra) = names.iter().find(|n| !listed.contains(n.as_str())) {
                    return Err(format!(
                        "/model_weights holds layer '{extra}', which the model config does not \
                         contain; the file is inconsistent"
                    ));
                }
                config
                    .into_iter()
                    .map(|l| {
                        let weights = by_name.remove(&l.name).ok_or_else(|| {
                            format!(
                                "the model config lists layer '{}' ({}) but /model_weights has \
                                 no entry for it in layer_names",
                                l.name, l.class_name
                            )
                        })?;
                        Ok(KerasLayer {
                            name: l.name,
                            class_name: Some(l.class_name),
                            config: Some(l.config),
                            weights,
                        })
                    })
                    .collect::<Res<Vec<_>>>()?
            }
            None => names
                .into_iter()
                .map(|name| {
                    let weights = by_name.remove(&name).unwrap_or_default();
                    KerasLayer {
                        name,
                        class_name: None,
                        config: None,
                        weights,
                    }
                })
                .collect(),
        };
        let written_by_keras2 = keras_version
            .as_deref()
            .is_some_and(|v| v.starts_with("2.") || v.starts_with("1."));
        Ok(KerasModel {
            layers,
            keras_version,
            backend,
            format: if keras2 || written_by_keras2 {
                KerasFormat::H5Keras2
            } else {
                KerasFormat::H5Keras3
            },
        })
    }

    // ---------------------------------------------------------------- .keras zip

    /// A temporary file removed when dropped: the HDF5 library reads only from paths (the
    /// file-image API is not exposed by `hdf5-metno`), so `model.weights.h5` is extracted.
    pub(super) struct TempPath(pub(super) PathBuf);

    impl TempPath {
        /// Creates a new, empty file with a name no other process or thread is using.
        pub(super) fn create(suffix: &str) -> std::io::Result<(Self, std::fs::File)> {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let mut last_err = None;
            for _ in 0..16 {
                let path = std::env::temp_dir().join(format!(
                    "auralguard-keras-{}-{nanos}-{}{suffix}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                ));
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(f) => return Ok((TempPath(path), f)),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last_err = Some(e),
                    Err(e) => return Err(e),
                }
            }
            Err(last_err.unwrap_or_else(|| std::io::Error::other("no unique temporary name")))
        }
    }

    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    type ZipReader = std::io::BufReader<std::fs::File>;
    type Zip = zip::ZipArchive<ZipReader>;

    fn zip_entry<'a>(zip: &'a mut Zip, name: &str) -> Res<zip::read::ZipFile<'a, ZipReader>> {
        zip.by_name(name).map_err(|e| match e {
            zip::result::ZipError::FileNotFound => format!(
                "the .keras archive has no {name}; it was not written by Keras 3's \
                 model.save(\"model.keras\")"
            ),
            other => format!("cannot read {name} from the .keras archive: {other}"),
        })
    }

    fn read_json_entry(zip: &mut Zip, name: &str) -> Res<Value> {
        let entry = zip_entry(zip, name)?;
        let mut buf = Vec::new();
        entry
            .take(MAX_JSON_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|e| format!("cannot read {name} from the .keras archive: {e}"))?;
        if buf.len() as u64 > MAX_JSON_BYTES {
            return Err(format!("{name} is larger than {MAX_JSON_BYTES} bytes"));
        }
        serde_json::from_slice(&buf).map_err(|e| format!("{name} is not valid JSON: {e}"))
    }

    fn extract_entry(zip: &mut Zip, name: &str) -> Res<TempPath> {
        let entry = zip_entry(zip, name)?;
        let (tmp, file) = TempPath::create(".weights.h5").map_err(|e| {
            format!(
                "cannot create a temporary file in {} to extract {name}: {e}",
                std::env::temp_dir().display()
            )
        })?;
        let mut out = std::io::BufWriter::new(file);
        let copied = std::io::copy(&mut entry.take(MAX_WEIGHTS_BYTES + 1), &mut out)
            .map_err(|e| format!("cannot extract {name} from the .keras archive: {e}"))?;
        if copied > MAX_WEIGHTS_BYTES {
            return Err(format!("{name} is larger than {MAX_WEIGHTS_BYTES} bytes"));
        }
        out.flush()
            .map_err(|e| format!("cannot write the temporary copy of {name}: {e}"))?;
        Ok(tmp)
    }

    fn read_keras_zip(path: &Path) -> Res<KerasModel> {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file)).map_err(|e| {
            format!("not a readable zip archive (is the .keras file truncated?): {e}")
        })?;
        let config = read_json_entry(&mut zip, "config.json")?;
        let keras_version = match zip.index_for_name("metadata.json") {
            Some(_) => read_json_entry(&mut zip, "metadata.json")?
                .get("keras_version")
                .and_then(Value::as_str)
                .map(str::to_string),
            None => None,
        };
        let layers_cfg = config_layers(&config)?.ok_or(
            "config.json has no layer list; only Sequential and Functional models can be read",
        )?;

        // Declared before `h5` so the HDF5 file is closed before the copy is removed.
        let tmp = extract_entry(&mut zip, "model.weights.h5")?;
        let h5 = hdf5::File::open(&tmp.0)
            .map_err(|e| format!("model.weights.h5 in the archive is not readable HDF5: {e}"))?;
        if !h5.link_exists("layers") {
            return Err("model.weights.h5 has no /layers group".into());
        }
        let root = h5
            .group("layers")
            .map_err(|e| format!("model.weights.h5: /layers is not a group: {e}"))?;

        let mut used: HashMap<String, usize> = HashMap::new();
        let mut layers = Vec::with_capacity(layers_cfg.len());
        for layer in layers_cfg {
            // Keras names each group after the class with a per-class counter
            // (conv2d, conv2d_1, ...); older writers used the layer name.
            let base = snake_case(&layer.class_name);
            let key = match used.get_mut(&base) {
                Some(n) => {
                    *n += 1;
                    format!("{base}_{n}")
                }
                None => {
                    used.insert(base.clone(), 0);
                    base
                }
            };
            let group_name = [key.as_str(), layer.name.as_str()]
                .into_iter()
                .find(|k| !k.is_empty() && root.link_exists(k))
                .ok_or_else(|| {
                    format!(
                        "model.weights.h5 has no weights for layer '{}' ({}): looked for \
                         /layers/{key}",
                        layer.name, layer.class_name
                    )
                })?;
            let what = format!("/layers/{group_name}");
            let group = root
                .group(group_name)
                .map_err(|e| format!("model.weights.h5: {what} is not a group: {e}"))?;
            let mut tensors = Vec::new();
            if group.link_exists("vars") {
                let vars = group
                    .group("vars")
                    .map_err(|e| format!("model.weights.h5: {what}/vars is not a group: {e}"))?;
                let mut indices: Vec<usize> = vars
                    .member_names()
                    .map_err(h5err(&what))?
                    .iter()
                    .filter_map(|n| n.parse().ok())
                    .collect();
                indices.sort_unstable();
                let names = zip_variable_names(&layer, indices.len());
                for (i, var_name) in indices.into_iter().zip(names) {
                    let ds_what = format!("weight {what}/vars/{i} of layer '{}'", layer.name);
                    let ds = vars
                        .dataset(&i.to_string())
                        .map_err(|e| format!("{ds_what} is not a dataset: {e}"))?;
                    tensors.push(read_tensor(&ds, var_name, &ds_what)?);
                }
            }
            layers.push(KerasLayer {
                name: layer.name,
                class_name: Some(layer.class_name),
                config: Some(layer.config),
                weights: tensors,
            });
        }
        drop(root);
        drop(h5);
        drop(tmp);
        Ok(KerasModel {
            layers,
            keras_version,
            backend: None,
            format: KerasFormat::KerasZip,
        })
    }
}

#[cfg(all(test, feature = "keras"))]
mod tests {
    use super::reader::{
        config_layers, snake_case, variable_name, zip_variable_names, TempPath, HDF5_MAGIC,
        ZIP_MAGIC,
    };
    use super::*;
    use hdf5_metno as hdf5;
    use hdf5_metno::types::VarLenUnicode;
    use std::io::Write;
    use std::path::PathBuf;

    const SEED_NAMES: [&str; 7] = [
        "conv2d",
        "conv2d_1",
        "max_pooling2d",
        "flatten",
        "dense",
        "dense_1",
        "dense_2",
    ];
    const SEED_CLASSES: [&str; 7] = [
        "Conv2D",
        "Conv2D",
        "MaxPooling2D",
        "Flatten",
        "Dense",
        "Dense",
        "Dense",
    ];
    const SEED_ACTIVATIONS: [Option<&str>; 7] = [
        Some("relu"),
        Some("relu"),
        None,
        None,
        Some("relu"),
        Some("relu"),
        Some("sigmoid"),
    ];
    const SEED_SHAPES: [&[&[usize]]; 7] = [
        &[&[3, 3, 1, 16], &[16]],
        &[&[3, 3, 16, 16], &[16]],
        &[],
        &[],
        &[&[230_144, 32], &[32]],
        &[&[32, 16], &[16]],
        &[&[16, 1], &[1]],
    ];

    /// The parity fixture `name`: checked in under `testdata/parity`, or written by real Keras
    /// into `testdata/generated/keras` by `scripts/install-keras-test-deps.sh`. Missing, the test
    /// prints `SKIP:` and returns, or fails under `AURALGUARD_NO_SKIP=1` (as `scripts/test.sh`
    /// runs it), so a full run proves these checks ran.
    fn fixture(name: &str) -> Option<PathBuf> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let candidates = [
            root.join("testdata/parity").join(name),
            root.join("testdata/generated/keras").join(name),
        ];
        let found = candidates.into_iter().find(|p| p.is_file());
        if found.is_none() {
            let why =
                format!("Keras fixture {name} is missing: run scripts/install-keras-test-deps.sh");
            if std::env::var("AURALGUARD_NO_SKIP").is_ok_and(|v| v == "1") {
                panic!("required test could not run (AURALGUARD_NO_SKIP=1): {why}");
            }
            eprintln!("SKIP: {why}");
        }
        found
    }

    /// A temporary file with `bytes`, removed when the guard drops.
    fn temp_with(suffix: &str, bytes: &[u8]) -> TempPath {
        let (tmp, mut f) = TempPath::create(suffix).unwrap();
        f.write_all(bytes).unwrap();
        tmp
    }

    /// A new, empty temporary path for a test to create a file at.
    fn temp_path(suffix: &str) -> TempPath {
        let (tmp, f) = TempPath::create(suffix).unwrap();
        drop(f);
        std::fs::remove_file(&tmp.0).unwrap();
        tmp
    }

    fn reason(path: &Path) -> String {
        match read_keras_model(path) {
            Err(Error::KerasImport { path: p, reason }) => {
                assert_eq!(p, path);
                reason
            }
            other => panic!("expected a KerasImport error, got {other:?}"),
        }
    }

    fn check_seed(model: &KerasModel) {
        let names: Vec<&str> = model.layers.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, SEED_NAMES);
        for (i, layer) in model.layers.iter().enumerate() {
            assert_eq!(
                layer.class_name.as_deref(),
                Some(SEED_CLASSES[i]),
                "{}",
                layer.name
            );
            let config = layer.config.as_ref().unwrap();
            assert_eq!(config["name"], layer.name.as_str());
            assert_eq!(
                config.get("activation").and_then(|a| a.as_str()),
                SEED_ACTIVATIONS[i],
                "{}",
                layer.name
            );
            let shapes: Vec<&[usize]> = layer.weights.iter().map(|t| t.shape.as_slice()).collect();
            assert_eq!(shapes, SEED_SHAPES[i], "{}", layer.name);
            let tensor_names: Vec<&str> = layer.weights.iter().map(|t| t.name.as_str()).collect();
            let expected: &[&str] = if SEED_SHAPES[i].is_empty() {
                &[]
            } else {
                &["kernel", "bias"]
            };
            assert_eq!(tensor_names, expected, "{}", layer.name);
            for t in &layer.weights {
                assert_eq!(t.data.len(), t.shape.iter().product::<usize>());
            }
        }
        let pool = model.layers[2].config.as_ref().unwrap();
        assert_eq!(pool["pool_size"], serde_json::json!([2, 2]));
        assert_eq!(pool["strides"], serde_json::json!([2, 2]));
        assert_eq!(model.layers[0].config.as_ref().unwrap()["padding"], "valid");
    }

    #[test]
    fn the_three_layouts_read_as_the_seed_stack_with_identical_weights() {
        let (Some(k3), Some(k2), Some(zip)) = (
            fixture("seed_random.h5"),
            fixture("seed_random_keras2.h5"),
            fixture("seed_random.keras"),
        ) else {
            return;
        };
        let k3 = read_keras_model(&k3).unwrap();
        let k2 = read_keras_model(&k2).unwrap();
        let zip = read_keras_model(&zip).unwrap();

        assert_eq!(k3.format, KerasFormat::H5Keras3);
        assert_eq!(k2.format, KerasFormat::H5Keras2);
        assert_eq!(zip.format, KerasFormat::KerasZip);
        assert_eq!(k3.keras_version.as_deref(), Some("3.15.1"));
        assert!(k2.keras_version.as_deref().unwrap().starts_with("2."));
        assert_eq!(zip.keras_version.as_deref(), Some("3.15.1"));
        assert_eq!(k3.backend.as_deref(), Some("tensorflow"));
        assert_eq!(k2.backend.as_deref(), Some("tensorflow"));
        assert_eq!(zip.backend, None);

        for model in [&k3, &k2, &zip] {
            check_seed(model);
        }
        for other in [&k2, &zip] {
            for (a, b) in k3.layers.iter().zip(&other.layers) {
                for (ta, tb) in a.weights.iter().zip(&b.weights) {
                    let same = ta.data.len() == tb.data.len()
                        && ta
                            .data
                            .iter()
                            .zip(&tb.data)
                            .all(|(x, y)| x.to_bits() == y.to_bits());
                    assert!(same, "{}/{} differs between layouts", a.name, ta.name);
                }
            }
        }
        // Random weights, not zeros: the comparison above compared something.
        assert!(k3.layers[0].weights[0].data.iter().any(|&x| x != 0.0));
    }

    #[test]
    fn the_layout_is_chosen_by_content_not_extension() {
        let Some(src) = fixture("seed_random_keras2.h5") else {
            return;
        };
        let renamed = temp_path(".keras");
        std::fs::copy(&src, &renamed.0).unwrap();
        let model = read_keras_model(&renamed.0).unwrap();
        assert_eq!(model.format, KerasFormat::H5Keras2);
        assert_eq!(model.layers.len(), 7);
    }

    #[test]
    fn empty_text_and_missing_files_are_refused_cleanly() {
        let empty = temp_with(".h5", b"");
        assert!(reason(&empty.0).contains("empty"));
        let text = temp_with(".keras", b"this is a text file, not a model\n");
        assert!(reason(&text.0).contains("neither the HDF5 signature"));
        let short = temp_with(".h5", b"PK");
        assert!(reason(&short.0).contains("neither"));
        let missing = temp_path(".h5");
        let err = read_keras_model(&missing.0).unwrap_err();
        assert_eq!(err.code(), "io_error", "{err}");
    }

    #[test]
    fn truncated_and_garbled_files_are_errors_not_panics() {
        let mut junk_h5 = HDF5_MAGIC.to_vec();
        junk_h5.extend_from_slice(&[0xAB; 300]);
        let f = temp_with(".h5", &junk_h5);
        assert!(reason(&f.0).contains("HDF5"));

        let mut junk_zip = ZIP_MAGIC.to_vec();
        junk_zip.extend_from_slice(&[1; 60]);
        let f = temp_with(".keras", &junk_zip);
        assert!(reason(&f.0).contains("zip"));

        for name in [
            "seed_random.h5",
            "seed_random_keras2.h5",
            "seed_random.keras",
        ] {
            let Some(src) = fixture(name) else { continue };
            let bytes = std::fs::read(&src).unwrap();
            for keep in [8, 512, 4096, 100_000, bytes.len() / 2, bytes.len() - 100] {
                let f = temp_with(".bin", &bytes[..keep]);
                let r = read_keras_model(&f.0);
                assert!(r.is_err(), "{name} cut to {keep} bytes was accepted");
            }
        }
    }

    /// Writes a zip with the given (name, content) entries.
    fn write_zip(entries: &[(&str, &[u8])]) -> TempPath {
        let tmp = temp_path(".keras");
        let file = std::fs::File::create(&tmp.0).unwrap();
        let mut zip = zip::ZipWriter::new(file);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        for (name, content) in entries {
            zip.start_file(*name, opts).unwrap();
            zip.write_all(content).unwrap();
        }
        zip.finish().unwrap();
        tmp
    }

    const TINY_CONFIG: &str = r#"{"class_name": "Sequential", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"name": "input_layer"}},
        {"class_name": "Dense", "config": {"name": "head", "activation": "sigmoid"}}]}}"#;

    #[test]
    fn incomplete_keras_archives_name_what_is_missing() {
        let f = write_zip(&[]);
        assert!(reason(&f.0).contains("no config.json"));
        let f = write_zip(&[("config.json", b"{not json")]);
        assert!(reason(&f.0).contains("config.json is not valid JSON"));
        let f = write_zip(&[("config.json", TINY_CONFIG.as_bytes())]);
        assert!(reason(&f.0).contains("no model.weights.h5"));
        let f = write_zip(&[
            ("config.json", TINY_CONFIG.as_bytes()),
            ("model.weights.h5", b"not hdf5"),
        ]);
        assert!(reason(&f.0).contains("not readable HDF5"));
        let f = write_zip(&[("config.json", br#"{"class_name": "Custom", "config": {}}"#)]);
        assert!(reason(&f.0).contains("no layer list"));
    }

    /// Writes a string-array attribute the way h5py does (variable-length strings).
    fn string_attr(loc: &hdf5::Location, name: &str, values: &[&str]) {
        let data: Vec<VarLenUnicode> = values.iter().map(|v| v.parse().unwrap()).collect();
        loc.new_attr_builder()
            .with_data(data.as_slice())
            .create(name)
            .unwrap();
    }

    fn scalar_string_attr(loc: &hdf5::Location, name: &str, value: &str) {
        let v: VarLenUnicode = value.parse().unwrap();
        loc.new_attr::<VarLenUnicode>()
            .create(name)
            .unwrap()
            .write_scalar(&v)
            .unwrap();
    }

    /// A one-layer Keras-3-layout `.h5` whose `head` layer holds `kernel` (2×3) and `bias` (3).
    fn tiny_h5(edit: impl FnOnce(&hdf5::File, &hdf5::Group)) -> TempPath {
        let tmp = temp_path(".h5");
        let file = hdf5::File::create(&tmp.0).unwrap();
        scalar_string_attr(&file, "keras_version", "3.15.1");
        scalar_string_attr(&file, "model_config", TINY_CONFIG);
        let weights = file.create_group("model_weights").unwrap();
        string_attr(&weights, "layer_names", &["head"]);
        let layer = weights.create_group("head").unwrap();
        let vars = layer.create_group("sequential/head").unwrap();
        let kernel: Vec<f64> = (0..6).map(|i| i as f64 * 0.5).collect();
        vars.new_dataset::<f64>()
            .shape([2, 3])
            .create("kernel")
            .unwrap()
            .write_raw(&kernel)
            .unwrap();
        vars.new_dataset::<f32>()
            .shape([3])
            .create("bias")
            .unwrap()
            .write_raw(&[1.0f32, 2.0, 3.0])
            .unwrap();
        edit(&file, &layer);
        tmp
    }

    #[test]
    fn a_written_model_reads_back_with_float64_converted() {
        let f = tiny_h5(|_, layer| {
            string_attr(
                layer,
                "weight_names",
                &["sequential/head/kernel", "sequential/head/bias"],
            )
        });
        let model = read_keras_model(&f.0).unwrap();
        assert_eq!(model.format, KerasFormat::H5Keras3);
        assert_eq!(model.backend, None);
        assert_eq!(model.layers.len(), 1);
        let head = &model.layers[0];
        assert_eq!(head.class_name.as_deref(), Some("Dense"));
        assert_eq!(head.weights[0].name, "kernel");
        assert_eq!(head.weights[0].shape, vec![2, 3]);
        assert_eq!(head.weights[0].data, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
        assert_eq!(head.weights[1].name, "bias");
        assert_eq!(head.weights[1].data, vec![1.0, 2.0, 3.0]);
    }

    #[test]
    fn without_weight_names_kernel_still_comes_before_bias() {
        let f = tiny_h5(|_, _| {});
        let model = read_keras_model(&f.0).unwrap();
        let names: Vec<&str> = model.layers[0]
            .weights
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["kernel", "bias"]);
    }

    #[test]
    fn inconsistent_h5_files_are_explained() {
        let f = tiny_h5(|_, layer| string_attr(layer, "weight_names", &["sequential/head/gone"]));
        assert!(reason(&f.0).contains("no such dataset"));

        let f = tiny_h5(|file, _| {
            let w = file.group("model_weights").unwrap();
            w.delete_attr("layer_names").unwrap();
            string_attr(&w, "layer_names", &["head", "ghost"]);
        });
        assert!(reason(&f.0).contains("'ghost' is listed in layer_names"));

        let f = tiny_h5(|file, _| {
            file.delete_attr("model_config").unwrap();
            scalar_string_attr(file, "model_config", "{broken");
        });
        assert!(reason(&f.0).contains("not valid JSON"));

        let f = tiny_h5(|_, layer| {
            layer
                .new_dataset::<i32>()
                .shape([4])
                .create("counts")
                .unwrap();
            string_attr(layer, "weight_names", &["counts"]);
        });
        assert!(reason(&f.0).contains("not as float32"));

        let tmp = temp_path(".h5");
        drop(hdf5::File::create(&tmp.0).unwrap());
        assert!(reason(&tmp.0).contains("no /model_weights group"));

        let tmp = temp_path(".h5");
        {
            let file = hdf5::File::create(&tmp.0).unwrap();
            string_attr(&file, "layer_names", &["dense"]);
        }
        assert!(reason(&tmp.0).contains("weights-only"));
    }

    #[test]
    fn keras_naming_rules() {
        assert_eq!(snake_case("Conv2D"), "conv2d");
        assert_eq!(snake_case("MaxPooling2D"), "max_pooling2d");
        assert_eq!(snake_case("BatchNormalization"), "batch_normalization");
        assert_eq!(snake_case("Dense"), "dense");
        assert_eq!(
            snake_case("GlobalAveragePooling2D"),
            "global_average_pooling2d"
        );
        assert_eq!(snake_case("Conv2DTranspose"), "conv2d_transpose");
        assert_eq!(variable_name("conv2d/kernel:0"), "kernel");
        assert_eq!(variable_name("sequential/dense_1/bias"), "bias");
        assert_eq!(variable_name("moving_mean:12"), "moving_mean");
        assert_eq!(variable_name("odd:name"), "odd:name");

        let cfg: serde_json::Value = serde_json::from_str(TINY_CONFIG).unwrap();
        let layers = config_layers(&cfg).unwrap().unwrap();
        assert_eq!(layers.len(), 1, "the InputLayer is skipped");
        assert_eq!(zip_variable_names(&layers[0], 3), ["kernel", "bias", "2"]);
        let old_keras2 = serde_json::json!({"class_name": "Sequential", "config": [
            {"class_name": "Flatten", "config": {"name": "f"}}]});
        assert_eq!(config_layers(&old_keras2).unwrap().unwrap()[0].name, "f");
        let nameless = serde_json::json!({"config": {"layers": [{"class_name": "Dense"}]}});
        assert!(config_layers(&nameless).is_err());
    }
}
