//! The regularizer options of `recur train classify`, `tag` and `forecast`: a classifier with
//! every option resumed in the middle gives bit for bit the uninterrupted run (every mask
//! comes from the checkpointed generator); the options are saved in `config.json` and
//! `recur eval` reloads the model; options that do not fit a model are refused, naming them.

use recur::io::state_dict::TensorFile;
use recur::train::checkpoint::Checkpoint;
use std::path::Path;

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur, s};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

/// A small deterministic generator (xorshift).
struct Gen(u64);

impl Gen {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 33) as usize % n
    }
}

/// `label<TAB>text` lines: filler words around one word of the label's sentiment.
fn sentiment_tsv(n: usize, seed: u64) -> String {
    let (pos, neg) = (["good", "great", "fun"], ["bad", "dull", "awful"]);
    let filler = ["the", "film", "was", "a", "plot", "and"];
    let mut g = Gen(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = String::new();
    for _ in 0..n {
        let p = g.below(2) == 0;
        let len = 2 + g.below(6);
        let mut words: Vec<&str> = (0..len).map(|_| filler[g.below(6)]).collect();
        let at = g.below(len + 1);
        words.insert(at, if p { pos[g.below(3)] } else { neg[g.below(3)] });
        out += &format!("{}\t{}\n", if p { "pos" } else { "neg" }, words.join(" "));
    }
    out
}

const ALL: [&str; 19] = [
    "--layer-norm",
    "--input-dropout",
    "0.1",
    "--recurrent-dropout",
    "0.2",
    "--zoneout",
    "0.1",
    "--weight-drop",
    "0.2",
    "--locked-dropout",
    "--dropout",
    "0.2",
    "--embed-dropout",
    "0.1",
    "--ar",
    "1",
    "--tar",
    "0.5",
    "--bidirectional=false",
];

fn classify(train: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "train",
        "classify",
        "--train",
        s(train),
        "--out",
        s(out),
        "--hidden-size",
        "12",
        "--embed-size",
        "8",
        "--num-layers",
        "2",
        "--batch-size",
        "16",
        "--log-every",
        "1000",
    ]
    .iter()
    .map(|x| x.to_string())
    .collect();
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

fn checkpoint_bits(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let path = dir.join("checkpoint.safetensors");
    let c = Checkpoint::read(&path).unwrap();
    let f = TensorFile::read(&path).unwrap();
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
fn regularized_classifier_resumes_bit_exact_and_reloads() {
    let dir = TmpDir::new("reg-classify");
    let train = dir.path("train.tsv");
    std::fs::write(&train, sentiment_tsv(150, 4)).unwrap();
    let (a, b) = (dir.path("a"), dir.path("b"));
    let with = |extra: &[&str]| -> Vec<String> {
        let mut v: Vec<&str> = ALL.to_vec();
        v.extend_from_slice(extra);
        v.into_iter().map(String::from).collect()
    };
    let args = |out: &Path, extra: &[&str]| {
        let w = with(extra);
        let w: Vec<&str> = w.iter().map(|x| x.as_str()).collect();
        classify(&train, out, &w)
    };
    let o = recur(&args(&a, &["--steps", "20", "--eval-every", "5"]));
    let log = ok(&o) + &String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("regularizers: layer norm"), "{log}");
    ok(&recur(&args(&b, &["--steps", "9", "--eval-every", "5"])));
    let o = recur(&args(
        &b,
        &["--steps", "20", "--eval-every", "5", "--resume"],
    ));
    let log = ok(&o) + &String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("resuming from"), "{log}");
    let w = checkpoint_bits(&a);
    assert!(w.iter().any(|(n, _)| n == "param.rnn"));
    assert!(w == checkpoint_bits(&b), "the resumed run's weights differ");
    // Another seed draws other masks: other weights.
    let c = dir.path("c");
    ok(&recur(&args(
        &c,
        &["--steps", "9", "--eval-every", "5", "--seed", "1"],
    )));
    let d = dir.path("d");
    ok(&recur(&args(&d, &["--steps", "9", "--eval-every", "5"])));
    assert!(checkpoint_bits(&c) != checkpoint_bits(&d));

    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["layer_norm"], true);
    assert_eq!(config["locked_dropout"], true);
    assert_eq!(config["zoneout"].as_f64(), Some(0.1));
    assert_eq!(config["weight_drop"].as_f64(), Some(0.2));
    assert_eq!(config["embed_dropout"].as_f64(), Some(0.1));
    assert_eq!(config["ar"].as_f64(), Some(1.0));
    assert_eq!(config["tar"].as_f64(), Some(0.5));
    let f = TensorFile::read(a.join("model.safetensors")).unwrap();
    assert_eq!(f.raw("rnn.ln_ih_weight_l0").unwrap().shape, [48]);
    assert_eq!(f.raw("rnn.ln_c_bias_l1").unwrap().shape, [12]);
    let e = ok(&recur(&[
        "eval",
        "--model",
        s(&a),
        "--data",
        s(&train),
        "--json",
    ]));
    let e: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert!(e["accuracy"].as_f64().unwrap() > 0.0, "{e}");
}

