//! `nnopt run`: executes one function of a model on `.npy` inputs, compiled through MLIR or in
//! the reference interpreter, and writes its results as `.npy` files.

use super::format::check_npy_output;
use super::load::{load_model, pick_func};
use super::mlir::run_compiled;
use super::{fail, Exit};
use crate::diag::{Diagnostic, SourceMap};
use crate::interp;
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
    /// One `.npy` file per argument, in order.
    pub inputs: Vec<PathBuf>,
    /// One `.npy` file per result, in order.
    pub outputs: Vec<PathBuf>,
}

/// Runs `nnopt run` with `o`; diagnostics and errors go to stderr.
pub fn run(o: &RunOptions) -> Result<(), Exit> {
    // Checked before loading and compiling, which can take seconds on a large model.
    for p in &o.outputs {
        check_npy_output(p)?;
    }
    let mut sources = SourceMap::new();
    let module = load_model(&o.input, &mut sources)?;
    let func = pick_func(&module, o.func.as_deref(), &o.input)?;
    if o.inputs.len() != func.args().len() {
        return Err(fail(&format!(
            "@{} takes {} arguments but {} --input files are given",
            func.name,
            func.args().len(),
            o.inputs.len()
        )));
    }
    if o.outputs.len() != func.result_types().len() {
        return Err(fail(&format!(
            "@{} has {} results but {} --output files are given",
            func.name,
            func.result_types().len(),
            o.outputs.len()
        )));
    }
    let inputs = o
        .inputs
        .iter()
        .map(|p| interp::read_npy(p).map_err(|e| fail(&format!("{}: {e}", p.display()))))
        .collect::<Result<Vec<_>, _>>()?;
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
        run_compiled(
            &module,
            &func.name,
            &inputs,
            o.mlir_pipeline.as_deref(),
            o.threads,
        )
        .map_err(|d| {
            sources.emit_to_stderr(&d);
            Exit(1)
        })?
    };
    for (r, p) in results.iter().zip(&o.outputs) {
        interp::write_npy(p, r).map_err(|e| fail(&format!("{}: {e}", p.display())))?;
    }
    Ok(())
}
