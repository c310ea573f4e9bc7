//! Differential tests: for each op (with its attribute variants) the JIT-compiled code gives the
//! reference interpreter's outputs to 1e-4 relative on pseudo-random inputs; plus the
//! diagnostics for what the lowering refuses.

use super::entry::specialized;
use super::jit::{Jit, DEFAULT_PIPELINE};
use super::*;
use crate::diag::SourceMap;
use crate::ir;
use ndarray::{ArrayD, IxDyn};
use std::path::Path;

/// One compile at a time: the test harness runs tests on parallel threads, and MLIR/LLVM
/// keep process-global registries (a race on one crashed a CI run).
pub(super) static COMPILE: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(super) fn load(text: &str) -> ir::Module {
    let mut sources = SourceMap::new();
    let file = sources.add("test.nnir", text.to_string());
    let mut diags = Vec::new();
    match crate::tool::load::load(text, file, 0, Path::new("."), &mut diags) {
        Some(m) => m,
        None => panic!("{}\n{text}", sources.emit_to_string(&diags)),
    }
}

/// Deterministic values in [-2, 2) with a few exact zeros and negatives (an LCG: the test
/// needs reproducible data, not statistical quality).
fn random(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    ArrayD::from_shape_fn(IxDyn(shape), |_| {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let v = ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0;
        if (s >> 20).is_multiple_of(17) {
            0.0
        } else {
            v
        }
    })
}

/// Lowers, compiles and runs the first function of `text` on random inputs of `shapes`, and
/// compares with the interpreter (relative 1e-4 of max(|x|, |y|, 1)): once through the
/// unscheduled pipeline with the file's own (possibly dynamic) shapes, once the way
/// `nnopt run` compiles, specialized to the input shapes with the layers' transform schedule,
/// on one thread and on two (`--threads 2`). Returns how many layers the schedule covered.
fn check(text: &str, shapes: &[&[usize]]) -> usize {
    let m = load(text);
    let f = &m.funcs[0];
    let inputs: Vec<ArrayD<f32>> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| random(s, 17 + i as u64))
        .collect();
    let want = crate::interp::run(f, &inputs).expect("interpreter runs");
    let _serial = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    let cx = context();
    let mut layers = 0;
    for (scheduled, threads) in [(false, 1), (true, 1), (true, 2)] {
        let module = if scheduled {
            specialized(&m, &f.name, &inputs).expect("inputs fit")
        } else {
            m.clone()
        };
        let lowered = match lower_module(&cx, &module, &Target::host()) {
            Ok(l) => l,
            Err(d) => panic!("lowering failed: {d:?}\n{text}"),
        };
        let text_mlir = print(&lowered.module);
        let pipeline = if scheduled {
            layers = lowered.layers.len();
            None
        } else {
            Some(DEFAULT_PIPELINE)
        };
        let jit = Jit::compile(&cx, lowered, pipeline, threads)
            .unwrap_or_else(|e| panic!("{e}\n{text_mlir}"));
        let got = jit.run(&f.name, &inputs).expect("compiled code runs");
        assert_eq!(want.len(), got.len());
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(w.shape(), g.shape(), "{text_mlir}");
            for (i, (a, b)) in w.iter().zip(g.iter()).enumerate() {
                let tol = 1e-4 * a.abs().max(b.abs()).max(1.0);
                let same = (a - b).abs() <= tol || (a.is_nan() && b.is_nan()) || a == b;
                assert!(
                    same,
                    "element {i} (scheduled: {scheduled}, threads: {threads}): interpreter {a}, compiled {b}\n{text_mlir}"
                );
            }
        }
    }
    layers
}

fn lower_error(text: &str) -> String {
    let m = load(text);
    let cx = context();
    let result = lower_module(&cx, &m, &Target::host());
    match result {
        Ok(_) => panic!("lowering should fail:\n{text}"),
        Err(d) => d
            .iter()
            .map(|d| d.message.clone())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

fn unary(op: &str, attrs: &str) -> String {
    format!(
        "func @f(%x: tensor<3x5xf32>) -> tensor<3x5xf32> {{\n  %y = {op} %x {attrs} : tensor<3x5xf32>\n  return %y : tensor<3x5xf32>\n}}"
    )
}

#[test]
fn lower_activations_match_interpreter() {
    for (op, attrs) in [
        ("nn.relu", ""),
        ("nn.leaky_relu", "{alpha = 0.2}"),
        ("nn.clip", "{min = -0.5, max = 1.0}"),
        ("nn.sigmoid", ""),
        ("nn.tanh", ""),
        ("nn.gelu", "{approximate = \"none\"}"),
        ("nn.gelu", "{approximate = \"tanh\"}"),
        ("nn.silu", ""),
        ("nn.hardswish", ""),
        ("nn.identity", ""),
    ] {
        check(&unary(op, attrs), &[&[3, 5]]);
    }
}

#[test]
fn lower_binary_broadcast_match_interpreter() {
    for op in ["nn.add", "nn.sub", "nn.mul"] {
        check(
            &format!(
                "func @f(%a: tensor<2x3x4xf32>, %b: tensor<3x1xf32>) -> tensor<2x3x4xf32> {{\n  %y = {op} %a, %b : tensor<2x3x4xf32>\n  return %y : tensor<2x3x4xf32>\n}}"
            ),
            &[&[2, 3, 4], &[3, 1]],
        );
    }
}

#[test]
fn lower_linear_with_and_without_bias() {
    check(
        "func @f(%x: tensor<4x6xf32>) -> tensor<4x2xf32> {
  %w = nn.constant dense<[[1.0, -2.0, 0.5, 0.0, 1.5, -1.0], [0.25, 0.5, -0.75, 1.0, 2.0, -0.5], [0.0, 0.0, 1.0, 1.0, -1.0, 3.0]]> : tensor<3x6xf32>
  %b = nn.constant dense<[0.5, -1.0, 2.0]> : tensor<3xf32>
  %y = nn.linear %x, %w, %b : tensor<4x3xf32>
  %z = nn.linear %y, %w2 : tensor<4x2xf32>
  return %z : tensor<4x2xf32>
}"
        .replace(
            "  %z =",
            "  %w2 = nn.constant dense<[[1.0, 2.0, 3.0], [-1.0, 0.5, 0.25]]> : tensor<2x3xf32>\n  %z =",
        )
        .as_str(),
        &[&[4, 6]],
    );
    // Rank-3 input: a generic contraction instead of linalg.matmul.
    check(
        "func @f(%x: tensor<2x3x4xf32>) -> tensor<2x3x2xf32> {
  %w = nn.constant dense<[[1.0, -2.0, 0.5, 0.0], [0.25, 0.5, -0.75, 1.0]]> : tensor<2x4xf32>
  %b = nn.constant dense<[0.5, -1.0]> : tensor<2xf32>
  %y = nn.linear %x, %w, %b : tensor<2x3x2xf32>
  return %y : tensor<2x3x2xf32>
}",
        &[&[2, 3, 4]],
    );
}

