//! Dead-neuron elimination with bias hoisting.
//!
//! A neuron `j` of a weighted producer P (`nn.linear` row, `nn.conv2d` filter) can go when
//! - it is *constant* (fan-in dead: the analysis proves its output is `a_j` after the
//!   activations between P and its consumers), or
//! - it is *ignored* (fan-out dead: column `j` of every consumer's weight is zero).
//!
//! Removing it drops row `j` of P and column `j` of every consumer C, after folding its
//! contribution into C's bias: `b'_k = b_k + Σ_window W_C[k, j, ...] · a_j`.

use crate::diag::Diagnostic;
use crate::ir::rewriter::Rewriter;
use crate::ir::{Dim, Function, OpId, OpKind, OpTag, Tensor, ValueId};
use std::collections::BTreeSet;

use super::analysis::is_zero;
use super::greedy::{Pattern, PatternCx};

/// `P → act* → {C | other}` with `P ∈ {linear, conv2d}`: drop constant or ignored neurons of P.
/// Weighted consumers C of the same layout absorb the change (column dropped, constant folded
/// into the bias); every other use gets `nn.scatter` that restores the full length with the
/// constants, which is how residual adds, concats and function results stay exact.
pub struct DeadNeuronElimination {
    pub residual: super::Residual,
}

/// Where P's channels sit in a value: along `axis`, channel `j` at positions
/// `j·scale .. (j+1)·scale` (`scale` > 1 after `nn.flatten` turned each channel into H·W
/// features).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Site {
    axis: usize,
    scale: usize,
}

impl Site {
    /// The positions of channels `keep`, in order.
    fn positions(self, keep: &[usize]) -> Vec<usize> {
        keep.iter()
            .flat_map(|&j| j * self.scale..(j + 1) * self.scale)
            .collect()
    }
}

/// Where P's result goes: the per-channel ops on the way (with where the channels sit in their
/// results), the weighted consumers (with where the channels sit in their input), and the
/// values other ops use (each gets a scatter).
struct Fanout {
    chain: Vec<(OpId, Site)>,
    consumers: Vec<(OpId, Site)>,
    others: Vec<(ValueId, Site)>,
}

/// The channel axis of `op`'s result when `op` treats the channels of its operand (at `axis`)
/// independently, so that dropping a channel of the operand drops the same channel of the
/// result: unary activations, pools, `nn.global_avg_pool`, `nn.mean` over other axes,
/// `nn.flatten` of `[N, C, 1, 1, ...]` at axis 1, and depthwise `nn.conv2d` (`groups` = input
/// channels = filters) with constant parameters.
pub fn per_channel_axis(f: &Function, op: OpId, axis: usize) -> Option<usize> {
    let data = f.op(op);
    let kind = &data.kind;
    let x = f.ty(*data.operands().first()?);
    match kind {
        k if k.tag().is_elementwise_unary() => Some(axis),
        OpKind::GlobalAvgPool | OpKind::MaxPool2d(_) | OpKind::AvgPool2d { .. } => {
            (axis == 1).then_some(1)
        }
        OpKind::Mean { axes, keepdims } => {
            let axes: Option<Vec<usize>> = axes
                .iter()
                .map(|&a| crate::ir::infer::norm_axis(a, x.rank()).ok())
                .collect();
            let axes = axes?;
            if axes.contains(&axis) {
                return None;
            }
            Some(if *keepdims {
                axis
            } else {
                axis - axes.iter().filter(|&&a| a < axis).count()
            })
        }
        // Depthwise (one filter per channel) with constant parameters: channel j of the result
        // reads only channel j, so both go together.
        OpKind::Conv2d { groups, .. } => {
            let w = f.constant_of(*data.operands().get(1)?)?;
            let params = data.operands()[2..]
                .iter()
                .all(|&b| f.constant_of(b).is_some());
            let depthwise = x.dim(1).as_static() == Some(*groups) && w.shape()[0] == *groups;
            (axis == 1 && params && depthwise && *groups > 1).then_some(1)
        }
        OpKind::Flatten { axis: 1 } => {
            let fixed = x.dims[2..].iter().all(|d| d.as_static().is_some());
            (axis == 1 && fixed).then_some(1)
        }
        _ => None,
    }
}

