//! Machine code for a module in the LLVM dialect: translated to LLVM IR, optimized at O3 and
//! compiled by LLVM's `TargetMachine` for a `Target` (the host's CPU or a forced one) into
//! relocatable, position-independent object files (the same bytes `nnopt run` loads, the run
//! cache keeps and `nnopt compile` links).
//!
//! The LLVM C API functions used here live in the LLVM static libraries `mlir-sys` already
//! links (`llvm-config --libnames`); melior and `mlir-sys` do not bind them, so they are
//! declared below. The optimization mirrors what MLIR's ExecutionEngine did at opt level 3
//! (`makeOptimizingTransformer`): the O3 module pipeline with loop and SLP vectorization,
//! loop unrolling and interleaving on, and aggressive code generation.
//!
//! Code generation is parallel: LLVM's O3 and instruction selection are superlinear in a
//! function's size and run on one core per module, so a module of several functions (a network's
//! outlined layers, `outline.rs`) is split into [`codegen_partitions`] partitions, each
//! optimized and compiled in its own `LLVMContext` on its own thread, from a bitcode copy of the
//! module in which the other partitions' functions are only declared. The result is one object
//! per partition (the run cache, the loader and `nnopt compile` take the list). Functions are
//! assigned to partitions by size, largest first, to the least loaded one, ties to the lower
//! index: the same module and partition count give the same objects. Internal functions become
//! hidden external ones so that calls can cross partitions; private constants stay private, a
//! copy in each partition that reads them.

use super::target::Target;
use mlir_sys::{LLVMContextRef, LLVMModuleRef, LLVMValueRef};
use std::collections::HashMap;
use std::ffi::{c_char, c_void, CStr, CString};

type TargetRef = *mut c_void;
type TargetMachineRef = *mut c_void;
type TargetDataRef = *mut c_void;
type MemoryBufferRef = *mut c_void;
type ErrorRef = *mut c_void;
type PassBuilderOptionsRef = *mut c_void;

const CODEGEN_AGGRESSIVE: i32 = 3;
const RELOC_PIC: i32 = 2;
const CODE_MODEL_DEFAULT: i32 = 0;
const OBJECT_FILE: i32 = 1;

unsafe extern "C" {
    fn LLVMGetDefaultTargetTriple() -> *mut c_char;
    fn LLVMGetTargetFromTriple(
        triple: *const c_char,
        t: *mut TargetRef,
        err: *mut *mut c_char,
    ) -> i32;
    fn LLVMCreateTargetMachine(
        t: TargetRef,
        triple: *const c_char,
        cpu: *const c_char,
        features: *const c_char,
        level: i32,
        reloc: i32,
        code_model: i32,
    ) -> TargetMachineRef;
    fn LLVMDisposeTargetMachine(tm: TargetMachineRef);
    fn LLVMCreateTargetDataLayout(tm: TargetMachineRef) -> TargetDataRef;
    fn LLVMSetModuleDataLayout(m: LLVMModuleRef, dl: TargetDataRef);
    fn LLVMDisposeTargetData(dl: TargetDataRef);
    fn LLVMTargetMachineEmitToMemoryBuffer(
        tm: TargetMachineRef,
        m: LLVMModuleRef,
        codegen: i32,
        err: *mut *mut c_char,
        out: *mut MemoryBufferRef,
    ) -> i32;
    fn LLVMGetBufferStart(b: MemoryBufferRef) -> *const c_char;
    fn LLVMGetBufferSize(b: MemoryBufferRef) -> usize;
    fn LLVMDisposeMemoryBuffer(b: MemoryBufferRef);
    fn LLVMCreatePassBuilderOptions() -> PassBuilderOptionsRef;
    fn LLVMPassBuilderOptionsSetLoopInterleaving(o: PassBuilderOptionsRef, v: i32);
    fn LLVMPassBuilderOptionsSetLoopVectorization(o: PassBuilderOptionsRef, v: i32);
    fn LLVMPassBuilderOptionsSetSLPVectorization(o: PassBuilderOptionsRef, v: i32);
    fn LLVMPassBuilderOptionsSetLoopUnrolling(o: PassBuilderOptionsRef, v: i32);
    fn LLVMDisposePassBuilderOptions(o: PassBuilderOptionsRef);
    fn LLVMRunPasses(
        m: LLVMModuleRef,
        passes: *const c_char,
        tm: TargetMachineRef,
        o: PassBuilderOptionsRef,
    ) -> ErrorRef;
    fn LLVMWriteBitcodeToMemoryBuffer(m: LLVMModuleRef) -> MemoryBufferRef;
    fn LLVMCreateMemoryBufferWithMemoryRange(
        data: *const c_char,
        len: usize,
        name: *const c_char,
        requires_null: i32,
    ) -> MemoryBufferRef;
    fn LLVMParseBitcodeInContext2(
        cx: LLVMContextRef,
        buf: MemoryBufferRef,
        out: *mut LLVMModuleRef,
    ) -> i32;
    pub(super) fn LLVMGetErrorMessage(e: ErrorRef) -> *mut c_char;
    pub(super) fn LLVMDisposeErrorMessage(m: *mut c_char);
}

