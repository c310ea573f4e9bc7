//! The safetensors writer: a header in the tensors' order, padded so the data starts 8-byte
//! aligned, then each tensor's little-endian bytes, written to a temporary file that replaces
//! the destination only when complete.
//!
//! The header text is formatted here, names quoted by `weights::quoted`, so the bytes written
//! for a given list of tensors are fixed by this file alone.

use super::{byte_size, dtype_name, quoted};
use crate::ir::Tensor;
use std::collections::HashSet;
use std::io::{self, BufWriter, Write};
use std::path::Path;

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Writes `tensors` (in the given order) as a safetensors file at `path`, atomically: the data
/// goes to a temporary file in the same directory that is renamed over `path` only when
/// complete. Splats and gather views are expanded in small chunks, not materialised.
///
/// Fails (leaving `path` untouched) on duplicate names, the reserved name `__metadata__`, a
/// tensor whose size overflows, or any I/O error.
pub fn write_safetensors(path: &Path, tensors: &[(&str, &Tensor)]) -> io::Result<()> {
    stage_safetensors(path, tensors)?.persist(path)?;
    Ok(())
}

/// Writes the safetensors file of [`write_safetensors`] to a complete temporary file beside
/// `path`, for the caller to rename over `path` when everything else it writes is ready too.
pub fn stage_safetensors(
    path: &Path,
    tensors: &[(&str, &Tensor)],
) -> io::Result<tempfile::NamedTempFile> {
    let header = header_text(tensors)?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = crate::atomic::output_tempfile(dir)?;
    {
        let mut w = BufWriter::with_capacity(1 << 16, tmp.as_file());
        w.write_all(&(header.len() as u64).to_le_bytes())?;
        w.write_all(header.as_bytes())?;
        for (_, t) in tensors {
            // Splats and views (pruned weights) are expanded chunk by chunk, never whole.
            let mut written = Ok(());
            t.for_each_byte_chunk(|c| {
                if written.is_ok() {
                    written = w.write_all(c);
                }
            });
            written?;
        }
        w.flush()?;
    }
    // No fsync: see `atomic::write_atomic`.
    Ok(tmp)
}

/// The JSON header for `tensors` laid out back to back in order, padded with spaces to a multiple
/// of 8 bytes (the 8-byte length prefix then keeps the data aligned).
fn header_text(tensors: &[(&str, &Tensor)]) -> io::Result<String> {
    let mut header = String::from("{");
    let mut seen = HashSet::new();
    let mut offset: u64 = 0;
    for (i, (name, t)) in tensors.iter().enumerate() {
        if *name == "__metadata__" {
            return Err(invalid("a tensor cannot be named \"__metadata__\"".into()));
        }
        if !seen.insert(*name) {
            return Err(invalid(format!("duplicate tensor name {}", quoted(name))));
        }
        let size = byte_size(t.elem(), t.shape())
            .ok_or_else(|| invalid(format!("tensor {} is too large", quoted(name))))?;
        let end = offset
            .checked_add(size)
            .ok_or_else(|| invalid("tensors too large in total".into()))?;
        if i > 0 {
            header.push(',');
        }
        header.push_str(&format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
            quoted(name),
            dtype_name(t.elem()),
            t.shape()
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        ));
        offset = end;
    }
    header.push('}');
    while header.len() % 8 != 0 {
        header.push(' ');
    }
    Ok(header)
}
