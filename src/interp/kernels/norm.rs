//! Normalizations along axes: inference batch normalization (over the channel axis), layer
//! normalization (over trailing axes) and softmax (along one axis).

use super::{norm_axis, KResult};
use ndarray::{ArrayD, Axis, IxDyn};

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
    for (ch, mut lane) in out.axis_iter_mut(Axis(1)).enumerate() {
        let (m, d, s, b) = (
            mean[[ch]],
            (var[[ch]] + epsilon).sqrt(),
            scale[[ch]],
            bias[[ch]],
        );
        lane.mapv_inplace(|v| (v - m) / d * s + b);
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
