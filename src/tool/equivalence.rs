//! `--check-equivalence`: the original and the optimized function run in the reference
//! interpreter on the same inputs (pseudo-random ones, or the user's `.npy` files), and their
//! results are compared elementwise with allclose semantics.
//!
//! An element passes when `|result − original| ≤ atol·max|original| + rtol·|original|`. The
//! absolute term is scaled by the largest magnitude of that output (on that input) because an
//! exact rewrite still changes the order of f32 sums: the rounding it leaves is a fraction of
//! the magnitudes summed, not of the element, so an element near zero (a logit that cancels)
//! can differ by much more than its own size while the network is exact. A fixed `atol` would
//! instead depend on the scale of each model's outputs.
//!
//! The inputs come from [`SeededInputs`], the one generator of reproducible inputs in the crate
//! (`nnopt bench` fills its inputs from it too): the same seed gives the same numbers on every
//! machine, so a reported difference can be reproduced.

use crate::diag::{Diagnostic, Severity};
use crate::ir::{ElemType, Function, Module, ValueId};
use ndarray::{ArrayD, Dimension};
use std::path::PathBuf;

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

    /// An input of `shape` for argument `a` of `f`: the next values, or for i64 token ids,
    /// integers in [0, rows) of the `nn.embedding` tables that read them.
    pub fn argument(&mut self, f: &Function, a: ValueId, shape: Vec<usize>) -> ArrayD<f32> {
        let x = self.tensor(shape);
        if f.ty(a).elem == ElemType::I64 {
            let rows = f.embedding_rows(a).unwrap_or(1) as f32;
            x.mapv(|u| ((u + 1.0) / 2.0 * rows).floor().min(rows - 1.0))
        } else {
            x
        }
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

/// `trials` sets of inputs for `f` in [-1, 1) from `seed`, dynamic dimensions `dynamic_size`;
/// i64 arguments (token ids) get integers in [0, rows) of the embeddings that read them.
pub fn random_inputs(
    f: &Function,
    trials: usize,
    dynamic_size: usize,
    seed: u64,
) -> Vec<Vec<ArrayD<f32>>> {
    let mut rng = SeededInputs::new(seed);
    (0..trials)
        .map(|_| {
            f.args()
                .iter()
                .zip(arg_shapes(f, dynamic_size))
                .map(|(&a, shape)| rng.argument(f, a, shape))
                .collect()
        })
        .collect()
}

/// How far a result may be from the original: `atol·max|original| + rtol·|original|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f32,
    /// A fraction of the output's largest magnitude (see the module header).
    pub atol: f32,
}

/// The defaults of `--equivalence-rtol` and `--equivalence-atol`. Exact rewrites of the
/// `tests/torch` models differ from the original by at most a few 1e-6 of the output's largest
/// magnitude; a bias folded 1 % off moves it by orders of magnitude more.
pub const DEFAULT_TOLERANCE: Tolerance = Tolerance {
    rtol: 1e-5,
    atol: 1e-5,
};

impl Tolerance {
    /// The bound for an element whose original value is `want`, in an output of largest
    /// magnitude `scale`.
    fn bound(&self, want: f32, scale: f32) -> f32 {
        self.atol * scale + self.rtol * want.abs()
    }
}

/// The element of an output that is furthest beyond (or closest to) its bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Worst {
    /// Which input set (0 for the user's inputs).
    pub trial: usize,
    /// Which result of the function.
    pub output: usize,
    /// The element's multi-index in that result.
    pub index: Vec<usize>,
    /// The original's value and the result's.
    pub want: f32,
    pub got: f32,
    /// The largest magnitude of the original's output on that input.
    pub scale: f32,
    /// `|got − want|` over its bound: above 1 fails.
    pub ratio: f32,
}

/// The comparison of two functions over a number of inputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    /// The largest `|result − original|`.
    pub max_abs: f32,
    /// The largest `|result − original|` over the largest magnitude of its output.
    pub max_rel: f32,
    /// The element with the largest ratio to its bound (`None` when the results are empty).
    pub worst: Option<Worst>,
}

impl Comparison {
    /// `true` when every element is within its bound.
    pub fn passes(&self) -> bool {
        self.worst.as_ref().is_none_or(|w| w.ratio <= 1.0)
    }
}

