//! `recur experiment adding|copy|digits`: the long-range benchmarks, every cell at every
//! length, in one table.
//!
//! ```text
//! recur experiment adding --lengths 50,100,200 --cells rnn_tanh,irnn,lstm,gru [--quick]
//!     [--steps N] [--out DIR] [--hidden-size H] [--batch-size B] [--lr LR] [--clip C]
//!     [--eval-every N] [--eval-size N] [--orthogonal] [--seed S]
//! recur experiment digits --data digits.csv.gz --views rows,pixels ...
//! ```
//!
//! Each run trains a fresh one-layer model (`recur::models::synthetic::train`: Adam, gradient-norm
//! clipping, a linear head on the last hidden state, at every step for the copy task) and
//! evaluates it on a fixed held-out set. `DIR` gets `results.md` (the table and the settings),
//! `results.json` (the same and every evaluation), `curves.csv` and the plots `loss.svg/png`
//! (evaluation loss against steps, one panel per length) and `grad_norm.svg/png`.

use clap::{Args as ClapArgs, ValueEnum};
use recur::models::synthetic::{
    self, CellKind, Digits, DigitsView, Optimizer, RunResult, Task, TrainConfig, SOLVE_FRACTION,
};
use recur_plot::{Chart, Figure, LineChart, Series};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Which {
    /// The adding problem (Le et al. 2015): the sum of two marked numbers among T.
    Adding,
    /// The copy-memory task (Arjovsky et al. 2016): recall 10 symbols after T blanks.
    Copy,
    /// 8x8 digit images read one row (8 steps) or one pixel (64 steps) per step.
    Digits,
}

/// Options of `recur experiment`.
#[derive(ClapArgs)]
pub struct Args {
    /// The benchmark.
    #[arg(value_enum)]
    task: Which,
    /// Sequence lengths T (adding: steps; copy: blanks between the symbols and their recall),
    /// comma-separated [default: 50,100,200].
    #[arg(long, value_delimiter = ',')]
    lengths: Option<Vec<usize>>,
    /// Digits only: how an image becomes a sequence, comma-separated: rows (8 steps of 8
    /// pixels), pixels (64 steps of 1).
    #[arg(long, value_delimiter = ',', default_value = "rows,pixels")]
    views: Vec<String>,
    /// Digits only: the CSV of images (64 pixel values in 0..=16 and a label per line;
    /// gzip-compressed if it ends in .gz).
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    /// Cells, comma-separated: rnn_tanh, rnn_relu, irnn (ReLU, identity recurrence), lstm
    /// (forget-gate bias 1), gru.
    #[arg(long, value_delimiter = ',', default_value = "rnn_tanh,irnn,lstm,gru")]
    cells: Vec<String>,
    /// About two minutes in all on 2 cores: fewer steps, a smaller model and evaluation set, a
    /// larger learning rate.
    #[arg(long)]
    quick: bool,
    /// Optimizer steps per run [default: 3000, quick 600].
    #[arg(long)]
    steps: Option<usize>,
    /// Hidden units [default: 64, quick 32].
    #[arg(long)]
    hidden_size: Option<usize>,
    /// Sequences per batch.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Adam learning rate [default: 1e-3, quick 3e-3].
    #[arg(long)]
    lr: Option<f64>,
    /// Clip the global gradient norm to this value (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Evaluate every N steps [default: steps / 30].
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// Sequences in the evaluation set of the generated tasks [default: 1000, quick 500].
    #[arg(long)]
    eval_size: Option<usize>,
    /// Orthogonal recurrent matrices (one block per gate) instead of PyTorch's default
    /// initialization (IRNN keeps its identity).
    #[arg(long)]
    orthogonal: bool,
    /// Seed of the initialization and the data.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where to write results.md, results.json, curves.csv and the plots [default:
    /// experiment-<task>].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Print every evaluation, not only each run's result.
    #[arg(long)]
    verbose: bool,
    /// Print one line of JSON with every run's result on stdout (the log goes to stderr), as
    /// `recur train --json`.
    #[arg(long)]
    json: bool,
}

