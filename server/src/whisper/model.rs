//! Whisper's encoder and decoder in candle, reading Hugging Face tensor names.
//!
//! The encoder is what the detector uses: [`WhisperEncoder::hidden_states`] returns the output of
//! the convolutional stem and of every transformer block, because which depth carries the
//! synthesis artefacts is learned by the head, not assumed. The decoder exists to prove an import
//! correct: a converted checkpoint that transcribes speech has every tensor in the right place.
//! Inputs shorter than 30 s are run as they are (positional embeddings are taken from the start);
//! nothing pads them.

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Module, Tensor, D};
use candle_nn::{Conv1d, Conv1dConfig, LayerNorm, Linear, VarBuilder};

/// Every Whisper size uses 64-dimensional attention heads.
pub const HEAD_DIM: usize = 64;
/// LayerNorm epsilon of the reference implementation.
const LN_EPS: f64 = 1e-5;

/// Sizes of a checkpoint, read off its tensor shapes (so any Whisper size loads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhisperConfig {
    /// Mel bands of the input (80; 128 for large-v3).
    pub n_mels: usize,
    /// Width of the residual stream.
    pub d_model: usize,
    /// Transformer blocks in the encoder.
    pub encoder_layers: usize,
    /// Longest encoder input after the stride-2 stem, in frames (1500 = 30 s).
    pub max_source_positions: usize,
    /// Transformer blocks in the decoder (0 when only the encoder was loaded).
    pub decoder_layers: usize,
    /// Vocabulary size (0 when only the encoder was loaded).
    pub vocab_size: usize,
}

impl WhisperConfig {
    /// Attention heads (`d_model / 64`).
    pub fn heads(&self) -> usize {
        self.d_model / HEAD_DIM
    }

    /// Whether the vocabulary has the language tokens of the multilingual models.
    pub fn is_multilingual(&self) -> bool {
        self.vocab_size >= 51_865
    }

    /// Infers the sizes from tensor names and shapes.
    pub fn infer(tensors: &HashMap<String, Tensor>) -> std::result::Result<Self, String> {
        let shape = |name: &str| -> std::result::Result<Vec<usize>, String> {
            tensors
                .get(name)
                .map(|t| t.dims().to_vec())
                .ok_or_else(|| format!("tensor {name} is missing"))
        };
        let conv1 = shape("model.encoder.conv1.weight")?;
        let pos = shape("model.encoder.embed_positions.weight")?;
        let count = |prefix: &str| {
            (0..)
                .take_while(|i| tensors.contains_key(&format!("{prefix}.layers.{i}.fc1.weight")))
                .count()
        };
        let [d_model, n_mels, 3] = conv1[..] else {
            return Err(format!("conv1 has shape {conv1:?}, expected [d, mels, 3]"));
        };
        if d_model % HEAD_DIM != 0 {
            return Err(format!("d_model {d_model} is not a multiple of {HEAD_DIM}"));
        }
        let vocab_size = tensors
            .get("model.decoder.embed_tokens.weight")
            .map(|t| t.dims()[0])
            .unwrap_or(0);
        Ok(Self {
            n_mels,
            d_model,
            encoder_layers: count("model.encoder"),
            max_source_positions: pos.first().copied().unwrap_or(0),
            decoder_layers: count("model.decoder"),
            vocab_size,
        })
    }
}

/// Tensors under `prefix`, as f32 on `device`.
fn builder<'a>(tensors: &HashMap<String, Tensor>, device: &Device, prefix: &str) -> VarBuilder<'a> {
    VarBuilder::from_tensors(tensors.clone(), DType::F32, device).pp(prefix)
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    out: Linear,
    heads: usize,
}

impl Attention {
    fn load(vb: VarBuilder, d: usize, heads: usize) -> candle_core::Result<Self> {
        Ok(Self {
            q: candle_nn::linear(d, d, vb.pp("q_proj"))?,
            k: candle_nn::linear_no_bias(d, d, vb.pp("k_proj"))?,
            v: candle_nn::linear(d, d, vb.pp("v_proj"))?,
            out: candle_nn::linear(d, d, vb.pp("out_proj"))?,
            heads,
        })
    }

    fn split_heads(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        x.reshape((b, t, self.heads, d / self.heads))?
            .transpose(1, 2)?
            .contiguous()
    }

