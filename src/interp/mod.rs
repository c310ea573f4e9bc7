//! Reference interpreter: plain, obviously-correct implementations of every op, used as the
//! oracle that proves optimized networks compute exactly the same outputs.

pub mod kernels;
