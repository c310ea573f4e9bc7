//! Reference kernels over `ArrayD<f32>` with PyTorch/ONNX semantics (NCHW layout).
//!
//! These are deliberately naive loops: they are the oracle against which every optimization is
//! checked, so clarity beats speed. Every shape mismatch is reported as `Err`, never a panic,
//! because the interpreter runs on user-supplied networks and weights.

use crate::ir::infer;
use ndarray::{ArrayD, Axis, Dimension, IxDyn};

/// Result type of every kernel: a shape mismatch is an error message, not a panic.
pub type KResult = Result<ArrayD<f32>, String>;

/// Elementwise binary operations supporting NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
}

/// [`infer::norm_axis`] with the kernel's name in the message.
fn norm_axis(axis: i64, rank: usize, what: &str) -> Result<usize, String> {
    infer::norm_axis(axis, rank).map_err(|e| format!("{what} {e}"))
}

/// NumPy broadcast of two shapes (aligned at the right).
fn broadcast_shapes(a: &[usize], b: &[usize], what: &str) -> Result<Vec<usize>, String> {
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
fn broadcast_index(out_idx: &[usize], shape: &[usize]) -> Vec<usize> {
    let off = out_idx.len() - shape.len();
    shape
        .iter()
        .enumerate()
        .map(|(i, &d)| if d == 1 { 0 } else { out_idx[off + i] })
        .collect()
}

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

fn check_rank4(x: &ArrayD<f32>, what: &str) -> Result<[usize; 4], String> {
    match x.shape() {
        &[n, c, h, w] => Ok([n, c, h, w]),
        s => Err(format!(
            "{what} input must be 4-d (nchw) but has shape {s:?}"
        )),
    }
}

/// 2-d convolution, `w` is `[Cout, Cin/groups, KH, KW]`, pads are (top, left, bottom, right).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    x: &ArrayD<f32>,
    w: &ArrayD<f32>,
    b: Option<&ArrayD<f32>>,
    strides: [u64; 2],
    pads: [u64; 4],
    dilations: [u64; 2],
    groups: u64,
) -> KResult {
    let [n, c, h, wd] = check_rank4(x, "conv2d")?;
    let [co, cig, kh, kw] = match w.shape() {
        &[a, b, c, d] => [a, b, c, d],
        s => return Err(format!("conv2d weight must be 4-d but has shape {s:?}")),
    };
    let g = groups as usize;
    if g == 0 || strides.contains(&0) || dilations.contains(&0) {
        return Err("conv2d groups, strides and dilations must be positive".into());
    }
    if c % g != 0 || co % g != 0 {
        return Err(format!(
            "conv2d channels ({c} in, {co} out) are not divisible by {g} groups"
        ));
    }
    if c / g != cig {
        return Err(format!(
            "conv2d input has {c} channels but the weight expects {}",
            cig * g
        ));
    }
    if let Some(b) = b {
        if b.shape() != [co] {
            return Err(format!(
                "conv2d bias has shape {:?} but the weight has {co} output channels",
                b.shape()
            ));
        }
    }
    check_attrs(&strides, "conv2d")?;
    check_attrs(&pads, "conv2d")?;
    check_attrs(&dilations, "conv2d")?;
    let [sh, sw] = strides.map(|v| v as usize);
    let [dh, dw] = dilations.map(|v| v as usize);
    let [pt, pl, pb, pr] = pads.map(|v| v as usize);
    let (ph, pw) = (h + pt + pb, wd + pl + pr);
    // Dilated kernel extent, `None` on overflow (then it cannot fit anyway).
    let extent = |k: usize, d: usize| k.checked_sub(1)?.checked_mul(d)?.checked_add(1);
    let (eff_h, eff_w) = match (extent(kh, dh), extent(kw, dw)) {
        (Some(eh), Some(ew)) if eh <= ph && ew <= pw => (eh, ew),
        _ => {
            return Err(format!(
            "conv2d kernel {kh}x{kw} (dilations {dh}x{dw}) does not fit the padded input {ph}x{pw}"
        ))
        }
    };
    let oh = (ph - eff_h) / sh + 1;
    let ow = (pw - eff_w) / sw + 1;
    let co_per_g = co / g;
    Ok(ArrayD::from_shape_fn(IxDyn(&[n, co, oh, ow]), |idx| {
        let (ni, o, y, xo) = (idx[0], idx[1], idx[2], idx[3]);
        let grp = o / co_per_g;
        let mut acc = b.map_or(0.0, |b| b[[o]]);
        for ci in 0..cig {
            let cin = grp * cig + ci;
            for ky in 0..kh {
                // Signed arithmetic: positions in the padding contribute zero.
                let iy = (y * sh + ky * dh) as isize - pt as isize;
                if iy < 0 || iy >= h as isize {
                    continue;
                }
                for kx in 0..kw {
                    let ix = (xo * sw + kx * dw) as isize - pl as isize;
                    if ix < 0 || ix >= wd as isize {
                        continue;
                    }
                    acc += x[[ni, cin, iy as usize, ix as usize]] * w[[o, ci, ky, kx]];
                }
            }
        }
        acc
    }))
}