#[cfg(target_arch = "x86_64")]
unsafe extern "C" {
    fn LLVMInitializeX86TargetInfo();
    fn LLVMInitializeX86Target();
    fn LLVMInitializeX86TargetMC();
    fn LLVMInitializeX86AsmPrinter();
}

#[cfg(target_arch = "aarch64")]
unsafe extern "C" {
    fn LLVMInitializeAArch64TargetInfo();
    fn LLVMInitializeAArch64Target();
    fn LLVMInitializeAArch64TargetMC();
    fn LLVMInitializeAArch64AsmPrinter();
}

/// Registers the host's LLVM target (what `InitializeNativeTarget` and
/// `InitializeNativeTargetAsmPrinter` do; those are inline functions of LLVM's C headers).
pub(super) fn init_native_target() {
    static INIT: std::sync::Once = std::sync::Once::new();
    // SAFETY: LLVM's target registration functions take no arguments and run once.
    INIT.call_once(|| unsafe {
        #[cfg(target_arch = "x86_64")]
        {
            LLVMInitializeX86TargetInfo();
            LLVMInitializeX86Target();
            LLVMInitializeX86TargetMC();
            LLVMInitializeX86AsmPrinter();
        }
        #[cfg(target_arch = "aarch64")]
        {
            LLVMInitializeAArch64TargetInfo();
            LLVMInitializeAArch64Target();
            LLVMInitializeAArch64TargetMC();
            LLVMInitializeAArch64AsmPrinter();
        }
    });
}

/// Takes an LLVM-allocated message and frees it.
fn take_message(p: *mut c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: LLVM returns a NUL-terminated string it allocated; it is freed once here.
    unsafe {
        let s = CStr::from_ptr(p).to_string_lossy().into_owned();
        mlir_sys::LLVMDisposeMessage(p);
        s
    }
}

/// Turns an `LLVMErrorRef` into a message (consuming it); `None` for success.
pub(super) fn error_message(e: ErrorRef) -> Option<String> {
    if e.is_null() {
        return None;
    }
    // SAFETY: `e` is a live error; getting its message consumes it, the message is freed once.
    unsafe {
        let p = LLVMGetErrorMessage(e);
        let s = CStr::from_ptr(p).to_string_lossy().into_owned();
        LLVMDisposeErrorMessage(p);
        Some(s)
    }
}

/// The target triple nnopt runs on (code is compiled for this architecture; `Target` picks
/// the CPU and features within it).
fn host_triple() -> String {
    // SAFETY: returns a fresh LLVM-allocated string.
    take_message(unsafe { LLVMGetDefaultTargetTriple() })
}

/// An LLVM `TargetMachine` for `target`, disposed on drop.
struct Machine(TargetMachineRef);