#[test]
fn lower_dynamic_batch_mlp() {
    let text = "func @f(%x: tensor<?x4xf32>) -> tensor<?x2xf32> {
  %w = nn.constant dense<[[1.0, -2.0, 0.5, 0.0], [0.25, 0.5, -0.75, 1.0]]> : tensor<2x4xf32>
  %b = nn.constant dense<[0.5, -1.0]> : tensor<2xf32>
  %y = nn.linear %x, %w, %b : tensor<?x2xf32>
  %r = nn.relu %y : tensor<?x2xf32>
  return %r : tensor<?x2xf32>
}";
    check(text, &[&[5, 4]]);
    check(text, &[&[1, 4]]);
    let cx = context();
    let m = load(text);
    let l = lower_module(&cx, &m, &Target::host()).expect("lowers");
    assert!(print(&l.module).contains("memref<?x4xf32>"));
}

#[test]
fn lower_dynamic_batch_mismatch_is_an_error() {
    let text = "func @f(%a: tensor<?x3xf32>, %b: tensor<?x3xf32>) -> tensor<?x3xf32> {
  %y = nn.add %a, %b : tensor<?x3xf32>
  return %y : tensor<?x3xf32>
}";
    check(text, &[&[2, 3], &[2, 3]]);
    let cx = context();
    let m = load(text);
    let jit = Jit::compile(
        &cx,
        lower_module(&cx, &m, &Target::host()).unwrap(),
        Some(DEFAULT_PIPELINE),
        1,
    )
    .unwrap();
    let err = jit
        .run("f", &[random(&[2, 3], 1), random(&[4, 3], 2)])
        .unwrap_err();
    assert!(err.contains("inconsistent dynamic sizes"), "{err}");
    let err = jit
        .run("f", &[random(&[2, 4], 1), random(&[2, 3], 2)])
        .unwrap_err();
    assert!(err.contains("has shape [2, 4]"), "{err}");
}

#[test]
fn lower_matmul_2d_and_batched_broadcast() {
    check(
        "func @f(%a: tensor<3x4xf32>, %b: tensor<4x5xf32>) -> tensor<3x5xf32> {
  %y = nn.matmul %a, %b : tensor<3x5xf32>
  return %y : tensor<3x5xf32>
}",
        &[&[3, 4], &[4, 5]],
    );
    check(
        "func @f(%a: tensor<2x1x3x4xf32>, %b: tensor<5x4x6xf32>) -> tensor<2x5x3x6xf32> {
  %y = nn.matmul %a, %b : tensor<2x5x3x6xf32>
  return %y : tensor<2x5x3x6xf32>
}",
        &[&[2, 1, 3, 4], &[5, 4, 6]],
    );
}

fn conv(attrs: &str, x: &str, w: &str, y: &str, bias: bool) -> String {
    let (b_arg, b_use) = if bias {
        (", %b: tensor<8xf32>".to_string(), ", %b")
    } else {
        (String::new(), "")
    };
    format!(
        "func @f(%x: {x}, %w: {w}{b_arg}) -> {y} {{\n  %y = nn.conv2d %x, %w{b_use} {attrs} : {y}\n  return %y : {y}\n}}"
    )
}

#[test]
fn lower_conv2d_variants() {
    // plain, bias
    check(
        &conv(
            "",
            "tensor<1x3x6x6xf32>",
            "tensor<8x3x3x3xf32>",
            "tensor<1x8x4x4xf32>",
            true,
        ),
        &[&[1, 3, 6, 6], &[8, 3, 3, 3], &[8]],
    );
    // stride, asymmetric pad, dilation, batch 2
    check(
        &conv(
            "{strides = [2, 1], pads = [1, 0, 2, 1], dilations = [1, 2], groups = 1}",
            "tensor<2x3x7x6xf32>",
            "tensor<8x3x3x2xf32>",
            "tensor<2x8x4x5xf32>",
            true,
        ),
        &[&[2, 3, 7, 6], &[8, 3, 3, 2], &[8]],
    );
    // depthwise
    check(
        &conv(
            "{strides = [1, 1], pads = [1, 1, 1, 1], dilations = [1, 1], groups = 8}",
            "tensor<1x8x5x5xf32>",
            "tensor<8x1x3x3xf32>",
            "tensor<1x8x5x5xf32>",
            true,
        ),
        &[&[1, 8, 5, 5], &[8, 1, 3, 3], &[8]],
    );
    // grouped (2 groups of 2 input channels, 4 filters each)
    check(
        &conv(
            "{strides = [1, 1], pads = [0, 0, 0, 0], dilations = [1, 1], groups = 2}",
            "tensor<1x4x5x5xf32>",
            "tensor<8x2x3x3xf32>",
            "tensor<1x8x3x3xf32>",
            false,
        ),
        &[&[1, 4, 5, 5], &[8, 2, 3, 3]],
    );
    // dynamic batch
    check(
        &conv(
            "",
            "tensor<?x3x5x5xf32>",
            "tensor<8x3x3x3xf32>",
            "tensor<?x8x3x3xf32>",
            true,
        ),
        &[&[3, 3, 5, 5], &[8, 3, 3, 3], &[8]],
    );
}

#[test]
fn lower_batch_norm() {
    check(
        "func @f(%x: tensor<2x3x2x2xf32>, %s: tensor<3xf32>, %b: tensor<3xf32>, %m: tensor<3xf32>) -> tensor<2x3x2x2xf32> {
  %v = nn.constant dense<[0.5, 1.0, 2.0]> : tensor<3xf32>
  %y = nn.batch_norm %x, %s, %b, %m, %v {epsilon = 0.001} : tensor<2x3x2x2xf32>
  return %y : tensor<2x3x2x2xf32>
}",
        &[&[2, 3, 2, 2], &[3], &[3], &[3]],
    );
}

fn pool(op: &str, attrs: &str, x: &str, y: &str) -> String {
    format!("func @f(%x: {x}) -> {y} {{\n  %y = {op} %x {attrs} : {y}\n  return %y : {y}\n}}")
}

/// Pools as the sliding windows of `window.rs` (regions for the padding and the ceil-mode
/// overhang, one divisor per region) against the interpreter.
#[test]
fn lower_pools() {
    let x = "tensor<2x3x7x7xf32>";
    for (attrs, y) in [
        (
            "{kernel = [3, 3], strides = [1, 1], pads = [1, 1, 1, 1], ceil_mode = false}",
            "tensor<2x3x7x7xf32>",
        ),
        ("{kernel = [2, 2], strides = [2, 2]}", "tensor<2x3x3x3xf32>"),
        (
            "{kernel = [2, 2], strides = [2, 2], pads = [0, 0, 0, 0], ceil_mode = true}",
            "tensor<2x3x4x4xf32>",
        ),
        (
            "{kernel = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1], ceil_mode = false}",
            "tensor<2x3x4x4xf32>",
        ),
        (
            "{kernel = [3, 2], strides = [2, 3], pads = [1, 0, 2, 1], ceil_mode = true}",
            "tensor<2x3x4x3xf32>",
        ),
    ] {
        check(&pool("nn.max_pool2d", attrs, x, y), &[&[2, 3, 7, 7]]);
        for cip in ["false", "true"] {
            let a = attrs.replace('}', &format!(", count_include_pad = {cip}}}"));
            check(&pool("nn.avg_pool2d", &a, x, y), &[&[2, 3, 7, 7]]);
        }
    }
}

