//! One NNIR op as ONNX nodes: most ops are the same-named operator with their attributes;
//! `nn.linear`, `nn.silu`, `nn.clip`, `nn.mean`, `nn.reshape`, `nn.layer_norm`, `nn.rms_norm`
//! and `nn.gather` need initializers or a few nodes; `nn.scatter` is in `scatter.rs`.

use super::graph::{u64s, Exporter};
use crate::ir::{OpKind, TensorType};
use crate::onnx::proto::{attr_type, AttributeProto};
use bytes::Bytes;

/// Attribute builders, one per attribute type nnopt writes.
pub(super) fn attr_i(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i,
        ..Default::default()
    }
}

fn attr_f(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::FLOAT,
        f,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: impl IntoIterator<Item = i64>) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: ints.into_iter().collect(),
        ..Default::default()
    }
}

fn attr_s(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::STRING,
        s: Bytes::copy_from_slice(s.as_bytes()),
        ..Default::default()
    }
}

impl Exporter<'_> {
    /// Appends the nodes and initializers computing `out` (typed `r_ty`) as `kind` of the
    /// operands `ins`, the first typed `x_ty`.
    pub(super) fn op(
        &mut self,
        kind: &OpKind,
        ins: Vec<String>,
        out: String,
        x_ty: Option<TensorType>,
        r_ty: &TensorType,
    ) -> Result<(), String> {
        let x_ty = || x_ty.clone().ok_or("no operand");
        // The same-named ONNX operator on the same operands.
        let direct = |s: &mut Self, op: &str, attrs| {
            s.node(op, ins.clone(), out.clone(), attrs);
        };
        match kind {
            OpKind::Constant(_) | OpKind::Weight { .. } => {
                // Held since `Exporter::new`, written before the first node reading it.
            }
            OpKind::Linear => {
                if x_ty()?.rank() == 2 {
                    self.node("Gemm", ins, out, vec![attr_i("transB", 1)]);
                    return Ok(());
                }
                // A constant weight is stored [in, out] already (`matmul_weights`); any other
                // is transposed at run time.
                let w = if self.transposed.contains(&ins[1]) {
                    ins[1].clone()
                } else {
                    self.tmp(
                        "Transpose",
                        vec![ins[1].clone()],
                        &format!("{}.T", ins[1]),
                        vec![attr_ints("perm", [1, 0])],
                    )
                };
                if ins.len() == 3 {
                    let mm = self.tmp(
                        "MatMul",
                        vec![ins[0].clone(), w],
                        &format!("{out}.matmul"),
                        vec![],
                    );
                    self.node("Add", vec![mm, ins[2].clone()], out, vec![]);
                } else {
                    self.node("MatMul", vec![ins[0].clone(), w], out, vec![]);
                }
            }
            OpKind::MatMul => direct(self, "MatMul", vec![]),
            OpKind::Embedding => direct(self, "Gather", vec![attr_i("axis", 0)]),
            OpKind::Conv2d {
                strides,
                pads,
                dilations,
                groups,
            } => {
                direct(
                    self,
                    "Conv",
                    vec![
                        attr_ints("strides", u64s(strides)),
                        attr_ints("pads", u64s(pads)),
                        attr_ints("dilations", u64s(dilations)),
                        attr_i("group", *groups as i64),
                    ],
                );
            }
            OpKind::BatchNorm { epsilon } => direct(
                self,
                "BatchNormalization",
                vec![attr_f("epsilon", *epsilon)],
            ),
            OpKind::Relu => direct(self, "Relu", vec![]),
            OpKind::LeakyRelu { alpha } => direct(self, "LeakyRelu", vec![attr_f("alpha", *alpha)]),
            OpKind::Clip { min, max } => {
                let e = r_ty.elem;
                let lo = self.init_f(&format!("{out}.min"), e, &[], &[*min]);
                let hi = self.init_f(&format!("{out}.max"), e, &[], &[*max]);
                self.node("Clip", vec![ins[0].clone(), lo, hi], out, vec![]);
            }
            OpKind::Sigmoid => direct(self, "Sigmoid", vec![]),
            OpKind::Tanh => direct(self, "Tanh", vec![]),
            OpKind::Gelu { approximate } => direct(
                self,
                "Gelu",
                vec![attr_s("approximate", approximate.name())],
            ),
            OpKind::Silu => {
                let s = self.tmp("Sigmoid", ins.clone(), &format!("{out}.sigmoid"), vec![]);
                self.node("Mul", vec![ins[0].clone(), s], out, vec![]);
            }
            OpKind::HardSwish => direct(self, "HardSwish", vec![]),
            OpKind::Identity => direct(self, "Identity", vec![]),
            OpKind::Add => direct(self, "Add", vec![]),
            OpKind::Sub => direct(self, "Sub", vec![]),
            OpKind::Mul => direct(self, "Mul", vec![]),
            OpKind::Concat { axis } => direct(self, "Concat", vec![attr_i("axis", *axis)]),
            OpKind::MaxPool2d(p) => direct(
                self,
                "MaxPool",
                vec![
                    attr_ints("kernel_shape", u64s(&p.kernel)),
                    attr_ints("strides", u64s(&p.strides)),
                    attr_ints("pads", u64s(&p.pads)),
                    attr_i("ceil_mode", p.ceil_mode as i64),
                ],
            ),
            OpKind::AvgPool2d {
                pool: p,
                count_include_pad,
            } => direct(
                self,
                "AveragePool",
                vec![
                    attr_ints("kernel_shape", u64s(&p.kernel)),
                    attr_ints("strides", u64s(&p.strides)),
                    attr_ints("pads", u64s(&p.pads)),
                    attr_i("ceil_mode", p.ceil_mode as i64),
                    attr_i("count_include_pad", *count_include_pad as i64),
                ],
            ),
            OpKind::GlobalAvgPool => direct(self, "GlobalAveragePool", vec![]),
            OpKind::Mean { axes, keepdims } => {
                let ax = self.init_i64(&format!("{out}.axes"), &[axes.len() as u64], axes);
                self.node(
                    "ReduceMean",
                    vec![ins[0].clone(), ax],
                    out,
                    vec![attr_i("keepdims", *keepdims as i64)],
                );
            }
            OpKind::Flatten { axis } => direct(self, "Flatten", vec![attr_i("axis", *axis)]),
            OpKind::Reshape { shape } => {
                // A `?` entry is ONNX's -1, the size that keeps the element count.
                let data: Vec<i64> = shape
                    .iter()
                    .map(|d| d.as_static().map_or(-1, |n| n as i64))
                    .collect();
                let s = self.init_i64(&format!("{out}.shape"), &[shape.len() as u64], &data);
                // allowzero: a 0 in the target is a real size, not "copy the input's".
                let allowzero = data.contains(&0) as i64;
                self.node(
                    "Reshape",
                    vec![ins[0].clone(), s],
                    out,
                    vec![attr_i("allowzero", allowzero)],
                );
            }
            OpKind::Transpose { perm } => {
                direct(self, "Transpose", vec![attr_ints("perm", u64s(perm))])
            }
            OpKind::Softmax { axis } => direct(self, "Softmax", vec![attr_i("axis", *axis)]),
            OpKind::LayerNorm { axis, epsilon } => {
                let mut inputs = ins.clone();
                if inputs.len() == 1 {
                    // ONNX requires the scale: ones of the normalised shape.
                    let xt = x_ty()?;
                    let a = crate::ir::infer::norm_axis(*axis, xt.rank())?;
                    let shape: Vec<u64> = xt.dims[a..]
                        .iter()
                        .map(|d| d.as_static().ok_or("the normalised axes must be static"))
                        .collect::<Result<_, _>>()?;
                    let n: u64 = shape.iter().product();
                    let ones = self.init_f(
                        &format!("{out}.scale"),
                        xt.elem,
                        &shape,
                        &vec![1.0; n as usize],
                    );
                    inputs.push(ones);
                }
                self.node(
                    "LayerNormalization",
                    inputs,
                    out,
                    vec![attr_i("axis", *axis), attr_f("epsilon", *epsilon)],
                );
            }
            OpKind::RmsNorm { axis, epsilon } => {
                self.rms_norm(&ins, out, &x_ty()?, *axis, *epsilon)?
            }
            OpKind::Gather { axis, indices } => {
                let data: Vec<i64> = u64s(indices).collect();
                let idx = self.init_i64(&format!("{out}.indices"), &[indices.len() as u64], &data);
                self.node(
                    "Gather",
                    vec![ins[0].clone(), idx],
                    out,
                    vec![attr_i("axis", *axis)],
                );
            }
            OpKind::Scatter { .. } => self.scatter(kind, &ins[0], &x_ty()?, out, r_ty)?,
            OpKind::Return => unreachable!("handled by the caller"),
        }
        Ok(())
    }
}

