//! MLIR's greedy pattern-rewrite driver, for NNIR: a worklist of ops; each op is offered to the
//! patterns that match its tag, highest benefit first; when one rewrites, the ops its events
//! touched (and their producers and users) go back on the worklist, until nothing changes.

use crate::ir::rewriter::{Event, Rewriter};
use crate::ir::{Function, OpId, OpTag};
use std::collections::{HashMap, VecDeque};

use super::analysis::ConstAnalysis;
use super::PassContext;

/// What a pattern sees besides the op: the analysis (recomputed after every change) and the
/// pass context for statistics and remarks.
pub struct PatternCx<'a> {
    pub analysis: &'a ConstAnalysis,
    pub pass: &'a mut PassContext,
    pub threshold: f32,
}

/// A rewrite pattern. `rewrite` returns whether it changed the IR; it must only change it
/// through the rewriter.
pub trait Pattern {
    fn name(&self) -> &'static str;
    /// The ops this pattern matches; `None` matches every op.
    fn root(&self) -> Option<&'static [OpTag]>;
    fn benefit(&self) -> u32 {
        1
    }
    /// Whether `rewrite` reads `cx.analysis`; the driver computes it only for such patterns.
    fn uses_analysis(&self) -> bool {
        false
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PatternCx) -> bool;
}

/// Applies `patterns` to a fixpoint; returns whether anything changed.
pub fn apply_patterns_greedily(
    f: &mut Function,
    patterns: &[&dyn Pattern],
    threshold: f32,
    pass: &mut PassContext,
) -> bool {
    let mut ordered: Vec<&dyn Pattern> = patterns.to_vec();
    ordered.sort_by_key(|p| std::cmp::Reverse(p.benefit()));
    let mut worklist: VecDeque<OpId> = f.ops().collect();
    let mut queued: HashMap<OpId, bool> = worklist.iter().map(|&o| (o, true)).collect();
    let with_analysis = ordered.iter().any(|p| p.uses_analysis());
    let mut analysis = if with_analysis {
        ConstAnalysis::compute(f, threshold)
    } else {
        ConstAnalysis::empty(f, threshold)
    };
    let mut changed = false;
    while let Some(op) = worklist.pop_front() {
        queued.insert(op, false);
        if !f.is_linked(op) {
            continue;
        }
        let tag = f.op(op).tag();
        for p in &ordered {
            if p.root().is_some_and(|roots| !roots.contains(&tag)) {
                continue;
            }
            let mut rw = Rewriter::new(f);
            let mut cx = PatternCx {
                analysis: &analysis,
                pass,
                threshold,
            };
            if !p.rewrite(&mut rw, op, &mut cx) {
                continue;
            }
            *pass.pattern_hits.entry(p.name()).or_default() += 1;
            let events = rw.take_events();
            changed = true;
            let touched: Vec<OpId> = events
                .iter()
                .filter_map(|e| match *e {
                    Event::Created(o) | Event::Modified(o) => Some(o),
                    Event::Erased(_) | Event::Replaced { .. } => None,
                })
                .collect();
            let mut touch = |o: OpId, worklist: &mut VecDeque<OpId>| {
                if f.is_linked(o) && !queued.get(&o).copied().unwrap_or(false) {
                    queued.insert(o, true);
                    worklist.push_back(o);
                }
            };
            for e in events {
                let o = match e {
                    Event::Created(o) | Event::Modified(o) => o,
                    Event::Erased(_) | Event::Replaced { .. } => continue,
                };
                if !f.is_linked(o) {
                    continue;
                }
                touch(o, &mut worklist);
                let data = f.op(o);
                for &v in data.operands() {
                    if let Some(p) = f.producer(v) {
                        touch(p, &mut worklist);
                    }
                }
                if let Some(r) = data.result() {
                    for u in f.users(r).collect::<Vec<_>>() {
                        touch(u, &mut worklist);
                    }
                }
            }
            if with_analysis {
                analysis.update(f, &touched);
            }
            break;
        }
    }
    changed
}
