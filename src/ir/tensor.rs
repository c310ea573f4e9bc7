//! Constant tensor data: inline `dense<...>` literals and external weights.
//!
//! A [`Tensor`] is immutable and cheap to clone: its bytes live behind an `Arc`, either owned or
//! memory-mapped from a safetensors file, so a weight used by several ops is stored once. Slicing
//! ([`Tensor::take`]) copies nothing: it makes a view that selects positions of the buffer's axes,
//! and the bytes are gathered when they are read or written, so pruning a weight's rows and then
//! its columns copies each kept byte once, straight into the output file. A 2-D transpose
//! ([`Tensor::transposed`]) is such a view too, so an ONNX MatMul weight ([in, out]) becomes an
//! `nn.linear` weight ([out, in]) and back without a copy. Data is kept as raw
//! little-endian bytes of the element type, so f16/bf16 values and NaN payloads, -0.0 and
//! denormals survive a round trip bit for bit; arithmetic reads values as f32.

use super::types::{ElemType, TensorType};
use half::{bf16, f16};
use memmap2::Mmap;
use std::ops::ControlFlow;
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
    /// Selected positions of a buffer's axes, gathered when read (see [`Tensor::take`]).
    Gather(Arc<Gather>),
}

/// A view of `base` keeping, along each axis, the positions `keep[axis]` in that order (`None`:
/// all of them); with `transposed`, the transpose of that selection.
#[derive(Debug)]
struct Gather {
    /// Owned or mapped: takes of a gather compose into one, and a splat stays a splat.
    base: Tensor,
    /// Indexed by the base's axes.
    keep: Vec<Option<Vec<usize>>>,
    /// Row-major element strides of `base` (computed once: small views are read element by
    /// element).
    strides: Vec<usize>,
    /// The view is 2-D and its element (r, c) is element (c, r) of the selection. Invariant:
    /// a view that is not transposed selects some axis (else it is its base).
    transposed: bool,
}

/// Constant tensor data: an element type, a static shape and shared storage (see the module
/// docs).
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
        ElemType::I64 => unreachable!("invariant: tensors hold floating-point elements"),
    }
}

