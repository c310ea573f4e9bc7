//! Element-wise and scan operators on import-time constants, each as the ONNX specification
//! defines it: integer arithmetic, Equal and the orderings, Not/And/Or/Xor, Where, Max/Min,
//! CumSum, Range, ConstantOfShape's fill and the float functions Cos and Sin. Operands broadcast
//! as NumPy does ([`broadcast`]); comparisons and logic give booleans, kept as integers 0 and 1.
//!
//! Float results are computed in f32 and rounded once to the constant's element type; for the
//! operators that select or compare (Max, Min, Where, Equal, ...) that is exact. An integer entry
//! that stands for a dynamic dimension ([`dyn_dim`]) cannot be computed with: the error says to
//! pin the dimension with `--dim`.

use super::const_index::{broadcast, broadcast_shape, const_shape, count};
use super::fold::dyn_dim;
use super::values::Val;
use super::R;
use crate::ir::{ElemType, Tensor};

/// What the error says when an integer constant holds a dynamic dimension.
const DYNAMIC: &str =
    "the value depends on a dynamic dimension; give it a size with --dim NAME=SIZE";

/// The integers of a constant, refusing dynamic-dimension entries.
fn ints(v: &Val) -> R<&[i64]> {
    match v {
        Val::Int { data, .. } if data.iter().any(|&x| dyn_dim::decode(x).is_some()) => {
            Err(DYNAMIC.into())
        }
        Val::Int { data, .. } => Ok(data),
        _ => Err("an integer or boolean constant is expected".into()),
    }
}

/// The operands broadcast to their common shape (which is returned too).
fn broadcast_all(vals: &[&Val]) -> R<(Vec<u64>, Vec<Val>)> {
    let mut shape = Vec::new();
    for v in vals {
        let s = const_shape(v).ok_or("the operands must be constants")?;
        shape = broadcast_shape(&shape, &s)?;
    }
    let out = vals
        .iter()
        .map(|v| broadcast(v, &shape))
        .collect::<R<Vec<_>>>()?;
    Ok((shape, out))
}

/// `f` on the integers of `l` and `r`, broadcast (integer Add, Sub, Mul, Mod, and the logic).
pub(super) fn int_binary(l: &Val, r: &Val, f: impl Fn(i64, i64) -> R<i64>) -> R<Val> {
    let (shape, v) = broadcast_all(&[l, r])?;
    let data = ints(&v[0])?
        .iter()
        .zip(ints(&v[1])?)
        .map(|(&x, &y)| f(x, y))
        .collect::<R<Vec<_>>>()?;
    Ok(Val::Int { shape, data })
}

/// `f` on the values of two float constants of one element type, broadcast. Computing in f32
/// and rounding once to f16/bf16 is correctly rounded for +, -, ×, ÷ and √ (f32 carries more
/// than twice their precision plus two bits), so the result is what the runtime computes.
pub(super) fn float_binary(l: &Val, r: &Val, f: impl Fn(f32, f32) -> f32) -> R<Val> {
    let (shape, v) = broadcast_all(&[l, r])?;
    let (Val::Float(a), Val::Float(b)) = (&v[0], &v[1]) else {
        return Err("float constants are expected".into());
    };
    if a.elem() != b.elem() {
        return Err("the constants have different element types".into());
    }
    let values: Vec<f32> = (a.to_f32_vec().into_iter())
        .zip(b.to_f32_vec())
        .map(|(x, y)| f(x, y))
        .collect();
    Ok(Val::Float(Tensor::from_f32(a.elem(), shape, &values)))
}

/// The comparisons, giving booleans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Compare {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

impl Compare {
    pub(super) fn from_op(op: &str) -> Option<Compare> {
        Some(match op {
            "Equal" => Compare::Equal,
            "Less" => Compare::Less,
            "LessOrEqual" => Compare::LessOrEqual,
            "Greater" => Compare::Greater,
            "GreaterOrEqual" => Compare::GreaterOrEqual,
            _ => return None,
        })
    }

    fn holds(self, o: Option<std::cmp::Ordering>) -> bool {
        use std::cmp::Ordering::*;
        // A NaN operand (`None`) makes every comparison false, as IEEE 754 says.
        matches!(
            (self, o),
            (Compare::Equal, Some(Equal))
                | (Compare::Less, Some(Less))
                | (Compare::LessOrEqual, Some(Less | Equal))
                | (Compare::Greater, Some(Greater))
                | (Compare::GreaterOrEqual, Some(Greater | Equal))
        )
    }
}

