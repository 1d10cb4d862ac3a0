//! `recur train <task>` on the terminal: the options every task shares ([`TrainOpts`]),
//! turned into the library's [`TrainConfig`], and the terminal side of a run of
//! [`recur::train::run`]: the progress bar, the log lines, Ctrl-C, the training-curve plots
//! and `--json`. The loop itself (steps, schedule, clipping, evaluation, checkpoints and
//! exact `--resume`, `metrics.json`) is the library's.

use crate::progress::Progress;
use clap::Args as ClapArgs;
use recur::nn::{OptimizerArgs, OptimizerConfig, Schedule};
pub use recur::train::{embed_rnn_head, fmt_metrics, metric_json, Metrics, Part, StepStats, Task};
use recur::train::{
    Evaluation, Finished, Hooks, Length, NonFinite, Point, Start, Summary, TrainConfig, TrainError,
    CHECKPOINT_FILE,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// The training-curve plots in the model directory (`.svg` and `.png`).
pub const CURVES_STEM: &str = "curves";

/// Why a command failed, and the exit status that says so.
#[derive(Debug)]
pub struct Failure {
    pub message: String,
    pub status: u8,
}

impl From<String> for Failure {
    fn from(message: String) -> Failure {
        Failure { message, status: 2 }
    }
}

impl From<recur::Error> for Failure {
    fn from(e: recur::Error) -> Failure {
        Failure::from(e.to_string())
    }
}

/// A failed run, with what the command line can do about it: the options to change.
fn run_failure(e: recur::Error) -> Failure {
    let recur::Error::Train(t) = &e else {
        return Failure::from(e);
    };
    let message = match t {
        TrainError::NoCheckpoint { .. } => {
            format!("--resume: {t}; run without --resume to start")
        }
        TrainError::CheckpointExists { dir } => format!(
            "--out {}: it holds the checkpoint of another run; add --resume to continue it, or give another directory",
            dir.display()
        ),
        TrainError::OtherRun { .. } => {
            format!("--resume: {t}; give the same options, or another --out")
        }
        TrainError::Done { .. } => format!("--resume: {t}; give a larger --steps"),
        TrainError::NonFinite { .. } => format!(
            "{t}. Try a smaller --lr or --clip-grad-norm, or --skip-nonfinite"
        ),
        _ => t.to_string(),
    };
    Failure::from(message)
}

/// The options every `recur train <task>` shares.
#[derive(ClapArgs, Clone, Debug)]
pub struct TrainOpts {
    /// The model directory to write: the model (weights, config.json, vocabulary), the
    /// best one on validation; metrics.json; curves.svg/png; checkpoint.safetensors.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Training steps (batches); by default --epochs passes over the training data.
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Passes over the training data (default 10, unless --steps is given).
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Evaluate on the validation data every N steps, and at the end (default: 10 evaluations
    /// per run).
    #[arg(long, value_name = "N")]
    pub eval_every: Option<u64>,
    /// Write a checkpoint every N steps (default: at every evaluation), and always at the end
    /// and on Ctrl-C.
    #[arg(long, value_name = "N")]
    pub checkpoint_every: Option<u64>,
    /// Continue the run whose checkpoint is in --out (same data and options; --steps may grow).
    #[arg(long)]
    pub resume: bool,
    /// Seed of the initialization, dropout, data order and samples.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Optimizer: adam, adamw, sgd, rmsprop or adagrad (torch.optim formulas), with PyTorch's
    /// defaults; other hyper-parameters as NAME:KEY=VALUE,..., e.g.
    /// `sgd:nesterov=true,dampening=0` or `adam:beta2=0.98,amsgrad=true`.
    #[arg(long, default_value = "adam", value_name = "NAME[:KEY=VALUE,...]")]
    pub optimizer: String,
    /// Learning rate.
    #[arg(long, default_value_t = 2e-3)]
    pub lr: f64,
    /// Weight decay (L2 for adam/sgd/rmsprop/adagrad, decoupled for adamw; PyTorch's default
    /// when not given: 0, or 0.01 for adamw).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Momentum (sgd, rmsprop).
    #[arg(long)]
    pub momentum: Option<f64>,
    /// Learning-rate schedule (torch.optim.lr_scheduler), stepped once per training step:
    /// constant, cosine (to 0 at the last step), linear, exp:gamma=G, step:step_size=N,gamma=G,
    /// multistep:milestones=A/B,gamma=G, cosine:t_max=N,eta_min=X; with --warmup-steps, a
    /// linear warm-up comes first.
    #[arg(long, default_value = "constant", value_name = "NAME[:KEY=VALUE,...]")]
    pub lr_schedule: String,
    /// Steps of linear learning-rate warm-up before the schedule.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub warmup_steps: u64,
    /// Clip the global gradient norm to this value (0: no clipping).
    #[arg(long, default_value_t = 5.0)]
    pub clip_grad_norm: f64,
    /// Clip every gradient value to [-V, V] (before norm clipping).
    #[arg(long, value_name = "V")]
    pub clip_grad_value: Option<f64>,
    /// On a NaN or infinite loss or gradient, skip the step and count it instead of stopping
    /// (the run still stops after 100 such steps in a row).
    #[arg(long)]
    pub skip_nonfinite: bool,
    /// Threads of the matrix products (0, the default: all cores; as in `recur bench`).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print one line of JSON with the final metrics on stdout (the log goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Record the gradient norms of every step (global and per parameter group, before
    /// clipping) in grad_stats.csv, warn on spikes and non-finite values, report how often
    /// clipping fired.
    #[arg(long)]
    pub grad_stats: bool,
    /// Seconds between progress lines when the output is not a terminal.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub log_every: f64,
    /// The training data's file name, for the title of the plots (set by the task).
    #[arg(skip)]
    pub data_name: String,
}

/// Where the human-readable log goes: stdout, or stderr with `--json` (so stdout holds only
/// the JSON line). While a progress bar is on the terminal, lines go above it.
pub struct Log {
    to_stderr: bool,
    progress: Option<Progress>,
    /// A rank other than 0 of a data-parallel run: rank 0 alone prints.
    quiet: bool,
}

impl Log {
    pub fn new(json: bool) -> Log {
        Log {
            to_stderr: json,
            progress: None,
            quiet: crate::dist::rank() != 0,
        }
    }
    pub fn line(&mut self, s: &str) {
        if self.quiet {
            return;
        }
        let to_stderr = self.to_stderr;
        let print = || {
            if to_stderr {
                eprintln!("{s}")
            } else {
                println!("{s}")
            }
        };
        match &mut self.progress {
            Some(p) => p.suspend(print),
            None => print(),
        }
    }
    pub fn start_progress(&mut self, p: Progress) {
        self.progress = Some(p);
    }
    pub fn progress(&mut self, step: u64, loss: f64, units: u64) {
        if let Some(p) = &mut self.progress {
            p.update(step, loss, units);
        }
    }
    /// Ends the progress display with its final state.
    pub fn end_progress(&mut self) {
        if let Some(p) = self.progress.take() {
            p.finish();
        }
    }
    /// Leaves the progress display as it is (a run that failed).
    pub fn abandon_progress(&mut self) {
        if let Some(p) = self.progress.take() {
            p.abandon();
        }
    }
}

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static HANDLER: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once): the first Ctrl-C asks the run to save a checkpoint and
/// stop after the current step; a second one exits at once (the last checkpoint on disk is
/// complete: checkpoints are replaced atomically).
fn watch_interrupts() {
    if HANDLER.swap(true, Ordering::SeqCst) {
        return;
    }
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) >= 1 {
            eprintln!("\ninterrupted again: exiting without saving");
            std::process::exit(130);
        }
    });
}

