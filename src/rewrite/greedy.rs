//! MLIR's greedy pattern-rewrite driver, for NNIR.
//!
//! A worklist of ops with set semantics (an op is on it at most once), seeded with every op in
//! layout order. Each op taken off it is offered to the patterns whose root matches, highest
//! benefit first; the first that applies ends the op's turn, and the ops its events created or
//! modified go back on the worklist together with their producers and users. Erased ops left
//! on the worklist are skipped. The run ends when the worklist is empty (a fixpoint) or after
//! [`GreedyConfig::max_rewrites`] rewrites (reported as not converged).
//!
//! The driver knows no analysis: after each rewrite it calls [`PatternContext::update`] with
//! the touched ops, and the pass's context brings whatever it derives from the IR up to date.
//!
//! Tracing (`log`, see `trace.rs`): the target `greedy-rewriter` logs each op processed; a
//! pattern's name is the target of its "applied" and "failed: reason" lines.

use super::{Event, Pattern, Rewriter};
use crate::ir::{Function, OpId};
use std::collections::{BTreeMap, HashMap, VecDeque};

/// The `log` target of the driver's own trace lines.
pub const TRACE_TARGET: &str = "greedy-rewriter";

/// What the patterns of one driver run share besides the IR.
pub trait PatternContext {
    /// Called after every successful rewrite with the ops it created or modified (in event
    /// order; some may have been erased since), so that an analysis can catch up. Rewrites
    /// preserve what every value computes, so facts can only change at these ops.
    fn update(&mut self, f: &Function, touched: &[OpId]);
}

/// Limits of one driver run.
#[derive(Clone, Copy, Debug)]
pub struct GreedyConfig {
    /// The run stops after this many successful rewrites, converged or not: a bound on a
    /// pattern set that never reaches a fixpoint (two patterns undoing each other).
    pub max_rewrites: u64,
}

impl Default for GreedyConfig {
    /// A bound far above what any network needs: every pattern of nnopt erases ops, moves a
    /// scatter towards the results or removes neurons, so a run takes at most a few rewrites
    /// per op or neuron.
    fn default() -> GreedyConfig {
        GreedyConfig {
            max_rewrites: 1 << 24,
        }
    }
}

/// What a driver run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GreedyOutcome {
    /// Whether any pattern applied.
    pub changed: bool,
    /// False when the run stopped at [`GreedyConfig::max_rewrites`] with work left.
    pub converged: bool,
    /// Successful rewrites per pattern name.
    pub applied: BTreeMap<&'static str, u64>,
}

/// Applies `patterns` to `f` until nothing changes (or the bound in `config` is reached).
pub fn apply_patterns_greedily<C: PatternContext>(
    f: &mut Function,
    patterns: &[&dyn Pattern<C>],
    cx: &mut C,
    config: &GreedyConfig,
) -> GreedyOutcome {
    let mut ordered: Vec<&dyn Pattern<C>> = patterns.to_vec();
    ordered.sort_by_key(|p| std::cmp::Reverse(p.benefit()));
    let mut worklist: VecDeque<OpId> = f.ops().collect();
    let mut queued: HashMap<OpId, bool> = worklist.iter().map(|&o| (o, true)).collect();
    let mut out = GreedyOutcome {
        converged: true,
        ..GreedyOutcome::default()
    };
    let mut rewrites = 0u64;
    while let Some(op) = worklist.pop_front() {
        queued.insert(op, false);
        if !f.is_linked(op) {
            continue;
        }
        if rewrites == config.max_rewrites {
            out.converged = false;
            log::debug!(target: TRACE_TARGET, "stopped after {rewrites} rewrites: not converged");
            break;
        }
        let tag = f.op(op).tag();
        log::trace!(target: TRACE_TARGET, "processing op {op} ({})", tag.mnemonic());
        for p in &ordered {
            if p.root().is_some_and(|roots| !roots.contains(&tag)) {
                continue;
            }
            let mut rw = Rewriter::new(f);
            if let Err(why) = p.rewrite(&mut rw, op, cx) {
                debug_assert!(rw.events().is_empty(), "{} failed after changes", p.name());
                log::debug!(target: p.name(), "pattern {} failed on {op}: {why}", p.name());
                continue;
            }
            log::debug!(target: p.name(), "pattern {} applied to {op}", p.name());
            rewrites += 1;
            *out.applied.entry(p.name()).or_default() += 1;
            out.changed = true;
            let events = rw.take_events();
            let touched: Vec<OpId> = events
                .iter()
                .filter_map(|e| match *e {
                    Event::Created(o) | Event::Modified(o) => Some(o),
                    Event::Erased(_) | Event::Replaced { .. } => None,
                })
                .collect();
            let mut push = |o: OpId, worklist: &mut VecDeque<OpId>| {
                if f.is_linked(o) && !queued.get(&o).copied().unwrap_or(false) {
                    queued.insert(o, true);
                    worklist.push_back(o);
                }
            };
            for &o in &touched {
                if !f.is_linked(o) {
                    continue;
                }
                push(o, &mut worklist);
                let data = f.op(o);
                for &v in data.operands() {
                    if let Some(p) = f.producer(v) {
                        push(p, &mut worklist);
                    }
                }
                if let Some(r) = data.result() {
                    for u in f.users(r).collect::<Vec<_>>() {
                        push(u, &mut worklist);
                    }
                }
            }
            cx.update(f, &touched);
            break;
        }
    }
    out
}
