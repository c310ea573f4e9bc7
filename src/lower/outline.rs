//! Outlining: every top-level loop nest of a network's function becomes a private function of
//! its own, and identical ones are merged, so the code LLVM optimizes grows with the number of
//! distinct layers rather than with the number of layers, and comes as many small functions
//! instead of one giant one (LLVM's O3 and code generation are superlinear in a function's
//! size; `docs/performance.md`, "Compile time").
//!
//! It runs between the two halves of the scheduled pipeline (`jit::run_scheduled`), where the
//! layers are loops over memrefs. A nest's captured values become the new function's arguments
//! with their exact types: sizes, strides and offsets are static there (compiled code is
//! specialized to its shapes), so the outlined code computes addresses from constants as it
//! did inline. Captured constants (`arith.constant`, `memref.get_global`) are cloned into the
//! function instead, so loop bounds stay known. Merging is MLIR's
//! `duplicate-function-elimination`: two layers of the same op, shapes, schedule and target
//! outline to the same text.
//!
//! Why `noalias`: inline, LLVM saw that a layer's buffers are distinct allocations or the
//! function's own arguments; as arguments of a callee it would have to assume any two may
//! overlap, which keeps the tiles' loads from being hoisted or vectorized across stores. Each
//! captured memref is traced to its root (an allocation, a global, or an argument of the
//! network's function, whose buffers the calling convention already takes as distinct:
//! `bufferization.to_tensor ... restrict`); a memref whose root no other captured memref shares,
//! or whose root nothing in the nest writes ([`written_roots`]), gets `llvm.noalias` on its
//! aligned pointer, after the lowering to the LLVM dialect
//! ([`finish`]), where the memref has become its descriptor's separate arguments. When a
//! memref's root is unknown, no argument of that function is marked. The outlined functions are
//! `no_inline`: inlining them back would rebuild the giant function.
//!
//! What it does not do: outline a nest whose results are used (a loop carrying values out),
//! or anything in a function that is not public (the outlined functions themselves).

use melior::dialect::func;
use melior::ir::attribute::TypeAttribute;
use melior::ir::attribute::{DenseI64ArrayAttribute, FlatSymbolRefAttribute, StringAttribute};
use melior::ir::operation::{
    OperationBuilder, OperationLike, OperationMutLike, WalkOrder, WalkResult,
};
use melior::ir::r#type::{FunctionType, TypeLike};
use melior::ir::{
    Attribute, Block, BlockLike, Identifier, Module as MlirModule, Operation, OperationRef, Region,
    RegionLike, Type, Value, ValueLike,
};
use melior::Context;
use mlir_sys::{MlirOperation, MlirValue};
use std::collections::{HashMap, HashSet};

/// The discardable attribute that carries, from [`outline`] to [`finish`], the LLVM parameter
/// numbers of the aligned pointers that get `llvm.noalias`.
const NOALIAS: &str = "nnopt.noalias";

/// The pass that merges identical outlined functions; the caller runs it first in the pipeline
/// after [`outline`].
pub const MERGE: &str = "duplicate-function-elimination,";

/// Outlines the top-level loop nests of the module's public functions.
pub fn outline(cx: &Context, module: &mut MlirModule) {
    let mut funcs = Vec::new();
    let mut op = module.body().first_operation();
    while let Some(o) = op {
        let public = o.attribute("sym_visibility").is_err();
        if o.name().as_string_ref().as_str() == Ok("func.func") && public {
            funcs.push(o.to_raw());
        }
        op = o.next_in_block();
    }
    for raw in funcs {
        // SAFETY: a function of the module found above; outlining only inserts functions
        // before it.
        let f = unsafe { OperationRef::from_raw(raw) };
        outline_function(cx, module, f);
    }
}

