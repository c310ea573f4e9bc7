//! Lowering NNIR to MLIR (linalg on tensors) through melior, behind the `mlir` cargo feature.
//!
//! [`lower_module`] turns every function of an NNIR module into one `func.func` of an MLIR module
//! built op by op with melior's `OperationBuilder` (see `builder.rs`), never from pasted text.
//! The calling convention is the memref ABI of `../shared/mlir-codegen` (section 2): every
//! argument is an identity-layout memref, the function has no results and carries
//! `llvm.emit_c_interface`, the body converts inputs with `bufferization.to_tensor ... restrict`,
//! computes on tensors and writes each result with `bufferization.materialize_in_destination`.
//! Arguments come in this order (also in `docs/lowering.md`):
//!
//! 1. the NNIR function's arguments, in order;
//! 2. one memref per `nn.weight` op, in layout order (external weights are never inlined);
//! 3. one memref per returned value, in order (the outputs, written by the function).
//!
//! Dynamic dimensions stay dynamic. Every dynamic size the lowering needs is a function argument's
//! dimension times a static factor ([`DimVal`]); two dynamic sizes that must agree become a
//! runtime [`Signature::constraints`] entry, checked by the JIT driver before the call, so a
//! mismatched batch is an error message, not an out-of-bounds access.
//!
//! What it does not do: f16/bf16 element types, dynamic spatial or reduced dimensions, and a
//! dynamic concat/gather/scatter axis are reported as diagnostics naming the op; see
//! `docs/lowering.md`.

mod async_runtime;
pub mod builder;
pub mod jit;
mod prefetch;
pub mod schedule;
mod specialize;

use crate::diag::Diagnostic;
use crate::ir::{self, Dim, ElemType, Function, OpId, OpKind, Tensor, TensorType, ValueId};
use builder::{
    dense_i64, f32_type, i64_elements, id, map, tensor_type, BResult, BuildError, Emitter, Iter,
    DYNAMIC,
};
use melior::dialect::DialectRegistry;
use melior::ir::attribute::{
    DenseElementsAttribute, IntegerAttribute, StringAttribute, TypeAttribute,
};
use melior::ir::operation::{
    OperationBuilder, OperationLike, OperationMutLike, OperationRefMut, OperationResult,
};
use melior::ir::r#type::{FunctionType, IntegerType, MemRefType, RankedTensorType};
use melior::ir::{
    AffineExpr, AffineMap, Attribute, Block, BlockLike, Location, Module as MlirModule, Region,
    RegionLike, Type, Value, ValueLike,
};
use melior::utility::{register_all_dialects, register_all_llvm_translations, register_all_passes};
use melior::Context;
use schedule::Layer;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// A context with every upstream dialect (linalg, tensor, arith, math, func, transform, ...)
/// loaded, every upstream pass registered and the LLVM translations the JIT needs.
pub fn context() -> Context {
    let registry = DialectRegistry::new();
    register_all_dialects(&registry);
    let context = Context::new();
    context.append_dialect_registry(&registry);
    context.load_all_available_dialects();
    // MLIR's pass registry is one global map: registering from two threads at once (tests
    // compile in parallel) races on it, so it happens once per process.
    static PASSES: std::sync::Once = std::sync::Once::new();
    PASSES.call_once(register_all_passes);
    register_all_llvm_translations(&context);
    context
}

/// One dimension of a lowered value: static, or argument `arg`'s dimension `axis` times
/// `factor` (flatten multiplies a dynamic batch by the static sizes it merges with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimVal {
    Static(u64),
    Arg {
        arg: usize,
        axis: usize,
        factor: u64,
    },
}

impl DimVal {
    /// The size for concrete input shapes.
    pub fn eval(self, input_shapes: &[Vec<usize>]) -> Option<u64> {
        match self {
            DimVal::Static(n) => Some(n),
            DimVal::Arg { arg, axis, factor } => input_shapes
                .get(arg)?
                .get(axis)
                .and_then(|&n| (n as u64).checked_mul(factor)),
        }
    }

    fn to_i64(self) -> i64 {
        match self {
            DimVal::Static(n) => n as i64,
            DimVal::Arg { .. } => DYNAMIC,
        }
    }
}

/// An external weight passed as an argument.
#[derive(Clone, Debug)]
pub struct WeightArg {
    pub name: String,
    pub value: Tensor,
    /// The argument is `value` (`[N, K]`) packed by [`pack_dense`]: the weight of a scheduled
    /// dense layer. [`jit::Jit::compile`] packs it once.
    pub packed: bool,
}

impl WeightArg {
    /// The shape of the argument.
    pub fn arg_shape(&self) -> Vec<u64> {
        let s = self.value.shape();
        if self.packed {
            let tn = schedule::DENSE_TILE.1;
            vec![s[0].div_ceil(tn), s[1], tn]
        } else {
            s.to_vec()
        }
    }
}

/// A dense layer's weight `w[N, K]` as panels of `TN` = [`schedule::DENSE_TILE`]`.1` columns of
/// `W^T`: `[ceil(N / TN), K, TN]`, zero past row `N`. A register tile of the packed kernel then
/// reads each reduction step's `TN` weights from one contiguous run (rows of `W^T` are `4 N`
/// bytes apart, and a 4 KiB stride defeated the caches: 64x1024x1024 took 3.6 ms that way, 1.0
/// ms packed, against 1.7 ms for the dot-product schedule on `[N, K]`).
pub fn pack_dense(w: &Tensor) -> Tensor {
    let tn = schedule::DENSE_TILE.1 as usize;
    let (n, k) = (w.shape()[0] as usize, w.shape()[1] as usize);
    let nb = n.div_ceil(tn);
    let src = w.to_f32_vec();
    let mut out = vec![0f32; nb * k * tn];
    for (r, row) in src.chunks_exact(k.max(1)).enumerate().take(n) {
        let (b, l) = (r / tn, r % tn);
        for (c, &v) in row.iter().enumerate() {
            out[(b * k + c) * tn + l] = v;
        }
    }
    Tensor::from_f32(ElemType::F32, vec![nb as u64, k as u64, tn as u64], &out)
}

/// The calling convention of one lowered function.
#[derive(Clone, Debug)]
pub struct Signature {
    pub name: String,
    pub inputs: Vec<TensorType>,
    pub weights: Vec<WeightArg>,
    /// The dimensions of each output.
    pub outputs: Vec<Vec<DimVal>>,
    /// Pairs of sizes that must be equal at run time (e.g. the batch of both operands of an
    /// `nn.add` of two dynamic-batch arguments).
    pub constraints: Vec<(DimVal, DimVal)>,
}

/// An MLIR module and the signatures of its functions (in NNIR order).
pub struct Lowered<'c> {
    pub module: MlirModule<'c>,
    pub signatures: Vec<Signature>,
    /// The layers whose ops carry schedule tags (see `schedule.rs`), indexed by tag.
    pub layers: Vec<Layer>,
}

/// Collects MLIR's diagnostics while alive, so a verifier or pass failure reports MLIR's own
/// text instead of a bare "failed".
pub struct DiagCapture<'c> {
    cx: &'c Context,
    id: Option<melior::diagnostic::DiagnosticHandlerId>,
    messages: Rc<RefCell<Vec<String>>>,
}

impl<'c> DiagCapture<'c> {
    pub fn new(cx: &'c Context) -> Self {
        let messages = Rc::new(RefCell::new(Vec::new()));
        let sink = messages.clone();
        let id = cx.attach_diagnostic_handler(move |d| {
            let mut text = d.to_string();
            for i in 0..d.note_count() {
                if let Ok(n) = d.note(i) {
                    text.push_str(&format!("\n  note: {n}"));
                }
            }
            sink.borrow_mut().push(format!("{}: {text}", d.location()));
            true
        });
        DiagCapture {
            cx,
            id: Some(id),
            messages,
        }
    }

    /// The messages so far, one per line.
    pub fn take(&self) -> String {
        std::mem::take(&mut *self.messages.borrow_mut()).join("\n")
    }
}

impl Drop for DiagCapture<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.cx.detach_diagnostic_handler(id);
        }
    }
}

/// Lowers every function of `m`. Unsupported ops and types are diagnostics at the op; a module
/// MLIR's verifier rejects is an internal error carrying MLIR's diagnostics.
pub fn lower_module<'c>(cx: &'c Context, m: &ir::Module) -> Result<Lowered<'c>, Vec<Diagnostic>> {
    let module = MlirModule::new(Location::unknown(cx));
    let mut signatures = Vec::new();
    let mut diags = Vec::new();
    let mut layers = Vec::new();
    for f in &m.funcs {
        match lower_function(cx, f, &mut layers) {
            Ok((op, sig)) => {
                module.body().append_operation(op);
                signatures.push(sig);
            }
            Err(d) => diags.extend(d),
        }
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let capture = DiagCapture::new(cx);
    if !module.as_operation().verify() {
        return Err(vec![Diagnostic::error(format!(
            "internal error: the lowered MLIR module does not verify:\n{}",
            capture.take()
        ))
        .at(m.span)]);
    }
    Ok(Lowered {
        module,
        signatures,
        layers,
    })
}

/// Why one op could not be lowered.
enum Fail {
    Unsupported(OpId, String),
    Build(BuildError),
}

impl From<BuildError> for Fail {
    fn from(e: BuildError) -> Fail {
        Fail::Build(e)
    }
}

type LResult<T> = Result<T, Fail>;

fn lower_function<'c>(
    cx: &'c Context,
    f: &Function,
    layers: &mut Vec<Layer>,
) -> Result<(melior::ir::Operation<'c>, Signature), Vec<Diagnostic>> {
    let unknown = Location::unknown(cx);
    let mut inputs = Vec::new();
    let mut arg_types = Vec::new();
    let mut diags = Vec::new();
    for &a in f.args() {
        let ty = f.ty(a).clone();
        if ty.elem != ElemType::F32 {
            diags.push(
                Diagnostic::error(format!(
                    "argument of type {ty} cannot be lowered to MLIR yet: only f32 is supported"
                ))
                .at(f.value_span(a)),
            );
        }
        let shape: Vec<i64> = ty
            .dims
            .iter()
            .map(|d| d.as_static().map_or(DYNAMIC, |n| n as i64))
            .collect();
        arg_types.push(memref_type(cx, &shape));
        inputs.push(ty);
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    let args: Vec<(Type, Location)> = arg_types.iter().map(|&t| (t, unknown)).collect();
    let block = Block::new(&args);
    let result = {
        let mut l = Lower {
            cx,
            f,
            e: Emitter::new(cx, &block, unknown),
            block: &block,
            vals: HashMap::new(),
            dims: HashMap::new(),
            inputs: Vec::new(),
            constraints: Vec::new(),
            weights: Vec::new(),
            outputs: Vec::new(),
            output_types: Vec::new(),
            layers,
            epilogue: HashMap::new(),
            views: HashMap::new(),
            packed: Default::default(),
            strided: Default::default(),
        };
        l.run().map(|()| {
            (
                l.weights,
                l.outputs,
                l.constraints,
                l.output_types,
                l.block.argument_count(),
            )
        })
    };
    let (weights, outputs, constraints, output_types, _) = match result {
        Ok(r) => r,
        Err(Fail::Unsupported(op, why)) => {
            return Err(vec![Diagnostic::error(format!(
                "'{}' op cannot be lowered to MLIR yet: {why}",
                f.kind(op).mnemonic()
            ))
            .at(f.span(op))])
        }
        Err(Fail::Build(BuildError(msg))) => {
            return Err(vec![Diagnostic::error(format!(
                "internal error while lowering @{}: {msg}",
                f.name
            ))
            .at(f.span)])
        }
    };
    let mut all_types = arg_types;
    for w in &weights {
        let shape: Vec<i64> = w.arg_shape().iter().map(|&n| n as i64).collect();
        all_types.push(memref_type(cx, &shape));
    }
    all_types.extend(output_types);
    let region = Region::new();
    region.append_block(block);
    let fty = FunctionType::new(cx, &all_types, &[]);
    let func = OperationBuilder::new("func.func", unknown)
        .add_attributes(&[
            (id(cx, "sym_name"), StringAttribute::new(cx, &f.name).into()),
            (
                id(cx, "function_type"),
                TypeAttribute::new(fty.into()).into(),
            ),
            (id(cx, "llvm.emit_c_interface"), Attribute::unit(cx)),
        ])
        .add_regions([region])
        .build()
        .map_err(|e| {
            vec![
                Diagnostic::error(format!("internal error: cannot build func.func: {e}"))
                    .at(f.span),
            ]
        })?;
    Ok((
        func,
        Signature {
            name: f.name.clone(),
            inputs,
            weights,
            outputs,
            constraints,
        },
    ))
}

fn memref_type<'c>(cx: &'c Context, shape: &[i64]) -> Type<'c> {
    MemRefType::new(f32_type(cx), shape, None, None).into()
}

