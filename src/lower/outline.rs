//! Outlining every serial loop nest of a compiled function into its own function, and merging the
//! identical ones, between the two halves of the scheduled pipeline (after bufferization and
//! `convert-linalg-to-loops`, where a layer is one top-level loop nest on memrefs).
//!
//! Why: LLVM's optimizer is superlinear in the size of a function (`IndVarSimplify` and
//! instruction combining re-walk the whole function per loop), and a whole network lowered into
//! one function made it the bulk of a compile. Small functions keep LLVM's work linear in the
//! number of layers, and repeated layers of the same shapes (a ResNet stage's blocks) become
//! one function called several times (`duplicate-function-elimination`), so their code is
//! optimized once. The outlined functions are `internal` (LLVM propagates the constants they
//! are called with and drops unused arguments) and `noinline` (else LLVM's inliner folds a
//! function with a single call back into the network). Figures in `docs/performance.md`.

use super::diag_capture::DiagCapture;
use melior::ir::attribute::Attribute;
use melior::ir::operation::{OperationLike, OperationMutLike};
use melior::ir::{BlockLike, Module as MlirModule, Operation, RegionLike};
use melior::Context;

/// The loop ops outlined: a layer's tiles, and the loop fallback of the unscheduled ops. Not
/// `scf.parallel` (a layer split into `threads` tasks): compiled code crashed when
/// `async-parallel-for` ran on one in an outlined function, so with threads those layers stay
/// in the network's function.
const LOOPS: [&str; 1] = ["scf.for"];

/// The mark of a loop nest to outline (a unit attribute).
const MARK: &str = "nnopt.outline";

/// The transform script that outlines the marked loops, each into a private, internal,
/// `noinline` function `@nnopt_loop`, `@nnopt_loop_0`, ... (the symbol table's renaming).
const SCRIPT: &str = r#"module @__nnopt_outline attributes {transform.with_named_sequence, sym_visibility = "private"} {
  transform.named_sequence @__transform_main(%root: !transform.any_op {transform.readonly}) {
    %loops = transform.structured.match attributes {nnopt.outline} in %root : (!transform.any_op) -> !transform.any_op
    %funcs, %calls = transform.loop.outline %loops {func_name = "nnopt_loop"} : (!transform.any_op) -> (!transform.any_op, !transform.any_op)
    %private = transform.param.constant "private" -> !transform.any_param
    transform.annotate %funcs "sym_visibility" = %private : !transform.any_op, !transform.any_param
    %internal = transform.param.constant #llvm.linkage<internal> -> !transform.any_param
    transform.annotate %funcs "llvm.linkage" = %internal : !transform.any_op, !transform.any_param
    %noinline = transform.param.constant ["noinline"] -> !transform.any_param
    transform.annotate %funcs "passthrough" = %noinline : !transform.any_op, !transform.any_param
    transform.yield
  }
}
"#;

/// What runs the script: outline, drop the script, merge identical functions, and inline the
/// `scf.execute_region`s the outlining leaves around each call.
pub const PIPELINE: &str =
    "builtin.module(transform-interpreter,symbol-dce,duplicate-function-elimination,canonicalize)";

/// Outlines each top-level loop nest of every function of `module` (see the module docs).
/// Returns the number of loop nests outlined.
pub fn loop_nests(cx: &Context, module: &mut MlirModule) -> Result<usize, String> {
    let count = mark(cx, module);
    if count == 0 {
        return Ok(0);
    }
    let capture = DiagCapture::new(cx);
    // Wrapped: a lone top-level module would be parsed as the module itself.
    let parsed = MlirModule::parse(cx, &format!("module {{\n{SCRIPT}}}\n")).ok_or_else(|| {
        format!(
            "internal error: the outlining script does not parse:\n{}",
            capture.take()
        )
    })?;
    let op = parsed
        .body()
        .first_operation()
        .ok_or_else(|| "internal error: empty outlining script".to_string())?;
    // SAFETY: `op` is a live operation of `parsed`; the clone is a new, unowned operation that
    // the payload's body takes ownership of.
    let copy = unsafe { Operation::from_raw(mlir_sys::mlirOperationClone(op.to_raw())) };
    module.body().append_operation(copy);
    super::jit::run_mlir_pipeline(cx, module, PIPELINE)?;
    Ok(count)
}

/// Marks every loop at the top level of a function body with [`MARK`]; returns how many.
fn mark(cx: &Context, module: &MlirModule) -> usize {
    let unit = Attribute::unit(cx);
    let mut count = 0;
    let mut func = module.body().first_operation();
    while let Some(f) = func {
        if f.name().as_string_ref().as_str() == Ok("func.func") {
            let body = f.region(0).ok().and_then(|r| r.first_block());
            let mut op = body.and_then(|b| b.first_operation_mut());
            while let Some(mut o) = op {
                let name = o.name();
                if LOOPS.contains(&name.as_string_ref().as_str().unwrap_or("")) {
                    o.set_discardable_attribute(MARK, unit);
                    count += 1;
                }
                op = o.next_in_block_mut();
            }
        }
        func = f.next_in_block();
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_level_loops_become_functions_and_identical_ones_merge() {
        let cx = super::super::context();
        let text = r#"
func.func @main(%a: memref<8xf32>, %b: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %one = arith.constant 1.0 : f32
  scf.for %i = %c0 to %c8 step %c1 {
    scf.for %j = %c0 to %c8 step %c1 {
      memref.store %one, %a[%i] : memref<8xf32>
    }
  }
  scf.for %i = %c0 to %c8 step %c1 {
    scf.for %j = %c0 to %c8 step %c1 {
      memref.store %one, %b[%i] : memref<8xf32>
    }
  }
  return
}
"#;
        let mut module = MlirModule::parse(&cx, text).expect("parses");
        assert_eq!(loop_nests(&cx, &mut module), Ok(2));
        assert!(module.as_operation().verify());
        let out = module.as_operation().to_string();
        // Two loop nests, one function: both calls go to it, with the constant as an argument
        // (LLVM propagates it into the internal function).
        assert_eq!(
            out.matches("func.func private @nnopt_loop").count(),
            1,
            "{out}"
        );
        assert_eq!(out.matches("call @nnopt_loop(").count(), 2, "{out}");
        assert!(out.contains("#llvm.linkage<internal>"), "{out}");
        assert!(out.contains("passthrough = [\"noinline\"]"), "{out}");
        assert!(!out.contains("scf.execute_region"), "{out}");
        // The nested loop stays inside its nest's function.
        let main = &out[out.find("func.func @main").expect("main is kept")..];
        assert!(!main.contains("scf.for"), "{out}");
    }
}
