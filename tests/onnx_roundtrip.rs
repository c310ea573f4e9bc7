//! ONNX round trips keep what the user had: `MatMul` weights in their [in, out] layout, `Gemm`
//! as `Gemm`, `dim_param` names, doc strings, `metadata_props` and node names (through name
//! locations, also when pruned).

mod common;
#[path = "common/onnx.rs"]
// `ints` builds attributes these round trips do not set.
#[allow(dead_code)]
mod onnx_models;
use common::nnopt_ok;
use onnx_models::{f32_init, io, model, node, write};

use nnopt::onnx::proto::{
    tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto, StringStringEntryProto,
    ValueInfoProto,
};
use prost::Message;
use std::path::Path;

fn read(p: &Path) -> ModelProto {
    ModelProto::decode(std::fs::read(p).unwrap().as_slice()).unwrap()
}

/// Deterministic values in [-1, 1), with every `dead`-th column of a [rows, cols] matrix zero.
fn matrix(rows: usize, cols: usize, dead: usize) -> Vec<f32> {
    (0..rows * cols)
        .map(|i| {
            if (i % cols).is_multiple_of(dead) {
                0.0
            } else {
                ((i * 37 % 23) as f32 / 11.5) - 1.0
            }
        })
        .collect()
}

/// A transformer-style FFN on [`batch`, 3, 4]: MatMul + Add → Relu → MatMul + Add, with hidden
/// neurons 0 and 3 dead (zero weights, negative bias), and the metadata a user may have set.
fn ffn(batch: Result<i64, &str>) -> ModelProto {
    let (dm, hid) = (4usize, 6usize);
    let b1: Vec<f32> = (0..hid)
        .map(|j| if j % 3 == 0 { -0.5 } else { 0.25 })
        .collect();
    let mut m = model(GraphProto {
        name: "ffn".into(),
        doc_string: "the graph's doc".into(),
        node: vec![
            node("MatMul", "fc1/MatMul", &["x", "w1"], &["m1"], vec![]),
            node("Add", "fc1/Add", &["m1", "b1"], &["h1"], vec![]),
            node("Relu", "act", &["h1"], &["a1"], vec![]),
            node("MatMul", "fc2/MatMul", &["a1", "w2"], &["m2"], vec![]),
            node("Add", "fc2/Add", &["m2", "b2"], &["y"], vec![]),
        ],
        initializer: vec![
            f32_init("w1", &[dm as i64, hid as i64], &matrix(dm, hid, 3)),
            f32_init("b1", &[hid as i64], &b1),
            f32_init("w2", &[hid as i64, dm as i64], &matrix(hid, dm, 5)),
            f32_init("b2", &[dm as i64], &[0.5, -0.25, 0.125, 1.0]),
        ],
        input: vec![io("x", &[batch, Ok(3), Ok(dm as i64)])],
        output: vec![io("y", &[batch, Ok(3), Ok(dm as i64)])],
        ..Default::default()
    });
    m.doc_string = "the model's doc".into();
    m.metadata_props = vec![StringStringEntryProto {
        key: "author".into(),
        value: "someone".into(),
    }];
    m
}

fn dim_params(vi: &ValueInfoProto) -> Vec<String> {
    use tensor_shape_proto::dimension::Value;
    let Some(type_proto::Value::TensorType(t)) = vi.r#type.as_ref().and_then(|t| t.value.clone())
    else {
        panic!("not a tensor")
    };
    t.shape
        .unwrap()
        .dim
        .iter()
        .map(|d| match &d.value {
            Some(Value::DimParam(p)) => p.clone(),
            Some(Value::DimValue(n)) => n.to_string(),
            None => "?".into(),
        })
        .collect()
}

#[test]
fn matmul_weights_dim_params_and_metadata_survive_a_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let src = ffn(Err("batch"));
    let p = write(dir.path(), "ffn.onnx", &src);
    let nnir = dir.path().join("ffn.nnir");
    nnopt_ok(&["import", p.to_str().unwrap(), "-o", nnir.to_str().unwrap()]);
    let q = dir.path().join("back.onnx");
    nnopt_ok(&["export", nnir.to_str().unwrap(), "-o", q.to_str().unwrap()]);
    let back = read(&q);
    let g = back.graph.as_ref().unwrap();
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(
        ops,
        ["MatMul", "Add", "Relu", "MatMul", "Add"],
        "no Transpose"
    );
    // The MatMul weights are the original initializers, [in, out], byte for byte.
    let sg = src.graph.as_ref().unwrap();
    for (k, w) in [(0, "w1"), (3, "w2")] {
        assert_eq!(g.node[k].input[1], w);
        let find = |g: &GraphProto| g.initializer.iter().find(|t| t.name == w).unwrap().clone();
        let (a, b) = (find(g), find(sg));
        assert_eq!((&a.dims, &a.raw_data), (&b.dims, &b.raw_data), "{w}");
    }
    assert_eq!(dim_params(&g.input[0]), ["batch", "3", "4"]);
    assert_eq!(dim_params(&g.output[0]), ["batch", "3", "4"]);
    assert_eq!(back.producer_name, "nnopt");
    assert_eq!(back.doc_string, "the model's doc");
    assert_eq!(g.doc_string, "the graph's doc");
    assert_eq!(g.name, "ffn");
    assert_eq!(back.metadata_props, src.metadata_props);
}

