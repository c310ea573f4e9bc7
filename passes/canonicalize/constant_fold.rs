//! `constant-fold`: replaces an op whose operands are all constant by its value.
//! Preconditions: none. Idempotent: a folded op is a constant, which does not fold again.

use crate::ir::{ElemType, OpId, OpKind, OpTag, Tensor};
use crate::passes::PassContext;
use crate::rewrite::{ensure, MatchFailure, MatchResult, Pattern, Rewriter};

/// `op(c₁, …, cₙ)` with constant operands → `nn.constant eval(op)(c₁, …, cₙ)`.
///
/// Evaluated by the reference interpreter's kernels ([`crate::interp::eval_op`]), so a folded
/// value is exactly what execution would compute. Only f32 results fold (the interpreter does
/// not round f16/bf16 intermediates, so a folded, rounded constant would differ from it), and
/// only when the result is no larger than the operands together or 64k elements: folding must
/// not turn a small graph into a huge constant.
///
/// Exact: the constant is the value the op computes, by the same kernel.
pub struct ConstantFold;

const FOLD_LIMIT: u64 = 1 << 16;

impl Pattern<PassContext> for ConstantFold {
    fn name(&self) -> &'static str {
        "constant-fold"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        None
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PassContext) -> MatchResult {
        let f = rw.func();
        let data = f.op(op);
        ensure(
            !matches!(
                data.kind,
                OpKind::Constant(_) | OpKind::Weight { .. } | OpKind::Return
            ) && !data.operands().is_empty(),
            "a constant, a weight, the terminator or an op without operands",
        )?;
        let r = data.result().ok_or(MatchFailure("no result"))?;
        let ty = f.ty(r);
        let (Some(shape), ElemType::F32) = (ty.static_shape(), ty.elem) else {
            return Err(MatchFailure("the result is not a static f32 tensor"));
        };
        let inputs = data
            .operands()
            .iter()
            .map(|&v| f.constant_of(v))
            .collect::<Option<Vec<&Tensor>>>()
            .ok_or(MatchFailure("an operand is not constant"))?;
        let operand_size: u64 = inputs.iter().map(|t| t.len() as u64).sum();
        ensure(
            ty.num_elements().unwrap_or(u64::MAX) <= operand_size.max(FOLD_LIMIT),
            "the result would be larger than the operands and the folding limit",
        )?;
        let arrays = inputs
            .iter()
            .map(|t| crate::interp::tensor_to_array(t))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| MatchFailure("an operand has no interpreter array"))?;
        let refs: Vec<_> = arrays.iter().collect();
        let value = crate::interp::eval_op(f, op, &refs)
            .map_err(|_| MatchFailure("the interpreter cannot evaluate the op"))?;
        let values: Vec<f32> = value.iter().copied().collect();
        let c = rw.derived_constant_before(op, Tensor::from_f32(ElemType::F32, shape, &values), r);
        rw.replace_op(op, c);
        cx.count("ops constant-folded", 1);
        Ok(())
    }
}
