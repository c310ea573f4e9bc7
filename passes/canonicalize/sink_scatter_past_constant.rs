//! `sink-scatter-past-constant`: moves a scatter below an add, sub or mul with a constant that
//! is one value per dropped channel. Preconditions: none. Idempotent: the op's operand is no
//! longer a scatter.

use super::sink_scatter::replace_with_scatter;
use crate::ir::{OpId, OpKind, OpTag, Tensor};
use crate::passes::PassContext;
use crate::rewrite::{ensure, MatchFailure, MatchResult, Pattern, Rewriter};

/// `scatter(x, idx, fill) ⊙ K` → `scatter(x ⊙ K[idx], idx, fill ⊙ m)` (and `K ⊙ scatter(…)`
/// likewise, for ⊙ ∈ {add, sub, mul}), where the constant `K` holds one value `m_p` on every
/// dropped channel `p` (`K[idx]` keeps K's channels `idx` in that order; a `K` without the
/// channel axis must be a splat). The border map that pruning adds after a zero-padded conv is
/// such a constant: zero on the channels whose filters are zero.
///
/// Exact: on kept channels the op sees the same elements of `x` and `K` as before; on a dropped
/// channel `p` it computed `fill_p ⊙ m_p` at every position, which the new fill holds.
pub struct SinkScatterPastConstant;

impl Pattern<PassContext> for SinkScatterPastConstant {
    fn name(&self) -> &'static str {
        "sink-scatter-past-constant"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Add, OpTag::Sub, OpTag::Mul])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PassContext) -> MatchResult {
        let f = rw.func();
        let kind = f.kind(op).clone();
        let r = f.op(op).result().ok_or(MatchFailure("no result"))?;
        let [a, b] = [f.op(op).operands()[0], f.op(op).operands()[1]];
        let (s_pos, s, k) = match (f.producer_kind(a), f.constant_of(b)) {
            (Some(OpKind::Scatter { .. }), Some(k)) => (0, a, k),
            _ => match (f.constant_of(a), f.producer_kind(b)) {
                (Some(k), Some(OpKind::Scatter { .. })) => (1, b, k),
                _ => return Err(MatchFailure("not a scatter and a constant")),
            },
        };
        let k = k.clone();
        let s_op = f.producer(s).expect("a scatter has a producer");
        let OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        } = f.kind(s_op).clone()
        else {
            unreachable!("matched a scatter above")
        };
        let full = f.ty(r).clone();
        ensure(
            f.ty(s) == &full,
            "the constant broadcasts the scatter to a larger shape",
        )?;
        let rank = full.rank();
        let ax = crate::ir::infer::norm_axis(axis, rank)
            .map_err(|_| MatchFailure("the axis is out of range"))?;
        // K's axis that lines up with the channels (numpy broadcasting aligns trailing axes).
        let k_axis = (ax + k.shape().len()).checked_sub(rank);
        let per_channel = k_axis.filter(|&c| k.shape()[c] == size);
        let dropped: Vec<u64> = (0..size).filter(|p| !indices.contains(p)).collect();
        let m: Vec<Option<f32>> = match per_channel {
            Some(c) => dropped
                .iter()
                .map(|&p| uniform(&k, c, p as usize))
                .collect(),
            None => {
                let splat = k.all_bits_equal().then(|| k.get(0));
                dropped.iter().map(|_| splat).collect()
            }
        };
        ensure(
            m.iter().all(Option::is_some),
            "the constant varies within a dropped channel",
        )?;
        let mut new_fill = fill.clone();
        for (&p, m) in dropped.iter().zip(&m) {
            let (x, y) = match s_pos {
                0 => (fill[p as usize], m.expect("checked above")),
                _ => (m.expect("checked above"), fill[p as usize]),
            };
            new_fill[p as usize] = match kind {
                OpKind::Add => x + y,
                OpKind::Sub => x - y,
                _ => x * y,
            };
        }
        let x = f.op(s_op).operands()[0];
        let narrow = full.with_dim(ax, f.ty(x).dim(ax));
        let kept: Vec<usize> = indices.iter().map(|&i| i as usize).collect();
        let k_narrow = match per_channel {
            Some(c) => rw.constant_before(op, k.take(c, &kept)),
            None => [a, b][1 - s_pos],
        };
        let mut operands = [x, k_narrow];
        if s_pos == 1 {
            operands.swap(0, 1);
        }
        let inner = rw.insert_before(op, kind, &operands, narrow);
        let scatter = OpKind::Scatter {
            axis,
            indices,
            size,
            fill: new_fill,
        };
        replace_with_scatter(rw, op, r, inner, scatter, full);
        cx.count("scatters sunk past constants", 1);
        Ok(())
    }
}

/// The value of `k` on channel `p` of axis `c`, if it is the same at every position.
fn uniform(k: &Tensor, c: usize, p: usize) -> Option<f32> {
    let s = k.shape();
    let channels = s[c] as usize;
    let inner: usize = s[c + 1..].iter().product::<u64>() as usize;
    let outer: usize = s[..c].iter().product::<u64>() as usize;
    let first = k.get(p * inner);
    let same = (0..outer).all(|o| {
        let base = (o * channels + p) * inner;
        (base..base + inner).all(|i| k.get(i).to_bits() == first.to_bits())
    });
    same.then_some(first)
}
