//! Loads an object file of compiled code into this process with LLVM's ORC JIT linker (LLJIT,
//! through LLVM's C API), resolving the runtime symbols compiled code calls to nnopt's own
//! functions and everything else (`memset`, `erff`, ...) to the process's libraries.
//!
//! Linking a finished object instead of compiling inside an ExecutionEngine is what lets
//! `nnopt run` keep compiled code in its cache: a fresh compile and a cached one go through the
//! same loader with the same bytes, so their outputs are bit-identical.

use super::object::{error_message, init_native_target};
use std::ffi::{c_char, c_void, CString};

type LljitRef = *mut c_void;
type JitDylibRef = *mut c_void;
type SymbolStringRef = *mut c_void;
type MaterializationUnitRef = *mut c_void;
type GeneratorRef = *mut c_void;
type ErrorRef = *mut c_void;
type MemoryBufferRef = *mut c_void;

/// `LLVMJITSymbolGenericFlagsExported | LLVMJITSymbolGenericFlagsCallable`.
const EXPORTED_CALLABLE: u8 = 1 | 4;

#[repr(C)]
struct SymbolFlags {
    generic: u8,
    target: u8,
}

#[repr(C)]
struct EvaluatedSymbol {
    address: u64,
    flags: SymbolFlags,
}

#[repr(C)]
struct SymbolMapPair {
    name: SymbolStringRef,
    sym: EvaluatedSymbol,
}

unsafe extern "C" {
    fn LLVMOrcCreateLLJIT(out: *mut LljitRef, builder: *mut c_void) -> ErrorRef;
    fn LLVMOrcDisposeLLJIT(j: LljitRef) -> ErrorRef;
    fn LLVMOrcLLJITGetMainJITDylib(j: LljitRef) -> JitDylibRef;
    fn LLVMOrcLLJITGetGlobalPrefix(j: LljitRef) -> c_char;
    fn LLVMOrcLLJITMangleAndIntern(j: LljitRef, name: *const c_char) -> SymbolStringRef;
    fn LLVMOrcAbsoluteSymbols(syms: *mut SymbolMapPair, n: usize) -> MaterializationUnitRef;
    fn LLVMOrcJITDylibDefine(jd: JitDylibRef, mu: MaterializationUnitRef) -> ErrorRef;
    fn LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
        out: *mut GeneratorRef,
        prefix: c_char,
        filter: *mut c_void,
        filter_ctx: *mut c_void,
    ) -> ErrorRef;
    fn LLVMOrcJITDylibAddGenerator(jd: JitDylibRef, g: GeneratorRef);
    fn LLVMCreateMemoryBufferWithMemoryRangeCopy(
        data: *const c_char,
        len: usize,
        name: *const c_char,
    ) -> MemoryBufferRef;
    fn LLVMOrcLLJITAddObjectFile(j: LljitRef, jd: JitDylibRef, obj: MemoryBufferRef) -> ErrorRef;
    fn LLVMOrcLLJITLookup(j: LljitRef, out: *mut u64, name: *const c_char) -> ErrorRef;
}

/// Object code linked into this process; unloaded on drop.
pub struct Loaded(LljitRef);

// SAFETY: LLJIT is thread-safe; the loaded code is only called, never changed.
unsafe impl Send for Loaded {}
unsafe impl Sync for Loaded {}

fn check(e: ErrorRef, what: &str) -> Result<(), String> {
    match error_message(e) {
        Some(m) => Err(format!("cannot load compiled code ({what}): {m}")),
        None => Ok(()),
    }
}

impl Loaded {
    /// Links `objects` (the partitions of one module, which call each other) with `symbols`
    /// (name, address) defined for them.
    ///
    /// # Safety
    /// Each address must be a function with the C signature the object calls its name with.
    pub unsafe fn new(objects: &[Vec<u8>], symbols: &[(&str, *mut ())]) -> Result<Loaded, String> {
        init_native_target();
        let mut j: LljitRef = std::ptr::null_mut();
        // SAFETY: a default builder (null); the LLJIT is owned by the returned value.
        check(
            unsafe { LLVMOrcCreateLLJIT(&mut j, std::ptr::null_mut()) },
            "creating the JIT linker",
        )?;
        let loaded = Loaded(j);
        // SAFETY: `j` is alive; names are NUL-terminated; the materialization unit, generator
        // and buffer are handed to LLVM, which owns them from then on.
        unsafe {
            let jd = LLVMOrcLLJITGetMainJITDylib(j);
            let mut pairs = Vec::with_capacity(symbols.len());
            for (name, address) in symbols {
                let c = CString::new(*name).map_err(|e| e.to_string())?;
                pairs.push(SymbolMapPair {
                    name: LLVMOrcLLJITMangleAndIntern(j, c.as_ptr()),
                    sym: EvaluatedSymbol {
                        address: *address as u64,
                        flags: SymbolFlags {
                            generic: EXPORTED_CALLABLE,
                            target: 0,
                        },
                    },
                });
            }
            let mu = LLVMOrcAbsoluteSymbols(pairs.as_mut_ptr(), pairs.len());
            check(
                LLVMOrcJITDylibDefine(jd, mu),
                "defining the runtime symbols",
            )?;
            let mut g: GeneratorRef = std::ptr::null_mut();
            check(
                LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(
                    &mut g,
                    LLVMOrcLLJITGetGlobalPrefix(j),
                    std::ptr::null_mut(),
                    std::ptr::null_mut(),
                ),
                "searching the process's libraries",
            )?;
            LLVMOrcJITDylibAddGenerator(jd, g);
            for object in objects {
                let buf = LLVMCreateMemoryBufferWithMemoryRangeCopy(
                    object.as_ptr() as *const c_char,
                    object.len(),
                    c"nnopt-object".as_ptr(),
                );
                check(LLVMOrcLLJITAddObjectFile(j, jd, buf), "adding the object")?;
            }
        }
        Ok(loaded)
    }

    /// The address of function `name` (linking the object on the first lookup).
    pub fn lookup(&self, name: &str) -> Result<*const (), String> {
        let c = CString::new(name).map_err(|e| e.to_string())?;
        let mut address = 0u64;
        // SAFETY: the LLJIT is alive; `address` is written by LLVM.
        check(
            unsafe { LLVMOrcLLJITLookup(self.0, &mut address, c.as_ptr()) },
            &format!("looking up {name}"),
        )?;
        Ok(address as *const ())
    }
}

impl Drop for Loaded {
    fn drop(&mut self) {
        // SAFETY: created by LLVMOrcCreateLLJIT, disposed once; an error here has nothing left
        // to act on.
        let _ = error_message(unsafe { LLVMOrcDisposeLLJIT(self.0) });
    }
}
