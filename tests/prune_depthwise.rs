//! Constants into zero-padded depthwise convs prune exactly and completely: proptest generates
//! MobileNet-style blocks `conv1x1 → act → depthwise 3x3 (zero-padded) → act → conv1x1` with
//! planted zero filters in the first conv (random biases, so after the activation some dead
//! channels are 0 and some are other constants), prunes them, and checks that the interpreter
//! (and the compiled code) give the same outputs before and after, and that the first conv
//! keeps only its live filters: a zero constant goes through the depthwise conv
//! (`dead-neuron-elimination`), any other is restored in front of it
//! (`scatter-into-depthwise`).

#[cfg(feature = "mlir")]
#[path = "common/jit.rs"]
mod jit;
#[path = "common/nnir.rs"]
#[allow(dead_code)]
mod nnir;
use nnir::{assert_same_outputs, f32_in, list, load, nested4, nonzero, prune};

use ndarray::ArrayD;
use nnopt::ir::Module;
use proptest::prelude::*;

/// Activations with a zero (relu, ReLU6 as clip) and without one (sigmoid) at the constants.
const ACTIVATIONS: &[(&str, &str)] = &[
    ("nn.relu", ""),
    ("nn.clip", " {min = 0.0, max = 6.0}"),
    ("nn.sigmoid", ""),
];

const C0: usize = 2;
const HW: usize = 4;

#[derive(Debug, Clone)]
struct Block {
    dead: Vec<bool>,
    bias: Vec<f32>,
    act: usize,
    weights: Vec<f32>,
}

fn block() -> impl Strategy<Value = Block> {
    (2usize..7).prop_flat_map(|c| {
        (
            prop::collection::vec(any::<bool>(), c),
            prop::collection::vec(f32_in(-1.0, 1.0), c),
            0..ACTIVATIONS.len(),
            prop::collection::vec(nonzero(), c * C0 + c * 9 + c + 2 * c),
        )
            .prop_map(|(dead, bias, act, weights)| Block {
                dead,
                bias,
                act,
                weights,
            })
    })
}

fn text(b: &Block) -> String {
    let c = b.dead.len();
    let (act, attrs) = ACTIVATIONS[b.act];
    let mut w = b.weights.iter().copied();
    let mut take = |n: usize| -> Vec<f32> { w.by_ref().take(n).collect() };
    let mut w1 = take(c * C0);
    for (j, &dead) in b.dead.iter().enumerate() {
        if dead {
            w1[j * C0..(j + 1) * C0].fill(0.0);
        }
    }
    let wd = take(c * 9);
    let bd = take(c);
    let w2 = take(2 * c);
    format!(
        "func @main(%x: tensor<1x{C0}x{HW}x{HW}xf32>) -> (tensor<1x2x{HW}x{HW}xf32>) {{
  %w1 = nn.constant dense<{}> : tensor<{c}x{C0}x1x1xf32>
  %b1 = nn.constant dense<{}> : tensor<{c}xf32>
  %p = nn.conv2d %x, %w1, %b1 : tensor<1x{c}x{HW}x{HW}xf32>
  %a = {act} %p{attrs} : tensor<1x{c}x{HW}x{HW}xf32>
  %wd = nn.constant dense<{}> : tensor<{c}x1x3x3xf32>
  %bd = nn.constant dense<{}> : tensor<{c}xf32>
  %d = nn.conv2d %a, %wd, %bd {{pads = [1, 1, 1, 1], groups = {c}}} : tensor<1x{c}x{HW}x{HW}xf32>
  %r = {act} %d{attrs} : tensor<1x{c}x{HW}x{HW}xf32>
  %w2 = nn.constant dense<{}> : tensor<2x{c}x1x1xf32>
  %y = nn.conv2d %r, %w2 : tensor<1x2x{HW}x{HW}xf32>
  return %y : tensor<1x2x{HW}x{HW}xf32>
}}
",
        nested4(&w1, c, C0, 1),
        list(&b.bias),
        nested4(&wd, c, 1, 3),
        list(&bd),
        nested4(&w2, 2, c, 1),
    )
}

/// The filters of the first conv (`%p`).
fn first_filters(m: &Module) -> usize {
    let f = &m.funcs[0];
    let p = f
        .ops()
        .find(|&o| {
            f.op(o)
                .result()
                .is_some_and(|r| f.value(r).name.as_deref() == Some("p"))
        })
        .expect("%p");
    f.ty(f.op(p).operands()[1]).dim(0).as_static().unwrap() as usize
}

fn input(seed: &[f32]) -> ArrayD<f32> {
    ArrayD::from_shape_fn(vec![1, C0, HW, HW], |i| {
        seed[(i[1] * 17 + i[2] * 5 + i[3]) % seed.len()]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn depthwise_constants_prune_exactly(b in block(), seed in prop::collection::vec(f32_in(-2.0, 2.0), 23)) {
        let text = text(&b);
        let before = load(&text);
        let after = prune(&before);
        assert_same_outputs(&before, &after, &[input(&seed)]);
        // Every dead filter goes, zero constant or not; one stays when all are dead.
        let live = b.dead.iter().filter(|&&d| !d).count();
        prop_assert_eq!(first_filters(&after), live.max(1), "{}", text);
    }
}

#[cfg(feature = "mlir")]
proptest! {
    #![proptest_config(ProptestConfig::with_cases(6))]

    #[test]
    fn depthwise_constants_compile_exactly(b in block(), seed in prop::collection::vec(f32_in(-2.0, 2.0), 23)) {
        let after = prune(&load(&text(&b)));
        jit::assert_jit_matches_interp(&after, &[input(&seed)]);
    }
}
