//! `--pass-statistics`: the per-layer table in the model's names, its totals against the
//! written file, and runs that write no output.

mod common;
use common::{nnopt, nnopt_ok};

use nnopt::onnx::proto::{data_type, ModelProto};
use prost::Message;
use std::path::{Path, PathBuf};

const RESNET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/resnet.nnir");

fn stderr(args: &[&str]) -> String {
    String::from_utf8(nnopt_ok(args).stderr).unwrap()
}

/// The example network with PyTorch's weight names (`stem.weight`), exported to ONNX; with
/// `batch`, its dynamic batch becomes that static size.
fn resnet_onnx(dir: &Path, batch: Option<u64>) -> PathBuf {
    let mut text = std::fs::read_to_string(RESNET).unwrap();
    for layer in ["stem", "block.a", "block.b", "down", "fc"] {
        text = text
            .replace(&format!("%{layer}.w"), &format!("%{layer}.weight"))
            .replace(&format!("%{layer}.b "), &format!("%{layer}.bias "));
    }
    if let Some(b) = batch {
        text = text.replace("tensor<?x", &format!("tensor<{b}x"));
    }
    let nnir = dir.join("model.nnir");
    std::fs::write(&nnir, text).unwrap();
    let onnx = dir.join(format!("resnet_b{}.onnx", batch.unwrap_or(0)));
    nnopt_ok(&[
        "export",
        nnir.to_str().unwrap(),
        "-o",
        onnx.to_str().unwrap(),
    ]);
    onnx
}

