//! CTranslate2 Whisper → safetensors with the Hugging Face `WhisperForConditionalGeneration`
//! tensor names.
//!
//! Those names are the common currency: the original `openai/whisper-*` safetensors use them, so
//! a user with hub access can drop such a file in place of an imported one, and
//! [`super::model`] needs to know only one layout. CTranslate2 fuses the attention projections
//! (Q‖K‖V for self-attention, K‖V for cross-attention) and renames norms to `gamma`/`beta`;
//! this module undoes both. Whisper's key projection has no bias: the zero rows CTranslate2
//! stores for it are checked to be zero and dropped.

use std::collections::HashMap;

use safetensors::Dtype;

use super::ct2::{Ct2Dtype, Ct2Model, Ct2Variable};

/// A converted tensor, owning its bytes.
#[derive(Debug, Clone)]
pub struct OwnedTensor {
    /// Element type (as stored: the packaged checkpoints are `f16`).
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian bytes, row-major.
    pub data: Vec<u8>,
}

/// Why a CTranslate2 model is not a Whisper checkpoint this importer handles.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// Not a Whisper spec.
    #[error("spec is {0}, not WhisperSpec")]
    Spec(String),
    /// A variable the layout requires is absent.
    #[error("variable {0} is missing")]
    Missing(String),
    /// Quantised (int8) checkpoints would need their scales applied; not supported.
    #[error("variable {name} is {dtype:?}; only float checkpoints can be imported")]
    Dtype {
        /// Variable.
        name: String,
        /// Its type.
        dtype: Ct2Dtype,
    },
    /// A fused projection does not split evenly or has an unexpected rank.
    #[error("variable {name}: shape {shape:?} cannot be split into {parts} equal parts")]
    Split {
        /// Variable.
        name: String,
        /// Its shape.
        shape: Vec<usize>,
        /// Parts wanted.
        parts: usize,
    },
    /// The key bias CTranslate2 stores must be zero (Whisper's key projection has none).
    #[error("variable {0}: the key part of the bias is not zero")]
    KeyBias(String),
}

fn dtype_of(name: &str, v: &Ct2Variable<'_>) -> Result<Dtype, ConvertError> {
    match v.dtype {
        Ct2Dtype::F32 => Ok(Dtype::F32),
        Ct2Dtype::F16 => Ok(Dtype::F16),
        Ct2Dtype::Bf16 => Ok(Dtype::BF16),
        other => Err(ConvertError::Dtype {
            name: name.into(),
            dtype: other,
        }),
    }
}

struct Converter<'m, 'a> {
    src: &'m Ct2Model<'a>,
    out: HashMap<String, OwnedTensor>,
}

impl<'m, 'a> Converter<'m, 'a> {
    fn var(&self, name: &str) -> Result<&'m Ct2Variable<'a>, ConvertError> {
        self.src
            .variables
            .get(name)
            .ok_or_else(|| ConvertError::Missing(name.into()))
    }

    fn copy(&mut self, from: &str, to: String) -> Result<(), ConvertError> {
        let v = self.var(from)?;
        let t = OwnedTensor {
            dtype: dtype_of(from, v)?,
            shape: v.shape.clone(),
            data: v.data.to_vec(),
        };
        self.out.insert(to, t);
        Ok(())
    }

    /// Splits `from` into `targets.len()` equal blocks along its first axis; a `None` target
    /// is a key bias, which must be all zeros and is dropped.
    fn split(&mut self, from: &str, targets: &[Option<String>]) -> Result<(), ConvertError> {
        let v = self.var(from)?;
        let dtype = dtype_of(from, v)?;
        let parts = targets.len();
        let rows = v.shape.first().copied().unwrap_or(0);
        if v.shape.is_empty() || rows % parts != 0 {
            return Err(ConvertError::Split {
                name: from.into(),
                shape: v.shape.clone(),
                parts,
            });
        }
        let mut shape = v.shape.clone();
        shape[0] = rows / parts;
        let block = v.data.len() / parts;
        for (i, target) in targets.iter().enumerate() {
            let bytes = &v.data[i * block..(i + 1) * block];
            match target {
                Some(name) => {
                    self.out.insert(
                        name.clone(),
                        OwnedTensor {
                            dtype,
                            shape: shape.clone(),
                            data: bytes.to_vec(),
                        },
                    );
                }
                // ±0.0 in any float encoding has every bit but the sign bit clear.
                None if !bytes_are_zero(bytes, v.dtype.size()) => {
                    return Err(ConvertError::KeyBias(from.into()))
                }
                None => {}
            }
        }
        Ok(())
    }

