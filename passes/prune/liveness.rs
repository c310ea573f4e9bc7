//! Backward liveness of channels through element-wise ops: which channels of a value no op
//! ever reads, so that a pruned layer can restore them at that value with any fill.
//!
//! A channel is *unread* at a value when every use of the value either ignores it (a weighted
//! consumer whose column for it is zero) or passes it, alone, to a result where it is unread in
//! turn: a per-channel op (activation, pool, depthwise conv) or an `nn.add`/`nn.sub`/`nn.mul`
//! whose operands and result have one type (channel `j` of the result reads channel `j` of
//! each operand only). Any other use (a concat, a reshape, a function result) reads every
//! channel.

use super::groups::column_is_zero;
use crate::ir::{Function, OpKind, ValueId};
use crate::passes::channels::{channel_scale, per_channel_axis};
use std::collections::HashMap;

/// Memoized per value, so that a residual stream (each add read by the next block's add and
/// its first conv) is walked once, not once per path.
pub struct Liveness<'f> {
    f: &'f Function,
    zero_threshold: f32,
    memo: HashMap<ValueId, Vec<bool>>,
}

impl<'f> Liveness<'f> {
    pub fn new(f: &'f Function, zero_threshold: f32) -> Liveness<'f> {
        Liveness {
            f,
            zero_threshold,
            memo: HashMap::new(),
        }
    }

    /// For each of the `n` channels of `v` along `axis`: whether no use reads it.
    pub fn unread(&mut self, v: ValueId, axis: usize, n: usize) -> Vec<bool> {
        if let Some(u) = self.memo.get(&v) {
            return u.clone();
        }
        // Cycles cannot occur (SSA order), but a value is seen as read while it is walked, so
        // an unexpected shape of graph errs on the side of keeping channels.
        self.memo.insert(v, vec![false; n]);
        let f = self.f;
        let mut unread = vec![true; n];
        for u in f.uses(v) {
            let data = f.op(u.op);
            let kind = &data.kind;
            let ops = data.operands();
            let seen: Vec<bool> = match kind {
                _ if per_channel_axis(f, u.op, axis).is_some()
                    && u.index == 0
                    && channel_scale(f, u.op) == 1 =>
                {
                    let next = per_channel_axis(f, u.op, axis).expect("checked");
                    match data.result() {
                        Some(r) => self.unread(r, next, n),
                        None => vec![false; n],
                    }
                }
                OpKind::Add | OpKind::Sub | OpKind::Mul => match data.result() {
                    Some(r) if ops.iter().all(|&o| f.ty(o) == f.ty(r)) => self.unread(r, axis, n),
                    _ => vec![false; n],
                },
                OpKind::Linear | OpKind::Conv2d { .. }
                    if u.index == 0 && !ops[1..].contains(&v) =>
                {
                    let features = match kind {
                        OpKind::Linear => axis + 1 == f.ty(v).rank(),
                        _ => axis == 1,
                    };
                    let groups = match kind {
                        OpKind::Conv2d { groups, .. } => *groups as usize,
                        _ => 1,
                    };
                    match f.constant_of(ops[1]) {
                        Some(w) if features => (0..n)
                            .map(|j| column_is_zero(w, groups, j, self.zero_threshold))
                            .collect(),
                        _ => vec![false; n],
                    }
                }
                _ => vec![false; n],
            };
            for (a, b) in unread.iter_mut().zip(seen) {
                *a = *a && b;
            }
        }
        self.memo.insert(v, unread.clone());
        unread
    }
}
