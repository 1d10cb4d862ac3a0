//! The model options every `recur train` task shares: each task accepts them and writes them
//! into its model's config.json, with the task's own defaults in its help; a bad `--cell`
//! is one line listing the valid cells; options a task's model does not have are refused;
//! a config.json with a field of the wrong type is an error naming the file and the field.

use std::path::Path;

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur, s};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

/// A small data file of every task and the arguments that read it.
fn task_data(dir: &TmpDir, task: &str) -> Vec<String> {
    let (name, text, extra): (&str, String, &[&str]) = match task {
        "lm" => (
            "t.txt",
            "the cat sat on the mat\n".repeat(20),
            &["--seq-len", "8"],
        ),
        "classify" => (
            "c.tsv",
            (0..20)
                .map(|i| {
                    if i % 2 == 0 {
                        "pos\tgood fun film\n"
                    } else {
                        "neg\tbad dull film\n"
                    }
                })
                .collect(),
            &["--min-freq", "1"],
        ),
        "tag" => (
            "t.conllu",
            "1\tthe\tthe\tDET\t_\t_\t2\tdet\t_\t_\n2\tdog\tdog\tNOUN\t_\t_\t3\tnsubj\t_\t_\n\
             3\truns\trun\tVERB\t_\t_\t0\troot\t_\t_\n\n"
                .repeat(12),
            &["--min-freq", "1"],
        ),
        "forecast" => (
            "f.csv",
            std::iter::once("v\n".to_string())
                .chain((0..60).map(|i| format!("{}\n", (i as f64 * 0.3).sin())))
                .collect(),
            &["--column", "v", "--window", "4"],
        ),
        "seq2seq" => (
            "p.tsv",
            // 60 distinct sources (three letters each) and their reversals.
            (0..60)
                .map(|i: u32| {
                    let w: String = [i % 4, i / 4 % 4, i / 16 % 4]
                        .iter()
                        .map(|&k| (b'a' + k as u8) as char)
                        .collect();
                    format!("{w}\t{}\n", w.chars().rev().collect::<String>())
                })
                .collect(),
            &[],
        ),
        _ => unreachable!(),
    };
    let path = dir.path(name);
    std::fs::write(&path, text).unwrap();
    let mut args: Vec<String> = vec!["train".into(), task.into(), "--train".into()];
    args.push(s(&path).into());
    args.extend(extra.iter().map(|x| x.to_string()));
    args
}

