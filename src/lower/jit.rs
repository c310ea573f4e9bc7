//! Compiling a lowered module to LLVM with MLIR's passes, to machine code with LLVM
//! (`object.rs`), and running it linked into this process (`loader.rs`); an object the run
//! cache kept (`cached.rs`) is linked the same way.
//!
//! The pipeline is `../shared/mlir-codegen`'s naive pipeline (a) (bufferize in place, linalg to
//! loops, lower to the LLVM dialect) with `convert-math-to-libm` added after
//! `convert-math-to-llvm`: `math.erf` and `math.tanh` have no LLVM intrinsic lowering, so they
//! become calls to the C library's `erff`/`tanhf`, which the loader resolves in this process.
//! LLVM compiles at opt level 3 (vectorized code depends on it).
//!
//! Calls use the memref ABI of `super`: the packed entry `_nnopt_packed_<name>` (added before
//! code generation) takes, for each argument, the address of a variable holding a pointer to a
//! memref descriptor `{allocated, aligned, offset, sizes[rank], strides[rank]}` (all 64-bit)
//! and calls `_mlir_ciface_<name>`.
//! Before the call every input shape and every [`super::Signature::constraints`] pair is
//! checked, so the compiled code never reads outside a buffer.

use super::abi::{Lowered, Signature};
use super::async_runtime;
use super::diag_capture::DiagCapture;
use super::loader::Loaded;
use super::object::{codegen_partitions, emit_object};
use super::schedule::{self, Tiles};
use crate::ir::{ElemType, Tensor};
use melior::ir::operation::{OperationLike, WalkOrder, WalkResult};
use melior::ir::{BlockLike, Module as MlirModule, Operation};
use melior::pass::PassManager;
use melior::utility::parse_pass_pipeline;
use melior::Context;
use ndarray::{ArrayD, IxDyn};

/// The default lowering pipeline from linalg on tensors to the LLVM dialect. The conversions
/// that work inside one function are nested in `func.func(...)`, so that MLIR runs them on the
/// outlined layer functions (`outline.rs`) in parallel.
pub const DEFAULT_PIPELINE: &str = "builtin.module(one-shot-bufferize,func.func(buffer-loop-hoisting),buffer-deallocation-pipeline,convert-bufferization-to-memref,func.func(convert-linalg-to-loops),canonicalize,cse,func.func(convert-vector-to-scf{full-unroll},lower-affine,convert-scf-to-cf,convert-vector-to-llvm{reassociate-fp-reductions},expand-strided-metadata,lower-affine),finalize-memref-to-llvm,func.func(convert-math-to-llvm),convert-math-to-libm,func.func(convert-arith-to-llvm,convert-index-to-llvm),convert-cf-to-llvm,convert-func-to-llvm,convert-ub-to-llvm,reconcile-unrealized-casts)";

/// What runs before [`DEFAULT_PIPELINE`] when the module carries a schedule (see
/// [`embed_schedule`]): apply it, drop the schedule module, clean up. No `cse` before
/// bufferization: it merged the zero fills of equally shaped padded conv inputs (identical
/// loops once vectorized) into one tensor, which every conv then wrote into, and bufferization
/// copied the padded buffer and its interior for each.
const SCHEDULE_PREFIX: &str = "transform-interpreter,symbol-dce,canonicalize,";

/// The default pipeline for a module with an embedded schedule. With `threads` > 1 the
/// schedule's `scf.forall` tasks become `scf.parallel` loops after bufferization; between the
/// pipeline's halves [`run_scheduled`] makes them calls of nnopt's runtime
/// (`super::parallel`), and [`async_passes`] take any it left.
pub fn scheduled_pipeline(threads: u64) -> String {
    let mut p = DEFAULT_PIPELINE.replacen(
        "builtin.module(",
        &format!("builtin.module({SCHEDULE_PREFIX}"),
        1,
    );
    if threads > 1 {
        p = p.replacen(
            BUFFERIZED,
            &format!("{BUFFERIZED}scf-forall-to-parallel,"),
            1,
        );
        p = p.replacen(LOOPS, &format!("{LOOPS}{}", async_passes(threads)), 1);
    }
    p
}

