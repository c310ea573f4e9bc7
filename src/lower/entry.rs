//! The lowering's public entry points: the MLIR context, [`lower_module`], and what the CLI
//! builds on it ([`emit_text`] for `--emit`, [`compile`] and [`compile_and_run`] for
//! `nnopt run`/`bench`).
//!
//! Unsupported ops and types come back as diagnostics at the op; a module MLIR's verifier
//! rejects is an internal error carrying MLIR's own diagnostics.

use super::abi::{memref_of, memref_type, Lowered, Signature};
use super::cached;
use super::diag_capture::DiagCapture;
use super::jit;
use super::mlir_ops::{element_type, id, BuildError, Emitter, DYNAMIC};
use super::schedule::{Layer, Tiles};
use super::specialize;
use super::state::{Fail, Lower};
use super::target::Target;
use crate::diag::Diagnostic;
use crate::ir::{self, Function};
use melior::dialect::DialectRegistry;
use melior::ir::attribute::{StringAttribute, TypeAttribute};
use melior::ir::operation::{OperationBuilder, OperationLike};
use melior::ir::r#type::FunctionType;
use melior::ir::{
    Attribute, Block, BlockLike, Location, Module as MlirModule, Region, RegionLike, Type,
};
use melior::utility::{register_all_dialects, register_all_llvm_translations, register_all_passes};
use melior::Context;
use std::collections::{HashMap, HashSet};

/// A context with every upstream dialect (linalg, tensor, arith, math, func, transform, ...)
/// loaded, every upstream pass registered and the LLVM translations the JIT needs.
pub fn context() -> Context {
    let registry = DialectRegistry::new();
    register_all_dialects(&registry);
    let context = Context::new();
    context.append_dialect_registry(&registry);
    context.load_all_available_dialects();
    // MLIR's pass registry is one global map: registering from two threads at once (tests
    // compile in parallel) races on it, so it happens once per process.
    static PASSES: std::sync::Once = std::sync::Once::new();
    PASSES.call_once(register_all_passes);
    super::printing::assume_verified();
    register_all_llvm_translations(&context);
    context
}

