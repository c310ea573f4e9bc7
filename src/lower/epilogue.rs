//! Epilogue fusion: an activation or a residual add that is the only user of a scheduled
//! layer becomes that layer's root, so the schedule computes it in the layer's tiles instead
//! of in a pass over memory of its own.
//!
//! A layer's result is offered once ([`Lower::epilogue_slot`]); whichever op takes it moves the
//! layer's `nnopt.root` mark onto itself and writes into the layer's `tensor.empty`.

use super::marks::{last_operand, mark, share_init, unmark};
use super::mlir_ops::BResult;
use super::state::Lower;
use crate::ir::{OpId, OpKind, ValueId};
use melior::ir::Value;

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// Offers `r`, computed by layer `i` with current root `root`, to its only user as an
    /// epilogue: an activation that is plain arith ops (a fused epilogue is vectorized with
    /// the tile, and math functions such as erf and tanh would need a vector libm), or an add
    /// (fused when its other operand is computed in the same form: a residual connection).
    pub(super) fn epilogue_slot(&mut self, r: ValueId, i: usize, root: Value<'c, 'b>) {
        if let [u] = self.f.uses(r) {
            if matches!(
                self.f.kind(u.op),
                OpKind::Relu | OpKind::LeakyRelu { .. } | OpKind::Clip { .. } | OpKind::Add
            ) {
                self.epilogue.insert(r, (i, root));
            }
        }
    }

    /// The activation that is the only user of `op`'s result, to be computed in `op`'s own
    /// loop nest (a depthwise conv's, `window.rs`): its kind, and the activation is recorded
    /// as absorbed, so that its own lowering only names the result. Any activation qualifies:
    /// the loop nest is left to LLVM's vectorizer, and every activation's body is arith ops.
    pub(super) fn absorb_activation(&mut self, op: OpId) -> Option<OpKind> {
        let r = self.f.op(op).result()?;
        let [u] = self.f.uses(r) else { return None };
        let kind = self.f.kind(u.op).clone();
        let absorbable = kind.tag().is_elementwise_unary() && !matches!(kind, OpKind::Identity);
        absorbable.then(|| {
            self.absorbed.insert(u.op);
            kind
        })
    }

    /// Moves a layer's root mark to the op `y` that consumes it (an activation, a residual
    /// add), so the schedule tiles `y` and fuses the whole layer into it. The layer's index,
    /// or `None` when `input` is no layer's.
    pub(super) fn fuse_epilogue(
        &mut self,
        input: ValueId,
        y: Value<'c, 'b>,
    ) -> BResult<Option<usize>> {
        let Some((i, prev)) = self.epilogue.remove(&input) else {
            return Ok(None);
        };
        unmark(prev, "root")?;
        mark(self.cx, prev, "part", i)?;
        mark(self.cx, y, "root", i)?;
        share_init(y, last_operand(prev)?)?;
        Ok(Some(i))
    }

    /// `a + b` in the epilogue of the layer computing `a` or `b`, when both are computed in
    /// the same form (two flat convs of one geometry, or a flat conv and an activation fused
    /// into one): the residual add, and an activation after it, run in that layer's tiles
    /// instead of as two passes over memory of their own (`x = conv(…) + r; relu(x)` is
    /// onnxruntime's fused Conv + Add + Relu). The other operand is read in its computed
    /// form, through a barrier so its producer is not pulled into the tiles. Returns whether
    /// it fused.
    pub(super) fn fuse_residual(&mut self, op: OpId, operands: &[ValueId]) -> BResult<bool> {
        let &[a, b] = operands else { return Ok(false) };
        let (Some(&(ay, av)), Some(&(by, bv))) = (self.views.get(&a), self.views.get(&b)) else {
            return Ok(false);
        };
        // The layer whose epilogue takes the add; `b` first: the later operand of a
        // residual block is usually the block's last layer.
        let Some(layer) = [b, a].into_iter().find(|v| self.epilogue.contains_key(v)) else {
            return Ok(false);
        };
        if a == b || av != bv {
            return Ok(false);
        }
        let full = av.full_dims();
        let (ay, by) = if layer == a {
            (ay, self.barrier(by, &full)?)
        } else {
            (self.barrier(ay, &full)?, by)
        };
        let ids: Vec<Option<usize>> = (0..full.len()).map(Some).collect();
        let y = self.elementwise(&[(ay, ids.clone()), (by, ids)], &full, |e, v| {
            e.binf("arith.addf", v[0], v[1])
        })?;
        let i = self
            .fuse_epilogue(layer, y)?
            .expect("invariant: the layer is in an epilogue slot");
        self.define_view(op, y, av, Some((i, y)))?;
        Ok(true)
    }
}