/// Inference batch normalization over axis 1: `(x - mean) / sqrt(var + eps) * scale + bias`.
pub fn batch_norm(
    x: &ArrayD<f32>,
    scale: &ArrayD<f32>,
    bias: &ArrayD<f32>,
    mean: &ArrayD<f32>,
    var: &ArrayD<f32>,
    epsilon: f32,
) -> KResult {
    if x.ndim() < 2 {
        return Err(format!(
            "batch_norm input must have at least 2 axes but has shape {:?}",
            x.shape()
        ));
    }
    let c = x.shape()[1];
    for (name, p) in [
        ("scale", scale),
        ("bias", bias),
        ("mean", mean),
        ("var", var),
    ] {
        if p.shape() != [c] {
            return Err(format!(
                "batch_norm {name} has shape {:?} but the input has {c} channels",
                p.shape()
            ));
        }
    }
    let mut out = x.clone();
    for (idx, v) in out.indexed_iter_mut() {
        let ch = idx[1];
        *v = (*v - mean[[ch]]) / (var[[ch]] + epsilon).sqrt() * scale[[ch]] + bias[[ch]];
    }
    Ok(out)
}

/// Elementwise `x op y` with NumPy broadcasting.
pub fn binary(x: &ArrayD<f32>, y: &ArrayD<f32>, op: BinaryOp) -> KResult {
    let shape = broadcast_shapes(x.shape(), y.shape(), "binary")?;
    Ok(ArrayD::from_shape_fn(IxDyn(&shape), |idx| {
        let a = x[IxDyn(&broadcast_index(idx.slice(), x.shape()))];
        let b = y[IxDyn(&broadcast_index(idx.slice(), y.shape()))];
        match op {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
        }
    }))
}

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

/// Largest stride, pad, dilation, kernel size or group count accepted: keeps every index
/// computation of the spatial kernels far from overflow.
const MAX_ATTR: u64 = u32::MAX as u64;

fn check_attrs(values: &[u64], what: &str) -> Result<(), String> {
    match values.iter().find(|&&v| v > MAX_ATTR) {
        Some(v) => Err(format!("{what} attribute value {v} is too large")),
        None => Ok(()),
    }
}

/// Output length of one pooling axis, ONNX/PyTorch rules: with `ceil_mode` the last window must
/// start inside the input or the left padding (one that would start in the right padding is
/// dropped). `None` if the kernel does not fit the padded input.
fn pool_out(len: usize, k: usize, s: usize, p0: usize, p1: usize, ceil: bool) -> Option<usize> {
    let span = (len + p0 + p1).checked_sub(k)?;
    let mut out = if ceil { span.div_ceil(s) } else { span / s } + 1;
    if ceil && (out - 1) * s >= len + p0 {
        out -= 1;
    }
    Some(out)
}

