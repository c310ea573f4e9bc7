//! `nnopt compile` (an ahead-of-time artifact with a C ABI, linked into a C program) and the
//! compiled-code cache of `nnopt run`, against the interpreter.
#![cfg(feature = "mlir")]

use ndarray::ArrayD;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A network with external weights (conv, dense layers the schedule packs, activations), so
/// the artifact's embedded weights are exercised, and its `.safetensors` beside it; `scale`
/// scales every weight.
fn weighted_model(dir: &Path, scale: f32) -> PathBuf {
    let tensors: [(&str, Vec<usize>); 6] = [
        ("conv.weight", vec![8, 3, 3, 3]),
        ("conv.bias", vec![8]),
        ("fc1.weight", vec![40, 512]),
        ("fc1.bias", vec![40]),
        ("fc2.weight", vec![10, 40]),
        ("fc2.bias", vec![10]),
    ];
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    let mut seed = 0x9e37_79b9u32;
    for (name, shape) in &tensors {
        let n: usize = shape.iter().product();
        let start = data.len();
        for _ in 0..n {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let x = (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            data.extend_from_slice(&(x * scale).to_le_bytes());
        }
        header.insert(
            name.to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [start, data.len()]}),
        );
    }
    let json = serde_json::to_vec(&header).unwrap();
    let mut file = (json.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(&json);
    file.extend_from_slice(&data);
    std::fs::write(dir.join("w.safetensors"), file).unwrap();
    let text = r#"module attributes {weights = "w.safetensors"} {
  func @main(%x: tensor<?x3x8x8xf32>) -> tensor<?x10xf32> {
    %cw = nn.weight "conv.weight" : tensor<8x3x3x3xf32>
    %cb = nn.weight "conv.bias" : tensor<8xf32>
    %c = nn.conv2d %x, %cw, %cb {pads = [1, 1, 1, 1]} : tensor<?x8x8x8xf32>
    %r = nn.relu %c : tensor<?x8x8x8xf32>
    %f = nn.flatten %r {axis = 1} : tensor<?x512xf32>
    %w1 = nn.weight "fc1.weight" : tensor<40x512xf32>
    %b1 = nn.weight "fc1.bias" : tensor<40xf32>
    %h = nn.linear %f, %w1, %b1 : tensor<?x40xf32>
    %g = nn.gelu %h : tensor<?x40xf32>
    %w2 = nn.weight "fc2.weight" : tensor<10x40xf32>
    %b2 = nn.weight "fc2.bias" : tensor<10xf32>
    %y = nn.linear %g, %w2, %b2 : tensor<?x10xf32>
    return %y : tensor<?x10xf32>
  }
}
"#;
    let path = dir.join("net.nnir");
    std::fs::write(&path, text).unwrap();
    path
}

fn nnopt(args: &[&str], cache: &Path) -> Output {
    nnopt_with(args, cache, &[])
}

/// [`nnopt`] with more environment variables.
fn nnopt_with(args: &[&str], cache: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnopt"))
        .args(args)
        .env("XDG_CACHE_HOME", cache)
        .envs(env.iter().copied())
        .output()
        .expect("run nnopt")
}

fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The interpreter's output of `model`'s first function on `x` (token ids when `ids`).
fn interpret(model: &Path, x: &ArrayD<f32>, ids: bool, dir: &Path) -> ArrayD<f32> {
    let xp = dir.join("x_interp.npy");
    let yp = dir.join("y_interp.npy");
    if ids {
        use ndarray_npy::WriteNpyExt;
        let mut bytes = Vec::new();
        x.mapv(|v| v as i64).write_npy(&mut bytes).unwrap();
        std::fs::write(&xp, bytes).unwrap();
    } else {
        nnopt::interp::write_npy(&xp, x).unwrap();
    }
    let (m, y) = (model.to_str().unwrap(), yp.to_str().unwrap());
    ok(nnopt(
        &[
            "run",
            "--interp",
            m,
            "--input",
            xp.to_str().unwrap(),
            "-o",
            y,
        ],
        dir,
    ));
    nnopt::interp::read_npy(&yp).unwrap()
}

fn input(shape: &[usize]) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        shape.to_vec(),
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect(),
    )
    .unwrap()
}

/// Whether a C compiler runs; the artifact tests need one to build their C program.
fn have_cc() -> bool {
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    Command::new(cc).arg("--version").output().is_ok()
}

