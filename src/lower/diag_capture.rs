//! [`DiagCapture`]: MLIR's diagnostics collected as text, so that a failure of the verifier, a
//! pass or the translation to LLVM IR reports MLIR's own messages.

use melior::Context;
use std::cell::RefCell;
use std::rc::Rc;

/// Collects MLIR's diagnostics while alive, so a verifier or pass failure reports MLIR's own
/// text instead of a bare "failed".
pub struct DiagCapture<'c> {
    cx: &'c Context,
    id: Option<melior::diagnostic::DiagnosticHandlerId>,
    messages: Rc<RefCell<Vec<String>>>,
}

impl<'c> DiagCapture<'c> {
    /// Starts collecting `cx`'s diagnostics, until dropped.
    pub fn new(cx: &'c Context) -> Self {
        let messages = Rc::new(RefCell::new(Vec::new()));
        let sink = messages.clone();
        let id = cx.attach_diagnostic_handler(move |d| {
            let mut text = d.to_string();
            for i in 0..d.note_count() {
                if let Ok(n) = d.note(i) {
                    text.push_str(&format!("\n  note: {n}"));
                }
            }
            sink.borrow_mut().push(format!("{}: {text}", d.location()));
            true
        });
        DiagCapture {
            cx,
            id: Some(id),
            messages,
        }
    }

    /// The messages so far, one per line.
    pub fn take(&self) -> String {
        std::mem::take(&mut *self.messages.borrow_mut()).join("\n")
    }
}

impl Drop for DiagCapture<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            self.cx.detach_diagnostic_handler(id);
        }
    }
}
