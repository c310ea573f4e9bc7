//! Helpers shared by the integration tests that run the `nnopt` binary.

use std::process::{Command, Output};

/// Runs the `nnopt` binary with `args` (its compiled-code cache in the temporary directory, not
/// the user's).
pub fn nnopt(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnopt"))
        .args(args)
        .env(
            "XDG_CACHE_HOME",
            std::env::temp_dir().join("nnopt-test-cache"),
        )
        .output()
        .expect("run nnopt")
}

/// Runs nnopt and requires exit 0, showing its stderr otherwise.
pub fn nnopt_ok(args: &[&str]) -> Output {
    let out = nnopt(args);
    assert!(
        out.status.success(),
        "nnopt {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}
