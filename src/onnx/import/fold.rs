//! Computation on import-time constants: the integer arithmetic, slicing and broadcasting of
//! exporters' shape plumbing, and float constants folded where NNIR has no op (a division of
//! two constants, a square root), each computed exactly as the runtime would.
//!
//! A dynamic dimension inside an integer constant is a symbolic entry ([`dyn_dim`]); arithmetic
//! on one is refused.

use super::initializers::num_elements;
use super::values::Val;
use super::R;
use crate::ir::Tensor;

/// `t` broadcast (NumPy rules) against the shape `target`, bit-exactly, in a new buffer.
pub(super) fn broadcast_const(t: &Tensor, target: &[i64]) -> R<Tensor> {
    let rank = t.shape().len().max(target.len());
    let pad = |s: Vec<i64>| -> Vec<i64> {
        let mut v = vec![1; rank - s.len()];
        v.extend(s);
        v
    };
    let src = pad(t.shape().iter().map(|&d| d as i64).collect());
    let tgt = pad(target.to_vec());
    let mut shape = Vec::with_capacity(rank);
    for (&a, &b) in src.iter().zip(&tgt) {
        shape.push(match (a, b) {
            (a, b) if a == b || b == 1 => a,
            (1, b) if b >= 0 => b,
            _ => {
                return Err(format!(
                    "shape {:?} does not broadcast to {target:?}",
                    t.shape()
                ))
            }
        } as u64);
    }
    let count = num_elements(&shape)
        .filter(|&n| n <= crate::ir::types::MAX_ELEMENTS)
        .ok_or("the expanded tensor is too large")?;
    let mut bits = Vec::with_capacity(count as usize);
    let mut idx = vec![0u64; rank];
    for _ in 0..count {
        let mut src_i = 0u64;
        for k in 0..rank {
            let d = src[k] as u64;
            src_i = src_i * d + if d == 1 { 0 } else { idx[k] };
        }
        bits.push(t.bits(src_i as usize));
        for k in (0..rank).rev() {
            idx[k] += 1;
            if idx[k] < shape[k] {
                break;
            }
            idx[k] = 0;
        }
    }
    Ok(Tensor::from_bits(t.elem(), shape, bits))
}

/// A dynamic dimension inside an integer constant (what `Shape` gives for a `?`): a negative
/// value no ONNX shape uses, holding the IR value and axis it came from, so that a Reshape can
/// tell `x.view(x.size(0), -1)` (a copy of its own dynamic dim) from anything else.
pub(super) mod dyn_dim {
    use crate::ir::ValueId;
    use cranelift_entity::EntityRef;

    /// Top bit set, bits 56..63 clear: disjoint from -1 and every small negative number.
    const TAG: i64 = i64::MIN;
    const MARK: i64 = 0x7F00_0000_0000_0000;

    pub fn encode(v: ValueId, axis: usize) -> i64 {
        TAG | ((v.index() as i64) << 8) | axis as i64
    }

    pub fn decode(x: i64) -> Option<(ValueId, usize)> {
        (x < 0 && x & MARK == 0).then(|| {
            (
                ValueId::new(((x & !TAG) >> 8) as usize),
                (x & 0xFF) as usize,
            )
        })
    }
}

/// Element-wise arithmetic `f` on integer constants (the shape arithmetic of exporters).
pub(super) fn fold_int_binary(
    l: (Vec<u64>, Vec<i64>),
    r: (Vec<u64>, Vec<i64>),
    f: impl Fn(i64, i64) -> R<i64>,
) -> R<Val> {
    let (shape, n) = if l.1.len() >= r.1.len() {
        (l.0.clone(), l.1.len())
    } else {
        (r.0.clone(), r.1.len())
    };
    let pick = |d: &Vec<i64>, i: usize| -> R<i64> {
        match d.len() {
            1 => Ok(d[0]),
            k if k == n => Ok(d[i]),
            _ => Err("integer operands must have the same length or one element".to_string()),
        }
    };
    let mut data = Vec::with_capacity(n);
    for i in 0..n {
        let (x, y) = (pick(&l.1, i)?, pick(&r.1, i)?);
        if dyn_dim::decode(x).is_some() || dyn_dim::decode(y).is_some() {
            return Err("arithmetic on a dynamic dimension is not supported".into());
        }
        data.push(f(x, y)?);
    }
    Ok(Val::Int { shape, data })
}