/// A comparison of two integer (or boolean) or two float constants, broadcast.
pub(super) fn compare(op: Compare, l: &Val, r: &Val) -> R<Val> {
    if let (Val::Float(_), Val::Float(_)) = (l, r) {
        let (shape, v) = broadcast_all(&[l, r])?;
        let (Val::Float(a), Val::Float(b)) = (&v[0], &v[1]) else {
            unreachable!("broadcasting keeps the kind")
        };
        let data = (a.to_f32_vec().iter())
            .zip(b.to_f32_vec())
            .map(|(x, y)| op.holds(x.partial_cmp(&y)) as i64)
            .collect();
        return Ok(Val::Int { shape, data });
    }
    int_binary(l, r, |x, y| Ok(op.holds(Some(x.cmp(&y))) as i64))
}

/// The boolean operators of two operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Logic {
    And,
    Or,
    Xor,
}

/// `And`, `Or`, `Xor` of boolean constants (non-zero is true), broadcast.
pub(super) fn logic(op: Logic, l: &Val, r: &Val) -> R<Val> {
    int_binary(l, r, |x, y| {
        let (x, y) = (x != 0, y != 0);
        Ok(match op {
            Logic::And => x && y,
            Logic::Or => x || y,
            Logic::Xor => x != y,
        } as i64)
    })
}

/// `Not` of a boolean constant.
pub(super) fn not(v: &Val) -> R<Val> {
    let shape = const_shape(v).ok_or("a constant is expected")?;
    let data = ints(v)?.iter().map(|&x| (x == 0) as i64).collect();
    Ok(Val::Int { shape, data })
}

/// `Where(c, x, y)`: `x` where `c` is true, else `y`, all three broadcast; `x` and `y` are both
/// integer or both float constants of one element type.
pub(super) fn where_select(c: &Val, x: &Val, y: &Val) -> R<Val> {
    let (shape, v) = broadcast_all(&[c, x, y])?;
    let cond = ints(&v[0])?;
    Ok(match (&v[1], &v[2]) {
        (Val::Int { .. }, Val::Int { .. }) => {
            let (a, b) = (ints(&v[1])?, ints(&v[2])?);
            let data = (0..cond.len())
                .map(|i| if cond[i] != 0 { a[i] } else { b[i] })
                .collect();
            Val::Int { shape, data }
        }
        (Val::Float(a), Val::Float(b)) if a.elem() == b.elem() => {
            let bits = (0..cond.len()).map(|i| if cond[i] != 0 { a.bits(i) } else { b.bits(i) });
            Val::Float(Tensor::from_bits(a.elem(), shape, bits))
        }
        _ => return Err("the two branches have different element types".into()),
    })
}

/// `Max` (or `Min`) of one or more constants of one kind, broadcast; a NaN wins, as in NumPy.
pub(super) fn extremum(vals: &[Val], max: bool) -> R<Val> {
    let (first, rest) = vals.split_first().ok_or("Max and Min need an input")?;
    rest.iter().try_fold(first.clone(), |acc, v| {
        if let (Val::Float(_), Val::Float(_)) = (&acc, v) {
            float_binary(&acc, v, |x, y| {
                if x.is_nan() || y.is_nan() {
                    f32::NAN
                } else if (x > y) == max {
                    x
                } else {
                    y
                }
            })
        } else {
            int_binary(&acc, v, |x, y| Ok(if max { x.max(y) } else { x.min(y) }))
        }
    })
}

