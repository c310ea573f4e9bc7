//! `nn.conv2d`: picks the form of each conv. Unit-stride convs with groups 1 and a static
//! batch are scheduled as flat convs (`flat_conv.rs`); strided 1x1 convs become a strided
//! slice and a flat conv; strided convs with larger kernels a flat conv over the input's
//! phases ([`Lower::conv_phases`], the weight rearranged once by `packing::pack_phases`); depthwise convs (any stride, dilation or batch) the region
//! loop nests of `window.rs`, with their bias and activation; everything else (dilated,
//! dynamic batch, grouped) the named linalg convs, unscheduled.

use super::abi::{shape, DimVal};
use super::flat_conv::{FlatConv, FlatSource, Pass};
use super::mlir_ops::{i64_elements, id, tensor_type, BResult};
use super::packing::pack_phases;
use super::state::{LResult, Lower, View};
use super::window::{Reduce, Window};
use crate::ir::{OpId, OpKind, ValueId};
use melior::ir::Value;

impl<'c, 'b> Lower<'c, 'b, '_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv2d(
        &mut self,
        op: OpId,
        operands: &[ValueId],
        strides: [u64; 2],
        pads: [u64; 4],
        dilations: [u64; 2],
        groups: u64,
    ) -> LResult<()> {
        let cx = self.cx;
        let (x, xd) = self.val(operands[0]);
        // First: a packed weight's lowered value is not `[F, C, KH, KW]`.
        if let Some(ph) = self.phases(op) {
            let (xq, xqd, passes) = self.conv_phases(x, &xd, operands[1], &ph)?;
            let bias = operands.get(2).copied();
            return self.conv_flat(op, xq, &xqd, &passes, bias, ph.geom, FlatSource::Flat(xq));
        }
        let (w, wd) = self.val(operands[1]);
        let c = self.need_static(op, &xd, 1, "input channel axis")?;
        let h = self.need_static(op, &xd, 2, "input height")?;
        let wi = self.need_static(op, &xd, 3, "input width")?;
        let (ho, wo) = self.static_output_hw(op)?;
        let f = wd[0].to_i64() as u64;
        let (kh, kw) = (wd[2].to_i64(), wd[3].to_i64());
        // Before the strided case below replaces `x`.
        let unit_pointwise = kh == 1 && kw == 1 && pads == [0; 4] && strides == [1, 1];
        // A strided 1x1 conv without padding (a ResNet projection shortcut) reads every s-th
        // row and column: a strided `tensor.extract_slice` takes those, and what is left is a
        // unit-stride 1x1 conv, which the schedule covers.
        let (x, xd, strides, dilations) = if kh == 1
            && kw == 1
            && pads == [0; 4]
            && groups == 1
            && strides != [1, 1]
            && matches!(xd[0], DimVal::Static(_))
        {
            let mut sd = xd.clone();
            sd[2] = DimVal::Static(ho);
            sd[3] = DimVal::Static(wo);
            let step = [1, 1, strides[0] as i64, strides[1] as i64];
            let xs =
                self.e
                    .extract_slice_strided(x, &[0; 4], &shape(&sd), &step, &[], self.ty(&sd))?;
            // Copied into a contiguous tensor: vectorized reads straight from the strided view
            // crashed the compiled code (a unit-stride load across a non-unit innermost stride).
            let init = self.empty(&sd)?;
            let xc = self
                .e
                .named_linalg("linalg.copy", &[xs], init, self.ty(&sd), &[])?;
            (xc, sd, [1, 1], [1, 1])
        } else {
            (x, xd, strides, dilations)
        };
        // The schedule covers the common case: groups 1, unit strides and
        // dilations (a strided input map is not a projected permutation, so it would not
        // vectorize), static batch.
        if groups == 1
            && strides == [1, 1]
            && dilations == [1, 1]
            && matches!(xd[0], DimVal::Static(_))
        {
            // The sizes after the strided slice above, if any.
            let geom = FlatConv {
                f,
                c,
                h: xd[2].to_i64() as u64,
                w: xd[3].to_i64() as u64,
                kh: kh as u64,
                kw: kw as u64,
                pads,
            };
            // A pointwise conv of a flat conv's result (or of its fused epilogue) reads it in
            // its flat rows.
            let rows = match self.views.get(&operands[0]) {
                Some(&(y, View::Rows(r))) if unit_pointwise && (r.f, r.ho, r.wo) == (c, h, wi) => {
                    Some((y, r))
                }
                _ => None,
            };
            let source = match rows {
                Some((y, r)) => FlatSource::Rows(y, r),
                None => FlatSource::Nchw(operands[0]),
            };
            let pass = [Pass { at: 0, c, w }];
            let bias = operands.get(2).copied();
            return self.conv_flat(op, x, &xd, &pass, bias, geom, source);
        }
        if groups == c && f == c {
            // Depthwise: the filter [C, 1, KH, KW] becomes [C, KH, KW].
            let wc = self.e.collapse(
                w,
                &[vec![0, 1], vec![2], vec![3]],
                tensor_type(cx, &[c as i64, kh, kw]),
            )?;
            let act = self.absorb_activation(op);
            let geom = Window {
                input: [h, wi],
                kernel: [kh as u64, kw as u64],
                strides,
                dilations,
                pads,
                output: [ho, wo],
            };
            let bias = operands.get(2).map(|&b| self.val(b).0);
            let red = Reduce::Conv {
                w: wc,
                bias,
                act: act.as_ref(),
            };
            let y = self.window(x, &xd, red, geom)?;
            let st = DimVal::Static;
            self.define(op, y, vec![xd[0], st(f), st(ho), st(wo)]);
            return Ok(());
        }
        let padded = pads.iter().any(|&p| p != 0);
        let (xp, xpd) = if padded {
            let mut pd = xd.clone();
            pd[2] = DimVal::Static(h + pads[0] + pads[2]);
            pd[3] = DimVal::Static(wi + pads[1] + pads[3]);
            let low = [0, 0, pads[0] as i64, pads[1] as i64];
            (self.zero_padded(x, &xd, &low, &pd)?.0, pd)
        } else {
            (x, xd.clone())
        };
        let out = vec![
            xd[0],
            DimVal::Static(f),
            DimVal::Static(ho),
            DimVal::Static(wo),
        ];
        let attrs = [
            (
                id(cx, "strides"),
                i64_elements(cx, &[strides[0] as i64, strides[1] as i64]),
            ),
            (
                id(cx, "dilations"),
                i64_elements(cx, &[dilations[0] as i64, dilations[1] as i64]),
            ),
        ];
        let kernel = if groups == 1 {
            let zeros = self.filled(0.0, &out)?;
            self.e.named_linalg(
                "linalg.conv_2d_nchw_fchw",
                &[xp, w],
                zeros,
                self.ty(&out),
                &attrs,
            )?
        } else {
            // Grouped: split channels into [G, C/G] and filters into [G, F/G].
            let g = groups as i64;
            let cg = c as i64 / g;
            let fg = f as i64 / g;
            let n = xd[0];
            let dn = self.dyn_sizes(&[n])?;
            let xs = [n.to_i64(), g, cg, xpd[2].to_i64(), xpd[3].to_i64()];
            let xg = self
                .e
                .expand(xp, &[vec![0], vec![1, 2], vec![3], vec![4]], &xs, &dn)?;
            let wg = self.e.expand(
                w,
                &[vec![0, 1], vec![2], vec![3], vec![4]],
                &[g, fg, cg, kh, kw],
                &[],
            )?;
            let od = vec![
                n,
                DimVal::Static(g as u64),
                DimVal::Static(fg as u64),
                DimVal::Static(ho),
                DimVal::Static(wo),
            ];
            let zeros = self.filled(0.0, &od)?;
            let yg = self.e.named_linalg(
                "linalg.conv_2d_ngchw_gfchw",
                &[xg, wg],
                zeros,
                self.ty(&od),
                &attrs,
            )?;
            self.e
                .collapse(yg, &[vec![0], vec![1, 2], vec![3], vec![4]], self.ty(&out))?
        };
        let y = match operands.get(2) {
            Some(&b) => {
                let (bv, _) = self.val(b);
                self.add_bias(kernel, &out, bv, &[1])?
            }
            None => kernel,
        };
        self.define(op, y, out);
        Ok(())
    }

    /// The phase form of conv `op` ([`Lower::conv_phases`]), if it takes it: groups 1, strides
    /// above 1, unit dilations, a kernel larger than 1x1, static sizes (from the NNIR types, so
    /// that `boundary.rs` packs the weight for the same convs), and padding that leaves an
    /// input row and column to read (the named conv handles the rest).
    pub(super) fn phases(&self, op: OpId) -> Option<Phases> {
        let OpKind::Conv2d {
            strides,
            pads,
            dilations: [1, 1],
            groups: 1,
        } = *self.f.kind(op)
        else {
            return None;
        };
        let operands = self.f.op(op).operands();
        let dims = |v: ValueId| -> Option<Vec<u64>> {
            let t = self.f.ty(v);
            (0..t.rank()).map(|i| t.dim(i).as_static()).collect()
        };
        let (xd, wd) = (dims(operands[0])?, dims(operands[1])?);
        let yd = dims(self.f.op(op).result()?)?;
        let [_, c, h, wi] = <[u64; 4]>::try_from(xd).ok()?;
        let [f, _, kh, kw] = <[u64; 4]>::try_from(wd).ok()?;
        let [_, _, ho, wo] = <[u64; 4]>::try_from(yd).ok()?;
        if strides == [1, 1] || (kh, kw) == (1, 1) {
            return None;
        }
        let [sh, sw] = strides;
        let (kqh, kqw) = (kh.div_ceil(sh), kw.div_ceil(sw));
        let geom = FlatConv {
            f,
            c: sh * sw * c,
            h: ho + kqh - 1,
            w: wo + kqw - 1,
            kh: kqh,
            kw: kqw,
            pads: [0; 4],
        };
        let rows = geom.rows(geom.padded_len(self.tiles.lanes), geom.w);
        let kept = [
            (sh * rows).checked_sub(pads[0])?.min(h),
            (sw * geom.w).checked_sub(pads[1])?.min(wi),
        ];
        (kept[0] > 0 && kept[1] > 0).then_some(Phases {
            strides,
            kernel: [kh, kw],
            pads,
            c,
            input: [h, wi],
            kept,
            rows,
            geom,
        })
    }

    /// A stride-`s` conv as a unit-stride one over the input's `sh * sw` phases: with `kh = s *
    /// qh + a` (and likewise for the columns), `xpad[c, s * oh + kh, ...]` is phase `(a, b)`'s
    /// `xq[(a * sw + b) * C + c, oh + qh, ...]`, so `y` is the sum over the phases of a
    /// unit-stride conv of phase `(a, b)` with the taps `w[f, c, s * qh + a, s * qw + b]` it has
    /// (`ceil((kh - a) / sh) x ceil((kw - b) / sw)`; a 3x3 stride-2 conv's phases have 2x2, 2x1,
    /// 1x2 and 1x1): one [`Pass`] of the flat conv each, so no zero tap is multiplied (one conv
    /// over all phases with the largest phase kernel cost `16 / 9` of the MACs). The flat
    /// conv's schedule covers every pass, where the named strided conv would run unscheduled.
    /// The input is zero-padded to the rows and columns the phases need
    /// ([`Lower::zero_padded`]) and
    /// permuted into the flat conv's padded input `[N, sh * sw * C, rows * wq]` by an
    /// element-wise copy (the loop fallback, split over threads). The weight `wv` is rearranged
    /// once into the passes' weights one after another (`packing::pack_phases`): passed packed
    /// ([`super::Packing::Phases`]) or, a constant, packed here, and each pass reads its part;
    /// a computed weight's passes are strided slices of it, copied on each call.
    fn conv_phases(
        &self,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        wv: ValueId,
        ph: &Phases,
    ) -> BResult<(Value<'c, 'b>, Vec<DimVal>, Vec<Pass<'c, 'b>>)> {
        let [sh, sw] = ph.strides;
        let (g, rows, c) = (&ph.geom, ph.rows, ph.c);
        let wq = g.w;
        let [kept_h, kept_w] = ph.kept;
        let n = xd[0];
        let st = DimVal::Static;
        let kd = [n, xd[1], st(kept_h), st(kept_w)];
        let x = if ph.kept == ph.input {
            x
        } else {
            self.e
                .extract_slice(x, &[0; 4], &shape(&kd), &[], self.ty(&kd))?
        };
        let pads = ph.pads;
        let pd = [n, xd[1], st(sh * rows), st(sw * wq)];
        let low = [0, 0, pads[0] as i64, pads[1] as i64];
        let (xp, _) = self.zero_padded(x, &kd, &low, &pd)?;
        // [N, C, rows * sh, wq * sw] -> [N, sh * sw * C, rows * wq], through the permuted
        // [N, sh, sw, C, rows, wq]: input dim i of the expanded tensor is loop PERM[i].
        const PERM: [Option<usize>; 6] = [Some(0), Some(3), Some(4), Some(1), Some(5), Some(2)];
        let nn = n.to_i64() as u64;
        let six = [nn, c, rows, sh, wq, sw].map(|v| v as i64);
        let x6 = self
            .e
            .expand(xp, &[vec![0], vec![1], vec![2, 3], vec![4, 5]], &six, &[])?;
        let out = [nn, sh, sw, c, rows, wq].map(st);
        let p = self.elementwise(&[(x6, PERM.to_vec())], &out, |_, a| Ok(a[0]))?;
        self.spread(p, &out)?;
        let xqd = vec![n, st(g.c), st(g.h), st(wq)];
        let flat = [n, st(g.c), st(rows * wq)];
        let groups = [vec![0], vec![1, 2, 3], vec![4, 5]];
        let xf = self.e.collapse(p, &groups, self.ty(&flat))?;
        let (w, _) = self.val(wv);
        let ([kh, kw], f) = (ph.kernel, g.f);
        let whole = if self.packed.contains(&wv) {
            Some(w)
        } else if let Some(OpKind::Constant(t)) = self.f.producer_kind(wv) {
            let p = pack_phases(t, ph.strides);
            let bytes = p.raw_bytes().expect("invariant: packed is contiguous");
            Some(self.e.dense_f32(&[(f * c * kh * kw) as i64], bytes)?)
        } else {
            None
        };
        let mut passes = Vec::new();
        let mut from = 0;
        for (a, b) in (0..sh).flat_map(|a| (0..sw).map(move |b| (a, b))) {
            let taps = [(kh - a.min(kh)).div_ceil(sh), (kw - b.min(kw)).div_ceil(sw)];
            if taps.contains(&0) {
                continue;
            }
            let wd = [f, c, taps[0], taps[1]].map(st);
            let size = f * c * taps[0] * taps[1];
            let w = match whole {
                Some(whole) => {
                    let part = [st(size)];
                    let part = self.e.extract_slice(
                        whole,
                        &[from as i64],
                        &[size as i64],
                        &[],
                        self.ty(&part),
                    )?;
                    self.e.expand(part, &[vec![0, 1, 2, 3]], &shape(&wd), &[])?
                }
                None => {
                    let at = [0, 0, a as i64, b as i64];
                    let step = [1, 1, sh as i64, sw as i64];
                    let s = self.e.extract_slice_strided(
                        w,
                        &at,
                        &shape(&wd),
                        &step,
                        &[],
                        self.ty(&wd),
                    )?;
                    let init = self.empty(&wd)?;
                    let copy = self
                        .e
                        .named_linalg("linalg.copy", &[s], init, self.ty(&wd), &[])?;
                    // Not pulled into the pass's tiles, where the strided read would be
                    // vectorized as a unit-stride one.
                    self.barrier(copy, &wd)?
                }
            };
            from += size;
            let at = (a * sw + b) * c;
            passes.push(Pass { at, c, w });
        }
        Ok((xf, xqd, passes))
    }
}

/// The geometry of a strided conv computed over its input's phases ([`Lower::phases`]).
pub(super) struct Phases {
    strides: [u64; 2],
    kernel: [u64; 2],
    pads: [u64; 4],
    /// The input channels.
    c: u64,
    /// The input's rows and columns, and those of them the phases read.
    input: [u64; 2],
    kept: [u64; 2],
    /// The rows of each phase.
    rows: u64,
    /// The unit-stride conv over the phases.
    geom: FlatConv,
}
