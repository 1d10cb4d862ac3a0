//! `recur train lm` and `recur sample` end to end on a small generated text: the model
//! directory's files, the validation curve, deterministic sampling; bad files and options give
//! one `error:` line and exit status 2, never a panic.

use recur::io::state_dict::TensorFile;
use std::path::Path;

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;
#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur, s};
#[path = "../../../tests/support/grammar.rs"]
mod grammar;
use grammar::grammar_text;

#[test]
fn train_lm_writes_the_model_directory_and_sample_is_deterministic() {
    let dir = TmpDir::new("train");
    let train = dir.path("train.txt");
    std::fs::write(&train, grammar_text(600, 1)).unwrap();
    let model = dir.path("model");
    let o = recur(&[
        "train",
        "lm",
        "--train",
        s(&train),
        "--out",
        s(&model),
        "--hidden-size",
        "48",
        "--num-layers",
        "1",
        "--embed-size",
        "16",
        "--batch-size",
        "16",
        "--seq-len",
        "32",
        "--lr",
        "1e-2",
        "--steps",
        "150",
        "--eval-every",
        "50",
        "--log-every",
        "0.05",
        "--sample-length",
        "80",
    ]);
    let out = ok(&o);
    // Not on a terminal: plain progress lines on stderr.
    let err = String::from_utf8_lossy(&o.stderr);
    for want in [
        "done 150/150 (100.0%)",
        "step/s",
        "char/s",
        "elapsed",
        "ETA",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    for want in [
        "the last 5% of",
        "unigram baseline",
        "eval at step 50: valid_bpc",
        "eval at step 150",
        "final (step 150): valid_bpc",
        "sample (best model",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }

    // metrics.json: the curve, the best point, and well below the unigram baseline.
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("metrics.json")).unwrap())
            .unwrap();
    let curve = metrics["curve"].as_array().unwrap();
    let steps: Vec<u64> = curve.iter().map(|p| p["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [50, 100, 150]);
    let unigram = metrics["report"]["unigram_bpc"].as_f64().unwrap();
    let best = metrics["best"]["valid_bpc"].as_f64().unwrap();
    let min = curve
        .iter()
        .map(|p| p["valid_bpc"].as_f64().unwrap())
        .fold(f64::INFINITY, f64::min);
    assert_eq!(best, min);
    assert!(best < 0.5 * unigram, "best {best}, unigram {unigram}");
    assert_eq!(metrics["final"]["step"], 150);
    assert!(metrics["units_per_second"].as_f64().unwrap() > 0.0);

    // config.json and vocab.json.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model"], "char_lm");
    assert_eq!(config["cell"], "lstm");
    assert_eq!(config["hidden_size"], 48);
    assert_eq!(config["training"]["trajectory"]["config"]["seq_len"], 32);
    let vocab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("vocab.json")).unwrap()).unwrap();
    assert_eq!(vocab["tokens"][0], "<unk>");
    assert_eq!(
        vocab["tokens"].as_array().unwrap().len() as u64,
        config["vocab_size"].as_u64().unwrap()
    );

    // model.safetensors: PyTorch names, and the layer norms of the default model (gains and
    // biases of the input and recurrent pre-activations and of the cell state).
    let f = TensorFile::read(model.join("model.safetensors")).unwrap();
    let names: Vec<&str> = f.names().collect();
    assert_eq!(
        names,
        [
            "embed.weight",
            "head.bias",
            "head.weight",
            "rnn.bias_hh_l0",
            "rnn.bias_ih_l0",
            "rnn.ln_c_bias_l0",
            "rnn.ln_c_weight_l0",
            "rnn.ln_hh_bias_l0",
            "rnn.ln_hh_weight_l0",
            "rnn.ln_ih_bias_l0",
            "rnn.ln_ih_weight_l0",
            "rnn.weight_hh_l0",
            "rnn.weight_ih_l0"
        ]
    );
    assert_eq!(f.raw("rnn.weight_ih_l0").unwrap().shape, [4 * 48, 16]);
    assert!(!model.read_dir().unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .contains(".tmp")));

    // Sampling: the same seed prints the same text; it starts with the prime.
    let sample = |seed: &str| {
        ok(&recur(&[
            "sample",
            "--model",
            s(&model),
            "--prime",
            "the cat ",
            "--length",
            "120",
            "--temperature",
            "0.7",
            "--top-k",
            "5",
            "--seed",
            seed,
        ]))
    };
    let a = sample("5");
    assert_eq!(a, sample("5"));
    assert_ne!(a, sample("6"));
    assert!(a.starts_with("the cat "), "{a}");
    assert_eq!(a.trim_end_matches('\n').chars().count(), 8 + 120);
    assert!(
        ["sees", "likes", "eats", "finds"]
            .iter()
            .any(|w| a.contains(w)),
        "{a}"
    );
    // Defaults: a newline as prime, 500 characters.
    let d = ok(&recur(&["sample", "--model", s(&model)]));
    assert_eq!(d.chars().count(), 1 + 500 + 1);
    // Unknown characters in the prime are read as <unk>, with a note.
    let o = recur(&[
        "sample",
        "--model",
        s(&model),
        "--prime",
        "QQ ",
        "--length",
        "5",
    ]);
    ok(&o);
    assert!(String::from_utf8_lossy(&o.stderr).contains("2 characters of --prime"));
}

