//! Container demuxing and codec decoding with symphonia, downmixed to mono `f32`.
//!
//! Every failure is classified into the crate's typed errors so a caller can tell "not audio"
//! ([`Error::UnsupportedFormat`]) from "damaged audio" ([`Error::CorruptAudio`]) from "no sound at
//! all" ([`Error::EmptyAudio`]). Samples are produced packet by packet; the decoder never holds
//! the whole file. Non-finite samples are refused and the rest clamped to full scale, so what
//! reaches the front-end is always a finite signal in −1..1 (see [`super::clamp_full_scale`]).

use std::fs::File;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use symphonia::core::codecs::audio::well_known::CODEC_ID_PCM_S16LE;
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

/// An upload shared between the demuxer and the re-pack fallback without a copy.
#[derive(Clone)]
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Whether the file at `path` starts like a RIFF/WAVE file (reads 12 bytes).
fn is_wave_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 12];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| super::riff::is_wave(&head))
}

/// Refuses a WAV whose `fmt ` chunk no real file has (see [`super::riff::check_fmt`]) before the
/// demuxer does arithmetic on it, and rewinds. A file that starts with a WAVE header
/// (`RIFF….WAVE`) is judged on its first 4 KiB: the probe takes the first marker it can score,
/// so that header is the only one the demuxer reads. Any other file — including one that
/// starts with `RIFF` but is not WAVE, which the probe skips — is scanned as far as the probe
/// looks for a marker ([`super::riff::PROBE_DEPTH`]), since a WAV header behind leading junk
/// is still found and read. Compressed formats pay that scan; their decoding costs far more.
fn check_wave_header(name: &Path, media: &mut Box<dyn MediaSource>) -> Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    const HEAD: usize = 4096;
    let mut head = Vec::with_capacity(HEAD);
    (&mut *media)
        .take(HEAD as u64)
        .read_to_end(&mut head)
        .map_err(|e| Error::io(name, e))?;
    let verdict = if super::riff::is_wave(&head) {
        super::riff::check_fmt(&head)
    } else {
        (&mut *media)
            .take((super::riff::PROBE_DEPTH + HEAD - head.len()) as u64)
            .read_to_end(&mut head)
            .map_err(|e| Error::io(name, e))?;
        super::riff::check_fmt_anywhere(&head)
    };
    media
        .seek(SeekFrom::Start(0))
        .map_err(|e| Error::io(name, e))?;
    verdict.map_err(|reason| Error::CorruptAudio {
        path: name.to_path_buf(),
        reason,
    })
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
    declared_frames: Option<u64>,
    ended: bool,
    /// The track is plain 16-bit little-endian PCM (most WAV uploads): after the first packet,
    /// whose decoding established rate and channels, packets are converted straight from their
    /// bytes ([`Self::pcm16_packet`]).
    pcm16: bool,
}

impl MonoDecoder {
    /// Opens and probes a file.
    pub fn open(path: &Path) -> Result<Self> {
        Self::from_source(AudioSource::File(path.to_path_buf()))
    }

    /// Opens any [`AudioSource`].
    ///
    /// A WAV file the demuxer refuses for its chunk layout is re-packed (see [`super::riff`])
    /// and opened again, so a legal file with its chunks in an unusual order still decodes.
    pub fn from_source(source: AudioSource) -> Result<Self> {
        let (name, media, len, bytes): (PathBuf, Box<dyn MediaSource>, u64, Option<Shared>) =
            match source {
                AudioSource::File(path) => {
                    let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
                    let len = file.metadata().map_err(|e| Error::io(&path, e))?.len();
                    (path, Box::new(file), len, None)
                }
                AudioSource::Bytes { name, data } => {
                    let shared = Shared(Arc::new(data));
                    let len = shared.0.len() as u64;
                    let media = Box::new(Cursor::new(shared.clone()));
                    (PathBuf::from(name), media, len, Some(shared))
                }
            };
        match Self::open_media(name.clone(), media, len) {
            Err(e @ (Error::CorruptAudio { .. } | Error::UnsupportedFormat { .. })) => {
                let original = match &bytes {
                    Some(b) => b.0.clone(),
                    None if is_wave_file(&name) => {
                        Arc::new(std::fs::read(&name).map_err(|io| Error::io(&name, io))?)
                    }
                    None => return Err(e),
                };
                let Some(repacked) = super::riff::repack(&original) else {
                    return Err(e);
                };
                drop(bytes);
                let len = repacked.wav.len() as u64;
                let mut this = Self::open_media(name, Box::new(Cursor::new(repacked.wav)), len)
                    .map_err(|_| e)?;
                this.declared_frames = Some(repacked.declared_frames);
                Ok(this)
            }
            other => other,
        }
    }

