//! The `Rewriter`: the only way passes change a function.
//!
//! Every mutation goes through one of `Function`'s raw mutators (which keep use-lists and
//! layout consistent) and is recorded as an [`Event`], from which the greedy driver re-queues
//! the affected ops and brings its analysis up to date.

use crate::ir::{Function, OpId, OpKind, Tensor, TensorType, ValueDef, ValueId};

/// A change made through the rewriter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Created(OpId),
    Erased(OpId),
    /// Attributes, operands or result type changed in place.
    Modified(OpId),
    /// All uses of `from` now use `to`.
    Replaced {
        from: ValueId,
        to: ValueId,
    },
}

/// Mutable access to one function that records what it changes.
pub struct Rewriter<'f> {
    func: &'f mut Function,
    events: Vec<Event>,
}

impl<'f> Rewriter<'f> {
    pub fn new(func: &'f mut Function) -> Rewriter<'f> {
        Rewriter {
            func,
            events: Vec::new(),
        }
    }

    pub fn func(&self) -> &Function {
        self.func
    }

    /// Changes recorded since the last call.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Creates an op with a result of type `ty` right before `anchor`; returns its result. The new
    /// op inherits `anchor`'s span so diagnostics about it point at the code it came from.
    pub fn insert_before(
        &mut self,
        anchor: OpId,
        kind: OpKind,
        operands: &[ValueId],
        ty: TensorType,
    ) -> ValueId {
        let span = self.func.span(anchor);
        let op = self
            .func
            .raw_insert_before(anchor, kind, operands, ty, span);
        self.events.push(Event::Created(op));
        self.func
            .op(op)
            .result()
            .expect("invariant: created with a result")
    }

    /// Creates a constant before `anchor`.
    pub fn constant_before(&mut self, anchor: OpId, value: Tensor) -> ValueId {
        let ty = value.ty();
        self.insert_before(anchor, OpKind::Constant(value), &[], ty)
    }

    /// Creates a constant before `anchor` that replaces `like` (a slice or rescaling of it). It
    /// keeps `like`'s value name and the name of the weight it came from, so that a pruned
    /// `%w1 = nn.weight "fc1.weight"` still prints as `%w1` and is written back to safetensors
    /// as `fc1.weight`.
    pub fn derived_constant_before(
        &mut self,
        anchor: OpId,
        value: Tensor,
        like: ValueId,
    ) -> ValueId {
        let v = self.constant_before(anchor, value);
        let weight_name = match self.func.producer_kind(like) {
            Some(OpKind::Weight { name, .. }) => Some(name.clone()),
            _ => self.func.value(like).weight_name.clone(),
        };
        let name = self.func.value(like).name.clone();
        let data = self.func.raw_value_mut(v);
        data.name = name;
        data.weight_name = weight_name;
        v
    }

    /// Gives `to` the printed name of `from` (a value that replaces another keeps its name).
    pub fn copy_name(&mut self, from: ValueId, to: ValueId) {
        self.func.raw_value_mut(to).name = self.func.value(from).name.clone();
    }

    /// Replaces every use of `from` by `to` (which must have a compatible type).
    pub fn replace_all_uses(&mut self, from: ValueId, to: ValueId) {
        if from == to {
            return;
        }
        for u in self.func.raw_replace_all_uses(from, to) {
            self.events.push(Event::Modified(u.op));
        }
        self.events.push(Event::Replaced { from, to });
    }

    /// Replaces the uses of `op`'s result by `v` and erases `op`.
    pub fn replace_op(&mut self, op: OpId, v: ValueId) {
        if let Some(r) = self.func.op(op).result() {
            self.replace_all_uses(r, v);
        }
        self.erase_op(op);
    }

    /// Erases an op whose result is unused.
    pub fn erase_op(&mut self, op: OpId) {
        self.func.raw_erase(op);
        self.events.push(Event::Erased(op));
    }

    pub fn set_operand(&mut self, op: OpId, index: usize, v: ValueId) {
        self.func.raw_set_operand(op, index, v);
        self.events.push(Event::Modified(op));
    }

    pub fn set_operands(&mut self, op: OpId, operands: &[ValueId]) {
        self.func.raw_set_operands(op, operands);
        self.events.push(Event::Modified(op));
    }

    pub fn set_kind(&mut self, op: OpId, kind: OpKind) {
        self.func.raw_set_kind(op, kind);
        self.events.push(Event::Modified(op));
    }

    /// Changes the type of a value in place (an op result, or an argument's type when a pass
    /// changes a function's signature). Users must be updated by the caller so that the function
    /// verifies again when the pass ends.
    pub fn set_type(&mut self, v: ValueId, ty: TensorType) {
        let data = self.func.raw_value_mut(v);
        data.ty = ty;
        if let ValueDef::OpResult(op) = data.def {
            self.events.push(Event::Modified(op));
        }
    }

    /// Sets the declared result types (used when a pass changes what a function returns).
    pub fn set_result_types(&mut self, types: Vec<TensorType>) {
        self.func.raw_set_result_types(types);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::Span;
    use crate::ir::builder::FuncBuilder;
    use crate::ir::ElemType;

    fn t(n: u64) -> TensorType {
        TensorType::fixed(&[n], ElemType::F32)
    }

    #[test]
    fn use_lists_follow_every_mutation() {
        let mut f = Function::new("f", Span::default());
        let mut b = FuncBuilder::new(&mut f);
        let x = b.add_arg(t(4), Some("x".into()), Span::default());
        let r = b.push(OpKind::Relu, &[x], t(4), None, Span::default());
        let s = b.push(OpKind::Sigmoid, &[r], t(4), None, Span::default());
        b.push_return(&[s], Span::default());
        assert_eq!(f.uses(x).len(), 1);

        let relu = f.producer(r).unwrap();
        let sig = f.producer(s).unwrap();
        let mut rw = Rewriter::new(&mut f);
        rw.replace_op(relu, x);
        assert_eq!(rw.func().uses(x), &[crate::ir::Use { op: sig, index: 0 }]);
        assert!(!rw.func().is_linked(relu));
        let id = rw.insert_before(sig, OpKind::Tanh, &[x], t(4));
        rw.set_operand(sig, 0, id);
        assert_eq!(rw.func().uses(x).len(), 1);
        assert_eq!(rw.func().uses(id).len(), 1);
        let order: Vec<_> = rw
            .func()
            .ops()
            .map(|o| rw.func().kind(o).mnemonic())
            .collect();
        assert_eq!(order, ["nn.tanh", "nn.sigmoid", "return"]);
        assert!(rw.events().contains(&Event::Erased(relu)));
    }
}
