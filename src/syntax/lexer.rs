//! Lexer for NNIR text, built with `logos` and shaped for a LALRPOP grammar with an external
//! lexer: [`lex`] yields `(start, token, end)` triples whose offsets are absolute (`base` is
//! added so a chunk of a larger file keeps the file's offsets for diagnostics).
//!
//! Token design:
//! - Tokens borrow `&str` slices from the source; nothing is allocated while lexing.
//! - String literals keep their raw inner slice; [`unescape`] decodes them when the parser
//!   needs the value, so the lexer stays allocation-free and errors can point at the literal.
//! - `tensor<2x?x3xf32>` is ONE token ([`Token::TensorType`]): inside the angle brackets `2x?`
//!   would otherwise lex as an integer glued to an identifier `x`, which a generic lexer cannot
//!   split sensibly. [`parse_tensor_type`] turns the token text into a [`TensorType`].
//! - An unexpected character becomes a [`LexError`] and lexing continues after it, so one
//!   stray character does not hide later errors.

use crate::diag::{Diagnostic, FileId, Span};
use crate::ir::types::MAX_RANK;
use crate::ir::{Dim, ElemType, TensorType};
use logos::Logos;
use std::fmt;

/// The tokens of NNIR, borrowing their text from the source.
#[derive(Logos, Clone, Copy, Debug, PartialEq, Eq)]
#[logos(skip r"[ \t\r\n\f]+")]
#[logos(skip(r"//[^\n]*", allow_greedy = true))]
pub enum Token<'a> {
    #[token("module")]
    Module,
    #[token("attributes")]
    Attributes,
    #[token("func")]
    Func,
    #[token("return")]
    Return,
    #[token("dense")]
    Dense,
    #[token("loc")]
    Loc,
    #[token("true")]
    True,
    #[token("false")]
    False,
    /// A bare `tensor` without `<...>`: no grammar rule accepts it, so a type written without
    /// its shape is a syntax error at this word. Typed tensors are [`Token::TensorType`].
    #[token("tensor")]
    Tensor,

    #[token("(")]
    LParen,
    #[token(")")]
    RParen,
    #[token("{")]
    LBrace,
    #[token("}")]
    RBrace,
    #[token("[")]
    LBracket,
    #[token("]")]
    RBracket,
    #[token("<")]
    LAngle,
    #[token(">")]
    RAngle,
    #[token(",")]
    Comma,
    #[token(":")]
    Colon,
    #[token("=")]
    Equals,
    #[token("->")]
    Arrow,

    /// `%x`, `%0`, `%conv.1`; the slice excludes the `%`.
    #[regex(r"%[A-Za-z0-9_.$]+", |lex| &lex.slice()[1..])]
    ValueId(&'a str),
    /// `@name`; the slice excludes the `@`.
    #[regex(r"@[A-Za-z_][A-Za-z0-9_.$]*", |lex| &lex.slice()[1..])]
    Symbol(&'a str),
    /// Bare identifiers, including dotted op names like `nn.linear`.
    #[regex(r"[A-Za-z_][A-Za-z0-9_.$]*", |lex| lex.slice())]
    Ident(&'a str),
    #[regex(r"-?[0-9]+", |lex| lex.slice())]
    Int(&'a str),
    #[regex(r"-?[0-9]+\.[0-9]+([eE][-+]?[0-9]+)?", |lex| lex.slice())]
    #[regex(r"-?[0-9]+[eE][-+]?[0-9]+", |lex| lex.slice())]
    Float(&'a str),
    #[regex(r"0x[0-9A-Fa-f]+", |lex| lex.slice())]
    Hex(&'a str),
    /// Raw inner text of a string literal (quotes stripped, escapes not decoded).
    #[regex(r#""([^"\\]|\\.)*""#, |lex| { let s = lex.slice(); &s[1..s.len() - 1] })]
    Str(&'a str),
    /// A whole bracketed list of numbers, e.g. `[[1.0, -2.5], [0x7FC00000, 3]]`, produced by
    /// [`lex`] rather than by a logos rule (see [`num_list_len`]): dense literals are most of a
    /// large file, and one token per list keeps them out of the LR parser's per-token work.
    NumList(&'a str),
    /// A whole tensor type, e.g. `tensor<?x4xf32>` (see the module docs for why).
    #[regex(r"tensor<[0-9?x]*[a-z][a-z0-9]*>", |lex| lex.slice())]
    TensorType(&'a str),
}

impl fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Token::*;
        match self {
            Module => f.write_str("module"),
            Attributes => f.write_str("attributes"),
            Func => f.write_str("func"),
            Return => f.write_str("return"),
            Dense => f.write_str("dense"),
            Loc => f.write_str("loc"),
            True => f.write_str("true"),
            False => f.write_str("false"),
            Tensor => f.write_str("tensor"),
            LParen => f.write_str("("),
            RParen => f.write_str(")"),
            LBrace => f.write_str("{"),
            RBrace => f.write_str("}"),
            LBracket => f.write_str("["),
            RBracket => f.write_str("]"),
            LAngle => f.write_str("<"),
            RAngle => f.write_str(">"),
            Comma => f.write_str(","),
            Colon => f.write_str(":"),
            Equals => f.write_str("="),
            Arrow => f.write_str("->"),
            ValueId(s) => write!(f, "%{s}"),
            Symbol(s) => write!(f, "@{s}"),
            Ident(s) | Int(s) | Float(s) | Hex(s) | TensorType(s) | NumList(s) => f.write_str(s),
            Str(s) => write!(f, "\"{s}\""),
        }
    }
}

/// A lexing problem with its absolute location.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LexError {
    pub span: Span,
    pub message: String,
}

impl LexError {
    pub fn into_diagnostic(self) -> Diagnostic {
        Diagnostic::error(self.message).at(self.span)
    }
}

/// Lexes `src`, offsetting positions by `base`. Errors are yielded in place and lexing goes on.
pub fn lex(
    src: &str,
    file: FileId,
    base: usize,
) -> impl Iterator<Item = Result<(usize, Token<'_>, usize), LexError>> {
    let mut lexer = Token::lexer(src);
    std::iter::from_fn(move || {
        let tok = lexer.next()?;
        let range = lexer.span();
        let (start, end) = (range.start + base, range.end + base);
        Some(match tok {
            Ok(Token::LBracket) => match num_list_len(&src[range.start..]) {
                Some(len) => {
                    lexer.bump(len - 1);
                    let text = &src[range.start..range.start + len];
                    Ok((start, Token::NumList(text), start + len))
                }
                None => Ok((start, Token::LBracket, end)),
            },
            Ok(t) => Ok((start, t, end)),
            Err(()) => {
                let text = lexer.slice();
                let message = match text.chars().next() {
                    // An opening quote that never matched means the closing quote is missing.
                    Some('"') => "unterminated string literal".to_string(),
                    Some(c) => format!("unexpected character '{c}'"),
                    None => "unexpected end of input".to_string(),
                };
                Err(LexError {
                    span: Span::new(file, start, end),
                    message,
                })
            }
        })
    })
}

/// The length of the balanced numeric list at the start of `s` (which begins with `[`), or
/// `None` when the brackets hold anything but numbers, commas, whitespace and comments (such
/// lists are lexed token by token). The characters are only screened here; [`scan_num_list`]
/// validates the numbers.
pub fn num_list_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' | b'x' | b'.' | b'-' | b'+' | b',' => {}
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ => return None,
        }
        i += 1;
    }
    None
}

/// Walks a [`Token::NumList`] text, calling `item(text, offset)` for each number (offset
/// relative to the list's start) and returning the list's shape. Ragged lists and malformed
/// numbers are errors with the offset of the problem.
pub fn scan_num_list(
    list: &str,
    mut item: impl FnMut(&str, usize) -> Result<(), String>,
) -> Result<Vec<u64>, (usize, String)> {
    let b = list.as_bytes();
    // shape[d] = element count at depth d, fixed by the first list seen at that depth.
    let mut shape: Vec<Option<u64>> = Vec::new();
    let mut counts: Vec<u64> = Vec::new();
    // Depth of scalar leaves, fixed by the first number.
    let mut leaf_depth: Option<usize> = None;
    let mut expect_item = true;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'[' => {
                if !expect_item {
                    return Err((i, "expected ',' or ']'".into()));
                }
                if leaf_depth.is_some_and(|d| counts.len() >= d) {
                    return Err((i, "list nested deeper than its siblings".into()));
                }
                counts.push(0);
                if shape.len() < counts.len() {
                    shape.push(None);
                }
                expect_item = true;
                i += 1;
            }
            b']' => {
                let depth = counts.len();
                let n = counts.pop().ok_or((i, "unbalanced ']'".to_string()))?;
                if expect_item && n > 0 {
                    return Err((i, "expected a value after ','".into()));
                }

                match shape[depth - 1] {
                    Some(m) if m != n => {
                        return Err((
                            i,
                            format!("ragged list: {n} elements where a sibling has {m}"),
                        ))
                    }
                    _ => shape[depth - 1] = Some(n),
                }
                if n == 0 && leaf_depth.is_some_and(|d| depth < d) {
                    return Err((i, "empty list where a nested list was expected".into()));
                }
                if let Some(parent) = counts.last_mut() {
                    *parent += 1;
                }
                expect_item = false;
                i += 1;
            }
            b',' => {
                if expect_item {
                    return Err((i, "expected a value before ','".into()));
                }
                expect_item = true;
                i += 1;
            }
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'/' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            _ => {
                if !expect_item {
                    return Err((i, "expected ',' or ']'".into()));
                }
                let start = i;
                while i < b.len()
                    && !matches!(b[i], b',' | b']' | b' ' | b'\t' | b'\r' | b'\n' | b'/')
                {
                    i += 1;
                }
                let depth = counts.len();
                match leaf_depth {
                    None => leaf_depth = Some(depth),
                    Some(d) if d != depth => {
                        return Err((start, "scalar where a nested list was expected".into()))
                    }
                    _ => {}
                }
                item(&list[start..i], start).map_err(|m| (start, m))?;
                *counts
                    .last_mut()
                    .ok_or((start, "number outside a list".to_string()))? += 1;
                expect_item = false;
            }
        }
    }
    if !counts.is_empty() {
        return Err((list.len(), "unterminated list".into()));
    }
    // Without any number, the deepest (empty) list fixes the rank: `[[], []]` is 2x0.
    let depth = leaf_depth.unwrap_or(shape.len());
    Ok(shape
        .into_iter()
        .take(depth)
        .map(|d| d.unwrap_or(0))
        .collect())
}

