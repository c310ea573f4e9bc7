//! The graph of one function: every value gets a unique ONNX name (a weight keeps its tensor
//! name), ops become nodes in order (see `ops.rs`), and the function's arguments and results
//! become the graph's inputs and outputs.
//!
//! Invariant: a graph output is a distinct node output; an output that is a graph input, a
//! constant or listed twice goes through an `Identity`.

use crate::diag::Diagnostic;
use crate::ir::{Dim, ElemType, Function, Loc, OpKind, Tensor, TensorType, ValueId};
use crate::onnx::metadata::Carried;
use crate::onnx::proto::{
    data_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, NodeProto, TensorProto,
    TensorShapeProto, TypeProto, ValueInfoProto,
};
use bytes::Bytes;
use cranelift_entity::SecondaryMap;
use std::collections::HashSet;

/// The ONNX data type of an element type.
fn onnx_type(e: ElemType) -> i32 {
    match e {
        ElemType::F32 => data_type::FLOAT,
        ElemType::F16 => data_type::FLOAT16,
        ElemType::BF16 => data_type::BFLOAT16,
        ElemType::I64 => data_type::INT64,
    }
}

/// Sizes and indices as ONNX's `int64` fields.
pub(super) fn u64s(v: &[u64]) -> impl Iterator<Item = i64> + '_ {
    v.iter().map(|&x| x as i64)
}

