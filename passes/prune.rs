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
pub struct DeadNeuronElimination;

/// Where P's result goes: the element-wise activations on the way, the weighted consumers, and
/// the values that other ops use (each gets a scatter).
struct Fanout {
    chain: Vec<OpId>,
    consumers: Vec<OpId>,
    others: Vec<ValueId>,
}

/// Follows P's result through unary element-wise ops to the ops that end each path.
fn fanout(f: &Function, r: ValueId, producer: OpTag) -> Fanout {
    let mut out = Fanout {
        chain: Vec::new(),
        consumers: Vec::new(),
        others: Vec::new(),
    };
    let mut stack = vec![r];
    while let Some(v) = stack.pop() {
        for u in f.uses(v) {
            let kind = f.kind(u.op);
            let tag = kind.tag();
            if tag.is_elementwise_unary() {
                if !out.chain.contains(&u.op) {
                    out.chain.push(u.op);
                    stack.extend(f.op(u.op).result());
                }
                continue;
            }
            let plain = match kind {
                OpKind::Conv2d { groups, .. } => *groups == 1,
                OpKind::Linear => true,
                _ => false,
            };
            let constant_params = f.op(u.op).operands()[1..]
                .iter()
                .all(|&p| f.constant_of(p).is_some());
            // Only the data operand, and only once: `linear %a, %a` is not a consumer.
            let data_only = f.op(u.op).operands()[1..].iter().all(|&p| p != v);
            if tag == producer && u.index == 0 && plain && constant_params && data_only {
                if !out.consumers.contains(&u.op) {
                    out.consumers.push(u.op);
                }
            } else if !out.others.contains(&v) {
                out.others.push(v);
            }
        }
    }
    out
}

/// `t` with only the positions `keep` of `axis` (bit-exact, same element type).
fn take(t: &Tensor, axis: usize, keep: &[usize]) -> Tensor {
    let shape = t.shape();
    let outer: usize = shape[..axis].iter().product::<u64>() as usize;
    let n = shape[axis] as usize;
    let inner: usize = shape[axis + 1..].iter().product::<u64>() as usize;
    let mut bits = Vec::with_capacity(outer * keep.len() * inner);
    for o in 0..outer {
        for &k in keep {
            let base = (o * n + k) * inner;
            bits.extend((base..base + inner).map(|i| t.bits(i)));
        }
    }
    let mut new_shape = shape.to_vec();
    new_shape[axis] = keep.len() as u64;
    Tensor::from_bits(t.elem(), new_shape, bits)
}