/// CoNLL-U sentences "DET NOUN VERB ." with a few words of each.
fn treebank(n: usize) -> String {
    let mut g = Gen(7);
    let (det, noun, verb) = (
        ["the", "a"],
        ["cat", "dog", "fish", "bird"],
        ["sees", "likes", "eats"],
    );
    let mut out = String::new();
    for k in 0..n {
        out += &format!("# sent_id = s{k}\n");
        let w = [
            (det[g.below(2)], "DET"),
            (noun[g.below(4)], "NOUN"),
            (verb[g.below(3)], "VERB"),
            (".", "PUNCT"),
        ];
        for (i, (f, u)) in w.iter().enumerate() {
            out += &format!("{}\t{f}\t_\t{u}\t_\t_\t0\tdep\t_\t_\n", i + 1);
        }
        out.push('\n');
    }
    out
}

#[test]
fn tagger_and_forecaster_take_the_options_that_fit_them() {
    let dir = TmpDir::new("reg-tag");
    let tb = dir.path("train.conllu");
    std::fs::write(&tb, treebank(60)).unwrap();
    let tag = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "train",
            "tag",
            "--train",
            s(&tb),
            "--out",
            out,
            "--hidden-size",
            "8",
            "--embed-size",
            "6",
            "--steps",
            "6",
            "--eval-every",
            "3",
            "--log-every",
            "1000",
        ];
        a.extend_from_slice(extra);
        recur(&a)
    };
    // The tagger reads both ways by default: the options inside the layers need one way.
    let m1 = dir.path("m1");
    fails_with(
        &tag(s(&m1), &["--layer-norm", "--zoneout", "0.1"]),
        "--layer-norm, --zoneout run inside unidirectional layers only: add --bidirectional=false",
    );
    // Embedding dropout, AR and TAR work both ways.
    ok(&tag(
        s(&m1),
        &["--embed-dropout", "0.1", "--ar", "1", "--tar", "1"],
    ));
    let m2 = dir.path("m2");
    ok(&tag(
        s(&m2),
        &[
            "--bidirectional=false",
            "--layer-norm",
            "--recurrent-dropout",
            "0.2",
            "--zoneout",
            "0.1",
        ],
    ));
    for m in [&m1, &m2] {
        let e = ok(&recur(&[
            "eval",
            "--model",
            s(m),
            "--data",
            s(&tb),
            "--json",
        ]));
        let e: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
        assert!(e["accuracy"].as_f64().unwrap() > 0.0, "{e}");
    }

    let mut csv = String::from("t,level\n");
    for t in 0..120 {
        csv += &format!("{t},{:.4}\n", (t as f64 * 0.5).sin());
    }
    let series = dir.path("s.csv");
    std::fs::write(&series, csv).unwrap();
    let forecast = |out: &str, extra: &[&str]| {
        let mut a = vec![
            "train",
            "forecast",
            "--train",
            s(&series),
            "--column",
            "level",
            "--window",
            "8",
            "--out",
            out,
            "--hidden-size",
            "8",
            "--steps",
            "6",
            "--eval-every",
            "3",
            "--log-every",
            "1000",
        ];
        a.extend_from_slice(extra);
        recur(&a)
    };
    let f = dir.path("f");
    fails_with(
        &forecast(s(&f), &["--embed-dropout", "0.1"]),
        "--embed-dropout: this model of recur train forecast reads numeric features",
    );
    ok(&forecast(
        s(&f),
        &[
            "--layer-norm",
            "--zoneout",
            "0.1",
            "--ar",
            "0.5",
            "--tar",
            "0.5",
        ],
    ));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(f.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["layer_norm"], true);
    let e = ok(&recur(&[
        "eval",
        "--model",
        s(&f),
        "--data",
        s(&series),
        "--json",
    ]));
    let e: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert!(e["rmse"].as_f64().unwrap().is_finite(), "{e}");
}

