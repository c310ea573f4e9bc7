//! Element-wise binary arithmetic (`nn.add`, `nn.sub`, `nn.mul`) with NumPy broadcasting, and the
//! broadcasting rules that `matmul` reuses for its batch dimensions.

use super::KResult;
use ndarray::{ArrayD, IxDyn, Zip};

/// Elementwise binary operations supporting NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
}

/// NumPy broadcast of two shapes (aligned at the right).
pub(super) fn broadcast_shapes(a: &[usize], b: &[usize], what: &str) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!("{what} shapes {a:?} and {b:?} cannot be broadcast"));
        };
    }
    Ok(out)
}

/// Maps an index in the broadcast output onto an operand of shape `shape` (right-aligned,
/// size-1 dims are pinned to 0).
pub(super) fn broadcast_index(out_idx: &[usize], shape: &[usize]) -> Vec<usize> {
    let off = out_idx.len() - shape.len();
    shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if d == 1 { 0 } else { out_idx[off + i] })
        .collect()
}

/// Elementwise `x op y` with NumPy broadcasting.
pub fn binary(x: &ArrayD<f32>, y: &ArrayD<f32>, op: BinaryOp) -> KResult {
    let shape = broadcast_shapes(x.shape(), y.shape(), "binary")?;
    let (Some(xb), Some(yb)) = (x.broadcast(IxDyn(&shape)), y.broadcast(IxDyn(&shape))) else {
        return Err(format!(
            "binary operands of shapes {:?} and {:?} do not broadcast",
            x.shape(),
            y.shape()
        ));
    };
    Ok(Zip::from(&xb).and(&yb).map_collect(|&a, &b| match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
    }))
}
