//! Attention as `attention-head-elimination` sees it: the values whose computation is batched
//! over heads, found by walking back from the reshape that merges the heads into `o_proj`'s
//! input features.
//!
//! A *head region* is a set of values that each carry the head index on one axis, such that
//! head `h` of every value is computed from head `h` of other region values and from values
//! shared by all heads (constants or activations of size 1 on that axis, broadcast). Removing
//! head `h` from every region value, the rows of the projections that enter the region and the
//! columns of the one that leaves it then removes exactly head `h`'s computation. The ops that
//! keep this true: transposes, batched matmuls with the head axis among the batch axes,
//! softmax over another axis, element-wise unary ops, add/sub/mul with a broadcast operand,
//! gathers and concats along other axes (rotary embeddings' halves), and the reshapes that
//! split a projection's features `[…, H·D]` into `[…, H, D]` (the region's entries). A gather
//! *along* the head axis repeats key/value heads for grouped-query attention: it ends the
//! query region and maps each query head to the key/value head it reads, whose own region
//! begins there.

use crate::ir::infer::norm_axis;
use crate::ir::{Function, OpId, OpKind, ValueId};
use std::collections::{HashMap, HashSet};

/// Where a projection enters a region: the `nn.linear`, the reshape that splits features into
/// heads, and which of the linear's rows those features are. A fused projection (GPT-2's
/// `c_attn`, one linear for q, k and v) reaches the split through a gather of its features
/// (`select`), possibly after a reshape of its leading axes (`flat`, for a linear on
/// `[B·S, E]`); a plain one reaches it directly, its rows in order.
#[derive(Clone, Debug)]
pub struct Entry {
    pub linear: OpId,
    pub split: OpId,
    pub select: Option<OpId>,
    pub flat: Option<OpId>,
    /// Head-major: the rows of head `h` are `rows[h·D..(h+1)·D]`.
    pub rows: Vec<usize>,
}

/// Values batched over heads (see the file header), with the ops that compute them.
#[derive(Debug, Default)]
pub struct Region {
    /// Each value with its head axis.
    pub values: HashMap<ValueId, usize>,
    pub ops: HashSet<OpId>,
    pub entries: Vec<Entry>,
    /// Gathers along the head axis (the region's values are their results' operands' heads
    /// repeated; the gathers belong to the region that reads them).
    pub repeats: Vec<OpId>,
}

/// One attention block: the query-head region ending at `merge` (the reshape `[…, H, D]` →
/// `[…, H·D]` that `o_proj` reads), and for grouped-query attention the key/value-head region
/// behind its repeats.
#[derive(Debug)]
pub struct Attention {
    pub o_proj: OpId,
    pub merge: OpId,
    /// A reshape of the merge's leading axes between it and `o_proj`.
    pub flat: Option<OpId>,
    pub heads: usize,
    pub dim: usize,
    pub query: Region,
    pub kv: Option<Region>,
    /// Per query head, the entry and head of the value projection its output is the
    /// softmax-weighted average of, when the path allows reading it (see [`value_heads`]).
    pub values: Option<(Entry, Vec<usize>)>,
}

