//! Every target variant this machine can execute computes what the reference interpreter
//! computes: the register tiles, the packed panel width and the instruction set all change with
//! `--target-cpu`, so each forced variant (AVX-512, AVX2, SSE on x86; the host elsewhere) is
//! compiled and compared on dense and conv layers of odd, pruned-looking sizes and on the
//! ResNet-style example before and after pruning, to 1e-4 of each output's largest magnitude.

#![cfg(feature = "mlir")]

use ndarray::{ArrayD, IxDyn};
use nnopt::diag::SourceMap;
use nnopt::ir::Module;
use nnopt::lower::{compile_and_run, CompileOptions, Isa, Target};
use nnopt::tool::load;
use nnopt::{interp, passes};
use std::path::Path;

/// The forced targets the host can run (a variant needs its ISA on the host), and the host.
fn variants() -> Vec<Target> {
    let host = Target::host();
    let mut all = vec![host.clone()];
    if cfg!(target_arch = "x86_64") {
        for (cpu, isa) in [
            ("x86-64-v4", Isa::Avx512),
            ("haswell", Isa::Avx2),
            ("x86-64", Isa::Sse),
        ] {
            if host.isa >= isa {
                all.push(Target::resolve(Some(cpu), None).expect("a known CPU"));
            }
        }
    }
    all
}

fn load(text: &str) -> Module {
    let mut sources = SourceMap::new();
    let file = sources.add("targets.nnir", text.to_string());
    let mut diags = Vec::new();
    load::load(text, file, 0, Path::new("."), &mut diags)
        .unwrap_or_else(|| panic!("{}\n{text}", sources.emit_to_string(&diags)))
}

/// Deterministic inputs in [-1, 1) for every argument of `m`'s first function, dynamic sizes
/// set to `batch`; token ids (i64) are the rows of the embedding tables that read them.
fn inputs(m: &Module, batch: u64, seed: u64) -> Vec<ArrayD<f32>> {
    let mut s = seed;
    let f = &m.funcs[0];
    f.args()
        .iter()
        .map(|&a| {
            let shape: Vec<usize> = f
                .ty(a)
                .dims
                .iter()
                .map(|d| d.as_static().unwrap_or(batch) as usize)
                .collect();
            let rows = f.embedding_rows(a);
            ArrayD::from_shape_fn(IxDyn(&shape), |_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (s >> 40) as f32 / (1u64 << 24) as f32;
                match rows {
                    Some(r) => (u * r as f32).floor(),
                    None => u * 2.0 - 1.0,
                }
            })
        })
        .collect()
}

/// `m` compiled for every variant (on `threads` threads) gives the interpreter's outputs.
fn check(m: &Module, batch: u64, threads: u64) {
    let f = &m.funcs[0];
    let x = inputs(m, batch, 0x9e37_79b9_7f4a_7c15);
    let want = interp::run(f, &x).expect("the interpreter runs");
    // One compile at a time: MLIR and LLVM keep process-global registries, and the tests of
    // this file run on parallel threads.
    static COMPILE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _serial = COMPILE.lock().unwrap_or_else(|e| e.into_inner());
    for target in variants() {
        let got = compile_and_run(
            m,
            &f.name,
            &x,
            &CompileOptions {
                pipeline: None,
                threads,
                target: &target,
                cache: None,
            },
        )
        .unwrap_or_else(|d| panic!("{target}: {d:?}"));
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(w.shape(), g.shape());
            let scale = w
                .iter()
                .fold(0f32, |a, v| a.max(v.abs()))
                .max(f32::MIN_POSITIVE);
            let worst = w
                .iter()
                .zip(g)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-4 * scale,
                "{target}, {threads} thread(s): off by {worst} (largest magnitude {scale})"
            );
        }
    }
}

#[test]
fn dense_layers_of_odd_sizes() {
    // 45 and 29 columns: partial panels at every width; 7 rows: a peeled row tile.
    check(
        &load(
            "func @f(%x: tensor<?x53xf32>, %w: tensor<45x53xf32>, %b: tensor<45xf32>, %v: tensor<29x45xf32>) -> tensor<?x29xf32> {
  %h = nn.linear %x, %w, %b : tensor<?x45xf32>
  %a = nn.relu %h : tensor<?x45xf32>
  %y = nn.linear %a, %v : tensor<?x29xf32>
  return %y : tensor<?x29xf32>
}",
        ),
        7,
        1,
    );
}

