//! ONNX import and export: models are built here with the prost messages, written to a
//! temporary directory, and fed to the library and to the `nnopt` binary.

mod common;
#[path = "common/onnx.rs"]
mod onnx_models;
use common::{nnopt, nnopt_ok};
use onnx_models::{f32_init, ints, model, node, write};

use bytes::Bytes;
use nnopt::onnx::export_model;
use nnopt::onnx::proto::{
    attr_type, data_type, AttributeProto, GraphProto, ModelProto, NodeProto,
    StringStringEntryProto, TensorProto, ValueInfoProto,
};
use prost::Message;
use std::path::Path;

/// Imports `p`, which must not draw a warning.
fn import_file_quiet(p: &Path) -> Result<nnopt::ir::Module, Box<nnopt::diag::Diagnostic>> {
    let mut warnings = Vec::new();
    let m = nnopt::onnx::import_file(p, &Default::default(), &mut warnings);
    assert!(warnings.is_empty(), "{warnings:?}");
    m.map_err(Box::new)
}

fn i64_init(name: &str, values: &[i64]) -> TensorProto {
    TensorProto {
        dims: vec![values.len() as i64],
        data_type: data_type::INT64,
        name: name.into(),
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// A float tensor with a dynamic dimension `N` where `dims` has a negative entry.
fn io(name: &str, dims: &[i64]) -> ValueInfoProto {
    let dims: Vec<Result<i64, &str>> = dims
        .iter()
        .map(|&d| if d < 0 { Err("N") } else { Ok(d) })
        .collect();
    onnx_models::io(name, &dims)
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INT,
        i,
        ..Default::default()
    }
}

/// Deterministic pseudo-random values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s >> 8) as f32 / (1u32 << 23) as f32 - 1.0
        })
        .collect()
}

/// A small CNN with exporter plumbing: Conv(pads) → Relu → MaxPool → Conv(depthwise) → Add
/// (residual) → GlobalAveragePool → Shape/Gather/Concat/Reshape flatten → MatMul + Add (fused
/// into nn.linear) → Gemm(transB) → Softmax; one conv has a dead (all-zero) filter.
fn cnn() -> ModelProto {
    let mut w1 = values(4 * 3 * 3 * 3, 1);
    for v in &mut w1[27..54] {
        *v = 0.0; // filter 1 is dead
    }
    let g = GraphProto {
        name: "cnn".into(),
        node: vec![
            node(
                "Conv",
                "conv1",
                &["x", "w1", "b1"],
                &["c1"],
                vec![ints("pads", &[1, 1, 1, 1]), ints("kernel_shape", &[3, 3])],
            ),
            node("Relu", "relu1", &["c1"], &["r1"], vec![]),
            node(
                "MaxPool",
                "pool",
                &["r1"],
                &["p1"],
                vec![ints("kernel_shape", &[2, 2]), ints("strides", &[2, 2])],
            ),
            node(
                "Conv",
                "dw",
                &["p1", "w2"],
                &["c2"],
                vec![int("group", 4), ints("pads", &[1, 1, 1, 1])],
            ),
            node("Add", "res", &["c2", "p1"], &["s"], vec![]),
            node("GlobalAveragePool", "gap", &["s"], &["g"], vec![]),
            node("Shape", "shape", &["g"], &["sh"], vec![]),
            node(
                "Gather",
                "gather",
                &["sh", "zero"],
                &["n"],
                vec![int("axis", 0)],
            ),
            node("Unsqueeze", "unsq", &["n", "zeros1"], &["n1"], vec![]),
            node(
                "Concat",
                "cat",
                &["n1", "minus1"],
                &["tgt"],
                vec![int("axis", 0)],
            ),
            node("Reshape", "flat", &["g", "tgt"], &["f"], vec![]),
            node("MatMul", "mm", &["f", "wm"], &["m"], vec![]),
            node("Add", "bias", &["m", "bm"], &["l"], vec![]),
            node(
                "Gemm",
                "fc",
                &["l", "wg", "bg"],
                &["y0"],
                vec![int("transB", 1)],
            ),
            node("Softmax", "sm", &["y0"], &["y"], vec![int("axis", 1)]),
        ],
        initializer: vec![
            f32_init("w1", &[4, 3, 3, 3], &w1),
            f32_init("b1", &[4], &values(4, 2)),
            f32_init("w2", &[4, 1, 3, 3], &values(36, 3)),
            TensorProto {
                dims: vec![],
                ..i64_init("zero", &[0])
            },
            i64_init("zeros1", &[0]),
            i64_init("minus1", &[-1]),
            f32_init("wm", &[4, 5], &values(20, 4)),
            f32_init("bm", &[5], &values(5, 5)),
            f32_init("wg", &[3, 5], &values(15, 6)),
            f32_init("bg", &[3], &values(3, 7)),
        ],
        input: vec![io("x", &[2, 3, 8, 8])],
        output: vec![io("y", &[2, 3])],
        ..Default::default()
    };
    model(g)
}

