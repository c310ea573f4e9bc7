//! Tensor types: `tensor<2x?x3xf32>`.
//!
//! NNIR has one kind of value, a ranked tensor. A dimension is either static or `?` (dynamic,
//! in practice the batch). Element types are f32, f16 and bf16, on which every op computes
//! (arithmetic on f16/bf16 may be carried out in f32), and i64, which only function arguments
//! and `nn.embedding`'s token ids have: integer constants (shapes, axes) never reach the IR.

use smallvec::SmallVec;
use std::fmt;

/// Largest number of elements a tensor type may describe. Bigger types are rejected by the
/// parser and verifier as absurd rather than overflowing later (2^40 f32 values = 4 TiB).
pub const MAX_ELEMENTS: u64 = 1 << 40;

/// Largest rank accepted.
pub const MAX_RANK: usize = 8;

/// The element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ElemType {
    F32,
    F16,
    BF16,
    I64,
}

impl ElemType {
    pub fn name(self) -> &'static str {
        match self {
            ElemType::F32 => "f32",
            ElemType::F16 => "f16",
            ElemType::BF16 => "bf16",
            ElemType::I64 => "i64",
        }
    }

    pub fn from_name(name: &str) -> Option<ElemType> {
        match name {
            "f32" => Some(ElemType::F32),
            "f16" => Some(ElemType::F16),
            "bf16" => Some(ElemType::BF16),
            "i64" => Some(ElemType::I64),
            _ => None,
        }
    }

    /// Bytes per element in memory and in files.
    pub fn size(self) -> usize {
        match self {
            ElemType::F32 => 4,
            ElemType::F16 | ElemType::BF16 => 2,
            ElemType::I64 => 8,
        }
    }

    /// A floating-point type: one that ops compute on and constants hold.
    pub fn is_float(self) -> bool {
        self != ElemType::I64
    }
}

impl fmt::Display for ElemType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One dimension of a tensor type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Static(u64),
    Dynamic,
}

impl Dim {
    pub fn as_static(self) -> Option<u64> {
        match self {
            Dim::Static(n) => Some(n),
            Dim::Dynamic => None,
        }
    }

    /// Two dimensions are compatible when equal or when either is dynamic.
    pub fn compatible(self, other: Dim) -> bool {
        match (self, other) {
            (Dim::Static(a), Dim::Static(b)) => a == b,
            _ => true,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Static(n) => write!(f, "{n}"),
            Dim::Dynamic => f.write_str("?"),
        }
    }
}

/// `tensor<dims x elem>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dims: SmallVec<[Dim; 4]>,
    pub elem: ElemType,
}

impl TensorType {
    pub fn new(dims: impl IntoIterator<Item = Dim>, elem: ElemType) -> TensorType {
        TensorType {
            dims: dims.into_iter().collect(),
            elem,
        }
    }

    /// A fully static type.
    pub fn fixed(shape: &[u64], elem: ElemType) -> TensorType {
        TensorType::new(shape.iter().map(|&n| Dim::Static(n)), elem)
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    pub fn dim(&self, axis: usize) -> Dim {
        self.dims[axis]
    }

    /// The static shape, if no dimension is dynamic.
    pub fn static_shape(&self) -> Option<Vec<u64>> {
        self.dims.iter().map(|d| d.as_static()).collect()
    }

    pub fn is_static(&self) -> bool {
        self.dims.iter().all(|d| matches!(d, Dim::Static(_)))
    }

    /// Number of elements of a static type (`None` if dynamic or over [`MAX_ELEMENTS`]).
    pub fn num_elements(&self) -> Option<u64> {
        let mut n: u64 = 1;
        for d in &self.dims {
            n = n.checked_mul(d.as_static()?)?;
        }
        (n <= MAX_ELEMENTS).then_some(n)
    }

    /// Same element type, same rank, and pairwise compatible dimensions.
    pub fn compatible(&self, other: &TensorType) -> bool {
        self.elem == other.elem
            && self.rank() == other.rank()
            && self
                .dims
                .iter()
                .zip(&other.dims)
                .all(|(a, b)| a.compatible(*b))
    }

    /// A copy with dimension `axis` replaced.
    pub fn with_dim(&self, axis: usize, dim: Dim) -> TensorType {
        let mut t = self.clone();
        t.dims[axis] = dim;
        t
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("tensor<")?;
        for d in &self.dims {
            write!(f, "{d}x")?;
        }
        write!(f, "{}>", self.elem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_matches_the_text_format() {
        let t = TensorType::new([Dim::Dynamic, Dim::Static(3)], ElemType::BF16);
        assert_eq!(t.to_string(), "tensor<?x3xbf16>");
        assert_eq!(
            TensorType::fixed(&[], ElemType::F32).to_string(),
            "tensor<f32>"
        );
    }

    #[test]
    fn absurd_sizes_have_no_element_count() {
        let t = TensorType::fixed(&[99_999_999_999, 99_999_999_999], ElemType::F32);
        assert_eq!(t.num_elements(), None);
        assert_eq!(
            TensorType::fixed(&[2, 3], ElemType::F32).num_elements(),
            Some(6)
        );
    }
}
