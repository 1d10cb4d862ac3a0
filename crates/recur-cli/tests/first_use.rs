//! What a first user of the command line ran into, one test each: huge option values, a
//! `recur predict` that sits in a pipe, one kind of boolean option, negative numbers reaching
//! recur's own checks, options checked before the data is read, `--threads 0`, the
//! temperature default, `recur experiment --json`, counts in JSON, the end-of-run rate and
//! the record of the model kept.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur, s};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

/// `label<TAB>text` lines: a few filler words around one word of the label's sentiment.
fn sentiment_tsv(n: usize) -> String {
    let pos = ["good", "great", "fun"];
    let neg = ["bad", "dull", "poor"];
    let filler = ["the", "film", "was", "a", "plot"];
    let mut out = String::new();
    for k in 0..n {
        let p = k % 2 == 0;
        let word = if p { pos[k % 3] } else { neg[k % 3] };
        let a = filler[k % 5];
        let b = filler[(k / 5) % 5];
        out += &format!("{}\t{a} {word} {b}\n", if p { "pos" } else { "neg" });
    }
    out
}

/// Trains a small text classifier into `dir/model`; returns the model directory, the
/// stdout and stderr of the run, and how long it took.
fn classifier(dir: &TmpDir, extra: &[&str]) -> (std::path::PathBuf, String, String, Duration) {
    let train = dir.path("train.tsv");
    std::fs::write(&train, sentiment_tsv(120)).unwrap();
    let model = dir.path("model");
    let mut args = vec![
        "train",
        "classify",
        "--train",
        s(&train),
        "--out",
        s(&model),
        "--hidden-size",
        "8",
        "--embed-size",
        "8",
        "--batch-size",
        "16",
        "--min-freq",
        "1",
        "--lr",
        "0.02",
        "--json",
    ];
    args.extend_from_slice(extra);
    let t0 = Instant::now();
    let o = recur(&args);
    let took = t0.elapsed();
    let out = ok(&o);
    (
        model,
        out,
        String::from_utf8_lossy(&o.stderr).to_string(),
        took,
    )
}

#[test]
fn huge_sizes_and_lengths_are_one_line_errors_before_any_work() {
    let dir = TmpDir::new("huge");
    let text = dir.path("t.txt");
    std::fs::write(&text, "abcabcabc\n".repeat(50)).unwrap();
    let tsv = dir.path("t.tsv");
    std::fs::write(&tsv, "ab\tba\n".repeat(20)).unwrap();
    let out = dir.path("out");
    let lm = |flag: &str, v: &str| {
        recur(&[
            "train",
            "lm",
            "--train",
            s(&text),
            "--out",
            s(&out),
            flag,
            v,
        ])
    };
    let t0 = Instant::now();
    fails_with(&lm("--hidden-size", "100000"), "--hidden-size 100000");
    fails_with(
        &lm("--embed-size", "1000000000"),
        "at most 1073741824 are allowed",
    );
    fails_with(&lm("--num-layers", "100000"), "parameters");
    let o = recur(&[
        "train",
        "classify",
        "--train",
        s(&tsv),
        "--out",
        s(&out),
        "--num-layers",
        "100000",
    ]);
    fails_with(&o, "--num-layers 100000");
    let o = recur(&[
        "train",
        "tag",
        "--train",
        s(&tsv),
        "--out",
        s(&out),
        "--hidden-size",
        "100000",
    ]);
    fails_with(&o, "--hidden-size 100000");
    let o = recur(&[
        "train",
        "seq2seq",
        "--train",
        s(&tsv),
        "--out",
        s(&out),
        "--max-len",
        "10000000000",
    ]);
    fails_with(&o, "--max-len 10000000000: at most 10000 is allowed");
    let o = recur(&["sample", "--model", s(&out), "--length", "1000000000"]);
    fails_with(&o, "--length 1000000000: at most 100000000 is allowed");
    let o = recur(&["predict", "--model", s(&out), "--beam", "100000"]);
    fails_with(&o, "--beam 100000: at most 1000 is allowed");
    // None of them read the data or took the memory: all together in well under a minute.
    assert!(t0.elapsed() < Duration::from_secs(60), "{:?}", t0.elapsed());
    assert!(!out.join("checkpoint.safetensors").exists());
}

/// Reads one line from `r` on another thread, with a time limit.
fn line_within(
    r: std::sync::mpsc::Receiver<String>,
    secs: u64,
) -> (String, std::sync::mpsc::Receiver<String>) {
    let l = r
        .recv_timeout(Duration::from_secs(secs))
        .expect("an answer before the next input line was written");
    (l, r)
}

