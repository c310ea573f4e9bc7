//! Ops that move elements without arithmetic: concatenation, flatten, reshape, transpose, gather,
//! and scatter (gather's inverse with fill values, which pruning inserts for removed positions).

use super::{norm_axis, KResult};
use ndarray::{ArrayD, Axis, Dimension, IxDyn};

/// Concatenation along `axis` (negative counts from the end).
pub fn concat(inputs: &[&ArrayD<f32>], axis: i64) -> KResult {
    let first = inputs.first().ok_or("concat needs at least one input")?;
    let ax = norm_axis(axis, first.ndim(), "concat")?;
    for t in inputs {
        let ok = t.ndim() == first.ndim()
            && (0..t.ndim()).all(|d| d == ax || t.shape()[d] == first.shape()[d]);
        if !ok {
            return Err(format!(
                "concat input shapes {:?} and {:?} disagree outside axis {ax}",
                first.shape(),
                t.shape()
            ));
        }
    }
    let views: Vec<_> = inputs.iter().map(|t| t.view()).collect();
    ndarray::concatenate(Axis(ax), &views).map_err(|e| e.to_string())
}

/// ONNX Flatten: `[prod(dims < axis), prod(dims >= axis)]`; `axis` may equal the rank.
pub fn flatten(x: &ArrayD<f32>, axis: i64) -> KResult {
    let r = x.ndim() as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a > r {
        return Err(format!("flatten axis {axis} is out of range for rank {r}"));
    }
    let a = a as usize;
    let outer: usize = x.shape()[..a].iter().product();
    let inner: usize = x.shape()[a..].iter().product();
    reshape(x, &[outer, inner])
}

/// Row-major reshape; the element count must match.
pub fn reshape(x: &ArrayD<f32>, shape: &[usize]) -> KResult {
    let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    if n != Some(x.len()) {
        let n = n.map_or("too many".to_string(), |n| n.to_string());
        return Err(format!(
            "cannot reshape {:?} ({} elements) to {shape:?} ({n} elements)",
            x.shape(),
            x.len()
        ));
    }
    // Collect in logical (row-major) order so non-standard layouts reshape correctly.
    let data: Vec<f32> = x.iter().copied().collect();
    ArrayD::from_shape_vec(IxDyn(shape), data).map_err(|e| e.to_string())
}

/// Axis permutation: output axis `i` is input axis `perm[i]`.
pub fn transpose(x: &ArrayD<f32>, perm: &[usize]) -> KResult {
    let mut seen = vec![false; x.ndim()];
    if perm.len() != x.ndim()
        || perm
            .iter()
            .any(|&p| p >= x.ndim() || std::mem::replace(&mut seen[p], true))
    {
        return Err(format!(
            "transpose permutation {perm:?} is invalid for rank {}",
            x.ndim()
        ));
    }
    Ok(x.view()
        .permuted_axes(IxDyn(perm))
        .as_standard_layout()
        .into_owned())
}

/// Keeps the listed positions along `axis`, in the listed order.
pub fn gather(x: &ArrayD<f32>, axis: i64, indices: &[usize]) -> KResult {
    let ax = norm_axis(axis, x.ndim(), "gather")?;
    let len = x.shape()[ax];
    if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
        return Err(format!(
            "gather index {bad} is out of range for axis length {len}"
        ));
    }
    Ok(x.select(Axis(ax), indices))
}

/// `table[ids]` (`nn.embedding`): for each id (an integer carried as f32), that row of the 2-D
/// table; the result has the ids' shape + [width].
pub fn embedding(table: &ArrayD<f32>, ids: &ArrayD<f32>) -> KResult {
    let &[rows, width] = table.shape() else {
        return Err(format!(
            "embedding table has shape {:?}, not [rows, width]",
            table.shape()
        ));
    };
    let mut out = Vec::with_capacity(ids.len() * width);
    for &id in ids.iter() {
        if id.fract() != 0.0 || id < 0.0 || id >= rows as f32 {
            return Err(format!(
                "token id {id} is out of range for a table of {rows} rows"
            ));
        }
        out.extend(table.index_axis(Axis(0), id as usize).iter().copied());
    }
    let shape: Vec<usize> = ids.shape().iter().copied().chain([width]).collect();
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(|e| e.to_string())
}

/// Inverse of [`gather`]: the output has length `size` along `axis`; position `indices[i]`
/// takes input position `i`, every other position `p` is filled with the constant `fill[p]`.
pub fn scatter(
    x: &ArrayD<f32>,
    axis: i64,
    indices: &[usize],
    size: usize,
    fill: &[f32],
) -> KResult {
    let ax = norm_axis(axis, x.ndim(), "scatter")?;
    if x.shape()[ax] != indices.len() {
        return Err(format!(
            "scatter input has {} positions along axis {ax} but {} indices were given",
            x.shape()[ax],
            indices.len()
        ));
    }
    if fill.len() != size {
        return Err(format!(
            "scatter fill has {} values but size is {size}",
            fill.len()
        ));
    }
    let outer = x.len().checked_div(indices.len()).unwrap_or(0);
    if outer.checked_mul(size).is_none() {
        return Err(format!(
            "scatter output of size {size} along axis {ax} is too large"
        ));
    }
    let mut src: Vec<Option<usize>> = vec![None; size];
    for (i, &p) in indices.iter().enumerate() {
        if p >= size {
            return Err(format!("scatter index {p} is out of range for size {size}"));
        }
        if src[p].replace(i).is_some() {
            return Err(format!("scatter index {p} is listed twice"));
        }
    }
    let mut shape = x.shape().to_vec();
    shape[ax] = size;
    Ok(ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        let p = idx[ax];
        match src[p] {
            Some(i) => {
                let mut xi = idx.slice().to_vec();
                xi[ax] = i;
                x[IxDyn(&xi)]
            }
            None => fill[p],
        }
    }))
}
