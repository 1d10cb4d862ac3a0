//! `recur train classify`, `recur train tag` and `recur train forecast` end to end on small
//! generated data sets (no third-party data): they learn, write their model directories,
//! and `recur eval` / `recur predict` read them back; resuming is exact; bad inputs give
//! errors that name them.

use recur::train::checkpoint::Checkpoint;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{ok, recur};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

/// Runs recur with `input` on stdin.
fn recur_stdin(args: &[&str], input: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run recur");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Stdout then stderr of a successful run (with `--json` the log is on stderr).
fn ok_both(o: &Output) -> (String, String) {
    let out = ok(o);
    (out, String::from_utf8_lossy(&o.stderr).to_string())
}

fn fails(o: &Output) -> String {
    assert_eq!(
        o.status.code(),
        Some(2),
        "expected a failure, stdout:\n{}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// The JSON line `--json` prints last on stdout.
fn json_line(out: &str) -> serde_json::Value {
    serde_json::from_str(out.lines().last().expect("a JSON line")).unwrap()
}

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
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.below(v.len())]
    }
    fn unit(&mut self) -> f64 {
        self.below(1 << 20) as f64 / (1 << 20) as f64
    }
}

// ---------------------------------------------------------------------------------------------
// Text classification

const POSITIVE: [&str; 5] = ["good", "great", "fun", "lovely", "superb"];
const NEGATIVE: [&str; 5] = ["bad", "dull", "boring", "awful", "poor"];
const FILLER: [&str; 8] = ["the", "film", "was", "a", "plot", "and", "story", "it"];

/// `label<TAB>text` lines: filler words around one word of the label's sentiment.
fn sentiment_tsv(n: usize, seed: u64) -> String {
    let mut g = Gen::new(seed);
    let mut s = String::new();
    for _ in 0..n {
        let pos = g.below(2) == 0;
        let len = 3 + g.below(6);
        let at = g.below(len + 1);
        let mut words: Vec<&str> = (0..len).map(|_| g.pick(&FILLER)).collect();
        words.insert(at, g.pick(if pos { &POSITIVE } else { &NEGATIVE }));
        s += &format!("{}\t{}\n", if pos { "pos" } else { "neg" }, words.join(" "));
    }
    s
}

fn classify_args<'a>(train: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec![
        "train",
        "classify",
        "--train",
        train,
        "--out",
        out,
        "--hidden-size",
        "16",
        "--embed-size",
        "12",
        "--batch-size",
        "16",
        "--log-every",
        "1000",
    ];
    a.extend_from_slice(extra);
    a
}

#[test]
fn classify_texts_then_eval_and_predict() {
    let dir = TmpDir::new("classify");
    let train = dir.path("train.tsv");
    let test = dir.path("test.tsv");
    std::fs::write(&train, sentiment_tsv(400, 1)).unwrap();
    std::fs::write(&test, sentiment_tsv(100, 2)).unwrap();
    let out = dir.path("m");
    let (t, o, te) = (
        train.to_str().unwrap(),
        out.to_str().unwrap(),
        test.to_str().unwrap(),
    );
    let log = ok(&recur(&classify_args(
        t,
        o,
        &["--epochs", "6", "--lr", "0.01", "--test", te, "--json"],
    )));
    let j = json_line(&log);
    assert_eq!(j["task"], "classify");
    let acc = j["best"]["valid_accuracy"].as_f64().unwrap();
    assert!(acc > 0.95, "valid accuracy {acc}");
    let test_acc = j["report"]["test_accuracy"].as_f64().unwrap();
    assert!(test_acc > 0.95, "test accuracy {test_acc}: {j}");
    for k in ["test_f1.pos", "test_recall.neg", "valid_precision.pos"] {
        assert!(j["report"][k].as_f64().unwrap() > 0.9, "{k}: {j}");
    }
    for f in [
        "model.safetensors",
        "config.json",
        "labels.json",
        "vocab.json",
        "metrics.json",
    ] {
        assert!(out.join(f).exists(), "{f} is missing");
    }
    let st = recur::io::state_dict::TensorFile::read(out.join("model.safetensors")).unwrap();
    let names: Vec<&str> = st.names().collect();
    for n in [
        "embed.weight",
        "rnn.weight_ih_l0",
        "rnn.weight_hh_l0_reverse",
        "head.weight",
        "head.bias",
    ] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    let labels: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("labels.json")).unwrap()).unwrap();
    assert_eq!(labels.to_string().matches("pos").count(), 1, "{labels}");

    // recur eval: the same test accuracy as the one reported after training.
    let e = ok(&recur(&["eval", "--model", o, "--data", te, "--json"]));
    let m: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert_eq!(m["accuracy"].as_f64().unwrap(), test_acc);
    assert_eq!(m["examples"].as_f64().unwrap(), 100.0);
    let text = recur(&["eval", "--model", o, "--data", te]);
    let stderr = String::from_utf8_lossy(&text.stderr);
    assert!(
        stderr.contains("precision") && stderr.contains("gold \\ pred"),
        "{stderr}"
    );

    // recur predict from stdin: one label and probability per line.
    let p = ok(&recur_stdin(
        &["predict", "--model", o],
        "the film was great fun\nit was a dull and boring plot\n",
    ));
    let lines: Vec<&str> = p.lines().collect();
    assert_eq!(lines.len(), 2, "{p}");
    assert!(lines[0].starts_with("pos\t"), "{p}");
    assert!(lines[1].starts_with("neg\t"), "{p}");
    let prob: f64 = lines[0].split('\t').nth(1).unwrap().parse().unwrap();
    assert!((0.5..=1.0).contains(&prob), "{p}");
}

