//! The cost model of `residual=auto`: per layer, removing neurons that also reach a residual
//! add, concat or result pays only when the multiply-accumulates the removal saves exceed what
//! the `nn.scatter`s that restore them cost in the runtime (both per sample, in MACs).
//!
//! A scatter that canonicalization will fold away costs nothing: one that reaches, through
//! concats, activations and pools, only linears and ungrouped convs that read it as their
//! input features (`sink-scatter-through-concat`, `sink-scatter`, `fold-scatter-into-consumer`;
//! a zero-padded conv only when the fill is zero). Any other scatter stays in the output, where
//! the runtime pays (ONNX export: `Expand` + `Concat` + `Gather`, `onnx/export/scatter.rs`):
//! - every node's dispatch (`NODE_CYCLES`: kernel lookup, output allocation, shape checks),
//!   shared by the batch: 3 nodes, 3 more when the shape is dynamic (`Shape`, `Slice`,
//!   `Concat`), and 2 more on an NCHW activation, where the scatter is not one of onnxruntime's
//!   blocked-layout (NCHWc) ops and so breaks the run of them with a reorder out and back in;
//! - every element copied by each of those passes (one MAC-equivalent each: a copy streams
//!   as many lanes per cycle as a multiply-add);
//! - every contiguous run `Gather` and `Concat` copy at once (`RUN_CYCLES`: one copy call
//!   each): along the last axis (a linear's features) every element is its own run, which is
//!   what makes the transformers' scatters cost more than their removals save.
//!
//! Cycles become MACs at the runtime's conv throughput, two fused multiply-adds of `lanes` f32
//! per cycle (`prune-neurons{lanes=N}`; `--prune-neurons` passes the target's vector width for
//! ONNX output), so the model scales with the target instead of one machine's clock.

use super::fanout::{Fanout, Site};
use crate::ir::{Function, OpKind, TensorType, ValueId};
use crate::passes::canonicalize::sink_scatter_past_constant::uniform;
use std::collections::BTreeSet;

/// Cycles onnxruntime spends on a node besides its copies: about a microsecond at 3 GHz
/// (kernel dispatch, output allocation, shape inference and checks).
const NODE_CYCLES: u64 = 3000;
/// Cycles per contiguous run a `Gather` or `Concat` copies (a loop step and a copy call).
const RUN_CYCLES: u64 = 30;

/// A layer about to lose neurons, as the cost model sees it.
pub struct Layer<'a> {
    /// The producer's result and its channel axis.
    pub result: ValueId,
    pub axis: usize,
    /// The producer's neurons, and the weights of one (a row).
    pub neurons: usize,
    pub row_size: usize,
    pub fan: &'a Fanout,
    /// The weights of one input column of each consumer, in `fan.consumers` order.
    pub column_sizes: &'a [usize],
    /// Per value in `fan.others`: the constant each neuron carries there (the scatter's fill).
    pub fills: &'a [Vec<Option<f32>>],
}

/// `(saved, cost)` per sample, in MACs, when the neurons `remove` go and the runtime's vector
/// unit has `lanes` f32 lanes:
/// saved = removed · (row · producer positions + Σ column · consumer positions),
/// cost = Σ over the scatters that stay of their nodes, copies and runs (see the file header).
pub fn scatter_tradeoff(
    f: &Function,
    layer: &Layer,
    remove: &BTreeSet<usize>,
    lanes: usize,
) -> (u64, u64) {
    let saved = remove.len() as u64
        * (layer.row_size as u64 * positions(f.ty(layer.result), layer.axis)
            + layer
                .fan
                .consumers
                .iter()
                .zip(layer.column_sizes)
                .map(|(&(c, _), &column)| {
                    let out = f.op(c).result().expect("a weighted op has a result");
                    let channels = match f.kind(c) {
                        OpKind::Conv2d { .. } => 1,
                        _ => f.ty(out).rank() - 1,
                    };
                    column as u64 * positions(f.ty(out), channels)
                })
                .sum::<u64>());
    let cost = layer
        .fan
        .others
        .iter()
        .zip(layer.fills)
        .filter(|(&(v, site), fill)| {
            let zero = remove.iter().all(|&j| fill[j] == Some(0.0));
            !folds_away(f, v, site, remove, zero, &mut BTreeSet::new())
        })
        .map(|(&(v, site), _)| scatter_cost(f.ty(v), site, layer.neurons, lanes))
        .sum();
    (saved, cost)
}

