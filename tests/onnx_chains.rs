//! The exporters' node chains for RMSNorm and GELU (`src/onnx/import/nodes/chains.rs`): each
//! recognition has a `_fold` case (imported as the one op, computing the chain's function in
//! the interpreter) and `_nofold` cases (a node read elsewhere, a constant off the formula,
//! a scale that is no constant, axes that are not trailing), which import piece by piece or are
//! refused naming the node, its op type and opset. Also ONNX's own RMSNormalization (opset 23)
//! and Neg. The Python test `tests/python/test_numeric_chains.py` compares the same chains
//! with onnxruntime.

#[path = "common/onnx.rs"]
mod onnx_models;
use onnx_models::{f32_init, ints, io, model, node, write};

use nnopt::onnx::proto::{attr_type, AttributeProto, GraphProto, NodeProto, TensorProto};
use nnopt::syntax::printer::print_module;

const D: usize = 8;

/// Imports the graph `x [2, 3, D] → nodes → outputs` (opset `opset`): the printed module, or
/// the diagnostic's message.
fn import(
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    outputs: &[&str],
    opset: i64,
) -> Result<nnopt::ir::Module, String> {
    let mut m = model(GraphProto {
        name: "g".into(),
        node: nodes,
        initializer: inits,
        input: vec![io("x", &[Ok(2), Ok(3), Ok(D as i64)])],
        output: outputs
            .iter()
            .map(|o| io(o, &[Ok(2), Ok(3), Ok(D as i64)]))
            .collect(),
        ..Default::default()
    });
    m.opset_import[0].version = opset;
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "m.onnx", &m);
    let mut warnings = Vec::new();
    nnopt::onnx::import_file(&p, &Default::default(), &mut warnings).map_err(|d| d.message)
}

fn scalar(name: &str, v: f32) -> TensorProto {
    f32_init(name, &[], &[v])
}

fn x() -> ndarray::ArrayD<f32> {
    ndarray::ArrayD::from_shape_fn(vec![2, 3, D], |i| {
        ((i[0] * 31 + i[1] * 7 + i[2] * 3) % 17) as f32 / 4.0 - 2.0
    })
}

fn run(m: &nnopt::ir::Module) -> ndarray::ArrayD<f32> {
    nnopt::interp::run(&m.funcs[0], &[x()]).unwrap().remove(0)
}

/// PyTorch's RMSNorm at opset 17 (axes as an attribute): `x · Reciprocal(Sqrt(ReduceMean(
/// Pow(x, 2)) + eps)) [· scale]`, the scale named `w` when given.
fn rms_chain(axes: &[i64], scaled: bool) -> Vec<NodeProto> {
    let mut n = vec![
        node("Pow", "pow", &["x", "two"], &["sq"], vec![]),
        node(
            "ReduceMean",
            "mean",
            &["sq"],
            &["ms"],
            vec![ints("axes", axes)],
        ),
        node("Add", "add", &["ms", "eps"], &["var"], vec![]),
        node("Sqrt", "sqrt", &["var"], &["sd"], vec![]),
        node("Reciprocal", "rsqrt", &["sd"], &["inv"], vec![]),
    ];
    if scaled {
        n.push(node("Mul", "mul", &["x", "inv"], &["normed"], vec![]));
        n.push(node("Mul", "scale", &["w", "normed"], &["y"], vec![]));
    } else {
        n.push(node("Mul", "mul", &["inv", "x"], &["y"], vec![]));
    }
    n
}

fn rms_consts() -> Vec<TensorProto> {
    vec![scalar("two", 2.0), scalar("eps", 1e-6)]
}

fn want_rms(scale: &[f32]) -> ndarray::ArrayD<f32> {
    let mut y = x();
    for mut row in y.lanes_mut(ndarray::Axis(2)) {
        let ms = row.iter().map(|v| v * v).sum::<f32>() / D as f32;
        let inv = 1.0 / (ms + 1e-6).sqrt();
        for (v, s) in row.iter_mut().zip(scale) {
            *v = *v * inv * s;
        }
    }
    y
}

#[test]
fn rms_norm_chain_fold_with_a_scale_of_leading_ones() {
    let w: Vec<f32> = (0..D).map(|i| 0.5 + i as f32 / 8.0).collect();
    let mut inits = rms_consts();
    inits.push(f32_init("w", &[1, 1, D as i64], &w));
    let m = import(rms_chain(&[-1], true), inits, &["y"], 17).unwrap();
    let text = print_module(&m);
    assert!(
        text.contains("nn.rms_norm %x, %w {axis = 2, epsilon = 1e-6} : tensor<2x3x8xf32>"),
        "{text}"
    );
    assert!(!text.contains("nn.mul"), "{text}");
    let got = run(&m);
    let want = want_rms(&w);
    assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-6));
}

