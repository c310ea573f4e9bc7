//! 2-d convolution (`nn.conv2d`): NCHW input, `[Cout, Cin/groups, KH, KW]` weight, strides, pads,
//! dilations and groups with ONNX/PyTorch semantics.

use super::{check_attrs, check_rank4, KResult};
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, Array4, ArrayD, Axis};

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
    // im2col per (sample, group), then one matrix product: the product runs in the
    // dependencies' optimized code even in a debug build, which keeps the equivalence check on
    // real models practical there. Each output starts at its bias and accumulates the taps.
    let x = x.as_standard_layout();
    let xs = x.as_slice().expect("standard layout");
    let taps = cig * kh * kw;
    let positions = oh * ow;
    let w2 = w
        .as_standard_layout()
        .into_owned()
        .into_shape_with_order((co, taps))
        .map_err(|e| e.to_string())?;
    let mut out = Array4::<f32>::zeros((n, co, oh, ow));
    if let Some(b) = b {
        for (o, mut plane) in out.axis_iter_mut(Axis(1)).enumerate() {
            plane.fill(b[[o]]);
        }
    }
    let mut cols = Array2::<f32>::zeros((taps, positions));
    for ni in 0..n {
        for grp in 0..g {
            let rows = cols.as_slice_mut().expect("standard layout");
            for ci in 0..cig {
                let plane = &xs[(ni * c + grp * cig + ci) * h * wd..][..h * wd];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let row = &mut rows[((ci * kh + ky) * kw + kx) * positions..][..positions];
                        for y in 0..oh {
                            // Signed arithmetic: positions in the padding contribute zero.
                            let iy = (y * sh + ky * dh) as isize - pt as isize;
                            for xo in 0..ow {
                                let ix = (xo * sw + kx * dw) as isize - pl as isize;
                                row[y * ow + xo] =
                                    if iy < 0 || iy >= h as isize || ix < 0 || ix >= wd as isize {
                                        0.0
                                    } else {
                                        plane[iy as usize * wd + ix as usize]
                                    };
                            }
                        }
                    }
                }
            }
            let filters = grp * co_per_g..(grp + 1) * co_per_g;
            let wg = w2.slice(s![filters.clone(), ..]);
            let mut og = out
                .slice_mut(s![ni, filters, .., ..])
                .into_shape_with_order((co_per_g, positions))
                .map_err(|e| e.to_string())?;
            general_mat_mul(1.0, &wg, &cols, 1.0, &mut og);
        }
    }
    Ok(out.into_dyn())
}
