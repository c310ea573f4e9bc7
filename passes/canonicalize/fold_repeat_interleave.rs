//! `fold-repeat-interleave`: the unsqueeze, expand and reshape that repeat each position of an
//! axis (grouped-query attention's `repeat_kv`) become one gather along that axis.
//! Preconditions: none. Idempotent: the folded form has no reshape around the gather.

use crate::ir::{Dim, OpId, OpKind, OpTag};
use crate::passes::PassContext;
use crate::rewrite::{ensure, MatchFailure, MatchResult, Pattern, Rewriter};

/// `reshape(gather(reshape(x, […, K, 1, …]), axis a+1, [0; G]), […, K·G, …])` →
/// `gather(x, axis a, [0, …, 0, 1, …, 1, …, K-1])`, each index repeated G times, where the inner
/// reshape inserts the unit axis `a+1` after axis `a` (size K) of `x` and the outer one merges
/// axes `a` and `a+1` back.
///
/// Why: it makes the repetition of key/value heads an index map along the head axis, which
/// `attention-head-elimination` follows (a query head reads key/value head `indices[h]`).
///
/// Exact: position `k·G + g` of the merged axis is element `(k, g)` of the expanded tensor,
/// which is `x`'s position `k` for every `g`: both forms copy the same elements to the same
/// places.
pub struct FoldRepeatInterleave;

impl Pattern<PassContext> for FoldRepeatInterleave {
    fn name(&self) -> &'static str {
        "fold-repeat-interleave"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Reshape])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, _: &mut PassContext) -> MatchResult {
        let f = rw.func();
        let g_val = f.op(op).operands()[0];
        let g = f.producer(g_val).ok_or(MatchFailure("no producer"))?;
        let OpKind::Gather { axis, indices } = f.kind(g) else {
            return Err(MatchFailure("the operand is not a gather"));
        };
        let u_val = f.op(g).operands()[0];
        let u = f.producer(u_val).ok_or(MatchFailure("no producer"))?;
        ensure(
            matches!(f.kind(u), OpKind::Reshape { .. }),
            "no reshape under the gather",
        )?;
        let x = f.op(u).operands()[0];
        let (xt, ut, out) = (
            f.ty(x),
            f.ty(u_val),
            f.ty(f.op(op).result().expect("a result")),
        );
        let rank = xt.rank();
        let b = crate::ir::infer::norm_axis(*axis, ut.rank()).map_err(|_| MatchFailure("axis"))?;
        ensure(
            b >= 1 && ut.rank() == rank + 1,
            "the reshape does not insert one axis",
        )?;
        let a = b - 1;
        // The inner reshape inserts a unit axis after axis a; the outer merges a and a+1.
        let mut inserted = xt.dims.clone();
        inserted.insert(b, Dim::Static(1));
        ensure(
            ut.dims == inserted,
            "the inner reshape is not an unsqueeze after the axis",
        )?;
        ensure(
            indices.iter().all(|&i| i == 0),
            "the gather is not a repeat",
        )?;
        let (k, reps) = (
            xt.dim(a).as_static().ok_or(MatchFailure("dynamic axis"))?,
            indices.len() as u64,
        );
        let mut merged = xt.dims.clone();
        merged[a] = Dim::Static(k * reps);
        ensure(
            out.dims == merged,
            "the outer reshape does not merge the repeats",
        )?;
        ensure(f.uses(g_val).len() == 1, "the gather has other users")?;
        let out_ty = out.clone();
        let indices = (0..k)
            .flat_map(|i| std::iter::repeat_n(i, reps as usize))
            .collect();
        let kind = OpKind::Gather {
            axis: a as i64,
            indices,
        };
        let v = rw.insert_before(op, kind, &[x], out_ty);
        let r = rw.func().op(op).result().expect("a result");
        rw.copy_name(r, v);
        rw.replace_op(op, v);
        // The expand and the unsqueeze it read are dead now; readers of `x` that walk its
        // uses (the head region) should not see them.
        rw.erase_op(g);
        if rw.func().uses(u_val).is_empty() {
            rw.erase_op(u);
        }
        Ok(())
    }
}
