//! Reduced-precision inference from the command line: `--precision f16|bf16|int8` of
//! `recur predict`, `recur eval` and `recur sample`, and `recur quantize` model directories
//! (written compactly, loaded back exactly: a quantized directory gives the same numbers as
//! `--precision` on the f32 one), on small models trained here on generated data; and the
//! errors (a bad value, another precision than the directory's, training into a quantized
//! directory).

use recur::io::state_dict::{DType, TensorFile};
use std::process::Output;

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{ok, recur};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;
#[path = "../../../tests/support/grammar.rs"]
mod grammar;
use grammar::grammar_text;

fn fails(o: &Output, want: &str) {
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected a failure, stdout:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains(want), "missing {want:?} in:\n{err}");
}

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

/// CoNLL-U sentences "DET NOUN VERB DET NOUN ." (a deterministic generator).
fn treebank(n: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut below = |n: usize| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x >> 33) as usize % n
    };
    let det = ["the", "a", "every"];
    let nouns = ["dog", "cat", "fish", "duck", "bird", "fox"];
    let verbs = ["sees", "likes", "finds", "chases"];
    let mut s = String::new();
    for k in 0..n {
        s += &format!("# sent_id = s{k}\n");
        let words = [
            (det[below(3)], "DET"),
            (nouns[below(6)], "NOUN"),
            (verbs[below(4)], "VERB"),
            (det[below(3)], "DET"),
            (nouns[below(6)], "NOUN"),
            (".", "PUNCT"),
        ];
        for (i, (w, u)) in words.iter().enumerate() {
            s += &format!("{}\t{w}\t_\t{u}\t_\t_\t0\tdep\t_\t_\n", i + 1);
        }
        s.push('\n');
    }
    s
}

fn eval_json(args: &[&str]) -> serde_json::Value {
    let mut a = vec!["eval"];
    a.extend_from_slice(args);
    a.push("--json");
    serde_json::from_str(ok(&recur(&a)).trim()).unwrap()
}

#[test]
fn tagger_predict_precision_and_quantized_directories() {
    let dir = TmpDir::new("prec-tag");
    let (train, dev) = (dir.path("train.conllu"), dir.path("dev.conllu"));
    std::fs::write(&train, treebank(200, 1)).unwrap();
    std::fs::write(&dev, treebank(40, 2)).unwrap();
    let m = dir.path("m");
    ok(&recur(&[
        "train",
        "tag",
        "--train",
        s(&train),
        "--out",
        s(&m),
        "--hidden-size",
        "16",
        "--embed-size",
        "12",
        "--batch-size",
        "16",
        "--epochs",
        "4",
        "--lr",
        "0.01",
    ]));
    let input = dir.path("in.txt");
    std::fs::write(&input, "the dog sees a cat .\na fox chases every bird .\n").unwrap();
    let predict = |model: &std::path::Path, extra: &[&str]| -> String {
        let mut a = vec!["predict", "--model", s(model), "--input", s(&input)];
        a.extend_from_slice(extra);
        ok(&recur(&a))
    };
    let f32_tags = predict(&m, &[]);
    assert_eq!(
        f32_tags.lines().collect::<Vec<_>>(),
        ["DET NOUN VERB DET NOUN PUNCT"; 2],
        "{f32_tags}"
    );
    let base = eval_json(&["--model", s(&m), "--data", s(&dev)]);
    for p in ["f16", "bf16", "int8"] {
        assert_eq!(predict(&m, &["--precision", p]), f32_tags, "{p}");
        let e = eval_json(&["--model", s(&m), "--data", s(&dev), "--precision", p]);
        let (a, b) = (base["loss"].as_f64().unwrap(), e["loss"].as_f64().unwrap());
        // The loss moves (the weights are rounded), but little.
        assert!(
            a != b && (a - b).abs() < 0.05 * a.max(0.01),
            "{p}: {a} vs {b}"
        );
        // The quantized directory: compact weights, the precision in config.json, and the
        // same numbers as --precision on the f32 directory.
        let q = dir.path(&format!("q-{p}"));
        let log = ok(&recur(&[
            "quantize",
            "--model",
            s(&m),
            "--precision",
            p,
            "--out",
            s(&q),
        ]));
        assert!(log.contains(&format!("{p} recurrent weights")), "{log}");
        let cfg: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(q.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["precision"], p);
        assert!(q.join("vocab.json").exists() && q.join("labels.json").exists());
        let f = TensorFile::read(q.join("model.safetensors")).unwrap();
        let w = f.raw("rnn.weight_hh_l0_reverse").unwrap();
        let want = match p {
            "f16" => DType::F16,
            "bf16" => DType::BF16,
            _ => DType::Int(8, true),
        };
        assert_eq!(w.dtype, want, "{p}");
        assert_eq!(f.contains("rnn.weight_ih_l0.scale"), p == "int8");
        assert_eq!(f.raw("rnn.bias_ih_l0").unwrap().dtype, DType::F32);
        assert_eq!(f.raw("embed.weight").unwrap().dtype, DType::F32);
        let size = |d: &std::path::Path| {
            std::fs::metadata(d.join("model.safetensors"))
                .unwrap()
                .len()
        };
        assert!(size(&q) < size(&m), "{p}: {} vs {}", size(&q), size(&m));
        let eq = eval_json(&["--model", s(&q), "--data", s(&dev)]);
        assert_eq!(eq, e, "{p}: the quantized directory vs --precision");
        assert_eq!(
            eval_json(&["--model", s(&q), "--data", s(&dev), "--precision", p]),
            e
        );
        assert_eq!(predict(&q, &[]), f32_tags);
        // The library loads it in its precision.
        let model = recur::models::seqmodel::load_dir::<f32>(&q).unwrap();
        assert_eq!(model.rnn().precision().to_string(), p);
        // Errors: another precision, quantizing again, training into it.
        fails(
            &recur(&[
                "predict",
                "--model",
                s(&q),
                "--input",
                s(&input),
                "--precision",
                if p == "f16" { "int8" } else { "f16" },
            ]),
            &format!("stored as {p}"),
        );
        fails(
            &recur(&[
                "quantize",
                "--model",
                s(&q),
                "--precision",
                p,
                "--out",
                s(&dir.path("again")),
            ]),
            "already stored",
        );
        fails(
            &recur(&[
                "train",
                "tag",
                "--train",
                s(&train),
                "--out",
                s(&q),
                "--steps",
                "2",
            ]),
            "inference only",
        );
    }
    fails(
        &recur(&[
            "predict",
            "--model",
            s(&m),
            "--input",
            s(&input),
            "--precision",
            "fp8",
        ]),
        "unknown weight precision 'fp8'",
    );
    fails(
        &recur(&[
            "quantize",
            "--model",
            s(&m),
            "--precision",
            "int8",
            "--out",
            s(&dir.path("q-int8")),
        ]),
        "already holds files",
    );
}

