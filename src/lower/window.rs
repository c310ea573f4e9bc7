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
//!   input for all of its outputs, and a pool's divisor is one constant per region. The
//!   exception is a depthwise conv with short rows and a wide window ([`Window::padded`]),
//!   whose many border regions cost more to compile than a padded copy costs to run.
//! * **Border regions on buffers.** They are written in place into views of one buffer, which
//!   then becomes the output tensor that the interior is written into
//!   ([`Lower::window_borders`] says why).
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
use melior::ir::{AffineExpr, AffineMap, Block, Type, Value};
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

/// One region of the output: a row segment by a column segment, and the kernel offsets that
/// read inside the input for all of its outputs.
struct Region {
    rows: Range<u64>,
    cols: Range<u64>,
    taps: Vec<[u64; 2]>,
}

impl Region {
    /// `[N, C, rows, cols]`, with the batch and channels `xd` of the input.
    fn dims(&self, xd: &[DimVal]) -> [DimVal; 4] {
        let st = DimVal::Static;
        let (r, c) = (&self.rows, &self.cols);
        [xd[0], xd[1], st(r.end - r.start), st(c.end - c.start)]
    }

    fn offsets(&self) -> [i64; 4] {
        [0, 0, self.rows.start as i64, self.cols.start as i64]
    }

    fn origin(&self) -> [u64; 2] {
        [self.rows.start, self.cols.start]
    }
}

impl Window {
    /// Whether a depthwise conv runs over its zero-padded input in one nest
    /// ([`Lower::window_padded`]) instead of region by region: when its rows are shorter than
    /// two vectors of `lanes` and it has more border regions than a 3x3 window (8). Each
    /// border region is a nest of its own, which LLVM vectorizes across the channels with a
    /// load per lane and tap; for a 5x5 window on a 7x7 or 14x14 map (24 regions, 40 of 49
    /// outputs on the 7x7 one) those nests were most of a model's compile time, and the
    /// padded copy costs less to run than they cost to compile. Wider rows vectorize along
    /// the row, and a 3x3 window's regions cost little to compile and nothing to copy
    /// (`docs/performance.md`).
    pub(super) fn padded(&self, lanes: u64) -> bool {
        self.output[1] < 2 * lanes && self.regions().1.len() > 8
    }

    /// The interior region, whose outputs read every tap (if any), and the other regions (a
    /// second region of whole windows, which the segments do not make, would be one of them).
    fn regions(&self) -> (Option<Region>, Vec<Region>) {
        let full = (self.kernel[0] * self.kernel[1]) as usize;
        let (mut interior, mut borders) = (None, Vec::new());
        let cols = self.segments(1);
        for (rows, rk) in self.segments(0) {
            for (c, ck) in &cols {
                let taps: Vec<[u64; 2]> = rk
                    .iter()
                    .flat_map(|&a| ck.iter().map(move |&b| [a, b]))
                    .collect();
                let region = Region {
                    rows: rows.clone(),
                    cols: c.clone(),
                    taps,
                };
                match region.taps.len() == full && interior.is_none() {
                    true => interior = Some(region),
                    false => borders.push(region),
                }
            }
        }
        (interior, borders)
    }
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// `y[n, c, oh, ow]` = the taps `x[n, c, oh·sh + kh·dh − pt, ow·sw + kw·dw − pl]` inside
    /// `x` (unpadded `[N, C, H, W]`) combined by `red`, region by region into one
    /// `[N, C, HO, WO]` tensor: the border regions into a buffer ([`Lower::window_borders`]),
    /// then the interior into the tensor that owns it.
    pub(super) fn window(
        &self,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        red: Reduce<'c, 'b, '_>,
        g: Window,
    ) -> BResult<Value<'c, 'b>> {
        if let Reduce::Conv { .. } = red {
            if g.padded(self.tiles.lanes) {
                return self.window_padded(x, xd, red, &g);
            }
        }
        let st = DimVal::Static;
        let out = [xd[0], xd[1], st(g.output[0]), st(g.output[1])];
        let (interior, borders) = g.regions();
        let whole = borders.is_empty();
        let y = match whole {
            true => self.empty(&out)?,
            false => self.window_borders(x, xd, red, &g, &out, &borders)?,
        };
        let Some(inner) = interior else {
            return Ok(y);
        };
        let rd = inner.dims(xd);
        let dn = self.dyn_sizes(&rd)?;
        let dest = match whole {
            true => y,
            false => self
                .e
                .extract_slice(y, &inner.offsets(), &shape(&rd), &dn, self.ty(&rd))?,
        };
        let (ins, maps) = self.region_operands(x, red, &rd, &g, &inner, None)?;
        let v = self.e.generic(
            &ins,
            &maps,
            dest,
            identity(self.cx, 4),
            &[Iter::Parallel; 4],
            self.ty(&rd),
            |e, v| combine(e, red, v, &g, &inner),
        )?;
        // Only the interior is split over threads: a border region is a row or a column per
        // channel, less work than the tasks' dispatch.
        self.spread(v, &rd)?;
        match whole {
            true => Ok(v),
            false => self
                .e
                .insert_slice(v, y, &inner.offsets(), &shape(&rd), &dn, self.ty(&out)),
        }
    }