/// Lowers every function of `m`. Unsupported ops and types are diagnostics at the op; a module
/// MLIR's verifier rejects is an internal error carrying MLIR's diagnostics.
/// The module is lowered for `target`: its register tiles fix the packed weights' layout.
pub fn lower_module<'c>(
    cx: &'c Context,
    m: &ir::Module,
    target: &Target,
) -> Result<Lowered<'c>, Vec<Diagnostic>> {
    let tiles = Tiles::for_target(target);
    let module = MlirModule::new(Location::unknown(cx));
    let mut signatures = Vec::new();
    let mut diags = Vec::new();
    let mut layers = Vec::new();
    for f in &m.funcs {
        match lower_function(cx, f, &mut layers, tiles) {
            Ok((op, sig)) => {
                module.body().append_operation(op);
                signatures.push(sig);
            }
            Err(d) => diags.extend(d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let capture = DiagCapture::new(cx);
    if !module.as_operation().verify() {
        return Err(vec![Diagnostic::error(format!(
            "internal error: the lowered MLIR module does not verify:\n{}",
            capture.take()
        ))
        .at(m.span)]);
    }
    Ok(Lowered {
        module,
        signatures,
        layers,
        target: target.clone(),
    })
}

/// Lowers one function to a `func.func` and its calling convention.
fn lower_function<'c>(
    cx: &'c Context,
    f: &Function,
    layers: &mut Vec<Layer>,
    tiles: Tiles,
) -> Result<(melior::ir::Operation<'c>, Signature), Vec<Diagnostic>> {
    let unknown = Location::unknown(cx);
    let mut inputs = Vec::new();
    let mut arg_types = Vec::new();
    let mut diags = Vec::new();
    for &a in f.args() {
        let ty = f.ty(a).clone();
        let Some(elem) = element_type(cx, ty.elem) else {
            diags.push(
                Diagnostic::error(format!(
                    "argument of type {ty} cannot be lowered to MLIR yet: only f32 and i64 are supported"
                ))
                .at(f.value_span(a)),
            );
            continue;
        };
        let shape: Vec<i64> = ty
            .dims
            .iter()
            .map(|d| d.as_static().map_or(DYNAMIC, |n| n as i64))
            .collect();
        arg_types.push(memref_of(&shape, elem));
        inputs.push(ty);
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let args: Vec<(Type, Location)> = arg_types.iter().map(|&t| (t, unknown)).collect();
    let block = Block::new(&args);
    let result = {
        let mut l = Lower {
            cx,
            f,
            e: Emitter::new(cx, &block, unknown),
            block: &block,
            vals: HashMap::new(),
            dims: HashMap::new(),
            inputs: Vec::new(),
            constraints: Vec::new(),
            weights: Vec::new(),
            outputs: Vec::new(),
            output_types: Vec::new(),
            layers,
            epilogue: HashMap::new(),
            views: HashMap::new(),
            absorbed: HashSet::new(),
            packed: Default::default(),
            strided: Default::default(),
            concats: HashMap::new(),
            tiles,
        };
        l.run().map(|()| {
            (
                l.weights,
                l.outputs,
                l.constraints,
                l.output_types,
                l.block.argument_count(),
            )
        })
    };
    let (weights, outputs, constraints, output_types, _) = match result {
        Ok(r) => r,
        Err(Fail::Unsupported(op, why)) => {
            return Err(vec![Diagnostic::error(format!(
                "'{}' op cannot be lowered to MLIR yet: {why}",
                f.kind(op).mnemonic()
            ))
            .at(f.span(op))])
        }
        Err(Fail::Build(BuildError(msg))) => {
            return Err(vec![Diagnostic::error(format!(
                "internal error while lowering @{}: {msg}",
                f.name
            ))
            .at(f.span)])
        }
    };
    let mut all_types = arg_types;
    for w in &weights {
        let shape: Vec<i64> = w.arg_shape().iter().map(|&n| n as i64).collect();
        all_types.push(memref_type(cx, &shape));
    }
    all_types.extend(output_types);
    let region = Region::new();
    region.append_block(block);
    let fty = FunctionType::new(cx, &all_types, &[]);
    let func = OperationBuilder::new("func.func", unknown)
        .add_attributes(&[
            (id(cx, "sym_name"), StringAttribute::new(cx, &f.name).into()),
            (
                id(cx, "function_type"),
                TypeAttribute::new(fty.into()).into(),
            ),
            (id(cx, "llvm.emit_c_interface"), Attribute::unit(cx)),
        ])
        .add_regions([region])
        .build()
        .map_err(|e| {
            vec![
                Diagnostic::error(format!("internal error: cannot build func.func: {e}"))
                    .at(f.span),
            ]
        })?;
    Ok((
        func,
        Signature {
            name: f.name.clone(),
            inputs,
            id_rows: super::abi::id_rows(f),
            weights,
            outputs,
            constraints,
        },
    ))
}

/// What `--emit` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// linalg on tensors, straight from the lowering (or after `--mlir-pipeline` if given).
    Mlir,
    /// linalg on tensors with the transform schedule of its layers nested, before any pass.
    Transform,
    /// The LLVM dialect, after the whole lowering pipeline (default or `--mlir-pipeline`).
    Llvm,
}

/// Lowers `m` and prints it as MLIR text at the requested stage, scheduled for `threads`
/// worker threads and compiled for `target`.
pub fn emit_text(
    m: &ir::Module,
    emit: Emit,
    pipeline: Option<&str>,
    threads: u64,
    target: &Target,
) -> Result<String, Vec<Diagnostic>> {
    let cx = context();
    let mut lowered = lower_module(&cx, m, target)?;
    let fail = |e: String| vec![Diagnostic::error(e).at(m.span)];
    let scheduled = match (emit, pipeline) {
        (Emit::Transform, _) | (Emit::Llvm, None) => {
            jit::embed_schedule(&cx, &lowered, threads).map_err(fail)?
        }
        _ => false,
    };
    match (emit, pipeline) {
        (_, Some(p)) => jit::run_mlir_pipeline(&cx, &mut lowered.module, p),
        (Emit::Llvm, None) if scheduled => jit::run_scheduled(&cx, &mut lowered, threads),
        (Emit::Llvm, None) => {
            jit::run_mlir_pipeline(&cx, &mut lowered.module, jit::DEFAULT_PIPELINE)
        }
        (Emit::Mlir | Emit::Transform, None) => Ok(()),
    }
    .map_err(fail)?;
    if emit == Emit::Llvm {
        target.mark_functions(&cx, &mut lowered.module);
    }
    Ok(print(&lowered.module))
}

/// How [`compile`] compiles a model for `nnopt run` and `nnopt bench`.
#[derive(Clone, Copy)]
pub struct CompileOptions<'a> {
    /// `--mlir-pipeline`: replaces the transform schedule and the default pipeline.
    pub pipeline: Option<&'a str>,
    /// Worker threads the code runs on.
    pub threads: u64,
    /// The CPU the code is for.
    pub target: &'a Target,
    /// Where compiled code is kept between runs (`cached.rs`), if anywhere.
    pub cache: Option<&'a dyn cached::ObjectCache>,
}

