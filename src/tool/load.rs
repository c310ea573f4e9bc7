//! Reading models: the input text (a file or stdin), its `--split-input-file` chunks, and each
//! chunk parsed, read into IR and verified; NNIR or ONNX (by content and extension) for `run`
//! and `bench`.

use super::format::{input_format, Format};
use super::progress::Progress;
use super::{fail, usage, Exit};
use crate::diag::{Diagnostic, FileId, SourceMap};
use crate::ir::{Function, Module};
use crate::onnx::{self, ImportOptions};
use crate::syntax::{parse, reader};
use crate::verify;
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// `--dim NAME=SIZE`, on every command that reads ONNX.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DimArgs {
    /// Give the symbolic dimension NAME (a `dim_param` of the ONNX graph inputs) the size SIZE,
    /// as onnxruntime's --free_dimension_override_by_name does (repeatable): shapes computed
    /// from it become import-time constants, and an ONNX output has the dimension fixed.
    #[arg(long = "dim", value_name = "NAME=SIZE", value_parser = parse_dim)]
    pub dims: Vec<(String, u64)>,
}

impl From<&DimArgs> for ImportOptions {
    fn from(a: &DimArgs) -> Self {
        ImportOptions {
            dims: a.dims.clone(),
        }
    }
}

/// `NAME=SIZE` with a non-empty name and a size of at least 1.
fn parse_dim(s: &str) -> Result<(String, u64), String> {
    let (name, size) = s
        .split_once('=')
        .ok_or_else(|| format!("'{s}' is not NAME=SIZE"))?;
    if name.is_empty() {
        return Err(format!("'{s}' has no dimension name before '='"));
    }
    match size.parse::<u64>() {
        Ok(0) => Err(format!("the size of {name} must be at least 1")),
        Ok(n) => Ok((name.to_string(), n)),
        Err(_) => Err(format!("'{size}' is not a size (a positive integer)")),
    }
}

/// A usage error when `--dim` is given for an input that is not ONNX (it has no `dim_param`s).
pub fn check_dims_apply(options: &ImportOptions, input: &Path, onnx_in: bool) -> Result<(), Exit> {
    if onnx_in || options.dims.is_empty() {
        return Ok(());
    }
    Err(usage(&format!(
        "--dim names dimensions of an ONNX model's inputs, but {} is NNIR",
        input.display()
    )))
}

/// The separator of `--split-input-file`, on a line of its own (as in mlir-opt).
pub const SPLIT_MARKER: &str = "// -----";

/// The chunks to process: the whole input, or the pieces between separator lines.
pub fn chunks(src: &str, split: bool) -> Vec<Range<usize>> {
    if split {
        split_input(src)
    } else {
        std::iter::once(0..src.len()).collect()
    }
}

/// Byte ranges of the chunks of `src` between separator lines.
pub fn split_input(src: &str) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in src.split_inclusive('\n') {
        if line.trim_end() == SPLIT_MARKER {
            chunks.push(start..pos);
            start = pos + line.len();
        }
        pos += line.len();
    }
    chunks.push(start..src.len());
    chunks
}

/// Parses, reads and verifies one chunk (`src` starts at offset `base` of `file`). Returns the
/// module only when no error was reported.
pub fn load(
    src: &str,
    file: FileId,
    base: usize,
    base_dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<Module> {
    let ast = match parse::parse_module(src, file, base) {
        Ok(ast) => ast,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let module = reader::read_module(&ast, base_dir, diags)?;
    let errors = verify::verify_module(&module);
    if errors.is_empty() {
        Some(module)
    } else {
        diags.extend(errors);
        None
    }
}

/// Adds the text of `path` (`-` reads stdin) to `sources`; an unreadable or non-UTF-8 input is
/// reported.
pub fn read_input(path: &Path, sources: &mut SourceMap) -> Result<FileId, Exit> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| fail(&format!("cannot read stdin: {e}")))?;
        ("<stdin>".to_string(), s)
    } else {
        let bytes = std::fs::read(path)
            .map_err(|e| fail(&format!("cannot read {}: {e}", path.display())))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            fail(&format!(
                "{} is not UTF-8 text: {e} (nnopt reads NNIR text, and ONNX models)",
                path.display()
            ))
        })?;
        (path.display().to_string(), text)
    };
    Ok(sources.add(name, text))
}

/// The directory that relative paths in `input` (its weights file) start from: the input's
/// own directory, or the current one for stdin and bare file names.
pub fn base_dir(input: &Path) -> PathBuf {
    match input.parent() {
        Some(d) if input.as_os_str() != "-" && !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Reads an NNIR or ONNX model ([`input_format`]) for `run`, `bench` and `compile`; `options`
/// apply to an ONNX one. Diagnostics go to stderr.
pub fn load_model(
    input: &Path,
    options: &ImportOptions,
    sources: &mut SourceMap,
) -> Result<Module, Exit> {
    let onnx_in = input_format(input) == Format::Onnx;
    check_dims_apply(options, input, onnx_in)?;
    if onnx_in {
        let mut warnings = Vec::new();
        let imported = {
            let _progress = Progress::start(format!("importing {}", input.display()));
            onnx::import_file(input, options, &mut warnings)
        };
        sources.emit_to_stderr(&warnings);
        return imported.map_err(|d| {
            sources.emit_to_stderr(&[d]);
            Exit(1)
        });
    }
    let file = read_input(input, sources)?;
    let src = sources.source(file).to_string();
    let mut diags = Vec::new();
    let module = load(&src, file, 0, &base_dir(input), &mut diags);
    sources.emit_to_stderr(&diags);
    module.ok_or(Exit(1))
}

/// Function `name` of `module` (read from `input`), or its first.
pub fn pick_func<'m>(
    module: &'m Module,
    name: Option<&str>,
    input: &Path,
) -> Result<&'m Function, Exit> {
    match name {
        Some(name) => module
            .func(name)
            .ok_or_else(|| fail(&format!("no function @{name} in {}", input.display()))),
        None => module
            .funcs
            .first()
            .ok_or_else(|| fail("the module has no function")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_on_marker_lines_only() {
        let src = "a\n// -----\nb\n  // ----- not alone\n// -----\n";
        let parts: Vec<&str> = split_input(src).into_iter().map(|r| &src[r]).collect();
        assert_eq!(parts, ["a\n", "b\n  // ----- not alone\n", ""]);
    }
}