/// The name of `op` (`scf.for`).
fn name_of(op: MlirOperation) -> String {
    // SAFETY: `op` is a live operation; its name is an interned identifier.
    unsafe { OperationRef::from_raw(op) }
        .name()
        .as_string_ref()
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Outlines each top-level op with regions and no results of `f`'s body.
fn outline_function<'c>(cx: &'c Context, module: &MlirModule<'c>, f: OperationRef<'c, '_>) {
    let fname = StringAttribute::try_from(
        f.attribute("sym_name")
            .expect("invariant: a func.func has a name"),
    )
    .expect("invariant: sym_name is a string")
    .value()
    .to_string();
    let Some(body) = f.region(0).ok().and_then(|r| r.first_block()) else {
        return;
    };
    let mut nests = Vec::new();
    let mut op = body.first_operation();
    while let Some(o) = op {
        if o.region_count() > 0 && o.result_count() == 0 {
            nests.push(o.to_raw());
        }
        op = o.next_in_block();
    }
    for (k, raw) in nests.into_iter().enumerate() {
        let name = format!("{fname}__nest{k}");
        outline_nest(cx, module, f, body, raw, &name);
    }
}

/// Whether `ancestor` is `op` or contains it.
fn contains(ancestor: MlirOperation, mut op: MlirOperation) -> bool {
    // SAFETY: both are live operations; the parent chain ends in a null operation.
    unsafe {
        while !op.ptr.is_null() {
            if mlir_sys::mlirOperationEqual(op, ancestor) {
                return true;
            }
            op = mlir_sys::mlirOperationGetParentOperation(op);
        }
    }
    false
}

/// The operation that defines `v`, or that owns the block of which `v` is an argument.
fn owner(v: MlirValue) -> MlirOperation {
    // SAFETY: `v` is a live value: a block argument or an op result.
    unsafe {
        if mlir_sys::mlirValueIsABlockArgument(v) {
            mlir_sys::mlirBlockGetParentOperation(mlir_sys::mlirBlockArgumentGetOwner(v))
        } else {
            mlir_sys::mlirOpResultGetOwner(v)
        }
    }
}

/// Where a memref's buffer comes from (see the module docs).
#[derive(PartialEq, Eq, Hash, Clone)]
enum Root {
    Alloc(usize),
    Global(String),
    Arg(isize),
}

/// The root of memref `v` in the function whose entry block is `entry`, looking through views;
/// `None` when it comes from anything else.
fn root(mut v: MlirValue, entry: mlir_sys::MlirBlock) -> Option<Root> {
    loop {
        // SAFETY: `v` is a live value; op and block handles are read, not changed.
        unsafe {
            if mlir_sys::mlirValueIsABlockArgument(v) {
                let block = mlir_sys::mlirBlockArgumentGetOwner(v);
                return (block.ptr == entry.ptr)
                    .then(|| Root::Arg(mlir_sys::mlirBlockArgumentGetArgNumber(v)));
            }
            let op = mlir_sys::mlirOpResultGetOwner(v);
            match name_of(op).as_str() {
                "memref.alloc" | "memref.alloca" => return Some(Root::Alloc(op.ptr as usize)),
                "memref.get_global" => {
                    let o = OperationRef::from_raw(op);
                    return o
                        .attribute("name")
                        .ok()
                        .map(|a| Root::Global(a.to_string()));
                }
                "memref.subview"
                | "memref.cast"
                | "memref.collapse_shape"
                | "memref.expand_shape"
                | "memref.reinterpret_cast"
                | "memref.transpose"
                | "memref.assume_alignment" => v = mlir_sys::mlirOperationGetOperand(op, 0),
                _ => return None,
            }
        }
    }
}

/// Whether captured value `v` is cloned into the outlined function rather than passed.
fn cloned(v: MlirValue) -> bool {
    // SAFETY: `v` is a live value.
    !unsafe { mlir_sys::mlirValueIsABlockArgument(v) }
        && matches!(
            name_of(owner(v)).as_str(),
            "arith.constant" | "memref.get_global"
        )
}

