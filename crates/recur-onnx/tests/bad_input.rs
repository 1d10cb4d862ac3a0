//! Untrusted input: corrupt, truncated and hostile ONNX files give errors, never panics or
//! huge allocations. tests/fixtures/onnx/bad/ holds inputs the fuzzer (fuzz/) once crashed on.

use recur_onnx::reader::Dim;
use recur_onnx::{DType, Error, Model, Value};
use std::collections::HashMap;
use std::path::Path;

fn root() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

/// What the fuzz target does: load, then run on small inputs under a small budget.
fn load_and_run(bytes: &[u8]) {
    let Ok(mut m) = Model::from_bytes(bytes, "x") else {
        return;
    };
    m.set_max_elements(1 << 22);
    let mut feeds = HashMap::new();
    for info in m.required_inputs() {
        let shape: Vec<usize> = info.shape.as_ref().map_or(vec![2], |s| {
            s.iter()
                .map(|d| if let Dim::Fixed(n) = d { *n } else { 2 })
                .collect()
        });
        let n: usize = shape.iter().product();
        if n > 4096 {
            return;
        }
        let v = match info.dtype.unwrap_or(DType::F32) {
            DType::F32 => Value::f32(shape, vec![0.5; n]),
            DType::F64 => Value::f64(shape, vec![0.5; n]),
            t => Value::int(t, shape, vec![1; n]),
        };
        feeds.insert(info.name.clone(), v);
    }
    let _ = m.run(&feeds, "x");
}

#[test]
fn fuzzer_finds_stay_fixed() {
    for e in std::fs::read_dir(root().join("bad")).unwrap() {
        load_and_run(&std::fs::read(e.unwrap().path()).unwrap());
    }
}

#[test]
fn every_truncation_and_byte_flip_of_a_model_is_an_error_or_runs() {
    let bytes = std::fs::read(root().join("node/test_gru_seq_length/model.onnx")).unwrap();
    for n in 0..bytes.len() {
        load_and_run(&bytes[..n]);
    }
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            load_and_run(&b);
        }
    }
}

#[test]
fn a_tensor_claiming_more_data_than_the_file_holds_is_rejected_before_allocating() {
    use prost::Message;
    use recur_onnx::proto::*;
    // An initializer of shape (2^20, 2^20) with 4 bytes of raw data.
    let t = TensorProto {
        name: "W".into(),
        dims: vec![1 << 20, 1 << 20],
        data_type: data_type::FLOAT,
        raw_data: vec![0; 4],
        ..Default::default()
    };
    let m = ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        graph: Some(GraphProto {
            initializer: vec![t],
            output: vec![ValueInfoProto {
                name: "W".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = Model::from_bytes(&m.encode_to_vec(), "huge.onnx").unwrap_err();
    assert!(matches!(err, Error::Malformed(_)), "{err}");
    assert!(err.to_string().contains("initializer 'W'"), "{err}");
}

#[test]
fn unsupported_operators_and_opsets_are_named() {
    use prost::Message;
    use recur_onnx::proto::*;
    let model = |op: &str, opset: i64| {
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: opset,
            }],
            graph: Some(GraphProto {
                node: vec![NodeProto {
                    op_type: op.into(),
                    name: "n1".into(),
                    input: vec!["x".into()],
                    output: vec!["y".into()],
                    ..Default::default()
                }],
                input: vec![ValueInfoProto {
                    name: "x".into(),
                    ..Default::default()
                }],
                output: vec![ValueInfoProto {
                    name: "y".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        }
        .encode_to_vec()
    };
    let e = Model::from_bytes(&model("Conv", 17), "m.onnx")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("node 'n1' (Conv)") && e.contains("operator Conv is not supported"),
        "{e}"
    );
    let e = Model::from_bytes(&model("Relu", 23), "m.onnx")
        .unwrap_err()
        .to_string();
    assert!(e.contains("opset 23"), "{e}");
    // A recurrent node with an attribute value ONNX does not define.
    let mut m = ModelProto::decode(&model("LSTM", 17)[..]).unwrap();
    m.graph.as_mut().unwrap().node[0]
        .attribute
        .push(AttributeProto {
            name: "direction".into(),
            r#type: attr_type::STRING,
            s: b"sideways".to_vec(),
            ..Default::default()
        });
    let e = Model::from_bytes(&m.encode_to_vec(), "m.onnx")
        .unwrap_err()
        .to_string();
    assert!(e.contains("direction") && e.contains("sideways"), "{e}");
}
