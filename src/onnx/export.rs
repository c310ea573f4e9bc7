//! NNIR → ONNX.
//!
//! Writes one function of a module as an ONNX graph (opset [`EXPORT_OPSET`], IR version
//! [`EXPORT_IR_VERSION`]) using only standard operators, so any runtime loads the result.
//! `nn.weight` and `nn.constant` become initializers (`nn.weight` keeps its tensor name);
//! `nn.scatter` becomes `Concat` + `Gather` over a constant fill (exact: every output element is
//! copied, never computed); `nn.linear` becomes `Gemm` (2-D input) or `MatMul` + `Add`.
//!
//! Initializer bytes are shared with the module's tensors (memory-mapped weights stay mapped)
//! or gathered from views as they are written, and streamed to the output file by the encoder.
//! Does not write external data, so models must stay under protobuf's 2 GiB.

use super::proto::{
    attr_type, data_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use crate::diag::Diagnostic;
use crate::ir::{Dim, ElemType, Function, Module, OpKind, Tensor, TensorType, ValueId};
use bytes::Bytes;
use cranelift_entity::SecondaryMap;
use prost::Message;
use std::collections::HashSet;
use std::path::Path;

/// Opset of the default domain written (20: `Gelu`, `ReduceMean` with axes as an input).
pub const EXPORT_OPSET: i64 = 20;
/// The IR version that goes with opset 20.
pub const EXPORT_IR_VERSION: i64 = 9;

/// Encodes `m` and writes it atomically to `path`, streaming: the encoder writes through a
/// 1 MiB buffer into the temporary file, so the model is never whole in memory. Initializers
/// with a buffer go from it (or the input's memory map) to the file; the others (pruned weights,
/// which are views of the original, and splats) are gathered chunk by chunk as they are
/// written, after the rest of the graph: protobuf allows a repeated field's entries anywhere in
/// the message, and their lengths are known without their bytes.
pub fn write_onnx(m: &Module, path: &Path) -> Result<(), Diagnostic> {
    use prost::encoding::{encode_key, encode_varint, encoded_len_varint, key_len, WireType};
    // Field numbers of the ONNX spec (see `proto.rs`).
    const MODEL_GRAPH: u32 = 7;
    const GRAPH_INITIALIZER: u32 = 5;
    const TENSOR_RAW_DATA: u32 = 9;
    let (mut model, deferred) = export_parts(m)?;
    let mut graph = model
        .graph
        .take()
        .expect("invariant: export_parts sets the graph");
    let mut late = Vec::with_capacity(deferred.len());
    let mut deferred = deferred.into_iter().peekable();
    for (i, init) in std::mem::take(&mut graph.initializer)
        .into_iter()
        .enumerate()
    {
        match deferred.next_if(|(j, _)| *j == i) {
            Some((_, t)) => late.push((init, t)),
            None => graph.initializer.push(init),
        }
    }
    let delimited = |len: usize| encoded_len_varint(len as u64) + len;
    let tensor_len = |init: &TensorProto, t: &Tensor| {
        init.encoded_len() + key_len(TENSOR_RAW_DATA) + delimited(t.byte_len())
    };
    let graph_len = graph.encoded_len()
        + late
            .iter()
            .map(|(init, t)| key_len(GRAPH_INITIALIZER) + delimited(tensor_len(init, t)))
            .sum::<usize>();
    crate::atomic::write_atomic_with(path, |w| {
        let mut sink = WriteBuf::new(w);
        let overflow = |e: prost::EncodeError| std::io::Error::other(e.to_string());
        // prost writes fields in tag order; so does this, around the graph (tag 7), so that a
        // model without deferred initializers is encoded byte for byte as prost would.
        let (before, after) = (
            ModelProto {
                opset_import: Vec::new(),
                functions: Vec::new(),
                ..model.clone()
            },
            ModelProto {
                opset_import: std::mem::take(&mut model.opset_import),
                functions: std::mem::take(&mut model.functions),
                ..Default::default()
            },
        );
        before.encode(&mut sink).map_err(overflow)?;
        encode_key(MODEL_GRAPH, WireType::LengthDelimited, &mut sink);
        encode_varint(graph_len as u64, &mut sink);
        graph.encode(&mut sink).map_err(overflow)?;
        for (init, t) in &late {
            encode_key(GRAPH_INITIALIZER, WireType::LengthDelimited, &mut sink);
            encode_varint(tensor_len(init, t) as u64, &mut sink);
            init.encode(&mut sink).map_err(overflow)?;
            encode_key(TENSOR_RAW_DATA, WireType::LengthDelimited, &mut sink);
            encode_varint(t.byte_len() as u64, &mut sink);
            t.for_each_byte_chunk(|c| bytes::BufMut::put_slice(&mut sink, c));
        }
        after.encode(&mut sink).map_err(overflow)?;
        sink.finish()
    })
    .map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", path.display())))
}

/// A [`bytes::BufMut`] that forwards to an [`std::io::Write`] through a buffer: prost encodes
/// into a `BufMut`, and this makes that a file write. `BufMut` cannot fail, so the first I/O
/// error is kept (later writes are dropped) and returned by [`WriteBuf::finish`].
struct WriteBuf<'w> {
    out: &'w mut dyn std::io::Write,
    buf: Vec<u8>,
    error: Option<std::io::Error>,
}

