//! The cell variants on the command line (`--gru-linear-before-reset`, `--peepholes`,
//! `--input-forget`, `--cell-clip`, `--activations`): a task trains a tiny model with them,
//! writes them into config.json, and `recur eval` loads the directory again; flags a cell or a
//! task does not take are one-line errors. Language models and sequence-to-sequence models
//! with variants resume to the bit, sample, decode greedily and with beams.

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur, s};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use recur::io::state_dict::TensorFile;
use tmpdir::TmpDir;

fn tagger_data(dir: &TmpDir) -> String {
    let p = dir.path("t.conllu");
    std::fs::write(
        &p,
        "1\tthe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n2\tdog\tdog\tNOUN\t_\t_\t3\tnsubj\t_\t_\n\
         3\truns\trun\tVERB\t_\t_\t0\troot\t_\t_\n\n"
            .repeat(12),
    )
    .unwrap();
    s(&p).to_string()
}

fn config(dir: &std::path::Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

#[test]
fn a_task_trains_and_reloads_a_model_with_cell_variants() {
    let dir = TmpDir::new("cell-variants");
    let data = tagger_data(&dir);
    let cases: [(&[&str], serde_json::Value); 2] = [
        (
            &[
                "--cell",
                "gru",
                "--gru-linear-before-reset",
                "false",
                "--cell-clip",
                "3",
                "--activations",
                "hard_sigmoid:0.3,0.5/softsign",
            ],
            serde_json::json!({
                "linear_before_reset": false,
                "peepholes": false,
                "input_forget": false,
                "clip": 3.0,
                "activations": [
                    {"name": "hard_sigmoid", "alpha": 0.3, "beta": 0.5},
                    {"name": "softsign"}
                ]
            }),
        ),
        (
            &["--cell", "lstm", "--peepholes", "--input-forget"],
            serde_json::json!({
                "linear_before_reset": true,
                "peepholes": true,
                "input_forget": true,
                "clip": null,
                "activations": []
            }),
        ),
    ];
    for (k, (flags, want)) in cases.iter().enumerate() {
        let out = dir.path(&format!("out{k}"));
        let mut args = vec![
            "train",
            "tag",
            "--train",
            &data,
            "--min-freq",
            "1",
            "--out",
            s(&out),
            "--steps",
            "3",
            "--hidden-size",
            "4",
            "--embed-size",
            "3",
        ];
        args.extend_from_slice(flags);
        ok(&recur(&args));
        let c = config(&out);
        assert_eq!(c["cell_options"], *want, "{c}");
        // The directory loads again: recur eval reads config.json and the weights.
        let e = ok(&recur(&[
            "eval",
            "--model",
            s(&out),
            "--data",
            &data,
            "--json",
        ]));
        assert!(e.contains("accuracy"), "{e}");
    }
    // Without variant flags config.json has no cell_options (directories stay as before).
    let out = dir.path("plain");
    ok(&recur(&[
        "train",
        "tag",
        "--train",
        &data,
        "--min-freq",
        "1",
        "--out",
        s(&out),
        "--steps",
        "1",
        "--hidden-size",
        "4",
    ]));
    assert!(config(&out).get("cell_options").is_none());
}

#[test]
fn variant_flags_the_cell_or_task_does_not_take_are_refused() {
    let dir = TmpDir::new("cell-variants-bad");
    let data = tagger_data(&dir);
    let o = dir.path("o");
    for (flags, msg) in [
        (
            &["--cell", "gru", "--peepholes"][..],
            "--peepholes is for --cell lstm, not gru",
        ),
        (
            &["--cell", "lstm", "--gru-linear-before-reset", "false"][..],
            "--gru-linear-before-reset is for --cell gru, not lstm",
        ),
        (
            &["--cell", "lstm", "--activations", "tanh"][..],
            "takes 3 function(s)",
        ),
        (
            &["--cell", "gru", "--activations", "swish/tanh"][..],
            "--activations: activation 'swish': unknown function",
        ),
        (
            &["--cell-clip", "-1"][..],
            "clip must be a positive finite number",
        ),
    ] {
        let mut args = vec!["train", "tag", "--train", &data, "--out", s(&o)];
        args.extend_from_slice(flags);
        fails_with(&recur(&args), msg);
    }
    // lm's default layer norm cannot normalize a GRU whose reset gate is inside the product.
    let t = dir.path("t.txt");
    std::fs::write(&t, "the cat sat on the mat\n".repeat(20)).unwrap();
    let lm = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "lm",
            "--train",
            s(&t),
            "--out",
            s(&o),
            "--cell",
            "gru",
        ];
        a.extend_from_slice(extra);
        recur(&a)
    };
    let e = lm(&["--gru-linear-before-reset", "false"]);
    fails_with(&e, "--gru-linear-before-reset false: layer normalization");
    fails_with(&e, "add --layer-norm=false");
    // A bidirectional seq2seq encoder shares its activations with the decoder: one set.
    let tsv = dir.path("r.tsv");
    std::fs::write(&tsv, reversal_tsv(40)).unwrap();
    fails_with(
        &recur(&[
            "train",
            "seq2seq",
            "--train",
            s(&tsv),
            "--out",
            s(&o),
            "--cell",
            "gru",
            "--bidirectional=true",
            "--activations",
            "sigmoid/tanh/sigmoid/tanh",
        ]),
        "the encoder and the decoder share one set",
    );
}