#[test]
fn predict_answers_each_line_as_it_arrives_and_reports_bad_lines_by_number() {
    let dir = TmpDir::new("pipe");
    let (model, _, _, _) = classifier(&dir, &["--steps", "30"]);

    // A long --max-len is an error for every kind of model, before any input is read.
    let o = recur(&["predict", "--model", s(&model), "--max-len", "100000000000"]);
    fails_with(&o, "--max-len 100000000000: at most 1000000 is allowed");

    // In a pipe: the answer to the first line comes before the second line is written.
    let mut child = Command::new(env!("CARGO_BIN_EXE_recur"))
        .args(["predict", "--model", s(&model)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            if tx.send(l.unwrap()).is_err() {
                break;
            }
        }
    });
    writeln!(stdin, "a great film").unwrap();
    stdin.flush().unwrap();
    let (first, rx) = line_within(rx, 60);
    assert!(
        first.starts_with("pos\t") || first.starts_with("neg\t"),
        "{first}"
    );
    // An empty line is reported with its number, and the next line is still answered.
    writeln!(stdin).unwrap();
    writeln!(stdin, "the plot was dull").unwrap();
    drop(stdin);
    let (second, rx) = line_within(rx, 60);
    let (third, _) = line_within(rx, 60);
    assert_eq!(second, "", "a bad line gets an empty answer line");
    assert!(third.contains('\t'), "{third}");
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("error: input line 2: empty input"), "{err}");
    assert!(
        err.contains("1 of 3 input lines could not be answered"),
        "{err}"
    );
}

#[test]
fn every_boolean_option_is_a_flag_that_also_takes_true_or_false() {
    let dir = TmpDir::new("bools");
    // --bidirectional alone, =false and a separate false: the same option everywhere.
    for (args, bidirectional) in [
        (&["--bidirectional"][..], true),
        (&["--bidirectional=false"][..], false),
        (&["--bidirectional", "false"][..], false),
        (&[][..], true),
    ] {
        let sub = TmpDir::new(&format!("bools-{}", args.join("").replace(['=', '-'], "")));
        let mut extra = vec!["--steps", "2"];
        extra.extend_from_slice(args);
        let (_, _, log, _) = classifier(&sub, &extra);
        assert_eq!(
            log.contains("bidirectional=True"),
            bidirectional,
            "{args:?}: {log}"
        );
    }
    // The same kind of option in the other commands' help.
    for cmd in [
        &["train", "seq2seq", "--help"][..],
        &["train", "tag", "--help"],
        &["train", "classify", "--help"],
    ] {
        let help = ok(&recur(cmd));
        assert!(help.contains("--bidirectional [<BOOL>]"), "{cmd:?}: {help}");
        assert!(
            help.contains("--header [<BOOL>]") || cmd[1] == "tag",
            "{help}"
        );
        assert!(help.contains("--resume [<BOOL>]"), "{help}");
    }
    let help = ok(&recur(&["train", "forecast", "--help"]));
    assert!(help.contains("--header [<BOOL>]"), "{help}");
    drop(dir);
}

#[test]
fn options_are_checked_before_the_data_is_read() {
    let dir = TmpDir::new("early");
    // The training file does not exist: every error below is about the option instead.
    let missing = dir.path("no-such-file.tsv");
    let out = dir.path("out");
    let run = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "classify",
            "--train",
            s(&missing),
            "--out",
            s(&out),
        ];
        a.extend_from_slice(extra);
        recur(&a)
    };
    fails_with(
        &run(&["--lr", "-1"]),
        "--lr must be a positive number, got -1",
    );
    fails_with(
        &run(&["--lr-schedule", "exp:gamma=-1"]),
        "gamma must be a positive number",
    );
    fails_with(
        &run(&["--lr-schedule", "multistep:milestones=6/3"]),
        "milestones must be in increasing order",
    );
    fails_with(
        &run(&["--steps", "10", "--warmup-steps", "20"]),
        "the warm-up (20 steps) is longer than the run (10 steps)",
    );
    fails_with(&run(&["--optimizer", "adamm"]), "--optimizer");
    fails_with(
        &run(&["--clip-grad-norm", "-2"]),
        "--clip-grad-norm must be",
    );
    // And the file is reported once the options are right.
    fails_with(&run(&[]), "no-such-file.tsv");
}

#[test]
fn threads_zero_means_all_cores_as_in_bench_and_the_temperature_default_is_shared() {
    let dir = TmpDir::new("threads");
    let (model, out, _, _) = classifier(&dir, &["--steps", "3", "--threads", "0"]);
    assert!(out.contains("\"steps\":3"), "{out}");
    assert!(model.join("config.json").exists());
    let train_help = ok(&recur(&["train", "lm", "--help"]));
    let bench_help = ok(&recur(&["bench", "--help"]));
    assert!(
        train_help.contains("0, the default: all cores"),
        "{train_help}"
    );
    assert!(bench_help.contains("0 = all cores"), "{bench_help}");
    let default = |help: &str| {
        let at = help.find("--temperature").expect("a --temperature option");
        let rest = &help[at..];
        let d = rest.find("[default: ").expect("a default");
        rest[d..].split(']').next().unwrap().to_string()
    };
    let sample = default(&ok(&recur(&["sample", "--help"])));
    let predict = default(&ok(&recur(&["predict", "--help"])));
    assert_eq!(sample, predict);
}