fn interrupted() -> bool {
    INTERRUPTS.load(Ordering::SeqCst) > 0
}

/// `1h02m`, `3m05s`, `42s`
pub fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// `812`, `25.3k`, `1.20M`
pub fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.2}M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1}k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// Checks every training option, the optimizer and the learning-rate schedule included, before
/// any data is read (the schedule again once the run's length is known, when --epochs gives
/// it).
pub fn check_opts(o: &TrainOpts) -> Result<(), String> {
    check_values(o)?;
    crate::quantize::refuse_quantized_out(&o.out)?;
    optimizer_config(o).map_err(|e| format!("--optimizer: {e}"))?;
    Schedule::parse(
        &o.lr_schedule,
        o.lr,
        o.steps.unwrap_or(u64::MAX),
        o.warmup_steps,
    )
    .map_err(|e| format!("--lr-schedule: {e}"))?;
    Ok(())
}

fn check_values(o: &TrainOpts) -> Result<(), String> {
    let positive = |name: &str, v: Option<u64>| match v {
        Some(0) => Err(format!("{name} must be at least 1")),
        _ => Ok(()),
    };
    positive("--steps", o.steps)?;
    positive("--epochs", o.epochs)?;
    positive("--eval-every", o.eval_every)?;
    positive("--checkpoint-every", o.checkpoint_every)?;
    if !(o.lr.is_finite() && o.lr > 0.0) {
        return Err(format!("--lr must be a positive number, got {}", o.lr));
    }
    if !(o.clip_grad_norm.is_finite() && o.clip_grad_norm >= 0.0) {
        return Err(format!(
            "--clip-grad-norm must be a number >= 0 (0: no clipping), got {}",
            o.clip_grad_norm
        ));
    }
    if let Some(v) = o.clip_grad_value {
        if !(v.is_finite() && v > 0.0) {
            return Err(format!(
                "--clip-grad-value must be a positive number, got {v}"
            ));
        }
    }
    if !(o.log_every.is_finite() && o.log_every > 0.0) {
        return Err(format!(
            "--log-every must be a positive number of seconds, got {}",
            o.log_every
        ));
    }
    Ok(())
}

