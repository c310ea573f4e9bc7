//! Compiling a lowered module to LLVM with MLIR's passes and running it with MLIR's
//! ExecutionEngine.
//!
//! The pipeline is `../shared/mlir-codegen`'s naive pipeline (a) (bufferize in place, linalg to
//! loops, lower to the LLVM dialect) with `convert-math-to-libm` added after
//! `convert-math-to-llvm`: `math.erf` and `math.tanh` have no LLVM intrinsic lowering, so they
//! become calls to the C library's `erff`/`tanhf`, which the JIT resolves in this process. The
//! engine compiles at LLVM opt level 3 (vectorized code depends on it).
//!
//! Calls use the memref ABI of `super`: `invoke_packed(name)` looks up `_mlir_ciface_<name>`
//! and passes, for each argument, the address of a variable holding a pointer to a memref
//! descriptor `{allocated, aligned, offset, sizes[rank], strides[rank]}` (all 64-bit).
//! Before the call every input shape and every [`super::Signature::constraints`] pair is
//! checked, so the compiled code never reads outside a buffer.

use super::abi::{Lowered, Signature};
use super::async_runtime;
use super::dense::pack_dense;
use super::diag_capture::DiagCapture;
use super::schedule::{self, Tiles};
use crate::ir::{ElemType, Tensor};
use melior::ir::operation::{OperationLike, WalkOrder, WalkResult};
use melior::ir::{BlockLike, Module as MlirModule, Operation};
use melior::pass::PassManager;
use melior::utility::parse_pass_pipeline;
use melior::Context;
use melior::StringRef;
use ndarray::{ArrayD, IxDyn};

/// The default lowering pipeline from linalg on tensors to the LLVM dialect.
pub const DEFAULT_PIPELINE: &str = "builtin.module(eliminate-empty-tensors,one-shot-bufferize,func.func(buffer-loop-hoisting),buffer-deallocation-pipeline,convert-bufferization-to-memref,func.func(convert-linalg-to-loops),canonicalize,cse,convert-vector-to-scf{full-unroll},lower-affine,convert-scf-to-cf,convert-vector-to-llvm{reassociate-fp-reductions},expand-strided-metadata,lower-affine,finalize-memref-to-llvm,convert-math-to-llvm,convert-math-to-libm,convert-arith-to-llvm,convert-index-to-llvm,convert-cf-to-llvm,convert-func-to-llvm,convert-ub-to-llvm,reconcile-unrealized-casts)";

/// What runs before [`DEFAULT_PIPELINE`] when the module carries a schedule (see
/// [`embed_schedule`]): apply it, drop the schedule module, clean up. No `cse` before
/// bufferization: it merged the zero fills of equally shaped padded conv inputs (identical
/// loops once vectorized) into one tensor, which every conv then wrote into, and bufferization
/// copied the padded buffer and its interior for each.
const SCHEDULE_PREFIX: &str = "transform-interpreter,symbol-dce,canonicalize,";

/// The default pipeline for a module with an embedded schedule. With `threads` > 1 the
/// schedule's `scf.forall` tasks become `scf.parallel` loops after bufferization and then
/// async-runtime work items on `threads` workers (the notes' two-thread pipeline;
/// `min-task-size=1` because the default keeps a two-task loop on one thread).
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
        p = p.replacen(
            LOOPS,
            &format!("{LOOPS}async-parallel-for{{num-workers={threads} async-dispatch=false min-task-size=1}},async-to-async-runtime,async-runtime-ref-counting,async-runtime-ref-counting-opt,arith-expand,convert-async-to-llvm,"),
            1,
        );
    }
    p
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
    run_mlir_pipeline(cx, module, &format!("builtin.module({second}"))
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

