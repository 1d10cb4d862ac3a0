//! `recur bench` runs the `recur-bench` program beside `recur`, the only one that counts its
//! allocations: the peak memory it prints is measured, and `recur` itself checks the options
//! and shows the help.

#[path = "../../../tests/support/cli.rs"]
mod cli;
use cli::{fails_with, ok, recur};

#[test]
fn recur_bench_prints_the_measured_peak_memory_of_a_row() {
    let out = ok(&recur(&[
        "bench",
        "--row",
        "stream-step/lstm/infer",
        "--json",
        "--reps",
        "2",
        "--warmup",
        "0",
        "--min-time",
        "0",
        "--threads",
        "1",
    ]));
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1, "{out}");
    let r = &rows[0];
    assert_eq!(r["name"], "stream-step");
    assert_eq!(r["lib"], "recur");
    // The streaming step's state and scratch buffers: counted by the tracking allocator, so
    // above zero (the system allocator would leave the counter at 0).
    let peak = r["peak_mb"].as_f64().unwrap();
    assert!(peak > 0.0 && peak < 100.0, "{r}");
    assert!(r["median_ms"].as_f64().unwrap() > 0.0);
}

#[test]
fn recur_bench_checks_its_options_and_the_benchmark_program_reports_its_errors() {
    let help = ok(&recur(&["bench", "--help"]));
    assert!(help.contains("--row"), "{help}");
    fails_with(&recur(&["bench", "--reps", "x"]), "--reps x: invalid digit");
    // An error of the benchmark itself comes from recur-bench, with recur's exit status.
    fails_with(
        &recur(&["bench", "--filter", "no-such-row"]),
        "no benchmark row matches",
    );
    let direct = std::process::Command::new(env!("CARGO_BIN_EXE_recur-bench"))
        .args(["--filter", "no-such-row"])
        .output()
        .unwrap();
    fails_with(&direct, "no benchmark row matches");
}
