//! ONNX models in and out.
//!
//! [`import`] turns an ONNX `ModelProto` into an NNIR [`Module`](crate::ir::Module) whose
//! weights are `nn.weight` tensors still in the memory-mapped model (or external-data) file;
//! [`export`] writes a module back as an ONNX model. The protobuf messages are declared by hand
//! in [`proto`] (only the fields used). `docs/onnx.md` lists the operator mapping and limits.

mod channel_block;
pub mod export;
pub mod import;
mod metadata;
pub mod proto;

pub use channel_block::channel_block;
pub use export::{export_model, write_onnx, ExternalData};
pub use import::{import_bytes, import_file, ImportOptions};

use std::path::Path;

/// `true` when `path` names an ONNX model (by its `.onnx` extension): formats go by extension.
pub fn is_onnx_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}
