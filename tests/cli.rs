//! CLI behaviour: output and exit codes of the `nnopt` binary.

mod common;
use common::{nnopt, nnopt_ok};

#[test]
fn list_ops_prints_the_op_table() {
    let out = nnopt_ok(&["--list-ops"]);
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn usage_errors_exit_with_code_2() {
    let out = nnopt(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let none = nnopt(&[]);
    assert_eq!(none.status.code(), Some(2));
}

#[test]
fn help_documents_every_flag() {
    let out = nnopt_ok(&["--help"]);
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--list-ops",
        "--help",
        "--version",
        "--output",
        "--split-input-file",
        "--verify-diagnostics",
        "--prune-neurons",
        "--pass-pipeline",
        "--list-passes",
        "--no-verify-each",
        "--print-ir-after-all",
        "--pass-statistics",
        "--check-equivalence",
        "--print-ir-after-change",
        "--timing",
        "--emit-format",
        "--equivalence-rtol",
        "--equivalence-atol",
        "--equivalence-inputs",
        "--seed",
    ] {
        assert!(
            text.contains(flag),
            "--help does not mention {flag}:\n{text}"
        );
    }
}

#[test]
fn errors_exit_1_and_leave_no_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.nnir");
    std::fs::write(
        &bad,
        "func @f(%x: tensor<2xf32>) -> (tensor<2xf32>) {\n  return %y : tensor<2xf32>\n}\n",
    )
    .unwrap();
    let out_path = dir.path().join("out.nnir");
    let out = nnopt(&[bad.to_str().unwrap(), "-o", out_path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("use of undefined value %y"), "{err}");
    assert!(err.contains("bad.nnir:2:10"), "{err}");
    assert!(!out_path.exists());
}

#[test]
fn output_is_written_atomically_and_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.nnir");
    nnopt_ok(&["tests/corpus/conv.nnir", "-o", out_path.to_str().unwrap()]);
    let first = std::fs::read_to_string(&out_path).unwrap();
    let again = nnopt(&[out_path.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&again.stdout), first);
    // Only the output file is left: no temporary files.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // It gets the mode of any new file (0666 minus the umask), not tempfile's private 0600.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let plain = dir.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode();
        assert_eq!(mode(&out_path), mode(&plain));
    }
}