/// How many result positions one channel of `op`'s operand becomes: H·W for `nn.flatten` at
/// axis 1 of `[N, C, H, W]`, else 1.
pub fn channel_scale(f: &Function, op: OpId) -> usize {
    match f.kind(op) {
        OpKind::Flatten { axis: 1 } => f.ty(f.op(op).operands()[0]).dims[2..]
            .iter()
            .map(|d| d.as_static().unwrap_or(1) as usize)
            .product(),
        _ => 1,
    }
}

/// Follows P's result (channels at `axis`) through per-channel ops to the ops that end each
/// path.
fn fanout(f: &Function, r: ValueId, axis: usize) -> Fanout {
    let mut out = Fanout {
        chain: Vec::new(),
        consumers: Vec::new(),
        others: Vec::new(),
    };
    let mut stack = vec![(r, Site { axis, scale: 1 })];
    while let Some((v, site)) = stack.pop() {
        let axis = site.axis;
        for u in f.uses(v) {
            if let Some(next) = per_channel_axis(f, u.op, axis).filter(|_| u.index == 0) {
                if !out.chain.iter().any(|c| c.0 == u.op) {
                    let next = Site {
                        axis: next,
                        scale: site.scale * channel_scale(f, u.op),
                    };
                    out.chain.push((u.op, next));
                    stack.extend(f.op(u.op).result().map(|r| (r, next)));
                }
                continue;
            }
            let kind = f.kind(u.op);
            let in_rank = f.ty(v).rank();
            // The consumer's input features must be the channels: the last axis of a linear's
            // input, axis 1 of an ungrouped conv's.
            let features = match kind {
                OpKind::Conv2d { groups, .. } => *groups == 1 && axis == 1 && site.scale == 1,
                OpKind::Linear => axis + 1 == in_rank,
                _ => false,
            };
            let constant_params = f.op(u.op).operands()[1..]
                .iter()
                .all(|&p| f.constant_of(p).is_some());
            // Only the data operand, and only once: `linear %a, %a` is not a consumer.
            let data_only = f.op(u.op).operands()[1..].iter().all(|&p| p != v);
            if u.index == 0 && features && constant_params && data_only {
                if !out.consumers.iter().any(|c| c.0 == u.op) {
                    out.consumers.push((u.op, site));
                }
            } else if !out.others.iter().any(|o| o.0 == v) {
                out.others.push((v, site));
            }
        }
    }
    out
}

/// The geometry of a zero-padded `nn.conv2d` with static spatial sizes, for the per-position
/// bias map that replaces constant input channels: input channel `j` constant `a` adds
/// `a · Σ_{taps inside the image} W[k, j, r, c]` at output `(k, oh, ow)`.
struct BorderMap {
    c_out: usize,
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
    strides: [usize; 2],
    pads: [usize; 2],
    dilations: [usize; 2],
}

impl BorderMap {
    fn of(f: &Function, conv: OpId) -> Option<BorderMap> {
        let OpKind::Conv2d {
            strides,
            pads,
            dilations,
            ..
        } = f.kind(conv)
        else {
            return None;
        };
        let x = f.ty(f.op(conv).operands()[0]);
        let y = f.ty(f.op(conv).result()?);
        let dim = |t: &crate::ir::TensorType, i: usize| t.dim(i).as_static().map(|d| d as usize);
        Some(BorderMap {
            c_out: dim(y, 1)?,
            h: dim(x, 2)?,
            w: dim(x, 3)?,
            oh: dim(y, 2)?,
            ow: dim(y, 3)?,
            strides: strides.map(|s| s as usize),
            pads: [pads[0] as usize, pads[1] as usize],
            dilations: dilations.map(|d| d as usize),
        })
    }

    fn size(&self) -> usize {
        self.c_out * self.oh * self.ow
    }

