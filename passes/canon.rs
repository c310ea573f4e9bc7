//! The `canonicalize` patterns: local rewrites that leave a simpler graph computing the same
//! values. Each pattern's algebra is its doc comment's first line.

use crate::ir::rewriter::Rewriter;
use crate::ir::{ElemType, OpId, OpKind, OpTag, Tensor};

use super::greedy::{Pattern, PatternCx};
use super::prune::absorb_columns;

/// `%y = nn.identity %x` → uses of `%y` use `%x`.
pub struct RemoveIdentity;

impl Pattern for RemoveIdentity {
    fn name(&self) -> &'static str {
        "remove-identity"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Identity])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, _: &mut PatternCx) -> bool {
        let x = rw.func().op(op).operands()[0];
        rw.replace_op(op, x);
        true
    }
}

/// `op(c₁, …, cₙ)` with constant operands → `nn.constant eval(op)(c₁, …, cₙ)`.
///
/// Evaluated by the reference interpreter's kernels ([`crate::interp::eval_op`]), so a folded
/// value is exactly what execution would compute. Only f32 results fold (the interpreter does
/// not round f16/bf16 intermediates, so a folded, rounded constant would differ from it), and
/// only when the result is no larger than the operands together or 64k elements: folding must
/// not turn a small graph into a huge constant.
pub struct ConstantFold;

const FOLD_LIMIT: u64 = 1 << 16;

impl Pattern for ConstantFold {
    fn name(&self) -> &'static str {
        "constant-fold"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        None
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PatternCx) -> bool {
        let f = rw.func();
        let data = f.op(op);
        if matches!(
            data.kind,
            OpKind::Constant(_) | OpKind::Weight { .. } | OpKind::Return
        ) || data.operands().is_empty()
        {
            return false;
        }
        let Some(r) = data.result() else { return false };
        let ty = f.ty(r);
        let (Some(shape), ElemType::F32) = (ty.static_shape(), ty.elem) else {
            return false;
        };
        let Some(inputs) = data
            .operands()
            .iter()
            .map(|&v| f.constant_of(v))
            .collect::<Option<Vec<&Tensor>>>()
        else {
            return false;
        };
        let operand_size: u64 = inputs.iter().map(|t| t.len() as u64).sum();
        if ty.num_elements().unwrap_or(u64::MAX) > operand_size.max(FOLD_LIMIT) {
            return false;
        }
        let Ok(arrays) = inputs
            .iter()
            .map(|t| crate::interp::tensor_to_array(t))
            .collect::<Result<Vec<_>, _>>()
        else {
            return false;
        };
        let refs: Vec<_> = arrays.iter().collect();
        let Ok(value) = crate::interp::eval_op(f, op, &refs) else {
            return false;
        };
        let values: Vec<f32> = value.iter().copied().collect();
        let c = rw.derived_constant_before(op, Tensor::from_f32(ElemType::F32, shape, &values), r);
        rw.replace_op(op, c);
        cx.pass.count("ops constant-folded", 1);
        true
    }
}

/// `nn.scatter %x {indices = [0, 1, …, n-1], size = n}` → `%x`.
pub struct RemoveIdentityScatter;

impl Pattern for RemoveIdentityScatter {
    fn name(&self) -> &'static str {
        "remove-identity-scatter"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Scatter])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, _: &mut PatternCx) -> bool {
        let f = rw.func();
        let OpKind::Scatter { indices, size, .. } = f.kind(op) else {
            return false;
        };
        let identity = indices.len() as u64 == *size
            && indices.iter().enumerate().all(|(i, &k)| i as u64 == k);
        if !identity {
            return false;
        }
        let x = f.op(op).operands()[0];
        rw.replace_op(op, x);
        true
    }
}

/// `linear(scatter(x, idx, fill), W, b)` → `linear(x, W[:, idx], b + Σ_{j∉idx} W[:, j]·fill_j)`.
///
/// Likewise for an ungrouped `nn.conv2d` reading the scattered channels (the column sum runs
/// over the kernel window); a zero-padded conv sees a fill only inside the image, so it folds
/// only when every fill it would absorb is zero. The scatter stays for its other users (DCE
/// removes it when none are left).
pub struct FoldScatterIntoConsumer;

