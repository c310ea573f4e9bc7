//! Ops that move data without arithmetic: `nn.flatten`, `nn.reshape`, `nn.transpose`,
//! `nn.gather` and `nn.scatter` (slices, reshapes and `linalg.transpose`); `nn.concat` is
//! `concat.rs`.

use super::abi::{shape, DimVal};
use super::mlir_ops::{dense_i64, f32_type, i64_elements, id, BResult, BuildError, Emitter};
use super::state::{Fail, LResult, Lower};
use crate::ir::{Dim, OpId, ValueId};
use melior::ir::attribute::{DenseElementsAttribute, IntegerAttribute};
use melior::ir::r#type::{IntegerType, RankedTensorType};
use melior::ir::{Attribute, Block, BlockLike, Region, RegionLike, Type, Value};

/// Runs of consecutive indices: `(position in indices, index, length)` for each maximal run
/// `indices[j..j + n] = [i, i + 1, ..., i + n - 1]`, so a gather or scatter moves one slice
/// per run.
pub(super) fn runs(indices: &[u64]) -> Vec<(u64, u64, u64)> {
    let mut out = Vec::new();
    let mut j = 0usize;
    while j < indices.len() {
        let mut n = 1;
        while j + n < indices.len() && indices[j + n] == indices[j] + n as u64 {
            n += 1;
        }
        out.push((j as u64, indices[j], n as u64));
        j += n;
    }
    out
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// Copies `n` positions of `axis` from `x` (starting at `from`) into `acc` (at `to`).
    #[allow(clippy::too_many_arguments)]
    fn move_slice(
        &self,
        x: Value<'c, 'b>,
        acc: Value<'c, 'b>,
        d: &[DimVal],
        out: &[DimVal],
        ax: usize,
        from: u64,
        to: u64,
        n: u64,
    ) -> BResult<Value<'c, 'b>> {
        let mut sd = d.to_vec();
        sd[ax] = DimVal::Static(n);
        let dy = self.dyn_sizes(&sd)?;
        let mut offs = vec![0i64; d.len()];
        offs[ax] = from as i64;
        let piece = self
            .e
            .extract_slice(x, &offs, &shape(&sd), &dy, self.ty(&sd))?;
        offs[ax] = to as i64;
        self.e
            .insert_slice(piece, acc, &offs, &shape(&sd), &dy, self.ty(out))
    }

    /// `y[.., o, ..] = x[.., src[o], ..]` along `ax` (of `out`'s shape), or `fill[o]` where
    /// `src[o]` is -1: one `linalg.generic` reading `x` with `tensor.extract` at an index from
    /// the constant table `src` (a tensor of i64). A gather or scatter with several runs of consecutive indices (a pruned
    /// residual's channels) takes this form instead of a slice per run: each slice became a
    /// strided `memrefCopy` call with its descriptors built inline, so the code of a pruned
    /// network grew with its number of runs (hundreds in a pruned ResNet), and compiled slower
    /// than the original.
    fn move_by_table(
        &self,
        x: Value<'c, 'b>,
        out: &[DimVal],
        ax: usize,
        src: &[i64],
        fill: Option<Value<'c, 'b>>,
    ) -> BResult<Value<'c, 'b>> {
        let cx = self.cx;
        let i64_type: Type = IntegerType::new(cx, 64).into();
        let table_type = RankedTensorType::new(&[src.len() as u64], i64_type, None).into();
        let table = self.e.op1(
            "arith.constant",
            &[],
            table_type,
            &[(id(cx, "value"), i64_elements(cx, src))],
            vec![],
        )?;
        let ins: Vec<_> = fill.map(|f| (f, vec![Some(ax)])).into_iter().collect();
        self.elementwise(&ins, out, |b, a| {
            let o = b.linalg_index(ax)?;
            let s = b.op1("tensor.extract", &[table, o], i64_type, &[], vec![])?;
            // Where `src` is -1 (`fill` given), read position 0 and keep the fill instead.
            let (p, valid) = match fill {
                Some(_) => {
                    let zero = b.i64_const(0)?;
                    let i1 = IntegerType::new(cx, 1).into();
                    // Predicate 5: `sge`.
                    let sge = IntegerAttribute::new(i64_type, 5).into();
                    let pred = [(id(cx, "predicate"), sge)];
                    let valid = b.op1("arith.cmpi", &[s, zero], i1, &pred, vec![])?;
                    let p = b.op1("arith.select", &[valid, s, zero], i64_type, &[], vec![])?;
                    (p, Some(valid))
                }
                None => (s, None),
            };
            let mut operands = vec![x];
            for dim in 0..out.len() {
                operands.push(if dim == ax {
                    b.op1("arith.index_cast", &[p], Type::index(cx), &[], vec![])?
                } else {
                    b.linalg_index(dim)?
                });
            }
            let v = b.op1("tensor.extract", &operands, f32_type(cx), &[], vec![])?;
            match valid {
                Some(valid) => b.select(valid, v, a[0]),
                None => Ok(v),
            }
        })
    }

    pub(super) fn flatten(&mut self, op: OpId, v: ValueId, axis: usize) -> LResult<()> {
        let (x, d) = self.val(v);
        let x = self.contiguous(x, &d)?;
        let r = d.len();
        if r == 0 {
            return Err(Fail::Unsupported(op, "flattening a scalar".into()));
        }
        let (Some(a), Some(b)) = (product(&d[..axis]), product(&d[axis..])) else {
            return Err(Fail::Unsupported(
                op,
                "flattening merges two dynamic dimensions".into(),
            ));
        };
        let out = vec![a, b];
        let y = if axis > 0 && axis < r {
            self.e.collapse(
                x,
                &[(0..axis).collect(), (axis..r).collect()],
                self.ty(&out),
            )?
        } else {
            // One side is empty: collapse everything, then expand to [1, P] or [P, 1].
            let all = if axis == 0 { b } else { a };
            let flat = self.e.collapse(x, &[(0..r).collect()], self.ty(&[all]))?;
            let dy = self.dyn_sizes(&out)?;
            self.e.expand(flat, &[vec![0, 1]], &shape(&out), &dy)?
        };
        self.define(op, y, out);
        Ok(())
    }
}

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// `tensor.reshape` to `target`, whose `?` entry (if any) is the size that keeps the element
    /// count: with a dynamic input, its one dynamic size times the static sizes it drops.
    pub(super) fn reshape(&mut self, op: OpId, v: ValueId, target: &[Dim]) -> LResult<()> {
        let cx = self.cx;
        let (x, xd) = self.val(v);
        let x = self.contiguous(x, &xd)?;
        let dims = reshape_dims(&xd, target).ok_or_else(|| {
            let text = crate::ir::infer::shape_text(target);
            Fail::Unsupported(
                op,
                format!(
                    "reshaping to {text} needs a dynamic size that is a multiple of the -1 entry's"
                ),
            )
        })?;
        let statics: Option<Vec<u64>> = dims.iter().map(|d| d.as_static()).collect();
        let s = match statics {
            Some(st) => {
                let st: Vec<i64> = st.iter().map(|&n| n as i64).collect();
                let sty = RankedTensorType::new(
                    &[st.len() as u64],
                    IntegerType::new(cx, 64).into(),
                    None,
                );
                let attr: Attribute = DenseElementsAttribute::i64_values(sty.into(), &st).into();
                self.e.op1(
                    "arith.constant",
                    &[],
                    sty.into(),
                    &[(id(cx, "value"), attr)],
                    vec![],
                )?
            }
            None => {
                let mut sizes = Vec::with_capacity(dims.len());
                for d in &dims {
                    sizes.push(match *d {
                        DimVal::Static(n) => self.e.index_const(n as i64)?,
                        DimVal::Arg { .. } => self.dyn_sizes(std::slice::from_ref(d))?[0],
                    });
                }
                let sty = RankedTensorType::new(&[dims.len() as u64], Type::index(cx), None);
                self.e
                    .op1("tensor.from_elements", &sizes, sty.into(), &[], vec![])?
            }
        };
        let y = self
            .e
            .op1("tensor.reshape", &[x, s], self.ty(&dims), &[], vec![])?;
        self.define(op, y, dims);
        Ok(())
    }

    pub(super) fn transpose(&mut self, op: OpId, v: ValueId, perm: &[u64]) -> LResult<()> {
        let cx = self.cx;
        let (x, d) = self.val(v);
        let out: Vec<DimVal> = perm.iter().map(|&p| d[p as usize]).collect();
        let init = self.empty(&out)?;
        let block = Block::new(&[(f32_type(cx), self.e.loc), (f32_type(cx), self.e.loc)]);
        {
            let e = Emitter::new(cx, &block, self.e.loc);
            let a: Value = block
                .argument(0)
                .map_err(|e| BuildError(e.to_string()))?
                .into();
            e.op("linalg.yield", &[a], &[], &[], vec![])?;
        }
        let region = Region::new();
        region.append_block(block);
        let p: Vec<i64> = perm.iter().map(|&p| p as i64).collect();
        let y = self.e.op1(
            "linalg.transpose",
            &[x, init],
            self.ty(&out),
            &[(id(cx, "permutation"), dense_i64(cx, &p))],
            vec![region],
        )?;
        self.define(op, y, out);
        Ok(())
    }

    pub(super) fn gather(
        &mut self,
        op: OpId,
        v: ValueId,
        axis: i64,
        indices: &[u64],
    ) -> LResult<()> {
        let (x, d) = self.val(v);
        let ax = Self::norm_axis(op, axis, d.len())?;
        let len = self.need_static(op, &d, ax, "gathered axis")?;
        if indices.len() as u64 == len && indices.iter().enumerate().all(|(i, &p)| p == i as u64) {
            self.define(op, x, d);
            return Ok(());
        }
        let mut out = d.clone();
        out[ax] = DimVal::Static(indices.len() as u64);
        let runs = runs(indices);
        let y = match runs.as_slice() {
            &[(start, from, n)] => {
                let acc = self.empty(&out)?;
                self.move_slice(x, acc, &d, &out, ax, from, start, n)?
            }
            _ => {
                let src: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
                self.move_by_table(x, &out, ax, &src, None)?
            }
        };
        self.define(op, y, out);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn scatter(
        &mut self,
        op: OpId,
        v: ValueId,
        axis: i64,
        indices: &[u64],
        size: u64,
        fill: &[f32],
    ) -> LResult<()> {
        let (x, d) = self.val(v);
        let ax = Self::norm_axis(op, axis, d.len())?;
        self.need_static(op, &d, ax, "scattered axis")?;
        let mut out = d.clone();
        out[ax] = DimVal::Static(size);
        let runs = runs(indices);
        if runs.len() > 1 {
            // Output position `o` reads input position `src[o]`, or the fill where it is -1.
            let mut src = vec![-1i64; size as usize];
            for (from, &to) in indices.iter().enumerate() {
                src[to as usize] = from as i64;
            }
            let bytes: Vec<u8> = fill.iter().flat_map(|v| v.to_le_bytes()).collect();
            let table = self.e.dense_f32(&[size as i64], &bytes)?;
            let y = self.move_by_table(x, &out, ax, &src, Some(table))?;
            self.define(op, y, out);
            return Ok(());
        }
        let fill_bits_equal = fill.windows(2).all(|w| w[0].to_bits() == w[1].to_bits());
        let mut acc = if fill_bits_equal {
            self.filled(fill.first().copied().unwrap_or(0.0), &out)?
        } else {
            let bytes: Vec<u8> = fill.iter().flat_map(|v| v.to_le_bytes()).collect();
            let table = self.e.dense_f32(&[size as i64], &bytes)?;
            self.elementwise(&[(table, vec![Some(ax)])], &out, |_, a| Ok(a[0]))?
        };
        // Input positions from..from+n go to to..to+n.
        for (from, to, n) in runs {
            acc = self.move_slice(x, acc, &d, &out, ax, from, to, n)?;
        }
        self.define(op, acc, out);
        Ok(())
    }
}