/// What makes the `scf.parallel` loops that `super::parallel::split` does not take
/// async-runtime work items on `threads` workers (`min-task-size=1` because the default keeps
/// a two-task loop on one thread); [`run_scheduled`] drops them when there are none.
fn async_passes(threads: u64) -> String {
    format!("async-parallel-for{{num-workers={threads} async-dispatch=false min-task-size=1}},async-to-async-runtime,async-runtime-ref-counting,async-runtime-ref-counting-opt,convert-async-to-llvm,")
}

/// Runs [`scheduled_pipeline`] on `module` in two halves, split after the loops exist
/// (`LOOPS`), and inserts the dense layers' weight prefetches between them
/// (`super::prefetch`). `nnopt run` and `--emit=llvm` both compile this way; a
/// `--mlir-pipeline` runs as given, without prefetches.
pub fn run_scheduled(cx: &Context, lowered: &mut Lowered, threads: u64) -> Result<(), String> {
    let panel = Tiles::for_target(&lowered.target).dense.1;
    let module = &mut lowered.module;
    let full = scheduled_pipeline(threads);
    let at = full
        .find(LOOPS)
        .map(|i| i + LOOPS.len())
        .ok_or_else(|| "internal error: the scheduled pipeline lost its loop stage".to_string())?;
    let (first, second) = full.split_at(at);
    run_mlir_pipeline(cx, module, &format!("{})", first.trim_end_matches(',')))?;
    super::prefetch::insert(cx, module, panel);
    super::outline::outline(cx, module);
    let merge = super::outline::MERGE.trim_end_matches(',');
    run_mlir_pipeline(cx, module, &format!("builtin.module({merge})"))?;
    let mut second = second.to_string();
    if super::parallel::split(cx, module) == 0 {
        second = second.replacen(&async_passes(threads), "", 1);
    }
    run_mlir_pipeline(cx, module, &format!("builtin.module({second}"))?;
    super::outline::finish(cx, module);
    super::parallel::finish(cx, module)
}

/// Where [`scheduled_pipeline`] inserts the threading passes (both occur in
/// [`DEFAULT_PIPELINE`]; `lower::tests::threaded_pipeline_has_the_async_passes` checks it).
const BUFFERIZED: &str = "convert-bufferization-to-memref,";
const LOOPS: &str = "func.func(convert-linalg-to-loops),canonicalize,cse,";

/// Nests the transform schedule of the lowered module's layers in it, as a private module
/// `@__nnopt_schedule`, where `transform-interpreter` finds its `@__transform_main`. Returns
/// false (and leaves the module alone) when there is nothing to schedule: no layer, and one
/// thread (with more, the element-wise ops marked `nnopt.spread` are split even in a module
/// without layers).
pub fn embed_schedule(cx: &Context, lowered: &Lowered, threads: u64) -> Result<bool, String> {
    let Lowered {
        module,
        layers,
        target,
        ..
    } = lowered;
    if layers.is_empty() && threads < 2 {
        return Ok(false);
    }
    let tiles = Tiles::for_target(target);
    let text = format!(
        "module {{\n{}}}\n",
        schedule::script(layers, threads, &tiles)
    );
    let capture = DiagCapture::new(cx);
    let parsed = MlirModule::parse(cx, &text).ok_or_else(|| {
        format!(
            "internal error: the generated schedule does not parse:\n{}",
            capture.take()
        )
    })?;
    let op = parsed
        .body()
        .first_operation()
        .ok_or_else(|| "internal error: empty schedule".to_string())?;
    // SAFETY: `op` is a live operation of `parsed`; the clone is a new, unowned operation that
    // the payload's body takes ownership of.
    let copy = unsafe { Operation::from_raw(mlir_sys::mlirOperationClone(op.to_raw())) };
    module.body().append_operation(copy);
    Ok(true)
}

