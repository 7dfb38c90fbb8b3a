//! CPU kernels the seed CNN needs that candle's CPU backend does poorly.
//!
//! candle's CPU `conv2d` runs the seed network at ~23 ms/window. Two replacements, both candle
//! custom ops so they compose with the rest of the graph (on CUDA the model uses candle's own
//! `conv2d` instead):
//! * [`seed_trunk`]: on CPUs with AVX2+FMA, the whole trunk (two 3×3 convolutions, ReLUs and the
//!   2×2 pool) in one pass over bands of rows, with a register-tiled direct convolution
//!   ([`conv_row`]); the activations never leave the cache.
//! * [`conv_nhwc`] and [`maxpool_nhwc`]: layer by layer, each convolution row as three small
//!   GEMMs over *overlapping strided views* of the input (no im2col copy), for other CPUs and as
//!   the baseline the fused pass is measured against.
//! * [`dense_ksplit`]: the first dense layer's long, thin product with its reduction split
//!   across threads, so small batches stream the 29 MB of weights at the bus's speed.

pub mod conv_nhwc;
pub mod conv_row;
pub mod dense_ksplit;
pub mod maxpool_nhwc;
pub mod seed_trunk;

pub use conv_nhwc::{conv2d_nhwc, Conv2dNhwc};
pub use conv_row::{ConvRowKernel, Isa};
pub use dense_ksplit::matmul_ksplit;
pub use maxpool_nhwc::{max_pool2d_nhwc, MaxPool2dNhwc};
pub use seed_trunk::SeedTrunk;

use candle_core::{CpuStorage, Layout};

/// Borrows a contiguous f32 CPU storage, or says which operand is not.
pub(crate) fn contiguous_f32<'a>(
    op: &str,
    what: &str,
    s: &'a CpuStorage,
    l: &Layout,
) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else {
        candle_core::bail!("{op}: {what} must be f32");
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: {what} must be contiguous"),
    }
}