/// A graph input or output of type `ty`; dynamic dimension `i` gets the `dim_param`
/// `dim_name(i)`, or none.
fn value_info(
    name: &str,
    ty: &TensorType,
    dim_name: impl Fn(usize) -> Option<String>,
) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value as D, Dimension};
    let dim = ty
        .dims
        .iter()
        .enumerate()
        .map(|(i, d)| Dimension {
            value: match d {
                Dim::Static(n) => Some(D::DimValue(*n as i64)),
                Dim::Dynamic => dim_name(i).map(D::DimParam),
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

/// The graph being built: value names, nodes and initializers in the order they are written.
pub(super) struct Exporter<'f> {
    f: &'f Function,
    names: SecondaryMap<ValueId, String>,
    taken: HashSet<String>,
    nodes: Vec<NodeProto>,
    /// Node names given so far (a namespace apart from the values').
    node_names: HashSet<String>,
    /// The name location of the op being translated, which its first node takes.
    loc_name: Option<String>,
    inits: Vec<TensorProto>,
    /// Weights not yet read by a node: each becomes an initializer just before its first
    /// reader, so initializers follow the nodes (an import of the file, which makes a weight
    /// where it is first used, exports in the same order).
    held: Vec<(String, Tensor)>,
    /// Initializers (index in `inits`) whose bytes are filled in when written.
    deferred: Vec<(usize, Tensor)>,
    /// Names of the linear weights written as MatMul's [in, out] (see [`matmul_weights`]).
    pub(super) transposed: HashSet<String>,
}

/// The constant weights whose every use is a linear on an input of rank other than 2: these
/// become `MatMul` on an initializer stored [in, out], as exporters write them, instead of a
/// runtime `Transpose` (a rank-2 linear is a `Gemm` with `transB`, which reads [out, in]).
fn matmul_weights(f: &Function) -> HashSet<ValueId> {
    let mut out = HashSet::new();
    for op in f.ops() {
        let Some(v) = f.op(op).result() else { continue };
        if f.constant_of(v).is_none_or(|t| t.shape().len() != 2) {
            continue;
        }
        let uses = f.uses(v);
        let all_matmul = !uses.is_empty()
            && uses.iter().all(|u| {
                let user = f.op(u.op);
                matches!(user.kind, OpKind::Linear)
                    && u.index == 1
                    && f.ty(user.operands()[0]).rank() != 2
            });
        if all_matmul {
            out.insert(v);
        }
    }
    out
}

impl<'f> Exporter<'f> {
    /// Names every value of `f`: a weight after its tensor, any other by its NNIR name (or
    /// `v<index>`), unique with a `_<k>` suffix.
    pub(super) fn new(f: &'f Function) -> Exporter<'f> {
        let mut e = Exporter {
            f,
            names: SecondaryMap::new(),
            taken: HashSet::new(),
            nodes: Vec::new(),
            node_names: HashSet::new(),
            loc_name: None,
            inits: Vec::new(),
            held: Vec::new(),
            deferred: Vec::new(),
            transposed: HashSet::new(),
        };
        let matmul = matmul_weights(f);
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
            if matmul.contains(&v) {
                e.transposed.insert(n.clone());
            }
            e.names[v] = n;
        }
        for op in f.ops() {
            if let (OpKind::Constant(t) | OpKind::Weight { value: t, .. }, Some(r)) =
                (&f.op(op).kind, f.op(op).result())
            {
                let n = e.names[r].clone();
                let t = if e.transposed.contains(&n) {
                    t.transposed()
                } else {
                    t.clone()
                };
                e.held.push((n, t));
            }
        }
        e
    }

    /// A name not used yet, `base` if free.
    pub(super) fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut k = 1;
        while !self.taken.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        name
    }

    /// Appends a node `op_type` computing `output`, named after the op's name location if it
    /// has one not taken yet, else `<op_type>_<index>` (unique with a `_<k>` suffix).
    pub(super) fn node(
        &mut self,
        op_type: &str,
        inputs: Vec<String>,
        output: String,
        attrs: Vec<AttributeProto>,
    ) {
        let name = match self.loc_name.take() {
            Some(n) if self.node_names.insert(n.clone()) => n,
            _ => {
                let base = format!("{op_type}_{}", self.nodes.len());
                let mut name = base.clone();
                let mut k = 1;
                while !self.node_names.insert(name.clone()) {
                    name = format!("{base}_{k}");
                    k += 1;
                }
                name
            }
        };
        for i in &inputs {
            if let Some(k) = self.held.iter().position(|(n, _)| n == i) {
                let (n, t) = self.held.remove(k);
                self.init(n, &t);
            }
        }
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
    pub(super) fn tmp(
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
    pub(super) fn init(&mut self, name: String, t: &Tensor) -> String {
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

    /// A fresh INT64 initializer (shapes, axes, indices).
    pub(super) fn init_i64(&mut self, base: &str, shape: &[u64], data: &[i64]) -> String {
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

    /// A fresh float initializer of element type `elem`.
    pub(super) fn init_f(
        &mut self,
        base: &str,
        elem: ElemType,
        shape: &[u64],
        data: &[f32],
    ) -> String {
        let name = self.fresh(base);
        self.init(name, &Tensor::from_f32(elem, shape.to_vec(), data))
    }

    /// The graph and its deferred initializers (see [`export_parts`](super::export_parts)),
    /// with the dimension names and doc string the module carries.
    pub(super) fn graph(
        mut self,
        carried: &Carried,
    ) -> Result<(GraphProto, Vec<(usize, Tensor)>), Diagnostic> {
        let f = self.f;
        let mut outputs = Vec::new();
        for op in f.ops() {
            let data = f.op(op);
            self.loc_name = match f.loc(op) {
                Some(Loc::Name(n)) => Some(n.clone()),
                _ => None,
            };
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
                    let dim = |d| carried.dim_name(true, i, d).map(str::to_string);
                    outputs.push(value_info(&name, f.ty(v), dim));
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
        for (n, t) in std::mem::take(&mut self.held) {
            self.init(n, &t);
        }
        // A dynamic input dimension the model did not name is `<input>_d<i>`.
        let inputs = f
            .args()
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let name = &self.names[a];
                let dim = |d| {
                    Some(
                        carried
                            .dim_name(false, i, d)
                            .map_or_else(|| format!("{name}_d{d}"), str::to_string),
                    )
                };
                value_info(name, f.ty(a), dim)
            })
            .collect();
        let graph = GraphProto {
            node: self.nodes,
            name: f.name.clone(),
            initializer: self.inits,
            doc_string: carried.graph_doc.clone(),
            sparse_initializer: Vec::new(),
            input: inputs,
            output: outputs,
            value_info: Vec::new(),
        };
        Ok((graph, self.deferred))
    }
}
