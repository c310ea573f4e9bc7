//! The `glu-neuron-elimination` pattern: the hidden neurons of a gated MLP (SwiGLU, GeGLU, as
//! in Llama, Mistral, Qwen and Gemma) that provably do not affect its output.
//!
//! Shape matched, from any of its three linears: `down(act(gate(x)) ⊙ up(x'))`, where `gate`,
//! `up` and `down` are `nn.linear` with constant weights and optional constant biases, `act` is
//! an element-wise unary op (`nn.silu`, `nn.gelu`, …; it may sit on either side, or both), and
//! every intermediate value has no other use. Neuron `j` is column `j` of the product: row `j`
//! of `gate` and of `up`, column `j` of `down`.
//!
//! Precondition: the pattern context's constness analysis is up to date (the greedy driver keeps
//! it so). Idempotent: after a rewrite, no neuron of the block is removable until a neighbour
//! changes.

use super::align::{choose_kept, kept_for_alignment};
use super::PruneCx;
use crate::ir::{Dim, Function, OpId, OpKind, OpTag, Tensor, ValueId};
use crate::passes::absorb::{absorb_columns, set_weighted_operands};
use crate::passes::analysis::zero_lines;
use crate::rewrite::{ensure, MatchFailure, MatchResult, Pattern, Rewriter};

/// `down(act(gate(x)) ⊙ up(x'))`: drop neuron `j` (row `j` of `gate` and `up`, column `j` of
/// `down`) when
/// - (a) column `j` of `down`'s weight is zero: the neuron is ignored, whatever it computes;
/// - (b) row `j` of `gate` is zero and `act(b_g[j]) = 0` (`b_g[j] = 0` for silu and gelu,
///   where `act(0) = 0`): the product is `0 · u_j = 0`;
/// - (c) row `j` of `up` is zero and `b_u[j] = 0`: the product is `act(g_j) · 0 = 0`;
/// - (d) both rows are zero: the product is the constant `act(b_g[j]) · b_u[j]`, which
///   `down`'s bias absorbs, `b_d += W_d[:, j] · act(b_g[j]) · b_u[j]`.
///
/// Exact: in every case, neuron `j` adds the same `W_d[:, j] · p_j` to `down`'s output for
/// every input (zero in (a)-(c)), which the bias now adds; the other neurons compute the same
/// sums over the same inputs. The constant `p_j` comes from the constness analysis, which
/// evaluates `act` with the interpreter's own function (`OpKind::eval_unary`). When a bias
/// makes the product depend on the input (row `j` of `gate` zero but `act(b_g[j]) ≠ 0`, and
/// `up` live: the product is `act(b_g[j]) · u_j`), the neuron stays.
///
/// With `round_to` (`prune-neurons{round-to=N}`), dead neurons stay until the hidden width is
/// a multiple of N, those whose constant `down`'s bias would absorb first (`align.rs`);
/// keeping a dead neuron is exact, its product is computed as before.
pub struct GluNeuronElimination {
    pub round_to: usize,
}

/// The ops of one gated MLP.
struct Glu {
    /// The two linears whose results are multiplied, each with the unary op after it, if any.
    sides: [(OpId, Option<OpId>); 2],
    mul: OpId,
    down: OpId,
}

fn fail(reason: &'static str) -> MatchFailure {
    MatchFailure(reason)
}

/// The only use of `v`, as (user, operand index).
fn only_use(f: &Function, v: ValueId) -> Option<(OpId, usize)> {
    match f.uses(v) {
        [u] => Some((u.op, u.index as usize)),
        _ => None,
    }
}

/// Whether `op` is an `nn.linear` with a constant weight and, if it has one, a constant bias.
fn constant_linear(f: &Function, op: OpId) -> bool {
    matches!(f.kind(op), OpKind::Linear)
        && f.op(op).operands()[1..]
            .iter()
            .all(|&v| f.constant_of(v).is_some())
}

/// One operand of the product: `linear` or `act(linear)`, each result read only by the next.
fn side(f: &Function, v: ValueId) -> Result<(OpId, Option<OpId>), MatchFailure> {
    let p = f
        .producer(v)
        .ok_or(fail("an operand of the product is an argument"))?;
    ensure(
        only_use(f, v).is_some(),
        "an operand of the product has other uses",
    )?;
    let (lin, act) = if f.kind(p).tag().is_elementwise_unary() {
        let x = f.op(p).operands()[0];
        ensure(
            only_use(f, x).is_some(),
            "the activation's operand has other uses",
        )?;
        (
            f.producer(x)
                .ok_or(fail("the activation reads an argument"))?,
            Some(p),
        )
    } else {
        (p, None)
    };
    ensure(
        constant_linear(f, lin),
        "an operand of the product is not a linear with constant parameters",
    )?;
    Ok((lin, act))
}

