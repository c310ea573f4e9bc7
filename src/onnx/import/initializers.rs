//! Tensors: initializers and `Constant` values. Raw data inside the memory-mapped model, and
//! external data (mapped the same way), become tensors that point into the map, never copied;
//! typed fields (`float_data`, `int32_data`, `int64_data`) are copied. INT64/INT32 tensors
//! become integer constants ([`Val::Int`]), and so do BOOL ones, as 0 and 1 (exporters write
//! the `True` that seeds a transformer's attention-mask plumbing as a BOOL initializer).
//!
//! Invariant: an external-data location stays inside the model's directory (no absolute path,
//! no `..`, no symlink out of it).

use super::values::Val;
use super::{Importer, R};
use crate::ir::{ElemType, Tensor};
use crate::onnx::proto::{self, data_type, TensorProto};
use bytes::Bytes;
use memmap2::Mmap;
use std::path::{Component, Path};
use std::sync::Arc;

/// The NNIR element type of an ONNX float data type.
pub(super) fn elem_of(dt: i32) -> Option<ElemType> {
    match dt {
        data_type::FLOAT => Some(ElemType::F32),
        data_type::FLOAT16 => Some(ElemType::F16),
        data_type::BFLOAT16 => Some(ElemType::BF16),
        _ => None,
    }
}

pub(super) fn num_elements(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
}

impl Importer {
    pub(super) fn tensor(&mut self, t: &TensorProto) -> R<Val> {
        let mut shape = Vec::with_capacity(t.dims.len());
        for &d in &t.dims {
            shape.push(u64::try_from(d).map_err(|_| format!("dimension {d} is negative"))?);
        }
        let count = num_elements(&shape)
            .filter(|&n| n <= crate::ir::types::MAX_ELEMENTS)
            .ok_or_else(|| format!("shape {:?} is too large", t.dims))?;
        let count = count as usize;
        let raw: Option<Raw> = if t.data_location == proto::DATA_LOCATION_EXTERNAL {
            Some(self.external(t)?)
        } else if !t.raw_data.is_empty() {
            let inside = self.map.as_ref().and_then(|m| {
                let base = m.as_ptr() as usize;
                let p = t.raw_data.as_ptr() as usize;
                let end = p.checked_add(t.raw_data.len())?;
                (p >= base && end <= base + m.len())
                    .then(|| Raw::Mapped(m.clone(), p - base, t.raw_data.len()))
            });
            Some(inside.unwrap_or_else(|| Raw::Owned(t.raw_data.clone())))
        } else {
            None
        };
        if let Some(elem) = elem_of(t.data_type) {
            if let Some(r) = &raw {
                let want = count * elem.size();
                let len = r.len();
                if len != want {
                    return Err(format!(
                        "tensor '{}' has {len} bytes of data but its shape {:?} of {} needs {want}",
                        t.name,
                        t.dims,
                        data_type::name(t.data_type)
                    ));
                }
                return Ok(Val::Float(match r {
                    Raw::Mapped(map, off, len) => {
                        Tensor::mapped(elem, shape, map.clone(), *off, *len)
                            .ok_or("data lies outside the file")?
                    }
                    Raw::Owned(b) => Tensor::from_bytes(elem, shape, b.to_vec().into())
                        .ok_or("data does not match the shape")?,
                }));
            }
            let n_given = match elem {
                ElemType::F32 => t.float_data.len(),
                _ => t.int32_data.len(),
            };
            if n_given != count {
                return Err(format!(
                    "tensor '{}' has {n_given} values but its shape {:?} needs {count}",
                    t.name, t.dims
                ));
            }
            return Ok(Val::Float(match elem {
                ElemType::F32 => Tensor::from_f32(elem, shape, &t.float_data),
                _ => {
                    Tensor::from_bits(elem, shape, t.int32_data.iter().map(|&b| b as u32 & 0xFFFF))
                }
            }));
        }
        let width = match t.data_type {
            data_type::INT64 => 8,
            data_type::INT32 => 4,
            data_type::BOOL => 1,
            other => {
                return Err(match data_type::name(other) {
                    "UNKNOWN" => format!("tensor '{}' has an unknown data type ({other})", t.name),
                    name => format!(
                        "tensor '{}' has data type {name} ({other}), which nnopt does not support",
                        t.name
                    ),
                })
            }
        };
        let data: Vec<i64> = match &raw {
            Some(r) => {
                let len = r.len();
                if len != count * width {
                    return Err(format!(
                        "tensor '{}' has {len} bytes of data but its shape {:?} of {} needs {}",
                        t.name,
                        t.dims,
                        data_type::name(t.data_type),
                        count * width
                    ));
                }
                r.bytes()
                    .chunks_exact(width)
                    .map(|c| match width {
                        8 => i64::from_le_bytes(c.try_into().expect("8 bytes")),
                        4 => i32::from_le_bytes(c.try_into().expect("4 bytes")) as i64,
                        _ => (c[0] != 0) as i64,
                    })
                    .collect()
            }
            None => {
                let d: Vec<i64> = match t.data_type {
                    data_type::INT64 => t.int64_data.clone(),
                    data_type::BOOL => t.int32_data.iter().map(|&x| (x != 0) as i64).collect(),
                    _ => t.int32_data.iter().map(|&x| x as i64).collect(),
                };
                if d.len() != count {
                    return Err(format!(
                        "tensor '{}' has {} values but its shape {:?} needs {count}",
                        t.name,
                        d.len(),
                        t.dims
                    ));
                }
                d
            }
        };
        Ok(Val::Int { shape, data })
    }
}

