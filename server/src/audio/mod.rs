//! Audio in: from any common container/codec to 16 kHz mono windows.
//!
//! The pipeline is streaming so a one-hour upload never lives in memory at its source rate:
//!
//! ```text
//! bytes ──▶ decode::MonoDecoder ──▶ resample::StreamResampler ──▶ window::Windower ──▶ [f32; window]
//!          (symphonia, downmix)     (rubato sinc, → 16 kHz)       (zero-padded 15 s windows)
//! ```
//!
//! [`AudioWindows`] wires the three together and is what callers use.

pub mod decode;
pub mod resample;
pub mod riff;
pub mod wav;
pub mod window;

use std::path::Path;

pub use decode::{AudioSource, MonoDecoder};
pub use resample::StreamResampler;
pub use window::{Window, WindowConfig, Windower};

use crate::error::Result;

/// Lowest source sample rate accepted: below telephone band nothing speech-like survives.
pub const MIN_SOURCE_RATE_HZ: u32 = 2_000;

/// Highest source sample rate accepted: 768 kHz is the highest rate audio hardware records at.
/// Refusing the rest before a resampler exists is what stops a forged header from asking for
/// gigabytes (the resampler's plan grows with the rate).
pub const MAX_SOURCE_RATE_HZ: u32 = 768_000;

/// Sample rate every model in this crate consumes.
pub const MODEL_SAMPLE_RATE: u32 = 16_000;

/// Clamps samples to full scale (−1..1).
///
/// Integer PCM cannot exceed it; float formats can, and the log-mel's dB reference is a
/// window's loudest bin, so a single huge sample (a click, or a hostile file) would otherwise
/// push the whole window's spectrum towards the floor and move its score.
pub fn clamp_full_scale(samples: &mut [f32]) {
    for s in samples {
        *s = s.clamp(-1.0, 1.0);
    }
}

/// Iterator-like stream of model-ready windows of one audio source.
///
/// Pulls decoded packets only as fast as windows are consumed, so memory stays at a few windows
/// whatever the file's length.
pub struct AudioWindows {
    decoder: MonoDecoder,
    resampler: StreamResampler,
    windower: Windower,
    decoded: Vec<f32>,
    resampled: Vec<f32>,
    finished: bool,
    max_samples: Option<u64>,
}

impl AudioWindows {
    /// Opens `path` and prepares windows of `config` at `target_rate`.
    pub fn open(path: &Path, config: WindowConfig, target_rate: u32) -> Result<Self> {
        Self::new(MonoDecoder::open(path)?, config, target_rate)
    }

    /// Wraps an already opened decoder.
    pub fn new(decoder: MonoDecoder, config: WindowConfig, target_rate: u32) -> Result<Self> {
        let resampler = StreamResampler::new(decoder.sample_rate(), target_rate)?;
        Ok(Self {
            decoder,
            resampler,
            windower: Windower::new(config)?,
            decoded: Vec::new(),
            resampled: Vec::new(),
            finished: false,
            max_samples: None,
        })
    }

    /// Refuses audio longer than `seconds` (checked while decoding, before the work is done).
    pub fn with_max_duration(mut self, seconds: f64) -> Self {
        self.max_samples = Some((seconds * self.decoder.sample_rate() as f64).ceil() as u64);
        self
    }

    /// Sample rate of the source before resampling.
    pub fn source_sample_rate(&self) -> u32 {
        self.decoder.sample_rate()
    }

    /// Channel count of the source before downmixing.
    pub fn source_channels(&self) -> usize {
        self.decoder.channels()
    }

    /// Number of samples at the target rate seen so far (the full length once exhausted).
    pub fn samples_seen(&self) -> u64 {
        self.windower.samples_seen()
    }

    /// Frames the container declared and frames it held, at the source rate, when the file
    /// turned out shorter than declared by more than 2 % and a tenth of a second (a cut-off
    /// download or upload). Meaningful once the stream is exhausted.
    pub fn truncation(&self) -> Option<(u64, u64)> {
        let declared = self.decoder.declared_frames()?;
        let held = self.decoder.samples_decoded();
        let short_by = declared.saturating_sub(held);
        let tenth = u64::from(self.decoder.sample_rate() / 10);
        (short_by * 50 > declared && short_by > tenth).then_some((declared, held))
    }

    /// Next window, or `None` after the last one.
    pub fn next_window(&mut self) -> Result<Option<Window>> {
        loop {
            if let Some(w) = self.windower.pop() {
                return Ok(Some(w));
            }
            if self.finished {
                return Ok(None);
            }
            self.decoded.clear();
            let more = self.decoder.next_chunk(&mut self.decoded)?;
            if let Some(max) = self.max_samples {
                if self.decoder.samples_decoded() > max {
                    return Err(crate::Error::TooLong {
                        path: self.decoder.source().to_path_buf(),
                        max_seconds: max as f64 / self.decoder.sample_rate() as f64,
                    });
                }
            }
            self.resampled.clear();
            self.resampler.push(&self.decoded, &mut self.resampled)?;
            if !more {
                self.resampler.finish(&mut self.resampled)?;
                self.finished = true;
            }
            self.windower.push(&self.resampled);
            if self.finished {
                self.windower.finish();
                if self.windower.samples_seen() == 0 {
                    return Err(crate::Error::EmptyAudio {
                        path: self.decoder.source().to_path_buf(),
                    });
                }
            }
        }
    }
}
