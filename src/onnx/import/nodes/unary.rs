//! Activations: the single-input operators that become one NNIR op of the same meaning
//! (Relu, Sigmoid, Tanh, HardSwish, LeakyRelu, Gelu, Softmax, GlobalAveragePool), and the two
//! with constant parameters, HardSigmoid (a mul, an add and a clip) and Clip; and SiLU, which
//! exporters write as a Sigmoid and a Mul.

use crate::ir::{GeluApprox, OpKind, Tensor, ValueId};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::{GraphProto, NodeProto};

/// The NNIR op of a single-input operator that needs nothing but its attributes, or `None` for
/// any other operator.
pub(super) fn unary_kind(op: &str, a: &Attrs<'_>) -> R<Option<OpKind>> {
    Ok(Some(match op {
        "Relu" => {
            a.only(&[])?;
            OpKind::Relu
        }
        "Sigmoid" => {
            a.only(&[])?;
            OpKind::Sigmoid
        }
        "Tanh" => {
            a.only(&[])?;
            OpKind::Tanh
        }
        "HardSwish" => {
            a.only(&[])?;
            OpKind::HardSwish
        }
        "LeakyRelu" => {
            a.only(&["alpha"])?;
            OpKind::LeakyRelu {
                alpha: a.float("alpha", 0.01)?,
            }
        }
        "Gelu" => {
            a.only(&["approximate"])?;
            let approximate = match a.string("approximate")?.as_deref() {
                None | Some("none") => GeluApprox::None,
                Some("tanh") => GeluApprox::Tanh,
                Some(s) => return Err(format!("approximate '{s}' is not supported")),
            };
            OpKind::Gelu { approximate }
        }
        "Softmax" => {
            a.only(&["axis"])?;
            OpKind::Softmax {
                axis: a.int("axis", -1)?,
            }
        }
        "GlobalAveragePool" => {
            a.only(&[])?;
            OpKind::GlobalAvgPool
        }
        _ => return Ok(None),
    }))
}

impl Importer {
    /// `kind` applied to the node's input.
    pub(super) fn unary(&mut self, n: &NodeProto, kind: OpKind, out: &str) -> R<()> {
        let x = self.operand(Self::need(n, 0)?)?;
        let v = self.push(kind, &[x], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    /// `x · sigmoid(x)`, how the dynamo exporter writes SiLU (Llama's and Qwen2's SwiGLU MLP):
    /// a Sigmoid whose only user is a Mul of it by the Sigmoid's own input becomes one
    /// `nn.silu` for that Mul (skipped later), so that patterns on SiLU see it. Exact:
    /// `nn.silu` is that product, rounded after the sigmoid and after the multiplication as the
    /// two ops are. Returns false, having done nothing, for a Sigmoid in any other use.
    pub(super) fn silu(&mut self, n: &NodeProto, g: &GraphProto, out: &str) -> R<bool> {
        let x_name = Self::need(n, 0)?;
        let Some(ci) = self.sole_consumer(out) else {
            return Ok(false);
        };
        let c = &g.node[ci];
        let squares = c.input.len() == 2
            && ((c.input[0] == x_name && c.input[1] == out)
                || (c.input[0] == out && c.input[1] == x_name));
        let mul_out = match c.output.first() {
            Some(o) if !o.is_empty() => o.clone(),
            _ => return Ok(false),
        };
        if c.op_type != "Mul" || !(c.domain.is_empty() || c.domain == "ai.onnx") || !squares {
            return Ok(false);
        }
        Attrs(&n.attribute).only(&[])?;
        let x = self.operand(x_name)?;
        let v = self.push(OpKind::Silu, &[x], Some(&mul_out))?;
        self.bind(&mul_out, Val::Ir(v));
        self.skip.insert(ci);
        Ok(true)
    }

    pub(super) fn hard_sigmoid(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        // max(0, min(1, alpha·x + beta)) with a rounding after the product and one after
        // the sum, as the ONNX reference computes it: a mul, an add and a clip, exactly.
        a.only(&["alpha", "beta"])?;
        let x = self.operand(Self::need(n, 0)?)?;
        let elem = self.func.ty(x).elem;
        let scalar = |this: &mut Self, attr: &str, default: f32| -> R<ValueId> {
            let t = Tensor::from_f32(elem, vec![], &[a.float(attr, default)?]);
            Ok(this.weight(&format!("{out}.{attr}"), t))
        };
        let (alpha, beta) = (scalar(self, "alpha", 0.2)?, scalar(self, "beta", 0.5)?);
        let ax = self.push(OpKind::Mul, &[x, alpha], None)?;
        let axb = self.push(OpKind::Add, &[ax, beta], None)?;
        let v = self.push(OpKind::Clip { min: 0.0, max: 1.0 }, &[axb], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    pub(super) fn clip(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&[])?;
        let bound = |i: usize, default: f32| -> R<f32> {
            match Self::input(n, i) {
                None => Ok(default),
                Some(name) => match self.float_const(name) {
                    Some(t) if t.len() == 1 => Ok(t.get(0)),
                    _ => Err(format!("bound '{name}' must be a constant scalar")),
                },
            }
        };
        let (min, max) = (bound(1, f32::NEG_INFINITY)?, bound(2, f32::INFINITY)?);
        if min > max {
            return Err(format!("min ({min}) exceeds max ({max})"));
        }
        let x = self.operand(Self::need(n, 0)?)?;
        let v = self.push(OpKind::Clip { min, max }, &[x], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }
}
