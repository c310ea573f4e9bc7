//! Constant tensor data: inline `dense<...>` literals and external weights.
//!
//! A [`Tensor`] is immutable and cheap to clone: its bytes live behind an `Arc`, either owned or
//! memory-mapped from a safetensors file, so a weight used by several ops is stored once and a
//! rewrite that slices it makes exactly one new buffer. Data is kept as raw little-endian bytes of
//! the element type, so f16/bf16 values and NaN payloads, -0.0 and denormals survive a round trip
//! bit for bit; arithmetic reads values as f32.

use super::types::{ElemType, TensorType};
use half::{bf16, f16};
use memmap2::Mmap;
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Storage {
    /// Every element has the same bit pattern (`dense<0.0>`), kept once.
    Splat(u32),
    Owned(Arc<[u8]>),
    /// A byte range of a memory-mapped file (a safetensors weight).
    Mapped {
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    },
}

#[derive(Clone, Debug)]
pub struct Tensor {
    elem: ElemType,
    shape: Vec<u64>,
    storage: Storage,
}

/// Converts an f32 value to the bit pattern of `elem` (round to nearest even for f16/bf16).
pub fn f32_to_bits(elem: ElemType, v: f32) -> u32 {
    match elem {
        ElemType::F32 => v.to_bits(),
        ElemType::F16 => f16::from_f32(v).to_bits() as u32,
        ElemType::BF16 => bf16::from_f32(v).to_bits() as u32,
    }
}

/// Reads a bit pattern of `elem` as f32 (exact: f16 and bf16 values are all representable).
pub fn bits_to_f32(elem: ElemType, bits: u32) -> f32 {
    match elem {
        ElemType::F32 => f32::from_bits(bits),
        ElemType::F16 => f16::from_bits(bits as u16).to_f32(),
        ElemType::BF16 => bf16::from_bits(bits as u16).to_f32(),
    }
}

impl Tensor {
    /// A tensor whose elements all have the bit pattern `bits`.
    pub fn splat_bits(elem: ElemType, shape: Vec<u64>, bits: u32) -> Tensor {
        Tensor {
            elem,
            shape,
            storage: Storage::Splat(bits),
        }
    }

    pub fn splat(elem: ElemType, shape: Vec<u64>, value: f32) -> Tensor {
        Tensor::splat_bits(elem, shape, f32_to_bits(elem, value))
    }

    /// Takes little-endian bytes; `None` if their length does not match the shape.
    pub fn from_bytes(elem: ElemType, shape: Vec<u64>, bytes: Arc<[u8]>) -> Option<Tensor> {
        let n = checked_count(&shape)?;
        (bytes.len() as u64 == n.checked_mul(elem.size() as u64)?).then(|| Tensor {
            elem,
            shape,
            storage: Storage::Owned(bytes),
        })
    }

    /// A tensor whose little-endian bytes `fill` writes straight into the final shared buffer
    /// (zero-initialised), so large derived tensors (pruned weights) are not built in a `Vec`
    /// and copied again into an `Arc`. `None` if the shape's byte count overflows.
    pub fn from_fill(
        elem: ElemType,
        shape: Vec<u64>,
        fill: impl FnOnce(&mut [u8]),
    ) -> Option<Tensor> {
        let len = usize::try_from(checked_count(&shape)?.checked_mul(elem.size() as u64)?).ok()?;
        let mut buf: Arc<[std::mem::MaybeUninit<u8>]> = Arc::new_zeroed_slice(len);
        let slice = Arc::get_mut(&mut buf).expect("invariant: a fresh Arc is unique");
        // SAFETY: the slice was zero-initialised, and zero is a valid u8.
        fill(unsafe { &mut *(slice as *mut [std::mem::MaybeUninit<u8>] as *mut [u8]) });
        // SAFETY: as above, every byte is initialised.
        let bytes = unsafe { buf.assume_init() };
        Tensor::from_bytes(elem, shape, bytes)
    }

    /// A view of `len` bytes at `offset` of a mapped file; `None` if out of range or mis-sized.
    pub fn mapped(
        elem: ElemType,
        shape: Vec<u64>,
        map: Arc<Mmap>,
        offset: usize,
        len: usize,
    ) -> Option<Tensor> {
        let n = checked_count(&shape)?;
        let in_range = offset.checked_add(len).is_some_and(|end| end <= map.len());
        (in_range && len as u64 == n.checked_mul(elem.size() as u64)?).then(|| Tensor {
            elem,
            shape,
            storage: Storage::Mapped { map, offset, len },
        })
    }

