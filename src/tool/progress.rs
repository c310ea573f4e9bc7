//! A spinner on stderr for work that can take seconds (importing a large model, compiling,
//! the equivalence check), so a user at a terminal sees that nnopt is busy and on what.
//!
//! Shown only when stderr is a terminal: in pipes, logs and tests stderr carries diagnostics
//! alone. The spinner is cleared when the work ends, before anything else is printed.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// A running spinner (or nothing, when stderr is not a terminal); cleared on drop.
pub struct Progress(Option<ProgressBar>);

impl Progress {
    /// Shows `message` with a spinner and the elapsed time until the value is dropped.
    pub fn start(message: impl Into<String>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress(None);
        }
        let bar = ProgressBar::new_spinner().with_message(message.into());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                .expect("invariant: the template is valid"),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress(Some(bar))
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}
