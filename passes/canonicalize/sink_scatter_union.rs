//! `sink-scatter-union`: an add/sub/mul of two *unlike* scatters (different kept positions)
//! keeps, as one scatter after it, the positions both drop: those are constant. Preconditions:
//! none. Idempotent: the new operands are scatters onto the union, which keep every position
//! of it, so the pattern does not apply to them again.

use super::sink_scatter::replace_with_scatter;
use crate::ir::{Function, OpId, OpKind, OpTag, ValueId};
use crate::passes::PassContext;
use crate::rewrite::{ensure, MatchFailure, MatchResult, Pattern, Rewriter};

/// `scatter(a, I, f) ⊙ scatter(b, J, g)` (same axis and size, I ≠ J, ⊙ ∈ {add, sub, mul}) →
/// `scatter(scatter(a, I→U, f) ⊙ scatter(b, J→U, g), U, f ⊙ g)` with `U = I ∪ J` in order,
/// when some position is in neither and every user of the result can take the outer scatter
/// into its columns: an `nn.linear` reading the scattered axis, an ungrouped `nn.conv2d`
/// reading it as channels (unpadded, or the outer fills it would absorb are 0), or an
/// element-wise unary op whose users are such unpadded layers (the scatter sinks through it).
/// `fold-scatter-into-consumer` then drops their columns for the positions both operands
/// drop; the two scatters stay, onto the union instead of the full axis.
///
/// A scatter meeting an operand that is not a scatter (`scatter(a, I, f) + y`, the usual
/// residual) is left alone: every position of `y` may vary, so no position of the sum is
/// constant (a constant `y` is `sink-scatter-past-constant`'s case).
///
/// Exact: at a position of U the inner scatters hold what the outer ones held (the element of
/// `a` or `b`, or the same fill), and a position outside U is `f_p ⊙ g_p` in both forms.
pub struct SinkScatterUnion;

/// A scatter's operand and attributes.
struct Scattered {
    x: ValueId,
    axis: i64,
    indices: Vec<u64>,
    size: u64,
    fill: Vec<f32>,
}

fn scattered(f: &Function, v: ValueId) -> Option<Scattered> {
    let p = f.producer(v)?;
    match f.kind(p) {
        OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        } => Some(Scattered {
            x: f.op(p).operands()[0],
            axis: *axis,
            indices: indices.clone(),
            size: *size,
            fill: fill.clone(),
        }),
        _ => None,
    }
}

/// Whether `c` reads `v` (channels or features along `axis` of a rank-`rank` value) as a layer
/// a scatter folds into; `zero_fills`: the fills it would absorb are 0, so padding is no obstacle.
fn folds_into(f: &Function, c: OpId, v: ValueId, axis: usize, zero_fills: bool) -> bool {
    let ops = f.op(c).operands();
    let reads = ops[0] == v && !ops[1..].contains(&v);
    let params = ops[1..].iter().all(|&p| f.constant_of(p).is_some());
    let rank = f.ty(v).rank();
    let layer = match f.kind(c) {
        OpKind::Linear => axis + 1 == rank,
        OpKind::Conv2d { groups, pads, .. } => {
            *groups == 1 && axis == 1 && (zero_fills || pads.iter().all(|&p| p == 0))
        }
        _ => false,
    };
    reads && params && layer
}

impl Pattern<PassContext> for SinkScatterUnion {
    fn name(&self) -> &'static str {
        "sink-scatter-union"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Add, OpTag::Sub, OpTag::Mul])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PassContext) -> MatchResult {
        let f = rw.func();
        let data = f.op(op);
        let kind = data.kind.clone();
        let r = data.result().ok_or(MatchFailure("no result"))?;
        let [x, y] = [data.operands()[0], data.operands()[1]];
        let (Some(a), Some(b)) = (scattered(f, x), scattered(f, y)) else {
            return Err(MatchFailure("not both operands are scatters"));
        };
        let full = f.ty(r).clone();
        ensure(
            a.axis == b.axis && a.size == b.size && f.ty(x) == &full && f.ty(y) == &full,
            "the scatters differ in axis, size or type",
        )?;
        ensure(
            a.indices != b.indices,
            "the scatters are alike (sink-scatter's case)",
        )?;
        let axis = crate::ir::infer::norm_axis(a.axis, full.rank())
            .map_err(|_| MatchFailure("the axis is out of range"))?;
        let mut union: Vec<u64> = a.indices.iter().chain(&b.indices).copied().collect();
        union.sort_unstable();
        union.dedup();
        ensure(
            (union.len() as u64) < a.size,
            "every position is kept by one of the scatters",
        )?;
        let fill: Vec<f32> = a
            .fill
            .iter()
            .zip(&b.fill)
            .map(|(&p, &q)| match kind {
                OpKind::Add => p + q,
                OpKind::Sub => p - q,
                _ => p * q,
            })
            .collect();
        let zero_fills = (0..a.size)
            .filter(|p| union.binary_search(p).is_err())
            .all(|p| fill[p as usize] == 0.0);
        let takes = |u: OpId| {
            folds_into(f, u, r, axis, zero_fills)
                || f.kind(u).tag().is_elementwise_unary()
                    && f.op(u).result().is_some_and(|ur| {
                        f.uses(ur)
                            .iter()
                            .all(|w| folds_into(f, w.op, ur, axis, false))
                    })
        };
        ensure(
            f.uses(r).iter().all(|u| takes(u.op)),
            "a user of the result would not take the outer scatter into its columns",
        )?;
        let narrow = full.with_dim(axis, crate::ir::Dim::Static(union.len() as u64));
        let onto_union = |s: &Scattered| OpKind::Scatter {
            axis: s.axis,
            indices: s
                .indices
                .iter()
                .map(|i| union.binary_search(i).expect("in the union") as u64)
                .collect(),
            size: union.len() as u64,
            fill: union.iter().map(|&p| s.fill[p as usize]).collect(),
        };
        let (ka, kb) = (onto_union(&a), onto_union(&b));
        let ia = rw.insert_before(op, ka, &[a.x], narrow.clone());
        let ib = rw.insert_before(op, kb, &[b.x], narrow.clone());
        let inner = rw.insert_before(op, kind, &[ia, ib], narrow);
        let scatter = OpKind::Scatter {
            axis: a.axis,
            indices: union,
            size: a.size,
            fill,
        };
        replace_with_scatter(rw, op, r, inner, scatter, full);
        cx.count("scatters sunk", 1);
        Ok(())
    }
}
