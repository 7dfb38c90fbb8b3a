//! Container demuxing and codec decoding with symphonia, downmixed to mono `f32`.
//!
//! Every failure is classified into the crate's typed errors so a caller can tell "not audio"
//! ([`Error::UnsupportedFormat`]) from "damaged audio" ([`Error::CorruptAudio`]) from "no sound at
//! all" ([`Error::EmptyAudio`]). Samples are produced packet by packet; the decoder never holds
//! the whole file.

use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use crate::error::{Error, Result};

/// Where audio bytes come from: a file, or an in-memory upload with a display name.
pub enum AudioSource {
    /// A file on disk.
    File(PathBuf),
    /// Bytes already in memory (e.g. an HTTP upload); the name is used for messages and hints.
    Bytes {
        /// Name shown in errors and used for the extension hint.
        name: String,
        /// Encoded audio.
        data: Vec<u8>,
    },
}

/// Largest number of consecutive undecodable packets tolerated before the file is declared corrupt.
///
/// Players skip a damaged packet or two; a stream that is mostly garbage must not be judged.
const MAX_CONSECUTIVE_BAD_PACKETS: u32 = 16;

/// Streaming decoder of one audio track to mono `f32` at its native rate.
pub struct MonoDecoder {
    source: PathBuf,
    format: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    sample_rate: u32,
    channels: usize,
    interleaved: Vec<f32>,
    /// Mono samples of the first packet, decoded during `open` to learn rate and channel count.
    pending: Vec<f32>,
    samples_decoded: u64,
    ended: bool,
}