/// The allocator of compiled code: `memref.alloc` (the padded copy of a conv input, the
/// tensors between layers) lowers to `malloc`/`free`, which the engine resolves to these
/// (with `aligned_alloc`: every allocation the compiled code frees must come from here).
/// Freed blocks are kept by size and handed out again: every call of a compiled network asks
/// for the same sizes in the same order, so from the second call on nothing reaches the OS
/// (glibc serves blocks this large with `mmap`, so each call would pay their page faults).
/// Blocks are 64-byte aligned (a cache line, a zmm register) with the size in a header; at
/// most [`POOL_LIMIT`] bytes are kept.
mod pool {
    use std::alloc::{alloc, dealloc, Layout};
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    const HEADER: usize = 64;
    pub const POOL_LIMIT: usize = 1 << 30;

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

/// MLIR's ExecutionEngine through the C API. melior's wrapper keeps the null engine
/// `mlirExecutionEngineCreate` returns when translation or JIT set-up fails, and crashed on its
/// first use.
struct Engine(mlir_sys::MlirExecutionEngine);

impl Engine {
    /// Translates `module` (all LLVM dialect) and JIT-compiles it at LLVM opt level `opt`.
    fn new(module: &MlirModule, opt: i32) -> Option<Engine> {
        // SAFETY: the module is alive; no shared libraries are passed (a null list of 0).
        let raw = unsafe {
            mlir_sys::mlirExecutionEngineCreate(
                module.to_raw(),
                opt,
                0,
                std::ptr::null(),
                false,
                false,
            )
        };
        (!raw.ptr.is_null()).then_some(Engine(raw))
    }

    /// Makes `symbol` resolve to `address` in the compiled code.
    ///
    /// # Safety
    /// `address` must be a function with the C signature the compiled code calls `symbol` with.
    unsafe fn register_symbol(&self, symbol: &str, address: *mut ()) {
        // SAFETY: the engine is alive (non-null); the caller vouches for the address.
        unsafe {
            mlir_sys::mlirExecutionEngineRegisterSymbol(
                self.0,
                StringRef::new(symbol).to_raw(),
                address.cast(),
            )
        }
    }

    /// Calls `_mlir_ciface_<name>` with packed arguments; false when there is no such function.
    ///
    /// # Safety
    /// `args` must point at what the function reads and writes (see `Jit::run_into`).
    unsafe fn invoke_packed(&self, name: &str, args: &mut [*mut ()]) -> bool {
        // SAFETY: the engine is alive; the caller vouches for the arguments.
        let r = unsafe {
            mlir_sys::mlirExecutionEngineInvokePacked(
                self.0,
                StringRef::new(name).to_raw(),
                args.as_mut_ptr().cast(),
            )
        };
        r.value != 0
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        // SAFETY: created by `mlirExecutionEngineCreate`, destroyed once.
        unsafe { mlir_sys::mlirExecutionEngineDestroy(self.0) }
    }
}

/// The name of the first op in `module` outside the LLVM dialect, if any: the engine cannot
/// translate such a module, and `mlirExecutionEngineCreate` then returns a null engine, which
/// crashed on first use instead of failing.
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

/// Runs a textual pass pipeline (`builtin.module(...)`) on the module. Errors carry MLIR's own
/// diagnostics.
pub fn run_mlir_pipeline(
    cx: &Context,
    module: &mut MlirModule,
    pipeline: &str,
) -> Result<(), String> {
    let capture = DiagCapture::new(cx);
    let pm = PassManager::new(cx);
    parse_pass_pipeline(pm.as_operation_pass_manager(), pipeline)
        .map_err(|e| format!("invalid MLIR pass pipeline: {e}"))?;
    pm.run(module).map_err(|_| {
        let msgs = capture.take();
        if msgs.is_empty() {
            "the MLIR pass pipeline failed".to_string()
        } else {
            format!("the MLIR pass pipeline failed:\n{msgs}")
        }
    })
}

/// A compiled module, ready to run.
pub struct Jit<'c> {
    engine: Engine,
    signatures: Vec<Signature>,
    // The engine holds the translated LLVM module; the MLIR module is kept for the context's
    // lifetime bound only.
    _module: MlirModule<'c>,
}