/// Sum over the kernel window of `W[k, j, ...]`.
fn column_sum(w: &Tensor, k: usize, j: usize) -> f32 {
    let s = w.shape();
    let window: usize = s[2..].iter().product::<u64>() as usize;
    let base = (k * s[1] as usize + j) * window;
    (base..base + window).map(|i| w.get(i)).sum()
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
        let fan = fanout(f, r, tag);
        if fan.consumers.is_empty() && fan.others.is_empty() {
            return false;
        }
        let consumer_w: Vec<Tensor> = fan
            .consumers
            .iter()
            .map(|&c| {
                f.constant_of(f.op(c).operands()[1])
                    .cloned()
                    .expect("checked in fanout")
            })
            .collect();
        // a_j as each consumer sees it.
        let seen: Vec<Vec<Option<f32>>> = fan
            .consumers
            .iter()
            .map(|&c| {
                let x = f.op(c).operands()[0];
                let fx = cx.analysis.facts(x);
                (0..n).map(|j| fx.and_then(|fx| fx.constant(j))).collect()
            })
            .collect();
        let padded: Vec<bool> = fan
            .consumers
            .iter()
            .map(|&c| matches!(f.kind(c), OpKind::Conv2d { pads, .. } if pads.iter().any(|&p| p > 0)))
            .collect();
        // The constant each scattered value carries.
        let fills: Vec<Vec<Option<f32>>> = fan
            .others
            .iter()
            .map(|&v| {
                let fx = cx.analysis.facts(v);
                (0..n).map(|j| fx.and_then(|fx| fx.constant(j))).collect()
            })
            .collect();
        let mut remove: BTreeSet<usize> = BTreeSet::new();
        let mut border_kept = 0;
        for j in 0..n {
            let scatterable = fills.iter().all(|fill| fill[j].is_some());
            let ignored = consumer_w
                .iter()
                .all(|cw| column_is_zero(cw, j, cx.threshold));
            let foldable = (0..fan.consumers.len()).all(|c| match seen[c][j] {
                Some(a) => !padded[c] || a == 0.0,
                None => false,
            });
            if scatterable && (ignored || foldable) {
                remove.insert(j);
            } else if constant[j] && scatterable && (0..fan.consumers.len()).any(|c| padded[c]) {
                border_kept += 1;
            }
        }
        if border_kept > 0 {
            cx.pass.keep_remark(
                op,
                Diagnostic::remark(format!(
                    "kept {border_kept} constant neuron(s) of '{}': a zero-padded conv sees a non-zero constant only inside the image (border correction not yet implemented)",
                    tag.mnemonic()
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
        let keep: Vec<usize> = (0..n).filter(|j| !remove.contains(j)).collect();

        // Other uses: restore the full length with the constants.
        for (v, fill) in fan.others.iter().zip(&fills) {
            let f = rw.func();
            let full = f.ty(*v).clone();
            let uses: Vec<_> = f
                .uses(*v)
                .iter()
                .copied()
                .filter(|u| !fan.chain.contains(&u.op) && !fan.consumers.contains(&u.op))
                .collect();
            let anchor = f
                .producer(*v)
                .and_then(|p| f.next_op(p))
                .expect("a result is followed by at least the terminator");
            let scatter = OpKind::Scatter {
                axis: axis as i64,
                indices: keep.iter().map(|&k| k as u64).collect(),
                size: n as u64,
                fill: fill.iter().map(|c| c.unwrap_or(0.0)).collect(),
            };
            let s = rw.insert_before(anchor, scatter, &[*v], full);
            for u in uses {
                rw.set_operand(u.op, u.index as usize, s);
            }
            cx.pass.count("scatters inserted", 1);
        }

        // Consumers: fold a_j into the bias, then drop column j.
        let mut biases_updated = 0;
        for (c_idx, &c) in fan.consumers.iter().enumerate() {
            let f = rw.func();
            let c_ops = f.op(c).operands().to_vec();
            let cw = &consumer_w[c_idx];
            let out = cw.shape()[0] as usize;
            let old_b = c_ops.get(2).and_then(|&b| f.constant_of(b)).cloned();
            let mut b: Vec<f32> = old_b.as_ref().map_or(vec![0.0; out], Tensor::to_f32_vec);
            let mut touched = false;
            for &j in &remove {
                if let Some(a) = seen[c_idx][j] {
                    if a != 0.0 {
                        for (k, bk) in b.iter_mut().enumerate() {
                            let s = column_sum(cw, k, j);
                            if s != 0.0 {
                                *bk += s * a;
                                touched = true;
                            }
                        }
                    }
                }
            }
            let new_w = rw.constant_before(c, take(cw, 1, &keep));
            let mut operands = vec![c_ops[0], new_w];
            if touched || old_b.is_some() {
                let elem = old_b.as_ref().map_or(cw.elem(), Tensor::elem);
                let nb = if touched {
                    biases_updated += 1;
                    rw.constant_before(c, Tensor::from_f32(elem, vec![out as u64], &b))
                } else {
                    c_ops[2]
                };
                operands.push(nb);
            }
            rw.set_operands(c, &operands);
        }
        // The producer: drop row j and bias entry j.
        let new_w = rw.constant_before(op, take(&w, 0, &keep));
        let mut operands = vec![ins[0], new_w];
        if let Some(b) = &bias {
            operands.push(rw.constant_before(op, take(b, 0, &keep)));
        }
        rw.set_operands(op, &operands);
        let width = Dim::Static(keep.len() as u64);
        let chain: Vec<ValueId> = fan
            .chain
            .iter()
            .filter_map(|&a| rw.func().op(a).result())
            .collect();
        for v in std::iter::once(r).chain(chain) {
            let ty = rw.func().ty(v).with_dim(axis, width);
            rw.set_type(v, ty);
        }
        cx.pass.count("neurons removed", remove.len() as u64);
        cx.pass.count("biases updated", biases_updated);
        true
    }
}
