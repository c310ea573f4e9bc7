//! The plan of one dead-neuron elimination: which neurons of a layer go, and what each use of
//! the layer needs for that (a bias update, a border map, a scatter). It reads the IR and the
//! constness analysis and changes nothing; `apply.rs` carries it out.

use super::border_map::BorderMap;
use super::fanout::{fanout, Fanout};
use super::groups::{balance, column_is_zero};
use super::liveness::Liveness;
use super::residual_cost::{scatter_tradeoff, Layer};
use super::Residual;
use crate::diag::Diagnostic;
use crate::ir::{Function, OpId, OpKind, OpTag, Tensor};
use crate::passes::analysis::ConstAnalysis;
use crate::rewrite::{ensure, MatchFailure};
use std::collections::BTreeSet;

/// What to remove from the weighted producer P and how every use of it compensates.
pub struct Plan {
    /// P's neurons (rows of its weight) and the channel axis of its result.
    pub neurons: usize,
    pub axis: usize,
    pub fan: Fanout,
    /// P's weight and bias.
    pub w: Tensor,
    pub bias: Option<Tensor>,
    /// The weight and the `groups` of each consumer, in `fan.consumers` order.
    pub consumer_w: Vec<Tensor>,
    pub consumer_groups: Vec<usize>,
    /// Per consumer: the constant `a_j` it sees for neuron `j`, if any.
    pub seen: Vec<Vec<Option<f32>>>,
    /// Per value in `fan.others`: the constant each neuron carries there (the scatter's fill).
    pub fills: Vec<Vec<Option<f32>>>,
    /// Per consumer: whether it is a zero-padded conv.
    pub padded: Vec<bool>,
    /// Per consumer: its border map, where it takes the removed constants as one.
    pub maps: Vec<Option<BorderMap>>,
    /// The neurons that go, and those that stay (in order).
    pub remove: BTreeSet<usize>,
    pub keep: Vec<usize>,
    /// How many of `remove` go because every outgoing weight is zero (the others are constant).
    pub unused: usize,
}

