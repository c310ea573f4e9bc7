//! `exp`, `tanh` and `erf` as polynomial approximations built from `arith` and `math.absf`/
//! `math.copysign` ops only, so that LLVM vectorizes the loops that use them at the host's
//! vector width. `math.exp` became a scalar `expf` call per element and `math.tanh`/`math.erf`
//! calls to `tanhf`/`erff` (`convert-math-to-libm`), which kept every loop around them scalar
//! (softmax, sigmoid, SiLU, GELU, tanh). MLIR's own polynomial-approximation patterns are C++
//! only (no pass, no C API), so the lowering emits the formulas itself.
//!
//! Error bounds, checked against f64 over a sweep by `lower::tests::approx_*`:
//! * `exp`: Cephes' `expf` (range reduction `x = n·ln 2 + r`, `|r| ≤ ln 2 / 2`, a degree-6
//!   polynomial, `2^n` assembled in the exponent bits): relative error below 5e-7 (checked
//!   through sigmoid, which carries it) for `x ∈ [-86, 88.72]`; `+inf` above `ln(f32::MAX)`, 0
//!   below -86 (an absolute error under 5e-38, the true value being below `exp(-86)`; `2^n`
//!   needs a normal exponent).
//! * `tanh`: `x·(1 − x²/3 + 2x⁴/15 − 17x⁶/315)` for `|x| < 0.0625` (truncation below 2e-12
//!   relative), else `(1 − e)/(1 + e)` with `e = exp(−2|x|)`, sign restored: absolute error
//!   below 3e-7.
//! * `erf`: Abramowitz and Stegun 7.1.26, `1 − t·P(t)·exp(−x²)` with `t = 1/(1 + 0.3275911|x|)`,
//!   sign restored: absolute error below 3e-7 (1.5e-7 for the formula, the rest f32 rounding).
//!
//! NaN propagates through each (the clamps are `maximumf`/`minimumf`, the overflow tests
//! ordered comparisons that are false for NaN), as in the interpreter; `±inf` give the limits.

use super::mlir_ops::{id, BResult, Emitter};
use melior::ir::attribute::IntegerAttribute;
use melior::ir::r#type::IntegerType;
use melior::ir::{Block, Type, Value};

/// `arith.cmpf` predicates (`ArithBase.td`): ordered greater-than and less-than.
const CMPF_OGT: i64 = 2;
const CMPF_OLT: i64 = 4;

/// `ln(f32::MAX)`: above it `exp` overflows to `+inf`.
const EXP_HI: f32 = 88.722_83;
/// Below it `exp` is 0 here: `2^n` for `n = round(x / ln 2) ≥ −124` stays a normal number.
const EXP_LO: f32 = -86.0;
/// `1.5·2^23`: adding it rounds an f32 of magnitude below `2^22` to an integer, which the low
/// mantissa bits then hold (round to nearest, no `fptosi`, whose NaN result would be poison).
const ROUND_MAGIC: f32 = 12_582_912.0;

type V<'c, 'x> = Value<'c, 'x>;

fn i32_type<'c>(e: &Emitter<'c, '_, Block<'c>>) -> Type<'c> {
    IntegerType::new(e.cx, 32).into()
}

fn i32_const<'c, 'x>(e: &Emitter<'c, 'x, Block<'c>>, v: i32) -> BResult<V<'c, 'x>> {
    let t = i32_type(e);
    let a = IntegerAttribute::new(t, v as i64).into();
    e.op1("arith.constant", &[], t, &[(id(e.cx, "value"), a)], vec![])
}

fn bitcast<'c, 'x>(
    e: &Emitter<'c, 'x, Block<'c>>,
    x: V<'c, '_>,
    to: Type<'c>,
) -> BResult<V<'c, 'x>> {
    e.op1("arith.bitcast", &[x], to, &[], vec![])
}

fn bini<'c, 'x>(
    e: &Emitter<'c, 'x, Block<'c>>,
    name: &str,
    a: V<'c, '_>,
    b: V<'c, '_>,
) -> BResult<V<'c, 'x>> {
    e.op1(name, &[a, b], i32_type(e), &[], vec![])
}

/// `c[0] + x·(c[1] + x·(c[2] + ...))` by Horner's rule.
fn horner<'c, 'x>(e: &Emitter<'c, 'x, Block<'c>>, x: V<'c, '_>, c: &[f32]) -> BResult<V<'c, 'x>> {
    let (&last, rest) = c.split_last().expect("invariant: a non-empty polynomial");
    let mut acc = e.f32_const(last)?;
    for &k in rest.iter().rev() {
        let m = e.binf("arith.mulf", acc, x)?;
        let k = e.f32_const(k)?;
        acc = e.binf("arith.addf", m, k)?;
    }
    Ok(acc)
}

