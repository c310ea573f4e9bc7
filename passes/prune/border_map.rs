//! The border map: what a zero-padded conv sees of constant input channels, as a per-position
//! bias (`nn.add` of `[C_out, OH, OW]` after the conv), since inside the image a constant
//! channel adds its taps and in the padding it adds nothing.

use crate::ir::{Function, OpId, OpKind, Tensor, TensorType};

/// The geometry of a zero-padded `nn.conv2d` with static spatial sizes, for the per-position
/// bias map that replaces constant input channels: input channel `j` constant `a` adds
/// `a · Σ_{taps inside the image} W[k, j, r, c]` at output `(k, oh, ow)`.
pub struct BorderMap {
    pub c_out: usize,
    h: usize,
    w: usize,
    pub oh: usize,
    pub ow: usize,
    strides: [usize; 2],
    pads: [usize; 2],
    dilations: [usize; 2],
}

impl BorderMap {
    /// The map's geometry for `conv`, when its spatial sizes are static.
    pub fn of(f: &Function, conv: OpId) -> Option<BorderMap> {
        let OpKind::Conv2d {
            strides,
            pads,
            dilations,
            ..
        } = f.kind(conv)
        else {
            return None;
        };
        let x = f.ty(f.op(conv).operands()[0]);
        let y = f.ty(f.op(conv).result()?);
        let dim = |t: &TensorType, i: usize| t.dim(i).as_static().map(|d| d as usize);
        Some(BorderMap {
            c_out: dim(y, 1)?,
            h: dim(x, 2)?,
            w: dim(x, 3)?,
            oh: dim(y, 2)?,
            ow: dim(y, 3)?,
            strides: strides.map(|s| s as usize),
            pads: [pads[0] as usize, pads[1] as usize],
            dilations: dilations.map(|d| d as usize),
        })
    }

    /// Elements of the map: `C_out · OH · OW`.
    pub fn size(&self) -> usize {
        self.c_out * self.oh * self.ow
    }

    /// `M[k, oh, ow] = Σ_j a_j Σ_{(r, c) inside} W[k, j, r, c]` for `(positions [j], a_j)`;
    /// with `groups` > 1, over the channels `j` of filter `k`'s group only, at their column
    /// `j mod C_in/groups`.
    ///
    /// Which taps are inside depends only on the output row's and column's distance to the
    /// border, so positions fall into a few classes (all interior positions are one): each
    /// class's value is computed once per output channel and copied to its positions. The
    /// additions happen in the same order as a per-position sum, so the map is the same bit
    /// for bit, without a sum of C_out·OH·OW·KH·KW terms per constant channel.
    pub fn values(&self, w: &Tensor, groups: usize, absorbed: &[(Vec<usize>, f32)]) -> Vec<f32> {
        let s = w.shape();
        let (cin, kh, kw) = (s[1] as usize, s[2] as usize, s[3] as usize);
        // The inside-taps mask of every output row (column), deduplicated into classes.
        let classes = |outs: usize, taps: usize, axis: usize, len: usize| {
            let mut masks: Vec<Vec<bool>> = Vec::new();
            let ids: Vec<usize> = (0..outs)
                .map(|o| {
                    let mask: Vec<bool> = (0..taps)
                        .map(|t| {
                            let p = (o * self.strides[axis] + t * self.dilations[axis]) as i64
                                - self.pads[axis] as i64;
                            (0..len as i64).contains(&p)
                        })
                        .collect();
                    masks.iter().position(|m| *m == mask).unwrap_or_else(|| {
                        masks.push(mask);
                        masks.len() - 1
                    })
                })
                .collect();
            (ids, masks)
        };
        let (row_ids, row_masks) = classes(self.oh, kh, 0, self.h);
        let (col_ids, col_masks) = classes(self.ow, kw, 1, self.w);
        let nc = col_masks.len();
        let mut class_value = vec![0.0f32; row_masks.len() * nc];
        let mut m = vec![0.0f32; self.size()];
        let out_per_group = self.c_out / groups.max(1);
        for k in 0..self.c_out {
            class_value.fill(0.0);
            for (positions, a) in absorbed {
                for &j in positions.iter().filter(|&&j| j / cin == k / out_per_group) {
                    let i = j % cin;
                    let taps = w.f32_slice((k * cin + i) * kh * kw..(k * cin + i + 1) * kh * kw);
                    for (ri, rm) in row_masks.iter().enumerate() {
                        for (ci, cm) in col_masks.iter().enumerate() {
                            let mut sum = 0.0f32;
                            for r in (0..kh).filter(|&r| rm[r]) {
                                for c in (0..kw).filter(|&c| cm[c]) {
                                    sum += taps[r * kw + c];
                                }
                            }
                            class_value[ri * nc + ci] += sum * a;
                        }
                    }
                }
            }
            let plane = &mut m[k * self.oh * self.ow..(k + 1) * self.oh * self.ow];
            for (oh, row) in plane.chunks_exact_mut(self.ow).enumerate() {
                let base = row_ids[oh] * nc;
                for (v, &ci) in row.iter_mut().zip(&col_ids) {
                    *v = class_value[base + ci];
                }
            }
        }
        m
    }
}
