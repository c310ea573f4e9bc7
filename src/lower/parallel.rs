//! Parallel loops without the async dialect: each outlined parallel nest (`outline.rs`) becomes
//! a task function called once per iteration by nnopt's runtime entry
//! [`RUNTIME_ENTRY`]`(body, ctx, n)` (`async_runtime.rs`), through a small trampoline.
//!
//! Why: MLIR's `async-parallel-for` + `async-to-async-runtime` + `convert-async-to-llvm` turn
//! every parallel loop into coroutines (an `async.execute` function per loop, split by LLVM's
//! coroutine passes), reference counting and a dispatch loop: a ResNet had twice the LLVM
//! dialect with two threads as with one. Here a parallel loop costs one trampoline and one
//! launcher of a few loads and stores. (A `--threads 2` compile still takes about twice as
//! long as one thread's: `docs/performance.md`, "The suite on an AVX2-only machine".)
//!
//! Two steps:
//! - [`split`], on memrefs after the outlined functions were merged: a private function whose
//!   body is constants, one `scf.parallel` with constant bounds and no results, and a return,
//!   gets a trailing `index` argument, the task number `t` in `0..n` (`n` the loop's trip
//!   count, the loop's induction variables recomputed from it, row-major), and the loop's body
//!   in place of the loop. Its callers call a declaration `<f>__fork` instead, with the same
//!   arguments, marked with the task's name and `n`.
//! - [`finish`], on the LLVM dialect: each marked declaration gets its body, which stores its
//!   arguments (the memref descriptors' fields) into a stack record and calls the runtime entry
//!   with the trampoline `<f>__fork_task(ctx, t)`, which loads them and calls `<f>(..., t)`.
//!
//! The runtime runs task 0 on the calling thread and the others on its pool, and returns when
//! all have (the semantics of `async-parallel-for` with `async-dispatch=false`). A parallel
//! loop that `split` does not take (bounds not constant, not outlined) is left to the async
//! passes, which stay in the threaded pipeline for it.

use melior::dialect::{arith, func};
use melior::ir::attribute::{IntegerAttribute, StringAttribute, TypeAttribute};
use melior::ir::operation::{
    OperationLike, OperationMutLike, OperationRefMut, WalkOrder, WalkResult,
};
use melior::ir::r#type::{FunctionType, IntegerType, TypeLike};
use melior::ir::{
    BlockLike, Identifier, Module as MlirModule, Operation, OperationRef, Region, RegionLike, Type,
    Value, ValueLike,
};
use melior::Context;
use mlir_sys::{MlirOperation, MlirValue};

/// The runtime's entry: `void nnopt_parallel_for(void (*body)(void *ctx, int64_t t), void
/// *ctx, int64_t n)`.
pub const RUNTIME_ENTRY: &str = "nnopt_parallel_for";

/// The discardable attributes of a `<f>__fork` declaration, from [`split`] to [`finish`]: the
/// task function's name and the number of tasks.
const TASK: &str = "nnopt.fork_task";
const COUNT: &str = "nnopt.fork_count";

/// The value of `v` when an `arith.constant` defines it.
fn constant(v: Value) -> Option<i64> {
    // SAFETY: `v` is a live value.
    let raw = v.to_raw();
    if unsafe { mlir_sys::mlirValueIsABlockArgument(raw) } {
        return None;
    }
    // SAFETY: `v` is an op result; its owner is live.
    let op = unsafe { OperationRef::from_raw(mlir_sys::mlirOpResultGetOwner(raw)) };
    if op.name().as_string_ref().as_str() != Ok("arith.constant") {
        return None;
    }
    IntegerAttribute::try_from(op.attribute("value").ok()?)
        .ok()
        .map(|a| a.value())
}

/// The name of function `f`.
fn name_of(f: OperationRef) -> String {
    StringAttribute::try_from(
        f.attribute("sym_name")
            .expect("invariant: a function has a name"),
    )
    .expect("invariant: sym_name is a string")
    .value()
    .to_string()
}

/// A parallel loop's constant bounds per dimension: `(lb, step, trips)`.
type Bounds = Vec<(i64, i64, i64)>;

