//! The greedy driver: fixpoint, iteration bound, erased ops on the worklist, failure reasons,
//! and the analysis hook.

use super::*;
use crate::diag::Span;
use crate::ir::builder::FuncBuilder;
use crate::ir::{ElemType, Function, OpId, OpKind, OpTag, TensorType};
use std::sync::{Mutex, Once};

fn t() -> TensorType {
    TensorType::fixed(&[4], ElemType::F32)
}

/// `%x` through `kinds` in a chain, then `return`.
fn chain(kinds: &[OpKind]) -> Function {
    let mut f = Function::new("f", Span::default());
    let mut b = FuncBuilder::new(&mut f);
    let mut v = b.add_arg(t(), Some("x".into()), Span::default());
    for k in kinds {
        v = b.push(k.clone(), &[v], t(), None, Span::default());
    }
    b.push_return(&[v], Span::default());
    f
}

fn mnemonics(f: &Function) -> Vec<&'static str> {
    f.ops().map(|o| f.kind(o).mnemonic()).collect()
}

/// Counts what the driver tells the context.
#[derive(Default)]
struct Cx {
    calls: Vec<&'static str>,
    updates: Vec<Vec<OpId>>,
}

impl PatternContext for Cx {
    fn update(&mut self, _: &Function, touched: &[OpId]) {
        self.updates.push(touched.to_vec());
    }
}

struct RemoveIdentity;

impl Pattern<Cx> for RemoveIdentity {
    fn name(&self) -> &'static str {
        "test-remove-identity"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Identity])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut Cx) -> MatchResult {
        cx.calls.push(self.name());
        let x = rw.func().op(op).operands()[0];
        rw.replace_op(op, x);
        Ok(())
    }
}

/// Turns `from` into `to` in place; two of them in opposite directions never converge.
struct Flip(OpTag, OpKind, &'static str);

impl Pattern<Cx> for Flip {
    fn name(&self) -> &'static str {
        self.2
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        None
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, _: &mut Cx) -> MatchResult {
        ensure(rw.func().op(op).tag() == self.0, "another kind")?;
        rw.set_kind(op, self.1.clone());
        Ok(())
    }
}

#[test]
fn reaches_a_fixpoint_and_reports_each_rewrite() {
    let mut f = chain(&[OpKind::Identity, OpKind::Relu, OpKind::Identity]);
    let mut cx = Cx::default();
    let out = apply_patterns_greedily(
        &mut f,
        &[&RemoveIdentity],
        &mut cx,
        &GreedyConfig::default(),
    );
    assert!(out.changed && out.converged);
    assert_eq!(out.applied.get("test-remove-identity"), Some(&2));
    assert_eq!(mnemonics(&f), ["nn.relu", "return"]);
    // Each rewrite told the context which ops it touched: the users whose operand changed.
    assert_eq!(cx.updates.len(), 2);
    assert!(cx.updates.iter().all(|u| u.len() == 1));
    // A second run finds nothing.
    let again = apply_patterns_greedily(
        &mut f,
        &[&RemoveIdentity],
        &mut cx,
        &GreedyConfig::default(),
    );
    assert_eq!(
        again,
        GreedyOutcome {
            changed: false,
            converged: true,
            applied: Default::default()
        }
    );
}

#[test]
fn the_bound_stops_a_pattern_pair_that_never_converges() {
    let mut f = chain(&[OpKind::Relu]);
    let there = Flip(OpTag::Relu, OpKind::Tanh, "relu-to-tanh");
    let back = Flip(OpTag::Tanh, OpKind::Relu, "tanh-to-relu");
    let config = GreedyConfig { max_rewrites: 10 };
    let out = apply_patterns_greedily(&mut f, &[&there, &back], &mut Cx::default(), &config);
    assert!(out.changed);
    assert!(!out.converged);
    assert_eq!(out.applied.values().sum::<u64>(), 10);
}

/// Erases the unused op right after its root.
struct EraseNext;

impl Pattern<Cx> for EraseNext {
    fn name(&self) -> &'static str {
        "test-erase-next"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Relu])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut Cx) -> MatchResult {
        cx.calls.push(self.name());
        let next = rw.func().next_op(op).expect("a return follows");
        ensure(
            rw.func().op(next).tag() == OpTag::Sigmoid,
            "no sigmoid next",
        )?;
        rw.erase_op(next);
        Ok(())
    }
}

/// Records every sigmoid it is offered.
struct SeeSigmoid;

impl Pattern<Cx> for SeeSigmoid {
    fn name(&self) -> &'static str {
        "test-see-sigmoid"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Sigmoid])
    }
    fn rewrite(&self, _: &mut Rewriter, _: OpId, cx: &mut Cx) -> MatchResult {
        cx.calls.push(self.name());
        Err(MatchFailure("only looks"))
    }
}

#[test]
fn erased_ops_on_the_worklist_are_skipped() {
    // relu %x; sigmoid %x (unused); return relu. The relu comes first on the worklist and
    // erases the sigmoid, which is still queued behind it.
    let mut f = Function::new("f", Span::default());
    let mut b = FuncBuilder::new(&mut f);
    let x = b.add_arg(t(), None, Span::default());
    let r = b.push(OpKind::Relu, &[x], t(), None, Span::default());
    b.push(OpKind::Sigmoid, &[x], t(), None, Span::default());
    b.push_return(&[r], Span::default());
    let mut cx = Cx::default();
    let out = apply_patterns_greedily(
        &mut f,
        &[&EraseNext, &SeeSigmoid],
        &mut cx,
        &GreedyConfig::default(),
    );
    assert!(out.changed && out.converged);
    assert_eq!(mnemonics(&f), ["nn.relu", "return"]);
    assert_eq!(cx.calls, ["test-erase-next"]);
}

/// Captures the `log` records of the targets that start with `test-`.
struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.target().starts_with("test-")
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            self.0
                .lock()
                .unwrap()
                .push(format!("[{}] {}", r.target(), r.args()));
        }
    }
    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

#[test]
fn a_failure_reason_is_traced() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        log::set_logger(&CAPTURE).expect("no other logger in unit tests");
        log::set_max_level(log::LevelFilter::Trace);
    });
    let mut f = chain(&[OpKind::Sigmoid]);
    let sigmoid = f.ops().next().unwrap();
    let out = apply_patterns_greedily(
        &mut f,
        &[&SeeSigmoid],
        &mut Cx::default(),
        &GreedyConfig::default(),
    );
    assert!(!out.changed && out.converged);
    let lines = CAPTURE.0.lock().unwrap();
    let expected =
        format!("[test-see-sigmoid] pattern test-see-sigmoid failed on {sigmoid}: only looks");
    assert!(lines.contains(&expected), "{lines:?}");
}
