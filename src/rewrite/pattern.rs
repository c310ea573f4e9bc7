//! The `Pattern` trait: one local rewrite, rooted at an op.
//!
//! A pattern either rewrites the op through the [`Rewriter`] and returns `Ok(())`, or leaves
//! the IR untouched and returns a [`MatchFailure`] that says why (MLIR's `notifyMatchFailure`);
//! the greedy driver traces both (`--debug-only=NAME`).

use super::Rewriter;
use crate::ir::{OpId, OpTag};

/// Why a pattern did not apply: a short phrase such as "the weights are not constant".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatchFailure(pub &'static str);

impl std::fmt::Display for MatchFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// What [`Pattern::rewrite`] returns.
pub type MatchResult = Result<(), MatchFailure>;

/// `Ok(())` when `condition` holds, else the failure `reason` (for `ensure(..., "...")?`).
pub fn ensure(condition: bool, reason: &'static str) -> MatchResult {
    if condition {
        Ok(())
    } else {
        Err(MatchFailure(reason))
    }
}

/// A rewrite pattern over the context `C` its pass provides (statistics, an analysis).
///
/// Contract: on `Err` the IR is unchanged (the pattern may still record a remark in `cx`); on
/// `Ok` every change went through `rw`, and the function computes the same values as before.
pub trait Pattern<C> {
    /// The name in statistics, traces and `--debug-only`.
    fn name(&self) -> &'static str;
    /// The ops this pattern matches; `None` matches every op.
    fn root(&self) -> Option<&'static [OpTag]>;
    /// Patterns with a higher benefit are tried first on an op.
    fn benefit(&self) -> u32 {
        1
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut C) -> MatchResult;
}
