//! ONNX → NNIR.
//!
//! The model file is memory-mapped and decoded with prost from a `Bytes` that owns the map, so
//! the `raw_data` of initializers stays in the mapping and becomes `nn.weight` tensors without a
//! copy (external-data files are mapped the same way). Nodes are visited in a topological order
//! computed here (which also finds cycles and missing inputs). Each ONNX value becomes either an
//! IR value or an import-time constant ([`Val`]): float constants are materialised as
//! `nn.weight` only when an op uses them, integer constants (shapes, axes, indices) never reach
//! the IR, which is how the Shape/Gather/Concat/Reshape plumbing of exporters folds away.
//!
//! Does not: inline model-local functions, read sparse initializers, or compute with dynamic
//! dimensions (a `Shape` of one is a symbolic entry that only a Reshape of the same value may
//! copy). Every node that cannot be represented is an error naming it; nothing is skipped
//! silently.

use super::proto::{
    self, attr_type, data_type, AttributeProto, ModelProto, NodeProto, TensorProto,
};
use crate::diag::{Diagnostic, Span};
use crate::ir::builder::FuncBuilder;
use crate::ir::infer::norm_axis;
use crate::ir::{
    Attr, Dim, ElemType, Function, GeluApprox, Module, OpKind, Pool2d, Tensor, TensorType, ValueId,
};
use bytes::Bytes;
use memmap2::Mmap;
use prost::Message;
use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

/// Newest ONNX IR version understood (onnx 1.18+ write IR 11).
pub const MAX_IR_VERSION: i64 = 11;
/// Opsets of the default domain accepted.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;

/// An error not tied to a place in a text file.
fn error(msg: impl Into<String>) -> Diagnostic {
    Diagnostic::error(msg)
}

/// Owns a map so that `Bytes` can slice it without copying.
struct MapOwner(Arc<Mmap>);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Reads and converts an ONNX model. External data resolves against the model's directory.
pub fn import_file(path: &Path) -> Result<Module, Diagnostic> {
    let fail = |e: std::io::Error| error(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(fail)?;
    // SAFETY: read-only mapping; as for safetensors, the file must not be truncated in place
    // while nnopt runs (see ir/weights.rs).
    let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(fail)?);
    let bytes = Bytes::from_owner(MapOwner(map.clone()));
    let base_dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    import_bytes(bytes, Some(map), &base_dir)
        .map_err(|d| d.with_note(format!("while importing {}", path.display())))
}

/// Converts a serialized model. `map` is the mapping `bytes` slices, if any: initializer data
/// inside it is referenced instead of copied.
pub fn import_bytes(
    bytes: Bytes,
    map: Option<Arc<Mmap>>,
    base_dir: &Path,
) -> Result<Module, Diagnostic> {
    let model = ModelProto::decode(bytes).map_err(|e| {
        error(format!(
            "the file is not a valid ONNX model (protobuf: {e})"
        ))
    })?;
    import_model(&model, map, base_dir)
}

pub fn import_model(
    model: &ModelProto,
    map: Option<Arc<Mmap>>,
    base_dir: &Path,
) -> Result<Module, Diagnostic> {
    if model.ir_version > MAX_IR_VERSION {
        return Err(error(format!(
            "ONNX IR version {} is newer than the newest nnopt understands ({MAX_IR_VERSION})",
            model.ir_version
        )));
    }
    if model.ir_version < 3 {
        return Err(error(format!(
            "ONNX IR version {} is too old (opset imports need IR version 3 or later)",
            model.ir_version
        )));
    }
    let mut opset = None;
    for o in &model.opset_import {
        if o.domain.is_empty() || o.domain == "ai.onnx" {
            opset = Some(o.version);
        }
    }
    let opset =
        opset.ok_or_else(|| error("the model imports no version of the default ONNX opset"))?;
    if !OPSETS.contains(&opset) {
        return Err(error(format!(
            "opset {opset} of the default domain is not supported (nnopt reads opsets {} to {})",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| error("the model has no graph"))?;
    if !graph.sparse_initializer.is_empty() {
        return Err(error("sparse initializers are not supported"));
    }
    let func_name = symbol_name(&graph.name);
    let mut imp = Importer {
        opset,
        base_dir: base_dir.to_path_buf(),
        map,
        ext_maps: HashMap::new(),
        vals: HashMap::new(),
        materialized: HashMap::new(),
        weight_names: HashSet::new(),
        value_names: HashSet::new(),
        consumers: HashMap::new(),
        skip: HashSet::new(),
        func: Function::new(func_name, Span::default()),
    };
    imp.graph(graph)?;
    let mut module = Module {
        name: None,
        attrs: Vec::new(),
        funcs: vec![imp.func],
        span: Span::default(),
    };
    if !model.producer_name.is_empty() {
        module
            .attrs
            .push(("producer".into(), Attr::Str(model.producer_name.clone())));
    }
    let errors = crate::verify::verify_module(&module);
    if let Some(e) = errors.into_iter().next() {
        return Err(error(format!(
            "internal error: the imported module does not verify: {}",
            e.message
        )));
    }
    Ok(module)
}

/// An ONNX value during import.
#[derive(Clone, Debug)]
enum Val {
    /// An IR value (activations, or constants an op has already used).
    Ir(ValueId),
    /// A floating-point constant, `name` the initializer's (kept as the weight's name).
    Float(Tensor),
    /// An integer constant (shapes, axes, indices), row-major, never part of the IR.
    Int { shape: Vec<u64>, data: Vec<i64> },
}

struct Importer {
    opset: i64,
    base_dir: PathBuf,
    map: Option<Arc<Mmap>>,
    ext_maps: HashMap<PathBuf, Arc<Mmap>>,
    vals: HashMap<String, Val>,
    /// Float constants already turned into `nn.weight`, by ONNX name.
    materialized: HashMap<String, ValueId>,
    weight_names: HashSet<String>,
    value_names: HashSet<String>,
    /// Node indices using each ONNX value (`usize::MAX` for a graph output).
    consumers: HashMap<String, Vec<usize>>,
    /// Nodes already converted as part of an earlier node (the Add fused into a MatMul).
    skip: HashSet<usize>,
    func: Function,
}

/// Valid NNIR symbol (`[A-Za-z_][A-Za-z0-9_.$]*`) from a graph name.
fn symbol_name(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    if s.is_empty() {
        out = "main".into();
    }
    out
}

/// A node's identity for messages: `node 'name' (Conv, opset 17)`.
fn describe(n: &NodeProto, idx: usize, opset: i64) -> String {
    let name = if n.name.is_empty() {
        match n.output.first() {
            Some(o) => format!("#{idx} (output '{o}')"),
            None => format!("#{idx}"),
        }
    } else {
        format!("'{}'", n.name)
    };
    format!("node {name} ({}, opset {opset})", n.op_type)
}

type R<T> = Result<T, String>;

/// Typed access to a node's attributes.
struct Attrs<'a>(&'a [AttributeProto]);

impl<'a> Attrs<'a> {
    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.iter().find(|a| a.name == name)
    }

    /// Refuses attributes the converter does not know (so none is ignored silently).
    fn only(&self, known: &[&str]) -> R<()> {
        for a in self.0 {
            if !a.ref_attr_name.is_empty() {
                return Err(format!(
                    "attribute '{}' refers to a function attribute",
                    a.name
                ));
            }
            if !known.contains(&a.name.as_str()) {
                return Err(format!("attribute '{}' is not supported", a.name));
            }
        }
        Ok(())
    }

    fn int(&self, name: &str, default: i64) -> R<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(a) if a.r#type == attr_type::INT || a.r#type == 0 => Ok(a.i),
            Some(_) => Err(format!("attribute '{name}' must be an integer")),
        }
    }

    fn float(&self, name: &str, default: f32) -> R<f32> {
        match self.get(name) {
            None => Ok(default),
            Some(a) if a.r#type == attr_type::FLOAT || a.r#type == 0 => Ok(a.f),
            Some(_) => Err(format!("attribute '{name}' must be a float")),
        }
    }

    fn ints(&self, name: &str) -> R<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == attr_type::INTS || a.r#type == 0 => Ok(Some(a.ints.clone())),
            Some(_) => Err(format!("attribute '{name}' must be a list of integers")),
        }
    }

    fn string(&self, name: &str) -> R<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == attr_type::STRING || a.r#type == 0 => {
                Ok(Some(String::from_utf8_lossy(&a.s).into_owned()))
            }
            Some(_) => Err(format!("attribute '{name}' must be a string")),
        }
    }
}

