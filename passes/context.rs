//! `PassContext`: the statistics and remarks that passes collect while a pipeline runs.

use crate::diag::Diagnostic;
use crate::ir::{Function, OpId};
use crate::rewrite::{GreedyOutcome, PatternContext};
use std::collections::{BTreeMap, HashMap};

/// Statistics and remarks collected while passes run.
#[derive(Default)]
pub struct PassContext {
    /// Successful rewrites per pattern name.
    pub pattern_hits: BTreeMap<&'static str, u64>,
    pub counters: BTreeMap<&'static str, u64>,
    /// Why a dead neuron stayed, by op (the latest reason wins; emitted for ops still alive).
    kept: HashMap<OpId, Diagnostic>,
    pub remarks: Vec<Diagnostic>,
    /// What pruning did to each layer, by function name and op, for `--pass-statistics`.
    pub layers: BTreeMap<(String, OpId), LayerNote>,
    /// Wall time of each pass run, in pipeline order (verification excluded).
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

/// Why a layer lost or kept neurons: the counts of each reason, summed over the rewrites of
/// one pipeline run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LayerNote {
    /// Removed because their output is a constant (folded into the consumers).
    pub constant: u64,
    /// Removed because every outgoing weight is zero.
    pub unused: u64,
    /// Removed because the producer before this per-channel layer lost them.
    pub followed: u64,
    /// Attention heads whose rows this projection lost (`attention-head-elimination`).
    pub heads: u64,
    /// Of the removed, those an `nn.scatter` restores at a residual add, concat or result.
    pub scattered: u64,
    /// Dead neurons left in place, and why (the latest rewrite's reason).
    pub kept: Option<(u64, &'static str)>,
    /// Removable neurons kept so the layer's count is a multiple of `round-to` (the latest
    /// plan's count).
    pub aligned: u64,
}

/// The patterns that need nothing but the statistics use the pass context itself.
impl PatternContext for PassContext {
    fn update(&mut self, _: &Function, _: &[OpId]) {}
}

impl PassContext {
    pub fn count(&mut self, what: &'static str, n: u64) {
        *self.counters.entry(what).or_default() += n;
    }

    /// The note of layer `op` in `f`, created empty.
    pub fn layer(&mut self, f: &Function, op: OpId) -> &mut LayerNote {
        self.layers.entry((f.name.clone(), op)).or_default()
    }

    /// Records why `op` kept some of its neurons; replaces an earlier reason for the same op.
    pub fn keep_remark(&mut self, op: OpId, d: Diagnostic) {
        self.kept.insert(op, d);
    }

    /// Moves the reasons recorded by [`keep_remark`](Self::keep_remark) for ops still in `f`
    /// to `remarks`, in op order.
    pub fn flush_remarks(&mut self, f: &Function) {
        let mut kept: Vec<(OpId, Diagnostic)> = self.kept.drain().collect();
        kept.sort_by_key(|(op, _)| *op);
        self.remarks.extend(
            kept.into_iter()
                .filter(|(op, _)| f.is_linked(*op))
                .map(|(_, d)| d),
        );
    }

    /// Adds a greedy driver run's pattern counts, and a warning when it did not converge.
    pub fn record(&mut self, f: &Function, pass: &str, outcome: GreedyOutcome) -> bool {
        for (name, n) in outcome.applied {
            *self.pattern_hits.entry(name).or_default() += n;
        }
        if !outcome.converged {
            self.remarks.push(
                Diagnostic::new(
                    crate::diag::Severity::Warning,
                    format!(
                        "'{pass}' did not converge on @{}: its patterns stopped at the rewrite bound",
                        f.name
                    ),
                )
                .at(f.span),
            );
        }
        outcome.changed
    }
}