/// The optimizer `--optimizer`, `--lr`, `--weight-decay` and `--momentum` describe: the
/// options written after the name win over the flags.
fn optimizer_config(o: &TrainOpts) -> recur::Result<OptimizerConfig> {
    let (name, mut args): (String, OptimizerArgs) = OptimizerArgs::parse(&o.optimizer)?;
    args.lr = args.lr.or(Some(o.lr));
    args.weight_decay = args.weight_decay.or(o.weight_decay);
    args.momentum = args.momentum.or(o.momentum);
    OptimizerConfig::from_args(&name, &args)
}

/// The library's configuration of the run the options describe.
pub fn train_config(o: &TrainOpts) -> Result<TrainConfig, String> {
    check_values(o)?;
    let optimizer = optimizer_config(o).map_err(|e| format!("--optimizer: {e}"))?;
    Ok(TrainConfig {
        out: o.out.clone(),
        length: match (o.steps, o.epochs) {
            (Some(s), _) => Length::Steps(s),
            (None, e) => Length::Epochs(e.unwrap_or(10)),
        },
        eval_every: o.eval_every,
        checkpoint_every: o.checkpoint_every,
        resume: o.resume,
        checkpoints: true,
        seed: o.seed,
        optimizer,
        lr_schedule: o.lr_schedule.clone(),
        warmup_steps: o.warmup_steps,
        clip_grad_norm: o.clip_grad_norm,
        clip_grad_value: o.clip_grad_value,
        non_finite: if o.skip_nonfinite {
            NonFinite::Skip { max_in_a_row: 100 }
        } else {
            NonFinite::Stop
        },
        threads: o.threads,
    })
}

/// What the plots need to know about the run.
struct RunInfo {
    task: String,
    loss_label: String,
    data_name: String,
}

