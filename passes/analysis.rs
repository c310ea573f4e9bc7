//! Forward per-channel constness analysis.
//!
//! Every value gets, when it has a channel axis the analysis understands, one lattice element
//! per channel: `Some(c)` = the channel is the constant `c` at every position and for every
//! input, `None` = unknown. (`Zero` is `Some(0.0)`.) Transfer functions *evaluate* ops on the
//! constants — `relu(b)`, `sigmoid(0) = 0.5`, batch norm, add/sub/mul — instead of assuming that
//! zero stays zero. Ops that mix channels or that the analysis does not model produce no facts:
//! they are barriers, and the pruner stays correct around them.
//!
//! `prune-neurons` reads it through its pattern context, which keeps it up to date after every
//! rewrite ([`ConstAnalysis::update`]).

use crate::ir::{Function, OpId, OpKind, Tensor, ValueId};
use cranelift_entity::SecondaryMap;
use std::collections::HashSet;
use std::rc::Rc;

/// The per-channel facts of one value.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelFacts {
    /// The channel axis: the last axis after `nn.linear`, axis 1 after `nn.conv2d`.
    pub axis: usize,
    /// One entry per channel.
    pub channels: Vec<Option<f32>>,
}

impl ChannelFacts {
    pub fn constant(&self, j: usize) -> Option<f32> {
        self.channels.get(j).copied().flatten()
    }
}

/// Facts for every value of a function, computed in one forward sweep.
pub struct ConstAnalysis {
    facts: SecondaryMap<ValueId, Option<Rc<ChannelFacts>>>,
    zero_threshold: f32,
}

/// A weight entry counts as zero when `|w| <= zero_threshold` (exactly zero by default).
pub fn is_zero(w: f32, zero_threshold: f32) -> bool {
    w.abs() <= zero_threshold
}

/// Whether every entry of `row` counts as zero. At the default threshold 0 this ORs the bit
/// patterns without the sign in chunks the compiler vectorizes (a NaN is never zero), since
/// dead rows of large layers are scanned in full.
pub fn all_zero(row: &[f32], zero_threshold: f32) -> bool {
    if zero_threshold == 0.0 {
        row.chunks(512)
            .all(|c| c.iter().fold(0u32, |acc, &t| acc | (t.to_bits() << 1)) == 0)
    } else {
        row.iter().all(|&t| is_zero(t, zero_threshold))
    }
}

/// Whether elements `rows` of `w` all count as zero, reading no further than the first that
/// does not: a live row is usually told apart by its first chunk.
fn rows_zero(w: &Tensor, rows: std::ops::Range<usize>, zero_threshold: f32) -> bool {
    let scan = w.try_for_each_f32_chunk(rows, |c| match all_zero(c, zero_threshold) {
        true => std::ops::ControlFlow::Continue(()),
        false => std::ops::ControlFlow::Break(()),
    });
    scan.is_continue()
}

/// Which rows (`axis` 0) or columns (`axis` 1) of the 2-D `w` count as zero, reading `w` in
/// memory order: a transposed view (an ONNX MatMul weight) is read through its source, whose
/// rows are its columns, since reading its own rows would touch one element per page. Rows stop
/// at their first non-zero chunk; a column scan stops once every column has shown a non-zero
/// entry.
pub fn zero_lines(w: &Tensor, axis: usize, zero_threshold: f32) -> Vec<bool> {
    if w.is_transposed() {
        return zero_lines(&w.transposed(), 1 - axis, zero_threshold);
    }
    let (rows, cols) = (w.shape()[0] as usize, w.shape()[1] as usize);
    if axis == 0 {
        return (0..rows)
            .map(|r| rows_zero(w, r * cols..(r + 1) * cols, zero_threshold))
            .collect();
    }
    let mut zero = vec![true; cols];
    let mut left = cols;
    for r in 0..rows {
        if left == 0 {
            break;
        }
        let mut at = 0;
        w.for_each_f32_chunk(r * cols..(r + 1) * cols, |c| {
            for (z, &x) in zero[at..at + c.len()].iter_mut().zip(c) {
                if *z && !is_zero(x, zero_threshold) {
                    *z = false;
                    left -= 1;
                }
            }
            at += c.len();
        });
    }
    zero
}