#[test]
fn convs_of_odd_sizes() {
    // 53 filters (peeled filter tiles), a 17 x 19 image (peeled position tiles), a padded 3 x 3
    // conv, then a 1 x 1 one, on two threads (the split depends on the vector width).
    check(
        &load(
            "func @f(%x: tensor<?x5x17x19xf32>, %w: tensor<53x5x3x3xf32>, %b: tensor<53xf32>, %v: tensor<11x53x1x1xf32>) -> tensor<?x11x17x19xf32> {
  %h = nn.conv2d %x, %w, %b {strides = [1, 1], pads = [1, 1, 1, 1], dilations = [1, 1], groups = 1} : tensor<?x53x17x19xf32>
  %a = nn.relu %h : tensor<?x53x17x19xf32>
  %y = nn.conv2d %a, %v {strides = [1, 1], pads = [0, 0, 0, 0], dilations = [1, 1], groups = 1} : tensor<?x11x17x19xf32>
  return %y : tensor<?x11x17x19xf32>
}",
        ),
        2,
        2,
    );
}

#[test]
fn depthwise_convs_and_pools_of_odd_sizes() {
    // A MobileNet block's depthwise convs (window.rs: border regions, the bias and ReLU6 fused)
    // at 37 channels, stride 1 then 2 on a 19 x 17 plane, a wide plane's interior rows
    // vectorized at each target's width; then a ceil-mode max pool and a padded average pool.
    check(
        &load(
            "func @f(%x: tensor<?x37x19x17xf32>, %w: tensor<37x1x3x3xf32>, %b: tensor<37xf32>, %v: tensor<37x1x3x3xf32>) -> tensor<?x37x3x2xf32> {
  %h = nn.conv2d %x, %w, %b {strides = [1, 1], pads = [1, 1, 1, 1], dilations = [1, 1], groups = 37} : tensor<?x37x19x17xf32>
  %a = nn.clip %h {min = 0.0, max = 6.0} : tensor<?x37x19x17xf32>
  %s = nn.conv2d %a, %v {strides = [2, 2], pads = [1, 1, 1, 1], dilations = [1, 1], groups = 37} : tensor<?x37x10x9xf32>
  %m = nn.max_pool2d %s {kernel = [3, 3], strides = [2, 2], pads = [0, 0, 0, 0], ceil_mode = true} : tensor<?x37x5x4xf32>
  %y = nn.avg_pool2d %m {kernel = [3, 3], strides = [2, 2], pads = [1, 1, 1, 1], ceil_mode = false, count_include_pad = false} : tensor<?x37x3x2xf32>
  return %y : tensor<?x37x3x2xf32>
}",
        ),
        2,
        2,
    );
}

/// `v` of `shape` (row-major) as a nested NNIR literal.
fn literal(v: &[f32], shape: &[usize]) -> String {
    match shape {
        [] => format!("{:?}", v[0]),
        [n, rest @ ..] => {
            let size = v.len() / n;
            let items: Vec<String> = v.chunks(size).map(|c| literal(c, rest)).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

#[test]
fn strided_convs_over_phases() {
    // Each weight kind of a strided conv's phase form, at odd sizes: an external weight (passed
    // packed), a constant (packed when lowered), an argument (permuted in the code); strides
    // (2, 2) and (3, 2), 3 x 3 and 5 x 5 kernels whose taps do not fill the phases.
    let mut s = 0x2545_f491u32;
    let mut draw = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    };
    let (a, bias, v) = (draw(11 * 5 * 9), draw(11), draw(7 * 11 * 25));
    let dir = tempfile::tempdir().unwrap();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (ab, bb) = (bytes(&a), bytes(&bias));
    let view =
        |shape, data| safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape, data);
    let views = vec![
        ("a.weight", view(vec![11, 5, 3, 3], &ab).unwrap()),
        ("a.bias", view(vec![11], &bb).unwrap()),
    ];
    safetensors::tensor::serialize_to_file(views, None, &dir.path().join("w.safetensors")).unwrap();
    let text = format!(
        "module attributes {{weights = \"w.safetensors\"}} {{
  func @f(%x: tensor<?x5x17x19xf32>, %u: tensor<6x7x3x3xf32>) -> tensor<?x6x2x3xf32> {{
    %w = nn.weight \"a.weight\" : tensor<11x5x3x3xf32>
    %b = nn.weight \"a.bias\" : tensor<11xf32>
    %h = nn.conv2d %x, %w, %b {{strides = [2, 2], pads = [1, 1, 1, 1]}} : tensor<?x11x9x10xf32>
    %r = nn.relu %h : tensor<?x11x9x10xf32>
    %v = nn.constant dense<{}> : tensor<7x11x5x5xf32>
    %g = nn.conv2d %r, %v {{strides = [2, 2], pads = [2, 2, 2, 2]}} : tensor<?x7x5x5xf32>
    %y = nn.conv2d %g, %u {{strides = [3, 2], pads = [1, 1, 1, 1]}} : tensor<?x6x2x3xf32>
    return %y : tensor<?x6x2x3xf32>
  }}
}}",
        literal(&v, &[7, 11, 5, 5])
    );
    let mut sources = SourceMap::new();
    let file = sources.add("phases.nnir", text.clone());
    let mut diags = Vec::new();
    let m = load::load(&text, file, 0, dir.path(), &mut diags)
        .unwrap_or_else(|| panic!("{}", sources.emit_to_string(&diags)));
    check(&m, 2, 1);
    check(&m, 2, 2);
}

