//! `auralguard.json`: everything needed to turn audio into the tensor a model expects and its
//! output into a verdict.
//!
//! The manifest is strict on purpose (`deny_unknown_fields`, every field required unless it has a
//! documented default): a package written by a newer AuralGuard with semantics this build does
//! not know must be refused with a message naming the field, not half-understood.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::audio::WindowConfig;
use crate::error::{Error, Result};
use crate::features::FeatureConfig;

/// File name of the manifest inside a model package.
pub const MANIFEST_FILE: &str = "auralguard.json";

/// Manifest format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// How per-window fake probabilities combine into the file's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    /// Mean of the windows (the original service's rule).
    #[default]
    Mean,
    /// The most suspicious window decides (catches a short spliced fake in a long real call).
    Max,
}

/// Which architecture the weights belong to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchitectureRef {
    /// Registry name, e.g. `"seed-cnn"`.
    pub name: String,
    /// Revision of that architecture's definition.
    pub version: u32,
}

/// Window geometry in seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// Window length (15 s for the seed model).
    pub seconds: f64,
    /// Distance between window starts.
    pub hop_seconds: f64,
    /// A trailing window with less real audio than this is dropped unless it is the only one.
    pub min_final_seconds: f64,
}

impl Default for WindowSpec {
    fn default() -> Self {
        Self {
            seconds: 15.0,
            hop_seconds: 15.0,
            min_final_seconds: 1.0,
        }
    }
}

impl WindowSpec {
    /// Geometry in samples at `sample_rate`.
    pub fn to_config(&self, sample_rate: u32) -> Result<WindowConfig> {
        WindowConfig::from_seconds(
            self.seconds,
            self.hop_seconds,
            self.min_final_seconds,
            sample_rate,
        )
    }
}

/// Longest name, version or label (they appear in every verdict, metric and log line).
pub const MAX_NAME_BYTES: usize = 128;

/// Longest window: the networks are trained on seconds, and a window is held in memory per
/// batch slot, so a forged `window.seconds: 1e6` must be refused, not allocated.
pub const MAX_WINDOW_SECONDS: f64 = 60.0;

/// Most values of one window's network input (4 M: 16 MB a window; the shipped models use
/// 60 k).
pub const MAX_INPUT_VALUES: usize = 1 << 22;

/// Largest manifest file read.
const MAX_MANIFEST_BYTES: u64 = 1 << 20;

/// The parsed `auralguard.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format; must equal [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Model name (shown in verdicts, metrics and the registry).
    pub name: String,
    /// Model version (registry version or a local tag).
    pub version: String,
    /// Architecture the weights are for.
    pub architecture: ArchitectureRef,
    /// Front-end parameters.
    pub features: FeatureConfig,
    /// Windowing of long audio.
    pub window: WindowSpec,
    /// Label names; the network's sigmoid output is the probability of `labels[1]`.
    pub labels: [String; 2],
    /// Probability of `labels[1]` at or above which a file gets that label.
    pub threshold: f32,
    /// How window probabilities combine.
    pub aggregation: Aggregation,
    /// Human description (model card summary).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Provenance: data hash, hyper-parameters, source file, tool versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub training: BTreeMap<String, serde_json::Value>,
    /// Evaluation metrics recorded when the package was made.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics: BTreeMap<String, f64>,
}