impl ConstAnalysis {
    /// The facts of every value of `f`, in one forward sweep.
    pub fn compute(f: &Function, zero_threshold: f32) -> ConstAnalysis {
        let mut a = ConstAnalysis {
            facts: SecondaryMap::with_capacity(f.value_capacity()),
            zero_threshold,
        };
        for op in f.ops() {
            a.recompute(f, op);
        }
        a
    }

    /// Brings the facts up to date after a rewrite touched `ops` (created or modified).
    ///
    /// Rewrites preserve what every value computes, so facts can only change at the touched
    /// ops (a channel dropped from a result, a scatter inserted); everything downstream keeps
    /// its facts. Touched ops are recomputed operands-first, which keeps an update as local as
    /// the rewrite instead of a sweep over the function.
    pub fn update(&mut self, f: &Function, ops: &[OpId]) {
        let touched: HashSet<OpId> = ops.iter().copied().filter(|&o| f.is_linked(o)).collect();
        let mut done: HashSet<OpId> = HashSet::new();
        for &op in ops {
            self.visit(f, op, &touched, &mut done);
        }
    }

    fn visit(&mut self, f: &Function, op: OpId, touched: &HashSet<OpId>, done: &mut HashSet<OpId>) {
        if !touched.contains(&op) || !done.insert(op) {
            return;
        }
        for &v in f.op(op).operands() {
            if let Some(p) = f.producer(v) {
                self.visit(f, p, touched, done);
            }
        }
        self.recompute(f, op);
    }

