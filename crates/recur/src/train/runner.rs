//! The training loop.

use super::checkpoint::{Checkpoint, CheckpointWriter};
use super::report::{fmt_value, json_f64, metric_json};
use super::{
    Communicator, Evaluation, Finished, Hooks, Local, Metrics, NonFinite, Shard, Start, Task,
    TrainConfig, TrainError,
};
use crate::error::{Error, Result};
use crate::io::state_dict::write_atomic;
use crate::nn::{clip_grad_norm, clip_grad_value, Optimizer, OptimizerState};
use std::path::Path;
use std::time::Instant;

/// The checkpoint file in the output directory.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The metrics file in the output directory.
pub const METRICS_FILE: &str = "metrics.json";

/// One evaluation: where, and what it measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The step (from 1) after which the model was evaluated.
    pub step: u64,
    /// The step in epochs.
    pub epoch: f64,
    /// The mean training loss since the evaluation before.
    pub train_loss: f64,
    /// The learning rate of the step.
    pub lr: f64,
    /// Seconds since this process started the run.
    pub seconds: f64,
    /// The task's metrics; the first picks the best model.
    pub metrics: Metrics,
}

impl Point {
    /// The point as a JSON object (`step`, `epoch`, `train_loss`, `lr`, `seconds` and the
    /// metrics).
    pub fn json(&self) -> serde_json::Value {
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

/// What a run did.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The step the run reached.
    pub steps: u64,
    /// The run's length in steps.
    pub total_steps: u64,
    /// The step this process started at (0, or the checkpoint's).
    pub start_step: u64,
    /// Whether the run reached its last step (`false`: stopped by [`Hooks::should_stop`],
    /// with a checkpoint written to resume from).
    pub finished: bool,
    /// The evaluation whose model was kept (saved in the output directory).
    pub best: Option<Point>,
    /// Why it was kept (e.g. `lower valid_loss: 1.2 against 1.3 at step 40`).
    pub reason: String,
    /// The last evaluation.
    pub last: Option<Point>,
    /// Every evaluation.
    pub curve: Vec<Point>,
    /// The task's final report ([`Task::finish`]).
    pub report: Metrics,
    /// Non-finite steps skipped.
    pub skipped_steps: u64,
    /// Steps whose gradient norm was clipped.
    pub clipped_steps: u64,
    /// Wall-clock seconds of this process's part of the run.
    pub seconds: f64,
    /// The step at which [`Task::solved`] ended the run before its last step (None: it ran
    /// to the end, or was stopped).
    pub solved_at: Option<u64>,
    /// The document written to metrics.json (null on ranks other than 0, which write none).
    pub metrics: serde_json::Value,
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
fn trajectory_json(c: &TrainConfig, total: u64, task: &dyn Task) -> serde_json::Value {
    serde_json::json!({
        "task": task.name(),
        "config": task.config_json(),
        "seed": c.seed,
        "optimizer": c.optimizer.spec(),
        "lr": c.optimizer.lr(),
        "lr_schedule": c.lr_schedule,
        "warmup_steps": c.warmup_steps,
        // A schedule that depends on the run's length must keep it.
        "schedule_steps": if c.lr_schedule == "constant" { serde_json::Value::Null } else { total.into() },
        "clip_grad_norm": c.clip_grad_norm,
        "clip_grad_value": c.clip_grad_value,
    })
}

/// The keys whose values differ between two JSON objects, as `key: a in the checkpoint, b
/// now` (nested keys joined with dots).
fn differences(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    differences_as(prefix, a, b, ("in the checkpoint", "now"), out)
}

/// [`differences`] with the words that say where each value comes from.
fn differences_as(
    prefix: &str,
    a: &serde_json::Value,
    b: &serde_json::Value,
    whence: (&str, &str),
    out: &mut Vec<String>,
) {
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
                differences_as(
                    &name,
                    x.get(k).unwrap_or(&null),
                    y.get(k).unwrap_or(&null),
                    whence,
                    out,
                );
            }
        }
        _ if a != b => out.push(format!("{prefix}: {a} {}, {b} {}", whence.0, whence.1)),
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
    /// The step at which [`Task::solved`] ended the run.
    solved_at: Option<u64>,
}

