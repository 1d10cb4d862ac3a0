//! `recur train seq2seq`, `recur eval` and `recur predict` on sequence-to-sequence models, end
//! to end on small generated data: a string-reversal task in TSV (learned to a low error rate),
//! a CMUdict-style dictionary with alternative pronunciations, the model directory's files,
//! and bad files and options giving one `error:` line and exit status 2, never a panic.

use recur::io::state_dict::TensorFile;
use std::path::Path;
use std::process::Output;

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{ok, recur, s};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

/// The error line of a failed run (status 2, one `error:` line, no panic).
fn err(o: &Output) -> String {
    let e = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(o.status.code(), Some(2), "stderr: {e}");
    assert!(!e.contains("panicked"), "{e}");
    let line = e.lines().last().unwrap_or("").to_string();
    assert!(line.starts_with("error: "), "{e}");
    line
}

/// A deterministic generator of small numbers.
struct Gen(u64);
impl Gen {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 33) as usize % n
    }
}

/// `n` lines `word<TAB>reversed word`, words of 3 to 5 letters of a..f.
fn reversal_tsv(n: usize, seed: u64) -> String {
    let mut g = Gen(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = String::new();
    for _ in 0..n {
        let len = 3 + g.next(3);
        let w: String = (0..len).map(|_| (b'a' + g.next(6) as u8) as char).collect();
        let r: String = w.chars().rev().collect();
        out += &format!("{w}\t{r}\n");
    }
    out
}

#[test]
fn trains_a_reversal_task_from_tsv_then_eval_and_predict() {
    let dir = TmpDir::new("s2s-cli");
    let (train, valid, test) = (
        dir.path("train.tsv"),
        dir.path("valid.tsv"),
        dir.path("test.tsv"),
    );
    std::fs::write(&train, reversal_tsv(400, 1)).unwrap();
    std::fs::write(&valid, reversal_tsv(40, 2)).unwrap();
    std::fs::write(&test, reversal_tsv(40, 3)).unwrap();
    let out = dir.path("model");
    let o = recur(&[
        "train",
        "seq2seq",
        "--train",
        s(&train),
        "--valid",
        s(&valid),
        "--test",
        s(&test),
        "--out",
        s(&out),
        "--cell",
        "gru",
        "--hidden-size",
        "48",
        "--embed-size",
        "16",
        "--attention",
        "dot",
        "--batch-size",
        "16",
        "--steps",
        "500",
        "--lr",
        "1e-2",
        "--eval-every",
        "250",
        "--json",
    ]);
    let stdout = ok(&o);
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(log.contains("400 training pairs"), "{log}");
    assert!(log.contains("dot attention"), "{log}");
    // The final JSON line has the test metrics of the best model.
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let ter = json["report"]["test_ter"].as_f64().unwrap();
    let exact = json["report"]["test_exact"].as_f64().unwrap();
    assert!(
        ter < 0.1 && exact > 0.7,
        "test ter {ter}, exact {exact}\n{log}"
    );
    for f in [
        "model.safetensors",
        "config.json",
        "src_vocab.json",
        "tgt_vocab.json",
        "metrics.json",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let weights = TensorFile::read(out.join("model.safetensors")).unwrap();
    let mut names: Vec<&str> = weights.names().collect();
    names.sort();
    assert_eq!(
        names,
        [
            "attn_combine.weight",
            "decoder.bias_hh_l0",
            "decoder.bias_ih_l0",
            "decoder.weight_hh_l0",
            "decoder.weight_ih_l0",
            "encoder.bias_hh_l0",
            "encoder.bias_ih_l0",
            "encoder.weight_hh_l0",
            "encoder.weight_ih_l0",
            "head.bias",
            "head.weight",
            "src_embed.weight",
            "tgt_embed.weight"
        ]
    );
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["model"], "seq2seq");
    assert_eq!(cfg["attention"], "dot");
    assert_eq!(cfg["training"]["data"]["format"], "tsv");

    // recur eval on the test file gives the metrics of the run's test decoding.
    let e = ok(&recur(&[
        "eval",
        "--model",
        s(&out),
        "--data",
        s(&test),
        "--json",
    ]));
    let m: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert!((m["ter"].as_f64().unwrap() - ter).abs() < 1e-12, "{e}");
    assert_eq!(m["sources"].as_f64(), Some(40.0));

    // recur predict: one output line per input line; greedy and beam agree on a learned task.
    let inputs = dir.path("in.txt");
    std::fs::write(&inputs, "abc\nfeed\ncafe\n").unwrap();
    let p = ok(&recur(&[
        "predict",
        "--model",
        s(&out),
        "--input",
        s(&inputs),
    ]));
    let lines: Vec<&str> = p.lines().collect();
    assert_eq!(lines.len(), 3);
    let right = lines
        .iter()
        .zip(["cba", "deef", "efac"])
        .filter(|(a, b)| *a == b)
        .count();
    assert!(right >= 2, "{p}");
    let pb = ok(&recur(&[
        "predict",
        "--model",
        s(&out),
        "--input",
        s(&inputs),
        "--beam",
        "3",
    ]));
    assert_eq!(pb.lines().count(), 3);
}

#[test]
fn cmudict_format_groups_alternatives_and_reports_word_error_rate() {
    let dir = TmpDir::new("s2s-cmu");
    // Letters map to phones; words with a 'c' have a second pronunciation.
    let phone = |c: char| match c {
        'a' => "AE1",
        'b' => "B",
        'c' => "K",
        'd' => "D",
        'e' => "EH0",
        _ => "F",
    };
    let mut g = Gen(7);
    let mut dict = String::from(";;; a comment line\n");
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 300 {
        let len = 2 + g.next(4);
        let w: String = (0..len).map(|_| (b'a' + g.next(6) as u8) as char).collect();
        if !seen.insert(w.clone()) {
            continue;
        }
        let ph: Vec<&str> = w.chars().map(phone).collect();
        dict += &format!("{w} {}\n", ph.join(" "));
        if w.contains('c') {
            dict += &format!("{w}(2) {} # alternative\n", ph.join(" ").replace('K', "S"));
        }
    }
    let path = dir.path("dict.txt");
    std::fs::write(&path, &dict).unwrap();
    let out = dir.path("model");
    let o = recur(&[
        "train",
        "seq2seq",
        "--train",
        s(&path),
        "--format",
        "cmudict",
        "--out",
        s(&out),
        "--hidden-size",
        "32",
        "--bidirectional",
        "--embed-size",
        "16",
        "--batch-size",
        "16",
        "--steps",
        "300",
        "--lr",
        "1e-2",
        "--beam",
        "2",
        "--json",
    ]);
    let stdout = ok(&o);
    let log = String::from_utf8_lossy(&o.stderr).to_string();
    // 5% of the words held out for validation and 5% for test, by a hash of the word.
    assert!(log.contains("held out"), "{log}");
    assert!(log.contains("beam 2"), "{log}");
    let json: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let wer = json["report"]["test_wer"].as_f64().unwrap();
    let per = json["report"]["test_per"].as_f64().unwrap();
    // Letters map to phones one to one (or 'c' to either K or S): learned well enough.
    assert!(wer < 0.5 && per < 0.2, "{json}\n{log}");
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["bidirectional"], true);
    let weights = TensorFile::read(out.join("model.safetensors")).unwrap();
    assert_eq!(
        weights.raw("encoder.weight_hh_l0_reverse").unwrap().shape,
        vec![64, 16]
    );
    assert_eq!(
        weights.raw("decoder.weight_hh_l0").unwrap().shape,
        vec![128, 32]
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert!(metrics.to_string().contains("valid_wer"), "{metrics}");
    // Words are lower-cased for prediction; the output is phones separated by spaces.
    let inputs = dir.path("words.txt");
    std::fs::write(&inputs, "Bad\ncafe\n").unwrap();
    let p = ok(&recur(&[
        "predict",
        "--model",
        s(&out),
        "--input",
        s(&inputs),
    ]));
    assert_eq!(p.lines().count(), 2);
    for line in p.lines() {
        assert!(
            line.split(' ')
                .all(|t| ["AE1", "B", "K", "S", "D", "EH0", "F"].contains(&t) || t.is_empty()),
            "{p}"
        );
    }
}

#[test]
fn bad_files_and_options_are_one_line_errors() {
    let dir = TmpDir::new("s2s-bad");
    let good = dir.path("good.tsv");
    std::fs::write(&good, reversal_tsv(60, 4)).unwrap();
    let out = dir.path("m");
    let run = |extra: &[&str]| {
        let mut args = vec!["train", "seq2seq", "--out", s(&out), "--steps", "1"];
        args.extend_from_slice(extra);
        recur(&args)
    };
    let bad = dir.path("bad.tsv");
    std::fs::write(&bad, "abc\tcba\nno tab here\n").unwrap();
    let e = err(&run(&["--train", s(&bad)]));
    assert!(
        e.contains("--train ") && e.contains("bad.tsv:2: expected 2 tab-separated fields, found 1"),
        "{e}"
    );
    // --skip-bad-lines reads on and says what it skipped.
    let o = run(&[
        "--train",
        s(&bad),
        "--valid",
        s(&good),
        "--test",
        s(&good),
        "--skip-bad-lines",
        "--hidden-size",
        "8",
    ]);
    let log = ok(&o);
    assert!(
        log.contains("1 records, 1 skipped, 0 dropped (skipped lines 2)"),
        "{log}"
    );
    std::fs::remove_dir_all(&out).unwrap();
    std::fs::write(&bad, "abc\t\n").unwrap();
    let e = err(&run(&["--train", s(&bad)]));
    assert!(e.contains("bad.tsv:1: field 2 is empty"), "{e}");
    std::fs::write(&bad, "").unwrap();
    let e = err(&run(&["--train", s(&bad)]));
    assert!(e.contains("no pairs found"), "{e}");
    std::fs::write(&bad, "word\n").unwrap();
    let e = err(&run(&["--train", s(&bad), "--format", "cmudict"]));
    assert!(e.contains("bad.tsv:1: \"word\" has no phones"), "{e}");
    // A run into a directory that holds another run's checkpoint is refused.
    let o = run(&["--train", s(&good), "--hidden-size", "8"]);
    ok(&o);
    let e = err(&run(&["--train", s(&good), "--hidden-size", "8"]));
    assert!(e.contains("add --resume"), "{e}");
    let e = err(&run(&["--train", s(&good), "--format", "xml"]));
    assert!(e.contains("unknown format 'xml'"), "{e}");
    let e = err(&run(&["--train", s(&good), "--attention", "bahdanau"]));
    assert!(
        e.contains("--attention: unknown attention 'bahdanau'"),
        "{e}"
    );
    let e = err(&run(&["--train", s(&good), "--tokens", "bytes"]));
    assert!(e.contains("--tokens: unknown tokens 'bytes'"), "{e}");
    let e = err(&run(&["--train", s(&good), "--beam", "0"]));
    assert!(e.contains("--beam must be at least 1"), "{e}");
    let e = err(&run(&["--train", s(&good), "--src-column", "1"]));
    assert!(e.contains("both 1"), "{e}");
    let e = err(&recur(&[
        "eval",
        "--model",
        s(&dir.path("nope")),
        "--data",
        s(&good),
    ]));
    assert!(e.contains("no such model directory"), "{e}");
}

#[test]
fn resume_continues_exactly() {
    let dir = TmpDir::new("s2s-resume");
    let train = dir.path("train.tsv");
    std::fs::write(&train, reversal_tsv(200, 5)).unwrap();
    let args = |out: &Path, steps: &str| -> Vec<String> {
        [
            "train",
            "seq2seq",
            "--train",
            s(&train),
            "--out",
            s(out),
            "--hidden-size",
            "16",
            "--embed-size",
            "8",
            "--batch-size",
            "8",
            "--dropout",
            "0.2",
            "--num-layers",
            "2",
            "--steps",
            steps,
            "--eval-every",
            "15",
        ]
        .iter()
        .map(|x| x.to_string())
        .collect()
    };
    let run = |v: Vec<String>| {
        let r: Vec<&str> = v.iter().map(|x| x.as_str()).collect();
        ok(&recur(&r))
    };
    // 30 steps in one go (more than one epoch: 170-odd pairs in batches of 8), and 15 + 15.
    let (a, b) = (dir.path("a"), dir.path("b"));
    run(args(&a, "30"));
    run(args(&b, "15"));
    let mut more = args(&b, "30");
    more.push("--resume".into());
    run(more);
    let (ca, cb) = (
        TensorFile::read(a.join("checkpoint.safetensors")).unwrap(),
        TensorFile::read(b.join("checkpoint.safetensors")).unwrap(),
    );
    let names: Vec<&str> = ca.names().filter(|n| n.starts_with("param.")).collect();
    assert!(
        names.contains(&"param.encoder") && names.contains(&"param.attn"),
        "{names:?}"
    );
    for n in ca.names() {
        let (x, y) = (ca.float::<f32>(n).unwrap(), cb.float::<f32>(n).unwrap());
        assert_eq!(x, y, "{n} differs after resuming");
    }
}