fn run_interp(m: &nnopt::ir::Module, x: &ndarray::ArrayD<f32>) -> Vec<ndarray::ArrayD<f32>> {
    nnopt::interp::run(&m.funcs[0], std::slice::from_ref(x)).expect("interpreter runs")
}

fn input() -> ndarray::ArrayD<f32> {
    ndarray::ArrayD::from_shape_vec(vec![2, 3, 8, 8], values(384, 9)).unwrap()
}

#[test]
fn import_maps_ops_folds_plumbing_and_keeps_weights_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "cnn.onnx", &cnn());
    let m = import_file_quiet(&p).expect("imports");
    let text = nnopt::syntax::printer::print_module(&m);
    // The shape plumbing folds to one flatten; MatMul + Add is one linear with a bias.
    assert!(!text.contains("nn.add %m"), "{text}");
    assert!(
        text.contains("%l = nn.linear %f, %wm, %bm : tensor<2x5xf32>"),
        "{text}"
    );
    // Even with a static batch the flatten stays an `nn.flatten` (pruning follows it).
    assert!(
        text.contains("nn.flatten %g {axis = 1} : tensor<2x4xf32>"),
        "{text}"
    );
    assert!(text.contains("groups = 4"), "{text}");
    let f = &m.funcs[0];
    let w1 = f
        .ops()
        .find_map(|op| match f.kind(op) {
            nnopt::ir::OpKind::Weight { name, value } if name == "w1" => Some(value.clone()),
            _ => None,
        })
        .expect("w1 is a weight");
    assert!(
        w1.is_mapped(),
        "raw_data is borrowed from the mapped model file"
    );
}

/// `nnopt export` streams the encoded model into the file: the bytes equal prost's in-memory
/// encoding, and a write error (a full device) is a diagnostic, not a panic.
#[test]
fn streamed_export_matches_the_encoding_and_reports_write_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "cnn.onnx", &cnn());
    let nnir = dir.path().join("cnn.nnir");
    nnopt_ok(&["import", p.to_str().unwrap(), "-o", nnir.to_str().unwrap()]);
    let back = dir.path().join("back.onnx");
    nnopt_ok(&[
        "export",
        nnir.to_str().unwrap(),
        "-o",
        back.to_str().unwrap(),
    ]);
    let m = import_file_quiet(&p).unwrap();
    assert_eq!(
        std::fs::read(&back).unwrap(),
        export_model(&m).unwrap().encode_to_vec()
    );
    if Path::new("/dev/full").exists() {
        let e =
            nnopt::onnx::write_onnx(&m, Path::new("/dev/full"), &Default::default()).unwrap_err();
        assert!(
            e.message.contains("cannot write /dev/full"),
            "{}",
            e.message
        );
    }
}

#[test]
fn pruned_weights_are_gathered_while_streaming_into_the_same_model() {
    use nnopt::passes;
    let dir = tempfile::tempdir().unwrap();
    // x → Gemm(6) → Relu → Gemm(3), hidden neuron 2 dead: both weights become views.
    let mut w1 = values(6 * 4, 3);
    w1[8..12].fill(0.0);
    let gemm =
        |n: &str, ins: &[&str], out: &str| node("Gemm", n, ins, &[out], vec![int("transB", 1)]);
    let g = GraphProto {
        name: "mlp".into(),
        node: vec![
            gemm("fc1", &["x", "w1", "b1"], "h"),
            node("Relu", "relu", &["h"], &["r"], vec![]),
            gemm("fc2", &["r", "w2", "b2"], "y"),
        ],
        initializer: vec![
            f32_init("w1", &[6, 4], &w1),
            f32_init("b1", &[6], &values(6, 4)),
            f32_init("w2", &[3, 6], &values(18, 5)),
            f32_init("b2", &[3], &values(3, 6)),
        ],
        input: vec![io("x", &[2, 4])],
        output: vec![io("y", &[2, 3])],
        ..Default::default()
    };
    let mut m = import_file_quiet(&write(dir.path(), "mlp.onnx", &model(g))).unwrap();
    let pipeline = passes::PassManager::parse(passes::PRUNE_PIPELINE, None).unwrap();
    let mut cx = passes::PassContext::default();
    pipeline.run(&mut m, true, &mut cx, |_, _, _| {}).unwrap();
    let out = dir.path().join("pruned.onnx");
    nnopt::onnx::write_onnx(&m, &out, &Default::default()).unwrap();
    let views = m.funcs[0]
        .ops()
        .filter(|&op| match m.funcs[0].kind(op) {
            nnopt::ir::OpKind::Constant(t) => t.raw_bytes().is_none() && !t.is_splat(),
            _ => false,
        })
        .count();
    assert!(
        views > 0,
        "pruning should leave views for the writer to gather"
    );
    let streamed = ModelProto::decode(std::fs::read(&out).unwrap().as_slice()).unwrap();
    let whole = export_model(&m).unwrap();
    assert_eq!(streamed.encoded_len(), whole.encoded_len());
    // The writer puts the gathered initializers (the pruned weights) last; nothing else moves.
    let (mut a, mut b) = (streamed, whole);
    for g in [a.graph.as_mut().unwrap(), b.graph.as_mut().unwrap()] {
        g.initializer.sort_by(|x, y| x.name.cmp(&y.name));
    }
    assert_eq!(a, b);
}

