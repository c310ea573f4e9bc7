//! Appending construction of a function, used while reading text and by tests that build IR.
//!
//! The builder only appends; it does not check types (the verifier does, once the function is
//! complete), so a reader can report every problem of a file instead of stopping at the first.

use super::{Function, Loc, OpId, OpKind, TensorType, ValueId};
use crate::diag::Span;

/// Appends ops to the end of a function's block.
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

    /// Appends an op whose result type is inferred ([`super::infer::infer_type`]; for importers
    /// of other formats, which know the operands but not the NNIR result type). On a type error
    /// nothing is linked and the message is the one the verifier would report.
    pub fn push_inferred(
        &mut self,
        kind: OpKind,
        operands: &[ValueId],
        name: Option<String>,
        span: Span,
    ) -> Result<ValueId, String> {
        if !kind.tag().arity().accepts(operands.len()) {
            return Err(format!(
                "'{}' cannot take {} operands",
                kind.mnemonic(),
                operands.len()
            ));
        }
        // A placeholder type until inference has run; the op is not linked before then.
        let placeholder = TensorType::fixed(&[], super::ElemType::F32);
        let op = self
            .func
            .create_op(kind, operands, Some((placeholder, name)), span);
        let v = self.func.ops[op]
            .result()
            .expect("invariant: created with a result");
        match super::infer::infer_type(self.func, op) {
            Ok(ty) => {
                self.func.values[v].ty = ty;
                self.func.layout.append(op);
                Ok(v)
            }
            Err(e) => {
                // Leave an unlinked tombstone without uses, like an erased op.
                self.func.set_operands(op, &[]);
                Err(e)
            }
        }
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