impl MonoDecoder {
    /// Opens and probes a file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_source(AudioSource::File(path.to_path_buf()))
    }

    /// Opens any [`AudioSource`].
    pub fn from_source(source: AudioSource) -> Result<Self> {
        let (name, media, len): (PathBuf, Box<dyn MediaSource>, u64) = match source {
            AudioSource::File(path) => {
                let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
                let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
                (path, Box::new(file), len)
            }
            AudioSource::Bytes { name, data } => {
                let len = data.len() as u64;
                (PathBuf::from(name), Box::new(Cursor::new(data)), len)
            }
        };
        if len == 0 {
            return Err(Error::EmptyAudio { path: name });
        }
        let mut hint = Hint::new();
        if let Some(ext) = name.extension().and_then(|e| e.to_str()) {
            hint.with_extension(ext);
        }
        let mss = MediaSourceStream::new(media, Default::default());
        let format = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| classify_open_error(&name, e))?;
        let track =
            format
                .default_track(TrackType::Audio)
                .ok_or_else(|| Error::UnsupportedFormat {
                    path: name.clone(),
                    reason: "the container has no audio track".into(),
                })?;
        let track_id = track.id;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| Error::UnsupportedFormat {
                path: name.clone(),
                reason: "the audio track has no codec parameters".into(),
            })?;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default().gapless(true))
            .map_err(|e| Error::UnsupportedFormat {
                path: name.clone(),
                reason: format!("no decoder for this codec: {e}"),
            })?;
        let mut this = Self {
            source: name,
            format,
            decoder,
            track_id,
            sample_rate: 0,
            channels: 0,
            interleaved: Vec::new(),
            pending: Vec::new(),
            samples_decoded: 0,
            ended: false,
        };
        // Decode up to the first audible packet so rate and channel count are known up front.
        let mut first = Vec::new();
        while first.is_empty() && this.decode_packet(&mut first)? {}
        if this.sample_rate == 0 {
            return Err(Error::EmptyAudio { path: this.source });
        }
        this.pending = first;
        Ok(this)
    }

    /// Name of the source, for messages.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Native sample rate in Hz.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Channel count before downmixing.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Mono samples produced so far.
    pub fn samples_decoded(&self) -> u64 {
        self.samples_decoded
    }

    /// Appends the next packet's worth of mono samples to `out`; returns `false` at end of stream.
    pub fn next_chunk(&mut self, out: &mut Vec<f32>) -> Result<bool> {
        if !self.pending.is_empty() {
            out.append(&mut self.pending);
            return Ok(true);
        }
        self.decode_packet(out)
    }

    /// Decodes one packet of our track into `out`. Returns `false` once the stream has ended.
    fn decode_packet(&mut self, out: &mut Vec<f32>) -> Result<bool> {
        let mut bad_in_a_row = 0u32;
        loop {
            if self.ended {
                return Ok(false);
            }
            let packet = match self.format.next_packet() {
                Ok(Some(p)) => p,
                Ok(None) | Err(SymError::ResetRequired) => {
                    self.ended = true;
                    return Ok(false);
                }
                Err(e) => return self.end_or_corrupt(e),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let buf = match self.decoder.decode(&packet) {
                Ok(buf) => buf,
                Err(SymError::DecodeError(msg)) | Err(SymError::Unsupported(msg)) => {
                    bad_in_a_row += 1;
                    if bad_in_a_row > MAX_CONSECUTIVE_BAD_PACKETS || self.samples_decoded == 0 {
                        return Err(Error::CorruptAudio {
                            path: self.source.clone(),
                            reason: format!("undecodable packet: {msg}"),
                        });
                    }
                    continue;
                }
                Err(e) => return self.end_or_corrupt(e),
            };
            let frames = buf.frames();
            if frames == 0 {
                continue;
            }
            let spec = buf.spec();
            let channels = spec.channels().count().max(1);
            let rate = spec.rate();
            if self.sample_rate == 0 {
                if rate == 0 {
                    return Err(Error::CorruptAudio {
                        path: self.source.clone(),
                        reason: "the stream declares a sample rate of 0 Hz".into(),
                    });
                }
                self.sample_rate = rate;
                self.channels = channels;
            } else if rate != self.sample_rate || channels != self.channels {
                return Err(Error::UnsupportedFormat {
                    path: self.source.clone(),
                    reason: format!(
                        "the stream changes format mid-way ({} Hz × {} ch → {rate} Hz × {channels} ch)",
                        self.sample_rate, self.channels
                    ),
                });
            }
            self.interleaved.clear();
            buf.copy_to_vec_interleaved(&mut self.interleaved);
            let start = out.len();
            downmix_into(&self.interleaved, channels, out);
            if let Some(pos) = out[start..].iter().position(|s| !s.is_finite()) {
                return Err(Error::NonFiniteSamples {
                    path: self.source.clone(),
                    first_at: self.samples_decoded + pos as u64,
                });
            }
            self.samples_decoded += (out.len() - start) as u64;
            return Ok(true);
        }
    }
}

impl MonoDecoder {
    /// A stream cut short mid-packet ends it (keeping what was decoded, as librosa does); any
    /// other demuxer or decoder failure means the file is damaged.
    fn end_or_corrupt(&mut self, e: SymError) -> Result<bool> {
        match e {
            SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.ended = true;
                Ok(false)
            }
            e => Err(Error::CorruptAudio {
                path: self.source.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// Averages interleaved channels into mono (librosa's `to_mono`), appending to `out`.
pub fn downmix_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    if channels <= 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

fn classify_open_error(path: &Path, err: SymError) -> Error {
    match err {
        SymError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Error::CorruptAudio {
                path: path.to_path_buf(),
                reason: "the file ends inside its header (truncated)".into(),
            }
        }
        SymError::IoError(e) => Error::io(path, e),
        SymError::Unsupported(msg) => Error::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: msg.to_string(),
        },
        other => Error::CorruptAudio {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn downmix_averages_channels() {
        let mut out = Vec::new();
        downmix_into(&[1.0, 3.0, -2.0, 2.0], 2, &mut out);
        assert_eq!(out, vec![2.0, 0.0]);
    }

    #[test]
    fn downmix_mono_is_identity() {
        let mut out = vec![9.0];
        downmix_into(&[1.0, 2.0], 1, &mut out);
        assert_eq!(out, vec![9.0, 1.0, 2.0]);
    }
}
