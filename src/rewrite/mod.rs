//! The rewrite infrastructure: how passes change NNIR.
//!
//! A layer above `ir` and below `passes`, in the spirit of MLIR's `PatternRewriter` and
//! `GreedyPatternRewriteDriver`:
//! - [`Rewriter`] (`rewriter.rs`): the only way a pass mutates a function; it records every
//!   change as an [`Event`];
//! - [`Pattern`] (`pattern.rs`): a local rewrite rooted at one op, which either applies or says
//!   why not ([`MatchFailure`]);
//! - [`apply_patterns_greedily`] (`greedy.rs`): applies a set of patterns to a fixpoint, with an
//!   analysis (or any other derived state) plugged in through [`PatternContext`];
//! - `trace.rs`: the `log` tracing of the driver and the patterns (`--debug-only`, `RUST_LOG`).
//!
//! Nothing here knows a particular pattern or analysis; `docs/passes.md` shows how to add one.

pub mod greedy;
pub mod pattern;
pub mod rewriter;
pub mod trace;

pub use greedy::{apply_patterns_greedily, GreedyConfig, GreedyOutcome, PatternContext};
pub use pattern::{ensure, MatchFailure, MatchResult, Pattern};
pub use rewriter::{Event, Rewriter};

#[cfg(test)]
mod tests;
