//! A minimal PCM16 WAV writer for generated test and benchmark audio.
//!
//! Decoding goes through symphonia; writing is only needed for synthetic signals, and 16-bit PCM
//! is the format every tool reads, so a 40-line writer beats a dependency.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{Error, Result};

/// Writes interleaved `samples` (in −1..1, clipped) as 16-bit PCM WAV.
pub fn write_pcm16(path: &Path, sample_rate: u32, channels: u16, samples: &[f32]) -> Result<()> {
    let io = |e| Error::io(path, e);
    let data_len = u32::try_from(samples.len() * 2).map_err(|_| {
        Error::InvalidArgument(format!("{}: too long for a WAV file", path.display()))
    })?;
    let mut w = BufWriter::new(std::fs::File::create(path).map_err(io)?);
    let header = pcm16_header(sample_rate, channels, data_len);
    w.write_all(&header).map_err(io)?;
    for s in samples {
        let v = (s.clamp(-1.0, 1.0) * 32767.0).round() as i16;
        w.write_all(&v.to_le_bytes()).map_err(io)?;
    }
    w.flush().map_err(io)
}

/// The 44-byte canonical header of a 16-bit PCM WAV whose `data` chunk holds `data_len` bytes.
pub fn pcm16_header(sample_rate: u32, channels: u16, data_len: u32) -> Vec<u8> {
    let block = u32::from(channels) * 2;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&36u32.saturating_add(data_len).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&1u16.to_le_bytes());
    header.extend_from_slice(&channels.to_le_bytes());
    header.extend_from_slice(&sample_rate.to_le_bytes());
    header.extend_from_slice(&sample_rate.wrapping_mul(block).to_le_bytes());
    header.extend_from_slice(&(block as u16).to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_len.to_le_bytes());
    header
}
