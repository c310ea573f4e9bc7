//! Normalizations: `nn.batch_norm`, `nn.layer_norm`, `nn.rms_norm` and `nn.softmax`, each in the
//! interpreter's order of operations (but for the order of the adds within a sum) so that
//! results agree to rounding.

use super::approx;
use super::state::{LResult, Lower};
use crate::ir::{OpId, ValueId};

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// `nn.layer_norm` (`center`) and `nn.rms_norm` over the trailing axes `axis..rank`.
    pub(super) fn trailing_norm(
        &mut self,
        op: OpId,
        operands: &[ValueId],
        axis: i64,
        eps: f32,
        center: bool,
    ) -> LResult<()> {
        let (x, d) = self.val(operands[0]);
        let r = d.len();
        let a = Self::norm_axis(op, axis, r)?;
        let mut inner = 1u64;
        for i in a..r {
            inner *= self.need_static(op, &d, i, "normalized axis")?;
        }
        let id_map: Vec<Option<usize>> = (0..r).map(Some).collect();
        let outer_map: Vec<Option<usize>> = (0..a).map(Some).collect();
        let tail_map: Vec<Option<usize>> = (a..r).map(Some).collect();
        let reduced: Vec<bool> = (0..r).map(|i| i >= a).collect();
        let n = inner as f32;
        // Layer norm: mu = sum(x) / n; var = sum((x - mu)^2) / n; y = (x - mu) * (1 /
        // sqrt(var + eps)) * scale + bias, the interpreter's two-pass formula. RMSNorm: the
        // same without mu (var is the mean square) and without bias. The sums are `reassoc`:
        // LLVM vectorizes a reduction only when it may reorder the adds (each lane sums a
        // share).
        let mut centred = vec![(x, id_map.clone())];
        let mut ins = vec![(x, id_map.clone())];
        if center {
            let (s, outer) = self.reduce(&[(x, id_map.clone())], &d, &reduced, 0.0, |e, v| {
                e.binf_fast("arith.addf", v[0], v[1], "reassoc")
            })?;
            let mu = self.elementwise(&[(s, outer_map.clone())], &outer, move |e, v| {
                let c = e.f32_const(n)?;
                e.binf("arith.divf", v[0], c)
            })?;
            centred.push((mu, outer_map.clone()));
            ins.push((mu, outer_map.clone()));
        }
        let (ss, outer) = self.reduce(&centred, &d, &reduced, 0.0, move |e, v| {
            let dlt = if center {
                e.binf("arith.subf", v[0], v[1])?
            } else {
                v[0]
            };
            let sq = e.binf("arith.mulf", dlt, dlt)?;
            e.binf_fast("arith.addf", v[v.len() - 1], sq, "reassoc")
        })?;
        let rstd = self.elementwise(&[(ss, outer_map.clone())], &outer, move |e, v| {
            let c = e.f32_const(n)?;
            let var = e.binf("arith.divf", v[0], c)?;
            let ce = e.f32_const(eps)?;
            let ve = e.binf("arith.addf", var, ce)?;
            let sq = e.unf("math.sqrt", ve)?;
            let one = e.f32_const(1.0)?;
            e.binf("arith.divf", one, sq)
        })?;
        ins.push((rstd, outer_map));
        let stats = ins.len();
        for &p in &operands[1..] {
            let (pv, _) = self.val(p);
            ins.push((pv, tail_map.clone()));
        }
        let params = operands.len() - 1;
        let y = self.elementwise(&ins, &d, move |e, v| {
            let dlt = if center {
                e.binf("arith.subf", v[0], v[1])?
            } else {
                v[0]
            };
            let mut y = e.binf("arith.mulf", dlt, v[stats - 1])?;
            if params > 0 {
                y = e.binf("arith.mulf", y, v[stats])?;
            }
            if params > 1 {
                y = e.binf("arith.addf", y, v[stats + 1])?;
            }
            Ok(y)
        })?;
        self.define(op, y, d);
        Ok(())
    }
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// Inference batch norm over axis 1, one element-wise `linalg.generic`.
    pub(super) fn batch_norm(&mut self, op: OpId, operands: &[ValueId], eps: f32) -> LResult<()> {
        let (x, mut d) = self.val(operands[0]);
        let mut ins = vec![(x, (0..d.len()).map(Some).collect::<Vec<_>>())];
        for &p in &operands[1..] {
            let (pv, pd) = self.val(p);
            d[1] = self.unify(d[1], pd[0]);
            ins.push((pv, vec![Some(1)]));
        }
        let y = self.elementwise(&ins, &d, move |e, a| {
            // (x - mean) / sqrt(var + eps) * scale + bias, the interpreter's order.
            let (x, scale, bias, mean, var) = (a[0], a[1], a[2], a[3], a[4]);
            let c = e.f32_const(eps)?;
            let ve = e.binf("arith.addf", var, c)?;
            let s = e.unf("math.sqrt", ve)?;
            let xm = e.binf("arith.subf", x, mean)?;
            let q = e.binf("arith.divf", xm, s)?;
            let m = e.binf("arith.mulf", q, scale)?;
            e.binf("arith.addf", m, bias)
        })?;
        self.define(op, y, d);
        Ok(())
    }

    pub(super) fn softmax(&mut self, op: OpId, v: ValueId, axis: i64) -> LResult<()> {
        let (x, d) = self.val(v);
        let r = d.len();
        let ax = Self::norm_axis(op, axis, r)?;
        let id_map: Vec<Option<usize>> = (0..r).map(Some).collect();
        let red_map: Vec<Option<usize>> = (0..r).filter(|&i| i != ax).map(Some).collect();
        let reduced: Vec<bool> = (0..r).map(|i| i == ax).collect();
        // max, exp(x - max), sum, divide: the interpreter's steps. `maxnumf` ignores
        // NaN like the interpreter's `f32::max` fold. Both reductions are `reassoc`, which
        // lets LLVM's loop vectorizer split them into lanes (the max is exact in any order;
        // the sum's rounding moves within the differential tests' bound): [4, 128, 128] in
        // 0.114 → 0.056 ms.
        let (m, _) = self.reduce(
            &[(x, id_map.clone())],
            &d,
            &reduced,
            f32::NEG_INFINITY,
            |e, a| e.binf_fast("arith.maxnumf", a[0], a[1], "reassoc"),
        )?;
        let ex = self.elementwise(&[(x, id_map.clone()), (m, red_map.clone())], &d, |e, a| {
            let s = e.binf("arith.subf", a[0], a[1])?;
            approx::exp(e, s)
        })?;
        let (s, _) = self.reduce(&[(ex, id_map.clone())], &d, &reduced, 0.0, |e, a| {
            e.binf_fast("arith.addf", a[0], a[1], "reassoc")
        })?;
        let y = self.elementwise(&[(ex, id_map), (s, red_map)], &d, |e, a| {
            e.binf("arith.divf", a[0], a[1])
        })?;
        self.define(op, y, d);
        Ok(())
    }
}