/// The default place of the digits data, relative to the working directory.
const DEFAULT_DIGITS: &str = "../shared/data/sequence-classification/digits.csv.gz";

/// One run's settings and result.
struct Run {
    /// T for adding and copy, steps per sequence for digits.
    length: usize,
    /// Digits: the view's name.
    view: Option<&'static str>,
    task: Task,
    result: RunResult,
}

fn positive(name: &str, v: usize) -> Result<(), String> {
    if v == 0 {
        Err(format!("{name} must be at least 1"))
    } else {
        Ok(())
    }
}

/// A task to run: (length, view name, task).
type Planned = (usize, Option<&'static str>, Task);

/// The tasks to run.
fn tasks(a: &Args) -> Result<Vec<Planned>, String> {
    match a.task {
        Which::Adding | Which::Copy => {
            let lengths = a.lengths.clone().unwrap_or_else(|| vec![50, 100, 200]);
            if lengths.is_empty() {
                return Err("--lengths: give at least one length".into());
            }
            let min = if a.task == Which::Adding { 2 } else { 1 };
            if let Some(&l) = lengths.iter().find(|&&l| l < min) {
                return Err(format!(
                    "--lengths: every length must be at least {min}, got {l}"
                ));
            }
            Ok(lengths
                .into_iter()
                .map(|l| {
                    let t = if a.task == Which::Adding {
                        Task::Adding { len: l }
                    } else {
                        Task::Copy { delay: l }
                    };
                    (l, None, t)
                })
                .collect())
        }
        Which::Digits => {
            if a.lengths.is_some() {
                return Err(
                    "--lengths does not apply to digits (8 rows or 64 pixels); use --views".into(),
                );
            }
            let path = a
                .data
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DIGITS));
            if a.data.is_none() && !path.exists() {
                return Err(format!(
                    "digits: no --data given and {DEFAULT_DIGITS} does not exist; pass --data \
                     FILE (a CSV of 64 pixel values in 0..=16 and a label per line)"
                ));
            }
            let data = Digits::load(&path).map_err(|e| format!("--data: {e}"))?;
            if data.len() < 10 {
                return Err(format!(
                    "--data {}: {} images; at least 10 are needed to hold some out",
                    path.display(),
                    data.len()
                ));
            }
            let (train, test) = data.split(0.2, a.seed);
            let mut out = Vec::new();
            for v in &a.views {
                let (name, view) = match v.trim() {
                    "rows" => ("rows", DigitsView::Rows),
                    "pixels" => ("pixels", DigitsView::Pixels),
                    other => {
                        return Err(format!("--views: expected rows or pixels, got '{other}'"))
                    }
                };
                out.push((
                    view.shape().0,
                    Some(name),
                    Task::Digits {
                        data: data.clone(),
                        view,
                        train: train.clone(),
                        test: test.clone(),
                    },
                ));
            }
            if out.is_empty() {
                return Err("--views: give at least one view".into());
            }
            Ok(out)
        }
    }
}