#[test]
fn lower_reductions() {
    check(
        "func @f(%x: tensor<2x3x4x5xf32>) -> tensor<2x3x1x1xf32> {
  %y = nn.global_avg_pool %x : tensor<2x3x1x1xf32>
  return %y : tensor<2x3x1x1xf32>
}",
        &[&[2, 3, 4, 5]],
    );
    for (attrs, y) in [
        ("{axes = [1], keepdims = true}", "tensor<2x1x4xf32>"),
        ("{axes = [0, 2], keepdims = true}", "tensor<1x3x1xf32>"),
        ("{axes = [-1], keepdims = false}", "tensor<2x3xf32>"),
        ("{axes = [0, 1, 2], keepdims = false}", "tensor<f32>"),
        ("{axes = [0, 1, 2], keepdims = true}", "tensor<1x1x1xf32>"),
    ] {
        check(
            &format!(
                "func @f(%x: tensor<2x3x4xf32>) -> {y} {{\n  %y = nn.mean %x {attrs} : {y}\n  return %y : {y}\n}}"
            ),
            &[&[2, 3, 4]],
        );
    }
}

#[test]
fn lower_shape_ops() {
    for (axis, y) in [
        (1, "tensor<2x12xf32>"),
        (0, "tensor<1x24xf32>"),
        (3, "tensor<24x1xf32>"),
        (2, "tensor<6x4xf32>"),
    ] {
        check(
            &format!(
                "func @f(%x: tensor<2x3x4xf32>) -> {y} {{\n  %y = nn.flatten %x {{axis = {axis}}} : {y}\n  return %y : {y}\n}}"
            ),
            &[&[2, 3, 4]],
        );
    }
    check(
        "func @f(%x: tensor<?x3x4xf32>) -> tensor<?x12xf32> {
  %y = nn.flatten %x {axis = 1} : tensor<?x12xf32>
  return %y : tensor<?x12xf32>
}",
        &[&[3, 3, 4]],
    );
    check(
        "func @f(%x: tensor<2x3x4xf32>) -> tensor<4x6xf32> {
  %y = nn.reshape %x {shape = [4, 6]} : tensor<4x6xf32>
  return %y : tensor<4x6xf32>
}",
        &[&[2, 3, 4]],
    );
    check(
        "func @f(%x: tensor<2x3x4xf32>) -> tensor<4x2x3xf32> {
  %y = nn.transpose %x {perm = [2, 0, 1]} : tensor<4x2x3xf32>
  return %y : tensor<4x2x3xf32>
}",
        &[&[2, 3, 4]],
    );
    check(
        "func @f(%a: tensor<2x3xf32>, %b: tensor<2x2xf32>) -> tensor<2x8xf32> {
  %y = nn.concat %a, %b, %a {axis = -1} : tensor<2x8xf32>
  return %y : tensor<2x8xf32>
}",
        &[&[2, 3], &[2, 2]],
    );
    check(
        "func @f(%a: tensor<?x3xf32>, %b: tensor<?x2xf32>) -> tensor<?x5xf32> {
  %y = nn.concat %a, %b {axis = 1} : tensor<?x5xf32>
  return %y : tensor<?x5xf32>
}",
        &[&[4, 3], &[4, 2]],
    );
}

/// Concat families (`concat.rs`): a DenseNet-style block whose concats extend each other
/// (one shared tensor, flat conv results inserted into it), a concat that extends an earlier
/// member again after a later one was formed (a fork: its insertion cannot be in place), a
/// member returned after later members were formed, the axis spelled negative in one member,
/// and a dynamic batch, against the interpreter.
#[test]
fn concat_families_match_interpreter() {
    for (n, batch) in [("1", 1), ("?", 2)] {
        let t = |c: u32| format!("tensor<{n}x{c}x6x6xf32>");
        let text = format!(
            "func @f(%x: {x4}, %w1: tensor<3x4x3x3xf32>, %w2: tensor<3x7x3x3xf32>, %w3: tensor<2x10x1x1xf32>) -> ({x10}, {x7}, {x9}) {{
  %a = nn.relu %x : {x4}
  %y1 = nn.conv2d %a, %w1 {{strides = [1, 1], pads = [1, 1, 1, 1], dilations = [1, 1], groups = 1}} : {x3}
  %c1 = nn.concat %x, %y1 {{axis = 1}} : {x7}
  %r1 = nn.relu %c1 : {x7}
  %y2 = nn.conv2d %r1, %w2 {{strides = [1, 1], pads = [1, 1, 1, 1], dilations = [1, 1], groups = 1}} : {x3}
  %c2 = nn.concat %x, %y1, %y2 {{axis = -3}} : {x10}
  %y3 = nn.conv2d %c2, %w3 {{strides = [1, 1], pads = [0, 0, 0, 0], dilations = [1, 1], groups = 1}} : {x2}
  %c3 = nn.concat %x, %y1, %y3 {{axis = 1}} : {x9}
  return %c2, %c1, %c3 : {x10}, {x7}, {x9}
}}",
            x4 = t(4),
            x3 = t(3),
            x2 = t(2),
            x7 = t(7),
            x9 = t(9),
            x10 = t(10),
        );
        let shapes: [&[usize]; 4] = [
            &[batch, 4, 6, 6],
            &[3, 4, 3, 3],
            &[3, 7, 3, 3],
            &[2, 10, 1, 1],
        ];
        check(&text, &shapes);
    }
}

#[test]
fn lower_softmax_layer_norm() {
    for axis in [-1, 0] {
        check(
            &format!(
                "func @f(%x: tensor<3x5xf32>) -> tensor<3x5xf32> {{\n  %y = nn.softmax %x {{axis = {axis}}} : tensor<3x5xf32>\n  return %y : tensor<3x5xf32>\n}}"
            ),
            &[&[3, 5]],
        );
    }
    check(
        "func @f(%x: tensor<2x3x4xf32>, %s: tensor<4xf32>, %b: tensor<4xf32>) -> tensor<2x3x4xf32> {
  %y = nn.layer_norm %x, %s, %b {axis = -1, epsilon = 0.00001} : tensor<2x3x4xf32>
  return %y : tensor<2x3x4xf32>
}",
        &[&[2, 3, 4], &[4], &[4]],
    );
    check(
        "func @f(%x: tensor<2x3x4xf32>, %s: tensor<3x4xf32>) -> tensor<2x3x4xf32> {
  %y = nn.layer_norm %x, %s {axis = 1, epsilon = 0.001} : tensor<2x3x4xf32>
  return %y : tensor<2x3x4xf32>
}",
        &[&[2, 3, 4], &[3, 4]],
    );
    check(
        "func @f(%x: tensor<2x3x4xf32>) -> tensor<2x3x4xf32> {
  %y = nn.layer_norm %x {axis = 0, epsilon = 0.001} : tensor<2x3x4xf32>
  return %y : tensor<2x3x4xf32>
}",
        &[&[2, 3, 4]],
    );
}

