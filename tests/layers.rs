//! The crate's layers, checked: every top-level module may use only the modules listed before it
//! in [`LAYERS`] (so no import runs upwards and no two modules form a cycle), and inside a
//! module, the files may not import each other in a circle. `docs/architecture.md` draws the same
//! table; a change to one is a change to both.
//!
//! The check reads the sources: a use of another module is any `crate::name` path (or `nnopt::name`
//! in the binary). Test-only files (`tests.rs`, `#[cfg(test)]` modules at the end of a file) are
//! left out, since tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Bottom to top: each module with the modules it may use. A module may use only modules listed
/// above it, which the test also checks, so the table itself can hold no cycle.
const LAYERS: &[(&str, &[&str])] = &[
    ("diag", &[]),
    ("atomic", &[]),
    ("ir", &["diag"]),
    ("weights", &["diag", "atomic", "ir"]),
    ("verify", &["diag", "ir"]),
    ("syntax", &["diag", "ir", "weights", "verify"]),
    ("interp", &["diag", "atomic", "ir"]),
    ("rewrite", &["diag", "ir"]),
    ("passes", &["diag", "ir", "verify", "interp", "rewrite"]),
    (
        "onnx",
        &["diag", "atomic", "ir", "weights", "verify", "interp"],
    ),
    (
        "lower",
        &[
            "diag", "atomic", "ir", "verify", "interp", "rewrite", "passes",
        ],
    ),
    (
        "tool",
        &[
            "diag", "atomic", "ir", "weights", "verify", "syntax", "interp", "rewrite", "passes",
            "onnx", "lower",
        ],
    ),
];

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("reads the source tree") {
        let p = e.expect("a directory entry").path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The text of a source file without its trailing `#[cfg(test)] mod tests { ... }`.
fn non_test_text(p: &Path) -> String {
    let text = std::fs::read_to_string(p).expect("reads a source file");
    match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

/// Every `prefix::name` in `text` (name: an identifier).
fn paths<'t>(text: &'t str, prefix: &str) -> BTreeSet<&'t str> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = text.len() - rest.len() + i;
        let boundary = before == 0
            || !text.as_bytes()[before - 1].is_ascii_alphanumeric()
                && text.as_bytes()[before - 1] != b'_';
        rest = &rest[i + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        if boundary && end > 0 {
            found.insert(&rest[..end]);
        }
    }
    found
}

/// `(top-level module, submodule)` of a file under `src/` or `passes/`; the submodule is `None`
/// for a module's root file (`mod.rs`, or a single-file module).
fn module_of(root: &Path, p: &Path) -> (String, Option<String>) {
    let rel: Vec<String> = p
        .strip_prefix(root)
        .expect("under the root")
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let (top, rest) = if rel[0] == "passes" {
        ("passes".to_string(), &rel[1..])
    } else {
        (rel[1].clone(), &rel[2..])
    };
    let sub = rest.first().filter(|s| *s != "mod").cloned();
    (top, sub)
}

