//! `recur experiment adding|copy|digits`: the long-range benchmarks, every cell at every
//! length, in one table.
//!
//! ```text
//! recur experiment adding --lengths 200,400 --cells rnn_tanh,irnn,lstm,gru [--quick]
//!     [--seeds 3] [--steps N] [--out DIR] [--hidden-size H] [--batch-size B] [--lr LR]
//!     [--clip C] [--lstm-bias chrono|F] [--solve-fraction 0.01] [--no-early-stop]
//!     [--eval-every N] [--eval-size N] [--orthogonal] [--seed S] [--jobs N]
//! recur experiment copy --lengths 100,200 --cells rnn_tanh,lstm,gru,exprnn
//! recur experiment digits --data digits.csv.gz --views rows,pixels ...
//! ```
//!
//! Each run trains a fresh one-layer model (a linear head on the last hidden state, at every
//! step for the copy task) for every seed through the library's training loop
//! (`recur::models::synthetic::train_model` → `recur::train::run`: Adam, gradient-norm
//! clipping, a stop at the first non-finite step), evaluates it on a fixed held-out set and
//! stops once solved (loss under 1% of the baseline's: `recur::train::Task::solved`). Runs go
//! in parallel, one thread each; each writes its best model and `metrics.json` into
//! `DIR/runs/T<length>-<cell>-seed<seed>` (digits: `<view>-<cell>-seed<seed>`). `DIR` gets `results.md` (the
//! table over the seeds, every run, the settings), `results.json` (the same, the verdict of
//! every cell and length, every evaluation, ‖dL/dh_t‖ before and after training),
//! `curves.csv` and the plots `loss.svg/png` (evaluation loss against steps, one panel per
//! length and cell, one curve per seed), `grad_norm.svg/png` and `hidden_grads.svg/png`
//! (‖dL/dh_t‖ against the distance from the last step, at initialization and after training).

use clap::{Args as ClapArgs, ValueEnum};
use recur::analysis::diagnostics::HiddenGrads;
use recur::models::synthetic::{
    self, task_rng, CellKind, Digits, DigitsView, GateBias, Model, ModelInit, RunResult, Task,
    TrainConfig, SOLVE_FRACTION,
};
use recur::nn::{AdamConfig, OptimizerConfig};
use recur_plot::{Chart, Figure, LineChart, Series};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
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
    /// comma-separated [default: adding 200,400; copy 100,200].
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
    /// Cells, comma-separated: rnn_tanh, rnn_relu, irnn (ReLU, identity recurrence), lstm,
    /// gru, exprnn (orthogonal W = expm(A), modrelu) [default: adding and digits
    /// rnn_tanh,irnn,lstm,gru; copy rnn_tanh,lstm,gru,exprnn].
    #[arg(long, value_delimiter = ',')]
    cells: Option<Vec<String>>,
    /// A few minutes on 2 cores: fewer steps at most, a smaller model and evaluation set.
    #[arg(long)]
    quick: bool,
    /// Optimizer steps per run at most (a run stops once solved) [default: adding 6000, quick
    /// 2000, the IRNN's times T / 200 beyond T = 200; copy 4000, quick 1500; digits 3000,
    /// quick 600].
    #[arg(long)]
    steps: Option<usize>,
    /// Hidden units [default: 64, quick 32; copy 128].
    #[arg(long)]
    hidden_size: Option<usize>,
    /// Sequences per batch.
    #[arg(long, default_value_t = 50)]
    batch_size: usize,
    /// Adam learning rate [default: adding 1e-2 (irnn 5e-4, falling five-fold per doubling of
    /// T beyond T = 200: 1e-4 at T = 400); copy 1e-3; digits 1e-3, quick 3e-3]. An expRNN's skew-symmetric
    /// parameters learn at a tenth of it.
    #[arg(long)]
    lr: Option<f64>,
    /// The LSTM's gate biases: chrono (Tallec & Ollivier 2018, for dependencies up to the
    /// sequence length) or a number, the forget-gate bias [default: chrono].
    #[arg(long, value_name = "chrono|F", default_value = "chrono")]
    lstm_bias: String,
    /// A run is solved at the first evaluation whose loss is under this fraction of the
    /// baseline's.
    #[arg(long, default_value_t = recur::models::synthetic::SOLVE_FRACTION)]
    solve_fraction: f64,
    /// Run every step even once solved.
    #[arg(long)]
    no_early_stop: bool,
    /// Seeds per cell and length (seeds S, S+1, …) [default: 3].
    #[arg(long)]
    seeds: Option<usize>,
    /// Runs trained at the same time, one thread each [default: the cores available].
    #[arg(long)]
    jobs: Option<usize>,
    /// Clip the global gradient norm to this value (0: no clipping).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Evaluate every N steps [default: 100; digits steps / 30].
    #[arg(long, value_name = "N")]
    eval_every: Option<usize>,
    /// Sequences in the evaluation set of the generated tasks [default: 1000, quick 500].
    #[arg(long)]
    eval_size: Option<usize>,
    /// Orthogonal recurrent matrices (one block per gate) instead of PyTorch's default
    /// initialization (IRNN keeps its identity).
    #[arg(long)]
    orthogonal: bool,
    /// The first seed of the initialization and the data.
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
    seed: u64,
    /// The run's Adam learning rate and step budget.
    lr: f64,
    max_steps: usize,
    result: RunResult,
    /// ‖dL/dh_t‖ on a fixed training batch (T), at initialization and after training.
    grads_init: Vec<f64>,
    grads_end: Vec<f64>,
}

