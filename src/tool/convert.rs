//! `nnopt import` and `nnopt export`: the default command without passes, with the formats
//! checked against the subcommand (the ONNX side must be the `.onnx` file).

use super::format::{input_format, Format};
use super::opt::{opt, OptOptions};
use super::{usage, Exit};
use crate::onnx;
use std::path::Path;

/// Which way a conversion goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// ONNX to NNIR (with a safetensors file beside the output).
    Import,
    /// NNIR to ONNX.
    Export,
}

/// Converts `input` to `output`; a usage error when the ONNX side is not an `.onnx` file.
pub fn convert(input: &Path, output: &Path, direction: Direction) -> Result<(), Exit> {
    // An import reads an ONNX model whatever its name (the content decides, as everywhere);
    // an export writes one, so its output must be named .onnx.
    let (onnx_side, is_onnx, command) = match direction {
        Direction::Import => (input, input_format(input) == Format::Onnx, "import"),
        Direction::Export => (output, onnx::is_onnx_path(output), "export"),
    };
    if !is_onnx {
        return Err(usage(&format!(
            "{command}: {} must be an .onnx file",
            onnx_side.display()
        )));
    }
    opt(&OptOptions {
        input: Some(input.to_path_buf()),
        output: output.to_path_buf(),
        ..OptOptions::default()
    })
}
