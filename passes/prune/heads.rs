//! The `attention-head-elimination` pattern: attention heads whose output is ignored or
//! constant go, with their rows in the query, key and value projections and their columns in
//! the output projection; grouped-query attention's key/value heads go when no query head
//! reads them any more.

use super::attention::{attention, Attention, Entry, Region};
use super::PruneCx;
use crate::ir::{Dim, Function, OpId, OpKind, OpTag, Tensor};
use crate::passes::absorb::{absorb_columns, set_weighted_operands};
use crate::passes::analysis::zero_lines;
use crate::rewrite::{MatchFailure, MatchResult, Pattern, Rewriter};
use std::collections::{BTreeMap, BTreeSet};

/// `o_proj(merge(attention))` (`attention.rs` finds the block): query head `h` goes when
/// - its `o_proj` columns `h·D..(h+1)·D` are zero (*ignored*), or
/// - the value projection's rows of the head it reads are zero (*constant*): every row of the
///   softmax weights sums to 1, so the head outputs the value bias `b_v` of those rows at
///   every position, and `o_proj`'s bias absorbs `W_o[:, h·D..(h+1)·D] · b_v`;
///
/// and a key/value head goes when no query head is left that reads it (for plain multi-head
/// attention, the key and value heads are the query heads). One head always stays.
///
/// Exact: heads are batch indices of every op between the projections and the merge (the
/// region walk checks it), so dropping head `h` everywhere drops exactly its computation; an
/// ignored head contributed nothing; a constant one contributes what the bias now adds, up to
/// the rounding of the softmax weights' sum (a row sums to 1 within a few ulp).
///
/// Not removable, and kept: a head whose query or key rows are zero. Its scores are constant,
/// so its weights are uniform over the visible positions and it outputs the mean of the
/// values, which is not a constant.
pub struct AttentionHeadElimination;

impl Pattern<PruneCx<'_>> for AttentionHeadElimination {
    fn name(&self) -> &'static str {
        "attention-head-elimination"
    }

    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Linear])
    }

    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PruneCx) -> MatchResult {
        let f = rw.func();
        let att = attention(f, op).map_err(MatchFailure)?;
        let wo = f
            .constant_of(f.op(op).operands()[1])
            .ok_or(MatchFailure("o_proj's weight is not constant"))?
            .clone();
        let threshold = cx.analysis.zero_threshold();
        let (h, d) = (att.heads, att.dim);
        let zero_cols = zero_lines(&wo, 1, threshold);
        let ignored: Vec<bool> = (0..h)
            .map(|i| zero_cols[i * d..(i + 1) * d].iter().all(|&z| z))
            .collect();
        // The constant each query head outputs, when its value rows are zero.
        let constant: Vec<Option<Vec<f32>>> = match &att.values {
            Some((entry, map)) => {
                let ins = f.op(entry.linear).operands();
                let wv = f.constant_of(ins[1]).expect("checked by the region walk");
                let zero_rows = zero_lines(wv, 0, threshold);
                let bias = ins
                    .get(2)
                    .map(|&b| f.constant_of(b).expect("checked").to_f32_vec());
                map.iter()
                    .map(|&k| {
                        let rows = &entry.rows[k * d..(k + 1) * d];
                        rows.iter().all(|&r| zero_rows[r]).then(|| {
                            rows.iter()
                                .map(|&r| bias.as_ref().map_or(0.0, |b| b[r]))
                                .collect()
                        })
                    })
                    .collect()
            }
            None => vec![None; h],
        };
        let mut remove: BTreeSet<usize> = (0..h)
            .filter(|&i| ignored[i] || constant[i].is_some())
            .collect();
        if remove.len() == h {
            remove.pop_last();
        }
        if remove.is_empty() {
            return Err(MatchFailure("no ignored or constant head"));
        }
        let absorbed: Vec<(Vec<usize>, f32)> = remove
            .iter()
            .filter(|&&i| !ignored[i])
            .flat_map(|&i| {
                let c = constant[i].as_ref().expect("removed, so constant");
                (0..d).map(move |j| (vec![i * d + j], c[j]))
            })
            .filter(|&(_, c)| c != 0.0)
            .collect();
        let keep: Vec<usize> = (0..h).filter(|i| !remove.contains(i)).collect();
        let kv_removed = apply(rw, &att, &keep, &wo, &absorbed);
        // A fused projection is several entries of one linear: it lost each head once.
        let f = rw.func();
        let query: BTreeSet<OpId> = att.query.entries.iter().map(|e| e.linear).collect();
        let kv: BTreeSet<OpId> = att
            .kv
            .iter()
            .flat_map(|kv| &kv.entries)
            .map(|e| e.linear)
            .collect();
        for (linears, n) in [(query, remove.len()), (kv, kv_removed)] {
            for linear in linears {
                cx.pass.layer(f, linear).heads += n as u64;
            }
        }
        cx.pass
            .count("attention heads removed", remove.len() as u64);
        if kv_removed > 0 {
            cx.pass.count("key/value heads removed", kv_removed as u64);
        }
        if !absorbed.is_empty() {
            cx.pass.count("biases updated", 1);
        }
        Ok(())
    }
}

