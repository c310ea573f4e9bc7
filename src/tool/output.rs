//! Writing results: text to a file (atomically) or stdout, an ONNX model, and a module's weights
//! moved to a safetensors file beside an `.nnir` output.
//!
//! Nothing is renamed into place before every chunk has succeeded: weights files are staged as
//! complete temporary files and persisted just before the output itself is written.

use super::progress::Progress;
use super::{fail, Exit};
use crate::diag::SourceMap;
use crate::ir::{Module, Tensor};
use crate::onnx;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `text` to `path` atomically, or to stdout for `-`.
pub fn write_output(path: &Path, text: &str) -> Result<(), Exit> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| fail(&format!("cannot write stdout: {e}")))
    } else {
        crate::atomic::write_atomic(path, text.as_bytes())
            .map_err(|e| fail(&format!("cannot write {}: {e}", path.display())))
    }
}

/// Whether `-o` names a regular file (new or existing), beside which a weights file can go; `-`,
/// `/dev/null` and FIFOs get the module with changed weights inline instead.
pub fn writes_regular_file(output: &Path) -> bool {
    output.as_os_str() != "-" && std::fs::metadata(output).map_or(true, |m| m.is_file())
}

/// `--external-data[=FILE]`, the flag of the default command that puts an ONNX output's
/// weights in a file beside it (converted into [`onnx::ExternalData`]).
#[derive(clap::Args, Clone, Debug)]
pub struct ExternalDataArgs {
    /// With an .onnx output: write the initializers of 1 KiB or more to FILE beside it (a file
    /// name; default: the output's name with `.data` appended), at aligned offsets, which the
    /// model names relatively. Without the flag, this happens only when the model would exceed
    /// protobuf's 2 GiB. Both files are written atomically.
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true,
          default_missing_value = "")]
    pub external_data: Option<String>,
}

impl From<&ExternalDataArgs> for onnx::ExternalData {
    fn from(a: &ExternalDataArgs) -> Self {
        match a.external_data.as_deref() {
            None => onnx::ExternalData::Auto,
            Some("") => onnx::ExternalData::Always(None),
            Some(f) => onnx::ExternalData::Always(Some(f.to_string())),
        }
    }
}

/// Checks `--external-data` against the output before any work: it needs an .onnx output, and
/// its file name must stay beside it.
pub fn check_external_data(
    external: &onnx::ExternalData,
    output: &Path,
    onnx_out: bool,
) -> Result<(), Exit> {
    let onnx::ExternalData::Always(file) = external else {
        return Ok(());
    };
    if !onnx_out {
        return Err(super::usage("--external-data applies to an .onnx output"));
    }
    match file {
        Some(f) => onnx::export::check_data_file_name(output, f).map_err(|e| super::usage(&e)),
        None => Ok(()),
    }
}

/// Writes the module for an .onnx output; an ONNX model holds exactly one.
pub fn write_onnx(
    modules: Vec<Module>,
    output: &Path,
    external: &onnx::ExternalData,
) -> Result<(), Exit> {
    let [m] = <[_; 1]>::try_from(modules).map_err(|ms: Vec<_>| {
        fail(&format!(
            "an ONNX model is one module, but the input has {} chunks",
            ms.len()
        ))
    })?;
    let written = {
        let _progress = Progress::start(format!("writing {}", output.display()));
        onnx::write_onnx(&m, output, external)
    };
    written.map_err(|d| {
        SourceMap::new().emit_to_stderr(&[d]);
        Exit(1)
    })
}

/// A weights file written in full to a temporary file, and where it goes once the output is
/// ready.
pub type StagedWeights = (tempfile::NamedTempFile, PathBuf);

/// Moves the weights of `m`, the `index`-th chunk written to `output`, to their own
/// safetensors file beside it ([`weights_path_for`], [`externalize_weights`]) and stages that
/// file; `None` when `m` has no tensor to write there.
pub fn stage_weights(
    m: &mut Module,
    output: &Path,
    index: usize,
) -> Result<Option<StagedWeights>, Exit> {
    let path = weights_path_for(output, index);
    if path == output {
        return Err(fail(&format!(
            "the output {} would be overwritten by its own weights file",
            path.display()
        )));
    }
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let tensors = externalize_weights(m, &file_name.unwrap_or_default());
    if tensors.is_empty() {
        return Ok(None);
    }
    let refs: Vec<(&str, &Tensor)> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let tmp = crate::weights::stage_safetensors(&path, &refs)
        .map_err(|e| fail(&format!("cannot write {}: {e}", path.display())))?;
    Ok(Some((tmp, path)))
}

/// Renames staged weights files into place.
pub fn persist_weights(staged: Vec<StagedWeights>) -> Result<(), Exit> {
    for (tmp, path) in staged {
        tmp.persist(&path)
            .map_err(|e| fail(&format!("cannot write {}: {}", path.display(), e.error)))?;
    }
    Ok(())
}