fn config(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

#[test]
fn every_task_accepts_the_shared_model_options_and_writes_them() {
    let dir = TmpDir::new("model-opts");
    for task in ["lm", "classify", "tag", "forecast", "seq2seq"] {
        let out = dir.path(&format!("out-{task}"));
        let mut args = task_data(&dir, task);
        args.extend(
            [
                "--out",
                s(&out),
                "--steps",
                "1",
                "--cell",
                "GRU",
                "--hidden-size",
                "6",
                "--num-layers",
                "2",
                "--dropout",
                "0.25",
            ]
            .map(String::from),
        );
        if task != "forecast" {
            args.extend(["--embed-size", "5"].map(String::from));
        }
        if task != "lm" {
            args.extend(["--bidirectional", "true"].map(String::from));
        }
        if task == "lm" {
            args.extend(["--sample-length", "0"].map(String::from));
        }
        ok(&recur(&args));
        let c = config(&out);
        assert_eq!(c["cell"], "gru", "{task}: {c}");
        assert_eq!(c["hidden_size"], 6, "{task}");
        assert_eq!(c["num_layers"], 2, "{task}");
        assert_eq!(c["dropout"], 0.25, "{task}");
        if task != "forecast" {
            assert_eq!(c["embed_size"], 5, "{task}");
        }
        if task != "lm" {
            assert_eq!(c["bidirectional"], true, "{task}");
        }
        // The model directory loads again.
        let e = recur(&["eval", "--model", s(&out), "--data", &args[3]]);
        ok(&e);
    }
}

#[test]
fn each_task_keeps_its_own_defaults_in_its_help() {
    let default = |help: &str, flag: &str| -> String {
        let at = help
            .find(&format!("{flag} <"))
            .or_else(|| help.find(&format!("{flag} [")))
            .unwrap_or_else(|| panic!("{flag} in {help}"));
        let rest = &help[at..];
        let d = rest.find("[default: ").expect("a default") + "[default: ".len();
        rest[d..d + rest[d..].find(']').unwrap()].to_string()
    };
    for (task, hidden, layers, embed, bidi, dropout) in [
        ("lm", "192", "2", Some("64"), None, "0"),
        ("classify", "128", "1", Some("100"), Some("true"), "0.3"),
        ("tag", "128", "1", Some("100"), Some("true"), "0.33"),
        ("forecast", "64", "1", None, Some("false"), "0"),
        ("seq2seq", "256", "1", Some("64"), Some("false"), "0"),
    ] {
        let help = ok(&recur(&["train", task, "-h"]));
        assert_eq!(default(&help, "--cell"), "lstm", "{task}");
        assert_eq!(default(&help, "--hidden-size"), hidden, "{task}");
        assert_eq!(default(&help, "--num-layers"), layers, "{task}");
        assert_eq!(default(&help, "--dropout"), dropout, "{task}");
        match embed {
            Some(e) => assert_eq!(default(&help, "--embed-size"), e, "{task}"),
            None => assert!(!help.contains("--embed-size"), "{task}: {help}"),
        }
        match bidi {
            Some(b) => assert_eq!(default(&help, "--bidirectional"), b, "{task}"),
            None => assert!(!help.contains("--bidirectional"), "{task}: {help}"),
        }
        // The language model alone defaults to layer norm and Adam at 0.004, with a cosine
        // schedule; the forecaster to PyTorch's plain layers at 0.002 with a cosine schedule;
        // the other tasks to PyTorch's plain layers at a constant 0.002.
        let (ln, lr, schedule) = match task {
            "lm" => ("true", "0.004", "cosine"),
            "forecast" => ("false", "0.002", "cosine"),
            _ => ("false", "0.002", "constant"),
        };
        assert_eq!(default(&help, "--layer-norm"), ln, "{task}");
        assert_eq!(default(&help, "--lr"), lr, "{task}");
        assert_eq!(default(&help, "--lr-schedule"), schedule, "{task}");
    }
}

#[test]
fn a_bad_cell_is_one_line_listing_the_valid_ones_and_missing_options_are_refused() {
    let dir = TmpDir::new("model-opts-bad");
    for task in ["lm", "classify", "tag", "forecast", "seq2seq"] {
        let mut args = task_data(&dir, task);
        args.extend(["--out", s(&dir.path("o")), "--cell", "lstmm"].map(String::from));
        fails_with(
            &recur(&args),
            "--cell lstmm: unknown cell 'lstmm': expected one of rnn_tanh, rnn_relu, lstm, gru",
        );
    }
    let mut args = task_data(&dir, "lm");
    args.extend(["--out", s(&dir.path("o")), "--bidirectional"].map(String::from));
    fails_with(
        &recur(&args),
        "--bidirectional: a language model reads in one direction only",
    );
    let mut args = task_data(&dir, "forecast");
    args.extend(["--out", s(&dir.path("o")), "--embed-size", "8"].map(String::from));
    fails_with(&recur(&args), "--embed-size: a forecaster reads numbers");
    // Values the parser refuses are one line too, naming the option and the value.
    let mut args = task_data(&dir, "tag");
    args.extend(["--out", s(&dir.path("o")), "--hidden-size", "many"].map(String::from));
    fails_with(&recur(&args), "--hidden-size many: invalid digit");
    let mut args = task_data(&dir, "seq2seq");
    args.extend(["--out", s(&dir.path("o")), "--dropout", "1"].map(String::from));
    fails_with(&recur(&args), "--dropout must be in [0, 1), got 1");
}

#[test]
fn a_config_field_of_the_wrong_type_is_an_error_naming_the_file_and_the_field() {
    let dir = TmpDir::new("model-opts-config");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/old-format");
    for (kind, key, value) in [
        ("lm", "hidden_size", serde_json::json!("four")),
        ("cls", "bidirectional", serde_json::json!(1)),
        ("cls", "input_normalization", serde_json::json!("no")),
        ("s2s", "dropout", serde_json::json!([0.1])),
        ("s2s", "cell", serde_json::json!(4)),
    ] {
        let copy = dir.path(&format!("{kind}-{key}"));
        std::fs::create_dir_all(&copy).unwrap();
        for f in std::fs::read_dir(fixtures.join(kind)).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, copy.join(f.file_name().unwrap())).unwrap();
        }
        let mut c = config(&copy);
        c[key] = value;
        std::fs::write(copy.join("config.json"), c.to_string()).unwrap();
        let input = dir.path("in.txt");
        std::fs::write(&input, "abc\n").unwrap();
        let o = recur(&["predict", "--model", s(&copy), "--input", s(&input)]);
        fails_with(&o, &format!("{}", copy.join("config.json").display()));
        fails_with(&o, &format!("(field \"{key}\")"));
        fails_with(&o, "invalid type");
    }
}