    /// A depthwise conv over its zero-padded input ([`Window::padded`]): the same window
    /// without pads over a zero-padded copy of `x` ([`Lower::zero_padded`]), which
    /// [`Lower::window`] computes as one interior region (every tap inside), no border regions. Padding with zeros adds `0·w`
    /// terms where a region sum skips the tap: the same value (the interpreter also treats
    /// padding as zeros).
    fn window_padded(
        &self,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        red: Reduce<'c, 'b, '_>,
        g: &Window,
    ) -> BResult<Value<'c, 'b>> {
        let [pt, pl, pb, pr] = g.pads;
        let whole = Window {
            input: [g.input[0] + pt + pb, g.input[1] + pl + pr],
            pads: [0; 4],
            ..*g
        };
        let st = DimVal::Static;
        let pd = [xd[0], xd[1], st(whole.input[0]), st(whole.input[1])];
        let [pt, pl] = [g.pads[0], g.pads[1]].map(|p| p as i64);
        let (xp, _) = self.zero_padded(x, xd, &[0, 0, pt, pl], &pd)?;
        self.window(xp, &pd, red, whole)
    }

    /// The border regions, each written in place into its view of a new buffer of `out`;
    /// returns the tensor that owns the buffer.
    ///
    /// Why buffers: as tensor ops, the regions were a chain of slice insertions into one
    /// tensor, each reading its taps through slices of the input, and one-shot bufferization's
    /// conflict analysis compares the reads and writes of an alias set pairwise, with a
    /// subset comparison per pair: seconds for a 5x5 layer's 16 border regions
    /// (`docs/performance.md`). Ops on buffers are not analyzed. The input, filter and bias
    /// are read through `to_buffer` views taken right before the regions, where bufferization
    /// takes them as read; the interior is then written in place into the same allocation.
    fn window_borders(
        &self,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        red: Reduce<'c, 'b, '_>,
        g: &Window,
        out: &[DimVal],
        borders: &[Region],
    ) -> BResult<Value<'c, 'b>> {
        let m = self.alloc(out)?;
        let view = self.any_layout(m, out)?;
        let xb = self.read_buffer(x)?;
        let red = match red {
            Reduce::Conv { w, bias, act } => Reduce::Conv {
                w: self.read_buffer(w)?,
                bias: bias.map(|b| self.read_buffer(b)).transpose()?,
                act,
            },
            pool => pool,
        };
        for region in borders {
            let rd = region.dims(xd);
            let dn = self.dyn_sizes(&rd)?;
            // Unit axes are no loops: the views drop them, as the schedule's patterns do on
            // tensors, so the memref descriptors LLVM receives are no larger than they were.
            let kept: Vec<usize> = (0..4).filter(|&a| rd[a].as_static() != Some(1)).collect();
            let ty = self.view_type(&rd, Some(&kept))?;
            let dest = self
                .e
                .subview(view, &region.offsets(), &shape(&rd), &dn, ty)?;
            let (ins, maps) = self.region_operands(xb, red, &rd, g, region, Some(&kept))?;
            self.e.generic_into(
                &ins,
                &maps,
                dest,
                identity(self.cx, kept.len()),
                &vec![Iter::Parallel; kept.len()],
                |e, v| combine(e, red, v, g, region),
            )?;
        }
        self.owned_tensor(m, self.ty(out))
    }

    /// The inputs of `region`'s loop nest over `dims` and their maps: a view of `x` per tap,
    /// then a conv's filter value per tap and its bias. On tensors (`buffers` None) a view is
    /// a slice; on buffers a subview without the axes of `dims` that `buffers` does not keep
    /// (unit ones), whose loops the nest does not have.
    fn region_operands(
        &self,
        x: Value<'c, 'b>,
        red: Reduce<'c, 'b, '_>,
        dims: &[DimVal],
        g: &Window,
        region: &Region,
        buffers: Option<&[usize]>,
    ) -> BResult<(Vec<Value<'c, 'b>>, Vec<AffineMap<'c>>)> {
        let cx = self.cx;
        let st = DimVal::Static;
        let kept = buffers.unwrap_or(&[0, 1, 2, 3]);
        // The loop of axis `a`, or (a dropped unit axis) index 0.
        let axis = |a: usize| match kept.iter().position(|&k| k == a) {
            Some(i) => AffineExpr::dim(cx, i),
            None => AffineExpr::constant(cx, 0),
        };
        let k = |v: u64| AffineExpr::constant(cx, v as i64);
        let n = kept.len();
        let mut ins = Vec::new();
        let mut maps = Vec::new();
        // Each tap reads its own slice of `x` (a view): with the tap's offset in the map
        // instead, the unit-stride map of tap (0, 0) would be a plain loop dim, from whose
        // operand, larger than the output, linalg infers the loop's range.
        let reach = |a: usize| st((dims[2 + a].to_i64() as u64 - 1) * g.strides[a] + 1);
        let td = [dims[0], dims[1], reach(0), reach(1)];
        let dn = self.dyn_sizes(&td)?;
        let steps = [1, 1, g.strides[0], g.strides[1]];
        let tap_exprs: Vec<AffineExpr> = kept.iter().map(|&a| axis(a) * k(steps[a])).collect();
        let tap_map = AffineMap::new(cx, n, 0, &tap_exprs);
        let ty = self.view_type(&td, buffers)?;
        let origin = region.origin();
        for tap in &region.taps {
            let at =
                |a: usize| (origin[a] * g.strides[a] + tap[a] * g.dilations[a] - g.pads[a]) as i64;
            let offsets = [0, 0, at(0), at(1)];
            ins.push(match buffers {
                Some(_) => self.e.subview(x, &offsets, &shape(&td), &dn, ty)?,
                None => self.e.extract_slice(x, &offsets, &shape(&td), &dn, ty)?,
            });
            maps.push(tap_map);
        }
        if let Reduce::Conv { w, bias, .. } = red {
            for &[a, b] in &region.taps {
                ins.push(w);
                maps.push(AffineMap::new(cx, n, 0, &[axis(1), k(a), k(b)]));
            }
            if let Some(b) = bias {
                ins.push(b);
                maps.push(AffineMap::new(cx, n, 0, &[axis(1)]));
            }
        }
        Ok((ins, maps))
    }

