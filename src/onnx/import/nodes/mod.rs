//! Node translation: [`Importer::node`] checks the domain and dispatches on the operator to
//! one function per operator, grouped by family in this folder. Each translation refuses the
//! attributes it does not read and binds the node's first output.
//!
//! Invariant: a node either binds its output or returns an error; nothing is skipped silently
//! (the one exception, an Add folded into the MatMul before it as the bias, is recorded in
//! `Importer::skip` by `dense.rs`).

mod arith;
mod chains;
mod constant;
mod conv;
mod dense;
mod identity;
mod mask;
mod norm;
mod plumbing;
mod reduce;
mod scatter;
mod select;
mod shape;
mod unary;

use crate::onnx::import::attrs::Attrs;
use crate::onnx::import::{Importer, R};
use crate::onnx::proto::{GraphProto, NodeProto};
pub(super) use chains::Chain;

impl Importer {
    /// Translates node `n` of graph `g` (the graph, for a look at the node's users).
    pub(super) fn node(&mut self, n: &NodeProto, g: &GraphProto) -> R<()> {
        if !(n.domain.is_empty() || n.domain == "ai.onnx") {
            return Err(format!("domain '{}' is not supported", n.domain));
        }
        let out = n
            .output
            .first()
            .map(String::as_str)
            .filter(|s| !s.is_empty())
            .ok_or("the node has no output")?;
        let a = Attrs(&n.attribute);
        if let Some(kind) = unary::unary_kind(&n.op_type, &a)? {
            return self.unary(n, kind, out);
        }
        if self.run_time_bool(n, &a, out)?.is_some() || self.plumbing(n, &a, out)?.is_some() {
            return Ok(());
        }
        self.translate(n, &a, g, out)?;
        self.keep_bool(n, out);
        Ok(())
    }

    /// The translations with one function per operator.
    fn translate(&mut self, n: &NodeProto, a: &Attrs<'_>, g: &GraphProto, out: &str) -> R<()> {
        match n.op_type.as_str() {
            "Identity" => self.identity(n, a, out),
            "Dropout" => self.dropout(n, a, out),
            "HardSigmoid" => self.hard_sigmoid(n, a, out),
            "Clip" => self.clip(n, a, out),
            "Add" | "Sub" | "Mul" => self.add_sub_mul(n, a, out),
            "Div" => self.div(n, a, out),
            "Conv" => self.conv(n, a, out),
            "Gemm" => self.gemm(n, a, out),
            "MatMul" => self.matmul(n, a, g, out),
            "Concat" => self.concat(n, a, g, out),
            "MaxPool" | "AveragePool" => self.pool(n, a, out),
            "ReduceMean" => self.reduce_mean(n, a, out),
            "BatchNormalization" => self.batch_norm(n, a, out),
            "Flatten" => self.flatten(n, a, out),
            "Reshape" => self.reshape(n, a, out),
            "Squeeze" | "Unsqueeze" => self.squeeze_unsqueeze(n, a, out),
            "Transpose" => self.transpose(n, a, out),
            "LayerNormalization" => self.layer_norm(n, a, out),
            "RMSNormalization" => self.rms_norm(n, a, out),
            "Constant" => self.constant(n, out),
            "Shape" => self.shape(n, a, out),
            "Gather" => self.gather(n, a, out),
            "Mod" => self.modulo(n, a, out),
            "Slice" => self.slice(n, a, out),
            "Split" => self.split(n, a),
            "Sqrt" => self.sqrt(n, a, out),
            "Expand" => self.expand(n, a, g, out),
            "Cast" => self.cast(n, a, out),
            "Neg" => self.neg(n, a, out),
            "Pow" | "Erf" | "Reciprocal" => Err(chains::outside_chain(&n.op_type)),
            _ => Err("this operator is not supported".into()),
        }
    }

    fn input(n: &NodeProto, i: usize) -> Option<&str> {
        n.input.get(i).map(String::as_str).filter(|s| !s.is_empty())
    }

    fn need(n: &NodeProto, i: usize) -> R<&str> {
        Self::input(n, i).ok_or_else(|| format!("input {i} is missing"))
    }

    /// Refuses a node whose secondary outputs (masks, indices, saved statistics) are used.
    fn only_first_output(&self, n: &NodeProto) -> R<()> {
        for o in n.output.iter().skip(1).filter(|s| !s.is_empty()) {
            if self.consumers.contains_key(o) {
                return Err(format!(
                    "output '{o}' is used, but only the first output is supported"
                ));
            }
        }
        Ok(())
    }
}