/// `common` then `extra`.
fn joined<'a>(common: &[&'a str], extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = common.to_vec();
    v.extend_from_slice(extra);
    v
}

/// The tensors of a safetensors file by name (f32).
fn tensors(path: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    let f = TensorFile::read(path).unwrap();
    let mut names: Vec<String> = f.names().map(|n| n.to_string()).collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let v = f.float::<f32>(&n).unwrap().into_data();
            (n, v)
        })
        .collect()
}

/// `recur train <args> --steps N`, then the same for N/2 steps resumed to N: the two
/// checkpoints (parameters, optimizer, state, generators) are the same to the bit.
fn resumes_exactly(dir: &TmpDir, name: &str, args: &[&str], steps: usize) -> std::path::PathBuf {
    let (a, b) = (
        dir.path(&format!("{name}-a")),
        dir.path(&format!("{name}-b")),
    );
    let run = |out: &std::path::Path, n: usize, resume: bool| {
        let n = n.to_string();
        let mut v = vec!["train"];
        v.extend_from_slice(args);
        v.extend_from_slice(&["--out", s(out), "--steps", &n, "--log-every", "1000"]);
        if resume {
            v.push("--resume");
        }
        ok(&recur(&v));
    };
    run(&a, steps, false);
    run(&b, steps / 2, false);
    run(&b, steps, true);
    let (ca, cb) = (
        tensors(&a.join("checkpoint.safetensors")),
        tensors(&b.join("checkpoint.safetensors")),
    );
    assert!(ca.iter().any(|(n, _)| n.starts_with("param.")), "{name}");
    assert_eq!(ca.len(), cb.len(), "{name}");
    for ((n, x), (m, y)) in ca.iter().zip(&cb) {
        assert_eq!(n, m);
        assert!(x == y, "{name}: {n} differs after resuming");
    }
    a
}