/// The default step budget of a task (`--steps` unset), before [`irnn_scaled_steps`].
fn default_steps(task: Which, quick: bool) -> usize {
    match (task, quick) {
        (Which::Adding, false) => 6000,
        (Which::Adding, true) => 2000,
        (Which::Copy, false) => 4000,
        (Which::Copy, true) => 1500,
        (Which::Digits, false) => 3000,
        (Which::Digits, true) => 600,
    }
}

/// The step budget of one cell and length on the task's default budget `steps`: the IRNN's
/// rate falls with T on the adding problem ([`default_lr`]), so its budget grows with T,
/// `steps · T / 200` beyond T = 200 (12000 at T = 400 in the full setting).
fn irnn_scaled_steps(task: Which, cell: CellKind, length: usize, steps: usize) -> usize {
    match (task, cell) {
        (Which::Adding, CellKind::Irnn) if length > 200 => {
            (steps as u64 * length as u64).div_ceil(200) as usize
        }
        _ => steps,
    }
}

/// The default Adam learning rate of a cell at length T (`--lr` unset).
///
/// The IRNN on the adding problem, measured with 64 units (docs/gradients.md): at T = 200,
/// 1e-3 diverges in 1 of 3 seeds, 5e-4 solves 3 of 3 in 3100–4200 steps and 3e-4 in
/// 4100–5400; at T = 400, 5e-4, 3e-4 and 2e-4 diverge in 1 or 2 of 3 seeds, 1.25e-4 solved 3
/// of 3 with `--jobs 1` but 2 of 3 in the full table (`--jobs 2`, seed 2 non-finite at step
/// 307), and 1e-4 solved 3 of 3 in 7500–9200 steps. So its rate is 5e-4 up to T = 200 and
/// falls five-fold per doubling of T beyond, `5e-4 · 5^(-log2(T / 200))` (1e-4 at T = 400),
/// one step inside the edge of stability.
fn default_lr(task: Which, quick: bool, cell: CellKind, length: usize) -> f64 {
    match (task, cell) {
        (Which::Adding, CellKind::Irnn) => {
            5e-4 / 5f64.powf((length.max(200) as f64 / 200.0).log2())
        }
        (Which::Adding, _) => 1e-2,
        (Which::Digits, _) if quick => 3e-3,
        _ => 1e-3,
    }
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
            let lengths = a.lengths.clone().unwrap_or_else(|| {
                if a.task == Which::Adding {
                    vec![200, 400]
                } else {
                    vec![100, 200]
                }
            });
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
    let default_cells = match a.task {
        Which::Copy => "rnn_tanh,lstm,gru,exprnn",
        _ => "rnn_tanh,irnn,lstm,gru",
    };
    let cell_names: Vec<String> = a
        .cells
        .clone()
        .unwrap_or_else(|| default_cells.split(',').map(String::from).collect());
    let cells: Vec<CellKind> = cell_names
        .iter()
        .map(|c| c.parse().map_err(|e: recur::Error| format!("--cells: {e}")))
        .collect::<Result<_, _>>()?;
    if cells.is_empty() {
        return Err("--cells: give at least one cell".into());
    }
    let q = a.quick;
    let steps = a.steps.unwrap_or_else(|| default_steps(a.task, q));
    // The step budget of each cell and length.
    let steps_of = |cell: CellKind, length: usize| -> usize {
        a.steps
            .unwrap_or_else(|| irnn_scaled_steps(a.task, cell, length, steps))
    };
    let hidden = a.hidden_size.unwrap_or(match (a.task, q) {
        (Which::Copy, _) => 128,
        (_, false) => 64,
        (_, true) => 32,
    });
    let eval_size = a.eval_size.unwrap_or(if q { 500 } else { 1000 });
    let eval_every = a.eval_every.unwrap_or(if a.task == Which::Digits {
        (steps / 30).max(1)
    } else {
        100
    });
    let seeds = a.seeds.unwrap_or(3);
    positive("--steps", steps)?;
    positive("--hidden-size", hidden)?;
    positive("--batch-size", a.batch_size)?;
    positive("--eval-every", eval_every)?;
    positive("--eval-size", eval_size)?;
    positive("--seeds", seeds)?;
    let jobs = a.jobs.unwrap_or_else(recur::num_threads);
    positive("--jobs", jobs)?;
    // The learning rate of each cell and length.
    let lr_of = |cell: CellKind, length: usize| -> f64 {
        a.lr.unwrap_or_else(|| default_lr(a.task, q, cell, length))
    };
    if let Some(lr) = a.lr {
        if !(lr.is_finite() && lr > 0.0) {
            return Err(format!("--lr must be a positive number, got {lr}"));
        }
    }
    if !(a.clip.is_finite() && a.clip >= 0.0) {
        return Err(format!(
            "--clip must be a number >= 0 (0: no clipping), got {}",
            a.clip
        ));
    }
    if !(a.solve_fraction.is_finite() && a.solve_fraction > 0.0) {
        return Err(format!(
            "--solve-fraction must be a positive number, got {}",
            a.solve_fraction
        ));
    }
    let chrono = match a.lstm_bias.trim() {
        "chrono" => true,
        other => {
            let v: f64 = other
                .parse()
                .map_err(|_| format!("--lstm-bias: expected chrono or a number, got '{other}'"))?;
            if !v.is_finite() {
                return Err(format!("--lstm-bias: expected a finite number, got {v}"));
            }
            false
        }
    };
    let forget: f64 = if chrono {
        0.0
    } else {
        a.lstm_bias.trim().parse().unwrap_or(1.0)
    };
    let tasks = tasks(&a)?;
    let name = format!("{:?}", a.task).to_lowercase();
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("experiment-{name}")));
    std::fs::create_dir_all(&out)
        .map_err(|e| format!("--out {}: cannot create the directory: {e}", out.display()))?;
    let lengths: Vec<usize> = {
        let mut v: Vec<usize> = Vec::new();
        for t in &tasks {
            if !v.contains(&t.0) {
                v.push(t.0);
            }
        }
        v
    };
    // "cell value" per cell, or "cell value (T=..), value (T=..)" where it depends on T.
    // Cells for which `keep` is false are left out.
    let per_cell =
        |of: &dyn Fn(CellKind, usize) -> String, keep: &dyn Fn(CellKind) -> bool| -> Vec<String> {
            let mut v: Vec<String> = Vec::new();
            for &c in cells.iter().filter(|&&c| keep(c)) {
                let vals: Vec<String> = lengths.iter().map(|&t| of(c, t)).collect();
                let s = if vals.iter().all(|x| *x == vals[0]) {
                    format!("{c} {}", vals[0])
                } else {
                    let each: Vec<String> = vals
                        .iter()
                        .zip(&lengths)
                        .map(|(x, t)| format!("{x} (T={t})"))
                        .collect();
                    format!("{c} {}", each.join(", "))
                };
                if !v.contains(&s) {
                    v.push(s);
                }
            }
            v
        };
    let lrs = per_cell(&|c, t| lr_of(c, t).to_string(), &|_| true);
    let budgets = {
        // Only the cells whose budget differs from `steps` at some length.
        let v = per_cell(&|c, t| steps_of(c, t).to_string(), &|c| {
            lengths.iter().any(|&t| steps_of(c, t) != steps)
        });
        if v.is_empty() {
            String::new()
        } else {
            format!("; {}", v.join("; "))
        }
    };
    let settings =
        format!(
        "at most {} steps{budgets} (stopping at the first evaluation under {} x the baseline{}), batches \
         of {}, hidden size {hidden}, Adam (lr: {}), clip_grad_norm {}, evaluation every \
         {eval_every} steps on {}, {} initialization, LSTM gate biases {}, seeds {}..{}",
        steps,
        a.solve_fraction,
        if a.no_early_stop { "; off: every step run" } else { "" },
        a.batch_size,
        lrs.join(", "),
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
        if chrono {
            "chrono (up to T)".to_string()
        } else {
            format!("forget {forget}")
        },
        a.seed,
        a.seed + seeds as u64 - 1
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
    // Every run, in table order: length, cell, seed.
    let mut plan = Vec::new();
    for (length, view, task) in &tasks {
        for &cell in &cells {
            for k in 0..seeds {
                plan.push((*length, *view, task.clone(), cell, a.seed + k as u64));
            }
        }
    }
    if jobs > 1 {
        // One thread per run; each run's matrix products stay on its thread.
        recur::set_num_threads(1);
    }
    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<Option<Result<Run, String>>>> =
        Mutex::new((0..plan.len()).map(|_| None).collect());
    let verbose = a.verbose;
    let (batch_size, clip, orthogonal, solve_fraction, stop) = (
        a.batch_size,
        (a.clip > 0.0).then_some(a.clip),
        a.orthogonal,
        a.solve_fraction,
        !a.no_early_stop,
    );
    std::thread::scope(|sc| {
        for _ in 0..jobs.min(plan.len()) {
            sc.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some((length, view, task, cell, seed)) = plan.get(k).cloned() else {
                    break;
                };
                let base = task.baseline();
                let label = match view {
                    Some(v) => format!("{name} {v} (T={length}) {cell} seed {seed}"),
                    None => format!("{name} T={length} {cell} seed {seed}"),
                };
                let cfg = TrainConfig {
                    hidden_size: hidden,
                    batch_size,
                    steps: steps_of(cell, length),
                    optimizer: OptimizerConfig::Adam(AdamConfig::default().lr(lr_of(cell, length))),
                    clip,
                    eval_every,
                    eval_size,
                    orthogonal,
                    lstm_bias: if chrono {
                        GateBias::Chrono(task.seq_len())
                    } else {
                        GateBias::Forget(forget)
                    },
                    solve_fraction,
                    stop_when_solved: stop,
                    record_every: None,
                    seed,
                    out: out.join("runs").join(match view {
                        Some(v) => format!("{v}-{cell}-seed{seed}"),
                        None => format!("T{length}-{cell}-seed{seed}"),
                    }),
                };
                let r = train_one(&task, cell, &cfg, &label, base.loss, verbose, &say).map(
                    |(result, grads_init, grads_end)| {
                        let last = result.last().expect("an evaluation at step 0");
                        say(&format!(
                            "{label:<36} loss {:.5} ({:.4} of baseline {:.5}){}  solved at {}{}  \
                             {} steps  {:.1} s",
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
                            last.step,
                            result.seconds
                        ));
                        Run {
                            length,
                            view,
                            task: task.clone(),
                            seed,
                            lr: lr_of(cell, length),
                            max_steps: steps_of(cell, length),
                            result,
                            grads_init,
                            grads_end,
                        }
                    },
                );
                done.lock().expect("no panic while holding the lock")[k] = Some(r);
            });
        }
    });
    let runs: Vec<Run> = done
        .into_inner()
        .expect("no panic while holding the lock")
        .into_iter()
        .map(|r| r.expect("every planned run ran"))
        .collect::<Result<_, _>>()?;
    let total = start.elapsed().as_secs_f64();
    let mut doc = write_results(&out, &name, &settings, &runs, total, seeds)?;
    plot(&out, &name, &runs)?;
    for line in verdicts(&runs, seeds) {
        say(&format!("verdict: {}", line.text));
    }
    say(&format!(
        "total {:.0} s; wrote {}/results.md, results.json, curves.csv, loss.svg/png, \
         grad_norm.svg/png, hidden_grads.svg/png",
        total,
        out.display()
    ));
    if json {
        // The summary of results.json: every run without its evaluations.
        if let Some(runs) = doc["runs"].as_array_mut() {
            for r in runs {
                if let Some(o) = r.as_object_mut() {
                    o.remove("evals");
                    o.remove("hidden_grads_init");
                    o.remove("hidden_grads_end");
                }
            }
        }
        doc["out"] = out.display().to_string().into();
        println!("{doc}");
    }
    Ok(())
}