/// Runs `original` and `result` (same signature) in the reference interpreter on each set of
/// `inputs` and compares their results elementwise under `tol`.
pub fn compare_functions(
    original: &Function,
    result: &Function,
    inputs: &[Vec<ArrayD<f32>>],
    tol: Tolerance,
) -> Result<Comparison, String> {
    let mut c = Comparison::default();
    for (trial, inputs) in inputs.iter().enumerate() {
        let want =
            crate::interp::run(original, inputs).map_err(|e| format!("the original: {e}"))?;
        let got = crate::interp::run(result, inputs).map_err(|e| format!("the result: {e}"))?;
        for (output, (w, g)) in want.iter().zip(&got).enumerate() {
            if w.shape() != g.shape() {
                return Err(format!(
                    "result {output} has shape {:?} but the original's has {:?}",
                    g.shape(),
                    w.shape()
                ));
            }
            c.add_output(trial, output, w, g, tol);
        }
    }
    Ok(c)
}

impl Comparison {
    /// Adds result `output` of input set `trial`: `want` is the original's, `got` the result's
    /// (same shape). NaN matches only NaN.
    pub fn add_output(
        &mut self,
        trial: usize,
        output: usize,
        want: &ArrayD<f32>,
        got: &ArrayD<f32>,
        tol: Tolerance,
    ) {
        let scale = want
            .iter()
            .filter(|x| x.is_finite())
            .fold(0.0f32, |m, x| m.max(x.abs()));
        let mut max_abs = 0.0f32;
        for ((index, &p), &q) in want.indexed_iter().zip(got.iter()) {
            let diff = if p == q || (p.is_nan() && q.is_nan()) {
                0.0
            } else if p.is_nan() || q.is_nan() {
                f32::INFINITY
            } else {
                (p - q).abs()
            };
            max_abs = max_abs.max(diff);
            let ratio = ratio(diff, tol.bound(p, scale));
            if self.worst.as_ref().is_none_or(|w| ratio > w.ratio) {
                self.worst = Some(Worst {
                    trial,
                    output,
                    index: index.slice().to_vec(),
                    want: p,
                    got: q,
                    scale,
                    ratio,
                });
            }
        }
        self.max_abs = self.max_abs.max(max_abs);
        self.max_rel = self.max_rel.max(ratio(max_abs, scale));
    }
}

/// `diff / bound`, with 0 for no difference and infinity for a difference over a zero bound.
fn ratio(diff: f32, bound: f32) -> f32 {
    if diff == 0.0 {
        0.0
    } else if bound > 0.0 {
        diff / bound
    } else {
        f32::INFINITY
    }
}

/// The trials and the size of dynamic dimensions of random inputs, and the default seed.
const TRIALS: usize = 4;
const DYNAMIC_SIZE: usize = 2;
pub const DEFAULT_SEED: u64 = 0x5eed;

/// The `--check-equivalence` flags as given (`None`: not given, the default applies).
#[derive(Clone, Debug, Default)]
pub struct EquivalenceOptions {
    /// `--check-equivalence`.
    pub check: bool,
    pub rtol: Option<f32>,
    pub atol: Option<f32>,
    /// One `.npy` file per argument, in order; empty: random inputs.
    pub inputs: Vec<PathBuf>,
    pub seed: Option<u64>,
}

impl EquivalenceOptions {
    /// The tolerance, or a usage error for a negative or NaN one.
    pub fn tolerance(&self) -> Result<Tolerance, String> {
        let t = Tolerance {
            rtol: self.rtol.unwrap_or(DEFAULT_TOLERANCE.rtol),
            atol: self.atol.unwrap_or(DEFAULT_TOLERANCE.atol),
        };
        for (flag, v) in [
            ("--equivalence-rtol", t.rtol),
            ("--equivalence-atol", t.atol),
        ] {
            if v.is_nan() || v < 0.0 {
                return Err(format!("{flag} must be a number >= 0, not {v}"));
            }
        }
        Ok(t)
    }

