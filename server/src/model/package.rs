//! Model packages: a folder with `auralguard.json` + `model.safetensors`.
//!
//! The same layout is used locally and as an MLflow artifact. Loading validates everything
//! before any inference can run (manifest fields, architecture name and revision, every tensor's
//! name, shape and dtype), so a bad package fails at start-up with a message, never mid-request.
//! Saving writes into a temporary sibling folder and renames it into place, so a crash never
//! leaves a half-written package behind.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::arch::{self, Classifier};
use super::manifest::{Manifest, MANIFEST_FILE};
use crate::error::{Error, Result};

/// File name of the weights inside a package.
pub const WEIGHTS_FILE: &str = "model.safetensors";

/// Largest safetensors header read (the JSON index of a package's tensors is a few kB).
const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Checks a safetensors file's header against the architecture's parameters: every name,
/// shape and dtype, nothing extra, and a file exactly as long as the header says, reading only
/// the header. What a version from the registry asks to allocate is then known and bounded
/// before a byte of weights is read.
pub fn check_weights_header(path: &Path, specs: &[arch::ParamSpec]) -> Result<()> {
    use std::io::Read;
    let bad = |why: String| Error::weights(path, why);
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut len = [0u8; 8];
    file.read_exact(&mut len)
        .map_err(|_| bad("shorter than a safetensors header".into()))?;
    let header_len = u64::from_le_bytes(len);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
        return Err(bad(format!(
            "a safetensors header of {header_len} bytes is not plausible"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| Error::io(path, e))?;
    let index: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| bad(format!("unreadable safetensors header: {e}")))?;
    let mut data_end = 0u64;
    for (name, entry) in &index {
        if name == "__metadata__" {
            continue;
        }
        let Some(spec) = specs.iter().find(|s| &s.name == name) else {
            return Err(bad(format!(
                "unexpected tensor '{name}' (written for another architecture?)"
            )));
        };
        let shape: Option<Vec<usize>> = entry["shape"]
            .as_array()
            .and_then(|a| a.iter().map(|d| d.as_u64().map(|d| d as usize)).collect());
        if shape.as_deref() != Some(spec.shape.as_slice()) {
            return Err(bad(format!(
                "tensor '{name}' has shape {}, expected {:?}",
                entry["shape"], spec.shape
            )));
        }
        if entry["dtype"] != "F32" {
            return Err(bad(format!(
                "tensor '{name}' is {}, expected f32",
                entry["dtype"]
            )));
        }
        let end = entry["data_offsets"][1].as_u64().unwrap_or(u64::MAX);
        data_end = data_end.max(end);
    }
    if let Some(missing) = specs.iter().find(|s| !index.contains_key(&s.name)) {
        return Err(bad(format!("tensor '{}' is missing", missing.name)));
    }
    if data_end.checked_add(8 + header_len) != Some(file_len) {
        return Err(bad(format!(
            "the header describes {data_end} bytes of tensors but the file holds {}",
            file_len - 8 - header_len
        )));
    }
    Ok(())
}

/// A model package on disk whose manifest has been read and validated.
#[derive(Debug, Clone)]
pub struct ModelPackage {
    dir: PathBuf,
    manifest: Manifest,
}

/// A package whose network is built and ready on a device.
pub struct LoadedModel {
    /// The package's manifest.
    pub manifest: Manifest,
    /// The network.
    pub classifier: Box<dyn Classifier>,
    /// Where it runs.
    pub device: Device,
    /// Folder it came from.
    pub dir: PathBuf,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("name", &self.manifest.name)
            .field("version", &self.manifest.version)
            .field("device", &self.device)
            .finish()
    }
}

