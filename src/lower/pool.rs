//! Pooling and means: `nn.max_pool2d`, `nn.avg_pool2d` (named linalg poolings, the average
//! divided by the interpreter's window counts), `nn.global_avg_pool` and `nn.mean` (sum
//! reductions divided by the count).

use super::abi::{shape, DimVal};
use super::mlir_ops::{i64_elements, id};
use super::state::{LResult, Lower};
use crate::ir::{self, OpId, ValueId};

/// The interpreter's average-pool divisor for one output position along one axis (see
/// `interp::kernels::PoolGeom::window`): `(full, inside)` window lengths.
fn pool_window(len: u64, k: u64, s: u64, p0: u64, p1: u64, o: u64) -> (i64, i64) {
    let (len, p0, p1) = (len as i64, p0 as i64, p1 as i64);
    let start = (o * s) as i64 - p0;
    let end = (start + k as i64).min(len + p1);
    let cs = start.max(0);
    let ce = end.min(len).max(cs);
    (end - start, ce - cs)
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// Max pooling (`avg = None`) or average pooling (`avg = Some(count_include_pad)`).
    pub(super) fn pool(
        &mut self,
        op: OpId,
        v: ValueId,
        p: &ir::Pool2d,
        avg: Option<bool>,
    ) -> LResult<()> {
        let cx = self.cx;
        let (x, xd) = self.val(v);
        self.need_static(op, &xd, 1, "channel axis")?;
        let h = self.need_static(op, &xd, 2, "input height")?;
        let wi = self.need_static(op, &xd, 3, "input width")?;
        let (ho, wo) = self.static_output_hw(op)?;
        let [kh, kw] = p.kernel;
        let [sh, sw] = p.strides;
        let [pt, pl, pb, pr] = p.pads;
        // Pad far enough for the last (ceil-mode) window; padding cells never win a max
        // (-inf) and add nothing to a sum (0); the divisor is computed separately.
        let hb = pb.max(((ho - 1) * sh + kh).saturating_sub(h + pt));
        let wb = pr.max(((wo - 1) * sw + kw).saturating_sub(wi + pl));
        let pad_value = if avg.is_some() {
            0.0
        } else {
            f32::NEG_INFINITY
        };
        let mut pd = xd.clone();
        pd[2] = DimVal::Static(h + pt + hb);
        pd[3] = DimVal::Static(wi + pl + wb);
        let xp = if pt + pl + hb + wb > 0 {
            self.e.pad(
                x,
                &[0, 0, pt as i64, pl as i64],
                &[0, 0, hb as i64, wb as i64],
                pad_value,
                self.ty(&pd),
            )?
        } else {
            x
        };
        let out = vec![xd[0], xd[1], DimVal::Static(ho), DimVal::Static(wo)];
        let window = self.e.empty(&[kh as i64, kw as i64], &[])?;
        let attrs = [
            (id(cx, "strides"), i64_elements(cx, &[sh as i64, sw as i64])),
            (id(cx, "dilations"), i64_elements(cx, &[1, 1])),
        ];
        let init = self.filled(pad_value, &out)?;
        let name = if avg.is_some() {
            "linalg.pooling_nchw_sum"
        } else {
            "linalg.pooling_nchw_max"
        };
        let y = self
            .e
            .named_linalg(name, &[xp, window], init, self.ty(&out), &attrs)?;
        let y = match avg {
            None => y,
            Some(include_pad) => {
                let mut counts = Vec::with_capacity((ho * wo) as usize);
                for oy in 0..ho {
                    let (fy, iy) = pool_window(h, kh, sh, pt, pb, oy);
                    for ox in 0..wo {
                        let (fx, ix) = pool_window(wi, kw, sw, pl, pr, ox);
                        let c = if include_pad { fy * fx } else { iy * ix };
                        // A window with no cell (impossible for verified pools) divides 0 by 1.
                        counts.push(c.max(1) as f32);
                    }
                }
                let bytes: Vec<u8> = counts.iter().flat_map(|v| v.to_le_bytes()).collect();
                let table = self.e.dense_f32(&[ho as i64, wo as i64], &bytes)?;
                self.elementwise(
                    &[
                        (y, (0..4).map(Some).collect()),
                        (table, vec![Some(2), Some(3)]),
                    ],
                    &out,
                    |e, a| e.binf("arith.divf", a[0], a[1]),
                )?
            }
        };
        self.define(op, y, out);
        Ok(())
    }

    /// `nn.global_avg_pool`: the mean over every axis after the channels, kept as size 1.
    pub(super) fn global_avg_pool(&mut self, op: OpId, v: ValueId) -> LResult<()> {
        let (_, d) = self.val(v);
        let axes: Vec<usize> = (2..d.len()).collect();
        self.reduce_mean(op, v, &axes, true)
    }

    /// `nn.mean` over `axes` (negative ones count from the end).
    pub(super) fn mean(
        &mut self,
        op: OpId,
        v: ValueId,
        axes: &[i64],
        keepdims: bool,
    ) -> LResult<()> {
        let (_, d) = self.val(v);
        let axes = axes
            .iter()
            .map(|&a| Self::norm_axis(op, a, d.len()))
            .collect::<LResult<Vec<_>>>()?;
        self.reduce_mean(op, v, &axes, keepdims)
    }

    /// The mean over `axes`: a sum reduction (`fastmath<reassoc>`, so LLVM vectorizes the
    /// loop), a division by the static count, and the reduced axes put back as size 1 when
    /// `keepdims`.
    fn reduce_mean(&mut self, op: OpId, v: ValueId, axes: &[usize], keepdims: bool) -> LResult<()> {
        let (x, d) = self.val(v);
        let r = d.len();
        let mut count = 1u64;
        for &a in axes {
            count *= self.need_static(op, &d, a, "reduced axis")?;
        }
        let reduced: Vec<bool> = (0..r).map(|i| axes.contains(&i)).collect();
        let (s, kept) = self.reduce(
            &[(x, (0..r).map(Some).collect())],
            &d,
            &reduced,
            0.0,
            |e, a| e.binf_fast("arith.addf", a[0], a[1], "reassoc"),
        )?;
        let k = kept.len();
        let cnt = count as f32;
        let m = self.elementwise(&[(s, (0..k).map(Some).collect())], &kept, move |e, a| {
            let c = e.f32_const(cnt)?;
            e.binf("arith.divf", a[0], c)
        })?;
        if !keepdims {
            self.define(op, m, kept);
            return Ok(());
        }
        // Reinsert the reduced axes as size 1: each joins the group of the nearest kept axis
        // before it (leading ones join the first kept axis).
        let full: Vec<DimVal> = (0..r)
            .map(|i| if reduced[i] { DimVal::Static(1) } else { d[i] })
            .collect();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for i in 0..r {
            if !reduced[i] || groups.is_empty() {
                if !reduced[i] && groups.len() == 1 && groups[0].iter().all(|&j| reduced[j]) {
                    groups[0].push(i);
                } else {
                    groups.push(vec![i]);
                }
            } else {
                groups.last_mut().expect("invariant: non-empty").push(i);
            }
        }
        if k == 0 {
            groups.clear();
        }
        let dy = self.dyn_sizes(&full)?;
        let y = self.e.expand(m, &groups, &shape(&full), &dy)?;
        self.define(op, y, full);
        Ok(())
    }
}
