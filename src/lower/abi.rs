//! The calling convention of a lowered function (the memref ABI of `../shared/mlir-codegen`,
//! section 2) and the ops that make it: arguments, `nn.constant`, `nn.weight`, `return`.
//!
//! Every argument is an identity-layout `memref<...xf32>` (`memref<...xi64>` for token ids), in
//! this order: the NNIR function's arguments, one per `nn.weight` op in layout order (external weights are never inlined; the
//! weight of a scheduled dense layer or a strided conv is passed packed, see [`Packing`]), one per
//! returned value (the outputs, which the function writes). The function has no results.
//! Inputs and weights enter as `bufferization.to_tensor ... restrict`; each result leaves
//! through `bufferization.materialize_in_destination`.
//!
//! Dynamic sizes stay dynamic: each is an argument's dimension times a static factor
//! ([`DimVal`]); two that must agree become a [`Signature::constraints`] entry that the JIT
//! checks before the call.
//!
//! The ops that build this convention are lowered in `boundary.rs`.

use super::mlir_ops::{f32_type, DYNAMIC};
use super::packing::Packing;
use super::schedule::Layer;
use super::target::Target;
use crate::ir::{ElemType, Function, Tensor, TensorType};
use melior::ir::r#type::MemRefType;
use melior::ir::{Module as MlirModule, Type};
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

    /// The size when it is static.
    pub(super) fn as_static(self) -> Option<u64> {
        match self {
            DimVal::Static(n) => Some(n),
            DimVal::Arg { .. } => None,
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
    /// How the argument is `value` packed, if it is.
    pub packed: Option<Packing>,
}

impl WeightArg {
    /// The shape of the argument.
    pub fn arg_shape(&self) -> Vec<u64> {
        let s = self.value.shape();
        match self.packed {
            Some(p) => p.shape(s),
            None => s.to_vec(),
        }
    }
}

/// The calling convention of one lowered function.
#[derive(Clone, Debug)]
pub struct Signature {
    pub name: String,
    pub inputs: Vec<TensorType>,
    /// For each input of token ids (i64), the rows of the smallest `nn.embedding` table that
    /// reads it: [`super::Jit`] refuses an id outside `[0, rows)` before the call, as the
    /// interpreter does (the compiled code clamps, so it never reads outside the table).
    pub id_rows: Vec<Option<u64>>,
    pub weights: Vec<WeightArg>,
    /// The dimensions of each output.
    pub outputs: Vec<Vec<DimVal>>,
    /// Pairs of sizes that must be equal at run time (e.g. the batch of both operands of an
    /// `nn.add` of two dynamic-batch arguments).
    pub constraints: Vec<(DimVal, DimVal)>,
}

/// [`Signature::id_rows`] of `f`: for each i64 argument, the rows of the smallest table an
/// `nn.embedding` reads with it.
pub(super) fn id_rows(f: &Function) -> Vec<Option<u64>> {
    f.args()
        .iter()
        .map(|&a| match f.ty(a).elem {
            ElemType::I64 => f.embedding_rows(a),
            _ => None,
        })
        .collect()
}

/// The identity-layout f32 memref of `shape` (`DYNAMIC` for a dynamic size): the type of every
/// argument but token ids.
pub(super) fn memref_type<'c>(cx: &'c Context, shape: &[i64]) -> Type<'c> {
    memref_of(shape, f32_type(cx))
}

/// The identity-layout memref of `shape` with elements `elem`.
pub(super) fn memref_of<'c>(shape: &[i64], elem: Type<'c>) -> Type<'c> {
    MemRefType::new(elem, shape, None, None).into()
}

/// The static shape of `dims`, `DYNAMIC` where a size is dynamic (MLIR's shape arrays).
pub(super) fn shape(dims: &[DimVal]) -> Vec<i64> {
    dims.iter().map(|d| d.to_i64()).collect()
}

/// An MLIR module and the signatures of its functions (in NNIR order).
pub struct Lowered<'c> {
    pub module: MlirModule<'c>,
    pub signatures: Vec<Signature>,
    /// The layers whose ops carry schedule marks (`nnopt.*` attributes, see `marks.rs`),
    /// indexed by the marks' values.
    pub layers: Vec<Layer>,
    /// The CPU the module is lowered and scheduled for.
    pub target: Target,
}