/// MLIR's runtime helper for strided copies (`memref.copy` that is not contiguous, e.g. an
/// insert into a slice of a padded or concatenated tensor), with the signature of
/// `libmlir_c_runner_utils`'s: `memrefCopy(elemSize, UnrankedMemRef *src, UnrankedMemRef *dst)`.
/// Passing that library to the engine left the symbol unresolved ("failed to invoke
/// JIT-compiled function"), so nnopt provides it and registers it with the engine.
///
/// # Safety
/// `src` and `dst` must point at unranked memref descriptors `{rank, *ranked}` of equal rank and
/// sizes whose strided elements are valid for reads (`src`) and writes (`dst`).
unsafe extern "C" fn memref_copy(elem_size: i64, src: *const Unranked, dst: *const Unranked) {
    // SAFETY: the caller (compiled MLIR code) passes valid descriptors, as documented above.
    unsafe {
        let rank = (*src).rank as usize;
        let (s, d) = ((*src).desc, (*dst).desc);
        let field = |p: *const i64, i: usize| *p.add(i);
        let elem = elem_size as usize;
        let sp = field(s, 1) as *const u8;
        let dp = field(d, 1) as *mut u8;
        let (so, dof) = (field(s, 2), field(d, 2));
        let sizes: Vec<i64> = (0..rank).map(|i| field(s, 3 + i)).collect();
        let ss: Vec<i64> = (0..rank).map(|i| field(s, 3 + rank + i)).collect();
        let ds: Vec<i64> = (0..rank).map(|i| field(d, 3 + rank + i)).collect();
        if sizes.iter().any(|&n| n <= 0) {
            return;
        }
        // Copy innermost rows in one go when both are contiguous along the last axis.
        let (inner, outer_rank) = match rank {
            0 => (1, 0),
            _ if ss[rank - 1] == 1 && ds[rank - 1] == 1 => (sizes[rank - 1], rank - 1),
            _ => (1, rank),
        };
        let mut idx = vec![0i64; outer_rank];
        loop {
            let so_i: i64 = so + idx.iter().zip(&ss).map(|(i, s)| i * s).sum::<i64>();
            let do_i: i64 = dof + idx.iter().zip(&ds).map(|(i, s)| i * s).sum::<i64>();
            std::ptr::copy(
                sp.add(so_i as usize * elem),
                dp.add(do_i as usize * elem),
                inner as usize * elem,
            );
            let mut k = outer_rank;
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                idx[k] += 1;
                if idx[k] < sizes[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
    }
}

/// The most bytes of freed temporaries the allocator of compiled code keeps for later calls.
pub(super) const POOL_LIMIT: usize = 1 << 30;

/// The allocator of compiled code: `memref.alloc` (the padded copy of a conv input, the
/// tensors between layers) lowers to `malloc`/`free`, which the engine resolves to these
/// (with `aligned_alloc`: every allocation the compiled code frees must come from here).
/// Freed blocks are kept by size and handed out again: every call of a compiled network asks
/// for the same sizes in the same order, so from the second call on nothing reaches the OS
/// (glibc serves blocks this large with `mmap`, so each call would pay their page faults).
/// Blocks are 64-byte aligned (a cache line, a zmm register) with the size in a header; at
/// most [`POOL_LIMIT`] bytes are kept. `nnopt compile`'s artifacts carry the same allocator in
/// C (`aot.rs`).
mod pool {
    use super::POOL_LIMIT;
    use std::alloc::{alloc, dealloc, Layout};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    const HEADER: usize = 64;

    struct Free {
        blocks: BTreeMap<usize, Vec<usize>>,
        bytes: usize,
    }

    static FREE: Mutex<Free> = Mutex::new(Free {
        blocks: BTreeMap::new(),
        bytes: 0,
    });

    fn layout(size: usize) -> Option<Layout> {
        Layout::from_size_align(size.checked_add(HEADER)?, HEADER).ok()
    }

    pub unsafe extern "C" fn malloc(size: usize) -> *mut u8 {
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(base) = free.blocks.get_mut(&size).and_then(Vec::pop) {
            free.bytes -= size;
            return (base + HEADER) as *mut u8;
        }
        let Some(l) = layout(size) else {
            return std::ptr::null_mut();
        };
        // SAFETY: `l` has a non-zero size (the header).
        let base = unsafe { alloc(l) };
        if base.is_null() {
            return base;
        }
        // SAFETY: `base` is valid for HEADER bytes and 64-byte aligned.
        unsafe {
            (base as *mut usize).write(size);
            base.add(HEADER)
        }
    }

    /// The async lowering allocates coroutine frames with `aligned_alloc` and releases them
    /// with `free`, so both must come from this pool. Blocks are 64-byte aligned; a stricter
    /// alignment (never requested by MLIR's lowerings) fails like C's does, with null.
    pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
        if align > HEADER {
            return std::ptr::null_mut();
        }
        // SAFETY: forwards to `malloc`, whose blocks satisfy `align`.
        unsafe { malloc(size) }
    }

    pub unsafe extern "C" fn free(p: *mut u8) {
        if p.is_null() {
            return;
        }
        // SAFETY: `p` came from `malloc` above, so its header is HEADER bytes before it.
        let (base, size) = unsafe {
            let base = p.sub(HEADER);
            (base, (base as *const usize).read())
        };
        let mut free = FREE.lock().unwrap_or_else(|e| e.into_inner());
        if free.bytes + size <= POOL_LIMIT {
            free.bytes += size;
            free.blocks.entry(size).or_default().push(base as usize);
        } else if let Some(l) = layout(size) {
            // SAFETY: `base` was allocated with this layout by `malloc`.
            unsafe { dealloc(base, l) };
        }
    }
}

/// The name of the first op in `module` outside the LLVM dialect, if any: such a module cannot
/// be translated to LLVM IR (MLIR's ExecutionEngine, which nnopt used before, returned a null
/// engine for it, which crashed on first use).
fn unconverted(module: &MlirModule) -> Option<String> {
    let mut found = None;
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        let name = op.name();
        let name = name.as_string_ref().as_str().unwrap_or("?");
        if name == "builtin.module" || name.starts_with("llvm.") {
            WalkResult::Advance
        } else {
            found = Some(name.to_string());
            WalkResult::Interrupt
        }
    });
    found
}

