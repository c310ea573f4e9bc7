//! ONNX external data: the bytes of the large initializers in a file beside the model, which
//! the model's `TensorProto`s name by a relative `location`, an `offset` and a `length`.
//!
//! A protobuf message cannot exceed 2 GiB, so a model whose weights are larger can only be
//! written this way; [`ExternalData::Auto`] switches to it exactly then. The data file is
//! written as the model is: streamed from the weights (memory-mapped inputs, pruned views
//! gathered chunk by chunk), to a temporary file beside the model that is renamed into place
//! only once the model's own temporary file is complete too.

use crate::ir::Tensor;
use crate::onnx::proto::{StringStringEntryProto, TensorProto, DATA_LOCATION_EXTERNAL};
use std::io::{self, Read, Write};
use std::path::{Component, Path};

/// Where an exported model's initializers go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ExternalData {
    /// Inside the model, unless that would exceed protobuf's 2 GiB: then in the default file
    /// ([`default_data_file`]).
    #[default]
    Auto,
    /// In this file beside the model (`None`: [`default_data_file`]), whatever the size.
    Always(Option<String>),
}

/// The largest protobuf message: its lengths are signed 32-bit.
pub(super) const PROTOBUF_LIMIT: usize = i32::MAX as usize;

/// Initializers smaller than this stay inside the model (shape constants, small biases): a
/// reference to them would cost about as much as their bytes. onnx's
/// `convert_model_to_external_data` uses the same default threshold.
const MIN_EXTERNAL_BYTES: usize = 1024;

/// Tensors of at least this many bytes start at a multiple of [`LARGE_ALIGN`]; smaller ones at
/// a multiple of [`SMALL_ALIGN`].
const LARGE_TENSOR: usize = 1 << 20;
/// 64 KiB, the allocation granularity of Windows' file mappings (and a multiple of the page
/// size everywhere else), so a reader can map each large tensor on its own.
const LARGE_ALIGN: u64 = 1 << 16;
/// A cache line, and the widest vector load, so a small tensor read in place is aligned too.
const SMALL_ALIGN: u64 = 64;

/// `<model file name>.data`, the name torch's exporter gives the file too.
pub fn default_data_file(model: &Path) -> String {
    let name = model
        .file_name()
        .map_or_else(|| "model.onnx".into(), |n| n.to_string_lossy().into_owned());
    format!("{name}.data")
}

/// Checks a data file name given for `model`: one plain file name, for it goes beside the model
/// and the model names it relatively (an importer refuses locations that leave the model's
/// directory), and not the model itself.
pub fn check_data_file_name(model: &Path, name: &str) -> Result<(), String> {
    let mut parts = Path::new(name).components();
    if !matches!(
        (parts.next(), parts.next()),
        (Some(Component::Normal(_)), None)
    ) {
        return Err(format!(
            "the external data file '{name}' must be a file name, without a directory: it goes beside the model"
        ));
    }
    if model.file_name().is_some_and(|m| m == name) {
        return Err(format!(
            "the external data file '{name}' would overwrite the model"
        ));
    }
    Ok(())
}

