//! `nnopt run`: executes one function of a model on `.npy` inputs, compiled through MLIR or in
//! the reference interpreter, and writes its results as `.npy` files or prints them as text.
//!
//! Inputs bind to arguments in order, or by name (`--input x=x.npy`); a wrong count or shape is
//! reported with the list of the arguments the function takes, before anything is compiled.

use super::cache::FileCache;
use super::format::check_npy_output;
use super::load::{load_model, pick_func};
use super::mlir::{check_target, run_compiled, TargetSpec};
use super::progress::Progress;
use super::{fail, Exit};
use crate::diag::{Diagnostic, SourceMap};
use crate::interp;
use crate::ir::{Dim, ElemType, Function};
use ndarray::ArrayD;
use std::path::PathBuf;

/// What `nnopt run` does.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The model: NNIR text (`-` for stdin) or `.onnx`.
    pub input: PathBuf,
    /// Use the reference interpreter instead of the compiler.
    pub interp: bool,
    /// The MLIR pass pipeline that lowers to LLVM (`None`: the default one).
    pub mlir_pipeline: Option<String>,
    /// The function to run (`None`: the first).
    pub func: Option<String>,
    /// Worker threads for the compiled code.
    pub threads: u64,
    /// Keep compiled code in the user's cache and reuse it (`super::cache`).
    pub cache: bool,
    /// The CPU the compiled code is for.
    pub target: TargetSpec,
    /// How an ONNX model is read (`--dim`).
    pub import: crate::onnx::ImportOptions,
    /// One `.npy` file per argument: `FILE` in order, or `NAME=FILE` for the argument `%NAME`.
    pub inputs: Vec<String>,
    /// One `.npy` file per result, in order; `-` prints the result as text.
    pub outputs: Vec<PathBuf>,
}