#[test]
fn language_models_train_resume_and_sample_with_cell_variants() {
    let dir = TmpDir::new("cell-variants-lm");
    let t = dir.path("t.txt");
    std::fs::write(
        &t,
        "the cat sat on the mat.\na dog ran to the cat.\nthe mat is red.\n".repeat(12),
    )
    .unwrap();
    let common = [
        "lm",
        "--train",
        s(&t),
        "--batch-size",
        "4",
        "--seq-len",
        "12",
        "--embed-size",
        "5",
        "--hidden-size",
        "8",
        "--num-layers",
        "2",
        "--dropout",
        "0.1",
        "--lr-schedule",
        "constant",
        "--sample-length",
        "10",
    ];
    // Peepholes and clip with lm's default layer norm, and a coupled-gate LSTM with
    // zoneout (a regularizer beside the variants).
    let with = |extra: &[&'static str]| joined(&common, extra);
    let peep = resumes_exactly(
        &dir,
        "peep",
        &with(&["--peepholes", "--cell-clip", "2.5"]),
        6,
    );
    let c = config(&peep);
    assert_eq!(c["cell_options"]["peepholes"], true, "{c}");
    assert_eq!(c["cell_options"]["clip"], 2.5, "{c}");
    assert_eq!(c["layer_norm"], true, "{c}");
    let w = tensors(&peep.join("model.safetensors"));
    for l in 0..2 {
        let name = format!("rnn.weight_peephole_l{l}");
        let p = &w
            .iter()
            .find(|(n, _)| *n == name)
            .expect("peepholes saved")
            .1;
        assert_eq!(p.len(), 3 * 8, "{name}");
        assert!(p.iter().any(|&x| x != 0.0), "{name} trained");
    }
    let coupled = resumes_exactly(
        &dir,
        "coupled",
        &with(&["--input-forget", "--zoneout", "0.1", "--layer-norm=false"]),
        4,
    );
    assert_eq!(config(&coupled)["cell_options"]["input_forget"], true);
    // The same run without --peepholes trains another model.
    let plain = resumes_exactly(&dir, "plain", &with(&["--cell-clip", "2.5"]), 2);
    let peep2 = dir.path("peep2");
    let mut v = vec!["train"];
    v.extend(with(&["--peepholes", "--cell-clip", "2.5"]));
    v.extend_from_slice(&["--out", s(&peep2), "--steps", "2"]);
    ok(&recur(&v));
    let (a, b) = (
        tensors(&plain.join("model.safetensors")),
        tensors(&peep2.join("model.safetensors")),
    );
    let hh = |w: &[(String, Vec<f32>)]| {
        w.iter()
            .find(|(n, _)| n == "rnn.weight_hh_l0")
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(hh(&a), hh(&b), "peepholes change the training");
    assert!(!a.iter().any(|(n, _)| n.contains("peephole")));
    // Evaluation, sampling (deterministic, one token at a time through the stream) and
    // predict load the directory with its variants.
    let e = ok(&recur(&[
        "eval",
        "--model",
        s(&peep),
        "--data",
        s(&t),
        "--json",
    ]));
    assert!(e.contains("bpc"), "{e}");
    let sample = |seed: &str| {
        ok(&recur(&[
            "sample",
            "--model",
            s(&peep),
            "--prime",
            "the ",
            "--length",
            "30",
            "--seed",
            seed,
        ]))
    };
    let s1 = sample("3");
    assert_eq!(s1, sample("3"));
    assert!(s1.starts_with("the ") && s1.chars().count() >= 30, "{s1:?}");
    let input = dir.path("prompts.txt");
    std::fs::write(&input, "the cat\na dog\n").unwrap();
    let p = ok(&recur(&[
        "predict",
        "--model",
        s(&peep),
        "--input",
        s(&input),
        "--max-len",
        "8",
    ]));
    assert_eq!(p.lines().count(), 2, "{p}");
    // Greedy generation through the stream is what the whole-sequence forward pass predicts,
    // step by step.
    let (m, vocab) = recur::models::lm::load_dir::<f32>(&peep).unwrap();
    let prime = vocab.encode("the ");
    let opts = recur::models::lm::SampleOptions {
        temperature: 0.0,
        exclude: vec![recur::data::text::Vocab::UNK],
        ..Default::default()
    };
    let gen = m.sample(&prime, 12, &opts).unwrap();
    let mut seq = prime.clone();
    for &id in &gen {
        let (logits, _) = m.forward(&seq, seq.len(), 1, None).unwrap();
        let v = m.config().vocab_size;
        let last = &logits[(seq.len() - 1) * v..];
        let best = (0..v)
            .filter(|&k| k != recur::data::text::Vocab::UNK)
            .max_by(|&x, &y| last[x].total_cmp(&last[y]).then(y.cmp(&x)))
            .unwrap();
        assert_eq!(id, best, "greedy step {} of {gen:?}", seq.len());
        seq.push(id);
    }
    // int8/f16 weights are for PyTorch's cells: a clear refusal that says what to do.
    let q = recur(&[
        "quantize",
        "--model",
        s(&peep),
        "--precision",
        "int8",
        "--out",
        s(&dir.path("q")),
    ]);
    fails_with(&q, "run this model in f32, or retrain it without them");
    fails_with(&q, "--peepholes");
    fails_with(
        &recur(&["sample", "--model", s(&peep), "--precision", "f16"]),
        "PyTorch's cells",
    );
}

fn reversal_tsv(n: usize) -> String {
    let mut out = String::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = 3 + (x >> 40) as usize % 3;
        let w: Vec<char> = (0..len)
            .map(|k| (b'a' + ((x >> (4 * k)) % 5) as u8) as char)
            .collect();
        let r: String = w.iter().rev().collect();
        let w: String = w.into_iter().collect();
        out += &format!("{w}\t{r}\n");
    }
    out
}

#[test]
fn seq2seq_trains_resumes_and_decodes_with_cell_variants() {
    let dir = TmpDir::new("cell-variants-s2s");
    let data = dir.path("r.tsv");
    std::fs::write(&data, reversal_tsv(80)).unwrap();
    let common = [
        "seq2seq",
        "--train",
        s(&data),
        "--hidden-size",
        "8",
        "--embed-size",
        "5",
        "--batch-size",
        "8",
        "--num-layers",
        "2",
        "--dropout",
        "0.1",
        "--beam",
        "2",
    ];
    let with = |extra: &[&'static str]| joined(&common, extra);
    let gru = resumes_exactly(
        &dir,
        "gru",
        &with(&[
            "--cell",
            "gru",
            "--gru-linear-before-reset",
            "false",
            "--activations",
            "hard_sigmoid:0.25,0.5/softsign",
            "--recurrent-dropout",
            "0.1",
        ]),
        6,
    );
    let c = config(&gru);
    assert_eq!(c["cell_options"]["linear_before_reset"], false, "{c}");
    assert_eq!(
        c["cell_options"]["activations"][1]["name"], "softsign",
        "{c}"
    );
    let lstm = resumes_exactly(
        &dir,
        "bilstm",
        &with(&["--cell", "lstm", "--peepholes", "--bidirectional=true"]),
        4,
    );
    let w = tensors(&lstm.join("model.safetensors"));
    for name in [
        "encoder.weight_peephole_l0",
        "encoder.weight_peephole_l0_reverse",
        "decoder.weight_peephole_l1",
    ] {
        assert!(w.iter().any(|(n, _)| n == name), "{name}");
    }
    // eval, greedy and beam decoding of the reloaded directories.
    let input = dir.path("in.txt");
    std::fs::write(&input, "abc\ndeab\n").unwrap();
    for m in [&gru, &lstm] {
        let e = ok(&recur(&[
            "eval",
            "--model",
            s(m),
            "--data",
            s(&data),
            "--json",
        ]));
        assert!(e.contains("ter"), "{e}");
        for beam in ["1", "3"] {
            let p = ok(&recur(&[
                "predict",
                "--model",
                s(m),
                "--input",
                s(&input),
                "--beam",
                beam,
            ]));
            assert_eq!(p.lines().count(), 2, "{p}");
        }
    }
    // Greedy decoding through the decoder's stream picks, step by step, the most likely id
    // of the teacher-forced pass over the whole output; beam search of width 1 agrees.
    let l = recur::models::seq2seq::load_dir::<f32>(&gru).unwrap();
    let m = &l.model;
    let c = m.config().clone();
    let src: Vec<Vec<usize>> = vec![vec![4, 5, 6], vec![7, 4, 5, 8]];
    let greedy = m.greedy(&src, 8).unwrap();
    let batch = recur::models::seq2seq::Batch::new(&src, &greedy, c.bos_id, c.eos_id).unwrap();
    let (b, t, v) = (batch.len(), batch.tgt_steps(), c.tgt_vocab_size);
    let logits = m.logits(&batch).unwrap(); // (T·B, V), time-major
    for (k, out) in greedy.iter().enumerate() {
        let mut want = out.clone();
        if want.len() < 8 {
            want.push(c.eos_id);
        }
        for (ti, &id) in want.iter().enumerate().take(t) {
            let row = &logits[(ti * b + k) * v..][..v];
            let best = (0..v)
                .max_by(|&x, &y| row[x].total_cmp(&row[y]).then(y.cmp(&x)))
                .unwrap();
            assert_eq!(id, best, "source {k}, step {ti}: {out:?}");
        }
    }
    let beam = m
        .beam_search(
            &src,
            &recur::models::seq2seq::BeamOptions {
                beam_size: 1,
                max_len: 8,
                ..Default::default()
            },
        )
        .unwrap();
    for (k, h) in beam.iter().enumerate() {
        assert_eq!(h.tokens, greedy[k], "source {k}");
    }
}
