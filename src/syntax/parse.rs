//! Text → AST: the logos lexer feeding the LALRPOP parser generated from `grammar/nnir.lalrpop`.

use crate::diag::{Diagnostic, FileId, Span};
use crate::syntax::ast::ModuleAst;
use crate::syntax::lexer::{self, LexError, Token};
use lalrpop_util::ParseError;

lalrpop_util::lalrpop_mod!(
    #[allow(clippy::all, clippy::pedantic, unused_qualifications)]
    grammar,
    "/nnir.rs"
);

/// Parses one chunk of a file. `base` is the chunk's offset in the file, so spans stay
/// file-relative under `--split-input-file`. The first syntax error ends parsing: without
/// statement terminators there is no reliable point to resume at, and every later problem is a
/// semantic one that the reader reports in full.
pub fn parse_module(src: &str, file: FileId, base: usize) -> Result<ModuleAst<'_>, Diagnostic> {
    let tokens = lexer::lex(src, file, base);
    grammar::ModuleParser::new()
        .parse(file, tokens)
        .map_err(|e| syntax_error(e, file, base + src.len()))
}

fn syntax_error(e: ParseError<usize, Token<'_>, LexError>, file: FileId, eof: usize) -> Diagnostic {
    match e {
        ParseError::User { error } => error.into_diagnostic(),
        ParseError::InvalidToken { location } => {
            Diagnostic::error("invalid token").at(Span::new(file, location, location + 1))
        }
        ParseError::UnrecognizedEof { expected, .. } => Diagnostic::error(format!(
            "unexpected end of input, expected {}",
            one_of(&expected)
        ))
        .at(Span::new(file, eof, eof)),
        ParseError::UnrecognizedToken {
            token: (l, tok, r),
            expected,
        } => Diagnostic::error(format!(
            "unexpected '{tok}', expected {}",
            one_of(&expected)
        ))
        .at(Span::new(file, l, r)),
        ParseError::ExtraToken { token: (l, tok, r) } => {
            Diagnostic::error(format!("unexpected '{tok}' after the end of the module"))
                .at(Span::new(file, l, r))
        }
    }
}

/// LALRPOP lists expected terminals by their grammar spelling (`"%id"`); users read these.
fn one_of(expected: &[String]) -> String {
    let words: Vec<String> = expected
        .iter()
        .map(|t| {
            match t.trim_matches('"') {
                "%id" => "a value name (%x)",
                "@sym" => "a symbol (@name)",
                "ident" => "an identifier",
                "int" => "an integer",
                "float" => "a number",
                "hex" => "a hex number",
                "string" => "a string",
                "numlist" => "a list of numbers",
                "type" => "a tensor type",
                other => return format!("'{other}'"),
            }
            .to_string()
        })
        .collect();
    match words.len() {
        0 => "nothing more".to_string(),
        1 => words[0].clone(),
        n if n <= 6 => format!("one of {}", words.join(", ")),
        _ => format!("one of {}, ...", words[..6].join(", ")),
    }
}
