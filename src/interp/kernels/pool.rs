//! 2-d pooling (`nn.max_pool2d`, `nn.avg_pool2d`, `nn.global_avg_pool`) over NCHW inputs.
//!
//! The output size and each window follow ONNX/PyTorch, ceil mode included: [`PoolGeom`] is the
//! single place that computes them, so the max and average kernels see the same windows.

use super::reduce::mean;
use super::{check_attrs, check_rank4, KResult};
use ndarray::{ArrayD, IxDyn};

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

/// One axis of a window: `(start, end, clipped_start, clipped_end)`, see [`PoolGeom::window`].
type Window = (isize, isize, usize, usize);

impl PoolGeom {
    /// The window of output position `o` along spatial axis `axis` (0 = H, 1 = W), as
    /// `(start, end, clipped_start, clipped_end)` in input coordinates: `start..end` is the
    /// window cut at the end of the trailing padding (the ceil-mode overhang is excluded), and
    /// `clipped_start..clipped_end` is its part inside the input.
    fn window(&self, axis: usize, o: usize) -> Window {
        let len = self.nchw[2 + axis] as isize;
        let (p0, p1) = (self.pads[axis] as isize, self.pads[axis + 2] as isize);
        let start = (o * self.strides[axis]) as isize - p0;
        let end = (start + self.kernel[axis] as isize).min(len + p1);
        let cs = start.max(0) as usize;
        let ce = end.min(len).max(start.max(0)) as usize;
        (start, end, cs, ce)
    }

    /// The `[N, C, OH, OW]` result of reducing each window of `x` with `reduce`, which gets the
    /// window's input plane (row-major, `W` wide) and its H and W windows as [`Self::window`]
    /// gives them.
    fn map<F>(&self, x: &ArrayD<f32>, reduce: F) -> ArrayD<f32>
    where
        F: Fn(&[f32], usize, Window, Window) -> f32,
    {
        let [n, c, h, w] = self.nchw;
        let [oh, ow] = self.out;
        let x = x.as_standard_layout();
        let data = x.as_slice().expect("standard layout");
        ArrayD::from_shape_fn(IxDyn(&[n, c, oh, ow]), |idx| {
            let plane = &data[(idx[0] * c + idx[1]) * h * w..][..h * w];
            reduce(plane, w, self.window(0, idx[2]), self.window(1, idx[3]))
        })
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
    Ok(g.map(x, |plane, w, (_, _, ys, ye), (_, _, xs, xe)| {
        let mut m = f32::NEG_INFINITY;
        for iy in ys..ye {
            for ix in xs..xe {
                let v = plane[iy * w + ix];
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
    Ok(g.map(x, |plane, w, (y0, y1, ys, ye), (x0, x1, xs, xe)| {
        let mut sum = 0.0f32;
        for iy in ys..ye {
            for ix in xs..xe {
                sum += plane[iy * w + ix];
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
