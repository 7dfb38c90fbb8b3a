//! Log-mel features of a dataset, computed once and cached on disk.
//!
//! Training and evaluation see exactly what the server sees: the same decoder, resampler,
//! windowing ([`AudioWindows`]) and front-end ([`FrontEnd`]). Each clip's windows are
//! cached under a key made of the clip's content hash and every parameter that shapes its
//! features, so a second run (or a run with other hyper-parameters) reads them back instead of
//! decoding again, and a changed file or setting can never reuse stale features. Files are
//! written to a temporary name and renamed, so an interrupted run leaves no half-written entry.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::dataset::Clip;
use crate::audio::{AudioWindows, WindowConfig};
use crate::error::{Error, Result};
use crate::features::{FeatureConfig, FrontEnd};

/// Bumped whenever the meaning of cached bytes changes.
const CACHE_FORMAT: &str = "auralguard-features-v1";

/// Windows of many clips, laid end to end: window `i` is `data[i*m*t .. (i+1)*m*t]`.
#[derive(Debug, Clone, Default)]
pub struct FeatureSet {
    /// Mel bands per window.
    pub n_mels: usize,
    /// Frames per window.
    pub frames: usize,
    /// Log-mels, `[windows, n_mels, frames]` row-major.
    pub data: Vec<f32>,
    /// 1.0 for fake, 0.0 for real, per window.
    pub labels: Vec<f32>,
    /// Index into [`FeatureSet::clips`] of each window's clip.
    pub clip_of_window: Vec<usize>,
    /// Per clip: (filename, fake, source, content sha256).
    pub clips: Vec<ClipInfo>,
}

/// What the feature set remembers of each clip.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipInfo {
    /// The CSV's filename field.
    pub filename: String,
    /// The label.
    pub fake: bool,
    /// The source column.
    pub source: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
}

impl FeatureSet {
    /// Number of windows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when there are no windows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per window.
    pub fn window_len(&self) -> usize {
        self.n_mels * self.frames
    }

    /// Window `i`'s log-mel.
    pub fn window(&self, i: usize) -> &[f32] {
        let n = self.window_len();
        &self.data[i * n..(i + 1) * n]
    }

    /// The clips at `indices` (in that order) with their windows: one extraction of a whole
    /// corpus serves every fold of a cross-validation.
    pub fn subset(&self, indices: &[usize]) -> FeatureSet {
        let mut windows_of = vec![Vec::new(); self.clips.len()];
        for (w, &c) in self.clip_of_window.iter().enumerate() {
            windows_of[c].push(w);
        }
        let mut out = FeatureSet {
            n_mels: self.n_mels,
            frames: self.frames,
            ..Default::default()
        };
        for &c in indices {
            let Some(info) = self.clips.get(c) else {
                continue;
            };
            let new = out.clips.len();
            for &w in &windows_of[c] {
                out.data.extend_from_slice(self.window(w));
                out.labels.push(self.labels[w]);
                out.clip_of_window.push(new);
            }
            out.clips.push(info.clone());
        }
        out
    }
}

/// How clips become windows.
#[derive(Debug, Clone)]
pub struct FeatureSpec {
    /// Front-end parameters.
    pub features: FeatureConfig,
    /// Window geometry at the feature sample rate.
    pub window: WindowConfig,
    /// Folder of cached windows; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
}

impl FeatureSpec {
    fn key(&self, sha256: &str) -> String {
        let mut h = Sha256::new();
        h.update(CACHE_FORMAT);
        h.update(serde_json::to_string(&self.features).unwrap_or_default());
        h.update(format!(
            "{}/{}/{}",
            self.window.len, self.window.hop, self.window.min_samples
        ));
        h.update(sha256);
        hex::encode(h.finalize())
    }
}

/// Features of `clips`, computed in parallel (cached entries are read back). `progress` is
/// called once per finished clip.
pub fn extract(
    clips: &[&Clip],
    spec: &FeatureSpec,
    progress: &(dyn Fn() + Sync),
) -> Result<FeatureSet> {
    let extractor = FrontEnd::new(spec.features.clone(), &candle_core::Device::Cpu)?;
    let (m, t) = extractor.output_shape(spec.window.len);
    if let Some(dir) = &spec.cache_dir {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let per_clip: Vec<Result<(ClipInfo, Vec<f32>)>> = clips
        .par_iter()
        .map(|clip| {
            let out = clip_windows(clip, spec, &extractor, m * t);
            progress();
            out
        })
        .collect();
    let mut set = FeatureSet {
        n_mels: m,
        frames: t,
        ..Default::default()
    };
    for (i, r) in per_clip.into_iter().enumerate() {
        let (info, data) = r?;
        let n = data.len() / (m * t);
        set.labels
            .extend(std::iter::repeat_n(if info.fake { 1.0 } else { 0.0 }, n));
        set.clip_of_window.extend(std::iter::repeat_n(i, n));
        set.data.extend_from_slice(&data);
        set.clips.push(info);
    }
    Ok(set)
}

/// One clip's windows (from the cache when present).
fn clip_windows(
    clip: &Clip,
    spec: &FeatureSpec,
    extractor: &FrontEnd,
    per: usize,
) -> Result<(ClipInfo, Vec<f32>)> {
    let bytes = std::fs::read(&clip.path).map_err(|e| Error::io(&clip.path, e))?;
    let sha256 = hex::encode(Sha256::digest(&bytes));
    let info = ClipInfo {
        filename: clip.filename.clone(),
        fake: clip.fake,
        source: clip.source.clone(),
        sha256,
    };
    let cached = spec
        .cache_dir
        .as_ref()
        .map(|d| d.join(format!("{}.f32", spec.key(&info.sha256))));
    if let Some(path) = &cached {
        if let Some(data) = read_cached(path, per) {
            return Ok((info, data));
        }
    }
    let decoder = crate::audio::MonoDecoder::from_source(crate::audio::AudioSource::Bytes {
        name: clip.filename.clone(),
        data: bytes,
    })?;
    let mut windows = AudioWindows::new(decoder, spec.window, spec.features.sample_rate)?;
    let mut signals = Vec::new();
    while let Some(w) = windows.next_window()? {
        signals.push(w.samples);
    }
    let refs: Vec<&[f32]> = signals.iter().map(Vec::as_slice).collect();
    let mut data = vec![0.0; refs.len() * per];
    extractor.compute_many(&refs, &mut data)?;
    if let Some(path) = &cached {
        write_cached(path, &data)?;
    }
    Ok((info, data))
}

fn read_cached(path: &Path, per: usize) -> Option<Vec<f32>> {
    let bytes = std::fs::read(path).ok()?;
    if bytes.is_empty() || bytes.len() % (per * 4) != 0 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
    )
}