#[test]
fn lower_rms_norm() {
    check(
        "func @f(%x: tensor<2x3x4xf32>, %s: tensor<4xf32>) -> tensor<2x3x4xf32> {
  %y = nn.rms_norm %x, %s {axis = -1, epsilon = 0.00001} : tensor<2x3x4xf32>
  return %y : tensor<2x3x4xf32>
}",
        &[&[2, 3, 4], &[4]],
    );
    check(
        "func @f(%x: tensor<?x3x4xf32>) -> tensor<?x3x4xf32> {
  %y = nn.rms_norm %x {axis = 1, epsilon = 0.001} : tensor<?x3x4xf32>
  return %y : tensor<?x3x4xf32>
}",
        &[&[2, 3, 4]],
    );
}

#[test]
fn lower_gather_scatter() {
    check(
        "func @f(%x: tensor<2x6xf32>) -> tensor<2x5xf32> {
  %y = nn.gather %x {axis = 1, indices = [4, 0, 1, 2, 4]} : tensor<2x5xf32>
  return %y : tensor<2x5xf32>
}",
        &[&[2, 6]],
    );
    check(
        "func @f(%x: tensor<?x5xf32>) -> tensor<?x7xf32> {
  %y = nn.scatter %x {axis = -1, indices = [0, 2, 3, 5, 6], size = 7, fill = [0.0, 1.5, 0.0, 0.0, -2.0, 0.0, 0.0]} : tensor<?x7xf32>
  return %y : tensor<?x7xf32>
}",
        &[&[3, 5]],
    );
    check(
        "func @f(%x: tensor<3x2xf32>) -> tensor<4x2xf32> {
  %y = nn.scatter %x {axis = 0, indices = [3, 1, 2], size = 4, fill = [0.5, 0.5, 0.5, 0.5]} : tensor<4x2xf32>
  return %y : tensor<4x2xf32>
}",
        &[&[3, 2]],
    );
}

/// A one-function module of a dense layer whose weight `w` (3x4) and bias `b` (3) are in a
/// safetensors file of `dir`.
pub(super) fn weight_file_model(dir: &std::path::Path, w: &[f32], b: &[f32]) -> ir::Module {
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (wb, bb) = (bytes(w), bytes(b));
    let views = vec![
        (
            "fc.weight".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3, 4], &wb).unwrap(),
        ),
        (
            "fc.bias".to_string(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![3], &bb).unwrap(),
        ),
    ];
    safetensors::tensor::serialize_to_file(views, None, &dir.join("w.safetensors")).unwrap();
    let text = "module attributes {weights = \"w.safetensors\"} {
  func @f(%x: tensor<2x4xf32>) -> tensor<2x3xf32> {
    %w = nn.weight \"fc.weight\" : tensor<3x4xf32>
    %b = nn.weight \"fc.bias\" : tensor<3xf32>
    %y = nn.linear %x, %w, %b : tensor<2x3xf32>
    return %y : tensor<2x3xf32>
  }
}";
    let mut sources = SourceMap::new();
    let file = sources.add("w.nnir", text.to_string());
    crate::tool::load::load(text, file, 0, dir, &mut Vec::new()).expect("loads")
}

#[test]
fn lower_weights_become_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let w: Vec<f32> = (0..12).map(|i| i as f32 * 0.25 - 1.0).collect();
    let m = weight_file_model(dir.path(), &w, &[0.5, -0.5, 1.0]);
    let cx = context();
    let l = lower_module(&cx, &m, &Target::host()).unwrap();
    let s = &l.signatures[0];
    assert_eq!(
        s.weights
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>(),
        ["fc.weight", "fc.bias"]
    );
    // The weight of the scheduled dense layer is passed packed: one panel of the target's
    // dense tile width.
    let tn = super::schedule::Tiles::for_target(&Target::host()).dense.1;
    assert_eq!(
        s.weights.iter().map(|w| w.packed).collect::<Vec<_>>(),
        [Some(super::Packing::Dense(tn)), None]
    );
    let mlir = print(&l.module);
    assert!(
        mlir.contains(&format!("%arg0: memref<2x4xf32>, %arg1: memref<1x4x{tn}xf32>, %arg2: memref<3xf32>, %arg3: memref<2x3xf32>")),
        "{mlir}"
    );
    let x = random(&[2, 4], 3);
    let want = crate::interp::run(&m.funcs[0], std::slice::from_ref(&x)).unwrap();
    let jit = Jit::compile(&cx, l, Some(DEFAULT_PIPELINE), 1).unwrap();
    let got = jit.run("f", &[x]).unwrap();
    for (a, b) in want[0].iter().zip(got[0].iter()) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
}

#[test]
fn lower_unsupported_is_a_diagnostic() {
    let e = lower_error(
        "func @f(%x: tensor<2x3xf16>) -> tensor<2x3xf16> {
  %y = nn.relu %x : tensor<2x3xf16>
  return %y : tensor<2x3xf16>
}",
    );
    assert!(e.contains("only f32 and i64 are supported"), "{e}");
    let e = lower_error(
        "func @f(%x: tensor<1x3x?x4xf32>) -> tensor<1x3x?x2xf32> {
  %y = nn.max_pool2d %x {kernel = [1, 2], strides = [1, 2]} : tensor<1x3x?x2xf32>
  return %y : tensor<1x3x?x2xf32>
}",
    );
    assert!(
        e.contains("'nn.max_pool2d' op cannot be lowered to MLIR yet: the input height (axis 2) must have a static size"),
        "{e}"
    );
}

#[test]
fn lower_bad_pipeline_reports_mlir_error() {
    let cx = context();
    let m = load(&unary("nn.relu", ""));
    let mut l = lower_module(&cx, &m, &Target::host()).unwrap();
    let e = jit::run_mlir_pipeline(&cx, &mut l.module, "builtin.module(no-such-pass)").unwrap_err();
    assert!(e.contains("no-such-pass"), "{e}");
    // A pipeline that stops short of the LLVM dialect is an error, not a null engine (which
    // crashed on first use).
    let l = lower_module(&cx, &m, &Target::host()).unwrap();
    let e = match Jit::compile(&cx, l, Some("builtin.module(canonicalize)"), 1) {
        Err(e) => e,
        Ok(_) => panic!("compiled a module outside the LLVM dialect"),
    };
    assert!(
        e.contains("`func.func`, which is not in the LLVM dialect"),
        "{e}"
    );
}