    /// Builds a tensor from bit patterns (one `u32` per element, low bits used for f16/bf16).
    pub fn from_bits(
        elem: ElemType,
        shape: Vec<u64>,
        bits: impl IntoIterator<Item = u32>,
    ) -> Tensor {
        let mut bytes = Vec::new();
        for b in bits {
            match elem.size() {
                4 => bytes.extend_from_slice(&b.to_le_bytes()),
                _ => bytes.extend_from_slice(&(b as u16).to_le_bytes()),
            }
        }
        let t = Tensor::from_bytes(elem, shape, bytes.into());
        t.expect("invariant: one bit pattern per element")
    }

    /// Builds a tensor from f32 values, rounding them to `elem`.
    pub fn from_f32(elem: ElemType, shape: Vec<u64>, values: &[f32]) -> Tensor {
        Tensor::from_bits(elem, shape, values.iter().map(|&v| f32_to_bits(elem, v)))
    }

    pub fn elem(&self) -> ElemType {
        self.elem
    }

    pub fn shape(&self) -> &[u64] {
        &self.shape
    }

    pub fn ty(&self) -> TensorType {
        TensorType::fixed(&self.shape, self.elem)
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product::<u64>() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stored as a single repeated value (not merely "all values equal").
    pub fn is_splat(&self) -> bool {
        matches!(self.storage, Storage::Splat(_))
    }

    /// The raw little-endian bytes, `None` for a splat (which has no materialised buffer).
    pub fn raw_bytes(&self) -> Option<&[u8]> {
        match &self.storage {
            Storage::Splat(_) => None,
            Storage::Owned(b) => Some(b),
            Storage::Mapped { map, offset, len } => Some(&map[*offset..*offset + *len]),
        }
    }

    /// The raw bytes as a shared [`bytes::Bytes`] without copying them (the buffer or memory
    /// map stays alive as long as the `Bytes`); `None` for a splat.
    pub fn shared_bytes(&self) -> Option<bytes::Bytes> {
        /// Owns a non-splat tensor and shows its bytes.
        struct Raw(Tensor);
        impl AsRef<[u8]> for Raw {
            fn as_ref(&self) -> &[u8] {
                self.0
                    .raw_bytes()
                    .expect("invariant: Raw only wraps tensors with a buffer")
            }
        }
        self.raw_bytes()?;
        Some(bytes::Bytes::from_owner(Raw(self.clone())))
    }

    /// Bit pattern of element `i` (row-major).
    pub fn bits(&self, i: usize) -> u32 {
        let size = self.elem.size();
        match self.raw_bytes() {
            None => match self.storage {
                Storage::Splat(b) => b,
                _ => unreachable!(),
            },
            Some(bytes) => {
                let b = &bytes[i * size..(i + 1) * size];
                match size {
                    4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    _ => u16::from_le_bytes([b[0], b[1]]) as u32,
                }
            }
        }
    }

    /// Element `i` as f32.
    pub fn get(&self, i: usize) -> f32 {
        bits_to_f32(self.elem, self.bits(i))
    }

    /// Elements `range` (row-major) as f32. An f32 tensor whose bytes are 4-aligned (mapped
    /// safetensors data is) is borrowed in place, so scanning a large weight row by row neither
    /// copies it nor pages in more than it reads; other tensors are converted.
    pub fn f32_slice(&self, range: std::ops::Range<usize>) -> std::borrow::Cow<'_, [f32]> {
        use std::borrow::Cow;
        if let (ElemType::F32, Some(bytes), true) =
            (self.elem, self.raw_bytes(), cfg!(target_endian = "little"))
        {
            let bytes = &bytes[range.start * 4..range.end * 4];
            // SAFETY: every bit pattern is a valid f32; `align_to` only yields the aligned middle.
            let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
            if pre.is_empty() && post.is_empty() {
                return Cow::Borrowed(mid);
            }
            // Unaligned (ONNX `raw_data` sits anywhere in the protobuf): a straight conversion,
            // not the per-element path below (which was 60 % of pruning an imported model).
            return Cow::Owned(
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
            );
        }
        Cow::Owned(range.map(|i| self.get(i)).collect())
    }

