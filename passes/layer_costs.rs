//! Parameters and multiply-accumulates of the weighted layers, for `--pass-statistics`.

use crate::ir::{Function, OpId, OpKind, TensorType};

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
    let per_sample =
        |t: &TensorType| -> u64 { t.dims.iter().map(|d| d.as_static().unwrap_or(1)).product() };
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
