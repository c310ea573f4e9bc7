//! The calling convention of a lowered function (the memref ABI of `../shared/mlir-codegen`,
//! section 2) and the ops that make it: arguments, `nn.constant`, `nn.weight`, `return`.
//!
//! Every argument is an identity-layout `memref<...xf32>`, in this order: the NNIR function's
//! arguments, one per `nn.weight` op in layout order (external weights are never inlined; the
//! weight of a scheduled dense layer is passed packed, see [`super::pack_dense`]), one per
//! returned value (the outputs, which the function writes). The function has no results.
//! Inputs and weights enter as `bufferization.to_tensor ... restrict`; each result leaves
//! through `bufferization.materialize_in_destination`.
//!
//! Dynamic sizes stay dynamic: each is an argument's dimension times a static factor
//! ([`DimVal`]); two that must agree become a [`Signature::constraints`] entry that the JIT
//! checks before the call.

use super::mlir_ops::{f32_type, id, BuildError, DYNAMIC};
use super::schedule;
use super::state::{LResult, Lower};
use crate::ir::{Dim, OpId, OpKind, Tensor, TensorType, ValueId};
use melior::ir::r#type::MemRefType;
use melior::ir::{Attribute, BlockLike, Type, Value};
use melior::Context;

/// One dimension of a lowered value: static, or argument `arg`'s dimension `axis` times
/// `factor` (flatten multiplies a dynamic batch by the static sizes it merges with).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DimVal {
    Static(u64),
    Arg {
        arg: usize,
        axis: usize,
        factor: u64,
    },
}

impl DimVal {
    /// The size for concrete input shapes.
    pub fn eval(self, input_shapes: &[Vec<usize>]) -> Option<u64> {
        match self {
            DimVal::Static(n) => Some(n),
            DimVal::Arg { arg, axis, factor } => input_shapes
                .get(arg)?
                .get(axis)
                .and_then(|&n| (n as u64).checked_mul(factor)),
        }
    }

    pub(super) fn to_i64(self) -> i64 {
        match self {
            DimVal::Static(n) => n as i64,
            DimVal::Arg { .. } => DYNAMIC,
        }
    }
}

/// An external weight passed as an argument.
#[derive(Clone, Debug)]
pub struct WeightArg {
    pub name: String,
    pub value: Tensor,
    /// The argument is `value` (`[N, K]`) packed by [`pack_dense`]: the weight of a scheduled
    /// dense layer. [`jit::Jit::compile`] packs it once.
    pub packed: bool,
}

impl WeightArg {
    /// The shape of the argument.
    pub fn arg_shape(&self) -> Vec<u64> {
        let s = self.value.shape();
        if self.packed {
            let tn = schedule::DENSE_TILE.1;
            vec![s[0].div_ceil(tn), s[1], tn]
        } else {
            s.to_vec()
        }
    }
}

/// The calling convention of one lowered function.
#[derive(Clone, Debug)]
pub struct Signature {
    pub name: String,
    pub inputs: Vec<TensorType>,
    pub weights: Vec<WeightArg>,
    /// The dimensions of each output.
    pub outputs: Vec<Vec<DimVal>>,
    /// Pairs of sizes that must be equal at run time (e.g. the batch of both operands of an
    /// `nn.add` of two dynamic-batch arguments).
    pub constraints: Vec<(DimVal, DimVal)>,
}

/// The identity-layout f32 memref of `shape` (`DYNAMIC` for a dynamic size): every argument's type.
pub(super) fn memref_type<'c>(cx: &'c Context, shape: &[i64]) -> Type<'c> {
    MemRefType::new(f32_type(cx), shape, None, None).into()
}

/// The static shape of `dims`, `DYNAMIC` where a size is dynamic (MLIR's shape arrays).
pub(super) fn shape(dims: &[DimVal]) -> Vec<i64> {
    dims.iter().map(|d| d.to_i64()).collect()
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// Binds the function's arguments: each input memref as a tensor, with its dynamic sizes
    /// read from that argument.
    pub(super) fn bind_arguments(&mut self) -> LResult<()> {
        for (i, &a) in self.f.args().iter().enumerate() {
            let m: Value = self
                .block
                .argument(i)
                .map_err(|e| BuildError(e.to_string()))?
                .into();
            let ty = self.f.ty(a);
            let dims: Vec<DimVal> = ty
                .dims
                .iter()
                .enumerate()
                .map(|(axis, d)| match d {
                    Dim::Static(n) => DimVal::Static(*n),
                    Dim::Dynamic => DimVal::Arg {
                        arg: i,
                        axis,
                        factor: 1,
                    },
                })
                .collect();
            let t = self.to_tensor(m, &dims)?;
            self.inputs.push(t);
            self.vals.insert(a, t);
            self.dims.insert(a, dims);
        }
        Ok(())
    }
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// An inline constant as an `arith.constant` built from its raw bytes (NaN payloads, -0.0
    /// and denormals kept bit-exactly).
    pub(super) fn constant(&mut self, op: OpId, t: &Tensor) -> LResult<()> {
        let dims: Vec<DimVal> = t.shape().iter().map(|&n| DimVal::Static(n)).collect();
        let shp = shape(&dims);
        let v = match t.as_splat() {
            Some(_) => self.e.splat_f32(&shp, t.get(0))?,
            None => {
                let t = t.materialized();
                self.e
                    .dense_f32(&shp, t.raw_bytes().expect("materialized"))?
            }
        };
        self.define(op, v, dims);
        Ok(())
    }

    /// An external weight: one more memref argument (packed for a scheduled dense layer).
    pub(super) fn weight(&mut self, op: OpId, name: &str, value: &Tensor) -> LResult<()> {
        let cx = self.cx;
        // The weight of one scheduled dense layer and nothing else is passed packed.
        let r = self
            .f
            .op(op)
            .result()
            .expect("invariant: a weight has a result");
        let packed = matches!(self.f.uses(r), [u] if u.index == 1
            && matches!(self.f.kind(u.op), OpKind::Linear)
            && self.dense_shape(u.op).is_some());
        if packed {
            self.packed.insert(r);
        }
        let arg = WeightArg {
            name: name.to_string(),
            value: value.clone(),
            packed,
        };
        let dims: Vec<DimVal> = arg.arg_shape().into_iter().map(DimVal::Static).collect();
        let mty = memref_type(cx, &shape(&dims));
        let m = self.block.add_argument(mty, self.e.loc);
        let t = self.to_tensor(m, &dims)?;
        self.weights.push(arg);
        self.define(op, t, dims);
        Ok(())
    }

    /// `return`: one memref argument per returned value, written with
    /// `bufferization.materialize_in_destination`.
    pub(super) fn results(&mut self, operands: &[ValueId]) -> LResult<()> {
        let cx = self.cx;
        let mut outs = Vec::new();
        for &v in operands {
            let (t, d) = self.val(v);
            let mty = memref_type(cx, &shape(&d));
            outs.push((t, mty, d));
        }
        for (t, mty, d) in outs {
            let m = self.block.add_argument(mty, self.e.loc);
            self.e.op(
                "bufferization.materialize_in_destination",
                &[t, m],
                &[],
                &[
                    (id(cx, "restrict"), Attribute::unit(cx)),
                    (id(cx, "writable"), Attribute::unit(cx)),
                ],
                vec![],
            )?;
            self.outputs.push(d);
            self.output_types.push(mty);
        }
        self.e.op("func.return", &[], &[], &[], vec![])?;
        Ok(())
    }
}
