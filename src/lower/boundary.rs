//! The ops at the function's boundary, which build its calling convention (`abi.rs`): the
//! arguments (as tensors, with their dynamic sizes), `nn.weight` (one more memref argument,
//! packed for a scheduled dense layer or a strided conv), `return` (one output memref per value, written in
//! place), and `nn.constant`, the other kind of leaf (an inline `arith.constant`).

use super::abi::{memref_type, shape, DimVal, WeightArg};
use super::mlir_ops::{element_type, id, tensor_of, BuildError};
use super::packing::Packing;
use super::state::{LResult, Lower};
use crate::ir::{Dim, OpId, OpKind, Tensor, ValueId};
use melior::ir::{Attribute, BlockLike, Value};

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
            let elem = element_type(self.cx, ty.elem)
                .expect("invariant: `entry.rs` lowers only arguments of these types");
            let t = self.to_tensor(m, tensor_of(&shape(&dims), elem))?;
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

    /// An external weight: one more memref argument (packed for a scheduled dense layer or a
    /// strided conv over phases, [`Packing`]).
    pub(super) fn weight(&mut self, op: OpId, name: &str, value: &Tensor) -> LResult<()> {
        let cx = self.cx;
        // The weight of one scheduled dense layer or strided conv over phases and nothing else
        // is passed packed.
        let r = self
            .f
            .op(op)
            .result()
            .expect("invariant: a weight has a result");
        let packed = match self.f.uses(r) {
            [u] if u.index == 1 => match self.f.kind(u.op) {
                OpKind::Linear => self
                    .dense_shape(u.op)
                    .map(|_| Packing::Dense(self.tiles.dense.1)),
                OpKind::Conv2d { strides, .. } => {
                    self.phases(u.op).map(|_| Packing::Phases(*strides))
                }
                _ => None,
            },
            _ => None,
        };
        if packed.is_some() {
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
        let t = self.to_tensor(m, self.ty(&dims))?;
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
