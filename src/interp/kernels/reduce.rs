//! Reductions: `nn.mean` over a set of axes.

use super::{norm_axis, KResult};
use ndarray::{ArrayD, IxDyn};

/// Mean over `axes` (negative allowed), optionally keeping them as size-1 axes.
pub fn mean(x: &ArrayD<f32>, axes: &[i64], keepdims: bool) -> KResult {
    let mut ax = Vec::new();
    for &a in axes {
        let a = norm_axis(a, x.ndim(), "mean")?;
        if ax.contains(&a) {
            return Err(format!("mean axis {a} is listed twice"));
        }
        ax.push(a);
    }
    let kept: Vec<usize> = x
        .shape()
        .iter()
        .enumerate()
        .map(|(d, &s)| if ax.contains(&d) { 1 } else { s })
        .collect();
    let count: usize = ax.iter().map(|&a| x.shape()[a]).product();
    let mut out = ArrayD::<f32>::zeros(IxDyn(&kept));
    for (idx, &v) in x.indexed_iter() {
        let o: Vec<usize> = (0..x.ndim())
            .map(|d| if ax.contains(&d) { 0 } else { idx[d] })
            .collect();
        out[IxDyn(&o)] += v;
    }
    out.mapv_inplace(|v| v / count as f32);
    if keepdims {
        return Ok(out);
    }
    let shape: Vec<usize> = (0..x.ndim())
        .filter(|d| !ax.contains(d))
        .map(|d| x.shape()[d])
        .collect();
    out.into_shape_with_order(IxDyn(&shape))
        .map_err(|e| e.to_string())
}