    /// `M[k, oh, ow] = Σ_j a_j Σ_{(r, c) inside} W[k, j, r, c]` for `(positions [j], a_j)`.
    ///
    /// Which taps are inside depends only on the output row's and column's distance to the
    /// border, so positions fall into a few classes (all interior positions are one): each
    /// class's value is computed once per output channel and copied to its positions. The
    /// additions happen in the same order as a per-position sum, so the map is the same bit
    /// for bit; summing per position cost C_out·OH·OW·KH·KW per constant channel, most of the
    /// pruning time of a ResNet-50.
    fn values(&self, w: &Tensor, absorbed: &[(Vec<usize>, f32)]) -> Vec<f32> {
        let s = w.shape();
        let (cin, kh, kw) = (s[1] as usize, s[2] as usize, s[3] as usize);
        // The inside-taps mask of every output row (column), deduplicated into classes.
        let classes = |outs: usize, taps: usize, axis: usize, len: usize| {
            let mut masks: Vec<Vec<bool>> = Vec::new();
            let ids: Vec<usize> = (0..outs)
                .map(|o| {
                    let mask: Vec<bool> = (0..taps)
                        .map(|t| {
                            let p = (o * self.strides[axis] + t * self.dilations[axis]) as i64
                                - self.pads[axis] as i64;
                            (0..len as i64).contains(&p)
                        })
                        .collect();
                    masks.iter().position(|m| *m == mask).unwrap_or_else(|| {
                        masks.push(mask);
                        masks.len() - 1
                    })
                })
                .collect();
            (ids, masks)
        };
        let (row_ids, row_masks) = classes(self.oh, kh, 0, self.h);
        let (col_ids, col_masks) = classes(self.ow, kw, 1, self.w);
        let nc = col_masks.len();
        let mut class_value = vec![0.0f32; row_masks.len() * nc];
        let mut m = vec![0.0f32; self.size()];
        for k in 0..self.c_out {
            class_value.fill(0.0);
            for (positions, a) in absorbed {
                for &j in positions {
                    let taps = w.f32_slice((k * cin + j) * kh * kw..(k * cin + j + 1) * kh * kw);
                    for (ri, rm) in row_masks.iter().enumerate() {
                        for (ci, cm) in col_masks.iter().enumerate() {
                            let mut sum = 0.0f32;
                            for r in (0..kh).filter(|&r| rm[r]) {
                                for c in (0..kw).filter(|&c| cm[c]) {
                                    sum += taps[r * kw + c];
                                }
                            }
                            class_value[ri * nc + ci] += sum * a;
                        }
                    }
                }
            }
            let plane = &mut m[k * self.oh * self.ow..(k + 1) * self.oh * self.ow];
            for (oh, row) in plane.chunks_exact_mut(self.ow).enumerate() {
                let base = row_ids[oh] * nc;
                for (v, &ci) in row.iter_mut().zip(&col_ids) {
                    *v = class_value[base + ci];
                }
            }
        }
        m
    }
}

/// `b_k += Σ_{cols} W[k, p, ...] · a` for each `(positions p, a)` in `absorbed` (the
/// kernel window summed per position): the contribution of constant input columns about to be
/// dropped from `W`, accumulated in f64 and rounded once into `b_k`. When many columns go,
/// the constants become one coefficient per row element (0 elsewhere) and each row one
/// contiguous dot product read in place (a gather per absorbed column was a fifth of pruning
/// a large MLP); when few go, only their elements are read. Returns whether any `b_k` changed.
pub(super) fn absorb_columns(w: &Tensor, absorbed: &[(Vec<usize>, f32)], b: &mut [f32]) -> bool {
    let s = w.shape();
    let window: usize = s[2..].iter().product::<u64>() as usize;
    let row_len = s[1] as usize * window;
    let count: usize = absorbed.iter().map(|(p, _)| p.len()).sum::<usize>() * window;
    // Few absorbed columns (a ResNet block losing a filter or two): read just those elements;
    // many (half a layer): one dense dot product per row beats a gather per column.
    let sparse = count * 8 < row_len;
    let mut coef = Vec::new();
    if !sparse {
        coef = vec![0f64; row_len];
        for (positions, a) in absorbed {
            for &p in positions {
                coef[p * window..(p + 1) * window].fill(*a as f64);
            }
        }
    }
    let mut touched = false;
    for (k, bk) in b.iter_mut().enumerate() {
        let base = k * row_len;
        let mut dot = 0f64;
        if sparse {
            for (positions, a) in absorbed {
                for &p in positions {
                    let taps = (0..window).map(|t| w.get(base + p * window + t) as f64);
                    dot += taps.sum::<f64>() * *a as f64;
                }
            }
        } else {
            let mut at = 0;
            w.for_each_f32_chunk(base..base + row_len, |c| {
                dot += dot_f64(c, &coef[at..at + c.len()]);
                at += c.len();
            });
        }
        if dot != 0.0 {
            *bk = (*bk as f64 + dot) as f32;
            touched = true;
        }
    }
    touched
}

