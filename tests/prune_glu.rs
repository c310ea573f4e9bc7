//! Gated MLPs prune exactly and completely: proptest generates `down(act(gate(x)) ⊙ up(x))`
//! blocks (SwiGLU, GeGLU, with and without biases) with planted dead neurons of every kind
//! `glu-neuron-elimination` removes (docs/passes.md) and one it must keep, prunes them, and
//! checks that the interpreter gives the same outputs before and after, that exactly the
//! removable neurons left `up` and `down`, and the parameter count.

#[cfg(feature = "mlir")]
#[path = "common/jit.rs"]
mod jit;
#[path = "common/nnir.rs"]
// `nested4` builds conv weights, which these blocks do not have.
#[allow(dead_code)]
mod nnir;
use nnir::{assert_same_outputs, f32_in, list, load, nonzero, params, prune, prune_with};

use ndarray::ArrayD;
use nnopt::ir::Module;
use nnopt::passes;
use proptest::prelude::*;

const D: usize = 3;
const OUT: usize = 2;

/// What a hidden neuron is.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Live,
    /// Gate row zero, gate bias 0: the product is act(0)·u = 0.
    GateZero,
    /// Up row zero, up bias 0: the product is act(g)·0 = 0.
    UpZero,
    /// Down column zero: ignored.
    DownZero,
    /// Both rows zero: the product is the constant act(b_g)·b_u.
    BothZero,
    /// Gate row zero with a non-zero bias, up live: act(b_g)·u depends on the input; it stays.
    GateBiased,
}

#[derive(Debug, Clone)]
struct Glu {
    act: &'static str,
    biases: bool,
    kinds: Vec<Kind>,
    values: Vec<f32>,
}

fn glu() -> impl Strategy<Value = Glu> {
    let kind = prop_oneof![
        Just(Kind::Live),
        Just(Kind::GateZero),
        Just(Kind::UpZero),
        Just(Kind::DownZero),
        Just(Kind::BothZero),
        Just(Kind::GateBiased),
    ];
    (
        prop_oneof![Just("nn.silu"), Just("nn.gelu")],
        any::<bool>(),
        prop::collection::vec(kind, 1..7),
        prop::collection::vec(nonzero(), 31),
    )
        .prop_map(|(act, biases, mut kinds, values)| {
            // Neuron 0 lives, so the count of removable neurons is exact (one always stays).
            kinds.insert(0, Kind::Live);
            if !biases {
                // Without biases, a zero gate row makes the product 0: no neuron to keep.
                for k in &mut kinds {
                    if *k == Kind::GateBiased {
                        *k = Kind::GateZero;
                    }
                }
            }
            Glu {
                act,
                biases,
                kinds,
                values,
            }
        })
}

fn text(s: &Glu) -> String {
    let h = s.kinds.len();
    let mut at = 0;
    let mut next = || {
        at += 1;
        s.values[at % s.values.len()]
    };
    let row = |zero: bool, next: &mut dyn FnMut() -> f32| {
        let r: Vec<f32> = (0..D).map(|_| if zero { 0.0 } else { next() }).collect();
        list(&r)
    };
    use Kind::*;
    let gate: Vec<String> = s
        .kinds
        .iter()
        .map(|k| row(matches!(k, GateZero | BothZero | GateBiased), &mut next))
        .collect();
    let up: Vec<String> = s
        .kinds
        .iter()
        .map(|k| row(matches!(k, UpZero | BothZero), &mut next))
        .collect();
    let bg: Vec<f32> = s
        .kinds
        .iter()
        .map(|k| if *k == GateZero { 0.0 } else { next() })
        .collect();
    let bu: Vec<f32> = s
        .kinds
        .iter()
        .map(|k| if *k == UpZero { 0.0 } else { next() })
        .collect();
    let down: Vec<String> = (0..OUT)
        .map(|_| {
            let r: Vec<f32> = s
                .kinds
                .iter()
                .map(|k| if *k == DownZero { 0.0 } else { next() })
                .collect();
            list(&r)
        })
        .collect();
    let (gb, ub) = if s.biases {
        (", %bg", ", %bu")
    } else {
        ("", "")
    };
    let biases = if s.biases {
        format!(
            "  %bg = nn.constant dense<{}> : tensor<{h}xf32>\n  %bu = nn.constant dense<{}> : tensor<{h}xf32>\n",
            list(&bg),
            list(&bu)
        )
    } else {
        String::new()
    };
    format!(
        "func @glu(%x: tensor<2x{D}xf32>) -> (tensor<2x{OUT}xf32>) {{\n  %wg = nn.constant dense<[{}]> : tensor<{h}x{D}xf32>\n  %wu = nn.constant dense<[{}]> : tensor<{h}x{D}xf32>\n{biases}  %g = nn.linear %x, %wg{gb} : tensor<2x{h}xf32>\n  %a = {} %g : tensor<2x{h}xf32>\n  %u = nn.linear %x, %wu{ub} : tensor<2x{h}xf32>\n  %m = nn.mul %a, %u : tensor<2x{h}xf32>\n  %wd = nn.constant dense<[{}]> : tensor<{OUT}x{h}xf32>\n  %bd = nn.constant dense<[0.25, -0.5]> : tensor<{OUT}xf32>\n  %y = nn.linear %m, %wd, %bd : tensor<2x{OUT}xf32>\n  return %y : tensor<2x{OUT}xf32>\n}}\n",
        gate.join(", "),
        up.join(", "),
        s.act,
        down.join(", ")
    )
}

