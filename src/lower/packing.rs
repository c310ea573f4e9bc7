//! Weights passed in another layout than their NNIR value's: a packed argument is rearranged
//! once when the weights are loaded ([`Packing::apply`]), where a layer would otherwise
//! rearrange it on every call. The layers that read them are `dense.rs` and `conv.rs`.

use crate::ir::{ElemType, Tensor};

/// The layout a weight argument is passed in when its one reader wants another than the
/// NNIR value's; [`super::Jit::compile`] packs it once ([`Packing::apply`]), not every call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// `[N, K]` packed by [`pack_dense`] into panels of this many columns: the weight of a
    /// scheduled dense layer.
    Dense(u64),
    /// `[F, C, KH, KW]` rearranged by [`pack_phases`] into the weights of the passes of a conv
    /// of these strides computed over its input's phases (`Lower::conv_phases`), one after
    /// another in one flat tensor.
    Phases([u64; 2]),
}

impl Packing {
    /// The shape `value`'s packed form has.
    pub fn shape(self, s: &[u64]) -> Vec<u64> {
        match self {
            Packing::Dense(tn) => vec![s[0].div_ceil(tn), s[1], tn],
            Packing::Phases(_) => vec![s.iter().product()],
        }
    }

    /// `value` packed.
    pub fn apply(self, value: &Tensor) -> Tensor {
        match self {
            Packing::Dense(tn) => pack_dense(value, tn),
            Packing::Phases(strides) => pack_phases(value, strides),
        }
    }
}

/// A dense layer's weight `w[N, K]` as panels of `tn` (the target's `schedule::dense_tile`'s
/// `TN`) columns of `W^T`: `[ceil(N / TN), K, TN]`, zero past row `N`. A register tile of the packed kernel then
/// reads each reduction step's `TN` weights from one contiguous run, where rows of an unpacked
/// `W^T` are `4 N` bytes apart, a stride that defeats the caches (`docs/performance.md`).
pub fn pack_dense(w: &Tensor, tn: u64) -> Tensor {
    let tn = tn as usize;
    let (n, k) = (w.shape()[0] as usize, w.shape()[1] as usize);
    let nb = n.div_ceil(tn);
    let src = w.to_f32_vec();
    let mut out = vec![0f32; nb * k * tn];
    for (r, row) in src.chunks_exact(k.max(1)).enumerate().take(n) {
        let (b, l) = (r / tn, r % tn);
        for (c, &v) in row.iter().enumerate() {
            out[(b * k + c) * tn + l] = v;
        }
    }
    Tensor::from_f32(ElemType::F32, vec![nb as u64, k as u64, tn as u64], &out)
}

/// The weight `w[F, C, KH, KW]` of a conv of strides `[sh, sw]` as the passes of its phase
/// form read it (`Lower::conv_phases`): for each phase `(a, b)` in order that has taps, its
/// `[F, C, ceil((KH - a) / sh), ceil((KW - b) / sw)]` taps `w[f, c, sh * qh + a, sw * qw + b]`,
/// one phase after another in one flat tensor of `w`'s size.
pub fn pack_phases(w: &Tensor, [sh, sw]: [u64; 2]) -> Tensor {
    let s = w.shape();
    let [f, c, kh, kw] = [0, 1, 2, 3].map(|i| s[i] as usize);
    let (sh, sw) = (sh as usize, sw as usize);
    let src = w.to_f32_vec();
    let mut out = Vec::with_capacity(src.len());
    for (a, b) in (0..sh).flat_map(|a| (0..sw).map(move |b| (a, b))) {
        for fc in 0..f * c {
            for y in (a..kh).step_by(sh) {
                for x in (b..kw).step_by(sw) {
                    out.push(src[(fc * kh + y) * kw + x]);
                }
            }
        }
    }
    Tensor::from_f32(ElemType::F32, vec![out.len() as u64], &out)
}