/// The terminal side of a run: progress, log lines, Ctrl-C, plots, gradient statistics.
struct Terminal<'a> {
    log: &'a mut Log,
    opts: &'a TrainOpts,
    info: RunInfo,
    grad_stats: Option<crate::gradients::GradStatsLog>,
    /// When this process started the run (the wall clock of the end-of-run line).
    started: Instant,
    /// What the task's units are.
    unit: String,
}

fn hook_error(message: String) -> recur::Error {
    recur::Error::Io(message)
}

impl Hooks for Terminal<'_> {
    fn start(&mut self, s: &Start<'_>) -> recur::Result<()> {
        self.info.task = s.task.to_string();
        self.info.loss_label = s.loss_label.to_string();
        watch_interrupts();
        self.log.start_progress(
            Progress::new(s.total_steps, s.unit)
                .log_every(std::time::Duration::from_secs_f64(self.opts.log_every))
                .start_step(s.start_step),
        );
        if self.opts.grad_stats {
            let max = (self.opts.clip_grad_norm > 0.0).then_some(self.opts.clip_grad_norm);
            self.grad_stats = Some(
                crate::gradients::GradStatsLog::create(&self.opts.out, s.parts, max, s.resumed)
                    .map_err(hook_error)?,
            );
        }
        Ok(())
    }

    fn line(&mut self, line: &str) {
        self.log.line(line);
    }

    fn gradients(&mut self, step: u64, grads: &[(&str, &[f32])]) -> recur::Result<()> {
        if let Some(g) = &mut self.grad_stats {
            let named: Vec<(String, &[f32])> =
                grads.iter().map(|(n, v)| (n.to_string(), *v)).collect();
            for w in g.observe(step, &named).map_err(hook_error)? {
                self.log.line(&w);
            }
        }
        Ok(())
    }

    fn step(&mut self, step: u64, loss: f64, units: u64) {
        self.log.progress(step, loss, units);
    }

    fn evaluation(&mut self, e: &Evaluation<'_>) {
        self.log.line(&format!(
            "eval at step {}: {}{}",
            e.point.step,
            fmt_metrics(&e.point.metrics),
            if e.improved {
                "  (best so far: saved)"
            } else {
                ""
            }
        ));
        plot_curves(e.out, e.curve, e.kept, &self.info, self.log);
    }

    fn should_stop(&mut self) -> bool {
        interrupted()
    }

    fn finished(&mut self, f: &Finished<'_>) -> recur::Result<()> {
        self.log.end_progress();
        if let Some(g) = &mut self.grad_stats {
            let line = g.finish().map_err(hook_error)?;
            self.log.line(&line);
        }
        let (Some(best), Some(last)) = (f.best, f.last) else {
            return Ok(());
        };
        self.log.line("");
        // The rates of this run by the wall clock, evaluations and checkpoints included (the
        // progress bar's): steps done since the start (or the resume) over the time since then.
        let wall = self.started.elapsed().as_secs_f64().max(1e-9);
        let done = f.steps - f.start_step;
        self.log.line(&format!(
            "trained {done} steps{} in {} ({:.2} steps/s, {} {}/s){}{}",
            if f.start_step > 0 {
                format!(" (resumed at step {})", f.start_step)
            } else {
                String::new()
            },
            duration(wall),
            done as f64 / wall,
            si(f.units as f64 / wall),
            self.unit,
            if f.clipped_steps > 0 {
                format!("; gradient norm clipped in {} steps", f.clipped_steps)
            } else {
                String::new()
            },
            if f.skipped_steps > 0 {
                format!("; {} non-finite steps skipped", f.skipped_steps)
            } else {
                String::new()
            },
        ));
        self.log.line(&format!(
            "final (step {}): {}",
            last.step,
            fmt_metrics(&last.metrics)
        ));
        self.log.line(&format!(
            "best (step {}, kept in {}): {} ({})",
            best.step,
            f.out.display(),
            fmt_metrics(&best.metrics),
            f.reason
        ));
        Ok(())
    }
}

