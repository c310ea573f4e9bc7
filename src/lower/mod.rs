//! Lowering NNIR to MLIR (linalg on tensors) through melior, behind the `mlir` cargo feature,
//! and compiling the result with MLIR's passes and LLVM, into code loaded into the process or
//! an ahead-of-time artifact.
//!
//! [`lower_module`] turns every function of an NNIR module into one `func.func` of an MLIR module
//! built op by op with melior's `OperationBuilder` (`mlir_ops.rs`), never from pasted text. The
//! calling convention is the memref ABI of `../shared/mlir-codegen` (section 2; `abi.rs`,
//! `docs/lowering.md`). Layers the transform schedule covers (`schedule.rs`) are marked with
//! `nnopt.*` attributes (`marks.rs`); [`jit`] applies the schedule, runs the pass pipeline,
//! has `object.rs` compile the result to an object file and `loader.rs` link it into the
//! process, and calls the compiled code; `cached.rs` keys the run cache and rebuilds a hit
//! without lowering; `aot.rs` makes `nnopt compile`'s artifact.
//!
//! The files, by concern: `entry.rs` (public entry points), `abi.rs` and `boundary.rs`
//! (calling convention), `diag_capture.rs` (MLIR's diagnostics as text),
//! `state.rs` (the per-function state and the op dispatch), `generic.rs` (shared
//! `linalg.generic` shapes), `marks.rs` and `epilogue.rs` (what the schedule sees), `view.rs`
//! (results computed in another form), and one file per op family: `dense.rs`, `conv.rs`,
//! `flat_conv.rs`, `pool.rs`, `norm.rs`, `elementwise.rs`, `shape.rs`, `embedding.rs`.
//!
//! What it does not do: f16/bf16 element types, dynamic spatial or reduced dimensions, and a
//! dynamic concat/gather/scatter axis are reported as diagnostics naming the op; see
//! `docs/lowering.md`.

mod abi;
mod aot;
mod approx;
mod async_runtime;
mod boundary;
mod cached;
mod concat;
mod conv;
mod dense;
mod diag_capture;
mod elementwise;
mod embedding;
mod entry;
mod epilogue;
mod flat_conv;
mod generic;
mod jit;
mod loader;
mod marks;
mod mlir_ops;
mod norm;
mod object;
mod outline;
mod packing;
mod parallel;
mod pool;
mod prefetch;
mod printing;
mod schedule;
mod shape;
mod specialize;
mod state;
mod target;
mod view;
mod window;

// The public API: lowering and printing (`--emit`), compiling and running (`nnopt run`,
// `nnopt bench`), and the types those hand out.
pub use abi::{DimVal, Lowered, Signature, WeightArg};
pub use aot::{c_ident, compile_artifact, Artifact};
pub use cached::ObjectCache;
pub use entry::{
    compile, compile_and_run, context, emit_text, lower_module, print, CompileOptions, Emit,
};
pub use jit::Jit;
pub use packing::Packing;
pub use schedule::Layer;
pub use target::{Isa, Target};

#[cfg(test)]
mod parallel_tests;
#[cfg(test)]
mod partition_tests;
#[cfg(test)]
mod tests;
