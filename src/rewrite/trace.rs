//! Tracing of the rewrite driver and the patterns, through the `log` crate.
//!
//! The driver logs under the target `greedy-rewriter` ("processing op ...") and each pattern
//! under its own name ("pattern X applied to ...", "pattern X failed on ...: reason"). Two ways
//! to see them, both off by default so that nothing is printed unasked:
//! - `RUST_LOG` (env_logger syntax, e.g. `RUST_LOG=debug` or `RUST_LOG=sink-scatter=debug`);
//! - `--debug-only=NAME[,NAME]`, in the spirit of MLIR's `-debug-only`: every line whose target
//!   is exactly one of the names goes to stderr as `[NAME] message`.

use log::{LevelFilter, Log, Metadata, Record};

/// RUST_LOG's logger, plus the exact targets `--debug-only` selected.
struct Logger {
    debug_only: Vec<String>,
    env: env_logger::Logger,
}

impl Logger {
    fn selected(&self, target: &str) -> bool {
        self.debug_only.iter().any(|n| n == target)
    }
}

impl Log for Logger {
    fn enabled(&self, m: &Metadata) -> bool {
        self.selected(m.target()) || self.env.enabled(m)
    }

    fn log(&self, r: &Record) {
        if self.selected(r.target()) {
            eprintln!("[{}] {}", r.target(), r.args());
        } else {
            self.env.log(r);
        }
    }

    fn flush(&self) {
        self.env.flush();
    }
}

/// Installs the logger once per process: `RUST_LOG` as env_logger reads it (off when unset),
/// and every trace line of the targets in `debug_only`.
pub fn init(debug_only: &[String]) {
    let env =
        env_logger::Builder::from_env(env_logger::Env::new().filter_or("RUST_LOG", "off")).build();
    let max = if debug_only.is_empty() {
        env.filter()
    } else {
        LevelFilter::Trace
    };
    let logger = Logger {
        debug_only: debug_only.to_vec(),
        env,
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}