impl Manifest {
    /// Reads and validates a manifest file.
    pub fn load(path: &Path) -> Result<Self> {
        if std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_MANIFEST_BYTES) {
            return Err(Error::manifest(
                path,
                format!("larger than {MAX_MANIFEST_BYTES} bytes"),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => {
                Error::manifest(path, format!("{MANIFEST_FILE} not found"))
            }
            _ => Error::io(path, e),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates manifest text; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let m: Manifest =
            serde_json::from_str(text).map_err(|e| Error::manifest(path, e.to_string()))?;
        m.validate(path)?;
        Ok(m)
    }

    /// Checks cross-field rules serde cannot express, naming the field at fault.
    pub fn validate(&self, path: &Path) -> Result<()> {
        if self.format_version != FORMAT_VERSION {
            return Err(Error::manifest(
                path,
                format!(
                    "format_version: {} is not supported by this build (expects {FORMAT_VERSION})",
                    self.format_version
                ),
            ));
        }
        if self.name.trim().is_empty() {
            return Err(Error::manifest(path, "name: must not be empty"));
        }
        for (field, value) in [
            ("name", &self.name),
            ("version", &self.version),
            ("labels[0]", &self.labels[0]),
            ("labels[1]", &self.labels[1]),
        ] {
            if value.len() > MAX_NAME_BYTES || value.chars().any(char::is_control) {
                return Err(Error::manifest(
                    path,
                    format!("{field}: at most {MAX_NAME_BYTES} bytes, no control characters"),
                ));
            }
        }
        if !(self.window.seconds > 0.0 && self.window.seconds <= MAX_WINDOW_SECONDS) {
            return Err(Error::manifest(
                path,
                format!("window.seconds: must be in (0, {MAX_WINDOW_SECONDS}]"),
            ));
        }
        if !(self.window.hop_seconds > 0.0 && self.window.hop_seconds <= self.window.seconds) {
            return Err(Error::manifest(
                path,
                "window.hop_seconds: must be in (0, window.seconds]",
            ));
        }
        if self.labels[0] == self.labels[1] || self.labels.iter().any(|l| l.is_empty()) {
            return Err(Error::manifest(
                path,
                "labels: need two distinct, non-empty names",
            ));
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            return Err(Error::manifest(path, "threshold: must be in (0, 1)"));
        }
        self.features
            .validate()
            .map_err(|e| Error::manifest(path, e.to_string().replace("invalid argument: ", "")))?;
        self.window
            .to_config(self.features.sample_rate)
            .map_err(|e| Error::manifest(path, format!("window: {e}")))?;
        let (rows, columns) = self.input_shape();
        if rows.saturating_mul(columns) > MAX_INPUT_VALUES {
            return Err(Error::manifest(
                path,
                format!(
                    "features and window give a {rows}×{columns} network input; at most \
                     {MAX_INPUT_VALUES} values are allowed"
                ),
            ));
        }
        Ok(())
    }

    /// Serialises to pretty JSON (the on-disk form).
    pub fn to_json(&self) -> String {
        // A manifest is plain data; serialisation cannot fail.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Network input `(rows, columns)` of one window: `(n_mels, frames)` of a log-mel, or the
    /// per-layer statistics of the Whisper front-end.
    pub fn input_shape(&self) -> (usize, usize) {
        let f = &self.features;
        let window = (self.window.seconds * f.sample_rate as f64).round() as usize;
        f.output_shape(window)
    }

    /// The label a window or file gets for a probability of `labels[1]`.
    pub fn label_for(&self, positive_probability: f32) -> &str {
        if positive_probability >= self.threshold {
            &self.labels[1]
        } else {
            &self.labels[0]
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample() -> Manifest {
        Manifest {
            format_version: 1,
            name: "m".into(),
            version: "1".into(),
            architecture: ArchitectureRef {
                name: "seed-cnn".into(),
                version: 1,
            },
            features: FeatureConfig::default(),
            window: WindowSpec::default(),
            labels: ["real".into(), "fake".into()],
            threshold: 0.5,
            aggregation: Aggregation::Mean,
            description: None,
            training: Default::default(),
            metrics: Default::default(),
        }
    }

    fn parse_err(v: serde_json::Value) -> String {
        Manifest::parse(&v.to_string(), Path::new("x/auralguard.json"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let back = Manifest::parse(&m.to_json(), Path::new("p")).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn missing_field_is_named() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v.as_object_mut().unwrap().remove("threshold");
        assert!(parse_err(v).contains("threshold"));
    }

    #[test]
    fn unknown_field_is_named() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["features"]["preemphasis"] = serde_json::json!(0.97);
        assert!(parse_err(v).contains("preemphasis"));
    }

    #[test]
    fn bad_values_are_named() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["threshold"] = serde_json::json!(1.5);
        assert!(parse_err(v).contains("threshold"));
        let mut v = serde_json::to_value(sample()).unwrap();
        v["features"]["fmax"] = serde_json::json!(9000.0);
        assert!(parse_err(v).contains("fmax"));
        let mut v = serde_json::to_value(sample()).unwrap();
        v["format_version"] = serde_json::json!(7);
        assert!(parse_err(v).contains("format_version"));
        let mut v = serde_json::to_value(sample()).unwrap();
        v["aggregation"] = serde_json::json!("median");
        assert!(parse_err(v).contains("median"));
    }

    #[test]
    fn labels_follow_threshold() {
        let m = sample();
        assert_eq!(m.label_for(0.5), "fake");
        assert_eq!(m.label_for(0.49), "real");
    }

    #[test]
    fn absurd_sizes_from_a_registry_are_refused_before_anything_is_allocated() {
        let cases: [(&str, serde_json::Value, &str); 8] = [
            ("/window/seconds", serde_json::json!(1e6), "window.seconds"),
            ("/window/hop_seconds", serde_json::json!(1e-9), "window"),
            ("/features/n_fft", serde_json::json!(1 << 30), "n_fft"),
            ("/features/n_mels", serde_json::json!(100_000), "n_mels"),
            (
                "/features/sample_rate",
                serde_json::json!(4_294_967_295u64),
                "sample_rate",
            ),
            (
                "/features/hop_length",
                serde_json::json!(1),
                "network input",
            ),
            ("/name", serde_json::json!("n".repeat(8 << 20)), "name"),
            ("/labels/1", serde_json::json!("fake\u{1b}[2J"), "labels[1]"),
        ];
        for (pointer, value, field) in cases {
            let mut v = serde_json::to_value(sample()).unwrap();
            *v.pointer_mut(pointer).unwrap() = value;
            let e = Manifest::parse(&v.to_string(), Path::new("p")).unwrap_err();
            assert!(e.to_string().contains(field), "{pointer}: {e}");
        }
    }
}
