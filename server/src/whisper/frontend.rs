//! Window of audio → Whisper log-mel → frozen encoder → per-layer statistics.
//!
//! The output of one window is a `2·(layers + 1) × d_model` matrix: rows `0..=layers` are the
//! time-mean of the stem's and each block's residual stream, the next `layers + 1` rows their
//! time-standard-deviation. Which layer matters is learned by the head (a softmax weighting over
//! these rows), and pooling over time here keeps a training corpus's cached features small
//! (4 KB per window for tiny) so heads train in seconds and cross-validate cheaply. The window is
//! fed at its own length (at most 30 s), not padded to Whisper's 30-s context: padding would cost
//! up to 7.5× more per 4-s window, and the statistics are taken over the real frames only.

use candle_core::{Device, Tensor};

use super::mel::{WhisperMel, WhisperMelScratch, CONTEXT_SAMPLES};
use super::model::WhisperEncoder;
use crate::error::{Error, Result};

/// Windows per encoder call.
const ENCODER_BATCH: usize = 8;

/// Frozen-encoder front-end.
pub struct WhisperFrontEnd {
    mel: WhisperMel,
    encoder: WhisperEncoder,
    device: Device,
}

impl WhisperFrontEnd {
    /// Wraps a loaded encoder, running it on `device`.
    pub fn new(encoder: WhisperEncoder, device: Device) -> Result<Self> {
        Ok(Self {
            mel: WhisperMel::new(encoder.config().n_mels)?,
            encoder,
            device,
        })
    }

    /// Output `(rows, columns)` = `(2·(layers + 1), d_model)`, whatever the window length.
    pub fn output_shape(&self) -> (usize, usize) {
        let c = self.encoder.config();
        (2 * (c.encoder_layers + 1), c.d_model)
    }

    /// Fresh per-thread buffers.
    pub fn scratch(&self) -> WhisperMelScratch {
        self.mel.scratch()
    }

    /// Features of equally long `signals` into consecutive slots of `out`.
    pub fn compute_many(&self, signals: &[&[f32]], out: &mut [f32]) -> Result<()> {
        let (rows, cols) = self.output_shape();
        let per = rows * cols;
        if out.len() != signals.len() * per {
            return Err(Error::InvalidArgument(format!(
                "Whisper feature buffer holds {} values, {}×{rows}×{cols} needed",
                out.len(),
                signals.len()
            )));
        }
        let mut scratch = self.mel.scratch();
        for (batch, dst) in signals
            .chunks(ENCODER_BATCH)
            .zip(out.chunks_mut(ENCODER_BATCH * per))
        {
            let len = batch[0].len();
            if batch.iter().any(|s| s.len() != len) {
                return Err(Error::InvalidArgument(
                    "Whisper front-end: windows of one batch differ in length".into(),
                ));
            }
            if len > CONTEXT_SAMPLES {
                return Err(Error::InvalidArgument(format!(
                    "Whisper front-end: a {:.1}-s window exceeds the encoder's 30 s",
                    len as f64 / 16_000.0
                )));
            }
            let frames = WhisperMel::frames(len);
            let n_mels = self.mel.n_mels();
            let mut mels = vec![0f32; batch.len() * n_mels * frames];
            for (s, m) in batch.iter().zip(mels.chunks_mut(n_mels * frames)) {
                self.mel.compute_into(s, m, &mut scratch)?;
            }
            let x = Tensor::from_vec(mels, (batch.len(), n_mels, frames), &self.device)?;
            let stats = self.layer_statistics(&x)?;
            dst.copy_from_slice(&stats.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(())
    }

    /// `[batch, 2·(layers+1), d]`: time-means then time-standard-deviations of every state.
    fn layer_statistics(&self, mel: &Tensor) -> Result<Tensor> {
        let states = self.encoder.hidden_states(mel)?;
        let mut means = Vec::with_capacity(states.len());
        let mut stds = Vec::with_capacity(states.len());
        for s in &states {
            let mean = s.mean_keepdim(1)?;
            let var = s.broadcast_sub(&mean)?.sqr()?.mean_keepdim(1)?;
            means.push(mean);
            stds.push((var + 1e-6)?.sqrt()?);
        }
        means.extend(stds);
        Ok(Tensor::cat(&means, 1)?
            .to_device(&Device::Cpu)?
            .contiguous()?)
    }

    /// The encoder's sizes.
    pub fn encoder(&self) -> &WhisperEncoder {
        &self.encoder
    }
}
