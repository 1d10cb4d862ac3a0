//! `recur plot`: the validation curves of several `recur train` runs in one figure, to compare
//! them at equal steps and at equal wall-clock time, and a table of each run's best value.
//!
//! ```text
//! recur plot --out compare --metric valid_bpc plain/ layer_norm/ dropout/
//! ```
//!
//! Each run is a model directory of `recur train` (its `metrics.json`) or a `metrics.json`
//! itself. The figure (`STEM.svg` and `STEM.png`) has three panels: the metric against the
//! step, the same against the seconds since the run started (evaluations included, as the
//! runs measured them), and the training loss against the step. The table (Markdown, on
//! stdout; one JSON object with `--json`) gives each run's last and best value of the metric,
//! where it was reached, and the run's training time.

use crate::run::Failure;
use clap::Args as ClapArgs;
use recur_plot::{Chart, Figure, LineChart, Series};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Options of `recur plot`.
#[derive(ClapArgs)]
pub struct Args {
    /// Model directories written by `recur train` (or their metrics.json files), one line each.
    #[arg(required = true, value_name = "RUN")]
    runs: Vec<PathBuf>,
    /// The validation metric to compare, as metrics.json names it (`valid_bpc`,
    /// `valid_accuracy`, `valid_rmse`, ...). Default: `valid_loss`.
    #[arg(long, default_value = "valid_loss")]
    metric: String,
    /// The name of each run in the legend and the table, in the order of the runs (default:
    /// the directory's name).
    #[arg(long, value_name = "NAME")]
    label: Vec<String>,
    /// Where to write the figure: STEM.svg and STEM.png.
    #[arg(long, value_name = "STEM")]
    out: PathBuf,
    /// Draw the metric on a log10 axis.
    #[arg(long)]
    log_y: bool,
    /// Print the table as one line of JSON instead of Markdown.
    #[arg(long)]
    json: bool,
}

/// One evaluation of a run: (step, seconds since the start, training loss, metric).
#[derive(Clone, Copy, Debug, PartialEq)]
struct Eval {
    step: f64,
    seconds: f64,
    train_loss: f64,
    value: f64,
}

/// A run as read from its metrics.json.
#[derive(Debug)]
struct Run {
    label: String,
    evals: Vec<Eval>,
    /// Training seconds (`train_seconds`), if recorded.
    train_seconds: Option<f64>,
}

/// Whether a larger value of `metric` is better (accuracies, F1, skill), else a smaller one.
fn higher_is_better(metric: &str) -> bool {
    ["accuracy", "f1", "skill", "exact"]
        .iter()
        .any(|w| metric.contains(w))
}

/// The metrics.json of a run argument: a directory holding one, or the file itself.
fn metrics_path(run: &Path) -> PathBuf {
    if run.is_dir() {
        run.join(recur::train::METRICS_FILE)
    } else {
        run.to_path_buf()
    }
}

/// The default label of a run: the name of its directory.
fn default_label(run: &Path) -> String {
    let dir = if run.is_dir() {
        run
    } else {
        run.parent().unwrap_or(run)
    };
    dir.canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| run.display().to_string())
}

/// Reads one run: the points of its `curve` that have `metric`.
fn read_run(path: &Path, label: String, metric: &str) -> Result<Run, String> {
    let file = metrics_path(path);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        format!(
            "{}: {e} (give the model directory of a `recur train` run, or its metrics.json)",
            file.display()
        )
    })?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not a metrics.json of recur train: {e}", file.display()))?;
    let curve = v.get("curve").and_then(Value::as_array).ok_or_else(|| {
        format!(
            "{}: no `curve` of evaluations (a metrics.json of recur train has one)",
            file.display()
        )
    })?;
    let num = |p: &Value, k: &str| p.get(k).and_then(Value::as_f64);
    let mut evals = Vec::with_capacity(curve.len());
    let mut names = std::collections::BTreeSet::new();
    for p in curve {
        if let Some(o) = p.as_object() {
            names.extend(
                o.keys()
                    .filter(|k| {
                        !["epoch", "lr", "seconds", "step", "train_loss"].contains(&k.as_str())
                    })
                    .cloned(),
            );
        }
        let (Some(step), Some(value)) = (num(p, "step"), num(p, metric)) else {
            continue;
        };
        evals.push(Eval {
            step,
            seconds: num(p, "seconds").unwrap_or(f64::NAN),
            train_loss: num(p, "train_loss").unwrap_or(f64::NAN),
            value,
        });
    }
    if evals.is_empty() {
        let have: Vec<_> = names.into_iter().collect();
        return Err(if have.is_empty() {
            format!(
                "{}: the run has no evaluations yet (its curve is empty)",
                file.display()
            )
        } else {
            format!(
                "{}: no metric `{metric}` in the run's evaluations; it has {} (choose one with --metric)",
                file.display(),
                have.join(", ")
            )
        });
    }
    Ok(Run {
        label,
        evals,
        train_seconds: v.get("train_seconds").and_then(Value::as_f64),
    })
}