    /// Probes `media` and decodes up to its first audible packet.
    fn open_media(name: PathBuf, mut media: Box<dyn MediaSource>, len: u64) -> Result<Self> {
        if len == 0 {
            return Err(Error::EmptyAudio { path: name });
        }
        check_wave_header(&name, &mut media)?;
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
        let declared_frames = track.num_frames;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| Error::UnsupportedFormat {
                path: name.clone(),
                reason: "the audio track has no codec parameters".into(),
            })?;
        let pcm16 = params.codec == CODEC_ID_PCM_S16LE
            && params.bits_per_sample.unwrap_or(16) == 16
            && params.bits_per_coded_sample.unwrap_or(16) == 16;
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
            declared_frames,
            ended: false,
            pcm16,
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

    /// Frames the container declares for the track, when it does (WAV's `data` length, FLAC's
    /// stream info); compared with what was decoded to detect a truncated file.
    pub fn declared_frames(&self) -> Option<u64> {
        self.declared_frames
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
            if self.pcm16 && self.sample_rate != 0 {
                if self.pcm16_packet(&packet.data, out) {
                    return Ok(true);
                }
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
                if !(super::MIN_SOURCE_RATE_HZ..=super::MAX_SOURCE_RATE_HZ).contains(&rate) {
                    return Err(Error::UnsupportedSampleRate {
                        path: self.source.clone(),
                        hz: rate,
                        min: super::MIN_SOURCE_RATE_HZ,
                        max: super::MAX_SOURCE_RATE_HZ,
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
            super::clamp_full_scale(&mut out[start..]);
            self.samples_decoded += (out.len() - start) as u64;
            return Ok(true);
        }
    }
}

impl MonoDecoder {
    /// Converts one packet of 16-bit little-endian PCM to mono samples appended to `out`, with
    /// the same arithmetic as symphonia's PCM decoder (`s / 32768`, whole frames only) and the
    /// same downmix, so the samples are bit-identical to the general path's. Skipping the
    /// decoder's planar buffer and its interleaving copy more than halves the cost of decoding a
    /// WAV upload. The samples are in −1..1 by construction, so no finiteness check or clamp is
    /// needed. Returns `false` when the packet holds no whole frame.
    fn pcm16_packet(&mut self, data: &[u8], out: &mut Vec<f32>) -> bool {
        let frame_bytes = 2 * self.channels;
        let frames = data.len() / frame_bytes;
        if frames == 0 {
            return false;
        }
        let pcm = data[..frames * frame_bytes]
            .chunks_exact(2)
            .map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0);
        let start = out.len();
        if self.channels == 1 {
            out.extend(pcm);
        } else {
            self.interleaved.clear();
            self.interleaved.extend(pcm);
            downmix_into(&self.interleaved, self.channels, out);
        }
        self.samples_decoded += (out.len() - start) as u64;
        true
    }

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

    /// A canonical 16-bit PCM WAV of `samples` (interleaved) and optional trailing bytes in
    /// `data`.
    fn pcm16_wav(rate: u32, channels: u16, samples: &[i16], extra: &[u8]) -> Vec<u8> {
        let data_len = (samples.len() * 2 + extra.len()) as u32;
        let mut w = crate::audio::wav::pcm16_header(rate, channels, data_len);
        for s in samples {
            w.extend_from_slice(&s.to_le_bytes());
        }
        w.extend_from_slice(extra);
        w
    }

    fn decode_all(data: Vec<u8>) -> (Vec<f32>, u64) {
        let mut d = MonoDecoder::from_source(AudioSource::Bytes {
            name: "t.wav".into(),
            data,
        })
        .unwrap();
        let mut out = Vec::new();
        while d.next_chunk(&mut out).unwrap() {}
        (out, d.samples_decoded())
    }

    #[test]
    fn pcm16_wav_decodes_bit_exactly_across_many_packets() {
        // 5 000 frames span several of the demuxer's packets: the first goes through symphonia's
        // decoder, the rest through the direct conversion; both must give s / 32768 exactly.
        let mono: Vec<i16> = (0..5_000)
            .map(|i| ((i * 7919) % 65_536 - 32_768) as i16)
            .collect();
        let (got, n) = decode_all(pcm16_wav(16_000, 1, &mono, &[]));
        let want: Vec<f32> = mono.iter().map(|&s| s as f32 / 32_768.0).collect();
        assert_eq!(n, 5_000);
        assert_eq!(got, want);

        // Stereo with a dangling half frame: whole frames only, averaged like `downmix_into`.
        let stereo: Vec<i16> = (0..2 * 4_001)
            .map(|i| ((i * 104_729) % 65_536 - 32_768) as i16)
            .collect();
        let (got, n) = decode_all(pcm16_wav(22_050, 2, &stereo, &[0x11]));
        let mut want = Vec::new();
        let interleaved: Vec<f32> = stereo.iter().map(|&s| s as f32 / 32_768.0).collect();
        downmix_into(&interleaved, 2, &mut want);
        assert_eq!(n, 4_001);
        assert_eq!(got, want);
    }

    #[test]
    fn downmix_mono_is_identity() {
        let mut out = vec![9.0];
        downmix_into(&[1.0, 2.0], 1, &mut out);
        assert_eq!(out, vec![9.0, 1.0, 2.0]);
    }
}