impl RunState {
    fn new() -> RunState {
        RunState {
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
            solved_at: None,
        }
    }

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
            "solved_at": self.solved_at,
        })
    }

    fn from_checkpoint(c: &Checkpoint) -> Result<RunState> {
        let r = c.field("run")?;
        let bad = |k: &str| {
            Error::Input(format!(
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
            .collect::<Result<Vec<_>>>()?;
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
            solved_at: r.get("solved_at").and_then(|x| x.as_u64()),
        })
    }

    fn point(&self, step: u64) -> Option<&Point> {
        self.curve.iter().find(|p| p.step == step)
    }
}

/// Writes metrics.json: the curve so far, and at the end the best and final points and the
/// task's report. Returns the document.
fn write_metrics(
    out: &Path,
    r: &RunState,
    end: Option<(&Point, &Point)>,
    report: &serde_json::Value,
) -> Result<serde_json::Value> {
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
        "solved_at": r.solved_at,
        "units_per_second": r.units as f64 / r.train_seconds.max(1e-9),
        "curve": r.curve.iter().map(Point::json).collect::<Vec<_>>(),
    });
    let text = serde_json::to_string_pretty(&doc).expect("JSON of the metrics");
    write_atomic(&out.join(METRICS_FILE), text.as_bytes())?;
    Ok(doc)
}

