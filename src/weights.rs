//! Reading and writing safetensors weight files.
//!
//! [`WeightStore::open`] memory-maps a `.safetensors` file and parses only its JSON header; the
//! tensors it hands out ([`WeightStore::get`]) are zero-copy views of the mapping
//! ([`Tensor::is_mapped`]). The file comes from the user, so every malformed header (truncated
//! file, absurd header length, bad UTF-8 or JSON, offsets out of range or reversed, a size that
//! disagrees with dtype × shape, an overflowing shape, an unsupported dtype, a duplicate name)
//! is reported as a [`WeightsError`] with a message naming the file and tensor; nothing panics.
//! Tensors may share or overlap byte ranges and the data section may have gaps: the format's
//! writers never produce them, but they cannot make a read go wrong, so they are accepted.
//!
//! The header is parsed by a small JSON reader here rather than by the `safetensors` crate, which
//! rejects several of the cases above with messages that do not name the tensor.
//!
//! [`write_safetensors`] streams a header and the raw little-endian bytes of each tensor into a
//! temporary file next to the destination and renames it into place, so a failed write never
//! leaves a partial file, and a [`WeightStore`] still mapping the old file keeps reading the old
//! contents.
//!
//! Mapping caveat: like every memory-mapped reader, a store assumes nobody truncates or rewrites
//! the file *in place* while it is open (replacing it by rename, as the writer does, is fine).

use crate::ir::{ElemType, Tensor};
use memmap2::Mmap;
use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Largest header accepted (the limit of the reference implementation).
pub const MAX_HEADER_LEN: u64 = 100_000_000;

/// Deepest JSON nesting accepted in a header (a valid one needs 3 levels).
const MAX_JSON_DEPTH: usize = 64;

