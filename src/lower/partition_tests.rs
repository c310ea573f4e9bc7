//! Outlining and partitioned code generation keep the compiled code's outputs: a network of
//! several layers (two of them identical, so outlined functions are shared and calls cross
//! partitions) compiled in one partition and in three gives bit-identical outputs, which match
//! the interpreter, on one thread and on two.

use super::entry::specialized;
use super::jit::{runtime_symbols, Jit};
use super::loader::Loaded;
use super::*;
use ndarray::{ArrayD, IxDyn};

const NET: &str = "func @net(%x: tensor<2x4x12x12xf32>, %w1: tensor<8x4x3x3xf32>, %w2: tensor<8x8x3x3xf32>, %w3: tensor<8x8x3x3xf32>, %v: tensor<10x1152xf32>, %c: tensor<10xf32>) -> tensor<2x10xf32> {
  %a = nn.conv2d %x, %w1 {pads = [1, 1, 1, 1]} : tensor<2x8x12x12xf32>
  %b = nn.relu %a : tensor<2x8x12x12xf32>
  %d = nn.conv2d %b, %w2 {pads = [1, 1, 1, 1]} : tensor<2x8x12x12xf32>
  %e = nn.relu %d : tensor<2x8x12x12xf32>
  %f = nn.conv2d %e, %w3 {pads = [1, 1, 1, 1]} : tensor<2x8x12x12xf32>
  %g = nn.relu %f : tensor<2x8x12x12xf32>
  %h = nn.flatten %g {axis = 1} : tensor<2x1152xf32>
  %y = nn.linear %h, %v, %c : tensor<2x10xf32>
  return %y : tensor<2x10xf32>
}";

/// The shapes of `NET`'s arguments.
const SHAPES: [&[usize]; 6] = [
    &[2, 4, 12, 12],
    &[8, 4, 3, 3],
    &[8, 8, 3, 3],
    &[8, 8, 3, 3],
    &[10, 1152],
    &[10],
];

#[test]
fn partitioned_code_generation_gives_the_same_outputs() {
    let m = super::tests::load(NET);
    let f = &m.funcs[0];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let inputs: Vec<ArrayD<f32>> = SHAPES
        .iter()
        .map(|s| {
            ArrayD::from_shape_fn(IxDyn(s), |_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
        })
        .collect();
    let want = crate::interp::run(f, &inputs).expect("the interpreter runs");
    let scale = want[0].iter().fold(0f32, |s, v| s.max(v.abs()));
    let module = specialized(&m, &f.name, &inputs).expect("inputs fit");
    let _serial = super::tests::COMPILE
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let cx = context();
    for threads in [1, 2] {
        let mut outputs = Vec::new();
        for partitions in [1, 3] {
            let lowered = lower_module(&cx, &module, &Target::host()).expect("lowers");
            let (jit, objects) =
                Jit::build(&cx, lowered, None, threads, partitions).expect("compiles");
            assert_eq!(objects.len(), partitions, "{threads} thread(s)");
            outputs.push(jit.run(&f.name, &inputs).expect("runs").remove(0));
        }
        assert_eq!(
            outputs[0], outputs[1],
            "{threads} thread(s): 1 vs 3 partitions"
        );
        let worst = want[0]
            .iter()
            .zip(&outputs[1])
            .fold(0f32, |w, (a, b)| w.max((a - b).abs()));
        assert!(worst <= 1e-4 * scale, "{threads} thread(s): off by {worst}");
    }
}

/// MLIR's `_mlir_ciface_net` is the only caller of `@net`, which takes every memref descriptor
/// unpacked; code generation inlines `@net` into it (`object::inline_into_c_interfaces`), so
/// the linked code has the wrapper and no `net` symbol, in one partition and in two.
#[test]
fn the_entry_is_inlined_into_its_c_interface_wrapper() {
    let m = super::tests::load(NET);
    let f = &m.funcs[0];
    let inputs: Vec<ArrayD<f32>> = SHAPES.iter().map(|s| ArrayD::zeros(IxDyn(s))).collect();
    let module = specialized(&m, &f.name, &inputs).expect("inputs fit");
    let _serial = super::tests::COMPILE
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let cx = context();
    for partitions in [1, 2] {
        let lowered = lower_module(&cx, &module, &Target::host()).expect("lowers");
        let (_jit, objects) = Jit::build(&cx, lowered, None, 1, partitions).expect("compiles");
        // SAFETY: the runtime symbols have the signatures the compiled code calls them with.
        let loaded = unsafe { Loaded::new(&objects, &runtime_symbols()) }.expect("the code links");
        assert!(loaded.lookup("_mlir_ciface_net").is_ok(), "{partitions}");
        assert!(
            loaded.lookup("net").is_err(),
            "{partitions} partition(s): @net is left"
        );
    }
}
