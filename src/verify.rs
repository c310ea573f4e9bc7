//! The verifier: structural rules (one terminator, last; operands defined before use; use-lists
//! consistent with operands) and each op's type rule from `docs/dialect.md`, checked by
//! inferring the result type (`ir::infer`) and comparing it with the declared one. It runs after
//! reading and after every pass (`--verify-each`). It collects every error instead of stopping
//! at the first (an op whose operands are invalid skips its type rule, which could only repeat
//! the problem), and never changes the IR.

use crate::diag::Diagnostic;
use crate::ir::infer::infer_type;
use crate::ir::{Function, Module, OpId, OpKind, TensorType, Use, ValueDef, ValueId};
use cranelift_entity::SecondaryMap;
use std::collections::HashSet;

/// The errors of every function of `m`; empty when the module is valid.
pub fn verify_module(m: &Module) -> Vec<Diagnostic> {
    m.funcs.iter().flat_map(verify_function).collect()
}

/// The errors of `f`, op by op (its place and operands, then its type rule), then stale uses of
/// its arguments.
pub fn verify_function(f: &Function) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let mut position: SecondaryMap<OpId, u32> = SecondaryMap::with_capacity(f.op_capacity());
    for (i, op) in f.ops().enumerate() {
        position[op] = i as u32 + 1;
    }
    let n = f.num_ops();
    // Every (value, use) pair of the use-lists, gathered once: checking each operand against
    // its value's list directly is quadratic when a value has many users.
    let recorded: HashSet<(ValueId, Use)> = f
        .args()
        .iter()
        .copied()
        .chain(f.ops().filter_map(|op| f.op(op).result()))
        .flat_map(|v| f.uses(v).iter().map(move |&u| (v, u)))
        .collect();
    for (i, op) in f.ops().enumerate() {
        let data = f.op(op);
        let err = |m: String| Diagnostic::error(m).at(f.span(op));
        let is_last = i + 1 == n;
        if matches!(data.kind, OpKind::Return) != is_last {
            diags.push(err(if is_last {
                "the last op of a function must be 'return'".into()
            } else {
                "'return' must be the last op of its function".into()
            }));
        }
        let mut operands_ok = true;
        for (k, &v) in data.operands().iter().enumerate() {
            let defined_before = match f.value(v).def {
                ValueDef::Arg(_) => true,
                ValueDef::OpResult(p) => {
                    f.is_linked(p) && position[p] != 0 && position[p] < position[op]
                }
            };
            if !defined_before {
                diags.push(err(format!("operand {k} does not dominate its use")));
                operands_ok = false;
            }
            let u = Use {
                op,
                index: k as u32,
            };
            if !recorded.contains(&(v, u)) {
                diags.push(err(format!(
                    "operand {k} is missing from its value's use-list"
                )));
            }
        }
        if !operands_ok {
            continue;
        }
        if !data.kind.tag().arity().accepts(data.operands().len()) {
            diags.push(err(format!(
                "'{}' has {} operands",
                data.kind.mnemonic(),
                data.operands().len()
            )));
            continue;
        }
        if let OpKind::Return = data.kind {
            let got: Vec<&TensorType> = data.operands().iter().map(|&v| f.ty(v)).collect();
            let want: Vec<&TensorType> = f.result_types().iter().collect();
            if got != want {
                diags.push(err(format!(
                    "return types ({}) do not match the function's result types ({})",
                    list(&got),
                    list(&want)
                )));
            }
            continue;
        }
        let Some(r) = data.result() else { continue };
        match infer_type(f, op) {
            Ok(t) if t == *f.ty(r) => {}
            Ok(t) => diags.push(
                err(format!(
                    "'{}' result type {} does not match the inferred type {t}",
                    data.kind.mnemonic(),
                    f.ty(r)
                ))
                .with_primary_label(format!("inferred {t}")),
            ),
            Err(m) => diags.push(err(format!("'{}': {m}", data.kind.mnemonic()))),
        }
    }
    for &v in f.args() {
        for u in f.uses(v) {
            if !f.is_linked(u.op) || f.op(u.op).operands().get(u.index as usize) != Some(&v) {
                diags.push(Diagnostic::error(format!("stale use of argument {v}")).at(f.span));
            }
        }
    }
    diags
}

fn list(ts: &[&TensorType]) -> String {
    ts.iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
