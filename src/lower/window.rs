//! Depthwise convs (groups = C = F) as one loop nest per output region that computes each
//! output once: `y = act(Σ x·w + b)`, its taps unrolled in the loop body, the output column
//! innermost.
//!
//! * **Taps as operands.** The `linalg.generic` runs `n, c, oh, ow`, all parallel; every tap
//!   `(kh, kw)` is an operand of its own, a slice of the input starting at `(kh·dh, kw·dw)`
//!   read at `(oh·sh, ow·sw)`, and
//!   the filter value `w[c, kh, kw]` is an operand with a constant map. The body is the
//!   `kh·kw` multiply-adds (contractible into FMAs), the bias and the fused activation;
//!   `convert-linalg-to-loops` keeps the loop order, so LLVM's loop vectorizer gets the output
//!   column loop, where the filter values and the bias are invariant, and vectorizes it at the
//!   target's width (a strided read becomes interleaved loads). The output is written once:
//!   no zero fill, no bias pass, no activation pass. Taps are summed in the interpreter's order
//!   (`kh`, then `kw`, the bias last), so only FMA contraction changes the rounding.
//! * **No padded copy of the input.** The outputs whose window lies inside the input (the
//!   interior) read the input in place, through a slice; the border strips around it (rows
//!   above and below, columns left and right) each read a zero-padded copy of the few input
//!   rows or columns they need. With no interior (a plane smaller than the window), one
//!   region reads the padded input.
//! * **Threads.** Each region is split over threads like an element-wise op (`spread`: by
//!   channels at batch 1).
//!
//! Pools keep the named poolings (`pool.rs`): as a window with the taps as loops (`n, c, oh,
//! kh, kw, ow`) a 3×3 stride-2 max or average pool ran 1.4–2x slower than the named op's
//! `n, c, oh, ow, kh, kw` loops (docs/performance.md, "Kernels").

use super::abi::{shape, DimVal};
use super::elementwise::activation;
use super::mlir_ops::{BResult, Iter};
use super::state::Lower;
use crate::ir::OpKind;
use melior::ir::{AffineExpr, AffineMap, Value};
use std::ops::Range;

/// The geometry of a depthwise conv, per axis (height, width); pads are (top, left, bottom,
/// right) as in `nn.conv2d`.
#[derive(Clone, Copy)]
pub(super) struct Depthwise {
    pub input: [u64; 2],
    pub kernel: [u64; 2],
    pub strides: [u64; 2],
    pub dilations: [u64; 2],
    pub pads: [u64; 4],
    pub output: [u64; 2],
}

impl Depthwise {
    /// The outputs along axis `a` (0 rows, 1 columns) in segments, each with the kernel
    /// offsets whose reads fall inside the input for all of its outputs: every border output
    /// alone (its window reaches into the padding), the interior, where all offsets do, as one.
    fn segments(&self, a: usize) -> Vec<(Range<u64>, Vec<u64>)> {
        let (p, s, d) = (self.pads[a], self.strides[a], self.dilations[a]);
        let (n, o, k) = (self.input[a], self.output[a], self.kernel[a]);
        let inside = |o: u64, t: u64| (p..p + n).contains(&(o * s + t * d));
        let whole = |o: u64| (0..k).all(|t| inside(o, t));
        let mut segments: Vec<(Range<u64>, Vec<u64>)> = Vec::new();
        for i in 0..o {
            match segments.last_mut() {
                Some((r, _)) if whole(i) && r.end == i && whole(r.start) => r.end = i + 1,
                _ => segments.push((i..i + 1, (0..k).filter(|&t| inside(i, t)).collect())),
            }
        }
        segments
    }
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// `act(Σ_{kh,kw} x[n, c, oh·sh + kh·dh − pt, ow·sw + kw·dw − pl] · w[c, kh, kw] + b[c])`
    /// (`x` unpadded `[N, C, H, W]`, zero outside; `w` `[C, KH, KW]`), region by region into
    /// one `[N, C, HO, WO]` tensor.
    pub(super) fn depthwise(
        &self,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        w: Value<'c, 'b>,
        bias: Option<Value<'c, 'b>>,
        act: Option<&OpKind>,
        g: Depthwise,
    ) -> BResult<Value<'c, 'b>> {
        let st = DimVal::Static;
        let out = [xd[0], xd[1], st(g.output[0]), st(g.output[1])];
        let (rows, cols) = (g.segments(0), g.segments(1));
        let whole = rows.len() == 1 && cols.len() == 1;
        let mut y = self.empty(&out)?;
        for (r, rk) in &rows {
            for (c, ck) in &cols {
                let rd = [xd[0], xd[1], st(r.end - r.start), st(c.end - c.start)];
                let dn = self.dyn_sizes(&rd)?;
                let offsets = [0, 0, r.start as i64, c.start as i64];
                let dest = if whole {
                    y
                } else {
                    self.e
                        .extract_slice(y, &offsets, &shape(&rd), &dn, self.ty(&rd))?
                };
                let taps: Vec<[u64; 2]> = rk
                    .iter()
                    .flat_map(|&a| ck.iter().map(move |&b| [a, b]))
                    .collect();
                let origin = [r.start, c.start];
                let v = self.depthwise_region(x, w, bias, act, dest, &rd, &g, origin, &taps)?;
                self.spread(v, &rd)?;
                y = if whole {
                    v
                } else {
                    self.e
                        .insert_slice(v, y, &offsets, &shape(&rd), &dn, self.ty(&out))?
                };
            }
        }
        Ok(y)
    }

