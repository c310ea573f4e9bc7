//! Reductions: ReduceMean, with the axes as an attribute (opset < 18) or a constant input.

use crate::ir::OpKind;
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::NodeProto;

impl Importer {
    pub(super) fn reduce_mean(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["axes", "keepdims", "noop_with_empty_axes"])?;
        let x_name = Self::need(n, 0)?;
        let rank = self.dims(x_name)?.len();
        let axes = match (a.ints("axes")?, Self::input(n, 1)) {
            (Some(ax), _) => ax,
            (None, Some(name)) => self.int_const(name)?.1,
            (None, None) => Vec::new(),
        };
        let axes = if axes.is_empty() {
            if a.int("noop_with_empty_axes", 0)? != 0 {
                let v = self.val(x_name)?.clone();
                self.bind(out, v);
                return Ok(());
            }
            (0..rank as i64).collect()
        } else {
            axes
        };
        let keepdims = a.int("keepdims", 1)? != 0;
        let x = self.operand(x_name)?;
        let v = self.push(OpKind::Mean { axes, keepdims }, &[x], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }
}
