//! `nn.embedding`, `y[i.., d] = table[clamp(ids[i..], 0, rows - 1), d]`: one `linalg.generic`
//! over the ids' shape + `[width]` whose body reads the id and then the table with
//! `tensor.extract`.
//!
//! Out-of-range ids: the interpreter refuses an id outside `[0, rows)`, and so does
//! [`super::Jit`], which checks the ids before the call (`Signature::id_rows`). The clamp is
//! what keeps code called some other way (`nnopt compile`'s C ABI) inside the table: an id out
//! of range reads the nearest row, never another buffer. The innermost loop runs along the row,
//! where the id is invariant, so the copy of a row is contiguous and LLVM vectorizes it.

use super::abi::DimVal;
use super::mlir_ops::{f32_type, id};
use super::state::{Fail, LResult, Lower};
use crate::ir::{OpId, ValueId};
use melior::ir::attribute::IntegerAttribute;
use melior::ir::r#type::IntegerType;
use melior::ir::{Attribute, Type};

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
        let mut out = xd;
        out.push(DimVal::Static(width));
        let cx = self.cx;
        let i64t: Type = IntegerType::new(cx, 64).into();
        let y = self.elementwise(&[], &out, |b, _| {
            let int = |v: i64| -> Attribute { IntegerAttribute::new(i64t, v).into() };
            let index = |dim: usize| {
                let attr = [(id(cx, "dim"), int(dim as i64))];
                b.op1("linalg.index", &[], Type::index(cx), &attr, vec![])
            };
            let konst = |v| {
                b.op1(
                    "arith.constant",
                    &[],
                    i64t,
                    &[(id(cx, "value"), int(v))],
                    vec![],
                )
            };
            let mut at = vec![x];
            for dim in 0..r {
                at.push(index(dim)?);
            }
            let raw = b.op1("tensor.extract", &at, i64t, &[], vec![])?;
            let low = b.op1("arith.maxsi", &[raw, konst(0)?], i64t, &[], vec![])?;
            let last = konst(rows as i64 - 1)?;
            let row = b.op1("arith.minsi", &[low, last], i64t, &[], vec![])?;
            let row = b.op1("arith.index_cast", &[row], Type::index(cx), &[], vec![])?;
            let col = index(r)?;
            b.op1("tensor.extract", &[t, row, col], f32_type(cx), &[], vec![])
        })?;
        self.define(op, y, out);
        Ok(())
    }
}