impl Exporter<'_> {
    /// `nn.rms_norm` as the node chain PyTorch's export writes (`x · Reciprocal(Sqrt(
    /// ReduceMean(Pow(x, 2)) + eps)) · scale`): RMSNormalization needs opset 23, above the
    /// export opset, and this chain is what the importer recognizes as `nn.rms_norm` again.
    fn rms_norm(
        &mut self,
        ins: &[String],
        out: String,
        x_ty: &TensorType,
        axis: i64,
        epsilon: f32,
    ) -> Result<(), String> {
        let (x, e) = (ins[0].clone(), x_ty.elem);
        let a = crate::ir::infer::norm_axis(axis, x_ty.rank())?;
        let two = self.init_f(&format!("{out}.two"), e, &[], &[2.0]);
        let sq = self.tmp("Pow", vec![x.clone(), two], &format!("{out}.pow"), vec![]);
        let axes: Vec<i64> = (a as i64..x_ty.rank() as i64).collect();
        let ax = self.init_i64(&format!("{out}.axes"), &[axes.len() as u64], &axes);
        let ms = self.tmp(
            "ReduceMean",
            vec![sq, ax],
            &format!("{out}.mean"),
            vec![attr_i("keepdims", 1)],
        );
        let eps = self.init_f(&format!("{out}.epsilon"), e, &[], &[epsilon]);
        let var = self.tmp("Add", vec![ms, eps], &format!("{out}.add"), vec![]);
        let sd = self.tmp("Sqrt", vec![var], &format!("{out}.sqrt"), vec![]);
        let rstd = self.tmp("Reciprocal", vec![sd], &format!("{out}.rsqrt"), vec![]);
        match ins.get(1) {
            Some(scale) => {
                let y = self.tmp("Mul", vec![x, rstd], &format!("{out}.normed"), vec![]);
                self.node("Mul", vec![y, scale.clone()], out, vec![]);
            }
            None => self.node("Mul", vec![x, rstd], out, vec![]),
        }
        Ok(())
    }
}
