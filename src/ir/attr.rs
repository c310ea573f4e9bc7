//! Generic attribute values, as written in `{key = value}` dictionaries.
//!
//! Op attributes are converted to the typed fields of [`super::OpKind`] when text is read; this
//! generic form remains for module attributes, which NNIR keeps but does not interpret (except
//! `weights`).

use std::fmt;

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

impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attr::Int(i) => write!(f, "{i}"),
            Attr::Float(x) => write!(f, "{}", crate::syntax::float::format_f64(*x)),
            Attr::F32(x) => write!(f, "{}", crate::syntax::float::format_f32(*x)),
            Attr::Bool(b) => write!(f, "{b}"),
            Attr::Str(s) => write!(f, "\"{}\"", crate::syntax::float::escape_string(s)),
            Attr::Array(items) => {
                f.write_str("[")?;
                for (i, a) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str("]")
            }
        }
    }
}