/// MLIR's `UnrankedMemRefType`: the rank and a pointer to a ranked descriptor.
#[repr(C)]
struct Unranked {
    rank: i64,
    desc: *const i64,
}

/// Runs a textual pass pipeline (`builtin.module(...)`) on the module and verifies the result
/// once. Errors carry MLIR's own diagnostics.
///
/// MLIR's pass manager verifies the whole module after every pass unless told not to; on
/// MobileNetV3-small that was 45 % of the pipeline (`docs/performance.md`). The module comes
/// in verified (`super::lower_module`) and is verified here after the last pass, so a pass
/// that breaks it is still an error before translation, only without the pass's name.
pub fn run_mlir_pipeline(
    cx: &Context,
    module: &mut MlirModule,
    pipeline: &str,
) -> Result<(), String> {
    let capture = DiagCapture::new(cx);
    let pm = PassManager::new(cx);
    pm.enable_verifier(false);
    parse_pass_pipeline(pm.as_operation_pass_manager(), pipeline)
        .map_err(|e| format!("invalid MLIR pass pipeline: {e}"))?;
    let failed = |what: &str| {
        let msgs = capture.take();
        if msgs.is_empty() {
            what.to_string()
        } else {
            format!("{what}:\n{msgs}")
        }
    };
    pm.run(module)
        .map_err(|_| failed("the MLIR pass pipeline failed"))?;
    match module.as_operation().verify() {
        true => Ok(()),
        false => Err(failed(
            "the MLIR pass pipeline left a module that does not verify",
        )),
    }
}

/// The symbols compiled code calls that nnopt defines: `memrefCopy`, the allocator and the
/// async runtime.
pub(super) fn runtime_symbols() -> Vec<(&'static str, *mut ())> {
    let mut s: Vec<(&'static str, *mut ())> = vec![
        (
            "memrefCopy",
            memref_copy as unsafe extern "C" fn(i64, *const Unranked, *const Unranked) as *mut (),
        ),
        (
            "malloc",
            pool::malloc as unsafe extern "C" fn(usize) -> *mut u8 as *mut (),
        ),
        (
            "aligned_alloc",
            pool::aligned_alloc as unsafe extern "C" fn(usize, usize) -> *mut u8 as *mut (),
        ),
        (
            "free",
            pool::free as unsafe extern "C" fn(*mut u8) as *mut (),
        ),
    ];
    s.extend(async_runtime::symbols());
    s
}

