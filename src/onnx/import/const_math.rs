//! Element-wise and scan operators on import-time constants, each as the ONNX specification
//! defines it: integer arithmetic, Equal and the orderings, Not/And/Or/Xor, Where, Max/Min,
//! CumSum, Range, ConstantOfShape's fill, Cast and the float functions Cos and Sin. Operands broadcast
//! as NumPy does ([`broadcast`]); comparisons and logic give booleans, kept as integers 0 and 1.
//!
//! Float results are computed in f32 and rounded once to the constant's element type; for the
//! operators that select or compare (Max, Min, Where, Equal, ...) that is exact. An integer entry
//! that stands for a dynamic dimension ([`dyn_dim`]) cannot be computed with: the error says to
//! pin the dimension with `--dim`.

use super::const_index::{broadcast, broadcast_shape, const_shape, count, take};
use super::fold::dyn_dim;
use super::initializers::elem_of;
use super::values::Val;
use super::R;
use crate::ir::{ElemType, Tensor};
use crate::onnx::proto::data_type;

/// The integers of a constant, refusing dynamic-dimension entries.
fn ints(v: &Val) -> R<&[i64]> {
    match v {
        Val::Int { data, .. } if data.iter().any(|&x| dyn_dim::decode(x).is_some()) => {
            Err(format!("the value {}", dyn_dim::DEPENDS))
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
        // The count divides in f64 (as onnxruntime does), so that a quotient just above an
        // integer is not rounded down to it in f32.
        let n = (f64::from(l - s) / f64::from(d)).ceil().max(0.0) as u64;
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
    let n = count(&dims)?;
    Ok(take(value, dims, &vec![0; n]))
}

/// ONNX Cast of a constant to data type `to`: integers narrow by wrapping and floats become
/// integers by truncation toward zero (as the runtime's C++ casts do; NaN and infinity, which
/// have no integer, are refused); booleans are 0 and 1; floats convert through f32, which holds
/// every f16/bf16 value and rounds once to the narrower types. A cast to INT64 keeps the
/// symbolic entries of dynamic dimensions (exporters cast `Shape` results).
pub(super) fn cast(v: &Val, to: i32) -> R<Val> {
    let unsupported = || format!("casting to {} is not supported", data_type::name(to));
    let shape = const_shape(v).ok_or("a constant is expected")?;
    if let (Val::Int { .. }, data_type::INT64) = (v, to) {
        return Ok(v.clone());
    }
    let int = |data: Vec<i64>| Val::Int {
        shape: shape.clone(),
        data,
    };
    Ok(match v {
        Val::Int { .. } => {
            let x = ints(v)?;
            match to {
                data_type::INT32 => int(x.iter().map(|&x| x as i32 as i64).collect()),
                data_type::BOOL => int(x.iter().map(|&x| (x != 0) as i64).collect()),
                dt => {
                    let elem = elem_of(dt).ok_or_else(unsupported)?;
                    let f: Vec<f32> = x.iter().map(|&x| x as f32).collect();
                    Val::Float(Tensor::from_f32(elem, shape, &f))
                }
            }
        }
        Val::Float(t) => {
            let values = t.to_f32_vec();
            let truncated = |f: fn(f32) -> i64| -> R<Val> {
                if values.iter().any(|v| !v.is_finite()) {
                    return Err("casting a NaN or infinite float to an integer".into());
                }
                Ok(int(values.iter().map(|&v| f(v)).collect()))
            };
            match to {
                data_type::INT64 => truncated(|v| v as i64)?,
                data_type::INT32 => truncated(|v| v as i32 as i64)?,
                data_type::BOOL => int(values.iter().map(|&v| (v != 0.0) as i64).collect()),
                dt => {
                    let elem = elem_of(dt).ok_or_else(unsupported)?;
                    Val::Float(Tensor::from_f32(elem, shape, &values))
                }
            }
        }
        Val::Ir(_) => unreachable!("const_shape is None for activations"),
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

/// Each operator on the examples of the ONNX specification's operator page.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::import::const_index::testing::{floats, flt, int, ints};

    #[test]
    fn range_of_integers_and_floats() {
        let r = range(&int(&[], &[3]), &int(&[], &[9]), &int(&[], &[3])).unwrap();
        assert_eq!(ints(&r), (vec![2], vec![3, 6]));
        let r = range(&int(&[], &[10]), &int(&[], &[4]), &int(&[], &[-2])).unwrap();
        assert_eq!(ints(&r).1, [10, 8, 6]);
        let r = range(&int(&[], &[0]), &int(&[], &[-3]), &int(&[], &[1])).unwrap();
        assert_eq!(ints(&r), (vec![0], vec![]));
        let r = range(&flt(&[], &[0.0]), &flt(&[], &[1.0]), &flt(&[], &[0.25])).unwrap();
        assert_eq!(floats(&r).1, [0.0, 0.25, 0.5, 0.75]);
        assert!(range(&int(&[], &[0]), &int(&[], &[3]), &int(&[], &[0])).is_err());
        let dynamic = dyn_dim::encode(crate::ir::ValueId::from_u32(0), 1);
        let e = range(&int(&[], &[0]), &int(&[], &[dynamic]), &int(&[], &[1])).unwrap_err();
        assert!(e.contains("--dim"), "{e}");
    }

    #[test]
    fn comparisons_broadcast_and_give_booleans() {
        let (a, b) = (int(&[3], &[1, 2, 3]), int(&[3], &[3, 2, 1]));
        let cases = [
            (Compare::Equal, [0, 1, 0]),
            (Compare::Less, [1, 0, 0]),
            (Compare::LessOrEqual, [1, 1, 0]),
            (Compare::Greater, [0, 0, 1]),
            (Compare::GreaterOrEqual, [0, 1, 1]),
        ];
        for (op, want) in cases {
            assert_eq!(ints(&compare(op, &a, &b).unwrap()).1, want, "{op:?}");
        }
        let col = int(&[2, 1], &[1, 2]);
        let grid = compare(Compare::LessOrEqual, &col, &a).unwrap();
        assert_eq!(ints(&grid), (vec![2, 3], vec![1, 1, 1, 0, 1, 1]));
        let f = compare(
            Compare::Equal,
            &flt(&[2], &[f32::NAN, 1.0]),
            &flt(&[], &[1.0]),
        );
        assert_eq!(ints(&f.unwrap()).1, [0, 1]);
    }

    #[test]
    fn not_and_or_xor_truth_tables() {
        let (a, b) = (int(&[4], &[0, 0, 1, 1]), int(&[4], &[0, 1, 0, 1]));
        assert_eq!(ints(&not(&a).unwrap()).1, [1, 1, 0, 0]);
        assert_eq!(ints(&logic(Logic::And, &a, &b).unwrap()).1, [0, 0, 0, 1]);
        assert_eq!(ints(&logic(Logic::Or, &a, &b).unwrap()).1, [0, 1, 1, 1]);
        assert_eq!(ints(&logic(Logic::Xor, &a, &b).unwrap()).1, [0, 1, 1, 0]);
        // The exporter's `new_ones` scalar True and-ed with a grid.
        let and = logic(Logic::And, &int(&[], &[1]), &int(&[2, 2], &[1, 0, 0, 1])).unwrap();
        assert_eq!(ints(&and), (vec![2, 2], vec![1, 0, 0, 1]));
    }

    #[test]
    fn where_selects_bitwise_and_broadcasts() {
        let c = int(&[2, 2], &[1, 0, 1, 1]);
        let out = where_select(
            &c,
            &int(&[2, 2], &[1, 2, 3, 4]),
            &int(&[2, 2], &[9, 8, 7, 6]),
        );
        assert_eq!(ints(&out.unwrap()).1, [1, 8, 3, 4]);
        // The causal mask: Where(mask, 0, lowest f32).
        let mask = where_select(&c, &flt(&[], &[0.0]), &flt(&[], &[f32::MIN])).unwrap();
        assert_eq!(floats(&mask), (vec![2, 2], vec![0.0, f32::MIN, 0.0, 0.0]));
        assert!(where_select(&c, &int(&[], &[0]), &flt(&[], &[0.0])).is_err());
    }

    #[test]
    fn max_and_min_of_several() {
        let ins = [
            int(&[3], &[3, 2, 1]),
            int(&[3], &[1, 4, 4]),
            int(&[3], &[2, 5, 3]),
        ];
        assert_eq!(ints(&extremum(&ins, true).unwrap()).1, [3, 5, 4]);
        assert_eq!(ints(&extremum(&ins, false).unwrap()).1, [1, 2, 1]);
        let f = extremum(&[flt(&[2], &[1.0, f32::NAN]), flt(&[], &[2.0])], true).unwrap();
        let v = floats(&f).1;
        assert_eq!(v[0], 2.0);
        assert!(v[1].is_nan());
    }

    #[test]
    fn cumsum_exclusive_reverse_and_axes() {
        let x = int(&[5], &[1, 2, 3, 4, 5]);
        assert_eq!(
            ints(&cumsum(&x, 0, false, false).unwrap()).1,
            [1, 3, 6, 10, 15]
        );
        assert_eq!(
            ints(&cumsum(&x, 0, true, false).unwrap()).1,
            [0, 1, 3, 6, 10]
        );
        assert_eq!(
            ints(&cumsum(&x, 0, false, true).unwrap()).1,
            [15, 14, 12, 9, 5]
        );
        assert_eq!(
            ints(&cumsum(&x, 0, true, true).unwrap()).1,
            [14, 12, 9, 5, 0]
        );
        let m = flt(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(
            floats(&cumsum(&m, 0, false, false).unwrap()).1,
            [1.0, 2.0, 3.0, 5.0, 7.0, 9.0]
        );
        assert_eq!(
            floats(&cumsum(&m, 1, false, false).unwrap()).1,
            [1.0, 3.0, 6.0, 4.0, 9.0, 15.0]
        );
    }

    #[test]
    fn constant_of_shape_fills() {
        let out = constant_of_shape(&int(&[2], &[2, 3]), &int(&[1], &[7])).unwrap();
        assert_eq!(ints(&out), (vec![2, 3], vec![7; 6]));
        let scalar = constant_of_shape(&int(&[0], &[]), &flt(&[1], &[0.5])).unwrap();
        assert_eq!(floats(&scalar), (vec![], vec![0.5]));
        assert!(constant_of_shape(&int(&[1], &[-1]), &int(&[1], &[0])).is_err());
    }

    #[test]
    fn integer_and_float_arithmetic_broadcast() {
        let s = int_binary(&int(&[2, 1], &[10, 20]), &int(&[3], &[1, 2, 3]), |a, b| {
            Ok(a - b)
        });
        assert_eq!(ints(&s.unwrap()), (vec![2, 3], vec![9, 8, 7, 19, 18, 17]));
        let p = float_binary(
            &flt(&[2, 1], &[0.0, 1.0]),
            &flt(&[2], &[0.5, 0.25]),
            |a, b| a * b,
        );
        assert_eq!(floats(&p.unwrap()), (vec![2, 2], vec![0.0, 0.0, 0.5, 0.25]));
    }

    #[test]
    fn cast_wraps_truncates_and_rounds() {
        let big = int(&[3], &[1 << 32 | 5, -1, 0]);
        assert_eq!(ints(&cast(&big, data_type::INT32).unwrap()).1, [5, -1, 0]);
        assert_eq!(ints(&cast(&big, data_type::BOOL).unwrap()).1, [1, 1, 0]);
        let f = flt(&[4], &[2.7, -2.7, 0.0, -0.5]);
        assert_eq!(ints(&cast(&f, data_type::INT64).unwrap()).1, [2, -2, 0, 0]);
        assert_eq!(ints(&cast(&f, data_type::BOOL).unwrap()).1, [1, 1, 0, 1]);
        assert!(cast(&flt(&[1], &[f32::NAN]), data_type::INT64).is_err());
        let h = cast(&flt(&[1], &[1.0 + 1.0 / 4096.0]), data_type::FLOAT16).unwrap();
        assert_eq!(floats(&h).1, [1.0]);
        assert_eq!(
            floats(&cast(&int(&[2], &[3, -4]), data_type::FLOAT).unwrap()).1,
            [3.0, -4.0]
        );
        // A dynamic dimension passes a cast to INT64 (a `Shape` result) and nothing else.
        let dynamic = int(&[1], &[dyn_dim::encode(crate::ir::ValueId::from_u32(0), 0)]);
        assert!(cast(&dynamic, data_type::INT64).is_ok());
        assert!(cast(&dynamic, data_type::FLOAT).is_err());
        assert!(cast(&f, data_type::DOUBLE).is_err());
    }

    #[test]
    fn cos_and_sin_of_floats() {
        let x = flt(&[2], &[0.0, 1.0]);
        assert_eq!(
            floats(&float_unary(&x, f32::cos).unwrap()).1,
            [1.0, 1.0f32.cos()]
        );
        assert_eq!(
            floats(&float_unary(&x, f32::sin).unwrap()).1,
            [0.0, 1.0f32.sin()]
        );
        assert!(float_unary(&int(&[1], &[0]), f32::cos).is_err());
    }
}
