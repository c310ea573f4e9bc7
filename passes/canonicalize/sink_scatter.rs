//! `sink-scatter`: moves a scatter below the element-wise ops and per-channel pools that read it.
//! Preconditions: none. Not idempotent on its own: each application moves the scatter one op
//! further, until it reaches an op it cannot pass (the driver runs it to that fixpoint).

use crate::ir::{OpId, OpKind, OpTag, TensorType, ValueId};
use crate::passes::PassContext;
use crate::rewrite::{ensure, MatchFailure, MatchResult, Pattern, Rewriter};

/// `act(scatter(x, idx, fill))` → `scatter(act(x), idx, act(fill))`, and
/// `x ⊙ y` with `x = scatter(a, idx, f)`, `y = scatter(b, idx, g)` (same axis, indices and
/// size, same type) → `scatter(a ⊙ b, idx, f ⊙ g)` for ⊙ ∈ {add, sub, mul}, and
/// `pool(scatter(x, idx, fill))` → `scatter(pool(x), idx, fill)` for max/average pools and
/// `nn.global_avg_pool` of a channel scatter: the op then runs on the kept channels only, and
/// the scatter moves towards a consumer it can fold into.
///
/// Exact: an element-wise op commutes with moving elements, and at a filled position it
/// computes `act(fill)` (or `f ⊙ g`), which the new fill holds. A pool reads each channel
/// alone, and pools a constant channel to the same constant (max pooling ignores padding; an
/// average that counts zero padding is passed only when every dropped fill is 0).
pub struct SinkScatter;

impl Pattern<PassContext> for SinkScatter {
    fn name(&self) -> &'static str {
        "sink-scatter"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        None
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PassContext) -> MatchResult {
        let f = rw.func();
        let data = f.op(op);
        let kind = data.kind.clone();
        let r = data.result().ok_or(MatchFailure("no result"))?;
        let scatter_of = |v| match f.producer_kind(v) {
            Some(OpKind::Scatter {
                axis,
                indices,
                size,
                fill,
            }) => Some((
                f.producer(v).expect("has a producer"),
                *axis,
                indices.clone(),
                *size,
                fill.clone(),
            )),
            _ => None,
        };
        let (sources, fill): (Vec<_>, Vec<f32>) = match &kind {
            k if k.tag().is_elementwise_unary() => {
                let (s, axis, indices, size, fill) = scatter_of(data.operands()[0])
                    .ok_or(MatchFailure("the operand is not a scatter"))?;
                let fill = fill
                    .iter()
                    .map(|&c| k.eval_unary(c).unwrap_or(f32::NAN))
                    .collect();
                (vec![(s, axis, indices, size)], fill)
            }
            OpKind::MaxPool2d(_) | OpKind::AvgPool2d { .. } | OpKind::GlobalAvgPool => {
                let (s, axis, indices, size, fill) = scatter_of(data.operands()[0])
                    .ok_or(MatchFailure("the operand is not a scatter"))?;
                let rank = f.ty(r).rank();
                ensure(
                    crate::ir::infer::norm_axis(axis, rank) == Ok(1),
                    "the scatter is not along the channel axis",
                )?;
                // An average counting zero padding sees a constant channel mixed with zeros at
                // the border: only a zero fill stays a constant there.
                let zero_padded = matches!(&kind, OpKind::AvgPool2d { pool, count_include_pad: true } if pool.pads.iter().any(|&p| p > 0));
                let dropped_zero = (0..size)
                    .filter(|p| !indices.contains(p))
                    .all(|p| fill[p as usize] == 0.0);
                ensure(
                    !zero_padded || dropped_zero,
                    "an average over zero padding of a non-zero fill",
                )?;
                (vec![(s, axis, indices, size)], fill)
            }
            OpKind::Add | OpKind::Sub | OpKind::Mul => {
                let [x, y] = [data.operands()[0], data.operands()[1]];
                let (Some(a), Some(b)) = (scatter_of(x), scatter_of(y)) else {
                    return Err(MatchFailure("not both operands are scatters"));
                };
                let same = a.1 == b.1
                    && a.2 == b.2
                    && a.3 == b.3
                    && f.ty(x) == f.ty(y)
                    && f.ty(x) == f.ty(r);
                ensure(same, "the scatters differ in axis, indices, size or type")?;
                let fill =
                    a.4.iter()
                        .zip(&b.4)
                        .map(|(&p, &q)| match kind {
                            OpKind::Add => p + q,
                            OpKind::Sub => p - q,
                            _ => p * q,
                        })
                        .collect();
                (vec![(a.0, a.1, a.2, a.3), (b.0, b.1, b.2, b.3)], fill)
            }
            _ => {
                return Err(MatchFailure(
                    "not an element-wise unary op, a per-channel pool, add, sub or mul",
                ))
            }
        };
        let (_, axis, indices, size) = sources[0].clone();
        let inputs: Vec<_> = sources.iter().map(|s| f.op(s.0).operands()[0]).collect();
        let ax = crate::ir::infer::norm_axis(axis, f.ty(r).rank())
            .map_err(|_| MatchFailure("the axis is out of range"))?;
        let first = f.ty(inputs[0]).clone();
        ensure(
            inputs.iter().all(|&v| f.ty(v) == &first),
            "the scattered operands differ in type",
        )?;
        let full = f.ty(r).clone();
        // A pool keeps the channels and changes the spatial sizes: the narrow result has the
        // full result's shape with the operand's channel count.
        let narrow = full.with_dim(ax, first.dim(ax));
        debug_assert_eq!(narrow.with_dim(ax, full.dim(ax)), full);
        let inner = rw.insert_before(op, kind, &inputs, narrow);
        let scatter = OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        };
        replace_with_scatter(rw, op, r, inner, scatter, full);
        cx.count("scatters sunk", 1);
        Ok(())
    }
}

/// Replaces `op`, whose result `r` has type `full`, by `scatter` applied to `inner` (the op
/// recomputed on the kept elements): the scatter takes over `r`'s name and uses. The tail of
/// every pattern that sinks a scatter.
pub(super) fn replace_with_scatter(
    rw: &mut Rewriter,
    op: OpId,
    r: ValueId,
    inner: ValueId,
    scatter: OpKind,
    full: TensorType,
) {
    let s = rw.insert_before(op, scatter, &[inner], full);
    rw.copy_name(r, s);
    rw.replace_op(op, s);
}
