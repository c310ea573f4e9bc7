//! Normalizations along axes: inference batch normalization (over the channel axis), layer
//! normalization and RMSNorm (over trailing axes) and softmax (along one axis).

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
    trailing_norm(x, Some(scale), bias, axis, epsilon, true)
}

/// RMSNorm (ONNX RMSNormalization, PyTorch `nn.RMSNorm`): `x / sqrt(mean(x²) + eps) · scale`
/// over axes `axis..rank`, in the order of operations of PyTorch's export (`x · (1 /
/// sqrt(…))`, then the scale).
pub fn rms_norm(x: &ArrayD<f32>, scale: Option<&ArrayD<f32>>, axis: i64, epsilon: f32) -> KResult {
    trailing_norm(x, scale, None, axis, epsilon, false)
}

/// Normalizes each row of the trailing axes `axis..rank`: `(x - mu) · rstd · scale + bias`
/// with the mean and variance when `center`, else `x · rstd · scale` with the mean square.
fn trailing_norm(
    x: &ArrayD<f32>,
    scale: Option<&ArrayD<f32>>,
    bias: Option<&ArrayD<f32>>,
    axis: i64,
    epsilon: f32,
    center: bool,
) -> KResult {
    let what = if center { "layer_norm" } else { "rms_norm" };
    let a = norm_axis(axis, x.ndim(), what)?;
    let tail = &x.shape()[a..];
    for (name, p) in [("scale", scale), ("bias", bias)] {
        if let Some(p) = p {
            if p.shape() != tail {
                return Err(format!(
                    "{what} {name} has shape {:?} but the normalized axes are {tail:?}",
                    p.shape()
                ));
            }
        }
    }
    let outer: usize = x.shape()[..a].iter().product();
    let inner: usize = tail.iter().product();
    let flat: Vec<f32> = x.iter().copied().collect();
    let sc: Option<Vec<f32>> = scale.map(|s| s.iter().copied().collect());
    let bi: Option<Vec<f32>> = bias.map(|b| b.iter().copied().collect());
    let mut out = Vec::with_capacity(flat.len());
    for row in flat.chunks(inner.max(1)).take(outer) {
        let mu = if center {
            row.iter().sum::<f32>() / inner as f32
        } else {
            0.0
        };
        let var = row.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / inner as f32;
        let inv = 1.0 / (var + epsilon).sqrt();
        for (i, &v) in row.iter().enumerate() {
            let y = (v - mu) * inv * sc.as_ref().map_or(1.0, |s| s[i]);
            out.push(y + bi.as_ref().map_or(0.0, |b| b[i]));
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
