//! Sliding windows over NCHW planes, one per channel: depthwise convs and max/average pools as
//! a `linalg.generic` whose loops run `n, c, oh, kh, kw, ow`, the output column innermost.
//!
//! The named ops (`linalg.depthwise_conv_2d_nchw_chw`, `linalg.pooling_nchw_*`) loop over
//! `n, c, oh, ow, kh, kw`: `convert-linalg-to-loops` keeps that order, so the innermost loop was
//! a window row of 3 taps, which LLVM left scalar. With the output column innermost, each step
//! is `out[ow] = out[ow] ⊕ x[ow·sw + kw·dw] (· w)` over a whole output row: LLVM's loop
//! vectorizer turns it into vectors of the host's width (a strided read becomes interleaved
//! loads and shuffles), the output row stays in L1 across the `kh·kw` taps, and a strided
//! window reads only the taps it keeps. Taps are accumulated in the interpreter's order (`kh`,
//! then `kw`, from the fill), so only FMA contraction changes the rounding.

use super::abi::DimVal;
use super::generic::mul_add;
use super::mlir_ops::{BResult, Iter};
use super::state::Lower;
use melior::ir::{AffineExpr, AffineMap, Value};

/// The geometry of one window: kernel size, strides and dilations (height, width).
#[derive(Clone, Copy)]
pub(super) struct Window {
    pub kernel: [u64; 2],
    pub strides: [u64; 2],
    pub dilations: [u64; 2],
}

/// What a window does with its taps.
pub(super) enum Taps<'c, 'b> {
    /// Multiplies each by the filter `[C, KH, KW]` and sums (a depthwise conv).
    Weighted(Value<'c, 'b>),
    /// Folds them into the output with this `arith` op (`maximumf`, `addf`: a pool).
    Pooled(&'static str),
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// `init[n, c, oh, ow] ⊕= x[n, c, oh·sh + kh·dh, ow·sw + kw·dw]` over the window, `x`
    /// already padded: weighted taps accumulate with a contractible multiply-add, pooled ones
    /// with their op.
    pub(super) fn window_generic(
        &self,
        x: Value<'c, 'b>,
        taps: Taps<'c, 'b>,
        init: Value<'c, 'b>,
        out: &[DimVal],
        win: Window,
    ) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        let d = |i| AffineExpr::dim(cx, i);
        let k = |v: u64| AffineExpr::constant(cx, v as i64);
        let [sh, sw] = win.strides;
        let [dh, dw] = win.dilations;
        // Loops: d0 = n, d1 = c, d2 = oh, d3 = kh, d4 = kw, d5 = ow.
        let xmap = AffineMap::new(
            cx,
            6,
            0,
            &[
                d(0),
                d(1),
                d(2) * k(sh) + d(3) * k(dh),
                d(5) * k(sw) + d(4) * k(dw),
            ],
        );
        let out_map = AffineMap::new(cx, 6, 0, &[d(0), d(1), d(2), d(5)]);
        let iters = [
            Iter::Parallel,
            Iter::Parallel,
            Iter::Parallel,
            Iter::Reduction,
            Iter::Reduction,
            Iter::Parallel,
        ];
        let ty = self.ty(out);
        match taps {
            Taps::Weighted(w) => {
                let wmap = AffineMap::new(cx, 6, 0, &[d(1), d(3), d(4)]);
                self.e
                    .generic(&[x, w], &[xmap, wmap], init, out_map, &iters, ty, mul_add)
            }
            Taps::Pooled(combine) => {
                // The window's loop bounds come from a shape-only operand, as in the named
                // poolings: `kh` and `kw` appear in `x`'s map only inside sums.
                let [kh, kw] = win.kernel;
                let shape_only = self.e.empty(&[kh as i64, kw as i64], &[])?;
                let kmap = AffineMap::new(cx, 6, 0, &[d(3), d(4)]);
                self.e.generic(
                    &[x, shape_only],
                    &[xmap, kmap],
                    init,
                    out_map,
                    &iters,
                    ty,
                    move |e, a| e.binf(combine, a[2], a[0]),
                )
            }
        }
    }
}
