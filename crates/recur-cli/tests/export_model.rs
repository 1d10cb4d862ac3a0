//! `recur export --onnx OUT.onnx --model DIR` for every kind of model `recur train` writes:
//! tiny models are trained on generated data, exported, run through recur-onnx (`recur
//! forward --weights OUT.onnx`, and the library for the decoder's step loop), and compared
//! with recur's own predictions from the model directory (the library's `forward`, `logits`,
//! `greedy`) to f32 tolerance. What cannot be exported is refused with one line, exit 2.
//!
//! With `RECUR_WRITE_EXPORT_FIXTURES=1` the exported graphs, their inputs and recur's expected
//! outputs are written to `tests/fixtures/onnx/export_models/` for
//! `scripts/check_onnx_export.py --models` (onnx.checker and ONNX Runtime).

use recur::core::rnn::State;
use recur::models::seq2seq::Batch;
use recur::models::seqmodel::SeqBatch;
use recur_onnx::io::{read_safetensors, write_safetensors};
use recur_onnx::{DType, Model, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur, s};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;
#[path = "../../../tests/support/grammar.rs"]
mod grammar;

/// A small deterministic generator (xorshift).
struct Gen(u64);

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 33) as usize % n
    }
    fn unit(&mut self) -> f64 {
        self.below(1 << 20) as f64 / (1 << 20) as f64
    }
    /// Uniform in [-a, a].
    fn sym(&mut self, a: f64) -> f32 {
        ((2.0 * self.unit() - 1.0) * a) as f32
    }
}

