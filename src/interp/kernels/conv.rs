//! 2-d convolution (`nn.conv2d`): NCHW input, `[Cout, Cin/groups, KH, KW]` weight, strides, pads,
//! dilations and groups with ONNX/PyTorch semantics.

use super::{check_attrs, check_rank4, KResult};
use ndarray::{ArrayD, IxDyn};

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
