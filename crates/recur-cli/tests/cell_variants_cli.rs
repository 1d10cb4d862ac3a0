//! The cell variants on the command line (`--gru-linear-before-reset`, `--peepholes`,
//! `--input-forget`, `--cell-clip`, `--activations`): a task trains a tiny model with them,
//! writes them into config.json, and `recur eval` loads the directory again; flags a cell or a
//! task does not take are one-line errors.

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur, s};
#[path = "../../../tests/support/tmpdir.rs"]
mod tmpdir;
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
    let t = dir.path("t.txt");
    std::fs::write(&t, "the cat sat on the mat\n".repeat(20)).unwrap();
    fails_with(
        &recur(&[
            "train",
            "lm",
            "--train",
            s(&t),
            "--out",
            s(&o),
            "--peepholes",
        ]),
        "a language model uses PyTorch's cells only",
    );
}