/// The attention block whose heads `o_proj` (an `nn.linear`) reads, if its input is one.
pub fn attention(f: &Function, o_proj: OpId) -> Result<Attention, &'static str> {
    let mut x = f.op(o_proj).operands()[0];
    ensure(f.uses(x).len() == 1, "o_proj's input has other users")?;
    let mut merge = f.producer(x).ok_or("o_proj reads an argument")?;
    ensure(
        matches!(f.kind(merge), OpKind::Reshape { .. }),
        "o_proj's input is not a reshape",
    )?;
    let mut t = f.op(merge).operands()[0];
    // A linear on `[B·S, E]` (GPT-2's Conv1D) reads the merged heads flattened.
    let mut flat = None;
    if let Some(m) = f.producer(t).filter(|&m| {
        matches!(f.kind(m), OpKind::Reshape { .. })
            && last(f, t) == last(f, x)
            && f.uses(t).len() == 1
    }) {
        flat = Some(merge);
        (x, merge) = (t, m);
        t = f.op(m).operands()[0];
    }
    let (tt, xt) = (f.ty(t), f.ty(x));
    let r = tt.rank();
    ensure(r >= 3, "the reshape does not merge two axes")?;
    // Row-major, `[…, H, D]` → `[…, H·D]` keeps every element's place whatever the leading
    // axes become (GPT-2 merges heads and flattens `[B, S]` in one reshape). Static leading
    // axes must multiply to the same rows; with a dynamic batch, each side has one dynamic
    // size, and since the reshape keeps the element count and the last axis is `H·D` (checked
    // below), the rows are the same at every batch (`[?, S, H, D]` → `[?, E]`, `? = B·S`).
    let rows = |dims: &[crate::ir::Dim]| -> (u64, usize) {
        let dynamic = dims.iter().filter(|d| d.as_static().is_none()).count();
        (dims.iter().filter_map(|d| d.as_static()).product(), dynamic)
    };
    let (lt, lx) = (rows(&tt.dims[..r - 2]), rows(&xt.dims[..xt.rank() - 1]));
    ensure(
        lt == lx || (lt.1 == 1 && lx.1 == 1),
        "the reshape changes the leading axes",
    )?;
    let (heads, dim) = match (tt.dim(r - 2).as_static(), tt.dim(r - 1).as_static()) {
        (Some(h), Some(d)) if xt.dim(xt.rank() - 1).as_static() == Some(h * d) => {
            (h as usize, d as usize)
        }
        _ => return Err("the reshape does not merge heads into features"),
    };
    ensure(heads >= 2, "one head")?;
    let query = region(f, &[(t, r - 2)], heads, &[merge])?;
    let kv = if query.repeats.is_empty() {
        None
    } else {
        let starts: Vec<(ValueId, usize)> = query
            .repeats
            .iter()
            .map(|&g| {
                let OpKind::Gather { axis, .. } = f.kind(g) else {
                    unreachable!("repeats are gathers")
                };
                let v = f.op(g).operands()[0];
                (v, norm_axis(*axis, f.ty(v).rank()).expect("verified"))
            })
            .collect();
        let kv_heads = f.ty(starts[0].0).dim(starts[0].1).as_static().unwrap_or(0) as usize;
        let kv = region(f, &starts, kv_heads, &query.repeats)?;
        ensure(kv.repeats.is_empty(), "key/value heads repeated twice")?;
        Some(kv)
    };
    // A fused projection's rows go from every part at once: each of its gathers must be a
    // part this attention splits into heads.
    let entries: Vec<&Entry> = query
        .entries
        .iter()
        .chain(kv.iter().flat_map(|kv| &kv.entries))
        .collect();
    for e in &entries {
        if let Some(sel) = e.select {
            let features = f.op(sel).operands()[0];
            ensure(
                f.uses(features)
                    .iter()
                    .all(|u| entries.iter().any(|o| o.select == Some(u.op))),
                "a fused projection feeds something else than this attention's heads",
            )?;
        }
    }
    let values = value_heads(f, t, heads, &query, kv.as_ref());
    Ok(Attention {
        o_proj,
        merge,
        flat,
        heads,
        dim,
        query,
        kv,
        values,
    })
}

