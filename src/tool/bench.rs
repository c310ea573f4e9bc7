//! `nnopt bench`: the timing harness. Compiles each model once through the lowering's public
//! API (`lower::compile`) and times repeated calls of the compiled code, alternating between
//! the models in blocks so that a comparison is fair on a shared machine.
//!
//! What it does not do: read models or inputs, or print; the CLI does that around it. Built
//! without the `mlir` feature, [`bench`] reports that the compiler is missing.

use super::cache::FileCache;
use super::equivalence::{arg_shapes, SeededInputs};
use super::load::{load_model, pick_func};
use super::mlir::{check_target, TargetSpec};
use super::progress::Progress;
use super::{fail, Exit};
use crate::diag::{Diagnostic, SourceMap};
use crate::ir::Module;
use crate::passes;
use std::path::PathBuf;
use std::time::Duration;

/// One model `nnopt bench` times: `func` of `module` on `inputs`.
pub struct BenchModel<'a> {
    pub module: &'a Module,
    pub func: &'a str,
    pub inputs: Vec<ndarray::ArrayD<f32>>,
}

/// What `nnopt bench` measures: the time to lower and compile once, and each timed call.
pub struct BenchTimes {
    pub compile: Duration,
    pub runs: Vec<Duration>,
}

/// How many consecutive calls of one model [`bench`] times before it turns to the next.
pub const BENCH_BLOCK: usize = 10;

/// Compiles each model once for the shapes of its inputs, calls each once untimed, then times
/// `runs` calls of each, in blocks of [`BENCH_BLOCK`] calls that alternate between the models.
/// Alternating keeps a comparison fair on a shared machine: a stretch of slow runs hits every
/// model, where back-to-back series put it on one side of the ratio. Blocks rather than single
/// calls: alternating call by call evicted each model's weights from the caches for the other
/// (`docs/lowering.md`, "Memory"). A call includes what `nnopt run` does around the compiled
/// code (shape checks, argument descriptors) except allocating the outputs, which are reused;
/// not reading or writing files.
#[cfg(feature = "mlir")]
pub fn bench(
    models: &[BenchModel],
    runs: usize,
    pipeline: Option<&str>,
    threads: u64,
    cache: Option<&FileCache>,
    target: &TargetSpec,
) -> Result<Vec<BenchTimes>, Vec<Diagnostic>> {
    use crate::lower;
    let target = &super::mlir::resolve(target).map_err(|e| vec![Diagnostic::error(e)])?;
    let o = lower::CompileOptions {
        pipeline,
        threads,
        target,
        cache: cache.map(|c| c as &dyn lower::ObjectCache),
    };
    use std::time::Instant;
    let mut compiled = Vec::with_capacity(models.len());
    for b in models {
        let start = Instant::now();
        let jit = lower::compile(b.module, b.func, &b.inputs, &o)?;
        compiled.push((jit, start.elapsed()));
    }
    let mut outputs = Vec::new();
    let call = |(jit, _): &(lower::Jit, _), b: &BenchModel, outputs: &mut _| {
        jit.run_into(b.func, &b.inputs, outputs)
            .map_err(|e| vec![Diagnostic::error(e)])
    };
    for (c, b) in compiled.iter().zip(models) {
        call(c, b, &mut outputs)?;
    }
    let mut times = vec![Vec::with_capacity(runs); models.len()];
    for block in (0..runs).step_by(BENCH_BLOCK) {
        for ((c, b), t) in compiled.iter().zip(models).zip(&mut times) {
            for _ in block..runs.min(block + BENCH_BLOCK) {
                let start = Instant::now();
                call(c, b, &mut outputs)?;
                t.push(start.elapsed());
            }
        }
    }
    Ok(compiled
        .iter()
        .zip(times)
        .map(|((_, compile), runs)| BenchTimes {
            compile: *compile,
            runs,
        })
        .collect())
}

/// Without the `mlir` feature there is no compiler to time.
#[cfg(not(feature = "mlir"))]
pub fn bench(
    _: &[BenchModel],
    _: usize,
    _: Option<&str>,
    _: u64,
    _: Option<&FileCache>,
    _: &TargetSpec,
) -> Result<Vec<BenchTimes>, Vec<Diagnostic>> {
    Err(vec![Diagnostic::error(
        "this nnopt was built without the `mlir` feature; bench needs the compiler",
    )])
}

/// What `nnopt bench` times (the CLI's flags).
pub struct BenchOptions {
    pub input: PathBuf,
    pub compare: Option<PathBuf>,
    pub runs: u32,
    pub batch: u32,
    pub func: Option<String>,
    pub threads: u64,
    pub mlir_pipeline: Option<String>,
    /// Take compiled code from the user's cache and store it there (`super::cache`).
    pub cache: bool,
    pub target: TargetSpec,
    /// How ONNX models are read (`--dim`), both of them.
    pub import: crate::onnx::ImportOptions,
}