/// Decodes the escapes of a raw string-literal body: `\"`, `\\`, `\n`, `\t`, `\XX` (two hex digits).
pub fn unescape(raw: &str) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(h) if h.is_ascii_hexdigit() => {
                let l = chars
                    .next()
                    .filter(|l| l.is_ascii_hexdigit())
                    .ok_or_else(|| format!("invalid escape '\\{h}': expected two hex digits"))?;
                let v = u8::from_str_radix(&format!("{h}{l}"), 16).map_err(|e| e.to_string())?;
                out.push(char::from(v));
            }
            Some(o) => return Err(format!("invalid escape '\\{o}'")),
            None => return Err("string ends with a lone '\\'".to_string()),
        }
    }
    Ok(out)
}

/// Parses the text of a [`Token::TensorType`] (`tensor<2x?xf32>`). Element-count limits are the
/// verifier's business, not checked here.
pub fn parse_tensor_type(text: &str) -> Result<TensorType, String> {
    let inner = text
        .strip_prefix("tensor<")
        .and_then(|s| s.strip_suffix('>'))
        .ok_or_else(|| format!("malformed tensor type '{text}'"))?;
    let mut parts: Vec<&str> = inner.split('x').collect();
    let elem_name = parts.pop().unwrap_or("");
    let elem = ElemType::from_name(elem_name)
        .ok_or_else(|| format!("unknown element type '{elem_name}'"))?;
    if parts.len() > MAX_RANK {
        return Err(format!(
            "tensor rank {} exceeds the maximum of {MAX_RANK}",
            parts.len()
        ));
    }
    let mut dims = Vec::with_capacity(parts.len());
    for p in parts {
        let d = match p {
            "?" => Dim::Dynamic,
            "" => return Err(format!("empty dimension in '{text}'")),
            _ if p.bytes().all(|b| b.is_ascii_digit()) => Dim::Static(
                p.parse::<u64>()
                    .map_err(|_| format!("dimension {p} is too large"))?,
            ),
            _ => return Err(format!("invalid dimension '{p}' in '{text}'")),
        };
        dims.push(d);
    }
    Ok(TensorType::new(dims, elem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use Token::*;

    fn toks(src: &str) -> Vec<Token<'_>> {
        lex(src, 0, 0).map(|r| r.unwrap().1).collect()
    }

    #[test]
    fn realistic_snippet() {
        let src = r#"module @m attributes {weights = "w.safetensors"} { func @f(%x: tensor<?x4xf32>) -> (tensor<?x2xf32>) { %0 = nn.linear %x, %w {alpha = -1.5e-3} : tensor<?x2xf32> loc("a.py":3:7) return %0 : tensor<?x2xf32> } }"#;
        let t = toks(src);
        let expected = vec![
            Module,
            Symbol("m"),
            Attributes,
            LBrace,
            Ident("weights"),
            Equals,
            Str("w.safetensors"),
            RBrace,
            LBrace,
            Func,
            Symbol("f"),
            LParen,
            ValueId("x"),
            Colon,
            TensorType("tensor<?x4xf32>"),
            RParen,
            Arrow,
            LParen,
            TensorType("tensor<?x2xf32>"),
            RParen,
            LBrace,
            ValueId("0"),
            Equals,
            Ident("nn.linear"),
            ValueId("x"),
            Comma,
            ValueId("w"),
            LBrace,
            Ident("alpha"),
            Equals,
            Float("-1.5e-3"),
            RBrace,
            Colon,
            TensorType("tensor<?x2xf32>"),
            Loc,
            LParen,
            Str("a.py"),
            Colon,
            Int("3"),
            Colon,
            Int("7"),
            RParen,
            Return,
            ValueId("0"),
            Colon,
            TensorType("tensor<?x2xf32>"),
            RBrace,
            RBrace,
        ];
        assert_eq!(t, expected);
    }

    #[test]
    fn literals_and_comments() {
        let t = toks("1 -2 1.0 -2.5e-3 1e10 0x7FC00000 %conv.1 %a_b // comment\n true false dense");
        assert_eq!(
            t,
            vec![
                Int("1"),
                Int("-2"),
                Float("1.0"),
                Float("-2.5e-3"),
                Float("1e10"),
                Hex("0x7FC00000"),
                ValueId("conv.1"),
                ValueId("a_b"),
                True,
                False,
                Dense
            ]
        );
    }

    #[test]
    fn tensor_types() {
        let t = parse_tensor_type("tensor<2x?x3xf32>").unwrap();
        assert_eq!(
            t.dims.as_slice(),
            &[Dim::Static(2), Dim::Dynamic, Dim::Static(3)]
        );
        assert_eq!(t.elem, ElemType::F32);
        let t = parse_tensor_type("tensor<f32>").unwrap();
        assert!(t.dims.is_empty());
        assert_eq!(
            parse_tensor_type("tensor<4xbf16>").unwrap().elem,
            ElemType::BF16
        );
        assert_eq!(
            parse_tensor_type("tensor<4xf16>").unwrap().elem,
            ElemType::F16
        );
        assert!(parse_tensor_type("tensor<4xi32>")
            .unwrap_err()
            .contains("unknown element type"));
        assert_eq!(
            parse_tensor_type("tensor<99999999999999999999999xf32>").unwrap_err(),
            "dimension 99999999999999999999999 is too large"
        );
        assert!(parse_tensor_type("tensor<1x1x1x1x1x1x1x1x1xf32>")
            .unwrap_err()
            .contains("rank"));
        // Huge but representable: the verifier, not the parser, rejects it.
        assert!(parse_tensor_type("tensor<1000000x1000000x1000000xf32>").is_ok());
        assert_eq!(toks("tensor<f32>"), vec![TensorType("tensor<f32>")]);
    }

    #[test]
    fn offsets_with_base() {
        let v: Vec<_> = lex("  %x = 1", 0, 100).map(|r| r.unwrap()).collect();
        assert_eq!(v[0], (102, ValueId("x"), 104));
        assert_eq!(v[1], (105, Equals, 106));
        assert_eq!(v[2], (107, Int("1"), 108));
    }

    #[test]
    fn string_escapes() {
        let t = toks(r#""a\"b\\c\n\t\1F""#);
        let Str(raw) = t[0] else { panic!() };
        assert_eq!(unescape(raw).unwrap(), "a\"b\\c\n\t\u{1f}");
        assert!(unescape(r"\q").is_err());
        assert!(unescape(r"\1").is_err());
    }

    #[test]
    fn numeric_lists_are_one_token() {
        let t = toks("[[1, -2.5], [0x7FC00000, 3e2]] [\"a\"] []");
        assert_eq!(t[0], NumList("[[1, -2.5], [0x7FC00000, 3e2]]"));
        assert_eq!(&t[1..4], &[LBracket, Str("a"), RBracket]);
        assert_eq!(t[4], NumList("[]"));
        let mut items = Vec::new();
        let shape = scan_num_list("[[1, -2.5], [0x7F, 3e2]]", |s, _| {
            items.push(s.to_string());
            Ok(())
        })
        .unwrap();
        assert_eq!(shape, vec![2, 2]);
        assert_eq!(items, ["1", "-2.5", "0x7F", "3e2"]);
        assert_eq!(scan_num_list("[]", |_, _| Ok(())).unwrap(), vec![0]);
        assert_eq!(
            scan_num_list("[[], []]", |_, _| Ok(())).unwrap(),
            vec![2, 0]
        );
        let ragged = scan_num_list("[[1, 2], [3]]", |_, _| Ok(())).unwrap_err();
        assert!(ragged.1.contains("ragged"), "{ragged:?}");
        assert!(scan_num_list("[[1], 2]", |_, _| Ok(())).is_err());
        assert!(scan_num_list("[1, [2]]", |_, _| Ok(())).is_err());
        assert!(scan_num_list("[1,, 2]", |_, _| Ok(())).is_err());
        assert!(scan_num_list("[1 2]", |_, _| Ok(())).is_err());
    }

    #[test]
    fn error_recovery() {
        let v: Vec<_> = lex("%x # = 1", 3, 10).collect();
        assert_eq!(v.len(), 4);
        let e = v[1].clone().unwrap_err();
        assert_eq!(e.message, "unexpected character '#'");
        assert_eq!(e.span, Span::new(3, 13, 14));
        assert_eq!(v[2], Ok((15, Equals, 16)));
        let d = e.into_diagnostic();
        assert_eq!(d.span, Some(Span::new(3, 13, 14)));
        assert_eq!(Arrow.to_string(), "->");
        assert_eq!(ValueId("x").to_string(), "%x");
    }
}
