//! What the CLI does with a file, as library functions so that tests and benchmarks run the
//! same code: split the input, read each chunk (parse → build IR → verify), and check
//! `// expected-error {{...}}` annotations against the diagnostics produced.

use crate::diag::{Diagnostic, FileId, Severity, Span};
use crate::ir::{Function, Module};
use crate::syntax::{parse, reader};
use crate::verify;
use std::ops::Range;
use std::path::Path;

/// The separator of `--split-input-file`, on a line of its own (as in mlir-opt).
pub const SPLIT_MARKER: &str = "// -----";

/// The chunks to process: the whole input, or the pieces between separator lines.
pub fn chunks(src: &str, split: bool) -> Vec<Range<usize>> {
    if split {
        split_input(src)
    } else {
        std::iter::once(0..src.len()).collect()
    }
}

/// Byte ranges of the chunks of `src` between separator lines.
pub fn split_input(src: &str) -> Vec<Range<usize>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut pos = 0;
    for line in src.split_inclusive('\n') {
        if line.trim_end() == SPLIT_MARKER {
            chunks.push(start..pos);
            start = pos + line.len();
        }
        pos += line.len();
    }
    chunks.push(start..src.len());
    chunks
}

/// Parses, reads and verifies one chunk (`src` starts at offset `base` of `file`). Returns the
/// module only when no error was reported.
pub fn load(
    src: &str,
    file: FileId,
    base: usize,
    base_dir: &Path,
    diags: &mut Vec<Diagnostic>,
) -> Option<Module> {
    let ast = match parse::parse_module(src, file, base) {
        Ok(ast) => ast,
        Err(d) => {
            diags.push(d);
            return None;
        }
    };
    let module = reader::read_module(&ast, base_dir, diags)?;
    let errors = verify::verify_module(&module);
    if errors.is_empty() {
        Some(module)
    } else {
        diags.extend(errors);
        None
    }
}

/// The largest differences between two runs of the same inputs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Difference {
    pub max_abs: f32,
    pub max_rel: f32,
}

/// Runs `a` and `b` (same signature) in the reference interpreter on `trials` sets of random
/// inputs in [-1, 1) (dynamic dimensions take `dynamic_size`) and returns the largest absolute
/// and relative differences of their results. Relative differences are taken against
/// `max(|x|, |y|, 1e-6)`.
pub fn compare_functions(
    a: &Function,
    b: &Function,
    trials: usize,
    dynamic_size: usize,
    seed: u64,
) -> Result<Difference, String> {
    let mut state = seed | 1;
    let mut next = move || {
        // xorshift64*: reproducible inputs without another dependency.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let x = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    };
    let mut diff = Difference::default();
    for _ in 0..trials {
        let inputs: Vec<ndarray::ArrayD<f32>> = a
            .args()
            .iter()
            .map(|&v| {
                let shape: Vec<usize> = a
                    .ty(v)
                    .dims
                    .iter()
                    .map(|d| d.as_static().map_or(dynamic_size, |s| s as usize))
                    .collect();
                ndarray::ArrayD::from_shape_simple_fn(shape, &mut next)
            })
            .collect();
        let ra = crate::interp::run(a, &inputs).map_err(|e| format!("the original: {e}"))?;
        let rb = crate::interp::run(b, &inputs).map_err(|e| format!("the result: {e}"))?;
        for (x, y) in ra.iter().zip(&rb) {
            if x.shape() != y.shape() {
                return Err(format!(
                    "result shapes differ: {:?} vs {:?}",
                    x.shape(),
                    y.shape()
                ));
            }
            for (p, q) in x.iter().zip(y.iter()) {
                let abs = (p - q).abs();
                let rel = abs / p.abs().max(q.abs()).max(1e-6);
                // NaN in either run is a difference, not a match.
                let (abs, rel) = if p.is_nan() != q.is_nan() {
                    (f32::INFINITY, f32::INFINITY)
                } else if p.is_nan() {
                    (0.0, 0.0)
                } else {
                    (abs, rel)
                };
                diff.max_abs = diff.max_abs.max(abs);
                diff.max_rel = diff.max_rel.max(rel);
            }
        }
    }
    Ok(diff)
}

/// One `// expected-<severity>@<offset> {{message}}` annotation.
#[derive(Debug)]
struct Expected<'a> {
    severity: Severity,
    line: usize,
    message: &'a str,
    span: Span,
}

