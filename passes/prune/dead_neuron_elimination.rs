//! The `dead-neuron-elimination` pattern: plan (`plan.rs`), then apply (`apply.rs`).
//! Preconditions: the pattern context's analysis is up to date (the greedy driver keeps it
//! so). Idempotent at the fixpoint: once applied, the layer has no removable neuron left
//! until a neighbour changes.

use super::apply::apply;
use super::plan::plan;
use super::{PruneCx, Residual};
use crate::ir::{Function, OpId, OpKind, OpTag};
use crate::passes::channels::layer_behind;
use crate::rewrite::{MatchFailure, MatchResult, Pattern, Rewriter};

/// `P → act* → {C | other}` with `P ∈ {linear, conv2d}`: drop the constant or ignored neurons
/// `j` of P, with `b'_k = b_k + Σ_window W_C[k, j, ...] · a_j` in every weighted consumer C of
/// the same layout (column `j` dropped) and `nn.scatter` restoring the full length, filled with
/// `a_j`, at every other use (residual adds, concats, function results).
///
/// Exact: a constant neuron contributes the same `W_C[:, j]·a_j` to C for every input, which
/// the bias now adds (a zero-padded conv gets it as a per-position border map instead); an
/// ignored neuron contributes nothing; every other use sees the same values through the
/// scatter.
///
/// It also roots at an `nn.gather` along the channel axis, to plan the layer whose channels it
/// selects (through per-channel ops): a gather that a whole-group removal put in front of a
/// grouped conv leaves channels of that layer unread, and the driver offers the new gather,
/// not that layer, again.
pub struct DeadNeuronElimination {
    pub residual: Residual,
    pub round_to: usize,
}

impl Pattern<PruneCx<'_>> for DeadNeuronElimination {
    fn name(&self) -> &'static str {
        "dead-neuron-elimination"
    }

    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Linear, OpTag::Conv2d, OpTag::Gather])
    }

    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PruneCx) -> MatchResult {
        let op = match rw.func().kind(op) {
            OpKind::Gather { axis, .. } => selected_layer(rw.func(), op, *axis).ok_or(
                MatchFailure("the gather does not select a layer's channels"),
            )?,
            _ => op,
        };
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

/// The `nn.linear` or `nn.conv2d` whose channels gather `op` (along `axis`) selects, through
/// per-channel ops.
fn selected_layer(f: &Function, op: OpId, axis: i64) -> Option<OpId> {
    let v = f.op(op).operands()[0];
    let axis = crate::ir::infer::norm_axis(axis, f.ty(v).rank()).ok()?;
    layer_behind(f, v, axis, false)
}