/// How many tensor names an error message lists before "...".
const NAMES_IN_MESSAGES: usize = 5;

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
    let json = Parser::parse_document(header).map_err(|e| format!("invalid header: {e}"))?;
    let Json::Obj(members) = json else {
        return Err("invalid header: expected a JSON object of tensors".into());
    };
    let data_len = (bytes.len() - data_start) as u64;
    let mut tensors = HashMap::with_capacity(members.len());
    for (name, value) in members {
        if name == "__metadata__" {
            if !matches!(value, Json::Obj(_)) {
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
    value: &Json,
    data_start: usize,
    data_len: u64,
) -> Result<Entry, String> {
    let q = quoted(name);
    let Json::Obj(fields) = value else {
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
        let Json::Arr(items) = field(key)? else {
            return Err(format!("\"{key}\" of tensor {q} is not an array"));
        };
        items
            .iter()
            .map(|v| match v {
                Json::Num(s) => s.parse::<u64>().ok(),
                _ => None,
            })
            .collect::<Option<Vec<u64>>>()
            .ok_or_else(|| {
                format!("\"{key}\" of tensor {q} must hold non-negative integers (below 2^64)")
            })
    };

    let Json::Str(dtype) = field("dtype")? else {
        return Err(format!("\"dtype\" of tensor {q} is not a string"));
    };
    let elem = match dtype.as_str() {
        "F32" => ElemType::F32,
        "F16" => ElemType::F16,
        "BF16" => ElemType::BF16,
        other => {
            return Err(format!(
                "tensor {q} has dtype {}, which is not supported (only F32, F16 and BF16 are)",
                quoted(other)
            ))
        }
    };
    let shape = ints("shape")?;
    let offsets = ints("data_offsets")?;
    let [begin, end] = offsets[..] else {
        return Err(format!(
            "\"data_offsets\" of tensor {q} must have 2 entries, not {}",
            offsets.len()
        ));
    };
    let dims = shape_text(&shape);
    let needed = shape
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .and_then(|n| n.checked_mul(elem.size() as u64))
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

/// `name` as a JSON string literal (also used to quote names in messages).
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

// ---- a minimal JSON reader --------------------------------------------------------------------

#[derive(Debug)]
enum Json<'a> {
    Null,
    Bool,
    /// The number's text, validated against the JSON grammar.
    Num(&'a str),
    Str(String),
    Arr(Vec<Json<'a>>),
    /// Members in source order (duplicates kept, for the caller to reject).
    Obj(Vec<(String, Json<'a>)>),
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
    depth: usize,
}

impl<'a> Parser<'a> {
    /// One JSON value, optionally surrounded by whitespace (the padding of the header).
    fn parse_document(text: &'a str) -> Result<Json<'a>, String> {
        let mut p = Parser {
            text,
            pos: 0,
            depth: 0,
        };
        let v = p.value()?;
        p.skip_ws();
        if p.pos != text.len() {
            return Err(p.err("unexpected text after the JSON object"));
        }
        Ok(v)
    }

    fn err(&self, what: &str) -> String {
        format!("{what} at byte {} of the header", self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(&format!("expected '{}'", c as char)))
        }
    }

    fn value(&mut self) -> Result<Json<'a>, String> {
        self.skip_ws();
        match self.peek() {
            Some(b'{') => self.nested(Parser::object),
            Some(b'[') => self.nested(Parser::array),
            Some(b'"') => self.string().map(Json::Str),
            Some(b't') => self.literal("true", Json::Bool),
            Some(b'f') => self.literal("false", Json::Bool),
            Some(b'n') => self.literal("null", Json::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("expected a JSON value")),
            None => Err(self.err("unexpected end of the header")),
        }
    }

    fn nested(
        &mut self,
        f: impl FnOnce(&mut Parser<'a>) -> Result<Json<'a>, String>,
    ) -> Result<Json<'a>, String> {
        if self.depth >= MAX_JSON_DEPTH {
            return Err(self.err("JSON nested too deeply"));
        }
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn literal(&mut self, word: &str, v: Json<'a>) -> Result<Json<'a>, String> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(v)
        } else {
            Err(self.err("expected a JSON value"))
        }
    }

    fn object(&mut self) -> Result<Json<'a>, String> {
        self.expect(b'{')?;
        let mut members = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Json::Obj(members));
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.err("expected a string key"));
            }
            let key = self.string()?;
            self.expect(b':')?;
            let v = self.value()?;
            members.push((key, v));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Json::Obj(members));
                }
                _ => return Err(self.err("expected ',' or '}'")),
            }
        }
    }

    fn array(&mut self) -> Result<Json<'a>, String> {
        self.expect(b'[')?;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Json::Arr(items));
        }
        loop {
            items.push(self.value()?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Json::Arr(items));
                }
                _ => return Err(self.err("expected ',' or ']'")),
            }
        }
    }

    fn number(&mut self) -> Result<Json<'a>, String> {
        let start = self.pos;
        let digits = |p: &mut Parser<'a>| {
            let s = p.pos;
            while matches!(p.peek(), Some(b'0'..=b'9')) {
                p.pos += 1;
            }
            p.pos > s
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        if !digits(self) {
            return Err(self.err("malformed number"));
        }
        if self.pos - int_start > 1 && self.text.as_bytes()[int_start] == b'0' {
            return Err(self.err("malformed number (leading zero)"));
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !digits(self) {
                return Err(self.err("malformed number"));
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            if !digits(self) {
                return Err(self.err("malformed number"));
            }
        }
        Ok(Json::Num(&self.text[start..self.pos]))
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let s = self
            .text
            .get(self.pos..self.pos + 4)
            .filter(|s| s.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("malformed \\u escape"))?;
        self.pos += 4;
        Ok(u32::from_str_radix(s, 16).expect("checked hex digits"))
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1; // the opening quote
        let mut out = String::new();
        loop {
            // Copy the run of plain characters at once (the text is valid UTF-8 and the
            // delimiters are ASCII, so the run ends on a character boundary).
            let rest = &self.text[self.pos..];
            let run = rest
                .bytes()
                .position(|b| b == b'"' || b == b'\\' || b < 0x20)
                .unwrap_or(rest.len());
            out.push_str(&rest[..run]);
            self.pos += run;
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    let c = match self.peek() {
                        Some(b'"') => '"',
                        Some(b'\\') => '\\',
                        Some(b'/') => '/',
                        Some(b'b') => '\u{8}',
                        Some(b'f') => '\u{c}',
                        Some(b'n') => '\n',
                        Some(b'r') => '\r',
                        Some(b't') => '\t',
                        Some(b'u') => {
                            self.pos += 1;
                            let hi = self.hex4()?;
                            let code = if (0xD800..0xDC00).contains(&hi) {
                                if !self.text[self.pos..].starts_with("\\u") {
                                    return Err(self.err("unpaired surrogate in \\u escape"));
                                }
                                self.pos += 2;
                                let lo = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&lo) {
                                    return Err(self.err("unpaired surrogate in \\u escape"));
                                }
                                0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                            } else {
                                hi
                            };
                            let c = char::from_u32(code)
                                .ok_or_else(|| self.err("unpaired surrogate in \\u escape"))?;
                            out.push(c);
                            continue;
                        }
                        _ => return Err(self.err("invalid escape in string")),
                    };
                    self.pos += 1;
                    out.push(c);
                }
                Some(_) => return Err(self.err("control character in string")),
                None => return Err(self.err("unterminated string")),
            }
        }
    }
}