/// A plan, or why there is none; with a remark on neurons kept for a reason worth telling,
/// and that reason in a few words with the number of neurons kept, for the statistics table.
pub struct Decision {
    pub plan: Result<Plan, MatchFailure>,
    pub remark: Option<Diagnostic>,
    pub kept: Option<(usize, &'static str)>,
}

/// A remark and its short form, filled in while planning.
#[derive(Default)]
struct Why {
    remark: Option<Diagnostic>,
    kept: Option<(usize, &'static str)>,
}

/// Plans the elimination of the constant or ignored neurons of `op` (an `nn.linear` or an
/// `nn.conv2d`; a grouped one loses the same number of filters from every group).
pub fn plan(f: &Function, op: OpId, analysis: &ConstAnalysis, residual: Residual) -> Decision {
    let mut why = Why::default();
    let plan = plan_with_remark(f, op, analysis, residual, &mut why);
    Decision {
        plan,
        remark: why.remark,
        kept: why.kept,
    }
}

fn plan_with_remark(
    f: &Function,
    op: OpId,
    analysis: &ConstAnalysis,
    residual: Residual,
    why: &mut Why,
) -> Result<Plan, MatchFailure> {
    let zero_threshold = analysis.zero_threshold();
    let data = f.op(op);
    let tag = data.tag();
    let r = data.result().ok_or(MatchFailure("no result"))?;
    let own_groups = match data.kind {
        OpKind::Conv2d { groups, .. } => groups as usize,
        _ => 1,
    };
    let ins = data.operands().to_vec();
    let w = f
        .constant_of(ins[1])
        .cloned()
        .ok_or(MatchFailure("the weights are not constant"))?;
    let bias = match ins.get(2) {
        Some(&b) => Some(
            f.constant_of(b)
                .cloned()
                .ok_or(MatchFailure("the bias is not constant"))?,
        ),
        None => None,
    };
    let n = w.shape()[0] as usize;
    let axis = if tag == OpTag::Linear {
        f.ty(r).rank() - 1
    } else {
        1
    };
    let facts = analysis.facts(r);
    let constant: Vec<bool> = (0..n)
        .map(|j| facts.is_some_and(|fx| fx.constant(j).is_some()))
        .collect();
    let fan = fanout(f, r, axis);
    ensure(
        !fan.consumers.is_empty() || !fan.others.is_empty(),
        "the result is unused",
    )?;
    if residual == Residual::Keep && !fan.others.is_empty() {
        let dead = constant.iter().filter(|&&c| c).count();
        why.kept = (dead > 0).then_some((dead, "residual=keep"));
        return Err(MatchFailure(
            "residual=keep, and the result reaches an op that is not a weighted consumer",
        ));
    }
    let consumer_w: Vec<Tensor> = fan
        .consumers
        .iter()
        .map(|&(c, _)| {
            f.constant_of(f.op(c).operands()[1])
                .cloned()
                .expect("checked in fanout")
        })
        .collect();
    // a_j as each consumer sees it.
    let seen: Vec<Vec<Option<f32>>> = fan
        .consumers
        .iter()
        .map(|&(c, site)| {
            let x = f.op(c).operands()[0];
            let fx = analysis.facts(x);
            (0..n)
                .map(|j| fx.and_then(|fx| fx.constant(j * site.scale)))
                .collect()
        })
        .collect();
    let consumer_groups: Vec<usize> = fan
        .consumers
        .iter()
        .map(|&(c, _)| match f.kind(c) {
            OpKind::Conv2d { groups, .. } => *groups as usize,
            _ => 1,
        })
        .collect();
    let padded: Vec<bool> = fan
        .consumers
        .iter()
        .map(|&(c, _)| matches!(f.kind(c), OpKind::Conv2d { pads, .. } if pads.iter().any(|&p| p > 0)))
        .collect();
    // The constant each scattered value carries.
    // A channel that no op reads there (backward liveness through element-wise ops,
    // `liveness.rs`) can be restored with any fill: 0.
    let mut liveness = Liveness::new(f, zero_threshold);
    let fills: Vec<Vec<Option<f32>>> = fan
        .others
        .iter()
        .map(|&(v, site)| {
            let fx = analysis.facts(v);
            let known: Vec<Option<f32>> = (0..n)
                .map(|j| fx.and_then(|fx| fx.constant(j * site.scale)))
                .collect();
            if site.scale != 1 || known.iter().all(Option::is_some) {
                return known;
            }
            let unread = liveness.unread(v, site.axis, n);
            known
                .iter()
                .zip(unread)
                .map(|(&c, u)| c.or(u.then_some(0.0)))
                .collect()
        })
        .collect();
    // A zero-padded consumer with static spatial sizes can take a non-zero constant as a
    // per-position bias map (`nn.add` of `[C_out, OH, OW]`) instead.
    let maps: Vec<Option<BorderMap>> = fan
        .consumers
        .iter()
        .zip(&padded)
        .map(|(&(c, _), &p)| p.then(|| BorderMap::of(f, c)).flatten())
        .collect();
    let choose = |map_allowed: &[bool]| {
        let mut remove: BTreeSet<usize> = BTreeSet::new();
        let mut unused: BTreeSet<usize> = BTreeSet::new();
        let mut border_kept = 0;
        for j in 0..n {
            let scatterable = fills.iter().all(|fill| fill[j].is_some());
            let ignored = consumer_w
                .iter()
                .zip(&fan.consumers)
                .zip(&consumer_groups)
                .all(|((cw, (_, site)), &g)| {
                    site.positions(&[j])
                        .into_iter()
                        .all(|p| column_is_zero(cw, g, p, zero_threshold))
                });
            let foldable = (0..fan.consumers.len()).all(|c| match seen[c][j] {
                Some(a) => !padded[c] || a == 0.0 || map_allowed[c],
                None => false,
            });
            if scatterable && (ignored || foldable) {
                remove.insert(j);
                // A neuron that also reaches other uses is restored there as a constant,
                // unless no op reads it there (then it is not constant, and unused).
                let unread = !constant[j];
                if ignored && (unread || fan.others.is_empty() && !fan.consumers.is_empty()) {
                    unused.insert(j);
                }
            } else if constant[j] && scatterable && (0..fan.consumers.len()).any(|c| padded[c]) {
                border_kept += 1;
            }
        }
        (remove, unused, border_kept)
    };
    let mut map_allowed: Vec<bool> = maps.iter().map(Option::is_some).collect();
    let (mut remove, mut unused, mut border_kept) = choose(&map_allowed);
    // A map larger than the weights the removal saves is not a saving: keep those neurons.
    let row_size = w.len() / n.max(1);
    // The weights of one input column of each consumer (the filters of one group read it).
    let column_sizes: Vec<usize> = consumer_w
        .iter()
        .zip(&consumer_groups)
        .map(|(cw, &g)| cw.len() / (cw.shape()[1] as usize * g).max(1))
        .collect();
    let saved: usize = remove.len() * (row_size + column_sizes.iter().sum::<usize>());
    let mut recheck = false;
    for (c, m) in maps.iter().enumerate() {
        let needs_map = remove
            .iter()
            .any(|&j| padded[c] && seen[c][j].is_some_and(|a| a != 0.0));
        if let Some(m) = m.as_ref().filter(|_| needs_map) {
            if m.size() > saved {
                map_allowed[c] = false;
                recheck = true;
            }
        }
    }
    if recheck {
        (remove, unused, border_kept) = choose(&map_allowed);
    }
    if border_kept > 0 {
        why.kept = Some((border_kept, "zero-padded border"));
        why.remark = Some(
            Diagnostic::remark(format!(
                "kept {border_kept} constant neuron(s) of '{}': a zero-padded conv sees a non-zero constant only inside the image ({})",
                tag.mnemonic(),
                if padded.iter().zip(&maps).any(|(&p, m)| p && m.is_none()) {
                    "its spatial size is not static, so no per-position bias map can replace it"
                } else {
                    "its per-position bias map would be larger than the weights removed"
                }
            ))
            .at(f.span(op)),
        );
    }
    // Keep one channel so that no tensor gets an empty axis.
    if remove.len() == n {
        remove.pop_first();
        why.kept = Some((1, "last channel"));
    }
    // Grouped convs (this one, or a consumer) keep equal groups; trimming for one grouping
    // cannot unbalance another that was balanced, but may leave it with less to trim, so
    // repeat until none trims.
    let groupings: Vec<(usize, usize)> = std::iter::once((own_groups, n / own_groups.max(1)))
        .chain(
            consumer_groups
                .iter()
                .zip(&consumer_w)
                .map(|(&g, cw)| (g, cw.shape()[1] as usize)),
        )
        .filter(|&(g, _)| g > 1)
        .collect();
    let mut unbalanced = 0;
    loop {
        let trimmed: usize = groupings
            .iter()
            .map(|&(g, block)| balance(&mut remove, g, block))
            .sum();
        if trimmed == 0 {
            break;
        }
        unbalanced += trimmed;
    }
    if unbalanced > 0 {
        why.kept = Some((unbalanced, "equal groups"));
    }
    ensure(!remove.is_empty(), "no neuron can be removed")?;
    if residual == Residual::Auto && !fan.others.is_empty() {
        let layer = Layer {
            result: r,
            axis,
            neurons: n,
            row_size,
            fan: &fan,
            column_sizes: &column_sizes,
        };
        let (saved, copied) = scatter_tradeoff(f, &layer, remove.len());
        if saved <= copied {
            why.kept = Some((remove.len(), "residual=auto: scatters cost more"));
            why.remark = Some(
                Diagnostic::remark(format!(
                    "kept {} constant neuron(s) of '{}': residual=auto: removing them saves {saved} MACs per sample, restoring them with nn.scatter copies {copied} elements",
                    remove.len(),
                    tag.mnemonic()
                ))
                .at(f.span(op)),
            );
            return Err(MatchFailure(
                "residual=auto: the scatters would copy more than the removal saves",
            ));
        }
    }
    let keep: Vec<usize> = (0..n).filter(|j| !remove.contains(j)).collect();
    let unused = remove.intersection(&unused).count();
    Ok(Plan {
        neurons: n,
        axis,
        fan,
        w,
        bias,
        consumer_w,
        consumer_groups,
        seen,
        fills,
        padded,
        maps,
        remove,
        keep,
        unused,
    })
}
