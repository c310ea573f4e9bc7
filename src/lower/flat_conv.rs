//! The scheduled conv: computed over the flattened rows of its zero-padded input, so that a
//! tile of the flat axis is whole vectors whatever the row width. Output position
//! `p = oh * wp + ow` reads input position `p + kh * wp + kw`; the `kw - 1` positions of each
//! row that straddle two rows are computed and dropped, and the result is a [`View::Rows`] of
//! the flat tensor.
//!
//! The padded input is a zero fill plus a copy of the input into its interior, or, when the
//! input is itself a flat conv's rows of the same width, that conv writing straight into the
//! padded buffer ([`Lower::pad_in_place`]).

use super::abi::{shape, DimVal};
use super::marks::{last_operand, mark, op_name, owner};
use super::mlir_ops::{map, BResult};
use super::schedule::Layer;
use super::state::{LResult, Lower, RowView, View};
use crate::ir::{OpId, ValueId};
use melior::ir::{AffineExpr, AffineMap, Value, ValueLike};

/// The geometry of a conv that [`Lower::conv_flat`] lowers.
pub(super) struct FlatConv {
    pub(super) f: u64,
    pub(super) c: u64,
    pub(super) h: u64,
    pub(super) w: u64,
    pub(super) kh: u64,
    pub(super) kw: u64,
    pub(super) pads: [u64; 4],
}

impl FlatConv {
    /// The flat length of a conv over a padded buffer: its output rows times the padded width,
    /// rounded up to two vectors of `lanes` so that two threads split it into whole vectors.
    /// Two vectors are also the conv tile's positions on AVX2 (`schedule::conv_tile`), so
    /// there no length leaves a remainder tile; a rounding to a fixed 32 (two AVX-512 vectors)
    /// computed up to 15 % discarded positions there (a 14x14 map, 196 of 224).
    pub(super) fn padded_len(&self, lanes: u64) -> u64 {
        let [pt, pl, pb, pr] = self.pads;
        let wp = self.w + pl + pr;
        ((self.h + pt + pb - self.kh + 1) * wp).next_multiple_of(2 * lanes)
    }

    /// The rows of `wp` a flat conv computing `len` positions reads: the image's, plus enough
    /// below for the reads of the last positions.
    pub(super) fn rows(&self, len: u64, wp: u64) -> u64 {
        (len + self.kw - 1).div_ceil(wp) + self.kh - 1
    }
}

/// One reduction of a flat conv: input channels `[at, at + c)` against the weight `w`
/// `[F, c, kh, kw]`. A conv is one pass over all its channels; a strided conv over phases
/// (`Lower::conv_phases`) one pass per phase, each with only the taps its phase has, so that
/// no pass multiplies by a zero tap.
#[derive(Clone, Copy)]
pub(super) struct Pass<'c, 'b> {
    pub(super) at: u64,
    pub(super) c: u64,
    pub(super) w: Value<'c, 'b>,
}

