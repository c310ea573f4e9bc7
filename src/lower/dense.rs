//! Dense layers: `nn.linear` (scheduled on a packed weight when its sizes are static, the
//! leading axes of an input of rank above 2 as its rows; `linalg.matmul` with a transposed B
//! or a contraction otherwise) and `nn.matmul` (scheduled when its operands share static batch
//! axes; otherwise a loop nest with the output row innermost).
//!
//! The packed layout (`packing::pack_dense`) is `W[N, K]` as panels `[ceil(N / TN), K, TN]` of `W^T`,
//! so that a register tile reads each reduction step's `TN` weights from one contiguous run.

use super::abi::{shape, DimVal};
use super::generic::mul_add;
use super::mlir_ops::{affine_map_attr, dense_i64, id, map, tensor_type, BResult, Iter};
use super::packing::pack_dense;
use super::schedule::Layer;
use super::state::{LResult, Lower, View};
use crate::ir::{Dim, OpId, OpKind, ValueId};
use melior::ir::attribute::ArrayAttribute;
use melior::ir::{Attribute, Value, ValueLike};

impl<'c, 'b> Lower<'c, 'b, '_> {
    pub(super) fn linear(&mut self, op: OpId, operands: &[ValueId]) -> LResult<()> {
        let cx = self.cx;
        let (x, xd) = self.val(operands[0]);
        let (w, wd) = self.val(operands[1]);
        let r = xd.len();
        if let Some((m, n, k)) = self.dense_shape(op) {
            let wp = self.packed_weight(operands[1], w, n, k)?;
            let bias = operands.get(2).copied();
            if r == 2 {
                return self.dense_packed(op, x, &xd, wp, bias, m, n, k);
            }
            return self.dense_packed_batched(op, x, &xd, wp, bias, (m, n, k));
        }
        let n = wd[0];
        self.unify(xd[r - 1], wd[1]);
        let mut out = xd.clone();
        out[r - 1] = n;
        let zeros = self.filled(0.0, &out)?;
        let kernel = if r == 2 {
            // linalg.matmul with a transposed-B indexing map: y[m, n] += x[m, k] * W[n, k].
            let maps = [
                map(cx, 3, &[Some(0), Some(2)]),
                map(cx, 3, &[Some(1), Some(2)]),
                map(cx, 3, &[Some(0), Some(1)]),
            ];
            let attrs: Vec<Attribute> = maps.iter().map(|m| affine_map_attr(*m)).collect();
            self.e.named_linalg(
                "linalg.matmul",
                &[x, w],
                zeros,
                self.ty(&out),
                &[(
                    id(cx, "indexing_maps"),
                    ArrayAttribute::new(cx, &attrs).into(),
                )],
            )?
        } else {
            // Loops (batch..., n, k): y[b, n] += x[b, k] * W[n, k].
            let mut xm: Vec<Option<usize>> = (0..r - 1).map(Some).collect();
            xm.push(Some(r));
            self.contraction(
                &[x, w],
                &[map(cx, r + 1, &xm), map(cx, r + 1, &[Some(r - 1), Some(r)])],
                zeros,
                &out,
                1,
            )?
        };
        let y = match operands.get(2) {
            Some(&b) => {
                let (bv, bd) = self.val(b);
                self.unify(bd[0], n);
                self.add_bias(kernel, &out, bv, &[r - 1])?
            }
            None => kernel,
        };
        self.define(op, y, out);
        Ok(())
    }

    /// `(M, N, K)` of a linear layer the schedule covers: static sizes (read from the IR's
    /// types: a weight is lowered, packed or not, before its layer); an input of rank above 2
    /// counts its leading axes as `M` rows (a transformer's `[batch, seq, d]` activations).
    pub(super) fn dense_shape(&self, op: OpId) -> Option<(u64, u64, u64)> {
        let ops = self.f.op(op).operands();
        let (x, w) = (self.f.ty(ops[0]), self.f.ty(ops[1]));
        let r = x.rank();
        if r < 2 {
            return None;
        }
        let mut m = 1;
        for i in 0..r - 1 {
            match x.dim(i) {
                Dim::Static(d) => m *= d,
                _ => return None,
            }
        }
        match (w.dim(0), w.dim(1)) {
            (Dim::Static(n), Dim::Static(k)) => Some((m, n, k)),
            _ => None,
        }
    }

    /// A scheduled dense layer on an input of rank above 2: its leading axes collapsed into
    /// `M` rows, the packed layer on those, and its `[M, N]` result expanded back. The result
    /// is no view (an activation after it is an element-wise op of its own, not the layer's
    /// epilogue: `View::Cols` is 2-D).
    fn dense_packed_batched(
        &mut self,
        op: OpId,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        wp: Value<'c, 'b>,
        bias: Option<ValueId>,
        (m, n, k): (u64, u64, u64),
    ) -> LResult<()> {
        let r = xd.len();
        let s = DimVal::Static;
        let x = self.contiguous(x, xd)?;
        let lead: Vec<usize> = (0..r - 1).collect();
        let x2 = self
            .e
            .collapse(x, &[lead.clone(), vec![r - 1]], self.ty(&[s(m), s(k)]))?;
        let (y, view) = self.dense_packed_form(op, x2, &[s(m), s(k)], wp, bias, m, n, k)?;
        let flat = self.view(y, view)?;
        let mut out = xd.to_vec();
        out[r - 1] = s(n);
        let v = self
            .e
            .expand(flat, &[lead, vec![r - 1]], &shape(&out), &[])?;
        if self.strided.contains(&(flat.to_raw().ptr as usize)) {
            self.strided.insert(v.to_raw().ptr as usize);
        }
        let res = self
            .f
            .op(op)
            .result()
            .expect("invariant: a layer has a result");
        // `record_layer` offered the result as an epilogue of the 2-D form it does not have.
        self.epilogue.remove(&res);
        self.define(op, v, out);
        Ok(())
    }

    /// The weight `w[N, K]` (operand `v`) of a scheduled dense layer in [`pack_dense`]'s
    /// layout: the argument itself when it was packed, a packed constant for an `nn.constant`,
    /// else packed in the IR on every call (zero rows appended, `[N/TN, TN, K]` transposed to
    /// `[N/TN, K, TN]`; a weight with other users, or a computed one).
    fn packed_weight(
        &self,
        v: ValueId,
        w: Value<'c, 'b>,
        n: u64,
        k: u64,
    ) -> BResult<Value<'c, 'b>> {
        if self.packed.contains(&v) {
            return Ok(w);
        }
        let tn = self.tiles.dense.1;
        let nb = n.div_ceil(tn);
        let sizes = [nb as i64, k as i64, tn as i64];
        if let Some(OpKind::Constant(t)) = self.f.producer_kind(v) {
            let p = pack_dense(t, tn);
            return self.e.dense_f32(
                &sizes,
                p.raw_bytes().expect("invariant: packed is contiguous"),
            );
        }
        let cx = self.cx;
        let rows = (nb * tn) as i64;
        let w = if rows as u64 != n {
            self.e.pad(
                w,
                &[0, 0],
                &[rows - n as i64, 0],
                0.0,
                tensor_type(cx, &[rows, k as i64]),
            )?
        } else {
            w
        };
        let w = self.e.expand(
            w,
            &[vec![0, 1], vec![2]],
            &[nb as i64, tn as i64, k as i64],
            &[],
        )?;
        let init = self.e.empty(&sizes, &[])?;
        let t = self.e.named_linalg(
            "linalg.transpose",
            &[w],
            init,
            tensor_type(cx, &sizes),
            &[(id(cx, "permutation"), dense_i64(cx, &[0, 2, 1]))],
        )?;
        // Not pulled into the layer's tiles, where it would be vectorized into one shuffle of
        // a whole panel, K x 32 lanes.
        let s = DimVal::Static;
        self.barrier(t, &[s(nb), s(k), s(tn)])
    }

    pub(super) fn matmul(&mut self, op: OpId, operands: &[ValueId]) -> LResult<()> {
        let cx = self.cx;
        let (a, ad) = self.val(operands[0]);
        let (b, bd) = self.val(operands[1]);
        let (ra, rb) = (ad.len(), bd.len());
        let r = ra.max(rb);
        let nb = r - 2;
        self.unify(ad[ra - 1], bd[rb - 2]);
        let mut out = Vec::new();
        let get = |d: &[DimVal], i: usize| {
            let off = nb - (d.len() - 2);
            if i < off {
                DimVal::Static(1)
            } else {
                d[i - off]
            }
        };
        for i in 0..nb {
            let v = self.broadcast_dim(get(&ad, i), get(&bd, i));
            out.push(v);
        }
        out.push(ad[ra - 2]);
        out.push(bd[rb - 1]);
        if let Some(sizes) = self.matmul_shape(op) {
            return self.matmul_scheduled(op, (a, &ad), (b, &bd), &out, sizes);
        }
        let zeros = self.filled(0.0, &out)?;
        // Loops (batch..., m, k, n), the output column innermost: `convert-linalg-to-loops`
        // keeps this order, so the innermost loop is `y[m, :] += a[m, k] * b[k, :]` over
        // contiguous rows, which LLVM's loop vectorizer turns into vectors of the target's
        // width. The named `linalg.matmul` (and a contraction with `k` last) left a dot
        // product whose serial chain of adds stays scalar. Batch axes broadcast like nn.add.
        let bmap = |d: &[DimVal]| -> Vec<Option<usize>> {
            let batch = &d[..d.len() - 2];
            Self::broadcast_map(batch, &out[..nb])
        };
        let (m, k, n) = (nb, nb + 1, nb + 2);
        let mut am = bmap(&ad);
        am.extend([Some(m), Some(k)]);
        let mut bm = bmap(&bd);
        bm.extend([Some(k), Some(n)]);
        let mut om: Vec<Option<usize>> = (0..nb).map(Some).collect();
        om.extend([Some(m), Some(n)]);
        let mut iters = vec![Iter::Parallel; nb + 1];
        iters.extend([Iter::Reduction, Iter::Parallel]);
        let y = self.e.generic(
            &[a, b],
            &[map(cx, r + 1, &am), map(cx, r + 1, &bm)],
            zeros,
            map(cx, r + 1, &om),
            &iters,
            self.ty(&out),
            mul_add,
        )?;
        self.define(op, y, out);
        Ok(())
    }

    /// `(B, M, N, K)` of a matmul the schedule covers: static sizes and the same batch axes on
    /// both operands (`B` their product, 1 without any); a broadcast batch axis keeps the
    /// loop form.
    fn matmul_shape(&self, op: OpId) -> Option<(u64, u64, u64, u64)> {
        let ops = self.f.op(op).operands();
        let (a, b) = (self.f.ty(ops[0]), self.f.ty(ops[1]));
        let r = a.rank();
        if b.rank() != r {
            return None;
        }
        let sizes = |t: &crate::ir::TensorType| -> Option<Vec<u64>> {
            t.dims.iter().map(|d| d.as_static()).collect()
        };
        let (ad, bd) = (sizes(a)?, sizes(b)?);
        if ad[..r - 2] != bd[..r - 2] {
            return None;
        }
        let batch = ad[..r - 2].iter().product();
        Some((batch, ad[r - 2], bd[r - 1], ad[r - 1]))
    }

    /// A matmul scheduled like a dense layer (`Layer::Matmul`): both operands contiguous with
    /// their batch axes collapsed into one, `y[b, m, n] += a[b, m, k] * b[b, k, n]` into a zero
    /// fill, behind barriers (the schedule's `fuse` would otherwise pull a softmax or a
    /// transpose into every tile), and the result reshaped back.
    fn matmul_scheduled(
        &mut self,
        op: OpId,
        (a, ad): (Value<'c, 'b>, &[DimVal]),
        (b, bd): (Value<'c, 'b>, &[DimVal]),
        out: &[DimVal],
        (batch, m, n, k): (u64, u64, u64, u64),
    ) -> LResult<()> {
        let cx = self.cx;
        let s = DimVal::Static;
        let a3 = self.batched(a, ad, batch)?;
        let b3 = self.batched(b, bd, batch)?;
        let a3 = self.barrier(a3, &[s(batch), s(m), s(k)])?;
        let b3 = self.barrier(b3, &[s(batch), s(k), s(n)])?;
        let out3 = [s(batch), s(m), s(n)];
        let zeros = self.filled(0.0, &out3)?;
        let kernel = self.contraction(
            &[a3, b3],
            &[
                map(cx, 4, &[Some(0), Some(1), Some(3)]),
                map(cx, 4, &[Some(0), Some(3), Some(2)]),
            ],
            zeros,
            &out3,
            1,
        )?;
        self.record_layer(op, kernel, kernel, Layer::Matmul { batch, m, n, k })?;
        let res = self
            .f
            .op(op)
            .result()
            .expect("invariant: a layer has a result");
        // Offered as an epilogue by `record_layer`, but an activation after it would have to
        // be computed on the 3-D form, which is no view of the result.
        self.epilogue.remove(&res);
        let y = self.unbatched(kernel, out)?;
        self.define(op, y, out.to_vec());
        Ok(())
    }

    /// `x` (static dims `d`, rank `r` ≥ 2) as `[batch, d[r-2], d[r-1]]`, contiguous.
    fn batched(&self, x: Value<'c, 'b>, d: &[DimVal], batch: u64) -> BResult<Value<'c, 'b>> {
        let r = d.len();
        let x = self.contiguous(x, d)?;
        let three = [DimVal::Static(batch), d[r - 2], d[r - 1]];
        match r {
            2 => self
                .e
                .expand(x, &[vec![0, 1], vec![2]], &shape(&three), &[]),
            3 => Ok(x),
            _ => self.e.collapse(
                x,
                &[(0..r - 2).collect(), vec![r - 2], vec![r - 1]],
                self.ty(&three),
            ),
        }
    }

    /// The inverse of [`Lower::batched`]: `y[batch, M, N]` as the dims `out`.
    fn unbatched(&self, y: Value<'c, 'b>, out: &[DimVal]) -> BResult<Value<'c, 'b>> {
        let r = out.len();
        match r {
            2 => self.e.collapse(y, &[vec![0, 1], vec![2]], self.ty(out)),
            3 => Ok(y),
            _ => self.e.expand(
                y,
                &[(0..r - 2).collect(), vec![r - 2], vec![r - 1]],
                &shape(out),
                &[],
            ),
        }
    }

    /// A scheduled dense layer on a packed weight `wp[N/TN, K, TN]` (panels of `TN` columns
    /// of `W^T`, zero-padded to whole panels): y[m, nb, nl] += x[m, k] * wp[nb, k, nl], so a
    /// register tile reads each step's `TN` weights contiguously.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn dense_packed(
        &mut self,
        op: OpId,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        wp: Value<'c, 'b>,
        bias: Option<ValueId>,
        m: u64,
        n: u64,
        k: u64,
    ) -> LResult<()> {
        let (y, view) = self.dense_packed_form(op, x, xd, wp, bias, m, n, k)?;
        self.define_view(op, y, view, None)?;
        Ok(())
    }

    /// The layer of [`Lower::dense_packed`], recorded for the schedule: its result in the
    /// computed form `[M, N/TN, TN]` and how the `[M, N]` result views it.
    #[allow(clippy::too_many_arguments)]
    fn dense_packed_form(
        &mut self,
        op: OpId,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        wp: Value<'c, 'b>,
        bias: Option<ValueId>,
        m: u64,
        n: u64,
        k: u64,
    ) -> LResult<(Value<'c, 'b>, View)> {
        let cx = self.cx;
        let tn = self.tiles.dense.1;
        let npad = n.next_multiple_of(tn);
        let nb = npad / tn;
        let s = DimVal::Static;
        let x = self.barrier(x, xd)?;
        let out3 = vec![xd[0], s(nb), s(tn)];
        let zeros = self.filled(0.0, &out3)?;
        let kernel = self.contraction(
            &[x, wp],
            &[
                map(cx, 4, &[Some(0), Some(3)]),
                map(cx, 4, &[Some(1), Some(3), Some(2)]),
            ],
            zeros,
            &out3,
            1,
        )?;
        let y = match bias {
            Some(b) => {
                let (bv, _) = self.val(b);
                let bp = if npad != n {
                    let padded = self.e.pad(
                        bv,
                        &[0],
                        &[(npad - n) as i64],
                        0.0,
                        tensor_type(cx, &[npad as i64]),
                    )?;
                    self.barrier(padded, &[s(npad)])?
                } else {
                    bv
                };
                let b2 = self
                    .e
                    .expand(bp, &[vec![0, 1]], &[nb as i64, tn as i64], &[])?;
                self.add_bias(kernel, &out3, b2, &[1, 2])?
            }
            None => kernel,
        };
        self.record_layer(op, kernel, y, Layer::Dense { m, n: npad, k })?;
        let view = View::Cols {
            m: xd[0],
            n,
            npad,
            tn,
        };
        Ok((y, view))
    }
}