fn elem_of(dt: i32) -> Option<ElemType> {
    match dt {
        data_type::FLOAT => Some(ElemType::F32),
        data_type::FLOAT16 => Some(ElemType::F16),
        data_type::BFLOAT16 => Some(ElemType::BF16),
        _ => None,
    }
}

fn num_elements(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
}

/// `t` (2-D) transposed, bit-exactly, in a new buffer (the one copy a MatMul weight needs to
/// become an [out, in] linear weight). Tiled so that both sides stay in cache.
fn transpose2d(t: &Tensor) -> Tensor {
    let (r, c) = (t.shape()[0] as usize, t.shape()[1] as usize);
    if t.is_splat() {
        // A splat is the same splat in any shape.
        return t
            .reshaped(vec![c as u64, r as u64])
            .expect("same element count");
    }
    let t = &t.materialized();
    let src = t.raw_bytes().expect("materialized");
    let shape = vec![c as u64, r as u64];
    Tensor::from_fill(t.elem(), shape, |out| match t.elem().size() {
        // A fixed element size makes each move one load and one store (a slice copy of
        // runtime length was a `memmove` call per element).
        4 => transpose_tiles::<4>(src, out, r, c),
        _ => transpose_tiles::<2>(src, out, r, c),
    })
    .expect("invariant: same byte count")
}

/// `out[j][i] = src[i][j]` for `R`-byte elements of an `r` × `c` matrix, in 32 × 32 tiles so
/// that both sides stay in cache.
fn transpose_tiles<const R: usize>(src: &[u8], out: &mut [u8], r: usize, c: usize) {
    const TILE: usize = 32;
    for i0 in (0..r).step_by(TILE) {
        for j0 in (0..c).step_by(TILE) {
            for i in i0..(i0 + TILE).min(r) {
                let row = &src[i * c * R..(i + 1) * c * R];
                for j in j0..(j0 + TILE).min(c) {
                    let e: &[u8; R] = row[j * R..][..R].try_into().expect("R bytes");
                    out[(j * r + i) * R..][..R].copy_from_slice(e);
                }
            }
        }
    }
}

fn scaled(t: &Tensor, s: f32) -> Tensor {
    if s == 1.0 {
        return t.clone();
    }
    let v: Vec<f32> = t.to_f32_vec().iter().map(|x| x * s).collect();
    Tensor::from_f32(t.elem(), t.shape().to_vec(), &v)
}

impl Importer {
    // ---- values -------------------------------------------------------------------------------

    fn val(&self, name: &str) -> R<&Val> {
        self.vals
            .get(name)
            .ok_or_else(|| format!("input '{name}' is not defined"))
    }

    /// A unique NNIR value name for an ONNX name (invalid characters become `_`).
    fn value_name(&mut self, onnx: &str) -> Option<String> {
        if onnx.is_empty() {
            return None;
        }
        let base: String = onnx
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let mut name = base.clone();
        let mut k = 1;
        while !self.value_names.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        Some(name)
    }

    fn weight(&mut self, base: &str, t: Tensor) -> ValueId {
        let mut name = if base.is_empty() || base == "__metadata__" {
            "weight".to_string()
        } else {
            base.to_string()
        };
        let mut k = 1;
        while !self.weight_names.insert(name.clone()) {
            name = format!("{base}.{k}");
            k += 1;
        }
        let ty = t.ty();
        let vname = self.value_name(&name);
        FuncBuilder::new(&mut self.func).push(
            OpKind::Weight { name, value: t },
            &[],
            ty,
            vname,
            Span::default(),
        )
    }

    /// The IR value of ONNX value `name`, materialising a float constant as `nn.weight`.
    fn operand(&mut self, name: &str) -> R<ValueId> {
        match self.val(name)?.clone() {
            Val::Ir(v) => Ok(v),
            Val::Float(t) => {
                if let Some(&v) = self.materialized.get(name) {
                    return Ok(v);
                }
                let v = self.weight(name, t);
                self.materialized.insert(name.to_string(), v);
                Ok(v)
            }
            Val::Int { .. } => Err(format!(
                "integer tensor '{name}' is used as data; NNIR computes on floating-point tensors only"
            )),
        }
    }

    fn float_const(&self, name: &str) -> Option<Tensor> {
        match self.vals.get(name) {
            Some(Val::Float(t)) => Some(t.clone()),
            _ => None,
        }
    }

    fn int_const(&self, name: &str) -> R<(Vec<u64>, Vec<i64>)> {
        match self.val(name)? {
            Val::Int { shape, data } => Ok((shape.clone(), data.clone())),
            _ => Err(format!(
                "input '{name}' must be a constant integer tensor (computed shapes are not supported)"
            )),
        }
    }

    fn dims(&self, name: &str) -> R<Vec<Dim>> {
        Ok(match self.val(name)? {
            Val::Ir(v) => self.func.ty(*v).dims.to_vec(),
            Val::Float(t) => t.shape().iter().map(|&d| Dim::Static(d)).collect(),
            Val::Int { shape, .. } => shape.iter().map(|&d| Dim::Static(d)).collect(),
        })
    }

    fn push(&mut self, kind: OpKind, operands: &[ValueId], out: Option<&str>) -> R<ValueId> {
        let name = out.and_then(|o| self.value_name(o));
        FuncBuilder::new(&mut self.func).push_inferred(kind, operands, name, Span::default())
    }

    fn bind(&mut self, onnx: &str, v: Val) {
        self.vals.insert(onnx.to_string(), v);
    }

    // ---- tensors ------------------------------------------------------------------------------

