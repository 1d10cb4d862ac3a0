//! The training runner behind every `recur train <task>`: one loop that reads top to bottom.
//!
//! A task (a language model, a classifier, ...) says how to compute the loss and gradients of
//! its next batch, how to evaluate, and how to save its model; the runner owns everything
//! else: the number of steps, the optimizer and its learning-rate schedule, gradient clipping,
//! non-finite losses, evaluation and the best model on validation, checkpoints (one file,
//! replaced atomically) and `--resume`, Ctrl-C, the progress display, `metrics.json`, the
//! training-curve plot and `--json`.
//!
//! Resuming is exact: the checkpoint holds the parameters, the optimizer's state, the task's
//! data cursor, carried state and random generators, and the runner's own counters, so a run
//! stopped at step k and resumed reaches the same weights, bit for bit, as a run that was not
//! stopped.

use clap::Args as ClapArgs;
use recur::nn::{
    clip_grad_norm, clip_grad_value, Optimizer, OptimizerConfig, OptimizerState, Schedule,
};
use recur::train::checkpoint::{Checkpoint, CheckpointWriter};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// The checkpoint file in the model directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The metrics file in the model directory.
pub const METRICS_FILE: &str = "metrics.json";
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

/// What one training step did.
pub struct StepStats {
    /// The mean loss of the batch.
    pub loss: f64,
    /// Targets in the batch (characters, tokens, sequences): for the rates.
    pub units: u64,
}

/// A named set of metrics, in order. The first is the one that picks the best model.
pub type Metrics = Vec<(String, f64)>;

/// One parameter buffer and its gradient.
pub struct Part<'a> {
    pub name: &'static str,
    pub params: &'a mut [f32],
    pub grads: &'a mut [f32],
}

/// The parts of a model made of an embedding, a recurrent stack and a linear head (the
/// language model and the sequence models), in that order.
pub fn embed_rnn_head<'a>(params: [&'a mut [f32]; 3], grads: [&'a mut [f32]; 3]) -> Vec<Part<'a>> {
    ["embed", "rnn", "head"]
        .into_iter()
        .zip(params)
        .zip(grads)
        .map(|((name, params), grads)| Part {
            name,
            params,
            grads,
        })
        .collect()
}

/// A model trained by the runner.
pub trait Task {
    /// The task's name, as in `recur train <name>`.
    fn name(&self) -> &'static str;
    /// What the units of [`StepStats::units`] are, e.g. "char".
    fn unit(&self) -> &'static str;
    /// What the training loss is, for the axis of the plots.
    fn loss_label(&self) -> &'static str {
        "cross-entropy (nats)"
    }
    /// Steps in one pass over the training data.
    fn steps_per_epoch(&self) -> u64;
    /// Whether a larger value of the first metric is better (accuracy) or a smaller one
    /// (loss).
    fn higher_is_better(&self) -> bool;
    /// The data and model options that must be the same to resume a run.
    fn config_json(&self) -> serde_json::Value;
    /// Zeroes the gradients, then computes the loss and the gradients of the next training
    /// batch (and moves to the batch after it).
    fn train_batch(&mut self) -> recur::Result<StepStats>;
    /// Called when the runner skips the step just computed (non-finite loss or gradient).
    fn discard_step(&mut self) {}
    /// The parameters and gradients, in a fixed order.
    fn parts(&mut self) -> Vec<Part<'_>>;
    /// Metrics on the validation data.
    fn evaluate(&mut self) -> recur::Result<Metrics>;
    /// Writes the model (weights, config.json with `training` in it, vocabulary) into `dir`.
    fn save_model(&self, dir: &Path, training: &serde_json::Value) -> recur::Result<()>;
    /// Adds the task's state besides the parameters (which the runner saves from
    /// [`Task::parts`]): data cursor, carried state, generators.
    fn save_state(&self, w: &mut CheckpointWriter);
    /// Restores what [`Task::save_state`] wrote.
    fn load_state(&mut self, c: &Checkpoint) -> recur::Result<()>;
    /// After training: reports on the best model saved in `dir` (test metrics, samples), with
    /// lines for the log and metrics for metrics.json / --json.
    fn finish(&mut self, dir: &Path, log: &mut Log) -> recur::Result<Metrics>;
}

