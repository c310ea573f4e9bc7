//! `--verify-diagnostics`: the `// expected-<severity>@<offset> {{message}}` annotations of a
//! chunk, matched against the diagnostics it produced (as mlir-opt's `-verify-diagnostics`).
//!
//! A diagnostic matches an annotation of the same severity on the same line whose message is a
//! substring of its own; each annotation matches at most one diagnostic. Whatever stays
//! unmatched on either side becomes an error.

use crate::diag::{Diagnostic, FileId, Severity, Span};

/// One `// expected-<severity>@<offset> {{message}}` annotation.
#[derive(Debug)]
struct Expected<'a> {
    severity: Severity,
    line: usize,
    message: &'a str,
    span: Span,
}

/// The annotations of a chunk; malformed ones go to `problems`.
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

/// Matches the diagnostics `produced` by a chunk (`src`, at offset `base` of `file`) against its
/// annotations, by 1-based line within the chunk. Returns the mismatches as errors (empty =
/// verified).
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
