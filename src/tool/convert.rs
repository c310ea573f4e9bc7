//! `nnopt import` and `nnopt export`: the default command without passes, with the formats
//! checked against the subcommand (the ONNX side must be the `.onnx` file).

use super::format::{input_format, Format};
use super::load::DimArgs;
use super::opt::{opt, OptOptions};
use super::{usage, Exit};
use crate::onnx;
use std::path::PathBuf;

/// `nnopt import`'s and `nnopt export`'s flags.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// The file to read.
    pub input: PathBuf,
    /// The file to write (atomically; nothing is written on any error).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    #[command(flatten)]
    pub dims: DimArgs,
}

/// Which way a conversion goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// ONNX to NNIR (with a safetensors file beside the output).
    Import,
    /// NNIR to ONNX.
    Export,
}

/// Converts `a.input` to `a.output`; a usage error when the ONNX side is not an `.onnx` file.
pub fn convert(a: &ConvertArgs, direction: Direction) -> Result<(), Exit> {
    let (input, output) = (a.input.as_path(), a.output.as_path());
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
        import: (&a.dims).into(),
        ..OptOptions::default()
    })
}
