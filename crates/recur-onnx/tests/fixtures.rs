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
