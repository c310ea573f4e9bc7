//! IR → canonical text. The output is a fixed point of read+print (byte-stable, for snapshot
//! tests): attributes are printed in the schema's order with defaults spelled out, floats in
//! their shortest round-trip form (bit patterns for NaN and infinities), and tensors above
//! [`HEX_THRESHOLD`] elements as a hex blob of their little-endian bytes. Values keep the names
//! the user gave them; values created by passes get the smallest free number.

use crate::ir::{Attr, Function, Loc, Module, OpKind, Tensor, ValueId};
use crate::syntax::float::{escape_string, format_bits};
use crate::syntax::opattrs::op_attrs;
use cranelift_entity::SecondaryMap;
use std::collections::HashSet;
use std::fmt::{self, Write};

/// Tensors with more elements than this print as `dense<"0x...">`.
pub const HEX_THRESHOLD: usize = 256;

/// The canonical text of `m` (see the module docs).
pub fn print_module(m: &Module) -> String {
    let mut out = String::new();
    out.push_str("module");
    if let Some(name) = &m.name {
        let _ = write!(out, " @{name}");
    }
    if !m.attrs.is_empty() {
        out.push_str(" attributes {");
        for (i, (k, v)) in m.attrs.iter().enumerate() {
            let sep = if i > 0 { ", " } else { "" };
            let _ = write!(out, "{sep}{k} = {v}");
        }
        out.push('}');
    }
    out.push_str(" {\n");
    for f in &m.funcs {
        print_func(&mut out, f);
    }
    out.push_str("}\n");
    out
}

/// Gives every value a unique printed name: the user's where it is free, otherwise a number.
fn value_names(f: &Function) -> SecondaryMap<ValueId, String> {
    let mut names: SecondaryMap<ValueId, String> = SecondaryMap::with_capacity(f.value_capacity());
    let mut taken: HashSet<String> = HashSet::new();
    let all = f
        .args()
        .iter()
        .copied()
        .chain(f.ops().filter_map(|op| f.op(op).result()));
    let all: Vec<ValueId> = all.collect();
    let mut unnamed = Vec::new();
    for &v in &all {
        match &f.value(v).name {
            Some(n) if taken.insert(n.clone()) => names[v] = n.clone(),
            _ => unnamed.push(v),
        }
    }
    let mut next = 0usize;
    for v in unnamed {
        while taken.contains(&next.to_string()) {
            next += 1;
        }
        names[v] = next.to_string();
        taken.insert(names[v].clone());
    }
    names
}

fn print_func(out: &mut String, f: &Function) {
    let names = value_names(f);
    let _ = write!(out, "  func @{}(", f.name);
    for (i, &a) in f.args().iter().enumerate() {
        let sep = if i > 0 { ", " } else { "" };
        let _ = write!(out, "{sep}%{}: {}", names[a], f.ty(a));
    }
    out.push_str(") -> (");
    for (i, t) in f.result_types().iter().enumerate() {
        let sep = if i > 0 { ", " } else { "" };
        let _ = write!(out, "{sep}{t}");
    }
    out.push_str(") {\n");
    for op in f.ops() {
        let data = f.op(op);
        out.push_str("    ");
        if let Some(r) = data.result() {
            let _ = write!(out, "%{} = ", names[r]);
        }
        out.push_str(data.kind.mnemonic());
        match &data.kind {
            OpKind::Constant(t) => {
                out.push(' ');
                print_dense(out, t);
            }
            OpKind::Weight { name, .. } => {
                let _ = write!(out, " \"{}\"", escape_string(name));
            }
            _ => {}
        }
        for (i, &v) in data.operands().iter().enumerate() {
            let sep = if i > 0 { ", " } else { " " };
            let _ = write!(out, "{sep}%{}", names[v]);
        }
        let attrs = op_attrs(&data.kind);
        if !attrs.is_empty() {
            out.push_str(" {");
            for (i, (k, v)) in attrs.iter().enumerate() {
                let sep = if i > 0 { ", " } else { "" };
                let _ = write!(out, "{sep}{k} = {v}");
            }
            out.push('}');
        }
        match data.result() {
            Some(r) => {
                let _ = write!(out, " : {}", f.ty(r));
            }
            None if !data.operands().is_empty() => {
                out.push_str(" : ");
                for (i, &v) in data.operands().iter().enumerate() {
                    let sep = if i > 0 { ", " } else { "" };
                    let _ = write!(out, "{sep}{}", f.ty(v));
                }
            }
            None => {}
        }
        match f.loc(op) {
            Some(Loc::FileLineCol { file, line, col }) => {
                let _ = write!(out, " loc(\"{}\":{line}:{col})", escape_string(file));
            }
            Some(Loc::Name(name)) => {
                let _ = write!(out, " loc(\"{}\")", escape_string(name));
            }
            None => {}
        }
        out.push('\n');
    }
    out.push_str("  }\n");
}

/// `dense<splat>`, `dense<[[...]]>` or `dense<"0x...">` by size.
pub fn print_dense(out: &mut String, t: &Tensor) {
    out.push_str("dense<");
    if t.len() == 1 || t.all_bits_equal() && !t.is_empty() {
        out.push_str(&format_bits(t.elem(), t.bits(0)));
    } else if t.len() > HEX_THRESHOLD {
        out.push_str("\"0x");
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let push_bytes = |bytes: &[u8]| {
            out.reserve(bytes.len() * 2);
            for &b in bytes {
                out.push(HEX[(b >> 4) as usize] as char);
                out.push(HEX[(b & 15) as usize] as char);
            }
        };
        t.for_each_byte_chunk(push_bytes);
        out.push('"');
    } else {
        print_nested(out, t, 0, 0);
    }
    out.push('>');
}

fn print_nested(out: &mut String, t: &Tensor, axis: usize, offset: usize) {
    let shape = t.shape();
    out.push('[');
    if axis + 1 >= shape.len() {
        let n = shape.get(axis).copied().unwrap_or(1) as usize;
        for i in 0..n {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&format_bits(t.elem(), t.bits(offset + i)));
        }
    } else {
        let stride: usize = shape[axis + 1..].iter().product::<u64>() as usize;
        for i in 0..shape[axis] as usize {
            if i > 0 {
                out.push_str(", ");
            }
            print_nested(out, t, axis + 1, offset + i * stride);
        }
    }
    out.push(']');
}

/// The text form of a generic attribute, as the reader reads it back.
impl fmt::Display for Attr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Attr::Int(i) => write!(f, "{i}"),
            Attr::Float(x) => write!(f, "{}", super::float::format_f64(*x)),
            Attr::F32(x) => write!(f, "{}", super::float::format_f32(*x)),
            Attr::Bool(b) => write!(f, "{b}"),
            Attr::Str(s) => write!(f, "\"{}\"", super::float::escape_string(s)),
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
