//! The safetensors reader: [`WeightStore`] maps a file, validates its header and hands out
//! zero-copy tensor views.
//!
//! The JSON grammar (escapes, surrogates, numbers, nesting limit) is `serde_json`'s; the header
//! is read into [`Node`], which keeps an object's members in file order with duplicates, so that
//! a name listed twice is reported rather than silently replaced. The `safetensors` crate's own
//! reader is not used: it rejects overlapping ranges and gaps (accepted here, see the module docs
//! of `weights`), and its errors do not name the tensor.
//!
//! Every check runs in [`WeightStore::open`]; after it, each [`Entry`] lies inside the mapping and
//! covers exactly dtype × shape bytes, which [`WeightStore::get`] relies on.
//!
//! Mapping caveat: like every memory-mapped reader, a store assumes nobody truncates or rewrites
//! the file *in place* while it is open (replacing it by rename, as the writer does, is fine).

use super::{byte_size, elem_of_dtype, quoted, WeightsError};
use crate::ir::{ElemType, Tensor};
use memmap2::Mmap;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest header accepted (the limit of the reference implementation).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// How many tensor names an error message lists before "...".
const NAMES_IN_MESSAGES: usize = 5;

/// Where one tensor lives in the mapping (absolute byte offsets, already validated).
#[derive(Clone, Debug)]
struct Entry {
    elem: ElemType,
    shape: Vec<u64>,
    offset: usize,
    len: usize,
}

/// An opened, validated safetensors file.
#[derive(Debug)]
pub struct WeightStore {
    path: PathBuf,
    map: Arc<Mmap>,
    tensors: HashMap<String, Entry>,
}