#[test]
fn classify_jsonl_with_score_labels_and_held_out_splits() {
    let dir = TmpDir::new("jsonl");
    // JSON Lines with the label in "sentiment" and the text in two fields.
    let mut g = Gen::new(5);
    let mut s = String::new();
    for _ in 0..240 {
        let pos = g.below(2) == 0;
        let w = g.pick(if pos { &POSITIVE } else { &NEGATIVE });
        s += &serde_json::json!({
            "sentiment": if pos { "yes" } else { "no" },
            "title": g.pick(&FILLER),
            "body": format!("{} {w} {}", g.pick(&FILLER), g.pick(&FILLER)),
        })
        .to_string();
        s.push('\n');
    }
    let train = dir.path("data.jsonl");
    std::fs::write(&train, s).unwrap();
    let out = dir.path("m");
    let (log, err) = ok_both(&recur(&classify_args(
        train.to_str().unwrap(),
        out.to_str().unwrap(),
        &[
            "--label-field",
            "sentiment",
            "--text-field",
            "title,body",
            "--test-fraction",
            "0.2",
            "--valid-fraction",
            "0.2",
            "--epochs",
            "5",
            "--lr",
            "0.01",
            "--pooling",
            "mean",
            "--json",
        ],
    )));
    assert!(err.contains("144 training examples"), "{err}");
    assert!(err.contains("48 test"), "{err}");
    let j = json_line(&log);
    assert!(j["report"]["test_accuracy"].as_f64().unwrap() > 0.9, "{j}");

    // Scores in a TSV column become positive / negative labels; zeros are dropped.
    let tsv = dir.path("scores.tsv");
    let mut g = Gen::new(6);
    let mut s = String::new();
    for k in 0..200 {
        let pos = g.below(2) == 0;
        let score = if k % 20 == 0 {
            0.0
        } else if pos {
            1.5
        } else {
            -2.25
        };
        let w = g.pick(if pos { &POSITIVE } else { &NEGATIVE });
        s += &format!("{k}\t{score}\t{} {w}\n", g.pick(&FILLER));
    }
    std::fs::write(&tsv, s).unwrap();
    let out2 = dir.path("m2");
    let log = ok(&recur(&classify_args(
        tsv.to_str().unwrap(),
        out2.to_str().unwrap(),
        &[
            "--label-column",
            "1",
            "--text-column",
            "2",
            "--score",
            "--epochs",
            "2",
        ],
    )));
    assert!(log.contains("10 dropped"), "{log}");
    let labels = std::fs::read_to_string(out2.join("labels.json")).unwrap();
    assert!(
        labels.contains("negative") && labels.contains("positive"),
        "{labels}"
    );
}

/// A `.ts` file of 2-dimensional series: rising (`up`) or falling (`down`) ramps with
/// noise, offset from zero, of lengths 5 to 14.
fn ramps_ts(n: usize, seed: u64) -> String {
    let mut g = Gen::new(seed);
    let mut s = String::from(
        "# generated ramps\n@problemName Ramps\n@timeStamps false\n@univariate false\n\
         @dimensions 2\n@equalLength false\n@classLabel true down up\n@data\n",
    );
    for _ in 0..n {
        let up = g.below(2) == 0;
        let len = 5 + g.below(10);
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
        s += &format!("{a}:{b}:{}\n", if up { "up" } else { "down" });
    }
    s
}