impl<'w> WriteBuf<'w> {
    const CAPACITY: usize = 1 << 20;

    fn new(out: &'w mut dyn std::io::Write) -> Self {
        WriteBuf {
            out,
            buf: Vec::with_capacity(Self::CAPACITY),
            error: None,
        }
    }

    fn flush_buf(&mut self) {
        if self.error.is_none() {
            if let Err(e) = self.out.write_all(&self.buf) {
                self.error = Some(e);
            }
        }
        self.buf.clear();
    }

    fn finish(mut self) -> std::io::Result<()> {
        self.flush_buf();
        match self.error.take() {
            Some(e) => Err(e),
            None => self.out.flush(),
        }
    }
}

// SAFETY: `chunk_mut` hands out the vector's spare capacity (never empty: a full buffer is
// flushed first) and `advance_mut` only counts bytes the caller has initialised in it.
unsafe impl bytes::BufMut for WriteBuf<'_> {
    fn remaining_mut(&self) -> usize {
        usize::MAX
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        let len = self.buf.len() + cnt;
        assert!(len <= self.buf.capacity(), "advanced past the chunk");
        // SAFETY: the caller initialised `cnt` bytes of the spare capacity.
        unsafe { self.buf.set_len(len) };
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        if self.buf.len() == self.buf.capacity() {
            self.flush_buf();
        }
        self.buf.spare_capacity_mut().into()
    }
}

/// The ONNX model of the module's only function.
pub fn export_model(m: &Module) -> Result<ModelProto, Diagnostic> {
    let (mut model, deferred) = export_parts(m)?;
    let graph = model
        .graph
        .as_mut()
        .expect("invariant: export_parts sets the graph");
    for (i, t) in deferred {
        let mut all = Vec::with_capacity(t.byte_len());
        t.for_each_byte_chunk(|c| all.extend_from_slice(c));
        graph.initializer[i].raw_data = all.into();
    }
    Ok(model)
}

/// The model, except that the initializers listed (by index, ascending, with their tensors)
/// have no `raw_data` yet: their tensors have no buffer to share.
fn export_parts(m: &Module) -> Result<(ModelProto, Vec<(usize, Tensor)>), Diagnostic> {
    let f = match m.funcs.as_slice() {
        [f] => f,
        fs => {
            return Err(Diagnostic::error(format!(
                "an ONNX model holds one graph, but the module has {} functions",
                fs.len()
            )))
        }
    };
    let (graph, deferred) = Exporter::new(f).graph()?;
    let model = ModelProto {
        ir_version: EXPORT_IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: EXPORT_OPSET,
        }],
        producer_name: "nnopt".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        functions: Vec::new(),
    };
    Ok((model, deferred))
}

fn onnx_type(e: ElemType) -> i32 {
    match e {
        ElemType::F32 => data_type::FLOAT,
        ElemType::F16 => data_type::FLOAT16,
        ElemType::BF16 => data_type::BFLOAT16,
    }
}

fn attr_i(name: &str, i: i64) -> AttributeProto {
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

fn u64s(v: &[u64]) -> impl Iterator<Item = i64> + '_ {
    v.iter().map(|&x| x as i64)
}

