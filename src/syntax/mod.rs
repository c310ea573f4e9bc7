//! The NNIR text format: lexer, grammar, AST, AST→IR reader and printer.

pub mod ast;
pub mod float;
pub mod lexer;
pub mod opattrs;
pub mod parse;
pub mod printer;
pub mod reader;