    /// Runs `f` on the f32 values of elements `range` in chunks, without materialising them:
    /// borrowed in place when aligned, converted chunk by chunk (into a stack buffer) when an
    /// f32 tensor's bytes are unaligned (ONNX `raw_data`), element by element otherwise. Row
    /// scans of large weights use it so they neither allocate nor copy the row.
    pub fn for_each_f32_chunk(&self, range: std::ops::Range<usize>, mut f: impl FnMut(&[f32])) {
        const CHUNK: usize = 256;
        if let (ElemType::F32, Some(bytes), true) =
            (self.elem, self.raw_bytes(), cfg!(target_endian = "little"))
        {
            let bytes = &bytes[range.start * 4..range.end * 4];
            // SAFETY: every bit pattern is a valid f32; `align_to` only yields the aligned middle.
            let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
            if pre.is_empty() && post.is_empty() {
                mid.chunks(CHUNK).for_each(f);
                return;
            }
            let mut buf = [0f32; CHUNK];
            for c in bytes.chunks(CHUNK * 4) {
                let n = c.len() / 4;
                for (d, b) in buf[..n].iter_mut().zip(c.chunks_exact(4)) {
                    *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
                f(&buf[..n]);
            }
            return;
        }
        let mut buf = [0f32; CHUNK];
        let mut i = range.start;
        while i < range.end {
            let n = CHUNK.min(range.end - i);
            for (k, d) in buf[..n].iter_mut().enumerate() {
                *d = self.get(i + k);
            }
            f(&buf[..n]);
            i += n;
        }
    }

    /// All elements as f32, row-major.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match (&self.storage, self.elem) {
            (Storage::Splat(b), _) => vec![bits_to_f32(self.elem, *b); self.len()],
            (_, ElemType::F32) => {
                let bytes = self.raw_bytes().expect("invariant: non-splat has bytes");
                bytes
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect()
            }
            _ => (0..self.len()).map(|i| self.get(i)).collect(),
        }
    }

    /// All elements' bit patterns.
    pub fn to_bits_vec(&self) -> Vec<u32> {
        (0..self.len()).map(|i| self.bits(i)).collect()
    }

    /// `true` if every element has the same bit pattern (a splat, or a buffer that could be one).
    pub fn all_bits_equal(&self) -> bool {
        match self.storage {
            Storage::Splat(_) => true,
            _ => {
                let first = if self.is_empty() { 0 } else { self.bits(0) };
                (1..self.len()).all(|i| self.bits(i) == first)
            }
        }
    }

    /// Bitwise equality of type and contents (NaN payloads and -0.0 count).
    pub fn bit_eq(&self, other: &Tensor) -> bool {
        self.elem == other.elem
            && self.shape == other.shape
            && (0..self.len()).all(|i| self.bits(i) == other.bits(i))
    }

    /// Same bytes, new shape with the same element count (used by reshapes of constants).
    pub fn reshaped(&self, shape: Vec<u64>) -> Option<Tensor> {
        (checked_count(&shape)? == self.len() as u64).then(|| Tensor {
            elem: self.elem,
            shape,
            storage: self.storage.clone(),
        })
    }

    /// `true` if the data is a view of a mapped file rather than owned memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped { .. })
    }
}

fn checked_count(shape: &[u64]) -> Option<u64> {
    shape.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_survive_for_every_element_type() {
        let specials = [f32::NAN.to_bits() | 1, (-0.0f32).to_bits(), 1, 0x7f80_0000];
        let t = Tensor::from_bits(ElemType::F32, vec![4], specials);
        assert_eq!(t.to_bits_vec(), specials);
        let h = Tensor::from_bits(ElemType::F16, vec![2], [0x8000, 0x0001]);
        assert_eq!(h.to_bits_vec(), [0x8000, 0x0001]);
        assert_eq!(h.get(0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn wrong_byte_counts_are_refused() {
        assert!(Tensor::from_bytes(ElemType::F32, vec![2], vec![0u8; 7].into()).is_none());
        assert!(Tensor::from_bytes(ElemType::F32, vec![u64::MAX, 2], vec![].into()).is_none());
    }
}
