//! The `nnopt` command line. Holds no logic: it parses flags, calls the library and renders
//! diagnostics once, at the edge.

// Diagnostics travel by value on the (cold) error path; see lib.rs.
#![allow(clippy::result_large_err)]

use clap::{Parser, Subcommand};
use nnopt::diag::{has_errors, Diagnostic, SourceMap};
use nnopt::driver;
use nnopt::ir::{Arity, OpTag};
use nnopt::onnx;
use nnopt::passes;
use nnopt::syntax::printer::print_module;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// nnopt: an MLIR-style compiler for neural networks written in the NNIR text dialect.
///
/// `nnopt in.nnir` reads the file (`-` for stdin), checks it (syntax, SSA, types, each op's
/// verifier rules) and prints it in canonical form. Exit codes: 0 success, 1 input errors
/// (reported with file, line and column), 2 usage errors.
#[derive(Parser, Debug)]
#[command(
    name = "nnopt",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    opt: OptArgs,
}

#[derive(clap::Args, Debug)]
struct OptArgs {
    /// The NNIR file to read; `-` reads stdin.
    input: Option<PathBuf>,
    /// Where to write the result (`-` for stdout). Written atomically: on any error the file
    /// is left untouched. When the input reads its weights from a safetensors file, the
    /// result's weights (unchanged and pruned) go to FILE's name with the extension
    /// `.safetensors`, beside it; on stdout, changed weights are printed inline.
    #[arg(short = 'o', long = "output", value_name = "FILE", default_value = "-")]
    output: PathBuf,
    /// Treat `// -----` lines as separators: each chunk is processed on its own, its
    /// diagnostics are reported, and the outputs are joined with the same separator.
    #[arg(long)]
    split_input_file: bool,
    /// Check the diagnostics against `// expected-error {{message}}` annotations in the input
    /// (also `-warning`, `-note`, `-remark`; `@+N`/`@-N`/`@above`/`@below` for another line).
    /// Exits 0 when every annotation is matched by a diagnostic and vice versa.
    #[arg(long)]
    verify_diagnostics: bool,
    /// Print every operation of the NNIR dialect with its operand count, one per line.
    #[arg(long)]
    list_ops: bool,
    /// Remove neurons that provably do not affect the output (constant or ignored neurons of
    /// linear and ungrouped conv layers, followed through activations, pools, depthwise convs
    /// and flatten; docs/passes.md lists what is covered), compensating in the neighbouring
    /// layers so the output stays the same. Shorthand for
    /// --pass-pipeline="canonicalize,fold-batch-norm,prune-neurons,canonicalize,dce".
    #[arg(long)]
    prune_neurons: bool,
    /// Run these passes in order, e.g. "prune-neurons{zero-threshold=0},dce" (see
    /// --list-passes).
    #[arg(long, value_name = "PIPELINE", conflicts_with = "prune_neurons")]
    pass_pipeline: Option<String>,
    /// List the passes with their options and exit.
    #[arg(long)]
    list_passes: bool,
    /// Do not run the verifier after each pass (it runs by default; a failure there is a bug
    /// in nnopt, reported as an internal error).
    #[arg(long)]
    no_verify_each: bool,
    /// Print the IR to stderr after every pass.
    #[arg(long)]
    print_ir_after_all: bool,
    /// Print the IR to stderr after every pass that changed it.
    #[arg(long)]
    print_ir_after_change: bool,
    /// Print the wall time of each pass to stderr.
    #[arg(long)]
    timing: bool,
    /// Print per-pattern and per-pass statistics to stderr when the pipeline ends.
    #[arg(long)]
    pass_statistics: bool,
    /// After the passes, run the original and the result in the reference interpreter on
    /// random inputs and report the largest absolute and relative differences; exit 1 when
    /// the relative difference exceeds --equivalence-tolerance.
    #[arg(long)]
    check_equivalence: bool,
    /// The relative tolerance of --check-equivalence.
    #[arg(long, value_name = "REL", default_value_t = 1e-5)]
    equivalence_tolerance: f32,
    /// Print MLIR instead of NNIR, after the passes: `mlir` is linalg on tensors straight from
    /// the lowering, `transform` the same with the transform-dialect schedule that tiles and
    /// vectorizes its static layers nested as a private module, `llvm` the LLVM dialect after
    /// the whole lowering pipeline, schedule included (docs/lowering.md).
    #[arg(long, value_name = "STAGE")]
    emit: Option<EmitArg>,
    /// The MLIR pass pipeline, e.g. "builtin.module(one-shot-bufferize)": replaces the default
    /// lowering pipeline for --emit=llvm; with --emit=mlir it runs on the lowered module before
    /// printing.
    #[arg(long, value_name = "PIPELINE", requires = "emit")]
    mlir_pipeline: Option<String>,
    /// With --emit=transform or llvm: the schedule and pipeline for this many worker threads, as
    /// `nnopt run --threads` compiles them (the `scf.forall` tasks and the async-runtime code).
    #[arg(long, default_value_t = 1, requires = "emit",
          value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: u64,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum EmitArg {
    Mlir,
    Transform,
    Llvm,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Execute a function of an NNIR (or .onnx) file on .npy inputs and write its results as .npy.
    Run(RunArgs),
    /// Compile an NNIR (or .onnx) function once and time it on pseudo-random inputs: prints the median
    /// latency; with --compare, both models and the speedup next to the MAC ratio.
    Bench(BenchArgs),
    /// Convert an ONNX model to NNIR: writes the .nnir text and, beside it, a .safetensors file
    /// with the weights (named by the module attribute `weights`).
    Import(ConvertArgs),
    /// Convert an NNIR module (one function) to an ONNX model.
    Export(ConvertArgs),
}

#[derive(clap::Args, Debug)]
struct ConvertArgs {
    /// The file to read.
    input: PathBuf,
    /// The file to write (atomically; nothing is written on any error).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
}

#[derive(clap::Args, Debug)]
struct RunArgs {
    /// The NNIR file (`-` for stdin).
    input: PathBuf,
    /// Use the reference interpreter (plain f32 kernels, the oracle of the test suite) instead
    /// of compiling through MLIR and running the JIT-compiled code.
    #[arg(long)]
    interp: bool,
    /// The MLIR pass pipeline that lowers to LLVM (default: docs/lowering.md).
    #[arg(long, value_name = "PIPELINE", conflicts_with = "interp")]
    mlir_pipeline: Option<String>,
    /// The function to run (default: the first).
    #[arg(long, value_name = "NAME")]
    func: Option<String>,
    /// Worker threads for the compiled code: layers whose sizes split evenly, and the
    /// element-wise ops between them, run as that many parallel tasks (MLIR's async dialect,
    /// run by nnopt's spinning thread pool; docs/lowering.md).
    #[arg(long, default_value_t = 1, conflicts_with = "interp",
          value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: u64,
    /// One .npy file per function argument, in order (f32, or f64 rounded to f32).
    #[arg(long = "input", value_name = "NPY")]
    inputs: Vec<PathBuf>,
    /// One .npy file per function result, in order (written atomically).
    #[arg(long = "output", value_name = "NPY")]
    outputs: Vec<PathBuf>,
}

#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// The NNIR (or .onnx) file.
    input: PathBuf,
    /// A second model with the same inputs (e.g. the pruned one) to time the same way; the
    /// two models' runs alternate in blocks of 10, so a slow stretch of the machine hits both.
    #[arg(long, value_name = "FILE")]
    compare: Option<PathBuf>,
    /// Timed runs per model (after one warm-up run).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// The size given to every dynamic dimension of the inputs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    batch: u32,
    /// The function to time (default: the first).
    #[arg(long, value_name = "NAME")]
    func: Option<String>,
    /// Worker threads for the compiled code: layers whose sizes split evenly, and the
    /// element-wise ops between them, run as that many parallel tasks (MLIR's async dialect,
    /// run by nnopt's spinning thread pool; docs/lowering.md).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=256))]
    threads: u64,
    /// The MLIR pass pipeline that lowers to LLVM (default: the scheduled pipeline of
    /// docs/lowering.md).
    #[arg(long, value_name = "PIPELINE")]
    mlir_pipeline: Option<String>,
}

