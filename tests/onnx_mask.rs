//! Run-time booleans in ONNX import (`src/onnx/import/nodes/mask.rs`): an int64 attention mask
//! cast to BOOL, combined with constant masks by And/Or/Not, gathered by GatherND, and made
//! additive by `Where(mask, 0, lowest)`, as BERT exports do. The models are built here with the
//! prost messages.

mod common;
#[path = "common/onnx.rs"]
#[allow(dead_code)]
mod onnx_models;
use common::{nnopt, nnopt_ok};
use onnx_models::{f32_init, model, node, write};

use nnopt::onnx::export_model;
use nnopt::onnx::proto::{data_type, type_proto, AttributeProto, GraphProto, TensorProto};
use std::path::Path;

const LOWEST: f32 = f32::MIN;

fn to(t: i32) -> AttributeProto {
    AttributeProto {
        name: "to".into(),
        r#type: nnopt::onnx::proto::attr_type::INT,
        i: t as i64,
        ..Default::default()
    }
}

fn bool_init(name: &str, dims: &[i64], values: &[i32]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::BOOL,
        name: name.into(),
        int32_data: values.to_vec(),
        ..Default::default()
    }
}

fn i64_init(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::INT64,
        name: name.into(),
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// A static tensor input or output of element type `elem`.
fn io(name: &str, dims: &[i64], elem: i32) -> nnopt::onnx::proto::ValueInfoProto {
    let d: Vec<Result<i64, &str>> = dims.iter().map(|&d| Ok(d)).collect();
    let mut v = onnx_models::io(name, &d);
    if let Some(type_proto::Value::TensorType(t)) = v.r#type.as_mut().and_then(|t| t.value.as_mut())
    {
        t.elem_type = elem;
    }
    v
}

/// `y = x + Where(m, 0, y_value)` with `m = reversed(GatherND(Cast(mask → BOOL), rows 1, 0))
/// And keep Or Not(Not(show))`: the mask's two rows swapped (GatherND), each row reversed
/// (GatherElements), position 3 hidden by a constant, position 0 shown by another. x is [2, 4]
/// f32, mask [2, 4] int64.
fn masked(y_value: f32) -> GraphProto {
    let axis = AttributeProto {
        name: "axis".into(),
        r#type: nnopt::onnx::proto::attr_type::INT,
        i: 1,
        ..Default::default()
    };
    GraphProto {
        name: "mask".into(),
        node: vec![
            node("Cast", "cast", &["mask"], &["b"], vec![to(data_type::BOOL)]),
            node("GatherND", "swap", &["b", "rows"], &["sw"], vec![]),
            node(
                "GatherElements",
                "rev",
                &["sw", "rev_idx"],
                &["rv"],
                vec![axis],
            ),
            node("And", "and", &["rv", "keep"], &["k"], vec![]),
            node("Not", "not", &["show"], &["ns"], vec![]),
            node("Not", "not2", &["ns"], &["s"], vec![]),
            node("Or", "or", &["k", "s"], &["c"], vec![]),
            node("Where", "where", &["c", "zero", "low"], &["add"], vec![]),
            node("Add", "plus", &["x", "add"], &["y"], vec![]),
        ],
        initializer: vec![
            i64_init("rows", &[2, 1], &[1, 0]),
            i64_init("rev_idx", &[2, 4], &[3, 2, 1, 0, 3, 2, 1, 0]),
            bool_init("keep", &[4], &[1, 1, 1, 0]),
            bool_init("show", &[4], &[1, 0, 0, 0]),
            f32_init("zero", &[], &[0.0]),
            f32_init("low", &[], &[y_value]),
        ],
        input: vec![
            io("x", &[2, 4], data_type::FLOAT),
            io("mask", &[2, 4], data_type::INT64),
        ],
        output: vec![io("y", &[2, 4], data_type::FLOAT)],
        ..Default::default()
    }
}

fn import(p: &Path) -> nnopt::ir::Module {
    let mut warnings = Vec::new();
    let m = nnopt::onnx::import_file(p, &Default::default(), &mut warnings).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    m
}

fn run(m: &nnopt::ir::Module, x: &[f32], mask: &[f32]) -> Vec<f32> {
    let x = ndarray::ArrayD::from_shape_vec(vec![2, 4], x.to_vec()).unwrap();
    let mask = ndarray::ArrayD::from_shape_vec(vec![2, 4], mask.to_vec()).unwrap();
    let y = nnopt::interp::run(&m.funcs[0], &[x, mask]).expect("interpreter runs");
    y[0].iter().copied().collect()
}

#[test]
fn an_int64_mask_becomes_an_exact_additive_mask_and_survives_export() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "mask.onnx", &model(masked(LOWEST)));
    let m = import(&path);
    let text = nnopt::syntax::printer::print_module(&m);
    assert!(
        text.contains("nn.embedding %b.table, %mask : tensor<2x4x1xf32>"),
        "{text}"
    );
    // The command line writes the same function (its module names the weights file too).
    let nnir = dir.path().join("mask.nnir");
    nnopt_ok(&[
        "import",
        path.to_str().unwrap(),
        "-o",
        nnir.to_str().unwrap(),
    ]);
    let written = std::fs::read_to_string(&nnir).unwrap();
    let func = |t: &str| t[t.find("  func").unwrap()..].to_string();
    assert_eq!(func(&written), func(&text));
    let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
    // Row 0 reads the mask's row 1 reversed, [1, 0, 1, 0], row 1 its row 0 reversed,
    // [1, 1, 0, 1]; then position 3 is hidden and position 0 shown.
    let mask = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0];
    let want = [
        1.0,
        2.0 + LOWEST,
        3.0,
        4.0 + LOWEST,
        5.0,
        6.0,
        7.0 + LOWEST,
        8.0 + LOWEST,
    ];
    let got = run(&m, &x, &mask);
    assert_eq!(
        got, want,
        "bit for bit: Where(c, 0, lowest) is (1 − c)·lowest"
    );
    // Written back (the lookup as a Gather on the INT64 input) and read again.
    let again = write(dir.path(), "again.onnx", &export_model(&m).unwrap());
    assert_eq!(run(&import(&again), &x, &mask), want);
}

