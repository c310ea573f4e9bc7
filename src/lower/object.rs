//! Machine code for a module in the LLVM dialect: translated to LLVM IR, optimized at O3 and
//! compiled by LLVM's `TargetMachine` for a `Target` (the host's CPU or a forced one) into a relocatable, position-independent
//! object file (the same bytes `nnopt run` loads, the run cache keeps and `nnopt compile`
//! links).
//!
//! The LLVM C API functions used here live in the LLVM static libraries `mlir-sys` already
//! links (`llvm-config --libnames`); melior and `mlir-sys` do not bind them, so they are
//! declared below. The optimization mirrors what MLIR's ExecutionEngine did at opt level 3
//! (`makeOptimizingTransformer`): the O3 module pipeline with loop and SLP vectorization,
//! loop unrolling and interleaving on, and aggressive code generation.

use super::target::Target;
use mlir_sys::{LLVMContextRef, LLVMModuleRef};
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

/// Compiles `module` (all LLVM dialect) for `target` into an object file. `rename`, when given,
/// renames the module's functions before code generation (`nnopt compile`, in `aot.rs`).
pub fn emit_object(
    module: &melior::ir::Module,
    target: &Target,
    rename: Option<Rename>,
) -> Result<Vec<u8>, String> {
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
    if let Some(rename) = rename {
        rename_functions(llvm.m, rename);
    }
    let triple = CString::new(triple).map_err(|e| e.to_string())?;
    let passes = c"default<O3>";
    // SAFETY: module and machine are alive; every LLVM object created here is disposed here.
    unsafe {
        mlir_sys::LLVMSetTarget(llvm.m, triple.as_ptr());
        let dl = LLVMCreateTargetDataLayout(machine.0);
        LLVMSetModuleDataLayout(llvm.m, dl);
        LLVMDisposeTargetData(dl);
        let o = LLVMCreatePassBuilderOptions();
        LLVMPassBuilderOptionsSetLoopInterleaving(o, 1);
        LLVMPassBuilderOptionsSetLoopVectorization(o, 1);
        LLVMPassBuilderOptionsSetSLPVectorization(o, 1);
        LLVMPassBuilderOptionsSetLoopUnrolling(o, 1);
        let e = LLVMRunPasses(llvm.m, passes.as_ptr(), machine.0, o);
        LLVMDisposePassBuilderOptions(o);
        if let Some(msg) = error_message(e) {
            return Err(format!("LLVM's O3 pipeline failed: {msg}"));
        }
        let mut err: *mut c_char = std::ptr::null_mut();
        let mut buf: MemoryBufferRef = std::ptr::null_mut();
        if LLVMTargetMachineEmitToMemoryBuffer(machine.0, llvm.m, OBJECT_FILE, &mut err, &mut buf)
            != 0
        {
            return Err(format!(
                "LLVM code generation failed: {}",
                take_message(err)
            ));
        }
        let bytes = std::slice::from_raw_parts(
            LLVMGetBufferStart(buf) as *const u8,
            LLVMGetBufferSize(buf),
        )
        .to_vec();
        LLVMDisposeMemoryBuffer(buf);
        Ok(bytes)
    }
}

/// Renames each function of `m` (definitions and declarations) for which `rename` gives a name.
fn rename_functions(m: LLVMModuleRef, rename: Rename) {
    // SAFETY: walks the live module's function list; names are copied before renaming.
    unsafe {
        let mut f = mlir_sys::LLVMGetFirstFunction(m);
        while !f.is_null() {
            let next = mlir_sys::LLVMGetNextFunction(f);
            let mut len = 0usize;
            let p = mlir_sys::LLVMGetValueName2(f, &mut len);
            let name = String::from_utf8_lossy(std::slice::from_raw_parts(p as *const u8, len))
                .into_owned();
            let declared = mlir_sys::LLVMIsDeclaration(f) != 0;
            if let Some(new) = rename(&name, declared) {
                mlir_sys::LLVMSetValueName2(f, new.as_ptr() as *const c_char, new.len());
            }
            f = next;
        }
    }
}