impl<'c> Jit<'c> {
    /// Lowers `lowered` through `pipeline` and JIT-compiles it at opt level 3. Without a
    /// pipeline, the marked layers are tiled and vectorized by their transform schedule and the
    /// rest goes through [`DEFAULT_PIPELINE`].
    pub fn compile(
        cx: &'c Context,
        lowered: Lowered<'c>,
        pipeline: Option<&str>,
        threads: u64,
    ) -> Result<Self, String> {
        let mut lowered = lowered;
        // Once per compiled module, not per call: packing, and a 4-byte aligned buffer for a
        // weight whose bytes are not one (a splat, a gather view, an ONNX initializer at an odd
        // offset of its file), which `run_into` would otherwise copy on every call.
        for w in lowered.signatures.iter_mut().flat_map(|s| &mut s.weights) {
            if let Some(tn) = w.packed.take() {
                w.value = pack_dense(&w.value, tn);
            } else if aligned_f32(&w.value).is_none() {
                w.value = Tensor::from_f32(
                    ElemType::F32,
                    w.value.shape().to_vec(),
                    &w.value.to_f32_vec(),
                );
            }
        }
        match pipeline {
            Some(p) => run_mlir_pipeline(cx, &mut lowered.module, p)?,
            None if embed_schedule(cx, &lowered, threads)? => {
                run_scheduled(cx, &mut lowered, threads)?
            }
            None => run_mlir_pipeline(cx, &mut lowered.module, DEFAULT_PIPELINE)?,
        }
        let Lowered {
            mut module,
            signatures,
            target,
            ..
        } = lowered;
        target.mark_functions(cx, &mut module);
        if let Some(op) = unconverted(&module) {
            return Err(format!(
                "cannot JIT-compile the module: the lowering pipeline left `{op}`, which is not in the LLVM dialect"
            ));
        }
        let capture = DiagCapture::new(cx);
        // Code compiled for N threads runs one task of each parallel loop on the calling
        // thread (`async-dispatch=false`) and N - 1 on the pool.
        async_runtime::ensure_workers(threads.saturating_sub(1) as usize)?;
        let Some(engine) = Engine::new(&module, 3) else {
            let msgs = capture.take();
            return Err(format!("cannot JIT-compile the module (MLIR's ExecutionEngine could not be created):\n{msgs}"));
        };
        // SAFETY: each function has the C signature compiled code expects of the symbol.
        unsafe {
            engine.register_symbol(
                "memrefCopy",
                memref_copy as unsafe extern "C" fn(i64, *const Unranked, *const Unranked)
                    as *mut (),
            );
            engine.register_symbol(
                "malloc",
                pool::malloc as unsafe extern "C" fn(usize) -> *mut u8 as *mut (),
            );
            engine.register_symbol(
                "aligned_alloc",
                pool::aligned_alloc as unsafe extern "C" fn(usize, usize) -> *mut u8 as *mut (),
            );
            engine.register_symbol(
                "free",
                pool::free as unsafe extern "C" fn(*mut u8) as *mut (),
            );
            for (name, address) in async_runtime::symbols() {
                engine.register_symbol(name, address);
            }
        };
        let msgs = capture.take();
        if !msgs.is_empty() {
            return Err(format!("cannot JIT-compile the module:\n{msgs}"));
        }
        Ok(Jit {
            engine,
            signatures,
            _module: module,
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
        let mut descs: Vec<Vec<i64>> = Vec::new();
        for x in &owned_inputs {
            let shape: Vec<u64> = x.shape().iter().map(|&n| n as u64).collect();
            descs.push(descriptor(x.as_ptr() as *mut f32, &shape));
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
        // SAFETY: each argument points at a live pointer to a descriptor of a live, contiguous
        // f32 buffer whose shape matches the function's memref type (checked above: static
        // sizes, and equal dynamic sizes where the code relies on them). The function writes
        // only the output buffers, which are exclusively borrowed here.
        if !unsafe { self.engine.invoke_packed(name, &mut args) } {
            return Err(format!("cannot call @{name}: no such compiled function"));
        }
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

/// A memref descriptor for a contiguous row-major buffer.
fn descriptor(ptr: *mut f32, shape: &[u64]) -> Vec<i64> {
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
