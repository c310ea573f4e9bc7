//! Diagnostics as values.
//!
//! Every stage (lexer, parser, reader, verifier, passes, CLI) reports problems by returning
//! [`Diagnostic`] values; nothing prints while working. The CLI renders them once, at the edge,
//! through `codespan-reporting` (or compares them with `expected-error` annotations under
//! `--verify-diagnostics`). A diagnostic points into a file registered in the [`SourceMap`].

use codespan_reporting::diagnostic as cs;
use codespan_reporting::files::{Files, SimpleFiles};
use codespan_reporting::term;
use codespan_reporting::term::termcolor::{Buffer, ColorChoice, StandardStream, WriteColor};
use std::fmt;

/// Index of a file in the [`SourceMap`].
pub type FileId = usize;

/// A byte range in one source file. `Span::default()` points at the start of file 0 and is used
/// for IR that was made by a pass rather than read from text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span {
            file,
            start: start as u32,
            end: end as u32,
        }
    }

    /// The smallest span covering both.
    pub fn to(self, other: Span) -> Span {
        Span {
            file: self.file,
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }

    pub fn range(self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// How serious a diagnostic is; only errors fail a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// MLIR's `remark`: information about a decision (e.g. why a dead neuron stayed).
    Remark,
    Note,
    Warning,
    Error,
}

impl Severity {
    /// The word MLIR's `--verify-diagnostics` uses for this severity (`expected-<word>`).
    pub fn word(self) -> &'static str {
        match self {
            Severity::Remark => "remark",
            Severity::Note => "note",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// One problem (or remark), with a primary location and optional related locations and notes.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    pub severity: Severity,
    pub message: String,
    /// The primary location; `None` for problems that are not about a place in a file.
    pub span: Option<Span>,
    /// The text under the primary location's underline (may be empty).
    pub primary_label: String,
    /// Related places ("defined here").
    pub labels: Vec<(Span, String)>,
    pub notes: Vec<String>,
}

impl Diagnostic {
    pub fn new(severity: Severity, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            severity,
            message: message.into(),
            span: None,
            primary_label: String::new(),
            labels: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn error(message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Error, message)
    }

    pub fn remark(message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(Severity::Remark, message)
    }

    pub fn at(mut self, span: Span) -> Diagnostic {
        self.span = Some(span);
        self
    }

    pub fn with_primary_label(mut self, label: impl Into<String>) -> Diagnostic {
        self.primary_label = label.into();
        self
    }

    pub fn with_label(mut self, span: Span, label: impl Into<String>) -> Diagnostic {
        self.labels.push((span, label.into()));
        self
    }

    pub fn with_note(mut self, note: impl Into<String>) -> Diagnostic {
        self.notes.push(note.into());
        self
    }

    fn to_codespan(&self) -> cs::Diagnostic<FileId> {
        let (severity, code) = match self.severity {
            Severity::Error => (cs::Severity::Error, None),
            Severity::Warning => (cs::Severity::Warning, None),
            Severity::Note => (cs::Severity::Note, None),
            // codespan has no "remark" level; a code keeps the MLIR word visible: `note[remark]`.
            Severity::Remark => (cs::Severity::Note, Some("remark")),
        };
        let mut d = cs::Diagnostic::new(severity).with_message(&self.message);
        if let Some(code) = code {
            d = d.with_code(code);
        }
        let mut labels = Vec::new();
        if let Some(span) = self.span {
            labels.push(
                cs::Label::primary(span.file, span.range()).with_message(&self.primary_label),
            );
        }
        for (span, msg) in &self.labels {
            labels.push(cs::Label::secondary(span.file, span.range()).with_message(msg));
        }
        d.with_labels(labels).with_notes(self.notes.clone())
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.severity.word(), self.message)
    }
}

/// A list of diagnostics; the error type of every fallible stage.
pub type Diagnostics = Vec<Diagnostic>;

/// `Ok` or the diagnostics that explain why not.
pub type DResult<T> = Result<T, Diagnostics>;

/// `true` if any diagnostic is an error (remarks and notes alone do not fail a run).
pub fn has_errors(diags: &[Diagnostic]) -> bool {
    diags.iter().any(|d| d.severity == Severity::Error)
}

/// The source files diagnostics point into.
#[derive(Default)]
pub struct SourceMap {
    files: SimpleFiles<String, String>,
}

impl SourceMap {
    pub fn new() -> SourceMap {
        SourceMap::default()
    }

    /// Registers a file; `name` is what diagnostics show (a path, or `<stdin>`).
    pub fn add(&mut self, name: impl Into<String>, source: impl Into<String>) -> FileId {
        self.files.add(name.into(), source.into())
    }

    pub fn source(&self, file: FileId) -> &str {
        self.files
            .get(file)
            .map(|f| f.source().as_str())
            .unwrap_or("")
    }

    pub fn name(&self, file: FileId) -> &str {
        self.files
            .get(file)
            .map(|f| f.name().as_str())
            .unwrap_or("<unknown>")
    }

    /// 1-based line and column of a byte offset.
    pub fn line_col(&self, file: FileId, offset: usize) -> (usize, usize) {
        match self.files.location(file, offset) {
            Ok(loc) => (loc.line_number, loc.column_number),
            Err(_) => (1, 1),
        }
    }

    /// Renders diagnostics in codespan's rich format.
    pub fn render(&self, diags: &[Diagnostic], out: &mut dyn WriteColor) {
        let config = term::Config::default();
        for d in diags {
            // A file that is not registered cannot be underlined; fall back to the bare message.
            let cs = d.to_codespan();
            if term::emit_to_write_style(out, &config, &self.files, &cs).is_err() {
                let _ = writeln!(out, "{d}");
            }
        }
    }

    /// Renders diagnostics to stderr, coloured when stderr is a terminal.
    pub fn emit_to_stderr(&self, diags: &[Diagnostic]) {
        let choice = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ColorChoice::Auto
        } else {
            ColorChoice::Never
        };
        let stream = StandardStream::stderr(choice);
        let mut lock = stream.lock();
        self.render(diags, &mut lock);
    }

    /// Renders diagnostics without colour (for snapshot tests).
    pub fn emit_to_string(&self, diags: &[Diagnostic]) -> String {
        let mut buf = Buffer::no_color();
        self.render(diags, &mut buf);
        String::from_utf8_lossy(buf.as_slice()).into_owned()
    }
}
