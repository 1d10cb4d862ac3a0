//! Every ONNX fixture (ONNX's node tests and scripts/gen_onnx_fixtures.py's cases) run through
//! the library: `Model::read`, `Model::run`, outputs compared with the reference's.

use recur_onnx::io::read_safetensors;
use recur_onnx::{Model, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

/// (model, inputs, expected) of every case under `dir`.
fn cases(dir: &str) -> Vec<(String, PathBuf, PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    for d in dirs {
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        let ds = if d.join("test_data_set_0").exists() {
            d.join("test_data_set_0")
        } else {
            d.clone()
        };
        out.push((
            name,
            d.join("model.onnx"),
            ds.join("inputs.safetensors"),
            ds.join("expected.safetensors"),
        ));
    }
    out
}

fn check(dir: &str, atol: f64, rtol: f64, at_least: usize) {
    let all = cases(dir);
    assert!(all.len() >= at_least, "{dir}: {} cases", all.len());
    let mut bad = Vec::new();
    for (name, model, inputs, expected) in &all {
        let m = Model::read(model).unwrap_or_else(|e| panic!("{name}: {e}"));
        let feeds: HashMap<String, Value> = read_safetensors(inputs).unwrap().into_iter().collect();
        let out = match m.run(&feeds, "inputs") {
            Ok(o) => o,
            Err(e) => {
                bad.push(format!("{name}: {e}"));
                continue;
            }
        };
        let got: HashMap<String, Value> = out.into_iter().collect();
        for (k, e) in read_safetensors(expected).unwrap() {
            let y = &got[&k];
            assert_eq!((y.dtype, &y.shape), (e.dtype, &e.shape), "{name}: {k}");
            let w = y
                .to_f64()
                .iter()
                .zip(e.to_f64())
                .map(|(&p, q)| (p - q).abs() / (atol + rtol * q.abs()))
                .fold(0.0, f64::max);
            if w > 1.0 {
                bad.push(format!("{name}: {k} is {w:.2} times the tolerance"));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn onnx_node_tests() {
    check("node", 1e-6, 1e-5, 18);
}

#[test]
fn generated_cases() {
    check("cases", 1e-6, 1e-4, 100);
}

#[test]
fn the_same_model_runs_twice_with_the_same_result() {
    // The fast layer built from constant weights on the first run is reused on the second.
    let d = root().join("cases/lstm_const_weights");
    let m = Model::read(d.join("model.onnx")).unwrap();
    let feeds: HashMap<String, Value> = read_safetensors(&d.join("inputs.safetensors"))
        .unwrap()
        .into_iter()
        .collect();
    let a = m.run(&feeds, "x").unwrap();
    let b = m.run(&feeds, "x").unwrap();
    assert_eq!(a, b);
}

/// The Keras models of scripts/gen_keras_fixtures.py (`cases/keras_*`: Embedding → LSTM or
/// GRU → Dense, converted by tf2onnx; GRUs and masked layers as ONNX `Loop`s) against both
/// references: Keras's own output and ONNX Runtime's, at recur's f32 forward tolerance.
#[test]
fn keras_models_match_keras_and_onnx_runtime() {
    use recur::core::tolerance::F32_FORWARD;
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("keras_")
        })
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 14, "{} Keras cases", dirs.len());
    let mut bad = Vec::new();
    let mut loops = 0;
    for d in &dirs {
        let name = d.file_name().unwrap().to_string_lossy().to_string();
        let m = Model::read(d.join("model.onnx")).unwrap_or_else(|e| panic!("{name}: {e}"));
        loops += m.graph().nodes.iter().any(|n| n.op == "Loop") as usize;
        let feeds: HashMap<String, Value> = read_safetensors(&d.join("inputs.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
        let got: HashMap<String, Value> = m
            .run(&feeds, "inputs")
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .into_iter()
            .collect();
        for reference in ["expected.safetensors", "expected_keras.safetensors"] {
            for (k, e) in read_safetensors(&d.join(reference)).unwrap() {
                let y = &got[&k];
                assert_eq!((y.dtype, &y.shape), (e.dtype, &e.shape), "{name}: {k}");
                for (i, (&a, r)) in y.to_f64().iter().zip(e.to_f64()).enumerate() {
                    if !F32_FORWARD.ok(a, r) {
                        bad.push(format!("{name}: {k}[{i}] = {a}, {reference} has {r}"));
                    }
                }
            }
        }
    }
    // GRUs and masked layers stay TensorFlow while loops: the Loop operator is exercised.
    assert!(loops >= 8, "only {loops} of the Keras cases have a Loop");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}
