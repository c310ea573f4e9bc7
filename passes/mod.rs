//! Passes over NNIR, and the one registry that drives them.
//!
//! A pass is a [`Pass`] plus one [`PassInfo`] line in [`REGISTRY`]: that line gives its name,
//! summary and options to `--list-passes`, to the pipeline parser ([`PassManager::parse`]) and
//! to its errors. The pattern passes run their patterns through the greedy driver of
//! [`crate::rewrite`]; `prune-neurons` plugs in the per-channel constness analysis
//! (`analysis.rs`). `docs/passes.md` describes each pass, option and pattern, and shows how to
//! add a pass or a pattern.

pub mod absorb;
pub mod analysis;
pub mod canonicalize;
pub mod channels;
pub mod context;
pub mod dce;
pub mod fold_batch_norm;
pub mod layer_costs;
pub mod pipeline;
pub mod prune;

pub use context::{LayerNote, PassContext};
pub use layer_costs::{layer_costs, LayerCost};
pub use pipeline::PassManager;

use crate::ir::Function;

/// The pipeline `--prune-neurons` stands for.
pub const PRUNE_PIPELINE: &str = "canonicalize,fold-batch-norm,prune-neurons,canonicalize,dce";

/// [`PRUNE_PIPELINE`] with `options` for its `prune-neurons` (`"round-to=16 residual=auto"`).
pub fn prune_pipeline(options: &str) -> String {
    PRUNE_PIPELINE.replace("prune-neurons", &format!("prune-neurons{{{options}}}"))
}

/// A pass, configured by its options.
pub trait Pass {
    /// The name it has in pipelines (its [`PassInfo::name`]).
    fn name(&self) -> &'static str;
    /// Runs the pass on `f`; returns whether it changed anything.
    fn run(&self, f: &mut Function, cx: &mut PassContext) -> bool;
}

/// An option of a pass, as `--list-passes` shows it.
pub struct PassOption {
    pub name: &'static str,
    pub description: &'static str,
}

/// The options given to a pass in a pipeline (`name{key=value ...}`), each a known option
/// of the pass (the parser checks that before [`PassInfo::parse`] sees them).
pub struct PassOptions<'a>(pub Vec<(&'a str, &'a str)>);

impl PassOptions<'_> {
    /// The value given for `name`, if any (the first one when given twice).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|o| o.0 == name).map(|o| o.1)
    }
}

/// Everything the registry knows about a pass.
pub struct PassInfo {
    pub name: &'static str,
    /// One line for `--list-passes`.
    pub summary: &'static str,
    pub options: &'static [PassOption],
    /// Builds the pass from its options; the error is the message of a pipeline error.
    pub parse: fn(&PassOptions) -> Result<Box<dyn Pass>, String>,
}

/// Every pass, in `--list-passes` order.
pub const REGISTRY: &[PassInfo] = &[
    canonicalize::INFO,
    prune::INFO,
    fold_batch_norm::INFO,
    dce::INFO,
];

#[cfg(test)]
mod tests;
