//! The model and its graph: version and opset checks, graph inputs and outputs, and the walk
//! over the nodes in topological order (Kahn's algorithm), which also finds cycles, values
//! defined twice and inputs nobody defines.
//!
//! Invariant: every diagnostic about a node names it the same way ([`describe`]).

use super::fold::dyn_dim;
use super::generalize;
use super::initializers::elem_of;
use super::values::{symbol_name, Val};
use super::{ImportOptions, Importer, R};
use crate::diag::{Diagnostic, Severity, Span};
use crate::ir::builder::FuncBuilder;
use crate::ir::{Attr, Dim, ElemType, Function, Loc, Module, OpId, OpKind, TensorType};
use crate::onnx::proto::{self, data_type, ModelProto, NodeProto};
use cranelift_entity::EntityRef;
use memmap2::Mmap;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

/// Newest ONNX IR version known (onnx 1.20 to 1.22 write IR 13). A newer model is still read,
/// with a warning: IR versions add fields and types, and prost skips the fields nnopt does not
/// declare, while every element type and operator it meets is checked on its own.
pub const MAX_IR_VERSION: i64 = 13;
/// Opsets of the default domain accepted (onnx 1.22 knows up to 27). Of the operators nnopt
/// reads, the versions after 21 only add element types (bfloat16, float8, float4, int2), so
/// every one of them keeps the meaning nnopt implements.
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=27;

