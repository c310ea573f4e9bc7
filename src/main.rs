//! The `nnopt` command line. Holds no logic: it parses flags, calls the library and renders
//! diagnostics once, at the edge.

use clap::{Parser, Subcommand};
use nnopt::diag::{has_errors, Diagnostic, SourceMap};
use nnopt::driver;
use nnopt::ir::{Arity, OpTag};
use nnopt::syntax::printer::print_module;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// nnopt: an MLIR-style compiler for neural networks written in the NNIR text dialect.
///
/// `nnopt in.nnir` reads the file (`-` for stdin), checks it (syntax, SSA, types, each op's
/// verifier rules) and prints it in canonical form. Exit codes: 0 success, 1 input errors
/// (reported with file, line and column), 2 usage errors.
#[derive(Parser, Debug)]
#[command(
    name = "nnopt",
    version,
    about,
    long_about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    opt: OptArgs,
}

#[derive(clap::Args, Debug)]
struct OptArgs {
    /// The NNIR file to read; `-` reads stdin.
    input: Option<PathBuf>,
    /// Where to write the result (`-` for stdout). Written atomically: on any error the file
    /// is left untouched.
    #[arg(short = 'o', long = "output", value_name = "FILE", default_value = "-")]
    output: PathBuf,
    /// Treat `// -----` lines as separators: each chunk is processed on its own, its
    /// diagnostics are reported, and the outputs are joined with the same separator.
    #[arg(long)]
    split_input_file: bool,
    /// Check the diagnostics against `// expected-error {{message}}` annotations in the input
    /// (also `-warning`, `-note`, `-remark`; `@+N`/`@-N`/`@above`/`@below` for another line).
    /// Exits 0 when every annotation is matched by a diagnostic and vice versa.
    #[arg(long)]
    verify_diagnostics: bool,
    /// Print every operation of the NNIR dialect with its operand count, one per line.
    #[arg(long)]
    list_ops: bool,
}

#[derive(Subcommand, Debug)]
enum Command {}

fn arity_text(a: Arity) -> String {
    match a {
        Arity::Exactly(n) => format!("{n}"),
        Arity::Range(lo, hi) => format!("{lo}..{hi}"),
        Arity::AtLeast(n) => format!("{n}+"),
    }
}

/// A failure already reported to the user; carries the exit code.
struct Exit(u8);

fn read_input(path: &Path, sources: &mut SourceMap) -> Result<usize, Exit> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| fail(&format!("cannot read stdin: {e}")))?;
        ("<stdin>".to_string(), s)
    } else {
        let bytes = std::fs::read(path)
            .map_err(|e| fail(&format!("cannot read {}: {e}", path.display())))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| fail(&format!("{} is not UTF-8 text: {e}", path.display())))?;
        (path.display().to_string(), text)
    };
    Ok(sources.add(name, text))
}

fn fail(message: &str) -> Exit {
    eprintln!("error: {message}");
    Exit(1)
}

fn emit_output(path: &Path, text: &str) -> Result<(), Exit> {
    if path.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(text.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| fail(&format!("cannot write stdout: {e}")))
    } else {
        driver::write_atomic(path, text.as_bytes())
            .map_err(|e| fail(&format!("cannot write {}: {e}", path.display())))
    }
}

fn opt_main(opt: &OptArgs) -> Result<(), Exit> {
    let Some(input) = &opt.input else {
        eprintln!("nnopt: no input file (try --help)");
        return Err(Exit(2));
    };
    let mut sources = SourceMap::new();
    let file = read_input(input, &mut sources)?;
    let base_dir = match input.parent() {
        Some(d) if input.as_os_str() != "-" && !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let src = sources.source(file).to_string();
    let chunks = if opt.split_input_file {
        driver::split_input(&src)
    } else {
        vec![0..src.len()]
    };
    let mut outputs = Vec::new();
    let mut all_diags: Vec<Diagnostic> = Vec::new();
    for range in chunks {
        let chunk = &src[range.clone()];
        let mut diags = Vec::new();
        let module = driver::load(chunk, file, range.start, &base_dir, &mut diags);
        if opt.verify_diagnostics {
            diags = driver::verify_expectations(chunk, file, range.start, &diags);
        }
        if let Some(m) = module {
            outputs.push(print_module(&m));
        }
        all_diags.extend(diags);
    }
    sources.emit_to_stderr(&all_diags);
    if has_errors(&all_diags) {
        return Err(Exit(1));
    }
    let sep = format!("{}\n", driver::SPLIT_MARKER);
    emit_output(&opt.output, &outputs.join(&sep))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(c) => match *c {},
        None if cli.opt.list_ops => {
            for &tag in OpTag::ALL {
                println!(
                    "{:<20} operands: {}",
                    tag.mnemonic(),
                    arity_text(tag.arity())
                );
            }
            Ok(())
        }
        None => opt_main(&cli.opt),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit(code)) => ExitCode::from(code),
    }
}
