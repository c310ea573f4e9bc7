//! `nn.concat`, and families of concats that share one buffer.
//!
//! A concat is a `tensor.empty` and one `tensor.insert_slice` per operand. DenseNet's blocks
//! concatenate every earlier feature map again for each layer: layer `k` reads
//! `concat(x0, y1, …, yk)`, so a block of `n` layers, concatenated anew each time, copies
//! `n²/2` feature maps, each copy a `memrefCopy` call in the entry function. A concat whose
//! operands begin with an earlier concat's operands (on the same axis) instead inserts only
//! its new operands into that concat's tensor, and both are leading slices of one tensor as
//! large along the axis as the family's largest concat: every feature map is copied once.
//! The first concat of a family finds that size by scanning the function for the concats
//! that extend its operands.
//!
//! Exact by construction: each concat's value is the leading slice of a tensor whose
//! leading part holds exactly its operands in order. The insertions of later members write
//! only past an earlier member's slice, after every read of it in program order (each member
//! is read before the layers whose results extend it are computed), so one-shot
//! bufferization writes them in place; where it cannot (a member read after a later one is
//! formed, two concats extending the same one), it copies, and the values stay the same.

use super::abi::{shape, DimVal};
use super::state::{LResult, Lower, Member};
use crate::ir::infer::norm_axis;
use crate::ir::{OpId, OpKind, ValueId};

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// `nn.concat` of `operands` along `axis`: into the tensor of the longest earlier concat
    /// whose operands begin these, else into a new tensor sized for the family.
    pub(super) fn concat(&mut self, op: OpId, operands: &[ValueId], axis: i64) -> LResult<()> {
        let (_, d0) = self.val(operands[0]);
        let ax = Self::norm_axis(op, axis, d0.len())?;
        let mut out = d0.clone();
        let mut sizes = Vec::with_capacity(operands.len());
        for &v in operands {
            let (_, d) = self.val(v);
            sizes.push(self.need_static(op, &d, ax, "concatenated axis")?);
            for i in (0..out.len()).filter(|&i| i != ax) {
                out[i] = self.unify(out[i], d[i]);
            }
        }
        let total: u64 = sizes.iter().sum();
        out[ax] = DimVal::Static(total);
        let earlier = (1..operands.len()).rev().find_map(|k| {
            let m = self.concats.get(&(operands[..k].to_vec(), ax))?;
            Some((k, m.clone()))
        });
        let (start, mut acc, full) = match earlier {
            Some((k, m)) => (k, m.tensor, m.dims),
            None => {
                let mut full = out.clone();
                full[ax] = DimVal::Static(self.family_size(operands, ax, total));
                (0, self.empty(&full)?, full)
            }
        };
        let mut offset: u64 = sizes[..start].iter().sum();
        for (&v, &size) in operands[start..].iter().zip(&sizes[start..]) {
            let (x, d) = self.val(v);
            let mut offs = vec![0i64; d.len()];
            offs[ax] = offset as i64;
            // A strided view (a flat conv's rows without their thrown-away columns) goes in
            // through a vectorized copy, not a `memrefCopy` call.
            acc = match self.is_strided(x) {
                true => self.copy_into(x, &d, acc, &offs, &full)?.0,
                false => {
                    let dy = self.dyn_sizes(&d)?;
                    self.e
                        .insert_slice(x, acc, &offs, &shape(&d), &dy, self.ty(&full))?
                }
            };
            offset += size;
        }
        let member = Member {
            tensor: acc,
            dims: full.clone(),
        };
        self.concats.insert((operands.to_vec(), ax), member);
        let y = match full[ax] == out[ax] {
            true => acc,
            false => {
                let dy = self.dyn_sizes(&out)?;
                let zeros = vec![0i64; out.len()];
                self.e
                    .extract_slice(acc, &zeros, &shape(&out), &dy, self.ty(&out))?
            }
        };
        self.define(op, y, out);
        Ok(())
    }

    /// The largest size along axis `ax` of the concats whose operands begin with `operands`
    /// (`total` is theirs), from the operands' static sizes in the function's types.
    fn family_size(&self, operands: &[ValueId], ax: usize, total: u64) -> u64 {
        let f = self.f;
        let size = |v: ValueId| f.ty(v).dims.get(ax).and_then(|d| d.as_static());
        let on_axis = |o: OpId, rank: usize| match f.kind(o) {
            OpKind::Concat { axis } => norm_axis(*axis, rank) == Ok(ax),
            _ => false,
        };
        f.ops()
            .map(|o| (o, f.op(o).operands()))
            .filter(|(_, vs)| vs.len() > operands.len() && vs.starts_with(operands))
            .filter(|&(o, vs)| on_axis(o, f.ty(vs[0]).dims.len()))
            .filter_map(|(_, vs)| vs.iter().map(|&v| size(v)).sum::<Option<u64>>())
            .fold(total, u64::max)
    }
}
