//! Thin helpers over melior's `OperationBuilder` for the MLIR ops the lowering emits (tensor,
//! linalg, arith, math, bufferization). Not to be confused with NNIR's `ir::builder`, which
//! builds NNIR functions.
//!
//! melior 0.27 builds upstream ops only generically (its typed ODS builders sit behind a feature
//! the crate does not enable), so each helper here spells out one op's operands, result types and
//! inherent attributes — the same data MLIR's C++ builders fill in. Named linalg ops get their
//! body from MLIR itself (`mlirLinalgFillBuiltinNamedOpRegion`), so the payload computation of
//! `linalg.matmul`, the convolutions, the poolings and `linalg.fill` is exactly upstream's.
//!
//! Building never verifies; the caller verifies the finished module once and reports MLIR's own
//! diagnostics if that fails (see `super::lower_module`).

use crate::ir::ElemType;
use melior::ir::attribute::{
    ArrayAttribute, DenseElementsAttribute, DenseI32ArrayAttribute, DenseI64ArrayAttribute,
    FloatAttribute, IntegerAttribute,
};
use melior::ir::operation::{OperationBuilder, OperationLike};
use melior::ir::r#type::{IntegerType, MemRefType, RankedTensorType, ShapedTypeLike};
use melior::ir::{
    AffineExpr, AffineMap, Attribute, Block, BlockLike, Identifier, Location, Region, RegionLike,
    Type, Value, ValueLike,
};
use melior::Context;

/// MLIR's marker for a dynamic size in static shape arrays (`ShapedType::kDynamic`).
pub const DYNAMIC: i64 = i64::MIN;

/// A failure to build an op: a bug in the lowering, not in the input.
#[derive(Debug)]
pub struct BuildError(pub String);

pub type BResult<T> = Result<T, BuildError>;

/// Iterator kind of one linalg loop.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Iter {
    Parallel,
    Reduction,
}

/// Appends ops to one block at one location.
pub struct Emitter<'c, 'b, B: BlockLike<'c, 'b>> {
    pub cx: &'c Context,
    pub block: &'b B,
    pub loc: Location<'c>,
}

pub fn id<'c>(cx: &'c Context, name: &str) -> Identifier<'c> {
    Identifier::new(cx, name)
}

pub fn f32_type(cx: &Context) -> Type<'_> {
    Type::float32(cx)
}

pub fn tensor_type<'c>(cx: &'c Context, shape: &[i64]) -> Type<'c> {
    tensor_of(shape, f32_type(cx))
}

/// The ranked tensor type of `shape` with elements `elem` (`DYNAMIC` for a dynamic size).
pub fn tensor_of<'c>(shape: &[i64], elem: Type<'c>) -> Type<'c> {
    let dims: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
    RankedTensorType::new(&dims, elem, None).into()
}

/// The MLIR type of the elements the lowering passes in and out: `f32`, or `i64` for token ids
/// (`None` for the types it does not lower).
pub fn element_type(cx: &Context, elem: ElemType) -> Option<Type<'_>> {
    match elem {
        ElemType::F32 => Some(f32_type(cx)),
        ElemType::I64 => Some(IntegerType::new(cx, 64).into()),
        ElemType::F16 | ElemType::BF16 => None,
    }
}

pub fn dense_i64<'c>(cx: &'c Context, v: &[i64]) -> Attribute<'c> {
    DenseI64ArrayAttribute::new(cx, v).into()
}

pub fn segments<'c>(cx: &'c Context, v: &[i32]) -> (Identifier<'c>, Attribute<'c>) {
    (
        id(cx, "operandSegmentSizes"),
        DenseI32ArrayAttribute::new(cx, v).into(),
    )
}

/// `dense<[a, b]> : tensor<2xi64>`, the form the named conv/pool ops take for strides and
/// dilations.
pub fn i64_elements<'c>(cx: &'c Context, v: &[i64]) -> Attribute<'c> {
    let ty = RankedTensorType::new(&[v.len() as u64], IntegerType::new(cx, 64).into(), None);
    DenseElementsAttribute::i64_values(ty.into(), v).into()
}