/// Compiles function `func` of `m` for the shapes of `inputs`, the way `nnopt run` and `nnopt
/// bench` do: specialized to those shapes ([`specialized`]), then through the transform
/// schedule and the default pipeline, or through the given pipeline, as `o` says; through the
/// cache when `o` has one. The MLIR context is made here, and only when something is compiled:
/// with all dialects and passes registered it takes a noticeable part of a cached start.
pub fn compile(
    m: &ir::Module,
    func: &str,
    inputs: &[ndarray::ArrayD<f32>],
    o: &CompileOptions,
) -> Result<jit::Jit, Vec<Diagnostic>> {
    let m = &specialized(m, func, inputs)?;
    let key = o
        .cache
        .map(|c| cached::key(m, c, o.pipeline, o.threads, o.target));
    if let (Some(c), Some(k)) = (o.cache, &key) {
        // A hit links the stored object without lowering anything.
        if let Some(jit) = c.get(k).and_then(|e| cached::load(&e, m, o.threads)) {
            return Ok(jit);
        }
    }
    let cx = context();
    let lowered = lower_module(&cx, m, o.target)?;
    let meta = key
        .as_ref()
        .map(|_| cached::encode_signatures(&lowered.signatures));
    let partitions = super::object::codegen_partitions();
    let (jit, objects) = jit::Jit::build(&cx, lowered, o.pipeline, o.threads, partitions)
        .map_err(|e| vec![Diagnostic::error(e).at(m.span)])?;
    if let (Some(c), Some(k), Some(meta)) = (o.cache, &key, meta) {
        c.put(k, &cached::entry(&objects, &meta));
    }
    Ok(jit)
}

/// Compiles `m` and runs function `func` on `inputs` (the `nnopt run` path without `--interp`).
pub fn compile_and_run(
    m: &ir::Module,
    func: &str,
    inputs: &[ndarray::ArrayD<f32>],
    o: &CompileOptions,
) -> Result<Vec<ndarray::ArrayD<f32>>, Vec<Diagnostic>> {
    let jit = compile(m, func, inputs, o)?;
    jit.run(func, inputs)
        .map_err(|e| vec![Diagnostic::error(e)])
}

/// `m` with function `func` specialized to the shapes of `inputs` (`specialize::specialize`): the
/// compiled code is built for the sizes it runs on, so every layer's loop nest is static and
/// can be scheduled.
pub fn specialized(
    m: &ir::Module,
    func: &str,
    inputs: &[ndarray::ArrayD<f32>],
) -> Result<ir::Module, Vec<Diagnostic>> {
    let mut m = m.clone();
    let f = m
        .funcs
        .iter_mut()
        .find(|f| f.name == func)
        .ok_or_else(|| vec![Diagnostic::error(format!("no function @{func}"))])?;
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|x| x.shape().to_vec()).collect();
    let span = f.span;
    specialize::specialize(f, &shapes).map_err(|e| vec![Diagnostic::error(e).at(span)])?;
    Ok(m)
}

/// The MLIR text of a lowered module (generic form off: the custom assembly mlir-opt reads).
pub fn print(module: &MlirModule) -> String {
    format!("{}\n", module.as_operation())
}
