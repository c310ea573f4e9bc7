//! Views: a scheduled layer computes its result in another form (a flat conv in `wp`-wide
//! rows, a packed dense layer in whole 32-column panels), and its NNIR result is a view of
//! that form ([`View`], defined in `state.rs` next to the map that records it). Consumers that
//! can read the computed form (an epilogue, a residual add, a pointwise or padded conv) take it
//! from [`Lower::views`]; others read the view, copied to a contiguous tensor where a strided
//! view would break them.

use super::abi::{shape, DimVal};
use super::mlir_ops::BResult;
use super::state::{Lower, View};
use crate::ir::{OpId, ValueId};
use melior::ir::{Value, ValueLike};

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// Defines `op`'s result as `view` of `y`, its computed form (see [`Lower::set_view`]).
    pub(super) fn define_view(
        &mut self,
        op: OpId,
        y: Value<'c, 'b>,
        view: View,
        layer: Option<(usize, Value<'c, 'b>)>,
    ) -> BResult<()> {
        match self.f.op(op).result() {
            Some(r) => self.set_view(r, y, view, layer),
            None => Ok(()),
        }
    }

    /// Makes `r` the value `view` of `y`, its computed form, and records that form for
    /// consumers that can read it (an activation, a residual add, a pointwise conv, a padded
    /// conv); with `layer`, `r` is offered to its only user as the layer's epilogue.
    pub(super) fn set_view(
        &mut self,
        r: ValueId,
        y: Value<'c, 'b>,
        view: View,
        layer: Option<(usize, Value<'c, 'b>)>,
    ) -> BResult<()> {
        let out = self.view(y, view)?;
        self.views.insert(r, (y, view));
        if let Some((i, root)) = layer {
            self.epilogue_slot(r, i, root);
        }
        self.vals.insert(r, out);
        self.dims.insert(r, view.dims());
        Ok(())
    }

    /// The result `view` makes of `y`, a layer's computed form; recorded in `strided` unless
    /// it is contiguous.
    pub(super) fn view(&mut self, y: Value<'c, 'b>, view: View) -> BResult<Value<'c, 'b>> {
        let v = self.view_of(y, view)?;
        let contiguous = match view {
            View::Rows(r) => r.len == r.ho * r.wp && r.wo == r.wp,
            View::Cols { n, npad, .. } => n == npad,
        };
        if !contiguous {
            self.strided.insert(v.to_raw().ptr as usize);
        }
        Ok(v)
    }

    /// `x`, copied into a contiguous tensor if it is a strided view (see [`Lower::view`]):
    /// collapsing such a view keeps a non-unit innermost stride when the collapsed axes have
    /// size 1 (a conv's 1x1 output flattened), which the vector transfers of a scheduled
    /// layer reading it cannot lower to LLVM.
    pub(super) fn contiguous(&self, x: Value<'c, 'b>, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        if !self.is_strided(x) {
            return Ok(x);
        }
        let init = self.empty(dims)?;
        self.e
            .named_linalg("linalg.copy", &[x], init, self.ty(dims), &[])
    }

    /// Whether `x` is a view that is not contiguous (see [`Lower::view`]).
    pub(super) fn is_strided(&self, x: Value<'c, 'b>) -> bool {
        self.strided.contains(&(x.to_raw().ptr as usize))
    }

    fn view_of(&self, y: Value<'c, 'b>, view: View) -> BResult<Value<'c, 'b>> {
        let r = match view {
            View::Rows(r) => r,
            View::Cols { m, n, npad, .. } => {
                let full = [m, DimVal::Static(npad)];
                let y = self.e.collapse(y, &[vec![0], vec![1, 2]], self.ty(&full))?;
                if n == npad {
                    return Ok(y);
                }
                let d = view.dims();
                return self
                    .e
                    .extract_slice(y, &[0; 2], &shape(&d), &[], self.ty(&d));
            }
        };
        let full = r.ho * r.wp;
        let y = if r.len != full {
            let d = [r.n, DimVal::Static(r.f), DimVal::Static(full)];
            self.e
                .extract_slice(y, &[0; 3], &shape(&d), &[], self.ty(&d))?
        } else {
            y
        };
        let rows = [r.n.to_i64(), r.f as i64, r.ho as i64, r.wp as i64];
        let y = self
            .e
            .expand(y, &[vec![0], vec![1], vec![2, 3]], &rows, &[])?;
        if r.wo == r.wp {
            return Ok(y);
        }
        let d = view.dims();
        self.e
            .extract_slice(y, &[0; 4], &shape(&d), &[], self.ty(&d))
    }
}