/// Keeps query heads `keep` of `att`, the key/value heads they still read, and `o_proj`'s
/// columns of the kept heads, its bias absorbing `absorbed`. Returns how many key/value heads
/// went.
fn apply(
    rw: &mut Rewriter,
    att: &Attention,
    keep: &[usize],
    wo: &Tensor,
    absorbed: &[(Vec<usize>, f32)],
) -> usize {
    let d = att.dim;
    // The projections' rows that go, per linear (a fused one loses rows for several parts).
    let mut gone: BTreeMap<OpId, BTreeSet<usize>> = BTreeMap::new();
    let mut drop_heads = |r: &Region, keep: &[usize], heads: usize| {
        for e in &r.entries {
            for h in (0..heads).filter(|h| !keep.contains(h)) {
                let rows = &e.rows[h * d..(h + 1) * d];
                gone.entry(e.linear).or_default().extend(rows);
            }
        }
    };
    let mut kv_removed = 0;
    // The query heads kept read these key/value heads; the repeats are renumbered.
    if let Some(kv) = &att.kv {
        let f = rw.func();
        let kv_heads = kv_count(f, kv);
        let read: BTreeSet<usize> = att
            .query
            .repeats
            .iter()
            .flat_map(|&g| {
                let indices = gather_indices(f, g);
                keep.iter().map(move |&h| indices[h] as usize)
            })
            .collect();
        let kv_keep: Vec<usize> = read.into_iter().collect();
        for &g in &att.query.repeats {
            let OpKind::Gather { axis, indices } = rw.func().kind(g).clone() else {
                unreachable!("repeats are gathers")
            };
            let indices = keep
                .iter()
                .map(|&h| kv_keep.binary_search(&(indices[h] as usize)).expect("read") as u64)
                .collect();
            rw.set_kind(g, OpKind::Gather { axis, indices });
        }
        if kv_keep.len() < kv_heads {
            narrow(rw, kv, kv_keep.len());
            drop_heads(kv, &kv_keep, kv_heads);
            kv_removed = kv_heads - kv_keep.len();
        }
    }
    narrow(rw, &att.query, keep.len());
    drop_heads(&att.query, keep, att.heads);
    let entries: Vec<&Entry> = att
        .query
        .entries
        .iter()
        .chain(att.kv.iter().flat_map(|kv| &kv.entries))
        .collect();
    for (linear, rows) in gone {
        drop_rows(rw, linear, &rows, &entries);
    }
    // o_proj: fold the constant heads into the bias, drop the columns; the merge narrows.
    let o = att.o_proj;
    let ins = rw.func().op(o).operands().to_vec();
    let cols: Vec<usize> = keep.iter().flat_map(|&h| h * d..(h + 1) * d).collect();
    let out = wo.shape()[0] as usize;
    let old_b = ins.get(2).and_then(|&b| rw.func().constant_of(b)).cloned();
    let mut b = old_b.as_ref().map_or(vec![0.0; out], Tensor::to_f32_vec);
    let touched = absorb_columns(wo, absorbed, &mut b);
    set_weighted_operands(rw, o, ins[0], wo.take(1, &cols), touched.then_some(&b));
    for r in std::iter::once(att.merge).chain(att.flat) {
        narrow_last(rw, r, cols.len());
    }
    kv_removed
}

