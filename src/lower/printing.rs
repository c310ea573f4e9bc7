//! How MLIR prints operations in this process: assuming them verified.
//!
//! `transform.structured.fuse_into_containing_op` starts every fusion by writing a remark,
//! "could not fuse <producer> into <containing op>", which it drops when the fusion succeeds.
//! Writing an op into a diagnostic prints it, and printing verifies the op first, so each fused
//! producer verified the whole task loop it went into: a threaded schedule spent two thirds of
//! its interpretation in the verifier (`docs/performance.md`). MLIR reads the switch that skips
//! that verification, `--mlir-print-assume-verified`, only from LLVM's command-line registry,
//! where it is registered by `mlir::registerAsmPrinterCLOptions` (C++ only; MLIR's C API has no
//! binding), so [`assume_verified`] registers and sets it once per process.
//!
//! It changes no IR, only what printing checks: the module is verified after lowering and after
//! every pass by the pass manager, and an op that fails verification is reported by the verifier
//! in MLIR's generic form, which does not depend on the op being valid.

use std::ffi::c_char;

unsafe extern "C" {
    #[link_name = "_ZN4mlir27registerAsmPrinterCLOptionsEv"]
    fn register_asm_printer_cl_options();
    fn LLVMParseCommandLineOptions(argc: i32, argv: *const *const c_char, overview: *const c_char);
}

/// Sets `--mlir-print-assume-verified` for the process (once; later calls do nothing).
pub fn assume_verified() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let argv = [c"nnopt".as_ptr(), c"--mlir-print-assume-verified".as_ptr()];
        // SAFETY: `registerAsmPrinterCLOptions` is a C++ function without arguments or result
        // (the C calling convention is the same); it constructs the printer's options in
        // LLVM's registry, which the parse then finds. The strings are NUL-terminated and
        // static, and the parse happens once, before any thread prints.
        unsafe {
            register_asm_printer_cl_options();
            LLVMParseCommandLineOptions(2, argv.as_ptr(), std::ptr::null());
        }
    });
}

#[cfg(test)]
mod tests {
    use melior::ir::attribute::TypeAttribute;
    use melior::ir::operation::{OperationLike, OperationMutLike};
    use melior::ir::r#type::{FunctionType, IntegerType};
    use melior::ir::{BlockLike, Module, RegionLike};

    /// A context from `lower::context` prints ops without verifying them: a `func.return`
    /// whose function no longer returns a value prints in its custom form, where a verifying
    /// printer falls back to the generic `"func.return"(...)`.
    #[test]
    fn contexts_print_ops_without_verifying_them() {
        let cx = super::super::context();
        let module = Module::parse(
            &cx,
            "func.func @f(%a: i32) -> i32 {\n  return %a : i32\n}\n",
        )
        .expect("the module parses");
        let mut func = module
            .body()
            .first_operation_mut()
            .expect("the module has @f");
        let i32 = IntegerType::new(&cx, 32).into();
        func.set_attribute(
            "function_type",
            TypeAttribute::new(FunctionType::new(&cx, &[i32], &[]).into()).into(),
        );
        let ret = func
            .region(0)
            .expect("@f has a body")
            .first_block()
            .expect("and a block")
            .first_operation()
            .expect("holding the return");
        assert!(!ret.verify(), "the return no longer matches @f");
        let text = ret.to_string();
        assert!(!text.contains("\"func.return\""), "{text}");
        assert!(text.contains("return %"), "{text}");
    }
}
