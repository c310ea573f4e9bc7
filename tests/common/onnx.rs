//! Builders of small ONNX models for the tests that import and export them (`tests/onnx.rs`,
//! `tests/onnx_roundtrip.rs`, `tests/onnx_chains.rs`); declared by those alone, so the other
//! test binaries that share `common/mod.rs` do not carry them unused.

use bytes::Bytes;
use nnopt::onnx::proto::{
    attr_type, data_type, tensor_shape_proto, type_proto, AttributeProto, GraphProto, ModelProto,
    NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};
use prost::Message;
use std::path::{Path, PathBuf};

/// An INTS attribute.
pub fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: attr_type::INTS,
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A float initializer with `values` as raw little-endian data.
pub fn f32_init(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    TensorProto {
        dims: dims.to_vec(),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data: Bytes::from(raw),
        ..Default::default()
    }
}

/// A float tensor whose dimensions are `DimValue`s, or `DimParam`s where given as names.
pub fn io(name: &str, dims: &[Result<i64, &str>]) -> ValueInfoProto {
    use tensor_shape_proto::{dimension::Value, Dimension};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Ok(n) => Value::DimValue(*n),
                Err(p) => Value::DimParam(p.to_string()),
            }),
        })
        .collect();
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: data_type::FLOAT,
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
    }
}

pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attrs: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        name: name.into(),
        op_type: op.into(),
        domain: String::new(),
        attribute: attrs,
    }
}

/// `graph` as an IR version 8, opset 17 model.
pub fn model(graph: GraphProto) -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        producer_name: "test".into(),
        graph: Some(graph),
        ..Default::default()
    }
}

/// Writes `m` to `dir/name`; returns the path.
pub fn write(dir: &Path, name: &str, m: &ModelProto) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, m.encode_to_vec()).unwrap();
    p
}