/// A conv whose output is 1x1 is a view with a non-unit innermost stride (its flat rows are
/// 32 long); flattened into a scheduled dense layer it is copied to a contiguous tensor
/// first: the dense kernel's broadcast reads of it did not lower to LLVM (found by the
/// compile property of `tests/prune_exact.rs`).
#[test]
fn flattened_one_by_one_conv_feeds_a_dense_layer() {
    let text = "func @f(%x: tensor<1x3x4x4xf32>, %k: tensor<2x3x3x3xf32>, %j: tensor<4x2x1x1xf32>, %w: tensor<3x4xf32>) -> tensor<1x3xf32> {
  %c = nn.conv2d %x, %k {pads = [1, 1, 1, 1], strides = [2, 2], dilations = [2, 2]} : tensor<1x2x1x1xf32>
  %d = nn.conv2d %c, %j : tensor<1x4x1x1xf32>
  %a = nn.leaky_relu %d {alpha = 0.1} : tensor<1x4x1x1xf32>
  %f = nn.flatten %a {axis = 1} : tensor<1x4xf32>
  %y = nn.linear %f, %w : tensor<1x3xf32>
  return %y : tensor<1x3xf32>
}";
    assert_eq!(
        check(
            text,
            &[&[1, 3, 4, 4], &[2, 3, 3, 3], &[4, 2, 1, 1], &[3, 4]]
        ),
        2
    );
}

/// The transform schedule covers dense and conv layers whose sizes leave remainders (53
/// outputs, 37 inputs, a 21-wide row, batch 14 = 2 x 6 + 2, and on two threads two tasks of
/// 7 = 6 + 1 rows): peeled tiles compute the same as the
/// interpreter, with relu, leaky relu and clip fused as epilogues. The convs' 12 rows make
/// multi-row tiles: 4 rows on one thread, 2 in each 6-row task on two.
#[test]
fn lower_scheduled_layers_with_remainders() {
    let dense = "func @f(%x: tensor<?x37xf32>, %w: tensor<53x37xf32>, %b: tensor<53xf32>, %w2: tensor<16x53xf32>) -> tensor<?x16xf32> {
  %y = nn.linear %x, %w, %b : tensor<?x53xf32>
  %a = nn.leaky_relu %y {alpha = 0.125} : tensor<?x53xf32>
  %z = nn.linear %a, %w2 : tensor<?x16xf32>
  return %z : tensor<?x16xf32>
}";
    assert_eq!(check(dense, &[&[14, 37], &[53, 37], &[53], &[16, 53]]), 2);
    let conv = "func @f(%x: tensor<?x6x12x21xf32>, %w: tensor<53x6x3x3xf32>, %b: tensor<53xf32>, %w2: tensor<16x53x1x1xf32>) -> tensor<?x16x12x21xf32> {
  %y = nn.conv2d %x, %w, %b {pads = [1, 1, 1, 1]} : tensor<?x53x12x21xf32>
  %a = nn.clip %y {min = 0.0, max = 6.0} : tensor<?x53x12x21xf32>
  %z = nn.conv2d %a, %w2 : tensor<?x16x12x21xf32>
  %r = nn.relu %z : tensor<?x16x12x21xf32>
  return %r : tensor<?x16x12x21xf32>
}";
    assert_eq!(
        check(
            conv,
            &[&[2, 6, 12, 21], &[53, 6, 3, 3], &[53], &[16, 53, 1, 1]]
        ),
        2
    );
}

/// A layer whose input comes from an unscheduled op (here gelu) does not pull that op into
/// its tiles: the `tensor.cast` barrier stops `fuse`, so gelu runs once, outside the nest.
#[test]
fn scheduled_layer_does_not_fuse_its_input_producer() {
    let text = "func @f(%x: tensor<4x8xf32>, %w: tensor<12x8xf32>) -> tensor<4x12xf32> {
  %g = nn.gelu %x : tensor<4x8xf32>
  %y = nn.linear %g, %w : tensor<4x12xf32>
  return %y : tensor<4x12xf32>
}";
    assert_eq!(check(text, &[&[4, 8], &[12, 8]]), 1);
    let m = load(text);
    let cx = context();
    let mut l = lower_module(&cx, &m, &Target::host()).unwrap();
    assert!(jit::embed_schedule(&cx, &l, 1).unwrap());
    jit::run_mlir_pipeline(
        &cx,
        &mut l.module,
        "builtin.module(transform-interpreter,symbol-dce,canonicalize,cse)",
    )
    .unwrap();
    let out = print(&l.module);
    // The polynomial erf (`approx.rs`) ends in a copysign.
    let erf = out.find("math.copysign").expect("gelu is still there");
    let first_loop = out.find("scf.for").expect("the layer is tiled");
    assert!(erf < first_loop, "gelu moved into the tiles:\n{out}");
    let tn = super::schedule::Tiles::for_target(&Target::host()).dense.1;
    assert!(out.contains(&format!("vector<4x{tn}xf32>")), "{out}");
}

/// The ops of `text`'s first function, lowered with its shapes specialized to `shapes`, that
/// carry `nnopt.root` (one line each).
fn roots(text: &str, shapes: &[&[usize]]) -> Vec<String> {
    let m = load(text);
    let inputs: Vec<ArrayD<f32>> = shapes.iter().map(|s| ArrayD::zeros(IxDyn(s))).collect();
    let cx = context();
    let module = specialized(&m, &m.funcs[0].name, &inputs).expect("inputs fit");
    let lowered = lower_module(&cx, &module, &Target::host()).expect("lowers");
    let text = print(&lowered.module);
    let mut ops = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.contains("nnopt.root") {
            // A generic's body follows its attributes, up to its yield.
            let body: Vec<&str> = lines
                .clone()
                .take_while(|l| !l.contains("linalg.yield"))
                .map(str::trim)
                .collect();
            ops.push(format!("{} | {}", line.trim(), body.join("; ")));
        }
    }
    ops
}