    fn recompute(&mut self, f: &Function, op: OpId) {
        let zero_threshold = self.zero_threshold;
        let facts = &mut self.facts;
        {
            let data = f.op(op);
            let Some(r) = data.result() else { return };
            let ins = data.operands();
            let fact_of = |v: ValueId| facts[v].clone();
            let out = match &data.kind {
                OpKind::Linear => {
                    let x = ins[0];
                    let axis = f.ty(x).rank().checked_sub(1);
                    let input = fact_of(x).filter(|fx| Some(fx.axis) == axis);
                    weighted(f, ins, input.as_deref(), zero_threshold, 1, None).map(|channels| {
                        ChannelFacts {
                            axis: f.ty(r).rank() - 1,
                            channels,
                        }
                    })
                }
                OpKind::Conv2d { pads, groups, .. } => {
                    let input = fact_of(ins[0]).filter(|fx| fx.axis == 1);
                    let padded = pads.iter().any(|&p| p > 0);
                    weighted(
                        f,
                        ins,
                        input.as_deref(),
                        zero_threshold,
                        *groups as usize,
                        Some(padded),
                    )
                    .map(|channels| ChannelFacts { axis: 1, channels })
                }
                k if k.tag().is_elementwise_unary() => fact_of(ins[0]).map(|fx| ChannelFacts {
                    axis: fx.axis,
                    channels: fx
                        .channels
                        .iter()
                        .map(|c| c.and_then(|c| k.eval_unary(c)))
                        .collect(),
                }),
                OpKind::BatchNorm { epsilon } => {
                    fact_of(ins[0]).filter(|fx| fx.axis == 1).and_then(|fx| {
                        let p: Option<Vec<Vec<f32>>> = ins[1..]
                            .iter()
                            .map(|&v| f.constant_of(v).map(Tensor::to_f32_vec))
                            .collect();
                        let p = p?;
                        let channels = fx
                            .channels
                            .iter()
                            .enumerate()
                            .map(|(j, c)| {
                                c.map(|c| {
                                    (c - p[2][j]) / (p[3][j] + epsilon).sqrt() * p[0][j] + p[1][j]
                                })
                            })
                            .collect();
                        Some(ChannelFacts { axis: 1, channels })
                    })
                }
                OpKind::Add | OpKind::Sub | OpKind::Mul => {
                    let (a, b) = (fact_of(ins[0]), fact_of(ins[1]));
                    match (a, b) {
                        (Some(a), Some(b))
                            if a.axis == b.axis
                                && a.channels.len() == b.channels.len()
                                && f.ty(ins[0]) == f.ty(ins[1]) =>
                        {
                            let channels = a
                                .channels
                                .iter()
                                .zip(&b.channels)
                                .map(|(x, y)| match (&data.kind, x, y) {
                                    // x·0 = 0 for finite x; NaN/inf never reach a multiply
                                    // with a known-zero operand in the networks we prune, and
                                    // the equivalence check would expose it.
                                    (OpKind::Mul, _, Some(z)) | (OpKind::Mul, Some(z), _)
                                        if *z == 0.0 =>
                                    {
                                        Some(0.0)
                                    }
                                    (OpKind::Add, Some(x), Some(y)) => Some(x + y),
                                    (OpKind::Sub, Some(x), Some(y)) => Some(x - y),
                                    (OpKind::Mul, Some(x), Some(y)) => Some(x * y),
                                    _ => None,
                                })
                                .collect();
                            Some(ChannelFacts {
                                axis: a.axis,
                                channels,
                            })
                        }
                        _ => None,
                    }
                }
                // Per-channel reductions and pools keep a constant channel constant, except
                // an average that counts zero padding (the border mixes in zeros).
                OpKind::AvgPool2d {
                    pool,
                    count_include_pad: true,
                } if pool.pads.iter().any(|&p| p > 0) => fact_of(ins[0]).map(|fx| ChannelFacts {
                    axis: fx.axis,
                    channels: fx
                        .channels
                        .iter()
                        .map(|c| c.filter(|&c| c == 0.0))
                        .collect(),
                }),
                OpKind::GlobalAvgPool
                | OpKind::MaxPool2d(_)
                | OpKind::AvgPool2d { .. }
                | OpKind::Mean { .. }
                | OpKind::Reshape { .. }
                | OpKind::Flatten { .. } => fact_of(ins[0]).and_then(|fx| {
                    let axis = super::channels::per_channel_axis(f, op, fx.axis)?;
                    // Flatten turns each channel into H·W features of the same constant.
                    let scale = super::channels::channel_scale(f, op);
                    Some(ChannelFacts {
                        axis,
                        channels: fx
                            .channels
                            .iter()
                            .flat_map(|&c| std::iter::repeat_n(c, scale))
                            .collect(),
                    })
                }),
                OpKind::Scatter {
                    axis,
                    indices,
                    size,
                    fill,
                } => crate::ir::infer::norm_axis(*axis, f.ty(r).rank())
                    .ok()
                    .map(|axis| {
                        let input = fact_of(ins[0]).filter(|fx| fx.axis == axis);
                        let mut channels: Vec<Option<f32>> =
                            fill.iter().map(|&c| Some(c)).collect();
                        for (k, &p) in indices.iter().enumerate() {
                            channels[p as usize] = input.as_ref().and_then(|fx| fx.constant(k));
                        }
                        debug_assert_eq!(channels.len() as u64, *size);
                        ChannelFacts { axis, channels }
                    }),
                OpKind::Gather { axis, indices } => {
                    let axis = crate::ir::infer::norm_axis(*axis, f.ty(r).rank()).ok();
                    fact_of(ins[0])
                        .filter(|fx| Some(fx.axis) == axis)
                        .map(|fx| ChannelFacts {
                            axis: fx.axis,
                            channels: indices.iter().map(|&p| fx.constant(p as usize)).collect(),
                        })
                }
                OpKind::Concat { axis } => {
                    let axis = crate::ir::infer::norm_axis(*axis, f.ty(r).rank()).ok();
                    let parts: Option<Vec<Vec<Option<f32>>>> = ins
                        .iter()
                        .map(|&v| {
                            let n = f.ty(v).dim(axis?).as_static()? as usize;
                            Some(match fact_of(v).filter(|fx| Some(fx.axis) == axis) {
                                Some(fx) => fx.channels.clone(),
                                None => vec![None; n],
                            })
                        })
                        .collect();
                    parts
                        .filter(|p| p.iter().flatten().any(Option::is_some))
                        .map(|p| ChannelFacts {
                            axis: axis.expect("checked above"),
                            channels: p.concat(),
                        })
                }
                _ => None,
            };
            facts[r] = out.map(Rc::new);
        }
    }

