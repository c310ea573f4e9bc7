//! Parameters, channels and multiply-accumulates of the weighted layers, and the parameters of
//! a whole function, for `--pass-statistics`.
//!
//! MACs are per sample: a dynamic dimension counts as 1, and when every argument of the
//! function shares a static leading dimension (the batch of a model exported with a fixed batch
//! size), every layer's MACs are divided by it, so a batch of 2 does not double them. Dividing
//! the whole count, rather than dropping a result's leading dimension when it equals the batch,
//! keeps ops right whose leading dimension merges the batch with something else: attention's
//! batched matmuls run on `batch·heads` matrices.

use crate::ir::{Dim, Function, Loc, OpId, OpKind, TensorType};

/// One weighted op: its names, output channels, parameters and multiply-accumulates per sample.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerCost {
    pub op: OpId,
    /// The result's name as printed (`%conv1`), or the op's mnemonic when it has none.
    pub name: String,
    /// The name the model gave the layer, when it gave one: its weight's name without
    /// `.weight` (`layer1.0.conv1` for `layer1.0.conv1.weight`), else the op's location (an
    /// imported ONNX node's name), else its weight's name.
    pub model_name: Option<String>,
    /// Output channels (features): the length of the weight's output axis.
    pub channels: u64,
    pub params: u64,
    pub macs: u64,
}

/// The batch dimension of `f`'s values: the static leading dimension all its arguments share.
fn batch(f: &Function) -> Option<u64> {
    let mut lead = f.args().iter().map(|&a| f.ty(a).dims.first().copied());
    let first = lead.next()??.as_static()?;
    lead.all(|d| d == Some(Dim::Static(first))).then_some(first)
}

fn elements(t: &TensorType) -> u64 {
    t.dims.iter().map(|d| d.as_static().unwrap_or(1)).product()
}

/// The cost of every `nn.linear`, `nn.matmul` with a constant operand and `nn.conv2d`.
pub fn layer_costs(f: &Function) -> Vec<LayerCost> {
    let batch = batch(f);
    let per_sample = |t: &TensorType| -> u64 { elements(t) / batch.unwrap_or(1).max(1) };
    f.ops()
        .filter_map(|op| {
            let data = f.op(op);
            let r = data.result()?;
            if !matches!(
                data.kind,
                OpKind::Linear | OpKind::MatMul | OpKind::Conv2d { .. }
            ) {
                return None;
            }
            let params: u64 = data.operands()[1..]
                .iter()
                .filter(|&&v| f.constant_of(v).is_some())
                .map(|&v| elements(f.ty(v)))
                .sum();
            let w = f.ty(data.operands()[1]);
            let static_dim = |i: usize| w.dim(i).as_static().unwrap_or(1);
            let (reduction, channels) = match &data.kind {
                OpKind::Conv2d { .. } => (
                    w.dims[1..]
                        .iter()
                        .map(|d| d.as_static().unwrap_or(1))
                        .product(),
                    static_dim(0),
                ),
                OpKind::Linear => (static_dim(w.rank().saturating_sub(1)), static_dim(0)),
                _ => (
                    static_dim(w.rank().saturating_sub(2)),
                    static_dim(w.rank().saturating_sub(1)),
                ),
            };
            let name = f
                .value(r)
                .name
                .clone()
                .map_or_else(|| data.kind.mnemonic().to_string(), |n| format!("%{n}"));
            Some(LayerCost {
                op,
                name,
                model_name: model_name(f, op),
                channels,
                params,
                macs: per_sample(f.ty(r)) * reduction,
            })
        })
        .collect()
}

/// See [`LayerCost::model_name`]. Exporters name weights after the module (`conv1.weight`)
/// or after nothing (`onnx::Conv_193`): only the first kind is preferred to the op's location.
fn model_name(f: &Function, op: OpId) -> Option<String> {
    let weight = match f.producer_kind(f.op(op).operands()[1]) {
        Some(OpKind::Weight { name, .. }) => Some(name.as_str()),
        _ => None,
    };
    if let Some(module) = weight.and_then(|w| w.strip_suffix(".weight")) {
        return Some(module.to_string());
    }
    match f.loc(op) {
        Some(Loc::Name(name)) => return Some(name.clone()),
        Some(Loc::FileLineCol { file, line, col }) => return Some(format!("{file}:{line}:{col}")),
        None => {}
    }
    weight
        .filter(|w| !w.starts_with("onnx::"))
        .map(str::to_string)
}

/// The parameters `f` holds as written: the elements of its floating-point constants and
/// weights, and of the fills of its scatters (which an ONNX export writes as initializers).
pub fn param_count(f: &Function) -> u64 {
    f.ops()
        .map(|op| match f.kind(op) {
            OpKind::Constant(t) | OpKind::Weight { value: t, .. } => t.len() as u64,
            OpKind::Scatter { fill, .. } => fill.len() as u64,
            _ => 0,
        })
        .sum()
}
