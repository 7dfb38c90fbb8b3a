//! What a judgement looks like: the verdict JSON shared by the CLI and the HTTP API.
//!
//! Field names are a superset of the original service's response (`prediction`, `probability`,
//! `confidence`, `filename`, `processing_time_seconds`, `timestamp`), so its clients keep working.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::{Aggregation, Manifest};

/// Score of one window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WindowVerdict {
    /// Window start in seconds from the beginning of the file.
    pub start: f64,
    /// Window end in seconds (clipped to the audio's end for the last window).
    pub end: f64,
    /// Probability that this window is synthetic.
    pub fake_probability: f32,
}

/// Which model judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ModelInfo {
    /// Model name from the manifest.
    pub name: String,
    /// Model version from the manifest.
    pub version: String,
}

/// The log-mel the network saw, quantised to one byte per cell for display (the web page draws
/// it): `windows` blocks of `mels × frames` bytes, mel-major, 0 = −80 dB and 255 = 0 dB relative
/// to each window's peak (the model's own dB scale), base64-encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Spectrogram {
    /// Mel bands (rows), lowest first.
    pub mels: usize,
    /// Frames per window (columns).
    pub frames: usize,
    /// Windows included (the first ones of the audio).
    pub windows: usize,
    /// `windows × mels × frames` bytes, base64 (standard alphabet, padded).
    pub data: String,
}

impl Spectrogram {
    /// Lowest level shown: the features' `top_db` floor below each window's peak.
    const FLOOR_DB: f32 = -80.0;

    /// Quantises the first `max_windows` log-mels of `features` (each `mels × frames` dB values).
    pub fn from_log_mels(features: &[f32], mels: usize, frames: usize, max_windows: usize) -> Self {
        let per = mels * frames;
        let windows = features
            .len()
            .checked_div(per)
            .unwrap_or(0)
            .min(max_windows);
        let bytes: Vec<u8> = features[..windows * per]
            .iter()
            .map(|&db| {
                let x = ((db - Self::FLOOR_DB) / -Self::FLOOR_DB).clamp(0.0, 1.0);
                (x * 255.0).round() as u8
            })
            .collect();
        Self {
            mels,
            frames,
            windows,
            data: base64::engine::general_purpose::STANDARD.encode(bytes),
        }
    }
}

/// Something about the input that makes a verdict less trustworthy, said beside it rather than
/// hidden: the verdict is still given, and the caller decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Warning {
    /// Stable code: `truncated` (the file holds less audio than its header declares),
    /// `too_short` (less audio than the model can judge reliably) or `not_logged` (the
    /// prediction log could not keep the record; only with `serve --serve-unlogged`).
    pub code: String,
    /// What was found, with the numbers.
    pub message: String,
}

/// Judgement of one audio file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Verdict {
    /// The label: the manifest's second label (e.g. "fake") when `fake_probability ≥ threshold`.
    pub prediction: String,
    /// Probability of the predicted label.
    pub probability: f32,
    /// `|2p − 1|`: 0 at the decision boundary, 1 when certain.
    pub confidence: f32,
    /// Aggregated probability that the audio is synthetic.
    pub fake_probability: f32,
    /// File name (or upload name).
    pub filename: String,
    /// Length of the audio in seconds.
    pub duration_seconds: f64,
    /// Per-window scores, in time order.
    pub windows: Vec<WindowVerdict>,
    /// Model that produced the verdict.
    pub model: ModelInfo,
    /// Wall time from the first byte decoded to the verdict.
    pub processing_time_seconds: f64,
    /// When the verdict was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Request id (set by the HTTP server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// Reasons to trust this verdict less (absent when there are none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// The log-mel the network saw (HTTP `POST /predict?include=spectrogram` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spectrogram: Option<Spectrogram>,
}

/// Combines window probabilities with `rule`; `None` for an empty slice.
pub fn aggregate(probs: &[f32], rule: Aggregation) -> Option<f32> {
    if probs.is_empty() {
        return None;
    }
    Some(match rule {
        Aggregation::Mean => {
            probs.iter().map(|&p| p as f64).sum::<f64>() as f32 / probs.len() as f32
        }
        Aggregation::Max => probs.iter().copied().fold(f32::NEG_INFINITY, f32::max),
    })
}

impl Verdict {
    /// Builds a verdict from window scores, labelling with the manifest's labels and threshold.
    pub fn from_windows(
        filename: String,
        duration_seconds: f64,
        windows: Vec<WindowVerdict>,
        manifest: &Manifest,
        rule: Aggregation,
        threshold: f32,
        processing_time_seconds: f64,
    ) -> Self {
        let probs: Vec<f32> = windows.iter().map(|w| w.fake_probability).collect();
        let p = aggregate(&probs, rule).unwrap_or(0.0);
        let is_positive = p >= threshold;
        let prediction = manifest.labels[usize::from(is_positive)].clone();
        Self {
            prediction,
            probability: if is_positive { p } else { 1.0 - p },
            confidence: (2.0 * p - 1.0).abs(),
            fake_probability: p,
            filename,
            duration_seconds,
            windows,
            model: ModelInfo {
                name: manifest.name.clone(),
                version: manifest.version.clone(),
            },
            processing_time_seconds,
            timestamp: Some(
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
            request_id: None,
            warnings: Vec::new(),
            spectrogram: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregation_rules() {
        assert_eq!(aggregate(&[0.2, 0.4], Aggregation::Mean), Some(0.3));
        assert_eq!(aggregate(&[0.2, 0.9], Aggregation::Max), Some(0.9));
        assert_eq!(aggregate(&[], Aggregation::Max), None);
    }

    #[test]
    fn spectrogram_maps_the_db_range_onto_bytes_and_keeps_the_first_windows() {
        use base64::Engine as _;
        // Two windows of 2 mels × 3 frames.
        let f = [
            -80.0, -40.0, 0.0, -100.0, 5.0, -20.0, -80.0, -80.0, -80.0, -80.0, -80.0, 0.0,
        ];
        let s = Spectrogram::from_log_mels(&f, 2, 3, 8);
        assert_eq!((s.mels, s.frames, s.windows), (2, 3, 2));
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&s.data)
            .unwrap();
        assert_eq!(bytes, [0, 128, 255, 0, 255, 191, 0, 0, 0, 0, 0, 255]);
        let first = Spectrogram::from_log_mels(&f, 2, 3, 1);
        assert_eq!(first.windows, 1);
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(&first.data)
                .unwrap()
                .len(),
            6
        );
        assert_eq!(Spectrogram::from_log_mels(&f, 0, 0, 4).windows, 0);
    }
}
