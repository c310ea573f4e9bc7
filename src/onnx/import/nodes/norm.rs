//! Normalization: BatchNormalization (inference only), LayerNormalization and
//! RMSNormalization; their statistics outputs must be unused.

use crate::ir::OpKind;
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::NodeProto;

impl Importer {
    pub(super) fn batch_norm(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["epsilon", "momentum", "training_mode"])?;
        if a.int("training_mode", 0)? != 0 {
            return Err("training_mode = 1 is not supported (inference only)".into());
        }
        self.only_first_output(n)?;
        let ops = (0..5)
            .map(|i| Self::need(n, i).and_then(|s| self.operand(s)))
            .collect::<R<Vec<_>>>()?;
        let epsilon = a.float("epsilon", 1e-5)?;
        let v = self.push(OpKind::BatchNorm { epsilon }, &ops, Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    pub(super) fn layer_norm(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        let kind = |axis, epsilon| OpKind::LayerNorm { axis, epsilon };
        self.trailing_norm(n, a, out, 3, kind)
    }

    /// RMSNormalization (opset 23): X and a scale; no bias input.
    pub(super) fn rms_norm(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        let kind = |axis, epsilon| OpKind::RmsNorm { axis, epsilon };
        self.trailing_norm(n, a, out, 2, kind)
    }

    /// A normalization over the trailing axes with a required scale and at most `inputs`
    /// inputs. `stash_type` is ignored: NNIR computes in f32.
    fn trailing_norm(
        &mut self,
        n: &NodeProto,
        a: &Attrs<'_>,
        out: &str,
        inputs: usize,
        kind: impl FnOnce(i64, f32) -> OpKind,
    ) -> R<()> {
        a.only(&["axis", "epsilon", "stash_type"])?;
        self.only_first_output(n)?;
        if n.input.len() > inputs {
            return Err(format!(
                "{} inputs given, at most {inputs} are read",
                n.input.len()
            ));
        }
        let mut ops = vec![self.operand(Self::need(n, 0)?)?];
        ops.push(self.operand(Self::need(n, 1)?)?);
        if let Some(b) = Self::input(n, 2) {
            ops.push(self.operand(b)?);
        }
        let kind = kind(a.int("axis", -1)?, a.float("epsilon", 1e-5)?);
        let v = self.push(kind, &ops, Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }
}