/// One run: the model, ‖dL/dh_t‖ on a fixed batch before and after training, the training.
fn train_one(
    task: &Task,
    cell: CellKind,
    cfg: &TrainConfig,
    label: &str,
    base: f64,
    verbose: bool,
    say: &(dyn Fn(&str) + Sync),
) -> Result<(RunResult, Vec<f64>, Vec<f64>), String> {
    let init = ModelInit {
        orthogonal: cfg.orthogonal,
        lstm_bias: cfg.lstm_bias,
    };
    let err = |e: recur::Error| format!("{label}: {e}");
    let mut model = Model::with_init(task, cell, cfg.hidden_size, &init, cfg.seed).map_err(err)?;
    let probe = task.train_batch(cfg.batch_size, &mut task_rng(cfg.seed ^ 0x960b));
    let norms = |m: &Model| -> Result<Vec<f64>, String> {
        let mut rec = HiddenGrads::new();
        let mut g = m.zeros_like_grads();
        m.loss_and_grad(&probe, &mut g, Some(&mut rec))
            .map_err(err)?;
        Ok(rec.norms(0, 0))
    };
    let grads_init = norms(&model)?;
    let result = synthetic::train_model(task, &mut model, cell, cfg, &mut |p| {
        if verbose {
            say(&format!(
                "  {label} step {:>5}  loss {:.5}  ({:.4} of baseline){}",
                p.step,
                p.loss,
                p.loss / base,
                p.accuracy
                    .map(|x| format!("  accuracy {:.1}%", 100.0 * x))
                    .unwrap_or_default()
            ));
        }
    })
    .map_err(err)?;
    let grads_end = norms(&model)?;
    Ok((result, grads_init, grads_end))
}

