//! Static shapes for code generation: tiled and vectorized schedules need static loop bounds.

use crate::ir::infer::infer_type;
use crate::ir::{Function, OpId, OpKind, TensorType};
use crate::rewrite::Rewriter;

/// Gives `f`'s arguments the static `shapes` and re-infers every result type from them, so
/// that code generation sees static sizes (`nnopt run` and `nnopt bench` compile for the input
/// shapes they are given; tiled and vectorized schedules need static loop bounds).
pub fn specialize(f: &mut Function, shapes: &[Vec<usize>]) -> Result<(), String> {
    if shapes.len() != f.args().len() {
        return Err(format!(
            "@{} takes {} arguments, not {}",
            f.name,
            f.args().len(),
            shapes.len()
        ));
    }
    let args = f.args().to_vec();
    let ops: Vec<OpId> = f.ops().collect();
    let mut rw = Rewriter::new(f);
    for (i, (&a, shape)) in args.iter().zip(shapes).enumerate() {
        let ty = rw.func().ty(a);
        let fixed: Vec<u64> = shape.iter().map(|&n| n as u64).collect();
        let new = TensorType::fixed(&fixed, ty.elem);
        if !new.compatible(ty) {
            return Err(format!(
                "input {i} of @{} has shape {shape:?} but the argument has type {ty}",
                rw.func().name
            ));
        }
        rw.set_type(a, new);
    }
    let mut results = Vec::new();
    for op in ops {
        if let OpKind::Return = rw.func().kind(op) {
            results = rw
                .func()
                .op(op)
                .operands()
                .iter()
                .map(|&v| rw.func().ty(v).clone())
                .collect();
        } else if let Some(r) = rw.func().op(op).result() {
            let ty = infer_type(rw.func(), op).map_err(|e| {
                format!(
                    "with the given input shapes, '{}' op: {e}",
                    rw.func().kind(op).mnemonic()
                )
            })?;
            rw.set_type(r, ty);
        }
    }
    rw.set_result_types(results);
    Ok(())
}
