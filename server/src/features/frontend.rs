//! The front-end a manifest names, behind one interface: the spectral ones ([`LOG_MEL`],
//! [`LOG_LINEAR`]) or the frozen Whisper encoder ([`WHISPER`]). The pipeline and the trainer only
//! ever call [`FrontEnd::compute_many`], so they cannot compute features differently.

use candle_core::Device;
use rayon::prelude::*;

use super::{FeatureConfig, LogMelExtractor, LOG_LINEAR, LOG_MEL, WHISPER};
use crate::error::{Error, Result};
use crate::whisper::{store, WhisperFrontEnd};

/// A ready front-end.
pub struct FrontEnd {
    cfg: FeatureConfig,
    kind: Kind,
}

// One per loaded model, never moved in a hot path: the size difference costs nothing.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Spectral(LogMelExtractor),
    Whisper(WhisperFrontEnd),
}

impl FrontEnd {
    /// Builds the front-end `cfg` names. The Whisper one loads its encoder from the store,
    /// refusing a file whose sha256 or shape differs from the pinned one, and runs it on
    /// `device`.
    pub fn new(cfg: FeatureConfig, device: &Device) -> Result<Self> {
        cfg.validate()?;
        let kind = match (cfg.kind.as_str(), &cfg.encoder) {
            (LOG_MEL | LOG_LINEAR, _) => Kind::Spectral(LogMelExtractor::new(cfg.clone())?),
            (WHISPER, Some(pin)) => {
                let path = store::locate(&pin.name, Some(&pin.sha256))?;
                let encoder = store::load_encoder(&path, device)?;
                let c = encoder.config();
                if (c.encoder_layers, c.d_model, c.n_mels) != (pin.layers, pin.d_model, cfg.n_mels)
                {
                    return Err(Error::encoder(
                        &path,
                        format!(
                            "{} layers × {} wide with {} mels, the manifest expects {} × {} with {}",
                            c.encoder_layers, c.d_model, c.n_mels, pin.layers, pin.d_model, cfg.n_mels
                        ),
                    ));
                }
                Kind::Whisper(WhisperFrontEnd::new(encoder, device.clone())?)
            }
            (other, _) => {
                return Err(Error::InvalidArgument(format!(
                    "features.kind: unknown front-end '{other}'"
                )))
            }
        };
        Ok(Self { cfg, kind })
    }

    /// The configuration this front-end implements.
    pub fn config(&self) -> &FeatureConfig {
        &self.cfg
    }

    /// The librosa-exact extractor, for the spectral front-ends (benchmarks and plots use it).
    pub fn spectral(&self) -> Option<&LogMelExtractor> {
        match &self.kind {
            Kind::Spectral(x) => Some(x),
            Kind::Whisper(_) => None,
        }
    }

    /// Features `(rows, columns)` of a window of `samples` samples.
    pub fn output_shape(&self, samples: usize) -> (usize, usize) {
        self.cfg.output_shape(samples)
    }

    /// Features of equally long windows into consecutive slots of `out`. Spectral windows are
    /// computed in parallel with one scratch per thread; Whisper windows go through the
    /// encoder in batches (candle parallelises inside each).
    pub fn compute_many(&self, signals: &[&[f32]], out: &mut [f32]) -> Result<()> {
        let Some(first) = signals.first() else {
            return Ok(());
        };
        let (rows, cols) = self.output_shape(first.len());
        let per = rows * cols;
        if out.len() != signals.len() * per || signals.iter().any(|s| s.len() != first.len()) {
            return Err(Error::InvalidArgument(format!(
                "feature buffer holds {} values for {} windows of {rows}×{cols}",
                out.len(),
                signals.len()
            )));
        }
        match &self.kind {
            Kind::Spectral(x) => out
                .par_chunks_mut(per)
                .zip(signals.par_iter())
                .try_for_each_init(
                    || x.scratch(),
                    |scratch, (dst, s)| x.compute_into(s, dst, scratch),
                ),
            Kind::Whisper(w) => w.compute_many(signals, out),
        }
    }

    /// Features of one window, allocated.
    pub fn compute(&self, signal: &[f32]) -> Result<Vec<f32>> {
        let (rows, cols) = self.output_shape(signal.len());
        let mut out = vec![0.0; rows * cols];
        self.compute_many(&[signal], &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spectral_batches_equal_single_windows() {
        let fe = FrontEnd::new(FeatureConfig::default(), &Device::Cpu).unwrap();
        let a: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.01).sin()).collect();
        let b: Vec<f32> = (0..16_000).map(|i| (i as f32 * 0.3).cos() * 0.1).collect();
        let (m, t) = fe.output_shape(a.len());
        let mut both = vec![0.0; 2 * m * t];
        fe.compute_many(&[&a, &b], &mut both).unwrap();
        assert_eq!(both[..m * t], fe.compute(&a).unwrap()[..]);
        assert_eq!(both[m * t..], fe.compute(&b).unwrap()[..]);
        assert!(fe.compute_many(&[&a, &b[..100]], &mut both).is_err());
    }
}