#[test]
fn classify_numeric_series_then_eval_and_predict() {
    let dir = TmpDir::new("series");
    let train = dir.path("R_TRAIN.ts");
    let test = dir.path("R_TEST.ts");
    std::fs::write(&train, ramps_ts(200, 7)).unwrap();
    std::fs::write(&test, ramps_ts(60, 8)).unwrap();
    let out = dir.path("m");
    let o = out.to_str().unwrap();
    let (log, err) = ok_both(&recur(&classify_args(
        train.to_str().unwrap(),
        o,
        &[
            "--epochs",
            "8",
            "--lr",
            "0.01",
            "--cell",
            "gru",
            "--bidirectional",
            "false",
            "--json",
        ],
    )));
    assert!(err.contains("2 features → nn.GRU(2, 16)"), "{err}");
    let j = json_line(&log);
    assert!(j["best"]["valid_accuracy"].as_f64().unwrap() > 0.95, "{j}");
    assert!(out.join("normalization.safetensors").exists());
    assert!(!out.join("vocab.json").exists());
    let e = ok(&recur(&[
        "eval",
        "--model",
        o,
        "--data",
        test.to_str().unwrap(),
        "--json",
    ]));
    let m: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert!(m["accuracy"].as_f64().unwrap() > 0.95, "{m}");
    let p = ok(&recur_stdin(
        &["predict", "--model", o],
        "100,103,106,109,112,115:100,99,98,97,96,95\n115,112,109,106,103,100:95,96,97,98,99,100\n",
    ));
    let labels: Vec<&str> = p.lines().map(|l| l.split('\t').next().unwrap()).collect();
    assert_eq!(labels, ["up", "down"], "{p}");
    let bad = fails(&recur_stdin(&["predict", "--model", o], "1,2,3\n"));
    assert!(
        bad.contains("input line 1: expected 2 dimensions separated by ':', found 1"),
        "{bad}"
    );
}

#[test]
fn classify_resume_is_bit_exact() {
    let dir = TmpDir::new("resume");
    let train = dir.path("train.tsv");
    std::fs::write(&train, sentiment_tsv(120, 3)).unwrap();
    let t = train.to_str().unwrap();
    let (a, b) = (dir.path("a"), dir.path("b"));
    let opts = |steps: &'static str| -> Vec<&'static str> {
        vec![
            "--steps",
            steps,
            "--eval-every",
            "5",
            "--dropout",
            "0.3",
            "--word-dropout",
            "0.1",
        ]
    };
    ok(&recur(&classify_args(t, a.to_str().unwrap(), &opts("17"))));
    ok(&recur(&classify_args(t, b.to_str().unwrap(), &opts("8"))));
    let mut more = opts("17");
    more.push("--resume");
    let log = ok(&recur(&classify_args(t, b.to_str().unwrap(), &more)));
    assert!(log.contains("resuming from"), "{log}");
    let params = |d: &Path| -> Vec<(String, Vec<u32>)> {
        let f = recur::io::state_dict::TensorFile::read(d.join("checkpoint.safetensors")).unwrap();
        let c = Checkpoint::read(&d.join("checkpoint.safetensors")).unwrap();
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
                let bits = c
                    .f32(&n, len)
                    .unwrap()
                    .iter()
                    .map(|x| x.to_bits())
                    .collect();
                (n, bits)
            })
            .collect()
    };
    let (pa, pb) = (params(&a), params(&b));
    assert!(
        pa.iter().any(|(n, _)| n == "param.embed"),
        "{:?}",
        pa.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    assert!(pa == pb, "the resumed run's weights differ");
}

