//! Depthwise convs as a sliding window over each channel's plane: a `linalg.generic` whose loops
//! run `n, c, oh, kh, kw, ow`, the output column innermost.
//!
//! The named `linalg.depthwise_conv_2d_nchw_chw` loops over `n, oh, ow, c, kh, kw`:
//! `convert-linalg-to-loops` keeps that order, so every step jumped between channel planes and
//! the innermost loop was a window row of 3 taps, which LLVM left scalar. With the output column
//! innermost, each step is `out[ow] += x[ow·sw + kw·dw] · w` over a whole output row: LLVM's
//! loop vectorizer turns it into vectors of the host's width (a strided read becomes
//! interleaved loads and shuffles), the output row stays in L1 across the `kh·kw` taps, and a
//! strided window reads only the taps it keeps. Taps are accumulated in the interpreter's order
//! (`kh`, then `kw`, from the zero fill), so only FMA contraction changes the rounding.
//!
//! Pools keep the named poolings (`pool.rs`): in this form a 3×3 stride-2 max or average pool
//! ran 1.4–2x slower than the named op's `n, c, oh, ow, kh, kw` loops, which keep each output
//! in a register across its window (docs/performance.md, "Kernels").

use super::abi::DimVal;
use super::generic::mul_add;
use super::mlir_ops::{BResult, Iter};
use super::state::Lower;
use melior::ir::{AffineExpr, AffineMap, Value};

/// The geometry of one window: strides and dilations (height, width).
#[derive(Clone, Copy)]
pub(super) struct Window {
    pub strides: [u64; 2],
    pub dilations: [u64; 2],
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// `init[n, c, oh, ow] += x[n, c, oh·sh + kh·dh, ow·sw + kw·dw] · w[c, kh, kw]` over the
    /// window (`x` already padded, `w` `[C, KH, KW]`), a contractible multiply-add per tap.
    pub(super) fn depthwise_window(
        &self,
        x: Value<'c, 'b>,
        w: Value<'c, 'b>,
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
        let wmap = AffineMap::new(cx, 6, 0, &[d(1), d(3), d(4)]);
        let out_map = AffineMap::new(cx, 6, 0, &[d(0), d(1), d(2), d(5)]);
        let iters = [
            Iter::Parallel,
            Iter::Parallel,
            Iter::Parallel,
            Iter::Reduction,
            Iter::Reduction,
            Iter::Parallel,
        ];
        self.e.generic(
            &[x, w],
            &[xmap, wmap],
            init,
            out_map,
            &iters,
            self.ty(out),
            mul_add,
        )
    }
}
