//! Type inference: each op's result type from its operands' types and its attributes (the type
//! rules of `docs/dialect.md`), with the shape helpers they share (broadcasting, axis
//! normalization, windowed output lengths). The verifier checks declared types against it;
//! builders and importers use it to type the ops they create.

use super::{Dim, ElemType, Function, OpId, OpKind, TensorType};

type Infer = Result<TensorType, String>;

/// Resolves a possibly negative axis against `rank`.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if (-r..r).contains(&axis) {
        Ok(axis.rem_euclid(r) as usize)
    } else {
        Err(format!("axis {axis} is out of range for rank {rank}"))
    }
}

fn dim_eq(a: Dim, b: Dim) -> bool {
    a.compatible(b)
}

fn static_dims(t: &TensorType, what: &str) -> Result<Vec<u64>, String> {
    t.static_shape()
        .ok_or_else(|| format!("{what} must have a static shape, not {t}"))
}

/// `nn.reshape`: the static entries of `shape` as they are; its one `?` entry (if any) keeps the
/// element count, so it is static for a static input and `?` for a dynamic one (whose static
/// entries must then not be zero, or the `?` would be undetermined).
fn reshape(x: &TensorType, shape: &[Dim]) -> Infer {
    let text = shape_text(shape);
    let inferred: Vec<usize> = (0..shape.len())
        .filter(|&i| shape[i] == Dim::Dynamic)
        .collect();
    if inferred.len() > 1 {
        return Err(format!("shape {text} has more than one -1 entry"));
    }
    let known = shape
        .iter()
        .try_fold(1u64, |a, d| a.checked_mul(d.as_static().unwrap_or(1)))
        .ok_or_else(|| format!("shape {text} has too many elements"))?;
    let mut dims = shape.to_vec();
    match (x.num_elements(), inferred.first()) {
        (Some(n), None) if n != known => {
            return Err(format!("cannot reshape {x} ({n} elements) to {text}"));
        }
        (Some(_), None) => {}
        (Some(n), Some(&i)) => {
            if known == 0 || !n.is_multiple_of(known) {
                return Err(format!("cannot reshape {x} ({n} elements) to {text}"));
            }
            dims[i] = Dim::Static(n / known);
        }
        (None, None) => {
            return Err(format!(
                "reshaping {x}, whose shape is dynamic, needs a -1 entry in shape {text}"
            ));
        }
        (None, Some(_)) if known == 0 => {
            return Err(format!(
                "cannot reshape {x} to {text}: the -1 entry is undetermined"
            ));
        }
        (None, Some(_)) => {}
    }
    Ok(TensorType::new(dims, x.elem))
}

/// A reshape's `shape` as written in text: `?` entries as `-1`.
pub fn shape_text(shape: &[Dim]) -> String {
    let entries: Vec<String> = shape
        .iter()
        .map(|d| d.as_static().map_or("-1".into(), |n| n.to_string()))
        .collect();
    format!("[{}]", entries.join(", "))
}

/// NumPy broadcasting of two shapes.
pub fn broadcast(a: &TensorType, b: &TensorType) -> Infer {
    let rank = a.rank().max(b.rank());
    let get = |t: &TensorType, i: usize| {
        let off = rank - t.rank();
        if i < off {
            Dim::Static(1)
        } else {
            t.dim(i - off)
        }
    };
    let mut dims = Vec::with_capacity(rank);
    for i in 0..rank {
        let (x, y) = (get(a, i), get(b, i));
        dims.push(match (x, y) {
            (Dim::Static(1), d) | (d, Dim::Static(1)) => d,
            (Dim::Static(p), Dim::Static(q)) if p == q => x,
            (Dim::Static(_), Dim::Static(_)) => {
                return Err(format!("shapes {a} and {b} do not broadcast"));
            }
            (Dim::Static(s), Dim::Dynamic) | (Dim::Dynamic, Dim::Static(s)) => Dim::Static(s),
            (Dim::Dynamic, Dim::Dynamic) => Dim::Dynamic,
        });
    }
    Ok(TensorType::new(dims, a.elem))
}