/// `n` lines `word<TAB>reversed word`, words of 3 to 5 letters of a..f.
fn reversal_tsv(n: usize) -> String {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    let mut out = String::new();
    for _ in 0..n {
        let len = 3 + g.below(3);
        let w: String = (0..len)
            .map(|_| (b'a' + g.below(6) as u8) as char)
            .collect();
        let r: String = w.chars().rev().collect();
        out += &format!("{w}\t{r}\n");
    }
    out
}

#[test]
fn regularized_seq2seq_resumes_bit_exact_and_reloads() {
    let dir = TmpDir::new("reg-s2s");
    let train = dir.path("train.tsv");
    std::fs::write(&train, reversal_tsv(120)).unwrap();
    let args = |out: &Path, extra: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "seq2seq",
            "--train",
            s(&train),
            "--out",
            s(out),
            "--hidden-size",
            "12",
            "--embed-size",
            "6",
            "--batch-size",
            "8",
            "--num-layers",
            "2",
            "--eval-every",
            "6",
            "--log-every",
            "1000",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect();
        a.extend(ALL.iter().map(|x| x.to_string()));
        a.extend(extra.iter().map(|x| x.to_string()));
        a
    };
    let (a, b) = (dir.path("a"), dir.path("b"));
    let o = recur(&args(&a, &["--steps", "14"]));
    let log = ok(&o) + &String::from_utf8_lossy(&o.stderr);
    assert!(log.contains("regularizers: layer norm"), "{log}");
    ok(&recur(&args(&b, &["--steps", "6"])));
    ok(&recur(&args(&b, &["--steps", "14", "--resume"])));
    let w = checkpoint_bits(&a);
    assert!(w.iter().any(|(n, _)| n == "param.decoder"));
    assert!(w == checkpoint_bits(&b), "the resumed run's weights differ");
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["layer_norm"], true);
    assert_eq!(config["embed_dropout"].as_f64(), Some(0.1));
    let f = TensorFile::read(a.join("model.safetensors")).unwrap();
    assert_eq!(f.raw("decoder.ln_c_weight_l1").unwrap().shape, [12]);
    let e = ok(&recur(&[
        "eval",
        "--model",
        s(&a),
        "--data",
        s(&train),
        "--json",
    ]));
    let e: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert!(e.is_object(), "{e}");
    // A bidirectional encoder refuses the options inside the layers.
    let c = dir.path("c");
    fails_with(
        &recur(&[
            "train",
            "seq2seq",
            "--train",
            s(&train),
            "--out",
            s(&c),
            "--bidirectional",
            "--zoneout",
            "0.1",
            "--steps",
            "1",
        ]),
        "--zoneout run inside unidirectional layers only: add --bidirectional=false to recur train seq2seq",
    );
}