impl Pattern for FoldScatterIntoConsumer {
    fn name(&self) -> &'static str {
        "fold-scatter-into-consumer"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Scatter])
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PatternCx) -> bool {
        let f = rw.func();
        let OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        } = f.kind(op).clone()
        else {
            return false;
        };
        let (x, s) = (
            f.op(op).operands()[0],
            f.op(op).result().expect("scatter has a result"),
        );
        let rank = f.ty(s).rank();
        let Ok(axis) = crate::ir::infer::norm_axis(axis, rank) else {
            return false;
        };
        let keep: Vec<usize> = indices.iter().map(|&k| k as usize).collect();
        let dropped: Vec<usize> = (0..size as usize).filter(|j| !keep.contains(j)).collect();
        let consumers: Vec<OpId> = f
            .uses(s)
            .iter()
            .filter(|u| u.index == 0)
            .map(|u| u.op)
            .filter(|&c| {
                let ops = f.op(c).operands();
                let params_constant = ops[1..].iter().all(|&p| f.constant_of(p).is_some());
                let reads_features = match f.kind(c) {
                    OpKind::Linear => axis + 1 == rank,
                    OpKind::Conv2d { groups, pads, .. } => {
                        *groups == 1
                            && axis == 1
                            && (pads.iter().all(|&p| p == 0)
                                || dropped.iter().all(|&j| fill[j] == 0.0))
                    }
                    _ => false,
                };
                params_constant && reads_features && !ops[1..].contains(&s)
            })
            .collect();
        if consumers.is_empty() {
            return false;
        }
        for c in consumers {
            let f = rw.func();
            let ops = f.op(c).operands().to_vec();
            let w = f.constant_of(ops[1]).expect("checked above").clone();
            let out = w.shape()[0] as usize;
            let old_b = ops.get(2).and_then(|&b| f.constant_of(b)).cloned();
            let mut b: Vec<f32> = old_b.as_ref().map_or(vec![0.0; out], Tensor::to_f32_vec);
            let absorbed: Vec<(Vec<usize>, f32)> = dropped
                .iter()
                .filter(|&&j| fill[j] != 0.0)
                .map(|&j| (vec![j], fill[j]))
                .collect();
            let touched = absorb_columns(&w, &absorbed, &mut b);
            let new_w = rw.derived_constant_before(c, w.take(1, &keep), ops[1]);
            let mut operands = vec![x, new_w];
            match (touched, ops.get(2)) {
                (true, Some(&old)) => {
                    let t = Tensor::from_f32(
                        old_b.map_or(w.elem(), |t| t.elem()),
                        vec![out as u64],
                        &b,
                    );
                    operands.push(rw.derived_constant_before(c, t, old));
                }
                (true, None) => {
                    let t = Tensor::from_f32(w.elem(), vec![out as u64], &b);
                    operands.push(rw.constant_before(c, t));
                }
                (false, Some(&old)) => operands.push(old),
                (false, None) => {}
            }
            rw.set_operands(c, &operands);
            cx.pass.count("scatters folded into consumers", 1);
        }
        true
    }
}

/// `act(scatter(x, idx, fill))` → `scatter(act(x), idx, act(fill))`, and
/// `x ⊙ y` with `x = scatter(a, idx, f)`, `y = scatter(b, idx, g)` (same axis, indices and
/// size, same type) → `scatter(a ⊙ b, idx, f ⊙ g)` for ⊙ ∈ {add, sub, mul}: the element-wise op
/// then runs on the kept channels only, and the scatter moves towards a consumer it can fold
/// into.
pub struct SinkScatter;

impl Pattern for SinkScatter {
    fn name(&self) -> &'static str {
        "sink-scatter"
    }
    fn root(&self) -> Option<&'static [OpTag]> {
        None
    }
    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PatternCx) -> bool {
        let f = rw.func();
        let data = f.op(op);
        let kind = data.kind.clone();
        let Some(r) = data.result() else { return false };
        let scatter_of = |v| match f.producer_kind(v) {
            Some(OpKind::Scatter {
                axis,
                indices,
                size,
                fill,
            }) => Some((
                f.producer(v).expect("has a producer"),
                *axis,
                indices.clone(),
                *size,
                fill.clone(),
            )),
            _ => None,
        };
        let (sources, fill): (Vec<_>, Vec<f32>) = match &kind {
            k if k.tag().is_elementwise_unary() => {
                let Some((s, axis, indices, size, fill)) = scatter_of(data.operands()[0]) else {
                    return false;
                };
                let fill = fill
                    .iter()
                    .map(|&c| k.eval_unary(c).unwrap_or(f32::NAN))
                    .collect();
                (vec![(s, axis, indices, size)], fill)
            }
            OpKind::Add | OpKind::Sub | OpKind::Mul => {
                let [x, y] = [data.operands()[0], data.operands()[1]];
                let (Some(a), Some(b)) = (scatter_of(x), scatter_of(y)) else {
                    return false;
                };
                let same = a.1 == b.1
                    && a.2 == b.2
                    && a.3 == b.3
                    && f.ty(x) == f.ty(y)
                    && f.ty(x) == f.ty(r);
                if !same {
                    return false;
                }
                let fill =
                    a.4.iter()
                        .zip(&b.4)
                        .map(|(&p, &q)| match kind {
                            OpKind::Add => p + q,
                            OpKind::Sub => p - q,
                            _ => p * q,
                        })
                        .collect();
                (vec![(a.0, a.1, a.2, a.3), (b.0, b.1, b.2, b.3)], fill)
            }
            _ => return false,
        };
        let (_, axis, indices, size) = sources[0].clone();
        let inputs: Vec<_> = sources.iter().map(|s| f.op(s.0).operands()[0]).collect();
        let Ok(ax) = crate::ir::infer::norm_axis(axis, f.ty(r).rank()) else {
            return false;
        };
        let narrow = f.ty(inputs[0]).clone();
        if inputs.iter().any(|&v| f.ty(v) != &narrow) {
            return false;
        }
        let full = f.ty(r).clone();
        debug_assert_eq!(narrow.with_dim(ax, full.dim(ax)), full);
        let inner = rw.insert_before(op, kind, &inputs, narrow);
        let scatter = OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        };
        let s = rw.insert_before(op, scatter, &[inner], full);
        rw.copy_name(r, s);
        rw.replace_op(op, s);
        cx.pass.count("scatters sunk", 1);
        true
    }
}