/// The gated MLP that `op` (a linear) is the gate, up or down projection of.
fn find(f: &Function, op: OpId) -> Result<Glu, MatchFailure> {
    let x = f.op(op).operands()[0];
    let mul = match f.producer(x) {
        // `op` is the down projection.
        Some(p) if matches!(f.kind(p), OpKind::Mul) => p,
        _ => {
            let r = f.op(op).result().ok_or(fail("no result"))?;
            let (mut user, _) = only_use(f, r).ok_or(fail("not a projection of a gated MLP"))?;
            if f.kind(user).tag().is_elementwise_unary() {
                let a = f.op(user).result().ok_or(fail("no result"))?;
                user = only_use(f, a)
                    .ok_or(fail("not a projection of a gated MLP"))?
                    .0;
            }
            ensure(
                matches!(f.kind(user), OpKind::Mul),
                "not a projection of a gated MLP",
            )?;
            user
        }
    };
    let h = f.op(mul).result().ok_or(fail("no result"))?;
    let (down, index) = only_use(f, h).ok_or(fail("the product has other uses"))?;
    ensure(
        index == 0 && constant_linear(f, down),
        "the product is not read by a linear with constant parameters",
    )?;
    let ins = f.op(mul).operands();
    ensure(f.ty(ins[0]) == f.ty(ins[1]), "the product broadcasts")?;
    let sides = [side(f, ins[0])?, side(f, ins[1])?];
    ensure(
        sides[0].0 != sides[1].0,
        "both operands of the product come from one linear",
    )?;
    Ok(Glu { sides, mul, down })
}

impl Pattern<PruneCx<'_>> for GluNeuronElimination {
    fn name(&self) -> &'static str {
        "glu-neuron-elimination"
    }

    fn root(&self) -> Option<&'static [OpTag]> {
        Some(&[OpTag::Linear])
    }

    /// Above `dead-neuron-elimination`, which would otherwise take the gate's constant rows
    /// first and restore them with a scatter in front of the product.
    fn benefit(&self) -> u32 {
        2
    }

    fn rewrite(&self, rw: &mut Rewriter, op: OpId, cx: &mut PruneCx) -> MatchResult {
        let f = rw.func();
        let glu = find(f, op)?;
        let h = f.op(glu.mul).result().ok_or(fail("no result"))?;
        let axis = f.ty(h).rank() - 1;
        let n = f
            .ty(h)
            .dim(axis)
            .as_static()
            .ok_or(fail("dynamic hidden size"))? as usize;
        let down_ins = f.op(glu.down).operands().to_vec();
        let wd = f.constant_of(down_ins[1]).expect("checked in find").clone();
        ensure(
            wd.shape().len() == 2 && wd.shape()[1] as usize == n,
            "the down projection's weight is not [out, hidden]",
        )?;
        let facts = cx.analysis.facts(h).filter(|fx| fx.axis == axis);
        let constant = |j: usize| facts.and_then(|fx| fx.constant(j));
        let ignored = zero_lines(&wd, 1, cx.analysis.zero_threshold());
        let mut remove: Vec<usize> = (0..n)
            .filter(|&j| ignored[j] || constant(j).is_some())
            .collect();
        ensure(!remove.is_empty(), "no dead neuron")?;
        // No tensor gets an empty axis: the last neuron stays.
        if remove.len() == n {
            remove.pop();
            ensure(!remove.is_empty(), "the only neuron")?;
        }
        let absorbs = |j: usize| !ignored[j] && constant(j).is_some_and(|p| p != 0.0);
        let kept = choose_kept(
            &remove.iter().copied().collect(),
            kept_for_alignment(n, remove.len(), self.round_to),
            |j| u8::from(absorbs(j)),
        );
        remove.retain(|j| !kept.contains(j));
        // The latest match sees every dead neuron, so its count replaces earlier ones.
        for (lin, _) in glu.sides {
            let f = rw.func();
            if !kept.is_empty() || cx.pass.layers.contains_key(&(f.name.clone(), lin)) {
                cx.pass.layer(f, lin).aligned = kept.len() as u64;
            }
        }
        ensure(!remove.is_empty(), "alignment keeps every dead neuron")?;
        let keep: Vec<usize> = (0..n)
            .filter(|j| remove.binary_search(j).is_err())
            .collect();

        // down: fold the constant products into the bias, drop the columns.
        let absorbed: Vec<(Vec<usize>, f32)> = remove
            .iter()
            .filter(|&&j| !ignored[j])
            .filter_map(|&j| constant(j).filter(|&p| p != 0.0).map(|p| (vec![j], p)))
            .collect();
        let out = wd.shape()[0] as usize;
        let old_b = down_ins.get(2).and_then(|&b| f.constant_of(b)).cloned();
        let mut b = old_b.as_ref().map_or(vec![0.0; out], Tensor::to_f32_vec);
        let touched = absorb_columns(&wd, &absorbed, &mut b);
        set_weighted_operands(
            rw,
            glu.down,
            down_ins[0],
            wd.take(1, &keep),
            touched.then_some(&b),
        );

        // gate and up: drop the rows and bias entries; the results narrow.
        let unused = remove.iter().filter(|&&j| ignored[j]).count() as u64;
        let width = Dim::Static(keep.len() as u64);
        for (lin, act) in glu.sides {
            let ins = rw.func().op(lin).operands().to_vec();
            let mut operands = vec![ins[0]];
            for &p in &ins[1..] {
                let t = rw
                    .func()
                    .constant_of(p)
                    .expect("checked in find")
                    .take(0, &keep);
                operands.push(rw.derived_constant_before(lin, t, p));
            }
            rw.set_operands(lin, &operands);
            for o in std::iter::once(lin).chain(act) {
                let v = rw
                    .func()
                    .op(o)
                    .result()
                    .expect("linears and activations have results");
                let ty = rw.func().ty(v).with_dim(axis, width);
                rw.set_type(v, ty);
            }
            let note = cx.pass.layer(rw.func(), lin);
            note.unused += unused;
            note.constant += remove.len() as u64 - unused;
        }
        let ty = rw.func().ty(h).with_dim(axis, width);
        rw.set_type(h, ty);
        cx.pass
            .count("gated-MLP neurons removed", remove.len() as u64);
        if touched {
            cx.pass.count("biases updated", 1);
        }
        Ok(())
    }
}
