//! Reference kernels over `ArrayD<f32>` with PyTorch/ONNX semantics (NCHW layout), one file per
//! kernel family; `interp::eval` dispatches each op to one function re-exported here.
//!
//! These are deliberately naive loops: they are the oracle against which every optimization is
//! checked, so clarity beats speed. Every shape mismatch is reported as `Err`, never a panic,
//! because the interpreter runs on user-supplied networks and weights. This file holds the checks
//! several families share.

mod conv;
mod dense;
mod elementwise;
mod norm;
mod pool;
mod reduce;
mod shape;
#[cfg(test)]
mod tests;

pub use conv::conv2d;
pub use dense::{linear, matmul};
pub use elementwise::{binary, BinaryOp};
pub use norm::{batch_norm, layer_norm, rms_norm, softmax};
pub use pool::{avg_pool2d, global_avg_pool, max_pool2d};
pub use reduce::mean;
pub use shape::{concat, embedding, flatten, gather, reshape, scatter, transpose};

use crate::ir::infer;
use ndarray::ArrayD;

/// Result type of every kernel: a shape mismatch is an error message, not a panic.
pub type KResult = Result<ArrayD<f32>, String>;

/// [`infer::norm_axis`] with the kernel's name in the message.
fn norm_axis(axis: i64, rank: usize, what: &str) -> Result<usize, String> {
    infer::norm_axis(axis, rank).map_err(|e| format!("{what} {e}"))
}

/// The `[n, c, h, w]` shape of a 4-d input.
fn check_rank4(x: &ArrayD<f32>, what: &str) -> Result<[usize; 4], String> {
    match x.shape() {
        &[n, c, h, w] => Ok([n, c, h, w]),
        s => Err(format!(
            "{what} input must be 4-d (nchw) but has shape {s:?}"
        )),
    }
}

/// Largest stride, pad, dilation, kernel size or group count accepted: keeps every index
/// computation of the spatial kernels far from overflow.
const MAX_ATTR: u64 = u32::MAX as u64;

fn check_attrs(values: &[u64], what: &str) -> Result<(), String> {
    match values.iter().find(|&&v| v > MAX_ATTR) {
        Some(v) => Err(format!("{what} attribute value {v} is too large")),
        None => Ok(()),
    }
}
