//! `--list-ops` and `--list-passes`: the dialect's operations and the registered passes, as
//! the text the CLI prints.

use crate::ir::{Arity, OpTag};
use crate::passes::REGISTRY;

/// Every operation of the NNIR dialect with its operand count, one per line.
pub fn list_ops() -> String {
    let mut out = String::new();
    for &tag in OpTag::ALL {
        out.push_str(&format!(
            "{:<20} operands: {}\n",
            tag.mnemonic(),
            arity_text(tag.arity())
        ));
    }
    out
}

/// Every pass with its summary and options.
pub fn list_passes() -> String {
    let mut out = String::new();
    for p in REGISTRY {
        out.push_str(&format!("{}\n    {}\n", p.name, p.summary));
        for o in p.options {
            out.push_str(&format!("    {}=<value>: {}\n", o.name, o.description));
        }
    }
    out
}

/// An operand count as `--list-ops` prints it: `2`, `1..3`, `1+`.
fn arity_text(a: Arity) -> String {
    match a {
        Arity::Exactly(n) => format!("{n}"),
        Arity::Range(lo, hi) => format!("{lo}..{hi}"),
        Arity::AtLeast(n) => format!("{n}+"),
    }
}
