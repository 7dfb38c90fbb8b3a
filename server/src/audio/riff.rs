//! A lenient RIFF/WAVE re-packer: the fallback for WAV files whose chunk layout the demuxer
//! refuses although their audio is intact.
//!
//! Recorders and editors write `LIST`, `JUNK`, `bext`, `cue ` and vendor chunks in any order,
//! and some get the details wrong (an odd-sized chunk without its pad byte, a `LIST` whose
//! sub-chunks overrun it). Players skip what they do not need; so does this: it walks the
//! top-level chunks by their sizes, keeps only `fmt ` and `data`, and writes a canonical file
//! the demuxer reads. Nothing inside the skipped chunks is parsed.

/// Largest `fmt ` chunk accepted (WAVE_FORMAT_EXTENSIBLE is 40 bytes).
const MAX_FMT_BYTES: usize = 64;

/// Whether `data` starts like a RIFF/WAVE file.
pub fn is_wave(data: &[u8]) -> bool {
    data.len() >= 12 && &data[0..4] == b"RIFF" && &data[8..12] == b"WAVE"
}

/// Most channels a WAV file may declare: far above any recorder (WAVE_FORMAT_EXTENSIBLE names
/// 18 speaker positions), far below what overflows a demuxer's `channels × bytes per sample`.
pub const MAX_CHANNELS: u16 = 64;

/// `WAVE_FORMAT_EXTENSIBLE`: a `fmt ` chunk with a channel mask and a sub-format GUID.
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;
/// Speaker positions an extensible file's channel mask can name (bits 0–17); the bits above are
/// reserved.
const SPEAKER_POSITIONS: u16 = 18;

/// How far symphonia's probe reads past junk looking for a container's marker (its
/// `max_probe_depth`): a WAV header anywhere in this span can be the one the demuxer reads.
pub const PROBE_DEPTH: usize = 1 << 20;

/// [`check_fmt`] on every RIFF/WAVE header in `head`, wherever it starts. A file that does not
/// begin with a marker is scanned by the demuxer's probe, which skips leading junk and reads the
/// first header it finds, so checking only offset 0 would let a junk-prefixed absurd header
/// through (found by the fuzzer with overflow checks on).
pub fn check_fmt_anywhere(head: &[u8]) -> Result<(), String> {
    let mut from = 0;
    while let Some(at) = head[from..].windows(4).position(|w| w == b"RIFF") {
        let start = from + at;
        check_fmt(&head[start..])?;
        from = start + 4;
    }
    Ok(())
}

/// Checks the first `fmt ` chunk found in `head` (the file's first bytes) before a demuxer reads
/// it: a channel count of 0 or above [`MAX_CHANNELS`], or a sample width of 0 or above 64 bits,
/// is refused with the reason; so is an extensible header with more channels than speaker
/// positions or with reserved channel-mask bits. Such headers are never real audio, and a
/// demuxer's own arithmetic on them can overflow (one computes the block size in 16 bits, and
/// shifts by the difference between the channel count and the mask's bits when it repairs a
/// mask). `Ok` when `head` is not a WAV or holds no `fmt ` chunk: the demuxer then decides.
pub fn check_fmt(head: &[u8]) -> Result<(), String> {
    if !is_wave(head) {
        return Ok(());
    }
    let mut pos = 12usize;
    while let Some(header) = head.get(pos..pos + 8) {
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if &header[0..4] == b"fmt " {
            let Some(fmt) = head.get(pos + 8..pos + 8 + 16) else {
                return Ok(());
            };
            let channels = u16::from_le_bytes([fmt[2], fmt[3]]);
            let bits = u16::from_le_bytes([fmt[14], fmt[15]]);
            if channels == 0 || channels > MAX_CHANNELS {
                return Err(format!(
                    "the WAV header declares {channels} channels (1 to {MAX_CHANNELS} are accepted)"
                ));
            }
            if bits == 0 || bits > 64 {
                return Err(format!(
                    "the WAV header declares {bits}-bit samples (1 to 64 are accepted)"
                ));
            }
            let tag = u16::from_le_bytes([fmt[0], fmt[1]]);
            if tag == FORMAT_EXTENSIBLE {
                if channels > SPEAKER_POSITIONS {
                    return Err(format!(
                        "the extensible WAV header declares {channels} channels \
                         (at most {SPEAKER_POSITIONS}, one per speaker position)"
                    ));
                }
                if let Some(mask) = head.get(pos + 8 + 20..pos + 8 + 24) {
                    let mask = u32::from_le_bytes([mask[0], mask[1], mask[2], mask[3]]);
                    if mask >> SPEAKER_POSITIONS != 0 {
                        return Err(format!(
                            "the extensible WAV header's channel mask {mask:#010x} sets reserved bits"
                        ));
                    }
                }
            }
            return Ok(());
        }
        pos = next_chunk(head, (pos + 8).saturating_add(size));
    }
    Ok(())
}

