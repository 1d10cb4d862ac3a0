//! Export round trip without Python: every layer fixture of tests/fixtures/parity (PyTorch
//! state_dicts with PyTorch's float64 outputs) is exported with `recur_onnx::export`, read back
//! by recur-onnx's reader and run; the outputs must be PyTorch's to f32 tolerance. (That ONNX
//! Runtime and onnx.checker accept the same files is checked by scripts/check_onnx_export.py.)

use recur::io::state_dict::{load_rnn, LoadOptions, TensorFile};
use recur::Rnn;
use recur_onnx::export::{export_rnn, layer_weights, ExportOptions};
use recur_onnx::{Model, Value};
use std::collections::HashMap;
use std::path::Path;

#[test]
fn exported_parity_fixtures_give_pytorchs_outputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/parity");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    let (mut ran, mut refused) = (0, 0);
    let mut bad = Vec::new();
    for p in paths {
        let f = TensorFile::read(&p).unwrap();
        let m = f.metadata().clone();
        if m["module"] != "layer"
            || !matches!(
                m.get("dropout").map(|s| s.as_str()),
                None | Some("0") | Some("0.0")
            )
        {
            continue;
        }
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        let bf = m["batch_first"] == "true";
        let opts = LoadOptions {
            prefix: Some("params".into()),
            relu: (m["mode"] == "rnn_relu").then_some(true),
            batch_first: bf,
        };
        let rnn: Rnn<f32> = load_rnn(&f, &opts).unwrap();
        let has_h0 = m["has_h0"] == "true";
        let ragged = m["ragged"] == "true";
        let eo = ExportOptions {
            batch_first: bf,
            initial_state: has_h0,
            lengths: ragged,
            ..Default::default()
        };
        let bytes = match export_rnn(&rnn, &eo) {
            Ok(b) => b,
            Err(e) => {
                assert!(
                    m["proj_size"] != "0" && e.to_string().contains("proj_size"),
                    "{name}: {e}"
                );
                assert!(layer_weights(&rnn, 0).is_err());
                refused += 1;
                continue;
            }
        };
        assert_eq!(m["proj_size"], "0", "{name}: exported a projection");
        let model = Model::from_bytes(&bytes, &name).unwrap();
        let mut feeds = HashMap::new();
        let fl = |k: &str| {
            let t = f.float::<f32>(k).unwrap();
            Value::f32(t.shape().to_vec(), t.into_data())
        };
        feeds.insert("input".to_string(), fl("input"));
        if has_h0 {
            feeds.insert("h0".to_string(), fl("h0"));
            if m["mode"] == "lstm" {
                feeds.insert("c0".to_string(), fl("c0"));
            }
        }
        if ragged {
            let l: Vec<i64> = f
                .lengths("lengths")
                .unwrap()
                .into_iter()
                .map(|v| v as i64)
                .collect();
            feeds.insert(
                "lengths".to_string(),
                Value::int(recur_onnx::DType::I32, vec![l.len()], l),
            );
        }
        let out: HashMap<String, Value> =
            model.run(&feeds, "fixture").unwrap().into_iter().collect();
        for k in ["output", "h_n", "c_n"] {
            let key = format!("expected.{k}");
            if !f.contains(&key) {
                continue;
            }
            let e = f.float::<f64>(&key).unwrap();
            let g = &out[k];
            assert_eq!(g.shape, e.shape(), "{name}: {k}");
            let w = g
                .to_f64()
                .iter()
                .zip(e.data())
                .map(|(&a, &b)| (a - b).abs() / (1e-5 + 1e-4 * b.abs()))
                .fold(0.0, f64::max);
            if w > 1.0 {
                bad.push(format!("{name}: {k} is {w:.2} times the tolerance"));
            }
        }
        ran += 1;
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(ran > 150 && refused > 0, "ran {ran}, refused {refused}");
}
