//! nnopt: an MLIR-style compiler that removes the neurons of a network that provably do not
//! affect its output, and compensates so that the output stays exactly the same.
//!
//! Modules form layers, bottom to top; each uses only the layers below it (`tests/layers.rs`
//! checks it, `docs/architecture.md` draws it):
//! 1. [`diag`] (diagnostics as values) and [`atomic`] (files written whole or not at all);
//! 2. [`ir`]: the in-memory IR, its types and type inference;
//! 3. [`weights`] (safetensors files), [`verify`], [`syntax`] (lexer, LALRPOP grammar, AST,
//!    AST→IR reader, printer) and [`interp`] (the reference interpreter);
//! 4. [`rewrite`]: the pattern trait, the rewriter and the greedy driver;
//! 5. [`passes`] and [`onnx`] (import and export);
//! 6. `lower`: lowering to MLIR and the JIT (only with the `mlir` feature);
//! 7. `tool`: the command-line layer (the opt pipeline, `run`, `bench`, reports);
//! 8. `src/main.rs`: the clap definitions, dispatching to `tool`.
//!
//! Data flows text (or ONNX) → [`syntax`] (or [`onnx`]) → [`ir`] → [`verify`] → [`passes`] →
//! [`syntax::printer`], [`interp`] or `lower`.

// Diagnostics travel by value on the (cold) error path, as values rendered once at the edge;
// boxing them everywhere would only add noise.
#![allow(clippy::result_large_err)]

pub mod atomic;
pub mod diag;
pub mod interp;
pub mod ir;
#[cfg(feature = "mlir")]
pub mod lower;
pub mod onnx;
#[path = "../passes/mod.rs"]
pub mod passes;
pub mod rewrite;
pub mod syntax;
pub mod tool;
pub mod verify;
pub mod weights;