#[test]
fn classify_errors_name_the_problem() {
    let dir = TmpDir::new("errors");
    let train = dir.path("train.tsv");
    std::fs::write(&train, sentiment_tsv(50, 4)).unwrap();
    let valid = dir.path("valid.tsv");
    std::fs::write(&valid, "pos\tgreat film\nmeh\tthe plot\n").unwrap();
    let t = train.to_str().unwrap();
    let out = dir.path("m");
    let o = out.to_str().unwrap();
    let e = fails(&recur(&classify_args(
        t,
        o,
        &["--valid", valid.to_str().unwrap(), "--steps", "2"],
    )));
    assert!(
        e.contains("meh") && e.contains("neg") && e.contains("pos"),
        "{e}"
    );
    let e = fails(&recur(&classify_args(t, o, &["--format", "xml"])));
    assert!(e.contains("unknown format 'xml'"), "{e}");
    let e = fails(&recur(&classify_args(t, o, &["--pooling", "max"])));
    assert!(e.contains("--pooling: 'max'"), "{e}");
    let e = fails(&recur(&classify_args(t, o, &["--text-column", "5"])));
    assert!(e.contains("train.tsv:1"), "{e}");
    let bad = dir.path("bad.tsv");
    std::fs::write(&bad, b"pos\tgood\nneg\tb\xffd\n").unwrap();
    let e = fails(&recur(&classify_args(bad.to_str().unwrap(), o, &[])));
    assert!(e.contains("bad.tsv:2"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Tagging

/// Pseudo-words made of syllables: nouns of the generated treebank.
fn nouns() -> Vec<String> {
    let a = ["bl", "d", "gr", "m", "t", "z", "fl", "k"];
    let b = ["ax", "ip", "o", "un", "ek", "ar"];
    let mut v = Vec::new();
    for x in a {
        for y in b {
            v.push(format!("{x}{y}"));
        }
    }
    v
}

/// CoNLL-U sentences "DET NOUN VERB DET NOUN ." where `fish` and `duck` are nouns after a
/// determiner and verbs after a noun; `nouns` are drawn with a skewed distribution so that
/// some are rare.
fn treebank(n: usize, seed: u64, nouns: &[String]) -> String {
    let mut g = Gen::new(seed);
    let det = ["the", "a", "every"];
    let verbs = ["sees", "likes", "fish", "duck", "finds"];
    let noun_of = |g: &mut Gen| -> String {
        // 0..8 often, the rest rarely; fish and duck as nouns too.
        match g.below(10) {
            0 => "fish".into(),
            1 => "duck".into(),
            2..=6 => nouns[g.below(8)].clone(),
            _ => nouns[8 + g.below(nouns.len() - 8)].clone(),
        }
    };
    let mut s = String::new();
    for k in 0..n {
        s += &format!("# sent_id = s{k}\n");
        let words: Vec<(String, &str, &str)> = vec![
            (g.pick(&det).into(), "DET", "DT"),
            (noun_of(&mut g), "NOUN", "NN"),
            (g.pick(&verbs).into(), "VERB", "VBZ"),
            (g.pick(&det).into(), "DET", "DT"),
            (noun_of(&mut g), "NOUN", "NN"),
            (".".into(), "PUNCT", "."),
        ];
        for (i, (w, u, x)) in words.iter().enumerate() {
            let w = if i == 0 {
                let mut c = w.chars();
                let f = c.next().unwrap().to_uppercase().collect::<String>();
                f + c.as_str()
            } else {
                w.clone()
            };
            s += &format!("{}\t{w}\t_\t{u}\t{x}\t_\t0\tdep\t_\t_\n", i + 1);
        }
        s.push('\n');
    }
    s
}

#[test]
fn tag_learns_from_context_then_eval_and_predict() {
    let dir = TmpDir::new("tag");
    let all = nouns();
    let train = dir.path("train.conllu");
    let dev = dir.path("dev.conllu");
    std::fs::write(&train, treebank(300, 1, &all[..40])).unwrap();
    // The dev nouns include 8 the training data never had: unknown words.
    std::fs::write(&dev, treebank(60, 2, &all)).unwrap();
    let out = dir.path("m");
    let o = out.to_str().unwrap();
    let (log, err) = ok_both(&recur(&[
        "train",
        "tag",
        "--train",
        train.to_str().unwrap(),
        "--valid",
        dev.to_str().unwrap(),
        "--out",
        o,
        "--hidden-size",
        "16",
        "--embed-size",
        "12",
        "--batch-size",
        "16",
        "--epochs",
        "8",
        "--lr",
        "0.01",
        "--log-every",
        "1000",
        "--json",
    ]));
    assert!(err.contains("nn.LSTM(12, 16, bidirectional=True)"), "{err}");
    assert!(err.contains("4 UPOS tags"), "{err}");
    let j = json_line(&log);
    let acc = j["best"]["valid_accuracy"].as_f64().unwrap();
    assert!(acc > 0.97, "{j}");
    let unk = j["best"]["valid_unknown_accuracy"].as_f64().unwrap();
    assert!(unk > 0.8, "{j}");
    for f in [
        "vocab.json",
        "labels.json",
        "model.safetensors",
        "config.json",
    ] {
        assert!(out.join(f).exists(), "{f} is missing");
    }
    let e = ok(&recur(&[
        "eval",
        "--model",
        o,
        "--data",
        dev.to_str().unwrap(),
        "--json",
    ]));
    let m: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert_eq!(m["sentences"].as_f64().unwrap(), 60.0);
    assert!(m["accuracy"].as_f64().unwrap() > 0.97, "{m}");
    assert!(m.get("unknown_accuracy").is_some(), "{m}");

    // predict: fish / duck get their tag from the context; an empty line stays empty.
    let input = dir.path("in.txt");
    std::fs::write(&input, "The fish sees a duck .\n\nA dax duck the fish .\n").unwrap();
    let output = dir.path("out.txt");
    ok(&recur(&[
        "predict",
        "--model",
        o,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]));
    let tags = std::fs::read_to_string(&output).unwrap();
    let lines: Vec<&str> = tags.lines().collect();
    assert_eq!(
        lines,
        [
            "DET NOUN VERB DET NOUN PUNCT",
            "",
            "DET NOUN VERB DET NOUN PUNCT"
        ],
        "{tags}"
    );

    // XPOS instead of UPOS.
    let out2 = dir.path("x");
    let log = ok(&recur(&[
        "train",
        "tag",
        "--train",
        train.to_str().unwrap(),
        "--out",
        out2.to_str().unwrap(),
        "--column",
        "xpos",
        "--hidden-size",
        "8",
        "--embed-size",
        "8",
        "--steps",
        "3",
    ]));
    assert!(log.contains("4 XPOS tags"), "{log}");
    let labels = std::fs::read_to_string(out2.join("labels.json")).unwrap();
    assert!(labels.contains("VBZ"), "{labels}");
}

// ---------------------------------------------------------------------------------------------
// Forecasting

#[test]
fn forecast_beats_the_naive_baseline_then_eval_and_predict() {
    let dir = TmpDir::new("forecast");
    let mut g = Gen::new(9);
    let mut csv = String::from("t,level\n");
    let mut series = Vec::new();
    for t in 0..600 {
        let v = 50.0
            + 20.0 * (2.0 * std::f64::consts::PI * t as f64 / 12.0).sin()
            + 2.0 * (g.unit() - 0.5);
        series.push(v);
        csv += &format!("{t},{v:.4}\n");
    }
    let data = dir.path("series.csv");
    std::fs::write(&data, csv).unwrap();
    let out = dir.path("m");
    let o = out.to_str().unwrap();
    let (log, err) = ok_both(&recur(&[
        "train",
        "forecast",
        "--train",
        data.to_str().unwrap(),
        "--column",
        "level",
        "--window",
        "12",
        "--horizon",
        "3",
        "--out",
        o,
        "--hidden-size",
        "16",
        "--epochs",
        "15",
        "--lr",
        "0.01",
        "--log-every",
        "1000",
        "--json",
    ]));
    assert!(err.contains("1 features → nn.LSTM(1, 16)"), "{err}");
    let j = json_line(&log);
    let best = &j["best"];
    assert!(
        best["valid_rmse"].as_f64().unwrap() < 0.5 * best["valid_naive_rmse"].as_f64().unwrap(),
        "{j}"
    );
    assert!(j["report"]["test_skill"].as_f64().unwrap() > 0.5, "{j}");
    assert!(out.join("normalization.safetensors").exists());
    let e = ok(&recur(&[
        "eval",
        "--model",
        o,
        "--data",
        data.to_str().unwrap(),
        "--json",
    ]));
    let m: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert_eq!(m["windows"].as_f64().unwrap(), (600 - 12 - 3 + 1) as f64);
    assert!(m["skill"].as_f64().unwrap() > 0.5, "{m}");
    // predict: the last window of the series, given with more values than the window.
    let line: Vec<String> = series[580..].iter().map(|v| format!("{v}")).collect();
    let p = ok(&recur_stdin(
        &["predict", "--model", o],
        &(line.join(",") + "\n"),
    ));
    let f: Vec<f64> = p.trim().split(',').map(|x| x.parse().unwrap()).collect();
    assert_eq!(f.len(), 3, "{p}");
    for (k, v) in f.iter().enumerate() {
        let want = 50.0 + 20.0 * (2.0 * std::f64::consts::PI * (600 + k) as f64 / 12.0).sin();
        assert!(
            (v - want).abs() < 6.0,
            "forecast {k}: {v}, want about {want}"
        );
    }
    let e = fails(&recur_stdin(&["predict", "--model", o], "1,2,3\n"));
    assert!(
        e.contains("input line 1: 3 values, the model reads windows of 12"),
        "{e}"
    );
    let e = fails(&recur(&[
        "train",
        "forecast",
        "--train",
        data.to_str().unwrap(),
        "--column",
        "nope",
        "--out",
        o,
    ]));
    assert!(e.contains("no column 'nope'"), "{e}");
}