/// Runs `nnopt run` with `o`; diagnostics and errors go to stderr.
pub fn run(o: &RunOptions) -> Result<(), Exit> {
    // Checked before loading and compiling, which can take seconds on a large model.
    for p in &o.outputs {
        check_npy_output(p)?;
    }
    if !o.interp {
        check_target(&o.target)?;
    }
    let mut sources = SourceMap::new();
    let module = load_model(&o.input, &o.import, &mut sources)?;
    let func = pick_func(&module, o.func.as_deref(), &o.input)?;
    if o.outputs.len() != func.result_types().len() {
        return Err(fail(&format!(
            "@{} has {} results but {} --output files are given",
            func.name,
            func.result_types().len(),
            o.outputs.len()
        )));
    }
    let inputs = bind_inputs(func, &o.inputs)?
        .iter()
        .zip(func.args())
        .enumerate()
        .map(|(i, (p, &a))| {
            let (x, ints) =
                interp::read_npy_typed(p).map_err(|e| fail(&format!("{}: {e}", p.display())))?;
            let ids = func.ty(a).elem == ElemType::I64;
            if ids != ints {
                let held = if ints { "int64" } else { "float" };
                return Err(input_error(
                    func,
                    &format!(
                        "{} holds {held} values but {} has type {}",
                        p.display(),
                        arg_name(func, i),
                        func.ty(a)
                    ),
                ));
            }
            Ok(x)
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_shapes(func, &inputs)?;
    let results = if o.interp {
        interp::run(func, &inputs).map_err(|e| {
            let d = Diagnostic::error(e.message.clone());
            let d = match e.op {
                Some(op) => d.at(func.span(op)),
                None => d,
            };
            sources.emit_to_stderr(&[d]);
            Exit(1)
        })?
    } else {
        let progress = Progress::start(format!("compiling and running @{}", func.name));
        let cache = o.cache.then(FileCache::user).flatten();
        let results = run_compiled(
            &module,
            &func.name,
            &inputs,
            o.mlir_pipeline.as_deref(),
            o.threads,
            cache.as_ref(),
            &o.target,
        );
        drop(progress);
        results.map_err(|d| {
            sources.emit_to_stderr(&d);
            Exit(1)
        })?
    };
    for (r, p) in results.iter().zip(&o.outputs) {
        if p.as_os_str() == "-" {
            // ndarray's Display is numpy's layout: nested brackets, rows on their own lines,
            // long axes summarised with `...`.
            println!("{r}");
        } else {
            interp::write_npy(p, r).map_err(|e| fail(&format!("{}: {e}", p.display())))?;
        }
    }
    Ok(())
}

/// The `.npy` file for each argument of `func`, in order: `NAME=FILE` values go to the argument
/// named `%NAME`, the others fill the remaining arguments in order. A value whose `NAME` is no
/// argument's name is a plain path (paths may contain `=`).
fn bind_inputs(func: &Function, given: &[String]) -> Result<Vec<PathBuf>, Exit> {
    let args = func.args();
    let name_of = |i: usize| func.value(args[i]).name.as_deref();
    let mut bound: Vec<Option<PathBuf>> = vec![None; args.len()];
    let mut positional = Vec::new();
    for g in given {
        let named = g.split_once('=').and_then(|(name, file)| {
            let name = name.strip_prefix('%').unwrap_or(name);
            (0..args.len())
                .find(|&i| name_of(i) == Some(name))
                .map(|i| (i, file))
        });
        match named {
            Some((i, _)) if bound[i].is_some() => {
                return Err(input_error(
                    func,
                    &format!("%{} is given twice", name_of(i).unwrap_or_default()),
                ))
            }
            Some((i, file)) => bound[i] = Some(PathBuf::from(file)),
            None => positional.push(PathBuf::from(g)),
        }
    }
    let free = bound.iter().filter(|b| b.is_none()).count();
    if positional.len() != free {
        return Err(input_error(
            func,
            &format!(
                "@{} takes {} arguments but {} --input files are given",
                func.name,
                args.len(),
                given.len()
            ),
        ));
    }
    let mut positional = positional.into_iter();
    Ok(bound
        .into_iter()
        .map(|b| b.or_else(|| positional.next()))
        .collect::<Option<Vec<_>>>()
        .expect("invariant: as many positional inputs as free arguments"))
}

/// Fails unless every input has its argument's rank and static sizes (dynamic sizes take any
/// size, as both the interpreter and the compiled code do).
fn check_shapes(func: &Function, inputs: &[ArrayD<f32>]) -> Result<(), Exit> {
    for (i, (x, &arg)) in inputs.iter().zip(func.args()).enumerate() {
        let ty = &func.value(arg).ty;
        let fits = x.ndim() == ty.dims.len()
            && x.shape().iter().zip(&ty.dims).all(|(&n, d)| match d {
                Dim::Static(s) => n as u64 == *s,
                Dim::Dynamic => true,
            });
        if !fits {
            return Err(input_error(
                func,
                &format!(
                    "the input for {} has shape {:?} but the argument has type {ty}",
                    arg_name(func, i),
                    x.shape()
                ),
            ));
        }
    }
    Ok(())
}

/// Reports `message` with the arguments `func` takes, one per line (name, type, and the
/// `.npy` element types nnopt reads for it).
fn input_error(func: &Function, message: &str) -> Exit {
    let args: Vec<String> = func
        .args()
        .iter()
        .enumerate()
        .map(|(i, &a)| {
            let ty = &func.value(a).ty;
            let dtypes = match ty.elem {
                ElemType::I64 => "int64",
                _ => "float32 or float64",
            };
            format!("\n  {}: {ty} (.npy of {dtypes})", arg_name(func, i))
        })
        .collect();
    fail(&format!(
        "{message}\nthe arguments of @{}, in order (--input FILE, or --input NAME=FILE):{}",
        func.name,
        args.concat()
    ))
}

/// `%name` of argument `i`, or `#i` for an unnamed one.
fn arg_name(func: &Function, i: usize) -> String {
    match &func.value(func.args()[i]).name {
        Some(n) => format!("%{n}"),
        None => format!("#{i}"),
    }
}
