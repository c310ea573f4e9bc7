//! Snapshots of the canonical printer, and its fixed-point property: reading the printed text
//! and printing again gives the same bytes.

use nnopt::diag::SourceMap;
use nnopt::syntax::printer::print_module;
use nnopt::tool::load::load;
use std::path::Path;

fn print_file(path: &str) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    print_text(path, &text)
}

fn print_text(name: &str, text: &str) -> String {
    let mut sources = SourceMap::new();
    let file = sources.add(name, text.to_string());
    let mut diags = Vec::new();
    let m = load(text, file, 0, Path::new("tests/corpus"), &mut diags);
    match m {
        Some(m) => print_module(&m),
        None => panic!("{}", sources.emit_to_string(&diags)),
    }
}

fn check(path: &str) -> String {
    let once = print_file(path);
    let twice = print_text("printed", &once);
    assert_eq!(once, twice, "printing {path} is not a fixed point");
    once
}

#[test]
fn mlp() {
    insta::assert_snapshot!(check("tests/corpus/mlp.nnir"));
}

#[test]
fn conv() {
    insta::assert_snapshot!(check("tests/corpus/conv.nnir"));
}

#[test]
fn every_other_op_and_literal_form() {
    insta::assert_snapshot!(check("tests/corpus/misc.nnir"));
}

#[test]
fn large_constants_print_as_hex_and_round_trip_bit_exactly() {
    let n = 300;
    let mut vals: Vec<String> = (0..n).map(|i| format!("{}.5e-3", i)).collect();
    vals[7] = "0x7FC00001".into(); // a NaN with a payload
    vals[8] = "-0.0".into();
    vals[9] = "1.0e-45".into(); // the smallest denormal
    let src = format!(
        "func @f() -> (tensor<{n}xf32>) {{\n  %c = nn.constant dense<[{}]> : tensor<{n}xf32>\n  return %c : tensor<{n}xf32>\n}}\n",
        vals.join(", ")
    );
    let printed = print_text("big", &src);
    assert!(printed.contains("dense<\"0x"), "{printed}");
    assert_eq!(print_text("again", &printed), printed);
    let hex_start = printed.find("\"0x").unwrap() + 3;
    let word = |i: usize| &printed[hex_start + 8 * i..hex_start + 8 * i + 8];
    assert_eq!(word(7), "0100C07F");
    assert_eq!(word(8), "00000080");
    assert_eq!(word(9), "01000000");
}
