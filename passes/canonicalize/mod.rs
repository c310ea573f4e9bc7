//! `canonicalize`: local clean-ups, one pattern per file, run together to a fixpoint.
//!
//! Every pattern leaves a simpler graph that computes the same values; its doc comment gives
//! the equation and why it is exact. Preconditions: none. Idempotent: a second run finds
//! nothing to do (the driver stops only at a fixpoint).

pub mod constant_fold;
pub mod fold_repeat_interleave;
pub mod fold_scatter_into_consumer;
pub mod fuse_silu;
pub mod remove_identity;
pub mod remove_identity_scatter;
pub mod sink_scatter;
pub mod sink_scatter_past_constant;
pub mod sink_scatter_through_concat;
pub mod sink_scatter_union;

pub use constant_fold::ConstantFold;
pub use fold_repeat_interleave::FoldRepeatInterleave;
pub use fold_scatter_into_consumer::FoldScatterIntoConsumer;
pub use fuse_silu::FuseSilu;
pub use remove_identity::RemoveIdentity;
pub use remove_identity_scatter::RemoveIdentityScatter;
pub use sink_scatter::SinkScatter;
pub use sink_scatter_past_constant::SinkScatterPastConstant;
pub use sink_scatter_through_concat::SinkScatterThroughConcat;
pub use sink_scatter_union::SinkScatterUnion;

use super::{Pass, PassContext, PassInfo, PassOptions};
use crate::ir::Function;
use crate::rewrite::{apply_patterns_greedily, GreedyConfig, Pattern};

pub const INFO: PassInfo = PassInfo {
    name: "canonicalize",
    summary: "local clean-ups: removes nn.identity and identity nn.scatter, fuses x·sigmoid(x) into nn.silu, folds ops whose operands are all constant (f32, by the interpreter's kernels), folds an nn.scatter into the nn.linear/nn.conv2d that reads it (dropping input columns, adding the fill's contribution to the bias), and moves scatters below activations, per-channel pools, add/sub/mul of two like scatters or of a scatter and a per-channel constant, and concats; an add/sub/mul of two unlike scatters keeps the positions both drop as one scatter after it when its users fold that in; and makes the unsqueeze, expand (a gather) and reshape that repeat each position of an axis (grouped-query attention's repeat_kv) one nn.gather along it",
    options: &[],
    parse: |_: &PassOptions| Ok(Box::new(Canonicalize)),
};

/// The patterns of `canonicalize`, in the order the driver tries them on an op (all have the
/// same benefit).
pub const PATTERNS: &[&dyn Pattern<PassContext>] = &[
    &RemoveIdentity,
    &ConstantFold,
    &RemoveIdentityScatter,
    &FoldScatterIntoConsumer,
    &SinkScatter,
    &SinkScatterPastConstant,
    &SinkScatterThroughConcat,
    &SinkScatterUnion,
    &FuseSilu,
    &FoldRepeatInterleave,
];

/// The pass: [`PATTERNS`] to a fixpoint.
pub struct Canonicalize;

impl Pass for Canonicalize {
    fn name(&self) -> &'static str {
        INFO.name
    }

    fn run(&self, f: &mut Function, cx: &mut PassContext) -> bool {
        let outcome = apply_patterns_greedily(f, PATTERNS, cx, &GreedyConfig::default());
        cx.record(f, INFO.name, outcome)
    }
}