/// What a scatter that stays costs the runtime per sample, in MACs: it restores `neurons`
/// channels (at `site`) of a value of type `ty` (see the file header).
pub fn scatter_cost(ty: &TensorType, site: Site, neurons: usize, lanes: usize) -> u64 {
    let macs_per_cycle = 2 * lanes.max(1) as u64;
    let elements = (neurons * site.scale) as u64 * positions(ty, site.axis);
    let run: u64 = ty.dims[site.axis + 1..]
        .iter()
        .map(|d| d.as_static().unwrap_or(1))
        .product();
    let runs = elements / run.max(1);
    let blocked = ty.rank() == 4 && site.axis == 1;
    let dynamic = ty.static_shape().is_none();
    let nodes = 3 + 3 * dynamic as u64 + 2 * blocked as u64;
    let passes = 3 + 2 * blocked as u64;
    let batch = ty.dims[0].as_static().unwrap_or(1).max(1);
    nodes * NODE_CYCLES * macs_per_cycle / batch
        + passes * elements
        + runs * RUN_CYCLES * macs_per_cycle
}

/// Whether a scatter of `v` (channels at `site`, dropping `remove`) will be folded away by
/// canonicalization: every path from `v` passes only concats on the channel axis, activations,
/// pools, and adds, subs or muls of a constant that is uniform over each dropped channel (a
/// border map) to linears and ungrouped convs reading the channels as features (a zero-padded
/// one only when `zero_fill`: the fill as `v` holds it, an approximation past the ops between).
fn folds_away(
    f: &Function,
    v: ValueId,
    site: Site,
    remove: &BTreeSet<usize>,
    zero_fill: bool,
    seen: &mut BTreeSet<ValueId>,
) -> bool {
    if !seen.insert(v) {
        return true;
    }
    let rank = f.ty(v).rank();
    f.uses(v).iter().all(|u| {
        let data = f.op(u.op);
        let onward = |seen: &mut BTreeSet<ValueId>| {
            data.result()
                .is_some_and(|r| folds_away(f, r, site, remove, zero_fill, seen))
        };
        match &data.kind {
            OpKind::Linear => u.index == 0 && site.axis + 1 == rank,
            OpKind::Conv2d { groups, pads, .. } => {
                u.index == 0
                    && site.axis == 1
                    && site.scale == 1
                    && *groups == 1
                    && (zero_fill || pads.iter().all(|&p| p == 0))
            }
            OpKind::Concat { axis } => {
                crate::ir::infer::norm_axis(*axis, rank) == Ok(site.axis) && onward(seen)
            }
            OpKind::MaxPool2d(_) | OpKind::AvgPool2d { .. } | OpKind::GlobalAvgPool => {
                site.axis == 1 && onward(seen)
            }
            OpKind::Add | OpKind::Sub | OpKind::Mul => {
                let k = data.operands()[1 - (u.index as usize).min(1)];
                let uniform = f.constant_of(k).is_some_and(|k| {
                    let c = (site.axis + k.shape().len()).checked_sub(rank);
                    match c.filter(|&c| k.shape()[c] > 1) {
                        Some(c) => remove
                            .iter()
                            .all(|&p| uniform(k, c, p * site.scale).is_some()),
                        None => k.all_bits_equal(),
                    }
                });
                site.scale == 1 && uniform && onward(seen)
            }
            k if k.tag().is_elementwise_unary() => onward(seen),
            _ => false,
        }
    })
}

/// The positions per sample at which a value of type `ty` holds each channel of `axis`: the
/// static sizes of the axes other than the batch (axis 0) and `axis` (a dynamic size counts 1).
pub fn positions(ty: &TensorType, axis: usize) -> u64 {
    ty.dims
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 0 && i != axis)
        .map(|(_, d)| d.as_static().unwrap_or(1))
        .product()
}