#[test]
fn train_lm_with_a_validation_file_gru_dropout_sgd() {
    let dir = TmpDir::new("valid");
    let train = dir.path("train.txt");
    let valid = dir.path("valid.txt");
    std::fs::write(&train, grammar_text(100, 3)).unwrap();
    // "Z" never occurs in training: it is read as <unk>.
    std::fs::write(&valid, grammar_text(10, 4) + "Z").unwrap();
    let model = dir.path("m");
    let out = ok(&recur(&[
        "train",
        "lm",
        "--train",
        s(&train),
        "--valid",
        s(&valid),
        "--out",
        s(&model),
        "--cell",
        "gru",
        "--hidden-size",
        "16",
        "--num-layers",
        "2",
        "--embed-size",
        "8",
        "--dropout",
        "0.2",
        "--optimizer",
        "sgd",
        "--lr",
        "0.5",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--epochs",
        "2",
        "--sample-length",
        "0",
    ]));
    assert!(out.contains("1 not in the vocabulary"), "{out}");
    assert!(out.contains("sgd:lr=0.5,momentum=0.0"), "{out}");
    assert!(!out.contains("sample (best model"), "{out}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["report"]["valid_unknown_chars"].as_f64(), Some(1.0));
    assert_eq!(metrics["curve"].as_array().unwrap().len(), 10);
    let f = TensorFile::read(model.join("model.safetensors")).unwrap();
    assert!(f.contains("rnn.weight_hh_l1"));
    assert_eq!(f.raw("rnn.weight_ih_l0").unwrap().shape, [3 * 16, 8]);
    ok(&recur(&["sample", "--model", s(&model), "--length", "20"]));
}

#[test]
fn bad_files_and_options_give_one_error_line() {
    let dir = TmpDir::new("errors");
    let good = dir.path("good.txt");
    std::fs::write(&good, grammar_text(50, 1)).unwrap();
    let empty = dir.path("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let binary = dir.path("binary.txt");
    std::fs::write(&binary, b"abc\xff\xfedef").unwrap();
    let tiny = dir.path("tiny.txt");
    std::fs::write(&tiny, "abcdefghijklmnopqrstuvwxyz").unwrap();
    let out = dir.path("out");
    let train = |file: &Path, extra: &[&str]| {
        let mut args = vec!["train", "lm", "--train", s(file), "--out", s(&out)];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--steps", "1", "--sample-length", "0"]);
        recur(&args)
    };
    fails_with(&train(&dir.path("missing.txt"), &[]), "--train ");
    fails_with(&train(&dir.path("missing.txt"), &[]), "cannot read");
    fails_with(&train(&empty, &[]), "the file is empty");
    fails_with(
        &train(&binary, &[]),
        "not UTF-8 text (invalid byte at offset 3)",
    );
    fails_with(&train(&good, &["--valid", s(&empty)]), "--valid");
    fails_with(
        &train(&good, &["--cell", "transformer"]),
        "unknown cell 'transformer'",
    );
    fails_with(
        &train(&good, &["--dropout", "1.5"]),
        "--dropout must be in [0, 1)",
    );
    fails_with(
        &train(&good, &["--hidden-size", "0"]),
        "--hidden-size must be at least 1",
    );
    fails_with(
        &train(&good, &["--num-layers", "0"]),
        "--num-layers must be at least 1",
    );
    fails_with(
        &train(&good, &["--seq-len", "0"]),
        "--seq-len must be at least 1",
    );
    fails_with(
        &train(&good, &["--batch-size", "0"]),
        "--batch-size must be at least 1",
    );
    fails_with(
        &train(&good, &["--lr=-1"]),
        "--lr must be a positive number",
    );
    fails_with(&train(&good, &["--optimizer", "lbfgs"]), "--optimizer: ");
    fails_with(
        &train(&good, &["--clip-grad-norm=-2"]),
        "--clip-grad-norm must be a number >= 0",
    );
    fails_with(
        &train(&tiny, &["--batch-size", "64"]),
        "too short for --batch-size 64",
    );
    // --steps and --epochs together: clap's message (several lines) and status 2.
    let o = recur(&[
        "train",
        "lm",
        "--train",
        s(&good),
        "--out",
        s(&out),
        "--steps",
        "3",
        "--epochs",
        "1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot be used with"));
    assert!(!out.exists(), "no model directory after errors");

    fails_with(
        &recur(&["sample", "--model", s(&dir.path("nope"))]),
        "no such model directory",
    );
    fails_with(
        &recur(&["sample", "--model", s(&dir.0), "--temperature=-1"]),
        "--temperature must be a number >= 0",
    );
    fails_with(
        &recur(&["sample", "--model", s(&dir.0), "--top-k", "0"]),
        "--top-k must be at least 1",
    );
    fails_with(
        &recur(&["sample", "--model", s(&dir.0)]),
        "config.json: cannot read",
    );
}

#[test]
fn word_level_lm_trains_evaluates_samples_and_predicts() {
    let dir = TmpDir::new("words");
    let train = dir.path("train.txt");
    std::fs::write(&train, grammar_text(400, 9)).unwrap();
    let model = dir.path("model");
    let out = ok(&recur(&[
        "train",
        "lm",
        "--tokens",
        "word",
        "--train",
        s(&train),
        "--out",
        s(&model),
        "--hidden-size",
        "32",
        "--embed-size",
        "16",
        "--num-layers",
        "1",
        "--seq-len",
        "8",
        "--batch-size",
        "8",
        "--lr",
        "1e-2",
        "--steps",
        "150",
        "--sample-length",
        "12",
    ]));
    assert!(out.contains("training words"), "{out}");
    assert!(out.contains("perplexity"), "{out}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("metrics.json")).unwrap())
            .unwrap();
    // The grammar has 4 choices per slot: a perplexity near 4 per word is learnable, far
    // below the unigram model's.
    let ppl = metrics["best"]["valid_ppl"].as_f64().unwrap();
    let unigram = metrics["report"]["unigram_ppl"].as_f64().unwrap();
    assert!(
        ppl < 0.5 * unigram,
        "valid perplexity {ppl}, unigram {unigram}"
    );
    let vocab: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("vocab.json")).unwrap()).unwrap();
    assert!(vocab.to_string().contains("\"cat\""), "{vocab}");

    let e = ok(&recur(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&train),
        "--json",
    ]));
    let e: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert!(e["ppl"].as_f64().unwrap() < unigram);
    assert_eq!(e["unknown_words"].as_f64(), Some(0.0));

    let sample = ok(&recur(&[
        "sample",
        "--model",
        s(&model),
        "--prime",
        "the cat",
        "--length",
        "6",
    ]));
    assert!(sample.starts_with("the cat "), "{sample}");
    let input = dir.path("in.txt");
    std::fs::write(&input, "a dog\nmy friend sees\n").unwrap();
    let p = ok(&recur(&[
        "predict",
        "--model",
        s(&model),
        "--input",
        s(&input),
        "--max-len",
        "3",
    ]));
    let lines: Vec<&str> = p.lines().collect();
    assert_eq!(lines.len(), 2, "{p}");
    assert!(lines[0].starts_with("a dog") && lines[1].starts_with("my friend sees"));
}