/// ONNX CumSum along `axis` (normalised): `exclusive` leaves out each element itself,
/// `reverse` sums from the end. Integers wrap as the runtime's do; f32 sums in order.
pub(super) fn cumsum(v: &Val, axis: usize, exclusive: bool, reverse: bool) -> R<Val> {
    let shape = const_shape(v).ok_or("a constant is expected")?;
    let len = shape[axis] as usize;
    let inner: usize = shape[axis + 1..].iter().map(|&d| d as usize).product();
    let outer: usize = shape[..axis].iter().map(|&d| d as usize).product();
    // The flat index of element `k` along the axis, in summation order, of line (o, i).
    let at = |o: usize, i: usize, k: usize| {
        let k = if reverse { len - 1 - k } else { k };
        (o * len + k) * inner + i
    };
    fn scan<T: Copy>(
        x: &[T],
        zero: T,
        add: impl Fn(T, T) -> T,
        lines: &[Vec<usize>],
        exclusive: bool,
    ) -> Vec<T> {
        let mut out = vec![zero; x.len()];
        for line in lines {
            let mut acc = zero;
            for &j in line {
                let next = add(acc, x[j]);
                out[j] = if exclusive { acc } else { next };
                acc = next;
            }
        }
        out
    }
    let lines: Vec<Vec<usize>> = (0..outer)
        .flat_map(|o| (0..inner).map(move |i| (o, i)))
        .map(|(o, i)| (0..len).map(|k| at(o, i, k)).collect())
        .collect();
    Ok(match v {
        Val::Int { .. } => Val::Int {
            data: scan(ints(v)?, 0, i64::wrapping_add, &lines, exclusive),
            shape,
        },
        Val::Float(t) if t.elem() == ElemType::F32 => {
            let sums = scan(&t.to_f32_vec(), 0.0, |a, b| a + b, &lines, exclusive);
            Val::Float(Tensor::from_f32(ElemType::F32, shape, &sums))
        }
        _ => return Err("only integer and f32 constants can be summed".into()),
    })
}

/// ONNX Range of scalar constants: `max(ceil((limit - start) / delta), 0)` elements, element
/// `i` being `start + i * delta`.
pub(super) fn range(start: &Val, limit: &Val, delta: &Val) -> R<Val> {
    let scalar = |v: &Val| match const_shape(v).as_deref() {
        Some([]) | Some([1]) => Ok(()),
        _ => Err("start, limit and delta must be scalar constants".to_string()),
    };
    scalar(start)?;
    scalar(limit)?;
    scalar(delta)?;
    if let (Val::Float(s), Val::Float(l), Val::Float(d)) = (start, limit, delta) {
        let (s, l, d) = (s.get(0), l.get(0), d.get(0));
        if d == 0.0 || !(s.is_finite() && l.is_finite() && d.is_finite()) {
            return Err("a float range needs a finite non-zero delta and finite bounds".into());
        }
        let n = ((l - s) / d).ceil().max(0.0) as u64;
        count(&[n])?;
        let values: Vec<f32> = (0..n).map(|i| s + i as f32 * d).collect();
        let Val::Float(t) = start else { unreachable!() };
        return Ok(Val::Float(Tensor::from_f32(t.elem(), vec![n], &values)));
    }
    let (s, l, d) = (ints(start)?[0], ints(limit)?[0], ints(delta)?[0]);
    if d == 0 {
        return Err("a range with delta 0".into());
    }
    let span = l as i128 - s as i128;
    let n = (span / d as i128 + (span % d as i128 != 0 && (span < 0) == (d < 0)) as i128).max(0);
    count(&[u64::try_from(n).map_err(|_| "the range is too long")?])?;
    let data = (0..n as i64).map(|i| s + i * d).collect::<Vec<_>>();
    Ok(Val::Int {
        shape: vec![data.len() as u64],
        data,
    })
}

/// ConstantOfShape: `shape` (the input's integers) filled with the one element of `value`.
pub(super) fn constant_of_shape(shape: &Val, value: &Val) -> R<Val> {
    let dims = ints(shape)?
        .iter()
        .map(|&d| u64::try_from(d).map_err(|_| format!("dimension {d} is negative")))
        .collect::<R<Vec<u64>>>()?;
    count(&dims)?;
    if const_shape(value).is_none_or(|s| s.iter().product::<u64>() != 1) {
        return Err("the value must have exactly one element".into());
    }
    broadcast(value, &dims).and_then(|v| match v {
        // `broadcast` keeps the value's rank when it is larger than the shape's: relabel.
        Val::Int { data, .. } => Ok(Val::Int { shape: dims, data }),
        Val::Float(t) => t
            .reshaped(dims)
            .map(Val::Float)
            .ok_or_else(|| "the element count changes".to_string()),
        Val::Ir(_) => unreachable!("broadcast gives constants"),
    })
}

/// `f` on each value of a float constant (Cos, Sin), rounded once to its element type.
pub(super) fn float_unary(v: &Val, f: impl Fn(f32) -> f32) -> R<Val> {
    let Val::Float(t) = v else {
        return Err("a float constant is expected".into());
    };
    let values: Vec<f32> = t.to_f32_vec().into_iter().map(f).collect();
    Ok(Val::Float(Tensor::from_f32(
        t.elem(),
        t.shape().to_vec(),
        &values,
    )))
}