fn ensure(c: bool, why: &'static str) -> Result<(), &'static str> {
    if c {
        Ok(())
    } else {
        Err(why)
    }
}

/// The region of `heads` heads that `starts` (values with their head axes) belong to, whose
/// values no op outside it reads except `exits`.
fn region(
    f: &Function,
    starts: &[(ValueId, usize)],
    heads: usize,
    exits: &[OpId],
) -> Result<Region, &'static str> {
    let mut reg = Region::default();
    let mut stack = starts.to_vec();
    while let Some((v, a)) = stack.pop() {
        match reg.values.get(&v) {
            Some(&b) if b == a => continue,
            Some(_) => return Err("a value carries heads on two axes"),
            None => {}
        }
        let ty = f.ty(v);
        ensure(
            ty.dim(a).as_static() == Some(heads as u64),
            "a head axis of another size",
        )?;
        reg.values.insert(v, a);
        let p = f.producer(v).ok_or("a function argument carries heads")?;
        reg.ops.insert(p);
        let data = f.op(p);
        let ins = data.operands();
        let rank = ty.rank();
        match &data.kind {
            OpKind::Transpose { perm } => stack.push((ins[0], perm[a] as usize)),
            OpKind::Reshape { .. } => {
                let x = ins[0];
                let xt = f.ty(x);
                let split = a + 2 == rank
                    && xt.rank() + 1 == rank
                    && xt.dims[..a] == ty.dims[..a]
                    && match (xt.dim(a).as_static(), ty.dim(a + 1).as_static()) {
                        (Some(feat), Some(d)) => feat == heads as u64 * d,
                        _ => false,
                    };
                ensure(split, "a reshape that does not split features into heads")?;
                reg.entries.push(entry(f, x, p)?);
            }
            OpKind::MatMul => {
                ensure(a + 2 < rank, "the head axis is a matrix axis of a matmul")?;
                for &o in ins {
                    broadcast_operand(f, o, a, rank, heads, &mut stack)?;
                }
            }
            OpKind::Softmax { axis } => {
                ensure(norm_axis(*axis, rank) != Ok(a), "a softmax over heads")?;
                stack.push((ins[0], a));
            }
            k if k.tag().is_elementwise_unary() => stack.push((ins[0], a)),
            OpKind::Add | OpKind::Sub | OpKind::Mul => {
                for &o in ins {
                    broadcast_operand(f, o, a, rank, heads, &mut stack)?;
                }
            }
            OpKind::Gather { axis, .. } if norm_axis(*axis, rank) == Ok(a) => {
                reg.repeats.push(p);
            }
            OpKind::Gather { .. } => stack.push((ins[0], a)),
            OpKind::Concat { axis } => {
                ensure(norm_axis(*axis, rank) != Ok(a), "a concat of heads")?;
                for &o in ins {
                    ensure(
                        f.constant_of(o).is_none(),
                        "a constant concatenated to heads",
                    )?;
                    stack.push((o, a));
                }
            }
            _ => return Err("an op that mixes heads"),
        }
    }
    for &v in reg.values.keys() {
        for u in f.uses(v) {
            ensure(
                reg.ops.contains(&u.op) || exits.contains(&u.op),
                "a value of the heads has a reader outside the attention",
            )?;
        }
    }
    Ok(reg)
}

/// The projection behind `x`, the features the reshape `split` splits into heads.
fn entry(f: &Function, x: ValueId, split: OpId) -> Result<Entry, &'static str> {
    ensure(f.uses(x).len() == 1, "split features with another reader")?;
    let mut v = x;
    let mut p = f.producer(v).ok_or("a split of a function argument")?;
    let mut rows: Vec<usize> = (0..last(f, v)).collect();
    let select = match f.kind(p) {
        OpKind::Gather { axis, indices }
            if norm_axis(*axis, f.ty(v).rank()) == Ok(f.ty(v).rank() - 1) =>
        {
            rows = indices.iter().map(|&i| i as usize).collect();
            v = f.op(p).operands()[0];
            Some(std::mem::replace(
                &mut p,
                f.producer(v).ok_or("a gather of an argument")?,
            ))
        }
        _ => None,
    };
    let flat = match f.kind(p) {
        OpKind::Reshape { .. } if select.is_some() => {
            let u = f.op(p).operands()[0];
            ensure(
                last(f, u) == last(f, v),
                "a reshape of the projection's features",
            )?;
            ensure(
                f.uses(v).iter().all(|u| is_gather(f, u.op)),
                "fused features with other readers",
            )?;
            v = u;
            Some(std::mem::replace(
                &mut p,
                f.producer(v).ok_or("a reshape of an argument")?,
            ))
        }
        _ => None,
    };
    ensure(
        matches!(f.kind(p), OpKind::Linear),
        "heads split from something else than a projection",
    )?;
    for &w in &f.op(p).operands()[1..] {
        ensure(
            f.constant_of(w).is_some(),
            "a projection with a variable weight",
        )?;
    }
    let readers_ok = match (select, flat) {
        (None, _) => f.uses(v).len() == 1,
        (Some(_), None) => f.uses(v).iter().all(|u| is_gather(f, u.op)),
        (Some(_), Some(r)) => f.uses(v).len() == 1 && f.uses(v)[0].op == r,
    };
    ensure(readers_ok, "a projection read outside the attention")?;
    Ok(Entry {
        linear: p,
        split,
        select,
        flat,
        rows,
    })
}