fn arity_text(a: Arity) -> String {
    match a {
        Arity::Exactly(n) => format!("{n}"),
        Arity::Range(lo, hi) => format!("{lo}..{hi}"),
        Arity::AtLeast(n) => format!("{n}+"),
    }
}

/// A failure already reported to the user; carries the exit code.
struct Exit(u8);

fn read_input(path: &Path, sources: &mut SourceMap) -> Result<usize, Exit> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| fail(&format!("cannot read stdin: {e}")))?;
        ("<stdin>".to_string(), s)
    } else {
        let bytes = std::fs::read(path)
            .map_err(|e| fail(&format!("cannot read {}: {e}", path.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| fail(&format!("{} is not UTF-8 text: {e}", path.display())))?;
        (path.display().to_string(), text)
    };
    Ok(sources.add(name, text))
}

fn fail(message: &str) -> Exit {
    eprintln!("error: {message}");
    Exit(1)
}

fn emit_output(path: &Path, text: &str) -> Result<(), Exit> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| fail(&format!("cannot write stdout: {e}")))
    } else {
        nnopt::atomic::write_atomic(path, text.as_bytes())
            .map_err(|e| fail(&format!("cannot write {}: {e}", path.display())))
    }
}

fn opt_main(opt: &OptArgs) -> Result<(), Exit> {
    let Some(input) = &opt.input else {
        eprintln!("nnopt: no input file (try --help)");
        return Err(Exit(2));
    };
    let mut sources = SourceMap::new();
    // Formats go by extension: an .onnx input is imported, an .onnx output exported.
    let (onnx_in, onnx_out) = (onnx::is_onnx_path(input), onnx::is_onnx_path(&opt.output));
    if onnx_in && (opt.split_input_file || opt.verify_diagnostics) {
        eprintln!("nnopt: --split-input-file and --verify-diagnostics apply to NNIR text, not to .onnx input");
        return Err(Exit(2));
    }
    let file = if onnx_in {
        sources.add(input.display().to_string(), String::new())
    } else {
        read_input(input, &mut sources)?
    };
    let base_dir = match input.parent() {
        Some(d) if input.as_os_str() != "-" && !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let pipeline = match (&opt.pass_pipeline, opt.prune_neurons) {
        (Some(p), _) => Some(p.as_str()),
        (None, true) => Some(passes::PRUNE_PIPELINE),
        (None, false) => None,
    };
    let passes = match pipeline.map(|p| passes::parse_pipeline(p, None)) {
        Some(Ok(p)) => p,
        Some(Err(d)) => {
            sources.emit_to_stderr(&[d]);
            return Err(Exit(2));
        }
        None => Vec::new(),
    };
    let src = sources.source(file).to_string();
    let chunks = driver::chunks(&src, opt.split_input_file);
    let mut outputs = Vec::new();
    // Weight files beside the output, complete but not yet renamed into place.
    let mut staged = Vec::new();
    // Modules bound for an .onnx output.
    let mut modules = Vec::new();
    let mut all_diags: Vec<Diagnostic> = Vec::new();
    for range in chunks {
        let chunk = &src[range.clone()];
        let mut diags = Vec::new();
        let mut module = if onnx_in {
            onnx::import_file(input).map_err(|d| diags.push(d)).ok()
        } else {
            driver::load(chunk, file, range.start, &base_dir, &mut diags)
        };
        let original = module
            .clone()
            .filter(|_| opt.check_equivalence || opt.pass_statistics);
        if let Some(m) = module.as_mut().filter(|_| !passes.is_empty()) {
            let mut cx = passes::PassContext::default();
            let after = |p: &passes::Pass, m: &nnopt::ir::Module, changed: bool| {
                if opt.print_ir_after_all || (opt.print_ir_after_change && changed) {
                    eprint!(
                        "// -----// IR Dump After {} //----- //\n{}",
                        p.name(),
                        print_module(m)
                    );
                }
            };
            let result = passes::run_pipeline(m, &passes, !opt.no_verify_each, &mut cx, after);
            diags.append(&mut cx.remarks);
            if let Err(errs) = result {
                diags.extend(errs);
                module = None;
            }
            if opt.timing {
                let total: f64 = cx.timings.iter().map(|t| t.1.as_secs_f64()).sum();
                eprintln!("===-------------------------------------------------------------------------===\n                      ... Execution time report ...\n===-------------------------------------------------------------------------===\n  Total Execution Time: {:.6} seconds\n\n   ----Wall Time----  ----Name----", total);
                for (name, t) in &cx.timings {
                    let s = t.as_secs_f64();
                    let pct = if total > 0.0 { 100.0 * s / total } else { 0.0 };
                    eprintln!("   {s:.6} ({pct:5.1}%)  {name}");
                }
            }
            if opt.pass_statistics {
                let costs = original.as_ref().zip(module.as_ref());
                eprint!("{}", statistics_table(&cx, costs));
            }
        }
        // Lowering runs after the NNIR passes and before --verify-diagnostics, so its
        // diagnostics can be annotated like any other.
        let mut emitted = None;
        if let (Some(stage), Some(m)) = (opt.emit, module.as_ref()) {
            if !has_errors(&diags) {
                match emit_mlir(m, stage, opt.mlir_pipeline.as_deref(), opt.threads) {
                    Ok(text) => emitted = Some(text),
                    Err(d) => diags.extend(d),
                }
            }
        }
        if opt.verify_diagnostics {
            diags = driver::verify_expectations(chunk, file, range.start, &diags);
        }
        if let (Some(before), Some(after), true) = (&original, &module, opt.check_equivalence) {
            for (fa, fb) in before.funcs.iter().zip(&after.funcs) {
                match driver::compare_functions(fa, fb, 4, 2, 0x5eed) {
                    Ok(d) => {
                        diags.push(
                            Diagnostic::remark(format!(
                                "equivalence of @{}: max abs difference {:e}, max relative difference {:e} over 4 random inputs",
                                fa.name, d.max_abs, d.max_rel
                            ))
                            .at(fa.span),
                        );
                        if d.max_rel > opt.equivalence_tolerance {
                            diags.push(Diagnostic::error(format!(
                                "@{}: the result differs from the original by {:e} (relative), above the tolerance {:e}",
                                fa.name, d.max_rel, opt.equivalence_tolerance
                            )).at(fa.span));
                        }
                    }
                    Err(e) => diags.push(
                        Diagnostic::error(format!("@{}: cannot check equivalence: {e}", fa.name))
                            .at(fa.span),
                    ),
                }
            }
        }
        if let Some(mut m) = module.filter(|_| !has_errors(&diags)) {
            if opt.emit.is_some() {
                outputs.extend(emitted);
            } else if onnx_out {
                modules.push(m);
            } else {
                // An imported model's weights live in the .onnx file: they go to a
                // .safetensors file beside the output like any external weights.
                let external = m.weights_attr().is_some() || onnx_in;
                if external && writes_regular_file(&opt.output) {
                    let path = driver::weights_path_for(&opt.output, staged.len());
                    if path == opt.output {
                        return Err(fail(&format!(
                            "the output {} would be overwritten by its own weights file",
                            path.display()
                        )));
                    }
                    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                    let tensors =
                        driver::externalize_weights(&mut m, &file_name.unwrap_or_default());
                    if !tensors.is_empty() {
                        let refs: Vec<(&str, &nnopt::ir::Tensor)> =
                            tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
                        let tmp = nnopt::weights::stage_safetensors(&path, &refs)
                            .map_err(|e| fail(&format!("cannot write {}: {e}", path.display())))?;
                        staged.push((tmp, path));
                    }
                } else if onnx_in {
                    return Err(fail("an imported ONNX model needs -o FILE.nnir: its weights are written to a .safetensors file beside it"));
                }
                outputs.push(print_module(&m));
            }
        }
        all_diags.extend(diags);
    }
    sources.emit_to_stderr(&all_diags);
    if has_errors(&all_diags) {
        return Err(Exit(1));
    }
    if onnx_out && opt.emit.is_none() {
        return write_onnx(modules, &opt.output);
    }
    let sep = format!("{}\n", driver::SPLIT_MARKER);
    for (tmp, path) in staged {
        tmp.persist(&path)
            .map_err(|e| fail(&format!("cannot write {}: {}", path.display(), e.error)))?;
    }
    emit_output(&opt.output, &outputs.join(&sep))
}

/// Whether `-o` names a regular file (new or existing), beside which a weights file can go; `-`,
/// `/dev/null` and FIFOs get the module with changed weights inline instead.
fn writes_regular_file(output: &Path) -> bool {
    output.as_os_str() != "-" && std::fs::metadata(output).map_or(true, |m| m.is_file())
}

/// Writes the module for an .onnx output.
fn write_onnx(modules: Vec<nnopt::ir::Module>, output: &Path) -> Result<(), Exit> {
    let [m] = <[_; 1]>::try_from(modules).map_err(|ms: Vec<_>| {
        fail(&format!(
            "an ONNX model is one module, but the input has {} chunks",
            ms.len()
        ))
    })?;
    onnx::write_onnx(&m, output).map_err(|d| {
        SourceMap::new().emit_to_stderr(&[d]);
        Exit(1)
    })
}

/// `nnopt import` and `nnopt export`: the default command without passes, with the formats
/// checked against the subcommand.
fn convert_main(args: &ConvertArgs, export: bool) -> Result<(), Exit> {
    let (from, to) = if export {
        (&args.output, "export")
    } else {
        (&args.input, "import")
    };
    if !onnx::is_onnx_path(from) {
        eprintln!("nnopt {to}: {} must be an .onnx file", from.display());
        return Err(Exit(2));
    }
    let opt = OptArgs {
        input: Some(args.input.clone()),
        output: args.output.clone(),
        split_input_file: false,
        verify_diagnostics: false,
        list_ops: false,
        prune_neurons: false,
        pass_pipeline: None,
        list_passes: false,
        no_verify_each: false,
        print_ir_after_all: false,
        print_ir_after_change: false,
        timing: false,
        pass_statistics: false,
        check_equivalence: false,
        equivalence_tolerance: 1e-5,
        emit: None,
        mlir_pipeline: None,
        threads: 1,
    };
    opt_main(&opt)
}

#[cfg(feature = "mlir")]
fn emit_mlir(
    m: &nnopt::ir::Module,
    stage: EmitArg,
    pipeline: Option<&str>,
    threads: u64,
) -> Result<String, Vec<Diagnostic>> {
    let stage = match stage {
        EmitArg::Mlir => nnopt::lower::Emit::Mlir,
        EmitArg::Transform => nnopt::lower::Emit::Transform,
        EmitArg::Llvm => nnopt::lower::Emit::Llvm,
    };
    nnopt::lower::emit_text(m, stage, pipeline, threads)
}

#[cfg(not(feature = "mlir"))]
fn emit_mlir(
    m: &nnopt::ir::Module,
    _: EmitArg,
    _: Option<&str>,
    _: u64,
) -> Result<String, Vec<Diagnostic>> {
    Err(vec![Diagnostic::error(
        "this nnopt was built without the `mlir` feature; --emit is not available",
    )
    .at(m.span)])
}

#[cfg(feature = "mlir")]
fn run_compiled(
    m: &nnopt::ir::Module,
    func: &str,
    inputs: &[ndarray::ArrayD<f32>],
    pipeline: Option<&str>,
    threads: u64,
) -> Result<Vec<ndarray::ArrayD<f32>>, Vec<Diagnostic>> {
    nnopt::lower::compile_and_run(m, func, inputs, pipeline, threads)
}

#[cfg(not(feature = "mlir"))]
fn run_compiled(
    _: &nnopt::ir::Module,
    _: &str,
    _: &[ndarray::ArrayD<f32>],
    _: Option<&str>,
    _: u64,
) -> Result<Vec<ndarray::ArrayD<f32>>, Vec<Diagnostic>> {
    Err(vec![Diagnostic::error(
        "this nnopt was built without the `mlir` feature; pass --interp",
    )])
}

/// Reads an NNIR or ONNX model (by extension) for `run` and `bench`; diagnostics go to stderr.
fn load_model(input: &Path, sources: &mut SourceMap) -> Result<nnopt::ir::Module, Exit> {
    if onnx::is_onnx_path(input) {
        return onnx::import_file(input).map_err(|d| {
            sources.emit_to_stderr(&[d]);
            Exit(1)
        });
    }
    let file = read_input(input, sources)?;
    let base_dir = match input.parent() {
        Some(d) if input.as_os_str() != "-" && !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let src = sources.source(file).to_string();
    let mut diags = Vec::new();
    let module = driver::load(&src, file, 0, &base_dir, &mut diags);
    sources.emit_to_stderr(&diags);
    module.ok_or(Exit(1))
}

/// Function `name` of `module`, or its first.
fn pick_func<'m>(
    module: &'m nnopt::ir::Module,
    name: Option<&str>,
    input: &Path,
) -> Result<&'m nnopt::ir::Function, Exit> {
    match name {
        Some(name) => module
            .func(name)
            .ok_or_else(|| fail(&format!("no function @{name} in {}", input.display()))),
        None => module
            .funcs
            .first()
            .ok_or_else(|| fail("the module has no function")),
    }
}

