//! Mutated inputs never crash the reader: proptest takes the corpus files, deletes, inserts,
//! duplicates and replaces random bytes and tokens, and runs parse → read → verify → print on
//! the result. Any outcome but a panic is fine; errors must come as diagnostics that render.

use nnopt::diag::SourceMap;
use nnopt::passes;
use nnopt::syntax::printer::print_module;
use nnopt::tool::load;
use proptest::prelude::*;
use std::path::Path;

const CORPUS: &[&str] = &[
    include_str!("corpus/mlp.nnir"),
    include_str!("corpus/conv.nnir"),
    include_str!("corpus/misc.nnir"),
];

/// Fragments that are likely to reach deep into the reader when spliced in.
const SPLICES: &[&str] = &[
    "%x",
    "%w1",
    "[",
    "]",
    "{",
    "}",
    "(",
    ")",
    ",",
    ":",
    "=",
    "->",
    "dense<",
    ">",
    "tensor<",
    "?x",
    "0x7FC00000",
    "-1",
    "99999999999999999999",
    "tensor<99999999999x99999999999xf32>",
    "nn.conv2d",
    "nn.scatter",
    "nn.reshape",
    "{axis = 7}",
    "groups = 0",
    "strides = [0, 0]",
    "\"",
    "\\",
    "// -----\n",
    "loc(\"f\":1:2)",
    "return",
    "func @g() -> () {",
    "1e999",
    "-0.0",
    "nn.weight \"w\"",
    "kernel = [0, 0]",
    "[[]]",
    "tensor<0x3xf32>",
    "size = 0",
];

#[derive(Clone, Debug)]
enum Mutation {
    Delete(usize, usize),
    Insert(usize, usize),
    Replace(usize, u8),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..20).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<usize>(), 0..SPLICES.len()).prop_map(|(a, s)| Mutation::Insert(a, s)),
        (any::<usize>(), 32u8..127).prop_map(|(a, c)| Mutation::Replace(a, c)),
        (any::<usize>(), 1usize..40).prop_map(|(a, n)| Mutation::Duplicate(a, n)),
    ]
}

fn apply(src: &str, muts: &[Mutation]) -> String {
    let mut b = src.as_bytes().to_vec();
    for m in muts {
        let len = b.len().max(1);
        match *m {
            Mutation::Delete(a, n) => {
                let a = a % len;
                let e = (a + n).min(b.len());
                b.drain(a.min(b.len())..e);
            }
            Mutation::Insert(a, s) => {
                let a = a % (b.len() + 1);
                b.splice(a..a, SPLICES[s].bytes());
            }
            Mutation::Replace(a, c) => {
                if !b.is_empty() {
                    let a = a % b.len();
                    b[a] = c;
                }
            }
            Mutation::Duplicate(a, n) => {
                let a = a % len;
                let e = (a + n).min(b.len());
                let piece: Vec<u8> = b[a.min(b.len())..e].to_vec();
                b.splice(e..e, piece);
            }
        }
    }
    // Mutations only insert ASCII, but a deletion can split nothing multi-byte: the corpus is
    // ASCII. Keep the check honest anyway.
    String::from_utf8(b).expect("the corpus and splices are ASCII")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_inputs_never_panic(
        which in 0..CORPUS.len(),
        muts in proptest::collection::vec(mutation(), 1..6),
        split in any::<bool>(),
    ) {
        let src = apply(CORPUS[which], &muts);
        let mut sources = SourceMap::new();
        let file = sources.add("mutated.nnir", src.clone());
        let chunks = load::chunks(&src, split);
        for r in chunks {
            let mut diags = Vec::new();
            let m = load::load(&src[r.clone()], file, r.start, Path::new("."), &mut diags);
            match m {
                Some(m) => {
                    // A module that reads must print to text that reads to the same text.
                    let printed = print_module(&m);
                    let mut d2 = Vec::new();
                    let f2 = sources.add("printed", printed.clone());
                    let again = load::load(&printed, f2, 0, Path::new("."), &mut d2);
                    prop_assert!(again.is_some(), "printed text does not read back:\n{printed}\n{}", sources.emit_to_string(&d2));
                    prop_assert_eq!(print_module(&again.unwrap()), printed.clone());
                    // The pruning pipeline accepts anything that verifies and leaves it verified.
                    let mut pruned = m.clone();
                    let pipeline = passes::PassManager::parse(passes::PRUNE_PIPELINE, None).unwrap();
                    let mut cx = passes::PassContext::default();
                    let r = pipeline.run(&mut pruned, true, &mut cx, |_, _, _| {});
                    prop_assert!(r.is_ok(), "pruning broke the IR of:\n{printed}");
                }
                None => {
                    prop_assert!(!diags.is_empty(), "rejected without a diagnostic");
                    let rendered = sources.emit_to_string(&diags);
                    prop_assert!(rendered.contains("error"));
                }
            }
        }
    }
}