/// Where a tensor's bytes are: a range of a mapped file, or a buffer decoded from elsewhere.
enum Raw {
    Mapped(Arc<Mmap>, usize, usize),
    Owned(Bytes),
}

impl Raw {
    fn len(&self) -> usize {
        match self {
            Raw::Mapped(_, _, len) => *len,
            Raw::Owned(b) => b.len(),
        }
    }

    fn bytes(&self) -> &[u8] {
        match self {
            Raw::Mapped(m, off, len) => &m[*off..*off + *len],
            Raw::Owned(b) => b,
        }
    }
}

impl Importer {
    /// Maps the external-data file of `t` and returns its byte range. The location must stay
    /// inside the model's directory (no absolute paths, no `..`, no symlink out of it).
    fn external(&mut self, t: &TensorProto) -> R<Raw> {
        let (mut location, mut offset, mut length) = (None, 0u64, None);
        for e in &t.external_data {
            let num = |v: &str| {
                v.parse::<u64>()
                    .map_err(|_| format!("external data {} '{v}' is not a number", e.key))
            };
            match e.key.as_str() {
                "location" => location = Some(e.value.clone()),
                "offset" => offset = num(&e.value)?,
                "length" => length = Some(num(&e.value)?),
                // A checksum is advisory; nnopt does not verify it.
                "checksum" => {}
                k => return Err(format!("unknown external data key '{k}'")),
            }
        }
        let location = location
            .ok_or_else(|| format!("tensor '{}' has external data without a location", t.name))?;
        let rel = Path::new(&location);
        if rel
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "tensor '{}': external data location '{location}' leaves the model's directory",
                t.name
            ));
        }
        let path = self.base_dir.join(rel);
        let (canon, dir) = match (path.canonicalize(), self.base_dir.canonicalize()) {
            (Ok(c), Ok(d)) => (c, d),
            (Err(e), _) | (_, Err(e)) => {
                return Err(format!(
                    "tensor '{}': cannot open external data {}: {e}",
                    t.name,
                    path.display()
                ))
            }
        };
        if !canon.starts_with(&dir) {
            return Err(format!(
                "tensor '{}': external data location '{location}' leaves the model's directory",
                t.name
            ));
        }
        let map = match self.ext_maps.get(&canon) {
            Some(m) => m.clone(),
            None => {
                let fail = |e: std::io::Error| {
                    format!(
                        "tensor '{}': cannot map external data {}: {e}",
                        t.name,
                        canon.display()
                    )
                };
                let file = std::fs::File::open(&canon).map_err(fail)?;
                // SAFETY: read-only mapping, see `import_file`.
                let m = Arc::new(unsafe { Mmap::map(&file) }.map_err(fail)?);
                self.ext_maps.insert(canon.clone(), m.clone());
                m
            }
        };
        let file_len = map.len() as u64;
        let len = length.unwrap_or(file_len.saturating_sub(offset));
        if offset.checked_add(len).is_none_or(|end| end > file_len) {
            return Err(format!(
                "tensor '{}': external data range {offset}+{len} is outside {} ({file_len} bytes)",
                t.name,
                canon.display()
            ));
        }
        Ok(Raw::Mapped(map, offset as usize, len as usize))
    }
}