/// The name of the packed entry point of function `name` (see [`add_packed_entries`]).
fn packed_name(name: &str) -> String {
    format!("_nnopt_packed_{name}")
}

/// Adds to `module` (LLVM dialect), for each signature, `@_nnopt_packed_<name>(ptr args)`:
/// `args[i]` points at a variable holding a pointer to the i-th memref descriptor, which it
/// passes on to `@_mlir_ciface_<name>`. One entry of one C type per function lets
/// [`Jit::run_into`] call any function without knowing its arity at compile time.
fn add_packed_entries(
    cx: &Context,
    module: &mut MlirModule,
    signatures: &[Signature],
) -> Result<(), String> {
    use std::fmt::Write;
    let mut text = String::from("module {\n");
    for sig in signatures {
        let n = sig.inputs.len() + sig.weights.len() + sig.outputs.len();
        let ptrs = vec!["!llvm.ptr"; n].join(", ");
        let name = &sig.name;
        let _ = writeln!(text, "llvm.func @_mlir_ciface_{name}({ptrs})");
        let _ = writeln!(
            text,
            "llvm.func @{}(%args: !llvm.ptr) {{",
            packed_name(name)
        );
        for i in 0..n {
            let _ = writeln!(
                text,
                "  %p{i} = llvm.getelementptr %args[{i}] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr\n  %q{i} = llvm.load %p{i} : !llvm.ptr -> !llvm.ptr\n  %d{i} = llvm.load %q{i} : !llvm.ptr -> !llvm.ptr"
            );
        }
        let args: Vec<String> = (0..n).map(|i| format!("%d{i}")).collect();
        let _ = writeln!(
            text,
            "  llvm.call @_mlir_ciface_{name}({}) : ({ptrs}) -> ()\n  llvm.return\n}}",
            args.join(", ")
        );
    }
    text.push_str("}\n");
    let capture = DiagCapture::new(cx);
    let parsed = MlirModule::parse(cx, &text).ok_or_else(|| {
        format!(
            "internal error: the packed entry points do not parse:\n{}",
            capture.take()
        )
    })?;
    let mut op = parsed.body().first_operation();
    while let Some(o) = op {
        let is_entry = o
            .attribute("sym_name")
            .ok()
            .and_then(|a| melior::ir::attribute::StringAttribute::try_from(a).ok())
            .is_some_and(|a| a.value().starts_with("_nnopt_packed_"));
        if is_entry {
            // SAFETY: `o` is a live operation of `parsed`; the clone is a new, unowned
            // operation that the module's body takes ownership of.
            let copy = unsafe { Operation::from_raw(mlir_sys::mlirOperationClone(o.to_raw())) };
            module.body().append_operation(copy);
        }
        op = o.next_in_block();
    }
    Ok(())
}

/// Runs the pass pipeline on the lowered module, which must leave it all in the LLVM dialect,
/// and marks its functions with the target's CPU and features.
pub(super) fn lower_to_llvm<'c>(
    cx: &'c Context,
    lowered: &mut Lowered<'c>,
    pipeline: Pipeline,
    threads: u64,
) -> Result<(), String> {
    match pipeline {
        Pipeline::Given(p) => run_mlir_pipeline(cx, &mut lowered.module, p)?,
        Pipeline::Scheduled => run_scheduled(cx, lowered, threads)?,
        Pipeline::Default => run_mlir_pipeline(cx, &mut lowered.module, DEFAULT_PIPELINE)?,
    }
    lowered.target.mark_functions(cx, &mut lowered.module);
    if let Some(op) = unconverted(&lowered.module) {
        return Err(format!(
            "cannot compile the module: the lowering pipeline left `{op}`, which is not in the LLVM dialect"
        ));
    }
    Ok(())
}

/// Which pipeline lowers a module to the LLVM dialect.
#[derive(Clone, Copy)]
pub(super) enum Pipeline<'a> {
    /// `--mlir-pipeline`, as given.
    Given(&'a str),
    /// The embedded transform schedule, then [`scheduled_pipeline`].
    Scheduled,
    /// [`DEFAULT_PIPELINE`].
    Default,
}