    /// Attention of `x` over itself (`kv = None`) or over encoder states, optionally causal.
    fn forward(
        &self,
        x: &Tensor,
        kv: Option<&Tensor>,
        causal: bool,
    ) -> candle_core::Result<Tensor> {
        let (b, t, d) = x.dims3()?;
        let src = kv.unwrap_or(x);
        let q = self.split_heads(&self.q.forward(x)?)?;
        let k = self.split_heads(&self.k.forward(src)?)?;
        let v = self.split_heads(&self.v.forward(src)?)?;
        let scale = 1.0 / ((d / self.heads) as f64).sqrt();
        let mut scores = (q.matmul(&k.t()?)? * scale)?;
        if causal {
            let mask: Vec<f32> = (0..t)
                .flat_map(|i| (0..t).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 }))
                .collect();
            let mask = Tensor::from_vec(mask, (t, t), x.device())?;
            scores = scores.broadcast_add(&mask)?;
        }
        let attn = candle_nn::ops::softmax_last_dim(&scores)?;
        let y = attn.matmul(&v)?.transpose(1, 2)?.reshape((b, t, d))?;
        self.out.forward(&y)
    }
}

struct Block {
    attn_ln: LayerNorm,
    attn: Attention,
    cross: Option<(LayerNorm, Attention)>,
    mlp_ln: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

impl Block {
    fn load(vb: VarBuilder, d: usize, heads: usize, cross: bool) -> candle_core::Result<Self> {
        let cross = if cross {
            Some((
                candle_nn::layer_norm(d, LN_EPS, vb.pp("encoder_attn_layer_norm"))?,
                Attention::load(vb.pp("encoder_attn"), d, heads)?,
            ))
        } else {
            None
        };
        Ok(Self {
            attn_ln: candle_nn::layer_norm(d, LN_EPS, vb.pp("self_attn_layer_norm"))?,
            attn: Attention::load(vb.pp("self_attn"), d, heads)?,
            cross,
            mlp_ln: candle_nn::layer_norm(d, LN_EPS, vb.pp("final_layer_norm"))?,
            fc1: candle_nn::linear(d, 4 * d, vb.pp("fc1"))?,
            fc2: candle_nn::linear(4 * d, d, vb.pp("fc2"))?,
        })
    }

    fn forward(
        &self,
        x: &Tensor,
        enc: Option<&Tensor>,
        causal: bool,
    ) -> candle_core::Result<Tensor> {
        let mut x = (x + self.attn.forward(&self.attn_ln.forward(x)?, None, causal)?)?;
        if let (Some((ln, attn)), Some(enc)) = (&self.cross, enc) {
            x = (&x + attn.forward(&ln.forward(&x)?, Some(enc), false)?)?;
        }
        let h = self.fc1.forward(&self.mlp_ln.forward(&x)?)?.gelu_erf()?;
        &x + self.fc2.forward(&h)?
    }
}

/// Whisper's audio encoder.
pub struct WhisperEncoder {
    conv1: Conv1d,
    conv2: Conv1d,
    positions: Tensor,
    blocks: Vec<Block>,
    ln_post: LayerNorm,
    cfg: WhisperConfig,
}

impl WhisperEncoder {
    /// Builds the encoder from `model.encoder.*` tensors (converted to f32 on `device`).
    pub fn load(
        tensors: &HashMap<String, Tensor>,
        cfg: &WhisperConfig,
        device: &Device,
    ) -> candle_core::Result<Self> {
        Self::from_builder(builder(tensors, device, "model.encoder"), cfg)
    }

    /// Builds the encoder from whatever `vb` (rooted at `model.encoder`) supplies.
    fn from_builder(vb: VarBuilder, cfg: &WhisperConfig) -> candle_core::Result<Self> {
        let d = cfg.d_model;
        let conv = |stride| Conv1dConfig {
            padding: 1,
            stride,
            ..Default::default()
        };
        Ok(Self {
            conv1: candle_nn::conv1d(cfg.n_mels, d, 3, conv(1), vb.pp("conv1"))?,
            conv2: candle_nn::conv1d(d, d, 3, conv(2), vb.pp("conv2"))?,
            positions: vb.get((cfg.max_source_positions, d), "embed_positions.weight")?,
            blocks: (0..cfg.encoder_layers)
                .map(|i| Block::load(vb.pp(format!("layers.{i}")), d, cfg.heads(), false))
                .collect::<candle_core::Result<_>>()?,
            ln_post: candle_nn::layer_norm(d, LN_EPS, vb.pp("layer_norm"))?,
            cfg: cfg.clone(),
        })
    }

    /// The checkpoint's sizes.
    pub fn config(&self) -> &WhisperConfig {
        &self.cfg
    }

