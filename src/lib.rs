//! nnopt: an MLIR-style compiler that removes the neurons of a network that provably do not
//! affect its output, and compensates so that the output stays exactly the same.
//!
//! Data flows text → [`syntax`] (logos lexer, LALRPOP grammar, AST, AST→IR builder) → [`ir`] →
//! [`verify`] → passes ([`rewrite`] infrastructure, [`passes`] patterns) → [`syntax::printer`],
//! [`interp`] (reference interpreter) or `lower` (MLIR). See `docs/architecture.md`.

// Diagnostics travel by value on the (cold) error path, as values rendered once at the edge;
// boxing them everywhere would only add noise.
#![allow(clippy::result_large_err)]

pub mod atomic;
pub mod diag;
pub mod driver;
pub mod interp;
pub mod ir;
#[cfg(feature = "mlir")]
pub mod lower;
pub mod onnx;
#[path = "../passes/mod.rs"]
pub mod passes;
pub mod syntax;
pub mod tool;
pub mod verify;
pub mod weights;