impl Machine {
    fn new(triple: &str, target: &Target) -> Result<Machine, String> {
        init_native_target();
        let cstr = |s: &str| CString::new(s).map_err(|_| format!("NUL in target string {s:?}"));
        let (triple_c, cpu, features) = (
            cstr(triple)?,
            cstr(&target.cpu)?,
            cstr(&target.features.join(","))?,
        );
        let mut t: TargetRef = std::ptr::null_mut();
        let mut err: *mut c_char = std::ptr::null_mut();
        // SAFETY: the strings are NUL-terminated and outlive the calls; outputs are written
        // by LLVM.
        unsafe {
            if LLVMGetTargetFromTriple(triple_c.as_ptr(), &mut t, &mut err) != 0 {
                return Err(format!(
                    "no LLVM target for {triple}: {}",
                    take_message(err)
                ));
            }
            let tm = LLVMCreateTargetMachine(
                t,
                triple_c.as_ptr(),
                cpu.as_ptr(),
                features.as_ptr(),
                CODEGEN_AGGRESSIVE,
                RELOC_PIC,
                CODE_MODEL_DEFAULT,
            );
            if tm.is_null() {
                return Err(format!(
                    "cannot create an LLVM target machine for {triple} {target}"
                ));
            }
            Ok(Machine(tm))
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        // SAFETY: created by LLVMCreateTargetMachine, disposed once.
        unsafe { LLVMDisposeTargetMachine(self.0) }
    }
}

/// An LLVM context and a module in it, disposed on drop (module first).
struct LlvmModule {
    cx: LLVMContextRef,
    m: LLVMModuleRef,
}

impl Drop for LlvmModule {
    fn drop(&mut self) {
        // SAFETY: both were created for this value; the module is disposed before its context.
        unsafe {
            if !self.m.is_null() {
                mlir_sys::LLVMDisposeModule(self.m);
            }
            mlir_sys::LLVMContextDispose(self.cx);
        }
    }
}

/// How [`emit_object`] renames functions: given a function's name and whether it is only
/// declared, its new name, if any.
pub type Rename<'a> = &'a dyn Fn(&str, bool) -> Option<String>;

/// The most partitions [`emit_object`] splits a module into: each one re-reads the whole
/// module's bitcode and runs the module-level passes, so beyond a few the copies cost more than
/// the smaller functions save.
const MAX_PARTITIONS: usize = 8;

/// How many partitions code generation uses: one per core this process may run on, at most
/// [`MAX_PARTITIONS`]. Part of the run cache's key: the partitions are the objects.
pub fn codegen_partitions() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_PARTITIONS)
}

/// Compiles `module` (all LLVM dialect) for `target` into object files, one per partition of
/// at most `partitions` (see the module docs). `rename`, when given, renames the module's
/// functions before code generation (`nnopt compile`, in `aot.rs`).
pub fn emit_object(
    module: &melior::ir::Module,
    target: &Target,
    rename: Option<Rename>,
    partitions: usize,
) -> Result<Vec<Vec<u8>>, String> {
    let triple = host_triple();
    let machine = Machine::new(&triple, target)?;
    // SAFETY: a fresh context; the translated module lives in it and both are disposed by
    // `LlvmModule`'s drop.
    let llvm = unsafe {
        let cx = mlir_sys::LLVMContextCreate();
        let m = mlir_sys::mlirTranslateModuleToLLVMIR(module.as_operation().to_raw(), cx);
        LlvmModule { cx, m }
    };
    if llvm.m.is_null() {
        return Err("cannot translate the module to LLVM IR".to_string());
    }
    inline_into_c_interfaces(llvm.m, &machine)?;
    if let Some(rename) = rename {
        rename_functions(llvm.m, rename);
    }
    let triple_c = CString::new(triple.as_str()).map_err(|e| e.to_string())?;
    // SAFETY: module and machine are alive; the data layout is disposed here.
    unsafe {
        mlir_sys::LLVMSetTarget(llvm.m, triple_c.as_ptr());
        let dl = LLVMCreateTargetDataLayout(machine.0);
        LLVMSetModuleDataLayout(llvm.m, dl);
        LLVMDisposeTargetData(dl);
    }
    let assignment = assign(llvm.m, partitions);
    let parts = assignment.values().max().map_or(1, |&p| p + 1);
    if parts == 1 {
        return Ok(vec![optimize_and_emit(llvm.m, &machine)?]);
    }
    externalize(llvm.m);
    // SAFETY: the module is alive; the buffer is copied and disposed here.
    let bitcode = unsafe {
        let buf = LLVMWriteBitcodeToMemoryBuffer(llvm.m);
        let bytes = buffer_bytes(buf);
        LLVMDisposeMemoryBuffer(buf);
        bytes
    };
    drop(llvm);
    std::thread::scope(|s| {
        let threads: Vec<_> = (0..parts)
            .map(|p| {
                let (bitcode, assignment, triple) = (&bitcode, &assignment, &triple);
                s.spawn(move || compile_partition(bitcode, assignment, p, triple, target))
            })
            .collect();
        threads
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Err("a code generation thread panicked".to_string()))
            })
            .collect()
    })
}

