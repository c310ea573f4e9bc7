//! What of an ONNX model nnopt keeps besides the computation, carried through NNIR as module
//! attributes so that an ONNX → NNIR → ONNX round trip gives it back: the model's and the
//! graph's `doc_string`, the model's `metadata_props`, and the `dim_param` names of the graph's
//! inputs and outputs (NNIR types only say `?`).
//!
//! The attributes: `onnx.doc_string` and `onnx.graph_doc_string` (strings),
//! `onnx.metadata_props` (`["key", "value", ...]`), `onnx.input_dims` and `onnx.output_dims`
//! (one list per input or output, in order, with one string per dimension: its `dim_param`,
//! or `""`). Each is written only when it says something.

use crate::ir::{Attr, Module};
use crate::onnx::proto::{tensor_shape_proto, type_proto, StringStringEntryProto, ValueInfoProto};

const DOC: &str = "onnx.doc_string";
const GRAPH_DOC: &str = "onnx.graph_doc_string";
const PROPS: &str = "onnx.metadata_props";
const INPUT_DIMS: &str = "onnx.input_dims";
const OUTPUT_DIMS: &str = "onnx.output_dims";

/// The `dim_param` of each dimension of a graph input or output (`""` where there is none).
fn dim_params(vi: &ValueInfoProto) -> Vec<String> {
    use tensor_shape_proto::dimension::Value as D;
    let Some(type_proto::Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Vec::new();
    };
    let dims = tt.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or(&[]);
    dims.iter()
        .map(|d| match &d.value {
            Some(D::DimParam(p)) => p.clone(),
            _ => String::new(),
        })
        .collect()
}

/// A list of lists of dimension names, or `None` when no dimension has a name.
fn dims_attr<'a>(vis: impl Iterator<Item = &'a ValueInfoProto>) -> Option<Attr> {
    let lists: Vec<Vec<String>> = vis.map(dim_params).collect();
    if lists.iter().flatten().all(String::is_empty) {
        return None;
    }
    Some(Attr::Array(
        lists
            .into_iter()
            .map(|l| Attr::Array(l.into_iter().map(Attr::Str).collect()))
            .collect(),
    ))
}

/// The module attributes for a model: `inputs` are its graph inputs that are not initializers.
pub fn to_attrs<'a>(
    doc: &str,
    graph_doc: &str,
    props: &[StringStringEntryProto],
    inputs: impl Iterator<Item = &'a ValueInfoProto>,
    outputs: &[ValueInfoProto],
) -> Vec<(String, Attr)> {
    let mut attrs = Vec::new();
    for (key, s) in [(DOC, doc), (GRAPH_DOC, graph_doc)] {
        if !s.is_empty() {
            attrs.push((key.to_string(), Attr::Str(s.to_string())));
        }
    }
    if !props.is_empty() {
        let kv = props
            .iter()
            .flat_map(|p| [Attr::Str(p.key.clone()), Attr::Str(p.value.clone())])
            .collect();
        attrs.push((PROPS.to_string(), Attr::Array(kv)));
    }
    if let Some(a) = dims_attr(inputs) {
        attrs.push((INPUT_DIMS.to_string(), a));
    }
    if let Some(a) = dims_attr(outputs.iter()) {
        attrs.push((OUTPUT_DIMS.to_string(), a));
    }
    attrs
}

/// What a module carries back to ONNX; attributes of another shape are ignored (they were not
/// written by the importer).
#[derive(Default)]
pub struct Carried {
    pub doc: String,
    pub graph_doc: String,
    pub props: Vec<StringStringEntryProto>,
    pub input_dims: Vec<Vec<String>>,
    pub output_dims: Vec<Vec<String>>,
}

fn strings(a: &Attr) -> Vec<String> {
    match a {
        Attr::Array(v) => v
            .iter()
            .map(|x| match x {
                Attr::Str(s) => s.clone(),
                _ => String::new(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Reads the attributes [`to_attrs`] writes.
pub fn from_module(m: &Module) -> Carried {
    let mut c = Carried::default();
    for (k, a) in &m.attrs {
        match (k.as_str(), a) {
            (DOC, Attr::Str(s)) => c.doc = s.clone(),
            (GRAPH_DOC, Attr::Str(s)) => c.graph_doc = s.clone(),
            (PROPS, a) => {
                c.props = strings(a)
                    .chunks_exact(2)
                    .map(|kv| StringStringEntryProto {
                        key: kv[0].clone(),
                        value: kv[1].clone(),
                    })
                    .collect()
            }
            (INPUT_DIMS | OUTPUT_DIMS, Attr::Array(lists)) => {
                let lists = lists.iter().map(strings).collect();
                if k == INPUT_DIMS {
                    c.input_dims = lists;
                } else {
                    c.output_dims = lists;
                }
            }
            _ => {}
        }
    }
    c
}

impl Carried {
    /// The name of dimension `d` of input (or output) `i`, if the model gave it one.
    pub fn dim_name(&self, output: bool, i: usize, d: usize) -> Option<&str> {
        let lists = if output {
            &self.output_dims
        } else {
            &self.input_dims
        };
        lists
            .get(i)
            .and_then(|l| l.get(d))
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }
}
