//! `fold-scatter-into-consumer`: a linear or conv reading a scatter reads the scatter's
//! operand instead, with the fill folded into its bias. Preconditions: none. Idempotent: the
//! consumer no longer reads the scatter.

use crate::ir::{OpId, OpKind, OpTag, Tensor};
use crate::passes::absorb::{absorb_columns, set_weighted_operands};
use crate::passes::PassContext;
use crate::rewrite::{ensure, MatchFailure, MatchResult, Pattern, Rewriter};

/// `linear(scatter(x, idx, fill), W, b)` → `linear(x, W[:, idx], b + Σ_{j∉idx} W[:, j]·fill_j)`.
///
/// Likewise for an ungrouped `nn.conv2d` reading the scattered channels (the column sum runs
/// over the kernel window); a zero-padded conv sees a fill only inside the image, so it folds
/// only when every fill it would absorb is zero. The scatter stays for its other users (DCE
/// removes it when none are left).
///
/// Exact: a dropped position j holds fill_j everywhere, so its column contributes the
/// constant `Σ W[:, j]·fill_j`, which the bias now carries.
pub struct FoldScatterIntoConsumer;

impl Pattern<PassContext> for FoldScatterIntoConsumer {
    fn name(&self) -> &'static str {
        "fold-scatter-into-consumer"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Scatter])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PassContext) -> MatchResult {
        let f = rw.func();
        let OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        } = f.kind(op).clone()
        else {
            return Err(MatchFailure("not a scatter"));
        };
        let (x, s) = (
            f.op(op).operands()[0],
            f.op(op).result().expect("scatter has a result"),
        );
        let rank = f.ty(s).rank();
        let axis = crate::ir::infer::norm_axis(axis, rank)
            .map_err(|_| MatchFailure("the axis is out of range"))?;
        let keep: Vec<usize> = indices.iter().map(|&k| k as usize).collect();
        let dropped: Vec<usize> = (0..size as usize).filter(|j| !keep.contains(j)).collect();
        let consumers: Vec<OpId> = f
            .uses(s)
            .iter()
            .filter(|u| u.index == 0)
            .map(|u| u.op)
            .filter(|&c| {
                let ops = f.op(c).operands();
                let params_constant = ops[1..].iter().all(|&p| f.constant_of(p).is_some());
                let reads_features = match f.kind(c) {
                    OpKind::Linear => axis + 1 == rank,
                    OpKind::Conv2d { groups, pads, .. } => {
                        *groups == 1
                            && axis == 1
                            && (pads.iter().all(|&p| p == 0)
                                || dropped.iter().all(|&j| fill[j] == 0.0))
                    }
                    _ => false,
                };
                params_constant && reads_features && !ops[1..].contains(&s)
            })
            .collect();
        ensure(
            !consumers.is_empty(),
            "no user is a linear or ungrouped conv with constant parameters reading the scattered axis",
        )?;
        for c in consumers {
            let f = rw.func();
            let ops = f.op(c).operands().to_vec();
            let w = f.constant_of(ops[1]).expect("checked above").clone();
            let out = w.shape()[0] as usize;
            let old_b = ops.get(2).and_then(|&b| f.constant_of(b)).cloned();
            let mut b: Vec<f32> = old_b.as_ref().map_or(vec![0.0; out], Tensor::to_f32_vec);
            let absorbed: Vec<(Vec<usize>, f32)> = dropped
                .iter()
                .filter(|&&j| fill[j] != 0.0)
                .map(|&j| (vec![j], fill[j]))
                .collect();
            let touched = absorb_columns(&w, &absorbed, &mut b);
            set_weighted_operands(rw, c, x, w.take(1, &keep), touched.then_some(&b));
            cx.count("scatters folded into consumers", 1);
        }
        Ok(())
    }
}
