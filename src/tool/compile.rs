//! `nnopt compile`: one function of a model compiled ahead of time into a shared library
//! (`-o model.so`) or a relocatable object (`-o model.o`), with its C header beside it
//! (`model.h`); the C ABI is `docs/abi.md`, the artifact `lower::compile_artifact`.
//!
//! The C compiler (`$CC`, default `cc`) builds the artifact's C glue and links: `-shared` with
//! a version script that exports the entry point alone, or `-r` for one object. Both files
//! appear whole or not at all.
//!
//! Its flags are defined here rather than in `main.rs` (which keeps the other commands'), to
//! keep the binary's file within its size limit.

use super::equivalence::arg_shapes;
use super::load::{load_model, pick_func, DimArgs};
#[cfg(feature = "mlir")]
use super::mlir::resolve;
use super::mlir::{check_target, TargetSpec};
use super::{fail, usage, Exit};
use crate::diag::{Diagnostic, SourceMap};
use std::path::{Path, PathBuf};

/// `nnopt compile`'s flags.
#[derive(clap::Args, Clone, Debug)]
pub struct CompileArgs {
    /// The NNIR (or .onnx) file.
    pub input: PathBuf,
    /// The artifact, NAME.so or NAME.o: its symbols start with NAME_ (as a C identifier).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: PathBuf,
    /// The function to compile (default: the first).
    #[arg(long, value_name = "NAME")]
    pub func: Option<String>,
    /// The size given to every dynamic dimension of the inputs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch: u32,
    #[command(flatten)]
    pub target: TargetSpec,
    #[command(flatten)]
    pub dims: DimArgs,
}

/// What the artifact is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Shared,
    Object,
}

/// Runs `nnopt compile`; diagnostics and errors go to stderr.
pub fn compile_command(o: &CompileArgs) -> Result<(), Exit> {
    let kind = match o.output.extension().and_then(|e| e.to_str()) {
        Some("so") => Kind::Shared,
        Some("o") => Kind::Object,
        _ => {
            return Err(usage(&format!(
                "compile: {} must name a shared library (.so) or an object file (.o)",
                o.output.display()
            )))
        }
    };
    let dir = match o.output.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(usage(&format!(
            "compile: the directory of {} does not exist",
            o.output.display()
        )));
    }
    // The artifact's symbols start with its file's name (as a C identifier), so several
    // models link into one program.
    let stem = o
        .output
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("model");
    check_target(&o.target)?;
    let mut sources = SourceMap::new();
    let module = load_model(&o.input, &(&o.dims).into(), &mut sources)?;
    let func = pick_func(&module, o.func.as_deref(), &o.input)?;
    let shapes = arg_shapes(func, o.batch as usize);
    let (artifact, header) = build(&module, &func.name, &shapes, stem, kind, o).map_err(|d| {
        sources.emit_to_stderr(&d);
        Exit(1)
    })?;
    let header_path = o.output.with_extension("h");
    let staged = |bytes: &[u8]| -> std::io::Result<tempfile::NamedTempFile> {
        let mut t = crate::atomic::output_tempfile(dir)?;
        std::io::Write::write_all(&mut t, bytes)?;
        Ok(t)
    };
    let written = staged(header.as_bytes())
        .and_then(|h| Ok((h, staged(&artifact)?)))
        .and_then(|(h, a)| {
            h.persist(&header_path).map_err(|e| e.error)?;
            a.persist(&o.output).map_err(|e| e.error)?;
            Ok(())
        });
    written.map_err(|e| fail(&format!("cannot write {}: {e}", o.output.display())))
}

/// The artifact's bytes and its header, for the input and target of `o`.
#[cfg(feature = "mlir")]
fn build(
    module: &crate::ir::Module,
    func: &str,
    shapes: &[Vec<usize>],
    stem: &str,
    kind: Kind,
    o: &CompileArgs,
) -> Result<(Vec<u8>, String), Vec<Diagnostic>> {
    use std::process::Command;
    let target = resolve(&o.target).map_err(|e| vec![Diagnostic::error(e)])?;
    let prefix = &crate::lower::c_ident(stem);
    let artifact = crate::lower::compile_artifact(module, func, shapes, prefix, &target)?;
    let message = |m: String| vec![Diagnostic::error(m).at(module.span)];
    let io = |e: std::io::Error| message(format!("cannot stage the artifact: {e}"));
    let tmp = tempfile::tempdir().map_err(io)?;
    let at = |name: &str| tmp.path().join(name);
    let mut models = Vec::new();
    for (i, object) in artifact.objects.iter().enumerate() {
        let p = at(&format!("model{i}.o"));
        std::fs::write(&p, object).map_err(io)?;
        models.push(p.into_os_string());
    }
    let mut weights = Vec::new();
    for i in 0..artifact.signature.weights.len() {
        let p = at(&format!("w{i}.bin"));
        std::fs::write(&p, artifact.weight_bytes(i)).map_err(io)?;
        weights.push(p);
    }
    std::fs::write(at("glue.c"), artifact.glue(prefix, &weights)).map_err(io)?;
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let run = |args: &[&std::ffi::OsStr]| -> Result<(), Vec<Diagnostic>> {
        let out = Command::new(&cc).args(args).output().map_err(|e| {
            message(format!(
                "compile needs a C compiler to link the artifact, and `{}` cannot run ({e}); set CC",
                cc.to_string_lossy()
            ))
        })?;
        if out.status.success() {
            Ok(())
        } else {
            Err(message(format!(
                "the C compiler `{}` failed:\n{}",
                cc.to_string_lossy(),
                String::from_utf8_lossy(&out.stderr)
            )))
        }
    };
    let os = |p: &Path| p.as_os_str().to_owned();
    let (glue_c, glue_o, out) = (at("glue.c"), at("glue.o"), at("out"));
    run(&[
        "-c".as_ref(),
        "-O2".as_ref(),
        "-fPIC".as_ref(),
        &os(&glue_c),
        "-o".as_ref(),
        &os(&glue_o),
    ])?;
    // The objects come last: the code of every partition, then the glue it calls.
    let mut link: Vec<std::ffi::OsString> = match kind {
        Kind::Shared => {
            let script = at("exports.map");
            let global = artifact.exports(prefix).join("; ");
            std::fs::write(&script, format!("{{ global: {global}; local: *; }};\n")).map_err(io)?;
            let mut flag = std::ffi::OsString::from("-Wl,--version-script=");
            flag.push(&script);
            vec!["-shared".into(), flag]
        }
        Kind::Object => vec!["-r".into(), "-nostdlib".into()],
    };
    link.extend(["-o".into(), os(&out)]);
    link.extend(models);
    link.push(os(&glue_o));
    if let Kind::Shared = kind {
        link.push("-lm".into());
    }
    run(&link.iter().map(|a| a.as_os_str()).collect::<Vec<_>>())?;
    let bytes = std::fs::read(&out).map_err(io)?;
    Ok((
        bytes,
        artifact.header(prefix, &o.input.display().to_string()),
    ))
}

/// Without the `mlir` feature there is no compiler.
#[cfg(not(feature = "mlir"))]
fn build(
    module: &crate::ir::Module,
    _: &str,
    _: &[Vec<usize>],
    _: &str,
    _: Kind,
    _: &CompileArgs,
) -> Result<(Vec<u8>, String), Vec<Diagnostic>> {
    Err(vec![Diagnostic::error(
        "this nnopt was built without the `mlir` feature; compile needs the compiler",
    )
    .at(module.span)])
}
