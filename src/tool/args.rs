//! Command-line habits from other tools: LLVM's single-dash long flags, rewritten to clap's
//! double-dash form before parsing.

use std::collections::HashSet;
use std::ffi::OsString;

/// The long flag names (without dashes) of `cmd` and all its subcommands.
pub fn long_flags(cmd: &clap::Command) -> HashSet<String> {
    let mut names: HashSet<String> = cmd
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .collect();
    for sub in cmd.get_subcommands() {
        names.extend(long_flags(sub));
    }
    names
}

/// Rewrites `-name` and `-name=value` to `--name...` where `name` is one of `longs`, as
/// mlir-opt and the other LLVM tools accept them. A single-letter `-o` stays a short flag, and
/// so does anything that is not a known long name (`-ofile` is `-o file`); arguments after
/// `--` are left alone.
pub fn single_dash_long_flags(
    args: impl IntoIterator<Item = OsString>,
    longs: &HashSet<String>,
) -> Vec<OsString> {
    let mut after_separator = false;
    args.into_iter()
        .map(|arg| {
            let Some(s) = arg.to_str().filter(|_| !after_separator) else {
                return arg;
            };
            if s == "--" {
                after_separator = true;
                return arg;
            }
            let name = s
                .strip_prefix('-')
                .filter(|rest| !rest.starts_with('-'))
                .map(|rest| rest.split_once('=').map_or(rest, |(n, _)| n));
            match name {
                Some(n) if n.len() > 1 && longs.contains(n) => format!("-{s}").into(),
                _ => arg,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_known_long_names_only() {
        let longs: HashSet<String> = ["prune-neurons", "pass-pipeline", "output"]
            .map(String::from)
            .into();
        let args = [
            "nnopt",
            "-prune-neurons",
            "-pass-pipeline=dce",
            "-o",
            "-ofile.nnir",
            "-output",
            "--",
            "-prune-neurons",
            "-",
        ]
        .map(OsString::from);
        let got = single_dash_long_flags(args, &longs);
        let want = [
            "nnopt",
            "--prune-neurons",
            "--pass-pipeline=dce",
            "-o",
            "-ofile.nnir",
            "--output",
            "--",
            "-prune-neurons",
            "-",
        ]
        .map(OsString::from);
        assert_eq!(got, want);
    }
}