// ---- writing ----------------------------------------------------------------------------------

fn dtype_name(elem: ElemType) -> &'static str {
    match elem {
        ElemType::F32 => "F32",
        ElemType::F16 => "F16",
        ElemType::BF16 => "BF16",
    }
}

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
    let mut header = String::from("{");
    let mut seen = std::collections::HashSet::new();
    let mut offset: u64 = 0;
    for (i, (name, t)) in tensors.iter().enumerate() {
        if *name == "__metadata__" {
            return Err(invalid("a tensor cannot be named \"__metadata__\"".into()));
        }
        if !seen.insert(*name) {
            return Err(invalid(format!("duplicate tensor name {}", quoted(name))));
        }
        let size = t
            .shape()
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(t.elem().size() as u64))
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
    // Pad with spaces so the data starts 8-byte aligned (the header is preceded by 8 bytes).
    while header.len() % 8 != 0 {
        header.push(' ');
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn store_of(dir: &Path, bytes: &[u8]) -> Result<WeightStore, WeightsError> {
        let path = dir.join("model.safetensors");
        fs::write(&path, bytes).unwrap();
        WeightStore::open(&path)
    }

    /// A file with a correct length prefix.
    fn file_with(header: &str, data: &[u8]) -> Vec<u8> {
        let mut out = (header.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn open_err(bytes: &[u8]) -> String {
        let dir = tempfile::tempdir().unwrap();
        match store_of(dir.path(), bytes) {
            Ok(s) => panic!("expected an error, opened {:?}", s.names()),
            Err(e) => {
                assert!(e.message().contains("model.safetensors"), "{e}");
                e.to_string()
            }
        }
    }

    fn one_tensor_err(entry: &str, data_len: usize) -> String {
        open_err(&file_with(
            &format!("{{\"w\":{entry}}}"),
            &vec![0; data_len],
        ))
    }

    fn specials() -> Vec<(String, Tensor)> {
        let f32_bits = [
            0x7fc0_0001, // quiet NaN with a payload
            0xff80_0001, // negative signalling NaN
            (-0.0f32).to_bits(),
            1, // smallest denormal
            f32::INFINITY.to_bits(),
            1.5f32.to_bits(),
        ];
        let f16_bits = [0x7e01, 0xfd55, 0x8000, 0x0001, 0xfc00, 0x3c00];
        let bf16_bits = [0x7fc1, 0xff81, 0x8000, 0x0001, 0xff80, 0x3f80];
        vec![
            (
                "a.f32".into(),
                Tensor::from_bits(ElemType::F32, vec![2, 3], f32_bits),
            ),
            (
                "b.f16".into(),
                Tensor::from_bits(ElemType::F16, vec![3, 2], f16_bits),
            ),
            (
                "c.bf16".into(),
                Tensor::from_bits(ElemType::BF16, vec![6], bf16_bits),
            ),
            (
                "scalar".into(),
                Tensor::from_f32(ElemType::F32, vec![], &[-2.0]),
            ),
            (
                "empty".into(),
                Tensor::from_f32(ElemType::F16, vec![0, 4], &[]),
            ),
            (
                "splat".into(),
                Tensor::splat_bits(ElemType::BF16, vec![3, 1000], 0x7fc3),
            ),
            (
                "odd \"name\" \\ with\nescapes \u{1} and ünïcødé 🦀".into(),
                Tensor::from_f32(ElemType::F16, vec![1], &[0.5]),
            ),
        ]
    }

    #[test]
    fn round_trip_is_bit_exact_and_zero_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let tensors = specials();
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        write_safetensors(&path, &refs).unwrap();

        let store = WeightStore::open(&path).unwrap();
        assert_eq!(store.len(), tensors.len());
        assert!(!store.is_empty());
        for (name, t) in &tensors {
            let got = store.get(name).unwrap_or_else(|| panic!("missing {name}"));
            assert!(got.is_mapped(), "{name} is not mapped");
            assert_eq!(got.elem(), t.elem());
            assert_eq!(got.shape(), t.shape());
            assert!(
                got.bit_eq(t),
                "{name}: {:x?} != {:x?}",
                got.to_bits_vec(),
                t.to_bits_vec()
            );
            assert_eq!(store.info(name), Some((t.elem(), t.shape())));
        }
        let mut names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(store.names(), names);
    }

    #[test]
    fn written_files_follow_the_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let tensors = specials();
        let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
        write_safetensors(&path, &refs).unwrap();
        let bytes = fs::read(&path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        assert_eq!(n % 8, 0, "data must start 8-byte aligned");
        // The reference implementation reads it, with the same contents.
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.len(), tensors.len());
        for (name, t) in &tensors {
            let view = st.tensor(name).unwrap();
            let shape: Vec<u64> = view.shape().iter().map(|&d| d as u64).collect();
            assert_eq!(shape, t.shape());
            let expected = match t.elem() {
                ElemType::F32 => safetensors::Dtype::F32,
                ElemType::F16 => safetensors::Dtype::F16,
                ElemType::BF16 => safetensors::Dtype::BF16,
            };
            assert_eq!(view.dtype(), expected);
            let back = Tensor::from_bytes(t.elem(), shape, view.data().into()).unwrap();
            assert!(back.bit_eq(t), "{name}");
        }
        // An empty list makes a valid file too.
        write_safetensors(&path, &[]).unwrap();
        assert!(WeightStore::open(&path).unwrap().is_empty());
    }

    #[test]
    fn files_from_other_writers_are_read() {
        // Header keys in any order, whitespace, `__metadata__`, shared and out-of-order ranges.
        let header = r#" { "__metadata__" : {"format":"pt"},
            "b" : {"shape":[2],"dtype":"F16","data_offsets":[4,8]},
            "a" : {"dtype":"F32","shape":[1],"data_offsets":[0,4], "extra": [null, true]},
            "a2": {"dtype":"BF16","shape":[2],"data_offsets":[0,4]} } "#;
        let data = [0, 0, 0x80, 0x3f, 0x00, 0x3c, 0x00, 0xc0];
        let dir = tempfile::tempdir().unwrap();
        let store = store_of(dir.path(), &file_with(header, &data)).unwrap();
        assert_eq!(store.names(), ["a", "a2", "b"]);
        assert_eq!(store.get("a").unwrap().to_f32_vec(), [1.0]);
        assert_eq!(store.get("b").unwrap().to_f32_vec(), [1.0, -2.0]);
        assert_eq!(store.get("a2").unwrap().to_bits_vec(), [0, 0x3f80]);
    }

    #[test]
    fn missing_tensors_are_reported_with_some_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.safetensors");
        let ts: Vec<(String, Tensor)> = (0..12)
            .map(|i| {
                (
                    format!("t{i:02}"),
                    Tensor::splat(ElemType::F32, vec![1], 0.0),
                )
            })
            .collect();
        let refs: Vec<(&str, &Tensor)> = ts.iter().map(|(n, t)| (n.as_str(), t)).collect();
        write_safetensors(&path, &refs).unwrap();
        let store = WeightStore::open(&path).unwrap();
        assert!(store.get("fc1.weight").is_none());
        let e = store.tensor("fc1.weight").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "no tensor named \"fc1.weight\" in {} (it has 12 tensors: \
                 \"t00\", \"t01\", \"t02\", \"t03\", \"t04\", ...)",
                path.display()
            )
        );
        assert!(store.tensor("t03").unwrap().is_mapped());

        write_safetensors(&path, &[]).unwrap();
        let e = WeightStore::open(&path).unwrap().tensor("x").unwrap_err();
        assert!(e.message().ends_with("(it has no tensors)"), "{e}");
    }

    #[test]
    fn short_and_missing_files_are_errors() {
        assert!(open_err(&[]).contains("0 bytes, too short"));
        assert!(open_err(&[1, 2, 3, 4, 5]).contains("5 bytes, too short"));
        let dir = tempfile::tempdir().unwrap();
        let e = WeightStore::open(&dir.path().join("nope.safetensors")).unwrap_err();
        assert!(e.message().contains("nope.safetensors"), "{e}");
    }

    #[test]
    fn bad_header_lengths_are_errors() {
        let mut f = file_with("{}", &[]);
        f[..8].copy_from_slice(&100u64.to_le_bytes());
        assert!(open_err(&f).contains("file has only 2 after it"));
        f[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(open_err(&f).contains("more than the limit"));
        f[..8].copy_from_slice(&(MAX_HEADER_LEN + 1).to_le_bytes());
        assert!(open_err(&f).contains("more than the limit"));
        // Only the 8-byte prefix.
        assert!(open_err(&0u64.to_le_bytes()).contains("invalid header"));
    }

    #[test]
    fn malformed_headers_are_errors() {
        let mut f = file_with("{\"a\":1}", &[]);
        f[9] = 0xff;
        assert!(open_err(&f).contains("not valid UTF-8"));
        for bad in [
            "{\"w\":",
            "[1,2]",
            "{} x",
            "{\"w\" {}}",
            "{\"w\":{},}",
            "{\"w\":tru}",
            "{\"w\":01}",
            "{\"w\":\"a\nb\"}",
            "{\"w\":\"\\ud800\"}",
            "{\"w\":\"\\q\"}",
            "{\"w\":\"abc",
            "",
        ] {
            let e = open_err(&file_with(bad, &[]));
            assert!(e.contains("invalid header"), "{bad:?}: {e}");
        }
        // Deep nesting is refused rather than overflowing the stack.
        let deep = format!(
            "{{\"__metadata__\":{}1{}}}",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        assert!(open_err(&file_with(&deep, &[])).contains("nested too deeply"));
        let e = open_err(&file_with("{\"__metadata__\":3}", &[]));
        assert!(e.contains("__metadata__"), "{e}");
    }

    #[test]
    fn malformed_entries_are_errors() {
        let cases = [
            // (entry of tensor "w", data bytes, expected fragment)
            (
                r#"{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#,
                4,
                "go past the end",
            ),
            (
                r#"{"dtype":"F32","shape":[2],"data_offsets":[8,0]}"#,
                8,
                "reversed data_offsets [8, 0]",
            ),
            (
                r#"{"dtype":"F32","shape":[2],"data_offsets":[0,4]}"#,
                8,
                "needs 8 bytes but its data_offsets [0, 4] cover 4",
            ),
            (
                r#"{"dtype":"F16","shape":[2,3],"data_offsets":[0,24]}"#,
                24,
                "shape [2, 3] needs 12 bytes",
            ),
            (
                r#"{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,0]}"#,
                0,
                "overflows",
            ),
            (
                r#"{"dtype":"F32","shape":[4611686018427387904],"data_offsets":[0,0]}"#,
                0,
                "overflows",
            ),
            (
                r#"{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}"#,
                0,
                "non-negative integers",
            ),
            (
                r#"{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}"#,
                0,
                "non-negative integers",
            ),
            (
                r#"{"dtype":"F32","shape":[1],"data_offsets":[0,99999999999999999999]}"#,
                4,
                "non-negative integers",
            ),
            (
                r#"{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}"#,
                8,
                "must have 2 entries",
            ),
            (
                r#"{"dtype":"F32","shape":2,"data_offsets":[0,4]}"#,
                4,
                "not an array",
            ),
            (
                r#"{"shape":[1],"data_offsets":[0,4]}"#,
                4,
                "has no \"dtype\"",
            ),
            (
                r#"{"dtype":"F32","data_offsets":[0,4]}"#,
                4,
                "has no \"shape\"",
            ),
            (
                r#"{"dtype":"F32","shape":[1]}"#,
                4,
                "has no \"data_offsets\"",
            ),
            (
                r#"{"dtype":32,"shape":[1],"data_offsets":[0,4]}"#,
                4,
                "is not a string",
            ),
            (r#"[1]"#, 0, "is not an object"),
            (
                r#"{"dtype":"I32","shape":[1],"data_offsets":[0,4]}"#,
                4,
                "tensor \"w\" has dtype \"I32\", which is not supported",
            ),
            (
                r#"{"dtype":"Q4_K","shape":[1],"data_offsets":[0,4]}"#,
                4,
                "tensor \"w\" has dtype \"Q4_K\"",
            ),
            (
                r#"{"dtype":"F64","shape":[1],"data_offsets":[0,8]}"#,
                8,
                "only F32, F16 and BF16",
            ),
        ];
        for (entry, len, fragment) in cases {
            let e = one_tensor_err(entry, len);
            assert!(e.contains(fragment), "{entry}: {e}");
            assert!(e.contains("\"w\""), "{entry}: {e}");
        }
        let dup = r#"{"w":{"dtype":"F32","shape":[],"data_offsets":[0,4]},
                      "w":{"dtype":"F32","shape":[],"data_offsets":[0,4]}}"#;
        assert!(open_err(&file_with(dup, &[0; 4])).contains("more than once"));
    }

    #[test]
    fn failed_writes_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::from_f32(ElemType::F32, vec![2], &[1.0, 2.0]);
        let missing = dir.path().join("no/such/dir/w.safetensors");
        assert!(write_safetensors(&missing, &[("t", &t)]).is_err());
        assert!(!dir.path().join("no").exists());

        // A refused write keeps the old file as it was and leaves no temporary file.
        let path = dir.path().join("w.safetensors");
        write_safetensors(&path, &[("t", &t)]).unwrap();
        let before = fs::read(&path).unwrap();
        assert!(write_safetensors(&path, &[("t", &t), ("t", &t)]).is_err());
        assert!(write_safetensors(&path, &[("__metadata__", &t)]).is_err());
        let huge = Tensor::splat(ElemType::F32, vec![1 << 40, 1 << 40], 0.0);
        assert!(write_safetensors(&path, &[("huge", &huge)]).is_err());
        assert_eq!(fs::read(&path).unwrap(), before);
        let entries: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }

    #[test]
    fn replacing_a_mapped_file_keeps_the_old_view() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let old = Tensor::from_f32(ElemType::F32, vec![2], &[1.0, 2.0]);
        write_safetensors(&path, &[("t", &old)]).unwrap();
        let store = WeightStore::open(&path).unwrap();
        let view = store.get("t").unwrap();
        let new = Tensor::from_f32(ElemType::F32, vec![2], &[3.0, 4.0]);
        write_safetensors(&path, &[("t", &new)]).unwrap();
        assert!(view.bit_eq(&old));
        assert!(store.get("t").unwrap().bit_eq(&old));
        assert!(WeightStore::open(&path)
            .unwrap()
            .get("t")
            .unwrap()
            .bit_eq(&new));
    }
}
