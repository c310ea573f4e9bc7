//! The operators that import as nothing: Identity, and Dropout in inference mode, bind their
//! output to their input's value.

use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::NodeProto;

impl Importer {
    pub(super) fn identity(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&[])?;
        let v = self.val(Self::need(n, 0)?)?.clone();
        self.bind(out, v);
        Ok(())
    }

    pub(super) fn dropout(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["seed"])?;
        if let Some(tm) = Self::input(n, 2) {
            let (_, d) = self.int_const(tm).or_else(|_| match self.val(tm)? {
                Val::Float(t) => Ok((vec![], vec![t.get(0) as i64])),
                _ => Err("training_mode must be a constant".to_string()),
            })?;
            if d.iter().any(|&x| x != 0) {
                return Err("training_mode is true; only inference is supported".into());
            }
        }
        self.only_first_output(n)?;
        let v = self.val(Self::need(n, 0)?)?.clone();
        self.bind(out, v);
        Ok(())
    }
}