impl<'a> Pipeline<'a> {
    /// `given`, else the schedule of the lowered module's layers (embedded in it here) when
    /// there is one, else the default pipeline.
    pub(super) fn choose(
        cx: &Context,
        lowered: &Lowered,
        given: Option<&'a str>,
        threads: u64,
    ) -> Result<Self, String> {
        Ok(match given {
            Some(p) => Pipeline::Given(p),
            None if embed_schedule(cx, lowered, threads)? => Pipeline::Scheduled,
            None => Pipeline::Default,
        })
    }
}

/// Once per compiled module, not per call: packs the weights of scheduled dense layers and
/// strided convs ([`super::Packing`]), and gives a 4-byte aligned buffer to a weight whose
/// bytes are not one (a splat, a gather view, an ONNX initializer at an odd offset of its
/// file), which `run_into` would otherwise copy on every call.
pub(super) fn prepare_weights(signatures: &mut [Signature]) {
    for w in signatures.iter_mut().flat_map(|s| &mut s.weights) {
        if let Some(p) = w.packed.take() {
            w.value = p.apply(&w.value);
        } else if aligned_f32(&w.value).is_none() {
            // One copy of the bytes into the new buffer: this runs on every start, cached or
            // not (ResNet-18's ONNX initializers are mostly unaligned: 45 MB).
            let t = &w.value;
            w.value = Tensor::from_fill(t.elem(), t.shape().to_vec(), |out| {
                let mut at = 0;
                t.for_each_byte_chunk(|b| {
                    out[at..at + b.len()].copy_from_slice(b);
                    at += b.len();
                });
            })
            .expect("invariant: the copy has the size of a tensor that exists");
        }
    }
}

/// A compiled module, linked into this process and ready to run.
pub struct Jit {
    /// Keeps the code `entries` point into mapped.
    _loaded: Loaded,
    signatures: Vec<Signature>,
    /// The packed entry point of each signature.
    entries: Vec<*const ()>,
}

impl Jit {
    /// Lowers `lowered` through `pipeline`, compiles it at opt level 3 for its target and
    /// links it into the process. Without a pipeline, the marked layers are tiled and
    /// vectorized by their transform schedule and the rest goes through [`DEFAULT_PIPELINE`].
    pub fn compile(
        cx: &Context,
        lowered: Lowered,
        pipeline: Option<&str>,
        threads: u64,
    ) -> Result<Self, String> {
        Self::build(cx, lowered, pipeline, threads, codegen_partitions()).map(|(jit, _)| jit)
    }

    /// [`Jit::compile`] with code generation in at most `partitions` partitions (`object.rs`),
    /// also returning the object files it linked (what the run cache keeps).
    pub(super) fn build(
        cx: &Context,
        lowered: Lowered,
        pipeline: Option<&str>,
        threads: u64,
        partitions: usize,
    ) -> Result<(Self, Vec<Vec<u8>>), String> {
        let mut lowered = lowered;
        let pipeline = Pipeline::choose(cx, &lowered, pipeline, threads)?;
        lower_to_llvm(cx, &mut lowered, pipeline, threads)?;
        add_packed_entries(cx, &mut lowered.module, &lowered.signatures)?;
        let objects = emit_object(&lowered.module, &lowered.target, None, partitions)?;
        let jit = Self::load(&objects, lowered.signatures, threads)?;
        Ok((jit, objects))
    }

    /// Links `objects` (compiled for `threads` from a module whose functions have `signatures`,
    /// weights not yet prepared) into the process.
    pub(super) fn load(
        objects: &[Vec<u8>],
        mut signatures: Vec<Signature>,
        threads: u64,
    ) -> Result<Self, String> {
        prepare_weights(&mut signatures);
        // Code compiled for N threads runs one task of each parallel loop on the calling
        // thread (`async-dispatch=false`) and N - 1 on the pool.
        async_runtime::ensure_workers(threads.saturating_sub(1) as usize)?;
        // SAFETY: each runtime symbol has the C signature compiled code calls it with.
        let loaded = unsafe { Loaded::new(objects, &runtime_symbols()) }?;
        let entries = signatures
            .iter()
            .map(|s| loaded.lookup(&packed_name(&s.name)))
            .collect::<Result<_, _>>()?;
        Ok(Jit {
            _loaded: loaded,
            signatures,
            entries,
        })
    }

