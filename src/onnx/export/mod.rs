//! NNIR → ONNX.
//!
//! Writes one function of a module as an ONNX graph (opset [`EXPORT_OPSET`], IR version
//! [`EXPORT_IR_VERSION`]) using only standard operators, so any runtime loads the result.
//! `nn.weight` and `nn.constant` become initializers (`nn.weight` keeps its tensor name);
//! `nn.scatter` becomes `Concat` + `Gather` over a constant fill (exact: every output element is
//! copied, never computed); `nn.linear` becomes `Gemm` (2-D input) or `MatMul` + `Add`.
//!
//! Initializer bytes are shared with the module's tensors (memory-mapped weights stay mapped)
//! or gathered from views as they are written, and streamed to the output file by the encoder;
//! the large ones go to an external data file beside it when asked, or when the model would
//! exceed protobuf's 2 GiB.
//!
//! The files: `graph.rs` names the values and builds the graph (inputs, outputs,
//! initializers); `ops.rs` translates each op; `scatter.rs` encodes `nn.scatter`; `stream.rs`
//! encodes the model into the output file; `external.rs` writes the external data file.

mod external;
mod graph;
mod ops;
mod scatter;
mod stream;

pub use external::{check_data_file_name, default_data_file, ExternalData};
pub use stream::write_onnx;

use super::proto::{ModelProto, OperatorSetIdProto};
use crate::diag::Diagnostic;
use crate::ir::{Module, Tensor};
use graph::Exporter;

/// Opset of the default domain written (20: `Gelu`, `ReduceMean` with axes as an input).
pub const EXPORT_OPSET: i64 = 20;
/// The IR version that goes with opset 20.
pub const EXPORT_IR_VERSION: i64 = 9;

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
    let carried = super::metadata::from_module(m);
    let (graph, deferred) = Exporter::new(f).graph(&carried)?;
    let model = ModelProto {
        ir_version: EXPORT_IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: EXPORT_OPSET,
        }],
        producer_name: "nnopt".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        doc_string: carried.doc,
        graph: Some(graph),
        metadata_props: carried.props,
        functions: Vec::new(),
    };
    Ok((model, deferred))
}