fn loss_name(task: &Task) -> &'static str {
    match task {
        Task::Adding { .. } => "MSE",
        _ => "cross-entropy",
    }
}

/// The (length, view, cell) groups in table order, each with its runs (one per seed).
fn groups(runs: &[Run]) -> Vec<Vec<&Run>> {
    let mut out: Vec<Vec<&Run>> = Vec::new();
    for r in runs {
        match out.iter_mut().find(|g| {
            g[0].length == r.length && g[0].view == r.view && g[0].result.cell == r.result.cell
        }) {
            Some(g) => g.push(r),
            None => out.push(vec![r]),
        }
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The verdict of one (length, cell) group.
struct Verdict {
    length: usize,
    view: Option<&'static str>,
    cell: CellKind,
    solved: usize,
    seeds: usize,
    word: &'static str,
    text: String,
}

fn verdicts(runs: &[Run], _seeds: usize) -> Vec<Verdict> {
    groups(runs)
        .into_iter()
        .map(|g| {
            let solved = g
                .iter()
                .filter(|r| r.result.steps_to_solve.is_some())
                .count();
            let n = g.len();
            let word = if solved == n {
                "solved"
            } else if solved == 0 {
                "not solved"
            } else {
                "solved by some seeds"
            };
            let len = match g[0].view {
                Some(v) => format!("{v} ({})", g[0].length),
                None => format!("T = {}", g[0].length),
            };
            Verdict {
                length: g[0].length,
                view: g[0].view,
                cell: g[0].result.cell,
                solved,
                seeds: n,
                word,
                text: format!("{len} {}: {word} ({solved} of {n} seeds)", g[0].result.cell),
            }
        })
        .collect()
}

/// The results tables, in markdown: one line per cell and length over the seeds, then one
/// line per run.
fn table(name: &str, runs: &[Run]) -> String {
    let mut s = String::new();
    let first = runs.first().map(|r| &r.task);
    let lname = first.map_or("loss", loss_name);
    let acc = first.is_some_and(|t| !matches!(t, Task::Adding { .. }));
    let lcol = if name == "digits" {
        "view (steps)"
    } else {
        "T"
    };
    let _ = writeln!(
        s,
        "| {lcol} | cell | solved | final {lname} / baseline: median (min–max) | best / baseline: median |{} steps to solve: median (each seed) | time s |",
        if acc { " accuracy: median |" } else { "" }
    );
    let _ = writeln!(
        s,
        "|---|---|---|---|---|{}---|---|",
        if acc { "---|" } else { "" }
    );
    for g in groups(runs) {
        let base = g[0].task.baseline().loss;
        let mut fin: Vec<f64> = g
            .iter()
            .map(|r| r.result.last().expect("evaluated").loss / base)
            .collect();
        let (lo, hi) = (
            fin.iter().copied().fold(f64::INFINITY, f64::min),
            fin.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        let mut best: Vec<f64> = g
            .iter()
            .map(|r| r.result.best().expect("evaluated").loss / base)
            .collect();
        let mut accs: Vec<f64> = g
            .iter()
            .filter_map(|r| r.result.last().and_then(|p| p.accuracy))
            .collect();
        let each: Vec<String> = g
            .iter()
            .map(|r| match (r.result.steps_to_solve, r.result.diverged_at) {
                (Some(s), _) => s.to_string(),
                (None, Some(d)) => format!("diverged at {d}"),
                (None, None) => "–".into(),
            })
            .collect();
        let mut solved: Vec<f64> = g
            .iter()
            .filter_map(|r| r.result.steps_to_solve.map(|s| s as f64))
            .collect();
        let n_solved = solved.len();
        let med = if n_solved == g.len() {
            format!("{:.0}", median(&mut solved))
        } else {
            "–".into()
        };
        let len = match g[0].view {
            Some(v) => format!("{v} ({})", g[0].length),
            None => g[0].length.to_string(),
        };
        let _ = writeln!(
            s,
            "| {len} | {} | {n_solved} of {} | {} ({}–{}) | {} |{} {med} ({}) | {:.0} |",
            g[0].result.cell,
            g.len(),
            ratio(median(&mut fin)),
            ratio(lo),
            ratio(hi),
            ratio(median(&mut best)),
            if acc {
                format!(" {:.1}% |", 100.0 * median(&mut accs))
            } else {
                String::new()
            },
            each.join(", "),
            g.iter().map(|r| r.result.seconds).sum::<f64>()
        );
    }
    s
}

/// A loss ratio with three significant digits.
fn ratio(x: f64) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    if x >= 0.1 {
        format!("{x:.3}")
    } else {
        format!("{x:.2e}")
    }
}

/// One line per run.
fn run_table(name: &str, runs: &[Run]) -> String {
    let mut s = String::new();
    let first = runs.first().map(|r| &r.task);
    let lname = first.map_or("loss", loss_name);
    let acc = first.is_some_and(|t| !matches!(t, Task::Adding { .. }));
    let _ = writeln!(
        s,
        "| {} | cell | seed | final {lname} | baseline |{} final / baseline | best / baseline |{} steps to solve | steps run | time s |",
        if name == "digits" { "view (steps)" } else { "T" },
        if acc { "" } else { " answering 1 on the evaluation set |" },
        if acc { " accuracy |" } else { "" }
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
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
            "| {len} | {} | {} | {:.5} | {:.4} |{} {} | {} |{} {solved} | {} | {:.0} |",
            r.result.cell,
            r.seed,
            last.loss,
            base.loss,
            r.result
                .eval_baseline
                .map_or(String::new(), |v| format!(" {v:.4} |")),
            ratio(last.loss / base.loss),
            ratio(best.loss / base.loss),
            if acc {
                format!(
                    " {} |",
                    last.accuracy
                        .map_or("-".into(), |x| format!("{:.1}%", 100.0 * x))
                )
            } else {
                String::new()
            },
            last.step,
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
    seeds: usize,
) -> Result<serde_json::Value, String> {
    let write = |file: &str, text: &str| {
        let p = out.join(file);
        recur::io::state_dict::write_atomic(&p, text.as_bytes()).map_err(|e| e.to_string())
    };
    let first = runs.first().map(|r| &r.task);
    let solve_fraction = runs
        .first()
        .map_or(SOLVE_FRACTION, |r| r.result.solve_fraction);
    let mut md = format!("# recur experiment {name}\n\n");
    let _ = writeln!(md, "Settings: {settings}.\n");
    if let Some(t) = first {
        let _ = writeln!(
            md,
            "Baseline: {}. Solved: an evaluation loss under {} x the baseline's; steps to \
             solve: the first such evaluation.\n",
            t.baseline().what,
            solve_fraction
        );
    }
    md += &table(name, runs);
    md += "\nEvery run:\n\n";
    md += &run_table(name, runs);
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
                "seed": r.seed,
                "lr": r.lr,
                "max_steps": r.max_steps,
                "final_loss": last.loss,
                "final_accuracy": last.accuracy,
                "best_loss": r.result.best().map(|b| b.loss),
                "baseline_loss": base.loss,
                "baseline_accuracy": base.accuracy,
                "eval_set_baseline_loss": r.result.eval_baseline,
                "final_over_baseline": last.loss / base.loss,
                "solved": r.result.steps_to_solve.is_some(),
                "steps_to_solve": r.result.steps_to_solve,
                "steps_run": last.step,
                "diverged_at": r.result.diverged_at,
                "clipped_steps": r.result.clipped,
                "seconds": r.result.seconds,
                "evals": r.result.evals.iter().map(|p| json!({
                    "step": p.step, "loss": p.loss, "accuracy": p.accuracy, "seconds": p.seconds
                })).collect::<Vec<_>>(),
                "hidden_grads_init": r.grads_init,
                "hidden_grads_end": r.grads_end,
            })
        })
        .collect();
    let verdict: Vec<_> = verdicts(runs, seeds)
        .into_iter()
        .map(|v| {
            json!({
                "length": v.length,
                "view": v.view,
                "cell": v.cell.name(),
                "solved_seeds": v.solved,
                "seeds": v.seeds,
                "verdict": v.word,
                "text": v.text,
            })
        })
        .collect();
    let doc = json!({
        "task": name,
        "settings": settings,
        "loss": first.map_or("loss", loss_name),
        "solve_fraction": solve_fraction,
        "total_seconds": total,
        "verdict": verdict,
        "runs": json_runs,
    });
    write(
        "results.json",
        &(serde_json::to_string_pretty(&doc).expect("json") + "\n"),
    )?;

    let mut csv = String::from("length,view,cell,seed,step,loss,accuracy\n");
    for r in runs {
        for p in &r.result.evals {
            let _ = writeln!(
                csv,
                "{},{},{},{},{},{},{}",
                r.length,
                r.view.unwrap_or(""),
                r.result.cell,
                r.seed,
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
    let title = |len: usize, view: Option<&str>| match view {
        Some(v) => format!("{name}, {v} ({len} steps)"),
        None => format!("{name}, T = {len}"),
    };
    let groups = groups(runs);
    let ncells = {
        let mut c: Vec<CellKind> = Vec::new();
        for g in &groups {
            if !c.contains(&g[0].result.cell) {
                c.push(g[0].result.cell);
            }
        }
        c.len()
    };
    // Loss and gradient norm: one panel per (length, cell), one curve per seed.
    let mut loss_charts = Vec::new();
    let mut grad_charts = Vec::new();
    for g in &groups {
        let base = g[0].task.baseline();
        let last_step = g
            .iter()
            .filter_map(|r| r.result.last().map(|p| p.step))
            .max()
            .unwrap_or(1);
        let t = format!("{}, {}", title(g[0].length, g[0].view), g[0].result.cell);
        let mut series: Vec<Series> = g
            .iter()
            .map(|r| Series {
                name: format!("seed {}", r.seed),
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
            points: vec![(0.0, base.loss), (last_step.max(1) as f64, base.loss)],
        });
        loss_charts.push(Chart::Line(LineChart {
            title: t.clone(),
            x_label: "training step".into(),
            y_label: format!("evaluation {}", loss_name(&g[0].task)),
            log_y: true,
            series,
        }));
        let w = (last_step / 100).max(1);
        grad_charts.push(Chart::Line(LineChart {
            title: t,
            x_label: "training step".into(),
            y_label: format!("gradient norm (mean of {w} steps)"),
            log_y: true,
            series: g
                .iter()
                .map(|r| Series {
                    name: format!("seed {}", r.seed),
                    points: smooth(&r.result.grad_norm, w),
                })
                .collect(),
        }));
    }
    // ‖dL/dh_t‖ against the distance to the end of the sequence, first seed of each cell.
    let mut keys: Vec<(usize, Option<&str>)> = Vec::new();
    for r in runs {
        if !keys.contains(&(r.length, r.view)) {
            keys.push((r.length, r.view));
        }
    }
    let mut hg_charts = Vec::new();
    for &(len, view) in &keys {
        let mut series = Vec::new();
        for g in groups
            .iter()
            .filter(|g| g[0].length == len && g[0].view == view)
        {
            let r = g[0];
            for (when, v) in [("init", &r.grads_init), ("trained", &r.grads_end)] {
                let n = v.len();
                series.push(Series {
                    name: format!("{} {when}", r.result.cell),
                    points: v
                        .iter()
                        .enumerate()
                        .map(|(t, &x)| ((n - 1 - t) as f64, x))
                        .collect(),
                });
            }
        }
        hg_charts.push(Chart::Line(LineChart {
            title: title(len, view),
            x_label: "distance k from the last step".into(),
            y_label: "||dL/dh_(T-1-k)|| (fixed batch)".into(),
            log_y: true,
            series,
        }));
    }
    for (stem, charts, what, columns) in [
        (
            "loss",
            loss_charts,
            "evaluation loss, one curve per seed",
            ncells,
        ),
        (
            "grad_norm",
            grad_charts,
            "global gradient norm before clipping",
            ncells,
        ),
        (
            "hidden_grads",
            hg_charts,
            "||dL/dh_t||, init and trained",
            keys.len().min(3),
        ),
    ] {
        let fig = Figure {
            title: format!("recur experiment {name}: {what}"),
            columns: columns.clamp(1, 4),
            charts,
        };
        fig.save(&out.join(stem))
            .map_err(|e| format!("{}: {e}", out.join(stem).display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_irnn_rate_falls_and_its_budget_grows_with_t_on_the_adding_problem() {
        let (a, i) = (Which::Adding, CellKind::Irnn);
        assert_eq!(default_lr(a, false, i, 50), 5e-4);
        assert_eq!(default_lr(a, false, i, 200), 5e-4);
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-12 * y;
        assert!(close(default_lr(a, false, i, 400), 1e-4));
        assert!(close(default_lr(a, true, i, 400), 1e-4));
        assert!(close(default_lr(a, false, i, 800), 2e-5));
        assert!(default_lr(a, false, i, 300) < 5e-4 && default_lr(a, false, i, 300) > 1e-4);
        assert_eq!(irnn_scaled_steps(a, i, 200, 6000), 6000);
        assert_eq!(irnn_scaled_steps(a, i, 400, 6000), 12000);
        assert_eq!(irnn_scaled_steps(a, i, 401, 2000), 4010);
        // Every other cell and task keeps one rate and one budget at every length.
        for cell in [CellKind::RnnTanh, CellKind::Lstm, CellKind::Gru] {
            assert_eq!(default_lr(a, false, cell, 400), 1e-2);
            assert_eq!(irnn_scaled_steps(a, cell, 400, 6000), 6000);
        }
        assert_eq!(default_lr(Which::Copy, false, i, 400), 1e-3);
        assert_eq!(irnn_scaled_steps(Which::Copy, i, 400, 4000), 4000);
        assert_eq!(default_steps(a, false), 6000);
        assert_eq!(default_steps(a, true), 2000);
    }
}
