//! Appending construction of a function, used while reading text and by tests that build IR.
//!
//! The builder only appends; it does not check types (the verifier does, once the function is
//! complete), so a reader can report every problem of a file instead of stopping at the first.

use super::{Function, Loc, OpId, OpKind, TensorType, ValueId};
use crate::diag::Span;

pub struct FuncBuilder<'f> {
    func: &'f mut Function,
}

impl<'f> FuncBuilder<'f> {
    pub fn new(func: &'f mut Function) -> FuncBuilder<'f> {
        FuncBuilder { func }
    }

    pub fn func(&self) -> &Function {
        self.func
    }

    pub fn add_arg(&mut self, ty: TensorType, name: Option<String>, span: Span) -> ValueId {
        self.func.add_arg(ty, name, span)
    }

    pub fn set_result_types(&mut self, types: Vec<TensorType>) {
        self.func.result_types = types;
    }

    /// Appends an op with a result of type `ty` and returns the result value.
    pub fn push(
        &mut self,
        kind: OpKind,
        operands: &[ValueId],
        ty: TensorType,
        name: Option<String>,
        span: Span,
    ) -> ValueId {
        let op = self.func.create_op(kind, operands, Some((ty, name)), span);
        self.func.layout.append(op);
        self.func.ops[op]
            .result()
            .expect("invariant: created with a result")
    }

    /// Appends the `return` terminator.
    pub fn push_return(&mut self, operands: &[ValueId], span: Span) -> OpId {
        let op = self.func.create_op(OpKind::Return, operands, None, span);
        self.func.layout.append(op);
        op
    }

    /// Attaches an MLIR-style location to an op.
    pub fn set_loc(&mut self, op: OpId, loc: Loc) {
        self.func.op_locs[op] = Some(loc);
    }
}