/// Trains `task` as `o` says, writing into `o.out`; prints the log, and the JSON line with
/// `--json`; returns the JSON summary.
#[cfg_attr(not(test), allow(dead_code))]
pub fn train(
    task: &mut dyn Task,
    o: &TrainOpts,
    log: &mut Log,
) -> Result<serde_json::Value, Failure> {
    train_on(task, o, log, &recur::train::Local)
}

/// [`train`] as one rank of `comm` (data parallelism): rank 0 alone prints and writes.
pub fn train_on(
    task: &mut dyn Task,
    o: &TrainOpts,
    log: &mut Log,
    comm: &dyn recur::train::Communicator,
) -> Result<serde_json::Value, Failure> {
    let config = train_config(o)?;
    let unit = task.unit().to_string();
    let mut term = Terminal {
        log,
        opts: o,
        info: RunInfo {
            task: task.name().to_string(),
            loss_label: task.loss_label().to_string(),
            data_name: o.data_name.clone(),
        },
        grad_stats: None,
        started: Instant::now(),
        unit,
    };
    if comm.size() > 1 {
        // Every rank stops on Ctrl-C the same way (they agree on the step in the all-reduce);
        // rank 0 installs the handler in `start`, the others here.
        watch_interrupts();
    }
    let result = recur::train::run_on(task, &config, &mut term, comm);
    let s: Summary = match result {
        Ok(s) => s,
        Err(e) => {
            term.log.abandon_progress();
            return Err(run_failure(e));
        }
    };
    if !s.finished {
        term.log.end_progress();
        return Err(Failure {
            message: format!(
                "interrupted at step {} of {}: checkpoint saved to {}; run the same command with --resume to continue",
                s.steps,
                s.total_steps,
                o.out.join(CHECKPOINT_FILE).display()
            ),
            status: 130,
        });
    }
    let json = serde_json::json!({
        "task": task.name(),
        "model": o.out.display().to_string(),
        "steps": s.steps,
        "seconds": term.started.elapsed().as_secs_f64(),
        "best": s.metrics["best"],
        "final": s.metrics["final"],
        "report": s.metrics["report"],
    });
    if o.json && comm.rank() == 0 {
        println!("{json}");
    }
    Ok(json)
}