/// Geometry of a 2-d pooling: input shape, output spatial size and the per-axis parameters.
struct PoolGeom {
    nchw: [usize; 4],
    out: [usize; 2],
    kernel: [usize; 2],
    strides: [usize; 2],
    /// [top, left, bottom, right]
    pads: [usize; 4],
}

impl PoolGeom {
    /// The window of output position `o` along spatial axis `axis` (0 = H, 1 = W), as
    /// `(start, end, clipped_start, clipped_end)` in input coordinates: `start..end` is the
    /// window cut at the end of the trailing padding (the ceil-mode overhang is excluded), and
    /// `clipped_start..clipped_end` is its part inside the input.
    fn window(&self, axis: usize, o: usize) -> (isize, isize, usize, usize) {
        let len = self.nchw[2 + axis] as isize;
        let (p0, p1) = (self.pads[axis] as isize, self.pads[axis + 2] as isize);
        let start = (o * self.strides[axis]) as isize - p0;
        let end = (start + self.kernel[axis] as isize).min(len + p1);
        let cs = start.max(0) as usize;
        let ce = end.min(len).max(start.max(0)) as usize;
        (start, end, cs, ce)
    }
}

/// Shared geometry checks for 2-d pooling.
fn pool_geom(
    x: &ArrayD<f32>,
    kernel: [u64; 2],
    strides: [u64; 2],
    pads: [u64; 4],
    ceil_mode: bool,
    what: &str,
) -> Result<PoolGeom, String> {
    let nchw = check_rank4(x, what)?;
    if kernel.contains(&0) || strides.contains(&0) {
        return Err(format!("{what} kernel and strides must be positive"));
    }
    check_attrs(&kernel, what)?;
    check_attrs(&strides, what)?;
    check_attrs(&pads, what)?;
    let [h, w] = [nchw[2], nchw[3]];
    let [kh, kw] = kernel.map(|v| v as usize);
    let [sh, sw] = strides.map(|v| v as usize);
    let [pt, pl, pb, pr] = pads.map(|v| v as usize);
    let oh = pool_out(h, kh, sh, pt, pb, ceil_mode);
    let ow = pool_out(w, kw, sw, pl, pr, ceil_mode);
    match (oh, ow) {
        (Some(oh), Some(ow)) => Ok(PoolGeom {
            nchw,
            out: [oh, ow],
            kernel: [kh, kw],
            strides: [sh, sw],
            pads: [pt, pl, pb, pr],
        }),
        _ => Err(format!(
            "{what} kernel {kh}x{kw} does not fit the padded input {}x{}",
            h + pt + pb,
            w + pl + pr
        )),
    }
}

/// 2-d max pooling; padding never wins (it behaves as `-inf`) and NaN propagates (PyTorch).
pub fn max_pool2d(
    x: &ArrayD<f32>,
    kernel: [u64; 2],
    strides: [u64; 2],
    pads: [u64; 4],
    ceil_mode: bool,
) -> KResult {
    let g = pool_geom(x, kernel, strides, pads, ceil_mode, "max_pool2d")?;
    let [n, c, _, _] = g.nchw;
    let [oh, ow] = g.out;
    Ok(ArrayD::from_shape_fn(IxDyn(&[n, c, oh, ow]), |idx| {
        let (_, _, ys, ye) = g.window(0, idx[2]);
        let (_, _, xs, xe) = g.window(1, idx[3]);
        let mut m = f32::NEG_INFINITY;
        for iy in ys..ye {
            for ix in xs..xe {
                let v = x[[idx[0], idx[1], iy, ix]];
                if v > m || v.is_nan() {
                    m = v;
                }
                if m.is_nan() {
                    return m;
                }
            }
        }
        m
    }))
}