#[test]
fn rms_norm_chain_fold_without_a_scale() {
    let m = import(rms_chain(&[2], false), rms_consts(), &["y"], 17).unwrap();
    let text = print_module(&m);
    assert!(
        text.contains("nn.rms_norm %x {axis = 2, epsilon = 1e-6}"),
        "{text}"
    );
    assert_eq!(run(&m), want_rms(&[1.0; D]));
}

#[test]
fn rms_norm_chain_nofold_when_the_mean_square_is_read_elsewhere() {
    let e = import(rms_chain(&[-1], false), rms_consts(), &["y", "ms"], 17).unwrap_err();
    assert!(
        e.contains("node 'pow' (Pow, opset 17)") && e.contains("part of neither"),
        "{e}"
    );
}

#[test]
fn rms_norm_chain_nofold_other_exponent() {
    let mut inits = rms_consts();
    inits[0] = scalar("two", 3.0);
    let e = import(rms_chain(&[-1], false), inits, &["y"], 17).unwrap_err();
    assert!(e.contains("node 'pow' (Pow, opset 17)"), "{e}");
}

#[test]
fn rms_norm_chain_with_an_activation_scale_keeps_the_product() {
    let mut n = vec![node("Relu", "relu", &["x"], &["w"], vec![])];
    n.extend(rms_chain(&[-1], true));
    let m = import(n, rms_consts(), &["y"], 17).unwrap();
    let text = print_module(&m);
    assert!(text.contains("nn.rms_norm %x {axis = 2"), "{text}");
    assert!(text.contains("nn.mul %w, %normed"), "{text}");
}

#[test]
fn rms_norm_chain_over_leading_axes_is_refused() {
    let e = import(rms_chain(&[1], false), rms_consts(), &["y"], 17).unwrap_err();
    assert!(
        e.contains("node 'mul' (Mul, opset 17)") && e.contains("not its trailing axes"),
        "{e}"
    );
}

#[test]
fn rms_normalization_of_opset_23_is_nn_rms_norm() {
    let w = vec![2.0f32; D];
    let n = vec![node(
        "RMSNormalization",
        "rms",
        &["x", "w"],
        &["y"],
        vec![AttributeProto {
            name: "epsilon".into(),
            r#type: attr_type::FLOAT,
            f: 1e-6,
            ..Default::default()
        }],
    )];
    let m = import(n, vec![f32_init("w", &[D as i64], &w)], &["y"], 23).unwrap();
    assert!(print_module(&m).contains("nn.rms_norm %x, %w {axis = -1, epsilon = 1e-6}"));
    assert_eq!(run(&m), want_rms(&w));
}

/// BERT's erf GELU with the division written as a product by 1/√2, and the half in the
/// middle of the product.
fn gelu_erf(half: f32) -> (Vec<NodeProto>, Vec<TensorProto>) {
    let n = vec![
        node("Mul", "scale", &["x", "r"], &["s"], vec![]),
        node("Erf", "erf", &["s"], &["e"], vec![]),
        node("Add", "one_plus", &["one", "e"], &["a"], vec![]),
        node("Mul", "half", &["x", "h"], &["xh"], vec![]),
        node("Mul", "gelu", &["xh", "a"], &["y"], vec![]),
    ];
    let c = vec![
        scalar("r", std::f32::consts::FRAC_1_SQRT_2),
        scalar("one", 1.0),
        scalar("h", half),
    ];
    (n, c)
}

#[test]
fn gelu_erf_chain_fold() {
    let (n, c) = gelu_erf(0.5);
    let m = import(n, c, &["y"], 17).unwrap();
    let text = print_module(&m);
    assert!(
        text.contains("nn.gelu %x {approximate = \"none\"}"),
        "{text}"
    );
    assert!(!text.contains("nn.mul"), "{text}");
    let got = run(&m);
    for (g, v) in got.iter().zip(x().iter()) {
        let want = 0.5 * *v as f64 * (1.0 + nnopt::ir::ops::erf(*v as f64 / 2f64.sqrt()));
        assert!(
            (*g as f64 - want).abs() <= 1e-6,
            "gelu({v}) = {g}, want {want}"
        );
    }
}

#[test]
fn gelu_erf_chain_nofold_wrong_constant() {
    let (n, c) = gelu_erf(0.4);
    let e = import(n, c, &["y"], 17).unwrap_err();
    assert!(
        e.contains("node 'erf' (Erf, opset 17)") && e.contains("part of neither"),
        "{e}"
    );
}

#[test]
fn neg_is_a_multiplication_by_minus_one_and_folds_on_constants() {
    let n = vec![
        node("Neg", "neg_c", &["c"], &["nc"], vec![]),
        node("Neg", "neg", &["x"], &["nx"], vec![]),
        node("Add", "add", &["nx", "nc"], &["y"], vec![]),
    ];
    let m = import(n, vec![scalar("c", 1.5)], &["y"], 17).unwrap();
    let text = print_module(&m);
    assert!(text.contains("nn.mul %x, %nx.minus_one"), "{text}");
    let want = x().mapv(|v| -v + -1.5);
    assert_eq!(run(&m), want);
}
