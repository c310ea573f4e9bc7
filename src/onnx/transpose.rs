//! The bit-exact 2-D transpose between ONNX MatMul's [in, out] weight layout and NNIR
//! `nn.linear`'s [out, in].

use crate::ir::Tensor;

/// `t` (2-D) transposed, bit-exactly, in a new buffer: the one copy a MatMul weight ([in, out])
/// needs to become an [out, in] linear weight, and back on export. Tiled so that both sides stay in cache.
pub(crate) fn transpose2d(t: &Tensor) -> Tensor {
    let (r, c) = (t.shape()[0] as usize, t.shape()[1] as usize);
    if t.is_splat() {
        // A splat is the same splat in any shape.
        return t
            .reshaped(vec![c as u64, r as u64])
            .expect("same element count");
    }
    let t = &t.materialized();
    let src = t.raw_bytes().expect("materialized");
    let shape = vec![c as u64, r as u64];
    Tensor::from_fill(t.elem(), shape, |out| match t.elem().size() {
        // A fixed element size makes each move one load and one store, where a slice copy of
        // runtime length would be a call per element.
        4 => transpose_tiles::<4>(src, out, r, c),
        _ => transpose_tiles::<2>(src, out, r, c),
    })
    .expect("invariant: same byte count")
}

/// `out[j][i] = src[i][j]` for `R`-byte elements of an `r` × `c` matrix, in 32 × 32 tiles so
/// that both sides stay in cache.
fn transpose_tiles<const R: usize>(src: &[u8], out: &mut [u8], r: usize, c: usize) {
    const TILE: usize = 32;
    for i0 in (0..r).step_by(TILE) {
        for j0 in (0..c).step_by(TILE) {
            for i in i0..(i0 + TILE).min(r) {
                let row = &src[i * c * R..(i + 1) * c * R];
                for j in j0..(j0 + TILE).min(c) {
                    let e: &[u8; R] = row[j * R..][..R].try_into().expect("R bytes");
                    out[(j * r + i) * R..][..R].copy_from_slice(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::transpose2d;
    use crate::ir::{ElemType, Tensor};

    #[test]
    fn transpose2d_moves_every_element_bit_exactly() {
        // 37 × 5 crosses a 32-row tile boundary.
        let (r, c) = (37usize, 5usize);
        let values: Vec<f32> = (0..r * c).map(|i| i as f32 * 0.5 - 3.0).collect();
        for elem in [ElemType::F32, ElemType::F16, ElemType::BF16] {
            let t = Tensor::from_f32(elem, vec![r as u64, c as u64], &values);
            let tt = transpose2d(&t);
            assert_eq!(tt.shape(), &[c as u64, r as u64]);
            for i in 0..r {
                for j in 0..c {
                    assert_eq!(tt.bits(j * r + i), t.bits(i * c + j), "{elem:?} ({i}, {j})");
                }
            }
        }
        let s = transpose2d(&Tensor::splat(ElemType::F32, vec![2, 3], 1.5));
        assert!(s.is_splat() && s.shape() == [3, 2]);
    }
}