    /// The threshold under which a weight counts as zero.
    pub fn zero_threshold(&self) -> f32 {
        self.zero_threshold
    }

    pub fn facts(&self, v: ValueId) -> Option<&ChannelFacts> {
        self.facts[v].as_deref()
    }
}

/// Output-channel constants of a weighted op (linear: `ins = [x, W, b?]` with W `[out, in]`;
/// conv: W `[out, in/groups, kh, kw]`). Output `j` is constant when every weight that reads an
/// unknown input channel is zero; its value is `b_j + Σ_i c_i · Σ_window W[j, i, ...]`. A
/// constant input channel of a zero-padded conv is seen as `c_i` inside the image and 0 in the
/// border, so it only counts when `c_i == 0` (`padded = Some(true)`).
fn weighted(
    f: &Function,
    ins: &[ValueId],
    input: Option<&ChannelFacts>,
    zero_threshold: f32,
    groups: usize,
    padded: Option<bool>,
) -> Option<Vec<Option<f32>>> {
    let w = f.constant_of(ins[1])?;
    let shape = w.shape();
    let (out, per_group_in) = (shape[0] as usize, shape[1] as usize);
    let window: usize = shape[2..].iter().product::<u64>() as usize;
    let bias = match ins.get(2) {
        Some(&b) => Some(f.constant_of(b)?),
        None => None,
    };
    let out_per_group = out / groups.max(1);
    let row_len = per_group_in * window;
    let unknown_input = input.is_none_or(|fx| fx.channels.iter().all(Option::is_none));
    // With finite known inputs, an exactly-zero row adds nothing: Σ c_i·0 = 0.
    let finite_input = input.is_none_or(|fx| fx.channels.iter().flatten().all(|c| c.is_finite()));
    let mut channels = Vec::with_capacity(out);
    // A linear's weight may be a transposed view: its rows are best told apart all at once.
    let zero_rows = (unknown_input && shape.len() == 2).then(|| zero_lines(w, 0, zero_threshold));
    for j in 0..out {
        let g = j / out_per_group.max(1);
        let mut acc = bias.map_or(0.0, |b| b.get(j));
        let mut constant = true;
        let rows = j * row_len..(j + 1) * row_len;
        if unknown_input {
            // No input channel is known: the output is constant exactly when its row is zero.
            let zero = match &zero_rows {
                Some(z) => z[j],
                None => rows_zero(w, rows, zero_threshold),
            };
            channels.push(zero.then_some(acc));
            continue;
        }
        if zero_threshold == 0.0 && finite_input && rows_zero(w, rows.clone(), 0.0) {
            channels.push(Some(acc));
            continue;
        }
        for i in 0..per_group_in {
            let in_ch = g * per_group_in + i;
            let taps = rows.start + i * window..rows.start + (i + 1) * window;
            let c = input.and_then(|fx| fx.constant(in_ch));
            let usable = match (c, padded) {
                (Some(c), Some(true)) => (c == 0.0).then_some(c),
                (c, _) => c,
            };
            let (mut sum, mut zero) = (0f32, true);
            w.for_each_f32_chunk(taps, |t| {
                sum += t.iter().sum::<f32>();
                zero = zero && all_zero(t, zero_threshold);
            });
            match usable {
                Some(c) => acc += c * sum,
                None if zero => {}
                None => {
                    constant = false;
                    break;
                }
            }
        }
        channels.push(constant.then_some(acc));
    }
    Some(channels)
}
