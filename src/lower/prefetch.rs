//! Software prefetch of the next weight panel in scheduled dense layers, inserted between the
//! two halves of the scheduled pipeline (after bufferization and `convert-linalg-to-loops`,
//! where the kernel's reduction loop reads the packed weight with `vector.transfer_read`).
//!
//! Why: a dense layer's loops run panel by panel, every row tile of a panel over all of K. The
//! first row tile streams the panel from memory, the others find it in cache, so memory traffic
//! comes in bursts that the first tile waits on. Each step of the reduction therefore also
//! prefetches the next panel's cache lines (two for AVX-512's 32-column panels) at the same `k` (into L2, `locality<2>`): the
//! next panel arrives while this one is computed. The last panel prefetches itself (the index is clamped), which is harmless.
//! The effect on the benchmark MLP is in `docs/performance.md`.

use melior::ir::attribute::{BoolAttribute, IntegerAttribute};
use melior::ir::operation::{OperationBuilder, OperationLike, WalkOrder, WalkResult};
use melior::ir::r#type::IntegerType;
use melior::ir::{
    Attribute, BlockLike, BlockRef, Identifier, Module as MlirModule, OperationRef, RegionLike,
    Type, Value, ValueLike,
};
use melior::Context;

/// f32s per 64-byte cache line.
const LINE: i64 = 16;

/// Inserts the prefetches, for packed weights of `panel` columns (the target's dense `TN`).
pub fn insert(cx: &Context, module: &MlirModule, panel: u64) {
    let mut reads = Vec::new();
    module.as_operation().walk(WalkOrder::PreOrder, |op| {
        if let Some(panels) = panel_read(&op, panel) {
            reads.push((op.to_raw(), panels));
        }
        WalkResult::Advance
    });
    for &(raw, panels) in &reads {
        // SAFETY: the op was found in the module above and nothing has erased it since.
        let op = unsafe { OperationRef::from_raw(raw) };
        prefetch_next(cx, op, panels, panel);
    }
}

/// The number of panels if `op` is a kernel's read of one panel row: `vector.transfer_read
/// %w[%panel, %k, %c] : memref<P x K x W x f32>, vector<W x f32>` (`W` = `panel`) whose `%k` is the
/// induction variable of the enclosing `scf.for`.
fn panel_read(op: &OperationRef, panel: u64) -> Option<u64> {
    let name = op.name();
    if name.as_string_ref().as_str() != Ok("vector.transfer_read") || op.operand_count() < 4 {
        return None;
    }
    let result = op.result(0).ok()?;
    if result.r#type().to_string() != format!("vector<{panel}xf32>") {
        return None;
    }
    let source = op.operand(0).ok()?.r#type().to_string();
    let dims: Vec<u64> = source
        .strip_prefix("memref<")?
        .strip_suffix("xf32>")?
        .split('x')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let &[panels, _, width] = dims.as_slice() else {
        return None;
    };
    let parent = op.parent_operation()?;
    let k = op.operand(2).ok()?;
    let iv = parent.region(0).ok()?.first_block()?.argument(0).ok()?;
    let is_loop = parent.name().as_string_ref().as_str() == Ok("scf.for");
    (width == panel && is_loop && k.to_raw().ptr == iv.to_raw().ptr).then_some(panels)
}

/// Before `read` (`%w[%panel, %k, %c]`): `memref.prefetch %w[min(%panel + 1, P - 1), %k, %c +
/// 16 i]` for each cache line `i` of the row (a row narrower than a line takes one).
fn prefetch_next<'c, 'a>(cx: &'c Context, read: OperationRef<'c, 'a>, panels: u64, width: u64) {
    let Some(block) = read.block() else {
        return;
    };
    let at = Before { cx, block, read };
    let operand = |i| read.operand(i).expect("invariant: checked by panel_read");
    let (w, panel, k, col) = (operand(0), operand(1), operand(2), operand(3));
    let next = at.index("arith.addi", &[panel, at.constant(1)]);
    let next = at.index("arith.minui", &[next, at.constant(panels as i64 - 1)]);
    let flag = |v| BoolAttribute::new(cx, v).into();
    let locality = IntegerAttribute::new(IntegerType::new(cx, 32).into(), 2).into();
    for line in 0..(width as i64 + LINE - 1) / LINE {
        let c = match line {
            0 => col,
            _ => at.index("arith.addi", &[col, at.constant(line * LINE)]),
        };
        at.put(
            "memref.prefetch",
            &[w, next, k, c],
            &[
                (Identifier::new(cx, "isWrite"), flag(false)),
                (Identifier::new(cx, "localityHint"), locality),
                (Identifier::new(cx, "isDataCache"), flag(true)),
            ],
            &[],
        );
    }
}

/// Inserts ops before `read`, at its location.
struct Before<'c, 'a> {
    cx: &'c Context,
    block: BlockRef<'c, 'a>,
    read: OperationRef<'c, 'a>,
}

impl<'c, 'a> Before<'c, 'a> {
    fn put(
        &self,
        name: &str,
        operands: &[Value<'c, 'a>],
        attrs: &[(Identifier<'c>, Attribute<'c>)],
        results: &[Type<'c>],
    ) -> OperationRef<'c, 'a> {
        let op = OperationBuilder::new(name, self.read.location())
            .add_operands(operands)
            .add_attributes(attrs)
            .add_results(results)
            .build()
            .expect("invariant: a well-formed op");
        self.block.insert_operation_before(self.read, op)
    }

    /// A one-result op of index type.
    fn index(&self, name: &str, operands: &[Value<'c, 'a>]) -> Value<'c, 'a> {
        self.put(name, operands, &[], &[Type::index(self.cx)])
            .result(0)
            .expect("invariant: one result")
            .into()
    }

    fn constant(&self, v: i64) -> Value<'c, 'a> {
        let attr = IntegerAttribute::new(Type::index(self.cx), v).into();
        self.put(
            "arith.constant",
            &[],
            &[(Identifier::new(self.cx, "value"), attr)],
            &[Type::index(self.cx)],
        )
        .result(0)
        .expect("invariant: one result")
        .into()
    }
}
