//! CPU kernels the seed CNN needs that candle's CPU backend does poorly.
//!
//! candle's CPU `conv2d` runs the seed network at ~42 ms/window; these channels-last kernels turn
//! each 3×3 convolution row into three small GEMMs over *overlapping strided views* of the input
//! (no im2col copy at all), parallelised over output rows. They are candle custom ops, so they
//! compose with the rest of the graph; on CUDA the model uses candle's own `conv2d` instead.

pub mod conv_nhwc;
pub mod maxpool_nhwc;

pub use conv_nhwc::{conv2d_nhwc, Conv2dNhwc};
pub use maxpool_nhwc::{max_pool2d_nhwc, MaxPool2dNhwc};

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