impl WeightStore {
    /// Maps `path` and validates its header; no tensor data is read or copied.
    pub fn open(path: &Path) -> Result<WeightStore, WeightsError> {
        let fail = |detail: String| {
            WeightsError::new(format!(
                "cannot load weights from {}: {detail}",
                path.display()
            ))
        };
        let file = File::open(path).map_err(|e| fail(e.to_string()))?;
        let file_len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
        if file_len < 8 {
            return Err(fail(format!(
                "the file has {file_len} bytes, too short for a safetensors header (at least 8)"
            )));
        }
        // SAFETY: the mapping is read-only; see the module docs for the usual caveat about the
        // file being modified in place by another process while mapped.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| fail(format!("cannot map: {e}")))?;
        let tensors = parse_file(&map).map_err(fail)?;
        Ok(WeightStore {
            path: path.to_path_buf(),
            map: Arc::new(map),
            tensors,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tensors in the file.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Tensor names, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Element type and shape of `name` without making a tensor.
    pub fn info(&self, name: &str) -> Option<(ElemType, &[u64])> {
        self.tensors.get(name).map(|e| (e.elem, e.shape.as_slice()))
    }

    /// A zero-copy view of tensor `name`.
    pub fn get(&self, name: &str) -> Option<Tensor> {
        let e = self.tensors.get(name)?;
        let t = Tensor::mapped(e.elem, e.shape.clone(), self.map.clone(), e.offset, e.len);
        debug_assert!(t.is_some(), "entries are validated by `open`");
        t
    }

    /// Like [`get`](Self::get), with a message listing some of the names present when `name` is
    /// missing.
    pub fn tensor(&self, name: &str) -> Result<Tensor, WeightsError> {
        self.get(name).ok_or_else(|| {
            let file = self.path.display();
            let names = self.names();
            let listed = match names.len() {
                0 => "it has no tensors".to_string(),
                n => {
                    let shown: Vec<String> = names
                        .iter()
                        .take(NAMES_IN_MESSAGES)
                        .map(|s| quoted(s))
                        .collect();
                    let more = if n > NAMES_IN_MESSAGES { ", ..." } else { "" };
                    let plural = if n == 1 { "" } else { "s" };
                    format!("it has {n} tensor{plural}: {}{more}", shown.join(", "))
                }
            };
            WeightsError::new(format!(
                "no tensor named {} in {file} ({listed})",
                quoted(name)
            ))
        })
    }
}

/// Splits a file into header and data and validates every entry.
fn parse_file(bytes: &[u8]) -> Result<HashMap<String, Entry>, String> {
    let prefix: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or("the file is too short for a safetensors header")?;
    let header_len = u64::from_le_bytes(prefix);
    let file_len = bytes.len() as u64;
    if header_len > MAX_HEADER_LEN {
        return Err(format!(
            "the header length field says {header_len} bytes, more than the limit of \
             {MAX_HEADER_LEN}; this is probably not a safetensors file"
        ));
    }
    if header_len > file_len - 8 {
        return Err(format!(
            "the header length field says {header_len} bytes but the file has only {} after it; \
             the file is truncated or not a safetensors file",
            file_len - 8
        ));
    }
    let data_start = 8 + header_len as usize;
    let header = std::str::from_utf8(&bytes[8..data_start])
        .map_err(|e| format!("the header is not valid UTF-8 ({e})"))?;
    let json: Node = serde_json::from_str(header).map_err(|e| format!("invalid header: {e}"))?;
    let Node::Object(members) = json else {
        return Err("invalid header: expected a JSON object of tensors".into());
    };
    let data_len = (bytes.len() - data_start) as u64;
    let mut tensors = HashMap::with_capacity(members.len());
    for (name, value) in members {
        if name == "__metadata__" {
            if !matches!(value, Node::Object(_)) {
                return Err("invalid header: \"__metadata__\" must be an object".into());
            }
            continue;
        }
        let entry = parse_entry(&name, &value, data_start, data_len)?;
        if tensors.insert(name.clone(), entry).is_some() {
            return Err(format!(
                "the header lists tensor {} more than once",
                quoted(&name)
            ));
        }
    }
    Ok(tensors)
}

fn parse_entry(
    name: &str,
    value: &Node,
    data_start: usize,
    data_len: u64,
) -> Result<Entry, String> {
    let q = quoted(name);
    let Node::Object(fields) = value else {
        return Err(format!("the header entry of tensor {q} is not an object"));
    };
    let field = |key: &str| {
        fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("tensor {q} has no \"{key}\" in the header"))
    };
    let ints = |key: &str| -> Result<Vec<u64>, String> {
        let Node::Array(items) = field(key)? else {
            return Err(format!("\"{key}\" of tensor {q} is not an array"));
        };
        items
            .iter()
            .map(|v| match v {
                Node::UInt(n) => Some(*n),
                _ => None,
            })
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| {
                format!("\"{key}\" of tensor {q} must hold non-negative integers (below 2^64)")
            })
    };

    let Node::String(dtype) = field("dtype")? else {
        return Err(format!("\"dtype\" of tensor {q} is not a string"));
    };
    let elem = elem_of_dtype(dtype).ok_or_else(|| {
        format!(
            "tensor {q} has dtype {}, which is not supported (only F32, F16 and BF16 are)",
            quoted(dtype)
        )
    })?;
    let shape = ints("shape")?;
    let offsets = ints("data_offsets")?;
    let [begin, end] = offsets[..] else {
        return Err(format!(
            "\"data_offsets\" of tensor {q} must have 2 entries, not {}",
            offsets.len()
        ));
    };
    let dims = shape_text(&shape);
    let needed = byte_size(elem, &shape)
        .ok_or_else(|| format!("the size of tensor {q} (shape {dims}) overflows"))?;
    if begin > end {
        return Err(format!(
            "tensor {q} has reversed data_offsets [{begin}, {end}]"
        ));
    }
    if end > data_len {
        return Err(format!(
            "data_offsets [{begin}, {end}] of tensor {q} go past the end of the data section \
             ({data_len} bytes); the file may be truncated"
        ));
    }
    if end - begin != needed {
        return Err(format!(
            "tensor {q} of dtype {dtype} and shape {dims} needs {needed} bytes but its \
             data_offsets [{begin}, {end}] cover {}",
            end - begin
        ));
    }
    // Both fit: they are at most the length of a mapped file.
    Ok(Entry {
        elem,
        shape,
        offset: data_start + begin as usize,
        len: needed as usize,
    })
}

fn shape_text(shape: &[u64]) -> String {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    format!("[{}]", dims.join(", "))
}

/// A JSON value of the header, reduced to what the checks look at. Numbers other than integers
/// in `0..2^64` (negative, fractional, exponent or too large) are all [`Node::Other`], as are
/// `true`, `false` and `null`.
#[derive(Debug)]
enum Node {
    /// Members in file order (duplicates kept, for the caller to reject).
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    String(String),
    UInt(u64),
    Other,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_u64<E>(self, n: u64) -> Result<Node, E> {
        Ok(Node::UInt(n))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_str<E>(self, s: &str) -> Result<Node, E> {
        Ok(Node::String(s.to_owned()))
    }

    fn visit_string<E>(self, s: String) -> Result<Node, E> {
        Ok(Node::String(s))
    }

    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut members = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(member) = map.next_entry()? {
            members.push(member);
        }
        Ok(Node::Object(members))
    }
}