/// Pruning keeps a `MatMul`-origin linear a `MatMul` on an initializer already in the [in, out]
/// layout (no runtime `Transpose`): hidden neurons 0 and 3 go from `w1`'s columns and `w2`'s
/// rows, and every node of the original is still one node.
#[test]
fn pruned_matmul_linears_stay_matmul_on_pre_transposed_initializers() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "ffn.onnx", &ffn(Err("batch")));
    let q = dir.path().join("pruned.onnx");
    // Without alignment, which would keep the 6-neuron hidden layer whole.
    nnopt_ok(&[
        "--prune-neurons",
        "--round-to=1",
        p.to_str().unwrap(),
        "-o",
        q.to_str().unwrap(),
    ]);
    let g = read(&q).graph.unwrap();
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["MatMul", "Add", "Relu", "MatMul", "Add"]);
    let dims = |name: &str| {
        let t = g.initializer.iter().find(|t| t.name == name);
        t.unwrap_or_else(|| panic!("{name} is not an initializer"))
            .dims
            .clone()
    };
    assert_eq!(dims(&g.node[0].input[1]), [4, 4]);
    assert_eq!(dims(&g.node[3].input[1]), [4, 4]);
}

#[test]
fn a_two_dimensional_gemm_stays_gemm() {
    let dir = tempfile::tempdir().unwrap();
    let transb = AttributeProto {
        name: "transB".into(),
        r#type: nnopt::onnx::proto::attr_type::INT,
        i: 1,
        ..Default::default()
    };
    let m = model(GraphProto {
        name: "g".into(),
        node: vec![node("Gemm", "fc", &["x", "w", "b"], &["y"], vec![transb])],
        initializer: vec![
            f32_init("w", &[3, 4], &matrix(3, 4, 7)),
            f32_init("b", &[3], &[1.0, 2.0, 3.0]),
        ],
        input: vec![io("x", &[Err("n"), Ok(4)])],
        output: vec![io("y", &[Err("n"), Ok(3)])],
        ..Default::default()
    });
    let p = write(dir.path(), "gemm.onnx", &m);
    let q = dir.path().join("out.onnx");
    nnopt_ok(&[
        "--prune-neurons",
        p.to_str().unwrap(),
        "-o",
        q.to_str().unwrap(),
    ]);
    let g = read(&q).graph.unwrap();
    let ops: Vec<&str> = g.node.iter().map(|n| n.op_type.as_str()).collect();
    assert_eq!(ops, ["Gemm"]);
    assert_eq!(dim_params(&g.input[0]), ["n", "4"]);
}

/// An MLP `Gemm → Relu → Gemm` on [n, 4] whose hidden neurons 0 and 3 are dead, with the
/// given node names.
fn named_mlp(names: [&str; 3]) -> ModelProto {
    let (dm, hid) = (4usize, 6usize);
    let b1: Vec<f32> = (0..hid)
        .map(|j| if j % 3 == 0 { -0.5 } else { 0.25 })
        .collect();
    model(GraphProto {
        name: "mlp".into(),
        node: vec![
            node("Gemm", names[0], &["x", "w1", "b1"], &["h"], vec![]),
            node("Relu", names[1], &["h"], &["a"], vec![]),
            node("Gemm", names[2], &["a", "w2", "b2"], &["y"], vec![]),
        ],
        initializer: vec![
            f32_init("w1", &[dm as i64, hid as i64], &matrix(dm, hid, 3)),
            f32_init("b1", &[hid as i64], &b1),
            f32_init("w2", &[hid as i64, 2], &matrix(hid, 2, 5)),
            f32_init("b2", &[2], &[0.5, -0.25]),
        ],
        input: vec![io("x", &[Err("n"), Ok(dm as i64)])],
        output: vec![io("y", &[Err("n"), Ok(2)])],
        ..Default::default()
    })
}

fn node_names(p: &Path) -> Vec<String> {
    read(p)
        .graph
        .unwrap()
        .node
        .into_iter()
        .map(|n| n.name)
        .collect()
}

