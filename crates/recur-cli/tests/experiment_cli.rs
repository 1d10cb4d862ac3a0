//! `recur experiment` and `recur gradients` end to end on tiny settings: the tables, JSON, CSV
//! and plots they write, the numbers in them that follow from the settings (baselines, steps,
//! lengths), and one-line errors for bad options and files.

use std::path::Path;

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur, s};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
use tmpdir::TmpDir;

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn plots_exist(dir: &Path, stems: &[&str]) {
    for stem in stems {
        let png = std::fs::read(dir.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[1..4], b"PNG", "{stem}.png");
        let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") || svg.starts_with("<?xml"),
            "{stem}.svg"
        );
    }
}

#[test]
fn experiment_adding_writes_table_json_curves_and_plots() {
    let dir = TmpDir::new("exp-adding");
    let out = dir.path("out");
    let stdout = ok(&recur(&[
        "experiment",
        "adding",
        "--lengths",
        "6,9",
        "--cells",
        "rnn_tanh,lstm",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--eval-size",
        "40",
        "--hidden-size",
        "8",
        "--batch-size",
        "10",
        "--seeds",
        "2",
        "--no-early-stop",
        "--out",
        s(&out),
    ]));
    for want in [
        "adding T=6 rnn_tanh seed 0",
        "adding T=9 lstm seed 1",
        "of baseline 0.16667",
        "verdict: T = 9 lstm: ",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(
        md.contains("| T | cell | solved | final MSE / baseline"),
        "{md}"
    );
    assert!(
        md.contains("| T | cell | seed | final MSE | baseline |"),
        "{md}"
    );
    let rows: Vec<&str> = md
        .lines()
        .filter(|l| l.starts_with("| 6 ") || l.starts_with("| 9 "))
        .collect();
    // 4 lines over the seeds, then 8 runs.
    assert_eq!(rows.len(), 12, "{md}");
    assert!(rows[..4].iter().all(|r| r.contains(" of 2 |")), "{md}");
    assert!(rows[4..].iter().all(|r| r.contains("0.1667")), "{md}");
    let doc = json(&out.join("results.json"));
    assert_eq!(doc["task"], "adding");
    let verdict = doc["verdict"].as_array().unwrap();
    assert_eq!(verdict.len(), 4);
    for v in verdict {
        assert_eq!(v["seeds"], 2);
        let solved = v["solved_seeds"].as_u64().unwrap();
        let want = match solved {
            0 => "not solved",
            2 => "solved",
            _ => "solved by some seeds",
        };
        assert_eq!(v["verdict"], want);
    }
    let runs = doc["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 8);
    let keys: Vec<(u64, &str, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["length"].as_u64().unwrap(),
                r["cell"].as_str().unwrap(),
                r["seed"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        [
            (6, "rnn_tanh", 0),
            (6, "rnn_tanh", 1),
            (6, "lstm", 0),
            (6, "lstm", 1),
            (9, "rnn_tanh", 0),
            (9, "rnn_tanh", 1),
            (9, "lstm", 0),
            (9, "lstm", 1)
        ]
    );
    for r in runs {
        assert!((r["baseline_loss"].as_f64().unwrap() - 1.0 / 6.0).abs() < 1e-15);
        // The run's own rate and budget: the adding problem's default rate 1e-2, --steps.
        assert_eq!(r["lr"].as_f64(), Some(1e-2));
        assert_eq!(r["max_steps"].as_u64(), Some(20));
        let steps: Vec<u64> = r["evals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["step"].as_u64().unwrap())
            .collect();
        assert_eq!(steps, [0, 10, 20]);
        let last = r["evals"][2]["loss"].as_f64().unwrap();
        assert_eq!(r["final_loss"].as_f64().unwrap(), last);
        let ratio = r["final_over_baseline"].as_f64().unwrap();
        assert!((ratio - last * 6.0).abs() < 1e-9);
        // ||dL/dh_t|| at every step, before and after training.
        for k in ["hidden_grads_init", "hidden_grads_end"] {
            let n = r[k].as_array().unwrap().len() as u64;
            assert_eq!(n, r["length"].as_u64().unwrap(), "{k}");
        }
    }
    let csv = std::fs::read_to_string(out.join("curves.csv")).unwrap();
    assert_eq!(
        csv.lines().next(),
        Some("length,view,cell,seed,step,loss,accuracy")
    );
    assert_eq!(csv.lines().count(), 1 + 8 * 3);
    plots_exist(&out, &["loss", "grad_norm", "hidden_grads"]);
}

#[test]
fn experiment_copy_reports_the_baseline_and_accuracy() {
    let dir = TmpDir::new("exp-copy");
    let out = dir.path("out");
    ok(&recur(&[
        "experiment",
        "copy",
        "--lengths",
        "5",
        "--cells",
        "gru",
        "--steps",
        "10",
        "--eval-size",
        "20",
        "--hidden-size",
        "8",
        "--batch-size",
        "8",
        "--seeds",
        "1",
        "--eval-every",
        "1",
        "--out",
        s(&out),
    ]));
    let doc = json(&out.join("results.json"));
    let r = &doc["runs"][0];
    // 10 ln 8 / (T + 20)
    let want = 10.0 * 8f64.ln() / 25.0;
    assert!((r["baseline_loss"].as_f64().unwrap() - want).abs() < 1e-12);
    assert_eq!(r["baseline_accuracy"].as_f64().unwrap(), 0.125);
    let acc = r["final_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    // At step 0 and after every step (a GRU does not solve it in 10 steps).
    assert_eq!(r["evals"].as_array().unwrap().len(), 11);
    let md = std::fs::read_to_string(out.join("results.md")).unwrap();
    assert!(md.contains("accuracy"), "{md}");
}

/// A digits CSV: image k has pixels (j + k) % 17 and label k % 10.
fn digits_csv(n: usize) -> String {
    (0..n)
        .map(|k| {
            let mut f: Vec<String> = (0..64).map(|j| ((j + k) % 17).to_string()).collect();
            f.push((k % 10).to_string());
            f.join(",") + "\n"
        })
        .collect()
}

#[test]
fn experiment_digits_runs_both_views_and_rejects_bad_data() {
    let dir = TmpDir::new("exp-digits");
    let data = dir.path("digits.csv");
    std::fs::write(&data, digits_csv(50)).unwrap();
    let out = dir.path("out");
    let stdout = ok(&recur(&[
        "experiment",
        "digits",
        "--data",
        s(&data),
        "--cells",
        "lstm",
        "--seeds",
        "1",
        "--steps",
        "6",
        "--hidden-size",
        "8",
        "--batch-size",
        "5",
        "--out",
        s(&out),
    ]));
    assert!(stdout.contains("digits rows (T=8) lstm seed 0"), "{stdout}");
    assert!(stdout.contains("digits pixels (T=64) lstm"), "{stdout}");
    let doc = json(&out.join("results.json"));
    let runs = doc["runs"].as_array().unwrap();
    let views: Vec<(&str, u64)> = runs
        .iter()
        .map(|r| (r["view"].as_str().unwrap(), r["length"].as_u64().unwrap()))
        .collect();
    assert_eq!(views, [("rows", 8), ("pixels", 64)]);
    plots_exist(&out, &["loss", "grad_norm"]);

    // Errors: a malformed line, a missing file, lengths for digits, an unknown view.
    let bad = dir.path("bad.csv");
    std::fs::write(&bad, "1,2,3\n").unwrap();
    let o = recur(&["experiment", "digits", "--data", s(&bad), "--out", s(&out)]);
    fails_with(&o, "bad.csv line 1: expected 65 comma-separated values");
    let o = recur(&[
        "experiment",
        "digits",
        "--data",
        s(&dir.path("none.csv")),
        "--out",
        s(&out),
    ]);
    fails_with(&o, "none.csv: cannot read");
    let o = recur(&["experiment", "digits", "--data", s(&data), "--lengths", "5"]);
    fails_with(&o, "--lengths does not apply to digits");
    let o = recur(&[
        "experiment",
        "digits",
        "--data",
        s(&data),
        "--views",
        "cols",
        "--out",
        s(&out),
    ]);
    fails_with(&o, "--views: expected rows or pixels, got 'cols'");
}

#[test]
fn experiment_rejects_bad_options() {
    let dir = TmpDir::new("exp-bad");
    let out = dir.path("out");
    let o = recur(&[
        "experiment",
        "adding",
        "--cells",
        "lstm,tanhh",
        "--out",
        s(&out),
    ]);
    fails_with(&o, "unknown cell 'tanhh'");
    let o = recur(&["experiment", "adding", "--lengths", "1", "--out", s(&out)]);
    fails_with(&o, "every length must be at least 2");
    let o = recur(&["experiment", "copy", "--lr", "0", "--out", s(&out)]);
    fails_with(&o, "--lr must be a positive number");
    let o = recur(&["experiment", "adding", "--steps", "0", "--out", s(&out)]);
    fails_with(&o, "--steps must be at least 1");
    let o = recur(&["experiment", "adding", "--lstm-bias", "x", "--out", s(&out)]);
    fails_with(&o, "--lstm-bias: expected chrono or a number, got 'x'");
    let o = recur(&["experiment", "adding", "--seeds", "0", "--out", s(&out)]);
    fails_with(&o, "--seeds must be at least 1");
}

#[test]
fn gradients_records_hidden_grads_spectra_and_the_explosion() {
    let dir = TmpDir::new("grads");
    let out = dir.path("out");
    let stdout = ok(&recur(&[
        "gradients",
        "--length",
        "12",
        "--steps",
        "20",
        "--record-every",
        "5",
        "--cells",
        "rnn_tanh,lstm",
        "--hidden-size",
        "8",
        "--batch-size",
        "6",
        "--out",
        s(&out),
    ]));
    for want in [
        "rnn_tanh: after 20 steps",
        "init   layer 0",
        "weight_hh_l0[i]",
        "h→h block",
        "exploding gradients",
        "clipping off",
        "clipping at 1",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    let doc = json(&out.join("gradients.json"));
    assert_eq!(doc["length"], 12);
    let cells = doc["cells"].as_array().unwrap();
    assert_eq!(cells.len(), 2);
    for c in cells {
        let recs = c["records"].as_array().unwrap();
        let steps: Vec<u64> = recs.iter().map(|r| r["step"].as_u64().unwrap()).collect();
        assert_eq!(steps, [0, 5, 10, 15]);
        assert!(recs
            .iter()
            .all(|r| r["norms"].as_array().unwrap().len() == 12));
        // The init snapshot's norms are the record at step 0.
        assert_eq!(c["init"]["hidden_grad_norms"][0], recs[0]["norms"]);
        // The loss is at the last step: d loss / d h at the last step is not zero.
        let last = recs[0]["norms"][11].as_f64().unwrap();
        assert!(last > 0.0);
        let jac = &c["after"]["step_jacobian"][0];
        assert_eq!(jac["state"].as_array().unwrap().len(), 12);
    }
    // LSTM spectra: the whole matrix and the four gate blocks.
    let spectra = cells[1]["init"]["spectra"].as_array().unwrap();
    let gates: Vec<&serde_json::Value> = spectra.iter().map(|s| &s["gate"]).collect();
    assert_eq!(
        gates,
        [
            &serde_json::Value::Null,
            &"i".into(),
            &"f".into(),
            &"g".into(),
            &"o".into()
        ]
    );
    for sp in spectra {
        let sv = sp["singular_values"].as_array().unwrap();
        assert_eq!(sv.len(), 8);
        assert!((sv[0].as_f64().unwrap() - sp["largest"].as_f64().unwrap()).abs() < 1e-6);
    }
    // The explosion: clipping off and on, a gradient norm per step (until a divergence).
    let ex = doc["explode"]["runs"].as_array().unwrap();
    assert_eq!(ex.len(), 2);
    assert_eq!(ex[0]["name"], "clipping off");
    let clipped = ex[1]["clipped_steps"].as_u64().unwrap();
    let norms = ex[1]["grad_norm"].as_array().unwrap();
    let over = norms
        .iter()
        .filter(|v| v.as_f64().unwrap_or(f64::INFINITY) > 1.0)
        .count();
    assert_eq!(clipped as usize, over);
    plots_exist(&out, &["heatmap", "hidden_grads", "jacobian", "explode"]);

    let o = recur(&["gradients", "--cells", "lstm,foo", "--out", s(&out)]);
    fails_with(&o, "unknown cell 'foo'");
    let o = recur(&["gradients", "--length", "1", "--out", s(&out)]);
    fails_with(&o, "--length must be at least 2");
}

#[test]
fn gradients_of_a_saved_language_model() {
    let dir = TmpDir::new("grads-lm");
    let text: String = (0..400)
        .map(|k| ["abc ", "bca. ", "cab\n"][k % 3])
        .collect();
    let train = dir.path("train.txt");
    std::fs::write(&train, &text).unwrap();
    let model = dir.path("model");
    ok(&recur(&[
        "train",
        "lm",
        "--train",
        s(&train),
        "--out",
        s(&model),
        "--hidden-size",
        "12",
        "--num-layers",
        "2",
        "--embed-size",
        "4",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--steps",
        "5",
        "--sample-length",
        "0",
    ]));
    let out = dir.path("out");
    let stdout = ok(&recur(&[
        "gradients",
        "--model",
        s(&model),
        "--text",
        s(&train),
        "--length",
        "30",
        "--batch-size",
        "7",
        "--out",
        s(&out),
    ]));
    assert!(stdout.contains("nn.LSTM"), "{stdout}");
    assert!(stdout.contains("model  layer 1"), "{stdout}");
    let doc = json(&out.join("gradients.json"));
    let norms = doc["layers"]["hidden_grad_norms"].as_array().unwrap();
    assert_eq!(norms.len(), 2);
    assert!(norms.iter().all(|n| n.as_array().unwrap().len() == 30));
    plots_exist(&out, &["hidden_grads"]);
    let o = recur(&["gradients", "--model", s(&model), "--out", s(&out)]);
    assert_eq!(o.status.code(), Some(2));
    let o = recur(&[
        "gradients",
        "--model",
        s(&model),
        "--text",
        s(&train),
        "--length",
        "100000",
        "--out",
        s(&out),
    ]);
    fails_with(&o, "fewer than --length + 1");
}

/// `recur train lm --grad-stats`: one CSV line per step whose global norm is the L2 sum of the
/// parameter groups' norms, clipping counted when that norm is above --clip-grad-norm (the
/// same count the runner reports), and a summary line.
#[test]
fn train_grad_stats_writes_norms_and_counts_clipping() {
    let dir = TmpDir::new("grad-stats");
    let text: String = (0..300)
        .map(|k| ["abc ", "bca. ", "cab\n"][k % 3])
        .collect();
    let train = dir.path("train.txt");
    std::fs::write(&train, &text).unwrap();
    let out = dir.path("model");
    let stdout = ok(&recur(&[
        "train",
        "lm",
        "--train",
        s(&train),
        "--out",
        s(&out),
        "--steps",
        "40",
        "--hidden-size",
        "12",
        "--num-layers",
        "1",
        "--embed-size",
        "4",
        "--batch-size",
        "4",
        "--seq-len",
        "16",
        "--clip-grad-norm",
        "0.3",
        "--lr",
        "1e-2",
        "--grad-stats",
        "--sample-length",
        "0",
    ]));
    let csv = std::fs::read_to_string(out.join("grad_stats.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("step,global_norm,clipped,norm_embed,norm_rnn,norm_head")
    );
    let rows: Vec<Vec<f64>> = lines
        .map(|l| l.split(',').map(|v| v.parse().unwrap()).collect())
        .collect();
    assert_eq!(rows.len(), 40);
    let mut clipped = 0;
    for (k, r) in rows.iter().enumerate() {
        assert_eq!(r[0], (k + 1) as f64);
        let sum: f64 = r[3..].iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!(
            (sum - r[1]).abs() <= 1e-9 * r[1],
            "step {}: {} vs {sum}",
            k + 1,
            r[1]
        );
        assert_eq!(r[2], f64::from(u8::from(r[1] > 0.3)));
        clipped += r[2] as usize;
    }
    assert!(clipped > 0, "clipping at 0.3 should fire");
    assert!(
        stdout.contains(&format!("40 steps, clipping fired at {clipped} (")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("gradient norm clipped in {clipped} steps")),
        "{stdout}"
    );
}
