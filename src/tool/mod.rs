//! The CLI layer: what `nnopt`'s subcommands do, as library functions above every other layer.

pub mod bench;
