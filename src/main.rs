//! The `nnopt` command line. Holds no logic: the clap definitions of the flags, their
//! conversion into the options of the CLI layer (`nnopt::tool`), and the dispatch to its
//! commands.

// Diagnostics travel by value on the (cold) error path; see lib.rs.
#![allow(clippy::result_large_err)]

use clap::{CommandFactory, Parser, Subcommand};
use nnopt::tool::bench::{bench_command, BenchOptions};
use nnopt::tool::compile::{compile_command, CompileArgs};
use nnopt::tool::convert::{convert, ConvertArgs, Direction};
use nnopt::tool::equivalence::EquivalenceOptions;
use nnopt::tool::format::Format;
use nnopt::tool::list::{list_ops, list_passes};
use nnopt::tool::load::DimArgs;
use nnopt::tool::mlir::{EmitStage, TargetSpec};
use nnopt::tool::opt::{opt, EmitOptions, OptOptions, PassOptions, Pipeline, PruneArgs};
use nnopt::tool::run::RunOptions;
use nnopt::tool::{self, args, Exit};
use std::path::PathBuf;
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

/// The flags of the default command, `nnopt FILE`.
#[derive(clap::Args, Debug)]
struct OptArgs {
    /// The NNIR file to read; `-` reads stdin.
    input: Option<PathBuf>,
    /// Where to write the result (`-` for stdout). Written atomically: on any error the file
    /// is left untouched. When the input reads its weights from a safetensors file, the
    /// result's weights (unchanged and pruned) go to FILE's name with the extension
    /// `.safetensors`, beside it; on stdout, changed weights are printed inline. An ONNX
    /// input's NNIR needs a regular FILE for its weights: to stdout or /dev/null nothing is
    /// written, which is what `--pass-statistics` alone asks for (without a report flag, no
    /// `-o` is a usage error).
    #[arg(short = 'o', long = "output", value_name = "FILE", default_value = "-")]
    output: PathBuf,
    /// The format of -o regardless of its extension (by default .nnir is NNIR text, .onnx an
    /// ONNX model, and any other extension is a usage error).
    #[arg(long, value_name = "FORMAT", conflicts_with = "emit")]
    emit_format: Option<EmitFormatArg>,
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
    #[command(flatten)]
    passes: PassArgs,
    #[command(flatten)]
    equivalence: EquivalenceArgs,
    #[command(flatten)]
    emit: EmitArgs,
    #[command(flatten)]
    external: tool::output::ExternalDataArgs,
    #[command(flatten)]
    dims: DimArgs,
}

/// The NNIR pass pipeline and its reports.
#[derive(clap::Args, Debug)]
struct PassArgs {
    /// Remove neurons that provably do not affect the output (constant or ignored neurons of
    /// linear and ungrouped conv layers, followed through activations, pools, depthwise convs
    /// and flatten; docs/passes.md lists what is covered), compensating in the neighbouring
    /// layers so the output stays the same. Shorthand for
    /// --pass-pipeline="canonicalize,fold-batch-norm,prune-neurons,canonicalize,dce".
    #[arg(long)]
    prune_neurons: bool,
    #[command(flatten)]
    prune: PruneArgs,
    /// Run these passes in order, e.g. "prune-neurons{zero-threshold=0},dce" (see
    /// --list-passes).
    #[arg(long, value_name = "PIPELINE", conflicts_with = "prune_neurons")]
    pass_pipeline: Option<String>,
    /// List the passes with their options and exit.
    #[arg(long)]
    list_passes: bool,
    /// Print the trace of these patterns (and `greedy-rewriter`, the driver) to stderr, as
    /// MLIR's -debug-only; RUST_LOG selects traces the same way.
    #[arg(long, value_name = "PATTERN", value_delimiter = ',')]
    debug_only: Vec<String>,
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
    /// Print per-pattern and per-pass statistics to stderr when the pipeline ends, and a
    /// table of every layer (its ONNX or NNIR name, channels, parameters and MACs per sample
    /// before and after, why it lost or kept neurons).
    #[arg(long)]
    pass_statistics: bool,
}

