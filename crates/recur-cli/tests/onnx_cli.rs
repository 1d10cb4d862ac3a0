//! `recur forward` on ONNX models: ONNX's own node tests for RNN, GRU and LSTM
//! (tests/fixtures/onnx/node, made by scripts/onnx_node_tests.py) and the fixtures of
//! scripts/gen_onnx_fixtures.py (tests/fixtures/onnx/cases), each run through the command
//! exactly as `recur forward --weights model.onnx --inputs X.safetensors --out Y.safetensors`.

use recur_onnx::io::read_safetensors;
use recur_onnx::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx")
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("recur-onnx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// The largest |y - e| / (atol + rtol |e|) over every element: at most 1 passes.
fn worst(y: &Value, e: &Value, atol: f64, rtol: f64) -> f64 {
    let (a, b) = (y.to_f64(), e.to_f64());
    a.iter()
        .zip(&b)
        .map(|(&p, &q)| (p - q).abs() / (atol + rtol * q.abs()))
        .fold(0.0, f64::max)
}

/// Runs `recur forward` on one case folder's model and data set; returns a description of
/// every mismatch (empty when all outputs agree) and the worst relative error.
fn run_case(
    model: &Path,
    inputs: &Path,
    expected: &Path,
    tag: &str,
    atol: f64,
    rtol: f64,
) -> (Vec<String>, f64) {
    let out = tmp(&format!("{tag}.safetensors"));
    let o = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(["forward", "--weights"])
        .arg(model)
        .arg("--inputs")
        .arg(inputs)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    if !o.status.success() {
        return (
            vec![format!(
                "{tag}: recur failed: {}",
                String::from_utf8_lossy(&o.stderr)
            )],
            f64::INFINITY,
        );
    }
    let y: std::collections::HashMap<String, Value> =
        read_safetensors(&out).unwrap().into_iter().collect();
    let e = read_safetensors(expected).unwrap();
    let mut bad = Vec::new();
    let mut rel = 0.0f64;
    for (name, ev) in &e {
        let Some(yv) = y.get(name) else {
            bad.push(format!("{tag}: output '{name}' missing"));
            continue;
        };
        if yv.shape != ev.shape || yv.dtype != ev.dtype {
            bad.push(format!(
                "{tag}: '{name}' is {:?} {:?}, expected {:?} {:?}",
                yv.dtype, yv.shape, ev.dtype, ev.shape
            ));
            continue;
        }
        let w = worst(yv, ev, atol, rtol);
        rel = rel.max(worst(yv, ev, 1e-30, 1.0).min(w * rtol));
        if w > 1.0 {
            bad.push(format!(
                "{tag}: '{name}' differs: {w:.2} times the tolerance (atol {atol}, rtol {rtol})"
            ));
        }
    }
    if y.len() != e.len() {
        bad.push(format!(
            "{tag}: wrote {} outputs, expected {}",
            y.len(),
            e.len()
        ));
    }
    let _ = std::fs::remove_file(&out);
    (bad, rel)
}

#[test]
fn onnx_node_tests_pass_through_recur_forward() {
    let root = fixtures().join("node");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 18,
        "expected ONNX's 18 node tests, found {}",
        cases.len()
    );
    let mut bad = Vec::new();
    for c in &cases {
        let name = c.file_name().unwrap().to_string_lossy().to_string();
        let ds = c.join("test_data_set_0");
        // ONNX's tolerance is rtol 1e-3, atol 1e-7; recur is held to 1e-5 relative.
        let (b, rel) = run_case(
            &c.join("model.onnx"),
            &ds.join("inputs.safetensors"),
            &ds.join("expected.safetensors"),
            &name,
            1e-6,
            1e-5,
        );
        println!("{name}: worst relative error {rel:.1e}");
        bad.extend(b);
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn generated_onnx_fixtures_pass_through_recur_forward() {
    let root = fixtures().join("cases");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 100,
        "expected the fixtures of scripts/gen_onnx_fixtures.py, found {}",
        cases.len()
    );
    let mut bad = Vec::new();
    let mut worst_rel = 0.0f64;
    for c in &cases {
        let name = c.file_name().unwrap().to_string_lossy().to_string();
        // ONNX Runtime's sigmoid and tanh are approximations (relative error about 1e-6).
        let (b, rel) = run_case(
            &c.join("model.onnx"),
            &c.join("inputs.safetensors"),
            &c.join("expected.safetensors"),
            &name,
            1e-6,
            1e-4,
        );
        worst_rel = worst_rel.max(rel);
        bad.extend(b);
    }
    println!(
        "{} cases, worst relative error {worst_rel:.1e}",
        cases.len()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// The Keras models of scripts/gen_keras_fixtures.py through `recur forward`, against Keras's
/// own output and ONNX Runtime's, at recur's f32 forward tolerance.
#[test]
fn keras_models_pass_through_recur_forward() {
    use recur::core::tolerance::F32_FORWARD;
    let mut cases: Vec<PathBuf> = std::fs::read_dir(fixtures().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("keras_")
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 14, "{} Keras cases", cases.len());
    let mut bad = Vec::new();
    for c in &cases {
        let name = c.file_name().unwrap().to_string_lossy().to_string();
        for reference in ["expected.safetensors", "expected_keras.safetensors"] {
            let (b, rel) = run_case(
                &c.join("model.onnx"),
                &c.join("inputs.safetensors"),
                &c.join(reference),
                &format!("{name}-{reference}"),
                F32_FORWARD.abs,
                F32_FORWARD.rel,
            );
            println!("{name} against {reference}: worst relative error {rel:.1e}");
            bad.extend(b);
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn bad_onnx_files_give_one_line_and_status_2() {
    let model = fixtures().join("node/test_lstm_defaults/model.onnx");
    let inputs = fixtures().join("node/test_lstm_defaults/test_data_set_0/inputs.safetensors");
    let bytes = std::fs::read(&model).unwrap();
    let truncated = tmp("truncated.onnx");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let garbage = tmp("garbage.onnx");
    std::fs::write(&garbage, b"\x08\x07\x12\xff\xff\xff\xff\x0fxx").unwrap();
    for m in [&truncated, &garbage] {
        let o = Command::new(env!("CARGO_BIN_EXE_recur"))
            .args(["forward", "--weights"])
            .arg(m)
            .arg("--inputs")
            .arg(&inputs)
            .arg("--out")
            .arg(tmp("never.safetensors"))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.starts_with("error: ") && err.trim_end().lines().count() == 1,
            "{err}"
        );
    }
}

#[test]
fn export_then_forward_gives_pytorchs_output() {
    let parity = fixtures().join("../parity");
    let model = tmp("exported.onnx");
    // A 2-layer bidirectional batch-first LSTM with h0/c0 and ragged lengths.
    let case = std::fs::read_dir(&parity)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("lstm_l2_bi_") && n.contains("_bf_ragged_h0_")
        });
    let Some(case) = case else {
        let names: Vec<String> = std::fs::read_dir(&parity)
            .unwrap()
            .take(5)
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        panic!("no such fixture; names look like {names:?}");
    };
    let st = |args: &[&std::ffi::OsStr]| {
        Command::new(env!("CARGO_BIN_EXE_recur"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = st(&[
        "export".as_ref(),
        "--onnx".as_ref(),
        model.as_os_str(),
        "--weights".as_ref(),
        case.as_os_str(),
        "--prefix".as_ref(),
        "params".as_ref(),
        "--batch-first".as_ref(),
        "--initial-state".as_ref(),
        "--lengths".as_ref(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // X for the exported graph: input, h0, c0 and lengths (int64 here; the graph says int32).
    let f = recur::io::state_dict::TensorFile::read(&case).unwrap();
    let mut x = Vec::new();
    for k in ["input", "h0", "c0"] {
        let t = f.float::<f32>(k).unwrap();
        x.push((k.to_string(), Value::f32(t.shape().to_vec(), t.into_data())));
    }
    let l: Vec<i64> = f
        .lengths("lengths")
        .unwrap()
        .into_iter()
        .map(|v| v as i64)
        .collect();
    x.push((
        "lengths".into(),
        Value::int(recur_onnx::DType::I64, vec![l.len()], l),
    ));
    let xp = tmp("exported_x.safetensors");
    recur_onnx::io::write_safetensors(&xp, &x).unwrap();
    let yp = tmp("exported_y.safetensors");
    let o = st(&[
        "forward".as_ref(),
        "--weights".as_ref(),
        model.as_os_str(),
        "--inputs".as_ref(),
        xp.as_os_str(),
        "--out".as_ref(),
        yp.as_os_str(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let y: std::collections::HashMap<String, Value> =
        read_safetensors(&yp).unwrap().into_iter().collect();
    for k in ["output", "h_n", "c_n"] {
        let e = f.float::<f64>(&format!("expected.{k}")).unwrap();
        let e = Value::f64(e.shape().to_vec(), e.into_data());
        assert!(worst(&y[k], &e, 1e-5, 1e-4) <= 1.0, "{k}");
    }
    // proj_size cannot be exported: one line, status 2.
    let proj = std::fs::read_dir(&parity)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n.starts_with("lstm_l1_bi_bias_bf_dense_p1_")
        });
    {
        let proj = proj.expect("a proj_size fixture");
        let o = st(&[
            "export".as_ref(),
            "--onnx".as_ref(),
            model.as_os_str(),
            "--weights".as_ref(),
            proj.as_os_str(),
            "--prefix".as_ref(),
            "params".as_ref(),
        ]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        assert!(
            err.contains("proj_size") && err.trim_end().lines().count() == 1,
            "{err}"
        );
    }
}
