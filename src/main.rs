//! The `nnopt` command line. Holds no logic: it parses flags, calls the library and renders
//! diagnostics once, at the edge.

use clap::Parser;
use nnopt::ir::{Arity, OpTag};
use std::process::ExitCode;

/// nnopt: an MLIR-style compiler for neural networks written in the NNIR text dialect.
///
/// This build provides the IR core and the op table. Reading, verifying, pruning and printing
/// NNIR files are being built (see docs/architecture.md for the status).
#[derive(Parser, Debug)]
#[command(name = "nnopt", version, about, long_about = None)]
struct Cli {
    /// Print every operation of the NNIR dialect with its operand count, one per line.
    #[arg(long)]
    list_ops: bool,
}

fn arity_text(a: Arity) -> String {
    match a {
        Arity::Exactly(n) => format!("{n}"),
        Arity::Range(lo, hi) => format!("{lo}..{hi}"),
        Arity::AtLeast(n) => format!("{n}+"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if cli.list_ops {
        for &tag in OpTag::ALL {
            println!(
                "{:<20} operands: {}",
                tag.mnemonic(),
                arity_text(tag.arity())
            );
        }
        return ExitCode::SUCCESS;
    }
    eprintln!("nnopt: nothing to do (try --help)");
    ExitCode::from(2)
}
