//! Generates the NNIR parser from `grammar/nnir.lalrpop` at build time.

fn main() {
    // The grammar lives in grammar/ (the design card's layout); the generated parser goes to
    // OUT_DIR and is included by src/syntax/parse.rs.
    lalrpop::Configuration::new()
        .set_in_dir("grammar")
        .set_out_dir(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .emit_rerun_directives(true)
        .process()
        .expect("the NNIR grammar compiles");
}