/// The parallel loop that is `f`'s whole body (besides constants and the return), with its
/// [`Bounds`]; `None` when `f` is not such a function.
fn sole_parallel(f: OperationRef) -> Option<(MlirOperation, Bounds)> {
    let body = f.region(0).ok()?.first_block()?;
    let mut found = None;
    let mut op = body.first_operation();
    while let Some(o) = op {
        match o.name().as_string_ref().as_str() {
            Ok("scf.parallel") if found.is_none() && o.result_count() == 0 => found = Some(o),
            Ok("arith.constant" | "memref.get_global" | "func.return") => {}
            _ => return None,
        }
        op = o.next_in_block();
    }
    let p = found?;
    let rank = p.region(0).ok()?.first_block()?.argument_count();
    let operand = |i: usize| p.operand(i).ok().and_then(constant);
    let dims = (0..rank)
        .map(|d| {
            let (lb, ub, step) = (operand(d)?, operand(rank + d)?, operand(2 * rank + d)?);
            (step > 0 && ub > lb).then(|| (lb, step, (ub - lb + step - 1) / step))
        })
        .collect::<Option<Vec<_>>>()?;
    Some((p.to_raw(), dims))
}

/// Rewrites each private function that is one parallel loop into a task function, and its
/// callers into calls of the fork declaration (see the module docs). Returns how many parallel
/// loops it left (for the async passes).
pub fn split(cx: &Context, module: &mut MlirModule) -> usize {
    let mut tasks = Vec::new();
    let mut op = module.body().first_operation();
    while let Some(o) = op {
        let private = o
            .attribute("sym_visibility")
            .is_ok_and(|v| v.to_string() == "\"private\"");
        if o.name().as_string_ref().as_str() == Ok("func.func") && private {
            if let Some((p, dims)) = sole_parallel(o) {
                tasks.push((o.to_raw(), p, dims));
            }
        }
        op = o.next_in_block();
    }
    let mut renamed = Vec::new();
    for (f, p, dims) in tasks {
        // SAFETY: a function of the module found above; only its body and type change.
        let f = unsafe { OperationRef::from_raw(f) };
        let name = name_of(f);
        let fork = format!("{name}__fork");
        let count: i64 = dims.iter().map(|d| d.2).product();
        let fty = f
            .attribute("function_type")
            .expect("invariant: a func has a type");
        let loc = f.location();
        let decl = func::func(
            cx,
            StringAttribute::new(cx, &fork),
            TypeAttribute::try_from(fty).expect("invariant: function_type is a type"),
            Region::new(),
            &[
                (
                    Identifier::new(cx, "sym_visibility"),
                    StringAttribute::new(cx, "private").into(),
                ),
                (
                    Identifier::new(cx, TASK),
                    StringAttribute::new(cx, &name).into(),
                ),
                (
                    Identifier::new(cx, COUNT),
                    IntegerAttribute::new(IntegerType::new(cx, 64).into(), count).into(),
                ),
            ],
            loc,
        );
        module.body().insert_operation_before(f, decl);
        into_task(cx, f, p, &dims);
        renamed.push((format!("@{name}"), fork));
    }
    let mut calls = Vec::new();
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        if op.name().as_string_ref().as_str() == Ok("func.call") {
            if let Ok(callee) = op.attribute("callee") {
                let callee = callee.to_string();
                if let Some((_, fork)) = renamed.iter().find(|(n, _)| *n == callee) {
                    calls.push((op.to_raw(), fork.clone()));
                }
            }
        }
        WalkResult::Advance
    });
    for (call, fork) in calls {
        // SAFETY: a call op found above; only its callee changes.
        let mut call = unsafe { OperationRefMut::from_raw(call) };
        call.set_inherent_attribute(
            "callee",
            melior::ir::attribute::FlatSymbolRefAttribute::new(cx, &fork).into(),
        );
    }
    let mut left = 0;
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        left += usize::from(op.name().as_string_ref().as_str() == Ok("scf.parallel"));
        WalkResult::Advance
    });
    left
}

