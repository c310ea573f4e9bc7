//! Passes over NNIR and the pass manager that runs them from a textual pipeline such as
//! `prune-neurons{zero-threshold=0},dce`.
//!
//! The pattern passes run through the greedy driver (`greedy.rs`) on top of the per-channel
//! constness analysis (`analysis.rs`); `docs/passes.md` describes each pass, option and pattern.

pub mod analysis;
pub mod canon;
pub mod fold;
pub mod greedy;
pub mod prune;

use crate::diag::{Diagnostic, Span};
use crate::ir::rewriter::Rewriter;
use crate::ir::{Function, Module, OpId, OpKind};
use greedy::apply_patterns_greedily;
use std::collections::{BTreeMap, HashMap};

/// The pipeline `--prune-neurons` stands for.
pub const PRUNE_PIPELINE: &str = "canonicalize,fold-batch-norm,prune-neurons,canonicalize,dce";

/// Statistics and remarks collected while passes run.
#[derive(Default)]
pub struct PassContext {
    pub pattern_hits: BTreeMap<&'static str, u64>,
    pub counters: BTreeMap<&'static str, u64>,
    /// Why a dead neuron stayed, by op (the latest reason wins; emitted for ops still alive).
    kept: HashMap<OpId, Diagnostic>,
    pub remarks: Vec<Diagnostic>,
    /// Wall time of each pass run, in pipeline order (verification excluded).
    pub timings: Vec<(&'static str, std::time::Duration)>,
}

impl PassContext {
    pub fn count(&mut self, what: &'static str, n: u64) {
        *self.counters.entry(what).or_default() += n;
    }

    pub fn keep_remark(&mut self, op: OpId, d: Diagnostic) {
        self.kept.insert(op, d);
    }

    fn flush_remarks(&mut self, f: &Function) {
        let mut kept: Vec<(OpId, Diagnostic)> = self.kept.drain().collect();
        kept.sort_by_key(|(op, _)| *op);
        self.remarks.extend(
            kept.into_iter()
                .filter(|(op, _)| f.is_linked(*op))
                .map(|(_, d)| d),
        );
    }
}

/// A named pass with its options.
#[derive(Clone, Debug, PartialEq)]
pub enum Pass {
    /// Local clean-ups (`canon.rs`).
    Canonicalize,
    /// Folds `nn.batch_norm` into the conv or linear before it.
    FoldBatchNorm,
    PruneNeurons {
        zero_threshold: f32,
        residual: Residual,
    },
    /// Erases ops whose results are unused.
    Dce,
}

/// What `prune-neurons` does with a neuron whose value also reaches an op that is not a weighted
/// consumer (a residual `nn.add`, `nn.concat`, a function result).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Residual {
    /// Remove it and restore the full length there with `nn.scatter` (filled with its constant).
    Scatter,
    /// Leave the whole layer unpruned (no scatters are inserted).
    Keep,
    /// Per layer, `Scatter` when the MACs the removal saves exceed the elements its scatters
    /// copy (both per sample), else `Keep`.
    Auto,
}

/// A pass's name, one-line summary and `(option, description)` pairs.
pub type PassInfo = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Every pass, for `--list-passes` and pipeline errors.
pub const PASSES: &[PassInfo] = &[
    (
        "canonicalize",
        "local clean-ups: removes nn.identity and identity nn.scatter, folds ops whose operands are all constant (f32, by the interpreter's kernels), folds an nn.scatter into the nn.linear/nn.conv2d that reads it (dropping input columns, adding the fill's contribution to the bias), and moves scatters below activations and below add/sub/mul of two like scatters",
        &[],
    ),
    (
        "prune-neurons",
        "removes neurons of nn.linear/nn.conv2d that are constant (all incoming weights zero) or ignored (all outgoing weights zero), folding their constant into the consumers' biases; cascades to a fixpoint",
        &[
            (
                "zero-threshold",
                "a weight counts as zero when |w| <= this (default 0: exact)",
            ),
            (
                "residual",
                "scatter (default): a removed neuron that also reaches a residual add, concat or result is restored there by nn.scatter with its constant; keep: such layers are not pruned; auto: per layer, scatter when the MACs the removal saves exceed the elements the scatters copy (per sample), else keep",
            ),
        ],
    ),
    (
        "fold-batch-norm",
        "folds nn.batch_norm into the nn.conv2d (or rank-2 nn.linear) before it when nothing else reads the unnormalized result: W' = s*W, b' = s*(b - mean) + beta, s = scale / sqrt(var + eps)",
        &[],
    ),
    ("dce", "erases ops whose results are unused", &[]),
];

