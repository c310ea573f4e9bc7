//! `fuse-silu`: `x ⊙ sigmoid(x)` → `silu(x)`, the form ONNX exporters write SiLU in (ONNX has
//! no such operator), so that a SwiGLU block is one activation between its gate and its product
//! (`prune-neurons`' `glu-neuron-elimination` matches it there). Preconditions: none.
//! Idempotent: no such product is left.

use crate::ir::{OpId, OpKind, OpTag};
use crate::passes::PassContext;
use crate::rewrite::{ensure, MatchResult, Pattern, Rewriter};

/// `mul(x, sigmoid(x))` (either order, no broadcast) → `silu(x)`; the sigmoid goes unless
/// something else reads it.
///
/// Exact: `nn.silu` is defined as `x · sigmoid(x)` (`OpKind::eval_unary`, the one definition
/// the interpreter and the analysis share).
pub struct FuseSilu;

impl Pattern<PassContext> for FuseSilu {
    fn name(&self) -> &'static str {
        "fuse-silu"
    }

    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Mul])
    }

    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PassContext) -> MatchResult {
        let f = rw.func();
        let ins = f.op(op).operands();
        let sigmoid_of = |s| match f.producer(s) {
            Some(p) if matches!(f.kind(p), OpKind::Sigmoid) => Some(f.op(p).operands()[0]),
            _ => None,
        };
        let (x, s) = if sigmoid_of(ins[1]) == Some(ins[0]) {
            (ins[0], ins[1])
        } else if sigmoid_of(ins[0]) == Some(ins[1]) {
            (ins[1], ins[0])
        } else {
            return Err(crate::rewrite::MatchFailure("not x times sigmoid(x)"));
        };
        let r = f.op(op).result().expect("a mul has a result");
        let ty = f.ty(r).clone();
        ensure(f.ty(x) == &ty, "the product broadcasts")?;
        let silu = rw.insert_before(op, OpKind::Silu, &[x], ty);
        rw.copy_name(r, silu);
        rw.replace_op(op, silu);
        // A sigmoid read by nothing else goes too, so `x` is read by the silu alone (as a
        // gated MLP's gate must be for `glu-neuron-elimination`).
        if rw.func().uses(s).is_empty() {
            let p = rw.func().producer(s).expect("checked above");
            rw.erase_op(p);
        }
        cx.count("silus fused", 1);
        Ok(())
    }
}