    fn tensor(&mut self, t: &TensorProto) -> R<Val> {
        let mut shape = Vec::with_capacity(t.dims.len());
        for &d in &t.dims {
            shape.push(u64::try_from(d).map_err(|_| format!("dimension {d} is negative"))?);
        }
        let count = num_elements(&shape)
            .filter(|&n| n <= crate::ir::types::MAX_ELEMENTS)
            .ok_or_else(|| format!("shape {:?} is too large", t.dims))?;
        let count = count as usize;
        let raw: Option<Raw> = if t.data_location == proto::DATA_LOCATION_EXTERNAL {
            Some(self.external(t)?)
        } else if !t.raw_data.is_empty() {
            let inside = self.map.as_ref().and_then(|m| {
                let base = m.as_ptr() as usize;
                let p = t.raw_data.as_ptr() as usize;
                let end = p.checked_add(t.raw_data.len())?;
                (p >= base && end <= base + m.len())
                    .then(|| Raw::Mapped(m.clone(), p - base, t.raw_data.len()))
            });
            Some(inside.unwrap_or_else(|| Raw::Owned(t.raw_data.clone())))
        } else {
            None
        };
        if let Some(elem) = elem_of(t.data_type) {
            if let Some(r) = &raw {
                let want = count * elem.size();
                let len = r.len();
                if len != want {
                    return Err(format!(
                        "tensor '{}' has {len} bytes of data but its shape {:?} of {} needs {want}",
                        t.name,
                        t.dims,
                        data_type::name(t.data_type)
                    ));
                }
                return Ok(Val::Float(match r {
                    Raw::Mapped(map, off, len) => {
                        Tensor::mapped(elem, shape, map.clone(), *off, *len)
                            .ok_or("data lies outside the file")?
                    }
                    Raw::Owned(b) => Tensor::from_bytes(elem, shape, b.to_vec().into())
                        .ok_or("data does not match the shape")?,
                }));
            }
            let n_given = match elem {
                ElemType::F32 => t.float_data.len(),
                _ => t.int32_data.len(),
            };
            if n_given != count {
                return Err(format!(
                    "tensor '{}' has {n_given} values but its shape {:?} needs {count}",
                    t.name, t.dims
                ));
            }
            return Ok(Val::Float(match elem {
                ElemType::F32 => Tensor::from_f32(elem, shape, &t.float_data),
                _ => {
                    Tensor::from_bits(elem, shape, t.int32_data.iter().map(|&b| b as u32 & 0xFFFF))
                }
            }));
        }
        let width = match t.data_type {
            data_type::INT64 => 8,
            data_type::INT32 => 4,
            other => {
                return Err(match data_type::name(other) {
                    "UNKNOWN" => format!("tensor '{}' has an unknown data type ({other})", t.name),
                    name => format!(
                        "tensor '{}' has data type {name} ({other}), which nnopt does not support",
                        t.name
                    ),
                })
            }
        };
        let data: Vec<i64> = match &raw {
            Some(r) => {
                let len = r.len();
                if len != count * width {
                    return Err(format!(
                        "tensor '{}' has {len} bytes of data but its shape {:?} of {} needs {}",
                        t.name,
                        t.dims,
                        data_type::name(t.data_type),
                        count * width
                    ));
                }
                r.bytes()
                    .chunks_exact(width)
                    .map(|c| match width {
                        8 => i64::from_le_bytes(c.try_into().expect("8 bytes")),
                        _ => i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64,
                    })
                    .collect()
            }
            None => {
                let d: Vec<i64> = match t.data_type {
                    data_type::INT64 => t.int64_data.clone(),
                    _ => t.int32_data.iter().map(|&x| x as i64).collect(),
                };
                if d.len() != count {
                    return Err(format!(
                        "tensor '{}' has {} values but its shape {:?} needs {count}",
                        t.name,
                        d.len(),
                        t.dims
                    ));
                }
                d
            }
        };
        Ok(Val::Int { shape, data })
    }
}

/// Where a tensor's bytes are: a range of a mapped file, or a buffer decoded from elsewhere.
enum Raw {
    Mapped(Arc<Mmap>, usize, usize),
    Owned(Bytes),
}

impl Raw {
    fn len(&self) -> usize {
        match self {
            Raw::Mapped(_, _, len) => *len,
            Raw::Owned(b) => b.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Raw::Mapped(m, off, len) => &m[*off..*off + *len],
            Raw::Owned(b) => b,
        }
    }
}