/// Residual blocks: a conv's add of an earlier conv's (fused) result, and the relu after it,
/// run in the conv's tiles, as does the add after a conv's relu; a pointwise conv reads the
/// flat rows of the add before it. An add of a value in another form (the function's input)
/// stays an op of its own. Sizes leave remainders (5 filters, a 9-wide row).
#[test]
fn residual_adds_fuse_into_conv_epilogues() {
    let text = "func @f(%x: tensor<?x5x7x9xf32>, %k: tensor<5x5x3x3xf32>, %b: tensor<5xf32>, %j: tensor<5x5x3x3xf32>, %p: tensor<3x5x1x1xf32>) -> (tensor<?x3x7x9xf32>, tensor<?x5x7x9xf32>) {
  %s = nn.conv2d %x, %k, %b {pads = [1, 1, 1, 1]} : tensor<?x5x7x9xf32>
  %sr = nn.relu %s : tensor<?x5x7x9xf32>
  %a = nn.conv2d %sr, %j {pads = [1, 1, 1, 1]} : tensor<?x5x7x9xf32>
  %sum = nn.add %a, %sr : tensor<?x5x7x9xf32>
  %out = nn.relu %sum : tensor<?x5x7x9xf32>
  %c = nn.conv2d %out, %k, %b {pads = [1, 1, 1, 1]} : tensor<?x5x7x9xf32>
  %cr = nn.relu %c : tensor<?x5x7x9xf32>
  %post = nn.add %cr, %out : tensor<?x5x7x9xf32>
  %proj = nn.conv2d %post, %p : tensor<?x3x7x9xf32>
  %d = nn.conv2d %x, %j {pads = [1, 1, 1, 1]} : tensor<?x5x7x9xf32>
  %e = nn.add %d, %x : tensor<?x5x7x9xf32>
  return %proj, %e : tensor<?x3x7x9xf32>, tensor<?x5x7x9xf32>
}";
    let shapes: &[&[usize]] = &[
        &[2, 5, 7, 9],
        &[5, 5, 3, 3],
        &[5],
        &[5, 5, 3, 3],
        &[3, 5, 1, 1],
    ];
    assert_eq!(check(text, shapes), 5);
    let roots = roots(text, shapes);
    assert_eq!(roots.len(), 5, "{roots:#?}");
    // Layer 1 ends in the relu after its residual add, layer 2 in the post-activation add.
    assert!(roots[1].contains("arith.maximumf"), "{roots:#?}");
    assert!(roots[2].contains("arith.addf %in, %in"), "{roots:#?}");
    // The pointwise conv reads the add's flat rows (7 rows of 9 + 2, 77 rounded up to two
    // vectors of the host: 80 on AVX2, 96 on AVX-512) where a copy to NCHW would have given it
    // 7 x 9 = 63 positions.
    assert!(roots[3].contains("ins(%cast"), "{roots:#?}");
    let len = 77u64.next_multiple_of(2 * Target::host().lanes());
    assert!(
        roots[3].contains(&format!("tensor<2x3x{len}xf32>")),
        "{roots:#?}"
    );
    // The add of the input is not fused: layer 4 ends in its conv's multiply-add.
    assert!(roots[4].contains("arith.mulf"), "{roots:#?}");
    // The add joins the earlier layer when only that one has no other user: its tiles then
    // read the later layer's result, which is computed before them.
    let earlier = "func @f(%x: tensor<1x5x7x9xf32>, %k: tensor<5x5x3x3xf32>, %j: tensor<5x5x3x3xf32>) -> (tensor<1x5x7x9xf32>, tensor<1x5x7x9xf32>) {
  %a = nn.conv2d %x, %k {pads = [1, 1, 1, 1]} : tensor<1x5x7x9xf32>
  %b = nn.conv2d %x, %j {pads = [1, 1, 1, 1]} : tensor<1x5x7x9xf32>
  %s = nn.add %a, %b : tensor<1x5x7x9xf32>
  return %s, %b : tensor<1x5x7x9xf32>, tensor<1x5x7x9xf32>
}";
    let shapes: &[&[usize]] = &[&[1, 5, 7, 9], &[5, 5, 3, 3], &[5, 5, 3, 3]];
    assert_eq!(check(earlier, shapes), 2);
    let roots = self::roots(earlier, shapes);
    let first = roots.iter().find(|r| r.contains("nnopt.root = 0"));
    assert!(
        first.is_some_and(|r| r.contains("arith.addf %in, %in")),
        "{roots:#?}"
    );
    // Dense layers on packed weights: the residual add of the first layer's relu joins the
    // second layer, on the panel form (24 columns in panels of the target's tile width).
    let dense = "func @g(%x: tensor<4x16xf32>, %w1: tensor<24x16xf32>, %w2: tensor<24x24xf32>) -> tensor<4x24xf32> {
  %h = nn.linear %x, %w1 : tensor<4x24xf32>
  %r = nn.relu %h : tensor<4x24xf32>
  %y = nn.linear %r, %w2 : tensor<4x24xf32>
  %s = nn.add %y, %r : tensor<4x24xf32>
  return %s : tensor<4x24xf32>
}";
    let shapes: &[&[usize]] = &[&[4, 16], &[24, 16], &[24, 24]];
    assert_eq!(check(dense, shapes), 2);
    let roots = self::roots(dense, shapes);
    let tn = super::schedule::Tiles::for_target(&Target::host()).dense.1;
    let panels = format!("tensor<4x{}x{tn}xf32>", 24u64.div_ceil(tn));
    assert!(
        roots[1].contains("arith.addf %in, %in") && roots[1].contains(&panels),
        "{roots:#?}"
    );
}

/// A padded conv whose input is an earlier conv's flat rows reads them inside its padded
/// buffer, which that conv wrote in place: a conv without bias or activation (its kernel is the
/// layer's last op), a value two padded convs read (the first takes it in place, the second
/// copies it from there) and that the function also returns, odd sizes (5 filters, 9-wide
/// rows), on one thread and two.
#[test]
fn padded_inputs_written_in_place() {
    let text = "func @f(%x: tensor<1x5x7x9xf32>, %k: tensor<5x5x3x3xf32>, %j: tensor<5x5x3x3xf32>) -> (tensor<1x5x7x9xf32>, tensor<1x5x7x9xf32>, tensor<1x5x7x9xf32>) {
  %a = nn.conv2d %x, %k {pads = [1, 1, 1, 1]} : tensor<1x5x7x9xf32>
  %b = nn.conv2d %a, %j {pads = [1, 1, 1, 1]} : tensor<1x5x7x9xf32>
  %c = nn.conv2d %a, %k {pads = [1, 1, 1, 1]} : tensor<1x5x7x9xf32>
  return %a, %b, %c : tensor<1x5x7x9xf32>, tensor<1x5x7x9xf32>, tensor<1x5x7x9xf32>
}";
    let shapes: &[&[usize]] = &[&[1, 5, 7, 9], &[5, 5, 3, 3], &[5, 5, 3, 3]];
    assert_eq!(check(text, shapes), 3);
    let m = load(text);
    let inputs: Vec<ArrayD<f32>> = shapes.iter().map(|s| ArrayD::zeros(IxDyn(s))).collect();
    let cx = context();
    let module = specialized(&m, "f", &inputs).expect("inputs fit");
    let out = print(
        &lower_module(&cx, &module, &Target::host())
            .expect("lowers")
            .module,
    );
    // The function's input and the second reader of %a are copied; %b reads %a in place.
    assert_eq!(out.matches("linalg.copy").count(), 2, "{out}");
}

/// A strided 1x1 conv without padding (a projection shortcut) becomes a strided slice plus a
/// unit-stride conv, which the schedule covers; odd sizes leave a partial last stride.
#[test]
fn strided_pointwise_conv_is_scheduled() {
    let text = "func @f(%x: tensor<?x8x9x7xf32>, %w: tensor<12x8x1x1xf32>, %b: tensor<12xf32>) -> tensor<?x12x5x3xf32> {
  %y = nn.conv2d %x, %w, %b {strides = [2, 3]} : tensor<?x12x5x3xf32>
  %r = nn.relu %y : tensor<?x12x5x3xf32>
  return %r : tensor<?x12x5x3xf32>
}";
    assert_eq!(check(text, &[&[2, 8, 9, 7], &[12, 8, 1, 1], &[12]]), 1);
}

