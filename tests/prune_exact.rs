//! Pruning is exact: proptest generates random networks with planted fan-in-dead (zero rows,
//! random biases of either sign) and fan-out-dead (zero columns) neurons, prunes them, and
//! checks that the reference interpreter gives the same outputs before and after on random
//! inputs, that the result verifies, and (for MLPs) that the parameter count equals an
//! independent computation of which neurons must go.

use ndarray::ArrayD;
use nnopt::diag::SourceMap;
use nnopt::ir::{Module, OpKind};
use nnopt::{driver, interp, passes};
use proptest::prelude::*;
use std::path::Path;

fn load(text: &str) -> Module {
    let mut sources = SourceMap::new();
    let file = sources.add("generated.nnir", text.to_string());
    let mut diags = Vec::new();
    match driver::load(text, file, 0, Path::new("."), &mut diags) {
        Some(m) => m,
        None => panic!("{}\n{text}", sources.emit_to_string(&diags)),
    }
}

fn prune(m: &Module) -> Module {
    let mut m = m.clone();
    let pipeline = passes::parse_pipeline(passes::PRUNE_PIPELINE, None).unwrap();
    let mut cx = passes::PassContext::default();
    if let Err(e) = passes::run_pipeline(&mut m, &pipeline, true, &mut cx, |_, _| {}) {
        panic!("pruning broke the IR: {e:?}");
    }
    m
}

fn params(m: &Module) -> usize {
    let f = &m.funcs[0];
    f.ops()
        .filter(|&op| matches!(f.kind(op), OpKind::Linear | OpKind::Conv2d { .. }))
        .flat_map(|op| f.op(op).operands()[1..].to_vec())
        .map(|v| f.ty(v).num_elements().unwrap() as usize)
        .sum()
}

/// Outputs agree to 1e-5 relative to the values' scale (bias folding reassociates sums).
fn assert_same_outputs(before: &Module, after: &Module, inputs: &[ArrayD<f32>]) {
    let a = interp::run(&before.funcs[0], inputs).expect("original runs");
    let b = interp::run(&after.funcs[0], inputs).expect("pruned runs");
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.shape(), y.shape());
        for (p, q) in x.iter().zip(y.iter()) {
            let tol = 1e-5 * (1.0 + p.abs().max(q.abs()));
            assert!((p - q).abs() <= tol, "outputs differ: {p} vs {q}");
        }
    }
}

fn list(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(|x| format!("{x:?}")).collect();
    format!("[{}]", items.join(", "))
}

fn matrix(rows: &[Vec<f32>]) -> String {
    let items: Vec<String> = rows.iter().map(|r| list(r)).collect();
    format!("[{}]", items.join(", "))
}

const ACTIVATIONS: &[&str] = &[
    "nn.relu",
    "nn.sigmoid",
    "nn.tanh",
    "nn.gelu",
    "nn.silu",
    "nn.hardswish",
    "nn.leaky_relu {alpha = 0.1}",
    "nn.clip {min = 0.0, max = 6.0}",
];

/// A weight that is never zero, so only planted zeros make neurons dead.
fn nonzero() -> impl Strategy<Value = f32> {
    (0.1f32..1.0, any::<bool>()).prop_map(|(m, neg)| if neg { -m } else { m })
}

#[derive(Debug, Clone)]
struct Mlp {
    widths: Vec<usize>,
    layers: Vec<(Vec<Vec<f32>>, Vec<f32>)>,
    acts: Vec<usize>,
}