/// The number of LLVM parameters a function argument of type `t` becomes (a memref: its
/// descriptor's allocated and aligned pointers, offset, sizes and strides).
fn llvm_params(t: Type) -> usize {
    // SAFETY: `t` is a live type.
    unsafe {
        if mlir_sys::mlirTypeIsAMemRef(t.to_raw()) {
            3 + 2 * mlir_sys::mlirShapedTypeGetRank(t.to_raw()) as usize
        } else {
            1
        }
    }
}

/// The LLVM parameter numbers of the aligned pointers of the memrefs among `passed` (of
/// `types`) whose root no other one shares, or that nothing in the nest writes (`written`,
/// when known), when every memref's root is known (see the module docs); `entry` is the entry
/// block of the function they are values of.
fn noalias_params(
    passed: &[MlirValue],
    types: &[Type],
    entry: mlir_sys::MlirBlock,
    written: Option<&HashSet<Root>>,
) -> Vec<i64> {
    // SAFETY: live types.
    let memref = |t: &Type| unsafe { mlir_sys::mlirTypeIsAMemRef(t.to_raw()) };
    let roots: Vec<Option<Root>> = passed
        .iter()
        .zip(types)
        .map(|(&v, t)| memref(t).then(|| root(v, entry)).flatten())
        .collect();
    let all_known = roots
        .iter()
        .zip(types)
        .all(|(r, t)| !memref(t) || r.is_some());
    let mut noalias = Vec::new();
    let mut param = 0i64;
    for (r, t) in roots.iter().zip(types) {
        let unaliased = r.as_ref().is_some_and(|r| {
            roots.iter().filter(|o| o.as_ref() == Some(r)).count() == 1
                || written.is_some_and(|w| !w.contains(r))
        });
        if all_known && unaliased {
            noalias.push(param + 1);
        }
        param += llvm_params(*t) as i64;
    }
    noalias
}

