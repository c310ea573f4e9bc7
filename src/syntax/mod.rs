//! The NNIR text format: lexer, grammar, AST, AST→IR builder and printer.

pub mod float;
pub mod lexer;