impl Importer {
    /// Maps the external-data file of `t` and returns its byte range. The location must stay
    /// inside the model's directory (no absolute paths, no `..`, no symlink out of it).
    fn external(&mut self, t: &TensorProto) -> R<Raw> {
        let (mut location, mut offset, mut length) = (None, 0u64, None);
        for e in &t.external_data {
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("external data {} '{v}' is not a number", e.key))
            };
            match e.key.as_str() {
                "location" => location = Some(e.value.clone()),
                "offset" => offset = num(&e.value)?,
                "length" => length = Some(num(&e.value)?),
                // A checksum is advisory; nnopt does not verify it.
                "checksum" => {}
                k => return Err(format!("unknown external data key '{k}'")),
            }
        }
        let location = location
            .ok_or_else(|| format!("tensor '{}' has external data without a location", t.name))?;
        let rel = Path::new(&location);
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "tensor '{}': external data location '{location}' leaves the model's directory",
                t.name
            ));
        }
        let path = self.base_dir.join(rel);
        let (canon, dir) = match (path.canonicalize(), self.base_dir.canonicalize()) {
            (Ok(c), Ok(d)) => (c, d),
            (Err(e), _) | (_, Err(e)) => {
                return Err(format!(
                    "tensor '{}': cannot open external data {}: {e}",
                    t.name,
                    path.display()
                ))
            }
        };
        if !canon.starts_with(&dir) {
            return Err(format!(
                "tensor '{}': external data location '{location}' leaves the model's directory",
                t.name
            ));
        }
        let map = match self.ext_maps.get(&canon) {
            Some(m) => m.clone(),
            None => {
                let fail = |e: std::io::Error| {
                    format!(
                        "tensor '{}': cannot map external data {}: {e}",
                        t.name,
                        canon.display()
                    )
                };
                let file = std::fs::File::open(&canon).map_err(fail)?;
                // SAFETY: read-only mapping, see `import_file`.
                let m = Arc::new(unsafe { Mmap::map(&file) }.map_err(fail)?);
                self.ext_maps.insert(canon.clone(), m.clone());
                m
            }
        };
        let file_len = map.len() as u64;
        let len = length.unwrap_or(file_len.saturating_sub(offset));
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(format!(
                "tensor '{}': external data range {offset}+{len} is outside {} ({file_len} bytes)",
                t.name,
                canon.display()
            ));
        }
        Ok(Raw::Mapped(map, offset as usize, len as usize))
    }

    fn input_type(&self, vi: &proto::ValueInfoProto) -> R<TensorType> {
        use proto::tensor_shape_proto::dimension::Value as D;
        use proto::type_proto::Value;
        let Some(Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Err(format!("graph input '{}' is not a tensor", vi.name));
        };
        let elem = elem_of(tt.elem_type).ok_or_else(|| {
            format!(
                "graph input '{}' has element type {} ({}); NNIR supports FLOAT, FLOAT16 and BFLOAT16",
                vi.name,
                data_type::name(tt.elem_type),
                tt.elem_type
            )
        })?;
        let shape = tt
            .shape
            .as_ref()
            .ok_or_else(|| format!("graph input '{}' has no shape (rank unknown)", vi.name))?;
        let dims = shape
            .dim
            .iter()
            .map(|d| match d.value {
                Some(D::DimValue(n)) if n >= 0 => Ok(Dim::Static(n as u64)),
                Some(D::DimValue(n)) => Err(format!("graph input '{}' has dimension {n}", vi.name)),
                _ => Ok(Dim::Dynamic),
            })
            .collect::<R<Vec<_>>>()?;
        if dims.len() > crate::ir::types::MAX_RANK {
            return Err(format!(
                "graph input '{}' has rank {}, above 8",
                vi.name,
                dims.len()
            ));
        }
        Ok(TensorType::new(dims, elem))
    }

    fn graph(&mut self, g: &proto::GraphProto) -> Result<(), Diagnostic> {
        for t in &g.initializer {
            let v = self
                .tensor(t)
                .map_err(|e| error(format!("initializer '{}': {e}", t.name)))?;
            self.bind(&t.name, v);
        }
        for vi in &g.input {
            // Older exporters list initializers among the inputs too; the initializer wins.
            if self.vals.contains_key(&vi.name) {
                continue;
            }
            let ty = self.input_type(vi).map_err(error)?;
            let name = self.value_name(&vi.name);
            let v = FuncBuilder::new(&mut self.func).add_arg(ty, name, Span::default());
            self.bind(&vi.name, Val::Ir(v));
        }
        let order = self.topo_order(g)?;
        for (i, n) in g.node.iter().enumerate() {
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                self.consumers.entry(inp.clone()).or_default().push(i);
            }
        }
        for o in &g.output {
            self.consumers
                .entry(o.name.clone())
                .or_default()
                .push(usize::MAX);
        }
        for i in order {
            if self.skip.contains(&i) {
                continue;
            }
            let n = &g.node[i];
            self.node(n, g)
                .map_err(|e| error(format!("{}: {e}", describe(n, i, self.opset))))?;
        }
        let mut results = Vec::new();
        let mut types = Vec::new();
        for o in &g.output {
            let v = self
                .operand(&o.name)
                .map_err(|e| error(format!("graph output '{}': {e}", o.name)))?;
            results.push(v);
            types.push(self.func.ty(v).clone());
        }
        let mut b = FuncBuilder::new(&mut self.func);
        b.set_result_types(types);
        b.push_return(&results, Span::default());
        Ok(())
    }

    /// Kahn's algorithm over the nodes; reports an input nobody defines and cycles.
    fn topo_order(&self, g: &proto::GraphProto) -> Result<Vec<usize>, Diagnostic> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for o in n.output.iter().filter(|s| !s.is_empty()) {
                if self.vals.contains_key(o) || producer.insert(o, i).is_some() {
                    return Err(error(format!(
                        "{}: value '{o}' is defined twice",
                        describe(n, i, self.opset)
                    )));
                }
            }
        }
        let mut pending = vec![0usize; g.node.len()];
        let mut users: Vec<Vec<usize>> = vec![Vec::new(); g.node.len()];
        for (i, n) in g.node.iter().enumerate() {
            for inp in n.input.iter().filter(|s| !s.is_empty()) {
                match producer.get(inp.as_str()) {
                    Some(&p) => {
                        pending[i] += 1;
                        users[p].push(i);
                    }
                    None if self.vals.contains_key(inp) => {}
                    None => {
                        return Err(error(format!(
                            "{}: input '{inp}' is not a graph input, an initializer or the output of a node",
                            describe(n, i, self.opset)
                        )))
                    }
                }
            }
        }
        let mut ready: VecDeque<usize> = (0..g.node.len()).filter(|&i| pending[i] == 0).collect();
        let mut order = Vec::with_capacity(g.node.len());
        while let Some(i) = ready.pop_front() {
            order.push(i);
            for &u in &users[i] {
                pending[u] -= 1;
                if pending[u] == 0 {
                    ready.push_back(u);
                }
            }
        }
        if order.len() < g.node.len() {
            let stuck = (0..g.node.len())
                .find(|&i| pending[i] > 0)
                .expect("some node is left");
            return Err(error(format!(
                "{}: the graph has a cycle through this node (or it depends on one)",
                describe(&g.node[stuck], stuck, self.opset)
            )));
        }
        for o in &g.output {
            if !producer.contains_key(o.name.as_str()) && !self.vals.contains_key(&o.name) {
                return Err(error(format!("graph output '{}' is never defined", o.name)));
            }
        }
        Ok(order)
    }

    /// The only node using `value`, if exactly one node (and no graph output) uses it.
    fn sole_consumer(&self, value: &str) -> Option<usize> {
        match self.consumers.get(value).map(Vec::as_slice) {
            Some([i]) if *i != usize::MAX => Some(*i),
            _ => None,
        }
    }

    fn input(n: &NodeProto, i: usize) -> Option<&str> {
        n.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn need(n: &NodeProto, i: usize) -> R<&str> {
        Self::input(n, i).ok_or_else(|| format!("input {i} is missing"))
    }

    /// Refuses a node whose secondary outputs (masks, indices, saved statistics) are used.
    fn only_first_output(&self, n: &NodeProto) -> R<()> {
        for o in n.output.iter().skip(1).filter(|s| !s.is_empty()) {
            if self.consumers.contains_key(o) {
                return Err(format!(
                    "output '{o}' is used, but only the first output is supported"
                ));
            }
        }
        Ok(())
    }

    fn node(&mut self, n: &NodeProto, g: &proto::GraphProto) -> R<()> {
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return Err(format!("domain '{}' is not supported", n.domain));
        }
        let out = n
            .output
            .first()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("the node has no output")?;
        let a = Attrs(&n.attribute);
        let op = n.op_type.as_str();
        let unary = |kind: OpKind| -> R<Option<OpKind>> { Ok(Some(kind)) };
        let simple = match op {
            "Relu" => {
                a.only(&[])?;
                unary(OpKind::Relu)?
            }
            "Sigmoid" => {
                a.only(&[])?;
                unary(OpKind::Sigmoid)?
            }
            "Tanh" => {
                a.only(&[])?;
                unary(OpKind::Tanh)?
            }
            "HardSwish" => {
                a.only(&[])?;
                unary(OpKind::HardSwish)?
            }
            "LeakyRelu" => {
                a.only(&["alpha"])?;
                unary(OpKind::LeakyRelu {
                    alpha: a.float("alpha", 0.01)?,
                })?
            }
            "Gelu" => {
                a.only(&["approximate"])?;
                let approximate = match a.string("approximate")?.as_deref() {
                    None | Some("none") => GeluApprox::None,
                    Some("tanh") => GeluApprox::Tanh,
                    Some(s) => return Err(format!("approximate '{s}' is not supported")),
                };
                unary(OpKind::Gelu { approximate })?
            }
            "Softmax" => {
                a.only(&["axis"])?;
                unary(OpKind::Softmax {
                    axis: a.int("axis", -1)?,
                })?
            }
            "GlobalAveragePool" => {
                a.only(&[])?;
                unary(OpKind::GlobalAvgPool)?
            }
            _ => None,
        };
        if let Some(kind) = simple {
            let x = self.operand(Self::need(n, 0)?)?;
            let v = self.push(kind, &[x], Some(out))?;
            self.bind(out, Val::Ir(v));
            return Ok(());
        }
        match op {
            "Identity" => {
                a.only(&[])?;
                let v = self.val(Self::need(n, 0)?)?.clone();
                self.bind(out, v);
            }
            "Dropout" => {
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
            }
            "HardSigmoid" => {
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
            }
            "Clip" => {
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
            }
            "Add" | "Sub" | "Mul" => {
                a.only(&[])?;
                let (l, r) = (Self::need(n, 0)?, Self::need(n, 1)?);
                if let (Val::Int { .. }, Val::Int { .. }) = (self.val(l)?, self.val(r)?) {
                    let f = match op {
                        "Add" => i64::wrapping_add,
                        "Sub" => i64::wrapping_sub,
                        _ => i64::wrapping_mul,
                    };
                    let folded =
                        fold_int_binary(self.int_const(l)?, self.int_const(r)?, |x, y| {
                            Ok(f(x, y))
                        })?;
                    self.bind(out, folded);
                    return Ok(());
                }
                let (x, y) = (self.operand(l)?, self.operand(r)?);
                let kind = match op {
                    "Add" => OpKind::Add,
                    "Sub" => OpKind::Sub,
                    _ => OpKind::Mul,
                };
                let v = self.push(kind, &[x, y], Some(out))?;
                self.bind(out, Val::Ir(v));
            }
            "Div" => {
                // x / c equals x · (1/c) bit for bit only when 1/c is exact: c a power of two.
                a.only(&[])?;
                let (l, r) = (Self::need(n, 0)?, Self::need(n, 1)?);
                let c = self
                    .float_const(r)
                    .ok_or("only division by a constant is supported")?;
                if let Some(p) = self.float_const(l) {
                    // Both constant (an attention scale from the shape): IEEE division, correctly
                    // rounded here as at run time.
                    self.bind(out, Val::Float(fold_float_binary(&p, &c, |x, y| x / y)?));
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
            }
            "Conv" => self.conv(n, &a, out)?,
            "Gemm" => self.gemm(n, &a, out)?,
            "MatMul" => self.matmul(n, g, out)?,
            "Concat" => {
                a.only(&["axis"])?;
                let axis = a.int("axis", 0).and_then(|_| {
                    a.get("axis")
                        .map(|x| x.i)
                        .ok_or_else(|| "attribute 'axis' is required".to_string())
                })?;
                let names: Vec<&str> = n.input.iter().map(String::as_str).collect();
                if names
                    .iter()
                    .all(|s| matches!(self.vals.get(*s), Some(Val::Int { .. })))
                {
                    let mut data = Vec::new();
                    for s in &names {
                        let (shape, d) = self.int_const(s)?;
                        if shape.len() != 1 {
                            return Err("only 1-D integer tensors can be concatenated".into());
                        }
                        data.extend(d);
                    }
                    let shape = vec![data.len() as u64];
                    self.bind(out, Val::Int { shape, data });
                    return Ok(());
                }
                let vs = names
                    .iter()
                    .map(|s| self.operand(s))
                    .collect::<R<Vec<_>>>()?;
                let v = self.push(OpKind::Concat { axis }, &vs, Some(out))?;
                self.bind(out, Val::Ir(v));
            }
            "MaxPool" | "AveragePool" => self.pool(n, &a, out)?,
            "ReduceMean" => {
                a.only(&["axes", "keepdims", "noop_with_empty_axes"])?;
                let x_name = Self::need(n, 0)?;
                let rank = self.dims(x_name)?.len();
                let axes = match (a.ints("axes")?, Self::input(n, 1)) {
                    (Some(ax), _) => ax,
                    (None, Some(name)) => self.int_const(name)?.1,
                    (None, None) => Vec::new(),
                };
                let axes = if axes.is_empty() {
                    if a.int("noop_with_empty_axes", 0)? != 0 {
                        let v = self.val(x_name)?.clone();
                        self.bind(out, v);
                        return Ok(());
                    }
                    (0..rank as i64).collect()
                } else {
                    axes
                };
                let keepdims = a.int("keepdims", 1)? != 0;
                let x = self.operand(x_name)?;
                let v = self.push(OpKind::Mean { axes, keepdims }, &[x], Some(out))?;
                self.bind(out, Val::Ir(v));
            }
            "BatchNormalization" => {
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
            }
            "Flatten" => {
                a.only(&["axis"])?;
                let x_name = Self::need(n, 0)?;
                let rank = self.dims(x_name)?.len() as i64;
                let mut axis = a.int("axis", 1)?;
                if axis < 0 {
                    axis += rank;
                }
                if !(0..=rank).contains(&axis) {
                    return Err(format!(
                        "axis {} is out of range for rank {rank}",
                        a.int("axis", 1)?
                    ));
                }
                let x = self.operand(x_name)?;
                let v = self.push(OpKind::Flatten { axis }, &[x], Some(out))?;
                self.bind(out, Val::Ir(v));
            }
            "Reshape" => {
                a.only(&["allowzero"])?;
                let allowzero = a.int("allowzero", 0)? != 0;
                let x_name = Self::need(n, 0)?;
                let (_, target) = self.int_const(Self::need(n, 1)?)?;
                let dims = self.dims(x_name)?;
                let source = match self.val(x_name)? {
                    Val::Ir(v) => Some(*v),
                    _ => None,
                };
                let new = reshape_dims(&dims, &target, allowzero, source)?;
                self.reshape_to(x_name, new, out)?;
            }
            "Squeeze" | "Unsqueeze" => {
                a.only(&["axes"])?;
                let x_name = Self::need(n, 0)?;
                let dims = self.dims(x_name)?;
                let axes = match (a.ints("axes")?, Self::input(n, 1)) {
                    (Some(ax), _) => Some(ax),
                    (None, Some(name)) => Some(self.int_const(name)?.1),
                    (None, None) => None,
                };
                let new = if op == "Squeeze" {
                    let rank = dims.len();
                    let drop: Vec<usize> = match axes {
                        Some(ax) => ax
                            .iter()
                            .map(|&x| norm_axis(x, rank))
                            .collect::<R<Vec<_>>>()?,
                        None => (0..rank).filter(|&i| dims[i] == Dim::Static(1)).collect(),
                    };
                    for &d in &drop {
                        if dims[d] != Dim::Static(1) {
                            return Err(format!("axis {d} has size {}, not 1", dims[d]));
                        }
                    }
                    (0..rank)
                        .filter(|i| !drop.contains(i))
                        .map(|i| dims[i])
                        .collect()
                } else {
                    let ax = axes.ok_or("the axes are missing")?;
                    let rank = dims.len() + ax.len();
                    let ins = ax
                        .iter()
                        .map(|&x| norm_axis(x, rank))
                        .collect::<R<Vec<_>>>()?;
                    let mut it = dims.iter();
                    (0..rank)
                        .map(|i| {
                            if ins.contains(&i) {
                                Dim::Static(1)
                            } else {
                                *it.next().expect("rank counts the old axes")
                            }
                        })
                        .collect()
                };
                self.reshape_to(x_name, new, out)?;
            }
            "Transpose" => {
                a.only(&["perm"])?;
                let x_name = Self::need(n, 0)?;
                let rank = self.dims(x_name)?.len();
                let perm = match a.ints("perm")? {
                    Some(p) => p
                        .iter()
                        .map(|&x| u64::try_from(x).map_err(|_| format!("perm has {x}")))
                        .collect::<R<Vec<_>>>()?,
                    None => (0..rank as u64).rev().collect(),
                };
                let x = self.operand(x_name)?;
                let v = self.push(OpKind::Transpose { perm }, &[x], Some(out))?;
                self.bind(out, Val::Ir(v));
            }
            "LayerNormalization" => {
                a.only(&["axis", "epsilon", "stash_type"])?;
                self.only_first_output(n)?;
                let mut ops = vec![self.operand(Self::need(n, 0)?)?];
                ops.push(self.operand(Self::need(n, 1)?)?);
                if let Some(b) = Self::input(n, 2) {
                    ops.push(self.operand(b)?);
                }
                let kind = OpKind::LayerNorm {
                    axis: a.int("axis", -1)?,
                    epsilon: a.float("epsilon", 1e-5)?,
                };
                let v = self.push(kind, &ops, Some(out))?;
                self.bind(out, Val::Ir(v));
            }
            "Constant" => {
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
                self.bind(out, v);
            }
            "Shape" => {
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
            }
            "Gather" => self.gather(n, &a, out)?,
            "Mod" => {
                // Integer constants only: TorchScript's MultiheadAttention computes a slice
                // bound of its shape plumbing as `2 % 3`.
                a.only(&["fmod"])?;
                let fmod = a.int("fmod", 0)? != 0;
                let (l, r) = (Self::need(n, 0)?, Self::need(n, 1)?);
                let folded = fold_int_binary(self.int_const(l)?, self.int_const(r)?, |x, y| {
                    int_mod(x, y, fmod)
                })?;
                self.bind(out, folded);
            }
            "Slice" => {
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
            }
            "Sqrt" => {
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
            }
            "Expand" => {
                // Only constants: the exporter writes nn.scatter's fill this way.
                a.only(&[])?;
                let x_name = Self::need(n, 0)?;
                let (_, target) = self.int_const(Self::need(n, 1)?)?;
                let t = self
                    .float_const(x_name)
                    .ok_or("only a constant input can be expanded")?;
                self.bind(out, Val::Float(expand(&t, &target)?));
            }
            "Cast" => {
                a.only(&["to", "saturate", "round_mode"])?;
                let to = a.int("to", 0)? as i32;
                let x_name = Self::need(n, 0)?;
                let v = match (self.val(x_name)?.clone(), to) {
                    (Val::Int { shape, data }, data_type::INT64 | data_type::INT32) => {
                        Val::Int { shape, data }
                    }
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
            }
            _ => return Err("this operator is not supported".into()),
        }
        Ok(())
    }
}

/// `t` broadcast (NumPy rules) against the shape `target`, bit-exactly, in a new buffer.
fn expand(t: &Tensor, target: &[i64]) -> R<Tensor> {
    let rank = t.shape().len().max(target.len());
    let pad = |s: Vec<i64>| -> Vec<i64> {
        let mut v = vec![1; rank - s.len()];
        v.extend(s);
        v
    };
    let src = pad(t.shape().iter().map(|&d| d as i64).collect());
    let tgt = pad(target.to_vec());
    let mut shape = Vec::with_capacity(rank);
    for (&a, &b) in src.iter().zip(&tgt) {
        shape.push(match (a, b) {
            (a, b) if a == b || b == 1 => a,
            (1, b) if b >= 0 => b,
            _ => {
                return Err(format!(
                    "shape {:?} does not broadcast to {target:?}",
                    t.shape()
                ))
            }
        } as u64);
    }
    let count = num_elements(&shape)
        .filter(|&n| n <= crate::ir::types::MAX_ELEMENTS)
        .ok_or("the expanded tensor is too large")?;
    let mut bits = Vec::with_capacity(count as usize);
    let mut idx = vec![0u64; rank];
    for _ in 0..count {
        let mut src_i = 0u64;
        for k in 0..rank {
            let d = src[k] as u64;
            src_i = src_i * d + if d == 1 { 0 } else { idx[k] };
        }
        bits.push(t.bits(src_i as usize));
        for k in (0..rank).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(Tensor::from_bits(t.elem(), shape, bits))
}

/// A dynamic dimension inside an integer constant (what `Shape` gives for a `?`): a negative
/// value no ONNX shape uses, holding the IR value and axis it came from, so that a Reshape can
/// tell `x.view(x.size(0), -1)` (a copy of its own dynamic dim) from anything else.
mod dyn_dim {
    use crate::ir::ValueId;
    use cranelift_entity::EntityRef;

    /// Top bit set, bits 56..63 clear: disjoint from -1 and every small negative number.
    const TAG: i64 = i64::MIN;
    const MARK: i64 = 0x7F00_0000_0000_0000;

    pub fn encode(v: ValueId, axis: usize) -> i64 {
        TAG | ((v.index() as i64) << 8) | axis as i64
    }

    pub fn decode(x: i64) -> Option<(ValueId, usize)> {
        (x < 0 && x & MARK == 0).then(|| {
            (
                ValueId::new(((x & !TAG) >> 8) as usize),
                (x & 0xFF) as usize,
            )
        })
    }
}

/// Element-wise arithmetic `f` on integer constants (the shape arithmetic of exporters).
fn fold_int_binary(
    l: (Vec<u64>, Vec<i64>),
    r: (Vec<u64>, Vec<i64>),
    f: impl Fn(i64, i64) -> R<i64>,
) -> R<Val> {
    let (shape, n) = if l.1.len() >= r.1.len() {
        (l.0.clone(), l.1.len())
    } else {
        (r.0.clone(), r.1.len())
    };
    let pick = |d: &Vec<i64>, i: usize| -> R<i64> {
        match d.len() {
            1 => Ok(d[0]),
            k if k == n => Ok(d[i]),
            _ => Err("integer operands must have the same length or one element".to_string()),
        }
    };
    let mut data = Vec::with_capacity(n);
    for i in 0..n {
        let (x, y) = (pick(&l.1, i)?, pick(&r.1, i)?);
        if dyn_dim::decode(x).is_some() || dyn_dim::decode(y).is_some() {
            return Err("arithmetic on a dynamic dimension is not supported".into());
        }
        data.push(f(x, y)?);
    }
    Ok(Val::Int { shape, data })
}

/// ONNX integer `Mod`: the remainder takes the divisor's sign (Python's `%`), or the
/// dividend's with `fmod` (C's `fmod`, Rust's `%`).
fn int_mod(x: i64, y: i64, fmod: bool) -> R<i64> {
    if y == 0 {
        return Err("integer division by zero".into());
    }
    let r = x.wrapping_rem(y);
    Ok(if !fmod && r != 0 && (r < 0) != (y < 0) {
        r + y
    } else {
        r
    })
}

/// `data[start:end:step]` with ONNX Slice's rules: negative bounds count from the end, then
/// are clamped to the data (to [0, len] going forwards, to [-1, len - 1] going backwards).
fn slice_1d(data: &[i64], start: i64, end: i64, step: i64) -> R<Vec<i64>> {
    if step == 0 {
        return Err("a slice step of 0".into());
    }
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let len = data.len() as i64;
    let from_end = |i: i64| if i < 0 { i.saturating_add(len) } else { i };
    let (start, end) = if step > 0 {
        (from_end(start).clamp(0, len), from_end(end).clamp(0, len))
    } else {
        (
            from_end(start).clamp(0, len - 1),
            from_end(end).clamp(-1, len - 1),
        )
    };
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < end) || (step < 0 && i > end) {
        out.push(data[i as usize]);
        i += step;
    }
    Ok(out)
}

/// Element-wise `f` on two float constants of one element type, NumPy-broadcast. Computing in
/// f32 and rounding once to f16/bf16 is correctly rounded for +, -, ×, ÷ and √ (f32 carries
/// more than twice their precision plus two bits), so the result is what the runtime computes.
fn fold_float_binary(l: &Tensor, r: &Tensor, f: impl Fn(f32, f32) -> f32) -> R<Tensor> {
    if l.elem() != r.elem() {
        return Err("the constants have different element types".into());
    }
    let dims = |t: &Tensor| t.shape().iter().map(|&d| d as i64).collect::<Vec<_>>();
    let l = expand(l, &dims(r))?;
    let r = expand(r, &dims(&l))?;
    let values: Vec<f32> = l
        .to_f32_vec()
        .into_iter()
        .zip(r.to_f32_vec())
        .map(|(x, y)| f(x, y))
        .collect();
    Ok(Tensor::from_f32(l.elem(), l.shape().to_vec(), &values))
}

/// The result dims of an ONNX Reshape: `0` copies the input dim (unless `allowzero`), one `-1`
/// takes the remaining elements. A dynamic input dim is allowed only where a `0` (or its own
/// `x.shape[i]`) copies it, or where the `-1` must be exactly that dim.
fn reshape_dims(
    dims: &[Dim],
    target: &[i64],
    allowzero: bool,
    source: Option<ValueId>,
) -> R<Vec<Dim>> {
    let mut out: Vec<Option<Dim>> = Vec::with_capacity(target.len());
    let mut copied_dynamic = 0;
    for (i, &t) in target.iter().enumerate() {
        if let Some((v, axis)) = dyn_dim::decode(t) {
            // `Shape(x)[i]` of this very input at the same position: a copy, like `0`.
            if Some(v) != source || axis != i || dims.get(i) != Some(&Dim::Dynamic) {
                return Err(format!(
                    "shape entry {i} is a dynamic dimension of another tensor or axis; only x.shape[i] at position i of a reshape of x is supported"
                ));
            }
            copied_dynamic += 1;
            out.push(Some(Dim::Dynamic));
            continue;
        }
        out.push(match t {
            0 if !allowzero => {
                let d = *dims
                    .get(i)
                    .ok_or_else(|| format!("shape entry {i} copies a dimension the input lacks"))?;
                if d == Dim::Dynamic {
                    copied_dynamic += 1;
                }
                Some(d)
            }
            -1 => None,
            t if t >= 0 => Some(Dim::Static(t as u64)),
            t => return Err(format!("shape entry {t} is invalid")),
        });
    }
    if out.iter().filter(|d| d.is_none()).count() > 1 {
        return Err("the shape has more than one -1".into());
    }
    let dynamic_in = dims.iter().filter(|d| **d == Dim::Dynamic).count();
    let static_in: u64 = dims.iter().filter_map(|d| d.as_static()).product();
    let static_out: u64 = out.iter().flatten().filter_map(|d| d.as_static()).product();
    // `x.view(-1, 512)` of a [N, 512, 1, 1] x (the dynamo exporter's flatten): with the static
    // parts equal, the -1 is the one dynamic dimension itself.
    if dynamic_in == 1 && copied_dynamic == 0 && static_in == static_out {
        if let Some(minus_one) = out.iter_mut().find(|d| d.is_none()) {
            *minus_one = Some(Dim::Dynamic);
            copied_dynamic = 1;
        }
    }
    if dynamic_in != copied_dynamic {
        return Err(
            "reshaping a tensor with dynamic dimensions is only supported where 0 copies them"
                .into(),
        );
    }
    let fill = match out.iter().position(|d| d.is_none()) {
        Some(_) if static_out == 0 || !static_in.is_multiple_of(static_out) => {
            return Err(format!(
                "cannot infer -1: {static_in} elements do not divide by {static_out}"
            ))
        }
        Some(_) => Some(static_in / static_out),
        None if static_in != static_out => {
            return Err(format!(
                "cannot reshape {static_in} elements to {static_out}"
            ))
        }
        None => None,
    };
    Ok(out
        .into_iter()
        .map(|d| d.unwrap_or(Dim::Static(fill.unwrap_or(0))))
        .collect())
}

impl Importer {
    /// Binds `out` to `x` with dims `new` (same elements): a free re-labelling for constants,
    /// `nn.reshape` for static activations, `nn.flatten` when a dynamic batch stays in front.
    fn reshape_to(&mut self, x_name: &str, new: Vec<Dim>, out: &str) -> R<()> {
        let static_new: Option<Vec<u64>> = new.iter().map(|d| d.as_static()).collect();
        match (self.val(x_name)?.clone(), &static_new) {
            (Val::Float(t), Some(s)) => {
                let t = t.reshaped(s.clone()).ok_or("the element count changes")?;
                self.bind(out, Val::Float(t));
                return Ok(());
            }
            (Val::Int { data, .. }, Some(s)) => {
                self.bind(
                    out,
                    Val::Int {
                        shape: s.clone(),
                        data,
                    },
                );
                return Ok(());
            }
            _ => {}
        }
        let x = self.operand(x_name)?;
        let dims = self.func.ty(x).dims.to_vec();
        if dims == new {
            self.bind(out, Val::Ir(x));
            return Ok(());
        }
        // `torch.flatten(x, 1)` before a classifier: the dynamo exporter writes a static Reshape
        // to [N, C·H·W] where TorchScript writes Flatten. As `nn.flatten` both prune alike
        // (pruning follows a channel through a flatten at axis 1, not through a reshape).
        let classifier_flatten = dims.len() > 2
            && new.len() == 2
            && new[0] == dims[0]
            && dims[1..]
                .iter()
                .map(|d| d.as_static())
                .product::<Option<u64>>()
                == new[1].as_static();
        let kind = match static_new {
            Some(_) if classifier_flatten => OpKind::Flatten { axis: 1 },
            Some(shape) if self.func.ty(x).is_static() => OpKind::Reshape { shape },
            _ => {
                // A flatten gives [prod(dims[..k]), prod(dims[k..])]; find the k that matches.
                let side = |part: &[Dim], want: Dim| match want {
                    Dim::Dynamic => part == [Dim::Dynamic],
                    Dim::Static(w) => {
                        part.iter().all(|d| d.as_static().is_some())
                            && part.iter().filter_map(|d| d.as_static()).product::<u64>() == w
                    }
                };
                let k = (new.len() == 2)
                    .then(|| {
                        (0..=dims.len())
                            .find(|&k| side(&dims[..k], new[0]) && side(&dims[k..], new[1]))
                    })
                    .flatten()
                    .ok_or_else(|| {
                        format!(
                            "reshaping {} to [{}] needs a static input shape",
                            self.func.ty(x),
                            new.iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    })?;
                OpKind::Flatten { axis: k as i64 }
            }
        };
        let v = self.push(kind, &[x], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    fn gather(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&["axis"])?;
        let x_name = Self::need(n, 0)?;
        let (ishape, idx) = self.int_const(Self::need(n, 1)?)?;
        let dims = self.dims(x_name)?;
        let axis = norm_axis(a.int("axis", 0)?, dims.len())?;
        let size = dims[axis].as_static();
        let indices = idx
            .iter()
            .map(|&i| {
                let j = if i < 0 {
                    size.map(|s| i + s as i64)
                        .ok_or("a negative index on a dynamic axis")?
                } else {
                    i
                };
                match size {
                    Some(s) if j < 0 || j as u64 >= s => {
                        Err(format!("index {i} is out of range for size {s}"))
                    }
                    _ => Ok(j as u64),
                }
            })
            .collect::<R<Vec<_>>>()?;
        // Result dims: the data's with `axis` replaced by the indices' dims.
        let mut new: Vec<Dim> = dims[..axis].to_vec();
        new.extend(ishape.iter().map(|&d| Dim::Static(d)));
        new.extend_from_slice(&dims[axis + 1..]);
        if let Val::Int { shape, data } = self.val(x_name)?.clone() {
            if shape.len() != 1 {
                return Err("only 1-D integer data can be gathered".into());
            }
            let data = indices.iter().map(|&i| data[i as usize]).collect();
            self.bind(
                out,
                Val::Int {
                    shape: ishape,
                    data,
                },
            );
            return Ok(());
        }
        let x = self.operand(x_name)?;
        let kind = OpKind::Gather {
            axis: axis as i64,
            indices,
        };
        if ishape.len() == 1 {
            let v = self.push(kind, &[x], Some(out))?;
            self.bind(out, Val::Ir(v));
            return Ok(());
        }
        let g = self.push(kind, &[x], None)?;
        let tmp = format!("{out}.gathered");
        self.bind(&tmp, Val::Ir(g));
        self.reshape_to(&tmp, new, out)
    }

    /// Explicit [top, left, bottom, right] pads from `pads`/`auto_pad` for a 2-D window.
    fn window_pads(
        &self,
        a: &Attrs<'_>,
        x_dims: &[Dim],
        kernel: [u64; 2],
        strides: [u64; 2],
        dilations: [u64; 2],
    ) -> R<[u64; 4]> {
        let auto = a.string("auto_pad")?.unwrap_or_else(|| "NOTSET".into());
        match auto.as_str() {
            "NOTSET" => match a.ints("pads")? {
                None => Ok([0; 4]),
                Some(p) if p.len() == 4 && p.iter().all(|&x| x >= 0) => {
                    Ok([p[0] as u64, p[1] as u64, p[2] as u64, p[3] as u64])
                }
                Some(p) => Err(format!("pads {p:?} must be 4 non-negative integers")),
            },
            "VALID" => Ok([0; 4]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut pads = [0u64; 4];
                for i in 0..2 {
                    let size = x_dims[2 + i]
                        .as_static()
                        .ok_or("auto_pad SAME needs static spatial dimensions")?;
                    let out = size.div_ceil(strides[i]);
                    let span = (kernel[i] - 1) * dilations[i] + 1;
                    let total = ((out - 1) * strides[i] + span).saturating_sub(size);
                    let small = total / 2;
                    let (begin, end) = if auto == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                    pads[i] = begin;
                    pads[2 + i] = end;
                }
                Ok(pads)
            }
            other => Err(format!("auto_pad '{other}' is not supported")),
        }
    }

    fn conv(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        a.only(&[
            "auto_pad",
            "dilations",
            "group",
            "kernel_shape",
            "pads",
            "strides",
        ])?;
        let x_name = Self::need(n, 0)?;
        let w_name = Self::need(n, 1)?;
        let x_dims = self.dims(x_name)?;
        let w_dims = self.dims(w_name)?;
        if x_dims.len() != 4 || w_dims.len() != 4 {
            return Err(format!(
                "only 2-D convolution is supported (input rank {}, filter rank {})",
                x_dims.len(),
                w_dims.len()
            ));
        }
        let kernel = [
            w_dims[2]
                .as_static()
                .ok_or("the filter shape must be static")?,
            w_dims[3]
                .as_static()
                .ok_or("the filter shape must be static")?,
        ];
        if let Some(k) = a.ints("kernel_shape")? {
            if k != [kernel[0] as i64, kernel[1] as i64] {
                return Err(format!(
                    "kernel_shape {k:?} disagrees with the filter {kernel:?}"
                ));
            }
        }
        let pair = |name: &str| -> R<[u64; 2]> {
            match a.ints(name)? {
                None => Ok([1, 1]),
                Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => {
                    Ok([v[0] as u64, v[1] as u64])
                }
                Some(v) => Err(format!("{name} {v:?} must be 2 positive integers")),
            }
        };
        let (strides, dilations) = (pair("strides")?, pair("dilations")?);
        let pads = self.window_pads(a, &x_dims, kernel, strides, dilations)?;
        let groups = u64::try_from(a.int("group", 1)?).map_err(|_| "group must be positive")?;
        let mut ops = vec![self.operand(x_name)?, self.operand(w_name)?];
        if let Some(b) = Self::input(n, 2) {
            ops.push(self.operand(b)?);
        }
        let kind = OpKind::Conv2d {
            strides,
            pads,
            dilations,
            groups,
        };
        let v = self.push(kind, &ops, Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    fn pool(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
        let max = n.op_type == "MaxPool";
        if max {
            a.only(&[
                "auto_pad",
                "ceil_mode",
                "dilations",
                "kernel_shape",
                "pads",
                "storage_order",
                "strides",
            ])?;
            if a.int("storage_order", 0)? != 0 {
                return Err("storage_order = 1 is not supported".into());
            }
        } else {
            a.only(&[
                "auto_pad",
                "ceil_mode",
                "count_include_pad",
                "dilations",
                "kernel_shape",
                "pads",
                "strides",
            ])?;
        }
        self.only_first_output(n)?;
        let x_name = Self::need(n, 0)?;
        let x_dims = self.dims(x_name)?;
        if x_dims.len() != 4 {
            return Err(format!(
                "only 2-D pooling is supported (input rank {})",
                x_dims.len()
            ));
        }
        let k = a.ints("kernel_shape")?.ok_or("kernel_shape is required")?;
        if k.len() != 2 || k.iter().any(|&x| x <= 0) {
            return Err(format!("kernel_shape {k:?} must be 2 positive integers"));
        }
        let kernel = [k[0] as u64, k[1] as u64];
        if let Some(d) = a.ints("dilations")? {
            if d.iter().any(|&x| x != 1) {
                return Err(format!("dilations {d:?} are not supported (only 1)"));
            }
        }
        let strides = match a.ints("strides")? {
            None => [1, 1],
            Some(v) if v.len() == 2 && v.iter().all(|&x| x > 0) => [v[0] as u64, v[1] as u64],
            Some(v) => return Err(format!("strides {v:?} must be 2 positive integers")),
        };
        let pads = self.window_pads(a, &x_dims, kernel, strides, [1, 1])?;
        let pool = Pool2d {
            kernel,
            strides,
            pads,
            ceil_mode: a.int("ceil_mode", 0)? != 0,
        };
        let kind = if max {
            OpKind::MaxPool2d(pool)
        } else {
            OpKind::AvgPool2d {
                pool,
                count_include_pad: a.int("count_include_pad", 0)? != 0,
            }
        };
        let x = self.operand(x_name)?;
        let v = self.push(kind, &[x], Some(out))?;
        self.bind(out, Val::Ir(v));
        Ok(())
    }

    /// Gemm: `alpha·A'·B' + beta·C`. With a constant B this is `nn.linear` with the weight
    /// `alpha·B'` (as [out, in]) and, when C is a vector or scalar, the bias `beta·C`.
    fn gemm(&mut self, n: &NodeProto, a: &Attrs<'_>, out: &str) -> R<()> {
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
        let w = if tb { b.clone() } else { transpose2d(&b) };
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
    fn matmul(&mut self, n: &NodeProto, g: &proto::GraphProto, out: &str) -> R<()> {
        Attrs(&n.attribute).only(&[])?;
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
        let w = self.weight(b_name, transpose2d(&b));
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

#[cfg(test)]
mod tests {
    use super::{int_mod, reshape_dims, slice_1d, transpose2d};
    use crate::ir::{Dim, ElemType, Tensor};

    #[test]
    fn minus_one_takes_the_dynamic_dim_when_the_static_parts_match() {
        let (n, s) = (Dim::Dynamic, Dim::Static);
        let x = [n, s(512), s(1), s(1)];
        assert_eq!(
            reshape_dims(&x, &[-1, 512], false, None),
            Ok(vec![n, s(512)])
        );
        assert_eq!(reshape_dims(&x, &[0, -1], false, None), Ok(vec![n, s(512)]));
        // -1 would be N · 2: not expressible, refused.
        assert!(reshape_dims(&x, &[-1, 256], false, None).is_err());
        assert!(reshape_dims(&[n, n, s(4)], &[-1, 4], false, None).is_err());
    }

    #[test]
    fn int_mod_takes_the_divisors_sign_unless_fmod() {
        let cases = [
            (7, 3, 1, 1),
            (-7, 3, 2, -1),
            (7, -3, -2, 1),
            (-7, -3, -1, -1),
            (6, 3, 0, 0),
        ];
        for (x, y, python, c) in cases {
            assert_eq!(int_mod(x, y, false), Ok(python), "{x} mod {y}");
            assert_eq!(int_mod(x, y, true), Ok(c), "fmod({x}, {y})");
        }
        assert_eq!(int_mod(i64::MIN, -1, false), Ok(0));
        assert!(int_mod(1, 0, false).is_err());
    }

    #[test]
    fn slice_1d_follows_onnx_clamping() {
        let d = [10, 20, 30, 40];
        assert_eq!(slice_1d(&d, -1, i64::MAX, 1), Ok(vec![40]));
        assert_eq!(slice_1d(&d, 0, 2, 1), Ok(vec![10, 20]));
        assert_eq!(slice_1d(&d, i64::MIN, -2, 1), Ok(vec![10, 20]));
        assert_eq!(slice_1d(&d, 5, 9, 1), Ok(vec![]));
        assert_eq!(slice_1d(&d, -1, i64::MIN, -1), Ok(vec![40, 30, 20, 10]));
        assert_eq!(slice_1d(&d, 9, 0, -2), Ok(vec![40, 20]));
        assert_eq!(slice_1d(&[], -1, 0, -1), Ok(vec![]));
        assert!(slice_1d(&d, 0, 1, 0).is_err());
    }

    #[test]
    fn transpose2d_moves_every_element_bit_exactly() {
        // 37 × 5 crosses a 32-row tile boundary.
        let (r, c) = (37usize, 5usize);
        let values: Vec<f32> = (0..r * c).map(|i| i as f32 * 0.5 - 3.0).collect();
        for elem in [ElemType::F32, ElemType::F16, ElemType::BF16] {
            let t = Tensor::from_f32(elem, vec![r as u64, c as u64], &values);
            let tt = transpose2d(&t);
            assert_eq!(tt.shape(), &[c as u64, r as u64]);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(tt.bits(j * r + i), t.bits(i * c + j), "{elem:?} ({i}, {j})");
                }
            }
        }
        let s = transpose2d(&Tensor::splat(ElemType::F32, vec![2, 3], 1.5));
        assert!(s.is_splat() && s.shape() == [3, 2]);
    }
}
