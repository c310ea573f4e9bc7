//! The span-carrying syntax tree the grammar produces. It borrows every name and literal from
//! the source text; the reader (`syntax::reader`) gives it meaning.

use crate::diag::Span;

/// A name with where it was written (`%x`, `@f`, `nn.linear`, an attribute key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Name<'a> {
    pub text: &'a str,
    pub span: Span,
}

/// A parsed file: `module @name attributes {...} { ... }` or bare functions.
#[derive(Clone, Debug)]
pub struct ModuleAst<'a> {
    /// `None` for a file of bare functions (an implicit module, as in MLIR).
    pub name: Option<Name<'a>>,
    pub attrs: Vec<AttrAst<'a>>,
    pub funcs: Vec<FuncAst<'a>>,
    pub span: Span,
}

/// `func @name(args) -> (results) { body }`.
#[derive(Clone, Debug)]
pub struct FuncAst<'a> {
    pub name: Name<'a>,
    pub args: Vec<(Name<'a>, TypeAst<'a>)>,
    pub results: Vec<TypeAst<'a>>,
    pub body: Vec<OpAst<'a>>,
    /// The header, `func @f(...) -> (...)`.
    pub span: Span,
    /// The closing brace, where a missing `return` is reported.
    pub end: Span,
}

/// The text of a `tensor<...>` token; the reader parses it so that errors can point at it.
#[derive(Clone, Copy, Debug)]
pub struct TypeAst<'a> {
    pub text: &'a str,
    pub span: Span,
}

/// `%r = op operands {attrs} : type loc(...)` or `return operands : types`.
#[derive(Clone, Debug)]
pub struct OpAst<'a> {
    pub result: Option<Name<'a>>,
    pub op: Name<'a>,
    pub operands: Vec<OperandAst<'a>>,
    pub attrs: Vec<AttrAst<'a>>,
    pub types: Vec<TypeAst<'a>>,
    pub loc: Option<LocAst<'a>>,
    pub span: Span,
}

/// One operand as written: a value, or the payload of `nn.constant` / `nn.weight`.
#[derive(Clone, Debug)]
pub enum OperandAst<'a> {
    Value(Name<'a>),
    /// `dense<...>` of `nn.constant`.
    Dense(DenseAst<'a>, Span),
    /// The tensor name of `nn.weight "name"` (raw, escapes not decoded).
    Str(&'a str, Span),
}

impl OperandAst<'_> {
    pub fn span(&self) -> Span {
        match self {
            OperandAst::Value(n) => n.span,
            OperandAst::Dense(_, s) | OperandAst::Str(_, s) => *s,
        }
    }
}

/// The literal inside `dense<...>`, as written; the reader decodes it against the result type.
#[derive(Clone, Copy, Debug)]
pub enum DenseAst<'a> {
    /// `dense<[[...]]>`: the text of a numeric list token.
    List(&'a str, Span),
    /// `dense<1.0>` (also ints and `0x` bit patterns).
    Splat(&'a str, Span),
    /// `dense<"0x...">`: little-endian element bytes in hex.
    Hex(&'a str, Span),
}

/// One `key = value` entry of an attribute dictionary.
#[derive(Clone, Debug)]
pub struct AttrAst<'a> {
    pub key: Name<'a>,
    pub value: AttrValueAst<'a>,
}

/// An attribute value as written; its meaning comes from the op's schema (`syntax::opattrs`).
#[derive(Clone, Debug)]
pub enum AttrValueAst<'a> {
    /// An integer or float literal, as written.
    Number(&'a str, Span),
    Bool(bool, Span),
    Str(&'a str, Span),
    /// A list of numbers (one lexer token).
    NumList(&'a str, Span),
    /// Any other list, e.g. of strings.
    List(Vec<AttrValueAst<'a>>, Span),
}

impl AttrValueAst<'_> {
    pub fn span(&self) -> Span {
        match self {
            AttrValueAst::Number(_, s)
            | AttrValueAst::Bool(_, s)
            | AttrValueAst::Str(_, s)
            | AttrValueAst::NumList(_, s)
            | AttrValueAst::List(_, s) => *s,
        }
    }
}

/// `loc("file":line:col)` (with `line_col`) or `loc("name")` (without).
#[derive(Clone, Copy, Debug)]
pub struct LocAst<'a> {
    pub text: &'a str,
    pub line_col: Option<(&'a str, &'a str)>,
    pub span: Span,
}
