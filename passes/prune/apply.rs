//! Carries out a [`Plan`]: drops the removed rows of the producer (and its whole groups, with a
//! gather of the kept groups' inputs), the matching columns of its consumers (their biases or
//! border maps absorbing the constants), the filters of depthwise convs on the way, renumbers
//! the gathers that select the channels, and restores the full width with `nn.scatter` at
//! every other use.

use super::fanout::Site;
use super::groups::{absorb_grouped, kept_inputs, take_columns};
use super::plan::Plan;
use crate::ir::{Dim, OpId, OpKind, Tensor, ValueId};
use crate::passes::absorb::{absorb_columns, set_weighted_operands};
use crate::passes::PassContext;
use crate::rewrite::Rewriter;

/// Rewrites producer `op` and its uses as `plan` says.
pub fn apply(rw: &mut Rewriter, op: OpId, plan: &Plan, cx: &mut PassContext) {
    let (n, keep, fan) = (plan.neurons, &plan.keep, &plan.fan);
    let f = rw.func();
    let ins = f.op(op).operands().to_vec();
    let r = f
        .op(op)
        .result()
        .expect("planned only for an op with a result");

    // Other uses: restore the full length with the constants.
    for (&(v, site), fill) in fan.others.iter().zip(&plan.fills) {
        let f = rw.func();
        let full = f.ty(v).clone();
        let uses: Vec<_> = f
            .uses(v)
            .iter()
            .copied()
            .filter(|u| {
                !fan.chain.iter().any(|c| c.0 == u.op)
                    && !fan.consumers.iter().any(|c| c.0 == u.op)
                    && !fan.gathers.contains(&u.op)
            })
            .collect();
        let anchor = f
            .producer(v)
            .and_then(|p| f.next_op(p))
            .expect("a result is followed by at least the terminator");
        let scatter = OpKind::Scatter {
            axis: site.axis as i64,
            indices: site.positions(keep).into_iter().map(|k| k as u64).collect(),
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
        cx.count("scatters inserted", 1);
    }

    // Consumers: fold a_j into the bias, then drop column j.
    let mut biases_updated = 0;
    for (c_idx, &(c, site)) in fan.consumers.iter().enumerate() {
        let f = rw.func();
        let c_ops = f.op(c).operands().to_vec();
        let cw = &plan.consumer_w[c_idx];
        let out = cw.shape()[0] as usize;
        let old_b = c_ops.get(2).and_then(|&b| f.constant_of(b)).cloned();
        let mut b: Vec<f32> = old_b.as_ref().map_or(vec![0.0; out], Tensor::to_f32_vec);
        let absorbed: Vec<(Vec<usize>, f32)> = plan
            .remove
            .iter()
            .filter_map(|&j| {
                plan.seen[c_idx][j]
                    .filter(|&a| a != 0.0)
                    .map(|a| (site.positions(&[j]), a))
            })
            .collect();
        // A zero-padded consumer sees the constants only inside the image: they go into a
        // per-position map added after it, not into its bias.
        let border = if plan.padded[c_idx] && !absorbed.is_empty() {
            let m = plan.maps[c_idx].as_ref().expect("chosen only with a map");
            Some(m.values(cw, plan.consumer_groups[c_idx], &absorbed))
        } else {
            None
        };
        let groups = plan.consumer_groups[c_idx];
        let touched = border.is_none()
            && match groups {
                1 => absorb_columns(cw, &absorbed, &mut b),
                g => absorb_grouped(cw, g, &absorbed, &mut b),
            };
        let kept_w = match groups {
            1 => cw.take(1, &site.positions(keep)),
            g => take_columns(cw, g, keep),
        };
        biases_updated += u64::from(touched);
        set_weighted_operands(rw, c, c_ops[0], kept_w, touched.then_some(&b));
        if let Some(map) = border {
            let m = plan.maps[c_idx].as_ref().expect("checked above");
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
            cx.count("border maps inserted", 1);
        }
    }
    // Gathers: channel j of the result is now at its position in `keep` (plan: every selected
    // channel is kept); one that then keeps every channel in order is the identity.
    for &g in &fan.gathers {
        let OpKind::Gather { axis, indices } = rw.func().kind(g).clone() else {
            continue;
        };
        let at = |j: u64| {
            keep.binary_search(&(j as usize))
                .expect("selected, so kept") as u64
        };
        let indices: Vec<u64> = indices.into_iter().map(at).collect();
        if indices.len() == keep.len() && indices.iter().enumerate().all(|(i, &k)| i as u64 == k) {
            let x = rw.func().op(g).operands()[0];
            rw.replace_op(g, x);
        } else {
            rw.set_kind(g, OpKind::Gather { axis, indices });
        }
    }
    // The producer: drop row j and bias entry j; a grouped conv's groups whose filters all go
    // go whole, and a gather in front keeps the input channels of the others.
    let new_w = rw.derived_constant_before(op, plan.w.take(0, keep), ins[1]);
    let mut x = ins[0];
    if let OpKind::Conv2d {
        groups,
        strides,
        pads,
        dilations,
    } = rw.func().kind(op).clone()
    {
        let g = groups as usize;
        let per_in = plan.w.shape()[1] as usize;
        let (dropped, inputs) = kept_inputs(&plan.remove, g, n / g, per_in);
        if dropped > 0 {
            let ty = rw
                .func()
                .ty(x)
                .with_dim(1, Dim::Static(inputs.len() as u64));
            let gather = OpKind::Gather {
                axis: 1,
                indices: inputs,
            };
            x = rw.insert_before(op, gather, &[x], ty);
            let groups = (g - dropped) as u64;
            let kind = OpKind::Conv2d {
                groups,
                strides,
                pads,
                dilations,
            };
            rw.set_kind(op, kind);
            cx.count("groups removed", dropped as u64);
        }
    }
    let mut operands = vec![x, new_w];
    if let Some(b) = &plan.bias {
        operands.push(rw.derived_constant_before(op, b.take(0, keep), ins[2]));
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
                .take(0, keep);
            operands.push(rw.derived_constant_before(d, t, p));
        }
        rw.set_operands(d, &operands);
        cx.layer(rw.func(), d).followed += plan.remove.len() as u64;
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
    let own = Site {
        axis: plan.axis,
        scale: 1,
    };
    for (v, site) in std::iter::once((r, own)).chain(chain) {
        let width = Dim::Static((keep.len() * site.scale) as u64);
        let ty = rw.func().ty(v).with_dim(site.axis, width);
        // A reshape on the way (of the leading axes) states its result shape.
        let p = rw.func().producer(v).expect("a result");
        if let OpKind::Reshape { .. } = rw.func().kind(p) {
            let shape = ty.dims.to_vec();
            rw.set_kind(p, OpKind::Reshape { shape });
        }
        rw.set_type(v, ty);
    }
    let note = cx.layer(rw.func(), op);
    note.unused += plan.unused as u64;
    note.constant += (plan.remove.len() - plan.unused) as u64;
    if !fan.others.is_empty() {
        note.scattered += plan.remove.len() as u64;
    }
    cx.count("neurons removed", plan.remove.len() as u64);
    cx.count("biases updated", biases_updated);
}
