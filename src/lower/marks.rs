//! Marks for the transform schedule: the discardable `nnopt.*` attributes (`nnopt.kernel`,
//! `nnopt.root`, `nnopt.part`, `nnopt.pad_copy`, `nnopt.spread`) that tell `schedule.rs` which
//! ops form a layer, and the raw MLIR op surgery that goes with recording a layer.
//!
//! A mark's value is the layer's index in [`super::Lowered::layers`] (for `nnopt.spread`, the
//! axis to split along). The attribute names are the contract with `schedule.rs`'s script.

use super::abi::DimVal;
use super::mlir_ops::{BResult, BuildError};
use super::schedule::Layer;
use super::state::Lower;
use crate::ir::OpId;
use melior::ir::attribute::IntegerAttribute;
use melior::ir::operation::{OperationLike, OperationMutLike, OperationRefMut, OperationResult};
use melior::ir::r#type::IntegerType;
use melior::ir::{Value, ValueLike};
use melior::Context;

/// Sets the discardable attribute `nnopt.<name> = index` on the op defining `v`: the handle a
/// transform schedule matches.
pub(super) fn mark(cx: &Context, v: Value, name: &str, index: usize) -> BResult<()> {
    let attr = IntegerAttribute::new(IntegerType::new(cx, 64).into(), index as i64);
    owner(v)?.set_discardable_attribute(&format!("nnopt.{name}"), attr.into());
    Ok(())
}

/// Removes the mark `nnopt.<name>` from the op defining `v`.
pub(super) fn unmark(v: Value, name: &str) -> BResult<()> {
    owner(v)?
        .remove_discardable_attribute(&format!("nnopt.{name}"))
        .map_err(|e| BuildError(e.to_string()))
}

/// The last operand of `v`'s op: a linalg op's init (`outs`).
pub(super) fn last_operand<'c: 'a, 'a>(v: Value<'c, 'a>) -> BResult<Value<'c, 'a>> {
    let op = owner(v)?;
    let last = op.operand_count() - 1;
    <OperationRefMut<'c, 'a> as OperationLike<'c, 'a>>::operand(&op, last)
        .map_err(|e| BuildError(e.to_string()))
}

/// Makes the op of `v` (a layer's bias add or fused activation, which does not read its init)
/// write into `empty`, the `tensor.empty` under the kernel's zero fill, instead of its own.
/// One-shot bufferization then gives the fill's tiles a small buffer and the layer one output
/// buffer; with two empties every tile's zeros would go through a second buffer of the
/// layer's full size.
pub(super) fn share_init<'c: 'a, 'a>(v: Value<'c, 'a>, empty: Value<'c, 'a>) -> BResult<()> {
    let own = last_operand(v)?;
    let mut op = owner(v)?;
    let last = op.operand_count() - 1;
    op.set_operand(last, empty);
    // Its own `tensor.empty`, made for it and now unused, goes (canonicalization would drop
    // it, but `--emit=mlir` prints the module before any pass).
    let made = owner(own)?;
    // SAFETY: `own` is a live value; its op is destroyed only when nothing uses its result.
    unsafe {
        if made.name().as_string_ref().as_str() == Ok("tensor.empty")
            && mlir_sys::mlirValueGetFirstUse(own.to_raw()).ptr.is_null()
        {
            mlir_sys::mlirOperationDestroy(made.to_raw());
        }
    }
    Ok(())
}

/// The name of the op defining `v`.
pub(super) fn op_name(v: Value) -> BResult<String> {
    Ok(owner(v)?
        .name()
        .as_string_ref()
        .as_str()
        .map_err(|e| BuildError(e.to_string()))?
        .to_string())
}

pub(super) fn owner<'c, 'a>(v: Value<'c, 'a>) -> BResult<OperationRefMut<'c, 'a>> {
    let r = OperationResult::try_from(v).map_err(|e| BuildError(e.to_string()))?;
    // SAFETY: the op is alive (it defines `v`, which the lowering holds) and nothing else
    // borrows it while its attributes change.
    Ok(unsafe { OperationRefMut::from_raw(r.owner().to_raw()) })
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// Records `layer` for the transform schedule and marks its ops: `kernel` is the matmul or
    /// conv, `root` the last op of the layer (the bias add, or the kernel itself). When the
    /// layer's only user is a cheap activation, that activation becomes the root instead (see
    /// [`Lower::fuse_epilogue`]).
    pub(super) fn record_layer(
        &mut self,
        op: OpId,
        kernel: Value<'c, 'b>,
        root: Value<'c, 'b>,
        layer: Layer,
    ) -> BResult<()> {
        let i = self.layers.len();
        self.layers.push(layer);
        mark(self.cx, kernel, "kernel", i)?;
        mark(self.cx, root, "root", i)?;
        // The ops a threaded schedule moves into the root's `scf.forall`: the kernel (unless
        // it is the root, which the forall tiles itself) and the fill it accumulates into
        // (its init, the last operand).
        if kernel != root {
            mark(self.cx, kernel, "part", i)?;
        }
        let init = last_operand(kernel)?;
        mark(self.cx, init, "part", i)?;
        if kernel != root {
            share_init(root, last_operand(init)?)?;
        }
        let r = self
            .f
            .op(op)
            .result()
            .expect("invariant: a layer has a result");
        self.epilogue_slot(r, i, root);
        Ok(())
    }

    /// Marks an element-wise op outside any layer (a residual add, an activation, a padded conv
    /// input's zero fill) with the axis a threaded schedule splits it along (`nnopt.spread`):
    /// the first of the two outermost axes with at least 2 elements, when every size is static.
    /// Unmarked, such an op runs on one thread while the others wait.
    pub(super) fn spread(&self, y: Value<'c, 'b>, dims: &[DimVal]) -> BResult<()> {
        let sizes: Option<Vec<u64>> = dims.iter().map(|d| d.as_static()).collect();
        match sizes.and_then(|s| s.iter().take(2).position(|&n| n >= 2)) {
            Some(axis) => mark(self.cx, y, "spread", axis),
            None => Ok(()),
        }
    }
}
