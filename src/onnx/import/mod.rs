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
//! The files: `graph.rs` checks the model (IR version, opset) and walks its graph in
//! topological order; `values.rs` keeps the table from ONNX names to IR values and constants;
//! `initializers.rs` reads tensors (memory-mapped raw data, external data); `attrs.rs` reads
//! typed node attributes; `const_index.rs` (structure: Slice, Expand, Concat, Gather, ...) and
//! `const_math.rs` (element-wise: comparisons, logic, Where, CumSum, Range, ...) compute on
//! import-time constants of any rank, `fold.rs` holds their helpers; `nodes/` translates
//! nodes, one file per operator family (`nodes/mask.rs`: booleans computed at run time, an
//! attention mask, as 0/1 floats).
//!
//! Does not: inline model-local functions, read sparse initializers, or compute with dynamic
//! dimensions (a `Shape` of one is a symbolic entry that only a Reshape of the same value may
//! copy). Every node that cannot be represented is an error naming it; nothing is skipped
//! silently.

mod attrs;
mod const_index;
mod const_math;
mod fold;
mod generalize;
mod graph;
mod initializers;
mod nodes;
mod values;

pub use graph::{import_model, MAX_IR_VERSION, OPSETS};

/// What the caller fixes about a model before it is read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportOptions {
    /// Symbolic dimensions (`dim_param`) of the graph inputs given a size, as onnxruntime's
    /// `--free_dimension_override_by_name`: every input dimension of that name becomes static,
    /// so that everything computed from shapes alone is an import-time constant. A name that
    /// no input dimension has is an error.
    pub dims: Vec<(String, u64)>,
}

use crate::diag::Diagnostic;
use crate::ir::{Function, Module, Tensor, ValueId};
use bytes::Bytes;
use memmap2::Mmap;
use prost::Message;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use values::Val;

use super::proto::ModelProto;

/// Owns a map so that `Bytes` can slice it without copying.
struct MapOwner(Arc<Mmap>);

impl AsRef<[u8]> for MapOwner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Reads and converts an ONNX model. External data resolves against the model's directory.
/// Warnings (a model newer than nnopt knows) are added to `warnings`.
pub fn import_file(
    path: &Path,
    options: &ImportOptions,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Module, Diagnostic> {
    let fail =
        |e: std::io::Error| Diagnostic::error(format!("cannot read {}: {e}", path.display()));
    let file = std::fs::File::open(path).map_err(fail)?;
    // SAFETY: read-only mapping; as for safetensors, the file must not be truncated in place
    // while nnopt runs (see the module docs of `crate::weights`).
    let map = Arc::new(unsafe { Mmap::map(&file) }.map_err(fail)?);
    let bytes = Bytes::from_owner(MapOwner(map.clone()));
    let base_dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    import_bytes(bytes, Some(map), &base_dir, options, warnings)
        .map_err(|d| d.with_note(format!("while importing {}", path.display())))
}

/// Converts a serialized model. `map` is the mapping `bytes` slices, if any: initializer data
/// inside it is referenced instead of copied. Options and warnings as for [`import_file`].
pub fn import_bytes(
    bytes: Bytes,
    map: Option<Arc<Mmap>>,
    base_dir: &Path,
    options: &ImportOptions,
    warnings: &mut Vec<Diagnostic>,
) -> Result<Module, Diagnostic> {
    let model = ModelProto::decode(bytes).map_err(|e| {
        Diagnostic::error(format!(
            "the file is not a valid ONNX model (protobuf: {e})"
        ))
    })?;
    import_model(&model, map, base_dir, options, warnings)
}

/// The result of translating one node or tensor: the message is prefixed with what failed.
type R<T> = Result<T, String>;

/// The state of one import: the ONNX value table and the function being built.
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
    /// Float constants `Expand`ed (fill and target shape), by the Expand's output: a Concat
    /// may read them as an `nn.scatter`'s fill (see `nodes/scatter.rs`).
    fills: HashMap<String, (Tensor, Vec<i64>)>,
    /// `--dim` sizes by `dim_param` name, and whether an input dimension had the name.
    pinned: HashMap<String, (u64, bool)>,
    /// The `dim_param` and graph input of each dynamic graph-input dimension, by input value
    /// and axis, to name the one a refused computation depends on.
    dim_params: HashMap<(ValueId, usize), (String, String)>,
    /// Chains of nodes imported as one op (RMSNorm, GELU), by their last node; their other
    /// nodes are in `skip` (see `nodes/chains.rs`).
    chains: HashMap<usize, nodes::Chain>,
    /// ONNX values that are run-time booleans, f32 tensors of 0s and 1s (see `nodes/mask.rs`).
    bools: HashSet<String>,
    /// The dynamic dimension an import-time value depended on when a node was refused (the
    /// import is then tried at two sizes of it, `generalize.rs`).
    blocked: Option<String>,
    func: Function,
}
