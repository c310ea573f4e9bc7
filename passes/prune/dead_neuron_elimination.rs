//! The `dead-neuron-elimination` pattern: plan (`plan.rs`), then apply (`apply.rs`).
//! Preconditions: the pattern context's analysis is up to date (the greedy driver keeps it
//! so). Idempotent at the fixpoint: once applied, the layer has no removable neuron left
//! until a neighbour changes.

use super::apply::apply;
use super::plan::plan;
use super::{PruneCx, Residual};
use crate::ir::{OpId, OpTag};
use crate::rewrite::{MatchResult, Pattern, Rewriter};

/// `P → act* → {C | other}` with `P ∈ {linear, conv2d}`: drop the constant or ignored neurons
/// `j` of P, with `b'_k = b_k + Σ_window W_C[k, j, ...] · a_j` in every weighted consumer C of
/// the same layout (column `j` dropped) and `nn.scatter` restoring the full length, filled with
/// `a_j`, at every other use (residual adds, concats, function results).
///
/// Exact: a constant neuron contributes the same `W_C[:, j]·a_j` to C for every input, which
/// the bias now adds (a zero-padded conv gets it as a per-position border map instead); an
/// ignored neuron contributes nothing; every other use sees the same values through the
/// scatter.
pub struct DeadNeuronElimination {
    pub residual: Residual,
    pub round_to: usize,
}

impl Pattern<PruneCx<'_>> for DeadNeuronElimination {
    fn name(&self) -> &'static str {
        "dead-neuron-elimination"
    }

    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Linear, OpTag::Conv2d])
    }

    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PruneCx) -> MatchResult {
        let decision = plan(rw.func(), op, &cx.analysis, self.residual, self.round_to);
        // The latest plan sees every neuron removable now, so its count replaces earlier ones.
        if decision.aligned > 0 || cx.pass.layers.contains_key(&(rw.func().name.clone(), op)) {
            cx.pass.layer(rw.func(), op).aligned = decision.aligned as u64;
        }
        if let Some(remark) = decision.remark {
            cx.pass.keep_remark(op, remark);
        }
        if let Some((n, why)) = decision.kept {
            cx.pass.layer(rw.func(), op).kept = Some((n as u64, why));
        }
        apply(rw, op, &decision.plan?, cx.pass);
        Ok(())
    }
}