    /// One region's loop nest over `dest` (`dims`: `[N, C, rows, cols]` outputs from
    /// `origin`), summing the kernel offsets `taps` (those that read inside `x`).
    #[allow(clippy::too_many_arguments)]
    fn depthwise_region(
        &self,
        x: Value<'c, 'b>,
        w: Value<'c, 'b>,
        bias: Option<Value<'c, 'b>>,
        act: Option<&OpKind>,
        dest: Value<'c, 'b>,
        dims: &[DimVal],
        g: &Depthwise,
        origin: [u64; 2],
        taps: &[[u64; 2]],
    ) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        let st = DimVal::Static;
        let d = |i| AffineExpr::dim(cx, i);
        let k = |v: u64| AffineExpr::constant(cx, v as i64);
        let [sh, sw] = g.strides;
        let mut ins = Vec::new();
        let mut maps = Vec::new();
        // Each tap reads its own slice of `x` (a view): with the tap's offset in the map
        // instead, the unit-stride map of tap (0, 0) would be a plain loop dim, from whose
        // operand, larger than the output, linalg infers the loop's range.
        let reach = |a: usize| st((dims[2 + a].to_i64() as u64 - 1) * g.strides[a] + 1);
        let td = [dims[0], dims[1], reach(0), reach(1)];
        let dn = self.dyn_sizes(&td)?;
        let tap_map = AffineMap::new(cx, 4, 0, &[d(0), d(1), d(2) * k(sh), d(3) * k(sw)]);
        for tap in taps {
            let at =
                |a: usize| (origin[a] * g.strides[a] + tap[a] * g.dilations[a] - g.pads[a]) as i64;
            let offsets = [0, 0, at(0), at(1)];
            ins.push(
                self.e
                    .extract_slice(x, &offsets, &shape(&td), &dn, self.ty(&td))?,
            );
            maps.push(tap_map);
        }
        for &[a, b] in taps {
            ins.push(w);
            maps.push(AffineMap::new(cx, 4, 0, &[d(1), k(a), k(b)]));
        }
        if let Some(b) = bias {
            ins.push(b);
            maps.push(AffineMap::new(cx, 4, 0, &[d(1)]));
        }
        let out_map = AffineMap::new(cx, 4, 0, &[d(0), d(1), d(2), d(3)]);
        let t = taps.len();
        let has_bias = bias.is_some();
        self.e.generic(
            &ins,
            &maps,
            dest,
            out_map,
            &[Iter::Parallel; 4],
            self.ty(dims),
            |e, v| {
                let mut acc = None;
                for i in 0..t {
                    let p = e.binf_contract("arith.mulf", v[i], v[t + i])?;
                    acc = Some(match acc {
                        Some(a) => e.binf_contract("arith.addf", a, p)?,
                        None => p,
                    });
                }
                let mut acc = match acc {
                    Some(a) => a,
                    None => e.f32_const(0.0)?,
                };
                if has_bias {
                    acc = e.binf("arith.addf", acc, v[2 * t])?;
                }
                match act {
                    Some(kind) => activation(e, kind, acc),
                    None => Ok(acc),
                }
            },
        )
    }
}