/// Reads a bit pattern of `elem` as f32 (exact: f16 and bf16 values are all representable).
pub fn bits_to_f32(elem: ElemType, bits: u32) -> f32 {
    match elem {
        ElemType::F32 => f32::from_bits(bits),
        ElemType::F16 => f16::from_bits(bits as u16).to_f32(),
        ElemType::BF16 => bf16::from_bits(bits as u16).to_f32(),
        ElemType::I64 => unreachable!("invariant: tensors hold floating-point elements"),
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

    /// The size of the raw little-endian bytes (as written to a file).
    pub fn byte_len(&self) -> usize {
        self.len() * self.elem.size()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stored as a single repeated value (not merely "all values equal").
    pub fn is_splat(&self) -> bool {
        matches!(self.storage, Storage::Splat(_))
    }

    /// The repeated bit pattern of a splat.
    pub fn as_splat(&self) -> Option<u32> {
        match self.storage {
            Storage::Splat(b) => Some(b),
            _ => None,
        }
    }

    /// The raw little-endian bytes when they lie contiguously in a buffer; `None` for a splat
    /// and a gather view (read those with [`Tensor::for_each_byte_chunk`] or make them
    /// contiguous with [`Tensor::materialized`]).
    pub fn raw_bytes(&self) -> Option<&[u8]> {
        match &self.storage {
            Storage::Splat(_) | Storage::Gather(_) => None,
            Storage::Owned(b) => Some(b),
            Storage::Mapped { map, offset, len } => Some(&map[*offset..*offset + *len]),
        }
    }

    /// The same tensor with its bytes in one buffer: a gather view is gathered into a new one,
    /// anything else is returned as it is (a splat stays a splat).
    pub fn materialized(&self) -> Tensor {
        match &self.storage {
            Storage::Gather(g) => Tensor::from_fill(self.elem, self.shape.clone(), |out| {
                g.fill_bytes(&self.shape, 0, out)
            })
            .expect("invariant: a view is no larger than its base"),
            _ => self.clone(),
        }
    }

    /// Runs `f` on the raw little-endian bytes of all elements in order, in chunks: a buffer
    /// in one piece, a splat or a gather view through a small buffer, so writing a tensor never
    /// needs a second copy of it in memory.
    pub fn for_each_byte_chunk(&self, mut f: impl FnMut(&[u8])) {
        const CHUNK: usize = 1 << 16;
        let total = self.byte_len();
        match &self.storage {
            Storage::Owned(_) | Storage::Mapped { .. } => {
                f(self.raw_bytes().expect("invariant: buffer storage"))
            }
            Storage::Splat(bits) => {
                let one = &bits.to_le_bytes()[..self.elem.size()];
                let buf: Vec<u8> = one.iter().copied().cycle().take(CHUNK.min(total)).collect();
                let mut left = total;
                while left > 0 {
                    let n = left.min(buf.len());
                    f(&buf[..n]);
                    left -= n;
                }
            }
            Storage::Gather(g) => {
                let size = self.elem.size();
                let mut buf = vec![0u8; CHUNK.min(total)];
                let mut done = 0;
                while done < total {
                    let n = (total - done).min(buf.len());
                    g.fill_bytes(&self.shape, done / size, &mut buf[..n]);
                    f(&buf[..n]);
                    done += n;
                }
            }
        }
    }

    /// `self` with only the positions `keep` of `axis`, in that order (bit-exact, same element
    /// type). Nothing is copied: the result is a view that gathers on reading, and a take of a
    /// view composes with it, so slicing rows and then columns still reads each byte once.
    pub fn take(&self, axis: usize, keep: &[usize]) -> Tensor {
        let mut shape = self.shape.clone();
        shape[axis] = keep.len() as u64;
        let (base, mut sel, transposed) = match &self.storage {
            Storage::Splat(b) => return Tensor::splat_bits(self.elem, shape, *b),
            Storage::Gather(g) => (g.base.clone(), g.keep.clone(), g.transposed),
            Storage::Owned(_) | Storage::Mapped { .. } => {
                (self.clone(), vec![None; self.shape.len()], false)
            }
        };
        if keep.iter().copied().eq(0..self.shape[axis] as usize) {
            return self.clone();
        }
        // A transposed view's axis `a` is its base's axis `1 - a`.
        let base_axis = if transposed { 1 - axis } else { axis };
        sel[base_axis] = Some(match &sel[base_axis] {
            Some(old) => keep.iter().map(|&k| old[k]).collect(),
            None => keep.to_vec(),
        });
        Tensor::gather(self.elem, shape, base, sel, transposed)
    }

    /// The transpose of a 2-D tensor, bit-exact, as a view: nothing is copied (the elements
    /// are gathered when read or written), a view's transpose is a view of the same base, and
    /// transposing twice gives the original storage back (a memory-mapped weight stays mapped).
    pub fn transposed(&self) -> Tensor {
        assert_eq!(self.shape.len(), 2, "transposed: a 2-D tensor");
        let shape = vec![self.shape[1], self.shape[0]];
        match &self.storage {
            Storage::Splat(b) => Tensor::splat_bits(self.elem, shape, *b),
            Storage::Gather(g) if g.transposed && g.keep.iter().all(Option::is_none) => {
                g.base.clone()
            }
            Storage::Gather(g) => Tensor::gather(
                self.elem,
                shape,
                g.base.clone(),
                g.keep.clone(),
                !g.transposed,
            ),
            Storage::Owned(_) | Storage::Mapped { .. } => {
                Tensor::gather(self.elem, shape, self.clone(), vec![None, None], true)
            }
        }
    }

    /// Whether this is a transposed view ([`Tensor::transposed`]), whose rows are read one
    /// element per row of its source: a scan over all of it is faster through
    /// `self.transposed()`, which reads the source in memory order.
    pub fn is_transposed(&self) -> bool {
        matches!(&self.storage, Storage::Gather(g) if g.transposed)
    }

    /// The view of `base` (owned or mapped) that selects `keep` (see [`Gather`]).
    fn gather(
        elem: ElemType,
        shape: Vec<u64>,
        base: Tensor,
        keep: Vec<Option<Vec<usize>>>,
        transposed: bool,
    ) -> Tensor {
        let mut strides = vec![0; keep.len()];
        let mut acc = 1;
        for (s, &d) in strides.iter_mut().zip(base.shape()).rev() {
            *s = acc;
            acc *= d as usize;
        }
        Tensor {
            elem,
            shape,
            storage: Storage::Gather(Arc::new(Gather {
                base,
                keep,
                strides,
                transposed,
            })),
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
        let mut one = [0u8; 4];
        let b = match &self.storage {
            Storage::Splat(b) => return *b,
            Storage::Gather(g) => {
                g.fill_bytes(&self.shape, i, &mut one[..size]);
                &one[..size]
            }
            _ => &self.raw_bytes().expect("invariant: buffer storage")[i * size..(i + 1) * size],
        };
        match size {
            4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            _ => u16::from_le_bytes([b[0], b[1]]) as u32,
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
            // not the per-element path below, which dominates a row scan of a large weight.
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
    /// f32 tensor's bytes are unaligned (ONNX `raw_data`), gathered chunk by chunk from a view
    /// (straight from f32 values when its base is aligned f32), element by element otherwise.
    /// Row scans of large weights use it so they neither allocate nor copy the row.
    pub fn for_each_f32_chunk(&self, range: std::ops::Range<usize>, mut f: impl FnMut(&[f32])) {
        // Never breaks, so there is nothing to report.
        let _ = self.try_for_each_f32_chunk(range, |c| {
            f(c);
            ControlFlow::Continue(())
        });
    }

    /// [`Tensor::for_each_f32_chunk`] that stops when `f` breaks (a row scan that has found a
    /// non-zero weight need not read, or gather, the rest of the row); returns whether it did.
    pub fn try_for_each_f32_chunk(
        &self,
        range: std::ops::Range<usize>,
        mut f: impl FnMut(&[f32]) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        const CHUNK: usize = 256;
        if let (ElemType::F32, Some(bytes), true) =
            (self.elem, self.raw_bytes(), cfg!(target_endian = "little"))
        {
            let bytes = &bytes[range.start * 4..range.end * 4];
            // SAFETY: every bit pattern is a valid f32; `align_to` only yields the aligned middle.
            let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
            if pre.is_empty() && post.is_empty() {
                return mid.chunks(CHUNK).try_for_each(f);
            }
            let mut buf = [0f32; CHUNK];
            for c in bytes.chunks(CHUNK * 4) {
                let n = c.len() / 4;
                for (d, b) in buf[..n].iter_mut().zip(c.chunks_exact(4)) {
                    *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
                f(&buf[..n])?;
            }
            return ControlFlow::Continue(());
        }
        let mut buf = [0f32; CHUNK];
        let mut raw = [0u8; CHUNK * 4];
        let size = self.elem.size();
        let mut i = range.start;
        while i < range.end {
            let n = CHUNK.min(range.end - i);
            match &self.storage {
                Storage::Gather(g) if g.base_f32().is_some() => {
                    let src = g.base_f32().expect("checked");
                    g.fill(&self.shape, src, 1, i, &mut buf[..n]);
                }
                Storage::Gather(g) => {
                    g.fill_bytes(&self.shape, i, &mut raw[..n * size]);
                    for (d, b) in buf[..n].iter_mut().zip(raw.chunks_exact(size)) {
                        let bits = match size {
                            4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                            _ => u16::from_le_bytes([b[0], b[1]]) as u32,
                        };
                        *d = bits_to_f32(self.elem, bits);
                    }
                }
                _ => {
                    for (k, d) in buf[..n].iter_mut().enumerate() {
                        *d = self.get(i + k);
                    }
                }
            }
            f(&buf[..n])?;
            i += n;
        }
        ControlFlow::Continue(())
    }

    /// All elements as f32, row-major.
    pub fn to_f32_vec(&self) -> Vec<f32> {
        if let Some(bits) = self.as_splat() {
            return vec![bits_to_f32(self.elem, bits); self.len()];
        }
        let mut out = Vec::with_capacity(self.len());
        self.for_each_f32_chunk(0..self.len(), |c| out.extend_from_slice(c));
        out
    }

    /// All elements' bit patterns.
    pub fn to_bits_vec(&self) -> Vec<u32> {
        let mut out = Vec::with_capacity(self.len());
        self.for_each_bits(|b| out.push(b));
        out
    }

    /// Runs `f` on every element's bit pattern in order (through [`Tensor::for_each_byte_chunk`],
    /// so a view is not gathered element by element).
    fn for_each_bits(&self, mut f: impl FnMut(u32)) {
        let size = self.elem.size();
        self.for_each_byte_chunk(|c| {
            for b in c.chunks_exact(size) {
                f(match size {
                    4 => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                    _ => u16::from_le_bytes([b[0], b[1]]) as u32,
                })
            }
        });
    }

    /// `true` if every element has the same bit pattern (a splat, or a buffer that could be one).
    pub fn all_bits_equal(&self) -> bool {
        if self.is_splat() || self.is_empty() {
            return true;
        }
        let first = self.bits(0);
        let mut equal = true;
        self.for_each_bits(|b| equal &= b == first);
        equal
    }

    /// Bitwise equality of type and contents (NaN payloads and -0.0 count).
    pub fn bit_eq(&self, other: &Tensor) -> bool {
        self.elem == other.elem
            && self.shape == other.shape
            && self.to_bits_vec() == other.to_bits_vec()
    }

    /// The same elements in a new shape with the same element count (used by reshapes of
    /// constants): the same bytes, except that a view is gathered first.
    pub fn reshaped(&self, shape: Vec<u64>) -> Option<Tensor> {
        (checked_count(&shape)? == self.len() as u64).then(|| Tensor {
            elem: self.elem,
            shape,
            storage: self.materialized().storage,
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

impl Gather {
    /// The base's elements as f32 in place, when they are f32 in an aligned buffer (safetensors
    /// data is; ONNX `raw_data` need not be).
    fn base_f32(&self) -> Option<&[f32]> {
        let bytes = self.base.raw_bytes()?;
        if self.base.elem != ElemType::F32 || cfg!(target_endian = "big") {
            return None;
        }
        // SAFETY: every bit pattern is a valid f32; `align_to` only yields the aligned middle.
        let (pre, mid, post) = unsafe { bytes.align_to::<f32>() };
        (pre.is_empty() && post.is_empty()).then_some(mid)
    }

    /// [`Gather::fill`] from the base's raw bytes: any element type, any alignment.
    fn fill_bytes(&self, shape: &[u64], start: usize, out: &mut [u8]) {
        let src = self
            .base
            .raw_bytes()
            .expect("invariant: a gather's base has a buffer");
        self.fill(shape, src, self.base.elem.size(), start, out);
    }

    /// Fills `out` with the view's elements from `start` on (row-major in the view's `shape`),
    /// reading the base as `src`, `unit` items per element (bytes, or f32 values in place);
    /// `out` holds whole elements and stays in range.
    ///
    /// The elements come in runs: axes after the last selected one `l` are whole, so each kept
    /// position of `l` is one contiguous run of the base. Runs of one, two or four items (a
    /// weight's columns) are fixed-size moves, which compile to plain loads and stores where a
    /// copy of `run` items would be a `memmove` call per run.
    fn fill<T: Copy>(&self, shape: &[u64], src: &[T], unit: usize, start: usize, out: &mut [T]) {
        if self.transposed {
            return self.fill_transposed(shape, src, unit, start, out);
        }
        let l = self
            .keep
            .iter()
            .rposition(Option::is_some)
            .expect("invariant: a gather selects some axis");
        let keep_l = self.keep[l].as_deref().expect("selected");
        let inner: usize = self.base.shape()[l + 1..].iter().product::<u64>() as usize;
        let run = inner * unit;
        let strides = &self.strides;
        // The base element offset of outer row `o` (an index over the view's axes before `l`).
        let outer_offset = |mut o: usize| {
            let mut off = 0;
            for a in (0..l).rev() {
                let n = shape[a] as usize;
                let i = o % n;
                o /= n;
                off += self.keep[a].as_ref().map_or(i, |k| k[i]) * strides[a];
            }
            off
        };
        let (q, mut r) = (start / inner.max(1), start % inner.max(1));
        let (mut o, mut kpos) = (q / keep_l.len().max(1), q % keep_l.len().max(1));
        let mut pos = 0;
        while pos < out.len() {
            let row = outer_offset(o);
            let at = |k: usize| (row + keep_l[k] * strides[l]) * unit;
            // Whole runs of this row that fit.
            let whole = if r == 0 {
                (keep_l.len() - kpos).min((out.len() - pos) / run.max(1))
            } else {
                0
            };
            let dst = &mut out[pos..pos + whole * run];
            let ks = kpos..kpos + whole;
            match run {
                1 => move_runs::<T, 1>(dst, src, ks.map(at)),
                2 => move_runs::<T, 2>(dst, src, ks.map(at)),
                4 => move_runs::<T, 4>(dst, src, ks.map(at)),
                _ => {
                    for (d, k) in dst.chunks_exact_mut(run.max(1)).zip(ks) {
                        d.copy_from_slice(&src[at(k)..at(k) + run]);
                    }
                }
            }
            pos += whole * run;
            kpos += whole;
            // A partial run: the view starts or ends inside one.
            if pos < out.len() && kpos < keep_l.len() {
                let n = (run - r * unit).min(out.len() - pos);
                let from = at(kpos) + r * unit;
                out[pos..pos + n].copy_from_slice(&src[from..from + n]);
                pos += n;
                r += n / unit;
                if r == inner {
                    r = 0;
                    kpos += 1;
                }
            }
            if kpos == keep_l.len() {
                kpos = 0;
                o += 1;
            }
        }
    }
}

impl Gather {
    /// [`Gather::fill`] for a transposed view: element (r, c) of the view is element (c, r)
    /// of the selection, one element at a time. Reading the view's rows in order walks the
    /// base's columns, each row touching the same cache lines as the one before, so a scan of a
    /// large weight stays in cache.
    fn fill_transposed<T: Copy>(
        &self,
        shape: &[u64],
        src: &[T],
        unit: usize,
        start: usize,
        out: &mut [T],
    ) {
        let cols = shape[1] as usize;
        let pick = |axis: usize, i: usize| self.keep[axis].as_ref().map_or(i, |k| k[i]);
        let (mut r, mut c) = (start / cols, start % cols);
        let at = (0..out.len() / unit.max(1)).map(|_| {
            if c == cols {
                (r, c) = (r + 1, 0);
            }
            let at = (pick(0, c) * self.strides[0] + pick(1, r) * self.strides[1]) * unit;
            c += 1;
            at
        });
        // A fixed element size makes each move a load and a store, not a `memmove` call.
        match unit {
            1 => move_runs::<T, 1>(out, src, at),
            2 => move_runs::<T, 2>(out, src, at),
            _ => move_runs::<T, 4>(out, src, at),
        }
    }
}

/// Moves `R` items from each offset of `from` into consecutive slots of `dst`.
fn move_runs<T: Copy, const R: usize>(dst: &mut [T], src: &[T], from: impl Iterator<Item = usize>) {
    for (d, s) in dst.chunks_exact_mut(R).zip(from) {
        let s: &[T; R] = src[s..s + R].try_into().expect("R items");
        d.copy_from_slice(s);
    }
}

/// Bitwise equality ([`Tensor::bit_eq`]), so that ops compare by their attributes' bits.
impl PartialEq for Tensor {
    fn eq(&self, other: &Tensor) -> bool {
        self.bit_eq(other)
    }
}

#[cfg(test)]
mod tests;
