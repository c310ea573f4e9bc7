//! Helpers of the import-time constants: the broadcast of a float fill (the exporter's
//! `nn.scatter`), the symbolic entry a dynamic dimension becomes, and integer `Mod`. The
//! operators themselves are computed in `const_index.rs` (structure) and `const_math.rs`
//! (element-wise).
//!
//! A dynamic dimension inside an integer constant is a symbolic entry ([`dyn_dim`]); arithmetic
//! on one is refused.

use super::const_index::{broadcast, broadcast_shape};
use super::values::Val;
use super::R;
use crate::ir::Tensor;

/// `t` broadcast (NumPy rules, both ways, as Expand does) against the shape `target`,
/// bit-exactly, in a new buffer.
pub(super) fn broadcast_const(t: &Tensor, target: &[i64]) -> R<Tensor> {
    let target = target
        .iter()
        .map(|&d| {
            u64::try_from(d)
                .map_err(|_| format!("shape {target:?} has a negative or dynamic dimension"))
        })
        .collect::<R<Vec<_>>>()?;
    let shape = broadcast_shape(t.shape(), &target)?;
    match broadcast(&Val::Float(t.clone()), &shape)? {
        Val::Float(b) => Ok(b),
        _ => unreachable!("broadcasting keeps the kind"),
    }
}

/// A dynamic dimension inside an integer constant (what `Shape` gives for a `?`): a negative
/// value no ONNX shape uses, holding the IR value and axis it came from, so that a Reshape can
/// tell `x.view(x.size(0), -1)` (a copy of its own dynamic dim) from anything else.
pub(super) mod dyn_dim {
    use crate::ir::ValueId;
    use cranelift_entity::EntityRef;

    /// How an error about a value computed from a dynamic dimension ends.
    pub const DEPENDS: &str = "depends on a dynamic dimension; give it a size with --dim NAME=SIZE";

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

#[cfg(test)]
mod tests {
    use super::int_mod;

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
}