    /// A warning for each flag given that does nothing without `--check-equivalence`.
    pub fn unused_flag_warnings(&self) -> Vec<Diagnostic> {
        if self.check {
            return Vec::new();
        }
        let given = [
            ("--equivalence-rtol", self.rtol.is_some()),
            ("--equivalence-atol", self.atol.is_some()),
            ("--equivalence-inputs", !self.inputs.is_empty()),
            ("--seed", self.seed.is_some()),
        ];
        given
            .iter()
            .filter(|(_, g)| *g)
            .map(|(flag, _)| {
                Diagnostic::new(
                    Severity::Warning,
                    format!("{flag} has no effect without --check-equivalence"),
                )
            })
            .collect()
    }
}

/// The name of result `i` of `f` for messages: its index and, when the value returned has
/// one, its name (the ONNX output's name for an imported model).
fn output_name(f: &Function, i: usize) -> String {
    let name = f
        .terminator()
        .and_then(|t| f.op(t).operands().get(i).copied())
        .and_then(|v| f.value(v).name.clone());
    match name {
        Some(n) => format!("result {i} (%{n})"),
        None => format!("result {i}"),
    }
}

/// The arguments of `f` with their types, for an error about the inputs given.
fn expected_inputs(f: &Function) -> String {
    let args: Vec<String> = f
        .args()
        .iter()
        .enumerate()
        .map(|(i, &v)| match &f.value(v).name {
            Some(n) => format!("%{n}: {}", f.ty(v)),
            None => format!("#{i}: {}", f.ty(v)),
        })
        .collect();
    format!(
        "@{} takes {} input(s), one .npy file each, in order: {}",
        f.name,
        args.len(),
        args.join(", ")
    )
}

/// The user's `.npy` inputs for `f`, checked against its arguments.
fn user_inputs(f: &Function, paths: &[PathBuf]) -> Result<Vec<ArrayD<f32>>, Diagnostic> {
    if paths.len() != f.args().len() {
        return Err(Diagnostic::error(format!(
            "@{}: {} --equivalence-inputs file(s) given for {} argument(s)",
            f.name,
            paths.len(),
            f.args().len()
        ))
        .with_note(expected_inputs(f)));
    }
    let mut arrays = Vec::new();
    for (p, &arg) in paths.iter().zip(f.args()) {
        let a = crate::interp::read_npy(p).map_err(Diagnostic::error)?;
        let ty = f.ty(arg);
        if !crate::interp::shape_matches(ty, a.shape()) {
            return Err(Diagnostic::error(format!(
                "@{}: {} has shape {:?}, which does not fit the argument's type {ty}",
                f.name,
                p.display(),
                a.shape()
            ))
            .with_note(expected_inputs(f)));
        }
        arrays.push(a);
    }
    Ok(arrays)
}

/// `--check-equivalence` of every function of `after` against the same function of `before`: a
/// remark with the differences, and an error naming the worst element when one is out of
/// tolerance. `located`: the functions' spans point into text (not so for an imported binary
/// model, whose diagnostics carry no location).
pub fn check_equivalence(
    before: &Module,
    after: &Module,
    o: &EquivalenceOptions,
    tol: Tolerance,
    located: bool,
) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    for (fa, fb) in before.funcs.iter().zip(&after.funcs) {
        let at = |d: Diagnostic| if located { d.at(fa.span) } else { d };
        let seed = o.seed.unwrap_or(DEFAULT_SEED);
        let (inputs, what) = if o.inputs.is_empty() {
            let what = format!("{TRIALS} random inputs (seed {seed})");
            (random_inputs(fa, TRIALS, DYNAMIC_SIZE, seed), what)
        } else {
            match user_inputs(fa, &o.inputs) {
                Ok(i) => (vec![i], "the --equivalence-inputs".to_string()),
                Err(d) => {
                    diags.push(at(d));
                    continue;
                }
            }
        };
        let c = match compare_functions(fa, fb, &inputs, tol) {
            Ok(c) => c,
            Err(e) => {
                let msg = format!("@{}: cannot check equivalence: {e}", fa.name);
                diags.push(at(Diagnostic::error(msg)));
                continue;
            }
        };
        diags.push(at(Diagnostic::remark(format!(
            "equivalence of @{}: max abs difference {:e}, max relative difference {:e} (to the output's largest magnitude) over {what}",
            fa.name, c.max_abs, c.max_rel
        ))));
        if let Some(w) = c.worst.as_ref().filter(|_| !c.passes()) {
            diags.push(at(failure(fa, w, tol, &what, inputs.len())));
        }
    }
    diags
}

