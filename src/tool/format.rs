//! Which format a file is in, decided before any long work starts.
//!
//! Outputs go by `--emit-format`, else by extension; an extension nnopt does not know is a
//! usage error that lists the known ones, so `-o out.pt` never silently writes NNIR text and a
//! weights file. `-` (stdout) and existing non-regular files (`/dev/null`, FIFOs) take text.
//! The output's directory is checked to exist and be writable up front, so a typo in a path
//! fails in milliseconds, not after a compile.
//!
//! Inputs are sniffed: the first bytes tell an ONNX protobuf from NNIR text. When the content
//! is clearly one format and the extension says the other, the content wins and a warning
//! names the mismatch (a renamed model still loads, and the user learns why it did); when the
//! content is not clearly either, the extension decides, as before.

use super::{usage, warn, Exit};
use std::io::Read;
use std::path::Path;

/// A model format nnopt reads or writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// NNIR text (weights inline or in a safetensors file beside it).
    Nnir,
    /// An ONNX model (protobuf).
    Onnx,
    /// MLIR text (`--emit`), output only.
    Mlir,
}

impl Format {
    /// The format a file extension names, if any.
    fn from_extension(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "nnir" => Some(Format::Nnir),
            "onnx" => Some(Format::Onnx),
            "mlir" => Some(Format::Mlir),
            _ => None,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Format::Nnir => "NNIR text",
            Format::Onnx => "an ONNX model",
            Format::Mlir => "MLIR text",
        }
    }
}

/// The format to write `path` in. `requested` is `--emit-format`; `emit` says that `--emit`
/// prints MLIR text. Also checks that the file can be created ([`check_writable`]).
pub fn output_format(path: &Path, requested: Option<Format>, emit: bool) -> Result<Format, Exit> {
    let default = if emit { Format::Mlir } else { Format::Nnir };
    if path.as_os_str() == "-" {
        return match requested.unwrap_or(default) {
            Format::Onnx => Err(usage(
                "an ONNX model is binary and is not written to stdout: give -o FILE.onnx",
            )),
            f => Ok(f),
        };
    }
    let special = std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir());
    let format = match (requested, Format::from_extension(path)) {
        (Some(f), _) => f,
        (None, Some(f)) if f == default || (!emit && f == Format::Onnx) => f,
        (None, _) if special => default,
        (None, _) if emit => {
            return Err(usage(&format!(
            "--emit writes MLIR text, so the output {} should end in .mlir (or be '-' for stdout)",
            path.display()
        )))
        }
        (None, _) => {
            return Err(usage(&format!(
                "cannot tell which format to write {} in: known extensions are .nnir (NNIR text, \
                 external weights in a .safetensors file beside it) and .onnx; '-' writes to \
                 stdout; --emit-format=nnir|onnx chooses regardless of the extension",
                path.display()
            )))
        }
    };
    if !special {
        check_writable(path)?;
    }
    Ok(format)
}

/// The extension `nnopt run` writes results with: `.npy`, or `-` for stdout as text; existing
/// non-regular files take `.npy` bytes. Checks the directory like [`output_format`].
pub fn check_npy_output(path: &Path) -> Result<(), Exit> {
    if path.as_os_str() == "-" || std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
    {
        return Ok(());
    }
    if !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("npy"))
    {
        return Err(usage(&format!(
            "cannot tell which format to write {} in: `nnopt run` writes .npy files, or text to \
             stdout for '-'",
            path.display()
        )));
    }
    check_writable(path)
}

/// Fails (exit 1) unless a file can be created at `path`: its directory exists and accepts a
/// new file, and `path` is not a directory. Creating a throwaway file is the only test that
/// agrees with the atomic writer, which creates its temporary file in the same directory.
pub fn check_writable(path: &Path) -> Result<(), Exit> {
    let fail = |why: String| super::fail(&format!("cannot write {}: {why}", path.display()));
    if path.is_dir() {
        return Err(fail("it is a directory".to_string()));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(fail(format!("no directory {}", dir.display())));
    }
    tempfile::Builder::new()
        .prefix(".nnopt-probe")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| fail(format!("directory {}: {e}", dir.display())))
}

/// What the first bytes of a file say it is, when they say it clearly.
fn sniff(head: &[u8]) -> Option<Format> {
    // Protobuf writes fields in field-number order and every ONNX writer sets `ir_version`
    // (field 1, a varint), so a model starts with the tag byte 0x08, which no text starts with.
    if head.first() == Some(&0x08) {
        return Some(Format::Onnx);
    }
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // A multi-byte character cut by the end of the sample is still text.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    let start = text.trim_start();
    ["module", "func", "//"]
        .iter()
        .any(|w| start.starts_with(w))
        .then_some(Format::Nnir)
}

/// The format to read `path` in: by content when it is clear, else by extension (`.onnx` is
/// ONNX, anything else NNIR text); stdin is NNIR text. Warns when content and extension
/// disagree.
pub fn input_format(path: &Path) -> Format {
    let by_extension = if Format::from_extension(path) == Some(Format::Onnx) {
        Format::Onnx
    } else {
        Format::Nnir
    };
    if path.as_os_str() == "-" {
        return Format::Nnir;
    }
    let mut head = Vec::with_capacity(256);
    // An unreadable file is reported by whoever reads it, with the usual message.
    let sniffed = std::fs::File::open(path)
        .and_then(|f| f.take(256).read_to_end(&mut head))
        .ok()
        .and_then(|_| sniff(&head));
    match sniffed {
        Some(f) if f != by_extension => {
            warn(&format!(
                "{} holds {}, although its name says {}: reading it as {}",
                path.display(),
                f.describe(),
                by_extension.describe(),
                f.describe()
            ));
            f
        }
        _ => by_extension,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_onnx_and_nnir_heads() {
        assert_eq!(sniff(&[0x08, 0x0a, 0x12, 0x07]), Some(Format::Onnx));
        assert_eq!(sniff(b"  module @m {"), Some(Format::Nnir));
        assert_eq!(sniff(b"// a comment\nfunc @f"), Some(Format::Nnir));
        assert_eq!(
            sniff("// \u{e9}".as_bytes()[..4].as_ref()),
            Some(Format::Nnir)
        );
        assert_eq!(sniff(b"\xff\xfe"), None);
        assert_eq!(sniff(b"hello"), None);
    }
}