/// A re-packed WAV file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repacked {
    /// The canonical file.
    pub wav: Vec<u8>,
    /// Frames the original `data` chunk declared (it may hold fewer: a cut-off file).
    pub declared_frames: u64,
}

/// A canonical `RIFF/WAVE` with only the `fmt ` and `data` chunks of `data`, or `None` when
/// either cannot be found. A `data` chunk that claims more than the file holds keeps what it
/// holds; what it claimed is reported, so truncation is still detected.
pub fn repack(data: &[u8]) -> Option<Repacked> {
    if !is_wave(data) {
        return None;
    }
    let mut fmt: Option<&[u8]> = None;
    let mut pcm: Option<&[u8]> = None;
    let mut declared = 0u64;
    let mut pos = 12usize;
    while pos + 8 <= data.len() && (fmt.is_none() || pcm.is_none()) {
        let tag = &data[pos..pos + 4];
        let size = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]])
            as usize;
        let body = pos + 8;
        let end = body.saturating_add(size).min(data.len());
        match tag {
            b"fmt " if (16..=MAX_FMT_BYTES).contains(&size) && body + size <= data.len() => {
                fmt = Some(&data[body..body + size]);
            }
            b"data" => {
                pcm = Some(&data[body..end]);
                declared = size as u64;
            }
            _ => {}
        }
        pos = next_chunk(data, body.saturating_add(size));
    }
    let (fmt, pcm) = (fmt?, pcm?);
    let mut out = Vec::with_capacity(12 + 8 + fmt.len() + 8 + pcm.len() + 1);
    let riff_len = 4 + 8 + fmt.len() + 8 + pcm.len() + pcm.len() % 2;
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&u32::try_from(riff_len).ok()?.to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&u32::try_from(fmt.len()).ok()?.to_le_bytes());
    out.extend_from_slice(fmt);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&u32::try_from(pcm.len()).ok()?.to_le_bytes());
    out.extend_from_slice(pcm);
    if pcm.len() % 2 == 1 {
        out.push(0);
    }
    let block_align = u64::from(u16::from_le_bytes([fmt[12], fmt[13]])).max(1);
    Some(Repacked {
        wav: out,
        declared_frames: declared / block_align,
    })
}