fn write_checkpoint(
    path: &Path,
    task: &mut dyn Task,
    opt: &Optimizer<f32>,
    opts64: &[Optimizer<f64>],
    r: &RunState,
    trajectory: &serde_json::Value,
) -> Result<()> {
    let mut w = CheckpointWriter::new(serde_json::json!({
        "format": 1,
        "trajectory": trajectory,
        "run": r.json(),
    }));
    for p in task.parts() {
        let n = p.params.len();
        w.f32(format!("param.{}", p.name), &[n], p.params.to_vec());
    }
    let mut wide = Vec::new();
    for (p, o) in task.parts_f64().iter().zip(opts64) {
        let n = p.params.len();
        w.f64(format!("param.{}", p.name), &[n], p.params.to_vec());
        let state = o.state();
        for (name, v) in &state.buffers {
            w.f64(format!("optimizer.{}.{name}", p.name), &[n], v.clone());
        }
        wide.push(serde_json::json!({
            "part": p.name,
            "optimizer": state.optimizer,
            "steps": state.steps,
            "buffers": state.buffers.iter().map(|b| b.0.clone()).collect::<Vec<_>>(),
        }));
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
    if !wide.is_empty() {
        w.meta_mut()["optimizer_f64"] = serde_json::Value::Array(wide);
    }
    w.write(path)
}

fn load_optimizer(opt: &mut Optimizer<f32>, c: &Checkpoint, n: usize) -> Result<()> {
    let meta = c.field("optimizer")?;
    let bad = |m: &str| Error::Input(format!("{}: optimizer state: {m}", c.source()));
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
        .map_err(|e| Error::Input(format!("{}: {e}", c.source())))
}

/// Restores the f64 parts and their optimizers from a checkpoint.
fn load_f64(task: &mut dyn Task, opts64: &mut [Optimizer<f64>], c: &Checkpoint) -> Result<()> {
    let bad = |m: String| Error::Input(format!("{}: optimizer state: {m}", c.source()));
    let metas = c.meta().get("optimizer_f64").and_then(|v| v.as_array());
    for (k, (p, o)) in task.parts_f64().into_iter().zip(opts64).enumerate() {
        let n = p.params.len();
        let v = c.f64(&format!("param.{}", p.name), n)?;
        p.params.copy_from_slice(&v);
        let meta = metas
            .and_then(|m| m.get(k))
            .filter(|m| m["part"] == p.name)
            .ok_or_else(|| bad(format!("no optimizer state for the f64 part '{}'", p.name)))?;
        let mut buffers = Vec::new();
        for name in meta["buffers"].as_array().into_iter().flatten() {
            let name = name
                .as_str()
                .ok_or_else(|| bad("a buffer name is not a string".into()))?;
            buffers.push((
                name.to_string(),
                c.f64(&format!("optimizer.{}.{name}", p.name), n)?,
            ));
        }
        let state = OptimizerState {
            optimizer: meta["optimizer"]
                .as_str()
                .ok_or_else(|| bad("no optimizer name".into()))?
                .to_string(),
            steps: meta["steps"]
                .as_u64()
                .ok_or_else(|| bad("no step count".into()))?,
            buffers,
        };
        o.load_state(&state)
            .map_err(|e| Error::Input(format!("{}: {e}", c.source())))?;
    }
    Ok(())
}

/// `clip_grad_norm` over the f32 and the f64 parts together: the norm of all of them (squares
/// summed in f64, the f32 parts first), every gradient scaled by `min(1, max_norm / (norm +
/// 1e-6))`; returns the norm before clipping.
fn clip_mixed(task: &mut dyn Task, max_norm: f64) -> f64 {
    let s32: f64 = task
        .parts()
        .iter()
        .flat_map(|p| p.grads.iter())
        .map(|&g| (g as f64) * (g as f64))
        .sum();
    let s64: f64 = task
        .parts_f64()
        .iter()
        .flat_map(|p| p.grads.iter())
        .map(|&g| g * g)
        .sum();
    let total = (s32 + s64).sqrt();
    let coef = if total.is_nan() {
        f64::NAN
    } else {
        (max_norm / (total + 1e-6)).min(1.0)
    };
    for p in task.parts() {
        for g in p.grads.iter_mut() {
            *g *= coef as f32;
        }
    }
    for p in task.parts_f64() {
        for g in p.grads.iter_mut() {
            *g *= coef;
        }
    }
    total
}

/// Trains `task` as `config` says in this process ([`run_on`] with [`Local`]).
pub fn run(task: &mut dyn Task, config: &TrainConfig, hooks: &mut dyn Hooks) -> Result<Summary> {
    run_on(task, config, hooks, &Local)
}

/// Trains `task` as `config` says, as rank `comm.rank()` of `comm.size()`: every rank calls
/// this with its own task (and the same configuration); gradients are all-reduced after
/// every backward pass; only rank 0 writes files (the best model, checkpoints,
/// `metrics.json`) and calls the hooks that report. Returns what the run did; a run stopped
/// by [`Hooks::should_stop`] (on any rank) returns with [`Summary::finished`] false after
/// writing a checkpoint.
///
/// Every rank evaluates the same model (its parameters are the same everywhere) and keeps the
/// same curve. A resumed run reads rank 0's checkpoint on every rank, so the output
/// directory must be one that all ranks see; the tasks' state in it is rank 0's, which is
/// every rank's as long as all ranks walk the same global batches ([`Shard`]).
pub fn run_on(
    task: &mut dyn Task,
    config: &TrainConfig,
    hooks: &mut dyn Hooks,
    comm: &dyn Communicator,
) -> Result<Summary> {
    let c = config;
    c.validate()?;
    if let Some(t) = c.threads {
        crate::set_num_threads(t);
    }
    let (rank, ranks) = (comm.rank(), comm.size().max(1));
    let lead = rank == 0;
    let shard = Shard { rank, ranks };
    let start = Instant::now();
    let per_epoch = task.steps_per_epoch().max(1);
    let total = c.total_steps(per_epoch);
    let eval_every = c.eval_interval(total);
    let checkpoint_every = c.checkpoint_every.unwrap_or(eval_every);
    let names: Vec<&'static str> = task.parts().iter().map(|p| p.name).collect();
    let n_params: usize = task.parts().iter().map(|p| p.params.len()).sum();

    let schedule = c.schedule(total)?;
    let mut opt: Optimizer<f32> = Optimizer::new(n_params, c.optimizer.clone())?;
    // The f64 parts: one optimizer each, at its fraction of the learning rate.
    let wide: Vec<(usize, f64)> = task
        .parts_f64()
        .iter()
        .map(|p| (p.params.len(), p.lr_scale))
        .collect();
    let mut opts64 = wide
        .iter()
        .map(|&(n, _)| Optimizer::<f64>::new(n, c.optimizer.clone()))
        .collect::<Result<Vec<_>>>()?;
    let trajectory = trajectory_json(c, total, task);
    if ranks > 1 {
        // Everything that must be the same on every rank: what shapes the steps, and when
        // the ranks meet (evaluations, checkpoints) or read the checkpoint.
        let mine = serde_json::json!({
            "trajectory": trajectory,
            "steps": total,
            "parameters": n_params,
            "parameters_f64": wide.iter().map(|w| w.0).sum::<usize>(),
            "eval_every": eval_every,
            "checkpoint_every": checkpoint_every,
            "resume": c.resume,
        });
        let all = comm.all_gather(&serde_json::to_vec(&mine).expect("JSON of the trajectory"))?;
        if let Some(r) = all.iter().position(|b| *b != all[0]) {
            let json = |b: &[u8]| serde_json::from_slice(b).unwrap_or(serde_json::Value::Null);
            let mut diffs = Vec::new();
            let theirs = format!("on rank {r}");
            differences_as(
                "",
                &json(&all[0]),
                &json(&all[r]),
                ("on rank 0", &theirs),
                &mut diffs,
            );
            return Err(TrainError::RanksDiffer {
                rank: r,
                differences: diffs,
            }
            .into());
        }
    }
    let out = c.out.as_path();
    let ckpt_path = out.join(CHECKPOINT_FILE);
    if lead {
        std::fs::create_dir_all(out)
            .map_err(|e| Error::file(out, "cannot create the directory", e))?;
    }

    let mut r = RunState::new();
    if c.resume {
        if !ckpt_path.exists() {
            return Err(TrainError::NoCheckpoint {
                dir: out.to_path_buf(),
            }
            .into());
        }
        let ck = Checkpoint::read(&ckpt_path)?;
        let mut diffs = Vec::new();
        differences("", ck.field("trajectory")?, &trajectory, &mut diffs);
        if !diffs.is_empty() {
            return Err(TrainError::OtherRun {
                path: ckpt_path,
                differences: diffs,
            }
            .into());
        }
        r = RunState::from_checkpoint(&ck)?;
        for p in task.parts() {
            let v = ck.f32(&format!("param.{}", p.name), p.params.len())?;
            p.params.copy_from_slice(&v);
        }
        task.load_state(&ck)?;
        load_optimizer(&mut opt, &ck, n_params)?;
        load_f64(task, &mut opts64, &ck)?;
        if r.step >= total {
            return Err(TrainError::Done {
                step: r.step,
                total,
            }
            .into());
        }
        if lead {
            hooks.line(&format!(
                "resuming from {} at step {} of {total}",
                ckpt_path.display(),
                r.step
            ));
        }
    } else if lead && c.checkpoints && ckpt_path.exists() {
        return Err(TrainError::CheckpointExists {
            dir: out.to_path_buf(),
        }
        .into());
    }
    if lead {
        hooks.line(&format!(
            "training: {total} steps ({:.2} epochs of {per_epoch} steps), {}, lr schedule {}{}, clip_grad_norm {}{}, seed {}; evaluation every {eval_every} steps, checkpoint every {checkpoint_every}",
            total as f64 / per_epoch as f64,
            c.optimizer.spec(),
            c.lr_schedule,
            if c.warmup_steps > 0 { format!(" after {} warm-up steps", c.warmup_steps) } else { String::new() },
            if c.clip_grad_norm > 0.0 { c.clip_grad_norm.to_string() } else { "off".into() },
            c.clip_grad_value.map(|v| format!(", clip_grad_value {v}")).unwrap_or_default(),
            c.seed
        ));
    }

    let training_json = serde_json::json!({
        "trajectory": trajectory,
        "steps": total,
        "eval_every": eval_every,
    });
    let units_before = r.units;
    let start_step = r.step;
    if lead {
        hooks.start(&Start {
            task: task.name(),
            unit: task.unit(),
            loss_label: task.loss_label(),
            parts: &names,
            total_steps: total,
            start_step,
            steps_per_epoch: per_epoch,
            eval_every,
            checkpoint_every,
            resumed: c.resume,
        })?;
    }
    let mut grad_buf = super::GradBuffer::new(task.parts().iter().map(|p| p.grads.len()));
    let mut nonfinite_run = 0u64;
    let mut last_ckpt = c.resume.then(|| (r.step, ckpt_path.clone()));
    let max_norm = if c.clip_grad_norm > 0.0 {
        c.clip_grad_norm
    } else {
        f64::INFINITY
    };

    while r.step < total {
        let lr = schedule.lr(r.step);
        opt.set_lr(lr);
        for (o, &(_, scale)) in opts64.iter_mut().zip(&wide) {
            o.set_lr(lr * scale);
        }
        let t0 = Instant::now();
        let (stats, mut stop) = if ranks > 1 {
            let asked = hooks.should_stop();
            super::comm::step_on(comm, task, shard, &mut grad_buf, asked)?
        } else {
            (task.train_batch(shard)?, false)
        };
        if lead {
            let parts = task.parts();
            let named: Vec<(&str, &[f32])> = parts.iter().map(|p| (p.name, &*p.grads)).collect();
            hooks.gradients(r.step + 1, &named)?;
        }
        let mut bad = (!stats.loss.is_finite()).then(|| format!("loss {}", stats.loss));
        if bad.is_none() {
            if let Some(v) = c.clip_grad_value {
                let mut parts = task.parts();
                let mut grads: Vec<&mut [f32]> = parts.iter_mut().map(|p| &mut *p.grads).collect();
                clip_grad_value(&mut grads, v)?;
                drop(parts);
                let mut parts = task.parts_f64();
                let mut grads: Vec<&mut [f64]> = parts.iter_mut().map(|p| &mut *p.grads).collect();
                clip_grad_value(&mut grads, v)?;
            }
            let norm = if wide.is_empty() {
                let mut parts = task.parts();
                let mut grads: Vec<&mut [f32]> = parts.iter_mut().map(|p| &mut *p.grads).collect();
                clip_grad_norm(&mut grads, max_norm) as f64
            } else {
                clip_mixed(task, max_norm)
            };
            if lead {
                hooks.grad_norm(r.step + 1, norm);
            }
            if !norm.is_finite() {
                bad = Some(format!("gradient norm {norm}"));
            } else if norm > max_norm {
                r.clipped += 1;
            }
        }
        if let Some(what) = bad {
            task.discard_step();
            r.step += 1;
            nonfinite_run += 1;
            let NonFinite::Skip { max_in_a_row } = c.non_finite else {
                return Err(TrainError::NonFinite {
                    what,
                    step: r.step,
                    last_checkpoint: last_ckpt,
                    out: out.to_path_buf(),
                }
                .into());
            };
            r.skipped += 1;
            if lead {
                hooks.line(&format!(
                    "step {}: non-finite {what}: step skipped ({} so far)",
                    r.step, r.skipped
                ));
            }
            if nonfinite_run >= max_in_a_row {
                return Err(TrainError::TooManyNonFinite {
                    count: nonfinite_run,
                    step: r.step,
                    last_checkpoint: last_ckpt,
                }
                .into());
            }
            continue;
        }
        nonfinite_run = 0;
        let mut parts = task.parts();
        let mut pairs: Vec<(&mut [f32], &[f32])> = parts
            .iter_mut()
            .map(|p| (&mut *p.params, &*p.grads))
            .collect();
        opt.step_parts(&mut pairs);
        drop(pairs);
        drop(parts);
        for (p, o) in task.parts_f64().into_iter().zip(opts64.iter_mut()) {
            o.step(p.params, p.grads);
        }
        r.step += 1;
        r.train_seconds += t0.elapsed().as_secs_f64();
        r.loss_sum += stats.loss;
        r.loss_n += 1;
        r.units += stats.units;
        if lead {
            hooks.step(r.step, stats.loss, r.units - units_before);
        }

        if r.step.is_multiple_of(eval_every) || r.step == total {
            let metrics = task.evaluate()?;
            let value = metrics.first().map(|m| m.1).unwrap_or(f64::NAN);
            let best_so_far = r
                .best
                .and_then(|(s, _)| r.point(s))
                .map(|p| (p.step, &p.metrics[..]));
            let why = better(&metrics, best_so_far, task.higher_is_better());
            r.curve.push(Point {
                step: r.step,
                epoch: r.step as f64 / per_epoch as f64,
                train_loss: r.loss_sum / r.loss_n.max(1) as f64,
                lr,
                seconds: start.elapsed().as_secs_f64(),
                metrics,
            });
            r.loss_sum = 0.0;
            r.loss_n = 0;
            let improved = why.is_some();
            if task.solved() && r.step < total {
                r.solved_at = Some(r.step);
            }
            if let Some(why) = why {
                if lead {
                    task.save_model(out, &training_json)?;
                }
                r.best = Some((r.step, value));
                r.best_reason = why;
            }
            if lead {
                write_metrics(out, &r, None, &serde_json::Value::Null)?;
                hooks.evaluation(&Evaluation {
                    point: r.curve.last().expect("just pushed"),
                    improved,
                    curve: &r.curve,
                    kept: r.best.map(|b| b.0),
                    out,
                });
            }
        }
        if ranks == 1 {
            stop = stop || hooks.should_stop();
        }
        let due = r.step.is_multiple_of(checkpoint_every)
            || r.step == total
            || stop
            || r.solved_at.is_some();
        if c.checkpoints && due {
            if ranks > 1 {
                task.gather_state(comm)?;
            }
            if lead {
                write_checkpoint(&ckpt_path, task, &opt, &opts64, &r, &trajectory)?;
                hooks.checkpoint(r.step, &ckpt_path);
            }
            last_ckpt = Some((r.step, ckpt_path.clone()));
        }
        if stop {
            let metrics = if lead {
                write_metrics(out, &r, None, &serde_json::Value::Null)?
            } else {
                serde_json::Value::Null
            };
            return Ok(Summary {
                steps: r.step,
                total_steps: total,
                start_step,
                finished: false,
                best: r.best.and_then(|(s, _)| r.point(s)).cloned(),
                reason: r.best_reason.clone(),
                last: r.curve.last().cloned(),
                curve: r.curve,
                report: Vec::new(),
                skipped_steps: r.skipped,
                clipped_steps: r.clipped,
                seconds: start.elapsed().as_secs_f64(),
                metrics,
                solved_at: None,
            });
        }
        if r.solved_at.is_some() {
            break;
        }
    }

    let best = r.best.and_then(|(s, _)| r.point(s)).cloned();
    let last = r.curve.last().cloned();
    if lead {
        hooks.finished(&Finished {
            steps: r.step,
            start_step,
            seconds: start.elapsed().as_secs_f64(),
            units: r.units - units_before,
            clipped_steps: r.clipped,
            skipped_steps: r.skipped,
            best: best.as_ref(),
            reason: &r.best_reason,
            last: last.as_ref(),
            out,
        })?;
    }
    let (Some(best), Some(last)) = (best, last) else {
        return Err(TrainError::NoFiniteMetric {
            metric: r
                .curve
                .last()
                .and_then(|p| p.metrics.first())
                .map(|m| m.0.clone())
                .unwrap_or_else(|| "metric".into()),
        }
        .into());
    };
    // The report reads the best model rank 0 saved: rank 0's alone.
    let report = if lead {
        task.finish(out, hooks)?
    } else {
        Vec::new()
    };
    let metrics = if lead {
        hooks.report(&report);
        let report_json: serde_json::Map<String, serde_json::Value> = report
            .iter()
            .map(|(k, v)| (k.clone(), metric_json(k, *v)))
            .collect();
        write_metrics(
            out,
            &r,
            Some((&best, &last)),
            &serde_json::Value::Object(report_json),
        )?
    } else {
        serde_json::Value::Null
    };
    Ok(Summary {
        steps: r.step,
        total_steps: total,
        start_step,
        finished: true,
        best: Some(best),
        reason: r.best_reason,
        last: Some(last),
        curve: r.curve,
        report,
        skipped_steps: r.skipped,
        clipped_steps: r.clipped,
        seconds: start.elapsed().as_secs_f64(),
        metrics,
        solved_at: r.solved_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
