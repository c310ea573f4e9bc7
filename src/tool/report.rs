//! The reports of the pass pipeline, in mlir-opt's layout: `--timing`'s wall time per pass and
//! `--pass-statistics`' pattern and pass counters, with the parameters and MACs of every layer
//! before and after.

use crate::ir::{Function, Module};
use crate::passes::layer_costs::param_count;
use crate::passes::{layer_costs, LayerNote, PassContext};

/// The `--timing` report: each pass's wall time and its share of the total.
pub fn timing_report(cx: &PassContext) -> String {
    let total: f64 = cx.timings.iter().map(|t| t.1.as_secs_f64()).sum();
    let mut out = format!("===-------------------------------------------------------------------------===\n                      ... Execution time report ...\n===-------------------------------------------------------------------------===\n  Total Execution Time: {:.6} seconds\n\n   ----Wall Time----  ----Name----\n", total);
    for (name, t) in &cx.timings {
        let s = t.as_secs_f64();
        let pct = if total > 0.0 { 100.0 * s / total } else { 0.0 };
        out.push_str(&format!("   {s:.6} ({pct:5.1}%)  {name}\n"));
    }
    out
}

/// The `--pass-statistics` report: how often each pattern applied, the passes' counters, and,
/// given the module before and after the pipeline, a table of each layer: its names, channels,
/// parameters and MACs per sample before and after, and why it lost or kept neurons.
pub fn statistics_table(cx: &PassContext, modules: Option<(&Module, &Module)>) -> String {
    let mut out = String::from("===-------------------------------------------------------------------------===\n                         ... Pass statistics report ...\n===-------------------------------------------------------------------------===\n");
    for (k, v) in &cx.pattern_hits {
        out.push_str(&format!("{v:>10} pattern {k} applied\n"));
    }
    for (k, v) in &cx.counters {
        out.push_str(&format!("{v:>10} {k}\n"));
    }
    let Some((before, after)) = modules else {
        return out;
    };
    for (fa, fb) in before.funcs.iter().zip(&after.funcs) {
        out.push_str(&layer_table(cx, fa, fb));
    }
    out
}

/// One function's layer table, with the parameters outside the layers and the totals, which
/// count every constant the function holds, as the written file does.
fn layer_table(cx: &PassContext, fa: &Function, fb: &Function) -> String {
    let before = layer_costs(fa);
    let after = layer_costs(fb);
    let named = before.iter().any(|c| c.model_name.is_some());
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["layer", "value", "channels", "params", "params after"];
    header.extend(["MACs/sample", "MACs after", "removed and why"]);
    rows.push(header.into_iter().map(String::from).collect());
    let (mut p0, mut p1, mut m0, mut m1) = (0, 0, 0, 0);
    for c in &before {
        let a = after.iter().find(|a| a.op == c.op);
        let (ap, am) = a.map_or((0, 0), |a| (a.params, a.macs));
        let channels = match a {
            Some(a) if a.channels != c.channels => format!("{} -> {}", c.channels, a.channels),
            Some(_) => c.channels.to_string(),
            None => format!("{} -> 0", c.channels),
        };
        let why = match cx.layers.get(&(fa.name.clone(), c.op)) {
            Some(note) => reasons(note),
            None if a.is_none() => "erased".to_string(),
            None => String::new(),
        };
        rows.push(vec![
            c.model_name.clone().unwrap_or_else(|| "-".into()),
            c.name.clone(),
            channels,
            c.params.to_string(),
            ap.to_string(),
            c.macs.to_string(),
            am.to_string(),
            why,
        ]);
        (p0, p1, m0, m1) = (p0 + c.params, p1 + ap, m0 + c.macs, m1 + am);
    }
    let (t0, t1) = (param_count(fa), param_count(fb));
    let blank = String::new;
    rows.push(vec![
        "other constants".into(),
        blank(),
        blank(),
        t0.saturating_sub(p0).to_string(),
        t1.saturating_sub(p1).to_string(),
        blank(),
        blank(),
        "norms, new biases, border maps, scatter fills".into(),
    ]);
    rows.push(vec![
        "total".into(),
        blank(),
        blank(),
        t0.to_string(),
        t1.to_string(),
        m0.to_string(),
        m1.to_string(),
        blank(),
    ]);
    if !named {
        // Without model names the NNIR name is the layer's only name.
        for row in &mut rows[1..before.len() + 1] {
            row.swap(0, 1);
        }
        for row in &mut rows {
            row.remove(1);
        }
    }
    let pct = |a: u64, b: u64| {
        if a == 0 {
            0.0
        } else {
            100.0 * (a - b.min(a)) as f64 / a as f64
        }
    };
    format!(
        "@{}: per layer, MACs per sample at batch 1\n{}  removed: {:.1}% of the parameters, {:.1}% of the MACs\n",
        fa.name,
        align(&rows),
        pct(t0, t1),
        pct(m0, m1)
    )
}

/// The removal and keep reasons of one layer, for the last column.
pub fn reasons(note: &LayerNote) -> String {
    let mut parts = Vec::new();
    for (n, what) in [
        (note.constant, "constant"),
        (note.unused, "unused"),
        (note.followed, "with its producer"),
    ] {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    }
    match note.heads {
        0 => {}
        1 => parts.push("1 attention head".into()),
        n => parts.push(format!("{n} attention heads")),
    }
    if let Some((n, why)) = note.kept {
        parts.push(format!("kept {n}: {why}"));
    }
    if note.aligned > 0 {
        parts.push(format!("kept {} for alignment", note.aligned));
    }
    parts.join(", ")
}

/// Lays out `rows` (the first is the header) in columns as wide as their widest cell: text
/// columns (the names) left-aligned, numbers (from `channels` on) right-aligned under their
/// header, the last column as it is.
fn align(rows: &[Vec<String>]) -> String {
    let cols = rows[0].len();
    let width = |c: usize| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols).map(width).collect();
    let numeric = |c: usize| c + 1 < cols && c + 6 >= cols;
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let w = widths[c];
            line.push_str("  ");
            if c + 1 == cols {
                line.push_str(cell);
            } else if numeric(c) {
                line.push_str(&format!("{cell:>w$}"));
            } else {
                line.push_str(&format!("{cell:<w$}"));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