/// The flags of --check-equivalence (docs/passes.md); without it they have no effect.
#[derive(clap::Args, Debug)]
struct EquivalenceArgs {
    /// After the passes, run the original and the result in the reference interpreter on the
    /// same inputs and report the largest differences; exit 1 (writing nothing) when an
    /// element of a result is out of tolerance: |result - original| > atol * max|original| +
    /// rtol * |original|, max|original| being the largest magnitude of that output.
    #[arg(long)]
    check_equivalence: bool,
    /// The relative tolerance of --check-equivalence [default: 1e-5].
    #[arg(long, value_name = "RTOL", visible_alias = "equivalence-tolerance")]
    equivalence_rtol: Option<f32>,
    /// The absolute tolerance of --check-equivalence, as a fraction of the largest magnitude
    /// of each output [default: 1e-5].
    #[arg(long, value_name = "ATOL")]
    equivalence_atol: Option<f32>,
    /// Check on these inputs instead of 4 sets of random ones: one .npy file per function
    /// argument, in order, as `nnopt run --input` takes them (repeat the flag or separate them
    /// with commas; it never takes the model's path).
    #[arg(long, value_name = "NPY", value_delimiter = ',')]
    equivalence_inputs: Vec<PathBuf>,
    /// The seed of the random inputs of --check-equivalence [default: 24301].
    #[arg(long, value_name = "N")]
    seed: Option<u64>,
}

