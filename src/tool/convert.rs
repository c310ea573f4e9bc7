//! `nnopt import` and `nnopt export`: the default command without passes, with the formats
//! checked against the subcommand (the ONNX side must be the `.onnx` file).

use super::opt::{opt, OptOptions};
use super::Exit;
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
    let (onnx_side, command) = match direction {
        Direction::Import => (input, "import"),
        Direction::Export => (output, "export"),
    };
    if !onnx::is_onnx_path(onnx_side) {
        eprintln!(
            "nnopt {command}: {} must be an .onnx file",
            onnx_side.display()
        );
        return Err(Exit(2));
    }
    opt(&OptOptions {
        input: Some(input.to_path_buf()),
        output: output.to_path_buf(),
        ..OptOptions::default()
    })
}
