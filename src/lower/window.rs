//! Sliding windows, one value per channel: depthwise convs (groups = C = F) and max and average
//! pools, as one loop nest per output region that computes each output once, its taps
//! unrolled in the loop body and the output column innermost.
//!
//! * **Taps as operands.** The `linalg.generic` runs `n, c, oh, ow`, all parallel; every tap
//!   `(kh, kw)` is an operand of its own, a slice of the input starting at `(kh·dh, kw·dw)`
//!   read at `(oh·sh, ow·sw)` (for a conv, beside the filter value `w[c, kh, kw]` through a
//!   constant map). The body combines the taps (contractible multiply-adds, a max, or a sum
//!   and its divisor), then a conv's bias and fused activation; `convert-linalg-to-loops`
//!   keeps the loop order, so LLVM's loop vectorizer gets the output column loop, where the
//!   filter values and the bias are invariant, and vectorizes it at the target's width (a
//!   strided read becomes interleaved loads). The output is written once: no initial fill, no
//!   bias, activation or division pass. Taps are combined in the interpreter's order (`kh`,
//!   then `kw`; a conv's bias last), so only FMA contraction changes a conv's rounding.
//! * **No padded copy of the input.** Along each axis, every output whose window reaches into
//!   the padding (or a ceil-mode pool's overhang) is a segment of its own and the interior one
//!   segment; a region (a row segment by a column segment) reads only the taps inside the
//!   input for all of its outputs, and a pool's divisor is one constant per region.
//! * **Threads.** The interior region (or the whole window when all of its taps are inside)
//!   is split over threads like an element-wise op (`spread`: by channels at batch 1); the
//!   border regions, a row or a column per channel, stay on one thread.
//!
//! The named ops this replaces looped `n, oh, ow, c, kh, kw` (depthwise: every step jumped
//! between channel planes, the 3-tap innermost loop stayed scalar) or kept the window loops
//! innermost (pools: scalar), behind a padded copy of the input.

use super::abi::{shape, DimVal};
use super::elementwise::activation;
use super::mlir_ops::{BResult, Emitter, Iter};
use super::state::Lower;
use crate::ir::OpKind;
use melior::ir::{AffineExpr, AffineMap, Block, Value};
use std::ops::Range;

/// The geometry of a window, per axis (height, width); pads are (top, left, bottom, right) as
/// in `nn.conv2d` and the pools. The output size is given (a ceil-mode pool's last window may
/// reach past the bottom and right pads).
#[derive(Clone, Copy)]
pub(super) struct Window {
    pub input: [u64; 2],
    pub kernel: [u64; 2],
    pub strides: [u64; 2],
    pub dilations: [u64; 2],
    pub pads: [u64; 4],
    pub output: [u64; 2],
}

/// How a window combines its taps.
#[derive(Clone, Copy)]
pub(super) enum Reduce<'c, 'b, 'k> {
    /// A depthwise conv: the filter `[C, KH, KW]`, the bias and the activation fused after it.
    Conv {
        w: Value<'c, 'b>,
        bias: Option<Value<'c, 'b>>,
        act: Option<&'k OpKind>,
    },
    /// A max pool (`arith.maximumf`: NaN propagates, as in the interpreter).
    Max,
    /// An average pool, divided by the interpreter's count: the window cells inside the input,
    /// or with `include_pad` those inside the padded input (never the ceil-mode overhang).
    Avg { include_pad: bool },
}

impl Window {
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

