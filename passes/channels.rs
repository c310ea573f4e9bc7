//! Which ops treat channels independently: the rule shared by the constness analysis (which
//! carries facts through such ops) and `prune-neurons` (which removes a neuron through them).

use crate::ir::{Function, OpId, OpKind, ValueId};

/// The channel axis of `op`'s result when `op` treats the channels of its operand (at `axis`)
/// independently, so that dropping a channel of the operand drops the same channel of the
/// result: unary activations, pools, `nn.global_avg_pool`, `nn.mean` over other axes,
/// `nn.flatten` at axis 1 of `[N, C, ...]` with static trailing sizes (see [`channel_scale`]),
/// `nn.reshape` of the leading axes (the last axis, the features, kept), and depthwise
/// `nn.conv2d` (`groups` = input channels = filters) with constant parameters.
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
        // Regrouping the leading axes (`[B, S, E]` ↔ `[B·S, E]`, a linear on flattened rows)
        // keeps every feature at its place on the last axis.
        OpKind::Reshape { .. } => {
            let out = f.ty(data.result()?);
            let last = x.rank().checked_sub(1)?;
            let kept = axis == last
                && out.rank() >= 1
                && x.dim(last).as_static().is_some()
                && out.dim(out.rank() - 1) == x.dim(last);
            kept.then(|| out.rank() - 1)
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

/// The `nn.linear` (when `axis` is the last) or `nn.conv2d` (not depthwise) whose channels reach
/// `v` at `axis` through per-channel ops that keep them on that axis; with `only_reader`, only
/// when `v` and every value on the way have that one reader.
pub fn layer_behind(f: &Function, mut v: ValueId, axis: usize, only_reader: bool) -> Option<OpId> {
    loop {
        if only_reader && f.uses(v).len() != 1 {
            return None;
        }
        let p = f.producer(v)?;
        match f.kind(p) {
            OpKind::Linear if axis + 1 == f.ty(v).rank() => return Some(p),
            OpKind::Conv2d { .. } if axis == 1 && per_channel_axis(f, p, axis).is_none() => {
                return Some(p)
            }
            _ if per_channel_axis(f, p, axis) == Some(axis) => v = f.op(p).operands()[0],
            _ => return None,
        }
    }
}
