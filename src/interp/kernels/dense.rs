//! Dense products: `nn.linear` (`x · wᵀ + b` over the last axis) and `nn.matmul` (NumPy
//! `matmul`, batch dimensions broadcast).

use super::elementwise::{broadcast_index, broadcast_shapes};
use super::KResult;
use ndarray::{ArrayD, Dimension, IxDyn};

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
    Ok(ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        let mut xi = idx.slice().to_vec();
        let o = xi[xi.len() - 1];
        let mut acc = b.map_or(0.0, |b| b[[o]]);
        for i in 0..in_f {
            *xi.last_mut().unwrap() = i;
            acc += x[IxDyn(&xi)] * w[[o, i]];
        }
        acc
    }))
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
    let out = ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        let idx = idx.slice();
        let nb = batch.len();
        let (i, j) = (idx[nb], idx[nb + 1]);
        let mut ai = broadcast_index(&idx[..nb], abatch);
        let mut bi = broadcast_index(&idx[..nb], bbatch);
        ai.extend([i, 0]);
        bi.extend([0, j]);
        let (la, lb) = (ai.len(), bi.len());
        let mut acc = 0.0;
        for p in 0..k {
            ai[la - 1] = p;
            bi[lb - 2] = p;
            acc += a2[IxDyn(&ai)] * b2[IxDyn(&bi)];
        }
        acc
    });
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
