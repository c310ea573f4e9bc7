//! Operators that only produce import-time constants: Constant, Shape (a dynamic dimension
//! becomes a symbolic entry), and Mod, Sqrt and Cast on constants, the pieces of exporters'
//! shape plumbing and of TorchScript's attention scale. None of them reaches the IR.

use crate::ir::{Dim, ElemType, Tensor};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::const_math::{self, int_binary};
use crate::onnx::import::fold::{dyn_dim, int_mod};
use crate::onnx::import::initializers::elem_of;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::{data_type, NodeProto};

impl Importer {
    pub(super) fn constant(&mut self, n: &NodeProto, out: &str) -> R<()> {
        let v = self.constant_value(n)?;
        self.bind(out, v);
        Ok(())
    }

    /// The value of a Constant node (also read ahead of the walk by `chains.rs`).
    pub(super) fn constant_value(&mut self, n: &NodeProto) -> R<Val> {
        let [attr] = n.attribute.as_slice() else {
            return Err("a Constant needs exactly one attribute".into());
        };
        let v = match attr.name.as_str() {
            "value" => {
                let t = attr.t.as_ref().ok_or("attribute 'value' holds no tensor")?;
                self.tensor(t)?
            }
            "value_float" => Val::Float(Tensor::from_f32(ElemType::F32, vec![], &[attr.f])),
            "value_floats" => Val::Float(Tensor::from_f32(
                ElemType::F32,
                vec![attr.floats.len() as u64],
                &attr.floats,
            )),
            "value_int" => Val::Int {
                shape: vec![],
                data: vec![attr.i],
            },
            "value_ints" => Val::Int {
                shape: vec![attr.ints.len() as u64],
                data: attr.ints.clone(),
            },
            other => return Err(format!("attribute '{other}' is not supported")),
        };
        Ok(v)
    }

    pub(super) fn shape(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["start", "end"])?;
        let x_name = Self::need(n, 0)?;
        let dims = self.dims(x_name)?;
        let source = match self.val(x_name)? {
            Val::Ir(v) => Some(*v),
            _ => None,
        };
        let rank = dims.len() as i64;
        let clamp = |x: i64| (if x < 0 { x + rank } else { x }).clamp(0, rank) as usize;
        let (s, e) = (clamp(a.int("start", 0)?), clamp(a.int("end", rank)?));
        let mut data = Vec::new();
        for (axis, d) in dims.iter().enumerate().take(e).skip(s) {
            data.push(match (d, source) {
                (Dim::Static(k), _) => *k as i64,
                (Dim::Dynamic, Some(v)) => dyn_dim::encode(v, axis),
                (Dim::Dynamic, None) => unreachable!("constants have static shapes"),
            });
        }
        let shape = vec![data.len() as u64];
        self.bind(out, Val::Int { shape, data });
        Ok(())
    }

    pub(super) fn modulo(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        // Integer constants only: TorchScript's MultiheadAttention computes a slice
        // bound of its shape plumbing as `2 % 3`.
        a.only(&["fmod"])?;
        let fmod = a.int("fmod", 0)? != 0;
        let (l, r) = (Self::need(n, 0)?, Self::need(n, 1)?);
        let (l, r) = (self.val(l)?.clone(), self.val(r)?.clone());
        let folded = int_binary(&l, &r, |x, y| int_mod(x, y, fmod))?;
        self.bind(out, folded);
        Ok(())
    }

    pub(super) fn sqrt(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        // Constants only (NNIR has no square root): TorchScript's attention scale
        // `sqrt(1 / sqrt(head_dim))` computed from the shape.
        a.only(&[])?;
        let t = self
            .float_const(Self::need(n, 0)?)
            .ok_or("only a constant input is supported (NNIR has no square root)")?;
        // Correctly rounded in f32, so also for f16/bf16 (see `const_math::float_binary`).
        let roots: Vec<f32> = t.to_f32_vec().into_iter().map(f32::sqrt).collect();
        let folded = Tensor::from_f32(t.elem(), t.shape().to_vec(), &roots);
        self.bind(out, Val::Float(folded));
        Ok(())
    }

    pub(super) fn cast(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["to", "saturate", "round_mode"])?;
        let to = a.int("to", 0)? as i32;
        let x_name = Self::need(n, 0)?;
        let v = match self.val(x_name)?.clone() {
            Val::Ir(v) if elem_of(to) == Some(self.func.ty(v).elem) => Val::Ir(v),
            Val::Ir(v) if to == data_type::BOOL => self.cast_to_bool(x_name, v, out)?,
            Val::Ir(_) => {
                return Err(format!(
                    "casting to {} is not supported",
                    data_type::name(to)
                ))
            }
            c => const_math::cast(&c, to)?,
        };
        self.bind(out, v);
        Ok(())
    }
}