/// Writes the bytes of every initializer of at least [`MIN_EXTERNAL_BYTES`] to a new temporary
/// file in `dir`, in order, each at an aligned offset (zeros between), and turns those
/// initializers into references to `file`: no `raw_data`, no tensor left to gather. Returns the
/// complete temporary file, for the caller to rename to `dir/file`.
pub(super) fn stage_external(
    dir: &Path,
    file: &str,
    inits: &mut [(TensorProto, Option<Tensor>)],
) -> io::Result<tempfile::NamedTempFile> {
    let tmp = crate::atomic::output_tempfile(dir)?;
    {
        let mut w = io::BufWriter::with_capacity(1 << 20, tmp.as_file());
        let mut offset: u64 = 0;
        for (init, tensor) in inits.iter_mut() {
            let len = tensor
                .as_ref()
                .map_or(init.raw_data.len(), Tensor::byte_len);
            if len < MIN_EXTERNAL_BYTES {
                continue;
            }
            let align = if len >= LARGE_TENSOR {
                LARGE_ALIGN
            } else {
                SMALL_ALIGN
            };
            let start = offset.next_multiple_of(align);
            io::copy(&mut io::repeat(0).take(start - offset), &mut w)?;
            match tensor.take() {
                Some(t) => {
                    let mut written = Ok(());
                    t.for_each_byte_chunk(|c| {
                        if written.is_ok() {
                            written = w.write_all(c);
                        }
                    });
                    written?;
                }
                None => w.write_all(&init.raw_data)?,
            }
            offset = start + len as u64;
            let kv = |key: &str, value: String| StringStringEntryProto {
                key: key.into(),
                value,
            };
            init.raw_data = bytes::Bytes::new();
            init.data_location = DATA_LOCATION_EXTERNAL;
            init.external_data = vec![
                kv("location", file.to_string()),
                kv("offset", start.to_string()),
                kv("length", len.to_string()),
            ];
        }
        w.flush()?;
    }
    // No fsync: see `atomic::write_atomic`.
    Ok(tmp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_file_names_stay_beside_the_model() {
        let model = Path::new("dir/m.onnx");
        assert_eq!(default_data_file(model), "m.onnx.data");
        assert!(check_data_file_name(model, "w.bin").is_ok());
        for bad in ["../w.bin", "sub/w.bin", "/tmp/w.bin", "..", "", "m.onnx"] {
            assert!(check_data_file_name(model, bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod roundtrip_tests {
    use super::super::stream::write_onnx_limited;
    use super::*;
    use crate::diag::Diagnostic;
    use crate::ir::Module;

    /// `y = linear(x, W, b)` with a 4×300 weight (4800 bytes, external) and a 4-element bias
    /// (inline).
    fn model() -> Module {
        let row = |r: usize| {
            let v: Vec<String> = (0..300).map(|i| format!("{}.5", (i + r) % 7)).collect();
            format!("[{}]", v.join(", "))
        };
        let w: Vec<String> = (0..4).map(row).collect();
        let src = format!(
            "func @f(%x: tensor<1x300xf32>) -> (tensor<1x4xf32>) {{\n %w = nn.constant dense<{}> : tensor<4x300xf32>\n %b = nn.constant dense<[1.0, 2.0, 3.0, 4.0]> : tensor<4xf32>\n %y = nn.linear %x, %w, %b : tensor<1x4xf32>\n return %y : tensor<1x4xf32>\n}}\n",
            format_args!("[{}]", w.join(", "))
        );
        let mut diags = Vec::new();
        crate::tool::load::load(&src, 0, 0, Path::new("."), &mut diags).expect("loads")
    }

    fn run(m: &Module) -> Vec<f32> {
        let x = ndarray::ArrayD::from_shape_fn(vec![1, 300], |i| (i[1] as f32 * 0.01).sin());
        let y = crate::interp::run(&m.funcs[0], &[x]).expect("runs");
        y[0].iter().copied().collect()
    }

    fn import(p: &Path) -> Result<Module, Diagnostic> {
        crate::onnx::import_file(p, &Default::default(), &mut Vec::new())
    }

    /// Over the size limit, the weight goes to `<model>.data` at offset 0 and the bias stays;
    /// the model reads back and computes the same; under it, nothing external is written.
    #[test]
    fn auto_external_data_above_the_limit_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let (m, p) = (model(), dir.path().join("m.onnx"));
        write_onnx_limited(&m, &p, &ExternalData::Auto, 4096).unwrap();
        let data = std::fs::read(dir.path().join("m.onnx.data")).unwrap();
        assert_eq!(data.len(), 4800);
        assert!(std::fs::metadata(&p).unwrap().len() < 1000);
        assert_eq!(run(&import(&p).unwrap()), run(&m));

        let small = dir.path().join("s.onnx");
        write_onnx_limited(&m, &small, &ExternalData::Auto, PROTOBUF_LIMIT).unwrap();
        assert!(!dir.path().join("s.onnx.data").exists());
        assert!(std::fs::metadata(&small).unwrap().len() > 4800);
    }

    /// A truncated data file is refused at import with the tensor and the file named.
    #[test]
    fn truncated_external_data_names_the_tensor_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.onnx");
        let forced = ExternalData::Always(Some("w.bin".into()));
        write_onnx_limited(&model(), &p, &forced, PROTOBUF_LIMIT).unwrap();
        let data = dir.path().join("w.bin");
        let f = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
        f.set_len(4000).unwrap();
        let e = import(&p).unwrap_err().message;
        assert!(e.contains("'w'") && e.contains("w.bin"), "{e}");
    }

    /// Nothing is written when the data file cannot go beside a non-regular output.
    #[test]
    fn external_data_needs_a_regular_output() {
        let e = write_onnx_limited(
            &model(),
            Path::new("/dev/null"),
            &ExternalData::Always(None),
            PROTOBUF_LIMIT,
        )
        .unwrap_err();
        assert!(e.message.contains("regular file"), "{}", e.message);
    }
}
