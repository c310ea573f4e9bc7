//! `--prune-report=FILE.html`: what pruning did to each layer, as a page readable without nnopt.
//!
//! One self-contained XHTML page (inline CSS, one inline SVG bar per layer, no scripts or
//! external files), so it opens in any browser and parses as XML. Each bar spans the layer's
//! channels before pruning (every bar the same width: it shows shares), in four parts:
//! channels that stay because they compute something, removable channels kept for alignment
//! (`round-to`), removed channels, and removed channels an `nn.scatter` restores downstream.
//! Beside it: channels, MACs per sample and parameters before and after, and the reasons of
//! the `--pass-statistics` table.

use super::report::reasons;
use crate::ir::{Function, Module};
use crate::passes::{layer_costs, LayerNote, PassContext};
use std::fmt::Write;

/// Width in pixels of a bar.
const BAR_WIDTH: u64 = 320;
const BAR_HEIGHT: u64 = 14;

/// The parts of a bar: class (colour) and legend text.
const PARTS: [(&str, &str); 4] = [
    ("live", "kept: computes something"),
    ("aligned", "kept for alignment (round-to)"),
    ("removed", "removed"),
    ("scattered", "removed, restored by a scatter"),
];

/// The sections of every function of `before`/`after` (the module before and after the
/// passes), with what `cx` noted while they ran.
pub fn sections(cx: &PassContext, before: &Module, after: &Module) -> String {
    before
        .funcs
        .iter()
        .zip(&after.funcs)
        .map(|(fa, fb)| function_section(cx, fa, fb))
        .collect()
}

/// The page around `sections`, titled after the input.
pub fn page(input: &str, sections: &str) -> String {
    let title = escape(&format!("nnopt pruning report: {input}"));
    let legend: String = PARTS
        .iter()
        .map(|(class, text)| {
            format!(
                "<span class=\"key\"><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"12\" height=\"12\"><rect class=\"{class}\" width=\"12\" height=\"12\"/></svg> {text}</span>\n"
            )
        })
        .collect();
    format!(
        "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>{title}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n<p class=\"legend\">\n{legend}</p>\n{sections}</body>\n</html>\n"
    )
}

const STYLE: &str = "body { font-family: sans-serif; font-size: 13px; margin: 1.5em; }
table { border-collapse: collapse; }
th, td { padding: 2px 8px; text-align: right; white-space: nowrap; }
th { border-bottom: 1px solid #888; }
td.name, th.name, td.why { text-align: left; }
tr.total td { border-top: 1px solid #888; font-weight: bold; }
.key { margin-right: 1.5em; }
rect.live { fill: #4c78a8; }
rect.aligned { fill: #f2b701; }
rect.removed { fill: #d5d5d5; }
rect.scattered { fill: #e45756; }
";

/// One function: a heading, the totals and a table row per weighted layer.
fn function_section(cx: &PassContext, fa: &Function, fb: &Function) -> String {
    let before = layer_costs(fa);
    let after = layer_costs(fb);
    let mut rows = String::new();
    let (mut p0, mut p1, mut m0, mut m1) = (0, 0, 0, 0);
    for c in &before {
        let a = after.iter().find(|a| a.op == c.op);
        let (c1, p, m) = a.map_or((0, 0, 0), |a| (a.channels, a.params, a.macs));
        let note = cx.layers.get(&(fa.name.clone(), c.op));
        let name = match &c.model_name {
            Some(model) => format!("{model} ({})", c.name),
            None => c.name.clone(),
        };
        let why = note.map(reasons).unwrap_or_default();
        let _ = writeln!(
            rows,
            "<tr><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"why\">{}</td></tr>",
            escape(&name),
            bar(c.channels, c1, note),
            arrow(c.channels, c1),
            arrow(c.macs, m),
            arrow(c.params, p),
            escape(&why)
        );
        (p0, p1, m0, m1) = (p0 + c.params, p1 + p, m0 + c.macs, m1 + m);
    }
    let _ = writeln!(
        rows,
        "<tr class=\"total\"><td class=\"name\">layers</td><td></td><td></td><td>{}</td><td>{}</td><td></td></tr>",
        arrow(m0, m1),
        arrow(p0, p1)
    );
    format!(
        "<h2>@{}</h2>\n<p>MACs per sample at batch 1: {} ({}); parameters of the layers: {} ({}).</p>\n<table>\n<tr><th class=\"name\">layer</th><th></th><th>channels</th><th>MACs/sample</th><th>params</th><th class=\"why\">removed and why</th></tr>\n{rows}</table>\n",
        escape(&fa.name),
        arrow(m0, m1),
        removed_pct(m0, m1),
        arrow(p0, p1),
        removed_pct(p0, p1),
    )
}

/// The SVG bar of a layer that had `c0` channels and has `c1`.
fn bar(c0: u64, c1: u64, note: Option<&LayerNote>) -> String {
    let aligned = note.map_or(0, |n| n.aligned).min(c1);
    let removed = c0.saturating_sub(c1);
    let scattered = note.map_or(0, |n| n.scattered).min(removed);
    let counts = [c1 - aligned, aligned, removed - scattered, scattered];
    // Edges at whole pixels of the running count, so the parts tile the bar exactly.
    let edge = |channels: u64| channels * BAR_WIDTH / c0.max(1);
    let mut start = 0;
    let mut rects = String::new();
    for ((class, text), n) in PARTS.iter().zip(counts) {
        if n == 0 {
            continue;
        }
        let (x, end) = (edge(start), edge(start + n));
        let _ = write!(
            rects,
            "<rect class=\"{class}\" x=\"{x}\" y=\"0\" width=\"{}\" height=\"{BAR_HEIGHT}\"><title>{n} {text}</title></rect>",
            end - x
        );
        start += n;
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{BAR_WIDTH}\" height=\"{BAR_HEIGHT}\">{rects}</svg>"
    )
}

/// `a`, or `a → b` when they differ.
fn arrow(a: u64, b: u64) -> String {
    if a == b {
        a.to_string()
    } else {
        format!("{a} → {b}")
    }
}

fn removed_pct(a: u64, b: u64) -> String {
    if a == 0 {
        return "nothing to remove".into();
    }
    format!(
        "{:.1}% removed",
        100.0 * a.saturating_sub(b) as f64 / a as f64
    )
}

/// `s` with the characters XML gives a meaning escaped.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bar_has_one_part_per_kind_of_channel() {
        let note = LayerNote {
            constant: 6,
            scattered: 2,
            aligned: 1,
            ..LayerNote::default()
        };
        // 16 channels, 10 left of which 1 kept for alignment; 6 removed, 2 of them scattered.
        let svg = bar(16, 10, Some(&note));
        let widths: Vec<&str> = svg
            .split("width=\"")
            .skip(2)
            .map(|s| &s[..s.find('"').unwrap()])
            .collect();
        assert_eq!(widths, ["180", "20", "80", "40"]);
        assert!(svg.contains("<title>1 kept for alignment (round-to)</title>"));
    }

    #[test]
    fn names_are_escaped() {
        assert_eq!(escape("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
    }
}
