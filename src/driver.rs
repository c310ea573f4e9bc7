//! The types `nnopt bench` hands to the lowering's benchmark harness. They stay here until the
//! harness moves to the CLI layer (`src/tool/bench.rs`); the CLI layer itself is `src/tool/`.

/// One model `nnopt bench` times: `func` of `module` on `inputs`.
pub struct BenchModel<'a> {
    pub module: &'a crate::ir::Module,
    pub func: &'a str,
    pub inputs: Vec<ndarray::ArrayD<f32>>,
}

/// What `nnopt bench` measures: the time to lower and compile once, and each timed call.
pub struct BenchTimes {
    pub compile: std::time::Duration,
    pub runs: Vec<std::time::Duration>,
}