/// Output length of a windowed axis (conv or pool).
pub fn window_out(
    size: Dim,
    kernel: u64,
    stride: u64,
    dilation: u64,
    pad: (u64, u64),
    ceil_mode: bool,
) -> Result<Dim, String> {
    let Dim::Static(size) = size else {
        return Ok(Dim::Dynamic);
    };
    let span = kernel
        .checked_sub(1)
        .and_then(|k| k.checked_mul(dilation))
        .and_then(|s| s.checked_add(1))
        .ok_or("the window must be non-empty and of a sane size")?;
    let padded = size
        .checked_add(pad.0)
        .and_then(|s| s.checked_add(pad.1))
        .ok_or("padding is too large")?;
    if padded < span {
        return Err(format!(
            "the window ({span}) is larger than the padded input ({padded})"
        ));
    }
    let mut out = if ceil_mode {
        (padded - span).div_ceil(stride) + 1
    } else {
        (padded - span) / stride + 1
    };
    // With ceil_mode, the last window must start inside the input or its left padding.
    if ceil_mode && (out - 1) * stride >= size + pad.0 {
        out -= 1;
    }
    Ok(Dim::Static(out))
}

/// `nn.embedding`: a float table [V, D] and i64 ids give ids' shape + [D] of the table's type.
fn embedding(table: &TensorType, ids: &TensorType) -> Infer {
    if !table.elem.is_float() || table.rank() != 2 {
        return Err(format!(
            "the table must be a 2-D floating-point tensor [rows, width], not {table}"
        ));
    }
    if ids.elem != ElemType::I64 {
        return Err(format!("the ids must be i64, not {ids}"));
    }
    let dims = ids.dims.iter().copied().chain([table.dim(1)]);
    Ok(TensorType::new(dims, table.elem))
}