pub fn run(a: Args) -> Result<(), String> {
    let cells: Vec<CellKind> = a
        .cells
        .iter()
        .map(|c| c.parse().map_err(|e: recur::Error| format!("--cells: {e}")))
        .collect::<Result<_, _>>()?;
    if cells.is_empty() {
        return Err("--cells: give at least one cell".into());
    }
    let steps = a.steps.unwrap_or(if a.quick { 600 } else { 3000 });
    let lr = a.lr.unwrap_or(if a.quick { 3e-3 } else { 1e-3 });
    let hidden = a.hidden_size.unwrap_or(if a.quick { 32 } else { 64 });
    let eval_size = a.eval_size.unwrap_or(if a.quick { 500 } else { 1000 });
    let eval_every = a.eval_every.unwrap_or((steps / 30).max(1));
    positive("--steps", steps)?;
    positive("--hidden-size", hidden)?;
    positive("--batch-size", a.batch_size)?;
    positive("--eval-every", eval_every)?;
    positive("--eval-size", eval_size)?;
    if !(lr.is_finite() && lr > 0.0) {
        return Err(format!("--lr must be a positive number, got {lr}"));
    }
    if !(a.clip.is_finite() && a.clip >= 0.0) {
        return Err(format!(
            "--clip must be a number >= 0 (0: no clipping), got {}",
            a.clip
        ));
    }
    let tasks = tasks(&a)?;
    let name = format!("{:?}", a.task).to_lowercase();
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("experiment-{name}")));
    std::fs::create_dir_all(&out)
        .map_err(|e| format!("--out {}: cannot create the directory: {e}", out.display()))?;
    let cfg = TrainConfig {
        hidden_size: hidden,
        batch_size: a.batch_size,
        steps,
        optimizer: Optimizer::Adam(lr),
        clip: (a.clip > 0.0).then_some(a.clip),
        eval_every,
        eval_size,
        orthogonal: a.orthogonal,
        record_every: None,
        seed: a.seed,
    };
    let settings = format!(
        "{} steps, batches of {}, hidden size {hidden}, Adam(lr={}), clip_grad_norm {}, \
         evaluation every {eval_every} steps on {}, {} initialization, seed {}",
        steps,
        a.batch_size,
        lr,
        if a.clip > 0.0 {
            a.clip.to_string()
        } else {
            "off".into()
        },
        if a.task == Which::Digits {
            "the held-out 20% of the images".to_string()
        } else {
            format!("{eval_size} generated sequences")
        },
        if a.orthogonal {
            "orthogonal recurrent"
        } else {
            "PyTorch's default"
        },
        a.seed
    );
    let json = a.json;
    // With --json, stdout holds only the JSON line.
    let say = |s: &str| {
        if json {
            eprintln!("{s}");
        } else {
            println!("{s}");
        }
    };
    say(&format!("experiment {name}: {settings}"));
    let start = Instant::now();
    let mut runs = Vec::new();
    for (length, view, task) in tasks {
        let base = task.baseline();
        for &cell in &cells {
            let label = match view {
                Some(v) => format!("{name} {v} (T={length}) {cell}"),
                None => format!("{name} T={length} {cell}"),
            };
            let verbose = a.verbose;
            let result = synthetic::train(&task, cell, &cfg, &mut |p| {
                if verbose {
                    say(&format!(
                        "  {label} step {:>5}  loss {:.5}  ({:.3} of baseline){}",
                        p.step,
                        p.loss,
                        p.loss / base.loss,
                        p.accuracy
                            .map(|x| format!("  accuracy {:.1}%", 100.0 * x))
                            .unwrap_or_default()
                    ));
                }
            })
            .map_err(|e| format!("{label}: {e}"))?;
            let last = result.last().expect("an evaluation at step 0");
            say(&format!(
                "{label:<28} loss {:.5} ({:.3} of baseline {:.5}){}  solved at {}{}  {:.1} s",
                last.loss,
                last.loss / base.loss,
                base.loss,
                last.accuracy
                    .map(|x| format!("  accuracy {:.1}%", 100.0 * x))
                    .unwrap_or_default(),
                result
                    .steps_to_solve
                    .map_or("-".to_string(), |s| format!("step {s}")),
                result
                    .diverged_at
                    .map(|s| format!("  DIVERGED at step {s}"))
                    .unwrap_or_default(),
                result.seconds
            ));
            runs.push(Run {
                length,
                view,
                task: task.clone(),
                result,
            });
        }
    }
    let total = start.elapsed().as_secs_f64();
    let mut doc = write_results(&out, &name, &settings, &runs, total)?;
    plot(&out, &name, &runs)?;
    say(&format!(
        "total {:.0} s; wrote {}/results.md, results.json, curves.csv, loss.svg/png, \
         grad_norm.svg/png",
        total,
        out.display()
    ));
    if json {
        // The summary of results.json: every run without its evaluations.
        if let Some(runs) = doc["runs"].as_array_mut() {
            for r in runs {
                if let Some(o) = r.as_object_mut() {
                    o.remove("evals");
                }
            }
        }
        doc["out"] = out.display().to_string().into();
        println!("{doc}");
    }
    Ok(())
}