/// The evaluation with the best value (the first one on ties); NaN values never win.
fn best(evals: &[Eval], higher: bool) -> Option<Eval> {
    evals
        .iter()
        .filter(|e| e.value.is_finite())
        .fold(None, |acc: Option<Eval>, &e| match acc {
            Some(a) if (higher && a.value >= e.value) || (!higher && a.value <= e.value) => Some(a),
            _ => Some(e),
        })
}

/// The figure of the runs: the metric by step, by seconds, and the training loss by step.
fn figure(runs: &[Run], metric: &str, log_y: bool) -> Figure {
    let series = |f: &dyn Fn(&Eval) -> (f64, f64)| -> Vec<Series> {
        runs.iter()
            .map(|r| Series {
                name: r.label.clone(),
                points: r.evals.iter().map(f).collect(),
            })
            .collect()
    };
    let line = |title: &str, x: &str, y: &str, log: bool, s: Vec<Series>| {
        Chart::Line(LineChart {
            title: title.into(),
            x_label: x.into(),
            y_label: y.into(),
            log_y: log,
            series: s,
        })
    };
    Figure {
        title: format!("{metric}: {} runs", runs.len()),
        columns: 3,
        charts: vec![
            line(
                &format!("{metric} at equal steps"),
                "step",
                metric,
                log_y,
                series(&|e| (e.step, e.value)),
            ),
            line(
                &format!("{metric} at equal wall-clock time"),
                "seconds",
                metric,
                log_y,
                series(&|e| (e.seconds, e.value)),
            ),
            line(
                "training loss",
                "step",
                "train loss",
                false,
                series(&|e| (e.step, e.train_loss)),
            ),
        ],
    }
}

/// `recur plot`.
pub fn run(a: Args) -> Result<(), Failure> {
    if !a.label.is_empty() && a.label.len() != a.runs.len() {
        return Err(Failure::from(format!(
            "--label: {} labels for {} runs; give one --label per run, in the order of the runs, or none",
            a.label.len(),
            a.runs.len()
        )));
    }
    let runs = a
        .runs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let label = a.label.get(i).cloned().unwrap_or_else(|| default_label(p));
            read_run(p, label, &a.metric)
        })
        .collect::<Result<Vec<_>, String>>()
        .map_err(Failure::from)?;
    let fig = figure(&runs, &a.metric, a.log_y);
    fig.save(&a.out).map_err(|e| {
        Failure::from(format!(
            "--out {}: cannot write the figure: {e}",
            a.out.display()
        ))
    })?;
    let higher = higher_is_better(&a.metric);
    let rows: Vec<_> = runs
        .iter()
        .map(|r| {
            let last = *r
                .evals
                .last()
                .expect("read_run keeps at least one evaluation");
            let b = best(&r.evals, higher);
            (r, last, b)
        })
        .collect();
    if a.json {
        let list: Vec<Value> = rows
            .iter()
            .map(|(r, last, b)| {
                serde_json::json!({
                    "label": r.label,
                    "last_step": last.step,
                    "last": last.value,
                    "best": b.map(|e| e.value),
                    "best_step": b.map(|e| e.step),
                    "best_seconds": b.map(|e| e.seconds),
                    "train_seconds": r.train_seconds,
                })
            })
            .collect();
        println!(
            "{}",
            serde_json::json!({ "metric": a.metric, "higher_is_better": higher, "runs": list })
        );
    } else {
        let dir = if higher { "highest" } else { "lowest" };
        println!(
            "| run | steps | last {m} | best {m} ({dir}) | at step | at second | training s |",
            m = a.metric
        );
        println!("|---|---|---|---|---|---|---|");
        for (r, last, b) in &rows {
            let (bv, bs, bt) = match b {
                Some(e) => (
                    format!("{:.4}", e.value),
                    format!("{}", e.step),
                    format!("{:.1}", e.seconds),
                ),
                None => ("–".into(), "–".into(), "–".into()),
            };
            let ts = r
                .train_seconds
                .map_or_else(|| "–".to_string(), |s| format!("{s:.1}"));
            println!(
                "| {} | {} | {:.4} | {bv} | {bs} | {bt} | {ts} |",
                r.label, last.step, last.value
            );
        }
    }
    eprintln!("wrote {0}.svg and {0}.png", a.out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(step: f64, value: f64) -> Eval {
        Eval {
            step,
            seconds: step / 10.0,
            train_loss: 1.0,
            value,
        }
    }

    #[test]
    fn best_takes_the_direction_of_the_metric_and_skips_nan() {
        let e = [
            ev(1.0, 3.0),
            ev(2.0, f64::NAN),
            ev(3.0, 1.0),
            ev(4.0, 1.0),
            ev(5.0, 2.0),
        ];
        assert_eq!(best(&e, false).unwrap().step, 3.0);
        assert_eq!(best(&e, true).unwrap().step, 1.0);
        assert!(best(&[ev(1.0, f64::NAN)], false).is_none());
        assert!(higher_is_better("valid_accuracy") && higher_is_better("valid_macro_f1"));
        assert!(!higher_is_better("valid_bpc") && !higher_is_better("valid_rmse"));
    }
}