    /// Residual-stream states for `mel` `[batch, n_mels, frames]`: the stem's output and each
    /// block's, `encoder_layers + 1` tensors of `[batch, frames / 2, d_model]`.
    pub fn hidden_states(&self, mel: &Tensor) -> candle_core::Result<Vec<Tensor>> {
        let x = self.conv1.forward(mel)?.gelu_erf()?;
        let x = self.conv2.forward(&x)?.gelu_erf()?.transpose(1, 2)?;
        let t = x.dim(1)?;
        if t > self.cfg.max_source_positions {
            return Err(candle_core::Error::Msg(format!(
                "{t} encoder frames exceed Whisper's {} (30 s)",
                self.cfg.max_source_positions
            )));
        }
        let mut x = x.broadcast_add(&self.positions.narrow(0, 0, t)?)?;
        let mut states = Vec::with_capacity(self.blocks.len() + 1);
        states.push(x.clone());
        for block in &self.blocks {
            x = block.forward(&x, None, false)?;
            states.push(x.clone());
        }
        Ok(states)
    }

    /// The encoder output the decoder attends to (last state, layer-normed).
    pub fn forward(&self, mel: &Tensor) -> candle_core::Result<Tensor> {
        let states = self.hidden_states(mel)?;
        match states.last() {
            Some(last) => self.ln_post.forward(last),
            None => Err(candle_core::Error::Msg("encoder has no layers".into())),
        }
    }
}

/// Freshly initialised encoder tensors of `cfg`'s sizes, under Hugging Face names: a stand-in
/// checkpoint for tests that must not depend on downloaded weights.
#[cfg(test)]
pub(crate) fn random_encoder_tensors(
    cfg: &WhisperConfig,
) -> candle_core::Result<HashMap<String, Tensor>> {
    let map = candle_nn::VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu).pp("model.encoder");
    WhisperEncoder::from_builder(vb, cfg)?;
    let data = map
        .data()
        .lock()
        .map_err(|e| candle_core::Error::Msg(e.to_string()))?;
    Ok(data
        .iter()
        .map(|(name, var)| (name.clone(), var.as_tensor().clone()))
        .collect())
}

/// Whisper's text decoder, without a key/value cache: it is used to check imports on short
/// utterances, where recomputing a few dozen positions per step costs milliseconds.
pub struct WhisperDecoder {
    embed: Tensor,
    positions: Tensor,
    blocks: Vec<Block>,
    ln: LayerNorm,
}

impl WhisperDecoder {
    /// Builds the decoder from `model.decoder.*` tensors.
    pub fn load(
        tensors: &HashMap<String, Tensor>,
        cfg: &WhisperConfig,
        device: &Device,
    ) -> candle_core::Result<Self> {
        let vb = builder(tensors, device, "model.decoder");
        let d = cfg.d_model;
        let positions = tensors
            .get("model.decoder.embed_positions.weight")
            .map(|t| t.dim(0))
            .transpose()?
            .unwrap_or(448);
        Ok(Self {
            embed: vb.get((cfg.vocab_size, d), "embed_tokens.weight")?,
            positions: vb.get((positions, d), "embed_positions.weight")?,
            blocks: (0..cfg.decoder_layers)
                .map(|i| Block::load(vb.pp(format!("layers.{i}")), d, cfg.heads(), true))
                .collect::<candle_core::Result<_>>()?,
            ln: candle_nn::layer_norm(d, LN_EPS, vb.pp("layer_norm"))?,
        })
    }

    /// Logits `[vocab]` for the token after `tokens`, given encoder output `[1, frames, d]`.
    pub fn next_logits(&self, tokens: &[u32], encoded: &Tensor) -> candle_core::Result<Tensor> {
        let n = tokens.len();
        if n == 0 || n > self.positions.dim(0)? {
            return Err(candle_core::Error::Msg(format!(
                "{n} tokens: the decoder takes 1 to {}",
                self.positions.dim(0)?
            )));
        }
        let ids = Tensor::new(tokens, self.embed.device())?;
        let x = self.embed.index_select(&ids, 0)?;
        let mut x = (x + self.positions.narrow(0, 0, n)?)?.unsqueeze(0)?;
        for block in &self.blocks {
            x = block.forward(&x, Some(encoded), true)?;
        }
        let last = self.ln.forward(&x)?.i((0, n - 1))?;
        self.embed.matmul(&last.unsqueeze(D::Minus1)?)?.squeeze(1)
    }
}
