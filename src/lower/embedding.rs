//! `nn.embedding`, `y[i.., d] = table[clamp(ids[i..], 0, rows - 1), d]`, in two
//! `linalg.generic`s: the clamped row of every id, into a tensor of i64, then over the ids'
//! shape + `[width]` the copy of each row, whose body reads the table with `tensor.extract`.
//!
//! Two ops, not one: with the id read inside the copy's body, LLVM could not hoist it out of
//! the row loop (the ids argument may alias the output as far as it knows), so every element
//! reloaded and clamped its id. Read from a buffer of the function's own, the row is invariant
//! in the innermost loop, which runs along the row: a contiguous copy. LLVM's loop vectorizer
//! still leaves that copy scalar ("cannot identify array bounds": the table and the output are
//! both arguments, and the table's address depends on a loaded row), so a vector copy needs the
//! transform schedule or a slice copy per row; issue #17's subject.
//!
//! Out-of-range ids: the interpreter refuses an id outside `[0, rows)`, and so does
//! [`super::Jit`], which checks the ids before the call (`Signature::id_rows`). The clamp is
//! what keeps code called some other way (`nnopt compile`'s C ABI) inside the table: an id out
//! of range reads the nearest row, never another buffer.

use super::abi::{shape, DimVal};
use super::mlir_ops::{f32_type, map, tensor_of, Iter};
use super::state::{Fail, LResult, Lower};
use crate::ir::{OpId, ValueId};
use melior::ir::r#type::IntegerType;
use melior::ir::Type;

impl<'c, 'b> Lower<'c, 'b, '_> {
    /// `table[ids]`: row `ids[i..]` of the 2-D table for every id.
    pub(super) fn embedding(&mut self, op: OpId, table: ValueId, ids: ValueId) -> LResult<()> {
        let (t, td) = self.val(table);
        let rows = self.need_static(op, &td, 0, "table's row count")?;
        let width = self.need_static(op, &td, 1, "table's width")?;
        if rows == 0 {
            return Err(Fail::Unsupported(op, "the table has no rows".into()));
        }
        let (x, xd) = self.val(ids);
        let r = xd.len();
        let cx = self.cx;
        let i64t: Type = IntegerType::new(cx, 64).into();
        let all: Vec<Option<usize>> = (0..r).map(Some).collect();
        let row_type = tensor_of(&shape(&xd), i64t);
        let dy = self.dyn_sizes(&xd)?;
        let init = self.e.op1("tensor.empty", &dy, row_type, &[], vec![])?;
        let clamped = self.e.generic(
            &[],
            &[],
            init,
            map(cx, r, &all),
            &vec![Iter::Parallel; r],
            row_type,
            |b, _| {
                let mut at = vec![x];
                for dim in 0..r {
                    at.push(b.linalg_index(dim)?);
                }
                let raw = b.op1("tensor.extract", &at, i64t, &[], vec![])?;
                let low = b.op1("arith.maxsi", &[raw, b.i64_const(0)?], i64t, &[], vec![])?;
                let last = b.i64_const(rows as i64 - 1)?;
                b.op1("arith.minsi", &[low, last], i64t, &[], vec![])
            },
        )?;
        let mut out = xd;
        out.push(DimVal::Static(width));
        let y = self.elementwise(&[(clamped, all)], &out, |b, a| {
            let row = b.op1("arith.index_cast", &[a[0]], Type::index(cx), &[], vec![])?;
            let col = b.linalg_index(r)?;
            b.op1("tensor.extract", &[t, row, col], f32_type(cx), &[], vec![])
        })?;
        self.define(op, y, out);
        Ok(())
    }
}