    pub fn signature(&self, name: &str) -> Option<&Signature> {
        self.signatures.iter().find(|s| s.name == name)
    }

    /// Runs function `name` on `inputs` and returns its outputs.
    pub fn run(&self, name: &str, inputs: &[ArrayD<f32>]) -> Result<Vec<ArrayD<f32>>, String> {
        let mut outputs = Vec::new();
        self.run_into(name, inputs, &mut outputs)?;
        Ok(outputs)
    }

    /// [`Jit::run`] writing into `outputs`, whose arrays are reused when their shapes are
    /// already right (repeated calls, as in `nnopt bench`, then allocate nothing).
    pub fn run_into(
        &self,
        name: &str,
        inputs: &[ArrayD<f32>],
        outputs: &mut Vec<ArrayD<f32>>,
    ) -> Result<(), String> {
        let sig = self
            .signature(name)
            .ok_or_else(|| format!("no compiled function @{name}"))?;
        if inputs.len() != sig.inputs.len() {
            return Err(format!(
                "@{name} takes {} input(s) but {} were given",
                sig.inputs.len(),
                inputs.len()
            ));
        }
        let mut shapes = Vec::new();
        for (i, (x, ty)) in inputs.iter().zip(&sig.inputs).enumerate() {
            if !crate::interp::shape_matches(ty, x.shape()) {
                return Err(format!(
                    "input {i} of @{name} has shape {:?} but the argument has type {ty}",
                    x.shape()
                ));
            }
            shapes.push(x.shape().to_vec());
        }
        for (a, b) in &sig.constraints {
            let (va, vb) = (a.eval(&shapes), b.eval(&shapes));
            if va != vb {
                return Err(format!(
                    "inputs of @{name} have inconsistent dynamic sizes: {} and {} must be equal (broadcasting a dynamic size of 1 is not supported by compiled code; use --interp)",
                    show(va),
                    show(vb)
                ));
            }
        }
        // Buffers stay alive (and unmoved) until the call returns.
        // Contiguous inputs are passed in place (no copy per call).
        let owned_inputs: Vec<ndarray::CowArray<f32, ndarray::IxDyn>> =
            inputs.iter().map(|x| x.as_standard_layout()).collect();
        // Token ids, carried as f32 like the interpreter carries them, are passed as i64.
        let mut ids: Vec<Vec<i64>> = Vec::new();
        for (i, x) in owned_inputs.iter().enumerate() {
            if sig.inputs[i].elem == ElemType::I64 {
                let v = token_ids(x.iter(), sig.id_rows[i])
                    .map_err(|e| format!("input {i} of @{name}: {e}"))?;
                ids.push(v);
            }
        }
        let mut descs: Vec<Vec<i64>> = Vec::new();
        let mut next_ids = ids.iter_mut();
        for (x, ty) in owned_inputs.iter().zip(&sig.inputs) {
            let shape: Vec<u64> = x.shape().iter().map(|&n| n as u64).collect();
            let ptr = match ty.elem {
                ElemType::I64 => next_ids
                    .next()
                    .expect("invariant: one id buffer per i64 input")
                    .as_mut_ptr() as *mut u8,
                _ => x.as_ptr() as *mut u8,
            };
            descs.push(descriptor(ptr, &shape));
        }
        for w in &sig.weights {
            let ptr = aligned_f32(&w.value).expect("invariant: `compile` aligned every weight");
            descs.push(descriptor(ptr, w.value.shape()));
        }
        outputs.truncate(sig.outputs.len());
        for (i, dims) in sig.outputs.iter().enumerate() {
            let shape: Vec<usize> = dims
                .iter()
                .map(|d| d.eval(&shapes).map(|n| n as usize))
                .collect::<Option<_>>()
                .ok_or_else(|| format!("cannot compute the output shape of @{name}"))?;
            match outputs.get(i) {
                Some(y) if y.shape() == shape.as_slice() && y.is_standard_layout() => {}
                Some(_) => outputs[i] = ArrayD::<f32>::zeros(IxDyn(&shape)),
                None => outputs.push(ArrayD::<f32>::zeros(IxDyn(&shape))),
            }
        }
        for y in outputs.iter_mut() {
            let shape: Vec<u64> = y.shape().iter().map(|&n| n as u64).collect();
            descs.push(descriptor(y.as_mut_ptr(), &shape));
        }
        let mut desc_ptrs: Vec<*mut i64> = descs.iter_mut().map(|d| d.as_mut_ptr()).collect();
        let mut args: Vec<*mut ()> = desc_ptrs
            .iter_mut()
            .map(|p| p as *mut *mut i64 as *mut ())
            .collect();
        let i = self
            .signatures
            .iter()
            .position(|s| s.name == name)
            .expect("invariant: the signature was found above");
        // SAFETY: the entry is `@_nnopt_packed_<name>` of the loaded object, of this C type.
        let entry = unsafe {
            std::mem::transmute::<*const (), unsafe extern "C" fn(*mut *mut ())>(self.entries[i])
        };
        // SAFETY: each argument points at a live pointer to a descriptor of a live, contiguous
        // f32 buffer whose shape matches the function's memref type (checked above: static
        // sizes, and equal dynamic sizes where the code relies on them). The function writes
        // only the output buffers, which are exclusively borrowed here. `self._loaded` keeps
        // the code mapped.
        unsafe { entry(args.as_mut_ptr()) };
        Ok(())
    }
}

