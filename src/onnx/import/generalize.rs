//! Keeping a dynamic dimension that the import-time constants depend on: a decoder's batch `B`.
//!
//! Exporters compute the causal mask and the position ids on shapes, so with `B` dynamic they
//! are `[B, …]` values made by `Range(B)`, `Expand` and `GatherND`, which the import-time
//! evaluator cannot compute; their values do not depend on the batch entry, though. Rather than
//! give every import-time operator a symbolic form, the graph is imported twice with `B` pinned
//! to the two [`PROBES`], and the two functions are merged:
//! - an op must be the same in both (kind, attributes, operands), except
//! - a value's size that differs between them is `?` (`B`, or a multiple of it as in the rows
//!   `[B·S, E]` of GPT-2's linears);
//! - an `nn.reshape` entry that differs is `-1` (the size that keeps the element count, which
//!   is the same at every `B` since the other entries are equal);
//! - a constant whose shapes differ only on axes that are the probe sizes is kept with size 1
//!   there, when every slice along them, in both imports, is the same bits: then it is
//!   invariant along `B`, and its size-1 form broadcasts to the same values.
//!
//! A constant kept with size 1 may only be read by `nn.add`, `nn.sub` and `nn.mul`, which
//! broadcast; a consumer that needs its real size along `B` (a concat, a reshape) is refused.
//! Every merged op's type must be the one inferred from its merged operands.
//!
//! What it assumes: a value computed from `B` that is equal at both probe sizes does not depend
//! on `B`. Two probes catch any dependence through a size or through data that varies with
//! `B` (both are compared); a function of `B` that agrees at 2 and 3 would pass. Cost: two more
//! imports, which map rather than copy the weights, and one comparison of every constant.

use crate::ir::builder::FuncBuilder;
use crate::ir::{Dim, Function, Module, OpId, OpKind, OpTag, Tensor, TensorType, ValueId};
use std::collections::{HashMap, HashSet};

/// The ops that broadcast their operands (NumPy rules), so that a size-1 constant gives the
/// same values as the full one.
const BROADCASTS: [OpTag; 3] = [OpTag::Add, OpTag::Sub, OpTag::Mul];

/// The sizes the dimension is pinned to for the two imports. Neither is 1, where broadcasting
/// would hide a dependence.
pub(super) const PROBES: [u64; 2] = [2, 3];

/// The module that both `a` (imported at `PROBES[0]`) and `b` (at `PROBES[1]`) are instances
/// of, or why there is none.
pub(super) fn generalize(a: &Module, b: &Module) -> Result<Module, String> {
    let ([fa], [fb]) = (a.funcs.as_slice(), b.funcs.as_slice()) else {
        return Err("an import gives one function".into());
    };
    let mut f = Function::new(fa.name.clone(), fa.span);
    let mut map_a: HashMap<ValueId, ValueId> = HashMap::new();
    let mut map_b: HashMap<ValueId, ValueId> = HashMap::new();
    // Constants kept with size 1 along the dimension: only broadcasting ops may read them.
    let mut collapsed: HashSet<ValueId> = HashSet::new();
    if fa.args().len() != fb.args().len() {
        return Err("the two imports have different arguments".into());
    }
    for (&x, &y) in fa.args().iter().zip(fb.args()) {
        let ty = merge_type(fa.ty(x), fb.ty(y))?;
        let name = fa.value(x).name.clone();
        let v = FuncBuilder::new(&mut f).add_arg(ty, name, fa.value_span(x));
        map_a.insert(x, v);
        map_b.insert(y, v);
    }
    let (ops_a, ops_b): (Vec<OpId>, Vec<OpId>) = (fa.ops().collect(), fb.ops().collect());
    if ops_a.len() != ops_b.len() {
        return Err(format!(
            "the imports at {} and {} have {} and {} ops",
            PROBES[0],
            PROBES[1],
            ops_a.len(),
            ops_b.len()
        ));
    }
    for (&oa, &ob) in ops_a.iter().zip(&ops_b) {
        let operands = same_operands(fa, oa, &map_a, fb, ob, &map_b)?;
        let (da, db) = (fa.op(oa), fb.op(ob));
        let (Some(ra), Some(rb)) = (da.result(), db.result()) else {
            let mut bld = FuncBuilder::new(&mut f);
            bld.set_result_types(
                (fa.result_types().iter().zip(fb.result_types()))
                    .map(|(x, y)| merge_type(x, y))
                    .collect::<Result<_, _>>()?,
            );
            bld.push_return(&operands, fa.span(oa));
            continue;
        };
        let what = || describe(fa, ra);
        if operands.iter().any(|x| collapsed.contains(x)) && !BROADCASTS.contains(&da.tag()) {
            return Err(format!(
                "{} needs the size of a constant that does not depend on it",
                what()
            ));
        }
        let (kind, ty) = merge_op(fa.kind(oa), fb.kind(ob), fa.ty(ra), fb.ty(rb))
            .map_err(|e| format!("{}: {e}", what()))?;
        let merged = merge_type(fa.ty(ra), fb.ty(rb))?;
        let name = fa.value(ra).name.clone();
        let v = FuncBuilder::new(&mut f).push(kind, &operands, ty.clone(), name, fa.span(oa));
        let op = f.producer(v).expect("invariant: just pushed");
        if let Some(loc) = fa.loc(oa) {
            FuncBuilder::new(&mut f).set_loc(op, loc.clone());
        }
        match crate::ir::infer::infer_type(&f, op) {
            Ok(t) if t == ty => {}
            Ok(t) => {
                return Err(format!(
                    "{} needs the size the dimension has (as {t}, not {ty})",
                    what()
                ))
            }
            Err(e) => return Err(format!("{}: {e}", what())),
        }
        if ty != merged {
            collapsed.insert(v);
        }
        map_a.insert(ra, v);
        map_b.insert(rb, v);
    }
    Ok(Module {
        name: a.name.clone(),
        attrs: a.attrs.clone(),
        funcs: vec![f],
        span: a.span,
    })
}