#[test]
fn export_then_import_computes_the_same_function() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "cnn.onnx", &cnn());
    let m = import_file_quiet(&p).unwrap();
    let out = export_model(&m).unwrap();
    let q = write(dir.path(), "again.onnx", &out);
    let m2 = import_file_quiet(&q).unwrap();
    let (a, b) = (run_interp(&m, &input()), run_interp(&m2, &input()));
    assert_eq!(a, b, "export + import is exact");
    // Softmax rows sum to one: the graph really ran end to end.
    let s: f32 = a[0].iter().take(3).sum();
    assert!((s - 1.0).abs() < 1e-5);
}

#[test]
fn cli_prunes_onnx_to_onnx_and_imports_to_nnir_with_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "cnn.onnx", &cnn());
    let pruned = dir.path().join("pruned.onnx");
    nnopt_ok(&[
        "--prune-neurons",
        p.to_str().unwrap(),
        "-o",
        pruned.to_str().unwrap(),
    ]);
    let (a, b) = (
        run_interp(&import_file_quiet(&p).unwrap(), &input()),
        run_interp(&import_file_quiet(&pruned).unwrap(), &input()),
    );
    for (x, y) in a[0].iter().zip(b[0].iter()) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1.0), "{x} vs {y}");
    }
    let nnir = dir.path().join("cnn.nnir");
    nnopt_ok(&["import", p.to_str().unwrap(), "-o", nnir.to_str().unwrap()]);
    let text = std::fs::read_to_string(&nnir).unwrap();
    assert!(text.contains("weights = \"cnn.safetensors\""), "{text}");
    assert!(
        text.contains("nn.weight \"w1\" : tensor<4x3x3x3xf32>"),
        "{text}"
    );
    assert!(dir.path().join("cnn.safetensors").exists());
    // The written pair reads back, and `run` takes both formats.
    nnopt_ok(&[nnir.to_str().unwrap()]);
    let xin = dir.path().join("x.npy");
    nnopt::interp::write_npy(&xin, &input()).unwrap();
    for (src, y) in [(&nnir, "y1.npy"), (&p, "y2.npy")] {
        let yp = dir.path().join(y);
        nnopt_ok(&[
            "run",
            "--interp",
            src.to_str().unwrap(),
            "--input",
            xin.to_str().unwrap(),
            "--output",
            yp.to_str().unwrap(),
        ]);
    }
    let y1 = nnopt::interp::read_npy(dir.path().join("y1.npy")).unwrap();
    let y2 = nnopt::interp::read_npy(dir.path().join("y2.npy")).unwrap();
    assert_eq!(y1, y2);
    // And export back from the .nnir.
    let back_onnx = dir.path().join("back.onnx");
    nnopt_ok(&[
        "export",
        nnir.to_str().unwrap(),
        "-o",
        back_onnx.to_str().unwrap(),
    ]);
    assert_eq!(
        run_interp(&import_file_quiet(&back_onnx).unwrap(), &input()),
        a
    );
}

