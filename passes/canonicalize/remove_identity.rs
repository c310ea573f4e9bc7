//! `remove-identity`: forwards the operand of `nn.identity` to its users (the identity goes).
//! Preconditions: none. Idempotent: no identity is left.

use crate::ir::{OpId, OpTag};
use crate::passes::PassContext;
use crate::rewrite::{MatchResult, Pattern, Rewriter};

/// `%y = nn.identity %x` → uses of `%y` use `%x`.
///
/// Exact: an identity computes its operand.
pub struct RemoveIdentity;

impl Pattern<PassContext> for RemoveIdentity {
    fn name(&self) -> &'static str {
        "remove-identity"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Identity])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, _: &mut PassContext) -> MatchResult {
        let x = rw.func().op(op).operands()[0];
        rw.replace_op(op, x);
        Ok(())
    }
}
