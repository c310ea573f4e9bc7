//! Helpers shared by the property tests that build NNIR text, prune it and run it in the
//! reference interpreter (`tests/prune_exact.rs`, `tests/prune_branches.rs`); declared by those
//! alone, so the test binaries that share `common/mod.rs` do not carry them unused.

use ndarray::ArrayD;
use nnopt::diag::SourceMap;
use nnopt::ir::{Module, OpKind};
use nnopt::tool::load;
use nnopt::{interp, passes};
use proptest::arbitrary::any;
use proptest::strategy::Strategy;
use std::path::Path;

pub fn load(text: &str) -> Module {
    let mut sources = SourceMap::new();
    let file = sources.add("generated.nnir", text.to_string());
    let mut diags = Vec::new();
    match load::load(text, file, 0, Path::new("."), &mut diags) {
        Some(m) => m,
        None => panic!("{}\n{text}", sources.emit_to_string(&diags)),
    }
}

pub fn prune(m: &Module) -> Module {
    prune_with(m, passes::PRUNE_PIPELINE)
}

pub fn prune_with(m: &Module, pipeline: &str) -> Module {
    let mut m = m.clone();
    let pipeline = passes::PassManager::parse(pipeline, None).unwrap();
    let mut cx = passes::PassContext::default();
    if let Err(e) = pipeline.run(&mut m, true, &mut cx, |_, _, _| {}) {
        panic!("pruning broke the IR: {e:?}");
    }
    m
}

pub fn params(m: &Module) -> usize {
    let f = &m.funcs[0];
    f.ops()
        .filter(|&op| matches!(f.kind(op), OpKind::Linear | OpKind::Conv2d { .. }))
        .flat_map(|op| f.op(op).operands()[1..].to_vec())
        .map(|v| f.ty(v).num_elements().unwrap() as usize)
        .sum()
}

/// Outputs agree to 1e-5 relative to the output's scale, its largest magnitude (bias folding
/// reassociates sums, and an element can be a small difference of large terms: a head of 192
/// inputs with weights up to 6 gave 0.16066998 before pruning and 0.16065472 after, next to
/// outputs of 73 and -213 in the same tensor).
pub fn assert_same_outputs(before: &Module, after: &Module, inputs: &[ArrayD<f32>]) {
    let a = interp::run(&before.funcs[0], inputs).expect("original runs");
    let b = interp::run(&after.funcs[0], inputs).expect("pruned runs");
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.shape(), y.shape());
        let scale = x.iter().chain(y.iter()).fold(0.0f32, |m, v| m.max(v.abs()));
        for (p, q) in x.iter().zip(y.iter()) {
            let tol = 1e-5 * (1.0 + scale);
            assert!((p - q).abs() <= tol, "outputs differ: {p} vs {q}");
        }
    }
}

/// `v` as an NNIR list literal.
pub fn list(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", items.join(", "))
}

/// `w` (`[out, inp, k, k]`, row-major) as a nested NNIR literal.
pub fn nested4(w: &[f32], out: usize, inp: usize, k: usize) -> String {
    let mut s = String::from("[");
    for j in 0..out {
        s += if j > 0 { ", [" } else { "[" };
        for i in 0..inp {
            s += if i > 0 { ", [" } else { "[" };
            for r in 0..k {
                let row = &w[((j * inp + i) * k + r) * k..][..k];
                s += if r > 0 { ", " } else { "" };
                s += &list(row);
            }
            s += "]";
        }
        s += "]";
    }
    s + "]"
}

/// An f32 in `[lo, hi)` from an integer draw: proptest's own float range sampler can trip an
/// assertion on some seeds (proptest-rs/proptest#343 and its neighbours), which made the property
/// tests flaky.
pub fn f32_in(lo: f32, hi: f32) -> impl Strategy<Value = f32> + Clone {
    const STEPS: u32 = 1 << 20;
    (0..STEPS).prop_map(move |i| lo + (hi - lo) * (i as f32 / STEPS as f32))
}

/// A weight that is never zero, so only planted zeros make neurons dead.
pub fn nonzero() -> impl Strategy<Value = f32> {
    (f32_in(0.1, 1.0), any::<bool>()).prop_map(|(m, neg)| if neg { -m } else { m })
}