/// Runs `nnopt import` on `m` (plus extra files) and checks: exit 1, stderr mentions each of
/// `needles`, and no output file appears.
fn refused(bytes: &[u8], extra: &[(&str, &[u8])], needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("model");
    std::fs::create_dir(&sub).unwrap();
    let p = sub.join("m.onnx");
    std::fs::write(&p, bytes).unwrap();
    for (name, data) in extra {
        std::fs::write(dir.path().join(name), data).unwrap();
    }
    let o = sub.join("m.nnir");
    let out = nnopt(&["import", p.to_str().unwrap(), "-o", o.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    assert!(
        !o.exists() && !sub.join("m.safetensors").exists(),
        "nothing is written"
    );
}

fn relu_model(init: Vec<TensorProto>, nodes: Vec<NodeProto>) -> ModelProto {
    model(GraphProto {
        name: "g".into(),
        node: nodes,
        initializer: init,
        input: vec![io("x", &[1, 4])],
        output: vec![io("y", &[1, 4])],
        ..Default::default()
    })
}

#[test]
fn truncated_and_corrupt_protobuf_is_refused() {
    let bytes = cnn().encode_to_vec();
    refused(&bytes[..bytes.len() / 2], &[], &["not a valid ONNX model"]);
    refused(
        &[0xff, 0xff, 0xff, 0xff, 0x0f, 0x01],
        &[],
        &["not a valid ONNX model"],
    );
}

#[test]
fn external_data_outside_the_model_folder_is_refused() {
    let mut t = f32_init("w", &[4], &[0.0; 4]);
    t.raw_data = Bytes::new();
    t.data_location = 1;
    t.external_data = vec![StringStringEntryProto {
        key: "location".into(),
        value: "../secret.bin".into(),
    }];
    let m = relu_model(
        vec![t],
        vec![node("Add", "add", &["x", "w"], &["y"], vec![])],
    );
    refused(
        &m.encode_to_vec(),
        &[("secret.bin", &[0u8; 16])],
        &["'w'", "leaves the model's directory"],
    );
}

#[test]
fn external_data_inside_the_folder_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let mut blob = vec![0u8; 8];
    blob.extend(&data);
    std::fs::write(dir.path().join("w.bin"), &blob).unwrap();
    let mut t = f32_init("w", &[4], &[]);
    t.raw_data = Bytes::new();
    t.data_location = 1;
    let kv = |k: &str, v: &str| StringStringEntryProto {
        key: k.into(),
        value: v.into(),
    };
    t.external_data = vec![
        kv("location", "w.bin"),
        kv("offset", "8"),
        kv("length", "16"),
    ];
    let m = relu_model(
        vec![t],
        vec![node("Add", "add", &["x", "w"], &["y"], vec![])],
    );
    let p = write(dir.path(), "m.onnx", &m);
    let module = import_file_quiet(&p).unwrap();
    let x = ndarray::ArrayD::from_shape_vec(vec![1, 4], vec![0.5f32; 4]).unwrap();
    let y = nnopt::interp::run(&module.funcs[0], &[x]).unwrap();
    assert_eq!(
        y[0].iter().copied().collect::<Vec<_>>(),
        [1.5, 2.5, 3.5, 4.5]
    );
}

#[test]
fn initializer_length_disagreeing_with_its_shape_is_refused() {
    let t = f32_init("w", &[4], &[1.0, 2.0, 3.0]);
    let m = relu_model(
        vec![t],
        vec![node("Add", "add", &["x", "w"], &["y"], vec![])],
    );
    refused(
        &m.encode_to_vec(),
        &[],
        &["initializer 'w'", "12 bytes", "needs 16"],
    );
}

#[test]
fn unknown_data_types_are_refused() {
    let mut t = f32_init("w", &[4], &[1.0; 4]);
    t.data_type = 42;
    let m = relu_model(
        vec![t],
        vec![node("Add", "add", &["x", "w"], &["y"], vec![])],
    );
    refused(
        &m.encode_to_vec(),
        &[],
        &["initializer 'w'", "has an unknown data type (42)"],
    );
}

#[test]
fn cycles_are_refused_naming_a_node() {
    let m = relu_model(
        vec![],
        vec![
            node("Add", "a", &["x", "b_out"], &["a_out"], vec![]),
            node("Relu", "b", &["a_out"], &["b_out"], vec![]),
            node("Relu", "c", &["b_out"], &["y"], vec![]),
        ],
    );
    refused(
        &m.encode_to_vec(),
        &[],
        &["node 'a' (Add, opset 17)", "cycle"],
    );
}

#[test]
fn missing_inputs_are_refused_naming_the_node() {
    let m = relu_model(
        vec![],
        vec![node("Add", "add1", &["x", "nowhere"], &["y"], vec![])],
    );
    refused(
        &m.encode_to_vec(),
        &[],
        &["node 'add1' (Add, opset 17)", "'nowhere'"],
    );
}

#[test]
fn unsupported_operators_and_attributes_name_the_node() {
    let m = relu_model(vec![], vec![node("Hardmax", "hm1", &["x"], &["y"], vec![])]);
    refused(
        &m.encode_to_vec(),
        &[],
        &["node 'hm1' (Hardmax, opset 17)", "not supported"],
    );
    let m = relu_model(
        vec![],
        vec![node("Relu", "r", &["x"], &["y"], vec![int("bogus", 1)])],
    );
    refused(
        &m.encode_to_vec(),
        &[],
        &["node 'r' (Relu, opset 17)", "attribute 'bogus'"],
    );
}

#[test]
fn ir_versions_and_opsets_of_onnx_1_22_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = relu_model(vec![], vec![node("Relu", "r", &["x"], &["y"], vec![])]);
    m.ir_version = 13;
    m.opset_import[0].version = 27;
    let p = write(dir.path(), "ir13.onnx", &m);
    let o = dir.path().join("ir13.nnir");
    let out = nnopt_ok(&["import", p.to_str().unwrap(), "-o", o.to_str().unwrap()]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(o.exists());
}

#[test]
fn newer_ir_versions_warn_and_newer_or_older_opsets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = relu_model(vec![], vec![node("Relu", "r", &["x"], &["y"], vec![])]);
    m.ir_version = 14;
    let p = write(dir.path(), "ir14.onnx", &m);
    let o = dir.path().join("ir14.nnir");
    let out = nnopt_ok(&["import", p.to_str().unwrap(), "-o", o.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: ONNX IR version 14 is newer than the newest nnopt knows (13)"),
        "{err}"
    );
    assert!(o.exists());
    let mut m = relu_model(vec![], vec![node("Relu", "r", &["x"], &["y"], vec![])]);
    m.opset_import[0].version = 28;
    refused(
        &m.encode_to_vec(),
        &[],
        &["opset 28 of the default domain is newer than the newest nnopt knows (27)"],
    );
    let mut m = relu_model(vec![], vec![node("Relu", "r", &["x"], &["y"], vec![])]);
    m.opset_import[0].version = 7;
    refused(&m.encode_to_vec(), &[], &["opset 7"]);
}

#[test]
fn dynamic_batch_flatten_plumbing_becomes_nn_flatten() {
    // x.view(x.size(0), -1) with a dynamic batch: Shape gives a symbolic dim that the Reshape
    // recognises as a copy of its own input's batch.
    let mut m = cnn();
    let g = m.graph.as_mut().unwrap();
    g.input = vec![io("x", &[-1, 3, 8, 8])];
    g.output = vec![io("y", &[-1, 3])];
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "dyn.onnx", &m);
    let module = import_file_quiet(&p).expect("imports");
    let text = nnopt::syntax::printer::print_module(&module);
    assert!(
        text.contains("nn.flatten %g {axis = 1} : tensor<?x4xf32>"),
        "{text}"
    );
    let q = write(dir.path(), "static.onnx", &cnn());
    assert_eq!(
        run_interp(&module, &input()),
        run_interp(&import_file_quiet(&q).unwrap(), &input())
    );
    // Arithmetic on the symbolic dim is refused, naming the node.
    let g = m.graph.as_mut().unwrap();
    g.node[8] = node("Add", "bad", &["n", "zeros1"], &["n1"], vec![]);
    let r = write(dir.path(), "bad.onnx", &m);
    let err = import_file_quiet(&r).unwrap_err();
    assert!(
        err.message.contains("node 'bad' (Add, opset 17)")
            && err.message.contains("dynamic dimension"),
        "{}",
        err.message
    );
}