/// A strided conv with a kernel larger than 1x1 runs as a unit-stride flat conv over its
/// input's phases, which the schedule covers: a 3x3 stride-2 conv with its relu, followed by a
/// 3x3 conv of its flat rows; a 7x7 stride-2 stem on odd sizes; unequal strides with a 3x2
/// kernel, asymmetric pads and batch 2; a last row and column that no output reads; padding
/// wider than the input.
#[test]
fn strided_convs_are_scheduled_over_phases() {
    let text = "func @f(%x: tensor<1x5x9x11xf32>, %w: tensor<6x5x3x3xf32>, %b: tensor<6xf32>, %v: tensor<4x6x3x3xf32>) -> tensor<1x4x5x6xf32> {
  %y = nn.conv2d %x, %w, %b {strides = [2, 2], pads = [1, 1, 1, 1]} : tensor<1x6x5x6xf32>
  %r = nn.relu %y : tensor<1x6x5x6xf32>
  %z = nn.conv2d %r, %v {pads = [1, 1, 1, 1]} : tensor<1x4x5x6xf32>
  return %z : tensor<1x4x5x6xf32>
}";
    let shapes: &[&[usize]] = &[&[1, 5, 9, 11], &[6, 5, 3, 3], &[6], &[4, 6, 3, 3]];
    // One scheduled pass per phase with taps (four for 3x3 stride 2), then the second conv.
    assert_eq!(check(text, shapes), 4 + 1);
    // The last field: the scheduled passes, one per phase (a, b) with taps (a < kh, b < kw); a
    // 3x2 kernel at strides [2, 3] has no third column phase.
    type Case = (&'static str, [usize; 4], [usize; 4], [usize; 4], usize);
    let cases: [Case; 4] = [
        (
            "{strides = [2, 2], pads = [3, 3, 3, 3]}",
            [1, 3, 13, 12],
            [8, 3, 7, 7],
            [1, 8, 7, 6],
            4,
        ),
        (
            "{strides = [2, 3], pads = [1, 0, 2, 1]}",
            [2, 3, 7, 8],
            [8, 3, 3, 2],
            [2, 8, 4, 3],
            4,
        ),
        (
            "{strides = [2, 2]}",
            [1, 4, 8, 8],
            [8, 4, 3, 3],
            [1, 8, 3, 3],
            4,
        ),
        (
            "{strides = [2, 2], pads = [3, 3, 3, 3]}",
            [1, 2, 3, 3],
            [8, 2, 3, 3],
            [1, 8, 4, 4],
            4,
        ),
    ];
    for (attrs, x, w, y, passes) in cases {
        let ty = |d: [usize; 4]| format!("tensor<{}x{}x{}x{}xf32>", d[0], d[1], d[2], d[3]);
        let text = conv(attrs, &ty(x), &ty(w), &ty(y), true);
        assert_eq!(check(&text, &[&x, &w, &[8]]), passes, "{text}");
    }
}

/// `--threads` adds its passes at both insertion points of the default pipeline (a
/// `replacen` whose anchor is missing would silently leave the pipeline single-threaded).
#[test]
fn threaded_pipeline_has_the_async_passes() {
    let one = jit::scheduled_pipeline(1);
    assert!(one.starts_with("builtin.module(transform-interpreter,symbol-dce,"));
    assert!(!one.contains("async"));
    let two = jit::scheduled_pipeline(2);
    assert!(two.contains("convert-bufferization-to-memref,scf-forall-to-parallel,"));
    assert!(
        two.contains("cse,async-parallel-for{num-workers=2 async-dispatch=false min-task-size=1},")
    );
    assert!(two.contains("convert-async-to-llvm,"));
}

/// Compiles the first function of `text` through the unscheduled pipeline and runs it on
/// `inputs`.
fn compiled(text: &str, inputs: &[ArrayD<f32>]) -> Vec<ArrayD<f32>> {
    let m = load(text);
    let cx = context();
    let lowered = lower_module(&cx, &m, &Target::host()).unwrap_or_else(|d| panic!("{d:?}"));
    let jit = Jit::compile(&cx, lowered, Some(DEFAULT_PIPELINE), 1).expect("compiles");
    jit.run(&m.funcs[0].name, inputs).expect("runs")
}

/// The polynomial `exp`, `tanh` and `erf` (`approx.rs`) against f64 over a sweep, at the
/// bounds its module docs state, and at NaN and the infinities.
#[test]
fn approx_math_within_documented_bounds() {
    let n = 4001;
    let xs: Vec<f32> = (0..n)
        .map(|i| -90.0 + 180.0 * i as f32 / (n - 1) as f32)
        .collect();
    let mut xs = xs;
    xs.extend([
        0.0, -0.0, 1e-6, -1e-6, 0.06, 0.0625, 0.07, 88.72, 88.73, -86.5,
    ]);
    xs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY]);
    let len = xs.len();
    let x = ArrayD::from_shape_vec(IxDyn(&[len]), xs.clone()).expect("shape");
    let run = |op: &str| {
        let t = format!("tensor<{len}xf32>");
        let text = format!("func @f(%x: {t}) -> {t} {{\n  %y = {op} : {t}\n  return %y : {t}\n}}");
        compiled(&text, std::slice::from_ref(&x)).remove(0)
    };
    let sigmoid = run("nn.sigmoid %x");
    let tanh = run("nn.tanh %x");
    let gelu = run("nn.gelu %x {approximate = \"none\"}");
    for (i, &v) in xs.iter().enumerate() {
        let (s, t, g) = (sigmoid[i], tanh[i], gelu[i]);
        if v.is_nan() {
            assert!(
                s.is_nan() && t.is_nan() && g.is_nan(),
                "NaN in, {s} {t} {g} out"
            );
            continue;
        }
        let d = v as f64;
        // sigmoid(x) = 1/(1 + exp(-x)) carries exp's relative error over [-86, 88.72].
        let want = 1.0 / (1.0 + (-d).exp());
        if d.abs() <= 86.0 {
            let rel = (s as f64 - want).abs() / want;
            assert!(
                rel < 5e-7,
                "sigmoid({v}) = {s}, want {want} (relative {rel:e})"
            );
        } else {
            assert!(
                (s as f64 - want).abs() < 1e-37,
                "sigmoid({v}) = {s}, want {want}"
            );
        }
        let err = (t as f64 - d.tanh()).abs();
        assert!(
            err < 3e-7,
            "tanh({v}) = {t}, want {} (error {err:e})",
            d.tanh()
        );
        if d.abs() < 0.0625 {
            assert!(
                err <= 2e-7 * d.abs().max(1e-30),
                "tanh({v}) = {t} not relatively exact"
            );
        }
        let want = 0.5 * d * (1.0 + crate::ir::ops::erf(d / std::f64::consts::SQRT_2));
        if d.is_finite() {
            let err = (g as f64 - want).abs();
            assert!(
                err < 3e-7 * d.abs().max(1.0),
                "gelu({v}) = {g}, want {want}"
            );
        }
    }
    let at = |y: &ArrayD<f32>, v: f32| y[xs.iter().position(|&u| u == v).expect("in sweep")];
    assert_eq!(
        (at(&sigmoid, f32::INFINITY), at(&sigmoid, f32::NEG_INFINITY)),
        (1.0, 0.0)
    );
    assert_eq!(
        (at(&tanh, f32::INFINITY), at(&tanh, f32::NEG_INFINITY)),
        (1.0, -1.0)
    );
    // -inf · (1 + erf(-inf)) is NaN in the interpreter's formula too.
    assert_eq!(at(&gelu, f32::INFINITY), f32::INFINITY);
    assert!(at(&gelu, f32::NEG_INFINITY).is_nan());
}

