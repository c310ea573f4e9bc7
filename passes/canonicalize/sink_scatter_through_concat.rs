//! `sink-scatter-through-concat`: a concat of scattered parts becomes one scatter of the concat
//! of their inputs. Preconditions: none. Idempotent: the new concat reads no scatter on its axis.

use super::sink_scatter::replace_with_scatter;
use crate::ir::{Dim, OpId, OpKind, OpTag};
use crate::passes::PassContext;
use crate::rewrite::{ensure, MatchFailure, MatchResult, Pattern, Rewriter};

/// `concat(p_0, …, p_n)` along `axis`, where some parts are `p_i = scatter(x_i, idx_i, size_i,
/// fill_i)` on that axis → `scatter(concat(q_0, …, q_n), idx, Σ size_i, fill)` with `q_i = x_i`
/// for a scattered part and `p_i` otherwise; `idx` lists, part after part, `o_i + idx_i[k]`
/// (scattered) or `o_i + k` (the others), `o_i` being the part's offset in the result, and
/// `fill` is the parts' fills side by side (0 for the unscattered parts, whose positions are
/// all in `idx`).
///
/// Exact: both sides place every element of every part at the same position of the result and
/// the same constant at every filled position; only the order of the copies changes. It moves
/// the scatters of pruned branches (SqueezeNet's expand convs, Inception branches) below the
/// concat, where `fold-scatter-into-consumer` folds them into the next layer's columns and bias;
/// so it applies only when every user of the concat is a linear, conv, activation, pool or
/// concat, which the scatter can fold into or pass.
pub struct SinkScatterThroughConcat;

impl Pattern<PassContext> for SinkScatterThroughConcat {
    fn name(&self) -> &'static str {
        "sink-scatter-through-concat"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Concat])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PassContext) -> MatchResult {
        let f = rw.func();
        let OpKind::Concat { axis } = *f.kind(op) else {
            return Err(MatchFailure("not a concat"));
        };
        let r = f.op(op).result().ok_or(MatchFailure("no result"))?;
        // Below the concat the scatter copies the whole result, once per concat reading the
        // part (DenseNet concatenates each part many times): worth it only where it can go on
        // to a layer that absorbs it, or further down.
        let onward = f.users(r).all(|u| {
            let k = f.kind(u);
            k.tag().is_elementwise_unary()
                || matches!(
                    k,
                    OpKind::Linear
                        | OpKind::Conv2d { .. }
                        | OpKind::MaxPool2d(_)
                        | OpKind::AvgPool2d { .. }
                        | OpKind::GlobalAvgPool
                        | OpKind::Concat { .. }
                )
        });
        ensure(
            onward,
            "a user is not a linear, conv, activation, pool or concat the scatter could move on to",
        )?;
        let full = f.ty(r).clone();
        let ax = crate::ir::infer::norm_axis(axis, full.rank())
            .map_err(|_| MatchFailure("the axis is out of range"))?;
        let (mut inputs, mut indices, mut fill) = (Vec::new(), Vec::new(), Vec::new());
        let mut scattered = 0u64;
        for &p in f.op(op).operands() {
            let offset = fill.len() as u64;
            let width = f
                .ty(p)
                .dim(ax)
                .as_static()
                .ok_or(MatchFailure("a part's size along the axis is not static"))?;
            match f.producer_kind(p) {
                Some(OpKind::Scatter {
                    axis: s_axis,
                    indices: idx,
                    fill: s_fill,
                    ..
                }) if crate::ir::infer::norm_axis(*s_axis, full.rank()) == Ok(ax) => {
                    let s = f.producer(p).expect("has a producer");
                    inputs.push(f.op(s).operands()[0]);
                    indices.extend(idx.iter().map(|&k| offset + k));
                    fill.extend_from_slice(s_fill);
                    scattered += 1;
                }
                _ => {
                    inputs.push(p);
                    indices.extend(offset..offset + width);
                    fill.extend(std::iter::repeat_n(0.0, width as usize));
                }
            }
        }
        ensure(
            scattered > 0,
            "no part is a scatter along the concat's axis",
        )?;
        let size = fill.len() as u64;
        let narrow = full.with_dim(ax, Dim::Static(indices.len() as u64));
        let inner = rw.insert_before(op, OpKind::Concat { axis }, &inputs, narrow);
        let scatter = OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        };
        replace_with_scatter(rw, op, r, inner, scatter, full);
        cx.count("scatters sunk through concats", scattered);
        Ok(())
    }
}