#[test]
fn division_by_a_power_of_two_is_an_exact_multiplication() {
    let dir = tempfile::tempdir().unwrap();
    let div = |c: f32| {
        relu_model(
            vec![f32_init("c", &[], &[c])],
            vec![node("Div", "scale", &["x", "c"], &["y"], vec![])],
        )
    };
    let p = write(dir.path(), "d.onnx", &div(8.0));
    let m = import_file_quiet(&p).unwrap();
    let xs = vec![0.3f32, -1.7, 1e-30, 3.0e38];
    let x = ndarray::ArrayD::from_shape_vec(vec![1, 4], xs.clone()).unwrap();
    let y = nnopt::interp::run(&m.funcs[0], &[x]).unwrap();
    let want: Vec<f32> = xs.iter().map(|v| v / 8.0).collect();
    assert_eq!(y[0].iter().copied().collect::<Vec<_>>(), want);
    let q = write(dir.path(), "e.onnx", &div(3.0));
    let err = import_file_quiet(&q).unwrap_err();
    assert!(
        err.message.contains("node 'scale' (Div, opset 17)")
            && err.message.contains("powers of two"),
        "{}",
        err.message
    );
}

/// GAP → `Reshape(x, [2, -1])` → Gemm, as the dynamo exporter writes `torch.flatten(x, 1)`:
/// imported as `nn.flatten`, so a dead conv channel with a positive constant output folds into
/// the classifier's bias and its column goes (through `nn.reshape` it needed a scatter).
#[test]
fn static_flatten_reshape_lets_pruning_reach_the_classifier() {
    let mut w = values(4 * 3, 11);
    w[3..6].fill(0.0); // filter 1 is dead; its bias 0.5 survives the relu
    let g = GraphProto {
        name: "head".into(),
        node: vec![
            node("Conv", "conv", &["x", "w", "b"], &["c"], vec![]),
            node("Relu", "relu", &["c"], &["r"], vec![]),
            node("GlobalAveragePool", "gap", &["r"], &["p"], vec![]),
            node("Reshape", "view", &["p", "shape"], &["f"], vec![]),
            node(
                "Gemm",
                "fc",
                &["f", "wg", "bg"],
                &["y"],
                vec![int("transB", 1)],
            ),
        ],
        initializer: vec![
            f32_init("w", &[4, 3, 1, 1], &w),
            f32_init("b", &[4], &[0.1, 0.5, -0.2, 0.3]),
            i64_init("shape", &[2, -1]),
            f32_init("wg", &[3, 4], &values(12, 12)),
            f32_init("bg", &[3], &values(3, 13)),
        ],
        input: vec![io("x", &[2, 3, 4, 4])],
        output: vec![io("y", &[2, 3])],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "head.onnx", &model(g));
    let pruned = dir.path().join("pruned.onnx");
    nnopt_ok(&[
        "--prune-neurons",
        "--round-to=1",
        p.to_str().unwrap(),
        "-o",
        pruned.to_str().unwrap(),
    ]);
    let m = import_file_quiet(&pruned).unwrap();
    let text = nnopt::syntax::printer::print_module(&m);
    assert!(!text.contains("nn.scatter"), "{text}");
    assert!(text.contains(": tensor<3x3xf32>"), "{text}");
    let x = ndarray::ArrayD::from_shape_vec(vec![2, 3, 4, 4], values(96, 14)).unwrap();
    let (a, b) = (
        run_interp(&import_file_quiet(&p).unwrap(), &x),
        run_interp(&m, &x),
    );
    for (x, y) in a[0].iter().zip(b[0].iter()) {
        assert!((x - y).abs() <= 1e-6 * x.abs().max(1.0), "{x} vs {y}");
    }
}

