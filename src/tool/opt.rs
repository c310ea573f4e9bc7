//! The default command, `nnopt FILE`: read the input (NNIR text, its `--split-input-file`
//! chunks, or an ONNX model), run the pass pipeline on each chunk, optionally lower it to MLIR,
//! check the diagnostics against annotations or the result against the original, and write the
//! result as NNIR (weights beside it), MLIR or ONNX.
//!
//! All diagnostics are rendered once, after every chunk has been processed; nothing is written
//! when any chunk has an error.

use super::equivalence::{check_equivalence, EquivalenceOptions};
use super::expect::verify_expectations;
use super::format::{input_format, output_format, Format};
use super::load::{base_dir, check_dims_apply, chunks, load, read_input, SPLIT_MARKER};
use super::mlir::{check_target, emit_mlir, EmitStage, TargetSpec};
use super::output::{
    check_external_data, persist_weights, stage_weights, write_onnx, write_output,
    writes_regular_file,
};
use super::progress::Progress;
use super::prune_report;
use super::report::{statistics_table, timing_report};
use super::{usage, warn, Exit};
use crate::diag::{has_errors, Diagnostic, SourceMap};
use crate::ir::Module;
use crate::onnx;
use crate::passes::{self, Pass, PassContext, PassManager};
use crate::syntax::printer::print_module;
use std::path::PathBuf;

/// What `nnopt FILE` does; `Default` is the plain read-verify-print of stdin to stdout.
#[derive(Clone, Debug)]
pub struct OptOptions {
    /// The input file, `-` for stdin; `None` is a usage error.
    pub input: Option<PathBuf>,
    /// Where the result goes, `-` for stdout; `.onnx` exports.
    pub output: PathBuf,
    /// `--emit-format`: the output format regardless of the extension.
    pub emit_format: Option<Format>,
    /// Process the chunks between `// -----` lines on their own.
    pub split_input_file: bool,
    /// Check the diagnostics against the input's `// expected-...` annotations.
    pub verify_diagnostics: bool,
    pub passes: PassOptions,
    /// `--check-equivalence` and its settings.
    pub equivalence: EquivalenceOptions,
    /// Print MLIR instead of NNIR.
    pub emit: Option<EmitOptions>,
    /// Where an .onnx output's initializers go.
    pub external_data: onnx::ExternalData,
    /// How an ONNX input is read (`--dim`).
    pub import: onnx::ImportOptions,
}

impl Default for OptOptions {
    fn default() -> Self {
        OptOptions {
            input: None,
            output: PathBuf::from("-"),
            emit_format: None,
            split_input_file: false,
            verify_diagnostics: false,
            passes: PassOptions::default(),
            equivalence: EquivalenceOptions::default(),
            emit: None,
            external_data: onnx::ExternalData::Auto,
            import: onnx::ImportOptions::default(),
        }
    }
}

/// The NNIR pass pipeline and what it reports.
#[derive(Clone, Debug)]
pub struct PassOptions {
    /// The passes to run; `None` runs no pass.
    pub pipeline: Option<Pipeline>,
    /// Run the verifier after every pass.
    pub verify_each: bool,
    pub print_ir_after_all: bool,
    pub print_ir_after_change: bool,
    /// Print each pass's wall time.
    pub timing: bool,
    /// Print the pattern and pass counters and the layer costs before and after.
    pub statistics: bool,
    /// Write the page of `--prune-report` here.
    pub report: Option<PathBuf>,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            pipeline: None,
            verify_each: true,
            print_ir_after_all: false,
            print_ir_after_change: false,
            timing: false,
            statistics: false,
            report: None,
        }
    }
}

/// The flags that shape `--prune-neurons` and report on it (flattened into the pass flags).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct PruneArgs {
    /// With --prune-neurons: each pruned layer keeps a multiple of N neurons (1: no alignment;
    /// default: onnxruntime's channel block on this host for ONNX output, else 1).
    #[arg(long, value_name = "N", requires = "prune_neurons", value_parser = clap::value_parser!(u64).range(1..))]
    pub round_to: Option<u64>,
    /// With --prune-neurons: what a layer whose removed neurons also reach a residual add,
    /// concat or result does: scatter (restore them there), keep (do not prune it), auto
    /// (scatter when the MACs saved exceed what the scatters cost the runtime; docs/passes.md).
    /// Default: auto for ONNX output, else scatter.
    #[arg(long, value_name = "MODE", requires = "prune_neurons", value_parser = ["scatter", "keep", "auto"])]
    pub residual: Option<String>,
    /// Write a page (XHTML with an SVG bar per layer) of what the passes did to each layer:
    /// channels kept, kept for alignment, removed and scattered; MACs and parameters.
    #[arg(long, value_name = "FILE.html")]
    pub prune_report: Option<PathBuf>,
}

impl PruneArgs {
    /// The `--prune-neurons` pipeline these flags ask for.
    pub fn pipeline(&self) -> Pipeline {
        Pipeline::Prune {
            round_to: self.round_to.map(|n| n as usize),
            residual: self.residual.clone(),
        }
    }
}

