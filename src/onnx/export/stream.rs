//! Writing an ONNX model to a file as it is encoded, through a 1 MiB buffer, with the
//! initializers that have no buffer of their own (pruned views, splats) gathered chunk by chunk
//! as they are written; the large initializers go to an external data file instead when asked,
//! or when the model would exceed protobuf's 2 GiB (`external.rs`).

use super::export_parts;
use super::external::{default_data_file, stage_external, ExternalData, PROTOBUF_LIMIT};
use crate::diag::Diagnostic;
use crate::ir::{Module, Tensor};
use crate::onnx::proto::{GraphProto, ModelProto, TensorProto};
use prost::Message;
use std::path::Path;

/// Encodes `m` and writes it atomically to `path`, streaming: the encoder writes through a
/// 1 MiB buffer into the temporary file, so the model is never whole in memory. Initializers
/// with a buffer go from it (or the input's memory map) to the file; the others (pruned weights,
/// which are views of the original, and splats) are gathered chunk by chunk as they are
/// written, in their place: their lengths are known without their bytes. A pruned model thus
/// has the bytes of its own re-export (whose weights all have buffers).
///
/// With external data (`external`), the large initializers' bytes go to a data file beside
/// `path` instead, streamed the same way; both files appear, or neither: the data file is
/// renamed into place only once the model's temporary file is complete, just before the model.
pub fn write_onnx(m: &Module, path: &Path, external: &ExternalData) -> Result<(), Diagnostic> {
    write_onnx_limited(m, path, external, PROTOBUF_LIMIT)
}

/// [`write_onnx`], with external data from `limit` bytes of model on (tests lower it).
pub(super) fn write_onnx_limited(
    m: &Module,
    path: &Path,
    external: &ExternalData,
    limit: usize,
) -> Result<(), Diagnostic> {
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
    // Every initializer in its place: with its bytes, or to be gathered as it is written.
    let mut deferred = deferred.into_iter().peekable();
    let mut inits: Vec<(TensorProto, Option<Tensor>)> = std::mem::take(&mut graph.initializer)
        .into_iter()
        .enumerate()
        .map(|(i, init)| (init, deferred.next_if(|(j, _)| *j == i).map(|(_, t)| t)))
        .collect();
    let delimited = |len: usize| encoded_len_varint(len as u64) + len;
    let tensor_len = |init: &TensorProto, t: &Tensor| {
        init.encoded_len() + key_len(TENSOR_RAW_DATA) + delimited(t.byte_len())
    };
    let init_len = |(init, t): &(TensorProto, Option<Tensor>)| match t {
        Some(t) => key_len(GRAPH_INITIALIZER) + delimited(tensor_len(init, t)),
        None => key_len(GRAPH_INITIALIZER) + delimited(init.encoded_len()),
    };
    // The graph's fields before the initializers (tag 5) and after them, so that prost's
    // tag order holds and the initializers keep the exporter's order.
    let head = GraphProto {
        node: std::mem::take(&mut graph.node),
        name: std::mem::take(&mut graph.name),
        ..Default::default()
    };
    let graph_len = |inits: &[(TensorProto, Option<Tensor>)]| {
        head.encoded_len() + inits.iter().map(init_len).sum::<usize>() + graph.encoded_len()
    };
    let fail =
        |e: std::io::Error| Diagnostic::error(format!("cannot write {}: {e}", path.display()));
    let data_file = match external {
        ExternalData::Always(file) => Some(file.clone().unwrap_or_else(|| default_data_file(path))),
        // The graph's length bounds the model's from below: the rest is its few small fields.
        ExternalData::Auto if graph_len(&inits) + (1 << 16) > limit => {
            Some(default_data_file(path))
        }
        ExternalData::Auto => None,
    };
    let mut staged = None;
    if let Some(file) = &data_file {
        if std::fs::metadata(path).is_ok_and(|m| !m.is_file()) {
            return Err(Diagnostic::error(format!(
                "cannot write {}: a model with external data needs a regular file beside its data file {file}",
                path.display()
            )));
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = stage_external(dir, file, &mut inits).map_err(|e| {
            Diagnostic::error(format!("cannot write {}: {e}", dir.join(file).display()))
        })?;
        staged = Some((tmp, dir.join(file)));
    }
    let graph_len = graph_len(&inits);
    crate::atomic::write_atomic_with(path, |w| {
        let mut sink = WriteBuf::new(w);
        let overflow = |e: prost::EncodeError| std::io::Error::other(e.to_string());
        // prost writes fields in tag order; so does this, around the graph (tag 7), so that a
        // model without deferred initializers is encoded byte for byte as prost would.
        let (before, after) = (
            ModelProto {
                opset_import: Vec::new(),
                metadata_props: Vec::new(),
                functions: Vec::new(),
                ..model.clone()
            },
            ModelProto {
                opset_import: std::mem::take(&mut model.opset_import),
                metadata_props: std::mem::take(&mut model.metadata_props),
                functions: std::mem::take(&mut model.functions),
                ..Default::default()
            },
        );
        before.encode(&mut sink).map_err(overflow)?;
        encode_key(MODEL_GRAPH, WireType::LengthDelimited, &mut sink);
        encode_varint(graph_len as u64, &mut sink);
        head.encode(&mut sink).map_err(overflow)?;
        for (init, t) in &inits {
            encode_key(GRAPH_INITIALIZER, WireType::LengthDelimited, &mut sink);
            let Some(t) = t else {
                encode_varint(init.encoded_len() as u64, &mut sink);
                init.encode(&mut sink).map_err(overflow)?;
                continue;
            };
            encode_varint(tensor_len(init, t) as u64, &mut sink);
            init.encode(&mut sink).map_err(overflow)?;
            encode_key(TENSOR_RAW_DATA, WireType::LengthDelimited, &mut sink);
            encode_varint(t.byte_len() as u64, &mut sink);
            t.for_each_byte_chunk(|c| bytes::BufMut::put_slice(&mut sink, c));
        }
        graph.encode(&mut sink).map_err(overflow)?;
        after.encode(&mut sink).map_err(overflow)?;
        sink.finish()?;
        // The model's temporary file is complete: the data file goes into place first, so a
        // model never names a data file that is not there.
        match staged.take() {
            Some((tmp, data_path)) => tmp.persist(&data_path).map(drop).map_err(|e| e.error),
            None => Ok(()),
        }
    })
    .map_err(fail)
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
