//! Where the channels of a pruned layer go: through per-channel ops to weighted consumers and
//! to every other use.

use crate::ir::{Function, OpId, OpKind, ValueId};
use crate::passes::channels::{channel_scale, per_channel_axis};

/// Where P's channels sit in a value: along `axis`, channel `j` at positions
/// `j·scale .. (j+1)·scale` (`scale` > 1 after `nn.flatten` turned each channel into H·W
/// features).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Site {
    pub axis: usize,
    pub scale: usize,
}

impl Site {
    /// The positions of channels `keep`, in order.
    pub fn positions(self, keep: &[usize]) -> Vec<usize> {
        keep.iter()
            .flat_map(|&j| j * self.scale..(j + 1) * self.scale)
            .collect()
    }
}

/// Where P's result goes: the per-channel ops on the way (with where the channels sit in their
/// results), the weighted consumers (with where the channels sit in their input), and the
/// values other ops use (each gets a scatter).
pub struct Fanout {
    pub chain: Vec<(OpId, Site)>,
    pub consumers: Vec<(OpId, Site)>,
    pub others: Vec<(ValueId, Site)>,
}

/// Follows P's result (channels at `axis`) through per-channel ops to the ops that end each
/// path.
pub fn fanout(f: &Function, r: ValueId, axis: usize) -> Fanout {
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
            // input, axis 1 of a conv's (a grouped one keeps its groups equal, `groups.rs`).
            let features = match kind {
                OpKind::Conv2d { .. } => axis == 1 && site.scale == 1,
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
