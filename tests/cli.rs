//! CLI behaviour: output and exit codes of the `nnopt` binary.

use std::process::Command;

fn nnopt(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nnopt"))
        .args(args)
        .output()
        .expect("run nnopt")
}

#[test]
fn list_ops_prints_the_op_table() {
    let out = nnopt(&["--list-ops"]);
    assert!(out.status.success());
    insta::assert_snapshot!(String::from_utf8_lossy(&out.stdout));
}

#[test]
fn usage_errors_exit_with_code_2() {
    let out = nnopt(&["--bogus"]);
    assert_eq!(out.status.code(), Some(2));
    let none = nnopt(&[]);
    assert_eq!(none.status.code(), Some(2));
}

#[test]
fn help_documents_every_flag() {
    let out = nnopt(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in ["--list-ops", "--help", "--version"] {
        assert!(
            text.contains(flag),
            "--help does not mention {flag}:\n{text}"
        );
    }
}