fn last(f: &Function, v: ValueId) -> usize {
    let t = f.ty(v);
    t.dim(t.rank() - 1).as_static().unwrap_or(0) as usize
}

fn is_gather(f: &Function, op: OpId) -> bool {
    matches!(f.kind(op), OpKind::Gather { axis, .. } if {
        let r = f.ty(f.op(op).operands()[0]).rank();
        norm_axis(*axis, r) == Ok(r - 1)
    })
}

/// An operand of an op of the region whose result has `rank` axes, head axis `a`: one that
/// lacks the axis or has size 1 there is shared by all heads (broadcast); one of size `heads`
/// belongs to the region, unless it is a constant (per-head constants are not followed).
fn broadcast_operand(
    f: &Function,
    o: ValueId,
    a: usize,
    rank: usize,
    heads: usize,
    stack: &mut Vec<(ValueId, usize)>,
) -> Result<(), &'static str> {
    let ot = f.ty(o);
    let Some(b) = (a + ot.rank()).checked_sub(rank) else {
        return Ok(());
    };
    // With one head, an activation of size 1 there is the head itself, not a broadcast.
    match ot.dim(b).as_static() {
        Some(h) if h == heads as u64 && f.constant_of(o).is_none() => {
            stack.push((o, b));
            Ok(())
        }
        Some(1) => Ok(()),
        _ => Err("an operand with its own per-head values"),
    }
}

/// For each query head, the head of the value projection whose rows it averages: `t` (the
/// merge's input) must come from `softmax(s) · v` through transposes that keep the last axis
/// last, with `softmax` over its last axis (so each row of weights sums to 1), and `v` from a
/// split value projection through transposes and key/value repeats that keep the last axis
/// last. None when the path is anything else.
fn value_heads(
    f: &Function,
    t: ValueId,
    heads: usize,
    query: &Region,
    kv: Option<&Region>,
) -> Option<(Entry, Vec<usize>)> {
    // Down from t to the matmul, tracking the head and the last axis.
    let (mut v, mut head, mut last) = (t, query.values[&t], f.ty(t).rank() - 1);
    let pv = loop {
        let p = f.producer(v)?;
        match f.kind(p) {
            OpKind::Transpose { perm } => {
                (head, last) = (perm[head] as usize, perm[last] as usize);
                v = f.op(p).operands()[0];
            }
            OpKind::MatMul => break p,
            _ => return None,
        }
    };
    let rank = f.ty(v).rank();
    if last != rank - 1 {
        return None;
    }
    let [w, mut v] = f.op(pv).operands().try_into().ok()?;
    let sp = f.producer(w)?;
    let sm = matches!(f.kind(sp), OpKind::Softmax { axis } if norm_axis(*axis, f.ty(w).rank()) == Ok(f.ty(w).rank() - 1));
    if !sm || f.ty(v).rank() != rank {
        return None;
    }
    // Up the value path: query head h reads value head map[h].
    let mut map: Vec<usize> = (0..heads).collect();
    let mut last = rank - 1;
    loop {
        let p = f.producer(v)?;
        let head = query
            .values
            .get(&v)
            .or_else(|| kv.and_then(|kv| kv.values.get(&v)))
            .copied()?;
        match f.kind(p) {
            OpKind::Transpose { perm } => {
                last = perm[last] as usize;
                v = f.op(p).operands()[0];
            }
            OpKind::Gather { axis, indices } if norm_axis(*axis, f.ty(v).rank()) == Ok(head) => {
                map = map.iter().map(|&h| indices[h] as usize).collect();
                v = f.op(p).operands()[0];
            }
            OpKind::Reshape { .. } => {
                let entries = query
                    .entries
                    .iter()
                    .chain(kv.iter().flat_map(|kv| &kv.entries));
                let e = entries.into_iter().find(|e| e.split == p)?.clone();
                return (last == f.ty(v).rank() - 1).then_some((e, map));
            }
            _ => return None,
        }
    }
}