/// Converts a decoded model: checks its IR version, opset and graph, imports the graph as the
/// module's only function and verifies the result. `map` and `base_dir` as for
/// [`import_bytes`](super::import_bytes), `options` as for [`import_file`](super::import_file);
/// a model newer than nnopt knows adds a warning to `warnings`.
pub fn import_model(
    model: &ModelProto,
    map: Option<Arc<Mmap>>,
    base_dir: &Path,
    options: &ImportOptions,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Module, Diagnostic> {
    let mut blocked = None;
    let first = import_pinned(
        model,
        map.clone(),
        base_dir,
        options,
        warnings,
        &mut blocked,
    );
    let (Err(d), Some(name)) = (&first, blocked) else {
        return first;
    };
    // A value computed from the dynamic dimension `name`: import at two sizes and merge.
    let mut probes = Vec::new();
    for size in generalize::PROBES {
        let mut pinned = options.clone();
        pinned.dims.push((name.clone(), size));
        let m = import_pinned(
            model,
            map.clone(),
            base_dir,
            &pinned,
            &mut Vec::new(),
            &mut None,
        )
        .map_err(|e| {
            d.clone().with_note(format!(
                "with {name} = {size}, the import stops at: {}",
                e.message
            ))
        })?;
        probes.push(m);
    }
    generalize::generalize(&probes[0], &probes[1]).map_err(|e| {
        d.clone()
            .with_note(format!("{name} cannot stay dynamic: {e}"))
    })
}

/// [`import_model`] with the dimensions `options` pins; `blocked` names the dynamic dimension
/// an import-time value depended on when that stopped it.
fn import_pinned(
    model: &ModelProto,
    map: Option<Arc<Mmap>>,
    base_dir: &Path,
    options: &ImportOptions,
    warnings: &mut Vec<Diagnostic>,
    blocked: &mut Option<String>,
) -> Result<Module, Diagnostic> {
    if model.ir_version > MAX_IR_VERSION {
        warnings.push(
            Diagnostic::new(Severity::Warning, format!(
                "ONNX IR version {} is newer than the newest nnopt knows ({MAX_IR_VERSION}); reading it as IR version {MAX_IR_VERSION}",
                model.ir_version
            ))
            .with_note("fields added by newer IR versions are ignored; element types and operators are still checked one by one"),
        );
    }
    if model.ir_version < 3 {
        return Err(Diagnostic::error(format!(
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
    let opset = opset.ok_or_else(|| {
        Diagnostic::error("the model imports no version of the default ONNX opset")
    })?;
    if opset > *OPSETS.end() {
        return Err(Diagnostic::error(format!(
            "opset {opset} of the default domain is newer than the newest nnopt knows ({}): its operators may mean something else",
            OPSETS.end()
        )));
    }
    if opset < *OPSETS.start() {
        return Err(Diagnostic::error(format!(
            "opset {opset} of the default domain is not supported (nnopt reads opsets {} to {})",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| Diagnostic::error("the model has no graph"))?;
    if !graph.sparse_initializer.is_empty() {
        return Err(Diagnostic::error("sparse initializers are not supported"));
    }
    let mut pinned = HashMap::new();
    for (name, size) in &options.dims {
        if pinned.insert(name.clone(), (*size, false)).is_some() {
            return Err(Diagnostic::error(format!("--dim {name} is given twice")));
        }
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
        fills: HashMap::new(),
        pinned,
        dim_params: HashMap::new(),
        chains: HashMap::new(),
        bools: HashSet::new(),
        blocked: None,
        func: Function::new(func_name, Span::default()),
    };
    if let Err(d) = imp.graph(graph) {
        *blocked = imp.blocked;
        return Err(d);
    }
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
    let inits: HashSet<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
    module.attrs.extend(crate::onnx::metadata::to_attrs(
        &model.doc_string,
        &graph.doc_string,
        &model.metadata_props,
        graph
            .input
            .iter()
            .filter(|vi| !inits.contains(vi.name.as_str())),
        &graph.output,
    ));
    let errors = crate::verify::verify_module(&module);
    if let Some(e) = errors.into_iter().next() {
        return Err(Diagnostic::error(format!(
            "internal error: the imported module does not verify: {}",
            e.message
        )));
    }
    Ok(module)
}

/// The `dim_param` of each dimension of a graph input (`None` where it has none).
fn dim_params(vi: &proto::ValueInfoProto) -> Vec<Option<String>> {
    use proto::tensor_shape_proto::dimension::Value as D;
    use proto::type_proto::Value;
    match vi.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(Value::TensorType(tt)) => (tt.shape.iter().flat_map(|s| &s.dim))
            .map(|d| match &d.value {
                Some(D::DimParam(p)) => Some(p.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
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

impl Importer {
    fn input_type(&mut self, vi: &proto::ValueInfoProto) -> R<TensorType> {
        use proto::tensor_shape_proto::dimension::Value as D;
        use proto::type_proto::Value;
        let Some(Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
            return Err(format!("graph input '{}' is not a tensor", vi.name));
        };
        // INT64 inputs are token ids, which only `nn.embedding` reads (the verifier's rule).
        let int = (tt.elem_type == data_type::INT64).then_some(ElemType::I64);
        let elem = elem_of(tt.elem_type).or(int).ok_or_else(|| {
            format!(
                "graph input '{}' has element type {} ({}); NNIR supports FLOAT, FLOAT16, BFLOAT16 and INT64",
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
            .map(|d| match &d.value {
                Some(D::DimParam(p)) => Ok(match self.pinned.get_mut(p) {
                    Some((size, seen)) => {
                        *seen = true;
                        Dim::Static(*size)
                    }
                    None => Dim::Dynamic,
                }),
                Some(D::DimValue(n)) if *n >= 0 => Ok(Dim::Static(*n as u64)),
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
                .map_err(|e| Diagnostic::error(format!("initializer '{}': {e}", t.name)))?;
            self.bind(&t.name, v);
        }
        for vi in &g.input {
            // Older exporters list initializers among the inputs too; the initializer wins.
            if self.vals.contains_key(&vi.name) {
                continue;
            }
            let ty = self.input_type(vi).map_err(Diagnostic::error)?;
            let name = self.value_name(&vi.name);
            let v = FuncBuilder::new(&mut self.func).add_arg(ty, name, Span::default());
            for (axis, d) in dim_params(vi).into_iter().enumerate() {
                if let (Some(p), Dim::Dynamic) = (d, self.func.ty(v).dims[axis]) {
                    self.dim_params.insert((v, axis), (p, vi.name.clone()));
                }
            }
            self.bind(&vi.name, Val::Ir(v));
        }
        self.check_pinned(g)?;
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
        self.find_chains(g, &order);
        for i in order {
            if self.skip.contains(&i) {
                continue;
            }
            let n = &g.node[i];
            let first = self.func.op_capacity();
            match self.chains.remove(&i) {
                Some(c) => self.chain(n, c),
                None => self.node(n, g),
            }
            .map_err(|e| {
                let d = Diagnostic::error(format!("{}: {e}", describe(n, i, self.opset)));
                let dim = (self.dynamic_input_dim(n)).filter(|_| e.ends_with(dyn_dim::DEPENDS));
                self.blocked = dim.as_ref().map(|(name, _)| name.clone());
                match dim {
                    Some((_, note)) => d.with_note(note),
                    None => d,
                }
            })?;
            self.name_ops_from(first, &n.name);
        }
        let mut results = Vec::new();
        let mut types = Vec::new();
        for o in &g.output {
            let v = self
                .operand(&o.name)
                .map_err(|e| Diagnostic::error(format!("graph output '{}': {e}", o.name)))?;
            results.push(v);
            types.push(self.func.ty(v).clone());
        }
        let mut b = FuncBuilder::new(&mut self.func);
        b.set_result_types(types);
        b.push_return(&results, Span::default());
        Ok(())
    }

    /// The named input dimension that the integer inputs of `n` carry, as a note: `the
    /// dimension is 'S' (axis 1 of graph input 'input_ids'): --dim S=SIZE gives it a size`, with
    /// the dimension's name.
    fn dynamic_input_dim(&self, n: &NodeProto) -> Option<(String, String)> {
        let mut entries = n.input.iter().filter_map(|i| match self.vals.get(i) {
            Some(Val::Int { data, .. }) => Some(data),
            _ => None,
        });
        let (v, axis) = entries.find_map(|data| {
            data.iter()
                .filter_map(|&x| dyn_dim::decode(x))
                .find(|k| self.dim_params.contains_key(k))
        })?;
        let (name, input) = &self.dim_params[&(v, axis)];
        let note = format!(
            "the dimension is '{name}' (axis {axis} of graph input '{input}'): --dim {name}=SIZE gives it a size"
        );
        Some((name.clone(), note))
    }

    /// Refuses a `--dim` name that no graph input's dimension has, listing the names there are.
    fn check_pinned(&self, g: &proto::GraphProto) -> Result<(), Diagnostic> {
        let Some(first) = (self.pinned.iter())
            .filter(|(_, (_, seen))| !seen)
            .map(|(name, _)| name.as_str())
            .min()
        else {
            return Ok(());
        };
        let mut names: Vec<String> = Vec::new();
        for p in g.input.iter().flat_map(dim_params).flatten() {
            if !names.contains(&p) {
                names.push(p);
            }
        }
        let known = if names.is_empty() {
            "the graph inputs have no named dimensions".to_string()
        } else {
            format!(
                "the graph inputs' named dimensions are {}",
                names.join(", ")
            )
        };
        Err(Diagnostic::error(format!(
            "--dim {first}: no graph input has a dimension named '{first}'"
        ))
        .with_note(known))
    }

    /// Gives the ops created since op index `first` (for one node) the node's name as their
    /// location, which the exporter names the node after. Weights are left out: they belong
    /// to an initializer, whichever node used it first; so are ops the translation named
    /// itself (an `nn.scatter` rebuilt from several nodes).
    fn name_ops_from(&mut self, first: usize, name: &str) {
        if name.is_empty() {
            return;
        }
        let mut b = FuncBuilder::new(&mut self.func);
        for op in (first..b.func().op_capacity()).map(OpId::new) {
            if b.func().is_linked(op)
                && b.func().loc(op).is_none()
                && !matches!(b.func().kind(op), OpKind::Weight { .. })
            {
                b.set_loc(op, Loc::Name(name.to_string()));
            }
        }
    }

    /// Kahn's algorithm over the nodes, in file order where it is free; reports an input
    /// nobody defines and cycles.
    fn topo_order(&self, g: &proto::GraphProto) -> Result<Vec<usize>, Diagnostic> {
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, n) in g.node.iter().enumerate() {
            for o in n.output.iter().filter(|s| !s.is_empty()) {
                if self.vals.contains_key(o) || producer.insert(o, i).is_some() {
                    return Err(Diagnostic::error(format!(
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
                        return Err(Diagnostic::error(format!(
                            "{}: input '{inp}' is not a graph input, an initializer or the output of a node",
                            describe(n, i, self.opset)
                        )))
                    }
                }
            }
        }
        // The lowest ready index first: a graph already in topological order keeps its order,
        // so exporting an imported model writes its nodes as they were.
        let mut ready: BinaryHeap<Reverse<usize>> = (0..g.node.len())
            .filter(|&i| pending[i] == 0)
            .map(Reverse)
            .collect();
        let mut order = Vec::with_capacity(g.node.len());
        while let Some(Reverse(i)) = ready.pop() {
            order.push(i);
            for &u in &users[i] {
                pending[u] -= 1;
                if pending[u] == 0 {
                    ready.push(Reverse(u));
                }
            }
        }
        if order.len() < g.node.len() {
            let stuck = (0..g.node.len())
                .find(|&i| pending[i] > 0)
                .expect("some node is left");
            return Err(Diagnostic::error(format!(
                "{}: the graph has a cycle through this node (or it depends on one)",
                describe(&g.node[stuck], stuck, self.opset)
            )));
        }
        for o in &g.output {
            if !producer.contains_key(o.name.as_str()) && !self.vals.contains_key(&o.name) {
                return Err(Diagnostic::error(format!(
                    "graph output '{}' is never defined",
                    o.name
                )));
            }
        }
        Ok(order)
    }

    /// The only node using `value`, if exactly one node (and no graph output) uses it.
    pub(super) fn sole_consumer(&self, value: &str) -> Option<usize> {
        match self.consumers.get(value).map(Vec::as_slice) {
            Some([i]) if *i != usize::MAX => Some(*i),
            _ => None,
        }
    }
}
