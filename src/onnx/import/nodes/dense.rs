//! Matrix products: Gemm and MatMul. With a constant matrix they become `nn.linear` (the weight
//! transposed to [out, in] when needed, as a view that copies nothing, scaled by `alpha`), and a
//! constant bias joins it (Gemm's C, or the Add that alone follows a MatMul); with two
//! activations, `nn.matmul`.

use crate::ir::{OpKind, Tensor, ValueId};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::{GraphProto, NodeProto};

fn scaled(t: &Tensor, s: f32) -> Tensor {
    if s == 1.0 {
        return t.clone();
    }
    let v: Vec<f32> = t.to_f32_vec().iter().map(|x| x * s).collect();
    Tensor::from_f32(t.elem(), t.shape().to_vec(), &v)
}

impl Importer {
    /// Gemm: `alpha·A'·B' + beta·C`. With a constant B this is `nn.linear` with the weight
    /// `alpha·B'` (as [out, in]) and, when C is a vector or scalar, the bias `beta·C`.
    pub(super) fn gemm(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["alpha", "beta", "transA", "transB"])?;
        let (alpha, beta) = (a.float("alpha", 1.0)?, a.float("beta", 1.0)?);
        let (ta, tb) = (a.int("transA", 0)? != 0, a.int("transB", 0)? != 0);
        let (a_name, b_name) = (Self::need(n, 0)?, Self::need(n, 1)?);
        let c_name = Self::input(n, 2);
        let mut x = self.operand(a_name)?;
        if ta {
            x = self.push(OpKind::Transpose { perm: vec![1, 0] }, &[x], None)?;
        }
        let Some(b) = self.float_const(b_name).filter(|t| t.shape().len() == 2) else {
            // Both operands are activations: a plain matrix product.
            let mut y = self.operand(b_name)?;
            if tb {
                y = self.push(OpKind::Transpose { perm: vec![1, 0] }, &[y], None)?;
            }
            let last_mul = alpha == 1.0 && c_name.is_none();
            let mut v = self.push(OpKind::MatMul, &[x, y], last_mul.then_some(out))?;
            if alpha != 1.0 {
                let s = self.weight(
                    &format!("{out}.alpha"),
                    Tensor::from_f32(self.func.ty(v).elem, vec![], &[alpha]),
                );
                v = self.push(OpKind::Mul, &[v, s], c_name.is_none().then_some(out))?;
            }
            if let Some(c) = c_name {
                v = self.add_scaled(v, c, beta, out)?;
            }
            self.bind(out, Val::Ir(v));
            return Ok(());
        };
        let w = if tb { b.clone() } else { b.transposed() };
        let w = scaled(&w, alpha);
        let wv = if tb && alpha == 1.0 {
            self.operand(b_name)?
        } else {
            self.weight(b_name, w.clone())
        };
        let out_features = w.shape()[0];
        let bias = match c_name.and_then(|c| self.float_const(c)) {
            Some(c)
                if c.len() as u64 == out_features
                    && c.shape().iter().rev().skip(1).all(|&d| d == 1) =>
            {
                let t = scaled(&c, beta)
                    .reshaped(vec![out_features])
                    .expect("same count");
                Some(self.weight(c_name.expect("matched"), t))
            }
            Some(c) if c.len() == 1 => {
                let v = c.get(0) * beta;
                let t = Tensor::from_f32(
                    c.elem(),
                    vec![out_features],
                    &vec![v; out_features as usize],
                );
                Some(self.weight(c_name.expect("matched"), t))
            }
            _ => None,
        };
        let mut ops = vec![x, wv];
        let fused = bias.is_some() || c_name.is_none();
        ops.extend(bias);
        let v = self.push(OpKind::Linear, &ops, fused.then_some(out))?;
        let v = if fused {
            v
        } else {
            self.add_scaled(v, c_name.expect("not fused"), beta, out)?
        };
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    /// `v + beta·c` as IR.
    fn add_scaled(&mut self, v: ValueId, c: &str, beta: f32, out: &str) -> R<ValueId> {
        let cv = match self.float_const(c) {
            Some(t) if beta != 1.0 => self.weight(c, scaled(&t, beta)),
            _ => {
                let cv = self.operand(c)?;
                if beta == 1.0 {
                    cv
                } else {
                    let s = self.weight(
                        &format!("{out}.beta"),
                        Tensor::from_f32(self.func.ty(cv).elem, vec![], &[beta]),
                    );
                    self.push(OpKind::Mul, &[cv, s], None)?
                }
            }
        };
        self.push(OpKind::Add, &[v, cv], Some(out))
    }

    /// MatMul by a constant matrix is `nn.linear` (weight transposed to [out, in]); when its only
    /// user is an Add of a constant vector, that Add becomes the bias (and is skipped later).
    pub(super) fn matmul(
        &mut self,
        n: &NodeProto,
        a: &Attrs<'_>,
        g: &GraphProto,
        out: &str,
    ) -> R<()> {
        a.only(&[])?;
        let (a_name, b_name) = (Self::need(n, 0)?, Self::need(n, 1)?);
        let a_dims = self.dims(a_name)?;
        let b_const = self.float_const(b_name).filter(|t| t.shape().len() == 2);
        let Some(b) = b_const.filter(|_| !matches!(self.val(a_name), Ok(Val::Float(_)))) else {
            if a_dims.len() < 2 || self.dims(b_name)?.len() < 2 {
                return Err("MatMul of 1-D activations is not supported".into());
            }
            let (x, y) = (self.operand(a_name)?, self.operand(b_name)?);
            let v = self.push(OpKind::MatMul, &[x, y], Some(out))?;
            self.bind(out, Val::Ir(v));
            return Ok(());
        };
        let out_features = b.shape()[1];
        // A following Add of a constant vector of `out_features` elements that does not raise the
        // rank (so broadcasting stays the linear's).
        let fuse = self.sole_consumer(out).and_then(|ci| {
            let c = &g.node[ci];
            if c.op_type != "Add"
                || !(c.domain.is_empty() || c.domain == "ai.onnx")
                || c.input.len() != 2
            {
                return None;
            }
            let other = if c.input[0] == out {
                &c.input[1]
            } else {
                &c.input[0]
            };
            let t = self.float_const(other)?;
            let ok = t.len() as u64 == out_features
                && t.shape().len() <= a_dims.len()
                && t.shape().iter().rev().skip(1).all(|&d| d == 1)
                && t.elem() == b.elem();
            ok.then(|| (ci, other.clone(), t, c.output.first().cloned()))
        });
        let w = self.weight(b_name, b.transposed());
        let x = self.operand(a_name)?;
        match fuse {
            Some((ci, bias_name, t, Some(add_out))) if !add_out.is_empty() => {
                let bias = if t.shape().len() == 1 {
                    self.operand(&bias_name)?
                } else {
                    self.weight(
                        &bias_name,
                        t.reshaped(vec![out_features]).expect("same count"),
                    )
                };
                // `out` itself stays unbound: its only user is the Add folded here.
                let v = self.push(OpKind::Linear, &[x, w, bias], Some(&add_out))?;
                self.bind(&add_out, Val::Ir(v));
                self.skip.insert(ci);
            }
            _ => {
                let v = self.push(OpKind::Linear, &[x, w], Some(out))?;
                self.bind(out, Val::Ir(v));
            }
        }
        Ok(())
    }
}
