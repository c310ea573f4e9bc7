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
    let d = plan(&f, h, &a, Residual::Scatter);
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
    assert!(plan(&f, h, &a, Residual::Keep).plan.is_err());
    let p = plan(&f, h, &a, Residual::Scatter)
        .plan
        .expect("a scatter restores it");
    assert_eq!(p.fan.others.len(), 1);
}
