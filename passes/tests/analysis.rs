//! The constness analysis: constant channels through linear, conv, activations, add and
//! concat; an update after a rewrite equals a fresh compute.

use super::{func, value};
use crate::passes::analysis::ConstAnalysis;
use crate::passes::prune::{DeadNeuronElimination, PruneCx, Residual};
use crate::passes::PassContext;
use crate::rewrite::{apply_patterns_greedily, GreedyConfig};

/// The facts of `%name` as (axis, channels).
fn facts(text: &str, name: &str) -> Option<(usize, Vec<Option<f32>>)> {
    let f = func(text);
    let a = ConstAnalysis::compute(&f, 0.0);
    a.facts(value(&f, name))
        .map(|fx| (fx.axis, fx.channels.clone()))
}

const MLP: &str = r#"
func @main(%x: tensor<?x2xf32>) -> (tensor<?x3xf32>) {
  %w1 = nn.constant dense<[[1.0, 2.0], [0.0, 0.0], [0.0, 0.0]]> : tensor<3x2xf32>
  %b1 = nn.constant dense<[0.5, -1.0, 2.0]> : tensor<3xf32>
  %h = nn.linear %x, %w1, %b1 : tensor<?x3xf32>
  %r = nn.relu %h : tensor<?x3xf32>
  %s = nn.sigmoid %h : tensor<?x3xf32>
  %sum = nn.add %r, %s : tensor<?x3xf32>
  %cat = nn.concat %r, %h {axis = 1} : tensor<?x6xf32>
  %w2 = nn.constant dense<[[1.0, 1.0, 1.0], [0.0, 2.0, 3.0]]> : tensor<2x3xf32>
  %y = nn.linear %r, %w2 : tensor<?x2xf32>
  return %sum : tensor<?x3xf32>
}
"#;

#[test]
fn a_zero_row_of_a_linear_is_its_bias() {
    assert_eq!(
        facts(MLP, "h"),
        Some((1, vec![None, Some(-1.0), Some(2.0)]))
    );
}

#[test]
fn activations_evaluate_the_constant() {
    assert_eq!(facts(MLP, "r"), Some((1, vec![None, Some(0.0), Some(2.0)])));
    let s = facts(MLP, "s").unwrap().1;
    assert_eq!(s[0], None);
    assert!((s[1].unwrap() - 1.0 / (1.0 + 1.0f32.exp())).abs() < 1e-6);
}

#[test]
fn add_sums_constant_channels() {
    let sum = facts(MLP, "sum").unwrap().1;
    let sig2 = 1.0 / (1.0 + (-2.0f32).exp());
    assert_eq!(sum[0], None);
    assert!((sum[2].unwrap() - (2.0 + sig2)).abs() < 1e-6);
}

#[test]
fn concat_joins_the_channels_of_its_operands() {
    assert_eq!(
        facts(MLP, "cat"),
        Some((
            1,
            vec![None, Some(0.0), Some(2.0), None, Some(-1.0), Some(2.0)]
        ))
    );
}

#[test]
fn constant_inputs_flow_through_the_next_linear() {
    // y_0 reads the unknown channel 0; y_1 = 0·r_0 + 2·0 + 3·2.
    assert_eq!(facts(MLP, "y"), Some((1, vec![None, Some(6.0)])));
}

#[test]
fn a_zero_filter_of_a_conv_is_its_bias_on_axis_1() {
    let text = r#"
func @main(%x: tensor<1x1x2x2xf32>) -> (tensor<1x2x2x2xf32>) {
  %w = nn.constant dense<[[[[1.0]]], [[[0.0]]]]> : tensor<2x1x1x1xf32>
  %b = nn.constant dense<[0.25, 0.75]> : tensor<2xf32>
  %c = nn.conv2d %x, %w, %b : tensor<1x2x2x2xf32>
  return %c : tensor<1x2x2x2xf32>
}
"#;
    assert_eq!(facts(text, "c"), Some((1, vec![None, Some(0.75)])));
}

#[test]
fn an_update_after_a_rewrite_equals_a_fresh_compute() {
    let mut f = func(MLP);
    let mut pass = PassContext::default();
    let mut cx = PruneCx {
        pass: &mut pass,
        analysis: ConstAnalysis::compute(&f, 0.0),
    };
    let pattern = DeadNeuronElimination {
        residual: Residual::Scatter,
        round_to: 1,
    };
    let out = apply_patterns_greedily(&mut f, &[&pattern], &mut cx, &GreedyConfig::default());
    assert!(out.changed, "the test needs a rewrite");
    let fresh = ConstAnalysis::compute(&f, 0.0);
    for op in f.ops() {
        if let Some(r) = f.op(op).result() {
            assert_eq!(cx.analysis.facts(r), fresh.facts(r), "at {op}");
        }
    }
}