/// The roots of the memrefs that the ops of `nest` may write through, or `None` when one of
/// them has no known root. An op writes through every memref operand unless it only reads or
/// makes a view. Buffers that are only read may share a root and still be `noalias`: LLVM's
/// `noalias` constrains only memory that the function modifies.
fn written_roots(nest: OperationRef, entry: mlir_sys::MlirBlock) -> Option<HashSet<Root>> {
    let mut written = Some(HashSet::new());
    nest.walk(WalkOrder::PreOrder, |op| {
        let reads = matches!(
            op.name().as_string_ref().as_str(),
            Ok("memref.load"
                | "vector.load"
                | "vector.transfer_read"
                | "vector.maskedload"
                | "vector.gather"
                | "memref.dim"
                | "memref.extract_strided_metadata"
                | "memref.prefetch"
                | "memref.subview"
                | "memref.cast"
                | "memref.collapse_shape"
                | "memref.expand_shape"
                | "memref.reinterpret_cast"
                | "memref.transpose"
                | "memref.assume_alignment")
        );
        if reads {
            return WalkResult::Advance;
        }
        for v in op.operands() {
            // SAFETY: a live type.
            if !unsafe { mlir_sys::mlirTypeIsAMemRef(v.r#type().to_raw()) } {
                continue;
            }
            match (root(v.to_raw(), entry), written.as_mut()) {
                (Some(r), Some(w)) => {
                    w.insert(r);
                }
                _ => {
                    written = None;
                    return WalkResult::Interrupt;
                }
            }
        }
        WalkResult::Advance
    });
    written
}

/// Moves nest `raw` of function `f` (body `body`) into a new private function `name`, called
/// where the nest was.
fn outline_nest<'c>(
    cx: &'c Context,
    module: &MlirModule<'c>,
    f: OperationRef<'c, '_>,
    body: melior::ir::BlockRef<'c, '_>,
    raw: MlirOperation,
    name: &str,
) {
    // SAFETY: the nest is a live op of `body`, found by the caller.
    let nest = unsafe { OperationRef::from_raw(raw) };
    let mut captured: Vec<MlirValue> = Vec::new();
    let mut seen = HashSet::new();
    nest.walk(WalkOrder::PreOrder, |op| {
        for v in op.operands() {
            let v = v.to_raw();
            if !contains(raw, owner(v)) && seen.insert(v.ptr as usize) {
                captured.push(v);
            }
        }
        WalkResult::Advance
    });
    let passed: Vec<MlirValue> = captured.iter().copied().filter(|&v| !cloned(v)).collect();
    // SAFETY: the captured values are live.
    let types: Vec<Type> = passed
        .iter()
        .map(|&v| unsafe { Type::from_raw(mlir_sys::mlirValueGetType(v)) })
        .collect();
    let written = written_roots(nest, body.to_raw());
    let noalias = noalias_params(&passed, &types, body.to_raw(), written.as_ref());

    let loc = nest.location();
    let block = Block::new(&types.iter().map(|&t| (t, loc)).collect::<Vec<_>>());
    let ret = block.append_operation(func::r#return(&[], loc));
    let region = Region::new();
    let block = region.append_block(block);
    let fty = FunctionType::new(cx, &types, &[]);
    let function = func::func(
        cx,
        StringAttribute::new(cx, name),
        TypeAttribute::new(fty.into()),
        region,
        &[
            (
                Identifier::new(cx, "sym_visibility"),
                StringAttribute::new(cx, "private").into(),
            ),
            (
                Identifier::new(cx, "llvm.linkage"),
                Attribute::parse(cx, "#llvm.linkage<internal>")
                    .expect("invariant: a linkage attribute parses"),
            ),
            (
                Identifier::new(cx, NOALIAS),
                DenseI64ArrayAttribute::new(cx, &noalias).into(),
            ),
        ],
        loc,
    );
    module.body().insert_operation_before(f, function);
    // SAFETY: the passed values are live values of `f`, which dominate the nest.
    let operands: Vec<Value> = passed
        .iter()
        .map(|&v| unsafe { Value::from_raw(v) })
        .collect();
    let call = OperationBuilder::new("func.call", loc)
        .add_attributes(&[(
            Identifier::new(cx, "callee"),
            FlatSymbolRefAttribute::new(cx, name).into(),
        )])
        .add_operands(&operands)
        .build()
        .expect("invariant: a well-formed call");
    body.insert_operation_before(nest, call);
    // What each captured value becomes inside: a block argument, or a clone of its constant.
    let mut inside: HashMap<usize, MlirValue> = HashMap::new();
    let mut arg = 0;
    for &v in &captured {
        let new = if cloned(v) {
            // SAFETY: the constant op is live; its clone is new and owned by the block.
            let copy = unsafe { Operation::from_raw(mlir_sys::mlirOperationClone(owner(v))) };
            let copy = block.insert_operation_before(ret, copy);
            copy.result(0)
                .expect("invariant: a constant has a result")
                .to_raw()
        } else {
            arg += 1;
            block
                .argument(arg - 1)
                .expect("invariant: one argument per passed value")
                .to_raw()
        };
        inside.insert(v.ptr as usize, new);
    }
    // SAFETY: the nest and the return op are live; the nest leaves `body` for the new block.
    unsafe { mlir_sys::mlirOperationMoveBefore(raw, ret.to_raw()) };
    let mut uses = Vec::new();
    nest.walk(WalkOrder::PreOrder, |op| {
        for (i, v) in op.operands().enumerate() {
            if let Some(&new) = inside.get(&(v.to_raw().ptr as usize)) {
                uses.push((op.to_raw(), i, new));
            }
        }
        WalkResult::Advance
    });
    for (op, i, new) in uses {
        // SAFETY: `op` is an op of the moved nest and `new` a value of its new function that
        // dominates it.
        unsafe { mlir_sys::mlirOperationSetOperand(op, i as isize, new) };
    }
}

/// After the lowering to the LLVM dialect: marks the outlined functions `no_inline` and their
/// unaliased aligned pointers `llvm.noalias` (see the module docs).
pub fn finish(cx: &Context, module: &mut MlirModule) {
    let mut funcs = Vec::new();
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        if op.name().as_string_ref().as_str() == Ok("llvm.func") && op.attribute(NOALIAS).is_ok() {
            funcs.push(op.to_raw());
        }
        WalkResult::Advance
    });
    for raw in funcs {
        // SAFETY: an op of `module` found above; setting attributes erases nothing.
        let mut op = unsafe { melior::ir::operation::OperationRefMut::from_raw(raw) };
        let marked: Vec<i64> = DenseI64ArrayAttribute::try_from(
            op.attribute(NOALIAS).expect("invariant: found above"),
        )
        .map(|a| (0..a.len()).filter_map(|i| a.element(i).ok()).collect())
        .unwrap_or_default();
        let params = op
            .region(0)
            .ok()
            .and_then(|r| r.first_block())
            .map_or(0, |b| b.argument_count());
        let dicts: Vec<&str> = (0..params as i64)
            .map(|i| match marked.contains(&i) {
                true => "{llvm.noalias}",
                false => "{}",
            })
            .collect();
        let attrs = Attribute::parse(cx, &format!("[{}]", dicts.join(", ")))
            .expect("invariant: a list of argument attribute dictionaries parses");
        op.set_inherent_attribute("arg_attrs", attrs);
        op.set_inherent_attribute("no_inline", Attribute::unit(cx));
        op.remove_attribute(NOALIAS).ok();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two views of `%a` captured by one nest each: `@f` reads both and writes `%o`, `@g`
    /// reads one and writes the other.
    const VIEWS: &str = r#"
func.func @f(%a: memref<8xf32>, %o: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %v1 = memref.subview %a[0] [4] [1] : memref<8xf32> to memref<4xf32, strided<[1]>>
  %v2 = memref.subview %a[4] [4] [1] : memref<8xf32> to memref<4xf32, strided<[1], offset: 4>>
  scf.for %i = %c0 to %c4 step %c1 {
    %x = memref.load %v1[%i] : memref<4xf32, strided<[1]>>
    %y = memref.load %v2[%i] : memref<4xf32, strided<[1], offset: 4>>
    %s = arith.addf %x, %y : f32
    memref.store %s, %o[%i] : memref<4xf32>
  }
  return
}
func.func @g(%a: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %v1 = memref.subview %a[0] [4] [1] : memref<8xf32> to memref<4xf32, strided<[1]>>
  %v2 = memref.subview %a[4] [4] [1] : memref<8xf32> to memref<4xf32, strided<[1], offset: 4>>
  scf.for %i = %c0 to %c4 step %c1 {
    %x = memref.load %v1[%i] : memref<4xf32, strided<[1]>>
    memref.store %x, %v2[%i] : memref<4xf32, strided<[1], offset: 4>>
  }
  return
}
"#;

    /// The LLVM parameters that get `noalias` in outlined function `name`.
    fn noalias_of(module: &MlirModule, name: &str) -> Vec<i64> {
        let mut op = module.body().first_operation();
        while let Some(o) = op {
            let sym = o.attribute("sym_name").map(|a| a.to_string());
            if sym.as_deref() == Ok(&format!("\"{name}\"")) {
                let attr = o
                    .attribute(NOALIAS)
                    .expect("outlined functions carry the mark");
                let list = DenseI64ArrayAttribute::try_from(attr).expect("an i64 array");
                return (0..list.len()).map(|i| list.element(i).unwrap()).collect();
            }
            op = o.next_in_block();
        }
        panic!("no function {name}")
    }

    /// Views of one buffer are `noalias` where the nest only reads it: each rank-1 memref is
    /// five LLVM parameters, its aligned pointer the second.
    #[test]
    fn views_of_one_buffer_are_noalias_where_the_nest_does_not_write_it() {
        let cx = super::super::context();
        let mut module = MlirModule::parse(&cx, VIEWS).expect("parses");
        outline(&cx, &mut module);
        assert_eq!(noalias_of(&module, "f__nest0"), [1, 6, 11]);
        assert_eq!(noalias_of(&module, "g__nest0"), Vec::<i64>::new());
    }
}
