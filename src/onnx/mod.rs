//! ONNX models in and out.
//!
//! [`import`] turns an ONNX `ModelProto` into an NNIR [`Module`](crate::ir::Module) whose
//! weights are `nn.weight` tensors still in the memory-mapped model (or external-data) file;
//! [`export`] writes a module back as an ONNX model. The protobuf messages are declared by hand
//! in [`proto`] (only the fields used). `docs/onnx.md` lists the operator mapping and limits.

pub mod export;
pub mod import;
pub mod proto;

pub use export::{export_model, write_onnx};
pub use import::{import_bytes, import_file};

use crate::diag::Diagnostic;
use crate::ir::{Attr, Module, OpKind, Tensor};
use std::collections::HashSet;
use std::path::Path;

/// `true` when `path` names an ONNX model (by its `.onnx` extension): formats go by extension.
pub fn is_onnx_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Writes `m` as NNIR text at `path`, with its `nn.weight` tensors in `<stem>.safetensors`
/// beside it, and points the module attribute `weights` at that file. Both files are written
/// atomically (the weights first, so the text never names a missing file).
pub fn write_nnir_with_weights(m: &mut Module, path: &Path) -> Result<(), Diagnostic> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| Diagnostic::error(format!("{} has no usable file name", path.display())))?;
    let weights_name = format!("{stem}.safetensors");
    let weights_path = path.with_file_name(&weights_name);
    if weights_path == path {
        return Err(Diagnostic::error(format!(
            "the output {} would be overwritten by its own weights file",
            path.display()
        )));
    }
    let mut seen = HashSet::new();
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    for f in &m.funcs {
        for op in f.ops() {
            if let OpKind::Weight { name, value } = f.kind(op) {
                if seen.insert(name.clone()) {
                    tensors.push((name.clone(), value.clone()));
                }
            }
        }
    }
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    crate::ir::weights::write_safetensors(&weights_path, &refs)
        .map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", weights_path.display())))?;
    m.attrs.retain(|(k, _)| k != "weights");
    m.attrs.push(("weights".into(), Attr::Str(weights_name)));
    let text = crate::syntax::printer::print_module(m);
    crate::driver::write_atomic(path, text.as_bytes())
        .map_err(|e| Diagnostic::error(format!("cannot write {}: {e}", path.display())))
}