/// Gives function `f` the task number argument and replaces its parallel loop `p` (bounds
/// `dims`) by the loop's body for that task.
fn into_task(cx: &Context, f: OperationRef, p: MlirOperation, dims: &[(i64, i64, i64)]) {
    let body = f
        .region(0)
        .ok()
        .and_then(|r| r.first_block())
        .expect("invariant: sole_parallel found a body");
    let index = Type::index(cx);
    let loc = f.location();
    // SAFETY: the entry block is live; the new argument is appended after the existing ones.
    let t = unsafe {
        Value::from_raw(mlir_sys::mlirBlockAddArgument(
            body.to_raw(),
            index.to_raw(),
            loc.to_raw(),
        ))
    };
    let inputs: Vec<Type> = (0..body.argument_count())
        .map(|i| body.argument(i).expect("invariant: in range").r#type())
        .collect();
    // SAFETY: `f` is live; its type now matches its entry block.
    let mut fm = unsafe { OperationRefMut::from_raw(f.to_raw()) };
    fm.set_inherent_attribute(
        "function_type",
        TypeAttribute::new(FunctionType::new(cx, &inputs, &[]).into()).into(),
    );
    // SAFETY: `p` is the live loop found by `sole_parallel`.
    let loop_op = unsafe { OperationRef::from_raw(p) };
    // The ops that compute the induction variables go before the loop; values stay raw
    // handles here, as each op's result outlives the closure that made it.
    let emit = |op: Operation| -> MlirValue {
        body.insert_operation_before(loop_op, op)
            .result(0)
            .expect("invariant: an arith op has a result")
            .to_raw()
    };
    // SAFETY (for `val`): every handle comes from `emit` or is the live argument `t`.
    let val = |v: MlirValue| unsafe { Value::from_raw(v) };
    let c = |v: i64| {
        emit(arith::constant(
            cx,
            IntegerAttribute::new(index, v).into(),
            loc,
        ))
    };
    let inner = loop_op
        .region(0)
        .ok()
        .and_then(|r| r.first_block())
        .expect("invariant: a loop has a body");
    // Row-major: the last dimension varies fastest.
    let mut stride = 1;
    for (d, &(lb, step, trips)) in dims.iter().enumerate().rev() {
        let mut iv = t.to_raw();
        if stride > 1 {
            iv = emit(arith::divui(val(iv), val(c(stride)), loc));
        }
        if d > 0 {
            iv = emit(arith::remui(val(iv), val(c(trips)), loc));
        }
        if step != 1 {
            iv = emit(arith::muli(val(iv), val(c(step)), loc));
        }
        if lb != 0 {
            iv = emit(arith::addi(val(iv), val(c(lb)), loc));
        }
        stride *= trips;
        let arg = inner
            .argument(d)
            .expect("invariant: one argument per dimension");
        // SAFETY: `iv` dominates every use of the loop's argument once the body moves before
        // the loop.
        unsafe { mlir_sys::mlirValueReplaceAllUsesOfWith(arg.to_raw(), iv) };
    }
    let mut op = inner.first_operation();
    while let Some(o) = op {
        op = o.next_in_block();
        if op.is_none() {
            break; // the loop's terminator (`scf.reduce`) goes with the loop
        }
        // SAFETY: an op of the loop's body moves before the loop, in the same block as `t`.
        unsafe { mlir_sys::mlirOperationMoveBefore(o.to_raw(), p) };
    }
    // SAFETY: the loop is now empty but for its terminator, and has no results or users.
    unsafe { mlir_sys::mlirOperationDestroy(p) };
}

/// Gives each fork declaration of the LLVM-dialect module its launcher body and trampoline
/// (see the module docs).
pub fn finish(cx: &Context, module: &mut MlirModule) -> Result<(), String> {
    let mut forks = Vec::new();
    let mut entry_declared = false;
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        if op.name().as_string_ref().as_str() == Ok("llvm.func") {
            if op.attribute(TASK).is_ok() {
                forks.push(op.to_raw());
            } else if op
                .attribute("sym_name")
                .is_ok_and(|n| n.to_string() == format!("\"{RUNTIME_ENTRY}\""))
            {
                entry_declared = true;
            }
        }
        WalkResult::Advance
    });
    for raw in forks {
        // SAFETY: a declaration of the module found above; it is replaced below.
        let decl = unsafe { OperationRef::from_raw(raw) };
        let text = launcher_text(decl);
        let parsed = MlirModule::parse(cx, &text).ok_or_else(|| {
            format!("internal error: a parallel loop's launcher does not parse:\n{text}")
        })?;
        // SAFETY: the declaration is named by symbol only; its definition takes its place.
        unsafe { mlir_sys::mlirOperationDestroy(raw) };
        let mut op = parsed.body().first_operation();
        while let Some(o) = op {
            op = o.next_in_block();
            let is_def = o.region(0).is_ok_and(|r| r.first_block().is_some());
            let is_entry = o
                .attribute("sym_name")
                .is_ok_and(|n| n.to_string() == format!("\"{RUNTIME_ENTRY}\""));
            if is_def || (is_entry && !entry_declared) {
                // SAFETY: the op is live and of the same context; it leaves the parsed module
                // for `module`.
                unsafe {
                    mlir_sys::mlirOperationRemoveFromParent(o.to_raw());
                    mlir_sys::mlirBlockAppendOwnedOperation(module.body().to_raw(), o.to_raw());
                }
            }
        }
        entry_declared = true;
    }
    Ok(())
}

