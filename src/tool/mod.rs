//! The CLI layer: everything `nnopt` does, as library functions that tests can call. The binary
//! (`src/main.rs`) only parses flags into the options structs here and dispatches.
//!
//! Each command reports its own diagnostics and errors to stderr as it goes, so a command
//! returns either success or an [`Exit`] carrying the exit code of a failure the user has
//! already seen: 1 for input errors, 2 for usage errors.

pub mod args;
pub mod bench;
pub mod cache;
pub mod compile;
pub mod convert;
pub mod equivalence;
pub mod expect;
pub mod format;
pub mod list;
pub mod load;
pub mod mlir;
pub mod opt;
pub mod output;
pub mod progress;
pub mod prune_report;
pub mod report;
pub mod run;

/// A failure already reported to the user; carries the exit code.
#[derive(Debug, PartialEq, Eq)]
pub struct Exit(pub u8);

/// Reports `message` as an error on stderr; the input (or the environment) is at fault.
pub fn fail(message: &str) -> Exit {
    eprintln!("error: {message}");
    Exit(1)
}

/// Reports `message` as a usage error on stderr: the command line is at fault (exit 2).
pub fn usage(message: &str) -> Exit {
    eprintln!("nnopt: {message}");
    Exit(2)
}

/// Reports `message` as a warning on stderr: nnopt goes on, but the user should know.
pub fn warn(message: &str) {
    eprintln!("warning: {message}");
}