#[test]
fn node_names_survive_import_and_export_as_name_locations() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "mlp.onnx",
        &named_mlp(["enc/fc", "enc/act", "head"]),
    );
    let nnir = dir.path().join("mlp.nnir");
    nnopt_ok(&["import", p.to_str().unwrap(), "-o", nnir.to_str().unwrap()]);
    let text = std::fs::read_to_string(&nnir).unwrap();
    for name in ["enc/fc", "enc/act", "head"] {
        assert!(text.contains(&format!("loc(\"{name}\")")), "{text}");
    }
    let q = dir.path().join("back.onnx");
    nnopt_ok(&["export", nnir.to_str().unwrap(), "-o", q.to_str().unwrap()]);
    assert_eq!(node_names(&q), ["enc/fc", "enc/act", "head"]);
}

#[test]
fn unnamed_nodes_get_generated_names_unique_beside_kept_ones() {
    let dir = tempfile::tempdir().unwrap();
    // The unnamed Relu's generated name would be `Relu_1`, which the first node already has.
    let p = write(dir.path(), "mlp.onnx", &named_mlp(["Relu_1", "", "head"]));
    let q = dir.path().join("back.onnx");
    nnopt_ok(&["export", p.to_str().unwrap(), "-o", q.to_str().unwrap()]);
    assert_eq!(node_names(&q), ["Relu_1", "Relu_1_1", "head"]);
}

#[test]
fn a_pruned_model_keeps_the_names_of_the_nodes_it_keeps() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "mlp.onnx",
        &named_mlp(["enc/fc", "enc/act", "head"]),
    );
    let q = dir.path().join("pruned.onnx");
    // Alignment would keep this 6-neuron layer whole; the names are what is tested.
    nnopt_ok(&[
        "--prune-neurons",
        "--round-to=1",
        p.to_str().unwrap(),
        "-o",
        q.to_str().unwrap(),
    ]);
    let g = read(&q).graph.unwrap();
    let w1 = g.initializer.iter().find(|t| t.name == "w1").unwrap();
    assert_eq!(w1.dims, [4, 4], "hidden neurons 0 and 3 pruned");
    // The constant output neuron 0 comes back through a scatter: its nodes are new, named
    // after their operators.
    let names = node_names(&q);
    assert_eq!(names[..3], ["enc/fc", "enc/act", "head"]);
    assert!(names[3..].iter().all(|n| !n.contains('/')), "{names:?}");
}

/// NNIR of `p` as `nnopt import` reads it (weights beside it in `dir`).
fn imported(dir: &Path, p: &Path) -> String {
    let out = dir.join(format!("{}.nnir", p.file_stem().unwrap().to_str().unwrap()));
    nnopt_ok(&["import", p.to_str().unwrap(), "-o", out.to_str().unwrap()]);
    std::fs::read_to_string(out).unwrap()
}

/// A pruned model holds `nn.scatter` as Expand + Concat + Gather; its import rebuilds the
/// scatter (also with a dynamic batch, whose Expand target comes from `Shape`), and pruning it
/// again writes the same bytes.
#[test]
fn pruning_a_pruned_model_with_a_scatter_changes_nothing() {
    for (batch, file) in [(Ok(2), "static.onnx"), (Err("N"), "dynamic.onnx")] {
        let dir = tempfile::tempdir().unwrap();
        let m = write(dir.path(), file, &ffn(batch));
        let p = dir.path().join("p.onnx");
        let q = dir.path().join("q.onnx");
        let prune = |from: &Path, to: &Path| {
            // Without alignment, which would keep the toy layer whole, and scattering: the toy
            // layer saves too little to pay for a scatter in onnxruntime (residual=auto).
            nnopt_ok(&[
                "--prune-neurons",
                "--round-to=1",
                "--residual=scatter",
                from.to_str().unwrap(),
                "-o",
                to.to_str().unwrap(),
            ])
        };
        prune(&m, &p);
        let ops: Vec<String> = read(&p)
            .graph
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type.clone())
            .collect();
        assert!(
            ops.iter().any(|o| o == "Expand"),
            "{file}: no scatter in {ops:?}"
        );
        let nnir = imported(dir.path(), &p);
        assert_eq!(nnir.matches("nn.scatter").count(), 1, "{file}: {nnir}");
        assert!(!nnir.contains("nn.concat"), "{file}: {nnir}");
        // Export of the import: the same NNIR again.
        let e = dir.path().join("e.onnx");
        nnopt_ok(&[
            "export",
            dir.path().join("p.nnir").to_str().unwrap(),
            "-o",
            e.to_str().unwrap(),
        ]);
        assert_eq!(
            imported(dir.path(), &e),
            nnir.replace("p.safetensors", "e.safetensors"),
            "{file}"
        );
        prune(&p, &q);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            std::fs::read(&q).unwrap(),
            "{file}"
        );
    }
}