/// Where `-o out.nnir` puts the weights of a module that reads a safetensors file:
/// `out.safetensors`, beside it (the `index`-th chunk of `--split-input-file` after the first
/// gets `out.<index>.safetensors`).
pub fn weights_path_for(output: &Path, index: usize) -> PathBuf {
    if index == 0 {
        output.with_extension("safetensors")
    } else {
        output.with_extension(format!("{index}.safetensors"))
    }
}

/// Makes `m` read all its large tensors from a new safetensors file that the `weights`
/// attribute names as `file`, and returns the tensors that file must hold, in first-use order.
///
/// Every `nn.weight` keeps its name; every `nn.constant` that a pass derived from a weight (by
/// slicing or rescaling it) or that has more than [`crate::syntax::printer::HEX_THRESHOLD`]
/// elements becomes an `nn.weight` (splats stay inline), named after the weight it came from
/// (see [`crate::rewrite::Rewriter::derived_constant_before`]), else after its value
/// (`%w` → `"w"`), made unique with a numeric suffix. The file is self-contained: the old one is no longer read.
pub fn externalize_weights(m: &mut Module, file: &str) -> Vec<(String, Tensor)> {
    use crate::ir::{Attr, OpKind};
    use crate::rewrite::Rewriter;
    use std::collections::HashSet;

    let mut taken: HashSet<String> = m
        .funcs
        .iter()
        .flat_map(|f| {
            f.ops().filter_map(|op| match f.kind(op) {
                OpKind::Weight { name, .. } => Some(name.clone()),
                _ => None,
            })
        })
        .collect();
    let mut out = Vec::new();
    let mut written: HashSet<String> = HashSet::new();
    for f in &mut m.funcs {
        let ops: Vec<_> = f.ops().collect();
        let mut rw = Rewriter::new(f);
        for op in ops {
            let f = rw.func();
            match f.kind(op) {
                OpKind::Weight { name, value } if written.insert(name.clone()) => {
                    out.push((name.clone(), value.clone()));
                }
                OpKind::Constant(t)
                    if !t.is_splat()
                        && (t.len() > crate::syntax::printer::HEX_THRESHOLD
                            || f.op(op)
                                .result()
                                .is_some_and(|r| f.value(r).weight_name.is_some())) =>
                {
                    let value = f.op(op).result().map(|r| f.value(r));
                    let stem = value
                        .and_then(|v| v.weight_name.clone().or_else(|| v.name.clone()))
                        .unwrap_or_else(|| "const".to_string());
                    let name = (0..)
                        .map(|i| {
                            if i == 0 {
                                stem.clone()
                            } else {
                                format!("{stem}.{i}")
                            }
                        })
                        .find(|n| !taken.contains(n))
                        .expect("an unbounded range has a free name");
                    taken.insert(name.clone());
                    written.insert(name.clone());
                    let value = t.clone();
                    out.push((name.clone(), value.clone()));
                    rw.set_kind(op, OpKind::Weight { name, value });
                }
                _ => {}
            }
        }
    }
    let attr = Attr::Str(file.to_string());
    match m.attrs.iter_mut().find(|(k, _)| k == "weights") {
        _ if out.is_empty() => m.attrs.retain(|(k, _)| k != "weights"),
        Some((_, v)) => *v = attr,
        None => m.attrs.push(("weights".to_string(), attr)),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tool::load::load;

    /// Large constants move to the weights file under their value names, made unique across
    /// functions; small and splat constants stay inline; the attribute names the new file.
    #[test]
    fn externalize_names_large_constants_uniquely() {
        let big = format!("dense<[{}]>", vec!["1.5"; 300].join(", "));
        let src = format!(
            "module {{\n func @a() -> (tensor<300xf32>) {{\n %w = nn.constant {big} : tensor<300xf32>\n return %w : tensor<300xf32>\n }}\n func @b() -> (tensor<300xf32>, tensor<2xf32>, tensor<300xf32>) {{\n %w = nn.constant {big} : tensor<300xf32>\n %s = nn.constant dense<[1.0, 2.0]> : tensor<2xf32>\n %z = nn.constant dense<0.0> : tensor<300xf32>\n return %w, %s, %z : tensor<300xf32>, tensor<2xf32>, tensor<300xf32>\n }}\n}}\n"
        );
        let mut diags = Vec::new();
        let mut m = load(&src, 0, 0, Path::new("."), &mut diags).expect("loads");
        let tensors = externalize_weights(&mut m, "out.safetensors");
        let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["w", "w.1"]);
        assert_eq!(m.weights_attr(), Some("out.safetensors"));
        let text = crate::syntax::printer::print_module(&m);
        assert!(text.contains(r#"%w = nn.weight "w.1""#), "{text}");
        assert!(
            text.contains("dense<[1.0, 2.0]>") && text.contains("dense<0.0>"),
            "{text}"
        );
    }
}
