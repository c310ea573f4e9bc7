//! `nnopt bench`: the timing harness. Compiles each model once through the lowering's public
//! API (`lower::compile`) and times repeated calls of the compiled code, alternating between
//! the models in blocks so that a comparison is fair on a shared machine.
//!
//! What it does not do: read models or inputs, or print; the CLI does that around it. Built
//! without the `mlir` feature, [`bench`] reports that the compiler is missing.

use crate::diag::Diagnostic;
use crate::ir::Module;
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
) -> Result<Vec<BenchTimes>, Vec<Diagnostic>> {
    use crate::lower;
    use std::time::Instant;
    let cx = lower::context();
    let mut compiled = Vec::with_capacity(models.len());
    for b in models {
        let start = Instant::now();
        let jit = lower::compile(&cx, b.module, b.func, &b.inputs, pipeline, threads)?;
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
) -> Result<Vec<BenchTimes>, Vec<Diagnostic>> {
    Err(vec![Diagnostic::error(
        "this nnopt was built without the `mlir` feature; bench needs the compiler",
    )])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bench` compiles every model and times each `runs` times (its runs alternate with the
    /// other model's), in the order given, with a compile time each; inputs of the wrong shape
    /// are an error.
    #[cfg(feature = "mlir")]
    #[test]
    fn bench_times_each_model() {
        let load = |text: &str| {
            let mut diags = Vec::new();
            crate::driver::load(text, 0, 0, std::path::Path::new("."), &mut diags)
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
        let times = bench(&models, 3, None, 1).expect("compiles and runs");
        assert_eq!(times.len(), 2);
        assert!(times
            .iter()
            .all(|t| t.runs.len() == 3 && !t.compile.is_zero()));
        let wrong = BenchModel {
            module: &small,
            func: "f",
            inputs: input(5),
        };
        assert!(bench(&[wrong], 3, None, 1).is_err());
    }
}