/// The test program: runs the entry twice (the second call on the temporaries the first one
/// left to the artifact's allocator, which must give the same bytes), then checks that
/// `trim` frees what was kept, and once only.
const C_MAIN: &str = r#"#include <stdio.h>
#include <string.h>
#include "HEADER"
int main(int argc, char **argv) {
  static XTYPE x[ENTRY_IN0_SIZE];
  static float y[ENTRY_OUT0_SIZE], again[ENTRY_OUT0_SIZE];
  FILE *f = fopen(argv[1], "rb");
  if (!f || fread(x, sizeof x[0], ENTRY_IN0_SIZE, f) != ENTRY_IN0_SIZE) return 3;
  fclose(f);
  entry(x, y);
  entry(x, again);
  if (memcmp(y, again, sizeof y) != 0) return 5;
  if (trim() == 0 || trim() != 0) return 6;
  f = fopen(argv[2], "wb");
  if (!f || fwrite(y, sizeof y[0], ENTRY_OUT0_SIZE, f) != ENTRY_OUT0_SIZE) return 4;
  return fclose(f) != 0;
}
"#;

/// Compiles `model` to `artifact` (`.so` or `.o`), links a C program against it, runs it on
/// `x` (an `int64_t` buffer of token ids when `ids`) and returns its output.
fn run_from_c(model: &Path, artifact: &str, x: &ArrayD<f32>, ids: bool, dir: &Path) -> Vec<f32> {
    let out = dir.join(artifact);
    let batch = x.shape()[0].to_string();
    ok(nnopt(
        &[
            "compile",
            model.to_str().unwrap(),
            "--batch",
            &batch,
            "-o",
            out.to_str().unwrap(),
        ],
        dir,
    ));
    let stem = out.file_stem().unwrap().to_str().unwrap();
    let header = out.with_extension("h");
    assert!(header.exists(), "no header beside {}", out.display());
    let entry = format!("{stem}_main");
    let main = C_MAIN
        .replace("HEADER", header.to_str().unwrap())
        .replace("XTYPE", if ids { "int64_t" } else { "float" })
        .replace("ENTRY_", &format!("{}_", entry.to_uppercase()))
        .replace("entry(", &format!("{entry}("))
        .replace("trim(", &format!("{stem}_trim("));
    let src = dir.join(format!("{stem}_main.c"));
    std::fs::write(&src, main).unwrap();
    let prog = dir.join(format!("{stem}_prog"));
    let mut cc = Command::new(std::env::var_os("CC").unwrap_or_else(|| "cc".into()));
    cc.arg(&src).arg(&out).arg("-o").arg(&prog).arg("-lm");
    if artifact.ends_with(".so") {
        cc.arg(format!("-Wl,-rpath,{}", dir.display()));
    }
    ok(cc.output().unwrap());
    let xb = dir.join(format!("{stem}_x.bin"));
    let yb = dir.join(format!("{stem}_y.bin"));
    let bytes: Vec<u8> = if ids {
        x.iter().flat_map(|&v| (v as i64).to_le_bytes()).collect()
    } else {
        x.iter().flat_map(|v| v.to_le_bytes()).collect()
    };
    std::fs::write(&xb, bytes).unwrap();
    ok(Command::new(&prog).arg(&xb).arg(&yb).output().unwrap());
    std::fs::read(&yb)
        .unwrap()
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn assert_close(got: &[f32], want: &ArrayD<f32>, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: output size");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let worst = got
        .iter()
        .zip(want.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(
        worst <= 1e-4 * scale,
        "{what}: differs from the interpreter by {worst} (largest magnitude {scale})"
    );
}

#[test]
fn a_compiled_artifact_runs_from_c_and_matches_the_interpreter() {
    if !have_cc() {
        eprintln!("skipping: no C compiler (cc, or $CC) to build the test program");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let x = input(&[2, 3, 8, 8]);
    for model in [
        weighted_model(d, 0.5),
        PathBuf::from("examples/resnet.nnir"),
    ] {
        let want = interpret(&model, &x, false, d);
        let name = model.file_stem().unwrap().to_str().unwrap().to_string();
        for kind in ["so", "o"] {
            let got = run_from_c(&model, &format!("{name}_{kind}.{kind}"), &x, false, d);
            assert_close(&got, &want, &format!("{} as .{kind}", model.display()));
        }
    }
}

#[test]
fn an_artifact_with_token_ids_runs_from_c() {
    if !have_cc() {
        eprintln!("skipping: no C compiler (cc, or $CC) to build the test program");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("emb.nnir");
    std::fs::write(
        &model,
        "func @main(%ids: tensor<?x4xi64>) -> tensor<?x4x2xf32> {
  %table = nn.constant dense<[[1.0, 0.0, -1.0], [0.5, 0.5, 0.5], [3.0, -2.0, 1.0], [0.0, 0.25, 4.0], [-1.0, 2.0, 0.5]]> : tensor<5x3xf32>
  %e = nn.embedding %table, %ids : tensor<?x4x3xf32>
  %w = nn.constant dense<[[1.0, 2.0, 0.0], [0.0, -1.0, 0.5]]> : tensor<2x3xf32>
  %y = nn.linear %e, %w : tensor<?x4x2xf32>
  return %y : tensor<?x4x2xf32>
}",
    )
    .unwrap();
    let x = input(&[3, 4]).mapv(|v| ((v + 1.0) * 2.5).floor().min(4.0));
    let want = interpret(&model, &x, true, d);
    let got = run_from_c(&model, "emb.so", &x, true, d);
    assert_close(&got, &want, "token ids from C");
    let header = std::fs::read_to_string(d.join("emb.h")).unwrap();
    assert!(header.contains("/* in0: int64[3][4] */"), "{header}");
    assert!(
        header.contains("const int64_t *in0, float *out0"),
        "{header}"
    );
}

#[test]
fn compile_usage_errors_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = nnopt(
        &[
            "compile",
            "examples/resnet.nnir",
            "-o",
            d.join("m.txt").to_str().unwrap(),
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(2));
    let missing = d.join("no/such/dir/m.so");
    let out = nnopt(
        &[
            "compile",
            "examples/resnet.nnir",
            "-o",
            missing.to_str().unwrap(),
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0);
}

/// Runs `model` on `x` with the compiler (extra flags `flags`), returning the output's bytes
/// and stderr.
fn run_compiled(model: &Path, x: &Path, cache: &Path, flags: &[&str]) -> (Vec<u8>, String) {
    run_compiled_with(model, x, cache, flags, &[])
}

/// [`run_compiled`] with more environment variables.
fn run_compiled_with(
    model: &Path,
    x: &Path,
    cache: &Path,
    flags: &[&str],
    env: &[(&str, &str)],
) -> (Vec<u8>, String) {
    let y = cache.with_extension("y.npy");
    let mut args = vec![
        "run",
        model.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
    ];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["-o", y.to_str().unwrap()]);
    let out = ok(nnopt_with(&args, cache, env));
    (
        std::fs::read(&y).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn entries(cache: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(cache.join("nnopt")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// In `dir`: [`weighted_model`], an input for it and the path of an empty cache directory.
fn weighted_run(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let model = weighted_model(dir, 0.5);
    let x = dir.join("x.npy");
    nnopt::interp::write_npy(&x, &input(&[2, 3, 8, 8])).unwrap();
    (model, x, dir.join("cache"))
}

#[test]
fn the_cache_is_filled_reused_bit_identically_and_bypassed_with_no_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (model, x, cache) = weighted_run(dir.path());
    let (uncached, _) = run_compiled(&model, &x, &cache, &["--no-cache"]);
    assert!(entries(&cache).is_empty(), "--no-cache stored code");
    let (first, _) = run_compiled(&model, &x, &cache, &[]);
    assert_eq!(entries(&cache).len(), 1);
    let (second, err) = run_compiled(&model, &x, &cache, &[]);
    assert_eq!(entries(&cache).len(), 1, "a cached run stored again");
    assert!(err.is_empty(), "{err}");
    assert_eq!(first, uncached);
    assert_eq!(second, uncached, "a cached run's output differs");
    // Another thread count is another key; its cached run is bit-identical too.
    let (t2, _) = run_compiled(&model, &x, &cache, &["--threads", "2", "--no-cache"]);
    run_compiled(&model, &x, &cache, &["--threads", "2"]);
    assert_eq!(entries(&cache).len(), 2);
    let (t2_cached, _) = run_compiled(&model, &x, &cache, &["--threads", "2"]);
    assert_eq!(t2_cached, t2);
}

#[test]
fn the_cache_keeps_to_nnopt_cache_size() {
    let dir = tempfile::tempdir().unwrap();
    let (model, x, cache) = weighted_run(dir.path());
    let run = |size: &str, threads: &str| {
        let env = [("NNOPT_CACHE_SIZE", size)];
        run_compiled_with(&model, &x, &cache, &["--threads", threads], &env).1
    };
    // A bound below one entry keeps only the newest (threads are part of the key).
    run("1", "1");
    run("1", "2");
    assert_eq!(entries(&cache).len(), 1);
    // A size that does not parse warns and bounds to the default, which keeps both.
    let err = run("lots", "1");
    assert!(
        err.contains("NNOPT_CACHE_SIZE=\"lots\" is not a size"),
        "{err}"
    );
    assert_eq!(entries(&cache).len(), 2);
}

#[test]
fn a_damaged_cache_entry_is_compiled_again() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = PathBuf::from("examples/resnet.nnir");
    let x = d.join("x.npy");
    nnopt::interp::write_npy(&x, &input(&[2, 3, 8, 8])).unwrap();
    let cache = d.join("cache");
    let (want, _) = run_compiled(&model, &x, &cache, &[]);
    let [entry] = &entries(&cache)[..] else {
        panic!("not one cache entry")
    };
    let bytes = std::fs::read(entry).unwrap();
    for damaged in [bytes[..bytes.len() / 2].to_vec(), bytes[..10].to_vec(), {
        let mut b = bytes.clone();
        let mid = b.len() / 2;
        b[mid] ^= 0x40;
        b
    }] {
        std::fs::write(entry, &damaged).unwrap();
        let (got, err) = run_compiled(&model, &x, &cache, &[]);
        assert_eq!(got, want);
        assert!(err.contains("damaged cache entry"), "{err}");
        assert_eq!(
            std::fs::read(entry).unwrap(),
            bytes,
            "the entry was not rewritten"
        );
    }
}

#[test]
fn an_unwritable_cache_directory_warns_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let x = d.join("x.npy");
    nnopt::interp::write_npy(&x, &input(&[1, 3, 8, 8])).unwrap();
    // XDG_CACHE_HOME names a regular file: nnopt/ cannot be created below it.
    let cache = d.join("file");
    std::fs::write(&cache, b"").unwrap();
    let (_, err) = run_compiled(Path::new("examples/resnet.nnir"), &x, &cache, &[]);
    assert!(err.contains("warning: cannot store compiled code"), "{err}");
}

#[test]
fn a_weight_file_changed_in_place_is_a_miss_even_with_its_time_kept() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (model, x, cache) = weighted_run(d);
    let (before, _) = run_compiled(&model, &x, &cache, &[]);
    let weights = d.join("w.safetensors");
    let time = std::fs::metadata(&weights).unwrap().modified().unwrap();
    // Same names, shapes, sizes and text; other values, and the old modification time.
    weighted_model(d, 0.25);
    std::fs::File::options()
        .write(true)
        .open(&weights)
        .unwrap()
        .set_modified(time)
        .unwrap();
    let (after, _) = run_compiled(&model, &x, &cache, &[]);
    assert_eq!(
        entries(&cache).len(),
        2,
        "the changed weights reused the entry"
    );
    assert_ne!(after, before);
    let (uncached, _) = run_compiled(&model, &x, &cache, &["--no-cache"]);
    assert_eq!(after, uncached);
}

#[test]
#[cfg(target_arch = "x86_64")]
fn a_forced_target_keys_the_cache_and_drives_compile() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = PathBuf::from("examples/resnet.nnir");
    let x = d.join("x.npy");
    nnopt::interp::write_npy(&x, &input(&[2, 3, 8, 8])).unwrap();
    let cache = d.join("cache");
    run_compiled(&model, &x, &cache, &[]);
    let avx2 = ["--target-cpu", "x86-64-v3"];
    run_compiled(&model, &x, &cache, &avx2);
    assert_eq!(
        entries(&cache).len(),
        2,
        "a forced target reused the host's entry"
    );
    run_compiled(&model, &x, &cache, &avx2);
    assert_eq!(entries(&cache).len(), 2);
    let out = nnopt(
        &[
            "compile",
            "examples/resnet.nnir",
            "--target-cpu",
            "pentium-pro-max",
            "-o",
            d.join("bad.o").to_str().unwrap(),
        ],
        d,
    );
    assert_eq!(out.status.code(), Some(2));
    if !have_cc() {
        return;
    }
    // The object compiled for AVX2 has no AVX-512 register (on any host).
    let object = d.join("m.o");
    ok(nnopt(
        &[
            "compile",
            "examples/resnet.nnir",
            "--target-cpu",
            "x86-64-v3",
            "-o",
            object.to_str().unwrap(),
        ],
        d,
    ));
    let Ok(dis) = Command::new("objdump").arg("-d").arg(&object).output() else {
        eprintln!("skipping the disassembly: no objdump");
        return;
    };
    let text = String::from_utf8_lossy(&dis.stdout);
    assert!(text.contains("ymm"), "no AVX code at all");
    assert!(!text.contains("zmm"), "AVX-512 code for x86-64-v3");
}