impl Pass {
    pub fn name(&self) -> &'static str {
        match self {
            Pass::Canonicalize => "canonicalize",
            Pass::FoldBatchNorm => "fold-batch-norm",
            Pass::PruneNeurons { .. } => "prune-neurons",
            Pass::Dce => "dce",
        }
    }

    /// Runs the pass on `f`; returns whether it changed anything.
    pub fn run(&self, f: &mut Function, cx: &mut PassContext) -> bool {
        match self {
            Pass::FoldBatchNorm => apply_patterns_greedily(f, &[&fold::FoldBatchNorm], 0.0, cx),
            Pass::Canonicalize => apply_patterns_greedily(
                f,
                &[
                    &canon::RemoveIdentity,
                    &canon::ConstantFold,
                    &canon::RemoveIdentityScatter,
                    &canon::FoldScatterIntoConsumer,
                    &canon::SinkScatter,
                ],
                0.0,
                cx,
            ),
            Pass::PruneNeurons {
                zero_threshold,
                residual,
            } => {
                let changed = apply_patterns_greedily(
                    f,
                    &[&prune::DeadNeuronElimination {
                        residual: *residual,
                    }],
                    *zero_threshold,
                    cx,
                );
                cx.flush_remarks(f);
                changed
            }
            Pass::Dce => dce(f, cx),
        }
    }
}

/// Erases unused ops, last to first, so a chain of dead ops goes in one sweep.
fn dce(f: &mut Function, cx: &mut PassContext) -> bool {
    let ops: Vec<OpId> = f.ops().collect();
    let mut rw = Rewriter::new(f);
    let mut erased = 0;
    for &op in ops.iter().rev() {
        let data = rw.func().op(op);
        if matches!(data.kind, OpKind::Return) {
            continue;
        }
        if data.result().is_some_and(|r| !rw.func().has_uses(r)) {
            rw.erase_op(op);
            erased += 1;
        }
    }
    cx.count("ops erased by dce", erased);
    erased > 0
}

/// Parses `name{opt=value ...},name,...`; errors point into `text` (at `span` when given).
pub fn parse_pipeline(text: &str, span: Option<Span>) -> Result<Vec<Pass>, Diagnostic> {
    let err = |m: String| {
        let d = Diagnostic::error(m);
        match span {
            Some(s) => d.at(s),
            None => d,
        }
    };
    let mut passes = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() {
        let end = rest.find([',', '{']).unwrap_or(rest.len());
        let name = rest[..end].trim();
        rest = &rest[end..];
        let mut opts: Vec<(&str, &str)> = Vec::new();
        if let Some(r) = rest.strip_prefix('{') {
            let close = r
                .find('}')
                .ok_or_else(|| err(format!("missing '}}' after the options of '{name}'")))?;
            for kv in r[..close].split([' ', ',']).filter(|s| !s.is_empty()) {
                let (k, v) = kv
                    .split_once('=')
                    .ok_or_else(|| err(format!("option '{kv}' of '{name}' needs '=value'")))?;
                opts.push((k, v));
            }
            rest = &r[close + 1..];
        }
        rest = rest.trim_start();
        if let Some(r) = rest.strip_prefix(',') {
            rest = r.trim_start();
        } else if !rest.is_empty() {
            return Err(err(format!("expected ',' after '{name}'")));
        }
        let Some(&(_, _, known_opts)) = PASSES.iter().find(|p| p.0 == name) else {
            let names: Vec<&str> = PASSES.iter().map(|p| p.0).collect();
            return Err(err(format!(
                "unknown pass '{name}'; the passes are: {}",
                names.join(", ")
            )));
        };
        for (k, _) in &opts {
            if !known_opts.iter().any(|o| o.0 == *k) {
                let valid: Vec<&str> = known_opts.iter().map(|o| o.0).collect();
                return Err(err(format!(
                    "'{name}' has no option '{k}'{}",
                    if valid.is_empty() {
                        " (it takes none)".to_string()
                    } else {
                        format!("; its options are: {}", valid.join(", "))
                    }
                )));
            }
        }
        let opt = |k: &str| opts.iter().find(|o| o.0 == k).map(|o| o.1);
        passes.push(match name {
            "canonicalize" => Pass::Canonicalize,
            "fold-batch-norm" => Pass::FoldBatchNorm,
            "dce" => Pass::Dce,
            "prune-neurons" => {
                let t = opt("zero-threshold").unwrap_or("0");
                let zero_threshold =
                    t.parse::<f32>().ok().filter(|t| *t >= 0.0).ok_or_else(|| {
                        err(format!("zero-threshold must be a number >= 0, not '{t}'"))
                    })?;
                let residual = match opt("residual").unwrap_or("scatter") {
                    "scatter" => Residual::Scatter,
                    "keep" => Residual::Keep,
                    "auto" => Residual::Auto,
                    r => {
                        return Err(err(format!(
                            "residual must be 'scatter', 'keep' or 'auto', not '{r}'"
                        )))
                    }
                };
                Pass::PruneNeurons {
                    zero_threshold,
                    residual,
                }
            }
            _ => unreachable!("every name in PASSES is handled"),
        });
    }
    Ok(passes)
}