/// Where the human-readable log goes: stdout, or stderr with `--json` (so stdout holds only
/// the JSON line). While a progress bar is on a terminal that stdout also writes to, lines go
/// above the bar.
pub struct Log {
    to_stderr: bool,
    progress: Option<recur_plot::Progress>,
}

impl Log {
    pub fn new(json: bool) -> Log {
        Log {
            to_stderr: json,
            progress: None,
        }
    }
    pub fn line(&mut self, s: &str) {
        use std::io::IsTerminal;
        match &mut self.progress {
            Some(p) if self.to_stderr || std::io::stdout().is_terminal() => p.println(s),
            _ if self.to_stderr => eprintln!("{s}"),
            _ => println!("{s}"),
        }
    }
    pub fn start_progress(&mut self, p: recur_plot::Progress) {
        self.progress = Some(p);
    }
    pub fn progress(&mut self, step: u64, loss: f64, units: u64) {
        if let Some(p) = &mut self.progress {
            p.update(step, loss, units);
        }
    }
    pub fn end_progress(&mut self) {
        if let Some(mut p) = self.progress.take() {
            p.finish();
        }
    }
}

static INTERRUPTS: AtomicUsize = AtomicUsize::new(0);
static HANDLER: AtomicBool = AtomicBool::new(false);

/// Installs the Ctrl-C handler (once): the first Ctrl-C asks the runner to save a checkpoint
/// and stop after the current step; a second one exits at once (the last checkpoint on disk
/// is complete: checkpoints are replaced atomically).
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

/// One evaluation: where, and what it measured.
#[derive(Clone, Debug)]
struct Point {
    step: u64,
    epoch: f64,
    train_loss: f64,
    lr: f64,
    seconds: f64,
    metrics: Metrics,
}

impl Point {
    fn json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        m.insert("step".into(), self.step.into());
        m.insert("epoch".into(), self.epoch.into());
        m.insert("train_loss".into(), json_f64(self.train_loss));
        m.insert("lr".into(), json_f64(self.lr));
        m.insert("seconds".into(), json_f64(self.seconds));
        for (k, v) in &self.metrics {
            m.insert(k.clone(), metric_json(k, *v));
        }
        serde_json::Value::Object(m)
    }

    fn from_json(v: &serde_json::Value) -> Option<Point> {
        let o = v.as_object()?;
        let f = |k: &str| o.get(k).and_then(|x| x.as_f64());
        let fixed = ["step", "epoch", "train_loss", "lr", "seconds"];
        Some(Point {
            step: o.get("step")?.as_u64()?,
            epoch: f("epoch")?,
            train_loss: f("train_loss").unwrap_or(f64::NAN),
            lr: f("lr").unwrap_or(f64::NAN),
            seconds: f("seconds")?,
            metrics: o
                .iter()
                .filter(|(k, _)| !fixed.contains(&k.as_str()))
                .map(|(k, x)| (k.clone(), x.as_f64().unwrap_or(f64::NAN)))
                .collect(),
        })
    }
}

/// Whether the metric `name` counts things (examples, tokens, parameters): written to JSON as
/// an integer.
fn is_count(name: &str) -> bool {
    const COUNTS: [&str; 10] = [
        "examples",
        "windows",
        "sentences",
        "sources",
        "vocab_size",
        "num_params",
        "valid_targets",
        "chars",
        "words",
        "tokens",
    ];
    COUNTS.contains(&name)
        || ["_chars", "_words", "_tokens"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// A metric's JSON: counts as integers (`"examples": 197`, not `197.0`), other values as
/// [`json_f64`].
pub fn metric_json(name: &str, v: f64) -> serde_json::Value {
    if is_count(name) && v.fract() == 0.0 && (0.0..9.007_199_254_740_992e15).contains(&v) {
        (v as u64).into()
    } else {
        json_f64(v)
    }
}

/// JSON has no NaN: non-finite numbers are written as null.
fn json_f64(x: f64) -> serde_json::Value {
    if x.is_finite() {
        x.into()
    } else {
        serde_json::Value::Null
    }
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

/// The metrics as `name value` pairs for the log.
pub fn fmt_metrics(m: &Metrics) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {}", fmt_value(*v)))
        .collect::<Vec<_>>()
        .join("  ")
}

fn fmt_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v != 0.0 && (v.abs() >= 1e5 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.4}")
    }
}

