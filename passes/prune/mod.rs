//! `prune-neurons`: dead-neuron elimination with bias hoisting.
//!
//! A neuron `j` of a weighted producer P (`nn.linear` row, `nn.conv2d` filter) can go when
//! - it is *constant* (fan-in dead: the analysis proves its output is `a_j` after the
//!   activations between P and its consumers), or
//! - it is *ignored* (fan-out dead: column `j` of every consumer's weight is zero).
//!
//! Removing it drops row `j` of P and column `j` of every consumer C, after folding its
//! contribution into C's bias: `b'_k = b_k + Σ_window W_C[k, j, ...] · a_j`.
//!
//! [`AttentionHeadElimination`] (`heads.rs`, over the head regions of `attention.rs`) first
//! removes whole attention heads. Then one pattern ([`DeadNeuronElimination`], `dead_neuron_elimination.rs`) runs to a fixpoint
//! over the constness analysis, so removals cascade; beside it, [`GluNeuronElimination`]
//! (`glu.rs`) removes the hidden neurons of gated MLPs (SwiGLU, GeGLU), whose product of two
//! linears the first pattern cannot see through. At their fixpoint, [`ScatterIntoDepthwise`]
//! (`depthwise_scatter.rs`) restores the non-zero constants a zero-padded depthwise conv
//! keeps with a scatter in front of it, which leaves the layer before free to lose them, and
//! removal runs again. `dead-neuron-elimination` plans (`plan.rs`: where the channels
//! go, `fanout.rs`; border maps, `border_map.rs`; the `residual=auto` cost model,
//! `residual_cost.rs`; channel alignment, `align.rs`) and then applies (`apply.rs`). Preconditions: none. Idempotent: a second
//! run finds no removable neuron.

pub mod align;
pub mod apply;
pub mod attention;
pub mod border_map;
pub mod dead_neuron_elimination;
pub mod depthwise_scatter;
pub mod fanout;
pub mod glu;
pub mod groups;
pub mod heads;
pub mod liveness;
pub mod plan;
pub mod residual_cost;

pub use dead_neuron_elimination::DeadNeuronElimination;
pub use depthwise_scatter::ScatterIntoDepthwise;
pub use glu::GluNeuronElimination;
pub use heads::AttentionHeadElimination;

use super::analysis::ConstAnalysis;
use super::{Pass, PassContext, PassInfo, PassOption, PassOptions};
use crate::ir::{Function, OpId};
use crate::rewrite::{apply_patterns_greedily, GreedyConfig, Pattern, PatternContext};

pub const INFO: PassInfo = PassInfo {
    name: "prune-neurons",
    summary: "removes neurons of nn.linear/nn.conv2d that are constant (all incoming weights zero) or ignored (all outgoing weights zero), folding their constant into the consumers' biases, and attention heads whose output projection columns or value rows are zero; cascades to a fixpoint",
    options: &[
        PassOption {
            name: "zero-threshold",
            description: "a weight counts as zero when |w| <= this (default 0: exact)",
        },
        PassOption {
            name: "residual",
            description: "scatter (default): a removed neuron that also reaches a residual add, concat or result is restored there by nn.scatter with its constant; keep: such layers are not pruned; auto: per layer, scatter when the MACs the removal saves exceed what the scatters that stay cost the runtime (nodes, copies and copy runs, in MACs per sample; scatters that fold into a later layer cost nothing), else keep",
        },
        PassOption {
            name: "lanes",
            description: "N (default 8): f32 lanes of the runtime's vector unit, which turns residual=auto's per-node and per-run cycles into MACs",
        },
        PassOption {
            name: "round-to",
            description: "N (default 1): each pruned layer keeps enough of its removable neurons that its remaining count is a multiple of N (a layer is never grown); those whose removal saves least stay",
        },
    ],
    parse: parse_options,
};