/// The f32 data of `t` in place, when its bytes lie in one 4-byte aligned buffer (compiled code
/// reads weights through such a pointer; it never writes them).
fn aligned_f32(t: &Tensor) -> Option<*mut f32> {
    t.raw_bytes()
        .filter(|b| (b.as_ptr() as usize).is_multiple_of(4))
        .map(|b| b.as_ptr() as *mut f32)
}

fn show(v: Option<u64>) -> String {
    v.map_or_else(|| "?".to_string(), |n| n.to_string())
}

/// The i64 buffer of token ids `xs` (carried as f32): integers, each in `[0, rows)` when an
/// `nn.embedding` reads them (the interpreter's rule, with its message).
fn token_ids<'a>(xs: impl Iterator<Item = &'a f32>, rows: Option<u64>) -> Result<Vec<i64>, String> {
    xs.map(|&id| match rows {
        _ if id.fract() != 0.0 => Err(format!("token id {id} is not an integer")),
        Some(r) if id < 0.0 || id >= r as f32 => Err(format!(
            "token id {id} is out of range for a table of {r} rows"
        )),
        _ => Ok(id as i64),
    })
    .collect()
}

/// A memref descriptor for a contiguous row-major buffer.
fn descriptor<T>(ptr: *mut T, shape: &[u64]) -> Vec<i64> {
    let mut d = vec![ptr as i64, ptr as i64, 0];
    d.extend(shape.iter().map(|&n| n as i64));
    let mut strides = vec![0i64; shape.len()];
    let mut s = 1i64;
    for i in (0..shape.len()).rev() {
        strides[i] = s;
        s *= shape[i] as i64;
    }
    d.extend(strides);
    d
}

#[cfg(test)]
mod tests {
    use melior::ir::attribute::TypeAttribute;
    use melior::ir::operation::OperationMutLike;
    use melior::ir::r#type::{FunctionType, IntegerType};
    use melior::ir::{BlockLike, Module};

    /// The pipeline runs without MLIR's verification after each pass, and verifies the module
    /// once at the end: a module that does not verify is an error even when no pass saw it.
    #[test]
    fn the_module_is_verified_after_the_pipeline() {
        let cx = super::super::context();
        let mut module = Module::parse(
            &cx,
            "func.func @f(%a: i32) -> i32 {\n  return %a : i32\n}\n",
        )
        .expect("the module parses");
        let i32 = IntegerType::new(&cx, 32).into();
        module
            .body()
            .first_operation_mut()
            .expect("the module has @f")
            .set_attribute(
                "function_type",
                TypeAttribute::new(FunctionType::new(&cx, &[i32], &[]).into()).into(),
            );
        let e = super::run_mlir_pipeline(&cx, &mut module, "builtin.module()")
            .expect_err("@f returns a value it no longer declares");
        assert!(e.contains("does not verify"), "{e}");
        assert!(e.contains("return"), "MLIR's diagnostic is kept: {e}");
    }
}