fn run_main(args: &RunArgs) -> Result<(), Exit> {
    let mut sources = SourceMap::new();
    let module = load_model(&args.input, &mut sources)?;
    let func = pick_func(&module, args.func.as_deref(), &args.input)?;
    if args.inputs.len() != func.args().len() {
        return Err(fail(&format!(
            "@{} takes {} arguments but {} --input files are given",
            func.name,
            func.args().len(),
            args.inputs.len()
        )));
    }
    if args.outputs.len() != func.result_types().len() {
        return Err(fail(&format!(
            "@{} has {} results but {} --output files are given",
            func.name,
            func.result_types().len(),
            args.outputs.len()
        )));
    }
    let inputs = args
        .inputs
        .iter()
        .map(|p| nnopt::interp::read_npy(p).map_err(|e| fail(&format!("{}: {e}", p.display()))))
        .collect::<Result<Vec<_>, _>>()?;
    let results = if args.interp {
        nnopt::interp::run(func, &inputs).map_err(|e| {
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
            args.mlir_pipeline.as_deref(),
            args.threads,
        )
        .map_err(|d| {
            sources.emit_to_stderr(&d);
            Exit(1)
        })?
    };
    for (r, p) in results.iter().zip(&args.outputs) {
        nnopt::interp::write_npy(p, r).map_err(|e| fail(&format!("{}: {e}", p.display())))?;
    }
    Ok(())
}

/// Inputs for `bench`: every argument with its dynamic sizes set to `batch`, filled with
/// deterministic values in [-1, 1).
fn bench_inputs(f: &nnopt::ir::Function, batch: usize) -> Result<Vec<ndarray::ArrayD<f32>>, Exit> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    f.args()
        .iter()
        .map(|&a| {
            let shape: Vec<usize> = f
                .ty(a)
                .dims
                .iter()
                .map(|d| d.as_static().map_or(batch, |n| n as usize))
                .collect();
            let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if n.is_none_or(|n| n > 1 << 30) {
                return Err(fail(&format!(
                    "input shape {shape:?} is too large to benchmark"
                )));
            }
            Ok(ndarray::ArrayD::from_shape_simple_fn(shape, || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            }))
        })
        .collect()
}