/// The result type of `op` from its operands' types and its attributes.
pub fn infer_type(f: &Function, op: OpId) -> Infer {
    let data = f.op(op);
    let ts: Vec<&TensorType> = data.operands().iter().map(|&v| f.ty(v)).collect();
    let reads_ints = matches!(data.kind, OpKind::Embedding);
    if let Some(t) = ts.iter().find(|t| !t.elem.is_float() && !reads_ints) {
        return Err(format!(
            "operand of type {t}: {} computes on floating-point tensors (only nn.embedding reads integers)",
            data.kind.mnemonic()
        ));
    }
    if let Some(first) = ts.first().filter(|_| !reads_ints) {
        if let Some(t) = ts.iter().find(|t| t.elem != first.elem) {
            return Err(format!(
                "operands mix element types {} and {}",
                first.elem, t.elem
            ));
        }
    }
    let x = ts.first().copied();
    match &data.kind {
        OpKind::Constant(t) | OpKind::Weight { value: t, .. } => Ok(t.ty()),
        OpKind::Linear => {
            let (x, w) = (ts[0], ts[1]);
            let ws = static_dims(w, "the weight")?;
            if ws.len() != 2 {
                return Err(format!("the weight must be [out, in], not {w}"));
            }
            if x.rank() == 0 || !dim_eq(x.dim(x.rank() - 1), Dim::Static(ws[1])) {
                return Err(format!(
                    "the input {x} must end in the weight's {} input features",
                    ws[1]
                ));
            }
            if let Some(b) = ts.get(2) {
                if b.static_shape() != Some(vec![ws[0]]) {
                    return Err(format!(
                        "the bias must be tensor<{}x{}>, not {b}",
                        ws[0], b.elem
                    ));
                }
            }
            Ok(x.with_dim(x.rank() - 1, Dim::Static(ws[0])))
        }
        OpKind::MatMul => {
            let (a, b) = (ts[0], ts[1]);
            if a.rank() < 2 || b.rank() < 2 {
                return Err(format!("operands must have rank >= 2, not {a} and {b}"));
            }
            let (ra, rb) = (a.rank(), b.rank());
            if !dim_eq(a.dim(ra - 1), b.dim(rb - 2)) {
                return Err(format!("inner dimensions of {a} and {b} differ"));
            }
            let batch_a = TensorType::new(a.dims[..ra - 2].iter().copied(), a.elem);
            let batch_b = TensorType::new(b.dims[..rb - 2].iter().copied(), a.elem);
            let mut dims: Vec<Dim> = broadcast(&batch_a, &batch_b)?.dims.to_vec();
            dims.push(a.dim(ra - 2));
            dims.push(b.dim(rb - 1));
            Ok(TensorType::new(dims, a.elem))
        }
        OpKind::Conv2d {
            strides,
            pads,
            dilations,
            groups,
        } => {
            let (x, w) = (ts[0], ts[1]);
            let ws = static_dims(w, "the filter")?;
            if x.rank() != 4 || ws.len() != 4 {
                return Err(format!(
                    "input and filter must be NCHW and FCHW, not {x} and {w}"
                ));
            }
            if strides.contains(&0) || dilations.contains(&0) || *groups == 0 {
                return Err("strides, dilations and groups must be positive".into());
            }
            if ws[0] % groups != 0 {
                return Err(format!(
                    "{} filters do not split into {groups} groups",
                    ws[0]
                ));
            }
            let in_channels = ws[1]
                .checked_mul(*groups)
                .ok_or_else(|| format!("groups = {groups} is absurd"))?;
            if !dim_eq(x.dim(1), Dim::Static(in_channels)) {
                return Err(format!(
                    "the input has {} channels but the filter expects {} x {groups} groups",
                    x.dim(1),
                    ws[1]
                ));
            }
            if let Some(b) = ts.get(2) {
                if b.static_shape() != Some(vec![ws[0]]) {
                    return Err(format!(
                        "the bias must be tensor<{}x{}>, not {b}",
                        ws[0], b.elem
                    ));
                }
            }
            let h = window_out(
                x.dim(2),
                ws[2],
                strides[0],
                dilations[0],
                (pads[0], pads[2]),
                false,
            )?;
            let wd = window_out(
                x.dim(3),
                ws[3],
                strides[1],
                dilations[1],
                (pads[1], pads[3]),
                false,
            )?;
            Ok(TensorType::new(
                [x.dim(0), Dim::Static(ws[0]), h, wd],
                x.elem,
            ))
        }
        OpKind::BatchNorm { epsilon } => {
            let x = ts[0];
            if x.rank() < 2 {
                return Err(format!("the input must have a channel axis, not {x}"));
            }
            if epsilon.is_nan() || *epsilon < 0.0 {
                return Err("epsilon must be non-negative".into());
            }
            for p in &ts[1..] {
                if p.rank() != 1 || !dim_eq(p.dim(0), x.dim(1)) {
                    return Err(format!(
                        "scale, bias, mean and variance must be vectors of {} channels, not {p}",
                        x.dim(1)
                    ));
                }
            }
            Ok(x.clone())
        }
        OpKind::Clip { min, max } if min.is_nan() || max.is_nan() || min > max => {
            Err(format!("min ({min}) must not exceed max ({max})"))
        }
        OpKind::Relu
        | OpKind::LeakyRelu { .. }
        | OpKind::Clip { .. }
        | OpKind::Sigmoid
        | OpKind::Tanh
        | OpKind::Gelu { .. }
        | OpKind::Silu
        | OpKind::HardSwish
        | OpKind::Identity => Ok(ts[0].clone()),
        OpKind::Add | OpKind::Sub | OpKind::Mul => broadcast(ts[0], ts[1]),
        OpKind::Concat { axis } => {
            let x = ts[0];
            let ax = norm_axis(*axis, x.rank())?;
            let mut total = Some(0u64);
            for t in &ts {
                if t.rank() != x.rank() {
                    return Err(format!("operands {x} and {t} differ in rank"));
                }
                for d in 0..x.rank() {
                    if d != ax && !dim_eq(t.dim(d), x.dim(d)) {
                        return Err(format!("operands {x} and {t} differ off the concat axis"));
                    }
                }
                total = total.zip(t.dim(ax).as_static()).map(|(a, b)| a + b);
            }
            Ok(x.with_dim(ax, total.map_or(Dim::Dynamic, Dim::Static)))
        }
        OpKind::MaxPool2d(p) | OpKind::AvgPool2d { pool: p, .. } => {
            let x = ts[0];
            if x.rank() != 4 {
                return Err(format!("the input must be NCHW, not {x}"));
            }
            if p.kernel.contains(&0) || p.strides.contains(&0) {
                return Err("kernel and strides must be positive".into());
            }
            if p.pads[0] >= p.kernel[0]
                || p.pads[2] >= p.kernel[0]
                || p.pads[1] >= p.kernel[1]
                || p.pads[3] >= p.kernel[1]
            {
                return Err("pads must be smaller than the kernel".into());
            }
            let h = window_out(
                x.dim(2),
                p.kernel[0],
                p.strides[0],
                1,
                (p.pads[0], p.pads[2]),
                p.ceil_mode,
            )?;
            let w = window_out(
                x.dim(3),
                p.kernel[1],
                p.strides[1],
                1,
                (p.pads[1], p.pads[3]),
                p.ceil_mode,
            )?;
            Ok(TensorType::new([x.dim(0), x.dim(1), h, w], x.elem))
        }
        OpKind::GlobalAvgPool => {
            let x = ts[0];
            if x.rank() < 3 {
                return Err(format!("the input must have spatial axes, not {x}"));
            }
            let mut dims = x.dims.clone();
            dims[2..].iter_mut().for_each(|d| *d = Dim::Static(1));
            Ok(TensorType::new(dims, x.elem))
        }
        OpKind::Mean { axes, keepdims } => {
            let x = ts[0];
            let mut norm = Vec::new();
            for &a in axes {
                let a = norm_axis(a, x.rank())?;
                if norm.contains(&a) {
                    return Err(format!("axis {a} is listed twice"));
                }
                norm.push(a);
            }
            if norm.is_empty() {
                return Err("axes must not be empty".into());
            }
            let dims = (0..x.rank()).filter_map(|d| match (norm.contains(&d), keepdims) {
                (false, _) => Some(x.dim(d)),
                (true, true) => Some(Dim::Static(1)),
                (true, false) => None,
            });
            Ok(TensorType::new(dims, x.elem))
        }
        OpKind::Flatten { axis } => {
            let x = ts[0];
            let a = usize::try_from(*axis)
                .ok()
                .filter(|&a| a <= x.rank())
                .ok_or_else(|| format!("axis {axis} must be in 0..={}", x.rank()))?;
            let prod = |ds: &[Dim]| {
                ds.iter()
                    .try_fold(1u64, |acc, d| d.as_static().map(|s| acc * s))
                    .map_or(Dim::Dynamic, Dim::Static)
            };
            Ok(TensorType::new(
                [prod(&x.dims[..a]), prod(&x.dims[a..])],
                x.elem,
            ))
        }
        OpKind::Reshape { shape } => reshape(ts[0], shape),
        OpKind::Transpose { perm } => {
            let x = ts[0];
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank()
                || perm.iter().any(|&p| {
                    (p as usize) >= x.rank() || std::mem::replace(&mut seen[p as usize], true)
                })
            {
                return Err(format!(
                    "perm {perm:?} is not a permutation of the {} axes",
                    x.rank()
                ));
            }
            Ok(TensorType::new(
                perm.iter().map(|&p| x.dim(p as usize)),
                x.elem,
            ))
        }
        OpKind::Softmax { axis } => {
            norm_axis(*axis, ts[0].rank())?;
            Ok(ts[0].clone())
        }
        OpKind::LayerNorm { axis, epsilon } | OpKind::RmsNorm { axis, epsilon } => {
            let x = ts[0];
            let a = norm_axis(*axis, x.rank())?;
            if epsilon.is_nan() || *epsilon < 0.0 {
                return Err("epsilon must be non-negative".into());
            }
            let norm = TensorType::new(x.dims[a..].iter().copied(), x.elem);
            for p in &ts[1..] {
                if !p.compatible(&norm) || p.rank() != norm.rank() {
                    let params = match data.kind {
                        OpKind::RmsNorm { .. } => "the scale",
                        _ => "scale and bias",
                    };
                    return Err(format!(
                        "{params} must have the normalized shape {norm}, not {p}"
                    ));
                }
            }
            Ok(x.clone())
        }
        OpKind::Gather { axis, indices } => {
            let x = ts[0];
            let a = norm_axis(*axis, x.rank())?;
            if let Some(n) = x.dim(a).as_static() {
                if let Some(bad) = indices.iter().find(|&&i| i >= n) {
                    return Err(format!("index {bad} is out of range for axis {a} of {x}"));
                }
            }
            Ok(x.with_dim(a, Dim::Static(indices.len() as u64)))
        }
        OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        } => {
            let x = ts[0];
            let a = norm_axis(*axis, x.rank())?;
            if !dim_eq(x.dim(a), Dim::Static(indices.len() as u64)) {
                return Err(format!(
                    "the input has {} positions on axis {a} but {} indices are given",
                    x.dim(a),
                    indices.len()
                ));
            }
            if fill.len() as u64 != *size {
                return Err(format!("fill has {} values but size is {size}", fill.len()));
            }
            let mut seen = vec![false; *size as usize];
            for &i in indices {
                if i >= *size || std::mem::replace(&mut seen[i as usize], true) {
                    return Err(format!("indices must be distinct and below size {size}"));
                }
            }
            Ok(x.with_dim(a, Dim::Static(*size)))
        }
        OpKind::Embedding => embedding(ts[0], ts[1]),
        OpKind::Return => Err("return has no result".into()),
    }
    .map(|t| TensorType::new(t.dims, x.map_or(t.elem, |x| x.elem)))
}
