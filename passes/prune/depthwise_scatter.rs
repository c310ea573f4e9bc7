//! The `scatter-into-depthwise` pattern: the constant channels a zero-padded depthwise conv
//! keeps need not be computed by the layer before it.

use super::align::{choose_kept, kept_for_alignment};
use super::fanout::Site;
use super::residual_cost::{positions, scatter_cost};
use super::{PruneCx, Residual};
use crate::ir::{Dim, Function, OpId, OpKind, OpTag, ValueId};
use crate::passes::channels::{layer_behind, per_channel_axis};
use crate::rewrite::{ensure, MatchFailure, MatchResult, Pattern, Rewriter};
use std::collections::BTreeSet;

/// `dw(x)`, `dw` a depthwise `nn.conv2d` with zero padding and `x = act*(P(...))` with `P` an
/// ungrouped `nn.conv2d` reached through single-use per-channel ops, where channels `J` of `x`
/// are constants `a_j ≠ 0` → `dw(scatter(gather(x, K), K, a))`, `K` the other channels.
///
/// Why: a zero-padded conv sees a constant channel only inside the image, so its output is a
/// per-position map no bias absorbs, and `dead-neuron-elimination` keeps such neurons
/// (removing them through `dw` would need a border map after `dw`, `[C_out, H, W]` in the next
/// layer, far larger than what it saves). Restoring `a_j` in front of `dw` instead keeps `dw`
/// as it is and leaves P's filters `J` unread: `dead-neuron-elimination`, rooted at the
/// gather, then removes them, and cascades from there.
///
/// Exact: channel `j ∈ J` of `x` holds `a_j` at every position (the constness analysis), so
/// the scatter rebuilds `x` bit for bit.
///
/// Applies only where nothing else removes the neurons: `prune-neurons` runs it after
/// `dead-neuron-elimination` reached its fixpoint, so no channel of `J` is removable through
/// `dw`. The scatter stays in the output, so it follows `residual`: never with `keep`; with
/// `auto` only when P's filters `J` cost more MACs than the scatter (`residual_cost.rs`). With
/// `round-to=N` it leaves P a multiple of N filters, keeping those of `J` it must.
pub struct ScatterIntoDepthwise {
    pub residual: Residual,
    pub round_to: usize,
}

impl Pattern<PruneCx<'_>> for ScatterIntoDepthwise {
    fn name(&self) -> &'static str {
        "scatter-into-depthwise"
    }

    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Conv2d])
    }

    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PruneCx) -> MatchResult {
        let f = rw.func();
        let OpKind::Conv2d { pads, .. } = f.kind(op) else {
            return Err(MatchFailure("not a conv"));
        };
        ensure(pads.iter().any(|&p| p > 0), "no zero padding")?;
        ensure(
            per_channel_axis(f, op, 1) == Some(1),
            "not a depthwise conv with constant parameters",
        )?;
        let x = f.op(op).operands()[0];
        let p = producer_layer(f, x).ok_or(MatchFailure(
            "the input is not an ungrouped conv through single-use per-channel ops",
        ))?;
        let n = f
            .ty(x)
            .dim(1)
            .as_static()
            .expect("depthwise: static channels") as usize;
        let facts = cx
            .analysis
            .facts(x)
            .filter(|fx| fx.axis == 1)
            .ok_or(MatchFailure("no constant channel"))?;
        let mut constant: BTreeSet<usize> = (0..n)
            .filter(|&j| facts.constant(j).is_some_and(|a| a != 0.0))
            .collect();
        // One channel stays computed, so that the gather has one.
        if constant.len() == n {
            constant.pop_last();
        }
        let kept = choose_kept(
            &constant,
            kept_for_alignment(n, constant.len(), self.round_to),
            |_| 0,
        );
        constant.retain(|j| !kept.contains(j));
        ensure(
            !constant.is_empty(),
            "no non-zero constant channel to restore",
        )?;
        let site = Site { axis: 1, scale: 1 };
        let declined = match self.residual {
            Residual::Keep => Some("residual=keep"),
            Residual::Auto { lanes } => {
                let pw = f.constant_of(f.op(p).operands()[1]).expect("checked");
                let row = (pw.len() / n) as u64;
                let pr = f.op(p).result().expect("a conv has a result");
                let saved = constant.len() as u64 * row * positions(f.ty(pr), 1);
                let cost = scatter_cost(f.ty(x), site, n, lanes);
                (saved <= cost).then_some("residual=auto: scatters cost more")
            }
            Residual::Scatter => None,
        };
        if let Some(why) = declined {
            cx.pass.layer(f, p).kept = Some((constant.len() as u64, why));
            return Err(MatchFailure(why));
        }
        let keep: Vec<u64> = (0..n as u64)
            .filter(|j| !constant.contains(&(*j as usize)))
            .collect();
        let fill: Vec<f32> = (0..n)
            .map(|j| {
                if constant.contains(&j) {
                    facts.constant(j).expect("constant")
                } else {
                    0.0
                }
            })
            .collect();
        let full = f.ty(x).clone();
        let narrow = full.with_dim(1, Dim::Static(keep.len() as u64));
        let gather = OpKind::Gather {
            axis: 1,
            indices: keep.clone(),
        };
        let scatter = OpKind::Scatter {
            axis: 1,
            indices: keep,
            size: n as u64,
            fill,
        };
        let g = rw.insert_before(op, gather, &[x], narrow);
        let s = rw.insert_before(op, scatter, &[g], full);
        rw.set_operand(op, 0, s);
        cx.pass.layer(rw.func(), p).scattered += constant.len() as u64;
        cx.pass.count("scatters inserted", 1);
        cx.pass.count(
            "constants restored in front of depthwise convs",
            constant.len() as u64,
        );
        Ok(())
    }
}

/// The ungrouped `nn.conv2d` with constant weights whose result reaches `x` through
/// per-channel ops on the channel axis, each value read once (so the gather in front of the
/// depthwise conv is the layer's only reader).
fn producer_layer(f: &Function, x: ValueId) -> Option<OpId> {
    layer_behind(f, x, 1, true).filter(|&p| {
        matches!(f.kind(p), OpKind::Conv2d { groups: 1, .. })
            && f.constant_of(f.op(p).operands()[1]).is_some()
    })
}