/// The size of `ds` merged into one axis; `None` when two of them are dynamic.
fn product(ds: &[DimVal]) -> Option<DimVal> {
    let mut stat = 1u64;
    let mut dynamic = None;
    for &dv in ds {
        match dv {
            DimVal::Static(n) => stat *= n,
            DimVal::Arg { .. } if dynamic.is_some() => return None,
            a => dynamic = Some(a),
        }
    }
    Some(match dynamic {
        None => DimVal::Static(stat),
        Some(DimVal::Arg { arg, axis, factor }) => DimVal::Arg {
            arg,
            axis,
            factor: factor * stat,
        },
        Some(s) => s,
    })
}

/// The sizes of a reshape of `x` to `target`: a `?` entry keeps the element count. `None` when
/// `x` has more than one dynamic size or the `?` is not a whole multiple of `x`'s dynamic size.
fn reshape_dims(x: &[DimVal], target: &[Dim]) -> Option<Vec<DimVal>> {
    let known: u64 = target.iter().filter_map(|d| d.as_static()).product();
    let inferred = match product(x)? {
        DimVal::Static(count) => DimVal::Static(count.checked_div(known)?),
        DimVal::Arg { arg, axis, factor } => (known > 0 && factor.is_multiple_of(known))
            .then_some(DimVal::Arg {
                arg,
                axis,
                factor: factor / known,
            })?,
    };
    Some(
        target
            .iter()
            .map(|d| d.as_static().map_or(inferred, DimVal::Static))
            .collect(),
    )
}