fn mlp() -> impl Strategy<Value = Mlp> {
    (
        prop::collection::vec(2usize..6, 3..6),
        prop::collection::vec(0..ACTIVATIONS.len(), 5),
    )
        .prop_flat_map(|(widths, acts)| {
            let layers: Vec<_> = widths
                .windows(2)
                .enumerate()
                .map(|(l, w)| {
                    let (inp, out) = (w[0], w[1]);
                    let last = l + 2 == widths.len();
                    (
                        prop::collection::vec(prop::collection::vec(nonzero(), inp), out),
                        prop::collection::vec(-1.0f32..1.0, out),
                        // Planted: zero rows (fan-in dead), never row 0 so a path stays live.
                        prop::collection::vec(any::<bool>(), out),
                        // Planted: zero columns (fan-out dead in the previous layer).
                        prop::collection::vec(any::<bool>(), inp),
                        Just(last),
                    )
                })
                .collect();
            (Just(widths), layers, Just(acts))
        })
        .prop_map(|(widths, layers, acts)| {
            let n = layers.len();
            let mut out = Vec::new();
            for (l, (mut w, b, dead_rows, dead_cols, _)) in layers.into_iter().enumerate() {
                for (j, row) in w.iter_mut().enumerate() {
                    if j > 0 && dead_rows[j] && l + 1 < n {
                        row.iter_mut().for_each(|x| *x = 0.0);
                    }
                    for (i, x) in row.iter_mut().enumerate() {
                        // Column 0 stays live; the first layer reads the real input.
                        if i > 0 && l > 0 && dead_cols[i] {
                            *x = 0.0;
                        }
                    }
                }
                out.push((w, b));
            }
            Mlp {
                widths,
                layers: out,
                acts,
            }
        })
}

fn mlp_text(m: &Mlp) -> String {
    let mut s = format!(
        "func @mlp(%x: tensor<?x{}xf32>) -> (tensor<?x{}xf32>) {{\n",
        m.widths[0],
        m.widths.last().unwrap()
    );
    let mut cur = "%x".to_string();
    for (l, (w, b)) in m.layers.iter().enumerate() {
        let (inp, out) = (m.widths[l], m.widths[l + 1]);
        s += &format!(
            "  %w{l} = nn.constant dense<{}> : tensor<{out}x{inp}xf32>\n",
            matrix(w)
        );
        s += &format!(
            "  %b{l} = nn.constant dense<{}> : tensor<{out}xf32>\n",
            list(b)
        );
        s += &format!("  %h{l} = nn.linear {cur}, %w{l}, %b{l} : tensor<?x{out}xf32>\n");
        cur = format!("%h{l}");
        if l + 1 < m.layers.len() {
            let act = ACTIVATIONS[m.acts[l] % ACTIVATIONS.len()];
            s += &format!("  %a{l} = {act} {cur} : tensor<?x{out}xf32>\n");
            cur = format!("%a{l}");
        }
    }
    s += &format!(
        "  return {cur} : tensor<?x{}xf32>\n}}\n",
        m.widths.last().unwrap()
    );
    s
}

/// Which neurons must stay, derived from the weights alone: a neuron is constant when every
/// non-zero weight of its row reads a constant input; it is ignored when every live neuron of
/// the next layer has a zero weight for it (a fixpoint, since ignoring cascades backwards).
fn expected_params(m: &Mlp) -> usize {
    let n = m.layers.len();
    let mut constant: Vec<Vec<bool>> = Vec::new();
    let mut prev: Vec<bool> = vec![false; m.widths[0]];
    for (w, _) in &m.layers {
        let c: Vec<bool> = w
            .iter()
            .map(|row| row.iter().zip(&prev).all(|(x, &pc)| *x == 0.0 || pc))
            .collect();
        prev = c.clone();
        constant.push(c);
    }
    let mut alive: Vec<Vec<bool>> = constant
        .iter()
        .map(|c| c.iter().map(|&x| !x).collect())
        .collect();
    loop {
        let mut changed = false;
        for l in 0..n - 1 {
            let next = &m.layers[l + 1].0;
            for j in 0..m.widths[l + 1] {
                let read = (0..m.widths[l + 2]).any(|k| alive[l + 1][k] && next[k][j] != 0.0);
                let read = read || (l + 2 == m.widths.len() - 1 && false);
                if alive[l][j] && !read {
                    alive[l][j] = false;
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    let mut total = 0;
    let mut inputs = m.widths[0];
    for a in &alive {
        let kept = a.iter().filter(|&&x| x).count();
        total += kept * inputs + kept;
        inputs = kept;
    }
    total
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn mlps_prune_exactly(m in mlp(), batch in 1usize..4, seed in prop::collection::vec(-2.0f32..2.0, 64)) {
        let text = mlp_text(&m);
        let before = load(&text);
        let after = prune(&before);
        let x = ArrayD::from_shape_fn(vec![batch, m.widths[0]], |i| seed[(i[0] * 7 + i[1]) % seed.len()]);
        assert_same_outputs(&before, &after, &[x]);
        prop_assert_eq!(params(&after), expected_params(&m), "{}", text);
    }
}