/// The median of `times` in milliseconds.
fn median_ms(times: &[std::time::Duration]) -> f64 {
    let mut ms: Vec<f64> = times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    ms.sort_by(f64::total_cmp);
    match ms.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => ms[n / 2],
        n => (ms[n / 2 - 1] + ms[n / 2]) / 2.0,
    }
}

fn bench_main(args: &BenchArgs) -> Result<(), Exit> {
    let mut sources = SourceMap::new();
    let mut models = vec![(args.input.clone(), load_model(&args.input, &mut sources)?)];
    if let Some(p) = &args.compare {
        models.push((p.clone(), load_model(p, &mut sources)?));
    }
    if let [(pa, a), (pb, b)] = &models[..] {
        let types = |m, p| -> Result<Vec<String>, Exit> {
            let f = pick_func(m, args.func.as_deref(), p)?;
            Ok(f.args().iter().map(|&v| f.ty(v).to_string()).collect())
        };
        let (ta, tb) = (types(a, pa)?, types(b, pb)?);
        if ta != tb {
            return Err(fail(&format!(
                "the models take different inputs: {} takes ({}), {} takes ({})",
                pa.display(),
                ta.join(", "),
                pb.display(),
                tb.join(", ")
            )));
        }
    }
    let mut bench = Vec::new();
    let mut macs = Vec::new();
    for (path, module) in &models {
        let func = pick_func(module, args.func.as_deref(), path)?;
        macs.push(
            passes::layer_costs(func)
                .iter()
                .map(|c| c.macs)
                .sum::<u64>(),
        );
        bench.push(nnopt::tool::bench::BenchModel {
            module,
            func: &func.name,
            inputs: bench_inputs(func, args.batch as usize)?,
        });
    }
    let times = nnopt::tool::bench::bench(
        &bench,
        args.runs as usize,
        args.mlir_pipeline.as_deref(),
        args.threads,
    )
    .map_err(|d| {
        sources.emit_to_stderr(&d);
        Exit(1)
    })?;
    let mut rows = Vec::new();
    for (((path, _), b), (times, macs)) in models.iter().zip(&bench).zip(times.iter().zip(macs)) {
        let median = median_ms(&times.runs);
        println!(
            "{}: @{} batch {}: median {:.3} ms over {} runs (min {:.3} ms), compile {:.2} s, {} MACs/sample",
            path.display(),
            b.func,
            args.batch,
            median,
            times.runs.len(),
            times.runs.iter().min().map_or(f64::NAN, |t| t.as_secs_f64() * 1e3),
            times.compile.as_secs_f64(),
            macs
        );
        rows.push((median, macs));
    }
    if let [(t0, m0), (t1, m1)] = rows[..] {
        println!(
            "speedup {:.2}x, MAC ratio {:.2}x",
            t0 / t1,
            m0 as f64 / m1.max(1) as f64
        );
    }
    Ok(())
}