/// The error for an element out of tolerance.
fn failure(f: &Function, w: &Worst, tol: Tolerance, what: &str, trials: usize) -> Diagnostic {
    let on = if trials > 1 {
        format!("input set {} of {what}", w.trial)
    } else {
        what.to_string()
    };
    Diagnostic::error(format!(
        "@{}: {} differs from the original at {:?}: {:e} instead of {:e}",
        f.name,
        output_name(f, w.output),
        w.index,
        w.got,
        w.want
    ))
    .with_note(format!(
        "|difference| {:e} > atol·max|original| + rtol·|original| = {:e}·{:e} + {:e}·{:e}",
        (w.got - w.want).abs(),
        tol.atol,
        w.scale,
        tol.rtol,
        w.want.abs()
    ))
    .with_note(format!("found on {on}"))
    .with_note(
        "--equivalence-rtol and --equivalence-atol set the tolerance; docs/passes.md explains it",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::{OpKind, Tensor};
    use crate::passes::{PassContext, PassManager, PRUNE_PIPELINE};
    use crate::rewrite::Rewriter;
    use crate::tool::load::load;
    use ndarray::arr1;
    use std::path::Path;

    fn module(src: &str) -> Module {
        let mut diags = Vec::new();
        load(src, 0, 0, Path::new("."), &mut diags).expect("loads")
    }

    /// The differences `--check-equivalence` reports depend on its inputs, so the generator's
    /// numbers are part of the output.
    #[test]
    fn seeded_inputs_are_pinned() {
        let mut rng = SeededInputs::new(DEFAULT_SEED);
        let v: Vec<f32> = (0..3).map(|_| rng.next_f32()).collect();
        assert_eq!(v, [0.18009853, 0.5616076, 0.8206197]);
    }

    #[test]
    fn a_function_matches_itself_and_not_another() {
        let m = module("module {\n func @f(%x: tensor<?x3xf32>) -> (tensor<?x3xf32>) {\n %y = nn.relu %x : tensor<?x3xf32>\n return %y : tensor<?x3xf32>\n }\n func @g(%x: tensor<?x3xf32>) -> (tensor<?x3xf32>) {\n return %x : tensor<?x3xf32>\n }\n}\n");
        let (f, g) = (&m.funcs[0], &m.funcs[1]);
        let inputs = random_inputs(f, 2, 3, 1);
        let same = compare_functions(f, f, &inputs, DEFAULT_TOLERANCE).expect("runs");
        assert_eq!((same.max_abs, same.max_rel), (0.0, 0.0));
        assert!(same.passes());
        let diff = compare_functions(f, g, &inputs, DEFAULT_TOLERANCE).expect("runs");
        assert!(diff.max_abs > 0.0 && diff.max_abs <= 1.0, "{diff:?}");
        assert!(!diff.passes());
        // relu(x) = 0 where g gives x < 0: the original's value there is 0.
        let w = diff.worst.expect("a worst element");
        assert_eq!((w.output, w.want, w.index.len()), (0, 0.0, 2));
        assert_eq!(output_name(f, 0), "result 0 (%y)");
        assert_eq!(arg_shapes(f, 3), [vec![3, 3]]);
    }

    /// An element near zero may differ by more than its own size: the bound's absolute part
    /// is a fraction of the output's largest magnitude.
    #[test]
    fn the_absolute_tolerance_scales_with_the_largest_magnitude() {
        let tol = DEFAULT_TOLERANCE;
        let want = arr1(&[1000.0f32, 1e-3, -2.0]).into_dyn();
        let mut c = Comparison::default();
        c.add_output(0, 0, &want, &arr1(&[1000.0, 2e-3, -2.0]).into_dyn(), tol);
        assert!(c.passes(), "{c:?}");
        assert_eq!(c.max_abs, 1e-3);
        assert!((c.max_rel - 1e-6).abs() < 1e-9, "{c:?}");
        // 0.1 on 1000 is 1e-4 of the magnitude: out.
        let mut c = Comparison::default();
        c.add_output(0, 0, &want, &arr1(&[1000.1, 1e-3, -2.0]).into_dyn(), tol);
        assert!(!c.passes());
        let w = c.worst.expect("a worst element");
        assert_eq!(
            (w.index, w.want, w.got, w.scale),
            (vec![0], 1000.0, 1000.1, 1000.0)
        );
    }

    #[test]
    fn nan_matches_only_nan() {
        let want = arr1(&[f32::NAN, 1.0]).into_dyn();
        let mut c = Comparison::default();
        c.add_output(0, 0, &want, &want.clone(), DEFAULT_TOLERANCE);
        assert!(c.passes());
        c.add_output(
            1,
            0,
            &want,
            &arr1(&[0.0, 1.0]).into_dyn(),
            DEFAULT_TOLERANCE,
        );
        assert!(!c.passes());
        assert_eq!(c.worst.map(|w| (w.trial, w.index)), Some((1, vec![0])));
    }

    /// tests/corpus/mlp.nnir with its dead neuron folded into the second layer's new bias, and
    /// the op defining that bias.
    fn pruned_mlp() -> (Module, Module) {
        let src = std::fs::read_to_string("tests/corpus/mlp.nnir").expect("the corpus");
        let original = module(&src);
        let mut pruned = original.clone();
        let passes = PassManager::parse(PRUNE_PIPELINE, None).expect("the pipeline");
        passes
            .run(&mut pruned, true, &mut PassContext::default(), |_, _, _| {})
            .expect("prunes");
        (original, pruned)
    }

    /// The defaults accept exact pruning and catch a folded bias 1 % off.
    #[test]
    fn a_folded_bias_one_percent_off_fails() {
        let (original, mut pruned) = pruned_mlp();
        let tol = DEFAULT_TOLERANCE;
        let o = EquivalenceOptions::default();
        let diags = check_equivalence(&original, &pruned, &o, tol, true);
        assert!(!crate::diag::has_errors(&diags), "{diags:?}");

        let f = &mut pruned.funcs[0];
        let linear = f
            .ops()
            .filter(|&op| matches!(f.kind(op), OpKind::Linear))
            .last()
            .expect("the second layer");
        let bias = *f.op(linear).operands().get(2).expect("the folded bias");
        let bias_op = f.producer(bias).expect("a constant");
        let mut values = f.constant_of(bias).expect("a constant").to_f32_vec();
        values[1] *= 1.01;
        let ty = f.ty(bias).clone();
        let t = Tensor::from_f32(
            ty.elem,
            ty.dims.iter().map(|d| d.as_static().unwrap()).collect(),
            &values,
        );
        Rewriter::new(f).set_kind(bias_op, OpKind::Constant(t));

        let diags = check_equivalence(&original, &pruned, &o, tol, true);
        let err = diags
            .iter()
            .find(|d| d.severity == Severity::Error)
            .expect("an error");
        assert!(
            err.message
                .contains("result 0 (%y) differs from the original at ["),
            "{}",
            err.message
        );
    }

    #[test]
    fn user_inputs_are_checked_against_the_arguments() {
        let (original, _) = pruned_mlp();
        let f = &original.funcs[0];
        let dir = tempfile::tempdir().expect("a temporary directory");
        let p = dir.path().join("x.npy");
        crate::interp::write_npy(&p, &ndarray::Array2::<f32>::zeros((2, 3)).into_dyn())
            .expect("writes");
        let err = user_inputs(f, &[p.clone(), p.clone()]).expect_err("two for one");
        assert!(err
            .message
            .contains("2 --equivalence-inputs file(s) given for 1 argument(s)"));
        assert_eq!(
            err.notes,
            ["@main takes 1 input(s), one .npy file each, in order: %x: tensor<?x4xf32>"]
        );
        let err = user_inputs(f, std::slice::from_ref(&p)).expect_err("the wrong shape");
        assert!(
            err.message.contains(
                "has shape [2, 3], which does not fit the argument's type tensor<?x4xf32>"
            ),
            "{}",
            err.message
        );
    }

    #[test]
    fn flags_without_the_check_warn() {
        let mut o = EquivalenceOptions {
            rtol: Some(1e-3),
            seed: Some(1),
            ..Default::default()
        };
        let w: Vec<String> = o
            .unused_flag_warnings()
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(
            w,
            [
                "warning: --equivalence-rtol has no effect without --check-equivalence",
                "warning: --seed has no effect without --check-equivalence"
            ]
        );
        o.check = true;
        assert!(o.unused_flag_warnings().is_empty());
        o.atol = Some(-1.0);
        assert!(o.tolerance().is_err());
    }
}