/// The hidden width `up` and `down` have after pruning (the columns of down's weight).
fn hidden(m: &Module) -> usize {
    let f = &m.funcs[0];
    let y = f
        .ops()
        .find(|&o| {
            f.op(o)
                .result()
                .is_some_and(|r| f.value(r).name.as_deref() == Some("y"))
        })
        .expect("%y");
    let w = f.op(y).operands()[1];
    f.ty(w).dim(1).as_static().unwrap() as usize
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn gated_mlps_prune_exactly_the_removable_neurons(s in glu(), seed in prop::collection::vec(f32_in(-2.0, 2.0), 13)) {
        let text = text(&s);
        let before = load(&text);
        let after = prune(&before);
        let x = ArrayD::from_shape_fn(vec![2, D], |i| seed[(i[0] * 7 + i[1]) % seed.len()]);
        assert_same_outputs(&before, &after, &[x]);
        let kept = s
            .kinds
            .iter()
            .filter(|k| matches!(k, Kind::Live | Kind::GateBiased))
            .count();
        prop_assert_eq!(hidden(&after), kept, "{}", text);
        // The gate rows of the kept neurons, except the biased zero rows, which
        // dead-neuron-elimination takes (a scatter restores their constant); the up rows and
        // down columns of the kept neurons; biases alike.
        let biased = s.kinds.iter().filter(|k| **k == Kind::GateBiased).count();
        let b = usize::from(s.biases);
        let expected = (kept - biased) * (D + b) + kept * (D + b) + OUT * kept + OUT;
        prop_assert_eq!(params(&after), expected, "{}", text);
    }

    #[test]
    fn aligned_gated_mlps_prune_exactly(s in glu(), round_to in 2usize..5, seed in prop::collection::vec(f32_in(-2.0, 2.0), 13)) {
        let text = text(&s);
        let before = load(&text);
        let after = prune_with(&before, &passes::prune_pipeline(&format!("round-to={round_to}")));
        let x = ArrayD::from_shape_fn(vec![2, D], |i| seed[(i[0] * 7 + i[1]) % seed.len()]);
        assert_same_outputs(&before, &after, &[x]);
        // Alignment keeps dead neurons until the width is a multiple, never past the original.
        let (n, h) = (s.kinds.len(), hidden(&after));
        prop_assert!(h == n || h % round_to == 0, "width {} of {}: {}", h, n, text);
        let kept = s
            .kinds
            .iter()
            .filter(|k| matches!(k, Kind::Live | Kind::GateBiased))
            .count();
        prop_assert!(h >= kept && h < kept + round_to || h == n, "width {} of {}: {}", h, n, text);
    }
}

#[cfg(feature = "mlir")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]

    /// Aligned or not, the pruned gated MLP compiles to the interpreter's outputs: the narrowed
    /// gate, up and down, and the down bias that absorbed the constant products, as lowered.
    #[test]
    fn pruned_gated_mlps_compile_exactly(s in glu(), round_to in 1usize..5, seed in prop::collection::vec(f32_in(-2.0, 2.0), 13)) {
        let before = load(&text(&s));
        let after = prune_with(&before, &passes::prune_pipeline(&format!("round-to={round_to}")));
        let x = ArrayD::from_shape_fn(vec![2, D], |i| seed[(i[0] * 7 + i[1]) % seed.len()]);
        jit::assert_jit_matches_interp(&after, &[x]);
    }
}
