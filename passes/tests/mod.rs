//! Unit tests of the passes' building blocks (the constness analysis, the pruning plan), on
//! functions written in NNIR.

mod analysis;
mod plan;

use crate::diag::SourceMap;
use crate::ir::{Function, ValueId};
use std::path::Path;

/// The single function of `text`.
fn func(text: &str) -> Function {
    let mut sources = SourceMap::new();
    let file = sources.add("test.nnir", text.to_string());
    let ast = crate::syntax::parse::parse_module(text, file, 0).expect("parses");
    let mut diags = Vec::new();
    let m = crate::syntax::reader::read_module(&ast, Path::new("."), &mut diags);
    let mut m = m.unwrap_or_else(|| panic!("{}", sources.emit_to_string(&diags)));
    m.funcs.remove(0)
}

/// The value printed as `%name`.
fn value(f: &Function, name: &str) -> ValueId {
    f.ops()
        .filter_map(|op| f.op(op).result())
        .chain(f.args().iter().copied())
        .find(|&v| f.value(v).name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no %{name}"))
}