/// The number of heads of a region (the size of any value's head axis).
fn kv_count(f: &Function, r: &Region) -> usize {
    let (&v, &a) = r.values.iter().next().expect("a region has values");
    f.ty(v).dim(a).as_static().expect("static heads") as usize
}

fn gather_indices(f: &Function, g: OpId) -> Vec<u64> {
    match f.kind(g) {
        OpKind::Gather { indices, .. } => indices.clone(),
        _ => unreachable!("repeats are gathers"),
    }
}

/// Every value of `r` keeps `heads` heads on its head axis; the reshapes follow their new
/// result types.
fn narrow(rw: &mut Rewriter, r: &Region, heads: usize) {
    let width = Dim::Static(heads as u64);
    for (&v, &a) in &r.values {
        let ty = rw.func().ty(v).with_dim(a, width);
        rw.set_type(v, ty);
    }
    for &op in &r.ops {
        if let OpKind::Reshape { .. } = rw.func().kind(op) {
            let v = rw.func().op(op).result().expect("a reshape has a result");
            let kind = reshape_to(rw.func().ty(v));
            rw.set_kind(op, kind);
        }
    }
}

/// `linear` loses rows `gone` (weight rows and bias entries); the gathers of a fused
/// projection keep the rows of their kept heads, renumbered, and every value from the linear
/// to the splits narrows on its last axis.
fn drop_rows(rw: &mut Rewriter, linear: OpId, gone: &BTreeSet<usize>, entries: &[&Entry]) {
    let ins = rw.func().op(linear).operands().to_vec();
    let n = rw.func().constant_of(ins[1]).expect("checked").shape()[0] as usize;
    let keep: Vec<usize> = (0..n).filter(|r| !gone.contains(r)).collect();
    let mut operands = vec![ins[0]];
    for &p in &ins[1..] {
        let t = rw.func().constant_of(p).expect("checked").take(0, &keep);
        operands.push(rw.derived_constant_before(linear, t, p));
    }
    rw.set_operands(linear, &operands);
    narrow_last(rw, linear, keep.len());
    let mut flats = BTreeSet::new();
    for e in entries.iter().filter(|e| e.linear == linear) {
        flats.extend(e.flat);
        if let Some(sel) = e.select {
            let OpKind::Gather { axis, .. } = rw.func().kind(sel).clone() else {
                unreachable!("a select is a gather")
            };
            let indices: Vec<u64> = e
                .rows
                .iter()
                .filter(|r| !gone.contains(r))
                .map(|r| keep.binary_search(r).expect("kept") as u64)
                .collect();
            let len = indices.len();
            rw.set_kind(sel, OpKind::Gather { axis, indices });
            narrow_last(rw, sel, len);
        }
    }
    for flat in flats {
        narrow_last(rw, flat, keep.len());
    }
}

/// `op`'s result keeps `width` positions of its last axis (a reshape's shape follows).
fn narrow_last(rw: &mut Rewriter, op: OpId, width: usize) {
    let v = rw.func().op(op).result().expect("a result");
    let ty = rw.func().ty(v);
    let ty = ty.with_dim(ty.rank() - 1, Dim::Static(width as u64));
    rw.set_type(v, ty.clone());
    if let OpKind::Reshape { .. } = rw.func().kind(op) {
        rw.set_kind(op, reshape_to(&ty));
    }
}

/// A reshape to the type `ty` (whose one `?`, if any, is the reshape's `-1` entry).
fn reshape_to(ty: &crate::ir::TensorType) -> OpKind {
    OpKind::Reshape {
        shape: ty.dims.to_vec(),
    }
}