/// Where the chunk after one ending at `end` starts: after its pad byte when the chunk was
/// odd-sized and the writer padded it, at `end` when it forgot to.
fn next_chunk(data: &[u8], end: usize) -> usize {
    let plausible = |at: usize| {
        data.get(at..at + 4)
            .is_some_and(|t| t.iter().all(|b| b.is_ascii_alphanumeric() || *b == b' '))
    };
    if end % 2 == 1 && !plausible(end + 1) && plausible(end) {
        end
    } else {
        end + end % 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(tag: &[u8; 4], body: &[u8], pad: bool) -> Vec<u8> {
        let mut c = tag.to_vec();
        c.extend_from_slice(&(body.len() as u32).to_le_bytes());
        c.extend_from_slice(body);
        if pad && body.len() % 2 == 1 {
            c.push(0);
        }
        c
    }

    fn wave(chunks: &[Vec<u8>]) -> Vec<u8> {
        let body: Vec<u8> = chunks.concat();
        let mut w = b"RIFF".to_vec();
        w.extend_from_slice(&(4 + body.len() as u32).to_le_bytes());
        w.extend_from_slice(b"WAVE");
        w.extend_from_slice(&body);
        w
    }

    const FMT: [u8; 16] = [1, 0, 1, 0, 0x80, 0x3e, 0, 0, 0, 0x7d, 0, 0, 2, 0, 16, 0];

    #[test]
    fn keeps_fmt_and_data_whatever_comes_before_between_and_after() {
        let pcm = [1u8, 2, 3, 4];
        let odd_list = chunk(b"LIST", b"INFOISFT\x05\0\0\0test\0", true);
        for chunks in [
            vec![
                odd_list.clone(),
                chunk(b"fmt ", &FMT, true),
                chunk(b"data", &pcm, true),
            ],
            vec![
                chunk(b"fmt ", &FMT, true),
                odd_list.clone(),
                chunk(b"data", &pcm, true),
            ],
            vec![
                chunk(b"JUNK", &[0; 28], true),
                chunk(b"fmt ", &FMT, true),
                chunk(b"bext", &[0; 3], false),
                chunk(b"data", &pcm, true),
            ],
        ] {
            let out = repack(&wave(&chunks)).expect("repacked");
            assert_eq!(
                out.wav,
                wave(&[chunk(b"fmt ", &FMT, true), chunk(b"data", &pcm, true)])
            );
            assert_eq!(out.declared_frames, 2);
        }
    }

    #[test]
    fn a_data_chunk_claiming_more_than_the_file_keeps_what_is_there() {
        let mut w = wave(&[chunk(b"fmt ", &FMT, true), chunk(b"data", &[5, 6], true)]);
        let at = w.len() - 6;
        w[at..at + 4].copy_from_slice(&1_000_000u32.to_le_bytes());
        let out = repack(&w).expect("repacked");
        assert!(out
            .wav
            .ends_with(&[b'd', b'a', b't', b'a', 2, 0, 0, 0, 5, 6]));
        assert_eq!(out.declared_frames, 500_000);
    }

    fn fmt(channels: u16, bits: u16) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&1u16.to_le_bytes());
        f.extend_from_slice(&channels.to_le_bytes());
        f.extend_from_slice(&16_000u32.to_le_bytes());
        f.extend_from_slice(&32_000u32.to_le_bytes());
        f.extend_from_slice(&2u16.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f
    }

    #[test]
    fn absurd_channel_counts_and_widths_are_refused_before_the_demuxer() {
        let ok = wave(&[
            chunk(b"fmt ", &fmt(2, 16), true),
            chunk(b"data", &[0; 8], true),
        ]);
        assert_eq!(check_fmt(&ok), Ok(()));
        // 65535 channels × 2 bytes overflows a 16-bit block size in the demuxer.
        for (channels, bits) in [(65_535, 16), (0, 16), (65, 16), (1, 0), (1, 65)] {
            let bad = wave(&[
                chunk(b"LIST", b"INFOjunk", true),
                chunk(b"fmt ", &fmt(channels, bits), true),
            ]);
            assert!(check_fmt(&bad).is_err(), "{channels} ch, {bits} bits");
        }
        // Extensible: more channels than speaker positions, or reserved mask bits.
        let extensible = |channels: u16, mask: u32| {
            let mut f = fmt(channels, 16);
            f[0..2].copy_from_slice(&0xFFFEu16.to_le_bytes());
            f.extend_from_slice(&22u16.to_le_bytes());
            f.extend_from_slice(&16u16.to_le_bytes());
            f.extend_from_slice(&mask.to_le_bytes());
            f.extend_from_slice(&[0; 16]);
            wave(&[chunk(b"fmt ", &f, true)])
        };
        assert_eq!(check_fmt(&extensible(2, 0b11)), Ok(()));
        assert_eq!(check_fmt(&extensible(6, 0x3f)), Ok(()));
        assert!(check_fmt(&extensible(64, 0b100)).is_err());
        assert!(check_fmt(&extensible(2, 0x8000_0001)).is_err());
        // Not a WAV, or no fmt chunk in the head: left to the demuxer.
        assert_eq!(check_fmt(b"OggS\0\0\0\0\0\0\0\0"), Ok(()));
        assert_eq!(check_fmt(&wave(&[chunk(b"data", &[0; 8], true)])), Ok(()));
    }

    #[test]
    fn a_header_behind_leading_junk_is_checked_too() {
        let bad = wave(&[chunk(b"fmt ", &fmt(60_415, 16), true)]);
        let good = wave(&[chunk(b"fmt ", &fmt(1, 16), true)]);
        let behind = |junk: &[u8], wav: &[u8]| [junk, wav].concat();
        let junk = [0xbe, 0x81, 0xca, 0xfa, 0x9b, 0xa6, 0xf9, 0xd5, 0x0c, 0x88];
        // At offset 0 only the first header is read; behind junk, the probe finds it anyway.
        assert_eq!(check_fmt(&behind(&junk, &bad)), Ok(()));
        assert!(check_fmt_anywhere(&behind(&junk, &bad)).is_err());
        assert!(check_fmt_anywhere(&bad).is_err());
        assert_eq!(check_fmt_anywhere(&behind(&junk, &good)), Ok(()));
        // A good header, then the bytes of a bad one later on: every header is checked.
        assert!(check_fmt_anywhere(&[good.clone(), bad].concat()).is_err());
        assert_eq!(check_fmt_anywhere(b"RIFF"), Ok(()));
        assert_eq!(check_fmt_anywhere(b""), Ok(()));
    }

    #[test]
    fn files_without_fmt_or_data_or_not_wave_are_left_alone() {
        assert!(repack(&wave(&[chunk(b"data", &[1, 2], true)])).is_none());
        assert!(repack(&wave(&[chunk(b"fmt ", &FMT, true)])).is_none());
        assert!(repack(b"OggS\0\0\0\0\0\0\0\0\0\0").is_none());
        assert!(repack(b"RIFF").is_none());
        let huge_fmt = wave(&[
            chunk(b"fmt ", &[0; 200], true),
            chunk(b"data", &[1, 2], true),
        ]);
        assert!(repack(&huge_fmt).is_none());
    }
}