/// `'nn.add' %name` for messages.
fn describe(f: &Function, v: ValueId) -> String {
    let op = f.producer(v).expect("invariant: an op result");
    match &f.value(v).name {
        Some(n) => format!("'{}' %{n}", f.kind(op).mnemonic()),
        None => format!("'{}'", f.kind(op).mnemonic()),
    }
}

/// The merged operands of `oa` and `ob`, which must be the same values.
fn same_operands(
    fa: &Function,
    oa: OpId,
    map_a: &HashMap<ValueId, ValueId>,
    fb: &Function,
    ob: OpId,
    map_b: &HashMap<ValueId, ValueId>,
) -> Result<Vec<ValueId>, String> {
    let (xa, xb) = (fa.op(oa).operands(), fb.op(ob).operands());
    let differ = || {
        format!(
            "'{}' has other operands at the two sizes",
            fa.kind(oa).mnemonic()
        )
    };
    if xa.len() != xb.len() {
        return Err(differ());
    }
    xa.iter()
        .zip(xb)
        .map(|(x, y)| match (map_a.get(x), map_b.get(y)) {
            (Some(p), Some(q)) if p == q => Ok(*p),
            _ => Err(differ()),
        })
        .collect()
}

/// `?` where the two types' sizes differ.
fn merge_type(a: &TensorType, b: &TensorType) -> Result<TensorType, String> {
    if a.elem != b.elem || a.rank() != b.rank() {
        return Err(format!("a value is {a} at one size and {b} at the other"));
    }
    let dims = (a.dims.iter().zip(&b.dims)).map(|(&x, &y)| if x == y { x } else { Dim::Dynamic });
    Ok(TensorType::new(dims, a.elem))
}

/// The op both `ka` (result `ta`) and `kb` (result `tb`) are, with its result type.
fn merge_op(
    ka: &OpKind,
    kb: &OpKind,
    ta: &TensorType,
    tb: &TensorType,
) -> Result<(OpKind, TensorType), String> {
    match (ka, kb) {
        (
            OpKind::Weight { name, value: x },
            OpKind::Weight {
                name: name_b,
                value: y,
            },
        ) if name == name_b => {
            let value = invariant(x, y)?;
            let ty = value.ty();
            let name = name.clone();
            Ok((OpKind::Weight { name, value }, ty))
        }
        (OpKind::Constant(x), OpKind::Constant(y)) => {
            let value = invariant(x, y)?;
            let ty = value.ty();
            Ok((OpKind::Constant(value), ty))
        }
        (OpKind::Reshape { shape: x }, OpKind::Reshape { shape: y }) if x.len() == y.len() => {
            let shape = (x.iter().zip(y))
                .map(|(&p, &q)| if p == q { p } else { Dim::Dynamic })
                .collect();
            Ok((OpKind::Reshape { shape }, merge_type(ta, tb)?))
        }
        _ if ka == kb => Ok((ka.clone(), merge_type(ta, tb)?)),
        _ => Err("its attributes depend on the size".into()),
    }
}

