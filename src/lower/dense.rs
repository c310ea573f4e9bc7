//! Dense layers: `nn.linear` (scheduled on a packed weight when its sizes are static and its
//! input 2-D; `linalg.matmul` with a transposed B or a contraction otherwise) and `nn.matmul`.
//!
//! The packed layout ([`pack_dense`]) is `W[N, K]` as panels `[ceil(N / TN), K, TN]` of `W^T`,
//! so that a register tile reads each reduction step's `TN` weights from one contiguous run.

use super::abi::DimVal;
use super::mlir_ops::{affine_map_attr, dense_i64, id, map, tensor_type, BResult};
use super::schedule::Layer;
use super::state::{LResult, Lower, View};
use crate::ir::{Dim, ElemType, OpId, OpKind, Tensor, ValueId};
use melior::ir::attribute::ArrayAttribute;
use melior::ir::{Attribute, Value};

/// A dense layer's weight `w[N, K]` as panels of `tn` (the target's `schedule::dense_tile`'s
/// `TN`) columns of `W^T`: `[ceil(N / TN), K, TN]`, zero past row `N`. A register tile of the packed kernel then
/// reads each reduction step's `TN` weights from one contiguous run, where rows of an unpacked
/// `W^T` are `4 N` bytes apart, a stride that defeats the caches (`docs/performance.md`).
pub fn pack_dense(w: &Tensor, tn: u64) -> Tensor {
    let tn = tn as usize;
    let (n, k) = (w.shape()[0] as usize, w.shape()[1] as usize);
    let nb = n.div_ceil(tn);
    let src = w.to_f32_vec();
    let mut out = vec![0f32; nb * k * tn];
    for (r, row) in src.chunks_exact(k.max(1)).enumerate().take(n) {
        let (b, l) = (r / tn, r % tn);
        for (c, &v) in row.iter().enumerate() {
            out[(b * k + c) * tn + l] = v;
        }
    }
    Tensor::from_f32(ElemType::F32, vec![nb as u64, k as u64, tn as u64], &out)
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    pub(super) fn linear(&mut self, op: OpId, operands: &[ValueId]) -> LResult<()> {
        let cx = self.cx;
        let (x, xd) = self.val(operands[0]);
        let (w, wd) = self.val(operands[1]);
        if let Some((m, n, k)) = self.dense_shape(op) {
            let wp = self.packed_weight(operands[1], w, n, k)?;
            return self.dense_packed(op, x, &xd, wp, operands.get(2).copied(), m, n, k);
        }
        let r = xd.len();
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

    /// `(M, N, K)` of a linear layer the schedule covers: a 2-D input, static sizes (read
    /// from the IR's types: a weight is lowered, packed or not, before its layer).
    pub(super) fn dense_shape(&self, op: OpId) -> Option<(u64, u64, u64)> {
        let ops = self.f.op(op).operands();
        let (x, w) = (self.f.ty(ops[0]), self.f.ty(ops[1]));
        if x.rank() != 2 {
            return None;
        }
        match (x.dim(0), w.dim(0), w.dim(1)) {
            (Dim::Static(m), Dim::Static(n), Dim::Static(k)) => Some((m, n, k)),
            _ => None,
        }
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
        let zeros = self.filled(0.0, &out)?;
        let y = if ra == 2 && rb == 2 {
            self.e
                .named_linalg("linalg.matmul", &[a, b], zeros, self.ty(&out), &[])?
        } else {
            // Loops (batch..., m, n, k); batch axes broadcast like nn.add.
            let bmap = |d: &[DimVal]| -> Vec<Option<usize>> {
                let batch = &d[..d.len() - 2];
                Self::broadcast_map(batch, &out[..nb])
            };
            let mut am = bmap(&ad);
            am.extend([Some(nb), Some(nb + 2)]);
            let mut bm = bmap(&bd);
            bm.extend([Some(nb + 2), Some(nb + 1)]);
            self.contraction(
                &[a, b],
                &[map(cx, r + 1, &am), map(cx, r + 1, &bm)],
                zeros,
                &out,
                1,
            )?
        };
        self.define(op, y, out);
        Ok(())
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
        self.define_view(
            op,
            y,
            View::Cols {
                m: xd[0],
                n,
                npad,
                tn,
            },
            None,
        )?;
        Ok(())
    }
}