fn loss_name(task: &Task) -> &'static str {
    match task {
        Task::Adding { .. } => "MSE",
        _ => "cross-entropy",
    }
}

/// The results table, in markdown.
fn table(name: &str, runs: &[Run]) -> String {
    let mut s = String::new();
    let first = runs.first().map(|r| &r.task);
    let lname = first.map_or("loss", loss_name);
    let acc = first.is_some_and(|t| !matches!(t, Task::Adding { .. }));
    let _ = writeln!(
        s,
        "| {} | cell | final {lname} | baseline | final / baseline | best / baseline |{} steps to solve | time s |",
        if name == "digits" { "view (steps)" } else { "T" },
        if acc { " accuracy |" } else { "" }
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|---|{}---|---|",
        if acc { "---|" } else { "" }
    );
    for r in runs {
        let base = r.task.baseline();
        let last = r.result.last().expect("evaluated");
        let best = r.result.best().expect("evaluated");
        let len = match r.view {
            Some(v) => format!("{v} ({})", r.length),
            None => r.length.to_string(),
        };
        let solved = match (r.result.steps_to_solve, r.result.diverged_at) {
            (Some(s), _) => s.to_string(),
            (None, Some(d)) => format!("diverged at {d}"),
            (None, None) => "not solved".into(),
        };
        let _ = writeln!(
            s,
            "| {len} | {} | {:.4} | {:.4} | {:.3} | {:.3} |{} {solved} | {:.0} |",
            r.result.cell,
            last.loss,
            base.loss,
            last.loss / base.loss,
            best.loss / base.loss,
            if acc {
                format!(
                    " {} |",
                    last.accuracy
                        .map_or("-".into(), |x| format!("{:.1}%", 100.0 * x))
                )
            } else {
                String::new()
            },
            r.result.seconds
        );
    }
    s
}

