//! The cost model of `residual=auto`: per layer, removing neurons that also reach a residual
//! add, concat or result pays only when the multiply-accumulates the removal saves exceed the
//! elements the `nn.scatter`s that restore them copy (both per sample).

use super::fanout::Fanout;
use crate::ir::{Function, OpKind, TensorType, ValueId};

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
}

/// `(saved, copied)` per sample when `removed` neurons go:
/// saved = removed · (row · producer positions + Σ column · consumer positions),
/// copied = Σ over scattered values of their elements.
pub fn scatter_tradeoff(f: &Function, layer: &Layer, removed: usize) -> (u64, u64) {
    let saved = removed as u64
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
    let copied: u64 = layer
        .fan
        .others
        .iter()
        .map(|&(v, site)| (layer.neurons * site.scale) as u64 * positions(f.ty(v), site.axis))
        .sum();
    (saved, copied)
}

/// The positions per sample at which a value of type `ty` holds each channel of `axis`: the
/// static sizes of the axes other than the batch (axis 0) and `axis` (a dynamic size counts 1).
fn positions(ty: &TensorType, axis: usize) -> u64 {
    ty.dims
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 0 && i != axis)
        .map(|(_, d)| d.as_static().unwrap_or(1))
        .product()
}