#[test]
fn a_non_finite_where_constant_or_a_float_cast_to_bool_is_refused_naming_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut cast_float = masked(LOWEST);
    cast_float.node[0].input[0] = "x".into();
    for (name, g, needles) in [
        (
            "inf",
            masked(f32::NEG_INFINITY),
            &["node 'where' (Where, opset 17)", "y ('low') holds -inf"][..],
        ),
        (
            "float",
            cast_float,
            &[
                "node 'cast' (Cast, opset 17)",
                "casting a run-time float to BOOL",
            ][..],
        ),
    ] {
        let p = write(dir.path(), &format!("{name}.onnx"), &model(g));
        let o = dir.path().join(format!("{name}.nnir"));
        let out = nnopt(&["import", p.to_str().unwrap(), "-o", o.to_str().unwrap()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert_eq!(err.matches("error:").count(), 1, "{err}");
        for n in needles {
            assert!(err.contains(n), "stderr lacks {n:?}: {err}");
        }
        assert!(!o.exists(), "nothing is written");
    }
}

#[test]
fn logic_on_an_activation_that_is_not_a_mask_is_refused() {
    // Not of a float activation (an invalid model, but one a parser can be handed).
    let g = GraphProto {
        name: "not".into(),
        node: vec![
            node("Relu", "r", &["x"], &["h"], vec![]),
            node("Not", "not", &["h"], &["n"], vec![]),
            node("Cast", "back", &["n"], &["y"], vec![to(data_type::FLOAT)]),
        ],
        input: vec![io("x", &[2, 4], data_type::FLOAT)],
        output: vec![io("y", &[2, 4], data_type::FLOAT)],
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "not.onnx", &model(g));
    let mut warnings = Vec::new();
    let e = nnopt::onnx::import_file(&p, &Default::default(), &mut warnings).unwrap_err();
    let msg = format!("{e:?}");
    assert!(
        msg.contains("is computed at run time but is not a mask cast from an int64 input"),
        "{msg}"
    );
}
