//! `fold-batch-norm`: folds `nn.batch_norm` into the `nn.conv2d` or rank-2 `nn.linear` before
//! it (one pattern, [`FoldBatchNorm`], run to a fixpoint).
//!
//! Preconditions: none (a batch norm that cannot fold stays). Idempotent: a second run finds
//! no batch norm after a foldable producer.

use super::{Pass, PassContext, PassInfo, PassOptions};
use crate::ir::{Function, OpId, OpKind, OpTag, Tensor};
use crate::rewrite::{apply_patterns_greedily, ensure, GreedyConfig, MatchFailure, MatchResult};
use crate::rewrite::{Pattern, Rewriter};

pub const INFO: PassInfo = PassInfo {
    name: "fold-batch-norm",
    summary: "folds nn.batch_norm into the nn.conv2d (or rank-2 nn.linear) before it when nothing else reads the unnormalized result: W' = s*W, b' = s*(b - mean) + beta, s = scale / sqrt(var + eps)",
    options: &[],
    parse: |_: &PassOptions| Ok(Box::new(FoldBatchNormPass)),
};

/// The pass: [`FoldBatchNorm`] to a fixpoint.
pub struct FoldBatchNormPass;

impl Pass for FoldBatchNormPass {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn run(&self, f: &mut Function, cx: &mut PassContext) -> bool {
        let outcome = apply_patterns_greedily(f, &[&FoldBatchNorm], cx, &GreedyConfig::default());
        cx.record(f, INFO.name, outcome)
    }
}

/// `batch_norm(conv(x, W, b), γ, β, μ, σ²)` → `conv(x, W', b')` with `s = γ / sqrt(σ² + ε)`,
/// `W'[j] = s_j · W[j]`, `b'_j = s_j · (b_j − μ_j) + β_j` (likewise for a rank-2 linear).
///
/// Exact in real arithmetic, since batch norm at inference is a per-channel affine map that
/// composes with the channel's row; in f32 it differs from the unfolded network by rounding
/// only.
pub struct FoldBatchNorm;

impl Pattern<PassContext> for FoldBatchNorm {
    fn name(&self) -> &'static str {
        "fold-batch-norm"
    }

    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::BatchNorm])
    }

    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PassContext) -> MatchResult {
        let f = rw.func();
        let OpKind::BatchNorm { epsilon } = *f.kind(op) else {
            return Err(MatchFailure("not a batch norm"));
        };
        let ins = f.op(op).operands().to_vec();
        let p = f
            .producer(ins[0])
            .ok_or(MatchFailure("the input is a function argument"))?;
        // Only a conv whose result nothing else reads (otherwise it must stay unnormalized),
        // and only for channels on axis 1 (a linear's features are its last axis, which is
        // axis 1 only for rank-2 inputs).
        let foldable = match f.kind(p) {
            OpKind::Conv2d { .. } => true,
            OpKind::Linear => f.ty(ins[0]).rank() == 2,
            _ => false,
        };
        ensure(foldable, "the input is not a conv or a rank-2 linear")?;
        ensure(
            f.uses(ins[0]).len() == 1,
            "something else reads the unnormalized result",
        )?;
        let p_ins = f.op(p).operands().to_vec();
        let params: Option<Vec<Vec<f32>>> = ins[1..]
            .iter()
            .map(|&v| f.constant_of(v).map(Tensor::to_f32_vec))
            .collect();
        let (Some(params), Some(w)) = (params, f.constant_of(p_ins[1]).cloned()) else {
            return Err(MatchFailure(
                "the parameters or the weights are not constant",
            ));
        };
        let bias = match p_ins.get(2) {
            Some(&b) => Some(
                f.constant_of(b)
                    .ok_or(MatchFailure("the bias is not constant"))?
                    .to_f32_vec(),
            ),
            None => None,
        };
        let [gamma, beta, mean, var] = [&params[0], &params[1], &params[2], &params[3]];
        let n = w.shape()[0] as usize;
        let s: Vec<f32> = (0..n)
            .map(|j| gamma[j] / (var[j] + epsilon).sqrt())
            .collect();
        let per_row = w.len() / n.max(1);
        let wv = w.to_f32_vec();
        let new_w: Vec<f32> = wv
            .iter()
            .enumerate()
            .map(|(i, &x)| x * s[i / per_row])
            .collect();
        let new_b: Vec<f32> = (0..n)
            .map(|j| s[j] * (bias.as_ref().map_or(0.0, |b| b[j]) - mean[j]) + beta[j])
            .collect();
        let elem = w.elem();
        let w_val = rw.derived_constant_before(
            p,
            Tensor::from_f32(elem, w.shape().to_vec(), &new_w),
            p_ins[1],
        );
        let b_val = {
            let b = Tensor::from_f32(elem, vec![n as u64], &new_b);
            match p_ins.get(2) {
                Some(&old) => rw.derived_constant_before(p, b, old),
                None => rw.constant_before(p, b),
            }
        };
        rw.set_operands(p, &[p_ins[0], w_val, b_val]);
        let r = rw
            .func()
            .op(p)
            .result()
            .expect("conv and linear have results");
        rw.replace_op(op, r);
        cx.count("batch norms folded", 1);
        Ok(())
    }
}
