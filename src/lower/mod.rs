//! Lowering to MLIR through melior (behind the `mlir` cargo feature).
//!
//! Today this holds the MLIR context set-up that every later lowering step needs: a context with
//! all upstream dialects and passes registered. The NNIR → linalg lowering itself is planned.

use melior::dialect::DialectRegistry;
use melior::utility::{register_all_dialects, register_all_passes};
use melior::Context;

/// A context with every upstream dialect (linalg, tensor, arith, math, func, transform, ...)
/// loaded and every upstream pass registered, as the lowering pipeline requires.
pub fn context() -> Context {
    let registry = DialectRegistry::new();
    register_all_dialects(&registry);
    let context = Context::new();
    context.append_dialect_registry(&registry);
    context.load_all_available_dialects();
    register_all_passes();
    context
}

#[cfg(test)]
mod tests {
    use super::*;
    use melior::ir::operation::OperationLike;
    use melior::ir::Module;

    /// The installed MLIR 22 accepts a linalg-on-tensors function: the toolchain the lowering
    /// needs is linked and its dialects are registered.
    #[test]
    fn linalg_on_tensors_parses_and_verifies() {
        let cx = context();
        let src = r#"
            func.func @relu(%x: tensor<4xf32>) -> tensor<4xf32> {
              %z = arith.constant 0.0 : f32
              %e = tensor.empty() : tensor<4xf32>
              %r = linalg.generic {indexing_maps = [affine_map<(d0) -> (d0)>, affine_map<(d0) -> (d0)>],
                                   iterator_types = ["parallel"]}
                   ins(%x : tensor<4xf32>) outs(%e : tensor<4xf32>) {
              ^bb0(%a: f32, %o: f32):
                %m = arith.maximumf %a, %z : f32
                linalg.yield %m : f32
              } -> tensor<4xf32>
              return %r : tensor<4xf32>
            }"#;
        let module = Module::parse(&cx, src).expect("MLIR parses the module");
        assert!(module.as_operation().verify());
        assert!(Module::parse(&cx, "func.func @f( {").is_none());
    }
}