fn value_info(name: &str, ty: &TensorType, dyn_prefix: Option<&str>) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value as D, Dimension};
    let dim = ty
        .dims
        .iter()
        .enumerate()
        .map(|(i, d)| Dimension {
            value: match (d, dyn_prefix) {
                (Dim::Static(n), _) => Some(D::DimValue(*n as i64)),
                (Dim::Dynamic, Some(p)) => Some(D::DimParam(format!("{p}_d{i}"))),
                (Dim::Dynamic, None) => None,
            },
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: onnx_type(ty.elem),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
    }
}

struct Exporter<'f> {
    f: &'f Function,
    names: SecondaryMap<ValueId, String>,
    taken: HashSet<String>,
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    /// Initializers (index in `inits`) whose bytes are filled in when written.
    deferred: Vec<(usize, Tensor)>,
}

impl<'f> Exporter<'f> {
    fn new(f: &'f Function) -> Exporter<'f> {
        let mut e = Exporter {
            f,
            names: SecondaryMap::new(),
            taken: HashSet::new(),
            nodes: Vec::new(),
            inits: Vec::new(),
            deferred: Vec::new(),
        };
        let values = f
            .args()
            .iter()
            .copied()
            .chain(f.ops().filter_map(|op| f.op(op).result()));
        for v in values.collect::<Vec<_>>() {
            // A weight's value is named after the weight, so the initializer keeps that name.
            let preferred = f
                .producer_kind(v)
                .and_then(|k| match k {
                    OpKind::Weight { name, .. } => Some(name.clone()),
                    _ => None,
                })
                .or_else(|| f.value(v).name.clone())
                .unwrap_or_else(|| format!("v{}", cranelift_entity::EntityRef::index(v)));
            let n = e.fresh(&preferred);
            e.names[v] = n;
        }
        e
    }

    /// A name not used yet, `base` if free.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while !self.taken.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    fn node(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        output: String,
        attrs: Vec<AttributeProto>,
    ) {
        let name = format!("{op_type}_{}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs,
            output: vec![output],
            name,
            op_type: op_type.into(),
            domain: String::new(),
            attribute: attrs,
        });
    }

    /// A fresh intermediate value produced by a new node.
    fn tmp(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        base: &str,
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(base);
        self.node(op_type, inputs, out.clone(), attrs);
        out
    }

    /// An initializer sharing `t`'s bytes (a memory-mapped weight stays in the map), or, for a
    /// tensor without a buffer, deferred to the writer.
    fn init(&mut self, name: String, t: &Tensor) -> String {
        let raw_data = t.shared_bytes().unwrap_or_else(|| {
            self.deferred.push((self.inits.len(), t.clone()));
            Bytes::new()
        });
        self.inits.push(TensorProto {
            dims: u64s(t.shape()).collect(),
            data_type: onnx_type(t.elem()),
            name: name.clone(),
            raw_data,
            ..Default::default()
        });
        name
    }

    fn init_i64(&mut self, base: &str, shape: &[u64], data: &[i64]) -> String {
        let name = self.fresh(base);
        self.inits.push(TensorProto {
            dims: u64s(shape).collect(),
            data_type: data_type::INT64,
            name: name.clone(),
            int64_data: data.to_vec(),
            ..Default::default()
        });
        name
    }

    fn init_f(&mut self, base: &str, elem: ElemType, shape: &[u64], data: &[f32]) -> String {
        let name = self.fresh(base);
        self.init(name, &Tensor::from_f32(elem, shape.to_vec(), data))
    }

    /// The graph and its deferred initializers (see [`export_parts`]).
    fn graph(mut self) -> Result<(GraphProto, Vec<(usize, Tensor)>), Diagnostic> {
        let f = self.f;
        let mut outputs = Vec::new();
        for op in f.ops() {
            let data = f.op(op);
            let ins: Vec<String> = data
                .operands()
                .iter()
                .map(|&v| self.names[v].clone())
                .collect();
            if let OpKind::Return = data.kind {
                let inputs: HashSet<String> =
                    f.args().iter().map(|&a| self.names[a].clone()).collect();
                let mut seen = HashSet::new();
                for (i, (&v, n)) in data.operands().iter().zip(&ins).enumerate() {
                    // A graph output must be a distinct node output, not an input or initializer.
                    let is_const = f.constant_of(v).is_some();
                    let name = if inputs.contains(n) || is_const || !seen.insert(n.clone()) {
                        self.tmp("Identity", vec![n.clone()], &format!("output_{i}"), vec![])
                    } else {
                        n.clone()
                    };
                    outputs.push(value_info(&name, f.ty(v), None));
                }
                continue;
            }
            let r = data
                .result()
                .expect("invariant: non-terminators have a result");
            let out = self.names[r].clone();
            let x_ty = data.operands().first().map(|&v| f.ty(v).clone());
            self.op(&data.kind, ins, out, x_ty, f.ty(r)).map_err(|e| {
                Diagnostic::error(format!("cannot export '{}': {e}", data.kind.mnemonic()))
                    .at(f.span(op))
            })?;
        }
        let inputs = f
            .args()
            .iter()
            .map(|&a| value_info(&self.names[a], f.ty(a), Some(&self.names[a])))
            .collect();
        let graph = GraphProto {
            node: self.nodes,
            name: f.name.clone(),
            initializer: self.inits,
            sparse_initializer: Vec::new(),
            input: inputs,
            output: outputs,
            value_info: Vec::new(),
        };
        Ok((graph, self.deferred))
    }

    fn op(
        &mut self,
        kind: &OpKind,
        ins: Vec<String>,
        out: String,
        x_ty: Option<TensorType>,
        r_ty: &TensorType,
    ) -> Result<(), String> {
        let x_ty = || x_ty.clone().ok_or("no operand");
        let rank = || x_ty().map(|t| t.rank() as i64);
        let unary = |s: &mut Self, op: &str, attrs| {
            s.node(op, ins.clone(), out.clone(), attrs);
        };
        match kind {
            OpKind::Constant(t) | OpKind::Weight { value: t, .. } => {
                self.init(out, t);
            }
            OpKind::Linear => {
                let xt = x_ty()?;
                if xt.rank() == 2 {
                    self.node("Gemm", ins, out, vec![attr_i("transB", 1)]);
                } else {
                    let wt = self.tmp(
                        "Transpose",
                        vec![ins[1].clone()],
                        &format!("{}.T", ins[1]),
                        vec![attr_ints("perm", [1, 0])],
                    );
                    if ins.len() == 3 {
                        let mm = self.tmp(
                            "MatMul",
                            vec![ins[0].clone(), wt],
                            &format!("{out}.matmul"),
                            vec![],
                        );
                        self.node("Add", vec![mm, ins[2].clone()], out, vec![]);
                    } else {
                        self.node("MatMul", vec![ins[0].clone(), wt], out, vec![]);
                    }
                }
            }
            OpKind::MatMul => unary(self, "MatMul", vec![]),
            OpKind::Conv2d {
                strides,
                pads,
                dilations,
                groups,
            } => {
                unary(
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
            OpKind::BatchNorm { epsilon } => unary(
                self,
                "BatchNormalization",
                vec![attr_f("epsilon", *epsilon)],
            ),
            OpKind::Relu => unary(self, "Relu", vec![]),
            OpKind::LeakyRelu { alpha } => unary(self, "LeakyRelu", vec![attr_f("alpha", *alpha)]),
            OpKind::Clip { min, max } => {
                let e = r_ty.elem;
                let lo = self.init_f(&format!("{out}.min"), e, &[], &[*min]);
                let hi = self.init_f(&format!("{out}.max"), e, &[], &[*max]);
                self.node("Clip", vec![ins[0].clone(), lo, hi], out, vec![]);
            }
            OpKind::Sigmoid => unary(self, "Sigmoid", vec![]),
            OpKind::Tanh => unary(self, "Tanh", vec![]),
            OpKind::Gelu { approximate } => unary(
                self,
                "Gelu",
                vec![attr_s("approximate", approximate.name())],
            ),
            OpKind::Silu => {
                let s = self.tmp("Sigmoid", ins.clone(), &format!("{out}.sigmoid"), vec![]);
                self.node("Mul", vec![ins[0].clone(), s], out, vec![]);
            }
            OpKind::HardSwish => unary(self, "HardSwish", vec![]),
            OpKind::Identity => unary(self, "Identity", vec![]),
            OpKind::Add => unary(self, "Add", vec![]),
            OpKind::Sub => unary(self, "Sub", vec![]),
            OpKind::Mul => unary(self, "Mul", vec![]),
            OpKind::Concat { axis } => unary(self, "Concat", vec![attr_i("axis", *axis)]),
            OpKind::MaxPool2d(p) => unary(
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
            } => unary(
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
            OpKind::GlobalAvgPool => unary(self, "GlobalAveragePool", vec![]),
            OpKind::Mean { axes, keepdims } => {
                let ax = self.init_i64(&format!("{out}.axes"), &[axes.len() as u64], axes);
                self.node(
                    "ReduceMean",
                    vec![ins[0].clone(), ax],
                    out,
                    vec![attr_i("keepdims", *keepdims as i64)],
                );
            }
            OpKind::Flatten { axis } => unary(self, "Flatten", vec![attr_i("axis", *axis)]),
            OpKind::Reshape { shape } => {
                let data: Vec<i64> = u64s(shape).collect();
                let s = self.init_i64(&format!("{out}.shape"), &[shape.len() as u64], &data);
                // allowzero: a 0 in the target is a real size, not "copy the input's".
                let allowzero = shape.contains(&0) as i64;
                self.node(
                    "Reshape",
                    vec![ins[0].clone(), s],
                    out,
                    vec![attr_i("allowzero", allowzero)],
                );
            }
            OpKind::Transpose { perm } => {
                unary(self, "Transpose", vec![attr_ints("perm", u64s(perm))])
            }
            OpKind::Softmax { axis } => unary(self, "Softmax", vec![attr_i("axis", *axis)]),
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
            OpKind::Scatter {
                axis,
                indices,
                size,
                fill,
            } => {
                let xt = x_ty()?;
                let r = rank()?;
                let a = crate::ir::infer::norm_axis(*axis, xt.rank())?;
                let n = indices.len() as i64;
                // fill, shaped [1, .., size, .., 1], expanded to x's shape with `size` on the axis.
                let mut fshape = vec![1u64; xt.rank()];
                fshape[a] = *size;
                let fill_init = self.init_f(&format!("{out}.fill"), xt.elem, &fshape, fill);
                let target = match r_ty.static_shape() {
                    Some(s) => {
                        let d: Vec<i64> = u64s(&s).collect();
                        self.init_i64(&format!("{out}.shape"), &[s.len() as u64], &d)
                    }
                    None => {
                        let sh = self.tmp(
                            "Shape",
                            vec![ins[0].clone()],
                            &format!("{out}.xshape"),
                            vec![],
                        );
                        let mut parts = Vec::new();
                        let slice = |s: &mut Self, lo: i64, hi: i64| {
                            let st = s.init_i64(&format!("{out}.start"), &[1], &[lo]);
                            let en = s.init_i64(&format!("{out}.end"), &[1], &[hi]);
                            s.tmp(
                                "Slice",
                                vec![sh.clone(), st, en],
                                &format!("{out}.dims"),
                                vec![],
                            )
                        };
                        if a > 0 {
                            parts.push(slice(self, 0, a as i64));
                        }
                        parts.push(self.init_i64(&format!("{out}.size"), &[1], &[*size as i64]));
                        if (a as i64) < r - 1 {
                            parts.push(slice(self, a as i64 + 1, r));
                        }
                        self.tmp(
                            "Concat",
                            parts,
                            &format!("{out}.shape"),
                            vec![attr_i("axis", 0)],
                        )
                    }
                };
                let filled = self.tmp(
                    "Expand",
                    vec![fill_init, target],
                    &format!("{out}.filled"),
                    vec![],
                );
                let cat = self.tmp(
                    "Concat",
                    vec![ins[0].clone(), filled],
                    &format!("{out}.cat"),
                    vec![attr_i("axis", a as i64)],
                );
                // Output position p reads input j where indices[j] = p, else the fill at n + p.
                let mut map: Vec<i64> = (0..*size as i64).map(|p| n + p).collect();
                for (j, &p) in indices.iter().enumerate() {
                    map[p as usize] = j as i64;
                }
                let idx = self.init_i64(&format!("{out}.indices"), &[*size], &map);
                self.node(
                    "Gather",
                    vec![cat, idx],
                    out,
                    vec![attr_i("axis", a as i64)],
                );
            }
            OpKind::Return => unreachable!("handled by the caller"),
        }
        Ok(())
    }
}
