//! Pooling and means: `nn.max_pool2d`, `nn.avg_pool2d` (sliding windows of `window.rs`, the
//! average divided by the interpreter's window counts), `nn.global_avg_pool` and `nn.mean`
//! (sum reductions divided by the count).

use super::abi::{shape, DimVal};
use super::mlir_ops::BResult;
use super::state::{LResult, Lower};
use super::window::{Reduce, Window};
use crate::ir::{self, OpId, ValueId};
use melior::ir::Value;

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// Max pooling (`avg = None`) or average pooling (`avg = Some(count_include_pad)`).
    pub(super) fn pool(
        &mut self,
        op: OpId,
        v: ValueId,
        p: &ir::Pool2d,
        avg: Option<bool>,
    ) -> LResult<()> {
        let (x, xd) = self.val(v);
        self.need_static(op, &xd, 1, "channel axis")?;
        let h = self.need_static(op, &xd, 2, "input height")?;
        let wi = self.need_static(op, &xd, 3, "input width")?;
        let (ho, wo) = self.static_output_hw(op)?;
        let geom = Window {
            input: [h, wi],
            kernel: p.kernel,
            strides: p.strides,
            dilations: [1, 1],
            pads: p.pads,
            output: [ho, wo],
        };
        let red = match avg {
            None => Reduce::Max,
            Some(include_pad) => Reduce::Avg { include_pad },
        };
        let y = self.window(x, &xd, red, geom)?;
        let out = vec![xd[0], xd[1], DimVal::Static(ho), DimVal::Static(wo)];
        self.define(op, y, out);
        Ok(())
    }

    /// `nn.global_avg_pool`: the mean over every axis after the channels, kept as size 1.
    pub(super) fn global_avg_pool(&mut self, op: OpId, v: ValueId) -> LResult<()> {
        let (_, d) = self.val(v);
        let axes: Vec<usize> = (2..d.len()).collect();
        self.reduce_mean(op, v, &axes, true)
    }

    /// `x` (of `d`) with each run of adjacent `reduced` axes (static) collapsed into one, its
    /// dims, and the axes' flags after it. A global pool then sums one loop of `H·W` instead of
    /// `H` loops of `W`: LLVM vectorizes the long loop and keeps it a loop, where it unrolled
    /// the short one completely into every iteration of `H` (56x56 was one block of 1500
    /// vector adds; `docs/performance.md`). The sum's order changes only as `reassoc` already
    /// allows.
    fn collapse_reduced(
        &self,
        x: Value<'c, 'b>,
        d: &[DimVal],
        reduced: &[bool],
    ) -> BResult<(Value<'c, 'b>, Vec<DimVal>, Vec<bool>)> {
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for i in 0..d.len() {
            match groups.last_mut() {
                Some(g) if reduced[i] && reduced[g[0]] => g.push(i),
                _ => groups.push(vec![i]),
            }
        }
        if groups.len() == d.len() {
            return Ok((x, d.to_vec(), reduced.to_vec()));
        }
        let dims: Vec<DimVal> = groups
            .iter()
            .map(|g| match g.len() {
                1 => d[g[0]],
                _ => DimVal::Static(g.iter().map(|&a| d[a].to_i64() as u64).product()),
            })
            .collect();
        let flags = groups.iter().map(|g| reduced[g[0]]).collect();
        let y = self.e.collapse(x, &groups, self.ty(&dims))?;
        Ok((y, dims, flags))
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
        let (x, xd, red) = self.collapse_reduced(x, &d, &reduced)?;
        let (s, kept) = self.reduce(
            &[(x, (0..xd.len()).map(Some).collect())],
            &xd,
            &red,
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