/// Trains a model with `recur train <args>` into `dir/name` and returns its path.
fn train(dir: &TmpDir, name: &str, args: &[&str]) -> PathBuf {
    let out = dir.path(name);
    let mut a: Vec<&str> = vec!["train"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--out", s(&out), "--log-every", "1000"]);
    ok(&recur(&a));
    out
}

/// `recur export --onnx OUT --model DIR extra...`; returns the printed line.
fn export(model: &Path, out: &Path, extra: &[&str]) -> String {
    let mut a = vec!["export", "--onnx", s(out), "--model", s(model)];
    a.extend_from_slice(extra);
    ok(&recur(&a))
}

/// `recur forward --weights ONNX` on `feeds`: every graph output by name.
fn forward_cli(dir: &TmpDir, onnx: &Path, feeds: &[(String, Value)]) -> HashMap<String, Value> {
    let tag = onnx.file_name().unwrap().to_string_lossy().to_string();
    let (x, y) = (
        dir.path(&format!("{tag}.in")),
        dir.path(&format!("{tag}.out")),
    );
    write_safetensors(&x, feeds).unwrap();
    ok(&recur(&[
        "forward",
        "--weights",
        s(onnx),
        "--inputs",
        s(&x),
        "--out",
        s(&y),
    ]));
    read_safetensors(&y).unwrap().into_iter().collect()
}

/// Checks `got` against `want` to f32 tolerance (|a - b| ≤ 2e-5 + 1e-4 |b|).
fn close(what: &str, got: &Value, shape: &[usize], want: &[f32]) {
    assert_eq!(got.shape, shape, "{what}: shape");
    let g = got.to_f64();
    assert_eq!(g.len(), want.len(), "{what}: size");
    let mut worst = 0.0f64;
    for (k, (&a, &b)) in g.iter().zip(want).enumerate() {
        let b = b as f64;
        let w = (a - b).abs() / (2e-5 + 1e-4 * b.abs());
        assert!(w <= 1.0, "{what}[{k}]: {a} vs recur's {b}");
        worst = worst.max((a - b).abs());
    }
    assert!(worst.is_finite(), "{what}");
}

fn ids(shape: Vec<usize>, v: &[usize]) -> Value {
    Value::int(DType::I64, shape, v.iter().map(|&x| x as i64).collect())
}

fn lens(v: &[usize]) -> Value {
    Value::int(
        DType::I32,
        vec![v.len()],
        v.iter().map(|&x| x as i64).collect(),
    )
}

/// Writes a fixture case when `RECUR_WRITE_EXPORT_FIXTURES` is set: the graphs, the inputs
/// and recur's expected outputs.
fn write_fixture(
    case: &str,
    graphs: &[(&str, &Path)],
    inputs: &[(String, Value)],
    expected: &[(String, Value)],
) {
    if std::env::var_os("RECUR_WRITE_EXPORT_FIXTURES").is_none() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/onnx/export_models")
        .join(case);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, path) in graphs {
        std::fs::copy(path, dir.join(name)).unwrap();
    }
    write_safetensors(&dir.join("inputs.safetensors"), inputs).unwrap();
    write_safetensors(&dir.join("expected.safetensors"), expected).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Language models

fn lm_case(dir: &TmpDir, case: &str, model: &Path, lstm: bool) {
    let onnx = dir.path(&format!("{case}.onnx"));
    let line = export(model, &onnx, &["--initial-state"]);
    assert!(line.contains("language model"), "{line}");
    let config = recur::models::read_config(model).unwrap();
    let config = recur::models::lm::CharLmConfig::from_json(&config.json, "config").unwrap();
    let m =
        recur::models::lm::CharLm::<f32>::load_weights(model.join("model.safetensors"), &config)
            .unwrap();
    let c = m.config().clone();
    let (v, h, l) = (c.vocab_size, c.hidden_size, c.num_layers);
    let (b, t) = (3, 7);
    let mut g = Gen::new(5);
    // Two chunks of a stream: the first from zero states, the second from the first's end.
    let mut state: Option<State<f32>> = None;
    let mut onnx_state: (Vec<f32>, Vec<f32>) = (vec![0.0; l * b * h], vec![0.0; l * b * h]);
    for chunk in 0..2 {
        let tokens: Vec<usize> = (0..b * t).map(|_| g.below(v)).collect(); // (b, t)
                                                                           // recur: time-major (t, b)
        let tm: Vec<usize> = (0..t * b).map(|k| tokens[(k % b) * t + k / b]).collect();
        let (logits, next) = m.forward(&tm, t, b, state.as_ref()).unwrap();
        let want: Vec<f32> = (0..b * t * v)
            .map(|k| {
                let (bi, ti, vi) = (k / (t * v), (k / v) % t, k % v);
                logits[(ti * b + bi) * v + vi]
            })
            .collect();
        let mut feeds = vec![
            ("tokens".to_string(), ids(vec![b, t], &tokens)),
            (
                "h0".to_string(),
                Value::f32(vec![l, b, h], onnx_state.0.clone()),
            ),
        ];
        if lstm {
            feeds.push((
                "c0".to_string(),
                Value::f32(vec![l, b, h], onnx_state.1.clone()),
            ));
        }
        let out = forward_cli(dir, &onnx, &feeds);
        close(
            &format!("{case} chunk {chunk} logits"),
            &out["logits"],
            &[b, t, v],
            &want,
        );
        close(
            &format!("{case} chunk {chunk} h_n"),
            &out["h_n"],
            &[l, b, h],
            next.h.data(),
        );
        if lstm {
            close(
                &format!("{case} chunk {chunk} c_n"),
                &out["c_n"],
                &[l, b, h],
                next.c.as_ref().unwrap().data(),
            );
            onnx_state.1 = out["c_n"].to_f64().iter().map(|&x| x as f32).collect();
        }
        onnx_state.0 = out["h_n"].to_f64().iter().map(|&x| x as f32).collect();
        if chunk == 1 {
            let mut expected = vec![
                (
                    "logits".to_string(),
                    Value::f32(vec![b, t, v], want.clone()),
                ),
                (
                    "h_n".to_string(),
                    Value::f32(vec![l, b, h], next.h.data().to_vec()),
                ),
            ];
            if lstm {
                expected.push((
                    "c_n".to_string(),
                    Value::f32(vec![l, b, h], next.c.as_ref().unwrap().data().to_vec()),
                ));
            }
            let st = state.as_ref().unwrap();
            let mut inputs = vec![
                ("tokens".to_string(), ids(vec![b, t], &tokens)),
                (
                    "h0".to_string(),
                    Value::f32(vec![l, b, h], st.h.data().to_vec()),
                ),
            ];
            if lstm {
                inputs.push((
                    "c0".to_string(),
                    Value::f32(vec![l, b, h], st.c.as_ref().unwrap().data().to_vec()),
                ));
            }
            write_fixture(case, &[("model.onnx", &onnx)], &inputs, &expected);
        }
        state = Some(next);
    }
    // Without --initial-state the graph starts from zeros and takes only the tokens.
    let plain = dir.path(&format!("{case}_plain.onnx"));
    export(model, &plain, &[]);
    let tokens: Vec<usize> = (0..b * t).map(|_| g.below(v)).collect();
    let tm: Vec<usize> = (0..t * b).map(|k| tokens[(k % b) * t + k / b]).collect();
    let (logits, _) = m.forward(&tm, t, b, None).unwrap();
    let want: Vec<f32> = (0..b * t * v)
        .map(|k| logits[((k / v) % t * b + k / (t * v)) * v + k % v])
        .collect();
    let out = forward_cli(
        dir,
        &plain,
        &[("tokens".to_string(), ids(vec![b, t], &tokens))],
    );
    close(
        &format!("{case} from zeros"),
        &out["logits"],
        &[b, t, v],
        &want,
    );
}

fn config_layers(model: &Path) -> u64 {
    recur::models::read_config(model).unwrap().json["num_layers"]
        .as_u64()
        .unwrap()
}

#[test]
fn language_models_stream_through_their_exported_states() {
    let dir = TmpDir::new("export-lm");
    let text = dir.path("train.txt");
    std::fs::write(&text, grammar::grammar_text(200, 1)).unwrap();
    let common = [
        "--train",
        s(&text),
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--steps",
        "3",
        "--sample-length",
        "0",
        "--embed-size",
        "6",
        "--hidden-size",
        "10",
    ];
    let mut a = vec!["lm"];
    a.extend_from_slice(&common);
    // PyTorch's plain layers: the default layer norm has no ONNX operator.
    a.extend_from_slice(&["--layer-norm=false", "--num-layers", "2"]);
    let m = train(&dir, "char_lstm", &a);
    assert_eq!(config_layers(&m), 2);
    lm_case(&dir, "lm_char_lstm", &m, true);
    let mut a = vec!["lm"];
    a.extend_from_slice(&common);
    a.extend_from_slice(&[
        "--layer-norm=false",
        "--cell",
        "gru",
        "--tokens",
        "word",
        "--dropout",
        "0.2",
        "--num-layers",
        "3",
    ]);
    let m = train(&dir, "word_gru", &a);
    assert_eq!(config_layers(&m), 3);
    lm_case(&dir, "lm_word_gru", &m, false);
    // The cell variants become the ONNX attributes (P, input_forget, clip, activations,
    // linear_before_reset = 0), the state streaming through them as before.
    let mut a = vec!["lm"];
    a.extend_from_slice(&common);
    a.extend_from_slice(&[
        "--layer-norm=false",
        "--num-layers",
        "2",
        "--peepholes",
        "--input-forget",
        "--cell-clip",
        "1.5",
    ]);
    let m = train(&dir, "lstm_peepholes", &a);
    lm_case(&dir, "lm_char_lstm_peepholes_coupled_clip", &m, true);
    let mut a = vec!["lm"];
    a.extend_from_slice(&common);
    a.extend_from_slice(&[
        "--layer-norm=false",
        "--cell",
        "gru",
        "--gru-linear-before-reset",
        "false",
        "--activations",
        "hard_sigmoid:0.3,0.45/softsign",
    ]);
    let m = train(&dir, "gru_reset_before", &a);
    lm_case(&dir, "lm_char_gru_reset_before_activations", &m, false);
    // Layer normalization inside the cells (the default) has no ONNX operator: refused, with
    // the reason and what to do.
    let mut a = vec!["lm"];
    a.extend_from_slice(&common);
    let m = train(&dir, "ln", &a);
    let o = recur(&[
        "export",
        "--onnx",
        s(&dir.path("ln.onnx")),
        "--model",
        s(&m),
    ]);
    fails_with(&o, "layer normalization");
    fails_with(&o, "--layer-norm=false");
    assert!(!dir.path("ln.onnx").exists());
}

// ---------------------------------------------------------------------------------------------
// Classifiers, taggers, forecasters

enum Inputs {
    Tokens(Vec<Vec<usize>>),
    Features(Vec<Vec<f32>>, usize),
}

/// Exports the sequence model `model`, runs it on a ragged batch and compares it with
/// `SeqModel::forward`.
fn seq_case(dir: &TmpDir, case: &str, model: &Path, inputs: Inputs, out_name: &str) {
    let onnx = dir.path(&format!("{case}.onnx"));
    export(model, &onnx, &[]);
    let m = recur::models::seqmodel::load_dir::<f32>(model).unwrap();
    let c = m.config().clone();
    let (batch, mut feeds) = match &inputs {
        Inputs::Tokens(seqs) => {
            let t = seqs.iter().map(|s| s.len()).max().unwrap();
            let mut pad = vec![0usize; seqs.len() * t];
            for (k, s) in seqs.iter().enumerate() {
                pad[k * t..k * t + s.len()].copy_from_slice(s);
            }
            (
                SeqBatch::<f32>::from_tokens(seqs).unwrap(),
                vec![("tokens".to_string(), ids(vec![seqs.len(), t], &pad))],
            )
        }
        Inputs::Features(seqs, f) => {
            let t = seqs.iter().map(|s| s.len() / f).max().unwrap();
            let mut pad = vec![0f32; seqs.len() * t * f];
            for (k, s) in seqs.iter().enumerate() {
                pad[k * t * f..k * t * f + s.len()].copy_from_slice(s);
            }
            (
                SeqBatch::<f32>::from_features(seqs, *f).unwrap(),
                vec![(
                    "features".to_string(),
                    Value::f32(vec![seqs.len(), t, *f], pad),
                )],
            )
        }
    };
    feeds.push(("lengths".to_string(), lens(batch.lengths())));
    let want = m.forward(&batch).unwrap();
    let (b, t, o) = (batch.batch_size(), batch.steps(), c.output_size);
    let shape = if want.len() == b * o {
        vec![b, o]
    } else {
        vec![b, t, o]
    };
    let out = forward_cli(dir, &onnx, &feeds);
    assert_eq!(out.len(), 1, "{case}: one output");
    close(&format!("{case} {out_name}"), &out[out_name], &shape, &want);
    write_fixture(
        case,
        &[("model.onnx", &onnx)],
        &feeds,
        &[(out_name.to_string(), Value::f32(shape, want))],
    );
}

const POSITIVE: [&str; 3] = ["good", "great", "fun"];
const NEGATIVE: [&str; 3] = ["bad", "dull", "poor"];
const FILLER: [&str; 5] = ["the", "film", "was", "a", "plot"];

fn sentiment_tsv(n: usize, seed: u64) -> String {
    let mut g = Gen::new(seed);
    let mut out = String::new();
    for _ in 0..n {
        let pos = g.below(2) == 0;
        let len = 2 + g.below(5);
        let mut words: Vec<&str> = (0..len).map(|_| FILLER[g.below(5)]).collect();
        words.insert(
            g.below(len + 1),
            if pos {
                POSITIVE[g.below(3)]
            } else {
                NEGATIVE[g.below(3)]
            },
        );
        out += &format!("{}\t{}\n", if pos { "pos" } else { "neg" }, words.join(" "));
    }
    out
}

fn ragged_tokens(g: &mut Gen, vocab: usize, lengths: &[usize]) -> Vec<Vec<usize>> {
    lengths
        .iter()
        .map(|&n| (0..n).map(|_| g.below(vocab)).collect())
        .collect()
}

#[test]
fn classifiers_export_with_their_pooling_and_directions() {
    let dir = TmpDir::new("export-classify");
    let data = dir.path("train.tsv");
    std::fs::write(&data, sentiment_tsv(60, 1)).unwrap();
    let common = [
        "classify",
        "--train",
        s(&data),
        "--hidden-size",
        "8",
        "--embed-size",
        "6",
        "--batch-size",
        "8",
        "--steps",
        "3",
    ];
    let mut g = Gen::new(3);
    for (case, extra) in [
        ("classify_bilstm_last", &["--cell", "lstm"][..]),
        (
            "classify_bigru_mean_2layers",
            &["--cell", "gru", "--pooling", "mean", "--num-layers", "2"][..],
        ),
        (
            "classify_rnn_last",
            &["--cell", "rnn_tanh", "--bidirectional=false"][..],
        ),
        // The cell variants become the ONNX attributes (P, clip, activations with their
        // parameters, input_forget, linear_before_reset = 0).
        (
            "classify_bilstm_peepholes_clip_activations",
            &[
                "--cell",
                "lstm",
                "--peepholes",
                "--cell-clip",
                "2.5",
                "--activations",
                "hard_sigmoid:0.3,0.45/softsign/elu:0.7",
            ][..],
        ),
        (
            "classify_lstm_input_forget",
            &["--cell", "lstm", "--input-forget", "--bidirectional=false"][..],
        ),
        (
            "classify_bigru_reset_before",
            &[
                "--cell",
                "gru",
                "--gru-linear-before-reset",
                "false",
                "--activations",
                "leaky_relu:0.2/scaled_tanh:1.1,0.9",
            ][..],
        ),
        (
            "classify_rnn_affine",
            &[
                "--cell",
                "rnn_tanh",
                "--activations",
                "affine:0.5,0.1",
                "--bidirectional=false",
            ][..],
        ),
    ] {
        let mut a = common.to_vec();
        a.extend_from_slice(extra);
        let m = train(&dir, case, &a);
        let v = match recur::models::seqmodel::load_dir::<f32>(&m)
            .unwrap()
            .config()
            .input
        {
            recur::models::seqmodel::InputKind::Tokens { vocab_size, .. } => vocab_size,
            _ => unreachable!(),
        };
        let seqs = ragged_tokens(&mut g, v, &[5, 1, 7, 3]);
        seq_case(&dir, case, &m, Inputs::Tokens(seqs.clone()), "logits");
        // The same graph in f64 (recur-onnx runs double recurrent nodes on its general path).
        let f64_onnx = dir.path(&format!("{case}_f64.onnx"));
        export(&m, &f64_onnx, &["--precision", "f64"]);
        let batch = SeqBatch::<f32>::from_tokens(&seqs).unwrap();
        let t = batch.steps();
        let mut pad = vec![0usize; seqs.len() * t];
        for (k, sq) in seqs.iter().enumerate() {
            pad[k * t..k * t + sq.len()].copy_from_slice(sq);
        }
        let want = recur::models::seqmodel::load_dir::<f32>(&m)
            .unwrap()
            .forward(&batch)
            .unwrap();
        let out = forward_cli(
            &dir,
            &f64_onnx,
            &[
                ("tokens".to_string(), ids(vec![seqs.len(), t], &pad)),
                ("lengths".to_string(), lens(batch.lengths())),
            ],
        );
        assert_eq!(out["logits"].dtype, DType::F64);
        close(
            &format!("{case} f64"),
            &out["logits"],
            &[seqs.len(), 2],
            &want,
        );
    }
}

/// A `.ts` file of 2-dimensional rising or falling ramps of lengths 4 to 9.
fn ramps_ts(n: usize, seed: u64) -> String {
    let mut g = Gen::new(seed);
    let mut out = String::from(
        "@problemName Ramps\n@timeStamps false\n@univariate false\n@dimensions 2\n\
         @equalLength false\n@classLabel true down up\n@data\n",
    );
    for _ in 0..n {
        let up = g.below(2) == 0;
        let len = 4 + g.below(6);
        let dim = |g: &mut Gen, scale: f64| -> String {
            (0..len)
                .map(|t| {
                    let v = if up { t as f64 } else { (len - t) as f64 };
                    format!("{:.3}", 100.0 + scale * v + g.unit())
                })
                .collect::<Vec<_>>()
                .join(",")
        };
        let a = dim(&mut g, 3.0);
        let b = dim(&mut g, -1.0);
        out += &format!("{a}:{b}:{}\n", if up { "up" } else { "down" });
    }
    out
}

#[test]
fn series_classifiers_and_forecasters_standardise_inside_the_graph() {
    let dir = TmpDir::new("export-series");
    let ts = dir.path("R_TRAIN.ts");
    std::fs::write(&ts, ramps_ts(40, 7)).unwrap();
    let m = train(
        &dir,
        "series",
        &[
            "classify",
            "--train",
            s(&ts),
            "--hidden-size",
            "8",
            "--batch-size",
            "8",
            "--steps",
            "3",
            "--cell",
            "gru",
        ],
    );
    let mut g = Gen::new(11);
    let seqs: Vec<Vec<f32>> = [6usize, 2, 9]
        .iter()
        .map(|&n| {
            (0..n * 2)
                .map(|k| 100.0 + (k % 2) as f32 * 3.0 + g.sym(5.0))
                .collect()
        })
        .collect();
    seq_case(
        &dir,
        "classify_series_gru",
        &m,
        Inputs::Features(seqs, 2),
        "logits",
    );

    let mut csv = String::from("t,level\n");
    for t in 0..80 {
        let v = 50.0 + 20.0 * (t as f64 / 2.0).sin() + g.unit();
        csv += &format!("{t},{v:.4}\n");
    }
    let data = dir.path("series.csv");
    std::fs::write(&data, csv).unwrap();
    let m = train(
        &dir,
        "forecast",
        &[
            "forecast",
            "--train",
            s(&data),
            "--column",
            "level",
            "--window",
            "6",
            "--horizon",
            "2",
            "--hidden-size",
            "8",
            "--steps",
            "3",
            "--num-layers",
            "2",
        ],
    );
    let fm = recur::models::seqmodel::load_dir::<f32>(&m).unwrap();
    assert!(fm.input_norm().is_some() && fm.target_norm().is_some());
    let seqs: Vec<Vec<f32>> = (0..3)
        .map(|k| {
            (0..6)
                .map(|t| 50.0 + 20.0 * ((k + t) as f32 / 2.0).sin())
                .collect()
        })
        .collect();
    seq_case(
        &dir,
        "forecast_lstm",
        &m,
        Inputs::Features(seqs, 1),
        "predictions",
    );
}

/// CoNLL-U sentences "DET NOUN VERB DET NOUN .".
fn treebank(n: usize, seed: u64) -> String {
    let mut g = Gen::new(seed);
    let det = ["the", "a", "every"];
    let nouns = ["cat", "dog", "fish", "duck", "tree"];
    let verbs = ["sees", "likes", "fish", "duck"];
    let mut out = String::new();
    for k in 0..n {
        out += &format!("# sent_id = s{k}\n");
        let words = [
            (det[g.below(3)], "DET"),
            (nouns[g.below(5)], "NOUN"),
            (verbs[g.below(4)], "VERB"),
            (det[g.below(3)], "DET"),
            (nouns[g.below(5)], "NOUN"),
            (".", "PUNCT"),
        ];
        for (i, (w, u)) in words.iter().enumerate() {
            out += &format!("{}\t{w}\t_\t{u}\t_\t_\t0\tdep\t_\t_\n", i + 1);
        }
        out.push('\n');
    }
    out
}

#[test]
fn taggers_export_per_token_logits_zero_past_each_length() {
    let dir = TmpDir::new("export-tag");
    let data = dir.path("train.conllu");
    std::fs::write(&data, treebank(40, 1)).unwrap();
    let m = train(
        &dir,
        "tagger",
        &[
            "tag",
            "--train",
            s(&data),
            "--hidden-size",
            "8",
            "--embed-size",
            "6",
            "--batch-size",
            "8",
            "--steps",
            "3",
            "--bidirectional=true",
        ],
    );
    let v = match recur::models::seqmodel::load_dir::<f32>(&m)
        .unwrap()
        .config()
        .input
    {
        recur::models::seqmodel::InputKind::Tokens { vocab_size, .. } => vocab_size,
        _ => unreachable!(),
    };
    let mut g = Gen::new(4);
    let seqs = ragged_tokens(&mut g, v, &[6, 2, 4]);
    seq_case(&dir, "tag_bilstm", &m, Inputs::Tokens(seqs), "logits");
}

// ---------------------------------------------------------------------------------------------
// Sequence to sequence

fn reversal_tsv(n: usize, seed: u64) -> String {
    let mut g = Gen::new(seed);
    let mut out = String::new();
    for _ in 0..n {
        let len = 2 + g.below(4);
        let w: String = (0..len)
            .map(|_| (b'a' + g.below(5) as u8) as char)
            .collect();
        let r: String = w.chars().rev().collect();
        out += &format!("{w}\t{r}\n");
    }
    out
}

fn run_lib(m: &Model, feeds: &[(String, Value)]) -> HashMap<String, Value> {
    let f: HashMap<String, Value> = feeds.iter().cloned().collect();
    m.run(&f, "test").unwrap().into_iter().collect()
}

/// The decoder's inputs of one step: the previous ids, the state and the encoder's outputs.
fn step_feeds(
    tokens: &[usize],
    state: &HashMap<String, Value>,
    enc: &HashMap<String, Value>,
    src_len: &Value,
    attention: bool,
) -> Vec<(String, Value)> {
    let mut f = vec![("tokens".to_string(), ids(vec![tokens.len()], tokens))];
    f.push(("h0".to_string(), state["h_n"].clone()));
    if let Some(c) = state.get("c_n") {
        f.push(("c0".to_string(), c.clone()));
    }
    if attention {
        f.push(("memory".to_string(), enc["memory"].clone()));
        if let Some(k) = enc.get("keys") {
            f.push(("keys".to_string(), k.clone()));
        }
        f.push(("src_lengths".to_string(), src_len.clone()));
    }
    f
}

fn seq2seq_case(dir: &TmpDir, case: &str, model: &Path) {
    let out = dir.path(&format!("{case}.onnx"));
    let line = export(model, &out, &[]);
    let (enc_path, dec_path) = (
        dir.path(&format!("{case}.encoder.onnx")),
        dir.path(&format!("{case}.decoder.onnx")),
    );
    assert!(
        line.contains(s(&enc_path)) && line.contains(s(&dec_path)),
        "{line}"
    );
    assert!(!out.exists());
    let loaded = recur::models::seq2seq::load_dir::<f32>(model).unwrap();
    let m = &loaded.model;
    let c = m.config().clone();
    let attention = c.attention != recur::models::seq2seq::Attention::None;
    let mut g = Gen::new(8);
    let v = c.src_vocab_size;
    let sources: Vec<Vec<usize>> = [4usize, 1, 6]
        .iter()
        .map(|&n| (0..n).map(|_| 4 + g.below(v - 4)).collect())
        .collect();
    let targets: Vec<Vec<usize>> = [3usize, 5, 1]
        .iter()
        .map(|&n| (0..n).map(|_| 4 + g.below(c.tgt_vocab_size - 4)).collect())
        .collect();
    let batch = Batch::new(&sources, &targets, c.bos_id, c.eos_id).unwrap();
    let (b, s_steps, t) = (batch.len(), batch.src_steps(), batch.tgt_steps());
    let vt = c.tgt_vocab_size;
    // recur's teacher-forced logits (T·B, Vt), time-major.
    let want = m.logits(&batch).unwrap();
    let mut src = vec![0usize; b * s_steps];
    for (k, sq) in sources.iter().enumerate() {
        src[k * s_steps..k * s_steps + sq.len()].copy_from_slice(sq);
    }
    let src_len = lens(batch.src_lengths());
    let enc_feeds = vec![
        ("src".to_string(), ids(vec![b, s_steps], &src)),
        ("src_lengths".to_string(), src_len.clone()),
    ];
    let enc = forward_cli(dir, &enc_path, &enc_feeds);
    let decoder = Model::read(&dec_path).unwrap();
    // Teacher forcing, one decoder step at a time: the logits of every valid position.
    let dec_in = batch.dec_input(); // (T, B)
    let mut state = enc.clone();
    let mut all = vec![0f32; b * t * vt]; // (B, T, Vt), zero past each target
    for ti in 0..t {
        let prev = &dec_in[ti * b..(ti + 1) * b];
        let feeds = step_feeds(prev, &state, &enc, &src_len, attention);
        let o = if ti == 0 {
            forward_cli(dir, &dec_path, &feeds)
        } else {
            run_lib(&decoder, &feeds)
        };
        let got = o["logits"].to_f64();
        for bi in 0..b {
            if ti < batch.tgt_lengths()[bi] {
                let w = &want[(ti * b + bi) * vt..][..vt];
                close(
                    &format!("{case} step {ti} row {bi}"),
                    &Value::f32(
                        vec![vt],
                        got[bi * vt..(bi + 1) * vt]
                            .iter()
                            .map(|&x| x as f32)
                            .collect(),
                    ),
                    &[vt],
                    w,
                );
                all[(bi * t + ti) * vt..][..vt].copy_from_slice(w);
            }
        }
        state = o;
    }
    // Greedy decoding through the two graphs gives recur's greedy output.
    let max_len = 8;
    let best = m.greedy(&sources, max_len).unwrap();
    let mut state = enc.clone();
    let mut prev = vec![c.bos_id; b];
    let mut got: Vec<Vec<usize>> = vec![Vec::new(); b];
    let mut done = vec![false; b];
    for _ in 0..max_len {
        let o = run_lib(
            &decoder,
            &step_feeds(&prev, &state, &enc, &src_len, attention),
        );
        let l = o["logits"].to_f64();
        for r in 0..b {
            if done[r] {
                continue;
            }
            let row = &l[r * vt..(r + 1) * vt];
            let mut id = 0;
            for (k, &x) in row.iter().enumerate() {
                if x > row[id] {
                    id = k;
                }
            }
            if id == c.eos_id {
                done[r] = true;
            } else {
                got[r].push(id);
                prev[r] = id;
            }
        }
        state = o;
        if done.iter().all(|&d| d) {
            break;
        }
    }
    assert_eq!(got, best, "{case}: greedy decoding");
    let mut dec_bm = vec![0usize; b * t];
    for ti in 0..t {
        for bi in 0..b {
            dec_bm[bi * t + ti] = dec_in[ti * b + bi];
        }
    }
    let mut inputs = enc_feeds.clone();
    inputs.push(("dec_input".to_string(), ids(vec![b, t], &dec_bm)));
    inputs.push(("tgt_lengths".to_string(), lens(batch.tgt_lengths())));
    write_fixture(
        case,
        &[("encoder.onnx", &enc_path), ("decoder.onnx", &dec_path)],
        &inputs,
        &[("logits".to_string(), Value::f32(vec![b, t, vt], all))],
    );
}

#[test]
fn seq2seq_models_export_an_encoder_and_a_decoder_step() {
    let dir = TmpDir::new("export-s2s");
    let data = dir.path("train.tsv");
    std::fs::write(&data, reversal_tsv(60, 1)).unwrap();
    let common = [
        "seq2seq",
        "--train",
        s(&data),
        "--hidden-size",
        "8",
        "--embed-size",
        "6",
        "--batch-size",
        "8",
        "--steps",
        "3",
    ];
    for (case, extra) in [
        (
            "seq2seq_bilstm_general_2layers",
            &[
                "--cell",
                "lstm",
                "--attention",
                "general",
                "--bidirectional=true",
                "--num-layers",
                "2",
            ][..],
        ),
        (
            "seq2seq_gru_dot",
            &["--cell", "gru", "--attention", "dot"][..],
        ),
        (
            "seq2seq_rnn_none",
            &["--cell", "rnn_tanh", "--attention", "none"][..],
        ),
        // The cell variants in both graphs: peepholes and clip in a bidirectional encoder
        // and its decoder; a GRU with the reset gate before the product and other functions.
        (
            "seq2seq_bilstm_peepholes_clip",
            &[
                "--cell",
                "lstm",
                "--bidirectional=true",
                "--peepholes",
                "--cell-clip",
                "2",
            ][..],
        ),
        (
            "seq2seq_gru_reset_before_activations",
            &[
                "--cell",
                "gru",
                "--attention",
                "dot",
                "--gru-linear-before-reset",
                "false",
                "--activations",
                "hard_sigmoid:0.3,0.45/elu:0.8",
            ][..],
        ),
    ] {
        let mut a = common.to_vec();
        a.extend_from_slice(extra);
        let m = train(&dir, case, &a);
        seq2seq_case(&dir, case, &m);
    }
}

#[test]
fn export_options_that_do_not_fit_a_model_directory_are_refused() {
    let dir = TmpDir::new("export-opts");
    let o = recur(&[
        "export",
        "--onnx",
        s(&dir.path("x.onnx")),
        "--model",
        s(&dir.path("missing")),
    ]);
    fails_with(&o, "no such model directory");
    let data = dir.path("train.tsv");
    std::fs::write(&data, sentiment_tsv(20, 2)).unwrap();
    let m = train(
        &dir,
        "m",
        &[
            "classify",
            "--train",
            s(&data),
            "--hidden-size",
            "4",
            "--embed-size",
            "4",
            "--steps",
            "1",
        ],
    );
    let o = recur(&[
        "export",
        "--onnx",
        s(&dir.path("x.onnx")),
        "--model",
        s(&m),
        "--initial-state",
    ]);
    fails_with(&o, "always starts from zero states");
    let o = recur(&[
        "export",
        "--onnx",
        s(&dir.path("x.onnx")),
        "--model",
        s(&dir.path("m")),
        "--batch-first",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

/// The committed fixtures (what scripts/check_onnx_export.py --models runs in ONNX Runtime)
/// run in recur-onnx too and give the expected outputs stored beside them.
#[test]
fn committed_fixtures_run_in_recur_onnx() {
    let root =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/onnx/export_models");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 11, "{} cases", cases.len());
    for case in cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let inputs: HashMap<String, Value> = read_safetensors(&case.join("inputs.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
        let expected: HashMap<String, Value> = read_safetensors(&case.join("expected.safetensors"))
            .unwrap()
            .into_iter()
            .collect();
        let f32s = |v: &Value| -> Vec<f32> { v.to_f64().iter().map(|&x| x as f32).collect() };
        if case.join("model.onnx").exists() {
            let m = Model::read(case.join("model.onnx")).unwrap();
            let feeds: Vec<(String, Value)> = inputs.into_iter().collect();
            let out = run_lib(&m, &feeds);
            for (k, want) in &expected {
                close(&format!("{name} {k}"), &out[k], &want.shape, &f32s(want));
            }
            continue;
        }
        let enc = Model::read(case.join("encoder.onnx")).unwrap();
        let dec = Model::read(case.join("decoder.onnx")).unwrap();
        let wanted: Vec<String> = dec.inputs().iter().map(|i| i.name.clone()).collect();
        let enc_out = run_lib(
            &enc,
            &[
                ("src".to_string(), inputs["src"].clone()),
                ("src_lengths".to_string(), inputs["src_lengths"].clone()),
            ],
        );
        let dec_in = inputs["dec_input"].to_i64();
        let tgt_len = inputs["tgt_lengths"].to_i64();
        let (b, t) = (inputs["dec_input"].shape[0], inputs["dec_input"].shape[1]);
        let want = f32s(&expected["logits"]);
        let vt = expected["logits"].shape[2];
        let mut state = enc_out.clone();
        for ti in 0..t {
            let prev: Vec<usize> = (0..b).map(|bi| dec_in[bi * t + ti] as usize).collect();
            let feeds: Vec<(String, Value)> =
                step_feeds(&prev, &state, &enc_out, &inputs["src_lengths"], true)
                    .into_iter()
                    .filter(|(k, _)| wanted.contains(k))
                    .collect();
            let o = run_lib(&dec, &feeds);
            let got = o["logits"].to_f64();
            for bi in 0..b {
                if (ti as i64) < tgt_len[bi] {
                    let g: Vec<f32> = got[bi * vt..(bi + 1) * vt]
                        .iter()
                        .map(|&x| x as f32)
                        .collect();
                    close(
                        &format!("{name} step {ti} row {bi}"),
                        &Value::f32(vec![vt], g),
                        &[vt],
                        &want[(bi * t + ti) * vt..][..vt],
                    );
                }
            }
            state = o;
        }
    }
}
