//! The lowering as the CLI uses it, in one place for both builds: with the `mlir` feature it
//! calls [`crate::lower`]; without it, each entry point reports that the feature is missing,
//! so the rest of the CLI layer compiles and behaves the same either way.

use super::cache::FileCache;
use super::{usage, Exit};
use crate::diag::Diagnostic;
use crate::ir::Module;
use ndarray::ArrayD;

/// The CPU to compile for, as `--target-cpu` and `--target-features` name it (`llc -mcpu` and
/// `-mattr` style); neither: the host. The commands that compile flatten it into their flags.
#[derive(clap::Args, Clone, Debug, Default, PartialEq, Eq)]
pub struct TargetSpec {
    /// LLVM's CPU name (haswell, znver4, x86-64-v3, ...): the code, and its tiles, are for it.
    #[arg(long = "target-cpu", value_name = "CPU")]
    pub cpu: Option<String>,
    /// LLVM features on top of the CPU's, e.g. "+avx2,-avx512f".
    #[arg(
        long = "target-features",
        value_name = "FEATURES",
        allow_hyphen_values = true
    )]
    pub features: Option<String>,
}

/// The target `spec` names, described for the user (CPU, ISA, vector width, registers, caches);
/// an unknown CPU or feature is a usage error. Commands call it before loading a model.
#[cfg(feature = "mlir")]
pub fn check_target(spec: &TargetSpec) -> Result<String, Exit> {
    resolve(spec).map(|t| t.to_string()).map_err(|e| usage(&e))
}

/// The target `spec` names; an error names the unknown CPU or feature.
#[cfg(feature = "mlir")]
pub fn resolve(spec: &TargetSpec) -> Result<crate::lower::Target, String> {
    crate::lower::Target::resolve(spec.cpu.as_deref(), spec.features.as_deref())
}

/// Without the `mlir` feature nothing is compiled: the flags are a usage error, the host is
/// described as such.
#[cfg(not(feature = "mlir"))]
pub fn check_target(spec: &TargetSpec) -> Result<String, Exit> {
    if *spec != TargetSpec::default() {
        return Err(usage(
            "this nnopt was built without the `mlir` feature; --target-cpu and --target-features are not available",
        ));
    }
    Ok("none (built without the `mlir` feature)".to_string())
}

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

/// The MLIR text of `m` at `stage` (`pipeline` and `threads` as `lower::emit_text` takes them)
/// for `target` (checked by [`check_target`] first).
#[cfg(feature = "mlir")]
pub fn emit_mlir(
    m: &Module,
    stage: EmitStage,
    pipeline: Option<&str>,
    threads: u64,
    target: &TargetSpec,
) -> Result<String, Vec<Diagnostic>> {
    let target = resolve(target).map_err(|e| vec![Diagnostic::error(e)])?;
    let stage = match stage {
        EmitStage::Mlir => crate::lower::Emit::Mlir,
        EmitStage::Transform => crate::lower::Emit::Transform,
        EmitStage::Llvm => crate::lower::Emit::Llvm,
    };
    crate::lower::emit_text(m, stage, pipeline, threads, &target)
}

/// Without the `mlir` feature, `--emit` is an error at the module.
#[cfg(not(feature = "mlir"))]
pub fn emit_mlir(
    m: &Module,
    _: EmitStage,
    _: Option<&str>,
    _: u64,
    _: &TargetSpec,
) -> Result<String, Vec<Diagnostic>> {
    Err(vec![Diagnostic::error(
        "this nnopt was built without the `mlir` feature; --emit is not available",
    )
    .at(m.span)])
}

/// Compiles `m` for `target` (or takes its code from `cache`) and runs its function `func` on
/// `inputs`.
#[cfg(feature = "mlir")]
pub fn run_compiled(
    m: &Module,
    func: &str,
    inputs: &[ArrayD<f32>],
    pipeline: Option<&str>,
    threads: u64,
    cache: Option<&FileCache>,
    target: &TargetSpec,
) -> Result<Vec<ArrayD<f32>>, Vec<Diagnostic>> {
    let target = resolve(target).map_err(|e| vec![Diagnostic::error(e)])?;
    let o = crate::lower::CompileOptions {
        pipeline,
        threads,
        target: &target,
        cache: cache.map(|c| c as &dyn crate::lower::ObjectCache),
    };
    crate::lower::compile_and_run(m, func, inputs, &o)
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
    _: &TargetSpec,
) -> Result<Vec<ArrayD<f32>>, Vec<Diagnostic>> {
    Err(vec![Diagnostic::error(
        "this nnopt was built without the `mlir` feature; pass --interp",
    )])
}