/// `Σ x_i·a_i` in f64 with eight independent accumulators, so that it vectorizes (a single
/// running sum is a serial dependency chain).
fn dot_f64(x: &[f32], a: &[f64]) -> f64 {
    let mut acc = [0f64; 8];
    let (xc, ac) = (x.chunks_exact(8), a.chunks_exact(8));
    let tail: f64 = xc
        .remainder()
        .iter()
        .zip(ac.remainder())
        .map(|(&x, &a)| x as f64 * a)
        .sum();
    for (xs, as_) in xc.zip(ac) {
        for l in 0..8 {
            acc[l] += xs[l] as f64 * as_[l];
        }
    }
    acc.iter().sum::<f64>() + tail
}

/// The positions per sample at which a value of type `ty` holds each channel of `axis`: the
/// static sizes of the axes other than the batch (axis 0) and `axis` (a dynamic size counts 1).
fn positions(ty: &crate::ir::TensorType, axis: usize) -> u64 {
    ty.dims
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 0 && i != axis)
        .map(|(_, d)| d.as_static().unwrap_or(1))
        .product()
}

fn column_is_zero(w: &Tensor, j: usize, threshold: f32) -> bool {
    let s = w.shape();
    let window: usize = s[2..].iter().product::<u64>() as usize;
    (0..s[0] as usize).all(|k| {
        let base = (k * s[1] as usize + j) * window;
        (base..base + window).all(|i| is_zero(w.get(i), threshold))
    })
}