/// Inputs for `bench`: every argument with its dynamic sizes set to `batch`, filled with
/// deterministic values in [-1, 1) (token ids: valid rows of the embeddings that read them).
fn bench_inputs(f: &crate::ir::Function, batch: usize) -> Result<Vec<ndarray::ArrayD<f32>>, Exit> {
    let mut rng = SeededInputs::new(0x2545_f491_4f6c_dd1d);
    arg_shapes(f, batch)
        .into_iter()
        .zip(f.args())
        .map(|(shape, &a)| {
            let n = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
            if n.is_none_or(|n| n > 1 << 30) {
                return Err(fail(&format!(
                    "input shape {shape:?} is too large to benchmark"
                )));
            }
            Ok(rng.argument(f, a, shape))
        })
        .collect()
}

/// The CPU's model name (Linux's `/proc/cpuinfo`: `model name` on x86, `CPU part` is all
/// AArch64 gives), or `unknown CPU`.
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find(|l| l.starts_with("model name") || l.starts_with("CPU part"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown CPU".to_string(), |(_, v)| v.trim().to_string())
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

/// `nnopt bench`: loads the model (and the one to compare), times both, prints a line per
/// model and the speedup against the MAC ratio.
pub fn bench_command(args: &BenchOptions) -> Result<(), Exit> {
    let target = check_target(&args.target)?;
    let mut sources = SourceMap::new();
    let mut models = vec![(
        args.input.clone(),
        load_model(&args.input, &args.import, &mut sources)?,
    )];
    if let Some(p) = &args.compare {
        models.push((p.clone(), load_model(p, &args.import, &mut sources)?));
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
    let mut timed = Vec::new();
    let mut macs = Vec::new();
    for (path, module) in &models {
        let func = pick_func(module, args.func.as_deref(), path)?;
        macs.push(
            passes::layer_costs(func)
                .iter()
                .map(|c| c.macs)
                .sum::<u64>(),
        );
        timed.push(BenchModel {
            module,
            func: &func.name,
            inputs: bench_inputs(func, args.batch as usize)?,
        });
    }
    let times = {
        let _progress = Progress::start("compiling and timing");
        let cache = args.cache.then(FileCache::user).flatten();
        bench(
            &timed,
            args.runs as usize,
            args.mlir_pipeline.as_deref(),
            args.threads,
            cache.as_ref(),
            &args.target,
        )
    }
    .map_err(|d| {
        sources.emit_to_stderr(&d);
        Exit(1)
    })?;
    // Figures are only comparable on the same CPU and ISA: say which.
    println!("machine: {}; compiled for {target}", cpu_model());
    let mut rows = Vec::new();
    for (((path, _), b), (times, macs)) in models.iter().zip(&timed).zip(times.iter().zip(macs)) {
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

#[cfg(all(test, feature = "mlir"))]
mod tests {
    use super::*;

    /// `bench` compiles every model and times each `runs` times (its runs alternate with the
    /// other model's), in the order given, with a compile time each; inputs of the wrong shape
    /// are an error.
    #[test]
    fn bench_times_each_model() {
        let load = |text: &str| {
            let mut diags = Vec::new();
            crate::tool::load::load(text, 0, 0, std::path::Path::new("."), &mut diags)
                .unwrap_or_else(|| panic!("{diags:?}\n{text}"))
        };
        let small = load("func @f(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {\n  %y = nn.relu %x : tensor<?x4xf32>\n  return %y : tensor<?x4xf32>\n}");
        let big = load("func @g(%x: tensor<?x4xf32>) -> tensor<?x4xf32> {\n  %y = nn.sigmoid %x : tensor<?x4xf32>\n  return %y : tensor<?x4xf32>\n}");
        let input = |cols: usize| vec![ndarray::ArrayD::from_elem(ndarray::IxDyn(&[2, cols]), 0.5)];
        let models = [
            BenchModel {
                module: &small,
                func: "f",
                inputs: input(4),
            },
            BenchModel {
                module: &big,
                func: "g",
                inputs: input(4),
            },
        ];
        let times =
            bench(&models, 3, None, 1, None, &TargetSpec::default()).expect("compiles and runs");
        assert_eq!(times.len(), 2);
        assert!(times
            .iter()
            .all(|t| t.runs.len() == 3 && !t.compile.is_zero()));
        let wrong = BenchModel {
            module: &small,
            func: "f",
            inputs: input(5),
        };
        assert!(bench(&[wrong], 3, None, 1, None, &TargetSpec::default()).is_err());
    }
}