    /// The window cells of output `o` along axis `a` inside the padded input (the
    /// interpreter's `PoolGeom::window`: the ceil-mode overhang past the high pad is not
    /// counted). Constant over a segment: the interior's windows are whole.
    fn padded_len(&self, a: usize, o: u64) -> u64 {
        let start = o * self.strides[a];
        let end = (start + self.kernel[a]).min(self.pads[a] + self.input[a] + self.pads[2 + a]);
        end - start
    }
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// `y[n, c, oh, ow]` = the taps `x[n, c, oh·sh + kh·dh − pt, ow·sw + kw·dw − pl]` inside
    /// `x` (unpadded `[N, C, H, W]`) combined by `red`, region by region into one
    /// `[N, C, HO, WO]` tensor.
    pub(super) fn window(
        &self,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        red: Reduce<'c, 'b, '_>,
        g: Window,
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
                let v = self.window_region(x, red, dest, &rd, &g, origin, &taps)?;
                // Only the interior is split over threads: a border region is a row or a
                // column per channel, less work than the tasks' dispatch.
                if taps.len() as u64 == g.kernel[0] * g.kernel[1] {
                    self.spread(v, &rd)?;
                }
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
    /// `origin`), combining the kernel offsets `taps` (those that read inside `x`).
    #[allow(clippy::too_many_arguments)]
    fn window_region(
        &self,
        x: Value<'c, 'b>,
        red: Reduce<'c, 'b, '_>,
        dest: Value<'c, 'b>,
        dims: &[DimVal],
        g: &Window,
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
        if let Reduce::Conv { w, bias, .. } = red {
            for &[a, b] in taps {
                ins.push(w);
                maps.push(AffineMap::new(cx, 4, 0, &[d(1), k(a), k(b)]));
            }
            if let Some(b) = bias {
                ins.push(b);
                maps.push(AffineMap::new(cx, 4, 0, &[d(1)]));
            }
        }
        let count = match red {
            Reduce::Avg { include_pad: true } => {
                g.padded_len(0, origin[0]) * g.padded_len(1, origin[1])
            }
            _ => taps.len() as u64,
        };
        let out_map = AffineMap::new(cx, 4, 0, &[d(0), d(1), d(2), d(3)]);
        self.e.generic(
            &ins,
            &maps,
            dest,
            out_map,
            &[Iter::Parallel; 4],
            self.ty(dims),
            |e, v| combine(e, red, v, taps.len(), count),
        )
    }
}

/// A region's loop body: the `t` taps `v[..t]` combined by `red` (a conv's filter values follow
/// them, then its bias); a pool's average divides by `count` (a window with no cell, which
/// verified pools do not have, divides 0 by 1).
fn combine<'c, 'x>(
    e: &Emitter<'c, 'x, Block<'c>>,
    red: Reduce<'c, '_, '_>,
    v: &[Value<'c, 'x>],
    t: usize,
    count: u64,
) -> BResult<Value<'c, 'x>> {
    let fold = |f: &dyn Fn(Value<'c, 'x>, usize) -> BResult<Value<'c, 'x>>,
                step: &str,
                contract: bool,
                empty: f32| {
        let mut acc = None;
        for (i, &x) in v[..t].iter().enumerate() {
            let p = f(x, i)?;
            acc = Some(match acc {
                Some(a) if contract => e.binf_contract(step, a, p)?,
                Some(a) => e.binf(step, a, p)?,
                None => p,
            });
        }
        match acc {
            Some(a) => Ok(a),
            None => e.f32_const(empty),
        }
    };
    match red {
        Reduce::Conv { bias, act, .. } => {
            let mul = |x, i| e.binf_contract("arith.mulf", x, v[t + i]);
            let mut acc = fold(&mul, "arith.addf", true, 0.0)?;
            if bias.is_some() {
                acc = e.binf("arith.addf", acc, v[2 * t])?;
            }
            match act {
                Some(kind) => activation(e, kind, acc),
                None => Ok(acc),
            }
        }
        Reduce::Max => fold(&|x, _| Ok(x), "arith.maximumf", false, f32::NEG_INFINITY),
        Reduce::Avg { .. } => {
            let sum = fold(&|x, _| Ok(x), "arith.addf", false, 0.0)?;
            let n = e.f32_const(count.max(1) as f32)?;
            e.binf("arith.divf", sum, n)
        }
    }
}
