//! The `linalg.generic` shapes the op lowerings share: element-wise maps with NumPy
//! broadcasting, contractions (`fastmath<contract>` multiply-adds), reductions and bias adds,
//! and the `tensor.cast` barrier that stops the schedule's fusion.

use super::abi::{shape, DimVal};
use super::mlir_ops::{map, BResult, Emitter, Iter};
use super::state::Lower;
use melior::ir::{AffineMap, Block, Value};

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// `x` through an identity `tensor.cast`: the schedule's `fuse` stops there instead of
    /// pulling `x`'s producer into every tile of the layer (canonicalization removes the cast).
    pub(super) fn barrier(&self, x: Value<'c, 'b>, dims: &[DimVal]) -> BResult<Value<'c, 'b>> {
        self.e.op1("tensor.cast", &[x], self.ty(dims), &[], vec![])
    }

    /// `x` (of `xd`) inside a zero-filled tensor of `pd`, at offsets `low`: a fill (split over
    /// threads like an element-wise op) and [`Lower::copy_into`] its interior. A `tensor.pad`
    /// bufferizes its interior to a `memref.copy` into a strided view, a `memrefCopy` call that
    /// moves the rows one `memmove` at a time. Returns the padded tensor and the copy (for a
    /// schedule mark).
    pub(super) fn zero_padded(
        &self,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        low: &[i64],
        pd: &[DimVal],
    ) -> BResult<(Value<'c, 'b>, Value<'c, 'b>)> {
        let xp = self.filled(0.0, pd)?;
        self.spread(xp, pd)?;
        self.copy_into(x, xd, xp, low, pd)
    }

    /// `dest` (of `dd`) with `x` (of `xd`) in its slice at `offs`, written by a `linalg.copy`
    /// that `convert-linalg-to-loops` leaves to LLVM's loop vectorizer, where a
    /// `tensor.insert_slice` of a strided `x` or into a strided slice bufferizes to a
    /// `memrefCopy` call that moves each row with a `memmove` of its own. Returns the new
    /// `dest` and the copy (for a schedule mark).
    pub(super) fn copy_into(
        &self,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        dest: Value<'c, 'b>,
        offs: &[i64],
        dd: &[DimVal],
    ) -> BResult<(Value<'c, 'b>, Value<'c, 'b>)> {
        let sizes = shape(xd);
        let dn = self.dyn_sizes(xd)?;
        let slice = self.e.extract_slice(dest, offs, &sizes, &dn, self.ty(xd))?;
        let copy = self
            .e
            .named_linalg("linalg.copy", &[x], slice, self.ty(xd), &[])?;
        let y = self
            .e
            .insert_slice(copy, dest, offs, &sizes, &dn, self.ty(dd))?;
        Ok((y, copy))
    }

    /// Indexing map results of an operand broadcast into `out` (right-aligned; a size-1 axis
    /// of the operand against a larger output axis reads index 0).
    pub(super) fn broadcast_map(od: &[DimVal], out: &[DimVal]) -> Vec<Option<usize>> {
        let off = out.len() - od.len();
        od.iter()
            .enumerate()
            .map(|(i, d)| {
                if *d == DimVal::Static(1) && out[i + off] != DimVal::Static(1) {
                    None
                } else {
                    Some(i + off)
                }
            })
            .collect()
    }

    /// `init[out...] += a * b` summed over `reductions` loops after the `out.len()` output
    /// loops: a `linalg.generic` whose mul/add carry `fastmath<contract>` (`mul_add`), with
    /// `in_maps` over all the loops and the identity on the output loops as the output map.
    pub(super) fn contraction(
        &self,
        ins: &[Value<'c, 'b>],
        in_maps: &[AffineMap<'c>],
        init: Value<'c, 'b>,
        out: &[DimVal],
        reductions: usize,
    ) -> BResult<Value<'c, 'b>> {
        let r = out.len();
        let mut iters = vec![Iter::Parallel; r];
        iters.extend(std::iter::repeat_n(Iter::Reduction, reductions));
        let out_map = map(
            self.cx,
            r + reductions,
            &(0..r).map(Some).collect::<Vec<_>>(),
        );
        self.e
            .generic(ins, in_maps, init, out_map, &iters, self.ty(out), mul_add)
    }

    /// Elementwise `linalg.generic` over `out` dims: each input read through its broadcast map.
    pub(super) fn elementwise(
        &self,
        ins: &[(Value<'c, 'b>, Vec<Option<usize>>)],
        out: &[DimVal],
        body: impl for<'x> FnOnce(
            &Emitter<'c, 'x, Block<'c>>,
            &[Value<'c, 'x>],
        ) -> BResult<Value<'c, 'x>>,
    ) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        let r = out.len();
        let init = self.empty(out)?;
        let values: Vec<Value> = ins.iter().map(|(v, _)| *v).collect();
        let maps: Vec<_> = ins.iter().map(|(_, m)| map(cx, r, m)).collect();
        let id_map = map(cx, r, &(0..r).map(Some).collect::<Vec<_>>());
        self.e.generic(
            &values,
            &maps,
            init,
            id_map,
            &vec![Iter::Parallel; r],
            self.ty(out),
            body,
        )
    }

    /// `y + b` over `dims`, the bias `b` indexed by the axes `b_axes` of `y` and broadcast over
    /// the others (the bias add of linear and conv layers).
    pub(super) fn add_bias(
        &self,
        y: Value<'c, 'b>,
        dims: &[DimVal],
        b: Value<'c, 'b>,
        b_axes: &[usize],
    ) -> BResult<Value<'c, 'b>> {
        let r = dims.len();
        self.elementwise(
            &[
                (y, (0..r).map(Some).collect()),
                (b, b_axes.iter().copied().map(Some).collect()),
            ],
            dims,
            |e, a| e.binf("arith.addf", a[0], a[1]),
        )
    }

    /// A reduction over the axes in `reduced` (a `linalg.generic` with reduction iterators)
    /// into a tensor of the kept dims initialised to `init_value`.
    #[allow(clippy::type_complexity)]
    pub(super) fn reduce(
        &self,
        ins: &[(Value<'c, 'b>, Vec<Option<usize>>)],
        dims: &[DimVal],
        reduced: &[bool],
        init_value: f32,
        body: impl for<'x> FnOnce(
            &Emitter<'c, 'x, Block<'c>>,
            &[Value<'c, 'x>],
        ) -> BResult<Value<'c, 'x>>,
    ) -> BResult<(Value<'c, 'b>, Vec<DimVal>)> {
        let cx = self.cx;
        let r = dims.len();
        let kept: Vec<DimVal> = (0..r).filter(|&i| !reduced[i]).map(|i| dims[i]).collect();
        let out_map: Vec<Option<usize>> = (0..r).filter(|&i| !reduced[i]).map(Some).collect();
        let init = self.filled(init_value, &kept)?;
        let values: Vec<Value> = ins.iter().map(|(v, _)| *v).collect();
        let maps: Vec<_> = ins.iter().map(|(_, m)| map(cx, r, m)).collect();
        let iters: Vec<Iter> = reduced
            .iter()
            .map(|&red| if red { Iter::Reduction } else { Iter::Parallel })
            .collect();
        let v = self.e.generic(
            &values,
            &maps,
            init,
            map(cx, r, &out_map),
            &iters,
            self.ty(&kept),
            body,
        )?;
        Ok((v, kept))
    }
}

/// `acc + x * w`, contractible into an FMA: the named matmul and conv ops cannot carry the
/// flag, so without it vectorized code is a `vmulps` + `vaddps` pair per MAC (half the
/// throughput on cores with two FMA pipes).
pub(super) fn mul_add<'c, 'x>(
    e: &Emitter<'c, 'x, Block<'c>>,
    a: &[Value<'c, 'x>],
) -> BResult<Value<'c, 'x>> {
    let p = e.binf_contract("arith.mulf", a[0], a[1])?;
    e.binf_contract("arith.addf", a[2], p)
}