#[test]
fn lm_eval_sample_and_quantize_in_int8() {
    let dir = TmpDir::new("prec-lm");
    let (train, valid) = (dir.path("train.txt"), dir.path("valid.txt"));
    std::fs::write(&train, grammar_text(400, 1)).unwrap();
    std::fs::write(&valid, grammar_text(60, 2)).unwrap();
    let m = dir.path("m");
    ok(&recur(&[
        "train",
        "lm",
        "--train",
        s(&train),
        "--out",
        s(&m),
        "--hidden-size",
        "40",
        "--num-layers",
        "2",
        "--embed-size",
        "16",
        "--batch-size",
        "16",
        "--seq-len",
        "32",
        "--lr",
        "1e-2",
        "--steps",
        "60",
        "--sample-length",
        "0",
        "--layer-norm=false",
    ]));
    let base = eval_json(&["--model", s(&m), "--data", s(&valid)]);
    let e8 = eval_json(&["--model", s(&m), "--data", s(&valid), "--precision", "int8"]);
    let key = base
        .as_object()
        .unwrap()
        .keys()
        .find(|k| k.contains("bpc"))
        .expect("a bits-per-character metric")
        .clone();
    let (a, b) = (base[&key].as_f64().unwrap(), e8[&key].as_f64().unwrap());
    assert!(
        a != b && (a - b).abs() < 0.02 * a,
        "{key}: f32 {a}, int8 {b}"
    );
    let q = dir.path("q");
    ok(&recur(&[
        "quantize",
        "--model",
        s(&m),
        "--precision",
        "int8",
        "--out",
        s(&q),
    ]));
    assert_eq!(eval_json(&["--model", s(&q), "--data", s(&valid)]), e8);
    let sample = |model: &std::path::Path, extra: &[&str]| -> String {
        let mut a = vec![
            "sample",
            "--model",
            s(model),
            "--prime",
            "the ",
            "--length",
            "60",
            "--seed",
            "3",
        ];
        a.extend_from_slice(extra);
        ok(&recur(&a))
    };
    let s8 = sample(&m, &["--precision", "int8"]);
    assert_eq!(sample(&q, &[]), s8);
    assert!(s8.starts_with("the ") && s8.chars().count() >= 64, "{s8}");
    // predict of a language model with --precision, and on the quantized directory.
    let input = dir.path("in.txt");
    std::fs::write(&input, "the \n").unwrap();
    let p = |model: &std::path::Path, extra: &[&str]| {
        let mut a = vec![
            "predict",
            "--model",
            s(model),
            "--input",
            s(&input),
            "--max-len",
            "20",
        ];
        a.extend_from_slice(extra);
        ok(&recur(&a))
    };
    assert_eq!(p(&q, &[]), p(&m, &["--precision", "int8"]));
    fails(
        &recur(&["sample", "--model", s(&m), "--precision", "int4"]),
        "unknown weight precision 'int4'",
    );
    fails(
        &recur(&[
            "train",
            "lm",
            "--train",
            s(&train),
            "--out",
            s(&q),
            "--steps",
            "2",
        ]),
        "inference only",
    );
}