#[test]
fn list_passes_names_every_pass_and_option() {
    let out = nnopt_ok(&["--list-passes"]);
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn bad_pipeline_lists_the_valid_names() {
    let out = nnopt(&["--pass-pipeline=prune-nerons", "tests/corpus/mlp.nnir"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown pass 'prune-nerons'") && err.contains("prune-neurons"),
        "{err}"
    );
    let out = nnopt(&[
        "--pass-pipeline=prune-neurons{zero-treshold=0}",
        "tests/corpus/mlp.nnir",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("its options are: zero-threshold"));
}

#[test]
fn run_interp_reads_and_writes_npy() {
    use ndarray::ArrayD;
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    let input = ArrayD::from_shape_vec(vec![1, 4], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    nnopt::interp::write_npy(&x, &input).unwrap();
    nnopt_ok(&[
        "run",
        "--interp",
        "tests/corpus/mlp.nnir",
        "--input",
        x.to_str().unwrap(),
        "--output",
        y.to_str().unwrap(),
    ]);
    let result = nnopt::interp::read_npy(&y).unwrap();
    // h = W1·x + b1 = [1 - 3 + 8 + 0.1, -0.2, 5 + 0.3]; a = sigmoid(h); y = W2·a.
    let s = |v: f32| 1.0 / (1.0 + (-v).exp());
    let a = [s(6.1), s(-0.2), s(5.3)];
    let want = [
        a[0] + 2.0 * a[1] + 3.0 * a[2],
        4.0 * a[0] + 5.0 * a[1] + 6.0 * a[2],
    ];
    assert_eq!(result.shape(), &[1, 2]);
    for (r, w) in result.iter().zip(want) {
        assert!((r - w).abs() < 1e-5, "{r} vs {w}");
    }
    // Wrong input shape: a diagnostic and exit 1, no output.
    let bad = dir.path().join("bad.npy");
    nnopt::interp::write_npy(&bad, &ArrayD::zeros(vec![1, 3])).unwrap();
    let z = dir.path().join("z.npy");
    let out = nnopt(&[
        "run",
        "--interp",
        "tests/corpus/mlp.nnir",
        "--input",
        bad.to_str().unwrap(),
        "--output",
        z.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!z.exists());
}

/// `nnopt run` compiles for the shapes it is given, so a batch of 1 broadcasts against a batch
/// of 2 in compiled code as in the interpreter (code compiled with dynamic sizes cannot).
#[cfg(feature = "mlir")]
#[test]
fn run_compiled_broadcasts_a_batch_of_one() {
    use ndarray::ArrayD;
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("add.nnir");
    std::fs::write(
        &src,
        "func @f(%x: tensor<?x3xf32>, %y: tensor<?x3xf32>) -> tensor<?x3xf32> {\n  %z = nn.add %x, %y : tensor<?x3xf32>\n  return %z : tensor<?x3xf32>\n}\n",
    )
    .unwrap();
    let (a, b, z) = (
        dir.path().join("a.npy"),
        dir.path().join("b.npy"),
        dir.path().join("z.npy"),
    );
    nnopt::interp::write_npy(&a, &ArrayD::from_elem(vec![2, 3], 1.0f32)).unwrap();
    let row = ArrayD::from_shape_vec(vec![1, 3], vec![1.0f32, 2.0, 3.0]).unwrap();
    nnopt::interp::write_npy(&b, &row).unwrap();
    let p = |f: &std::path::Path| f.to_str().unwrap().to_string();
    nnopt_ok(&[
        "run",
        &p(&src),
        "--input",
        &p(&a),
        "--input",
        &p(&b),
        "--output",
        &p(&z),
    ]);
    let got = nnopt::interp::read_npy(&z).unwrap();
    assert_eq!(got.shape(), &[2, 3]);
    assert_eq!(
        got.iter().copied().collect::<Vec<_>>(),
        [2.0, 3.0, 4.0, 2.0, 3.0, 4.0]
    );
}

/// `nnopt run` without `--interp` compiles through MLIR and runs the JIT-compiled code: same
/// results as the interpreter, and a wrong input shape is an error before anything runs.
#[cfg(feature = "mlir")]
#[test]
fn run_compiled_matches_interp() {
    use ndarray::ArrayD;
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let input =
        ArrayD::from_shape_vec(vec![2, 4], vec![1.0f32, 2.0, 3.0, 4.0, -1.0, 0.5, 0.0, 2.5])
            .unwrap();
    nnopt::interp::write_npy(&x, &input).unwrap();
    let mut results = Vec::new();
    for interp in [true, false] {
        let y = dir.path().join(format!("y{interp}.npy"));
        let mut args = vec![
            "run",
            "tests/corpus/mlp.nnir",
            "--input",
            x.to_str().unwrap(),
        ];
        args.extend(["--output", y.to_str().unwrap()]);
        if interp {
            args.push("--interp");
        }
        nnopt_ok(&args);
        results.push(nnopt::interp::read_npy(&y).unwrap());
    }
    assert_eq!(results[0].shape(), results[1].shape());
    for (a, b) in results[0].iter().zip(results[1].iter()) {
        assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
    }
    let bad = dir.path().join("bad.npy");
    nnopt::interp::write_npy(&bad, &ArrayD::zeros(vec![1, 3])).unwrap();
    let z = dir.path().join("z.npy");
    let out = nnopt(&[
        "run",
        "tests/corpus/mlp.nnir",
        "--input",
        bad.to_str().unwrap(),
        "--output",
        z.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("has shape [1, 3] but the argument has type tensor<?x4xf32>"),
        "{err}"
    );
    assert!(!z.exists());
}

#[test]
fn check_equivalence_reports_the_difference() {
    let out = nnopt_ok(&[
        "--prune-neurons",
        "--check-equivalence",
        "lit/prune/residual-scatter.nnir",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("max relative difference"), "{err}");
    assert!(err.contains("over 4 random inputs (seed 24301)"), "{err}");
    let out = nnopt_ok(&[
        "--prune-neurons",
        "--check-equivalence",
        "--seed",
        "7",
        "lit/prune/residual-scatter.nnir",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("over 4 random inputs (seed 7)"), "{err}");
}

/// `prune-neurons{zero-threshold=0.6}` removes a neuron whose weights are 0.5: not exact.
const INEXACT: &str = "--pass-pipeline=prune-neurons{zero-threshold=0.6}";

#[test]
fn check_equivalence_fails_naming_the_worst_element() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("out.nnir");
    let o = out_path.to_str().unwrap();
    let out = nnopt(&[
        INEXACT,
        "--check-equivalence",
        "tests/corpus/mlp.nnir",
        "-o",
        o,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!out_path.exists());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr));
    // A loose enough tolerance lets it through; --equivalence-tolerance is --equivalence-rtol.
    for flag in [
        "--equivalence-atol",
        "--equivalence-rtol",
        "--equivalence-tolerance",
    ] {
        let out = nnopt(&[
            INEXACT,
            "--check-equivalence",
            flag,
            "10",
            "tests/corpus/mlp.nnir",
        ]);
        assert_eq!(out.status.code(), Some(0), "{flag}");
    }
    let out = nnopt(&[
        INEXACT,
        "--check-equivalence",
        "--equivalence-atol=-1",
        "tests/corpus/mlp.nnir",
    ]);
    assert_eq!(out.status.code(), Some(2));
}

/// An ONNX model is binary: the failure names no line of it.
#[test]
fn check_equivalence_on_onnx_shows_no_source_line() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("mlp.onnx");
    let m = model.to_str().unwrap();
    nnopt_ok(&["export", "tests/corpus/mlp.nnir", "-o", m]);
    let pruned = dir.path().join("pruned.onnx");
    let out = nnopt(&[
        INEXACT,
        "--check-equivalence",
        m,
        "-o",
        pruned.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(!pruned.exists());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("differs from the original at ["), "{err}");
    assert!(!err.contains("mlp.onnx:") && !err.contains('│'), "{err}");
}

#[test]
fn check_equivalence_on_the_users_inputs() {
    let dir = tempfile::tempdir().unwrap();
    let npy = |name: &str, shape: &[usize]| {
        let p = dir.path().join(name);
        let a = ndarray::ArrayD::from_shape_fn(shape, |i| {
            ndarray::Dimension::slice(&i).iter().sum::<usize>() as f32 - 1.5
        });
        nnopt::interp::write_npy(&p, &a).unwrap();
        p.to_str().unwrap().to_string()
    };
    let (x, bad) = (npy("x.npy", &[3, 4]), npy("bad.npy", &[3, 5]));
    let args = [
        "--prune-neurons",
        "--check-equivalence",
        "tests/corpus/mlp.nnir",
    ];
    // The flag comes first: it must not take the model's path for an input.
    let with = |inputs: &[&str]| {
        let mut a = vec!["--equivalence-inputs"];
        let joined = inputs.join(",");
        a.push(&joined);
        a.extend(args);
        nnopt(&a)
    };
    let out = with(&[&x]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("over the --equivalence-inputs"), "{err}");
    let expected = "@main takes 1 input(s), one .npy file each, in order: %x: tensor<?x4xf32>";
    let out = with(&[&x, &x]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("2 --equivalence-inputs file(s) given for 1 argument(s)"),
        "{err}"
    );
    assert!(err.contains(expected), "{err}");
    let out = with(&[&bad]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("has shape [3, 5], which does not fit the argument's type tensor<?x4xf32>"),
        "{err}"
    );
    assert!(err.contains(expected), "{err}");
}

#[test]
fn equivalence_flags_without_the_check_warn() {
    let out = nnopt_ok(&[
        "tests/corpus/mlp.nnir",
        "--seed",
        "3",
        "--equivalence-tolerance",
        "1e-3",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: --equivalence-rtol has no effect without --check-equivalence"),
        "{err}"
    );
    assert!(
        err.contains("warning: --seed has no effect without --check-equivalence"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn writing_to_a_device_keeps_the_device() {
    use std::os::unix::fs::FileTypeExt;
    nnopt_ok(&["tests/corpus/mlp.nnir", "-o", "/dev/null"]);
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "/dev/null was replaced by a file"
    );
}

/// Input formats go by content as well as by name: a renamed ONNX model is imported with a
/// warning that says so, NNIR text named `.onnx` is read as text, and a binary file that is
/// neither gets a hint about what nnopt reads.
#[test]
fn input_format_is_sniffed_with_a_warning_on_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    nnopt_ok(&["export", "tests/corpus/mlp.nnir", "-o", &p("m.onnx")]);
    std::fs::copy(p("m.onnx"), p("renamed.nnir")).unwrap();
    let out = nnopt_ok(&["import", &p("renamed.nnir"), "-o", &p("back.nnir")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("renamed.nnir holds an ONNX model, although its name says NNIR text"),
        "{err}"
    );
    std::fs::copy("tests/corpus/mlp.nnir", p("text.onnx")).unwrap();
    let out = nnopt_ok(&[&p("text.onnx")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("text.onnx holds NNIR text"), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("func @"));
    std::fs::write(p("bin.nnir"), [0xffu8, 0xfe, 0x00, 0x01]).unwrap();
    let out = nnopt(&[&p("bin.nnir")]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nnopt reads NNIR text, and ONNX models"),
        "{err}"
    );
}

/// `nnopt run` checks its output paths before it reads or compiles the model: a wrong
/// extension is a usage error and a missing directory an error, whatever the model.
#[test]
fn run_checks_outputs_before_loading() {
    let out = nnopt(&["run", "no-such-model.nnir", "--output", "y.txt"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`nnopt run` writes .npy files"), "{err}");
    let out = nnopt(&["run", "no-such-model.nnir", "--output", "no-dir/y.npy"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot write no-dir/y.npy: no directory no-dir"),
        "{err}"
    );
}

/// LLVM tools take long flags with one dash; nnopt does too, with the same result as two.
#[test]
fn single_dash_long_flags_work_as_in_llvm_tools() {
    let one = nnopt_ok(&["-prune-neurons", "tests/corpus/mlp.nnir"]);
    let two = nnopt_ok(&["--prune-neurons", "tests/corpus/mlp.nnir"]);
    assert_eq!(one.stdout, two.stdout);
    let one = nnopt_ok(&["-pass-pipeline=dce", "tests/corpus/mlp.nnir", "-o", "-"]);
    assert!(String::from_utf8_lossy(&one.stdout).contains("func @main"));
}

/// `nnopt run -o -` prints the result as numpy does; `--input NAME=FILE` binds by name; a
/// wrong count or shape lists the arguments with their types.
#[test]
fn run_prints_to_stdout_and_takes_named_inputs() {
    use ndarray::ArrayD;
    let dir = tempfile::tempdir().unwrap();
    let x = dir.path().join("x.npy");
    let input = ArrayD::from_shape_vec(vec![1, 4], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
    nnopt::interp::write_npy(&x, &input).unwrap();
    let named = format!("x={}", x.display());
    let m = "tests/corpus/mlp.nnir";
    let by_name = nnopt_ok(&["run", "--interp", m, "--input", &named, "-o", "-"]);
    let by_order = nnopt_ok(&[
        "run",
        "--interp",
        m,
        "--input",
        x.to_str().unwrap(),
        "--output",
        "-",
    ]);
    assert_eq!(by_name.stdout, by_order.stdout);
    let text = String::from_utf8_lossy(&by_name.stdout);
    assert!(
        text.starts_with("[[") && text.trim_end().ends_with("]]"),
        "{text}"
    );
    let out = nnopt(&["run", "--interp", m, "-o", "-"]);
    assert_eq!(out.status.code(), Some(1));
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stderr), @r"
    error: @main takes 1 arguments but 0 --input files are given
    the arguments of @main, in order (--input FILE, or --input NAME=FILE):
      %x: tensor<?x4xf32> (.npy of float32 or float64)
    ");
    let bad = dir.path().join("bad.npy");
    nnopt::interp::write_npy(&bad, &ArrayD::zeros(vec![1, 3])).unwrap();
    let out = nnopt(&[
        "run",
        "--interp",
        m,
        "--input",
        bad.to_str().unwrap(),
        "-o",
        "-",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the input for %x has shape [1, 3]") && err.contains("  %x: tensor<?x4xf32>"),
        "{err}"
    );
}

/// Flags that change nothing in the command they were given to get a warning, not silence.
#[test]
fn flags_without_effect_are_warned_about() {
    let out = nnopt_ok(&["--timing", "--pass-statistics", "tests/corpus/mlp.nnir"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("warning: --timing has no effect without passes to run")
            && err.contains("warning: --pass-statistics has no effect"),
        "{err}"
    );
    let out = nnopt_ok(&["--prune-neurons", "--timing", "tests/corpus/mlp.nnir"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

/// Every command line of README.md's "Using it" block runs and succeeds, in order, so the
/// examples cannot go stale. Lines that compile through MLIR need the `mlir` feature.
#[test]
fn readme_examples_run() {
    let readme = std::fs::read_to_string("README.md").unwrap();
    let block = readme
        .split("## Using it\n")
        .nth(1)
        .expect("README.md has a \"Using it\" section");
    let lines: Vec<&str> = block
        .lines()
        .skip_while(|l| !l.starts_with("    nnopt "))
        .take_while(|l| l.starts_with("    nnopt "))
        .collect();
    assert!(lines.len() > 10, "{lines:?}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy("examples/resnet.nnir", dir.path().join("in.nnir")).unwrap();
    std::fs::copy("lit/verify/conv2d.nnir", dir.path().join("tests.nnir")).unwrap();
    let x = ndarray::ArrayD::from_elem(vec![1, 3, 8, 8], 0.5f32);
    nnopt::interp::write_npy(dir.path().join("x.npy"), &x).unwrap();
    for line in lines {
        let args = shell_words(line.trim_start().strip_prefix("nnopt ").unwrap());
        let compiles = matches!(args[0].as_str(), "bench" | "compile")
            || (args[0] == "run" && !args.iter().any(|a| a == "--interp"))
            || args.iter().any(|a| a.starts_with("--emit="));
        if compiles && !cfg!(feature = "mlir") {
            continue;
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_nnopt"))
            .args(&args)
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "README line `{line}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The words of a README command line as a POSIX shell splits them (double quotes group; an
/// unquoted `#` after a space starts a comment).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let (mut word, mut quoted, mut in_word) = (String::new(), false, false);
    for c in line.chars() {
        match c {
            '"' => (quoted, in_word) = (!quoted, true),
            '#' if !quoted && !in_word => break,
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
            }
            c => (word, in_word) = (word + &c.to_string(), true),
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// `nnopt run` on token ids: an int64 `.npy` feeds an i64 argument, compiled as interpreted;
/// a float file for it, an int64 file for a float argument, and an id beyond the table are
/// errors (exit 1, no output file), compiled as interpreted.
#[cfg(feature = "mlir")]
#[test]
fn run_takes_int64_token_ids() {
    use ndarray::ArrayD;
    use ndarray_npy::WriteNpyExt;
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("emb.nnir");
    std::fs::write(
        &model,
        "func @main(%ids: tensor<?x3xi64>, %x: tensor<4xf32>) -> (tensor<?x3x4xf32>) {
  %table = nn.constant dense<[[1.0, 0.0, -1.0, 2.0], [0.5, 0.5, 0.5, 0.5], [3.0, -2.0, 1.0, 0.0]]> : tensor<3x4xf32>
  %e = nn.embedding %table, %ids : tensor<?x3x4xf32>
  %y = nn.add %e, %x : tensor<?x3x4xf32>
  return %y : tensor<?x3x4xf32>
}",
    )
    .unwrap();
    let ids_file = |name: &str, ids: Vec<i64>| {
        let p = dir.path().join(name);
        let a = ArrayD::from_shape_vec(vec![ids.len() / 3, 3], ids).unwrap();
        let mut bytes = Vec::new();
        a.write_npy(&mut bytes).unwrap();
        std::fs::write(&p, bytes).unwrap();
        p.to_str().unwrap().to_string()
    };
    let floats = |name: &str, shape: Vec<usize>, v: Vec<f32>| {
        let p = dir.path().join(name);
        nnopt::interp::write_npy(&p, &ArrayD::from_shape_vec(shape, v).unwrap()).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ids = ids_file("ids.npy", vec![2, 0, 1, 1, 1, 2]);
    let x = floats("x.npy", vec![4], vec![0.25, -1.0, 0.0, 1.5]);
    let m = model.to_str().unwrap();
    let mut results = Vec::new();
    for interp in [true, false] {
        let y = dir.path().join(format!("y{interp}.npy"));
        let mut args = vec!["run", m, "--input", &ids, "--input", &x];
        args.extend(["-o", y.to_str().unwrap()]);
        if interp {
            args.push("--interp");
        }
        nnopt_ok(&args);
        results.push(nnopt::interp::read_npy(&y).unwrap());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0].shape(), [2, 3, 4]);
    assert_eq!(
        results[0][[0, 0, 3]],
        0.0 + 1.5,
        "row 2 of the table, plus x"
    );
    let float_ids = floats("fids.npy", vec![1, 3], vec![0.0, 1.0, 2.0]);
    let int_x = ids_file("ix.npy", vec![0, 1, 2]);
    let beyond = ids_file("beyond.npy", vec![0, 3, 1]);
    for interp in [true, false] {
        for (inputs, want) in [
            (
                [&float_ids, &x],
                "holds float values but %ids has type tensor<?x3xi64>",
            ),
            (
                [&ids, &int_x],
                "holds int64 values but %x has type tensor<4xf32>",
            ),
            (
                [&beyond, &x],
                "token id 3 is out of range for a table of 3 rows",
            ),
        ] {
            let y = dir.path().join("never.npy");
            let mut args = vec!["run", m, "--input", inputs[0], "--input", inputs[1]];
            args.extend(["-o", y.to_str().unwrap()]);
            if interp {
                args.push("--interp");
            }
            let out = nnopt(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{err}");
            assert!(err.contains(want), "interp {interp}: {err}");
            assert!(!y.exists());
        }
    }
}
