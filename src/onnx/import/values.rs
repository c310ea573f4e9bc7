//! The importer's value table: each ONNX value name maps to an IR value or an import-time
//! constant ([`Val`]), and NNIR names are made from ONNX names.
//!
//! Invariant: a float constant becomes one `nn.weight` the first time an op uses it, and every
//! later use gets the same value; integer constants never become IR values.

use super::{Importer, R};
use crate::diag::Span;
use crate::ir::builder::FuncBuilder;
use crate::ir::{Dim, OpKind, Tensor, ValueId};

/// An ONNX value during import.
#[derive(Clone, Debug)]
pub(super) enum Val {
    /// An IR value (activations, or constants an op has already used).
    Ir(ValueId),
    /// A floating-point constant; when an op uses it, it becomes an `nn.weight` named after the
    /// ONNX value (an initializer's name).
    Float(Tensor),
    /// An integer constant (shapes, axes, indices), row-major, never part of the IR.
    Int { shape: Vec<u64>, data: Vec<i64> },
}

/// `s` with every character NNIR names do not allow (outside `[A-Za-z0-9_.$]`) made `_`.
fn nnir_chars(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Valid NNIR symbol (`[A-Za-z_][A-Za-z0-9_.$]*`) from a graph name.
pub(super) fn symbol_name(s: &str) -> String {
    let mut out = nnir_chars(s);
    if !out.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        out.insert(0, '_');
    }
    if s.is_empty() {
        out = "main".into();
    }
    out
}

impl Importer {
    pub(super) fn val(&self, name: &str) -> R<&Val> {
        self.vals
            .get(name)
            .ok_or_else(|| format!("input '{name}' is not defined"))
    }

    /// A unique NNIR value name for an ONNX name (invalid characters become `_`).
    pub(super) fn value_name(&mut self, onnx: &str) -> Option<String> {
        if onnx.is_empty() {
            return None;
        }
        let base = nnir_chars(onnx);
        let mut name = base.clone();
        let mut k = 1;
        while !self.value_names.insert(name.clone()) {
            name = format!("{base}_{k}");
            k += 1;
        }
        Some(name)
    }

    pub(super) fn weight(&mut self, base: &str, t: Tensor) -> ValueId {
        let mut name = if base.is_empty() || base == "__metadata__" {
            "weight".to_string()
        } else {
            base.to_string()
        };
        let mut k = 1;
        while !self.weight_names.insert(name.clone()) {
            name = format!("{base}.{k}");
            k += 1;
        }
        let ty = t.ty();
        let vname = self.value_name(&name);
        FuncBuilder::new(&mut self.func).push(
            OpKind::Weight { name, value: t },
            &[],
            ty,
            vname,
            Span::default(),
        )
    }

    /// The IR value of ONNX value `name`, materialising a float constant as `nn.weight`.
    pub(super) fn operand(&mut self, name: &str) -> R<ValueId> {
        match self.val(name)?.clone() {
            Val::Ir(v) => Ok(v),
            Val::Float(t) => {
                if let Some(&v) = self.materialized.get(name) {
                    return Ok(v);
                }
                let v = self.weight(name, t);
                self.materialized.insert(name.to_string(), v);
                Ok(v)
            }
            Val::Int { .. } => Err(format!(
                "integer tensor '{name}' is used as data; NNIR computes on floating-point tensors only"
            )),
        }
    }

    pub(super) fn float_const(&self, name: &str) -> Option<Tensor> {
        match self.vals.get(name) {
            Some(Val::Float(t)) => Some(t.clone()),
            _ => None,
        }
    }

    pub(super) fn int_const(&self, name: &str) -> R<(Vec<u64>, Vec<i64>)> {
        match self.val(name)? {
            Val::Int { shape, data } => Ok((shape.clone(), data.clone())),
            _ => Err(format!(
                "input '{name}' must be a constant integer tensor (computed shapes are not supported)"
            )),
        }
    }

    pub(super) fn dims(&self, name: &str) -> R<Vec<Dim>> {
        Ok(match self.val(name)? {
            Val::Ir(v) => self.func.ty(*v).dims.to_vec(),
            Val::Float(t) => t.shape().iter().map(|&d| Dim::Static(d)).collect(),
            Val::Int { shape, .. } => shape.iter().map(|&d| Dim::Static(d)).collect(),
        })
    }

    pub(super) fn push(
        &mut self,
        kind: OpKind,
        operands: &[ValueId],
        out: Option<&str>,
    ) -> R<ValueId> {
        let name = out.and_then(|o| self.value_name(o));
        FuncBuilder::new(&mut self.func).push_inferred(kind, operands, name, Span::default())
    }

    pub(super) fn bind(&mut self, onnx: &str, v: Val) {
        self.vals.insert(onnx.to_string(), v);
    }

    // ---- tensors ------------------------------------------------------------------------------
}
