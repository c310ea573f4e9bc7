//! `PassManager`: NNIR's pass pipeline, parsed from text such as
//! `prune-neurons{zero-threshold=0},dce` and run over every function of a module.
//!
//! The parser knows no pass by name: it looks names and options up in [`REGISTRY`], so its
//! errors list exactly the passes and options the registry has.

use super::{Pass, PassContext, PassOptions, REGISTRY};
use crate::diag::{Diagnostic, Span};
use crate::ir::Module;

/// A parsed pipeline: passes to run in order.
#[derive(Default)]
pub struct PassManager {
    passes: Vec<Box<dyn Pass>>,
}

impl PassManager {
    /// Parses `name{opt=value ...},name,...`; errors point into `text` (at `span` when given).
    pub fn parse(text: &str, span: Option<Span>) -> Result<PassManager, Diagnostic> {
        let err = |m: String| {
            let d = Diagnostic::error(m);
            match span {
                Some(s) => d.at(s),
                None => d,
            }
        };
        let mut passes = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            let end = rest.find([',', '{']).unwrap_or(rest.len());
            let name = rest[..end].trim();
            rest = &rest[end..];
            let mut opts: Vec<(&str, &str)> = Vec::new();
            if let Some(r) = rest.strip_prefix('{') {
                let close = r
                    .find('}')
                    .ok_or_else(|| err(format!("missing '}}' after the options of '{name}'")))?;
                for kv in r[..close].split([' ', ',']).filter(|s| !s.is_empty()) {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| err(format!("option '{kv}' of '{name}' needs '=value'")))?;
                    opts.push((k, v));
                }
                rest = &r[close + 1..];
            }
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
            } else if !rest.is_empty() {
                return Err(err(format!("expected ',' after '{name}'")));
            }
            let Some(info) = REGISTRY.iter().find(|p| p.name == name) else {
                let names: Vec<&str> = REGISTRY.iter().map(|p| p.name).collect();
                return Err(err(format!(
                    "unknown pass '{name}'; the passes are: {}",
                    names.join(", ")
                )));
            };
            for (k, _) in &opts {
                if !info.options.iter().any(|o| o.name == *k) {
                    let valid: Vec<&str> = info.options.iter().map(|o| o.name).collect();
                    return Err(err(format!(
                        "'{name}' has no option '{k}'{}",
                        if valid.is_empty() {
                            " (it takes none)".to_string()
                        } else {
                            format!("; its options are: {}", valid.join(", "))
                        }
                    )));
                }
            }
            passes.push((info.parse)(&PassOptions(opts)).map_err(err)?);
        }
        Ok(PassManager { passes })
    }

    pub fn is_empty(&self) -> bool {
        self.passes.is_empty()
    }

    /// Runs the passes over every function, verifying after each pass when `verify_each` is
    /// set (a verifier failure there is a bug in the pass, reported as such). `after_pass`
    /// sees each pass, the module after it and whether it changed anything.
    pub fn run(
        &self,
        m: &mut Module,
        verify_each: bool,
        cx: &mut PassContext,
        mut after_pass: impl FnMut(&dyn Pass, &Module, bool),
    ) -> Result<(), Vec<Diagnostic>> {
        for p in &self.passes {
            let start = std::time::Instant::now();
            let mut changed = false;
            for f in &mut m.funcs {
                changed |= p.run(f, cx);
            }
            cx.timings.push((p.name(), start.elapsed()));
            if verify_each {
                let errs = crate::verify::verify_module(m);
                if !errs.is_empty() {
                    let mut out = vec![Diagnostic::error(format!(
                        "internal error: the IR does not verify after pass '{}'",
                        p.name()
                    ))];
                    out.extend(errs);
                    return Err(out);
                }
            }
            after_pass(p.as_ref(), m, changed);
        }
        Ok(())
    }
}