/// What `prune-neurons` does with a neuron whose value also reaches an op that is not a weighted
/// consumer (a residual `nn.add`, `nn.concat`, a function result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residual {
    /// Remove it and restore the full length there with `nn.scatter` (filled with its constant).
    Scatter,
    /// Leave the whole layer unpruned (no scatters are inserted).
    Keep,
    /// Per layer, `Scatter` when the MACs the removal saves exceed what its scatters cost a
    /// runtime whose vector unit has `lanes` f32 lanes (`residual_cost.rs`), else `Keep`.
    Auto { lanes: usize },
}

/// The pass, with its options.
#[derive(Clone, Debug, PartialEq)]
pub struct PruneNeurons {
    /// A weight counts as zero when `|w| <= zero_threshold`.
    pub zero_threshold: f32,
    pub residual: Residual,
    /// Each pruned layer keeps a multiple of this many neurons (1: no alignment).
    pub round_to: usize,
}

fn parse_options(opts: &PassOptions) -> Result<Box<dyn Pass>, String> {
    let t = opts.get("zero-threshold").unwrap_or("0");
    let zero_threshold = t
        .parse::<f32>()
        .ok()
        .filter(|t| *t >= 0.0)
        .ok_or_else(|| format!("zero-threshold must be a number >= 0, not '{t}'"))?;
    let l = opts.get("lanes").unwrap_or("8");
    let lanes = l
        .parse::<usize>()
        .ok()
        .filter(|&l| l >= 1)
        .ok_or_else(|| format!("lanes must be an integer >= 1, not '{l}'"))?;
    let residual = match opts.get("residual").unwrap_or("scatter") {
        "scatter" => Residual::Scatter,
        "keep" => Residual::Keep,
        "auto" => Residual::Auto { lanes },
        r => {
            return Err(format!(
                "residual must be 'scatter', 'keep' or 'auto', not '{r}'"
            ))
        }
    };
    let r = opts.get("round-to").unwrap_or("1");
    let round_to = r
        .parse::<usize>()
        .ok()
        .filter(|&r| r >= 1)
        .ok_or_else(|| format!("round-to must be an integer >= 1, not '{r}'"))?;
    Ok(Box::new(PruneNeurons {
        zero_threshold,
        residual,
        round_to,
    }))
}

/// What the pattern sees: the pass's statistics and the constness analysis, which the driver
/// keeps up to date after every rewrite.
pub struct PruneCx<'a> {
    pub pass: &'a mut PassContext,
    pub analysis: ConstAnalysis,
}

impl PatternContext for PruneCx<'_> {
    fn update(&mut self, f: &Function, touched: &[OpId]) {
        self.analysis.update(f, touched);
    }
}

impl Pass for PruneNeurons {
    fn name(&self) -> &'static str {
        INFO.name
    }

    /// Whole attention heads first (before neuron removal restores single projection rows
    /// with scatters, which would hide the heads), then removal to a fixpoint, then the
    /// constants zero-padded depthwise convs keep restored in front of them, and again from
    /// what that leaves unread, until nothing applies.
    fn run(&self, f: &mut Function, cx: &mut PassContext) -> bool {
        let dne = DeadNeuronElimination {
            residual: self.residual,
            round_to: self.round_to,
        };
        let glu = GluNeuronElimination {
            round_to: self.round_to,
        };
        let restore = ScatterIntoDepthwise {
            residual: self.residual,
            round_to: self.round_to,
        };
        let mut pcx = PruneCx {
            pass: cx,
            analysis: ConstAnalysis::compute(f, self.zero_threshold),
        };
        let removal: [&dyn Pattern<PruneCx>; 2] = [&dne, &glu];
        let config = GreedyConfig::default();
        let mut changed = false;
        loop {
            let outcome =
                apply_patterns_greedily(f, &[&AttentionHeadElimination], &mut pcx, &config);
            changed |= pcx.pass.record(f, INFO.name, outcome);
            let outcome = apply_patterns_greedily(f, &removal, &mut pcx, &config);
            changed |= pcx.pass.record(f, INFO.name, outcome);
            let outcome = apply_patterns_greedily(f, &[&restore], &mut pcx, &config);
            if !pcx.pass.record(f, INFO.name, outcome) {
                break;
            }
            changed = true;
        }
        pcx.pass.flush_remarks(f);
        changed
    }
}