struct Lower<'c, 'b, 'f> {
    cx: &'c Context,
    f: &'f Function,
    e: Emitter<'c, 'b, Block<'c>>,
    block: &'b Block<'c>,
    vals: HashMap<ValueId, Value<'c, 'b>>,
    dims: HashMap<ValueId, Vec<DimVal>>,
    /// The input tensors (`to_tensor` of the input memrefs), where dynamic sizes are read.
    inputs: Vec<Value<'c, 'b>>,
    constraints: Vec<(DimVal, DimVal)>,
    weights: Vec<WeightArg>,
    outputs: Vec<Vec<DimVal>>,
    output_types: Vec<Type<'c>>,
    /// The module's scheduled layers so far (tags are indices into it).
    layers: &'f mut Vec<Layer>,
    /// Layers whose result feeds only an op the schedule may fuse as the epilogue (an
    /// activation, a residual add; see [`Lower::epilogue_slot`]): the layer's index and its
    /// current root op's result.
    epilogue: HashMap<ValueId, (usize, Value<'c, 'b>)>,
    /// Results of layers computed in a padded or flattened form (see [`Lower::conv_flat`],
    /// [`Lower::dense_packed`]): that form, which a fused activation is computed on, and how
    /// to view it as the op's result.
    views: HashMap<ValueId, (Value<'c, 'b>, View)>,
    /// Weights whose argument is packed (see [`pack_dense`]).
    packed: std::collections::HashSet<ValueId>,
    /// Results of [`Lower::view`] that are not contiguous (raw MLIR values).
    strided: std::collections::HashSet<usize>,
}

/// The geometry of a conv that [`Lower::conv_flat`] lowers.
struct FlatConv {
    f: u64,
    c: u64,
    h: u64,
    w: u64,
    kh: u64,
    kw: u64,
    pads: [u64; 4],
}

impl FlatConv {
    /// The flat length of a conv over a padded buffer: its output rows times the padded width,
    /// rounded up to 32 so that two threads split it into whole vectors.
    fn padded_len(&self) -> u64 {
        let [pt, pl, pb, pr] = self.pads;
        let wp = self.w + pl + pr;
        ((self.h + pt + pb - self.kh + 1) * wp).next_multiple_of(32)
    }

    /// The rows of `wp` a flat conv computing `len` positions reads: the image's, plus enough
    /// below for the reads of the last positions.
    fn rows(&self, len: u64, wp: u64) -> u64 {
        (len + self.kw - 1).div_ceil(wp) + self.kh - 1
    }
}

/// What a flat conv reads (see [`Lower::conv_flat`]).
#[derive(Clone, Copy)]
enum FlatSource<'c, 'b> {
    /// The NCHW input (this operand), zero-padded into a buffer of `wp`-wide rows or, unpadded,
    /// read in place.
    Nchw(ValueId),
    /// An earlier flat conv's rows, as they are (a pointwise conv of them).
    Rows(Value<'c, 'b>, RowView),
    /// A computed input already padded and flattened to `[N, C, rows * wp]`, with the rows
    /// [`FlatConv::rows`] asks for (a strided conv's phases).
    Flat(Value<'c, 'b>),
}

/// A flat conv result `[n, f, len]` whose first `ho * wp` positions are `ho` rows of `wp`, of
/// which the first `wo` columns are the NCHW output.
#[derive(Clone, Copy, PartialEq, Eq)]
struct RowView {
    n: DimVal,
    f: u64,
    ho: u64,
    wp: u64,
    wo: u64,
    len: u64,
}

/// How a layer's result is a view of the form it is computed in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    /// A flat conv result (see [`Lower::conv_flat`]).
    Rows(RowView),
    /// A packed dense result `[m, npad / TN, TN]`: its first `n` columns.
    Cols { m: DimVal, n: u64, npad: u64 },
}

impl View {
    /// The dims of the computed form.
    fn full_dims(&self) -> Vec<DimVal> {
        let s = DimVal::Static;
        match *self {
            View::Rows(r) => vec![r.n, s(r.f), s(r.len)],
            View::Cols { m, npad, .. } => {
                let tn = schedule::DENSE_TILE.1;
                vec![m, s(npad / tn), s(tn)]
            }
        }
    }

    /// The dims of the view.
    fn dims(&self) -> Vec<DimVal> {
        let s = DimVal::Static;
        match *self {
            View::Rows(r) => vec![r.n, s(r.f), s(r.ho), s(r.wo)],
            View::Cols { m, n, .. } => vec![m, s(n)],
        }
    }
}

/// Sets the discardable attribute `nnopt.<name> = index` on the op defining `v`: the handle a
/// transform schedule matches.
fn tag(cx: &Context, v: Value, name: &str, index: usize) -> BResult<()> {
    let attr = IntegerAttribute::new(IntegerType::new(cx, 64).into(), index as i64);
    owner(v)?.set_discardable_attribute(&format!("nnopt.{name}"), attr.into());
    Ok(())
}

fn untag(v: Value, name: &str) -> BResult<()> {
    owner(v)?
        .remove_discardable_attribute(&format!("nnopt.{name}"))
        .map_err(|e| BuildError(e.to_string()))
}

/// The last operand of `v`'s op: a linalg op's init (`outs`).
fn last_operand<'c: 'a, 'a>(v: Value<'c, 'a>) -> BResult<Value<'c, 'a>> {
    let op = owner(v)?;
    let last = op.operand_count() - 1;
    <OperationRefMut<'c, 'a> as OperationLike<'c, 'a>>::operand(&op, last)
        .map_err(|e| BuildError(e.to_string()))
}

/// Makes the op of `v` (a layer's bias add or fused activation, which does not read its init)
/// write into `empty`, the `tensor.empty` under the kernel's zero fill, instead of its own.
/// One-shot bufferization then gives the fill's tiles a small buffer and the layer one output
/// buffer; with two empties (which `cse` merged before it was dropped from the pipeline) every
/// tile's zeros went through a second buffer of the layer's full size (3 % of a 128-channel
/// conv's time).
fn share_init<'c: 'a, 'a>(v: Value<'c, 'a>, empty: Value<'c, 'a>) -> BResult<()> {
    let own = last_operand(v)?;
    let mut op = owner(v)?;
    let last = op.operand_count() - 1;
    op.set_operand(last, empty);
    // Its own `tensor.empty`, made for it and now unused, goes (canonicalization would drop
    // it, but `--emit=mlir` prints the module before any pass).
    let made = owner(own)?;
    // SAFETY: `own` is a live value; its op is destroyed only when nothing uses its result.
    unsafe {
        if made.name().as_string_ref().as_str() == Ok("tensor.empty")
            && mlir_sys::mlirValueGetFirstUse(own.to_raw()).ptr.is_null()
        {
            mlir_sys::mlirOperationDestroy(made.to_raw());
        }
    }
    Ok(())
}

/// The name of the op defining `v`.
fn op_name(v: Value) -> BResult<String> {
    Ok(owner(v)?
        .name()
        .as_string_ref()
        .as_str()
        .map_err(|e| BuildError(e.to_string()))?
        .to_string())
}

fn owner<'c, 'a>(v: Value<'c, 'a>) -> BResult<OperationRefMut<'c, 'a>> {
    let r = OperationResult::try_from(v).map_err(|e| BuildError(e.to_string()))?;
    // SAFETY: the op is alive (it defines `v`, which the lowering holds) and nothing else
    // borrows it while its attributes change.
    Ok(unsafe { OperationRefMut::from_raw(r.owner().to_raw()) })
}