/// `exp(x)` (see the module docs for the bound).
pub(super) fn exp<'c, 'x>(e: &Emitter<'c, 'x, Block<'c>>, x: V<'c, '_>) -> BResult<V<'c, 'x>> {
    let hi = e.f32_const(EXP_HI)?;
    let lo = e.f32_const(EXP_LO)?;
    let xc = e.binf("arith.maximumf", x, lo)?;
    let xc = e.binf("arith.minimumf", xc, hi)?;
    // n = round(x / ln 2), as a float and in the low bits of `t`.
    let magic = e.f32_const(ROUND_MAGIC)?;
    let log2e = e.f32_const(std::f32::consts::LOG2_E)?;
    let t = e.binf("arith.mulf", xc, log2e)?;
    let t = e.binf("arith.addf", t, magic)?;
    let n = e.binf("arith.subf", t, magic)?;
    // r = x − n·ln 2 in two steps (Cody and Waite): ln 2 = C1 + C2, C1 exact in 9 bits.
    let c1 = e.f32_const(0.693_359_4)?;
    let c2 = e.f32_const(-2.121_944_4e-4)?;
    let r = e.binf("arith.mulf", n, c1)?;
    let r = e.binf("arith.subf", xc, r)?;
    let r2 = e.binf("arith.mulf", n, c2)?;
    let r = e.binf("arith.subf", r, r2)?;
    // e^r = 1 + r + r²·P(r).
    let p = horner(
        e,
        r,
        &[
            0.5,
            1.666_666_5e-1,
            4.166_579_6e-2,
            8.333_452e-3,
            1.398_2e-3,
            1.987_569_1e-4,
        ],
    )?;
    let rr = e.binf("arith.mulf", r, r)?;
    let p = e.binf("arith.mulf", p, rr)?;
    let p = e.binf("arith.addf", p, r)?;
    let one = e.f32_const(1.0)?;
    let p = e.binf("arith.addf", p, one)?;
    // 2^(n−1) from the exponent bits (n − 1 + 127 ≥ 2 for n ≥ −124), then ×2: 2^n itself
    // overflows the exponent at n = 128, just below `EXP_HI`.
    let i32t = i32_type(e);
    let ti = bitcast(e, t, i32t)?;
    let mi = bitcast(e, magic, i32t)?;
    let ni = bini(e, "arith.subi", ti, mi)?;
    let bias = i32_const(e, 126)?;
    let bits = bini(e, "arith.addi", ni, bias)?;
    let shift = i32_const(e, 23)?;
    let bits = bini(e, "arith.shli", bits, shift)?;
    let scale = bitcast(e, bits, Type::float32(e.cx))?;
    let y = e.binf("arith.mulf", p, scale)?;
    let two = e.f32_const(2.0)?;
    let y = e.binf("arith.mulf", y, two)?;
    let over = e.cmpf(CMPF_OGT, x, hi)?;
    let inf = e.f32_const(f32::INFINITY)?;
    let y = e.select(over, inf, y)?;
    let under = e.cmpf(CMPF_OLT, x, lo)?;
    let zero = e.f32_const(0.0)?;
    e.select(under, zero, y)
}

/// `tanh(x)` (see the module docs for the bound).
pub(super) fn tanh<'c, 'x>(e: &Emitter<'c, 'x, Block<'c>>, x: V<'c, '_>) -> BResult<V<'c, 'x>> {
    let a = e.unf("math.absf", x)?;
    let x2 = e.binf("arith.mulf", x, x)?;
    let p = horner(e, x2, &[1.0, -1.0 / 3.0, 2.0 / 15.0, -17.0 / 315.0])?;
    let small = e.binf("arith.mulf", x, p)?;
    let m2 = e.f32_const(-2.0)?;
    let a2 = e.binf("arith.mulf", a, m2)?;
    let ex = exp(e, a2)?;
    let one = e.f32_const(1.0)?;
    let num = e.binf("arith.subf", one, ex)?;
    let den = e.binf("arith.addf", one, ex)?;
    let big = e.binf("arith.divf", num, den)?;
    let big = e.binf("math.copysign", big, x)?;
    let cut = e.f32_const(0.0625)?;
    let is_small = e.cmpf(CMPF_OLT, a, cut)?;
    e.select(is_small, small, big)
}

/// `erf(x)` (see the module docs for the bound).
pub(super) fn erf<'c, 'x>(e: &Emitter<'c, 'x, Block<'c>>, x: V<'c, '_>) -> BResult<V<'c, 'x>> {
    let a = e.unf("math.absf", x)?;
    let one = e.f32_const(1.0)?;
    let p = e.f32_const(0.327_591_1)?;
    let pa = e.binf("arith.mulf", p, a)?;
    let den = e.binf("arith.addf", one, pa)?;
    let t = e.binf("arith.divf", one, den)?;
    let poly = horner(
        e,
        t,
        &[
            0.254_829_6,
            -0.284_496_74,
            1.421_413_7,
            -1.453_152,
            1.061_405_4,
        ],
    )?;
    let poly = e.binf("arith.mulf", poly, t)?;
    let aa = e.binf("arith.mulf", a, a)?;
    let naa = e.unf("arith.negf", aa)?;
    let g = exp(e, naa)?;
    let tail = e.binf("arith.mulf", poly, g)?;
    let y = e.binf("arith.subf", one, tail)?;
    e.binf("math.copysign", y, x)
}