/// Partition `p` of the module in `bitcode`: its own functions defined, the others declared;
/// optimized and compiled in a context of its own.
fn compile_partition(
    bitcode: &[u8],
    assignment: &HashMap<String, usize>,
    p: usize,
    triple: &str,
    target: &Target,
) -> Result<Vec<u8>, String> {
    let machine = Machine::new(triple, target)?;
    // SAFETY: a fresh context owns the parsed module (`LlvmModule`'s drop); the buffer only
    // wraps `bitcode`, which outlives the parse, and is disposed here.
    let llvm = unsafe {
        let cx = mlir_sys::LLVMContextCreate();
        let buf = LLVMCreateMemoryBufferWithMemoryRange(
            bitcode.as_ptr() as *const c_char,
            bitcode.len(),
            c"nnopt-partition".as_ptr(),
            0,
        );
        let mut m: LLVMModuleRef = std::ptr::null_mut();
        let failed = LLVMParseBitcodeInContext2(cx, buf, &mut m) != 0;
        LLVMDisposeMemoryBuffer(buf);
        let llvm = LlvmModule { cx, m };
        if failed || m.is_null() {
            return Err("cannot read back the module's bitcode".to_string());
        }
        llvm
    };
    for (f, name) in definitions(llvm.m) {
        if assignment.get(&name) != Some(&p) {
            declare_only(llvm.m, f, &name);
        }
    }
    optimize_and_emit(llvm.m, &machine)
}

/// Replaces definition `f` (named `name`) of `m` by a declaration of the same type, name and
/// visibility (LLVM's C API has no way to drop only a function's body).
fn declare_only(m: LLVMModuleRef, f: LLVMValueRef, name: &str) {
    // SAFETY: `f` is a function of the live module; its uses move to the declaration before
    // it is deleted, and the declaration takes its name after.
    unsafe {
        let decl = mlir_sys::LLVMAddFunction(m, c"".as_ptr(), mlir_sys::LLVMGlobalGetValueType(f));
        mlir_sys::LLVMSetVisibility(decl, mlir_sys::LLVMGetVisibility(f));
        mlir_sys::LLVMReplaceAllUsesWith(f, decl);
        mlir_sys::LLVMDeleteFunction(f);
        mlir_sys::LLVMSetValueName2(decl, name.as_ptr() as *const c_char, name.len());
    }
}

/// Runs the O3 pipeline on `m` and emits its object file.
fn optimize_and_emit(m: LLVMModuleRef, machine: &Machine) -> Result<Vec<u8>, String> {
    // SAFETY: module and machine are alive; every LLVM object created here is disposed here.
    unsafe {
        run_passes(m, c"default<O3>", machine, "O3 pipeline", |o| {
            LLVMPassBuilderOptionsSetLoopInterleaving(o, 1);
            LLVMPassBuilderOptionsSetLoopVectorization(o, 1);
            LLVMPassBuilderOptionsSetSLPVectorization(o, 1);
            LLVMPassBuilderOptionsSetLoopUnrolling(o, 1);
        })?;
        let mut err: *mut c_char = std::ptr::null_mut();
        let mut buf: MemoryBufferRef = std::ptr::null_mut();
        if LLVMTargetMachineEmitToMemoryBuffer(machine.0, m, OBJECT_FILE, &mut err, &mut buf) != 0 {
            return Err(format!(
                "LLVM code generation failed: {}",
                take_message(err)
            ));
        }
        let bytes = buffer_bytes(buf);
        LLVMDisposeMemoryBuffer(buf);
        Ok(bytes)
    }
}

/// Runs LLVM's pass pipeline `passes` on `m`, with the pass-builder options `tune` sets;
/// failures are named by `what`.
///
/// # Safety
/// `m` must be a live module; `tune` gets live options.
unsafe fn run_passes(
    m: LLVMModuleRef,
    passes: &CStr,
    machine: &Machine,
    what: &str,
    tune: impl FnOnce(PassBuilderOptionsRef),
) -> Result<(), String> {
    // SAFETY: module and machine are alive; the options are disposed here.
    unsafe {
        let o = LLVMCreatePassBuilderOptions();
        tune(o);
        let e = LLVMRunPasses(m, passes.as_ptr(), machine.0, o);
        LLVMDisposePassBuilderOptions(o);
        match error_message(e) {
            Some(msg) => Err(format!("LLVM's {what} failed: {msg}")),
            None => Ok(()),
        }
    }
}

