//! Generic attribute values, as written in `{key = value}` dictionaries.
//!
//! Op attributes are converted to the typed fields of [`super::OpKind`] when text is read; this
//! generic form remains for module attributes, which NNIR keeps but does not interpret (except
//! `weights`). Their text form is the printer's (`syntax::printer`).

/// A generic attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f64),
    /// An op's f32 attribute (epsilon, alpha, ...), printed in f32's shortest round-trip form.
    F32(f32),
    Bool(bool),
    Str(String),
    Array(Vec<Attr>),
}