    fn linear(&mut self, from: &str, to: &str) -> Result<(), ConvertError> {
        self.copy(&format!("{from}/weight"), format!("{to}.weight"))?;
        self.copy(&format!("{from}/bias"), format!("{to}.bias"))
    }

    fn norm(&mut self, from: &str, to: &str) -> Result<(), ConvertError> {
        self.copy(&format!("{from}/gamma"), format!("{to}.weight"))?;
        self.copy(&format!("{from}/beta"), format!("{to}.bias"))
    }

    /// Fused projection `from` (weight and bias) into the named projections of `to`.
    fn fused(&mut self, from: &str, to: &str, projections: &[&str]) -> Result<(), ConvertError> {
        let weights: Vec<Option<String>> = projections
            .iter()
            .map(|p| Some(format!("{to}.{p}.weight")))
            .collect();
        self.split(&format!("{from}/weight"), &weights)?;
        let biases: Vec<Option<String>> = projections
            .iter()
            .map(|p| (*p != "k_proj").then(|| format!("{to}.{p}.bias")))
            .collect();
        self.split(&format!("{from}/bias"), &biases)
    }

    /// Pre-norm self-attention of block `from` (fused Q‖K‖V, then the output projection).
    fn self_attention(&mut self, from: &str, to: &str) -> Result<(), ConvertError> {
        self.norm(
            &format!("{from}/self_attention/layer_norm"),
            &format!("{to}.self_attn_layer_norm"),
        )?;
        self.fused(
            &format!("{from}/self_attention/linear_0"),
            &format!("{to}.self_attn"),
            &["q_proj", "k_proj", "v_proj"],
        )?;
        self.linear(
            &format!("{from}/self_attention/linear_1"),
            &format!("{to}.self_attn.out_proj"),
        )
    }

    fn ffn(&mut self, from: &str, to: &str) -> Result<(), ConvertError> {
        self.norm(
            &format!("{from}/ffn/layer_norm"),
            &format!("{to}.final_layer_norm"),
        )?;
        self.linear(&format!("{from}/ffn/linear_0"), &format!("{to}.fc1"))?;
        self.linear(&format!("{from}/ffn/linear_1"), &format!("{to}.fc2"))
    }

    fn layers(&self, side: &str) -> usize {
        (0..)
            .take_while(|i| {
                self.src
                    .variables
                    .contains_key(&format!("{side}/layer_{i}/ffn/linear_0/weight"))
            })
            .count()
    }
}

fn bytes_are_zero(bytes: &[u8], size: usize) -> bool {
    bytes.chunks_exact(size).all(|el| {
        let (last, rest) = el.split_last().unwrap_or((&0, &[]));
        rest.iter().all(|&b| b == 0) && last & 0x7f == 0
    })
}

