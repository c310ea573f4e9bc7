//! [`Lower`], the state of lowering one function: the MLIR value and dimensions of every NNIR
//! value lowered so far, the function's ABI as it grows, the layers recorded for the schedule
//! and the computed forms of their results; plus the op dispatch ([`Lower::lower_op`]) and the
//! value/dims bookkeeping every op lowering uses.
//!
//! Invariant: an NNIR value is lowered before its uses (ops are visited in layout order), so
//! [`Lower::val`] always finds it.

use super::abi::{memref_type, shape, DimVal, WeightArg};
use super::mlir_ops::{f32_type, id, segments, tensor_type, BResult, BuildError, Emitter, DYNAMIC};
use super::schedule::{Layer, Tiles};
use crate::ir::{Dim, ElemType, Function, Loc, OpId, OpKind, ValueId};
use melior::ir::attribute::IntegerAttribute;
use melior::ir::r#type::{DimSize, IntegerType, MemRefType, RankedTensorType, ShapedTypeLike};
use melior::ir::{Attribute, Block, Location, Type, Value, ValueLike};
use melior::Context;
use std::collections::{HashMap, HashSet};

/// The lowering of one function, built into one block of a `func.func`.
pub(super) struct Lower<'c, 'b, 'f> {
    pub(super) cx: &'c Context,
    pub(super) f: &'f Function,
    pub(super) e: Emitter<'c, 'b, Block<'c>>,
    pub(super) block: &'b Block<'c>,
    pub(super) vals: HashMap<ValueId, Value<'c, 'b>>,
    pub(super) dims: HashMap<ValueId, Vec<DimVal>>,
    /// The input tensors (`to_tensor` of the input memrefs), where dynamic sizes are read.
    pub(super) inputs: Vec<Value<'c, 'b>>,
    pub(super) constraints: Vec<(DimVal, DimVal)>,
    pub(super) weights: Vec<WeightArg>,
    pub(super) outputs: Vec<Vec<DimVal>>,
    pub(super) output_types: Vec<Type<'c>>,
    /// The module's scheduled layers so far (marks are indices into it).
    pub(super) layers: &'f mut Vec<Layer>,
    /// Layers whose result feeds only an op the schedule may fuse as the epilogue (an
    /// activation, a residual add; see [`Lower::epilogue_slot`]): the layer's index and its
    /// current root op's result.
    pub(super) epilogue: HashMap<ValueId, (usize, Value<'c, 'b>)>,
    /// Results of layers computed in a padded or flattened form (see [`Lower::conv_flat`],
    /// [`Lower::dense_packed`]): that form, which a fused activation is computed on, and how
    /// to view it as the op's result.
    pub(super) views: HashMap<ValueId, (Value<'c, 'b>, View)>,
    /// Activations computed in their producer's own loop nest (a depthwise conv's, see
    /// [`Lower::absorb_activation`]): their lowering only names the producer's result.
    pub(super) absorbed: HashSet<OpId>,
    /// Weights whose argument is packed (see [`super::Packing`]).
    pub(super) packed: HashSet<ValueId>,
    /// Results of [`Lower::view`] that are not contiguous (raw MLIR values).
    pub(super) strided: HashSet<usize>,
    /// The register tiles of the target; the dense panel width is part of the lowered form.
    pub(super) tiles: Tiles,
    /// The concats lowered so far, by operands and axis (see `concat.rs`).
    pub(super) concats: HashMap<(Vec<ValueId>, usize), Member<'c, 'b>>,
}

/// A flat conv result `[n, f, len]` whose first `ho * wp` positions are `ho` rows of `wp`, of
/// which the first `wo` columns are the NCHW output.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) struct RowView {
    pub(super) n: DimVal,
    pub(super) f: u64,
    pub(super) ho: u64,
    pub(super) wp: u64,
    pub(super) wo: u64,
    pub(super) len: u64,
}

/// A concat lowered into a family's shared tensor (`concat.rs`): that tensor after its
/// operands were inserted, and the tensor's dims.
#[derive(Clone)]
pub(super) struct Member<'c, 'b> {
    pub(super) tensor: Value<'c, 'b>,
    pub(super) dims: Vec<DimVal>,
}