pub fn affine_map_attr<'c>(map: AffineMap<'c>) -> Attribute<'c> {
    // SAFETY: wraps a valid affine map of the same context into an attribute of that context.
    unsafe { Attribute::from_raw(mlir_sys::mlirAffineMapAttrGet(map.to_raw())) }
}

/// An affine map over `ndims` loops whose results are the listed loop dims (`None` = the
/// constant 0, used for broadcast size-1 axes).
pub fn map<'c>(cx: &'c Context, ndims: usize, results: &[Option<usize>]) -> AffineMap<'c> {
    let exprs: Vec<AffineExpr> = results
        .iter()
        .map(|r| match r {
            Some(d) => AffineExpr::dim(cx, *d),
            None => AffineExpr::constant(cx, 0),
        })
        .collect();
    AffineMap::new(cx, ndims, 0, &exprs)
}

pub fn reassociation<'c>(cx: &'c Context, groups: &[Vec<usize>]) -> Attribute<'c> {
    let i64t: Type = IntegerType::new(cx, 64).into();
    let inner: Vec<Attribute> = groups
        .iter()
        .map(|g| {
            let v: Vec<Attribute> = g
                .iter()
                .map(|&d| IntegerAttribute::new(i64t, d as i64).into())
                .collect();
            ArrayAttribute::new(cx, &v).into()
        })
        .collect();
    ArrayAttribute::new(cx, &inner).into()
}

fn iterator_attr<'c>(cx: &'c Context, it: Iter) -> BResult<Attribute<'c>> {
    // The linalg iterator-type enum attribute has no C constructor; parsing its one-word
    // spelling is the only way to obtain it through the C API.
    let text = match it {
        Iter::Parallel => "#linalg.iterator_type<parallel>",
        Iter::Reduction => "#linalg.iterator_type<reduction>",
    };
    Attribute::parse(cx, text).ok_or_else(|| BuildError(format!("cannot create {text}")))
}

