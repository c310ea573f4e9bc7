//! Operators that only produce import-time constants: Constant, Shape (a dynamic dimension
//! becomes a symbolic entry), and Mod, Slice, Sqrt, Expand and Cast on constants, the pieces of
//! exporters' shape plumbing and of TorchScript's attention scale. None of them reaches the IR.

use crate::ir::infer::norm_axis;
use crate::ir::{Dim, ElemType, Tensor};
use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::fold::{broadcast_const, dyn_dim, fold_int_binary, int_mod, slice_1d};
use crate::onnx::import::initializers::elem_of;
use crate::onnx::import::values::Val;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::{data_type, GraphProto, NodeProto};

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
        let folded = fold_int_binary(self.int_const(l)?, self.int_const(r)?, |x, y| {
            int_mod(x, y, fmod)
        })?;
        self.bind(out, folded);
        Ok(())
    }

    pub(super) fn slice(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        // Only `Shape(x)[a:b]`, on a 1-D integer constant with constant bounds.
        a.only(&[])?;
        let (data, data_shape) = match self.val(Self::need(n, 0)?)? {
            Val::Int { shape, data } if shape.len() == 1 => (data.clone(), shape.clone()),
            _ => return Err("only 1-D integer constants (shapes) can be sliced".into()),
        };
        let one = |i: usize, default: i64| -> R<i64> {
            let Some(name) = Self::input(n, i) else {
                return Ok(default);
            };
            match self.int_const(name)?.1.as_slice() {
                [x] if dyn_dim::decode(*x).is_none() => Ok(*x),
                [_] => Err(format!("input '{name}' is a dynamic dimension")),
                _ => Err(format!("input '{name}' must have one element (1-D data)")),
            }
        };
        let axis = one(3, 0)?;
        if norm_axis(axis, data_shape.len())? != 0 {
            return Err(format!("axis {axis} is out of range for 1-D data"));
        }
        let (start, end) = (one(1, 0)?, one(2, i64::MAX)?);
        let data = slice_1d(&data, start, end, one(4, 1)?)?;
        let shape = vec![data.len() as u64];
        self.bind(out, Val::Int { shape, data });
        Ok(())
    }

    pub(super) fn sqrt(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        // Constants only (NNIR has no square root): TorchScript's attention scale
        // `sqrt(1 / sqrt(head_dim))` computed from the shape.
        a.only(&[])?;
        let t = self
            .float_const(Self::need(n, 0)?)
            .ok_or("only a constant input is supported (NNIR has no square root)")?;
        // Correctly rounded in f32, so also for f16/bf16 (see `fold_float_binary`).
        let roots: Vec<f32> = t.to_f32_vec().into_iter().map(f32::sqrt).collect();
        let folded = Tensor::from_f32(t.elem(), t.shape().to_vec(), &roots);
        self.bind(out, Val::Float(folded));
        Ok(())
    }

    pub(super) fn expand(
        &mut self,
        n: &NodeProto,
        a: &Attrs<'_>,
        g: &GraphProto,
        out: &str,
    ) -> R<()> {
        // Only constants: the exporter writes nn.scatter's fill this way.
        a.only(&[])?;
        let x_name = Self::need(n, 0)?;
        let (_, target) = self.int_const(Self::need(n, 1)?)?;
        let t = self
            .float_const(x_name)
            .ok_or("only a constant input can be expanded")?;
        self.fills
            .insert(out.to_string(), (t.clone(), target.clone()));
        match broadcast_const(&t, &target) {
            Ok(b) => self.bind(out, Val::Float(b)),
            // A dynamic target: only a Concat may take it, as an `nn.scatter`'s fill (it
            // reports the error otherwise).
            Err(_)
                if self
                    .sole_consumer(out)
                    .is_some_and(|i| g.node[i].op_type == "Concat") => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    pub(super) fn cast(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["to", "saturate", "round_mode"])?;
        let to = a.int("to", 0)? as i32;
        let x_name = Self::need(n, 0)?;
        let v = match (self.val(x_name)?.clone(), to) {
            (Val::Int { shape, data }, data_type::INT64 | data_type::INT32) => {
                Val::Int { shape, data }
            }
            (Val::Int { shape, data }, data_type::BOOL) => Val::Int {
                shape,
                data: data.iter().map(|&x| (x != 0) as i64).collect(),
            },
            (Val::Int { shape, data }, data_type::FLOAT) => {
                let f: Vec<f32> = data.iter().map(|&x| x as f32).collect();
                Val::Float(Tensor::from_f32(ElemType::F32, shape, &f))
            }
            (Val::Ir(v), t) if elem_of(t) == Some(self.func.ty(v).elem) => Val::Ir(v),
            (Val::Float(t), dt) if elem_of(dt) == Some(t.elem()) => Val::Float(t),
            _ => {
                return Err(format!(
                    "casting to {} is not supported",
                    data_type::name(to)
                ))
            }
        };
        self.bind(out, v);
        Ok(())
    }
}