/// How a layer's result is a view of the form it is computed in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum View {
    /// A flat conv result (see [`Lower::conv_flat`]).
    Rows(RowView),
    /// A packed dense result `[m, npad / tn, tn]`: its first `n` columns.
    Cols {
        m: DimVal,
        n: u64,
        npad: u64,
        tn: u64,
    },
}

impl View {
    /// The dims of the computed form.
    pub(super) fn full_dims(&self) -> Vec<DimVal> {
        let s = DimVal::Static;
        match *self {
            View::Rows(r) => vec![r.n, s(r.f), s(r.len)],
            View::Cols { m, npad, tn, .. } => vec![m, s(npad / tn), s(tn)],
        }
    }

    /// The dims of the view.
    pub(super) fn dims(&self) -> Vec<DimVal> {
        let s = DimVal::Static;
        match *self {
            View::Rows(r) => vec![r.n, s(r.f), s(r.ho), s(r.wo)],
            View::Cols { m, n, .. } => vec![m, s(n)],
        }
    }
}

/// Why one op could not be lowered.
pub(super) enum Fail {
    Unsupported(OpId, String),
    Build(BuildError),
}

impl From<BuildError> for Fail {
    fn from(e: BuildError) -> Fail {
        Fail::Build(e)
    }
}

/// The result of lowering one op.
pub(super) type LResult<T> = Result<T, Fail>;

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// Lowers the function's body, op by op.
    pub(super) fn run(&mut self) -> LResult<()> {
        self.bind_arguments()?;
        for op in self.f.ops() {
            self.e.loc = self.location(op);
            if let Some(r) = self.f.op(op).result() {
                if self.f.ty(r).elem != ElemType::F32 {
                    return Err(Fail::Unsupported(
                        op,
                        format!("element type {} (only f32 is supported)", self.f.ty(r).elem),
                    ));
                }
            }
            self.lower_op(op)?;
        }
        Ok(())
    }

    /// Lowers one op by its family; each family's lowering lives in its own file.
    fn lower_op(&mut self, op: OpId) -> LResult<()> {
        let data = self.f.op(op);
        let operands = data.operands().to_vec();
        let kind = data.kind.clone();
        match &kind {
            OpKind::Constant(t) => self.constant(op, t),
            OpKind::Weight { name, value } => self.weight(op, name, value),
            OpKind::Return => self.results(&operands),
            OpKind::Identity => {
                let (x, d) = self.val(operands[0]);
                self.define(op, x, d);
                Ok(())
            }
            OpKind::Relu
            | OpKind::LeakyRelu { .. }
            | OpKind::Clip { .. }
            | OpKind::Sigmoid
            | OpKind::Tanh
            | OpKind::Gelu { .. }
            | OpKind::Silu
            | OpKind::HardSwish => self.unary(op, &kind, operands[0]),
            OpKind::Add if self.fuse_residual(op, &operands)? => Ok(()),
            OpKind::Add | OpKind::Sub | OpKind::Mul => self.binary(op, &kind, &operands),
            OpKind::Linear => self.linear(op, &operands),
            OpKind::MatMul => self.matmul(op, &operands),
            OpKind::Conv2d {
                strides,
                pads,
                dilations,
                groups,
            } => self.conv2d(op, &operands, *strides, *pads, *dilations, *groups),
            OpKind::MaxPool2d(p) => self.pool(op, operands[0], p, None),
            OpKind::AvgPool2d {
                pool,
                count_include_pad,
            } => self.pool(op, operands[0], pool, Some(*count_include_pad)),
            OpKind::GlobalAvgPool => self.global_avg_pool(op, operands[0]),
            OpKind::Mean { axes, keepdims } => self.mean(op, operands[0], axes, *keepdims),
            OpKind::BatchNorm { epsilon } => self.batch_norm(op, &operands, *epsilon),
            OpKind::LayerNorm { axis, epsilon } => {
                self.trailing_norm(op, &operands, *axis, *epsilon, true)
            }
            OpKind::RmsNorm { axis, epsilon } => {
                self.trailing_norm(op, &operands, *axis, *epsilon, false)
            }
            OpKind::Softmax { axis } => self.softmax(op, operands[0], *axis),
            OpKind::Concat { axis } => self.concat(op, &operands, *axis),
            OpKind::Flatten { axis } => self.flatten(op, operands[0], *axis as usize),
            OpKind::Reshape { shape } => self.reshape(op, operands[0], shape),
            OpKind::Transpose { perm } => self.transpose(op, operands[0], perm),
            OpKind::Gather { axis, indices } => self.gather(op, operands[0], *axis, indices),
            OpKind::Embedding => self.embedding(op, operands[0], operands[1]),
            OpKind::Scatter {
                axis,
                indices,
                size,
                fill,
            } => self.scatter(op, operands[0], *axis, indices, *size, fill),
        }
    }

    pub(super) fn location(&self, op: OpId) -> Location<'c> {
        let name = self.f.kind(op).mnemonic();
        let unknown = Location::unknown(self.cx);
        match self.f.loc(op) {
            Some(Loc::FileLineCol { file, line, col }) => Location::name(
                self.cx,
                name,
                Location::new(self.cx, file, *line as usize, *col as usize),
            ),
            // The model's name first, as MLIR prints it, then the op it was lowered from.
            Some(Loc::Name(model)) => {
                Location::name(self.cx, model, Location::name(self.cx, name, unknown))
            }
            None => Location::name(self.cx, name, unknown),
        }
    }

    /// Memref argument `m` as a tensor of type `ty`.
    pub(super) fn to_tensor(&self, m: Value<'c, '_>, ty: Type<'c>) -> BResult<Value<'c, 'b>> {
        self.tensor_of(m, ty, &["restrict"])
    }

    /// `bufferization.to_tensor` of `m` with the unit attributes `flags`.
    fn tensor_of(&self, m: Value<'c, '_>, ty: Type<'c>, flags: &[&str]) -> BResult<Value<'c, 'b>> {
        let attrs: Vec<_> = flags
            .iter()
            .map(|f| (id(self.cx, f), Attribute::unit(self.cx)))
            .collect();
        self.e
            .op1("bufferization.to_tensor", &[m], ty, &attrs, vec![])
    }

    /// A buffer of `dims` that the lowering fills itself, through views of
    /// [`Lower::any_layout`], before [`Lower::owned_tensor`] hands it to the tensor ops.
    pub(super) fn alloc(&self, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        let dy = self.dyn_sizes(dims)?;
        let i64t = IntegerType::new(cx, 64).into();
        self.e.op1(
            "memref.alloc",
            &dy,
            memref_type(cx, &shape(dims)),
            &[
                (id(cx, "alignment"), IntegerAttribute::new(i64t, 64).into()),
                segments(cx, &[dy.len() as i32, 0]),
            ],
            vec![],
        )
    }

    /// Buffer `m` of [`Lower::alloc`] as the tensor that owns it: bufferization may write into
    /// it in place (`writable`) and frees it after its last use, as its own allocations.
    pub(super) fn owned_tensor(&self, m: Value<'c, '_>, ty: Type<'c>) -> BResult<Value<'c, 'b>> {
        self.tensor_of(m, ty, &["restrict", "writable"])
    }

    /// Tensor `t` as a buffer that is only read, with any layout: bufferization replaces it by
    /// `t`'s buffer (cast to this type) and takes it as a read at this point of the program,
    /// so the reads through it must come before the next op on tensors.
    pub(super) fn read_buffer(&self, t: Value<'c, '_>) -> BResult<Value<'c, 'b>> {
        let ty = RankedTensorType::try_from(t.r#type())
            .map_err(|e| BuildError(format!("a buffer of a non-tensor: {e}")))?;
        let dims: Vec<i64> = (0..ty.rank())
            .filter_map(|i| ty.dim_size(i).ok())
            .map(|d| match d {
                DimSize::Static(n) => n as i64,
                DimSize::Dynamic => DYNAMIC,
            })
            .collect();
        self.e.op1(
            "bufferization.to_buffer",
            &[t],
            self.any_layout_type(&dims)?,
            &[(id(self.cx, "read_only"), Attribute::unit(self.cx))],
            vec![],
        )
    }

    /// Memref `m` of `dims` cast to any layout: views of it take the same types as views of a
    /// [`Lower::read_buffer`], and canonicalization after bufferization folds the cast into
    /// them, which gives every view its static layout again.
    pub(super) fn any_layout(&self, m: Value<'c, '_>, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        let ty = self.any_layout_type(&shape(dims))?;
        self.e.op1("memref.cast", &[m], ty, &[], vec![])
    }

    /// The f32 memref of `shape` with every stride and the offset dynamic.
    pub(super) fn any_layout_type(&self, shape: &[i64]) -> BResult<Type<'c>> {
        let strides = vec!["?"; shape.len()].join(", ");
        let text = format!("strided<[{strides}], offset: ?>");
        let layout = Attribute::parse(self.cx, &text)
            .ok_or_else(|| BuildError(format!("cannot parse {text}")))?;
        Ok(MemRefType::new(f32_type(self.cx), shape, Some(layout), None).into())
    }

    pub(super) fn ty(&self, dims: &[DimVal]) -> Type<'c> {
        tensor_type(self.cx, &shape(dims))
    }

    pub(super) fn dyn_sizes(&self, dims: &[DimVal]) -> BResult<Vec<Value<'c, 'b>>> {
        let mut out = Vec::new();
        for d in dims {
            if let DimVal::Arg { arg, axis, factor } = *d {
                let v = self.e.dim(self.inputs[arg], axis)?;
                out.push(if factor == 1 {
                    v
                } else {
                    let k = self.e.index_const(factor as i64)?;
                    self.e.muli(v, k)?
                });
            }
        }
        Ok(out)
    }

    pub(super) fn empty(&self, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        let dy = self.dyn_sizes(dims)?;
        self.e.empty(&shape(dims), &dy)
    }

    pub(super) fn filled(&self, v: f32, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        let init = self.empty(dims)?;
        self.e.fill(v, init, self.ty(dims))
    }

    /// Two sizes that must be equal; a dynamic one is checked at run time.
    pub(super) fn unify(&mut self, a: DimVal, b: DimVal) -> DimVal {
        match (a, b) {
            _ if a == b => a,
            (DimVal::Static(_), DimVal::Static(_)) => a,
            (DimVal::Static(_), _) => {
                self.constraints.push((b, a));
                a
            }
            _ => {
                self.constraints.push((a, b));
                if matches!(b, DimVal::Static(_)) {
                    b
                } else {
                    a
                }
            }
        }
    }

    /// NumPy broadcasting of one axis.
    pub(super) fn broadcast_dim(&mut self, a: DimVal, b: DimVal) -> DimVal {
        match (a, b) {
            (DimVal::Static(1), x) | (x, DimVal::Static(1)) => x,
            _ => self.unify(a, b),
        }
    }

    pub(super) fn val(&self, v: ValueId) -> (Value<'c, 'b>, Vec<DimVal>) {
        (self.vals[&v], self.dims[&v].clone())
    }

    pub(super) fn define(&mut self, op: OpId, v: Value<'c, 'b>, dims: Vec<DimVal>) {
        if let Some(r) = self.f.op(op).result() {
            self.vals.insert(r, v);
            self.dims.insert(r, dims);
        }
    }

    /// The static size of `dims[axis]`, or an "unsupported" failure naming what it is.
    pub(super) fn need_static(
        &self,
        op: OpId,
        dims: &[DimVal],
        axis: usize,
        what: &str,
    ) -> LResult<u64> {
        match dims.get(axis) {
            Some(DimVal::Static(n)) => Ok(*n),
            _ => Err(Fail::Unsupported(
                op,
                format!("the {what} (axis {axis}) must have a static size"),
            )),
        }
    }

    /// The static height and width of a windowed op's (conv's or pool's) result, which its
    /// loops are built for.
    pub(super) fn static_output_hw(&self, op: OpId) -> LResult<(u64, u64)> {
        let r = self
            .f
            .op(op)
            .result()
            .expect("invariant: a windowed op has a result");
        match (self.f.ty(r).dim(2), self.f.ty(r).dim(3)) {
            (Dim::Static(a), Dim::Static(b)) => Ok((a, b)),
            _ => Err(Fail::Unsupported(
                op,
                "the output size must be static".into(),
            )),
        }
    }

    pub(super) fn norm_axis(op: OpId, axis: i64, rank: usize) -> LResult<usize> {
        crate::ir::infer::norm_axis(axis, rank).map_err(|e| Fail::Unsupported(op, e))
    }
}