/// Depthwise convs (`window.rs`: one loop nest per output region, border outputs summing only
/// their in-range taps, the bias and a following activation in the same loop; or, for rows
/// shorter than two vectors under a window with more border regions than a 3x3 one, one nest
/// over the zero-padded input): odd channel counts and sizes, strides 1 and 2, padding 0, 1 and
/// 2, dilation, batch 2, planes with no interior and outputs with no tap at all, each with and
/// without a bias and with each kind of fused activation (and an activation that is not the
/// conv's only user, which is not fused), against the interpreter; and the 3x3 stride-2 pools
/// of the same odd sizes.
#[test]
fn depthwise_windows_match_interpreter() {
    let acts = [
        None,
        Some("nn.clip %y {min = 0.0, max = 6.0}"),
        Some("nn.relu %y"),
        Some("nn.hardswish %y"),
        Some("nn.leaky_relu %y {alpha = 0.2}"),
    ];
    for (i, (c, hw, k, s, p, d, n)) in [
        (8, 9, 3, 1, 1, 1, 1),
        (53, 11, 3, 2, 1, 1, 2),
        (5, 10, 5, 2, 2, 1, 2),
        (7, 12, 3, 1, 2, 2, 1),
        (3, 8, 3, 2, 0, 1, 1),
        (13, 7, 3, 1, 0, 1, 1),
        (17, 14, 3, 1, 1, 1, 1),
        (17, 15, 3, 2, 1, 1, 1),
        (19, 7, 3, 2, 1, 1, 1),
        // Every output a border one (the window is wider than the input).
        (5, 3, 5, 1, 2, 1, 1),
        // Padding past the window: the outer outputs have no tap, only the bias.
        (3, 4, 3, 1, 3, 1, 1),
        // One output position from a larger padded input (the unit-dim folding case).
        (3, 2, 3, 2, 1, 1, 1),
        // Rows of at least two vectors on every target (up to 16 lanes), which keep their
        // border regions whatever the window; the narrower maps above under 5x5 (or dilated)
        // windows run over a padded input.
        (9, 66, 3, 1, 1, 1, 1),
        (5, 70, 5, 2, 2, 1, 2),
        (7, 68, 3, 1, 2, 2, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let o = (hw + 2 * p - d * (k - 1) - 1) / s + 1;
        let x = format!("tensor<{n}x{c}x{hw}x{hw}xf32>");
        let w = format!("tensor<{c}x1x{k}x{k}xf32>");
        let y = format!("tensor<{n}x{c}x{o}x{o}xf32>");
        for (j, act) in acts.iter().enumerate() {
            let bias = (i + j) % 2 == 0;
            let (b_arg, b_use) = if bias {
                (format!(", %b: tensor<{c}xf32>"), ", %b")
            } else {
                (String::new(), "")
            };
            let conv = format!("%y = nn.conv2d %x, %w{b_use} {{strides = [{s}, {s}], pads = [{p}, {p}, {p}, {p}], dilations = [{d}, {d}], groups = {c}}} : {y}");
            let tail = match act {
                None => "return %y".to_string(),
                // The second activation case keeps `%y` alive beside it: not fused.
                Some(a) if j == 2 => {
                    format!("%z = {a} : {y}\n  %r = nn.add %y, %z : {y}\n  return %r")
                }
                Some(a) => format!("%z = {a} : {y}\n  return %z"),
            };
            let text =
                format!("func @f(%x: {x}, %w: {w}{b_arg}) -> {y} {{\n  {conv}\n  {tail} : {y}\n}}");
            let (xs, ws, bs) = ([n, c, hw, hw], [c, 1, k, k], [c]);
            let shapes: Vec<&[usize]> = if bias {
                vec![&xs, &ws, &bs]
            } else {
                vec![&xs, &ws]
            };
            check(&text, &shapes);
        }
    }
    let x = "tensor<2x53x13x13xf32>";
    let y = "tensor<2x53x6x6xf32>";
    let attrs = "{kernel = [3, 3], strides = [2, 2], pads = [0, 0, 0, 0], ceil_mode = false}";
    check(&pool("nn.max_pool2d", attrs, x, y), &[&[2, 53, 13, 13]]);
    let a = attrs.replace('}', ", count_include_pad = false}");
    check(&pool("nn.avg_pool2d", &a, x, y), &[&[2, 53, 13, 13]]);
}

/// A max pool gives the interpreter's bits: NaN in any tap makes the output NaN, and among
/// equal taps the first in tap order wins, so a window of zeros keeps its first zero's sign
/// (`arith.maximumf` would give `+0`). Rows 40 wide, so the interior is the vectorized loop.
#[test]
fn max_pool_keeps_the_interpreters_nan_and_signed_zeros() {
    let _serial = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    let mut x = random(&[1, 2, 9, 40], 5);
    for ((_, c, h, w), v) in x
        .indexed_iter_mut()
        .map(|(i, v)| ((i[0], i[1], i[2], i[3]), v))
    {
        if c == 1 {
            *v = if (h * 7 + w * 3) % 2 == 0 { 0.0 } else { -0.0 };
        } else if (h * 40 + w) % 23 == 5 {
            *v = f32::NAN;
        }
    }
    for (attrs, y) in [
        (
            "{kernel = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1], ceil_mode = false}",
            "tensor<1x2x5x20xf32>",
        ),
        (
            "{kernel = [2, 2], strides = [1, 1], pads = [0, 0, 0, 0], ceil_mode = false}",
            "tensor<1x2x8x39xf32>",
        ),
    ] {
        let text = format!(
            "func @f(%x: tensor<1x2x9x40xf32>) -> {y} {{\n  %y = nn.max_pool2d %x {attrs} : {y}\n  return %y : {y}\n}}"
        );
        let m = load(&text);
        let want = crate::interp::run(&m.funcs[0], std::slice::from_ref(&x)).unwrap();
        let got = compiled(&text, std::slice::from_ref(&x));
        let (want, got) = (&want[0], &got[0]);
        assert_eq!(want.shape(), got.shape(), "{attrs}");
        let nans = want.iter().filter(|v| v.is_nan()).count();
        assert!(nans > 0, "the input puts NaN in some windows");
        for (i, (a, b)) in want.iter().zip(got.iter()).enumerate() {
            assert!(
                (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits(),
                "{attrs}: element {i}: interpreter {a:?}, compiled {b:?}"
            );
        }
    }
}