#[test]
fn json_counts_are_integers_and_metrics_json_says_which_step_was_kept_and_why() {
    let dir = TmpDir::new("json");
    let (model, out, log, took) = classifier(&dir, &["--steps", "12", "--eval-every", "1"]);
    let j: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("metrics.json")).unwrap())
            .unwrap();
    let kept = &m["kept"];
    let step = kept["step"].as_u64().expect("the step kept");
    assert_eq!(Some(step), m["best"]["step"].as_u64(), "{m}");
    assert!(!kept["reason"].as_str().unwrap().is_empty(), "{kept}");
    assert!(log.contains(kept["reason"].as_str().unwrap()), "{log}");
    // Counts are integers in the summary and in `recur eval --json`.
    let report = &j["report"];
    let examples = report
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.ends_with("examples"))
        .map(|(_, v)| v.clone());
    if let Some(v) = examples {
        assert!(v.is_u64(), "{report}");
    }
    let data = dir.path("train.tsv");
    let e = ok(&recur(&[
        "eval",
        "--model",
        s(&model),
        "--data",
        s(&data),
        "--json",
    ]));
    let e: serde_json::Value = serde_json::from_str(e.trim()).unwrap();
    assert_eq!(e["examples"].as_u64(), Some(120), "{e}");
    assert!(!e.to_string().contains("120.0"), "{e}");

    // The end-of-run rate is by the wall clock: with an evaluation after every step, 12 steps
    // at the rate printed take about the time the run took, not a small part of it.
    let line = log
        .lines()
        .find(|l| l.starts_with("trained 12 steps"))
        .unwrap_or_else(|| panic!("{log}"));
    let rate: f64 = line
        .split(" steps/s")
        .next()
        .unwrap()
        .rsplit('(')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        12.0 / rate <= took.as_secs_f64() * 1.01,
        "{line}: longer than the run ({took:?})"
    );
    assert!(
        12.0 / rate >= took.as_secs_f64() * 0.2,
        "{line}: a small part of the run ({took:?})"
    );
}

#[test]
fn experiment_prints_one_json_line_with_json() {
    let dir = TmpDir::new("exp-json");
    let out = dir.path("e");
    let o = recur(&[
        "experiment",
        "adding",
        "--lengths",
        "3",
        "--cells",
        "gru",
        "--steps",
        "4",
        "--hidden-size",
        "4",
        "--batch-size",
        "4",
        "--eval-size",
        "8",
        "--eval-every",
        "2",
        "--out",
        s(&out),
        "--json",
    ]);
    let stdout = ok(&o);
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let j: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(j["task"], "adding");
    assert_eq!(j["runs"][0]["cell"], "gru");
    assert_eq!(j["runs"][0]["length"], 3);
    assert!(j["runs"][0].get("evals").is_none());
    assert!(String::from_utf8_lossy(&o.stderr).contains("experiment adding"));
    assert!(Path::new(&out).join("results.json").exists());
}

#[test]
fn forecast_plots_say_mse_draw_the_baseline_on_its_panel_mark_the_kept_step_and_name_the_data() {
    let dir = TmpDir::new("plots");
    let csv = dir.path("waves.csv");
    let mut text = String::from("t,value\n");
    for k in 0..300 {
        text += &format!("{k},{:.4}\n", (k as f64 * 0.3).sin() + 0.1 * (k % 7) as f64);
    }
    std::fs::write(&csv, text).unwrap();
    let out = dir.path("f");
    ok(&recur(&[
        "train",
        "forecast",
        "--train",
        s(&csv),
        "--column",
        "value",
        "--window",
        "12",
        "--hidden-size",
        "8",
        "--steps",
        "20",
        "--eval-every",
        "5",
        "--out",
        s(&out),
    ]));
    let svg = std::fs::read_to_string(out.join("curves.svg")).unwrap();
    assert!(
        svg.contains("mean squared error"),
        "the loss axis of an MSE"
    );
    assert!(!svg.contains("nats"));
    assert!(
        svg.contains("valid loss"),
        "forecasting has a validation loss"
    );
    assert!(svg.contains("valid naive RMSE"), "the baseline is drawn");
    assert!(!svg.contains("valid_"), "labels are words, not snake_case");
    assert!(svg.contains("kept (step "), "the kept step is marked");
    assert!(
        svg.contains("recur train forecast on waves.csv"),
        "the title names the data"
    );
    // The baseline is a line on the RMSE panel, named once in its legend; a panel of its own
    // would also carry it as title and axis label, as "valid RMSE" has.
    assert_eq!(svg.matches("valid naive RMSE").count(), 1);
    assert_eq!(svg.matches("valid RMSE").count(), 3);
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert!(m["best"]["valid_loss"].as_f64().is_some(), "{m}");
}

/// The README's quick start runs `cargo run --release -- demo` from the workspace root; with
/// two programs in this package (`recur` and `recur-bench`) cargo needs to be told which one
/// `cargo run` means.
#[test]
fn cargo_run_means_the_recur_program() {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("crates/recur-cli/Cargo.toml");
    let package = manifest.split("\n[").next().unwrap_or_default();
    assert!(
        package
            .lines()
            .any(|l| l.trim() == "default-run = \"recur\""),
        "crates/recur-cli/Cargo.toml's [package] must say default-run = \"recur\""
    );
}
