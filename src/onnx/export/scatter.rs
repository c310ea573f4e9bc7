//! `nn.scatter` in standard ONNX: the fill as an initializer shaped `[1, .., size, .., 1]`,
//! `Expand`ed to the output shape (a constant shape, or `Shape`/`Slice`/`Concat` of the input
//! when it is dynamic), `Concat` after the input on the axis, then `Gather` with the map
//! "position p reads input j where `indices[j] = p`, else fill p". Every element is copied,
//! none computed, so the result is bit-exact.

use super::graph::{u64s, Exporter};
use super::ops::attr_i;
use crate::ir::{OpKind, TensorType};

impl Exporter<'_> {
    /// Writes `kind` (an `nn.scatter` of `x`, typed `xt`) as the nodes computing `out`.
    pub(super) fn scatter(
        &mut self,
        kind: &OpKind,
        x: &str,
        xt: &TensorType,
        out: String,
        r_ty: &TensorType,
    ) -> Result<(), String> {
        let OpKind::Scatter {
            axis,
            indices,
            size,
            fill,
        } = kind
        else {
            unreachable!("called for nn.scatter only")
        };
        let r = xt.rank() as i64;
        let a = crate::ir::infer::norm_axis(*axis, xt.rank())?;
        let n = indices.len() as i64;
        // fill, shaped [1, .., size, .., 1], expanded to x's shape with `size` on the axis.
        let mut fshape = vec![1u64; xt.rank()];
        fshape[a] = *size;
        let fill_init = self.init_f(&format!("{out}.fill"), xt.elem, &fshape, fill);
        let target = match r_ty.static_shape() {
            Some(s) => {
                let d: Vec<i64> = u64s(&s).collect();
                self.init_i64(&format!("{out}.shape"), &[s.len() as u64], &d)
            }
            None => {
                let sh = self.tmp(
                    "Shape",
                    vec![x.to_string()],
                    &format!("{out}.xshape"),
                    vec![],
                );
                let mut parts = Vec::new();
                let slice = |s: &mut Self, lo: i64, hi: i64| {
                    let st = s.init_i64(&format!("{out}.start"), &[1], &[lo]);
                    let en = s.init_i64(&format!("{out}.end"), &[1], &[hi]);
                    s.tmp(
                        "Slice",
                        vec![sh.clone(), st, en],
                        &format!("{out}.dims"),
                        vec![],
                    )
                };
                if a > 0 {
                    parts.push(slice(self, 0, a as i64));
                }
                parts.push(self.init_i64(&format!("{out}.size"), &[1], &[*size as i64]));
                if (a as i64) < r - 1 {
                    parts.push(slice(self, a as i64 + 1, r));
                }
                self.tmp(
                    "Concat",
                    parts,
                    &format!("{out}.shape"),
                    vec![attr_i("axis", 0)],
                )
            }
        };
        let filled = self.tmp(
            "Expand",
            vec![fill_init, target],
            &format!("{out}.filled"),
            vec![],
        );
        let cat = self.tmp(
            "Concat",
            vec![x.to_string(), filled],
            &format!("{out}.cat"),
            vec![attr_i("axis", a as i64)],
        );
        // Output position p reads input j where indices[j] = p, else the fill at n + p.
        let mut map: Vec<i64> = (0..*size as i64).map(|p| n + p).collect();
        for (j, &p) in indices.iter().enumerate() {
            map[p as usize] = j as i64;
        }
        let idx = self.init_i64(&format!("{out}.indices"), &[*size], &map);
        self.node(
            "Gather",
            vec![cat, idx],
            out,
            vec![attr_i("axis", a as i64)],
        );
        Ok(())
    }
}