fn parse_expectations<'a>(
    src: &'a str,
    file: FileId,
    base: usize,
    problems: &mut Vec<Diagnostic>,
) -> Vec<Expected<'a>> {
    let mut out = Vec::new();
    let mut offset = base;
    for (i, line) in src.split_inclusive('\n').enumerate() {
        let here = offset;
        offset += line.len();
        let Some(at) = line.find("// expected-") else {
            continue;
        };
        let rest = &line[at + "// expected-".len()..];
        let span = Span::new(file, here + at, here + line.trim_end().len());
        let word_end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let severity = match &rest[..word_end] {
            "error" => Severity::Error,
            "warning" => Severity::Warning,
            "note" => Severity::Note,
            "remark" => Severity::Remark,
            other => {
                problems.push(
                    Diagnostic::error(format!("unknown expectation 'expected-{other}'")).at(span),
                );
                continue;
            }
        };
        let rest = &rest[word_end..];
        let (delta, rest) = match rest.strip_prefix('@') {
            Some(r) => {
                let end = r
                    .find(|c: char| c.is_whitespace() || c == '{')
                    .unwrap_or(r.len());
                let d = match &r[..end] {
                    "above" => Some(-1),
                    "below" => Some(1),
                    s => s.parse::<i64>().ok(),
                };
                match d {
                    Some(d) => (d, &r[end..]),
                    None => {
                        problems.push(
                            Diagnostic::error("expected @+N, @-N, @above or @below").at(span),
                        );
                        continue;
                    }
                }
            }
            None => (0, rest),
        };
        let message = rest
            .trim_start()
            .strip_prefix("{{")
            .and_then(|r| r.find("}}").map(|e| &r[..e]));
        let Some(message) = message else {
            problems.push(Diagnostic::error("expected a message in {{...}}").at(span));
            continue;
        };
        let line_no = i as i64 + 1 + delta;
        if line_no < 1 {
            problems.push(Diagnostic::error("the expectation points before the file").at(span));
            continue;
        }
        out.push(Expected {
            severity,
            line: line_no as usize,
            message,
            span,
        });
    }
    out
}

/// Matches the diagnostics of a chunk against its annotations. `line_of` maps a file offset
/// to its 1-based line within the chunk. Returns the mismatches as errors (empty = verified).
pub fn verify_expectations(
    src: &str,
    file: FileId,
    base: usize,
    produced: &[Diagnostic],
) -> Vec<Diagnostic> {
    let mut problems = Vec::new();
    let expected = parse_expectations(src, file, base, &mut problems);
    let line_of = |offset: usize| {
        src[..offset.saturating_sub(base).min(src.len())]
            .matches('\n')
            .count()
            + 1
    };
    let mut matched = vec![false; expected.len()];
    for d in produced {
        let line = d.span.map(|s| line_of(s.start as usize));
        let hit = expected.iter().enumerate().position(|(i, e)| {
            !matched[i]
                && e.severity == d.severity
                && Some(e.line) == line
                && d.message.contains(e.message)
        });
        match hit {
            Some(i) => matched[i] = true,
            None => {
                let mut u = d.clone();
                u.message = format!("unexpected {}: {}", d.severity.word(), d.message);
                u.severity = Severity::Error;
                problems.push(u);
            }
        }
    }
    for (e, m) in expected.iter().zip(matched) {
        if !m {
            problems.push(
                Diagnostic::error(format!(
                    "expected {} \"{}\" on line {} was not produced",
                    e.severity.word(),
                    e.message,
                    e.line
                ))
                .at(e.span),
            );
        }
    }
    problems
}

/// Where `-o out.nnir` puts the weights of a module that reads a safetensors file:
/// `out.safetensors`, beside it (the `index`-th chunk of `--split-input-file` after the first
/// gets `out.<index>.safetensors`).
pub fn weights_path_for(output: &Path, index: usize) -> std::path::PathBuf {
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
/// (see [`crate::ir::rewriter::Rewriter::derived_constant_before`]), else after its value
/// (`%w` → `"w"`), made unique with a numeric suffix. The file is self-contained: the old one is no longer read.
pub fn externalize_weights(m: &mut Module, file: &str) -> Vec<(String, crate::ir::Tensor)> {
    use crate::ir::rewriter::Rewriter;
    use crate::ir::{Attr, OpKind};
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

    #[test]
    fn split_on_marker_lines_only() {
        let src = "a\n// -----\nb\n  // ----- not alone\n// -----\n";
        let parts: Vec<&str> = split_input(src).into_iter().map(|r| &src[r]).collect();
        assert_eq!(parts, ["a\n", "b\n  // ----- not alone\n", ""]);
    }

    #[test]
    fn expectations_match_by_line_and_substring() {
        let src = "x\n// expected-error@-1 {{bad thing}}\ny // expected-remark {{kept}}\n";
        let ok = [
            Diagnostic::error("a bad thing happened").at(Span::new(0, 0, 1)),
            Diagnostic::remark("kept neuron").at(Span::new(0, 37, 38)),
        ];
        assert!(verify_expectations(src, 0, 0, &ok).is_empty());
        let wrong_line = [Diagnostic::error("a bad thing").at(Span::new(0, 37, 38))];
        let problems = verify_expectations(src, 0, 0, &wrong_line);
        // The misplaced error is unexpected and both annotations stay unmatched.
        assert_eq!(problems.len(), 3, "{problems:?}");
    }

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