#[derive(clap::Args, Debug)]
struct EmitArgs {
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
    #[command(flatten)]
    target: TargetSpec,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum EmitArg {
    Mlir,
    Transform,
    Llvm,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum EmitFormatArg {
    Nnir,
    Onnx,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Execute a function of an NNIR (or .onnx) file on .npy inputs and write its results as .npy.
    Run(RunArgs),
    /// Compile an NNIR (or .onnx) function once and time it on pseudo-random inputs: prints the median
    /// latency; with --compare, both models and the speedup next to the MAC ratio.
    Bench(BenchArgs),
    /// Compile a function ahead of time to a shared library (-o NAME.so) or object (-o NAME.o)
    /// and its C header NAME.h; the C ABI is docs/abi.md.
    Compile(CompileArgs),
    /// Convert an ONNX model to NNIR: writes the .nnir text and, beside it, a .safetensors file
    /// with the weights (named by the module attribute `weights`).
    Import(ConvertArgs),
    /// Convert an NNIR module (one function) to an ONNX model.
    Export(ConvertArgs),
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
    /// Bypass the compiled-code cache ($XDG_CACHE_HOME/nnopt, default ~/.cache/nnopt; at most
    /// $NNOPT_CACHE_SIZE, default 1G, least recently used entries go first).
    #[arg(long, conflicts_with = "interp")]
    no_cache: bool,
    #[command(flatten)]
    target: TargetSpec,
    /// One .npy file per function argument (f32, or f64 rounded to f32): in order, or as
    /// NAME=FILE for the argument %NAME.
    #[arg(long = "input", value_name = "[NAME=]NPY")]
    inputs: Vec<String>,
    #[command(flatten)]
    dims: DimArgs,
    /// One .npy file per function result, in order (written atomically); `-` prints the result
    /// to stdout as text, laid out as numpy prints arrays.
    #[arg(short = 'o', long = "output", value_name = "NPY")]
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
    /// Bypass the compiled-code cache (to time a real compile).
    #[arg(long)]
    no_cache: bool,
    #[command(flatten)]
    target: TargetSpec,
    #[command(flatten)]
    dims: DimArgs,
}

impl From<&OptArgs> for OptOptions {
    fn from(a: &OptArgs) -> Self {
        OptOptions {
            input: a.input.clone(),
            output: a.output.clone(),
            emit_format: a.emit_format.map(|f| match f {
                EmitFormatArg::Nnir => Format::Nnir,
                EmitFormatArg::Onnx => Format::Onnx,
            }),
            split_input_file: a.split_input_file,
            verify_diagnostics: a.verify_diagnostics,
            passes: (&a.passes).into(),
            equivalence: EquivalenceOptions {
                check: a.equivalence.check_equivalence,
                rtol: a.equivalence.equivalence_rtol,
                atol: a.equivalence.equivalence_atol,
                inputs: a.equivalence.equivalence_inputs.clone(),
                seed: a.equivalence.seed,
            },
            emit: a.emit.emit.map(|stage| EmitOptions {
                stage: stage.into(),
                mlir_pipeline: a.emit.mlir_pipeline.clone(),
                threads: a.emit.threads,
                target: a.emit.target.clone(),
            }),
            external_data: (&a.external).into(),
            import: (&a.dims).into(),
        }
    }
}

impl From<&PassArgs> for PassOptions {
    fn from(a: &PassArgs) -> Self {
        PassOptions {
            pipeline: match (&a.pass_pipeline, a.prune_neurons) {
                (Some(p), _) => Some(Pipeline::Text(p.clone())),
                (None, true) => Some(a.prune.pipeline()),
                (None, false) => None,
            },
            verify_each: !a.no_verify_each,
            print_ir_after_all: a.print_ir_after_all,
            print_ir_after_change: a.print_ir_after_change,
            timing: a.timing,
            statistics: a.pass_statistics,
            report: a.prune.prune_report.clone(),
        }
    }
}

impl From<EmitArg> for EmitStage {
    fn from(e: EmitArg) -> Self {
        match e {
            EmitArg::Mlir => EmitStage::Mlir,
            EmitArg::Transform => EmitStage::Transform,
            EmitArg::Llvm => EmitStage::Llvm,
        }
    }
}

impl From<&RunArgs> for RunOptions {
    fn from(a: &RunArgs) -> Self {
        RunOptions {
            input: a.input.clone(),
            interp: a.interp,
            mlir_pipeline: a.mlir_pipeline.clone(),
            func: a.func.clone(),
            threads: a.threads,
            cache: !a.no_cache,
            target: a.target.clone(),
            inputs: a.inputs.clone(),
            outputs: a.outputs.clone(),
            import: (&a.dims).into(),
        }
    }
}

impl From<&BenchArgs> for BenchOptions {
    fn from(a: &BenchArgs) -> Self {
        BenchOptions {
            input: a.input.clone(),
            compare: a.compare.clone(),
            runs: a.runs,
            batch: a.batch,
            func: a.func.clone(),
            threads: a.threads,
            mlir_pipeline: a.mlir_pipeline.clone(),
            cache: !a.no_cache,
            target: a.target.clone(),
            import: (&a.dims).into(),
        }
    }
}

fn main() -> ExitCode {
    let longs = args::long_flags(&Cli::command());
    let cli = Cli::parse_from(args::single_dash_long_flags(std::env::args_os(), &longs));
    nnopt::rewrite::trace::init(&cli.opt.passes.debug_only);
    let result = match &cli.command {
        Some(Command::Run(args)) => tool::run::run(&args.into()),
        Some(Command::Bench(args)) => bench_command(&args.into()),
        Some(Command::Compile(a)) => compile_command(a),
        Some(Command::Import(a)) => convert(a, Direction::Import),
        Some(Command::Export(a)) => convert(a, Direction::Export),
        None if cli.opt.list_ops => {
            print!("{}", list_ops());
            Ok(())
        }
        None if cli.opt.passes.list_passes => {
            print!("{}", list_passes());
            Ok(())
        }
        None => opt(&(&cli.opt).into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit(code)) => ExitCode::from(code),
    }
}