/// Writes one clip's features by write-then-rename. The temporary name is unique per process
/// *and* per call: two identical clips in one corpus share a cache key and are extracted on
/// different threads at the same moment, and a shared temporary file would be truncated under
/// the other writer. The content is the same either way, so the second rename simply wins.
fn write_cached(path: &Path, data: &[f32]) -> Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&tmp, bytes).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone_wav(dir: &Path, name: &str, seconds: f32) -> Clip {
        let sr = 16_000u32;
        let n = (seconds * sr as f32) as usize;
        let samples: Vec<f32> = (0..n).map(|i| (i as f32 * 0.05).sin() * 0.25).collect();
        let path = dir.join(name);
        crate::audio::wav::write_pcm16(&path, sr, 1, &samples).unwrap();
        Clip {
            path,
            filename: name.into(),
            fake: name.starts_with('f'),
            split: "train".into(),
            source: "tone".into(),
            speaker: None,
            family: None,
        }
    }

    #[test]
    fn a_subset_keeps_each_clips_windows_in_the_order_asked() {
        let dir = tempfile::tempdir().unwrap();
        let clips = [
            tone_wav(dir.path(), "fa.wav", 2.5),
            tone_wav(dir.path(), "rb.wav", 0.7),
            tone_wav(dir.path(), "fc.wav", 1.2),
        ];
        let spec = FeatureSpec {
            features: FeatureConfig::default(),
            window: WindowConfig::from_seconds(1.0, 1.0, 0.25, 16_000).unwrap(),
            cache_dir: None,
        };
        let refs: Vec<&Clip> = clips.iter().collect();
        let all = extract(&refs, &spec, &|| {}).unwrap();
        let sub = all.subset(&[2, 0]);
        let names: Vec<&str> = sub.clips.iter().map(|c| c.filename.as_str()).collect();
        assert_eq!(names, ["fc.wav", "fa.wav"]);
        let of = |set: &FeatureSet, c: usize| -> Vec<Vec<f32>> {
            (0..set.len())
                .filter(|&w| set.clip_of_window[w] == c)
                .map(|w| set.window(w).to_vec())
                .collect()
        };
        assert_eq!(of(&sub, 0), of(&all, 2));
        assert_eq!(of(&sub, 1), of(&all, 0));
        assert_eq!(sub.labels.len(), sub.clip_of_window.len());
        assert!(sub.labels.iter().all(|&y| y == 1.0));
    }

    #[test]
    fn windows_are_cached_and_read_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let a = tone_wav(dir.path(), "fa.wav", 2.5);
        let b = tone_wav(dir.path(), "rb.wav", 0.7);
        let spec = FeatureSpec {
            features: FeatureConfig::default(),
            window: WindowConfig::from_seconds(1.0, 1.0, 0.25, 16_000).unwrap(),
            cache_dir: Some(dir.path().join("cache")),
        };
        let first = extract(&[&a, &b], &spec, &|| {}).unwrap();
        // 2.5 s → windows at 0, 1 and 2 s (0.5 s left ≥ 0.25); 0.7 s → one padded window.
        assert_eq!(first.len(), 4);
        assert_eq!(first.labels, vec![1.0, 1.0, 1.0, 0.0]);
        assert_eq!(first.clip_of_window, vec![0, 0, 0, 1]);
        assert_eq!(
            std::fs::read_dir(dir.path().join("cache")).unwrap().count(),
            2
        );
        let second = extract(&[&a, &b], &spec, &|| {}).unwrap();
        assert_eq!(first.data, second.data);
        assert_eq!(first.clips, second.clips);
    }

    #[test]
    fn identical_clips_extracted_at_once_share_one_cache_entry() {
        let dir = tempfile::tempdir().unwrap();
        // Same audio under 16 names: one cache key, written by parallel threads together.
        let clips: Vec<Clip> = (0..16)
            .map(|i| tone_wav(dir.path(), &format!("f{i}.wav"), 1.0))
            .collect();
        let refs: Vec<&Clip> = clips.iter().collect();
        let spec = FeatureSpec {
            features: FeatureConfig::default(),
            window: WindowConfig::from_seconds(1.0, 1.0, 0.25, 16_000).unwrap(),
            cache_dir: Some(dir.path().join("cache")),
        };
        let set = extract(&refs, &spec, &|| {}).unwrap();
        assert_eq!(set.len(), 16);
        let cached: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            cached.len(),
            1,
            "one entry, no temporary files left: {cached:?}"
        );
    }
}
