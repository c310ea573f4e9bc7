//! The pruning plan reads the IR and decides; it changes nothing.

use super::{func, value};
use crate::passes::analysis::ConstAnalysis;
use crate::passes::prune::plan::plan;
use crate::passes::prune::Residual;

const FAN_IN_DEAD: &str = r#"
func @main(%x: tensor<?x4xf32>) -> (tensor<?x2xf32>) {
  %w1 = nn.constant dense<[[1.0, 0.0, -1.0, 2.0], [0.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]]> : tensor<3x4xf32>
  %b1 = nn.constant dense<[0.1, -0.2, 0.3]> : tensor<3xf32>
  %h = nn.linear %x, %w1, %b1 : tensor<?x3xf32>
  %a = nn.sigmoid %h : tensor<?x3xf32>
  %w2 = nn.constant dense<[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]> : tensor<2x3xf32>
  %y = nn.linear %a, %w2 : tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
"#;

#[test]
fn a_constant_neuron_is_planned_away_with_its_constant() {
    let f = func(FAN_IN_DEAD);
    let a = ConstAnalysis::compute(&f, 0.0);
    let h = f.producer(value(&f, "h")).unwrap();
    let before = format!("{f:?}");
    let d = plan(&f, h, &a, Residual::Scatter, 1);
    let p = d.plan.expect("neuron 1 is constant");
    assert!(d.remark.is_none());
    assert_eq!(p.remove.iter().copied().collect::<Vec<_>>(), [1]);
    assert_eq!(p.keep, [0, 2]);
    assert_eq!(p.fan.consumers.len(), 1);
    assert!(p.fan.others.is_empty());
    let a1 = p.seen[0][1].expect("the consumer sees a constant");
    assert!((a1 - 1.0 / (1.0 + 0.2f32.exp())).abs() < 1e-6);
    assert_eq!(format!("{f:?}"), before, "planning changed the IR");
}

#[test]
fn residual_keep_declines_a_layer_that_reaches_the_result() {
    let text = FAN_IN_DEAD
        .replace(
            "-> (tensor<?x2xf32>)",
            "-> (tensor<?x2xf32>, tensor<?x3xf32>)",
        )
        .replace(
            "return %y : tensor<?x2xf32>",
            "return %y, %a : tensor<?x2xf32>, tensor<?x3xf32>",
        );
    let f = func(&text);
    let a = ConstAnalysis::compute(&f, 0.0);
    let h = f.producer(value(&f, "h")).unwrap();
    assert!(plan(&f, h, &a, Residual::Keep, 1).plan.is_err());
    let p = plan(&f, h, &a, Residual::Scatter, 1)
        .plan
        .expect("a scatter restores it");
    assert_eq!(p.fan.others.len(), 1);
}

/// Six neurons; 1 and 4 have no incoming weight (constant 0 after the ReLU), 2 has none but
/// a bias (constant 0.5, which the consumer's bias must absorb).
const SIX_THREE_DEAD: &str = r#"
func @main(%x: tensor<?x2xf32>) -> (tensor<?x2xf32>) {
  %w1 = nn.constant dense<[[1.0, 2.0], [0.0, 0.0], [0.0, 0.0], [3.0, 1.0], [0.0, 0.0], [-1.0, 1.0]]> : tensor<6x2xf32>
  %b1 = nn.constant dense<[0.1, 0.0, 0.5, 0.2, 0.0, 0.3]> : tensor<6xf32>
  %h = nn.linear %x, %w1, %b1 : tensor<?x6xf32>
  %a = nn.relu %h : tensor<?x6xf32>
  %w2 = nn.constant dense<[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]]> : tensor<2x6xf32>
  %y = nn.linear %a, %w2 : tensor<?x2xf32>
  return %y : tensor<?x2xf32>
}
"#;

#[test]
fn alignment_keeps_the_neuron_whose_removal_saves_least() {
    let f = func(SIX_THREE_DEAD);
    let a = ConstAnalysis::compute(&f, 0.0);
    let h = f.producer(value(&f, "h")).unwrap();
    let all = plan(&f, h, &a, Residual::Scatter, 1);
    assert_eq!(all.aligned, 0);
    assert_eq!(all.plan.unwrap().keep, [0, 3, 5]);
    // 3 left rounds up to 4: neuron 2, whose constant the consumer's bias would absorb, stays.
    let d = plan(&f, h, &a, Residual::Scatter, 4);
    assert_eq!(d.aligned, 1);
    let p = d.plan.expect("two neurons still go");
    assert_eq!(p.remove.iter().copied().collect::<Vec<_>>(), [1, 4]);
    assert_eq!(p.keep, [0, 2, 3, 5]);
}

#[test]
fn alignment_never_grows_a_layer() {
    // 3 left rounds up to 8 > 6: the layer stays whole, and all three count as kept.
    let f = func(SIX_THREE_DEAD);
    let a = ConstAnalysis::compute(&f, 0.0);
    let h = f.producer(value(&f, "h")).unwrap();
    let d = plan(&f, h, &a, Residual::Scatter, 8);
    assert!(d.plan.is_err());
    assert_eq!(d.aligned, 3);
    // 3 left is already a multiple of 3.
    let d = plan(&f, h, &a, Residual::Scatter, 3);
    assert_eq!(d.aligned, 0);
    assert_eq!(d.plan.unwrap().keep, [0, 3, 5]);
}