impl Pattern for DeadNeuronElimination {
    fn name(&self) -> &'static str {
        "dead-neuron-elimination"
    }

    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Linear, OpTag::Conv2d])
    }

    fn uses_analysis(&self) -> bool {
        true
    }

    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PatternCx) -> bool {
        let f = rw.func();
        let data = f.op(op);
        let tag = data.tag();
        let Some(r) = data.result() else { return false };
        if let OpKind::Conv2d { groups, .. } = data.kind {
            if groups != 1 {
                return false;
            }
        }
        let ins = data.operands().to_vec();
        let Some(w) = f.constant_of(ins[1]).cloned() else {
            return false;
        };
        let bias = match ins.get(2) {
            Some(&b) => match f.constant_of(b) {
                Some(t) => Some(t.clone()),
                None => return false,
            },
            None => None,
        };
        let n = w.shape()[0] as usize;
        let axis = if tag == OpTag::Linear {
            f.ty(r).rank() - 1
        } else {
            1
        };
        let facts = cx.analysis.facts(r);
        let constant: Vec<bool> = (0..n)
            .map(|j| facts.is_some_and(|fx| fx.constant(j).is_some()))
            .collect();
        let fan = fanout(f, r, axis);
        if fan.consumers.is_empty() && fan.others.is_empty() {
            return false;
        }
        if self.residual == super::Residual::Keep && !fan.others.is_empty() {
            return false;
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
                let fx = cx.analysis.facts(x);
                (0..n)
                    .map(|j| fx.and_then(|fx| fx.constant(j * site.scale)))
                    .collect()
            })
            .collect();
        let padded: Vec<bool> = fan
            .consumers
            .iter()
            .map(|&(c, _)| matches!(f.kind(c), OpKind::Conv2d { pads, .. } if pads.iter().any(|&p| p > 0)))
            .collect();
        // The constant each scattered value carries.
        let fills: Vec<Vec<Option<f32>>> = fan
            .others
            .iter()
            .map(|&(v, site)| {
                let fx = cx.analysis.facts(v);
                (0..n)
                    .map(|j| fx.and_then(|fx| fx.constant(j * site.scale)))
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
            let mut border_kept = 0;
            for j in 0..n {
                let scatterable = fills.iter().all(|fill| fill[j].is_some());
                let ignored = consumer_w
                    .iter()
                    .zip(&fan.consumers)
                    .all(|(cw, (_, site))| {
                        site.positions(&[j])
                            .into_iter()
                            .all(|p| column_is_zero(cw, p, cx.threshold))
                    });
                let foldable = (0..fan.consumers.len()).all(|c| match seen[c][j] {
                    Some(a) => !padded[c] || a == 0.0 || map_allowed[c],
                    None => false,
                });
                if scatterable && (ignored || foldable) {
                    remove.insert(j);
                } else if constant[j] && scatterable && (0..fan.consumers.len()).any(|c| padded[c])
                {
                    border_kept += 1;
                }
            }
            (remove, border_kept)
        };
        let mut map_allowed: Vec<bool> = maps.iter().map(Option::is_some).collect();
        let (mut remove, mut border_kept) = choose(&map_allowed);
        // A map larger than the weights the removal saves is not a saving: keep those neurons.
        let row_size = w.len() / n.max(1);
        // The weights of one input column of each consumer.
        let column_sizes: Vec<usize> = consumer_w
            .iter()
            .map(|cw| cw.len() / cw.shape()[1].max(1) as usize)
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
            (remove, border_kept) = choose(&map_allowed);
        }
        if border_kept > 0 {
            cx.pass.keep_remark(
                op,
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
        }
        if remove.is_empty() {
            return false;
        }
        if self.residual == super::Residual::Auto && !fan.others.is_empty() {
            // saved = |remove| · (row · producer positions + Σ column · consumer positions);
            // copied = Σ scattered elements.
            let f = rw.func();
            let saved = remove.len() as u64
                * (row_size as u64 * positions(f.ty(r), axis)
                    + fan
                        .consumers
                        .iter()
                        .zip(&column_sizes)
                        .map(|(&(c, _), &column)| {
                            let out = f.op(c).result().expect("a weighted op has a result");
                            let channels = match f.kind(c) {
                                OpKind::Conv2d { .. } => 1,
                                _ => f.ty(out).rank() - 1,
                            };
                            column as u64 * positions(f.ty(out), channels)
                        })
                        .sum::<u64>());
            let copied: u64 = fan
                .others
                .iter()
                .map(|&(v, site)| (n * site.scale) as u64 * positions(f.ty(v), site.axis))
                .sum();
            if saved <= copied {
                cx.pass.keep_remark(
                    op,
                    Diagnostic::remark(format!(
                        "kept {} constant neuron(s) of '{}': residual=auto: removing them saves {saved} MACs per sample, restoring them with nn.scatter copies {copied} elements",
                        remove.len(),
                        tag.mnemonic()
                    ))
                    .at(f.span(op)),
                );
                return false;
            }
        }
        let keep: Vec<usize> = (0..n).filter(|j| !remove.contains(j)).collect();

        // Other uses: restore the full length with the constants.
        for (&(v, site), fill) in fan.others.iter().zip(&fills) {
            let f = rw.func();
            let full = f.ty(v).clone();
            let uses: Vec<_> = f
                .uses(v)
                .iter()
                .copied()
                .filter(|u| {
                    !fan.chain.iter().any(|c| c.0 == u.op)
                        && !fan.consumers.iter().any(|c| c.0 == u.op)
                })
                .collect();
            let anchor = f
                .producer(v)
                .and_then(|p| f.next_op(p))
                .expect("a result is followed by at least the terminator");
            let scatter = OpKind::Scatter {
                axis: site.axis as i64,
                indices: site
                    .positions(&keep)
                    .into_iter()
                    .map(|k| k as u64)
                    .collect(),
                size: (n * site.scale) as u64,
                fill: fill
                    .iter()
                    .flat_map(|c| std::iter::repeat_n(c.unwrap_or(0.0), site.scale))
                    .collect(),
            };
            let s = rw.insert_before(anchor, scatter, &[v], full);
            for u in uses {
                rw.set_operand(u.op, u.index as usize, s);
            }
            cx.pass.count("scatters inserted", 1);
        }

        // Consumers: fold a_j into the bias, then drop column j.
        let mut biases_updated = 0;
        for (c_idx, &(c, site)) in fan.consumers.iter().enumerate() {
            let f = rw.func();
            let c_ops = f.op(c).operands().to_vec();
            let cw = &consumer_w[c_idx];
            let out = cw.shape()[0] as usize;
            let old_b = c_ops.get(2).and_then(|&b| f.constant_of(b)).cloned();
            let mut b: Vec<f32> = old_b.as_ref().map_or(vec![0.0; out], Tensor::to_f32_vec);
            let absorbed: Vec<(Vec<usize>, f32)> = remove
                .iter()
                .filter_map(|&j| {
                    seen[c_idx][j]
                        .filter(|&a| a != 0.0)
                        .map(|a| (site.positions(&[j]), a))
                })
                .collect();
            // A zero-padded consumer sees the constants only inside the image: they go into a
            // per-position map added after it, not into its bias.
            let border = if padded[c_idx] && !absorbed.is_empty() {
                let m = maps[c_idx].as_ref().expect("chosen only with a map");
                Some(m.values(cw, &absorbed))
            } else {
                None
            };
            let touched = border.is_none() && absorb_columns(cw, &absorbed, &mut b);
            let new_w = rw.derived_constant_before(c, cw.take(1, &site.positions(&keep)), c_ops[1]);
            let mut operands = vec![c_ops[0], new_w];
            if touched || old_b.is_some() {
                let elem = old_b.as_ref().map_or(cw.elem(), Tensor::elem);
                let nb = if touched {
                    biases_updated += 1;
                    match c_ops.get(2) {
                        Some(&old) => rw.derived_constant_before(
                            c,
                            Tensor::from_f32(elem, vec![out as u64], &b),
                            old,
                        ),
                        None => rw.constant_before(c, Tensor::from_f32(elem, vec![out as u64], &b)),
                    }
                } else {
                    c_ops[2]
                };
                operands.push(nb);
            }
            rw.set_operands(c, &operands);
            if let Some(map) = border {
                let m = maps[c_idx].as_ref().expect("checked above");
                let f = rw.func();
                let r_c = f.op(c).result().expect("conv has a result");
                let ty = f.ty(r_c).clone();
                let anchor = f
                    .next_op(c)
                    .expect("a result is followed by at least the terminator");
                let shape = vec![m.c_out as u64, m.oh as u64, m.ow as u64];
                let map = rw.constant_before(anchor, Tensor::from_f32(cw.elem(), shape, &map));
                let add = rw.insert_before(anchor, OpKind::Add, &[r_c, map], ty);
                rw.replace_all_uses(r_c, add);
                let add_op = rw.func().producer(add).expect("just created");
                rw.set_operand(add_op, 0, r_c);
                cx.pass.count("border maps inserted", 1);
            }
        }
        // The producer: drop row j and bias entry j.
        let new_w = rw.derived_constant_before(op, w.take(0, &keep), ins[1]);
        let mut operands = vec![ins[0], new_w];
        if let Some(b) = &bias {
            operands.push(rw.derived_constant_before(op, b.take(0, &keep), ins[2]));
        }
        rw.set_operands(op, &operands);
        // Depthwise convs on the way lose the same filters, and one group each.
        for &(d, _) in &fan.chain {
            let f = rw.func();
            let OpKind::Conv2d {
                groups: _,
                strides,
                pads,
                dilations,
            } = f.kind(d).clone()
            else {
                continue;
            };
            let d_ins = f.op(d).operands().to_vec();
            let mut operands = vec![d_ins[0]];
            for &p in &d_ins[1..] {
                let t = rw
                    .func()
                    .constant_of(p)
                    .expect("checked in per_channel_axis")
                    .take(0, &keep);
                operands.push(rw.derived_constant_before(d, t, p));
            }
            rw.set_operands(d, &operands);
            let groups = keep.len() as u64;
            rw.set_kind(
                d,
                OpKind::Conv2d {
                    groups,
                    strides,
                    pads,
                    dilations,
                },
            );
        }
        let chain: Vec<(ValueId, Site)> = fan
            .chain
            .iter()
            .filter_map(|&(a, site)| rw.func().op(a).result().map(|v| (v, site)))
            .collect();
        for (v, site) in std::iter::once((r, Site { axis, scale: 1 })).chain(chain) {
            let width = Dim::Static((keep.len() * site.scale) as u64);
            let ty = rw.func().ty(v).with_dim(site.axis, width);
            rw.set_type(v, ty);
        }
        cx.pass.count("neurons removed", remove.len() as u64);
        cx.pass.count("biases updated", biases_updated);
        true
    }
}