/// 2-d average pooling. With `count_include_pad` the divisor counts padding cells but never
/// the part of a ceil-mode window that runs past the right/bottom padding (PyTorch and ONNX).
pub fn avg_pool2d(
    x: &ArrayD<f32>,
    kernel: [u64; 2],
    strides: [u64; 2],
    pads: [u64; 4],
    ceil_mode: bool,
    count_include_pad: bool,
) -> KResult {
    let g = pool_geom(x, kernel, strides, pads, ceil_mode, "avg_pool2d")?;
    let [n, c, _, _] = g.nchw;
    let [oh, ow] = g.out;
    Ok(ArrayD::from_shape_fn(IxDyn(&[n, c, oh, ow]), |idx| {
        let (y0, y1, ys, ye) = g.window(0, idx[2]);
        let (x0, x1, xs, xe) = g.window(1, idx[3]);
        let mut sum = 0.0f32;
        for iy in ys..ye {
            for ix in xs..xe {
                sum += x[[idx[0], idx[1], iy, ix]];
            }
        }
        let count = if count_include_pad {
            ((y1 - y0) * (x1 - x0)) as usize
        } else {
            (ye - ys) * (xe - xs)
        };
        if count == 0 {
            0.0
        } else {
            sum / count as f32
        }
    }))
}

/// Mean over H and W, keeping them as size-1 axes.
pub fn global_avg_pool(x: &ArrayD<f32>) -> KResult {
    check_rank4(x, "global_avg_pool")?;
    mean(x, &[2, 3], true)
}

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

/// Softmax along `axis`, subtracting the maximum first for numerical stability.
pub fn softmax(x: &ArrayD<f32>, axis: i64) -> KResult {
    let ax = Axis(norm_axis(axis, x.ndim(), "softmax")?);
    let mut out = x.clone();
    for mut lane in out.lanes_mut(ax) {
        let m = lane.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        lane.mapv_inplace(|v| (v - m).exp());
        let s: f32 = lane.iter().sum();
        lane.mapv_inplace(|v| v / s);
    }
    Ok(out)
}

