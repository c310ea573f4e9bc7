//! Dense products: `nn.linear` (`x · wᵀ + b` over the last axis) and `nn.matmul` (NumPy
//! `matmul`, batch dimensions broadcast).

use super::elementwise::{broadcast_index, broadcast_shapes};
use super::KResult;
use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayD, ArrayView2, ArrayViewD, Axis, Dimension, Ix1, Ix2, IxDyn};

/// `y = x · wᵀ + b` over the last axis of `x`; `w` is `[out, in]`, leading dims are kept.
pub fn linear(x: &ArrayD<f32>, w: &ArrayD<f32>, b: Option<&ArrayD<f32>>) -> KResult {
    if w.ndim() != 2 {
        return Err(format!(
            "linear weight must be 2-d but has rank {}",
            w.ndim()
        ));
    }
    if x.ndim() == 0 {
        return Err("linear input must have at least one axis".into());
    }
    let (out_f, in_f) = (w.shape()[0], w.shape()[1]);
    let xin = x.shape()[x.ndim() - 1];
    if xin != in_f {
        return Err(format!(
            "linear input has {xin} features but the weight expects {in_f}"
        ));
    }
    if let Some(b) = b {
        if b.shape() != [out_f] {
            return Err(format!(
                "linear bias has shape {:?} but the weight has {out_f} outputs",
                b.shape()
            ));
        }
    }
    let mut shape = x.shape().to_vec();
    *shape.last_mut().unwrap() = out_f;
    // One matrix product over all leading positions, in the dependencies' optimized code (see
    // `conv2d`); each output starts at its bias.
    let rows = shape[..shape.len() - 1].iter().product::<usize>();
    let x = x.as_standard_layout();
    let x2 = x
        .view()
        .into_shape_with_order((rows, in_f))
        .map_err(|e| e.to_string())?;
    let w2 = w
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|e| e.to_string())?;
    let mut y = Array2::<f32>::zeros((rows, out_f));
    if let Some(b) = b {
        y.assign(
            &b.view()
                .into_dimensionality::<Ix1>()
                .map_err(|e| e.to_string())?,
        );
    }
    general_mat_mul(1.0, &x2, &w2.t(), 1.0, &mut y);
    y.into_shape_with_order(IxDyn(&shape))
        .map_err(|e| e.to_string())
}

/// NumPy `matmul`: 1-d operands are promoted (and the added axis removed afterwards), batch
/// dimensions broadcast.
pub fn matmul(a: &ArrayD<f32>, b: &ArrayD<f32>) -> KResult {
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err("matmul operands must have at least one axis".into());
    }
    let mut ash = a.shape().to_vec();
    let mut bsh = b.shape().to_vec();
    let a1 = ash.len() == 1;
    let b1 = bsh.len() == 1;
    if a1 {
        ash.insert(0, 1);
    }
    if b1 {
        bsh.push(1);
    }
    // Reshaping needs a row-major operand; a permuted view (a transpose's result) is copied.
    let (a, b) = (a.as_standard_layout(), b.as_standard_layout());
    let a2 = a
        .view()
        .into_shape_with_order(IxDyn(&ash))
        .map_err(|e| e.to_string())?;
    let b2 = b
        .view()
        .into_shape_with_order(IxDyn(&bsh))
        .map_err(|e| e.to_string())?;
    let (m, k) = (ash[ash.len() - 2], ash[ash.len() - 1]);
    let (kb, n) = (bsh[bsh.len() - 2], bsh[bsh.len() - 1]);
    if k != kb {
        return Err(format!(
            "matmul inner dimensions disagree: {k} (lhs) vs {kb} (rhs)"
        ));
    }
    let abatch = &ash[..ash.len() - 2];
    let bbatch = &bsh[..bsh.len() - 2];
    let batch = broadcast_shapes(abatch, bbatch, "matmul batch")?;
    let mut shape = batch.clone();
    shape.push(m);
    shape.push(n);
    let mut out = ArrayD::<f32>::zeros(IxDyn(&shape));
    for idx in ndarray::indices(IxDyn(&batch)) {
        let idx = idx.slice();
        let lhs = matrix(a2.view(), &broadcast_index(idx, abatch))?;
        let rhs = matrix(b2.view(), &broadcast_index(idx, bbatch))?;
        let mut o = out.view_mut();
        for &i in idx {
            o = o.index_axis_move(Axis(0), i);
        }
        let mut o = o.into_dimensionality::<Ix2>().map_err(|e| e.to_string())?;
        general_mat_mul(1.0, &lhs, &rhs, 0.0, &mut o);
    }
    // Drop the axes that were added for 1-d operands, as NumPy does.
    let mut final_shape = batch;
    if !a1 {
        final_shape.push(m);
    }
    if !b1 {
        final_shape.push(n);
    }
    out.into_shape_with_order(IxDyn(&final_shape))
        .map_err(|e| e.to_string())
}

/// The matrix at batch index `at` of `a` (its leading axes).
fn matrix<'a>(mut a: ArrayViewD<'a, f32>, at: &[usize]) -> Result<ArrayView2<'a, f32>, String> {
    for &i in at {
        a = a.index_axis_move(Axis(0), i);
    }
    a.into_dimensionality::<Ix2>().map_err(|e| e.to_string())
}
