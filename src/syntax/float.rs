//! Number and string spelling for the printer: tensor elements, op attributes and generic
//! (module) attributes.
//!
//! Floats print in the shortest decimal form that reads back to the same bits (Rust's `{:?}`
//! algorithm), always with a `.` or exponent so they lex as floats. Values with no exact decimal
//! form that survives a round trip — NaN (any payload) and ±infinity — print as the hexadecimal
//! bit pattern, as MLIR does (`0x7FC00000`).

use crate::ir::ElemType;

/// Spells the bit pattern of one element of type `elem`.
pub fn format_bits(elem: ElemType, bits: u32) -> String {
    let v = crate::ir::tensor::bits_to_f32(elem, bits);
    if v.is_finite() {
        match elem {
            ElemType::F32 => format_f32(v),
            ElemType::F16 | ElemType::BF16 => shortest_16(elem, bits, v),
            ElemType::I64 => unreachable!("invariant: tensors hold floating-point elements"),
        }
    } else {
        let width = elem.size() * 2;
        format!("0x{bits:0width$X}")
    }
}

/// Shortest decimal that the reader (decimal → f64 → 16-bit, round to nearest) turns back into
/// the same 16-bit value: the fewest significant digits that survive the round trip.
fn shortest_16(elem: ElemType, bits: u32, v: f32) -> String {
    for digits in 1..=9 {
        let s = format!("{v:.*e}", digits - 1);
        let back: f64 = s.parse().expect("Rust formats parseable floats");
        let back_bits = match elem {
            ElemType::F16 => half::f16::from_f64(back).to_bits(),
            _ => half::bf16::from_f64(back).to_bits(),
        };
        if back_bits as u32 == bits {
            // Prefer the plain spelling when it is the same number (`0.5`, not `5e-1`).
            let plain = format!("{:?}", s.parse::<f32>().expect("parseable"));
            let plain_back: f64 = plain.parse().expect("parseable");
            return if plain_back == back { plain } else { s };
        }
    }
    format_f32(v)
}

/// Shortest round-tripping spelling of a finite f32, or its hex bit pattern if not finite.
pub fn format_f32(v: f32) -> String {
    if v.is_finite() {
        let s = format!("{v:?}");
        debug_assert!(s.contains('.') || s.contains('e'));
        s
    } else {
        format!("0x{:08X}", v.to_bits())
    }
}

/// Shortest round-tripping spelling of an f64 (module attributes).
pub fn format_f64(v: f64) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        format!("0x{:016X}", v.to_bits())
    }
}

/// Escapes a string for a `"..."` literal.
pub fn escape_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_round_trip_bit_exactly() {
        for v in [
            0.0f32,
            -0.0,
            1.0,
            0.1,
            1e-45,
            -3.4028235e38,
            1.175_494_4e-38,
            123456.79,
        ] {
            let s = format_f32(v);
            assert_eq!(s.parse::<f32>().unwrap().to_bits(), v.to_bits(), "{s}");
        }
        assert_eq!(format_f32(f32::NAN), "0x7FC00000");
        assert_eq!(format_f32(f32::NEG_INFINITY), "0xFF800000");
        assert_eq!(format_bits(ElemType::F16, 0x7E00), "0x7E00");
    }
}