/// ONNX LayerNormalization: normalize over axes `axis..rank`; `scale`/`bias` have the shape
/// of those trailing axes (biased variance, as ONNX and PyTorch).
pub fn layer_norm(
    x: &ArrayD<f32>,
    scale: &ArrayD<f32>,
    bias: Option<&ArrayD<f32>>,
    axis: i64,
    epsilon: f32,
) -> KResult {
    let a = norm_axis(axis, x.ndim(), "layer_norm")?;
    let tail = &x.shape()[a..];
    for (name, p) in [("scale", Some(scale)), ("bias", bias)] {
        if let Some(p) = p {
            if p.shape() != tail {
                return Err(format!(
                    "layer_norm {name} has shape {:?} but the normalized axes are {tail:?}",
                    p.shape()
                ));
            }
        }
    }
    let outer: usize = x.shape()[..a].iter().product();
    let inner: usize = tail.iter().product();
    let flat: Vec<f32> = x.iter().copied().collect();
    let sc: Vec<f32> = scale.iter().copied().collect();
    let bi: Option<Vec<f32>> = bias.map(|b| b.iter().copied().collect());
    let mut out = Vec::with_capacity(flat.len());
    for row in flat.chunks(inner.max(1)).take(outer) {
        let mu = row.iter().sum::<f32>() / inner as f32;
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / inner as f32;
        let inv = 1.0 / (var + epsilon).sqrt();
        for (i, &v) in row.iter().enumerate() {
            out.push((v - mu) * inv * sc[i] + bi.as_ref().map_or(0.0, |b| b[i]));
        }
    }
    ArrayD::from_shape_vec(IxDyn(x.shape()), out).map_err(|e| e.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::ArrayD;

    fn t(shape: &[usize], v: &[f32]) -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
    }
    fn seq(shape: &[usize]) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        t(shape, &(0..n).map(|i| i as f32).collect::<Vec<_>>())
    }
    fn vals(a: &ArrayD<f32>) -> Vec<f32> {
        a.iter().copied().collect()
    }

    #[test]
    fn linear_and_errors() {
        let x = t(&[1, 2, 2], &[1., 2., 3., 4.]);
        let w = t(&[3, 2], &[1., 0., 0., 1., 1., 1.]);
        let b = t(&[3], &[0., 0., 10.]);
        let y = linear(&x, &w, Some(&b)).unwrap();
        assert_eq!(y.shape(), &[1, 2, 3]);
        assert_eq!(vals(&y), vec![1., 2., 13., 3., 4., 17.]);
        assert!(linear(&t(&[3], &[1., 2., 3.]), &w, None).is_err());
    }

    #[test]
    fn matmul_cases() {
        let a = t(&[2, 2], &[1., 2., 3., 4.]);
        let b = t(&[2, 2], &[5., 6., 7., 8.]);
        assert_eq!(vals(&matmul(&a, &b).unwrap()), vec![19., 22., 43., 50.]);
        let v = t(&[2], &[1., 1.]);
        let r = matmul(&a, &v).unwrap();
        assert_eq!((r.shape(), vals(&r)), (&[2][..], vec![3., 7.]));
        let r = matmul(&v, &a).unwrap();
        assert_eq!((r.shape(), vals(&r)), (&[2][..], vec![4., 6.]));
        assert_eq!(matmul(&v, &v).unwrap().shape(), &[] as &[usize]);
        // Batch broadcasting: [2,1,2,2] x [3,2,2] -> [2,3,2,2].
        let ba = seq(&[2, 1, 2, 2]);
        let bb = seq(&[3, 2, 2]);
        let r = matmul(&ba, &bb).unwrap();
        assert_eq!(r.shape(), &[2, 3, 2, 2]);
        // batch (1,2): a=[[4,5],[6,7]], b=[[8,9],[10,11]] -> [[82,91],[118,131]]
        assert_eq!(r[[1, 2, 0, 0]], 82.);
        assert_eq!(r[[1, 2, 1, 1]], 131.);
        assert!(matmul(&a, &t(&[3], &[1., 2., 3.])).is_err());
        assert!(matmul(&seq(&[2, 2, 2]), &seq(&[3, 2, 2])).is_err());
    }

    #[test]
    fn conv_basic_pad_stride() {
        let x = seq(&[1, 1, 3, 3]);
        let w = t(&[1, 1, 2, 2], &[1., 1., 1., 1.]);
        let y = conv2d(&x, &w, None, [1, 1], [0; 4], [1, 1], 1).unwrap();
        assert_eq!(vals(&y), vec![8., 12., 20., 24.]);
        // pad 1 everywhere, stride 2: windows at (-1,-1),(−1,1),(1,−1),(1,1)
        let b = t(&[1], &[0.5]);
        let y = conv2d(&x, &w, Some(&b), [2, 2], [1, 1, 1, 1], [1, 1], 1).unwrap();
        assert_eq!(y.shape(), &[1, 1, 2, 2]);
        assert_eq!(vals(&y), vec![0.5, 3.5, 9.5, 24.5]);
    }

    #[test]
    fn conv_dilation_and_groups() {
        let x = seq(&[1, 1, 3, 3]);
        let w = t(&[1, 1, 2, 2], &[1., 1., 1., 1.]);
        let y = conv2d(&x, &w, None, [1, 1], [0; 4], [2, 2], 1).unwrap();
        assert_eq!(vals(&y), vec![0. + 2. + 6. + 8.]);
        // Depthwise: 2 channels, each with its own 1x1 weight.
        let x = seq(&[1, 2, 2, 2]);
        let w = t(&[2, 1, 1, 1], &[2., -1.]);
        let y = conv2d(&x, &w, None, [1, 1], [0; 4], [1, 1], 2).unwrap();
        assert_eq!(vals(&y), vec![0., 2., 4., 6., -4., -5., -6., -7.]);
        // Grouped: 4 in, 2 out, 2 groups; out0 = c0 + c1, out1 = c2 - c3.
        let x = seq(&[1, 4, 1, 1]);
        let w = t(&[2, 2, 1, 1], &[1., 1., 1., -1.]);
        let y = conv2d(&x, &w, None, [1, 1], [0; 4], [1, 1], 2).unwrap();
        assert_eq!(vals(&y), vec![1., -1.]);
    }

    #[test]
    fn conv_errors() {
        let x = seq(&[1, 3, 3, 3]);
        let w = seq(&[1, 4, 1, 1]);
        let e = conv2d(&x, &w, None, [1, 1], [0; 4], [1, 1], 1).unwrap_err();
        assert_eq!(e, "conv2d input has 3 channels but the weight expects 4");
        let w = seq(&[1, 3, 5, 5]);
        assert!(conv2d(&x, &w, None, [1, 1], [0; 4], [1, 1], 1).is_err());
        assert!(conv2d(&seq(&[3, 3]), &w, None, [1, 1], [0; 4], [1, 1], 1).is_err());
        assert!(conv2d(&x, &seq(&[2, 3, 1, 1]), None, [1, 1], [0; 4], [1, 1], 2).is_err());
    }

    #[test]
    fn batch_norm_axis1() {
        let x = t(&[1, 2, 1, 1], &[3., 5.]);
        let one = t(&[2], &[1., 2.]);
        let bias = t(&[2], &[0., 1.]);
        let mean = t(&[2], &[1., 1.]);
        let var = t(&[2], &[4., 1.]);
        let y = batch_norm(&x, &one, &bias, &mean, &var, 0.0).unwrap();
        // ch0: (3-1)/2*1+0 = 1; ch1: (5-1)/1*2+1 = 9
        assert_eq!(vals(&y), vec![1., 9.]);
        assert!(batch_norm(&x, &t(&[3], &[1., 1., 1.]), &bias, &mean, &var, 0.0).is_err());
    }

    #[test]
    fn binary_broadcast() {
        let x = t(&[2, 1], &[1., 2.]);
        let y = t(&[3], &[10., 20., 30.]);
        let r = binary(&x, &y, BinaryOp::Add).unwrap();
        assert_eq!(r.shape(), &[2, 3]);
        assert_eq!(vals(&r), vec![11., 21., 31., 12., 22., 32.]);
        let r = binary(&x, &y, BinaryOp::Sub).unwrap();
        assert_eq!(vals(&r), vec![-9., -19., -29., -8., -18., -28.]);
        let r = binary(&y, &t(&[], &[2.]), BinaryOp::Mul).unwrap();
        assert_eq!(vals(&r), vec![20., 40., 60.]);
        assert!(binary(&t(&[2], &[1., 2.]), &y, BinaryOp::Add).is_err());
    }

    #[test]
    fn concat_axes() {
        let a = seq(&[1, 2]);
        let b = t(&[1, 1], &[9.]);
        let r = concat(&[&a, &b], -1).unwrap();
        assert_eq!(vals(&r), vec![0., 1., 9.]);
        assert!(concat(&[&a, &b], 0).is_err());
        assert!(concat(&[&a, &b], 2).is_err());
        assert!(concat(&[], 0).is_err());
    }

    #[test]
    fn max_pool_ceil_and_pads() {
        let x = seq(&[1, 1, 5, 5]);
        let y = max_pool2d(&x, [2, 2], [2, 2], [0; 4], false).unwrap();
        assert_eq!(vals(&y), vec![6., 8., 16., 18.]);
        let y = max_pool2d(&x, [2, 2], [2, 2], [0; 4], true).unwrap();
        assert_eq!(y.shape(), &[1, 1, 3, 3]);
        assert_eq!(vals(&y), vec![6., 8., 9., 16., 18., 19., 21., 23., 24.]);
        // Padding behaves as -inf even for negative inputs.
        let x = t(&[1, 1, 1, 2], &[-3., -1.]);
        let y = max_pool2d(&x, [1, 2], [1, 2], [0, 1, 0, 1], false).unwrap();
        assert_eq!(vals(&y), vec![-3., -1.]);
        // ceil_mode drops a window that would start entirely in the right padding:
        // len 4, k 2, s 2, pad 1/1 -> ceil((6-2)/2)+1 = 3, last start 4 >= 4+1? no -> 3.
        // len 3, k 2, s 2, pad 1/1 -> ceil(3/2)+1 = 3, last start 4 >= 3+1 -> dropped -> 2.
        let y = max_pool2d(&seq(&[1, 1, 1, 3]), [1, 2], [1, 2], [0, 1, 0, 1], true).unwrap();
        assert_eq!(y.shape(), &[1, 1, 1, 2]);
        assert!(max_pool2d(&seq(&[1, 1, 2, 2]), [3, 3], [1, 1], [0; 4], false).is_err());
        assert!(max_pool2d(&seq(&[2, 2]), [1, 1], [1, 1], [0; 4], false).is_err());
    }

    #[test]
    fn avg_pool_count_include_pad() {
        let x = t(&[1, 1, 2, 2], &[1., 2., 3., 4.]);
        // Pad 1 all around, kernel 2, stride 2: each window holds one real value.
        let y = avg_pool2d(&x, [2, 2], [2, 2], [1; 4], false, true).unwrap();
        assert_eq!(vals(&y), vec![0.25, 0.5, 0.75, 1.0]);
        let y = avg_pool2d(&x, [2, 2], [2, 2], [1; 4], false, false).unwrap();
        assert_eq!(vals(&y), vec![1., 2., 3., 4.]);
        // ceil_mode on [0..5) 1-d row, k 2, s 2, no pad: last window [4,5) is partial and
        // its out-of-range part is never counted, even with count_include_pad.
        let x = seq(&[1, 1, 1, 5]);
        let y = avg_pool2d(&x, [1, 2], [1, 2], [0; 4], true, true).unwrap();
        assert_eq!(vals(&y), vec![0.5, 2.5, 4.]);
        // With right pad 1 and ceil: windows [-1,0],[1,2],[3,4]; count_include_pad divides by 2.
        let y = avg_pool2d(&x, [1, 2], [1, 2], [0, 1, 0, 1], true, true).unwrap();
        assert_eq!(vals(&y), vec![0., 1.5, 3.5]);
        // len 6 padded [1,1] k 3 s 2 ceil: out = ceil(5/2)+1 = 4, windows start -1,1,3,5;
        // last covers 5,6(pad),7(beyond) -> include_pad divides by 2, exclude by 1.
        let x = seq(&[1, 1, 1, 6]);
        let y = avg_pool2d(&x, [1, 3], [1, 2], [0, 1, 0, 1], true, true).unwrap();
        assert_eq!(vals(&y), vec![1. / 3., 2., 4., 2.5]);
        let y = avg_pool2d(&x, [1, 3], [1, 2], [0, 1, 0, 1], true, false).unwrap();
        assert_eq!(vals(&y), vec![0.5, 2., 4., 5.]);
    }

    #[test]
    fn reductions_and_shapes() {
        let x = seq(&[1, 2, 2, 2]);
        let g = global_avg_pool(&x).unwrap();
        assert_eq!((g.shape(), vals(&g)), (&[1, 2, 1, 1][..], vec![1.5, 5.5]));
        let m = mean(&seq(&[2, 3]), &[-1], false).unwrap();
        assert_eq!((m.shape(), vals(&m)), (&[2][..], vec![1., 4.]));
        let m = mean(&seq(&[2, 3]), &[0], true).unwrap();
        assert_eq!((m.shape(), vals(&m)), (&[1, 3][..], vec![1.5, 2.5, 3.5]));
        assert!(mean(&x, &[4], true).is_err());
        assert_eq!(flatten(&x, 1).unwrap().shape(), &[1, 8]);
        assert_eq!(flatten(&x, 0).unwrap().shape(), &[1, 8]);
        assert_eq!(flatten(&x, 4).unwrap().shape(), &[8, 1]);
        assert_eq!(flatten(&x, -2).unwrap().shape(), &[2, 4]);
        assert!(flatten(&x, 5).is_err());
        assert!(reshape(&x, &[3, 3]).is_err());
        let tr = transpose(&seq(&[2, 3]), &[1, 0]).unwrap();
        assert_eq!(vals(&tr), vec![0., 3., 1., 4., 2., 5.]);
        // Reshape of a transposed (non-standard) array follows logical order.
        assert_eq!(
            vals(&reshape(&tr, &[6]).unwrap()),
            vec![0., 3., 1., 4., 2., 5.]
        );
        assert!(transpose(&x, &[0, 0, 1, 2]).is_err());
        assert!(transpose(&x, &[0, 1]).is_err());
    }

    #[test]
    fn softmax_stable() {
        let x = t(&[2, 2], &[1000., 1000., 0., 2f32.ln()]);
        let y = softmax(&x, -1).unwrap();
        let v = vals(&y);
        assert_eq!(&v[..2], &[0.5, 0.5]);
        assert!((v[2] - 1. / 3.).abs() < 1e-6 && (v[3] - 2. / 3.).abs() < 1e-6);
        assert!(softmax(&x, 2).is_err());
    }

    #[test]
    fn layer_norm_trailing_axes() {
        let x = t(&[2, 2], &[1., 3., 5., 7.]);
        let s = t(&[2], &[1., 2.]);
        let b = t(&[2], &[0., 1.]);
        // Each row has mean m and biased variance 1: normalized [-1, 1] -> [-1, 3].
        let y = layer_norm(&x, &s, Some(&b), -1, 0.0).unwrap();
        assert_eq!(vals(&y), vec![-1., 3., -1., 3.]);
        let y = layer_norm(&x, &t(&[2, 2], &[1.; 4]), None, 0, 0.0).unwrap();
        // mean 4, var (9+1+1+9)/4 = 5
        let sd = 5f32.sqrt();
        assert!((y[[0, 0]] - (-3. / sd)).abs() < 1e-6);
        assert!((y[[1, 1]] - (3. / sd)).abs() < 1e-6);
        assert!(layer_norm(&x, &t(&[3], &[1.; 3]), None, -1, 0.0).is_err());
    }

    #[test]
    fn gather_scatter_inverse() {
        let x = seq(&[2, 4]);
        let idx = [3, 1];
        let g = gather(&x, 1, &idx).unwrap();
        assert_eq!(vals(&g), vec![3., 1., 7., 5.]);
        let fill = [-1., -2., -3., -4.];
        let s = scatter(&g, -1, &idx, 4, &fill).unwrap();
        assert_eq!(vals(&s), vec![-1., 1., -3., 3., -1., 5., -3., 7.]);
        // gather(scatter(y)) == y
        assert_eq!(gather(&s, 1, &idx).unwrap(), g);
        assert!(gather(&x, 1, &[4]).is_err());
        assert!(scatter(&g, 1, &[0], 4, &fill).is_err());
        assert!(scatter(&g, 1, &[0, 4], 4, &fill).is_err());
        assert!(scatter(&g, 1, &[0, 0], 4, &fill).is_err());
        assert!(scatter(&g, 1, &idx, 4, &fill[..3]).is_err());
    }
}