/// A metric name as words for the plots: `valid_naive_rmse` → `valid naive RMSE`.
fn words(name: &str) -> String {
    name.split('_')
        .map(|w| match w {
            "rmse" | "mae" | "mse" | "bpc" | "wer" | "per" | "ter" | "f1" => w.to_uppercase(),
            _ => w.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The metric a baseline metric belongs with (`valid_naive_rmse` → `valid_rmse`), if `name`
/// is a baseline: drawn as a line on that metric's panel rather than a panel of its own.
fn baseline_of(name: &str) -> Option<String> {
    ["naive_", "baseline_", "unigram_"]
        .iter()
        .find(|p| name.contains(*p))
        .map(|p| name.replacen(p, "", 1))
}

/// Draws the training loss and every validation metric against the step: one panel for the
/// losses (training and validation), one for each other metric with its baseline (if any)
/// on it, and on every panel a vertical line at the step whose model was kept. The title
/// names the task and its data. A failure to write the plots is reported, not fatal.
fn plot_curves(
    dir: &Path,
    curve_of: &[Point],
    kept_step: Option<u64>,
    run: &RunInfo,
    log: &mut Log,
) {
    let (task, loss_label, data) = (&run.task, &run.loss_label, &run.data_name);
    use recur_plot::{Chart, Figure, LineChart, Series};
    let curve = |name: &str| -> Vec<(f64, f64)> {
        curve_of
            .iter()
            .filter_map(|p| {
                let v = p.metrics.iter().find(|m| m.0 == name)?.1;
                Some((p.step as f64, v))
            })
            .collect()
    };
    let kept = |series: &[Series]| -> Option<Series> {
        let step = kept_step?;
        let ys = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .filter(|y| y.is_finite());
        let (lo, hi) = ys.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
        lo.is_finite().then(|| Series {
            name: format!("kept (step {step})"),
            points: vec![(step as f64, lo), (step as f64, hi)],
        })
    };
    let mut loss = vec![Series {
        name: "train loss".into(),
        points: curve_of
            .iter()
            .map(|p| (p.step as f64, p.train_loss))
            .collect(),
    }];
    let names: Vec<String> = curve_of
        .last()
        .map(|p| p.metrics.iter().map(|m| m.0.clone()).collect())
        .unwrap_or_default();
    let mut panels: Vec<(String, Vec<Series>)> = Vec::new();
    for name in names.iter().filter(|n| baseline_of(n).is_none()) {
        if name.ends_with("loss") {
            loss.push(Series {
                name: words(name),
                points: curve(name),
            });
            continue;
        }
        let mut series = vec![Series {
            name: words(name),
            points: curve(name),
        }];
        for b in names
            .iter()
            .filter(|b| baseline_of(b).as_deref() == Some(name))
        {
            series.push(Series {
                name: words(b),
                points: curve(b),
            });
        }
        panels.push((name.clone(), series));
    }
    // A baseline whose metric is not plotted keeps a panel of its own.
    for b in names
        .iter()
        .filter(|b| baseline_of(b).is_some_and(|m| !names.contains(&m)))
    {
        panels.push((
            b.clone(),
            vec![Series {
                name: words(b),
                points: curve(b),
            }],
        ));
    }
    let mut charts = vec![(String::from("loss"), loss_label.to_string(), loss)];
    charts.extend(panels.into_iter().map(|(n, s)| (words(&n), words(&n), s)));
    let charts: Vec<Chart> = charts
        .into_iter()
        .map(|(title, y_label, mut series)| {
            if let Some(k) = kept(&series) {
                series.push(k);
            }
            Chart::Line(LineChart {
                title,
                x_label: "step".into(),
                y_label,
                log_y: false,
                series,
            })
        })
        .collect();
    let fig = Figure {
        title: if data.is_empty() {
            format!("recur train {}", task)
        } else {
            format!("recur train {} on {data}", task)
        },
        columns: charts.len().min(2),
        charts,
    };
    if let Err(e) = fig.save(&dir.join(CURVES_STEM)) {
        log.line(&format!("warning: cannot write the training curves: {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use recur::train::checkpoint::{Checkpoint, CheckpointWriter};
    use recur::train::METRICS_FILE;

    /// A least-squares problem, `loss = mean((w - target_k)²)` over a cycle of targets, whose
    /// loss is NaN at the steps listed in `poison`.
    struct Toy {
        w: Vec<f32>,
        g: Vec<f32>,
        step: u64,
        poison: Vec<u64>,
        discarded: u64,
    }

    impl Task for Toy {
        fn name(&self) -> &'static str {
            "toy"
        }
        fn unit(&self) -> &'static str {
            "item"
        }
        fn steps_per_epoch(&self) -> u64 {
            4
        }
        fn higher_is_better(&self) -> bool {
            false
        }
        fn config_json(&self) -> serde_json::Value {
            serde_json::json!({"n": self.w.len()})
        }
        fn train_batch(&mut self, shard: recur::train::Shard) -> recur::Result<StepStats> {
            shard.require_whole("toy")?;
            self.step += 1;
            let target = (self.step % 4) as f32;
            let n = self.w.len() as f32;
            let mut loss = 0.0f64;
            for (g, &w) in self.g.iter_mut().zip(&self.w) {
                *g = 2.0 * (w - target) / n;
                loss += ((w - target) as f64).powi(2) / n as f64;
            }
            if self.poison.contains(&self.step) {
                loss = f64::NAN;
            }
            Ok(StepStats { loss, units: 1 })
        }
        fn discard_step(&mut self) {
            self.discarded += 1;
        }
        fn parts(&mut self) -> Vec<Part<'_>> {
            vec![Part {
                name: "w",
                params: &mut self.w,
                grads: &mut self.g,
            }]
        }
        fn evaluate(&mut self) -> recur::Result<Metrics> {
            let m = self
                .w
                .iter()
                .map(|&w| ((w - 1.5) as f64).powi(2))
                .sum::<f64>();
            Ok(vec![("valid_mse".into(), m)])
        }
        fn save_model(&self, _dir: &Path, _t: &serde_json::Value) -> recur::Result<()> {
            Ok(())
        }
        fn save_state(&self, w: &mut CheckpointWriter) {
            w.meta_mut()["task"] = self.step.into();
        }
        fn load_state(&mut self, c: &Checkpoint) -> recur::Result<()> {
            self.step = c.u64_field("task")?;
            Ok(())
        }
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        o: TrainOpts,
    }

    fn opts(dir: &Path, extra: &[&str]) -> TrainOpts {
        let mut args = vec!["x", "--out", dir.to_str().unwrap()];
        args.extend(extra);
        Cli::parse_from(args).o
    }

    fn toy(poison: &[u64]) -> Toy {
        Toy {
            w: vec![0.5, -1.0, 3.0],
            g: vec![0.0; 3],
            step: 0,
            poison: poison.to_vec(),
            discarded: 0,
        }
    }

    #[test]
    fn non_finite_steps_are_skipped_and_counted_with_the_option() {
        let dir = std::env::temp_dir().join(format!("recur-run-skip-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let o = opts(
            &dir,
            &[
                "--steps",
                "12",
                "--skip-nonfinite",
                "--optimizer",
                "sgd",
                "--lr",
                "0.1",
            ],
        );
        let mut t = toy(&[3, 7]);
        let s = train(&mut t, &o, &mut Log::new(true)).unwrap();
        assert_eq!(t.discarded, 2);
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(METRICS_FILE)).unwrap())
                .unwrap();
        assert_eq!(m["skipped_steps"], 2);
        assert_eq!(s["steps"], 12);
        // The same updates as plain SGD over the 10 good steps (targets of steps 1..=12 but
        // 3 and 7), computed here by hand.
        let mut w = [0.5f32, -1.0, 3.0];
        for step in (1..=12u64).filter(|s| *s != 3 && *s != 7) {
            let target = (step % 4) as f32;
            for x in w.iter_mut() {
                let g = 2.0 * (*x - target) / 3.0;
                *x -= 0.1 * g;
            }
        }
        for (a, b) in t.w.iter().zip(&w) {
            assert!((a - b).abs() < 1e-6, "{:?} vs {w:?}", t.w);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_the_option_a_non_finite_loss_stops_the_run() {
        let dir = std::env::temp_dir().join(format!("recur-run-stop-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let o = opts(
            &dir,
            &[
                "--steps",
                "12",
                "--checkpoint-every",
                "2",
                "--optimizer",
                "sgd",
            ],
        );
        let mut t = toy(&[5]);
        let e = train(&mut t, &o, &mut Log::new(true)).err().unwrap();
        assert_eq!(e.status, 2);
        assert!(
            e.message.contains("non-finite loss NaN at step 5"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("last good checkpoint (step 4)"),
            "{}",
            e.message
        );
        let c = Checkpoint::read(&dir.join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(c.field("run").unwrap()["step"], 4);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn optimizer_options_after_the_name_win_over_the_flags() {
        let dir = std::env::temp_dir();
        let o = opts(
            &dir,
            &[
                "--optimizer",
                "sgd:lr=0.5,nesterov=true",
                "--momentum",
                "0.9",
            ],
        );
        let c = train_config(&o).unwrap();
        assert_eq!(
            c.optimizer,
            OptimizerConfig::Sgd(
                recur::nn::SgdConfig::default()
                    .lr(0.5)
                    .momentum(0.9)
                    .nesterov(true)
            )
        );
        let o = opts(&dir, &["--optimizer", "adam", "--momentum", "0.9"]);
        let e = train_config(&o).unwrap_err();
        assert!(
            e.contains("--optimizer: optimizer adam has no option 'momentum'"),
            "{e}"
        );
    }
}