/// HardSigmoid (MobileNetV3's gate, alpha = 1/6) is a mul, an add and a clip: exactly the
/// ONNX definition max(0, min(1, alpha·x + beta)), each step rounded.
#[test]
fn hard_sigmoid_is_an_exact_mul_add_clip() {
    let alpha = 1.0f32 / 6.0;
    let m = relu_model(
        vec![],
        vec![node(
            "HardSigmoid",
            "hs",
            &["x"],
            &["y"],
            vec![AttributeProto {
                name: "alpha".into(),
                r#type: attr_type::FLOAT,
                f: alpha,
                ..Default::default()
            }],
        )],
    );
    let dir = tempfile::tempdir().unwrap();
    let module = import_file_quiet(&write(dir.path(), "hs.onnx", &m)).unwrap();
    let xs = vec![-4.0f32, -0.3, 0.7001, 1e30];
    let x = ndarray::ArrayD::from_shape_vec(vec![1, 4], xs.clone()).unwrap();
    let want: Vec<f32> = xs
        .iter()
        .map(|&v| (alpha * v + 0.5).clamp(0.0, 1.0))
        .collect();
    let got = run_interp(&module, &x);
    assert_eq!(got[0].iter().copied().collect::<Vec<_>>(), want);
}

/// TorchScript's MultiheadAttention: the head split reshapes to `Shape(x)[0 : 2 % 3] ++ [d]`
/// and the scale is `sqrt(1 / sqrt(float(Shape(q)[-1:])))`. All of it folds at import (Mod,
/// Slice, Sqrt, a Div of constants); what remains is the multiplication by 0.5.
#[test]
fn torchscript_attention_shape_plumbing_folds() {
    let cast = int("to", data_type::FLOAT as i64);
    let g = GraphProto {
        name: "attn".into(),
        node: vec![
            node("Shape", "shape", &["x"], &["s"], vec![]),
            node("Mod", "mod", &["two", "three"], &["m"], vec![]),
            node("Slice", "front", &["s", "zero", "m"], &["sf"], vec![]),
            node("Concat", "cat", &["sf", "d"], &["t"], vec![int("axis", 0)]),
            node("Reshape", "split", &["x", "t"], &["r"], vec![]),
            node("Slice", "last", &["s", "minus1", "big"], &["sl"], vec![]),
            node("Cast", "cast", &["sl"], &["lf"], vec![cast]),
            node("Sqrt", "sqrt", &["lf"], &["sq"], vec![]),
            node("Div", "inv", &["one", "sq"], &["iv"], vec![]),
            node("Sqrt", "sqrt2", &["iv"], &["h"], vec![]),
            node("Mul", "scale", &["r", "h"], &["y"], vec![]),
        ],
        initializer: vec![
            i64_init("two", &[2]),
            i64_init("three", &[3]),
            i64_init("zero", &[0]),
            i64_init("d", &[16]),
            i64_init("minus1", &[-1]),
            i64_init("big", &[i64::MAX]),
            f32_init("one", &[1], &[1.0]),
        ],
        input: vec![io("x", &[2, 4, 16])],
        output: vec![io("y", &[2, 4, 16])],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let module = import_file_quiet(&write(dir.path(), "attn.onnx", &model(g))).unwrap();
    let text = nnopt::syntax::printer::print_module(&module);
    assert!(!text.contains("nn.reshape"), "{text}");
    let x = ndarray::ArrayD::from_shape_vec(vec![2, 4, 16], values(128, 15)).unwrap();
    let y = run_interp(&module, &x);
    assert_eq!(y[0], x.mapv(|v| v * 0.5));
}

#[test]
fn shape_folding_ops_on_activations_are_refused_naming_the_node() {
    let m = relu_model(vec![], vec![node("Sqrt", "sq", &["x"], &["y"], vec![])]);
    refused(
        &m.encode_to_vec(),
        &[],
        &["node 'sq' (Sqrt, opset 17)", "no square root"],
    );
    // The mask plumbing folds on constants only (`x` is a run-time input).
    let m = relu_model(
        vec![i64_init("zero", &[0])],
        vec![node("Equal", "eq", &["x", "zero"], &["y"], vec![])],
    );
    refused(
        &m.encode_to_vec(),
        &[],
        &[
            "node 'eq' (Equal, opset 17)",
            "input 'x' is computed at run time",
        ],
    );
    let m = relu_model(
        vec![i64_init("a", &[5]), i64_init("b", &[0])],
        vec![
            node("Mod", "mod", &["a", "b"], &["m"], vec![]),
            node("Reshape", "r", &["x", "m"], &["y"], vec![]),
        ],
    );
    refused(
        &m.encode_to_vec(),
        &[],
        &["node 'mod' (Mod, opset 17)", "division by zero"],
    );
}

#[test]
fn bool_initializers_are_integer_constants_of_zero_and_one() {
    let to = |t: i32| int("to", t as i64);
    // One BOOL tensor as raw bytes (any non-zero byte is true), one in `int32_data`.
    let raw = TensorProto {
        dims: vec![4],
        data_type: data_type::BOOL,
        name: "raw".into(),
        raw_data: vec![1, 0, 7, 0].into(),
        ..Default::default()
    };
    let typed = TensorProto {
        dims: vec![4],
        data_type: data_type::BOOL,
        name: "typed".into(),
        int32_data: vec![0, 0, 1, 3],
        ..Default::default()
    };
    let m = relu_model(
        vec![raw, typed, i64_init("minus2", &[0, -2, 2, 0])],
        vec![
            node("Cast", "b", &["minus2"], &["nz"], vec![to(data_type::BOOL)]),
            node("Cast", "f1", &["raw"], &["rf"], vec![to(data_type::FLOAT)]),
            node(
                "Cast",
                "f2",
                &["typed"],
                &["tf"],
                vec![to(data_type::FLOAT)],
            ),
            node("Cast", "f3", &["nz"], &["nf"], vec![to(data_type::FLOAT)]),
            node("Add", "a1", &["x", "rf"], &["s1"], vec![]),
            node("Mul", "m1", &["s1", "tf"], &["s2"], vec![]),
            node("Add", "a2", &["s2", "nf"], &["y"], vec![]),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let module = import_file_quiet(&write(dir.path(), "bool.onnx", &m)).unwrap();
    let x = ndarray::ArrayD::from_shape_vec(vec![1, 4], vec![0.5, 1.5, 2.5, 3.5]).unwrap();
    // (x + [1, 0, 1, 0]) · [0, 0, 1, 1] + [0, 1, 1, 0]
    let want = ndarray::ArrayD::from_shape_vec(vec![1, 4], vec![0.0, 1.0, 4.5, 3.5]).unwrap();
    assert_eq!(run_interp(&module, &x)[0], want);
}

/// `io` with element type INT64 (token ids).
fn int64_io(name: &str, dims: &[i64]) -> ValueInfoProto {
    let mut v = io(name, dims);
    if let Some(nnopt::onnx::proto::type_proto::Value::TensorType(t)) =
        v.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = data_type::INT64;
    }
    v
}

#[test]
fn token_ids_gather_an_embedding_and_survive_export() {
    let g = GraphProto {
        name: "emb".into(),
        node: vec![
            node("Gather", "embed", &["table", "ids"], &["e"], vec![]),
            node("Relu", "r", &["e"], &["y"], vec![]),
        ],
        initializer: vec![f32_init("table", &[5, 2], &values(10, 3))],
        input: vec![int64_io("ids", &[-1, 3])],
        output: vec![io("y", &[-1, 3, 2])],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let m = import_file_quiet(&write(dir.path(), "emb.onnx", &model(g))).unwrap();
    let text = nnopt::syntax::printer::print_module(&m);
    assert!(
        text.contains("nn.embedding %table, %ids : tensor<?x3x2xf32>"),
        "{text}"
    );
    assert!(text.contains("%ids: tensor<?x3xi64>"), "{text}");
    let ids =
        ndarray::ArrayD::from_shape_vec(vec![2, 3], vec![4.0, 0.0, 1.0, 1.0, 3.0, 2.0]).unwrap();
    let y = run_interp(&m, &ids);
    let table = values(10, 3);
    let want: Vec<f32> = [4, 0, 1, 1, 3, 2]
        .iter()
        .flat_map(|&r| table[2 * r..2 * r + 2].iter().map(|v| v.max(0.0)))
        .collect();
    assert_eq!(y[0].iter().copied().collect::<Vec<_>>(), want);
    // Written back as Gather on an INT64 input, and read again to the same function.
    let again = write(dir.path(), "again.onnx", &export_model(&m).unwrap());
    let m2 = import_file_quiet(&again).unwrap();
    assert_eq!(run_interp(&m2, &ids), y);
}

#[test]
fn view_minus_one_by_a_copied_length_keeps_both_dynamic_dims() {
    // GPT-2's `input_ids.view(-1, S)`: S is copied by Shape, so the -1 is the batch.
    let g = |target: &[&str]| GraphProto {
        name: "view".into(),
        node: vec![
            node(
                "Shape",
                "s",
                &["ids"],
                &["len"],
                vec![int("start", 1), int("end", 2)],
            ),
            node("Concat", "c", target, &["shape"], vec![int("axis", 0)]),
            node("Reshape", "view", &["ids", "shape"], &["v"], vec![]),
            node("Gather", "embed", &["table", "v"], &["y"], vec![]),
        ],
        initializer: vec![
            f32_init("table", &[5, 2], &values(10, 3)),
            i64_init("minus1", &[-1]),
            i64_init("two", &[2]),
        ],
        input: vec![int64_io("ids", &[-1, -1])],
        output: vec![io("y", &[-1, -1, 2])],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let m = import_file_quiet(&write(
        dir.path(),
        "view.onnx",
        &model(g(&["minus1", "len"])),
    ))
    .unwrap();
    let text = nnopt::syntax::printer::print_module(&m);
    assert!(
        text.contains("nn.embedding %table, %ids : tensor<?x?x2xf32>"),
        "{text}"
    );
    // [-1, 2] of [?, ?] leaves two dynamic dimensions for one -1: refused, naming the node.
    let bad = write(dir.path(), "bad.onnx", &model(g(&["minus1", "two"])));
    let err = import_file_quiet(&bad).unwrap_err();
    assert!(
        err.message.contains("node 'view' (Reshape") && err.message.contains("dynamic"),
        "{}",
        err.message
    );
}

#[test]
fn plumbing_on_a_pinned_dimension_folds_and_an_unpinned_one_is_named() {
    // y = x + arange(N) as a column: Range on the dynamic N needs N's size.
    let to_float = vec![int("to", data_type::FLOAT as i64)];
    let g = GraphProto {
        name: "rows".into(),
        node: vec![
            node("Shape", "s", &["x"], &["shape"], vec![int("end", 1)]),
            node("Squeeze", "sq", &["shape"], &["n"], vec![]),
            node("Range", "arange", &["zero", "n", "one"], &["r"], vec![]),
            node("Cast", "c", &["r"], &["rf"], to_float),
            node("Unsqueeze", "u", &["rf", "one"], &["col"], vec![]),
            node("Add", "a", &["x", "col"], &["y"], vec![]),
        ],
        initializer: vec![i64_init("zero", &[0]), i64_init("one", &[1])],
        input: vec![io("x", &[-1, 4])],
        output: vec![io("y", &[-1, 4])],
        ..Default::default()
    };
    let m = model(g);
    refused(
        &m.encode_to_vec(),
        &[],
        &[
            "node 'arange' (Range, opset 17): the value depends on a dynamic dimension",
            "the dimension is 'N' (axis 0 of graph input 'x'): --dim N=SIZE gives it a size",
            // Imported at N = 2 and 3, the column differs along N.
            "N cannot stay dynamic: 'nn.weight' %col: its value varies along axis 0",
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let pinned = nnopt::onnx::ImportOptions {
        dims: vec![("N".into(), 3)],
    };
    let p = write(dir.path(), "rows.onnx", &m);
    let module = nnopt::onnx::import_file(&p, &pinned, &mut Vec::new()).unwrap();
    let x = ndarray::ArrayD::from_elem(vec![3, 4], 0.5f32);
    let want = ndarray::ArrayD::from_shape_fn(vec![3, 4], |i| 0.5 + i[0] as f32);
    assert_eq!(run_interp(&module, &x)[0], want);
}

#[test]
fn plumbing_invariant_along_an_unpinned_dimension_keeps_it_dynamic() {
    // y = x + (zeros([N, 4]) + b): the bias is the same in every row, so N stays
    // dynamic and the bias keeps size 1 along it (imported at N = 2 and N = 3, then merged).
    let g = |op: &str, axis: Vec<AttributeProto>, y: &[i64]| GraphProto {
        name: "rows".into(),
        node: vec![
            node("Shape", "s", &["x"], &["n"], vec![int("end", 1)]),
            node(
                "Concat",
                "c",
                &["n", "four"],
                &["target"],
                vec![int("axis", 0)],
            ),
            node("ConstantOfShape", "zeros", &["target"], &["z"], vec![]),
            node("Add", "e", &["z", "b"], &["bias"], vec![]),
            node(op, "use", &["x", "bias"], &["y"], axis),
        ],
        initializer: vec![
            f32_init("b", &[1, 4], &values(4, 7)),
            i64_init("four", &[4]),
        ],
        input: vec![io("x", &[-1, 4])],
        output: vec![io("y", y)],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "rows.onnx", &model(g("Add", vec![], &[-1, 4])));
    let m = import_file_quiet(&p).unwrap();
    let text = nnopt::syntax::printer::print_module(&m);
    assert!(
        text.contains("nn.weight \"bias\" : tensor<1x4xf32>"),
        "{text}"
    );
    assert!(
        text.contains("nn.add %x, %bias : tensor<?x4xf32>"),
        "{text}"
    );
    let b = values(4, 7);
    for n in [1, 5] {
        let x = ndarray::ArrayD::from_shape_fn(vec![n, 4], |i| i[0] as f32);
        let want = ndarray::ArrayD::from_shape_fn(vec![n, 4], |i| i[0] as f32 + b[i[1]]);
        assert_eq!(run_interp(&m, &x)[0], want);
    }
    // A concat along the other axis needs the bias's real size along N: refused, with the
    // diagnostic of the unpinned import and why N cannot stay dynamic.
    let bad = model(g("Concat", vec![int("axis", 1)], &[-1, 8]));
    refused(
        &bad.encode_to_vec(),
        &[],
        &[
            "node 'zeros' (ConstantOfShape, opset 17): ",
            "N cannot stay dynamic: 'nn.concat' %y",
        ],
    );
}