/// The constant that `x` (at `PROBES[0]`) and `y` (at `PROBES[1]`) both broadcast from: size 1
/// on each axis where their shapes are the probe sizes, every slice there the same bits.
fn invariant(x: &Tensor, y: &Tensor) -> Result<Tensor, String> {
    if x.shape() == y.shape() {
        return if same_bits(x, y) {
            Ok(x.clone())
        } else {
            Err("its value depends on the size".into())
        };
    }
    if x.elem() != y.elem() || x.shape().len() != y.shape().len() {
        return Err("its type depends on the size".into());
    }
    let (mut x, mut y) = (x.clone(), y.clone());
    for axis in 0..x.shape().len() {
        match (x.shape()[axis], y.shape()[axis]) {
            (p, q) if p == q => {}
            (p, q) if [p, q] == PROBES => {
                let first = x.take(axis, &[0]);
                let all = |t: &Tensor, n: u64| {
                    (1..n as usize).all(|i| same_bits(&t.take(axis, &[i]), &first))
                };
                if !(all(&x, p) && all(&y, q) && same_bits(&y.take(axis, &[0]), &first)) {
                    return Err(format!(
                        "its value varies along axis {axis}, which has the size"
                    ));
                }
                y = y.take(axis, &[0]);
                x = first;
            }
            _ => return Err(format!("its axis {axis} is a multiple of the size")),
        }
    }
    if same_bits(&x, &y) {
        Ok(x)
    } else {
        Err("its value depends on the size".into())
    }
}

/// Bitwise equality, comparing mapped bytes in place.
fn same_bits(x: &Tensor, y: &Tensor) -> bool {
    match (x.raw_bytes(), y.raw_bytes()) {
        (Some(p), Some(q)) => x.elem() == y.elem() && x.shape() == y.shape() && p == q,
        _ => x.bit_eq(y),
    }
}

#[cfg(test)]
mod tests {
    use super::{invariant, PROBES};
    use crate::ir::{ElemType, Tensor};

    fn t(shape: &[u64], v: &[f32]) -> Tensor {
        Tensor::from_f32(ElemType::F32, shape.to_vec(), v)
    }

    #[test]
    fn a_constant_repeated_along_the_probe_axis_keeps_size_one() {
        assert_eq!(PROBES, [2, 3]);
        let x = t(&[2, 2], &[1., 2., 1., 2.]);
        let y = t(&[3, 2], &[1., 2., 1., 2., 1., 2.]);
        let m = invariant(&x, &y).unwrap();
        assert_eq!(m.shape(), &[1, 2]);
        assert_eq!(m.to_f32_vec(), [1., 2.]);
    }

    #[test]
    fn a_constant_that_varies_with_the_size_is_refused() {
        // Varies along the axis (a batch index).
        let x = t(&[2, 1], &[0., 1.]);
        let y = t(&[3, 1], &[0., 1., 2.]);
        assert!(invariant(&x, &y)
            .unwrap_err()
            .contains("varies along axis 0"));
        // Repeated, but a different value at each size.
        let x = t(&[2, 1], &[2., 2.]);
        let y = t(&[3, 1], &[3., 3., 3.]);
        assert!(invariant(&x, &y).is_err());
        // The same shape, a different value.
        assert!(invariant(&t(&[1], &[2.]), &t(&[1], &[3.])).is_err());
        // An axis that is a multiple of the size (rows B·S).
        let x = t(&[4], &[1.; 4]);
        let y = t(&[6], &[1.; 6]);
        assert!(invariant(&x, &y).unwrap_err().contains("multiple"));
    }
}
