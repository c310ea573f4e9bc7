//! Element-wise arithmetic: Add, Sub and Mul (NumPy broadcasting; folded on two integer or
//! two float constants), Neg (a multiplication by -1, exact), and Div, by a constant power of
//! two only, so that the multiplication by the
//! reciprocal NNIR computes rounds exactly as the division would.

use crate::ir::{OpKind, Tensor};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::const_math::{float_binary, int_binary};
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::NodeProto;

impl Importer {
    pub(super) fn add_sub_mul(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        let op = n.op_type.as_str();
        a.only(&[])?;
        let (l, r) = (Self::need(n, 0)?, Self::need(n, 1)?);
        match (self.val(l)?.clone(), self.val(r)?.clone()) {
            (x @ Val::Int { .. }, y @ Val::Int { .. }) => {
                let f = match op {
                    "Add" => i64::wrapping_add,
                    "Sub" => i64::wrapping_sub,
                    _ => i64::wrapping_mul,
                };
                self.bind(out, int_binary(&x, &y, |a, b| Ok(f(a, b)))?);
                return Ok(());
            }
            // Two float constants (rotary angles: positions × inverse frequencies): IEEE
            // arithmetic, correctly rounded here as at run time.
            (x @ Val::Float(_), y @ Val::Float(_)) => {
                let f = match op {
                    "Add" => |a: f32, b: f32| a + b,
                    "Sub" => |a, b| a - b,
                    _ => |a, b| a * b,
                };
                self.bind(out, float_binary(&x, &y, f)?);
                return Ok(());
            }
            _ => {}
        }
        let (x, y) = (self.operand(l)?, self.operand(r)?);
        let kind = match op {
            "Add" => OpKind::Add,
            "Sub" => OpKind::Sub,
            _ => OpKind::Mul,
        };
        let v = self.push(kind, &[x, y], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    pub(super) fn div(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        // x / c equals x · (1/c) bit for bit only when 1/c is exact: c a power of two.
        a.only(&[])?;
        let (l, r) = (Self::need(n, 0)?, Self::need(n, 1)?);
        let c = self
            .float_const(r)
            .ok_or("only division by a constant is supported")?;
        if let Some(p) = self.float_const(l) {
            // Both constant (an attention scale from the shape): IEEE division, correctly
            // rounded here as at run time.
            let folded = float_binary(&Val::Float(p), &Val::Float(c), |x, y| x / y)?;
            self.bind(out, folded);
            return Ok(());
        }
        let vals = c.to_f32_vec();
        if !vals
            .iter()
            .all(|&v| v.is_normal() && (v.to_bits() & 0x007F_FFFF) == 0)
        {
            return Err("only division by powers of two is supported (any other divisor would change the rounding when turned into a multiplication)".into());
        }
        let inv: Vec<f32> = vals.iter().map(|v| 1.0 / v).collect();
        let t = Tensor::from_f32(c.elem(), c.shape().to_vec(), &inv);
        let x = self.operand(l)?;
        let w = self.weight(&format!("{r}.reciprocal"), t);
        let v = self.push(OpKind::Mul, &[x, w], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    pub(super) fn neg(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        // -x is x · (-1) bit for bit (both flip the sign bit only), so NNIR needs no negation.
        a.only(&[])?;
        let name = Self::need(n, 0)?;
        let folded = match self.val(name)? {
            Val::Int { shape, data } => Some(Val::Int {
                shape: shape.clone(),
                data: data.iter().map(|v| v.wrapping_neg()).collect(),
            }),
            Val::Float(t) => {
                let neg: Vec<f32> = t.to_f32_vec().iter().map(|v| -v).collect();
                Some(Val::Float(Tensor::from_f32(
                    t.elem(),
                    t.shape().to_vec(),
                    &neg,
                )))
            }
            Val::Ir(_) => None,
        };
        if let Some(v) = folded {
            self.bind(out, v);
            return Ok(());
        }
        let x = self.operand(name)?;
        let elem = self.func.ty(x).elem;
        let m = self.weight(
            &format!("{out}.minus_one"),
            Tensor::from_f32(elem, vec![], &[-1.0]),
        );
        let v = self.push(OpKind::Mul, &[x, m], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }
}
