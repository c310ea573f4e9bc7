//! Reading and writing safetensors weight files.
//!
//! [`WeightStore::open`] (reader.rs) memory-maps a `.safetensors` file and parses only its JSON
//! header; the tensors it hands out ([`WeightStore::get`]) are zero-copy views of the mapping
//! ([`Tensor::is_mapped`]). The file comes from the user, so every malformed header (truncated
//! file, absurd header length, bad UTF-8 or JSON, offsets out of range or reversed, a size that
//! disagrees with dtype × shape, an overflowing shape, an unsupported dtype, a duplicate name)
//! is reported as a [`WeightsError`] with a message naming the file and tensor; nothing panics.
//! Tensors may share or overlap byte ranges and the data section may have gaps: the format's
//! writers never produce them, but they cannot make a read go wrong, so they are accepted.
//!
//! [`write_safetensors`] (writer.rs) streams a header and the raw little-endian bytes of each
//! tensor into a temporary file next to the destination and renames it into place, so a failed
//! write never leaves a partial file, and a [`WeightStore`] still mapping the old file keeps
//! reading the old contents.
//!
//! This file holds what both directions share: the error type, the dtype names, the size rule
//! and the quoting of names.

mod reader;
#[cfg(test)]
mod tests;
mod writer;

pub use reader::{WeightStore, MAX_HEADER_LEN};
pub use writer::{stage_safetensors, write_safetensors};

use crate::ir::ElemType;
use std::fmt;

/// A problem reading a weights file or finding a tensor in it. The message is complete (it names
/// the file); the IR builder wraps it into a diagnostic at the `nn.weight` op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WeightsError {
    message: String,
}

impl WeightsError {
    fn new(message: impl Into<String>) -> WeightsError {
        WeightsError {
            message: message.into(),
        }
    }

    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WeightsError {}

impl From<WeightsError> for String {
    fn from(e: WeightsError) -> String {
        e.message
    }
}

/// The safetensors name of an element type.
fn dtype_name(elem: ElemType) -> &'static str {
    match elem {
        ElemType::F32 => "F32",
        ElemType::F16 => "F16",
        ElemType::BF16 => "BF16",
        ElemType::I64 => "I64",
    }
}

/// The element type a safetensors dtype name stands for, if it is one nnopt supports (weights are
/// floating-point).
fn elem_of_dtype(dtype: &str) -> Option<ElemType> {
    [ElemType::F32, ElemType::F16, ElemType::BF16]
        .into_iter()
        .find(|&e| dtype_name(e) == dtype)
}

/// Bytes taken by a tensor of `elem` and `shape`; `None` if the count overflows a `u64`.
fn byte_size(elem: ElemType, shape: &[u64]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(elem.size() as u64))
}

/// `name` as a JSON string literal: the writer's header text and the quoting of names in
/// messages. Control characters other than `\n`, `\r`, `\t` (and DEL) become `\u00xx`.
fn quoted(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