/// ONNX integer `Mod`: the remainder takes the divisor's sign (Python's `%`), or the
/// dividend's with `fmod` (C's `fmod`, Rust's `%`).
pub(super) fn int_mod(x: i64, y: i64, fmod: bool) -> R<i64> {
    if y == 0 {
        return Err("integer division by zero".into());
    }
    let r = x.wrapping_rem(y);
    Ok(if !fmod && r != 0 && (r < 0) != (y < 0) {
        r + y
    } else {
        r
    })
}

/// `data[start:end:step]` with ONNX Slice's rules: negative bounds count from the end, then
/// are clamped to the data (to [0, len] going forwards, to [-1, len - 1] going backwards).
pub(super) fn slice_1d(data: &[i64], start: i64, end: i64, step: i64) -> R<Vec<i64>> {
    if step == 0 {
        return Err("a slice step of 0".into());
    }
    if data.is_empty() {
        return Ok(Vec::new());
    }
    let len = data.len() as i64;
    let from_end = |i: i64| if i < 0 { i.saturating_add(len) } else { i };
    let (start, end) = if step > 0 {
        (from_end(start).clamp(0, len), from_end(end).clamp(0, len))
    } else {
        (
            from_end(start).clamp(0, len - 1),
            from_end(end).clamp(-1, len - 1),
        )
    };
    let mut out = Vec::new();
    let mut i = start;
    while (step > 0 && i < end) || (step < 0 && i > end) {
        out.push(data[i as usize]);
        i += step;
    }
    Ok(out)
}

/// Element-wise `f` on two float constants of one element type, NumPy-broadcast. Computing in
/// f32 and rounding once to f16/bf16 is correctly rounded for +, -, ×, ÷ and √ (f32 carries
/// more than twice their precision plus two bits), so the result is what the runtime computes.
pub(super) fn fold_float_binary(l: &Tensor, r: &Tensor, f: impl Fn(f32, f32) -> f32) -> R<Tensor> {
    if l.elem() != r.elem() {
        return Err("the constants have different element types".into());
    }
    let dims = |t: &Tensor| t.shape().iter().map(|&d| d as i64).collect::<Vec<_>>();
    let l = broadcast_const(l, &dims(r))?;
    let r = broadcast_const(r, &dims(&l))?;
    let values: Vec<f32> = l
        .to_f32_vec()
        .into_iter()
        .zip(r.to_f32_vec())
        .map(|(x, y)| f(x, y))
        .collect();
    Ok(Tensor::from_f32(l.elem(), l.shape().to_vec(), &values))
}

#[cfg(test)]
mod tests {
    use super::{int_mod, slice_1d};

    #[test]
    fn int_mod_takes_the_divisors_sign_unless_fmod() {
        let cases = [
            (7, 3, 1, 1),
            (-7, 3, 2, -1),
            (7, -3, -2, 1),
            (-7, -3, -1, -1),
            (6, 3, 0, 0),
        ];
        for (x, y, python, c) in cases {
            assert_eq!(int_mod(x, y, false), Ok(python), "{x} mod {y}");
            assert_eq!(int_mod(x, y, true), Ok(c), "fmod({x}, {y})");
        }
        assert_eq!(int_mod(i64::MIN, -1, false), Ok(0));
        assert!(int_mod(1, 0, false).is_err());
    }

    #[test]
    fn slice_1d_follows_onnx_clamping() {
        let d = [10, 20, 30, 40];
        assert_eq!(slice_1d(&d, -1, i64::MAX, 1), Ok(vec![40]));
        assert_eq!(slice_1d(&d, 0, 2, 1), Ok(vec![10, 20]));
        assert_eq!(slice_1d(&d, i64::MIN, -2, 1), Ok(vec![10, 20]));
        assert_eq!(slice_1d(&d, 5, 9, 1), Ok(vec![]));
        assert_eq!(slice_1d(&d, -1, i64::MIN, -1), Ok(vec![40, 30, 20, 10]));
        assert_eq!(slice_1d(&d, 9, 0, -2), Ok(vec![40, 20]));
        assert_eq!(slice_1d(&[], -1, 0, -1), Ok(vec![]));
        assert!(slice_1d(&d, 0, 1, 0).is_err());
    }
}