/// Adds the enum attribute `name` (one without a value, e.g. `alwaysinline`) to each function
/// of `functions`, all of module `m`.
fn add_function_attribute(m: LLVMModuleRef, functions: &[LLVMValueRef], name: &CStr) {
    // SAFETY: the functions belong to the live module, in whose context the attribute is made.
    unsafe {
        let kind = mlir_sys::LLVMGetEnumAttributeKindForName(name.as_ptr(), name.count_bytes());
        let attr = mlir_sys::LLVMCreateEnumAttribute(mlir_sys::LLVMGetModuleContext(m), kind, 0);
        for &f in functions {
            mlir_sys::LLVMAddAttributeAtIndex(f, mlir_sys::LLVMAttributeFunctionIndex as u32, attr);
        }
    }
}

/// A copy of a memory buffer's bytes.
///
/// # Safety
/// `buf` must be a live memory buffer.
unsafe fn buffer_bytes(buf: MemoryBufferRef) -> Vec<u8> {
    // SAFETY: the buffer's start and size describe its live bytes.
    unsafe {
        std::slice::from_raw_parts(LLVMGetBufferStart(buf) as *const u8, LLVMGetBufferSize(buf))
            .to_vec()
    }
}

/// The name of LLVM value `v`.
fn value_name(v: LLVMValueRef) -> String {
    let mut len = 0usize;
    // SAFETY: `v` is a live global; its name is copied before anything renames it.
    unsafe {
        let p = mlir_sys::LLVMGetValueName2(v, &mut len);
        String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len)).into_owned()
    }
}

/// The function definitions of `m` with their names, in module order.
fn definitions(m: LLVMModuleRef) -> Vec<(LLVMValueRef, String)> {
    let mut out = Vec::new();
    // SAFETY: walks the live module's function list without changing it.
    unsafe {
        let mut f = mlir_sys::LLVMGetFirstFunction(m);
        while !f.is_null() {
            if mlir_sys::LLVMIsDeclaration(f) == 0 {
                out.push((f, value_name(f)));
            }
            f = mlir_sys::LLVMGetNextFunction(f);
        }
    }
    out
}

/// The number of instructions of function `f`: its share of the optimizer's work.
fn size(f: LLVMValueRef) -> usize {
    let mut n = 0;
    // SAFETY: walks the live function's blocks and instructions without changing them.
    unsafe {
        let mut b = mlir_sys::LLVMGetFirstBasicBlock(f);
        while !b.is_null() {
            let mut i = mlir_sys::LLVMGetFirstInstruction(b);
            while !i.is_null() {
                n += 1;
                i = mlir_sys::LLVMGetNextInstruction(i);
            }
            b = mlir_sys::LLVMGetNextBasicBlock(b);
        }
    }
    n
}

/// Each function definition's partition, out of at most `partitions`: largest first, to the
/// least loaded partition (ties to the lower index, then the earlier function). All in
/// partition 0 when the module has a global variable that is written (a copy per partition
/// would split its state).
fn assign(m: LLVMModuleRef, partitions: usize) -> HashMap<String, usize> {
    let defs = definitions(m);
    let parts = partitions.min(defs.len()).max(1);
    let mut sized: Vec<(usize, usize, String)> = defs
        .into_iter()
        .enumerate()
        .map(|(i, (f, name))| (size(f), i, name))
        .collect();
    if has_mutable_global(m) {
        return sized.into_iter().map(|(_, _, name)| (name, 0)).collect();
    }
    sized.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let mut load = vec![0usize; parts];
    let mut out = HashMap::new();
    for (n, _, name) in sized {
        let p = (0..parts)
            .min_by_key(|&p| (load[p], p))
            .expect("invariant: at least one partition");
        load[p] += n;
        out.insert(name, p);
    }
    out
}

/// Whether `m` defines a global variable that is not constant.
fn has_mutable_global(m: LLVMModuleRef) -> bool {
    // SAFETY: walks the live module's globals without changing them.
    unsafe {
        let mut g = mlir_sys::LLVMGetFirstGlobal(m);
        while !g.is_null() {
            if mlir_sys::LLVMIsDeclaration(g) == 0 && mlir_sys::LLVMIsGlobalConstant(g) == 0 {
                return true;
            }
            g = mlir_sys::LLVMGetNextGlobal(g);
        }
    }
    false
}