    /// The type of a view of `dims`: a tensor, or with `buffers` a memref of any layout
    /// without the axes it does not keep.
    fn view_type(&self, dims: &[DimVal], buffers: Option<&[usize]>) -> BResult<Type<'c>> {
        match buffers {
            Some(kept) => {
                let sizes: Vec<i64> = kept.iter().map(|&a| dims[a].to_i64()).collect();
                self.any_layout_type(&sizes)
            }
            None => Ok(self.ty(dims)),
        }
    }
}

/// A max pool's taps combined as the interpreter does: `m = v > m ? v : m` in tap order, so
/// equal values (`-0` and `+0`) keep the first, and NaN in any tap makes the result NaN.
/// The comparison is one `maxps`/`fmax` (a select on an ordered `>`); NaN goes beside it,
/// one unordered compare per pair of taps, or'ed, and a select at the end. `arith.maximumf`
/// gave the same values up to the sign of zero, but LLVM expands its vector form into six
/// instructions with a sign-of-zero fixup, so the loop vectorizer left every pool scalar
/// (`docs/performance.md`).
fn max_taps<'c, 'x>(
    e: &Emitter<'c, 'x, Block<'c>>,
    taps: &[Value<'c, 'x>],
) -> BResult<Value<'c, 'x>> {
    const OGT: i64 = 2;
    const UNO: i64 = 14;
    let Some((&first, rest)) = taps.split_first() else {
        return e.f32_const(f32::NEG_INFINITY);
    };
    if rest.is_empty() {
        return Ok(first);
    }
    let mut m = first;
    for &v in rest {
        let greater = e.cmpf(OGT, v, m)?;
        m = e.select(greater, v, m)?;
    }
    let i1: Type = melior::ir::r#type::IntegerType::new(e.cx, 1).into();
    let mut nan = e.cmpf(UNO, first, *rest.first().unwrap_or(&first))?;
    for pair in rest.get(1..).unwrap_or_default().chunks(2) {
        let u = e.cmpf(UNO, pair[0], pair[pair.len() - 1])?;
        nan = e.op1("arith.ori", &[nan, u], i1, &[], vec![])?;
    }
    let quiet = e.f32_const(f32::NAN)?;
    e.select(nan, quiet, m)
}

/// The loop nests' map of the output: the `rank` loops themselves.
fn identity(cx: &melior::Context, rank: usize) -> AffineMap<'_> {
    let dims: Vec<AffineExpr> = (0..rank).map(|i| AffineExpr::dim(cx, i)).collect();
    AffineMap::new(cx, rank, 0, &dims)
}

/// A region's loop body: its taps `v[..t]` combined by `red` (a conv's filter values follow
/// them, then its bias); a pool's average divides by the region's count of window cells (a
/// window with no cell, which verified pools do not have, divides 0 by 1).
fn combine<'c, 'x>(
    e: &Emitter<'c, 'x, Block<'c>>,
    red: Reduce<'c, '_, '_>,
    v: &[Value<'c, 'x>],
    g: &Window,
    region: &Region,
) -> BResult<Value<'c, 'x>> {
    let t = region.taps.len();
    let count = match red {
        Reduce::Avg { include_pad: true } => {
            g.padded_len(0, region.rows.start) * g.padded_len(1, region.cols.start)
        }
        _ => t as u64,
    };
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
        Reduce::Max => max_taps(e, &v[..t]),
        Reduce::Avg { .. } => {
            let sum = fold(&|x, _| Ok(x), "arith.addf", false, 0.0)?;
            let n = e.f32_const(count.max(1) as f32)?;
            e.binf("arith.divf", sum, n)
        }
    }
}
