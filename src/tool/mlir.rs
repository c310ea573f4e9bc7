//! The lowering as the CLI uses it, in one place for both builds: with the `mlir` feature it
//! calls [`crate::lower`]; without it, each entry point reports that the feature is missing,
//! so the rest of the CLI layer compiles and behaves the same either way.

use super::cache::FileCache;
use crate::diag::Diagnostic;
use crate::ir::Module;
use ndarray::ArrayD;

/// What `--emit` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmitStage {
    /// linalg on tensors, straight from the lowering.
    Mlir,
    /// The same with the transform-dialect schedule of its layers nested.
    Transform,
    /// The LLVM dialect after the whole lowering pipeline.
    Llvm,
}

/// The MLIR text of `m` at `stage` (`pipeline` and `threads` as `lower::emit_text` takes them).
#[cfg(feature = "mlir")]
pub fn emit_mlir(
    m: &Module,
    stage: EmitStage,
    pipeline: Option<&str>,
    threads: u64,
) -> Result<String, Vec<Diagnostic>> {
    let stage = match stage {
        EmitStage::Mlir => crate::lower::Emit::Mlir,
        EmitStage::Transform => crate::lower::Emit::Transform,
        EmitStage::Llvm => crate::lower::Emit::Llvm,
    };
    crate::lower::emit_text(m, stage, pipeline, threads)
}

/// Without the `mlir` feature, `--emit` is an error at the module.
#[cfg(not(feature = "mlir"))]
pub fn emit_mlir(
    m: &Module,
    _: EmitStage,
    _: Option<&str>,
    _: u64,
) -> Result<String, Vec<Diagnostic>> {
    Err(vec![Diagnostic::error(
        "this nnopt was built without the `mlir` feature; --emit is not available",
    )
    .at(m.span)])
}

/// Compiles `m` (or takes its code from `cache`) and runs its function `func` on `inputs`.
#[cfg(feature = "mlir")]
pub fn run_compiled(
    m: &Module,
    func: &str,
    inputs: &[ArrayD<f32>],
    pipeline: Option<&str>,
    threads: u64,
    cache: Option<&FileCache>,
) -> Result<Vec<ArrayD<f32>>, Vec<Diagnostic>> {
    let cache = cache.map(|c| c as &dyn crate::lower::ObjectCache);
    crate::lower::compile_and_run(m, func, inputs, pipeline, threads, cache)
}

/// Without the `mlir` feature, only the interpreter runs models.
#[cfg(not(feature = "mlir"))]
pub fn run_compiled(
    _: &Module,
    _: &str,
    _: &[ArrayD<f32>],
    _: Option<&str>,
    _: u64,
    _: Option<&FileCache>,
) -> Result<Vec<ArrayD<f32>>, Vec<Diagnostic>> {
    Err(vec![Diagnostic::error(
        "this nnopt was built without the `mlir` feature; pass --interp",
    )])
}