/// The numbers of the table row that starts with `label`.
fn row(report: &str, label: &str) -> Vec<u64> {
    let line = report
        .lines()
        .find(|l| l.trim_start().starts_with(label))
        .unwrap_or_else(|| panic!("no row '{label}' in\n{report}"));
    line.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

/// The elements of the floating-point initializers of an ONNX file: its parameters.
fn onnx_params(path: &Path) -> u64 {
    let m = ModelProto::decode(std::fs::read(path).unwrap().as_slice()).unwrap();
    let graph = m.graph.unwrap();
    graph
        .initializer
        .iter()
        .filter(|t| {
            [data_type::FLOAT, data_type::FLOAT16, data_type::BFLOAT16].contains(&t.data_type)
        })
        .map(|t| t.dims.iter().product::<i64>() as u64)
        .sum()
}

#[test]
fn nnir_report_names_channels_and_reasons_in_aligned_columns() {
    let report = stderr(&[
        "--prune-neurons",
        "--pass-statistics",
        RESNET,
        "-o",
        "/dev/null",
    ]);
    insta::assert_snapshot!(report);
}

#[test]
fn neurons_kept_for_alignment_are_counted_per_layer() {
    // stem keeps 6 of 8 and down 14 of 16 (multiples of 2); block.a keeps its one removable
    // neuron, which would leave 7; block.b loses two (one no op reads after the residual add).
    let report = stderr(&[
        "--prune-neurons",
        "--round-to=2",
        "--pass-statistics",
        RESNET,
        "-o",
        "/dev/null",
    ]);
    insta::assert_snapshot!(report);
}

#[test]
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
fn onnx_output_is_aligned_to_the_runtime_block_by_default() {
    // The block is at least 4 here, so the 8-channel stem keeps its 2 removable neurons (6
    // would round up to 8) and the written file has every channel.
    let dir = tempfile::tempdir().unwrap();
    let model = resnet_onnx(dir.path(), None);
    let out = dir.path().join("pruned.onnx");
    let run = |extra: &[&str]| {
        // Scattering: the toy stem saves too little to pay for a scatter (residual=auto).
        let mut args = vec!["--prune-neurons", "--residual=scatter", "--pass-statistics"];
        args.extend(extra);
        args.extend([model.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        stderr(&args)
    };
    let aligned = run(&[]);
    let stem = aligned.lines().find(|l| l.contains("%stem ")).unwrap();
    assert!(stem.ends_with("kept 2 for alignment"), "{aligned}");
    let unaligned = run(&["--round-to=1"]);
    let stem = unaligned.lines().find(|l| l.contains("%stem ")).unwrap();
    assert!(stem.ends_with("2 constant"), "{unaligned}");
}

#[test]
fn onnx_output_weighs_the_scatters_runtime_cost_by_default() {
    // The stem's two dead filters reach the residual add: removing them saves 4480 MACs, far
    // less than a scatter's nodes cost onnxruntime, so ONNX output keeps them (residual=auto);
    // --residual=scatter removes them, and NNIR output scatters by default.
    let dir = tempfile::tempdir().unwrap();
    let model = resnet_onnx(dir.path(), None);
    let (model, out) = (model.to_str().unwrap(), dir.path().join("pruned.onnx"));
    let out = out.to_str().unwrap();
    let stem = |args: &[&str]| {
        let mut all = vec!["--prune-neurons", "--round-to=1", "--pass-statistics"];
        all.extend(args);
        let report = stderr(&all);
        let line = report.lines().find(|l| l.contains("%stem ")).unwrap();
        line.split("  ").last().unwrap().trim().to_string()
    };
    assert_eq!(
        stem(&[model, "-o", out]),
        "kept 2: residual=auto: scatters cost more"
    );
    assert_eq!(
        stem(&["--residual=scatter", model, "-o", out]),
        "2 constant"
    );
    assert_eq!(stem(&[model, "-o", "/dev/null"]), "2 constant");
}

#[test]
fn residual_keep_is_given_as_the_reason() {
    let report = stderr(&[
        "--pass-pipeline=prune-neurons{residual=keep},canonicalize,dce",
        "--pass-statistics",
        RESNET,
        "-o",
        "/dev/null",
    ]);
    let stem = report.lines().find(|l| l.contains("%stem ")).unwrap();
    assert!(stem.ends_with("kept 2: residual=keep"), "{report}");
}

#[test]
fn onnx_report_uses_the_weight_names_and_writes_nothing_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let model = resnet_onnx(dir.path(), None);
    let out = nnopt_ok(&[
        "--prune-neurons",
        "--pass-statistics",
        model.to_str().unwrap(),
    ]);
    assert!(out.stdout.is_empty());
    insta::assert_snapshot!(String::from_utf8(out.stderr).unwrap());
    let files = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(
        files,
        2,
        "only the two inputs are in {}",
        dir.path().display()
    );
}

#[test]
fn a_static_batch_does_not_multiply_the_macs() {
    let dir = tempfile::tempdir().unwrap();
    let dynamic = resnet_onnx(dir.path(), None);
    let fixed = resnet_onnx(dir.path(), Some(2));
    let run = |m: &Path| stderr(&["--prune-neurons", "--pass-statistics", m.to_str().unwrap()]);
    let (a, b) = (run(&dynamic), run(&fixed));
    assert_eq!(row(&a, "total"), row(&b, "total"), "{a}\n{b}");
    assert_eq!(row(&a, "total")[2], 24224);
}

#[test]
fn totals_count_the_parameters_of_the_written_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = resnet_onnx(dir.path(), None);
    let out = dir.path().join("pruned.onnx");
    let report = stderr(&[
        "--prune-neurons",
        "--round-to=1",
        "--residual=scatter",
        "--pass-statistics",
        model.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    let total = row(&report, "total");
    assert_eq!(total[0], onnx_params(&model), "{report}");
    assert_eq!(total[1], onnx_params(&out), "{report}");
    // Pruning added constants (new biases, scatter fills) outside the layers' rows.
    assert!(row(&report, "other constants")[1] > 0, "{report}");
}

#[test]
fn onnx_input_without_output_is_a_usage_error_before_the_work() {
    let dir = tempfile::tempdir().unwrap();
    let model = resnet_onnx(dir.path(), None);
    let out = nnopt(&["--prune-neurons", model.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("needs -o FILE.nnir"), "{err}");
    assert!(!err.contains("Pass statistics"), "{err}");
    let devnull = stderr(&[
        "--prune-neurons",
        "--pass-statistics",
        model.to_str().unwrap(),
        "-o",
        "/dev/null",
    ]);
    assert!(devnull.contains("removed: "), "{devnull}");
    nnopt_ok(&[
        "--prune-neurons",
        model.to_str().unwrap(),
        "-o",
        "/dev/null",
    ]);
}

#[test]
fn a_location_names_a_layer_whose_weight_has_no_module_name() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("loc.nnir");
    std::fs::write(
        &f,
        r#"func @f(%x: tensor<?x2xf32>) -> (tensor<?x1xf32>) {
  %w = nn.constant dense<[[1.0, 2.0], [0.0, 0.0]]> : tensor<2x2xf32>
  %h = nn.linear %x, %w : tensor<?x2xf32> loc("encoder.fc1")
  %v = nn.constant dense<[[3.0, 4.0]]> : tensor<1x2xf32>
  %y = nn.linear %h, %v : tensor<?x1xf32> loc("model.py":7:3)
  return %y : tensor<?x1xf32>
}
"#,
    )
    .unwrap();
    let report = stderr(&["--prune-neurons", "--pass-statistics", f.to_str().unwrap()]);
    let fc1 = report.lines().find(|l| l.contains("%h")).unwrap();
    assert!(fc1.trim_start().starts_with("encoder.fc1 "), "{report}");
    assert!(fc1.contains("2 -> 1"), "{report}");
    assert!(fc1.ends_with("1 constant"), "{report}");
    assert!(report.contains("model.py:7:3"), "{report}");
}