/// Inlines each function that only its C-interface wrapper calls into the wrapper. MLIR's
/// `_mlir_ciface_<f>` loads every field of every memref descriptor and passes them to `<f>` as
/// scalar arguments, 3 + 2·rank per memref: a network's entry takes a thousand, and the
/// instruction selection of such a call (and of the callee's prologue) grows faster than the
/// argument count; it took longer than the rest of a MobileNetV2 together
/// (`docs/performance.md`). Inlined, the loads feed the body directly and the call is gone.
/// The callee becomes internal first, which is exact: only the wrapper names it (the JIT's
/// packed entries and `nnopt compile`'s header call the wrappers), so once inlined it is dead
/// and the always-inliner deletes it. A wrapper that is then one basic block is made
/// `noimplicitfloat`: its body is calls of the outlined layers and, with threads, the stores of
/// each parallel task's context, whose scalar loads of consecutive descriptor fields the SLP
/// vectorizer otherwise took as one tree and spent longer on than the inlining saved (its own
/// vector code, as written, stays vector). A wrapper with more blocks has loops of its own (a
/// function with no scheduled layer is not outlined), which the attribute would leave scalar:
/// a max pool alone ran 3x slower.
fn inline_into_c_interfaces(m: LLVMModuleRef, machine: &Machine) -> Result<(), String> {
    let (mut wrappers, mut callees) = (Vec::new(), Vec::new());
    for (wrapper, name) in definitions(m) {
        let Some(callee) = name.strip_prefix("_mlir_ciface_") else {
            continue;
        };
        let callee = CString::new(callee).map_err(|e| e.to_string())?;
        // SAFETY: the module is alive.
        let f = unsafe { mlir_sys::LLVMGetNamedFunction(m, callee.as_ptr()) };
        // SAFETY: `f`, when not null, is a function of the live module.
        if f.is_null() || unsafe { mlir_sys::LLVMIsDeclaration(f) } != 0 || !single_use(f) {
            continue;
        }
        // SAFETY: as above.
        unsafe { mlir_sys::LLVMSetLinkage(f, mlir_sys::LLVMLinkage_LLVMInternalLinkage) };
        callees.push(f);
        wrappers.push(wrapper);
    }
    if wrappers.is_empty() {
        return Ok(());
    }
    add_function_attribute(m, &callees, c"alwaysinline");
    // SAFETY: the module is alive.
    unsafe { run_passes(m, c"always-inline", machine, "always-inliner", |_| {}) }?;
    // SAFETY: the wrappers are live functions of the module.
    wrappers.retain(|&w| unsafe { mlir_sys::LLVMCountBasicBlocks(w) } == 1);
    add_function_attribute(m, &wrappers, c"noimplicitfloat");
    Ok(())
}

/// Whether value `f` has exactly one use.
fn single_use(f: LLVMValueRef) -> bool {
    // SAFETY: walks the live value's use list without changing it.
    unsafe {
        let u = mlir_sys::LLVMGetFirstUse(f);
        !u.is_null() && mlir_sys::LLVMGetNextUse(u).is_null()
    }
}

/// Makes every internal or private function definition a hidden external one, so that another
/// partition can call it (hidden: the symbol stays inside the artifact).
fn externalize(m: LLVMModuleRef) {
    for (f, _) in definitions(m) {
        // SAFETY: `f` is a function definition of the live module.
        unsafe {
            let linkage = mlir_sys::LLVMGetLinkage(f);
            if linkage == mlir_sys::LLVMLinkage_LLVMInternalLinkage
                || linkage == mlir_sys::LLVMLinkage_LLVMPrivateLinkage
            {
                mlir_sys::LLVMSetLinkage(f, mlir_sys::LLVMLinkage_LLVMExternalLinkage);
                mlir_sys::LLVMSetVisibility(f, mlir_sys::LLVMVisibility_LLVMHiddenVisibility);
            }
        }
    }
}

/// Renames each function of `m` (definitions and declarations) for which `rename` gives a name.
fn rename_functions(m: LLVMModuleRef, rename: Rename) {
    // SAFETY: walks the live module's function list; names are copied before renaming.
    unsafe {
        let mut f = mlir_sys::LLVMGetFirstFunction(m);
        while !f.is_null() {
            let next = mlir_sys::LLVMGetNextFunction(f);
            let name = value_name(f);
            let declared = mlir_sys::LLVMIsDeclaration(f) != 0;
            if let Some(new) = rename(&name, declared) {
                mlir_sys::LLVMSetValueName2(f, new.as_ptr() as *const c_char, new.len());
            }
            f = next;
        }
    }
}