/// The LLVM dialect of a fork declaration's launcher and trampoline, with declarations of the
/// task function and of the runtime entry so that it verifies alone.
fn launcher_text(decl: OperationRef) -> String {
    let attr = |n: &str| decl.attribute(n).expect("invariant: split marked the fork");
    let task = StringAttribute::try_from(attr(TASK))
        .expect("invariant: a string")
        .value()
        .to_string();
    let count = IntegerAttribute::try_from(attr(COUNT))
        .expect("invariant: an integer")
        .value();
    let fork = StringAttribute::try_from(attr("sym_name"))
        .expect("invariant: a name")
        .value()
        .to_string();
    let fty = TypeAttribute::try_from(attr("function_type"))
        .expect("invariant: a type")
        .value();
    // SAFETY: the type of an `llvm.func` is an LLVM function type.
    let params: Vec<String> = unsafe {
        (0..mlir_sys::mlirLLVMFunctionTypeGetNumInputs(fty.to_raw()))
            .map(|i| {
                Type::from_raw(mlir_sys::mlirLLVMFunctionTypeGetInput(fty.to_raw(), i)).to_string()
            })
            .collect()
    };
    let record = "!record";
    let types = params.join(", ");
    let field = |i: usize| {
        format!("    %p{i} = llvm.getelementptr inbounds %ctx[0, {i}] : (!llvm.ptr) -> !llvm.ptr, {record}\n")
    };
    let mut s = format!(
        "{record} = !llvm.struct<({})>\nmodule {{\n",
        params.join(", ")
    );
    s += &format!("  llvm.func @{RUNTIME_ENTRY}(!llvm.ptr, !llvm.ptr, i64)\n");
    s += &format!(
        "  llvm.func @{task}({types}{}i64)\n",
        if params.is_empty() { "" } else { ", " }
    );
    s += &format!("  llvm.func internal @{fork}_task(%ctx: !llvm.ptr, %t: i64) {{\n");
    let mut args = Vec::new();
    for (i, ty) in params.iter().enumerate() {
        s += &field(i);
        s += &format!("    %a{i} = llvm.load %p{i} : !llvm.ptr -> {ty}\n");
        args.push(format!("%a{i}"));
    }
    args.push("%t".into());
    s += &format!(
        "    llvm.call @{task}({}) : ({types}{}i64) -> ()\n    llvm.return\n  }}\n",
        args.join(", "),
        if params.is_empty() { "" } else { ", " }
    );
    let formals: Vec<String> = params
        .iter()
        .enumerate()
        .map(|(i, t)| format!("%a{i}: {t}"))
        .collect();
    s += &format!("  llvm.func internal @{fork}({}) {{\n", formals.join(", "));
    s += "    %one = llvm.mlir.constant(1 : i64) : i64\n";
    s += &format!("    %ctx = llvm.alloca %one x {record} : (i64) -> !llvm.ptr\n");
    for (i, ty) in params.iter().enumerate() {
        s += &field(i);
        s += &format!("    llvm.store %a{i}, %p{i} : {ty}, !llvm.ptr\n");
    }
    s += &format!("    %body = llvm.mlir.addressof @{fork}_task : !llvm.ptr\n");
    s += &format!("    %n = llvm.mlir.constant({count} : i64) : i64\n");
    s += &format!(
        "    llvm.call @{RUNTIME_ENTRY}(%body, %ctx, %n) : (!llvm.ptr, !llvm.ptr, i64) -> ()\n"
    );
    s += "    llvm.return\n  }\n}\n";
    s
}