#[test]
fn layers_only_look_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("passes"), &mut files);
    let rank: BTreeMap<&str, usize> = LAYERS.iter().enumerate().map(|(i, l)| (l.0, i)).collect();
    for (i, (m, deps)) in LAYERS.iter().enumerate() {
        for d in *deps {
            assert!(
                rank[d] < i,
                "LAYERS lists {m} above {d}, which it uses; reorder it"
            );
        }
    }
    let mut violations = Vec::new();
    for p in &files {
        let (top, sub) = module_of(root, p);
        if sub.as_deref() == Some("tests") || top == "lib" {
            continue;
        }
        let text = non_test_text(p);
        let used: BTreeSet<&str> = if top == "main" {
            paths(&text, "nnopt::")
        } else {
            paths(&text, "crate::")
        };
        if top == "main" {
            // The binary is the top: it may use what the library exports, but only the CLI
            // layer should do its work.
            continue;
        }
        let Some(&(_, allowed)) = LAYERS.iter().find(|l| l.0 == top) else {
            violations.push(format!("{}: module '{top}' is not in LAYERS", p.display()));
            continue;
        };
        for u in used {
            if u != top && rank.contains_key(u) && !allowed.contains(&u) {
                violations.push(format!("{}: '{top}' uses '{u}'", p.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that break the layers of docs/architecture.md:\n{}",
        violations.join("\n")
    );
}

#[test]
fn no_cycles_inside_a_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("passes"), &mut files);
    // module -> submodule -> submodules it uses
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for p in &files {
        let (top, sub) = module_of(root, p);
        let Some(sub) = sub else { continue };
        if sub == "tests" {
            continue;
        }
        let text = non_test_text(p);
        let mut used: BTreeSet<String> = paths(&text, &format!("crate::{top}::"))
            .into_iter()
            .map(str::to_string)
            .collect();
        // `super::x` from a file directly in the module names a sibling.
        let depth = p.strip_prefix(root).unwrap().components().count();
        let direct = if top == "passes" {
            depth == 2
        } else {
            depth == 3
        };
        if direct {
            used.extend(paths(&text, "super::").into_iter().map(str::to_string));
        }
        used.remove(&sub);
        graph
            .entry(top)
            .or_default()
            .entry(sub)
            .or_default()
            .extend(used);
    }
    let mut cycles = Vec::new();
    for (top, g) in &graph {
        // A depth-first search for a back edge among the submodules that exist.
        fn visit(
            n: &str,
            g: &BTreeMap<String, BTreeSet<String>>,
            state: &mut BTreeMap<String, u8>,
            stack: &mut Vec<String>,
            cycles: &mut Vec<String>,
        ) {
            state.insert(n.to_string(), 1);
            stack.push(n.to_string());
            for m in g.get(n).into_iter().flatten() {
                if !g.contains_key(m) {
                    continue;
                }
                match state.get(m.as_str()).copied().unwrap_or(0) {
                    0 => visit(m, g, state, stack, cycles),
                    1 => {
                        let at = stack.iter().position(|s| s == m).unwrap();
                        cycles.push(format!("{} -> {m}", stack[at..].join(" -> ")));
                    }
                    _ => {}
                }
            }
            stack.pop();
            state.insert(n.to_string(), 2);
        }
        let mut state = BTreeMap::new();
        for n in g.keys() {
            if !state.contains_key(n) {
                visit(n, g, &mut state, &mut Vec::new(), &mut cycles);
            }
        }
        for c in cycles.iter_mut().filter(|c| !c.contains(':')) {
            *c = format!("{top}: {c}");
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

/// `Function`'s raw mutators: `pub(crate)` so that the rewriter, a layer above `ir`, can reach
/// them, but they bypass the rewriter's event log, so nothing else may call them.
const RAW_MUTATORS: &[&str] = &[
    "raw_insert_before",
    "raw_set_operand",
    "raw_set_operands",
    "raw_replace_all_uses",
    "raw_set_kind",
    "raw_value_mut",
    "raw_set_result_types",
    "raw_erase",
];

/// The files that may call them: where they are defined, the builder and the rewriter.
const RAW_MUTATOR_USERS: &[&str] = &[
    "src/ir/mod.rs",
    "src/ir/builder.rs",
    "src/rewrite/rewriter.rs",
];

#[test]
fn only_the_builder_and_the_rewriter_call_raw_mutators() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "passes", "tests", "examples", "bench"] {
        if root.join(dir).is_dir() {
            sources(&root.join(dir), &mut files);
        }
    }
    let mut violations = Vec::new();
    for p in &files {
        let rel = p.strip_prefix(root).expect("under the root");
        if RAW_MUTATOR_USERS.iter().any(|u| Path::new(u) == rel) || rel.ends_with("layers.rs") {
            continue;
        }
        let text = std::fs::read_to_string(p).expect("reads a source file");
        for m in RAW_MUTATORS {
            let call = |sep: &str| text.contains(&format!("{sep}{m}("));
            if call(".") || call("::") {
                violations.push(format!("{}: calls {m}", rel.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "only ir::builder and rewrite::Rewriter may call Function's raw mutators:\n{}",
        violations.join("\n")
    );
}

/// One concept per file keeps files short: none over 1,000 lines outside tests, and the
/// binary only parses flags and dispatches.
#[test]
fn source_files_stay_small() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    sources(&root.join("passes"), &mut files);
    let mut long = Vec::new();
    for p in &files {
        let rel = p.strip_prefix(root).expect("under the root");
        if rel.iter().any(|c| c == "tests" || c == "tests.rs") {
            continue;
        }
        let lines = non_test_text(p).lines().count();
        let limit = if rel == Path::new("src/main.rs") {
            400
        } else {
            1000
        };
        if lines > limit {
            long.push(format!("{}: {lines} lines (limit {limit})", rel.display()));
        }
    }
    assert!(long.is_empty(), "files to split:\n{}", long.join("\n"));
}
