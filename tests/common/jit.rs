//! The compiled-against-interpreted check shared by the pruning property tests
//! (`tests/prune_exact.rs`, `tests/prune_glu.rs`), declared by those alone and only with the
//! `mlir` feature.

use ndarray::ArrayD;

/// Asserts that the JIT-compiled network (through MLIR, `nnopt::lower`, as `nnopt run`
/// compiles it, on one and on two threads) gives the interpreter's outputs to 1e-4 relative.
/// The properties that call it run fewer cases than the pruning properties: each case compiles
/// two modules with LLVM at -O3.
pub fn assert_jit_matches_interp(m: &nnopt::ir::Module, inputs: &[ArrayD<f32>]) {
    let f = &m.funcs[0];
    let want = nnopt::interp::run(f, inputs).expect("interpreter runs");
    // One compile at a time: the two JIT properties run on parallel test threads, and MLIR/LLVM
    // keep process-global registries (a race on one crashed a CI run).
    static COMPILE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    for threads in [1, 2] {
        let got = nnopt::lower::compile_and_run(
            m,
            &f.name,
            inputs,
            &nnopt::lower::CompileOptions {
                pipeline: None,
                threads,
                target: &nnopt::lower::Target::host(),
                cache: None,
            },
        )
        .unwrap_or_else(|d| {
            panic!(
                "compiled run failed: {d:?}\n{}",
                nnopt::syntax::printer::print_module(m)
            )
        });
        assert_eq!(want.len(), got.len());
        for (x, y) in want.iter().zip(&got) {
            assert_eq!(x.shape(), y.shape());
            for (p, q) in x.iter().zip(y.iter()) {
                let tol = 1e-4 * p.abs().max(q.abs()).max(1.0);
                assert!(
                    (p - q).abs() <= tol,
                    "interpreter {p} vs compiled {q} ({threads} threads)"
                );
            }
        }
    }
}