impl ModelPackage {
    /// Opens the package in `dir` and validates its manifest and architecture.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::manifest(
                dir,
                "not a model package folder (expected a directory with auralguard.json and model.safetensors)",
            ));
        }
        let manifest_path = dir.join(MANIFEST_FILE);
        let manifest = Manifest::load(&manifest_path)?;
        let arch = arch::lookup(&manifest.architecture.name)?;
        if arch.version() != manifest.architecture.version {
            return Err(Error::manifest(
                &manifest_path,
                format!(
                    "architecture.version: {} revision {} is not supported (this build has revision {})",
                    arch.name(),
                    manifest.architecture.version,
                    arch.version()
                ),
            ));
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The package folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The validated manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Model input `(n_mels, frames)` implied by the manifest.
    pub fn input_shape(&self) -> (usize, usize) {
        self.manifest.input_shape()
    }

    /// Reads the weights onto `device`, checks them and builds the network.
    pub fn load(&self, device: &Device) -> Result<LoadedModel> {
        let path = self.dir.join(WEIGHTS_FILE);
        if !path.is_file() {
            return Err(Error::weights(&path, "file not found"));
        }
        let arch = arch::lookup(&self.manifest.architecture.name)?;
        let (n_mels, frames) = self.input_shape();
        let specs = arch.params(n_mels, frames)?;
        // The header alone says what the file holds: refuse a wrong one before reading gigabytes.
        check_weights_header(&path, &specs)?;
        let weights = candle_core::safetensors::load(&path, device)
            .map_err(|e| Error::weights(&path, e.to_string()))?;
        // Validate against the real file name first so messages point at it.
        arch::take_params(weights.clone(), &specs, &path)?;
        let classifier = arch.build(weights, n_mels, frames, device)?;
        Ok(LoadedModel {
            manifest: self.manifest.clone(),
            classifier,
            device: device.clone(),
            dir: self.dir.clone(),
        })
    }

    /// Writes a package atomically: everything goes to a temporary sibling, then one rename.
    ///
    /// Refuses to overwrite an existing non-empty folder unless `overwrite` is set.
    pub fn save(
        dir: &Path,
        manifest: &Manifest,
        tensors: &HashMap<String, Tensor>,
        overwrite: bool,
    ) -> Result<Self> {
        manifest.validate(&dir.join(MANIFEST_FILE))?;
        let arch = arch::lookup(&manifest.architecture.name)?;
        let (n_mels, frames) = manifest.input_shape();
        arch::take_params(tensors.clone(), &arch.params(n_mels, frames)?, dir)?;
        let exists_non_empty = dir
            .read_dir()
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if exists_non_empty && !overwrite {
            return Err(Error::InvalidArgument(format!(
                "{} already exists and is not empty (pass --force to replace it)",
                dir.display()
            )));
        }
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let stem = dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into());
        let tmp = parent.join(format!(".{stem}.tmp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let result = (|| {
            std::fs::write(tmp.join(MANIFEST_FILE), manifest.to_json() + "\n")
                .map_err(|e| Error::io(&tmp, e))?;
            candle_core::safetensors::save(tensors, tmp.join(WEIGHTS_FILE))
                .map_err(|e| Error::weights(&tmp.join(WEIGHTS_FILE), e.to_string()))?;
            if dir.exists() {
                std::fs::remove_dir_all(dir).map_err(|e| Error::io(dir, e))?;
            }
            std::fs::rename(&tmp, dir).map_err(|e| Error::io(dir, e))
        })();
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        result?;
        Self::open(dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest::WindowSpec;

    fn small_manifest() -> Manifest {
        Manifest {
            name: "tiny".into(),
            version: "3".into(),
            features: crate::features::FeatureConfig {
                n_mels: 8,
                fmax: 4000.0,
                ..Default::default()
            },
            window: WindowSpec {
                seconds: 0.5,
                hop_seconds: 0.5,
                min_final_seconds: 0.1,
            },
            ..crate::model::manifest::tests::sample()
        }
    }

    fn tensors(m: &Manifest) -> HashMap<String, Tensor> {
        let (n_mels, frames) = m.input_shape();
        let seed = crate::model::arch::seed_cnn::SeedCnn;
        crate::model::arch::random_weights(&seed, n_mels, frames, 0.1, &Device::Cpu).unwrap()
    }

    #[test]
    fn save_then_load_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pkg");
        let m = small_manifest();
        let pkg = ModelPackage::save(&dir, &m, &tensors(&m), false).unwrap();
        assert_eq!(pkg.manifest(), &m);
        assert_eq!(pkg.input_shape(), (8, 16));
        let loaded = pkg.load(&Device::Cpu).unwrap();
        let x = Tensor::zeros((2, 8, 16), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert_eq!(loaded.classifier.forward(&x).unwrap().dims(), &[2]);
        // No temporary folder is left behind.
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1);
        // A second save without overwrite is refused.
        assert!(ModelPackage::save(&dir, &m, &tensors(&m), false).is_err());
        assert!(ModelPackage::save(&dir, &m, &tensors(&m), true).is_ok());
    }

    #[test]
    fn unknown_architecture_is_refused_with_its_name() {
        let tmp = tempfile::tempdir().unwrap();
        let mut m = small_manifest();
        m.architecture.name = "transformer-xl".into();
        std::fs::write(tmp.path().join(MANIFEST_FILE), m.to_json()).unwrap();
        let e = ModelPackage::open(tmp.path()).unwrap_err();
        assert_eq!(e.code(), "unknown_architecture");
        assert!(e.to_string().contains("transformer-xl"));
    }

    #[test]
    fn missing_weights_file_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(MANIFEST_FILE), small_manifest().to_json()).unwrap();
        let e = ModelPackage::open(tmp.path())
            .unwrap()
            .load(&Device::Cpu)
            .unwrap_err();
        assert!(e.to_string().contains("model.safetensors"), "{e}");
    }

    #[test]
    fn corrupt_weights_file_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(MANIFEST_FILE), small_manifest().to_json()).unwrap();
        std::fs::write(tmp.path().join(WEIGHTS_FILE), b"not safetensors").unwrap();
        let e = ModelPackage::open(tmp.path())
            .unwrap()
            .load(&Device::Cpu)
            .unwrap_err();
        assert_eq!(e.code(), "invalid_weights");
    }
}
