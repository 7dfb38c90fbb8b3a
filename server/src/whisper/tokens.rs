//! Whisper's vocabulary (CTranslate2's `vocabulary.txt`: one byte-level BPE token per line, the
//! line number being its id) and greedy transcription, used to prove an import correct.

use candle_core::{Device, Tensor};

use super::mel::{WhisperMel, CONTEXT_SAMPLES};
use super::model::{WhisperDecoder, WhisperEncoder};
use crate::error::{Error, Result};

/// Token strings by id.
pub struct Vocabulary {
    tokens: Vec<String>,
    byte_of_char: std::collections::HashMap<char, u8>,
}

/// GPT-2's reversible byte ↔ printable-character table: bytes that are printable map to
/// themselves, the others to code points from 256 up, in byte order.
fn byte_of_char() -> std::collections::HashMap<char, u8> {
    let printable = |b: u8| (b'!'..=b'~').contains(&b) || (0xa1..=0xac).contains(&b) || b >= 0xae;
    let mut next = 256u32;
    (0..=255u8)
        .map(|b| {
            let c = if printable(b) {
                b as u32
            } else {
                next += 1;
                next - 1
            };
            (char::from_u32(c).unwrap_or('\u{fffd}'), b)
        })
        .collect()
}

impl Vocabulary {
    /// Parses `vocabulary.txt`.
    pub fn parse(text: &str) -> Self {
        Self {
            tokens: text.lines().map(str::to_owned).collect(),
            byte_of_char: byte_of_char(),
        }
    }

    /// Tokens known.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Id of a token written exactly as in the file (special tokens: `<|endoftext|>`).
    pub fn id(&self, token: &str) -> Option<u32> {
        self.tokens
            .iter()
            .position(|t| t == token)
            .map(|i| i as u32)
    }

    /// Text of ordinary tokens (byte-level BPE undone, invalid UTF-8 replaced).
    pub fn decode(&self, ids: &[u32]) -> String {
        let bytes: Vec<u8> = ids
            .iter()
            .filter_map(|&i| self.tokens.get(i as usize))
            .flat_map(|t| t.chars())
            .filter_map(|c| self.byte_of_char.get(&c).copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Most tokens a transcription may produce (Whisper's own limit per 30 s is 224).
const MAX_TOKENS: usize = 224;

/// Greedy transcription of up to 30 s of 16 kHz mono speech (English for multilingual models).
pub fn transcribe(
    encoder: &WhisperEncoder,
    decoder: &WhisperDecoder,
    vocab: &Vocabulary,
    samples: &[f32],
    device: &Device,
) -> Result<String> {
    if samples.len() > CONTEXT_SAMPLES {
        return Err(Error::InvalidArgument(format!(
            "{:.1} s of audio: transcription checks take at most 30 s",
            samples.len() as f64 / 16_000.0
        )));
    }
    let special = |t: &str| {
        vocab
            .id(t)
            .ok_or_else(|| Error::InvalidArgument(format!("the vocabulary has no {t} token")))
    };
    let eot = special("<|endoftext|>")?;
    let mut tokens = vec![special("<|startoftranscript|>")?];
    if encoder.config().is_multilingual() {
        tokens.push(special("<|en|>")?);
        tokens.push(special("<|transcribe|>")?);
    }
    tokens.push(special("<|notimestamps|>")?);
    let prompt = tokens.len();

    // Like Whisper: the 30-s context is zero-padded, and the mel is normalised over all of it.
    let mut padded = samples.to_vec();
    padded.resize(CONTEXT_SAMPLES, 0.0);
    let mel = WhisperMel::new(encoder.config().n_mels)?;
    let frames = WhisperMel::frames(padded.len());
    let mut features = vec![0.0; mel.n_mels() * frames];
    mel.compute_into(&padded, &mut features, &mut mel.scratch())?;
    let x = Tensor::from_vec(features, (1, mel.n_mels(), frames), device)?;
    let encoded = encoder.forward(&x)?;

    while tokens.len() < prompt + MAX_TOKENS {
        let logits = decoder.next_logits(&tokens, &encoded)?.to_vec1::<f32>()?;
        // Ordinary text tokens and end-of-text only: no special or timestamp token is emitted.
        let next = logits
            .iter()
            .enumerate()
            .filter(|&(i, _)| i as u32 <= eot)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i as u32)
            .unwrap_or(eot);
        if next == eot {
            break;
        }
        tokens.push(next);
    }
    Ok(vocab.decode(&tokens[prompt..]).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_tokens_decode_to_text() {
        let v = Vocabulary::parse("Hello\nĠworld\n!\nĠcaf\nÃ©\n<|endoftext|>");
        assert_eq!(v.decode(&[0, 1, 2]), "Hello world!");
        assert_eq!(v.decode(&[3, 4]), " café");
        assert_eq!(v.id("<|endoftext|>"), Some(5));
        assert_eq!(v.len(), 6);
    }

    #[test]
    fn every_byte_has_exactly_one_character() {
        let table = byte_of_char();
        assert_eq!(table.len(), 256);
        let mut bytes: Vec<u8> = table.values().copied().collect();
        bytes.sort_unstable();
        bytes.dedup();
        assert_eq!(bytes.len(), 256);
        assert_eq!(table[&'Ġ'], b' ');
    }
}