/// The interpreter's average-pool divisor for one output position along one axis (see
/// `interp::kernels::PoolGeom::window`): `(full, inside)` window lengths.
fn pool_window(len: u64, k: u64, s: u64, p0: u64, p1: u64, o: u64) -> (i64, i64) {
    let (len, p0, p1) = (len as i64, p0 as i64, p1 as i64);
    let start = (o * s) as i64 - p0;
    let end = (start + k as i64).min(len + p1);
    let cs = start.max(0);
    let ce = end.min(len).max(cs);
    (end - start, ce - cs)
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    fn run(&mut self) -> LResult<()> {
        for (i, &a) in self.f.args().iter().enumerate() {
            let m: Value = self
                .block
                .argument(i)
                .map_err(|e| BuildError(e.to_string()))?
                .into();
            let ty = self.f.ty(a);
            let dims: Vec<DimVal> = ty
                .dims
                .iter()
                .enumerate()
                .map(|(axis, d)| match d {
                    Dim::Static(n) => DimVal::Static(*n),
                    Dim::Dynamic => DimVal::Arg {
                        arg: i,
                        axis,
                        factor: 1,
                    },
                })
                .collect();
            let t = self.to_tensor(m, &dims)?;
            self.inputs.push(t);
            self.vals.insert(a, t);
            self.dims.insert(a, dims);
        }
        for op in self.f.ops() {
            self.e.loc = self.location(op);
            if let Some(r) = self.f.op(op).result() {
                if self.f.ty(r).elem != ElemType::F32 {
                    return Err(Fail::Unsupported(
                        op,
                        format!("element type {} (only f32 is supported)", self.f.ty(r).elem),
                    ));
                }
            }
            self.lower_op(op)?;
        }
        Ok(())
    }

    fn location(&self, op: OpId) -> Location<'c> {
        let name = self.f.kind(op).mnemonic();
        match self.f.loc(op) {
            Some(l) => Location::name(
                self.cx,
                name,
                Location::new(self.cx, &l.file, l.line as usize, l.col as usize),
            ),
            None => Location::name(self.cx, name, Location::unknown(self.cx)),
        }
    }

    fn to_tensor(&self, m: Value<'c, '_>, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        self.e.op1(
            "bufferization.to_tensor",
            &[m],
            self.ty(dims),
            &[(id(self.cx, "restrict"), Attribute::unit(self.cx))],
            vec![],
        )
    }

    fn ty(&self, dims: &[DimVal]) -> Type<'c> {
        tensor_type(self.cx, &shape(dims))
    }

    fn dyn_sizes(&self, dims: &[DimVal]) -> BResult<Vec<Value<'c, 'b>>> {
        let mut out = Vec::new();
        for d in dims {
            if let DimVal::Arg { arg, axis, factor } = *d {
                let v = self.e.dim(self.inputs[arg], axis)?;
                out.push(if factor == 1 {
                    v
                } else {
                    let k = self.e.index_const(factor as i64)?;
                    self.e.muli(v, k)?
                });
            }
        }
        Ok(out)
    }

    fn empty(&self, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        let dy = self.dyn_sizes(dims)?;
        self.e.empty(&shape(dims), &dy)
    }

    fn filled(&self, v: f32, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        let init = self.empty(dims)?;
        self.e.fill(v, init, self.ty(dims))
    }

    /// Two sizes that must be equal; a dynamic one is checked at run time.
    fn unify(&mut self, a: DimVal, b: DimVal) -> DimVal {
        match (a, b) {
            _ if a == b => a,
            (DimVal::Static(_), DimVal::Static(_)) => a,
            (DimVal::Static(_), _) => {
                self.constraints.push((b, a));
                a
            }
            _ => {
                self.constraints.push((a, b));
                if matches!(b, DimVal::Static(_)) {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// NumPy broadcasting of one axis.
    fn broadcast_dim(&mut self, a: DimVal, b: DimVal) -> DimVal {
        match (a, b) {
            (DimVal::Static(1), x) | (x, DimVal::Static(1)) => x,
            _ => self.unify(a, b),
        }
    }

    /// Indexing map results of an operand broadcast into `out` (right-aligned; a size-1 axis
    /// of the operand against a larger output axis reads index 0).
    fn broadcast_map(od: &[DimVal], out: &[DimVal]) -> Vec<Option<usize>> {
        let off = out.len() - od.len();
        od.iter()
            .enumerate()
            .map(|(i, d)| {
                if *d == DimVal::Static(1) && out[i + off] != DimVal::Static(1) {
                    None
                } else {
                    Some(i + off)
                }
            })
            .collect()
    }

    fn val(&self, v: ValueId) -> (Value<'c, 'b>, Vec<DimVal>) {
        (self.vals[&v], self.dims[&v].clone())
    }

    fn define(&mut self, op: OpId, v: Value<'c, 'b>, dims: Vec<DimVal>) {
        if let Some(r) = self.f.op(op).result() {
            self.vals.insert(r, v);
            self.dims.insert(r, dims);
        }
    }

    /// Records `layer` for the transform schedule and tags its ops: `kernel` is the matmul or
    /// conv, `root` the last op of the layer (the bias add, or the kernel itself). When the
    /// layer's only user is a cheap activation, that activation becomes the root instead (see
    /// [`Lower::fuse_epilogue`]).
    fn schedule(
        &mut self,
        op: OpId,
        kernel: Value<'c, 'b>,
        root: Value<'c, 'b>,
        layer: Layer,
    ) -> BResult<()> {
        let i = self.layers.len();
        self.layers.push(layer);
        tag(self.cx, kernel, "kernel", i)?;
        tag(self.cx, root, "root", i)?;
        // The ops a threaded schedule moves into the root's `scf.forall`: the kernel (unless
        // it is the root, which the forall tiles itself) and the fill it accumulates into
        // (its init, the last operand).
        if kernel != root {
            tag(self.cx, kernel, "part", i)?;
        }
        let init = last_operand(kernel)?;
        tag(self.cx, init, "part", i)?;
        if kernel != root {
            share_init(root, last_operand(init)?)?;
        }
        let r = self
            .f
            .op(op)
            .result()
            .expect("invariant: a layer has a result");
        self.epilogue_slot(r, i, root);
        Ok(())
    }

    /// Offers `r`, computed by layer `i` with current root `root`, to its only user as an
    /// epilogue: an activation that is plain arith ops (a fused epilogue is vectorized with
    /// the tile, and math functions such as erf and tanh would need a vector libm), or an add
    /// (fused when its other operand is computed in the same form: a residual connection).
    fn epilogue_slot(&mut self, r: ValueId, i: usize, root: Value<'c, 'b>) {
        if let [u] = self.f.uses(r) {
            if matches!(
                self.f.kind(u.op),
                OpKind::Relu | OpKind::LeakyRelu { .. } | OpKind::Clip { .. } | OpKind::Add
            ) {
                self.epilogue.insert(r, (i, root));
            }
        }
    }

    /// `x` through an identity `tensor.cast`: the schedule's `fuse` stops there instead of
    /// pulling `x`'s producer into every tile of the layer (canonicalization removes the cast).
    fn barrier(&self, x: Value<'c, 'b>, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        self.e.op1("tensor.cast", &[x], self.ty(dims), &[], vec![])
    }

    /// Moves a layer's root tag to the op `y` that consumes it (an activation, a residual
    /// add), so the schedule tiles `y` and fuses the whole layer into it. The layer's index,
    /// or `None` when `input` is no layer's.
    fn fuse_epilogue(&mut self, input: ValueId, y: Value<'c, 'b>) -> BResult<Option<usize>> {
        let Some((i, prev)) = self.epilogue.remove(&input) else {
            return Ok(None);
        };
        untag(prev, "root")?;
        tag(self.cx, prev, "part", i)?;
        tag(self.cx, y, "root", i)?;
        share_init(y, last_operand(prev)?)?;
        Ok(Some(i))
    }

    /// `a + b` in the epilogue of the layer computing `a` or `b`, when both are computed in
    /// the same form (two flat convs of one geometry, or a flat conv and an activation fused
    /// into one): the residual add, and an activation after it, run in that layer's tiles
    /// instead of as two passes over memory of their own (`x = conv(…) + r; relu(x)` is
    /// onnxruntime's fused Conv + Add + Relu). The other operand is read in its computed
    /// form, through a barrier so its producer is not pulled into the tiles. Returns whether
    /// it fused.
    fn fuse_residual(&mut self, op: OpId, operands: &[ValueId]) -> BResult<bool> {
        let &[a, b] = operands else { return Ok(false) };
        let (Some(&(ay, av)), Some(&(by, bv))) = (self.views.get(&a), self.views.get(&b)) else {
            return Ok(false);
        };
        // The layer whose epilogue takes the add; `b` first: the later operand of a
        // residual block is usually the block's last layer.
        let Some(layer) = [b, a].into_iter().find(|v| self.epilogue.contains_key(v)) else {
            return Ok(false);
        };
        if a == b || av != bv {
            return Ok(false);
        }
        let full = av.full_dims();
        let (ay, by) = if layer == a {
            (ay, self.barrier(by, &full)?)
        } else {
            (self.barrier(ay, &full)?, by)
        };
        let ids: Vec<Option<usize>> = (0..full.len()).map(Some).collect();
        let y = self.elementwise(&[(ay, ids.clone()), (by, ids)], &full, |e, v| {
            e.binf("arith.addf", v[0], v[1])
        })?;
        let i = self
            .fuse_epilogue(layer, y)?
            .expect("invariant: the layer is in an epilogue slot");
        self.define_view(op, y, av, Some((i, y)))?;
        Ok(true)
    }

    /// Defines `op`'s result as `view` of `y`, its computed form (see [`Lower::set_view`]).
    fn define_view(
        &mut self,
        op: OpId,
        y: Value<'c, 'b>,
        view: View,
        layer: Option<(usize, Value<'c, 'b>)>,
    ) -> BResult<()> {
        match self.f.op(op).result() {
            Some(r) => self.set_view(r, y, view, layer),
            None => Ok(()),
        }
    }

    /// Makes `r` the value `view` of `y`, its computed form, and records that form for
    /// consumers that can read it (an activation, a residual add, a pointwise conv, a padded
    /// conv); with `layer`, `r` is offered to its only user as the layer's epilogue.
    fn set_view(
        &mut self,
        r: ValueId,
        y: Value<'c, 'b>,
        view: View,
        layer: Option<(usize, Value<'c, 'b>)>,
    ) -> BResult<()> {
        let out = self.view(y, view)?;
        self.views.insert(r, (y, view));
        if let Some((i, root)) = layer {
            self.epilogue_slot(r, i, root);
        }
        self.vals.insert(r, out);
        self.dims.insert(r, view.dims());
        Ok(())
    }

    /// Tags an element-wise op outside any layer (a residual add, an activation, a padded conv
    /// input's zero fill) with the axis a threaded schedule splits it along (`nnopt.spread`):
    /// the first of the two outermost axes with at least 2 elements, when every size is static.
    /// On two threads these ops otherwise ran on one while the other waited (the benchmark
    /// ResNet's residual adds and their relus).
    fn spread(&self, y: Value<'c, 'b>, dims: &[DimVal]) -> BResult<()> {
        let sizes: Option<Vec<u64>> = dims
            .iter()
            .map(|d| match d {
                DimVal::Static(n) => Some(*n),
                DimVal::Arg { .. } => None,
            })
            .collect();
        match sizes.and_then(|s| s.iter().take(2).position(|&n| n >= 2)) {
            Some(axis) => tag(self.cx, y, "spread", axis),
            None => Ok(()),
        }
    }

    /// The static size of `dims[axis]`, or an "unsupported" failure naming what it is.
    fn need_static(&self, op: OpId, dims: &[DimVal], axis: usize, what: &str) -> LResult<u64> {
        match dims.get(axis) {
            Some(DimVal::Static(n)) => Ok(*n),
            _ => Err(Fail::Unsupported(
                op,
                format!("the {what} (axis {axis}) must have a static size"),
            )),
        }
    }

    fn norm_axis(op: OpId, axis: i64, rank: usize) -> LResult<usize> {
        crate::ir::infer::norm_axis(axis, rank).map_err(|e| Fail::Unsupported(op, e))
    }

    /// `init[out...] += a * b` summed over `reductions` loops after the `out.len()` output
    /// loops: a `linalg.generic` whose mul/add carry `fastmath<contract>` (`mul_add`), with
    /// `in_maps` over all the loops and the identity on the output loops as the output map.
    fn contraction(
        &self,
        ins: &[Value<'c, 'b>],
        in_maps: &[AffineMap<'c>],
        init: Value<'c, 'b>,
        out: &[DimVal],
        reductions: usize,
    ) -> BResult<Value<'c, 'b>> {
        let r = out.len();
        let mut iters = vec![Iter::Parallel; r];
        iters.extend(std::iter::repeat_n(Iter::Reduction, reductions));
        let out_map = map(
            self.cx,
            r + reductions,
            &(0..r).map(Some).collect::<Vec<_>>(),
        );
        self.e
            .generic(ins, in_maps, init, out_map, &iters, self.ty(out), mul_add)
    }

    /// Elementwise `linalg.generic` over `out` dims: each input read through its broadcast map.
    fn elementwise(
        &self,
        ins: &[(Value<'c, 'b>, Vec<Option<usize>>)],
        out: &[DimVal],
        body: impl for<'x> FnOnce(
            &Emitter<'c, 'x, Block<'c>>,
            &[Value<'c, 'x>],
        ) -> BResult<Value<'c, 'x>>,
    ) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        let r = out.len();
        let init = self.empty(out)?;
        let values: Vec<Value> = ins.iter().map(|(v, _)| *v).collect();
        let maps: Vec<_> = ins.iter().map(|(_, m)| map(cx, r, m)).collect();
        let id_map = map(cx, r, &(0..r).map(Some).collect::<Vec<_>>());
        self.e.generic(
            &values,
            &maps,
            init,
            id_map,
            &vec![Iter::Parallel; r],
            self.ty(out),
            body,
        )
    }

    /// `y + b` over `dims`, the bias `b` indexed by the axes `b_axes` of `y` and broadcast over
    /// the others (the bias add of linear and conv layers).
    fn add_bias(
        &self,
        y: Value<'c, 'b>,
        dims: &[DimVal],
        b: Value<'c, 'b>,
        b_axes: &[usize],
    ) -> BResult<Value<'c, 'b>> {
        let r = dims.len();
        self.elementwise(
            &[
                (y, (0..r).map(Some).collect()),
                (b, b_axes.iter().copied().map(Some).collect()),
            ],
            dims,
            |e, a| e.binf("arith.addf", a[0], a[1]),
        )
    }

    /// A reduction over the axes in `reduced` (a `linalg.generic` with reduction iterators)
    /// into a tensor of the kept dims initialised to `init_value`.
    #[allow(clippy::type_complexity)]
    fn reduce(
        &self,
        ins: &[(Value<'c, 'b>, Vec<Option<usize>>)],
        dims: &[DimVal],
        reduced: &[bool],
        init_value: f32,
        body: impl for<'x> FnOnce(
            &Emitter<'c, 'x, Block<'c>>,
            &[Value<'c, 'x>],
        ) -> BResult<Value<'c, 'x>>,
    ) -> BResult<(Value<'c, 'b>, Vec<DimVal>)> {
        let cx = self.cx;
        let r = dims.len();
        let kept: Vec<DimVal> = (0..r).filter(|&i| !reduced[i]).map(|i| dims[i]).collect();
        let out_map: Vec<Option<usize>> = (0..r).filter(|&i| !reduced[i]).map(Some).collect();
        let init = self.filled(init_value, &kept)?;
        let values: Vec<Value> = ins.iter().map(|(v, _)| *v).collect();
        let maps: Vec<_> = ins.iter().map(|(_, m)| map(cx, r, m)).collect();
        let iters: Vec<Iter> = reduced
            .iter()
            .map(|&red| if red { Iter::Reduction } else { Iter::Parallel })
            .collect();
        let v = self.e.generic(
            &values,
            &maps,
            init,
            map(cx, r, &out_map),
            &iters,
            self.ty(&kept),
            body,
        )?;
        Ok((v, kept))
    }

    fn lower_op(&mut self, op: OpId) -> LResult<()> {
        let cx = self.cx;
        let data = self.f.op(op);
        let operands = data.operands().to_vec();
        let kind = data.kind.clone();
        match &kind {
            OpKind::Constant(t) => {
                let dims: Vec<DimVal> = t.shape().iter().map(|&n| DimVal::Static(n)).collect();
                let shp = shape(&dims);
                let v = match t.as_splat() {
                    Some(_) => self.e.splat_f32(&shp, t.get(0))?,
                    None => {
                        let t = t.materialized();
                        self.e
                            .dense_f32(&shp, t.raw_bytes().expect("materialized"))?
                    }
                };
                self.define(op, v, dims);
            }
            OpKind::Weight { name, value } => {
                // The weight of one scheduled dense layer and nothing else is passed packed.
                let r = data.result().expect("invariant: a weight has a result");
                let packed = matches!(self.f.uses(r), [u] if u.index == 1
                    && matches!(self.f.kind(u.op), OpKind::Linear)
                    && self.dense_shape(u.op).is_some());
                if packed {
                    self.packed.insert(r);
                }
                let arg = WeightArg {
                    name: name.clone(),
                    value: value.clone(),
                    packed,
                };
                let dims: Vec<DimVal> = arg.arg_shape().into_iter().map(DimVal::Static).collect();
                let mty = memref_type(cx, &shape(&dims));
                let m = self.block.add_argument(mty, self.e.loc);
                let t = self.to_tensor(m, &dims)?;
                self.weights.push(arg);
                self.define(op, t, dims);
            }
            OpKind::Identity => {
                let (x, d) = self.val(operands[0]);
                self.define(op, x, d);
            }
            k @ (OpKind::Relu
            | OpKind::LeakyRelu { .. }
            | OpKind::Clip { .. }
            | OpKind::Sigmoid
            | OpKind::Tanh
            | OpKind::Gelu { .. }
            | OpKind::Silu
            | OpKind::HardSwish) => {
                // The epilogue of a layer computed in another form (a flat conv, a packed dense
                // layer; see `views`) is computed on that form, in the layer's tiles.
                let flat = self
                    .views
                    .get(&operands[0])
                    .filter(|_| self.epilogue.contains_key(&operands[0]))
                    .copied();
                let (x, d) = match flat {
                    Some((y, v)) => (y, v.full_dims()),
                    None => self.val(operands[0]),
                };
                let r = d.len();
                let k = k.clone();
                let y = self.elementwise(&[(x, (0..r).map(Some).collect())], &d, move |e, a| {
                    activation(e, &k, a[0])
                })?;
                let fused = self.fuse_epilogue(operands[0], y)?;
                if fused.is_none() {
                    self.spread(y, &d)?;
                }
                match flat {
                    Some((_, v)) => self.define_view(op, y, v, fused.map(|i| (i, y)))?,
                    None => self.define(op, y, d),
                }
            }
            OpKind::Add if self.fuse_residual(op, &operands)? => {}
            OpKind::Add | OpKind::Sub | OpKind::Mul => {
                let (a, ad) = self.val(operands[0]);
                let (b, bd) = self.val(operands[1]);
                let r = ad.len().max(bd.len());
                let get = |d: &[DimVal], i: usize| {
                    let off = r - d.len();
                    if i < off {
                        DimVal::Static(1)
                    } else {
                        d[i - off]
                    }
                };
                let out: Vec<DimVal> = (0..r)
                    .map(|i| self.broadcast_dim(get(&ad, i), get(&bd, i)))
                    .collect();
                let name = match kind {
                    OpKind::Add => "arith.addf",
                    OpKind::Sub => "arith.subf",
                    _ => "arith.mulf",
                };
                let y = self.elementwise(
                    &[
                        (a, Self::broadcast_map(&ad, &out)),
                        (b, Self::broadcast_map(&bd, &out)),
                    ],
                    &out,
                    |e, v| e.binf(name, v[0], v[1]),
                )?;
                self.spread(y, &out)?;
                self.define(op, y, out);
            }
            OpKind::Linear => self.linear(op, &operands)?,
            OpKind::MatMul => self.matmul(op, &operands)?,
            OpKind::Conv2d {
                strides,
                pads,
                dilations,
                groups,
            } => self.conv2d(op, &operands, *strides, *pads, *dilations, *groups)?,
            OpKind::BatchNorm { epsilon } => {
                let (x, mut d) = self.val(operands[0]);
                let mut ins = vec![(x, (0..d.len()).map(Some).collect::<Vec<_>>())];
                for &p in &operands[1..] {
                    let (pv, pd) = self.val(p);
                    d[1] = self.unify(d[1], pd[0]);
                    ins.push((pv, vec![Some(1)]));
                }
                let eps = *epsilon;
                let y = self.elementwise(&ins, &d, move |e, a| {
                    // (x - mean) / sqrt(var + eps) * scale + bias, the interpreter's order.
                    let (x, scale, bias, mean, var) = (a[0], a[1], a[2], a[3], a[4]);
                    let c = e.f32_const(eps)?;
                    let ve = e.binf("arith.addf", var, c)?;
                    let s = e.unf("math.sqrt", ve)?;
                    let xm = e.binf("arith.subf", x, mean)?;
                    let q = e.binf("arith.divf", xm, s)?;
                    let m = e.binf("arith.mulf", q, scale)?;
                    e.binf("arith.addf", m, bias)
                })?;
                self.define(op, y, d);
            }
            OpKind::Concat { axis } => {
                let (_, d0) = self.val(operands[0]);
                let ax = Self::norm_axis(op, *axis, d0.len())?;
                let mut out = d0.clone();
                let mut total = 0;
                for &v in &operands {
                    let (_, d) = self.val(v);
                    total += self.need_static(op, &d, ax, "concatenated axis")?;
                    for i in (0..out.len()).filter(|&i| i != ax) {
                        out[i] = self.unify(out[i], d[i]);
                    }
                }
                out[ax] = DimVal::Static(total);
                let mut acc = self.empty(&out)?;
                let mut offset = 0;
                for &v in &operands {
                    let (x, d) = self.val(v);
                    let mut offs = vec![0i64; d.len()];
                    offs[ax] = offset;
                    let dy = self.dyn_sizes(&d)?;
                    acc = self
                        .e
                        .insert_slice(x, acc, &offs, &shape(&d), &dy, self.ty(&out))?;
                    offset += d[ax].to_i64();
                }
                self.define(op, acc, out);
            }
            OpKind::MaxPool2d(p) => self.pool(op, operands[0], p, None)?,
            OpKind::AvgPool2d {
                pool,
                count_include_pad,
            } => self.pool(op, operands[0], pool, Some(*count_include_pad))?,
            OpKind::GlobalAvgPool => {
                let (_, d) = self.val(operands[0]);
                let axes: Vec<usize> = (2..d.len()).collect();
                self.mean(op, operands[0], &axes, true)?;
            }
            OpKind::Mean { axes, keepdims } => {
                let (_, d) = self.val(operands[0]);
                let axes = axes
                    .iter()
                    .map(|&a| Self::norm_axis(op, a, d.len()))
                    .collect::<LResult<Vec<_>>>()?;
                self.mean(op, operands[0], &axes, *keepdims)?;
            }
            OpKind::Flatten { axis } => self.flatten(op, operands[0], *axis as usize)?,
            OpKind::Reshape { shape: target } => {
                let (x, xd) = self.val(operands[0]);
                let x = self.contiguous(x, &xd)?;
                let dims: Vec<DimVal> = target.iter().map(|&n| DimVal::Static(n)).collect();
                let st: Vec<i64> = target.iter().map(|&n| n as i64).collect();
                let sty = RankedTensorType::new(
                    &[st.len() as u64],
                    IntegerType::new(cx, 64).into(),
                    None,
                );
                let attr: Attribute = DenseElementsAttribute::i64_values(sty.into(), &st).into();
                let s = self.e.op1(
                    "arith.constant",
                    &[],
                    sty.into(),
                    &[(id(cx, "value"), attr)],
                    vec![],
                )?;
                let y = self
                    .e
                    .op1("tensor.reshape", &[x, s], self.ty(&dims), &[], vec![])?;
                self.define(op, y, dims);
            }
            OpKind::Transpose { perm } => {
                let (x, d) = self.val(operands[0]);
                let out: Vec<DimVal> = perm.iter().map(|&p| d[p as usize]).collect();
                let init = self.empty(&out)?;
                let block = Block::new(&[(f32_type(cx), self.e.loc), (f32_type(cx), self.e.loc)]);
                {
                    let e = Emitter::new(cx, &block, self.e.loc);
                    let a: Value = block
                        .argument(0)
                        .map_err(|e| BuildError(e.to_string()))?
                        .into();
                    e.op("linalg.yield", &[a], &[], &[], vec![])?;
                }
                let region = Region::new();
                region.append_block(block);
                let p: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
                let y = self.e.op1(
                    "linalg.transpose",
                    &[x, init],
                    self.ty(&out),
                    &[(id(cx, "permutation"), dense_i64(cx, &p))],
                    vec![region],
                )?;
                self.define(op, y, out);
            }
            OpKind::Softmax { axis } => {
                let (x, d) = self.val(operands[0]);
                let r = d.len();
                let ax = Self::norm_axis(op, *axis, r)?;
                let id_map: Vec<Option<usize>> = (0..r).map(Some).collect();
                let red_map: Vec<Option<usize>> = (0..r).filter(|&i| i != ax).map(Some).collect();
                let reduced: Vec<bool> = (0..r).map(|i| i == ax).collect();
                // max, exp(x - max), sum, divide: the interpreter's steps. `maxnumf` ignores
                // NaN like the interpreter's `f32::max` fold.
                let (m, _) = self.reduce(
                    &[(x, id_map.clone())],
                    &d,
                    &reduced,
                    f32::NEG_INFINITY,
                    |e, a| e.binf("arith.maxnumf", a[0], a[1]),
                )?;
                let ex =
                    self.elementwise(&[(x, id_map.clone()), (m, red_map.clone())], &d, |e, a| {
                        let s = e.binf("arith.subf", a[0], a[1])?;
                        e.unf("math.exp", s)
                    })?;
                let (s, _) = self.reduce(&[(ex, id_map.clone())], &d, &reduced, 0.0, |e, a| {
                    e.binf("arith.addf", a[0], a[1])
                })?;
                let y = self.elementwise(&[(ex, id_map), (s, red_map)], &d, |e, a| {
                    e.binf("arith.divf", a[0], a[1])
                })?;
                self.define(op, y, d);
            }
            OpKind::LayerNorm { axis, epsilon } => {
                self.layer_norm(op, &operands, *axis, *epsilon)?
            }
            OpKind::Gather { axis, indices } => {
                let (x, d) = self.val(operands[0]);
                let ax = Self::norm_axis(op, *axis, d.len())?;
                let len = self.need_static(op, &d, ax, "gathered axis")?;
                if indices.len() as u64 == len
                    && indices.iter().enumerate().all(|(i, &p)| p == i as u64)
                {
                    self.define(op, x, d);
                    return Ok(());
                }
                let mut out = d.clone();
                out[ax] = DimVal::Static(indices.len() as u64);
                let mut acc = self.empty(&out)?;
                // One extract/insert pair per run of consecutive indices.
                for (start, from, n) in runs(indices) {
                    acc = self.move_slice(x, acc, &d, &out, ax, from, start, n)?;
                }
                self.define(op, acc, out);
            }
            OpKind::Scatter {
                axis,
                indices,
                size,
                fill,
            } => {
                let (x, d) = self.val(operands[0]);
                let ax = Self::norm_axis(op, *axis, d.len())?;
                self.need_static(op, &d, ax, "scattered axis")?;
                let mut out = d.clone();
                out[ax] = DimVal::Static(*size);
                let fill_bits_equal = fill.windows(2).all(|w| w[0].to_bits() == w[1].to_bits());
                let mut acc = if fill_bits_equal {
                    self.filled(fill.first().copied().unwrap_or(0.0), &out)?
                } else {
                    let bytes: Vec<u8> = fill.iter().flat_map(|v| v.to_le_bytes()).collect();
                    let table = self.e.dense_f32(&[*size as i64], &bytes)?;
                    self.elementwise(&[(table, vec![Some(ax)])], &out, |_, a| Ok(a[0]))?
                };
                // Input positions j..j+n go to indices[j]..indices[j]+n.
                let mut j = 0usize;
                while j < indices.len() {
                    let mut n = 1;
                    while j + n < indices.len() && indices[j + n] == indices[j] + n as u64 {
                        n += 1;
                    }
                    acc = self.move_slice(x, acc, &d, &out, ax, j as u64, indices[j], n as u64)?;
                    j += n;
                }
                self.define(op, acc, out);
            }
            OpKind::Return => {
                let mut outs = Vec::new();
                for &v in &operands {
                    let (t, d) = self.val(v);
                    let mty = memref_type(cx, &shape(&d));
                    outs.push((t, mty, d));
                }
                for (t, mty, d) in outs {
                    let m = self.block.add_argument(mty, self.e.loc);
                    self.e.op(
                        "bufferization.materialize_in_destination",
                        &[t, m],
                        &[],
                        &[
                            (id(cx, "restrict"), Attribute::unit(cx)),
                            (id(cx, "writable"), Attribute::unit(cx)),
                        ],
                        vec![],
                    )?;
                    self.outputs.push(d);
                    self.output_types.push(mty);
                }
                self.e.op("func.return", &[], &[], &[], vec![])?;
            }
        }
        Ok(())
    }

    /// Copies `n` positions of `axis` from `x` (starting at `from`) into `acc` (at `to`).
    #[allow(clippy::too_many_arguments)]
    fn move_slice(
        &self,
        x: Value<'c, 'b>,
        acc: Value<'c, 'b>,
        d: &[DimVal],
        out: &[DimVal],
        ax: usize,
        from: u64,
        to: u64,
        n: u64,
    ) -> BResult<Value<'c, 'b>> {
        let mut sd = d.to_vec();
        sd[ax] = DimVal::Static(n);
        let dy = self.dyn_sizes(&sd)?;
        let mut offs = vec![0i64; d.len()];
        offs[ax] = from as i64;
        let piece = self
            .e
            .extract_slice(x, &offs, &shape(&sd), &dy, self.ty(&sd))?;
        offs[ax] = to as i64;
        self.e
            .insert_slice(piece, acc, &offs, &shape(&sd), &dy, self.ty(out))
    }

    fn linear(&mut self, op: OpId, operands: &[ValueId]) -> LResult<()> {
        let cx = self.cx;
        let (x, xd) = self.val(operands[0]);
        let (w, wd) = self.val(operands[1]);
        if let Some((m, n, k)) = self.dense_shape(op) {
            let wp = self.packed_weight(operands[1], w, n, k)?;
            return self.dense_packed(op, x, &xd, wp, operands.get(2).copied(), m, n, k);
        }
        let r = xd.len();
        let n = wd[0];
        self.unify(xd[r - 1], wd[1]);
        let mut out = xd.clone();
        out[r - 1] = n;
        let zeros = self.filled(0.0, &out)?;
        let kernel = if r == 2 {
            // linalg.matmul with a transposed-B indexing map: y[m, n] += x[m, k] * W[n, k].
            let maps = [
                map(cx, 3, &[Some(0), Some(2)]),
                map(cx, 3, &[Some(1), Some(2)]),
                map(cx, 3, &[Some(0), Some(1)]),
            ];
            let attrs: Vec<Attribute> = maps.iter().map(|m| builder::affine_map_attr(*m)).collect();
            self.e.named_linalg(
                "linalg.matmul",
                &[x, w],
                zeros,
                self.ty(&out),
                &[(
                    id(cx, "indexing_maps"),
                    melior::ir::attribute::ArrayAttribute::new(cx, &attrs).into(),
                )],
            )?
        } else {
            // Loops (batch..., n, k): y[b, n] += x[b, k] * W[n, k].
            let mut xm: Vec<Option<usize>> = (0..r - 1).map(Some).collect();
            xm.push(Some(r));
            self.contraction(
                &[x, w],
                &[map(cx, r + 1, &xm), map(cx, r + 1, &[Some(r - 1), Some(r)])],
                zeros,
                &out,
                1,
            )?
        };
        let y = match operands.get(2) {
            Some(&b) => {
                let (bv, bd) = self.val(b);
                self.unify(bd[0], n);
                self.add_bias(kernel, &out, bv, &[r - 1])?
            }
            None => kernel,
        };
        self.define(op, y, out);
        Ok(())
    }

    /// `(M, N, K)` of a linear layer the schedule covers: a 2-D input, static sizes (read
    /// from the IR's types: a weight is lowered, packed or not, before its layer).
    fn dense_shape(&self, op: OpId) -> Option<(u64, u64, u64)> {
        let ops = self.f.op(op).operands();
        let (x, w) = (self.f.ty(ops[0]), self.f.ty(ops[1]));
        if x.rank() != 2 {
            return None;
        }
        match (x.dim(0), w.dim(0), w.dim(1)) {
            (Dim::Static(m), Dim::Static(n), Dim::Static(k)) => Some((m, n, k)),
            _ => None,
        }
    }

    /// The weight `w[N, K]` (operand `v`) of a scheduled dense layer in [`pack_dense`]'s
    /// layout: the argument itself when it was packed, a packed constant for an `nn.constant`,
    /// else packed in the IR on every call (zero rows appended, `[N/TN, TN, K]` transposed to
    /// `[N/TN, K, TN]`; a weight with other users, or a computed one).
    fn packed_weight(
        &self,
        v: ValueId,
        w: Value<'c, 'b>,
        n: u64,
        k: u64,
    ) -> BResult<Value<'c, 'b>> {
        if self.packed.contains(&v) {
            return Ok(w);
        }
        let tn = schedule::DENSE_TILE.1;
        let nb = n.div_ceil(tn);
        let sizes = [nb as i64, k as i64, tn as i64];
        if let Some(OpKind::Constant(t)) = self.f.producer_kind(v) {
            let p = pack_dense(t);
            return self.e.dense_f32(
                &sizes,
                p.raw_bytes().expect("invariant: packed is contiguous"),
            );
        }
        let cx = self.cx;
        let rows = (nb * tn) as i64;
        let w = if rows as u64 != n {
            self.e.pad(
                w,
                &[0, 0],
                &[rows - n as i64, 0],
                0.0,
                tensor_type(cx, &[rows, k as i64]),
            )?
        } else {
            w
        };
        let w = self.e.expand(
            w,
            &[vec![0, 1], vec![2]],
            &[nb as i64, tn as i64, k as i64],
            &[],
        )?;
        let init = self.e.empty(&sizes, &[])?;
        let t = self.e.named_linalg(
            "linalg.transpose",
            &[w],
            init,
            tensor_type(cx, &sizes),
            &[(id(cx, "permutation"), dense_i64(cx, &[0, 2, 1]))],
        )?;
        // Not pulled into the layer's tiles (where it was vectorized into one shuffle of a
        // whole panel, K x 32 lanes).
        let s = DimVal::Static;
        self.barrier(t, &[s(nb), s(k), s(tn)])
    }

    fn matmul(&mut self, op: OpId, operands: &[ValueId]) -> LResult<()> {
        let cx = self.cx;
        let (a, ad) = self.val(operands[0]);
        let (b, bd) = self.val(operands[1]);
        let (ra, rb) = (ad.len(), bd.len());
        let r = ra.max(rb);
        let nb = r - 2;
        self.unify(ad[ra - 1], bd[rb - 2]);
        let mut out = Vec::new();
        let get = |d: &[DimVal], i: usize| {
            let off = nb - (d.len() - 2);
            if i < off {
                DimVal::Static(1)
            } else {
                d[i - off]
            }
        };
        for i in 0..nb {
            let v = self.broadcast_dim(get(&ad, i), get(&bd, i));
            out.push(v);
        }
        out.push(ad[ra - 2]);
        out.push(bd[rb - 1]);
        let zeros = self.filled(0.0, &out)?;
        let y = if ra == 2 && rb == 2 {
            self.e
                .named_linalg("linalg.matmul", &[a, b], zeros, self.ty(&out), &[])?
        } else {
            // Loops (batch..., m, n, k); batch axes broadcast like nn.add.
            let bmap = |d: &[DimVal]| -> Vec<Option<usize>> {
                let batch = &d[..d.len() - 2];
                Self::broadcast_map(batch, &out[..nb])
            };
            let mut am = bmap(&ad);
            am.extend([Some(nb), Some(nb + 2)]);
            let mut bm = bmap(&bd);
            bm.extend([Some(nb + 2), Some(nb + 1)]);
            self.contraction(
                &[a, b],
                &[map(cx, r + 1, &am), map(cx, r + 1, &bm)],
                zeros,
                &out,
                1,
            )?
        };
        self.define(op, y, out);
        Ok(())
    }

    /// A scheduled dense layer on a packed weight `wp[N/TN, K, TN]` (panels of `TN` columns
    /// of `W^T`, zero-padded to whole panels): y[m, nb, nl] += x[m, k] * wp[nb, k, nl], so a
    /// register tile reads each step's `TN` weights contiguously.
    #[allow(clippy::too_many_arguments)]
    fn dense_packed(
        &mut self,
        op: OpId,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        wp: Value<'c, 'b>,
        bias: Option<ValueId>,
        m: u64,
        n: u64,
        k: u64,
    ) -> LResult<()> {
        let cx = self.cx;
        let tn = schedule::DENSE_TILE.1;
        let npad = n.next_multiple_of(tn);
        let nb = npad / tn;
        let s = DimVal::Static;
        let x = self.barrier(x, xd)?;
        let out3 = vec![xd[0], s(nb), s(tn)];
        let zeros = self.filled(0.0, &out3)?;
        let kernel = self.contraction(
            &[x, wp],
            &[
                map(cx, 4, &[Some(0), Some(3)]),
                map(cx, 4, &[Some(1), Some(3), Some(2)]),
            ],
            zeros,
            &out3,
            1,
        )?;
        let y = match bias {
            Some(b) => {
                let (bv, _) = self.val(b);
                let bp = if npad != n {
                    let padded = self.e.pad(
                        bv,
                        &[0],
                        &[(npad - n) as i64],
                        0.0,
                        tensor_type(cx, &[npad as i64]),
                    )?;
                    self.barrier(padded, &[s(npad)])?
                } else {
                    bv
                };
                let b2 = self
                    .e
                    .expand(bp, &[vec![0, 1]], &[nb as i64, tn as i64], &[])?;
                self.add_bias(kernel, &out3, b2, &[1, 2])?
            }
            None => kernel,
        };
        self.schedule(op, kernel, y, Layer::Dense { m, n: npad, k })?;
        self.define_view(op, y, View::Cols { m: xd[0], n, npad }, None)?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn conv2d(
        &mut self,
        op: OpId,
        operands: &[ValueId],
        strides: [u64; 2],
        pads: [u64; 4],
        dilations: [u64; 2],
        groups: u64,
    ) -> LResult<()> {
        let cx = self.cx;
        let (x, xd) = self.val(operands[0]);
        let (w, wd) = self.val(operands[1]);
        let c = self.need_static(op, &xd, 1, "input channel axis")?;
        let h = self.need_static(op, &xd, 2, "input height")?;
        let wi = self.need_static(op, &xd, 3, "input width")?;
        let res = self.f.ty(self
            .f
            .op(op)
            .result()
            .expect("invariant: conv has a result"));
        let (ho, wo) = match (res.dim(2), res.dim(3)) {
            (Dim::Static(a), Dim::Static(b)) => (a, b),
            _ => {
                return Err(Fail::Unsupported(
                    op,
                    "the output size must be static".into(),
                ))
            }
        };
        let f = wd[0].to_i64() as u64;
        let (kh, kw) = (wd[2].to_i64(), wd[3].to_i64());
        // Before the strided case below replaces `x`.
        let unit_pointwise = kh == 1 && kw == 1 && pads == [0; 4] && strides == [1, 1];
        // A strided 1x1 conv without padding (a ResNet projection shortcut) reads every s-th
        // row and column: a strided `tensor.extract_slice` takes those, and what is left is a
        // unit-stride 1x1 conv, which the schedule covers.
        let (x, xd, strides, dilations) = if kh == 1
            && kw == 1
            && pads == [0; 4]
            && groups == 1
            && strides != [1, 1]
            && matches!(xd[0], DimVal::Static(_))
        {
            let mut sd = xd.clone();
            sd[2] = DimVal::Static(ho);
            sd[3] = DimVal::Static(wo);
            let step = [1, 1, strides[0] as i64, strides[1] as i64];
            let xs =
                self.e
                    .extract_slice_strided(x, &[0; 4], &shape(&sd), &step, &[], self.ty(&sd))?;
            // Copied into a contiguous tensor: vectorized reads straight from the strided view
            // crashed the compiled code (a unit-stride load across a non-unit innermost stride).
            let init = self.empty(&sd)?;
            let xc = self
                .e
                .named_linalg("linalg.copy", &[xs], init, self.ty(&sd), &[])?;
            (xc, sd, [1, 1], [1, 1])
        } else {
            (x, xd, strides, dilations)
        };
        if groups == 1
            && strides != [1, 1]
            && dilations == [1, 1]
            && (kh > 1 || kw > 1)
            && matches!(xd[0], DimVal::Static(_))
        {
            if let Some((xq, xqd, wq, geom)) =
                self.conv_phases(x, &xd, w, &wd, strides, pads, (ho, wo))?
            {
                let bias = operands.get(2).copied();
                return self.conv_flat(op, xq, &xqd, wq, bias, geom, FlatSource::Flat(xq));
            }
        }
        // The schedule covers the dense case the notes measured: groups 1, unit strides and
        // dilations (a strided input map is not a projected permutation, so it would not
        // vectorize), static batch.
        if groups == 1
            && strides == [1, 1]
            && dilations == [1, 1]
            && matches!(xd[0], DimVal::Static(_))
        {
            // The sizes after the strided slice above, if any.
            let geom = FlatConv {
                f,
                c,
                h: xd[2].to_i64() as u64,
                w: xd[3].to_i64() as u64,
                kh: kh as u64,
                kw: kw as u64,
                pads,
            };
            // A pointwise conv of a flat conv's result (or of its fused epilogue) reads it in
            // its flat rows.
            let rows = match self.views.get(&operands[0]) {
                Some(&(y, View::Rows(r))) if unit_pointwise && (r.f, r.ho, r.wo) == (c, h, wi) => {
                    Some((y, r))
                }
                _ => None,
            };
            let source = match rows {
                Some((y, r)) => FlatSource::Rows(y, r),
                None => FlatSource::Nchw(operands[0]),
            };
            return self.conv_flat(op, x, &xd, w, operands.get(2).copied(), geom, source);
        }
        let padded = pads.iter().any(|&p| p != 0);
        let (xp, xpd) = if padded {
            let mut pd = xd.clone();
            pd[2] = DimVal::Static(h + pads[0] + pads[2]);
            pd[3] = DimVal::Static(wi + pads[1] + pads[3]);
            let low = [0, 0, pads[0] as i64, pads[1] as i64];
            let high = [0, 0, pads[2] as i64, pads[3] as i64];
            (self.e.pad(x, &low, &high, 0.0, self.ty(&pd))?, pd)
        } else {
            (x, xd.clone())
        };
        let out = vec![
            xd[0],
            DimVal::Static(f),
            DimVal::Static(ho),
            DimVal::Static(wo),
        ];
        let attrs = [
            (
                id(cx, "strides"),
                i64_elements(cx, &[strides[0] as i64, strides[1] as i64]),
            ),
            (
                id(cx, "dilations"),
                i64_elements(cx, &[dilations[0] as i64, dilations[1] as i64]),
            ),
        ];
        let kernel = if groups == 1 {
            let zeros = self.filled(0.0, &out)?;
            self.e.named_linalg(
                "linalg.conv_2d_nchw_fchw",
                &[xp, w],
                zeros,
                self.ty(&out),
                &attrs,
            )?
        } else if groups == c && f == c {
            // Depthwise: the filter [C, 1, KH, KW] becomes [C, KH, KW].
            let wc = self.e.collapse(
                w,
                &[vec![0, 1], vec![2], vec![3]],
                tensor_type(cx, &[c as i64, kh, kw]),
            )?;
            let zeros = self.filled(0.0, &out)?;
            self.e.named_linalg(
                "linalg.depthwise_conv_2d_nchw_chw",
                &[xp, wc],
                zeros,
                self.ty(&out),
                &attrs,
            )?
        } else {
            // Grouped: split channels into [G, C/G] and filters into [G, F/G].
            let g = groups as i64;
            let cg = c as i64 / g;
            let fg = f as i64 / g;
            let n = xd[0];
            let dn = self.dyn_sizes(&[n])?;
            let xs = [n.to_i64(), g, cg, xpd[2].to_i64(), xpd[3].to_i64()];
            let xg = self
                .e
                .expand(xp, &[vec![0], vec![1, 2], vec![3], vec![4]], &xs, &dn)?;
            let wg = self.e.expand(
                w,
                &[vec![0, 1], vec![2], vec![3], vec![4]],
                &[g, fg, cg, kh, kw],
                &[],
            )?;
            let od = vec![
                n,
                DimVal::Static(g as u64),
                DimVal::Static(fg as u64),
                DimVal::Static(ho),
                DimVal::Static(wo),
            ];
            let zeros = self.filled(0.0, &od)?;
            let yg = self.e.named_linalg(
                "linalg.conv_2d_ngchw_gfchw",
                &[xg, wg],
                zeros,
                self.ty(&od),
                &attrs,
            )?;
            self.e
                .collapse(yg, &[vec![0], vec![1, 2], vec![3], vec![4]], self.ty(&out))?
        };
        let y = match operands.get(2) {
            Some(&b) => {
                let (bv, _) = self.val(b);
                self.add_bias(kernel, &out, bv, &[1])?
            }
            None => kernel,
        };
        self.define(op, y, out);
        Ok(())
    }

    /// A stride-`s` conv as a unit-stride one over the input's `sh * sw` phases: with `kh = s *
    /// qh + a` (and likewise for the columns), `xpad[c, s * oh + kh, ...]` is phase `(a, b)`'s
    /// `xq[(a * sw + b) * C + c, oh + qh, ...]`, so `y = conv(xq, wq)` over `sh * sw * C` channels
    /// with a `ceil(kh / sh) x ceil(kw / sw)` kernel `wq[f, (a * sw + b) * C + c, qh, qw] =
    /// w[f, c, s * qh + a, s * qw + b]`, zero where that tap is past the kernel. The flat conv's
    /// schedule then covers it; the zero taps cost `16 / 9` of the MACs for a 3x3 stride-2 conv
    /// (the unscheduled strided conv ran 34x slower than onnxruntime). The input is zero-padded
    /// to the rows and columns the phases need (`tensor.pad`) and permuted into the flat conv's
    /// padded input `[N, sh * sw * C, rows * wq]` by an element-wise copy (the loop fallback,
    /// split over threads); the weight likewise on each call. `None` when the padding leaves
    /// no input row or column to read (the named conv handles that).
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn conv_phases(
        &self,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        w: Value<'c, 'b>,
        wd: &[DimVal],
        strides: [u64; 2],
        pads: [u64; 4],
        (ho, wo): (u64, u64),
    ) -> BResult<Option<(Value<'c, 'b>, Vec<DimVal>, Value<'c, 'b>, FlatConv)>> {
        let [sh, sw] = strides;
        let [f, c, kh, kw] = [0, 1, 2, 3].map(|i| wd[i].to_i64() as u64);
        let (kqh, kqw) = (kh.div_ceil(sh), kw.div_ceil(sw));
        let geom = FlatConv {
            f,
            c: sh * sw * c,
            h: ho + kqh - 1,
            w: wo + kqw - 1,
            kh: kqh,
            kw: kqw,
            pads: [0; 4],
        };
        let wq = geom.w;
        let rows = geom.rows(geom.padded_len(), wq);
        let (h, wi) = (xd[2].to_i64() as u64, xd[3].to_i64() as u64);
        let (kept_h, kept_w) = (
            (sh * rows).checked_sub(pads[0]).map(|r| r.min(h)),
            (sw * wq).checked_sub(pads[1]).map(|r| r.min(wi)),
        );
        let (Some(kept_h @ 1..), Some(kept_w @ 1..)) = (kept_h, kept_w) else {
            return Ok(None);
        };
        let n = xd[0];
        let st = DimVal::Static;
        let x = if (kept_h, kept_w) == (h, wi) {
            x
        } else {
            let kd = [n, xd[1], st(kept_h), st(kept_w)];
            self.e
                .extract_slice(x, &[0; 4], &shape(&kd), &[], self.ty(&kd))?
        };
        let pd = [n, xd[1], st(sh * rows), st(sw * wq)];
        let low = [0, 0, pads[0] as i64, pads[1] as i64];
        let high = [
            0,
            0,
            (sh * rows - pads[0] - kept_h) as i64,
            (sw * wq - pads[1] - kept_w) as i64,
        ];
        let xp = self.e.pad(x, &low, &high, 0.0, self.ty(&pd))?;
        // [d0, d1, d2 * sh, d3 * sw] -> [d0, sh * sw * d1, d2, d3] (in `groups` of the
        // permuted [d0, sh, sw, d1, d2, d3]): input dim i of the expanded tensor is loop PERM[i].
        const PERM: [Option<usize>; 6] = [Some(0), Some(3), Some(4), Some(1), Some(5), Some(2)];
        let phases = |v: Value<'c, 'b>, d: [u64; 4], groups: &[Vec<usize>]| {
            let six = [d[0], d[1], d[2], sh, d[3], sw].map(|v| v as i64);
            let v6 = self
                .e
                .expand(v, &[vec![0], vec![1], vec![2, 3], vec![4, 5]], &six, &[])?;
            let out = [d[0], sh, sw, d[1], d[2], d[3]].map(st);
            let p = self.elementwise(&[(v6, PERM.to_vec())], &out, |_, a| Ok(a[0]))?;
            self.spread(p, &out)?;
            let dims: Vec<DimVal> = groups
                .iter()
                .map(|g| st(g.iter().map(|&i| out[i].to_i64() as u64).product()))
                .collect();
            self.e.collapse(p, groups, self.ty(&dims))
        };
        let flat = [vec![0], vec![1, 2, 3], vec![4, 5]];
        let xf = phases(xp, [n.to_i64() as u64, c, rows, wq], &flat)?;
        let wpd = [st(f), st(c), st(sh * kqh), st(sw * kqw)];
        let whigh = [0, 0, (sh * kqh - kh) as i64, (sw * kqw - kw) as i64];
        let wp = self.e.pad(w, &[0; 4], &whigh, 0.0, self.ty(&wpd))?;
        let wq4 = phases(
            wp,
            [f, c, kqh, kqw],
            &[vec![0], vec![1, 2, 3], vec![4], vec![5]],
        )?;
        let xqd = vec![n, st(geom.c), st(geom.h), st(wq)];
        Ok(Some((xf, xqd, wq4, geom)))
    }

    /// A scheduled conv (groups 1, unit strides and dilations, static batch) computed over the
    /// flattened rows of its padded input: output position `p = oh * wp + ow` reads input
    /// position `p + kh * wp + kw` of the padded image flattened to `[N, C, rows * wp]`, so a
    /// tile of the flat axis is 16-wide vectors end to end whatever the row width (a 56-wide
    /// row tiled by 16 ran its last 8 columns at half width, 11 % of the conv's time here).
    /// The `kw - 1` columns of each row that straddle two rows are computed and thrown away
    /// (3.6 % more work at 56 + 2), and the flat length is rounded up to 32 so that two
    /// threads split it into whole vectors; the padded buffer gets the rows those reads need
    /// (an unpadded 1x1 conv of a length divisible by 32 reads its input in place, and one
    /// whose input is itself computed in flat rows, `rows`, reads that form: its result has the
    /// same rows, so no copy makes the input contiguous first).
    /// The NCHW result is a view: `[N, F, oh * wp]` expanded to rows and cut to `ow` columns.
    #[allow(clippy::too_many_arguments)]
    fn conv_flat(
        &mut self,
        op: OpId,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        w: Value<'c, 'b>,
        bias: Option<ValueId>,
        g: FlatConv,
        source: FlatSource<'c, 'b>,
    ) -> LResult<()> {
        let cx = self.cx;
        let n = xd[0];
        let [pt, pl, pb, pr] = g.pads;
        let (hp, wp) = (g.h + pt + pb, g.w + pl + pr);
        let (ho, wo) = (hp - g.kh + 1, wp - g.kw + 1);
        // Without padding, a 1-wide kernel reads the input in place unless its length would
        // leave a vector remainder that is not a power of two (vector<17> is slow).
        let copied = matches!(source, FlatSource::Nchw(_))
            && (g.pads != [0; 4] || g.kw > 1 || (ho * wp) % 32 != 0);
        let (wp, wo, len) = match source {
            FlatSource::Rows(_, r) => (r.wp, r.wo, r.len),
            FlatSource::Nchw(_) if copied => (wp, wo, g.padded_len()),
            FlatSource::Flat(_) => (wp, wo, g.padded_len()),
            FlatSource::Nchw(_) => (wp, wo, ho * wp),
        };
        let i = self.layers.len();
        let rows = g.rows(len, wp);
        let in_place = match source {
            FlatSource::Nchw(input) if copied => self.pad_in_place(input, &g, wp, rows)?,
            _ => None,
        };
        let xf = if let FlatSource::Rows(y, r) = source {
            self.barrier(y, &View::Rows(r).full_dims())?
        } else if let FlatSource::Flat(xf) = source {
            self.barrier(xf, &[n, DimVal::Static(g.c), DimVal::Static(rows * wp)])?
        } else if let Some(xf) = in_place {
            xf
        } else if copied {
            let pd = [
                n,
                DimVal::Static(g.c),
                DimVal::Static(rows),
                DimVal::Static(wp),
            ];
            // The padding as a zero fill and a copy of the input into the interior, which the
            // schedule tiles per row (`linalg.decompose_pad` + `insert_slice_to_copy`, but
            // tagged). The fill is no layer's part: it stays for the loop fallback, where LLVM
            // turns it into a `memset`, which also brings the buffer into cache for the copy
            // (filling only the border measured 3 % slower on the benchmark ResNet). Threaded,
            // it is split like an element-wise op.
            let xp = self.filled(0.0, &pd)?;
            self.spread(xp, &pd)?;
            let [t, l] = [pt, pl].map(|v| v as i64);
            let low = [0, 0, t, l];
            let sizes = shape(xd);
            let inner = self.e.extract_slice(xp, &low, &sizes, &[], self.ty(xd))?;
            let copy = self
                .e
                .named_linalg("linalg.copy", &[x], inner, self.ty(xd), &[])?;
            tag(cx, copy, "pad_copy", i)?;
            let xp = self
                .e
                .insert_slice(copy, xp, &low, &sizes, &[], self.ty(&pd))?;
            let flat = [n, DimVal::Static(g.c), DimVal::Static(rows * wp)];
            self.e
                .collapse(xp, &[vec![0], vec![1], vec![2, 3]], self.ty(&flat))?
        } else {
            let x = self.contiguous(x, xd)?;
            let x = self.barrier(x, xd)?;
            let flat = [n, DimVal::Static(g.c), DimVal::Static(g.h * wp)];
            self.e
                .collapse(x, &[vec![0], vec![1], vec![2, 3]], self.ty(&flat))?
        };
        // y[n, f, p] += x[n, c, p + kh * wp + kw] * w[f, c, kh, kw], a `linalg.generic` for
        // the FMA flag of `mul_add` (a named conv cannot carry it).
        let d = |i| AffineExpr::dim(cx, i);
        let wpe = AffineExpr::constant(cx, wp as i64);
        let xmap = AffineMap::new(cx, 6, 0, &[d(0), d(3), d(2) + d(4) * wpe + d(5)]);
        let flat = vec![n, DimVal::Static(g.f), DimVal::Static(len)];
        let zeros = self.filled(0.0, &flat)?;
        let kernel = self.contraction(
            &[xf, w],
            &[xmap, map(cx, 6, &[Some(1), Some(3), Some(4), Some(5)])],
            zeros,
            &flat,
            3,
        )?;
        let y = match bias {
            Some(b) => {
                let (bv, _) = self.val(b);
                self.add_bias(kernel, &flat, bv, &[1])?
            }
            None => kernel,
        };
        let layer = Layer::Conv {
            f: g.f,
            c: g.c,
            len,
            padded: copied && in_place.is_none(),
        };
        self.schedule(op, kernel, y, layer)?;
        let view = View::Rows(RowView {
            n,
            f: g.f,
            ho,
            wp,
            wo,
            len,
        });
        self.define_view(op, y, view, None)?;
        Ok(())
    }

    /// The zero-padded input of a conv, flattened to `[N, C, rows * wp]`, when `input` is
    /// computed in flat rows of the same width `wp` by a layer (a flat conv, or its fused
    /// epilogue) whose `kw - 1` thrown-away columns per row are exactly the padding columns:
    /// that layer then writes its rows straight into the padded buffer at the first interior
    /// position (its `tensor.empty` becomes a slice of the buffer), its thrown-away columns
    /// landing on the left and right borders, and zero fills of the border columns and of the
    /// rows above and below follow it. The input is neither copied nor its interior filled
    /// (the copy and the fill of a 64x56x56 conv input were about 0.1 ms per conv here).
    /// Later readers of `input` read it inside the buffer. The buffer gets more than `rows`
    /// rows if the layer's rounded-up length reaches past them. `None` when the geometry
    /// differs or `input` is no layer's computed form.
    fn pad_in_place(
        &mut self,
        input: ValueId,
        g: &FlatConv,
        wp: u64,
        rows: u64,
    ) -> BResult<Option<Value<'c, 'b>>> {
        let Some(&(y, View::Rows(r))) = self.views.get(&input) else {
            return Ok(None);
        };
        let [pt, pl, _, pr] = g.pads;
        if g.pads == [0; 4]
            || (r.f, r.ho, r.wo, r.wp) != (g.c, g.h, g.w, wp)
            || wp - r.wo != pl + pr
        {
            return Ok(None);
        }
        // The init of the layer's last op: the one `tensor.empty` all its ops write into (see
        // `share_init`), under the kernel's fill when the kernel is the last op.
        let mut init = last_operand(y)?;
        if op_name(init)? == "linalg.fill" {
            init = last_operand(init)?;
        }
        if op_name(init)? != "tensor.empty" {
            return Ok(None);
        }
        let s = DimVal::Static;
        let offset = pt * wp + pl;
        let rows = rows.max((offset + r.len).div_ceil(wp));
        let flat = [r.n, s(g.c), s(rows * wp)];
        let computed = View::Rows(r).full_dims();
        let at = [0, 0, offset as i64];
        let buffer = self.empty(&flat)?;
        let slice =
            self.e
                .extract_slice(buffer, &at, &shape(&computed), &[], self.ty(&computed))?;
        let empty = owner(init)?.to_raw();
        // SAFETY: all four ops are alive and in the function's block; the buffer and its slice
        // have no operands but each other, so they may move before the layer's first op, and
        // once the slice replaces the layer's `tensor.empty` nothing uses that op.
        unsafe {
            mlir_sys::mlirOperationMoveBefore(owner(buffer)?.to_raw(), empty);
            mlir_sys::mlirOperationMoveBefore(owner(slice)?.to_raw(), empty);
            mlir_sys::mlirValueReplaceAllUsesOfWith(init.to_raw(), slice.to_raw());
            mlir_sys::mlirOperationDestroy(empty);
        }
        let padded = self
            .e
            .insert_slice(y, buffer, &at, &shape(&computed), &[], self.ty(&flat))?;
        let pd = [r.n, s(g.c), s(rows), s(wp)];
        let groups = [vec![0], vec![1], vec![2, 3]];
        let mut padded = self.e.expand(padded, &groups, &shape(&pd), &[])?;
        // (first row, rows, first column, columns): above, below, left, right.
        let (ho, wo) = (r.ho, r.wo);
        let borders = [
            (0, pt, 0, wp),
            (pt + ho, rows - pt - ho, 0, wp),
            (pt, ho, 0, pl),
            (pt, ho, pl + wo, wp - pl - wo),
        ];
        for (row, nrows, col, ncols) in borders {
            if nrows == 0 || ncols == 0 {
                continue;
            }
            let d = [r.n, s(g.c), s(nrows), s(ncols)];
            let off = [0, 0, row as i64, col as i64];
            let part = self
                .e
                .extract_slice(padded, &off, &shape(&d), &[], self.ty(&d))?;
            let zeros = self.e.fill(0.0, part, self.ty(&d))?;
            padded = self
                .e
                .insert_slice(zeros, padded, &off, &shape(&d), &[], self.ty(&pd))?;
        }
        let xf = self.e.collapse(padded, &groups, self.ty(&flat))?;
        // Later readers take the rows inside the buffer, so that the border fills do not write
        // over values bufferization would have to keep for them (by copying the buffer).
        let inner = self
            .e
            .extract_slice(xf, &at, &shape(&computed), &[], self.ty(&computed))?;
        self.set_view(input, inner, View::Rows(r), None)?;
        Ok(Some(xf))
    }

    /// The result `view` makes of `y`, a layer's computed form; recorded in `strided` unless
    /// it is contiguous.
    fn view(&mut self, y: Value<'c, 'b>, view: View) -> BResult<Value<'c, 'b>> {
        let v = self.view_of(y, view)?;
        let contiguous = match view {
            View::Rows(r) => r.len == r.ho * r.wp && r.wo == r.wp,
            View::Cols { n, npad, .. } => n == npad,
        };
        if !contiguous {
            self.strided.insert(v.to_raw().ptr as usize);
        }
        Ok(v)
    }

    /// `x`, copied into a contiguous tensor if it is a strided view (see [`Lower::view`]):
    /// collapsing such a view keeps a non-unit innermost stride when the collapsed axes have
    /// size 1 (a conv's 1x1 output flattened), which the vector transfers of a scheduled
    /// layer reading it cannot lower to LLVM.
    fn contiguous(&self, x: Value<'c, 'b>, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        if !self.strided.contains(&(x.to_raw().ptr as usize)) {
            return Ok(x);
        }
        let init = self.empty(dims)?;
        self.e
            .named_linalg("linalg.copy", &[x], init, self.ty(dims), &[])
    }

    fn view_of(&self, y: Value<'c, 'b>, view: View) -> BResult<Value<'c, 'b>> {
        let r = match view {
            View::Rows(r) => r,
            View::Cols { m, n, npad } => {
                let full = [m, DimVal::Static(npad)];
                let y = self.e.collapse(y, &[vec![0], vec![1, 2]], self.ty(&full))?;
                if n == npad {
                    return Ok(y);
                }
                let d = view.dims();
                return self
                    .e
                    .extract_slice(y, &[0; 2], &shape(&d), &[], self.ty(&d));
            }
        };
        let full = r.ho * r.wp;
        let y = if r.len != full {
            let d = [r.n, DimVal::Static(r.f), DimVal::Static(full)];
            self.e
                .extract_slice(y, &[0; 3], &shape(&d), &[], self.ty(&d))?
        } else {
            y
        };
        let rows = [r.n.to_i64(), r.f as i64, r.ho as i64, r.wp as i64];
        let y = self
            .e
            .expand(y, &[vec![0], vec![1], vec![2, 3]], &rows, &[])?;
        if r.wo == r.wp {
            return Ok(y);
        }
        let d = view.dims();
        self.e
            .extract_slice(y, &[0; 4], &shape(&d), &[], self.ty(&d))
    }

    /// Max pooling (`avg = None`) or average pooling (`avg = Some(count_include_pad)`).
    fn pool(&mut self, op: OpId, v: ValueId, p: &ir::Pool2d, avg: Option<bool>) -> LResult<()> {
        let cx = self.cx;
        let (x, xd) = self.val(v);
        self.need_static(op, &xd, 1, "channel axis")?;
        let h = self.need_static(op, &xd, 2, "input height")?;
        let wi = self.need_static(op, &xd, 3, "input width")?;
        let res = self.f.ty(self
            .f
            .op(op)
            .result()
            .expect("invariant: pool has a result"));
        let (ho, wo) = match (res.dim(2), res.dim(3)) {
            (Dim::Static(a), Dim::Static(b)) => (a, b),
            _ => {
                return Err(Fail::Unsupported(
                    op,
                    "the output size must be static".into(),
                ))
            }
        };
        let [kh, kw] = p.kernel;
        let [sh, sw] = p.strides;
        let [pt, pl, pb, pr] = p.pads;
        // Pad far enough for the last (ceil-mode) window; padding cells never win a max
        // (-inf) and add nothing to a sum (0); the divisor is computed separately.
        let hb = pb.max(((ho - 1) * sh + kh).saturating_sub(h + pt));
        let wb = pr.max(((wo - 1) * sw + kw).saturating_sub(wi + pl));
        let pad_value = if avg.is_some() {
            0.0
        } else {
            f32::NEG_INFINITY
        };
        let mut pd = xd.clone();
        pd[2] = DimVal::Static(h + pt + hb);
        pd[3] = DimVal::Static(wi + pl + wb);
        let xp = if pt + pl + hb + wb > 0 {
            self.e.pad(
                x,
                &[0, 0, pt as i64, pl as i64],
                &[0, 0, hb as i64, wb as i64],
                pad_value,
                self.ty(&pd),
            )?
        } else {
            x
        };
        let out = vec![xd[0], xd[1], DimVal::Static(ho), DimVal::Static(wo)];
        let window = self.e.empty(&[kh as i64, kw as i64], &[])?;
        let attrs = [
            (id(cx, "strides"), i64_elements(cx, &[sh as i64, sw as i64])),
            (id(cx, "dilations"), i64_elements(cx, &[1, 1])),
        ];
        let init = self.filled(pad_value, &out)?;
        let name = if avg.is_some() {
            "linalg.pooling_nchw_sum"
        } else {
            "linalg.pooling_nchw_max"
        };
        let y = self
            .e
            .named_linalg(name, &[xp, window], init, self.ty(&out), &attrs)?;
        let y = match avg {
            None => y,
            Some(include_pad) => {
                let mut counts = Vec::with_capacity((ho * wo) as usize);
                for oy in 0..ho {
                    let (fy, iy) = pool_window(h, kh, sh, pt, pb, oy);
                    for ox in 0..wo {
                        let (fx, ix) = pool_window(wi, kw, sw, pl, pr, ox);
                        let c = if include_pad { fy * fx } else { iy * ix };
                        // A window with no cell (impossible for verified pools) divides 0 by 1.
                        counts.push(c.max(1) as f32);
                    }
                }
                let bytes: Vec<u8> = counts.iter().flat_map(|v| v.to_le_bytes()).collect();
                let table = self.e.dense_f32(&[ho as i64, wo as i64], &bytes)?;
                self.elementwise(
                    &[
                        (y, (0..4).map(Some).collect()),
                        (table, vec![Some(2), Some(3)]),
                    ],
                    &out,
                    |e, a| e.binf("arith.divf", a[0], a[1]),
                )?
            }
        };
        self.define(op, y, out);
        Ok(())
    }

    fn mean(&mut self, op: OpId, v: ValueId, axes: &[usize], keepdims: bool) -> LResult<()> {
        let (x, d) = self.val(v);
        let r = d.len();
        let mut count = 1u64;
        for &a in axes {
            count *= self.need_static(op, &d, a, "reduced axis")?;
        }
        let reduced: Vec<bool> = (0..r).map(|i| axes.contains(&i)).collect();
        let (s, kept) = self.reduce(
            &[(x, (0..r).map(Some).collect())],
            &d,
            &reduced,
            0.0,
            |e, a| e.binf_fast("arith.addf", a[0], a[1], "reassoc"),
        )?;
        let k = kept.len();
        let cnt = count as f32;
        let m = self.elementwise(&[(s, (0..k).map(Some).collect())], &kept, move |e, a| {
            let c = e.f32_const(cnt)?;
            e.binf("arith.divf", a[0], c)
        })?;
        if !keepdims {
            self.define(op, m, kept);
            return Ok(());
        }
        // Reinsert the reduced axes as size 1: each joins the group of the nearest kept axis
        // before it (leading ones join the first kept axis).
        let full: Vec<DimVal> = (0..r)
            .map(|i| if reduced[i] { DimVal::Static(1) } else { d[i] })
            .collect();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for i in 0..r {
            if !reduced[i] || groups.is_empty() {
                if !reduced[i] && groups.len() == 1 && groups[0].iter().all(|&j| reduced[j]) {
                    groups[0].push(i);
                } else {
                    groups.push(vec![i]);
                }
            } else {
                groups.last_mut().expect("invariant: non-empty").push(i);
            }
        }
        if k == 0 {
            groups.clear();
        }
        let dy = self.dyn_sizes(&full)?;
        let y = self.e.expand(m, &groups, &shape(&full), &dy)?;
        self.define(op, y, full);
        Ok(())
    }

    fn flatten(&mut self, op: OpId, v: ValueId, axis: usize) -> LResult<()> {
        let (x, d) = self.val(v);
        let x = self.contiguous(x, &d)?;
        let r = d.len();
        if r == 0 {
            return Err(Fail::Unsupported(op, "flattening a scalar".into()));
        }
        let prod = |ds: &[DimVal]| -> Option<DimVal> {
            let mut stat = 1u64;
            let mut dynamic = None;
            for &dv in ds {
                match dv {
                    DimVal::Static(n) => stat *= n,
                    DimVal::Arg { .. } if dynamic.is_some() => return None,
                    a => dynamic = Some(a),
                }
            }
            Some(match dynamic {
                None => DimVal::Static(stat),
                Some(DimVal::Arg { arg, axis, factor }) => DimVal::Arg {
                    arg,
                    axis,
                    factor: factor * stat,
                },
                Some(s) => s,
            })
        };
        let (Some(a), Some(b)) = (prod(&d[..axis]), prod(&d[axis..])) else {
            return Err(Fail::Unsupported(
                op,
                "flattening merges two dynamic dimensions".into(),
            ));
        };
        let out = vec![a, b];
        let y = if axis > 0 && axis < r {
            self.e.collapse(
                x,
                &[(0..axis).collect(), (axis..r).collect()],
                self.ty(&out),
            )?
        } else {
            // One side is empty: collapse everything, then expand to [1, P] or [P, 1].
            let all = if axis == 0 { b } else { a };
            let flat = self.e.collapse(x, &[(0..r).collect()], self.ty(&[all]))?;
            let dy = self.dyn_sizes(&out)?;
            self.e.expand(flat, &[vec![0, 1]], &shape(&out), &dy)?
        };
        self.define(op, y, out);
        Ok(())
    }

    fn layer_norm(&mut self, op: OpId, operands: &[ValueId], axis: i64, eps: f32) -> LResult<()> {
        let (x, d) = self.val(operands[0]);
        let r = d.len();
        let a = Self::norm_axis(op, axis, r)?;
        let mut inner = 1u64;
        for i in a..r {
            inner *= self.need_static(op, &d, i, "normalized axis")?;
        }
        let id_map: Vec<Option<usize>> = (0..r).map(Some).collect();
        let outer_map: Vec<Option<usize>> = (0..a).map(Some).collect();
        let tail_map: Vec<Option<usize>> = (a..r).map(Some).collect();
        let reduced: Vec<bool> = (0..r).map(|i| i >= a).collect();
        let n = inner as f32;
        // mu = sum(x) / n; var = sum((x - mu)^2) / n; y = (x - mu) * (1 / sqrt(var + eps))
        // * scale + bias, the interpreter's two-pass order.
        let (s, outer) = self.reduce(&[(x, id_map.clone())], &d, &reduced, 0.0, |e, v| {
            e.binf("arith.addf", v[0], v[1])
        })?;
        let ko: Vec<Option<usize>> = (0..a).map(Some).collect();
        let mu = self.elementwise(&[(s, ko.clone())], &outer, move |e, v| {
            let c = e.f32_const(n)?;
            e.binf("arith.divf", v[0], c)
        })?;
        let (ss, _) = self.reduce(
            &[(x, id_map.clone()), (mu, outer_map.clone())],
            &d,
            &reduced,
            0.0,
            |e, v| {
                let dlt = e.binf("arith.subf", v[0], v[1])?;
                let sq = e.binf("arith.mulf", dlt, dlt)?;
                e.binf("arith.addf", v[2], sq)
            },
        )?;
        let rstd = self.elementwise(&[(ss, ko)], &outer, move |e, v| {
            let c = e.f32_const(n)?;
            let var = e.binf("arith.divf", v[0], c)?;
            let ce = e.f32_const(eps)?;
            let ve = e.binf("arith.addf", var, ce)?;
            let sq = e.unf("math.sqrt", ve)?;
            let one = e.f32_const(1.0)?;
            e.binf("arith.divf", one, sq)
        })?;
        let mut ins = vec![(x, id_map), (mu, outer_map.clone()), (rstd, outer_map)];
        for &p in &operands[1..] {
            let (pv, _) = self.val(p);
            ins.push((pv, tail_map.clone()));
        }
        let has_scale = operands.len() > 1;
        let has_bias = operands.len() > 2;
        let y = self.elementwise(&ins, &d, move |e, v| {
            let dlt = e.binf("arith.subf", v[0], v[1])?;
            let mut y = e.binf("arith.mulf", dlt, v[2])?;
            if has_scale {
                y = e.binf("arith.mulf", y, v[3])?;
            }
            if has_bias {
                y = e.binf("arith.addf", y, v[4])?;
            }
            Ok(y)
        })?;
        self.define(op, y, d);
        Ok(())
    }
}

/// Body of a contraction: `acc + a * b`.
/// `acc + x * w`, contractible into an FMA: the named matmul and conv ops cannot carry the
/// flag, so without it vectorized code is a `vmulps` + `vaddps` pair per MAC (half the
/// throughput on cores with two FMA pipes).
fn mul_add<'c, 'x>(e: &Emitter<'c, 'x, Block<'c>>, a: &[Value<'c, 'x>]) -> BResult<Value<'c, 'x>> {
    let p = e.binf_contract("arith.mulf", a[0], a[1])?;
    e.binf_contract("arith.addf", a[2], p)
}

/// `arith.cmpf` predicate `uge` (unordered or greater-or-equal: true for NaN).
const CMPF_UGE: i64 = 10;

/// The scalar body of an activation, matching `OpKind::eval_unary` (NaN propagation included;
/// the interpreter evaluates sigmoid and GELU in f64, this in f32, within 1e-6 relative).
fn activation<'c, 'x>(
    e: &Emitter<'c, 'x, Block<'c>>,
    kind: &OpKind,
    x: Value<'c, 'x>,
) -> BResult<Value<'c, 'x>> {
    let sigmoid = |x: Value<'c, 'x>| -> BResult<Value<'c, 'x>> {
        let one = e.f32_const(1.0)?;
        let n = e.unf("arith.negf", x)?;
        let ex = e.unf("math.exp", n)?;
        let den = e.binf("arith.addf", one, ex)?;
        e.binf("arith.divf", one, den)
    };
    match *kind {
        // maximumf propagates NaN, as the interpreter's relu does.
        OpKind::Relu => {
            let z = e.f32_const(0.0)?;
            e.binf("arith.maximumf", x, z)
        }
        OpKind::LeakyRelu { alpha } => {
            let z = e.f32_const(0.0)?;
            let a = e.f32_const(alpha)?;
            let ax = e.binf("arith.mulf", x, a)?;
            let c = e.cmpf(CMPF_UGE, x, z)?;
            e.select(c, x, ax)
        }
        OpKind::Clip { min, max } => {
            let lo = e.f32_const(min)?;
            let hi = e.f32_const(max)?;
            let m = e.binf("arith.maximumf", x, lo)?;
            e.binf("arith.minimumf", m, hi)
        }
        OpKind::Sigmoid => sigmoid(x),
        OpKind::Tanh => e.unf("math.tanh", x),
        OpKind::Gelu {
            approximate: ir::GeluApprox::None,
        } => {
            let half = e.f32_const(0.5)?;
            let one = e.f32_const(1.0)?;
            let r2 = e.f32_const(std::f32::consts::SQRT_2)?;
            let q = e.binf("arith.divf", x, r2)?;
            let erf = e.unf("math.erf", q)?;
            let s = e.binf("arith.addf", one, erf)?;
            let hx = e.binf("arith.mulf", half, x)?;
            e.binf("arith.mulf", hx, s)
        }
        OpKind::Gelu {
            approximate: ir::GeluApprox::Tanh,
        } => {
            let half = e.f32_const(0.5)?;
            let one = e.f32_const(1.0)?;
            let k = e.f32_const((2.0 / std::f64::consts::PI).sqrt() as f32)?;
            let c = e.f32_const(0.044715)?;
            let x2 = e.binf("arith.mulf", x, x)?;
            let x3 = e.binf("arith.mulf", x2, x)?;
            let cx3 = e.binf("arith.mulf", c, x3)?;
            let inner = e.binf("arith.addf", x, cx3)?;
            let arg = e.binf("arith.mulf", k, inner)?;
            let t = e.unf("math.tanh", arg)?;
            let s = e.binf("arith.addf", one, t)?;
            let hx = e.binf("arith.mulf", half, x)?;
            e.binf("arith.mulf", hx, s)
        }
        OpKind::Silu => {
            let s = sigmoid(x)?;
            e.binf("arith.mulf", x, s)
        }
        OpKind::HardSwish => {
            let three = e.f32_const(3.0)?;
            let zero = e.f32_const(0.0)?;
            let six = e.f32_const(6.0)?;
            let p = e.binf("arith.addf", x, three)?;
            let lo = e.binf("arith.maximumf", p, zero)?;
            let cl = e.binf("arith.minimumf", lo, six)?;
            let m = e.binf("arith.mulf", x, cl)?;
            e.binf("arith.divf", m, six)
        }
        _ => Ok(x),
    }
}

/// Runs of consecutive indices: `(output start, input start, length)`.
fn runs(indices: &[u64]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut j = 0usize;
    while j < indices.len() {
        let mut n = 1;
        while j + n < indices.len() && indices[j + n] == indices[j] + n as u64 {
            n += 1;
        }
        out.push((j as u64, indices[j], n as u64));
        j += n;
    }
    out
}

fn shape(dims: &[DimVal]) -> Vec<i64> {
    dims.iter().map(|d| d.to_i64()).collect()
}

/// What `--emit` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emit {
    /// linalg on tensors, straight from the lowering (or after `--mlir-pipeline` if given).
    Mlir,
    /// linalg on tensors with the transform schedule of its layers nested, before any pass.
    Transform,
    /// The LLVM dialect, after the whole lowering pipeline (default or `--mlir-pipeline`).
    Llvm,
}

/// Lowers `m` and prints it as MLIR text at the requested stage, scheduled for `threads`
/// worker threads.
pub fn emit_text(
    m: &ir::Module,
    emit: Emit,
    pipeline: Option<&str>,
    threads: u64,
) -> Result<String, Vec<Diagnostic>> {
    let cx = context();
    let mut lowered = lower_module(&cx, m)?;
    let fail = |e: String| vec![Diagnostic::error(e).at(m.span)];
    let scheduled = match (emit, pipeline) {
        (Emit::Transform, _) | (Emit::Llvm, None) => {
            jit::embed_schedule(&cx, &lowered.module, &lowered.layers, threads).map_err(fail)?
        }
        _ => false,
    };
    match (emit, pipeline) {
        (_, Some(p)) => jit::run_pipeline(&cx, &mut lowered.module, p),
        (Emit::Llvm, None) if scheduled => jit::run_scheduled(&cx, &mut lowered.module, threads),
        (Emit::Llvm, None) => jit::run_pipeline(&cx, &mut lowered.module, jit::DEFAULT_PIPELINE),
        (Emit::Mlir | Emit::Transform, None) => Ok(()),
    }
    .map_err(fail)?;
    Ok(print(&lowered.module))
}

/// Compiles `m` and runs function `func` on `inputs` (the `nnopt run` path without `--interp`).
pub fn compile_and_run(
    m: &ir::Module,
    func: &str,
    inputs: &[ndarray::ArrayD<f32>],
    pipeline: Option<&str>,
    threads: u64,
) -> Result<Vec<ndarray::ArrayD<f32>>, Vec<Diagnostic>> {
    let cx = context();
    let lowered = lower_module(&cx, &specialized(m, func, inputs)?)?;
    let jit = jit::Jit::compile(&cx, lowered, pipeline, threads)
        .map_err(|e| vec![Diagnostic::error(e).at(m.span)])?;
    jit.run(func, inputs)
        .map_err(|e| vec![Diagnostic::error(e)])
}

/// `m` with function `func` specialized to the shapes of `inputs` (`specialize::specialize`): the
/// compiled code is built for the sizes it runs on, so every layer's loop nest is static and
/// can be scheduled.
pub fn specialized(
    m: &ir::Module,
    func: &str,
    inputs: &[ndarray::ArrayD<f32>],
) -> Result<ir::Module, Vec<Diagnostic>> {
    let mut m = m.clone();
    let f = m
        .funcs
        .iter_mut()
        .find(|f| f.name == func)
        .ok_or_else(|| vec![Diagnostic::error(format!("no function @{func}"))])?;
    let shapes: Vec<Vec<usize>> = inputs.iter().map(|x| x.shape().to_vec()).collect();
    let span = f.span;
    specialize::specialize(f, &shapes).map_err(|e| vec![Diagnostic::error(e).at(span)])?;
    Ok(m)
}

/// How many consecutive calls of one model [`bench`] times before it turns to the next.
pub const BENCH_BLOCK: usize = 10;

/// Compiles each model once for the shapes of its inputs, calls each once untimed, then times
/// `runs` calls of each, in blocks of [`BENCH_BLOCK`] calls that alternate between the models.
/// Alternating keeps a comparison fair on a shared machine: a stretch of slow runs (100-200 ms
/// at a time here) hits every model, where back-to-back series put it on one side of the
/// ratio. Blocks rather than single calls: alternating call by call evicted each model's
/// weights from the caches for the other (the pruned MLP ran 1.2-1.6x slower than alone).
/// A call includes what `nnopt run` does around the compiled code (shape checks, argument
/// descriptors) except allocating the outputs, which are reused; not reading or writing files.
pub fn bench(
    models: &[crate::driver::BenchModel],
    runs: usize,
    pipeline: Option<&str>,
    threads: u64,
) -> Result<Vec<crate::driver::BenchTimes>, Vec<Diagnostic>> {
    let cx = context();
    let mut compiled = Vec::with_capacity(models.len());
    for b in models {
        let start = std::time::Instant::now();
        let lowered = lower_module(&cx, &specialized(b.module, b.func, &b.inputs)?)?;
        let jit = jit::Jit::compile(&cx, lowered, pipeline, threads)
            .map_err(|e| vec![Diagnostic::error(e).at(b.module.span)])?;
        compiled.push((jit, start.elapsed()));
    }
    let mut outputs = Vec::new();
    let call = |(jit, _): &(jit::Jit, _), b: &crate::driver::BenchModel, outputs: &mut _| {
        jit.run_into(b.func, &b.inputs, outputs)
            .map_err(|e| vec![Diagnostic::error(e)])
    };
    for (c, b) in compiled.iter().zip(models) {
        call(c, b, &mut outputs)?;
    }
    let mut times = vec![Vec::with_capacity(runs); models.len()];
    for block in (0..runs).step_by(BENCH_BLOCK) {
        for ((c, b), t) in compiled.iter().zip(models).zip(&mut times) {
            for _ in block..runs.min(block + BENCH_BLOCK) {
                let start = std::time::Instant::now();
                call(c, b, &mut outputs)?;
                t.push(start.elapsed());
            }
        }
    }
    Ok(compiled
        .iter()
        .zip(times)
        .map(|((_, compile), runs)| crate::driver::BenchTimes {
            compile: *compile,
            runs,
        })
        .collect())
}

/// The MLIR text of a lowered module (generic form off: the custom assembly mlir-opt reads).
pub fn print(module: &MlirModule) -> String {
    format!("{}\n", module.as_operation())
}

#[cfg(test)]
mod tests;