/// The passes `nnopt FILE` runs.
#[derive(Clone, Debug)]
pub enum Pipeline {
    /// `--prune-neurons` ([`passes::PRUNE_PIPELINE`]), its layers aligned to `round_to`
    /// neurons and its residual uses handled as `residual` says; by default for what the
    /// output runs on. ONNX: onnxruntime's channel block on this host
    /// ([`onnx::channel_block`], also its f32 lanes) and `residual=auto` weighing the scatters'
    /// cost in onnxruntime. NNIR and MLIR: 1 and `scatter` (the cost model describes
    /// onnxruntime): the schedules peel a remainder tile of filters and pad dense layers to
    /// whole panels, so kept neurons would only be extra work there.
    Prune {
        round_to: Option<usize>,
        residual: Option<String>,
    },
    /// `--pass-pipeline`: the text `passes::PassManager::parse` reads.
    Text(String),
}

impl Pipeline {
    /// The pipeline's text for an output that is ONNX when `onnx_out`.
    fn text(&self, onnx_out: bool) -> String {
        match self {
            Pipeline::Prune { round_to, residual } => {
                let (block, mode) = match onnx_out {
                    true => (onnx::channel_block(), "auto"),
                    false => (1, "scatter"),
                };
                passes::prune_pipeline(&format!(
                    "round-to={} residual={} lanes={}",
                    round_to.unwrap_or(block),
                    residual.as_deref().unwrap_or(mode),
                    onnx::channel_block()
                ))
            }
            Pipeline::Text(t) => t.clone(),
        }
    }
}

/// `--emit`: the stage, the MLIR pass pipeline and the worker threads it is compiled for.
#[derive(Clone, Debug)]
pub struct EmitOptions {
    pub stage: EmitStage,
    pub mlir_pipeline: Option<String>,
    pub threads: u64,
    /// The CPU `--emit=llvm` compiles for (and `transform` schedules for).
    pub target: TargetSpec,
}

