//! `parallel.rs` on a loop the schedules do not make (two dimensions, a lower bound and a
//! step that are not 0 and 1, a task function called from two places), compiled and run on
//! nnopt's pool: every iteration runs once, at the induction variables the loop gave it.

use super::jit::{run_mlir_pipeline, runtime_symbols, DEFAULT_PIPELINE};
use super::loader::Loaded;
use super::object::emit_object;
use super::{async_runtime, parallel, Target};
use melior::ir::operation::OperationLike;
use melior::ir::Module as MlirModule;

/// `@f` writes `10·i + j` at `[i, j]` for i in 0..4, j in 1, 3, 5; `@g` calls it twice.
const LOOP: &str = r#"
module {
  func.func private @f(%m: memref<4x6xf32>) {
    %c0 = arith.constant 0 : index
    %c1 = arith.constant 1 : index
    %c2 = arith.constant 2 : index
    %c4 = arith.constant 4 : index
    %c6 = arith.constant 6 : index
    %c10 = arith.constant 10 : index
    scf.parallel (%i, %j) = (%c0, %c1) to (%c4, %c6) step (%c1, %c2) {
      %a = arith.muli %i, %c10 : index
      %b = arith.addi %a, %j : index
      %n = arith.index_cast %b : index to i32
      %v = arith.sitofp %n : i32 to f32
      memref.store %v, %m[%i, %j] : memref<4x6xf32>
      scf.reduce
    }
    return
  }
  func.func @g(%m: memref<4x6xf32>) {
    call @f(%m) : (memref<4x6xf32>) -> ()
    call @f(%m) : (memref<4x6xf32>) -> ()
    return
  }
}
"#;

#[test]
fn a_split_loop_runs_each_iteration_once_at_its_indices() {
    let _serial = super::tests::COMPILE
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let cx = super::context();
    let mut module = MlirModule::parse(&cx, LOOP).expect("the test module parses");
    assert_eq!(parallel::split(&cx, &mut module), 0, "the loop is split");
    let text = module.as_operation().to_string();
    assert!(text.contains("nnopt.fork_count = 12 : i64"), "{text}");
    assert_eq!(text.matches("call @f__fork(").count(), 2, "{text}");
    assert!(
        text.contains("func.func private @f(%arg0: memref<4x6xf32>, %arg1: index)"),
        "{text}"
    );
    assert!(!text.contains("scf.parallel"), "{text}");
    run_mlir_pipeline(&cx, &mut module, DEFAULT_PIPELINE).expect("the module lowers");
    parallel::finish(&cx, &mut module).expect("the launchers parse");
    assert!(module.as_operation().verify());
    let text = module.as_operation().to_string();
    assert!(text.contains("llvm.call @nnopt_parallel_for("), "{text}");
    assert!(!text.contains("mlirAsyncRuntime"), "{text}");

    let objects = emit_object(&module, &Target::host(), None, 1).expect("code generation");
    async_runtime::ensure_workers(1).expect("a worker starts");
    // SAFETY: the runtime symbols have the signatures the compiled code calls them with.
    let loaded = unsafe { Loaded::new(&objects, &runtime_symbols()) }.expect("the code links");
    let g = loaded.lookup("g").expect("@g is defined");
    // `@g`'s memref argument is its descriptor's fields: allocated and aligned pointers,
    // offset, sizes, strides.
    type G = unsafe extern "C" fn(*mut f32, *mut f32, i64, i64, i64, i64, i64);
    // SAFETY: `@g` has this C signature (above).
    let g: G = unsafe { std::mem::transmute(g) };
    let mut buf = [-1f32; 24];
    // SAFETY: a contiguous 4x6 buffer, as the descriptor says.
    unsafe { g(buf.as_mut_ptr(), buf.as_mut_ptr(), 0, 4, 6, 6, 1) };
    for (k, &v) in buf.iter().enumerate() {
        let (i, j) = (k / 6, k % 6);
        let want = if j % 2 == 1 {
            (10 * i + j) as f32
        } else {
            -1.0
        };
        assert_eq!(v, want, "[{i}, {j}]");
    }
}