impl<'c: 'b, 'b, B: BlockLike<'c, 'b>> Emitter<'c, 'b, B> {
    pub fn new(cx: &'c Context, block: &'b B, loc: Location<'c>) -> Self {
        Emitter { cx, block, loc }
    }

    /// Builds and appends an op, returning its first result (if any).
    pub fn op(
        &self,
        name: &str,
        operands: &[Value<'c, '_>],
        results: &[Type<'c>],
        attrs: &[(Identifier<'c>, Attribute<'c>)],
        regions: Vec<Region<'c>>,
    ) -> BResult<Option<Value<'c, 'b>>> {
        let op = OperationBuilder::new(name, self.loc)
            .add_operands(operands)
            .add_results(results)
            .add_attributes(attrs)
            .add_regions_vec(regions)
            .build()
            .map_err(|e| BuildError(format!("cannot build {name}: {e}")))?;
        let op = self.block.append_operation(op);
        // `result(0)` on an op without results formats the op into its error, which verifies
        // a detached op (a crash for `linalg.yield`), so ask for the count first.
        if op.result_count() == 0 {
            return Ok(None);
        }
        Ok(op.result(0).ok().map(Into::into))
    }

    /// An op with exactly one result.
    pub fn op1(
        &self,
        name: &str,
        operands: &[Value<'c, '_>],
        result: Type<'c>,
        attrs: &[(Identifier<'c>, Attribute<'c>)],
        regions: Vec<Region<'c>>,
    ) -> BResult<Value<'c, 'b>> {
        self.op(name, operands, &[result], attrs, regions)?
            .ok_or_else(|| BuildError(format!("{name} has no result")))
    }

    pub fn f32_const(&self, v: f32) -> BResult<Value<'c, 'b>> {
        let t = f32_type(self.cx);
        let a = FloatAttribute::new(self.cx, t, v as f64).into();
        self.op1(
            "arith.constant",
            &[],
            t,
            &[(id(self.cx, "value"), a)],
            vec![],
        )
    }

    pub fn index_const(&self, v: i64) -> BResult<Value<'c, 'b>> {
        self.int_const(Type::index(self.cx), v)
    }

    pub fn i64_const(&self, v: i64) -> BResult<Value<'c, 'b>> {
        self.int_const(IntegerType::new(self.cx, 64).into(), v)
    }

    fn int_const(&self, t: Type<'c>, v: i64) -> BResult<Value<'c, 'b>> {
        let a = IntegerAttribute::new(t, v).into();
        self.op1(
            "arith.constant",
            &[],
            t,
            &[(id(self.cx, "value"), a)],
            vec![],
        )
    }

    /// `linalg.index dim`: the position along iteration dimension `dim` of the enclosing
    /// `linalg.generic`.
    pub fn linalg_index(&self, dim: usize) -> BResult<Value<'c, 'b>> {
        let i64t = IntegerType::new(self.cx, 64).into();
        let attr = [(
            id(self.cx, "dim"),
            IntegerAttribute::new(i64t, dim as i64).into(),
        )];
        self.op1("linalg.index", &[], Type::index(self.cx), &attr, vec![])
    }

    /// `arith.constant dense<...>` from raw little-endian f32 bytes (bit-exact: NaN payloads,
    /// -0.0 and denormals survive).
    pub fn dense_f32(&self, shape: &[i64], bytes: &[u8]) -> BResult<Value<'c, 'b>> {
        let t = tensor_type(self.cx, shape);
        let a = DenseElementsAttribute::raw_buffer(t, bytes).into();
        self.op1(
            "arith.constant",
            &[],
            t,
            &[(id(self.cx, "value"), a)],
            vec![],
        )
    }

    pub fn splat_f32(&self, shape: &[i64], v: f32) -> BResult<Value<'c, 'b>> {
        let t = tensor_type(self.cx, shape);
        let a = DenseElementsAttribute::f32_splat(t, v).into();
        self.op1(
            "arith.constant",
            &[],
            t,
            &[(id(self.cx, "value"), a)],
            vec![],
        )
    }

    pub fn binf(&self, name: &str, a: Value<'c, '_>, b: Value<'c, '_>) -> BResult<Value<'c, 'b>> {
        self.op1(name, &[a, b], f32_type(self.cx), &[], vec![])
    }

    /// A binary float op that LLVM may contract with its neighbour into an FMA
    /// (`fastmath<contract>`; one rounding instead of two, nothing else relaxed).
    pub fn binf_contract(
        &self,
        name: &str,
        a: Value<'c, '_>,
        b: Value<'c, '_>,
    ) -> BResult<Value<'c, 'b>> {
        self.binf_fast(name, a, b, "contract")
    }

    /// A binary float op with the fast-math `flags` (e.g. `reassoc`).
    pub fn binf_fast(
        &self,
        name: &str,
        a: Value<'c, '_>,
        b: Value<'c, '_>,
        flags: &str,
    ) -> BResult<Value<'c, 'b>> {
        let fm = Attribute::parse(self.cx, &format!("#arith.fastmath<{flags}>"))
            .ok_or_else(|| BuildError(format!("cannot build #arith.fastmath<{flags}>")))?;
        self.op1(
            name,
            &[a, b],
            f32_type(self.cx),
            &[(id(self.cx, "fastmath"), fm)],
            vec![],
        )
    }

    pub fn unf(&self, name: &str, a: Value<'c, '_>) -> BResult<Value<'c, 'b>> {
        self.op1(name, &[a], f32_type(self.cx), &[], vec![])
    }

    /// `arith.cmpf` with the predicate's enum value (e.g. 3 = `uge`... see ArithBase.td).
    pub fn cmpf(&self, pred: i64, a: Value<'c, '_>, b: Value<'c, '_>) -> BResult<Value<'c, 'b>> {
        let i1: Type = IntegerType::new(self.cx, 1).into();
        let p = IntegerAttribute::new(IntegerType::new(self.cx, 64).into(), pred).into();
        self.op1(
            "arith.cmpf",
            &[a, b],
            i1,
            &[(id(self.cx, "predicate"), p)],
            vec![],
        )
    }

    pub fn select(
        &self,
        c: Value<'c, '_>,
        a: Value<'c, '_>,
        b: Value<'c, '_>,
    ) -> BResult<Value<'c, 'b>> {
        self.op1("arith.select", &[c, a, b], f32_type(self.cx), &[], vec![])
    }

    pub fn muli(&self, a: Value<'c, '_>, b: Value<'c, '_>) -> BResult<Value<'c, 'b>> {
        self.op1("arith.muli", &[a, b], Type::index(self.cx), &[], vec![])
    }

    /// `tensor.dim %t, %axis`.
    pub fn dim(&self, t: Value<'c, '_>, axis: usize) -> BResult<Value<'c, 'b>> {
        let i = self.index_const(axis as i64)?;
        self.op1("tensor.dim", &[t, i], Type::index(self.cx), &[], vec![])
    }

    /// `tensor.empty(dyn sizes) : tensor<shape>`.
    pub fn empty(&self, shape: &[i64], dyn_sizes: &[Value<'c, '_>]) -> BResult<Value<'c, 'b>> {
        self.op1(
            "tensor.empty",
            dyn_sizes,
            tensor_type(self.cx, shape),
            &[],
            vec![],
        )
    }

    /// A named linalg op (DPS, one tensor result) whose body MLIR fills in.
    pub fn named_linalg(
        &self,
        name: &str,
        ins: &[Value<'c, '_>],
        out: Value<'c, '_>,
        result: Type<'c>,
        extra: &[(Identifier<'c>, Attribute<'c>)],
    ) -> BResult<Value<'c, 'b>> {
        let mut operands = ins.to_vec();
        operands.push(out);
        let mut attrs = vec![segments(self.cx, &[ins.len() as i32, 1])];
        attrs.extend_from_slice(extra);
        let op = OperationBuilder::new(name, self.loc)
            .add_operands(&operands)
            .add_results(&[result])
            .add_attributes(&attrs)
            .add_regions([Region::new()])
            .build()
            .map_err(|e| BuildError(format!("cannot build {name}: {e}")))?;
        // SAFETY: `op` is a freshly built linalg named op with an empty region, which is what
        // the region filler expects; it fills the body exactly as MLIR's C++ builder does.
        unsafe { mlir_sys::mlirLinalgFillBuiltinNamedOpRegion(op.to_raw()) };
        let op = self.block.append_operation(op);
        op.result(0)
            .map(Into::into)
            .map_err(|e| BuildError(format!("{name}: {e}")))
    }

    /// `linalg.fill ins(%v) outs(%init)`.
    pub fn fill(&self, v: f32, init: Value<'c, '_>, ty: Type<'c>) -> BResult<Value<'c, 'b>> {
        let c = self.f32_const(v)?;
        self.named_linalg("linalg.fill", &[c], init, ty, &[])
    }

    /// A `linalg.generic` with one output. `body` receives an emitter for the body block and
    /// its arguments (one scalar per input, then the output's current value, each of its
    /// tensor's element type) and returns the scalar to yield.
    #[allow(clippy::too_many_arguments)]
    pub fn generic(
        &self,
        ins: &[Value<'c, '_>],
        in_maps: &[AffineMap<'c>],
        init: Value<'c, '_>,
        out_map: AffineMap<'c>,
        iters: &[Iter],
        result: Type<'c>,
        body: impl for<'x> FnOnce(
            &Emitter<'c, 'x, Block<'c>>,
            &[Value<'c, 'x>],
        ) -> BResult<Value<'c, 'x>>,
    ) -> BResult<Value<'c, 'b>> {
        self.generic_op(ins, in_maps, init, out_map, iters, &[result], body)?
            .ok_or_else(|| BuildError("linalg.generic has no result".into()))
    }

    /// [`Emitter::generic`] on buffers: every operand a memref, `out` written in place.
    #[allow(clippy::too_many_arguments)]
    pub fn generic_into(
        &self,
        ins: &[Value<'c, '_>],
        in_maps: &[AffineMap<'c>],
        out: Value<'c, '_>,
        out_map: AffineMap<'c>,
        iters: &[Iter],
        body: impl for<'x> FnOnce(
            &Emitter<'c, 'x, Block<'c>>,
            &[Value<'c, 'x>],
        ) -> BResult<Value<'c, 'x>>,
    ) -> BResult<()> {
        self.generic_op(ins, in_maps, out, out_map, iters, &[], body)
            .map(|_| ())
    }

    #[allow(clippy::too_many_arguments)]
    fn generic_op(
        &self,
        ins: &[Value<'c, '_>],
        in_maps: &[AffineMap<'c>],
        init: Value<'c, '_>,
        out_map: AffineMap<'c>,
        iters: &[Iter],
        results: &[Type<'c>],
        body: impl for<'x> FnOnce(
            &Emitter<'c, 'x, Block<'c>>,
            &[Value<'c, 'x>],
        ) -> BResult<Value<'c, 'x>>,
    ) -> BResult<Option<Value<'c, 'b>>> {
        let cx = self.cx;
        let elem = |v: &Value<'c, '_>| {
            let t = v.r#type();
            RankedTensorType::try_from(t)
                .map(|t| t.element())
                .or_else(|_| MemRefType::try_from(t).map(|t| t.element()))
                .unwrap_or(f32_type(cx))
        };
        let args: Vec<(Type, Location)> = ins
            .iter()
            .chain([&init])
            .map(|v| (elem(v), self.loc))
            .collect();
        let block = Block::new(&args);
        {
            let e = Emitter::new(cx, &block, self.loc);
            let vals: Vec<Value> = (0..=ins.len())
                .map(|i| block.argument(i).map(Into::into))
                .collect::<Result<_, _>>()
                .map_err(|e| BuildError(format!("generic body: {e}")))?;
            let y = body(&e, &vals)?;
            e.op("linalg.yield", &[y], &[], &[], vec![])?;
        }
        let region = Region::new();
        region.append_block(block);
        let mut maps: Vec<Attribute> = in_maps.iter().map(|m| affine_map_attr(*m)).collect();
        maps.push(affine_map_attr(out_map));
        let iters: Vec<Attribute> = iters
            .iter()
            .map(|&i| iterator_attr(cx, i))
            .collect::<Result<_, _>>()?;
        let mut operands = ins.to_vec();
        operands.push(init);
        self.op(
            "linalg.generic",
            &operands,
            results,
            &[
                (
                    id(cx, "indexing_maps"),
                    ArrayAttribute::new(cx, &maps).into(),
                ),
                (
                    id(cx, "iterator_types"),
                    ArrayAttribute::new(cx, &iters).into(),
                ),
                segments(cx, &[ins.len() as i32, 1]),
            ],
            vec![region],
        )
    }

    /// `tensor.pad %x low[...] high[...] { yield %v }` with static pads.
    pub fn pad(
        &self,
        x: Value<'c, '_>,
        low: &[i64],
        high: &[i64],
        value: f32,
        result: Type<'c>,
    ) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        let idx = Type::index(cx);
        let args: Vec<(Type, Location)> = low.iter().map(|_| (idx, self.loc)).collect();
        let block = Block::new(&args);
        {
            let e = Emitter::new(cx, &block, self.loc);
            let v = e.f32_const(value)?;
            e.op("tensor.yield", &[v], &[], &[], vec![])?;
        }
        let region = Region::new();
        region.append_block(block);
        self.op1(
            "tensor.pad",
            &[x],
            result,
            &[
                (id(cx, "static_low"), dense_i64(cx, low)),
                (id(cx, "static_high"), dense_i64(cx, high)),
                segments(cx, &[1, 0, 0]),
            ],
            vec![region],
        )
    }

    /// `tensor.extract_slice` with static offsets and unit strides; `sizes` may hold
    /// [`DYNAMIC`] entries, whose values come from `dyn_sizes` in order.
    pub fn extract_slice(
        &self,
        x: Value<'c, '_>,
        offsets: &[i64],
        sizes: &[i64],
        dyn_sizes: &[Value<'c, '_>],
        result: Type<'c>,
    ) -> BResult<Value<'c, 'b>> {
        self.unit_slice("tensor.extract_slice", x, offsets, sizes, dyn_sizes, result)
    }

    /// [`Emitter::extract_slice`] taking every `strides[i]`-th element along axis `i`.
    pub fn extract_slice_strided(
        &self,
        x: Value<'c, '_>,
        offsets: &[i64],
        sizes: &[i64],
        strides: &[i64],
        dyn_sizes: &[Value<'c, '_>],
        result: Type<'c>,
    ) -> BResult<Value<'c, 'b>> {
        self.slice(
            "tensor.extract_slice",
            x,
            offsets,
            sizes,
            strides,
            dyn_sizes,
            result,
        )
    }

    /// `memref.subview` with static offsets and unit strides: [`Emitter::extract_slice`] on a
    /// buffer; `result` carries the view's layout.
    pub fn subview(
        &self,
        x: Value<'c, '_>,
        offsets: &[i64],
        sizes: &[i64],
        dyn_sizes: &[Value<'c, '_>],
        result: Type<'c>,
    ) -> BResult<Value<'c, 'b>> {
        self.unit_slice("memref.subview", x, offsets, sizes, dyn_sizes, result)
    }

    /// [`Emitter::slice`] with unit strides.
    fn unit_slice(
        &self,
        name: &str,
        x: Value<'c, '_>,
        offsets: &[i64],
        sizes: &[i64],
        dyn_sizes: &[Value<'c, '_>],
        result: Type<'c>,
    ) -> BResult<Value<'c, 'b>> {
        let strides = vec![1i64; sizes.len()];
        self.slice(name, x, offsets, sizes, &strides, dyn_sizes, result)
    }

    #[allow(clippy::too_many_arguments)]
    fn slice(
        &self,
        name: &str,
        x: Value<'c, '_>,
        offsets: &[i64],
        sizes: &[i64],
        strides: &[i64],
        dyn_sizes: &[Value<'c, '_>],
        result: Type<'c>,
    ) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        let mut operands = vec![x];
        operands.extend_from_slice(dyn_sizes);
        self.op1(
            name,
            &operands,
            result,
            &[
                (id(cx, "static_offsets"), dense_i64(cx, offsets)),
                (id(cx, "static_sizes"), dense_i64(cx, sizes)),
                (id(cx, "static_strides"), dense_i64(cx, strides)),
                segments(cx, &[1, 0, dyn_sizes.len() as i32, 0]),
            ],
            vec![],
        )
    }

    /// `tensor.insert_slice %src into %dest` with static offsets and unit strides.
    pub fn insert_slice(
        &self,
        src: Value<'c, '_>,
        dest: Value<'c, '_>,
        offsets: &[i64],
        sizes: &[i64],
        dyn_sizes: &[Value<'c, '_>],
        result: Type<'c>,
    ) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        let mut operands = vec![src, dest];
        operands.extend_from_slice(dyn_sizes);
        let strides = vec![1i64; sizes.len()];
        self.op1(
            "tensor.insert_slice",
            &operands,
            result,
            &[
                (id(cx, "static_offsets"), dense_i64(cx, offsets)),
                (id(cx, "static_sizes"), dense_i64(cx, sizes)),
                (id(cx, "static_strides"), dense_i64(cx, &strides)),
                segments(cx, &[1, 1, 0, dyn_sizes.len() as i32, 0]),
            ],
            vec![],
        )
    }

    pub fn collapse(
        &self,
        x: Value<'c, '_>,
        groups: &[Vec<usize>],
        result: Type<'c>,
    ) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        self.op1(
            "tensor.collapse_shape",
            &[x],
            result,
            &[(id(cx, "reassociation"), reassociation(cx, groups))],
            vec![],
        )
    }

    /// `tensor.expand_shape`; `shape` may hold [`DYNAMIC`] entries given by `dyn_sizes`.
    pub fn expand(
        &self,
        x: Value<'c, '_>,
        groups: &[Vec<usize>],
        shape: &[i64],
        dyn_sizes: &[Value<'c, '_>],
    ) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        let mut operands = vec![x];
        operands.extend_from_slice(dyn_sizes);
        self.op1(
            "tensor.expand_shape",
            &operands,
            tensor_type(cx, shape),
            &[
                (id(cx, "reassociation"), reassociation(cx, groups)),
                (id(cx, "static_output_shape"), dense_i64(cx, shape)),
            ],
            vec![],
        )
    }
}
