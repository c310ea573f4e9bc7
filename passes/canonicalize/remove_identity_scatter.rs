//! `remove-identity-scatter`: forwards the operand of a scatter that keeps every position.
//! Preconditions: none. Idempotent: no such scatter is left.

use crate::ir::{OpId, OpKind, OpTag};
use crate::passes::PassContext;
use crate::rewrite::{ensure, MatchFailure, MatchResult, Pattern, Rewriter};

/// `nn.scatter %x {indices = [0, 1, …, n-1], size = n}` → `%x`.
///
/// Exact: every position of the result is the element of `%x` at the same position; the fill
/// is never used.
pub struct RemoveIdentityScatter;

impl Pattern<PassContext> for RemoveIdentityScatter {
    fn name(&self) -> &'static str {
        "remove-identity-scatter"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Scatter])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, _: &mut PassContext) -> MatchResult {
        let f = rw.func();
        let OpKind::Scatter { indices, size, .. } = f.kind(op) else {
            return Err(MatchFailure("not a scatter"));
        };
        let identity = indices.len() as u64 == *size
            && indices.iter().enumerate().all(|(i, &k)| i as u64 == k);
        ensure(identity, "the indices are not 0, 1, ..., size-1")?;
        let x = f.op(op).operands()[0];
        rw.replace_op(op, x);
        Ok(())
    }
}
