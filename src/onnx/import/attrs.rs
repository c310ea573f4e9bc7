//! Typed access to a node's attributes, and the check that refuses every attribute a
//! translation does not read (so that none is ignored silently).

use super::R;
use crate::onnx::proto::{attr_type, AttributeProto};

/// Typed access to a node's attributes.
pub(super) struct Attrs<'a>(pub(super) &'a [AttributeProto]);

impl<'a> Attrs<'a> {
    pub(super) fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.iter().find(|a| a.name == name)
    }

    /// Refuses attributes the converter does not know (so none is ignored silently).
    pub(super) fn only(&self, known: &[&str]) -> R<()> {
        for a in self.0 {
            if !a.ref_attr_name.is_empty() {
                return Err(format!(
                    "attribute '{}' refers to a function attribute",
                    a.name
                ));
            }
            if !known.contains(&a.name.as_str()) {
                return Err(format!("attribute '{}' is not supported", a.name));
            }
        }
        Ok(())
    }

    pub(super) fn int(&self, name: &str, default: i64) -> R<i64> {
        match self.get(name) {
            None => Ok(default),
            Some(a) if a.r#type == attr_type::INT || a.r#type == 0 => Ok(a.i),
            Some(_) => Err(format!("attribute '{name}' must be an integer")),
        }
    }

    pub(super) fn float(&self, name: &str, default: f32) -> R<f32> {
        match self.get(name) {
            None => Ok(default),
            Some(a) if a.r#type == attr_type::FLOAT || a.r#type == 0 => Ok(a.f),
            Some(_) => Err(format!("attribute '{name}' must be a float")),
        }
    }

    pub(super) fn ints(&self, name: &str) -> R<Option<Vec<i64>>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == attr_type::INTS || a.r#type == 0 => Ok(Some(a.ints.clone())),
            Some(_) => Err(format!("attribute '{name}' must be a list of integers")),
        }
    }

    pub(super) fn string(&self, name: &str) -> R<Option<String>> {
        match self.get(name) {
            None => Ok(None),
            Some(a) if a.r#type == attr_type::STRING || a.r#type == 0 => {
                Ok(Some(String::from_utf8_lossy(&a.s).into_owned()))
            }
            Some(_) => Err(format!("attribute '{name}' must be a string")),
        }
    }
}
