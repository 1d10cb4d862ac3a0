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
    load_and_run_within(bytes, 1 << 22)
}

/// Loads and runs under a budget of `max_elements` (also the most iterations of the loops).
fn load_and_run_within(bytes: &[u8], max_elements: usize) {
    let Ok(mut m) = Model::from_bytes(bytes, "x") else {
        return;
    };
    m.set_max_elements(max_elements);
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

fn loop_fixture(name: &str) -> recur_onnx::proto::ModelProto {
    use prost::Message;
    let bytes = std::fs::read(root().join("cases").join(name).join("model.onnx")).unwrap();
    recur_onnx::proto::ModelProto::decode(bytes.as_slice()).unwrap()
}

#[test]
fn every_truncation_and_byte_flip_of_a_loop_model_is_an_error_or_runs() {
    use prost::Message;
    // A flipped byte of the trip count M can ask for 2^63 iterations: a small budget keeps
    // each such run short (it stops at the budget's iterations or elements).
    let bytes = loop_fixture("glue_loop_for").encode_to_vec();
    for n in 0..bytes.len() {
        load_and_run_within(&bytes[..n], 1 << 12);
    }
    for i in 0..bytes.len() {
        for flip in [0x01u8, 0x80, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= flip;
            load_and_run_within(&b, 1 << 12);
        }
    }
}

#[test]
fn a_loop_that_never_ends_stops_at_the_iteration_limit() {
    use prost::Message;
    // The while loop runs until k reaches `limit`: fed i64::MAX, it would not end.
    let mut m =
        Model::from_bytes(&loop_fixture("glue_loop_while").encode_to_vec(), "w.onnx").unwrap();
    m.set_max_elements(1000);
    let feeds = HashMap::from([
        ("k0".to_string(), Value::int(DType::I64, vec![1], vec![0])),
        (
            "limit".to_string(),
            Value::int(DType::I64, vec![1], vec![i64::MAX]),
        ),
    ]);
    let e = m.run(&feeds, "x").unwrap_err().to_string();
    // The scan output grows by one element per iteration: the element limit stops it.
    assert!(
        e.contains("1000 iterations") || e.contains("more than 1000 elements"),
        "{e}"
    );
}

#[test]
fn loop_bodies_are_checked_when_the_model_is_loaded() {
    use prost::Message;
    use recur_onnx::proto::*;
    // A name the body uses that no graph defines.
    let mut m = loop_fixture("glue_loop_for");
    let g = m.graph.as_mut().unwrap();
    let body = g.node[0].attribute[0].g.as_mut().unwrap();
    body.node[1].input[0] = "nowhere".into();
    let e = Model::from_bytes(&m.encode_to_vec(), "l.onnx")
        .unwrap_err()
        .to_string();
    assert!(e.contains("'nowhere'") && e.contains("Mul"), "{e}");
    // An unsupported operator inside the body is named.
    let mut m = loop_fixture("glue_loop_for");
    let body = m.graph.as_mut().unwrap().node[0].attribute[0]
        .g
        .as_mut()
        .unwrap();
    body.node[0].op_type = "Conv".into();
    let e = Model::from_bytes(&m.encode_to_vec(), "l.onnx")
        .unwrap_err()
        .to_string();
    assert!(e.contains("operator Conv is not supported"), "{e}");
    // Inputs and outputs of the body that do not fit the node.
    let mut m = loop_fixture("glue_loop_for");
    m.graph.as_mut().unwrap().node[0].output.pop();
    let e = Model::from_bytes(&m.encode_to_vec(), "l.onnx")
        .unwrap_err()
        .to_string();
    assert!(e.contains("needs a body with 2 + N inputs"), "{e}");
    // Graphs nested deeper than the reader allows: each level's body is a Loop again.
    let base = loop_fixture("glue_loop_for");
    let mut g = base.graph.clone().unwrap();
    for _ in 0..recur_onnx::reader::MAX_GRAPH_DEPTH + 1 {
        let mut outer = base.graph.clone().unwrap();
        outer.node[0].attribute[0].g = Some(Box::new(g));
        g = outer;
    }
    let deep = ModelProto {
        graph: Some(g),
        ..base
    };
    let e = Model::from_bytes(&deep.encode_to_vec(), "deep.onnx")
        .unwrap_err()
        .to_string();
    assert!(e.contains("nested more than"), "{e}");
}