/// Checks every training option, the optimizer and the learning-rate schedule included, before
/// any data is read (the schedule again once the run's length is known, when --epochs gives
/// it).
pub fn check_opts(o: &TrainOpts) -> Result<(), String> {
    check_values(o)?;
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

/// Whether the evaluation `new` makes a better model than the best so far (`best`: its step
/// and metrics), and why: the first metric decides (larger is better when `higher`); on a
/// tie, the lower validation loss (the first other metric whose name ends in `loss`); on a
/// tie of both, the model kept stays. `None`: not better (or the first metric is not
/// finite).
fn better(new: &Metrics, best: Option<(u64, &[(String, f64)])>, higher: bool) -> Option<String> {
    let (name, v) = new.first().map(|m| (m.0.as_str(), m.1))?;
    if !v.is_finite() {
        return None;
    }
    let Some((step, old)) = best else {
        return Some(format!("first evaluation with a finite {name}"));
    };
    let b = old.first().map_or(f64::NAN, |m| m.1);
    let (word, wins) = if higher {
        ("higher", v > b)
    } else {
        ("lower", v < b)
    };
    if wins || !b.is_finite() {
        return Some(format!(
            "{word} {name}: {} against {} at step {step}",
            fmt_value(v),
            fmt_value(b)
        ));
    }
    if v != b {
        return None;
    }
    let loss = |m: &[(String, f64)]| {
        m.iter()
            .skip(1)
            .find(|(k, _)| k.ends_with("loss"))
            .map(|(k, x)| (k.clone(), *x))
    };
    match (loss(new), loss(old)) {
        (Some((k, nl)), Some((_, ol))) if nl < ol || (nl.is_finite() && !ol.is_finite()) => {
            Some(format!(
                "{name} tied with step {step} at {}; lower {k}: {} against {}",
                fmt_value(v),
                fmt_value(nl),
                fmt_value(ol)
            ))
        }
        _ => None,
    }
}

/// The options that shape the training trajectory: a resumed run must use the same.
fn trajectory_json(o: &TrainOpts, total: u64, task: &dyn Task) -> serde_json::Value {
    serde_json::json!({
        "task": task.name(),
        "config": task.config_json(),
        "seed": o.seed,
        "optimizer": optimizer_config(o).map(|c| c.spec()).unwrap_or_default(),
        "lr": o.lr,
        "lr_schedule": o.lr_schedule,
        "warmup_steps": o.warmup_steps,
        // A schedule that depends on the run's length must keep it.
        "schedule_steps": if o.lr_schedule == "constant" { serde_json::Value::Null } else { total.into() },
        "clip_grad_norm": o.clip_grad_norm,
        "clip_grad_value": o.clip_grad_value,
    })
}

/// The keys whose values differ between two JSON objects, as `key: a -> b` (nested keys
/// joined with dots).
fn differences(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    match (a.as_object(), b.as_object()) {
        (Some(x), Some(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let null = serde_json::Value::Null;
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                differences(
                    &name,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{prefix}: {a} in the checkpoint, {b} now")),
        _ => {}
    }
}

/// Everything the loop keeps between steps, saved in checkpoints.
struct RunState {
    step: u64,
    curve: Vec<Point>,
    best: Option<(u64, f64)>,
    /// Why the best model was kept (see [`better`]).
    best_reason: String,
    skipped: u64,
    clipped: u64,
    /// Training-loss sum and count since the last evaluation.
    loss_sum: f64,
    loss_n: u64,
    units: u64,
    train_seconds: f64,
}

impl RunState {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "step": self.step,
            "curve": self.curve.iter().map(Point::json).collect::<Vec<_>>(),
            "best_step": self.best.map(|b| b.0),
            "best_value": self.best.map(|b| json_f64(b.1)),
            "best_reason": self.best_reason,
            "skipped_steps": self.skipped,
            "clipped_steps": self.clipped,
            "loss_sum": json_f64(self.loss_sum),
            "loss_n": self.loss_n,
            "units": self.units,
            "train_seconds": self.train_seconds,
        })
    }

    fn from_checkpoint(c: &Checkpoint) -> recur::Result<RunState> {
        let r = c.field("run")?;
        let bad = |k: &str| {
            recur::Error::Input(format!(
                "{}: the checkpoint field 'run.{k}' is missing or invalid",
                c.source()
            ))
        };
        let u = |k: &str| r.get(k).and_then(|x| x.as_u64()).ok_or_else(|| bad(k));
        let curve = r
            .get("curve")
            .and_then(|x| x.as_array())
            .ok_or_else(|| bad("curve"))?
            .iter()
            .map(|p| Point::from_json(p).ok_or_else(|| bad("curve")))
            .collect::<recur::Result<Vec<_>>>()?;
        let best = match (
            r.get("best_step").and_then(|x| x.as_u64()),
            r.get("best_value"),
        ) {
            (Some(s), Some(v)) => Some((s, v.as_f64().unwrap_or(f64::NAN))),
            _ => None,
        };
        Ok(RunState {
            step: u("step")?,
            curve,
            best,
            best_reason: r
                .get("best_reason")
                .and_then(|x| x.as_str())
                .unwrap_or_default()
                .to_string(),
            skipped: u("skipped_steps")?,
            clipped: u("clipped_steps")?,
            loss_sum: r.get("loss_sum").and_then(|x| x.as_f64()).unwrap_or(0.0),
            loss_n: u("loss_n")?,
            units: u("units")?,
            train_seconds: r
                .get("train_seconds")
                .and_then(|x| x.as_f64())
                .ok_or_else(|| bad("train_seconds"))?,
        })
    }
}

/// Trains `task` as `o` says, writing into `o.out`; prints the log, and the JSON line with
/// `--json`; returns the JSON summary.
pub fn train(
    task: &mut dyn Task,
    o: &TrainOpts,
    log: &mut Log,
) -> Result<serde_json::Value, Failure> {
    check_values(o)?;
    if let Some(t) = o.threads {
        recur::set_num_threads(t);
    }
    let start = Instant::now();
    let per_epoch = task.steps_per_epoch().max(1);
    let total = match (o.steps, o.epochs) {
        (Some(s), _) => s,
        (None, e) => e.unwrap_or(10) * per_epoch,
    };
    let eval_every = o.eval_every.unwrap_or_else(|| total.div_ceil(10).max(1));
    let checkpoint_every = o.checkpoint_every.unwrap_or(eval_every);
    let n_params: usize = task.parts().iter().map(|p| p.params.len()).sum();

    let schedule = Schedule::parse(&o.lr_schedule, o.lr, total, o.warmup_steps)
        .map_err(|e| format!("--lr-schedule: {e}"))?;
    let opt_config = optimizer_config(o).map_err(|e| format!("--optimizer: {e}"))?;
    let mut opt: Optimizer<f32> =
        Optimizer::new(n_params, opt_config.clone()).map_err(|e| format!("--optimizer: {e}"))?;
    let trajectory = trajectory_json(o, total, task);
    let ckpt_path = o.out.join(CHECKPOINT_FILE);
    std::fs::create_dir_all(&o.out).map_err(|e| {
        format!(
            "--out {}: cannot create the directory: {e}",
            o.out.display()
        )
    })?;

    let mut r = RunState {
        step: 0,
        curve: Vec::new(),
        best: None,
        best_reason: String::new(),
        skipped: 0,
        clipped: 0,
        loss_sum: 0.0,
        loss_n: 0,
        units: 0,
        train_seconds: 0.0,
    };
    if o.resume {
        if !ckpt_path.exists() {
            return Err(format!(
                "--resume: no checkpoint in {} (expected {CHECKPOINT_FILE}); run without --resume to start",
                o.out.display()
            )
            .into());
        }
        let c = Checkpoint::read(&ckpt_path)?;
        let mut diffs = Vec::new();
        differences("", c.field("trajectory")?, &trajectory, &mut diffs);
        if !diffs.is_empty() {
            return Err(format!(
                "--resume: {} was written by a run with other data or options ({}); give the same options, or another --out",
                ckpt_path.display(),
                diffs.join("; ")
            )
            .into());
        }
        r = RunState::from_checkpoint(&c)?;
        for p in task.parts() {
            let v = c.f32(&format!("param.{}", p.name), p.params.len())?;
            p.params.copy_from_slice(&v);
        }
        task.load_state(&c)?;
        load_optimizer(&mut opt, &c, n_params)?;
        if r.step >= total {
            return Err(format!(
                "--resume: the checkpoint is at step {} already, and this run has {total} steps; give a larger --steps",
                r.step
            )
            .into());
        }
        log.line(&format!(
            "resuming from {} at step {} of {total}",
            ckpt_path.display(),
            r.step
        ));
    } else if ckpt_path.exists() {
        return Err(format!(
            "--out {}: it holds the checkpoint of another run; add --resume to continue it, or give another directory",
            o.out.display()
        )
        .into());
    }
    log.line(&format!(
        "training: {total} steps ({:.2} epochs of {per_epoch} steps), {}, lr schedule {}{}, clip_grad_norm {}{}, seed {}; evaluation every {eval_every} steps, checkpoint every {checkpoint_every}",
        total as f64 / per_epoch as f64,
        opt_config.spec(),
        o.lr_schedule,
        if o.warmup_steps > 0 { format!(" after {} warm-up steps", o.warmup_steps) } else { String::new() },
        if o.clip_grad_norm > 0.0 { o.clip_grad_norm.to_string() } else { "off".into() },
        o.clip_grad_value.map(|v| format!(", clip_grad_value {v}")).unwrap_or_default(),
        o.seed
    ));

    let training_json = serde_json::json!({
        "trajectory": trajectory,
        "steps": total,
        "eval_every": eval_every,
    });
    watch_interrupts();
    let units_before = r.units;
    let start_step = r.step;
    log.start_progress(
        recur_plot::Progress::new(total, task.unit())
            .log_every(std::time::Duration::from_secs_f64(o.log_every))
            .start_step(r.step),
    );
    let mut grad_stats = if o.grad_stats {
        let names: Vec<&str> = task.parts().iter().map(|p| p.name).collect();
        let max = (o.clip_grad_norm > 0.0).then_some(o.clip_grad_norm);
        Some(crate::gradients::GradStatsLog::create(
            &o.out, &names, max, o.resume,
        )?)
    } else {
        None
    };
    let mut nonfinite_run = 0u64;
    let mut last_ckpt_step = if o.resume { Some(r.step) } else { None };

    while r.step < total {
        let lr = schedule.lr(r.step);
        opt.set_lr(lr);
        let t0 = Instant::now();
        let stats = task.train_batch()?;
        let mut parts = task.parts();
        if let Some(g) = &mut grad_stats {
            let named: Vec<(String, &[f32])> = parts
                .iter()
                .map(|p| (p.name.to_string(), &*p.grads))
                .collect();
            for w in g.observe(r.step + 1, &named)? {
                log.line(&w);
            }
        }
        let mut bad = (!stats.loss.is_finite()).then(|| format!("loss {}", stats.loss));
        if bad.is_none() {
            if let Some(v) = o.clip_grad_value {
                let mut grads: Vec<&mut [f32]> = parts.iter_mut().map(|p| &mut *p.grads).collect();
                clip_grad_value(&mut grads, v)?;
            }
            let mut grads: Vec<&mut [f32]> = parts.iter_mut().map(|p| &mut *p.grads).collect();
            let max = if o.clip_grad_norm > 0.0 {
                o.clip_grad_norm
            } else {
                f64::INFINITY
            };
            let norm = clip_grad_norm(&mut grads, max) as f64;
            if !norm.is_finite() {
                bad = Some(format!("gradient norm {norm}"));
            } else if norm > max {
                r.clipped += 1;
            }
        }
        if let Some(what) = bad {
            drop(parts);
            task.discard_step();
            r.step += 1;
            nonfinite_run += 1;
            let kept = match last_ckpt_step {
                Some(s) => format!(
                    "the last good checkpoint (step {s}) is {}",
                    ckpt_path.display()
                ),
                None => "no checkpoint was written yet".into(),
            };
            if !o.skip_nonfinite {
                return Err(format!(
                    "non-finite {what} at step {}: stopped; {kept}; the best model so far is in {}. Try a smaller --lr or --clip-grad-norm, or --skip-nonfinite",
                    r.step, o.out.display()
                )
                .into());
            }
            r.skipped += 1;
            log.line(&format!(
                "step {}: non-finite {what}: step skipped ({} so far)",
                r.step, r.skipped
            ));
            if nonfinite_run >= 100 {
                return Err(format!(
                    "{nonfinite_run} non-finite steps in a row up to step {}: stopped; {kept}",
                    r.step
                )
                .into());
            }
            continue;
        }
        nonfinite_run = 0;
        let mut pairs: Vec<(&mut [f32], &[f32])> = parts
            .iter_mut()
            .map(|p| (&mut *p.params, &*p.grads))
            .collect();
        opt.step_parts(&mut pairs);
        drop(pairs);
        drop(parts);
        r.step += 1;
        r.train_seconds += t0.elapsed().as_secs_f64();
        r.loss_sum += stats.loss;
        r.loss_n += 1;
        r.units += stats.units;
        log.progress(r.step, stats.loss, r.units - units_before);

        if r.step.is_multiple_of(eval_every) || r.step == total {
            let metrics = task.evaluate()?;
            let value = metrics.first().map(|m| m.1).unwrap_or(f64::NAN);
            let best_so_far = r
                .best
                .and_then(|(s, _)| r.curve.iter().find(|p| p.step == s))
                .map(|p| (p.step, &p.metrics[..]));
            let improved_why = better(&metrics, best_so_far, task.higher_is_better());
            let improved = improved_why.clone();
            r.curve.push(Point {
                step: r.step,
                epoch: r.step as f64 / per_epoch as f64,
                train_loss: r.loss_sum / r.loss_n.max(1) as f64,
                lr,
                seconds: start.elapsed().as_secs_f64(),
                metrics: metrics.clone(),
            });
            r.loss_sum = 0.0;
            r.loss_n = 0;
            let improved = improved.is_some();
            if let Some(why) = improved_why {
                task.save_model(&o.out, &training_json)?;
                r.best = Some((r.step, value));
                r.best_reason = why;
            }
            log.line(&format!(
                "eval at step {}: {}{}",
                r.step,
                fmt_metrics(&metrics),
                if improved {
                    "  (best so far: saved)"
                } else {
                    ""
                }
            ));
            write_metrics(o, &r, None, &serde_json::Value::Null)?;
            plot_curves(&o.out, &r, task, &o.data_name, log);
        }
        if r.step.is_multiple_of(checkpoint_every) || r.step == total || interrupted() {
            write_checkpoint(&ckpt_path, task, &opt, &r, &trajectory)?;
            last_ckpt_step = Some(r.step);
        }
        if interrupted() {
            log.end_progress();
            write_metrics(o, &r, None, &serde_json::Value::Null)?;
            return Err(Failure {
                message: format!(
                    "interrupted at step {} of {total}: checkpoint saved to {}; run the same command with --resume to continue",
                    r.step,
                    ckpt_path.display()
                ),
                status: 130,
            });
        }
    }

    log.end_progress();
    if let Some(g) = &mut grad_stats {
        log.line(&g.finish()?);
    }
    let (best_step, _) = r.best.ok_or_else(|| {
        format!(
            "no evaluation gave a finite {}; nothing was saved",
            r.curve
                .last()
                .and_then(|p| p.metrics.first())
                .map(|m| m.0.as_str())
                .unwrap_or("metric")
        )
    })?;
    let best = r
        .curve
        .iter()
        .find(|p| p.step == best_step)
        .cloned()
        .expect("best on the curve");
    let last = r.curve.last().cloned().expect("at least one evaluation");
    log.line("");
    // The rates of this run by the wall clock, evaluations and checkpoints included (the
    // progress bar's): steps done since the start (or the resume) over the time since then.
    let wall = start.elapsed().as_secs_f64().max(1e-9);
    log.line(&format!(
        "trained {} steps{} in {} ({:.2} steps/s, {} {}/s){}{}",
        r.step - start_step,
        if start_step > 0 {
            format!(" (resumed at step {start_step})")
        } else {
            String::new()
        },
        duration(wall),
        (r.step - start_step) as f64 / wall,
        si((r.units - units_before) as f64 / wall),
        task.unit(),
        if r.clipped > 0 {
            format!("; gradient norm clipped in {} steps", r.clipped)
        } else {
            String::new()
        },
        if r.skipped > 0 {
            format!("; {} non-finite steps skipped", r.skipped)
        } else {
            String::new()
        },
    ));
    log.line(&format!(
        "final (step {}): {}",
        last.step,
        fmt_metrics(&last.metrics)
    ));
    log.line(&format!(
        "best (step {best_step}, kept in {}): {} ({})",
        o.out.display(),
        fmt_metrics(&best.metrics),
        r.best_reason
    ));
    let extra = task.finish(&o.out, log)?;
    let extra_json: serde_json::Map<String, serde_json::Value> = extra
        .iter()
        .map(|(k, v)| (k.clone(), metric_json(k, *v)))
        .collect();
    let summary = write_metrics(
        o,
        &r,
        Some((&best, &last)),
        &serde_json::Value::Object(extra_json),
    )?;
    let json = serde_json::json!({
        "task": task.name(),
        "model": o.out.display().to_string(),
        "steps": r.step,
        "seconds": start.elapsed().as_secs_f64(),
        "best": summary["best"],
        "final": summary["final"],
        "report": summary["report"],
    });
    if o.json {
        println!("{json}");
    }
    Ok(json)
}

fn write_checkpoint(
    path: &Path,
    task: &mut dyn Task,
    opt: &Optimizer<f32>,
    r: &RunState,
    trajectory: &serde_json::Value,
) -> Result<(), Failure> {
    let mut w = CheckpointWriter::new(serde_json::json!({
        "format": 1,
        "trajectory": trajectory,
        "run": r.json(),
    }));
    for p in task.parts() {
        let n = p.params.len();
        w.f32(format!("param.{}", p.name), &[n], p.params.to_vec());
    }
    task.save_state(&mut w);
    let state = opt.state();
    for (name, v) in &state.buffers {
        w.f32(format!("optimizer.{name}"), &[v.len()], v.clone());
    }
    w.meta_mut()["optimizer"] = serde_json::json!({
        "optimizer": state.optimizer,
        "steps": state.steps,
        "buffers": state.buffers.iter().map(|b| b.0.clone()).collect::<Vec<_>>(),
    });
    w.write(path)?;
    Ok(())
}

fn load_optimizer(opt: &mut Optimizer<f32>, c: &Checkpoint, n: usize) -> recur::Result<()> {
    let meta = c.field("optimizer")?;
    let bad = |m: &str| recur::Error::Input(format!("{}: optimizer state: {m}", c.source()));
    let mut buffers = Vec::new();
    for name in meta["buffers"]
        .as_array()
        .ok_or_else(|| bad("no buffer list"))?
    {
        let name = name
            .as_str()
            .ok_or_else(|| bad("a buffer name is not a string"))?;
        buffers.push((name.to_string(), c.f32(&format!("optimizer.{name}"), n)?));
    }
    let state = OptimizerState {
        optimizer: meta["optimizer"]
            .as_str()
            .ok_or_else(|| bad("no optimizer name"))?
            .to_string(),
        steps: meta["steps"].as_u64().ok_or_else(|| bad("no step count"))?,
        buffers,
    };
    opt.load_state(&state)
        .map_err(|e| recur::Error::Input(format!("{}: {e}", c.source())))
}

/// The optimizer `--optimizer`, `--lr`, `--weight-decay` and `--momentum` describe.
fn optimizer_config(o: &TrainOpts) -> recur::Result<OptimizerConfig> {
    let (name, rest) = o.optimizer.split_once(':').unwrap_or((&o.optimizer, ""));
    // The flags are spelled as options of the spec, so one parser checks them all.
    let mut spec = format!("{name}:lr={}", o.lr);
    if let Some(wd) = o.weight_decay {
        spec += &format!(",weight_decay={wd}");
    }
    if let Some(m) = o.momentum {
        spec += &format!(",momentum={m}");
    }
    if !rest.is_empty() {
        spec += &format!(",{rest}");
    }
    OptimizerConfig::parse(&spec)
}

/// Writes metrics.json: the curve so far, and at the end the best and final points and the
/// task's report. Returns the document.
fn write_metrics(
    o: &TrainOpts,
    r: &RunState,
    end: Option<(&Point, &Point)>,
    report: &serde_json::Value,
) -> Result<serde_json::Value, Failure> {
    let doc = serde_json::json!({
        "steps": r.step,
        "finished": end.is_some(),
        "kept": r.best.map(|(step, _)| serde_json::json!({"step": step, "reason": r.best_reason})),
        "best": end.map(|e| e.0.json()),
        "final": end.map(|e| e.1.json()),
        "report": report,
        "skipped_steps": r.skipped,
        "clipped_steps": r.clipped,
        "train_seconds": r.train_seconds,
        "units_per_second": r.units as f64 / r.train_seconds.max(1e-9),
        "curve": r.curve.iter().map(Point::json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&doc).expect("JSON of the metrics");
    recur::io::state_dict::write_atomic(&o.out.join(METRICS_FILE), text.as_bytes())?;
    Ok(doc)
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
fn plot_curves(dir: &Path, r: &RunState, task: &dyn Task, data: &str, log: &mut Log) {
    use recur_plot::{Chart, Figure, LineChart, Series};
    let curve = |name: &str| -> Vec<(f64, f64)> {
        r.curve
            .iter()
            .filter_map(|p| {
                let v = p.metrics.iter().find(|m| m.0 == name)?.1;
                Some((p.step as f64, v))
            })
            .collect()
    };
    let kept = |series: &[Series]| -> Option<Series> {
        let (step, _) = r.best?;
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
        points: r
            .curve
            .iter()
            .map(|p| (p.step as f64, p.train_loss))
            .collect(),
    }];
    let names: Vec<String> = r
        .curve
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
    let mut charts = vec![(String::from("loss"), task.loss_label().to_string(), loss)];
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
            format!("recur train {}", task.name())
        } else {
            format!("recur train {} on {data}", task.name())
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
        fn train_batch(&mut self) -> recur::Result<StepStats> {
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
        fn finish(&mut self, _dir: &Path, _log: &mut Log) -> recur::Result<Metrics> {
            Ok(vec![])
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

    fn m(v: &[(&str, f64)]) -> Metrics {
        v.iter().map(|(k, x)| (k.to_string(), *x)).collect()
    }

    /// The seq2seq run that kept step 8 (WER 1.0, PER 1.0, loss 4.00) over step 80 (WER 1.0,
    /// PER 0.70, loss 2.84): a tie on the first metric goes to the lower validation loss.
    #[test]
    fn a_tie_on_the_first_metric_goes_to_the_lower_validation_loss() {
        let s8 = m(&[("valid_wer", 1.0), ("valid_per", 1.0), ("valid_loss", 4.0)]);
        let s80 = m(&[("valid_wer", 1.0), ("valid_per", 0.7), ("valid_loss", 2.84)]);
        let why = better(&s80, Some((8, &s8)), false).expect("step 80 is better");
        assert!(why.contains("valid_wer tied with step 8 at 1"), "{why}");
        assert!(why.ends_with("lower valid_loss: 2.8400 against 4"), "{why}");
        // The other way round, and an exact tie of both: the model kept stays.
        assert_eq!(better(&s8, Some((80, &s80)), false), None);
        assert_eq!(better(&s8, Some((8, &s8)), false), None);
        // The first metric still decides when it differs, whatever the loss.
        let acc = |a: f64, l: f64| m(&[("valid_accuracy", a), ("valid_loss", l)]);
        let why = better(&acc(0.9, 9.0), Some((3, &acc(0.8, 1.0))), true).unwrap();
        assert!(why.starts_with("higher valid_accuracy: 0.9000 against 0.8000 at step 3"));
        assert_eq!(
            better(&acc(0.7, 0.1), Some((3, &acc(0.8, 1.0))), true),
            None
        );
        assert_eq!(better(&acc(f64::NAN, 0.1), None, true), None);
        assert!(better(&acc(0.1, 0.1), None, true)
            .unwrap()
            .starts_with("first evaluation"));
    }

    #[test]
    fn counts_are_json_integers() {
        assert_eq!(metric_json("examples", 197.0).to_string(), "197");
        assert_eq!(metric_json("valid_chars", 12.0).to_string(), "12");
        assert_eq!(metric_json("accuracy", 1.0).to_string(), "1.0");
        assert_eq!(metric_json("valid_loss", f64::NAN), serde_json::Value::Null);
    }

    #[test]
    fn differences_name_nested_keys() {
        let a = serde_json::json!({"lr": 0.1, "config": {"hidden": 8, "cell": "lstm"}});
        let b = serde_json::json!({"lr": 0.1, "config": {"hidden": 16, "cell": "lstm"}, "x": 1});
        let mut d = Vec::new();
        differences("", &a, &b, &mut d);
        assert_eq!(
            d,
            [
                "config.hidden: 8 in the checkpoint, 16 now",
                "x: null in the checkpoint, 1 now"
            ]
        );
    }
}