fn statistics_table(
    cx: &passes::PassContext,
    modules: Option<(&nnopt::ir::Module, &nnopt::ir::Module)>,
) -> String {
    let mut out = String::from("===-------------------------------------------------------------------------===\n                         ... Pass statistics report ...\n===-------------------------------------------------------------------------===\n");
    for (k, v) in &cx.pattern_hits {
        out.push_str(&format!("{v:>10} pattern {k} applied\n"));
    }
    for (k, v) in &cx.counters {
        out.push_str(&format!("{v:>10} {k}\n"));
    }
    let Some((before, after)) = modules else {
        return out;
    };
    for (fa, fb) in before.funcs.iter().zip(&after.funcs) {
        out.push_str(&format!(
            "@{}: {:<24} {:>12} {:>12} {:>14} {:>14}\n",
            fa.name, "layer", "params", "params after", "MACs/sample", "MACs after"
        ));
        let after_costs = passes::layer_costs(fb);
        let (mut p0, mut p1, mut m0, mut m1) = (0, 0, 0, 0);
        for c in passes::layer_costs(fa) {
            let (ap, am) = after_costs
                .iter()
                .find(|a| a.op == c.op)
                .map_or((0, 0), |a| (a.params, a.macs));
            out.push_str(&format!(
                "  {:<34} {:>12} {:>12} {:>14} {:>14}\n",
                c.name, c.params, ap, c.macs, am
            ));
            (p0, p1, m0, m1) = (p0 + c.params, p1 + ap, m0 + c.macs, m1 + am);
        }
        let pct = |a: u64, b: u64| {
            if a == 0 {
                0.0
            } else {
                100.0 * (a - b.min(a)) as f64 / a as f64
            }
        };
        out.push_str(&format!(
            "  {:<34} {:>12} {:>12} {:>14} {:>14}\n  removed: {:.1}% of the parameters, {:.1}% of the MACs\n",
            "total", p0, p1, m0, m1, pct(p0, p1), pct(m0, m1)
        ));
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Run(args)) => run_main(args),
        Some(Command::Bench(args)) => bench_main(args),
        Some(Command::Import(args)) => convert_main(args, false),
        Some(Command::Export(args)) => convert_main(args, true),
        None if cli.opt.list_ops => {
            for &tag in OpTag::ALL {
                println!(
                    "{:<20} operands: {}",
                    tag.mnemonic(),
                    arity_text(tag.arity())
                );
            }
            Ok(())
        }
        None if cli.opt.list_passes => {
            for (name, summary, options) in passes::PASSES {
                println!("{name}\n    {summary}");
                for (o, d) in *options {
                    println!("    {o}=<value>: {d}");
                }
            }
            Ok(())
        }
        None => opt_main(&cli.opt),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit(code)) => ExitCode::from(code),
    }
}
