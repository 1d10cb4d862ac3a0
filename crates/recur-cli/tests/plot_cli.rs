//! `recur plot` on two real (tiny) `recur train lm` runs: the figure files, and a table whose
//! best and last values are those of the runs' metrics.json, computed here independently;
//! bad arguments give one `error:` line and exit status 2.

use serde_json::Value;

#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;
#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur, s};
#[path = "../../../tests/support/grammar.rs"]
mod grammar;
use grammar::grammar_text;

/// Trains a tiny character LM into `out` with `hidden` units.
fn train(train: &std::path::Path, out: &std::path::Path, hidden: &str) {
    ok(&recur(&[
        "train",
        "lm",
        "--train",
        s(train),
        "--out",
        s(out),
        "--hidden-size",
        hidden,
        "--num-layers",
        "1",
        "--embed-size",
        "8",
        "--batch-size",
        "8",
        "--seq-len",
        "16",
        "--steps",
        "30",
        "--eval-every",
        "10",
        "--threads",
        "1",
        "--sample-length",
        "0",
    ]));
}

/// (last value, lowest value, step of the lowest) of `metric` in a run's metrics.json.
fn expected(dir: &std::path::Path, metric: &str) -> (f64, f64, f64) {
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap();
    let curve = v["curve"].as_array().unwrap();
    let vals: Vec<(f64, f64)> = curve
        .iter()
        .map(|p| (p["step"].as_f64().unwrap(), p[metric].as_f64().unwrap()))
        .collect();
    assert_eq!(vals.len(), 3, "evaluations at steps 10, 20, 30");
    let mut lo = vals[0];
    for &p in &vals[1..] {
        if p.1 < lo.1 {
            lo = p;
        }
    }
    (vals.last().unwrap().1, lo.1, lo.0)
}

#[test]
fn plot_compares_runs_by_step_and_by_time() {
    let dir = TmpDir::new("plot");
    let text = dir.path("train.txt");
    std::fs::write(&text, grammar_text(300, 3)).unwrap();
    let (a, b) = (dir.path("small"), dir.path("wide"));
    train(&text, &a, "8");
    train(&text, &b, "32");
    let stem = dir.path("cmp");

    // JSON table: the values of the runs' own metrics.json.
    let out = ok(&recur(&[
        "plot",
        s(&a),
        s(&b),
        "--metric",
        "valid_bpc",
        "--label",
        "eight units",
        "--label",
        "thirty-two units",
        "--out",
        s(&stem),
        "--json",
    ]));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["metric"], "valid_bpc");
    assert_eq!(v["higher_is_better"], false);
    for (i, (run, label)) in [(&a, "eight units"), (&b, "thirty-two units")]
        .into_iter()
        .enumerate()
    {
        let r = &v["runs"][i];
        let (last, lo, lo_step) = expected(run, "valid_bpc");
        assert_eq!(r["label"], label);
        assert_eq!(r["last"].as_f64().unwrap(), last);
        assert_eq!(r["best"].as_f64().unwrap(), lo);
        assert_eq!(r["best_step"].as_f64().unwrap(), lo_step);
        assert_eq!(r["last_step"].as_f64().unwrap(), 30.0);
        assert!(r["train_seconds"].as_f64().unwrap() > 0.0);
    }
    let svg = std::fs::read_to_string(dir.path("cmp.svg")).unwrap();
    for want in [
        "eight units",
        "thirty-two units",
        "at equal steps",
        "at equal wall-clock time",
        "seconds",
    ] {
        assert!(svg.contains(want), "{want} in the figure");
    }
    let png = std::fs::read(dir.path("cmp.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");

    // Markdown table, default labels (the directory names), a metrics.json given directly.
    let md = ok(&recur(&[
        "plot",
        s(&a),
        s(&b.join("metrics.json")),
        "--metric",
        "valid_loss",
        "--out",
        s(&stem),
    ]));
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(lines.len(), 4, "{md}");
    assert!(lines[2].starts_with("| small | 30 |"), "{md}");
    assert!(lines[3].starts_with("| wide | 30 |"), "{md}");
    let (last, _, _) = expected(&a, "valid_loss");
    assert!(lines[2].contains(&format!("{last:.4}")), "{md}");
}

#[test]
fn plot_refuses_bad_runs_and_options() {
    let dir = TmpDir::new("plot_bad");
    let empty = dir.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let stem = dir.path("x");
    fails_with(
        &recur(&["plot", s(&empty), "--out", s(&stem)]),
        "give the model directory of a `recur train` run",
    );
    let junk = dir.path("junk.json");
    std::fs::write(&junk, "{\"curve\": 3}").unwrap();
    fails_with(
        &recur(&["plot", s(&junk), "--out", s(&stem)]),
        "no `curve` of evaluations",
    );
    let run = dir.path("run.json");
    std::fs::write(
        &run,
        r#"{"curve": [{"step": 1, "seconds": 0.5, "train_loss": 2.0, "valid_rmse": 3.0}]}"#,
    )
    .unwrap();
    fails_with(
        &recur(&["plot", s(&run), "--out", s(&stem)]),
        "no metric `valid_loss` in the run's evaluations; it has valid_rmse",
    );
    fails_with(
        &recur(&[
            "plot",
            s(&run),
            s(&run),
            "--label",
            "one",
            "--metric",
            "valid_rmse",
            "--out",
            s(&stem),
        ]),
        "--label: 1 labels for 2 runs",
    );
    // A higher-is-better metric picks the highest value.
    std::fs::write(
        &run,
        r#"{"curve": [{"step": 1, "seconds": 0.5, "train_loss": 2.0, "valid_accuracy": 0.5},
                       {"step": 2, "seconds": 1.0, "train_loss": 1.0, "valid_accuracy": 0.75},
                       {"step": 3, "seconds": 1.5, "train_loss": 0.5, "valid_accuracy": 0.7}]}"#,
    )
    .unwrap();
    let out = ok(&recur(&[
        "plot",
        s(&run),
        "--metric",
        "valid_accuracy",
        "--out",
        s(&stem),
        "--json",
    ]));
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["higher_is_better"], true);
    assert_eq!(v["runs"][0]["best"].as_f64().unwrap(), 0.75);
    assert_eq!(v["runs"][0]["best_step"].as_f64().unwrap(), 2.0);
    assert_eq!(v["runs"][0]["last"].as_f64().unwrap(), 0.7);
    assert!(v["runs"][0]["train_seconds"].is_null());
}