/// Converts a CTranslate2 Whisper model (encoder and decoder) to Hugging Face tensor names.
pub fn convert(src: &Ct2Model<'_>) -> Result<HashMap<String, OwnedTensor>, ConvertError> {
    if src.spec != "WhisperSpec" {
        return Err(ConvertError::Spec(src.spec.clone()));
    }
    let mut c = Converter {
        src,
        out: HashMap::new(),
    };
    let enc = "model.encoder";
    c.linear("encoder/conv1", &format!("{enc}.conv1"))?;
    c.linear("encoder/conv2", &format!("{enc}.conv2"))?;
    c.copy(
        "encoder/position_encodings/encodings",
        format!("{enc}.embed_positions.weight"),
    )?;
    for i in 0..c.layers("encoder") {
        let (from, to) = (format!("encoder/layer_{i}"), format!("{enc}.layers.{i}"));
        c.self_attention(&from, &to)?;
        c.ffn(&from, &to)?;
    }
    c.norm("encoder/layer_norm", &format!("{enc}.layer_norm"))?;

    let dec = "model.decoder";
    c.copy(
        "decoder/embeddings/weight",
        format!("{dec}.embed_tokens.weight"),
    )?;
    c.copy(
        "decoder/position_encodings/encodings",
        format!("{dec}.embed_positions.weight"),
    )?;
    for i in 0..c.layers("decoder") {
        let (from, to) = (format!("decoder/layer_{i}"), format!("{dec}.layers.{i}"));
        c.self_attention(&from, &to)?;
        c.norm(
            &format!("{from}/attention/layer_norm"),
            &format!("{to}.encoder_attn_layer_norm"),
        )?;
        c.linear(
            &format!("{from}/attention/linear_0"),
            &format!("{to}.encoder_attn.q_proj"),
        )?;
        c.fused(
            &format!("{from}/attention/linear_1"),
            &format!("{to}.encoder_attn"),
            &["k_proj", "v_proj"],
        )?;
        c.linear(
            &format!("{from}/attention/linear_2"),
            &format!("{to}.encoder_attn.out_proj"),
        )?;
        c.ffn(&from, &to)?;
    }
    c.norm("decoder/layer_norm", &format!("{dec}.layer_norm"))?;
    Ok(c.out)
}

#[cfg(test)]
mod tests {
    use super::super::ct2::{parse, tests::write};
    use super::*;

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn fused_projections_split_into_named_blocks_and_the_key_bias_is_dropped() {
        let w: Vec<f32> = (0..6).map(|i| i as f32).collect();
        let bytes = write(
            "WhisperSpec",
            &[
                ("qkv/weight", vec![3, 2], 0, f32s(&w)),
                ("qkv/bias", vec![3], 0, f32s(&[1.0, -0.0, 3.0])),
            ],
        );
        let m = parse(&bytes).unwrap();
        let mut c = Converter {
            src: &m,
            out: HashMap::new(),
        };
        c.fused("qkv", "a", &["q_proj", "k_proj", "v_proj"])
            .unwrap();
        assert_eq!(c.out["a.k_proj.weight"].data, f32s(&[2.0, 3.0]));
        assert_eq!(c.out["a.v_proj.bias"].data, f32s(&[3.0]));
        assert_eq!(c.out["a.q_proj.weight"].shape, [1, 2]);
        assert!(!c.out.contains_key("a.k_proj.bias"));
    }

    #[test]
    fn a_non_zero_key_bias_is_refused() {
        let bytes = write(
            "WhisperSpec",
            &[
                ("qkv/weight", vec![3, 1], 0, f32s(&[1.0, 2.0, 3.0])),
                ("qkv/bias", vec![3], 0, f32s(&[0.0, 0.5, 0.0])),
            ],
        );
        let m = parse(&bytes).unwrap();
        let mut c = Converter {
            src: &m,
            out: HashMap::new(),
        };
        let err = c.fused("qkv", "a", &["q_proj", "k_proj", "v_proj"]);
        assert!(matches!(err, Err(ConvertError::KeyBias(_))));
    }

    #[test]
    fn other_specs_and_missing_variables_are_named() {
        let other = write("TransformerSpec", &[]);
        let m = parse(&other).unwrap();
        assert!(matches!(convert(&m), Err(ConvertError::Spec(_))));
        let empty = write("WhisperSpec", &[]);
        let m = parse(&empty).unwrap();
        let err = convert(&m).unwrap_err().to_string();
        assert!(err.contains("encoder/conv1/weight"), "{err}");
    }
}
