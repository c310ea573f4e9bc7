//! The reports of the pass pipeline, in mlir-opt's layout: `--timing`'s wall time per pass and
//! `--pass-statistics`' pattern and pass counters, with the parameters and MACs of every layer
//! before and after.

use crate::ir::Module;
use crate::passes::{layer_costs, PassContext};

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
/// given the module before and after the pipeline, a table of each layer's costs.
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
        out.push_str(&format!(
            "@{}: {:<24} {:>12} {:>12} {:>14} {:>14}\n",
            fa.name, "layer", "params", "params after", "MACs/sample", "MACs after"
        ));
        let after_costs = layer_costs(fb);
        let (mut p0, mut p1, mut m0, mut m1) = (0, 0, 0, 0);
        for c in layer_costs(fa) {
            let (ap, am) = after_costs
                .iter()
                .find(|a| a.op == c.op)
                .map_or((0, 0), |a| (a.params, a.macs));
            out.push_str(&format!(
                "  {:<34} {:>12} {:>12} {:>14} {:>14}\n",
                c.name, c.params, ap, c.macs, am
            ));
            (p0, p1, m0, m1) = (p0 + c.params, p1 + ap, m0 + c.macs, m1 + am);
        }
        let pct = |a: u64, b: u64| {
            if a == 0 {
                0.0
            } else {
                100.0 * (a - b.min(a)) as f64 / a as f64
            }
        };
        out.push_str(&format!(
            "  {:<34} {:>12} {:>12} {:>14} {:>14}\n  removed: {:.1}% of the parameters, {:.1}% of the MACs\n",
            "total", p0, p1, m0, m1, pct(p0, p1), pct(m0, m1)
        ));
    }
    out
}
