//! `--check-equivalence`: the original and the optimized function run in the reference
//! interpreter on the same pseudo-random inputs, and the largest differences of their results.
//!
//! The inputs come from [`SeededInputs`], the one generator of reproducible inputs in the crate
//! (`nnopt bench` fills its inputs from it too): the same seed gives the same numbers on every
//! machine, so a reported difference can be reproduced.

use crate::diag::Diagnostic;
use crate::ir::{Function, Module};
use ndarray::ArrayD;

/// Pseudo-random `f32` values in [-1, 1) from a seed: xorshift64*, reproducible without another
/// dependency.
pub struct SeededInputs {
    state: u64,
}

impl SeededInputs {
    /// The generator for `seed` (xorshift needs a nonzero state, so the low bit is set).
    pub fn new(seed: u64) -> Self {
        SeededInputs { state: seed | 1 }
    }

    /// The next value, in [-1, 1) with 24 random bits.
    pub fn next_f32(&mut self) -> f32 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let x = self.state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// A tensor of `shape` filled with the next values, in row-major order.
    pub fn tensor(&mut self, shape: Vec<usize>) -> ArrayD<f32> {
        ArrayD::from_shape_simple_fn(shape, || self.next_f32())
    }
}

/// The shape of every argument of `f`, with each dynamic dimension set to `dynamic_size`.
pub fn arg_shapes(f: &Function, dynamic_size: usize) -> Vec<Vec<usize>> {
    f.args()
        .iter()
        .map(|&v| {
            f.ty(v)
                .dims
                .iter()
                .map(|d| d.as_static().map_or(dynamic_size, |s| s as usize))
                .collect()
        })
        .collect()
}

/// The largest differences between two runs of the same inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Difference {
    pub max_abs: f32,
    pub max_rel: f32,
}

/// Runs `a` and `b` (same signature) in the reference interpreter on `trials` sets of random
/// inputs in [-1, 1) (dynamic dimensions take `dynamic_size`) and returns the largest absolute
/// and relative differences of their results. Relative differences are taken against
/// `max(|x|, |y|, 1e-6)`.
pub fn compare_functions(
    a: &Function,
    b: &Function,
    trials: usize,
    dynamic_size: usize,
    seed: u64,
) -> Result<Difference, String> {
    let mut rng = SeededInputs::new(seed);
    let mut diff = Difference::default();
    for _ in 0..trials {
        let inputs: Vec<ArrayD<f32>> = arg_shapes(a, dynamic_size)
            .into_iter()
            .map(|shape| rng.tensor(shape))
            .collect();
        let ra = crate::interp::run(a, &inputs).map_err(|e| format!("the original: {e}"))?;
        let rb = crate::interp::run(b, &inputs).map_err(|e| format!("the result: {e}"))?;
        for (x, y) in ra.iter().zip(&rb) {
            if x.shape() != y.shape() {
                return Err(format!(
                    "result shapes differ: {:?} vs {:?}",
                    x.shape(),
                    y.shape()
                ));
            }
            for (p, q) in x.iter().zip(y.iter()) {
                let abs = (p - q).abs();
                let rel = abs / p.abs().max(q.abs()).max(1e-6);
                // NaN in either run is a difference, not a match.
                let (abs, rel) = if p.is_nan() != q.is_nan() {
                    (f32::INFINITY, f32::INFINITY)
                } else if p.is_nan() {
                    (0.0, 0.0)
                } else {
                    (abs, rel)
                };
                diff.max_abs = diff.max_abs.max(abs);
                diff.max_rel = diff.max_rel.max(rel);
            }
        }
    }
    Ok(diff)
}

/// The trials, the size of dynamic dimensions and the seed of `--check-equivalence`.
const TRIALS: usize = 4;
const DYNAMIC_SIZE: usize = 2;
const SEED: u64 = 0x5eed;

/// `--check-equivalence` of every function of `after` against the same function of `before`: a
/// remark with the differences, and an error when the relative one exceeds `tolerance`.
pub fn check_equivalence(before: &Module, after: &Module, tolerance: f32) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for (fa, fb) in before.funcs.iter().zip(&after.funcs) {
        match compare_functions(fa, fb, TRIALS, DYNAMIC_SIZE, SEED) {
            Ok(d) => {
                diags.push(
                    Diagnostic::remark(format!(
                        "equivalence of @{}: max abs difference {:e}, max relative difference {:e} over {TRIALS} random inputs",
                        fa.name, d.max_abs, d.max_rel
                    ))
                    .at(fa.span),
                );
                if d.max_rel > tolerance {
                    diags.push(Diagnostic::error(format!(
                        "@{}: the result differs from the original by {:e} (relative), above the tolerance {:e}",
                        fa.name, d.max_rel, tolerance
                    )).at(fa.span));
                }
            }
            Err(e) => diags.push(
                Diagnostic::error(format!("@{}: cannot check equivalence: {e}", fa.name))
                    .at(fa.span),
            ),
        }
    }
    diags
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::load::load;
    use std::path::Path;

    /// The differences `--check-equivalence` reports depend on its inputs, so the generator's
    /// numbers are part of the output.
    #[test]
    fn seeded_inputs_are_pinned() {
        let mut rng = SeededInputs::new(SEED);
        let v: Vec<f32> = (0..3).map(|_| rng.next_f32()).collect();
        assert_eq!(v, [0.18009853, 0.5616076, 0.8206197]);
    }

    #[test]
    fn a_function_matches_itself_and_not_another() {
        let src = "module {\n func @f(%x: tensor<?x3xf32>) -> (tensor<?x3xf32>) {\n %y = nn.relu %x : tensor<?x3xf32>\n return %y : tensor<?x3xf32>\n }\n func @g(%x: tensor<?x3xf32>) -> (tensor<?x3xf32>) {\n return %x : tensor<?x3xf32>\n }\n}\n";
        let mut diags = Vec::new();
        let m = load(src, 0, 0, Path::new("."), &mut diags).expect("loads");
        let (f, g) = (&m.funcs[0], &m.funcs[1]);
        let same = compare_functions(f, f, 2, 3, 1).expect("runs");
        assert_eq!(same, Difference::default());
        let diff = compare_functions(f, g, 2, 3, 1).expect("runs");
        assert!(diff.max_abs > 0.0 && diff.max_abs <= 1.0, "{diff:?}");
        assert_eq!(arg_shapes(f, 3), [vec![3, 3]]);
    }
}