/// What a flat conv reads (see [`Lower::conv_flat`]).
#[derive(Clone, Copy)]
pub(super) enum FlatSource<'c, 'b> {
    /// The NCHW input (this operand), zero-padded into a buffer of `wp`-wide rows or, unpadded,
    /// read in place.
    Nchw(ValueId),
    /// An earlier flat conv's rows, as they are (a pointwise conv of them).
    Rows(Value<'c, 'b>, RowView),
    /// A computed input already padded and flattened to `[N, C, rows * wp]`, with the rows
    /// [`FlatConv::rows`] asks for (a strided conv's phases).
    Flat(Value<'c, 'b>),
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// A scheduled conv (groups 1, unit strides and dilations, static batch) computed over the
    /// flattened rows of its padded input: output position `p = oh * wp + ow` reads input
    /// position `p + kh * wp + kw` of the padded image flattened to `[N, C, rows * wp]`, so a
    /// tile of the flat axis is whole vectors end to end whatever the row width (tiling a row
    /// whose width is no multiple of the tile leaves a narrower last tile in every row).
    /// The `kw - 1` columns of each row that straddle two rows are computed and thrown away
    /// (`(kw - 1) / wp` more work), and the flat length is rounded up to two vectors
    /// ([`FlatConv::padded_len`]); the padded buffer gets the rows those reads need
    /// (an unpadded 1x1 conv of a length of whole vector pairs reads its input in place, and one
    /// whose input is itself computed in flat rows, `rows`, reads that form: its result has the
    /// same rows, so no copy makes the input contiguous first).
    /// The NCHW result is a view: `[N, F, oh * wp]` expanded to rows and cut to `ow` columns.
    /// With several `passes`, each is a layer of its own into its own accumulators, and the
    /// last one's epilogue adds the others' results (and the bias): a pass that accumulated
    /// into the one before would make that pass's kernel part of its layer.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn conv_flat(
        &mut self,
        op: OpId,
        x: Value<'c, 'b>,
        xd: &[DimVal],
        passes: &[Pass<'c, 'b>],
        bias: Option<ValueId>,
        g: FlatConv,
        source: FlatSource<'c, 'b>,
    ) -> LResult<()> {
        let cx = self.cx;
        let n = xd[0];
        let [pt, pl, pb, pr] = g.pads;
        let (hp, wp) = (g.h + pt + pb, g.w + pl + pr);
        let (ho, wo) = (hp - g.kh + 1, wp - g.kw + 1);
        // Without padding, a 1-wide kernel reads the input in place unless its length would
        // leave a vector remainder that is not a power of two (vector<17> is slow).
        let lanes = self.tiles.lanes;
        let copied = matches!(source, FlatSource::Nchw(_))
            && (g.pads != [0; 4] || g.kw > 1 || !(ho * wp).is_multiple_of(2 * lanes));
        let (wp, wo, len) = match source {
            FlatSource::Rows(_, r) => (r.wp, r.wo, r.len),
            FlatSource::Nchw(_) if copied => (wp, wo, g.padded_len(lanes)),
            FlatSource::Flat(_) => (wp, wo, g.padded_len(lanes)),
            FlatSource::Nchw(_) => (wp, wo, ho * wp),
        };
        let i = self.layers.len();
        let rows = g.rows(len, wp);
        let in_place = match source {
            FlatSource::Nchw(input) if copied => self.pad_in_place(input, &g, wp, rows)?,
            _ => None,
        };
        let xf = if let FlatSource::Rows(y, r) = source {
            self.barrier(y, &View::Rows(r).full_dims())?
        } else if let FlatSource::Flat(xf) = source {
            self.barrier(xf, &[n, DimVal::Static(g.c), DimVal::Static(rows * wp)])?
        } else if let Some(xf) = in_place {
            xf
        } else if copied {
            let pd = [
                n,
                DimVal::Static(g.c),
                DimVal::Static(rows),
                DimVal::Static(wp),
            ];
            // The padding as a zero fill and a copy of the input into the interior, which the
            // schedule tiles per row (`linalg.decompose_pad` + `insert_slice_to_copy`, but
            // marked). The fill is no layer's part: it stays for the loop fallback, where LLVM
            // turns it into a `memset`, which also brings the buffer into cache for the copy (so
            // the whole buffer is filled, not only its border). Threaded, it is split like an
            // element-wise op.
            let [t, l] = [pt, pl].map(|v| v as i64);
            let (xp, copy) = self.zero_padded(x, xd, &[0, 0, t, l], &pd)?;
            mark(cx, copy, "pad_copy", i)?;
            let flat = [n, DimVal::Static(g.c), DimVal::Static(rows * wp)];
            self.e
                .collapse(xp, &[vec![0], vec![1], vec![2, 3]], self.ty(&flat))?
        } else {
            let x = self.contiguous(x, xd)?;
            let x = self.barrier(x, xd)?;
            let flat = [n, DimVal::Static(g.c), DimVal::Static(g.h * wp)];
            self.e
                .collapse(x, &[vec![0], vec![1], vec![2, 3]], self.ty(&flat))?
        };
        // y[n, f, p] += x[n, c, p + kh * wp + kw] * w[f, c, kh, kw], a `linalg.generic` for
        // the FMA flag of `mul_add` (a named conv cannot carry it).
        let d = |i| AffineExpr::dim(cx, i);
        let wpe = AffineExpr::constant(cx, wp as i64);
        let xmap = AffineMap::new(cx, 6, 0, &[d(0), d(3), d(2) + d(4) * wpe + d(5)]);
        let flat = vec![n, DimVal::Static(g.f), DimVal::Static(len)];
        let mut sums = Vec::new();
        let mut kernel = None;
        for (k, p) in passes.iter().enumerate() {
            let input = if passes.len() == 1 {
                xf
            } else {
                let part = [n, DimVal::Static(p.c), DimVal::Static(rows * wp)];
                self.e.extract_slice(
                    xf,
                    &[0, p.at as i64, 0],
                    &shape(&part),
                    &[],
                    self.ty(&part),
                )?
            };
            let zeros = self.filled(0.0, &flat)?;
            let pass = self.contraction(
                &[input, p.w],
                &[xmap, map(cx, 6, &[Some(1), Some(3), Some(4), Some(5)])],
                zeros,
                &flat,
                3,
            )?;
            if k + 1 < passes.len() {
                let layer = Layer::Conv {
                    f: g.f,
                    c: p.c,
                    len,
                    padded: false,
                };
                self.record_layer(op, pass, pass, layer)?;
                sums.push(pass);
            } else {
                kernel = Some(pass);
            }
        }
        let kernel = kernel.expect("invariant: a flat conv has a pass");
        let bias = bias.map(|b| self.val(b).0);
        let y = if sums.is_empty() && bias.is_none() {
            kernel
        } else {
            let all: Vec<Option<usize>> = (0..3).map(Some).collect();
            let mut ins: Vec<_> = std::iter::once(kernel)
                .chain(sums)
                .map(|v| (v, all.clone()))
                .collect();
            ins.extend(bias.map(|b| (b, vec![Some(1)])));
            let count = ins.len();
            // The body's arguments end with the output's element, which is not summed.
            self.elementwise(&ins, &flat, |e, a| {
                a[1..count]
                    .iter()
                    .try_fold(a[0], |s, &v| e.binf("arith.addf", s, v))
            })?
        };
        let layer = Layer::Conv {
            f: g.f,
            c: passes.last().map_or(g.c, |p| p.c),
            len,
            padded: copied && in_place.is_none(),
        };
        self.record_layer(op, kernel, y, layer)?;
        let view = View::Rows(RowView {
            n,
            f: g.f,
            ho,
            wp,
            wo,
            len,
        });
        self.define_view(op, y, view, None)?;
        Ok(())
    }

    /// The zero-padded input of a conv, flattened to `[N, C, rows * wp]`, when `input` is
    /// computed in flat rows of the same width `wp` by a layer (a flat conv, or its fused
    /// epilogue) whose `kw - 1` thrown-away columns per row are exactly the padding columns:
    /// that layer then writes its rows straight into the padded buffer at the first interior
    /// position (its `tensor.empty` becomes a slice of the buffer), its thrown-away columns
    /// landing on the left and right borders, and zero fills of the border columns and of the
    /// rows above and below follow it. The input is neither copied nor its interior filled.
    /// Later readers of `input` read it inside the buffer. The buffer gets more than `rows`
    /// rows if the layer's rounded-up length reaches past them. `None` when the geometry
    /// differs or `input` is no layer's computed form.
    fn pad_in_place(
        &mut self,
        input: ValueId,
        g: &FlatConv,
        wp: u64,
        rows: u64,
    ) -> BResult<Option<Value<'c, 'b>>> {
        let Some(&(y, View::Rows(r))) = self.views.get(&input) else {
            return Ok(None);
        };
        let [pt, pl, _, pr] = g.pads;
        if g.pads == [0; 4]
            || (r.f, r.ho, r.wo, r.wp) != (g.c, g.h, g.w, wp)
            || wp - r.wo != pl + pr
        {
            return Ok(None);
        }
        // The init of the layer's last op: the one `tensor.empty` all its ops write into (see
        // `share_init`), under the kernel's fill when the kernel is the last op.
        let mut init = last_operand(y)?;
        if op_name(init)? == "linalg.fill" {
            init = last_operand(init)?;
        }
        if op_name(init)? != "tensor.empty" {
            return Ok(None);
        }
        let s = DimVal::Static;
        let offset = pt * wp + pl;
        let rows = rows.max((offset + r.len).div_ceil(wp));
        let flat = [r.n, s(g.c), s(rows * wp)];
        let computed = View::Rows(r).full_dims();
        let at = [0, 0, offset as i64];
        let buffer = self.empty(&flat)?;
        let slice =
            self.e
                .extract_slice(buffer, &at, &shape(&computed), &[], self.ty(&computed))?;
        let empty = owner(init)?.to_raw();
        // SAFETY: all four ops are alive and in the function's block; the buffer and its slice
        // have no operands but each other, so they may move before the layer's first op, and
        // once the slice replaces the layer's `tensor.empty` nothing uses that op.
        unsafe {
            mlir_sys::mlirOperationMoveBefore(owner(buffer)?.to_raw(), empty);
            mlir_sys::mlirOperationMoveBefore(owner(slice)?.to_raw(), empty);
            mlir_sys::mlirValueReplaceAllUsesOfWith(init.to_raw(), slice.to_raw());
            mlir_sys::mlirOperationDestroy(empty);
        }
        let padded = self
            .e
            .insert_slice(y, buffer, &at, &shape(&computed), &[], self.ty(&flat))?;
        let pd = [r.n, s(g.c), s(rows), s(wp)];
        let groups = [vec![0], vec![1], vec![2, 3]];
        let mut padded = self.e.expand(padded, &groups, &shape(&pd), &[])?;
        // (first row, rows, first column, columns): above, below, left, right.
        let (ho, wo) = (r.ho, r.wo);
        let borders = [
            (0, pt, 0, wp),
            (pt + ho, rows - pt - ho, 0, wp),
            (pt, ho, 0, pl),
            (pt, ho, pl + wo, wp - pl - wo),
        ];
        for (row, nrows, col, ncols) in borders {
            if nrows == 0 || ncols == 0 {
                continue;
            }
            let d = [r.n, s(g.c), s(nrows), s(ncols)];
            let off = [0, 0, row as i64, col as i64];
            let part = self
                .e
                .extract_slice(padded, &off, &shape(&d), &[], self.ty(&d))?;
            let zeros = self.e.fill(0.0, part, self.ty(&d))?;
            padded = self
                .e
                .insert_slice(zeros, padded, &off, &shape(&d), &[], self.ty(&pd))?;
        }
        let xf = self.e.collapse(padded, &groups, self.ty(&flat))?;
        // Later readers take the rows inside the buffer, so that the border fills do not write
        // over values bufferization would have to keep for them (by copying the buffer).
        let inner = self
            .e
            .extract_slice(xf, &at, &shape(&computed), &[], self.ty(&computed))?;
        self.set_view(input, inner, View::Rows(r), None)?;
        Ok(Some(xf))
    }
}
