//! Bias absorption: the contribution of constant input columns of a weight matrix, added to
//! the bias before the columns are dropped, and the rewrite of the layer's operands that
//! follows (used by `prune-neurons` and by canonicalize's `fold-scatter-into-consumer`).

use crate::ir::{OpId, Tensor, ValueId};
use crate::rewrite::Rewriter;

/// Sets the operands of the weighted `op` (input, weight, optional bias) to `x`, `w` and, with
/// `bias`, a bias of those values: in the old bias's element type and under its name, or a new
/// constant when `op` had none. Without `bias` the old bias, if any, stays. `w` replaces the old
/// weight under its name.
pub fn set_weighted_operands(
    rw: &mut Rewriter,
    op: OpId,
    x: ValueId,
    w: Tensor,
    bias: Option<&[f32]>,
) {
    let ins = rw.func().op(op).operands().to_vec();
    let elem = w.elem();
    let mut operands = vec![x, rw.derived_constant_before(op, w, ins[1])];
    match (bias, ins.get(2).copied()) {
        (Some(b), Some(old)) => {
            let elem = rw.func().constant_of(old).map_or(elem, Tensor::elem);
            let t = Tensor::from_f32(elem, vec![b.len() as u64], b);
            operands.push(rw.derived_constant_before(op, t, old));
        }
        (Some(b), None) => {
            let t = Tensor::from_f32(elem, vec![b.len() as u64], b);
            operands.push(rw.constant_before(op, t));
        }
        (None, old) => operands.extend(old),
    }
    rw.set_operands(op, &operands);
}

/// `b_k += Σ_{cols} W[k, p, ...] · a` for each `(positions p, a)` in `absorbed` (the
/// kernel window summed per position): the contribution of constant input columns about to be
/// dropped from `W`, accumulated in f64 and rounded once into `b_k`. When many columns go,
/// the constants become one coefficient per row element (0 elsewhere) and each row one
/// contiguous dot product read in place, since a gather per absorbed column is slow on large
/// layers; when few go, only their elements are read. Returns whether any `b_k` changed.
pub fn absorb_columns(w: &Tensor, absorbed: &[(Vec<usize>, f32)], b: &mut [f32]) -> bool {
    if w.is_transposed() {
        return absorb_rows_of_source(&w.transposed(), absorbed, b);
    }
    let s = w.shape();
    let window: usize = s[2..].iter().product::<u64>() as usize;
    let row_len = s[1] as usize * window;
    let count: usize = absorbed.iter().map(|(p, _)| p.len()).sum::<usize>() * window;
    // Few absorbed columns (a ResNet block losing a filter or two): read just those elements;
    // many (half a layer): one dense dot product per row beats a gather per column.
    let sparse = count * 8 < row_len;
    let mut coef = Vec::new();
    if !sparse {
        coef = vec![0f64; row_len];
        for (positions, a) in absorbed {
            for &p in positions {
                coef[p * window..(p + 1) * window].fill(*a as f64);
            }
        }
    }
    let mut touched = false;
    for (k, bk) in b.iter_mut().enumerate() {
        let base = k * row_len;
        let mut dot = 0f64;
        if sparse {
            for (positions, a) in absorbed {
                for &p in positions {
                    let taps = (0..window).map(|t| w.get(base + p * window + t) as f64);
                    dot += taps.sum::<f64>() * *a as f64;
                }
            }
        } else {
            let mut at = 0;
            w.for_each_f32_chunk(base..base + row_len, |c| {
                dot += dot_f64(c, &coef[at..at + c.len()]);
                at += c.len();
            });
        }
        if dot != 0.0 {
            *bk = (*bk as f64 + dot) as f32;
            touched = true;
        }
    }
    touched
}

/// [`absorb_columns`] for a transposed view (an ONNX MatMul weight), given its source `t`:
/// column `p` of the view is row `p` of `t`, in memory order, so `b += a · t[p, :]` for each
/// absorbed `p` reads those rows alone (a row of the view would touch a page per element).
fn absorb_rows_of_source(t: &Tensor, absorbed: &[(Vec<usize>, f32)], b: &mut [f32]) -> bool {
    let n = b.len();
    let mut acc = vec![0f64; n];
    for (positions, a) in absorbed {
        for &p in positions {
            let mut at = 0;
            t.for_each_f32_chunk(p * n..(p + 1) * n, |c| {
                for (x, &v) in acc[at..at + c.len()].iter_mut().zip(c) {
                    *x += v as f64 * *a as f64;
                }
                at += c.len();
            });
        }
    }
    let mut touched = false;
    for (bk, dot) in b.iter_mut().zip(acc) {
        if dot != 0.0 {
            *bk = (*bk as f64 + dot) as f32;
            touched = true;
        }
    }
    touched
}

/// `Σ x_i·a_i` in f64 with eight independent accumulators, so that it vectorizes (a single
/// running sum is a serial dependency chain).
fn dot_f64(x: &[f32], a: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let (xc, ac) = (x.chunks_exact(8), a.chunks_exact(8));
    let tail: f64 = xc
        .remainder()
        .iter()
        .zip(ac.remainder())
        .map(|(&x, &a)| x as f64 * a)
        .sum();
    for (xs, as_) in xc.zip(ac) {
        for l in 0..8 {
            acc[l] += xs[l] as f64 * as_[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

#[cfg(test)]
mod tests {
    use super::absorb_columns;
    use crate::ir::{ElemType, Tensor};

    /// A transposed view (an ONNX MatMul weight) folds the same contribution as the same
    /// matrix in a buffer, through the dense path (many columns) and the sparse one (few).
    #[test]
    fn transposed_weights_fold_like_buffers() {
        let (out, inp) = (5usize, 40usize);
        let values: Vec<f32> = (0..out * inp)
            .map(|i| (i % 11) as f32 * 0.25 - 1.0)
            .collect();
        let source = Tensor::from_f32(ElemType::F32, vec![inp as u64, out as u64], &values);
        let view = source.transposed();
        let buffer = view.materialized();
        assert!(view.is_transposed() && !buffer.is_transposed());
        let many: Vec<(Vec<usize>, f32)> =
            (0..30).map(|j| (vec![j], j as f32 * 0.5 - 3.0)).collect();
        for absorbed in [many, vec![(vec![7], 2.0), (vec![31], -1.5)]] {
            let (mut a, mut b) = (vec![0.5f32; out], vec![0.5f32; out]);
            assert!(absorb_columns(&view, &absorbed, &mut a));
            assert!(absorb_columns(&buffer, &absorbed, &mut b));
            assert_eq!(a, b);
        }
    }
}