fn write_results(
    out: &Path,
    name: &str,
    settings: &str,
    runs: &[Run],
    total: f64,
) -> Result<serde_json::Value, String> {
    let write = |file: &str, text: &str| {
        let p = out.join(file);
        recur::io::state_dict::write_atomic(&p, text.as_bytes()).map_err(|e| e.to_string())
    };
    let first = runs.first().map(|r| &r.task);
    let mut md = format!("# recur experiment {name}\n\n");
    let _ = writeln!(md, "Settings: {settings}.\n");
    if let Some(t) = first {
        let _ = writeln!(
            md,
            "Baseline: {}. Steps to solve: the first evaluation whose loss is under {} x the \
             baseline's.\n",
            t.baseline().what,
            SOLVE_FRACTION
        );
    }
    md += &table(name, runs);
    let _ = writeln!(md, "\nTotal time {total:.0} s.");
    write("results.md", &md)?;

    let json_runs: Vec<_> = runs
        .iter()
        .map(|r| {
            let base = r.task.baseline();
            let last = r.result.last().expect("evaluated");
            json!({
                "length": r.length,
                "view": r.view,
                "cell": r.result.cell.name(),
                "final_loss": last.loss,
                "final_accuracy": last.accuracy,
                "best_loss": r.result.best().map(|b| b.loss),
                "baseline_loss": base.loss,
                "baseline_accuracy": base.accuracy,
                "final_over_baseline": last.loss / base.loss,
                "steps_to_solve": r.result.steps_to_solve,
                "diverged_at": r.result.diverged_at,
                "clipped_steps": r.result.clipped,
                "seconds": r.result.seconds,
                "evals": r.result.evals.iter().map(|p| json!({
                    "step": p.step, "loss": p.loss, "accuracy": p.accuracy, "seconds": p.seconds
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = json!({
        "task": name,
        "settings": settings,
        "loss": first.map_or("loss", loss_name),
        "solve_fraction": SOLVE_FRACTION,
        "total_seconds": total,
        "runs": json_runs,
    });
    write(
        "results.json",
        &(serde_json::to_string_pretty(&doc).expect("json") + "\n"),
    )?;

    let mut csv = String::from("length,view,cell,step,loss,accuracy\n");
    for r in runs {
        for p in &r.result.evals {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{}",
                r.length,
                r.view.unwrap_or(""),
                r.result.cell,
                p.step,
                p.loss,
                p.accuracy.map_or(String::new(), |x| x.to_string())
            );
        }
    }
    write("curves.csv", &csv)?;
    Ok(doc)
}

/// Mean of every `w` consecutive values, at the middle step (1-based steps).
fn smooth(v: &[f64], w: usize) -> Vec<(f64, f64)> {
    let w = w.max(1);
    v.chunks(w)
        .enumerate()
        .map(|(k, c)| {
            let finite: Vec<f64> = c.iter().copied().filter(|x| x.is_finite()).collect();
            let m = if finite.is_empty() {
                f64::NAN
            } else {
                finite.iter().sum::<f64>() / finite.len() as f64
            };
            ((k * w) as f64 + (c.len() as f64 + 1.0) / 2.0, m)
        })
        .collect()
}

fn plot(out: &Path, name: &str, runs: &[Run]) -> Result<(), String> {
    let mut keys: Vec<(usize, Option<&str>)> = Vec::new();
    for r in runs {
        if !keys.contains(&(r.length, r.view)) {
            keys.push((r.length, r.view));
        }
    }
    let title = |len: usize, view: Option<&str>| match view {
        Some(v) => format!("{name}, {v} ({len} steps)"),
        None => format!("{name}, T = {len}"),
    };
    let mut loss_charts = Vec::new();
    let mut grad_charts = Vec::new();
    for &(len, view) in &keys {
        let group: Vec<&Run> = runs
            .iter()
            .filter(|r| r.length == len && r.view == view)
            .collect();
        let Some(first) = group.first() else { continue };
        let base = first.task.baseline();
        let last_step = group
            .iter()
            .filter_map(|r| r.result.last().map(|p| p.step))
            .max()
            .unwrap_or(1);
        let mut series: Vec<Series> = group
            .iter()
            .map(|r| Series {
                name: r.result.cell.to_string(),
                points: r
                    .result
                    .evals
                    .iter()
                    .map(|p| (p.step as f64, p.loss))
                    .collect(),
            })
            .collect();
        series.push(Series {
            name: "baseline".into(),
            points: vec![(0.0, base.loss), (last_step as f64, base.loss)],
        });
        loss_charts.push(Chart::Line(LineChart {
            title: title(len, view),
            x_label: "training step".into(),
            y_label: format!("evaluation {}", loss_name(&first.task)),
            log_y: true,
            series,
        }));
        let w = (last_step / 100).max(1);
        grad_charts.push(Chart::Line(LineChart {
            title: title(len, view),
            x_label: "training step".into(),
            y_label: format!("gradient norm (mean of {w} steps)"),
            log_y: true,
            series: group
                .iter()
                .map(|r| Series {
                    name: r.result.cell.to_string(),
                    points: smooth(&r.result.grad_norm, w),
                })
                .collect(),
        }));
    }
    let columns = keys.len().min(3);
    for (stem, charts, what) in [
        ("loss", loss_charts, "evaluation loss"),
        (
            "grad_norm",
            grad_charts,
            "global gradient norm before clipping",
        ),
    ] {
        let fig = Figure {
            title: format!("recur experiment {name}: {what}"),
            columns,
            charts,
        };
        fig.save(&out.join(stem))
            .map_err(|e| format!("{}: {e}", out.join(stem).display()))?;
    }
    Ok(())
}