#[test]
fn resnet_example_before_and_after_pruning() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/resnet.nnir"))
            .expect("examples/resnet.nnir");
    let m = load(&text);
    check(&m, 2, 1);
    let mut pruned = m.clone();
    let pipeline = passes::PassManager::parse(passes::PRUNE_PIPELINE, None).unwrap();
    let mut cx = passes::PassContext::default();
    assert!(pipeline
        .run(&mut pruned, true, &mut cx, |_, _, _| {})
        .is_ok());
    check(&pruned, 2, 1);
}

#[test]
fn attention_block_of_odd_sizes() {
    // A transformer block's ops at odd sizes: linears on 3-D inputs (their leading axes become
    // the packed layer's rows: 2 x 13 = 26, a peeled row tile; 21 and 37 columns, partial
    // panels), batched matmuls broadcasting a batch axis (QK^T, softmax . V with 13- and
    // 7-wide output rows, no whole vector), softmax and layer norm; on one and two threads.
    let m = load(
        "func @f(%x: tensor<?x13x21xf32>, %wq: tensor<21x21xf32>, %wk: tensor<21x21xf32>, %w1: tensor<37x21xf32>, %b1: tensor<37xf32>, %w2: tensor<21x37xf32>, %s: tensor<21xf32>, %v: tensor<1x13x7xf32>) -> (tensor<?x13x21xf32>, tensor<?x13x7xf32>) {
  %q = nn.linear %x, %wq : tensor<?x13x21xf32>
  %k = nn.linear %x, %wk : tensor<?x13x21xf32>
  %kt = nn.transpose %k {perm = [0, 2, 1]} : tensor<?x21x13xf32>
  %qk = nn.matmul %q, %kt : tensor<?x13x13xf32>
  %p = nn.softmax %qk {axis = -1} : tensor<?x13x13xf32>
  %pv = nn.matmul %p, %v : tensor<?x13x7xf32>
  %h = nn.linear %q, %w1, %b1 : tensor<?x13x37xf32>
  %r = nn.relu %h : tensor<?x13x37xf32>
  %o = nn.linear %r, %w2 : tensor<?x13x21xf32>
  %a = nn.add %o, %x : tensor<?x13x21xf32>
  %y = nn.layer_norm %a, %s, %s {axis = -1, epsilon = 1e-5} : tensor<?x13x21xf32>
  return %y, %pv : tensor<?x13x21xf32>, tensor<?x13x7xf32>
}",
    );
    check(&m, 2, 1);
    check(&m, 2, 2);
}

#[test]
fn decoder_norms_of_odd_sizes() {
    // A decoder's numeric ops at a width that is no whole vector (21): RMSNorm with a scale,
    // the rotary negation as a multiply by -1 and both GELU forms; on one and two threads.
    let m = load(
        "func @f(%x: tensor<?x13x21xf32>, %s: tensor<21xf32>, %w: tensor<37x21xf32>) -> (tensor<?x13x21xf32>, tensor<?x13x37xf32>, tensor<?x13x37xf32>) {
  %n = nn.rms_norm %x, %s {axis = -1, epsilon = 1e-6} : tensor<?x13x21xf32>
  %m1 = nn.constant dense<-1.0> : tensor<f32>
  %neg = nn.mul %n, %m1 : tensor<?x13x21xf32>
  %h = nn.linear %n, %w : tensor<?x13x37xf32>
  %g = nn.gelu %h {approximate = \"tanh\"} : tensor<?x13x37xf32>
  %e = nn.gelu %h : tensor<?x13x37xf32>
  return %neg, %g, %e : tensor<?x13x21xf32>, tensor<?x13x37xf32>, tensor<?x13x37xf32>
}",
    );
    check(&m, 2, 1);
    check(&m, 2, 2);
}

#[test]
fn embedding_into_a_tied_head_with_dynamic_batch_and_length() {
    // GPT-2's ends: token ids (both axes dynamic) read rows of a 37 x 21 table (a row is no
    // whole number of vectors), a dense layer, and the logits against the same table (a tied
    // head); on one and two threads, at two batch sizes.
    let m = load(
        "func @f(%ids: tensor<?x?xi64>, %t: tensor<37x21xf32>, %w: tensor<21x21xf32>, %b: tensor<21xf32>) -> tensor<?x?x37xf32> {
  %e = nn.embedding %t, %ids : tensor<?x?x21xf32>
  %h = nn.linear %e, %w, %b : tensor<?x?x21xf32>
  %g = nn.gelu %h : tensor<?x?x21xf32>
  %y = nn.linear %g, %t : tensor<?x?x37xf32>
  return %y : tensor<?x?x37xf32>
}",
    );
    check(&m, 3, 1);
    check(&m, 5, 2);
}