/// Runs `nnopt FILE` with `o`; diagnostics and errors go to stderr.
pub fn opt(o: &OptOptions) -> Result<(), Exit> {
    let Some(input) = &o.input else {
        return Err(usage("no input file (try --help)"));
    };
    warn_ineffective(o);
    let mut sources = SourceMap::new();
    let tolerance = o.equivalence.tolerance().map_err(|e| usage(&e))?;
    if let Some(e) = &o.emit {
        check_target(&e.target)?;
    }
    // Formats are settled before any work: an ONNX input is imported, an ONNX output exported.
    let out_format = output_format(&o.output, o.emit_format, o.emit.is_some())?;
    let onnx_in = input_format(input) == Format::Onnx;
    let onnx_out = out_format == Format::Onnx;
    check_dims_apply(&o.import, input, onnx_in)?;
    check_external_data(&o.external_data, &o.output, onnx_out && o.emit.is_none())?;
    if onnx_in && (o.split_input_file || o.verify_diagnostics) {
        return Err(usage(
            "--split-input-file and --verify-diagnostics apply to NNIR text, not to ONNX input",
        ));
    }
    // An imported model's NNIR needs a weights file beside it, so a non-regular output gets
    // none; to stdout that is a run for its reports, or a mistake caught before the work.
    let nnir_unwritten =
        onnx_in && !onnx_out && o.emit.is_none() && !writes_regular_file(&o.output);
    let reports = o.passes.statistics || o.passes.timing || o.equivalence.check;
    if nnir_unwritten && o.output.as_os_str() == "-" && !reports {
        return Err(usage("an imported ONNX model needs -o FILE.nnir (its weights go to a .safetensors file beside it) or -o FILE.onnx; with --pass-statistics alone nothing is written"));
    }
    let file = if onnx_in {
        sources.add(input.display().to_string(), String::new())
    } else {
        read_input(input, &mut sources)?
    };
    let base_dir = base_dir(input);
    let passes = match o.passes.pipeline.as_ref().map(|p| p.text(onnx_out)) {
        Some(p) => passes::PassManager::parse(&p, None).map_err(|d| {
            sources.emit_to_stderr(&[d]);
            Exit(2)
        })?,
        None => passes::PassManager::default(),
    };
    let src = sources.source(file).to_string();
    let mut outputs = Vec::new();
    // Weight files beside the output, complete but not yet renamed into place.
    let mut staged = Vec::new();
    // Modules bound for an .onnx output.
    let mut modules = Vec::new();
    let mut all_diags: Vec<Diagnostic> = o.equivalence.unused_flag_warnings();
    // The `--prune-report` section of each chunk.
    let mut report = String::new();
    for range in chunks(&src, o.split_input_file) {
        let chunk = &src[range.clone()];
        let mut diags = Vec::new();
        let mut module = if onnx_in {
            let _progress = Progress::start(format!("importing {}", input.display()));
            onnx::import_file(input, &o.import, &mut diags)
                .map_err(|d| diags.push(d))
                .ok()
        } else {
            load(chunk, file, range.start, &base_dir, &mut diags)
        };
        let original = module
            .clone()
            .filter(|_| o.equivalence.check || o.passes.statistics || o.passes.report.is_some());
        let cx = {
            // Not over IR dumps, which share stderr.
            let dumps = o.passes.print_ir_after_all || o.passes.print_ir_after_change;
            let _progress = (!dumps && !passes.is_empty() && module.is_some())
                .then(|| Progress::start("running the passes"));
            run_passes(
                &o.passes,
                &passes,
                &mut module,
                original.as_ref(),
                &mut diags,
            )
        };
        if let (Some(cx), Some(before), Some(after)) = (&cx, &original, &module) {
            report.push_str(&prune_report::sections(cx, before, after));
        }
        // Lowering runs after the NNIR passes and before --verify-diagnostics, so its
        // diagnostics can be annotated like any other.
        let mut emitted = None;
        if let (Some(e), Some(m)) = (&o.emit, module.as_ref()) {
            if !has_errors(&diags) {
                match emit_mlir(m, e.stage, e.mlir_pipeline.as_deref(), e.threads, &e.target) {
                    Ok(text) => emitted = Some(text),
                    Err(d) => diags.extend(d),
                }
            }
        }
        if o.verify_diagnostics {
            diags = verify_expectations(chunk, file, range.start, &diags);
        }
        if let (Some(before), Some(after), true) = (&original, &module, o.equivalence.check) {
            let _progress = Progress::start("checking equivalence in the interpreter");
            // An ONNX file has no text for a diagnostic to point into.
            let located = !onnx_in;
            diags.extend(check_equivalence(
                before,
                after,
                &o.equivalence,
                tolerance,
                located,
            ));
        }
        if let Some(mut m) = module.filter(|_| !has_errors(&diags)) {
            if o.emit.is_some() {
                outputs.extend(emitted);
            } else if onnx_out {
                modules.push(m);
            } else if !nnir_unwritten {
                // An imported model's weights live in the .onnx file: they go to a
                // .safetensors file beside the output like any external weights.
                let external = m.weights_attr().is_some() || onnx_in;
                if external && writes_regular_file(&o.output) {
                    staged.extend(stage_weights(&mut m, &o.output, staged.len())?);
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
    if let Some(path) = o.passes.report.as_ref().filter(|_| !passes.is_empty()) {
        write_output(
            path,
            &prune_report::page(&input.display().to_string(), &report),
        )?;
    }
    if onnx_out && o.emit.is_none() {
        return write_onnx(modules, &o.output, &o.external_data);
    }
    persist_weights(staged)?;
    if nnir_unwritten {
        return Ok(());
    }
    write_output(&o.output, &outputs.join(&format!("{SPLIT_MARKER}\n")))
}

/// Runs `passes` on `module` (if any), printing the IR and reports `p` asks for; a pipeline
/// error drops the module. `original` is the module before, for the statistics table. Returns
/// what the passes noted, when they ran.
fn run_passes(
    p: &PassOptions,
    passes: &PassManager,
    module: &mut Option<Module>,
    original: Option<&Module>,
    diags: &mut Vec<Diagnostic>,
) -> Option<PassContext> {
    let m = module.as_mut().filter(|_| !passes.is_empty())?;
    let mut cx = PassContext::default();
    let after = |pass: &dyn Pass, m: &Module, changed: bool| {
        if p.print_ir_after_all || (p.print_ir_after_change && changed) {
            eprint!(
                "// -----// IR Dump After {} //----- //\n{}",
                pass.name(),
                print_module(m)
            );
        }
    };
    let result = passes.run(m, p.verify_each, &mut cx, after);
    diags.append(&mut cx.remarks);
    if let Err(errs) = result {
        diags.extend(errs);
        *module = None;
    }
    if p.timing {
        eprint!("{}", timing_report(&cx));
    }
    if p.statistics {
        eprint!("{}", statistics_table(&cx, original.zip(module.as_ref())));
    }
    Some(cx)
}

/// Warns about the flags of `o` that change nothing: pass reports and checks without a pass
/// pipeline to report on, and `--threads` with an `--emit` stage that has no threads.
fn warn_ineffective(o: &OptOptions) {
    let p = &o.passes;
    if p.pipeline.is_none() {
        for (given, flag) in [
            (p.timing, "--timing"),
            (p.statistics, "--pass-statistics"),
            (p.report.is_some(), "--prune-report"),
            (p.print_ir_after_all, "--print-ir-after-all"),
            (p.print_ir_after_change, "--print-ir-after-change"),
            (!p.verify_each, "--no-verify-each"),
        ] {
            if given {
                warn(&format!(
                    "{flag} has no effect without passes to run (--prune-neurons or --pass-pipeline)"
                ));
            }
        }
    }
    if let Some(e) = o.emit.as_ref().filter(|e| e.threads > 1) {
        if e.stage == EmitStage::Mlir {
            warn("--threads has no effect with --emit=mlir (it shapes --emit=transform and --emit=llvm)");
        }
    }
}
