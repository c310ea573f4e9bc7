//! Batch-norm folding: `bn(conv(x, W, b))` → `conv(x, W', b')` with
//! `s = γ / sqrt(σ² + ε)`, `W'[j] = s_j · W[j]`, `b'_j = s_j · (b_j − μ_j) + β_j`.
//! Exact in real arithmetic; in f32 it differs from the unfolded network by rounding only.

use crate::ir::rewriter::Rewriter;
use crate::ir::{OpId, OpKind, OpTag, Tensor};

use super::greedy::{Pattern, PatternCx};

pub struct FoldBatchNorm;

impl Pattern for FoldBatchNorm {
    fn name(&self) -> &'static str {
        "fold-batch-norm"
    }

    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::BatchNorm])
    }

    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PatternCx) -> bool {
        let f = rw.func();
        let OpKind::BatchNorm { epsilon } = *f.kind(op) else {
            return false;
        };
        let ins = f.op(op).operands().to_vec();
        let Some(p) = f.producer(ins[0]) else {
            return false;
        };
        // Only a conv whose result nothing else reads (otherwise it must stay unnormalized),
        // and only for channels on axis 1 (a linear's features are its last axis, which is
        // axis 1 only for rank-2 inputs).
        let foldable = match f.kind(p) {
            OpKind::Conv2d { .. } => true,
            OpKind::Linear => f.ty(ins[0]).rank() == 2,
            _ => false,
        };
        if !foldable || f.uses(ins[0]).len() != 1 {
            return false;
        }
        let p_ins = f.op(p).operands().to_vec();
        let params: Option<Vec<Vec<f32>>> = ins[1..]
            .iter()
            .map(|&v| f.constant_of(v).map(Tensor::to_f32_vec))
            .collect();
        let (Some(params), Some(w)) = (params, f.constant_of(p_ins[1]).cloned()) else {
            return false;
        };
        let bias = match p_ins.get(2) {
            Some(&b) => match f.constant_of(b) {
                Some(t) => Some(t.to_f32_vec()),
                None => return false,
            },
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
        cx.pass.count("batch norms folded", 1);
        true
    }
}
