//! `dce`: erases ops whose results are unused (the terminator stays). Idempotent.

use super::{Pass, PassContext, PassInfo, PassOptions};
use crate::ir::{Function, OpId, OpKind};
use crate::rewrite::Rewriter;

pub const INFO: PassInfo = PassInfo {
    name: "dce",
    summary: "erases ops whose results are unused",
    options: &[],
    parse: |_: &PassOptions| Ok(Box::new(Dce)),
};

/// Dead-code elimination.
pub struct Dce;

impl Pass for Dce {
    fn name(&self) -> &'static str {
        INFO.name
    }

    /// Erases unused ops, last to first, so a chain of dead ops goes in one sweep.
    fn run(&self, f: &mut Function, cx: &mut PassContext) -> bool {
        let ops: Vec<OpId> = f.ops().collect();
        let mut rw = Rewriter::new(f);
        let mut erased = 0;
        for &op in ops.iter().rev() {
            let data = rw.func().op(op);
            if matches!(data.kind, OpKind::Return) {
                continue;
            }
            if data.result().is_some_and(|r| !rw.func().has_uses(r)) {
                rw.erase_op(op);
                erased += 1;
            }
        }
        cx.count("ops erased by dce", erased);
        erased > 0
    }
}