/// Runs `passes` over every function, verifying after each pass when `verify_each` is set (a
/// verifier failure there is a bug in the pass, reported as such).
pub fn run_pipeline(
    m: &mut Module,
    passes: &[Pass],
    verify_each: bool,
    cx: &mut PassContext,
    mut after_pass: impl FnMut(&Pass, &Module, bool),
) -> Result<(), Vec<Diagnostic>> {
    for p in passes {
        let start = std::time::Instant::now();
        let mut changed = false;
        for f in &mut m.funcs {
            changed |= p.run(f, cx);
        }
        cx.timings.push((p.name(), start.elapsed()));
        if verify_each {
            let errs = crate::verify::verify_module(m);
            if !errs.is_empty() {
                let mut out = vec![Diagnostic::error(format!(
                    "internal error: the IR does not verify after pass '{}'",
                    p.name()
                ))];
                out.extend(errs);
                return Err(out);
            }
        }
        after_pass(p, m, changed);
    }
    Ok(())
}

/// Parameters and multiply-accumulates per sample of one weighted op.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerCost {
    pub op: OpId,
    /// The result's name as printed (`%conv1`), or the op's mnemonic when it has none.
    pub name: String,
    pub params: u64,
    pub macs: u64,
}

/// The cost of every `nn.linear`, `nn.matmul` with a constant operand and `nn.conv2d`, with
/// dynamic dimensions counted as 1 (per sample).
pub fn layer_costs(f: &Function) -> Vec<LayerCost> {
    let per_sample = |t: &crate::ir::TensorType| -> u64 {
        t.dims.iter().map(|d| d.as_static().unwrap_or(1)).product()
    };
    f.ops()
        .filter_map(|op| {
            let data = f.op(op);
            let r = data.result()?;
            let (params, macs) = match &data.kind {
                OpKind::Linear | OpKind::MatMul | OpKind::Conv2d { .. } => {
                    let params: u64 = data.operands()[1..]
                        .iter()
                        .filter(|&&v| f.constant_of(v).is_some())
                        .map(|&v| per_sample(f.ty(v)))
                        .sum();
                    let w = f.ty(data.operands()[1]);
                    let reduction: u64 = match &data.kind {
                        OpKind::Conv2d { .. } => w.dims[1..]
                            .iter()
                            .map(|d| d.as_static().unwrap_or(1))
                            .product(),
                        _ => w
                            .dim(
                                w.rank()
                                    .saturating_sub(if matches!(data.kind, OpKind::Linear) {
                                        1
                                    } else {
                                        2
                                    }),
                            )
                            .as_static()
                            .unwrap_or(1),
                    };
                    (params, per_sample(f.ty(r)) * reduction)
                }
                _ => return None,
            };
            let name = f
                .value(r)
                .name
                .clone()
                .map_or_else(|| data.kind.mnemonic().to_string(), |n| format!("%{n}"));
            Some(LayerCost {
                op,
                name,
                params,
                macs,
            })
        })
        .collect()
}
