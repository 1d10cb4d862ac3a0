//! Training runs: one loop ([`run`]) that trains any [`Task`] as a [`TrainConfig`] says, and
//! the resumable checkpoint of a run ([`checkpoint`]).
//!
//! A task (a language model, a classifier, ...) says how to compute the loss and gradients of
//! its next batch, how to evaluate, and how to save its model; the loop owns everything else:
//! the number of steps, the optimizer and its learning-rate schedule with its warm-up, gradient
//! clipping, non-finite steps, evaluation and the choice of the best model on validation,
//! checkpoints (one file, replaced atomically) and resuming, and `metrics.json`. It prints
//! nothing: what a terminal shows (progress, log lines, evaluations, plots) goes through
//! [`Hooks`], whose methods all do nothing by default, and [`Hooks::should_stop`] is polled
//! after every step (a command line's Ctrl-C).
//!
//! Resuming is exact: the checkpoint holds the parameters, the optimizer's state, the task's
//! data cursor, carried state and random generators, and the loop's own counters, so a run
//! stopped at step k and resumed reaches the same weights, bit for bit, as a run that was not
//! stopped.
//!
//! Data parallelism: [`run_on`] takes a [`Communicator`] (its rank and the number of ranks, an
//! all-reduce and an all-gather); every rank runs the same loop on its own [`Shard`] of each
//! batch, and after the backward pass the loop all-reduces the gradients, each rank's weighted
//! by the targets it saw, so that N ranks take the same steps as one process with the whole
//! batch. Only rank 0 writes files and calls the hooks that report. [`run`] is [`run_on`] with
//! [`Local`], one process.
//!
//! A tiny task, `loss = mean((w - 3)²)`, trained for 20 steps of SGD:
//!
//! ```
//! use recur::train::{run, Metrics, Part, Shard, StepStats, Task, TrainConfig};
//! use recur::train::checkpoint::{Checkpoint, CheckpointWriter};
//! use recur::nn::{OptimizerConfig, SgdConfig};
//! use std::path::Path;
//!
//! struct Fit { w: Vec<f32>, g: Vec<f32> }
//!
//! impl Task for Fit {
//!     fn name(&self) -> &'static str { "fit" }
//!     fn unit(&self) -> &'static str { "value" }
//!     fn steps_per_epoch(&self) -> u64 { 1 }
//!     fn higher_is_better(&self) -> bool { false }
//!     fn config_json(&self) -> serde_json::Value { serde_json::json!({"n": self.w.len()}) }
//!     fn train_batch(&mut self, shard: Shard) -> recur::Result<StepStats> {
//!         shard.require_whole("fit")?;
//!         let n = self.w.len() as f32;
//!         let mut loss = 0.0;
//!         for (g, &w) in self.g.iter_mut().zip(&self.w) {
//!             *g = 2.0 * (w - 3.0) / n;
//!             loss += ((w - 3.0) as f64).powi(2) / n as f64;
//!         }
//!         Ok(StepStats { loss, units: self.w.len() as u64 })
//!     }
//!     fn parts(&mut self) -> Vec<Part<'_>> {
//!         vec![Part { name: "w", params: &mut self.w, grads: &mut self.g }]
//!     }
//!     fn evaluate(&mut self) -> recur::Result<Metrics> {
//!         let mse = self.w.iter().map(|&w| ((w - 3.0) as f64).powi(2)).sum::<f64>();
//!         Ok(vec![("valid_loss".into(), mse / self.w.len() as f64)])
//!     }
//!     fn save_model(&self, dir: &Path, _training: &serde_json::Value) -> recur::Result<()> {
//!         let w: Vec<String> = self.w.iter().map(|w| w.to_string()).collect();
//!         std::fs::write(dir.join("w.txt"), w.join(" "))
//!             .map_err(|e| recur::Error::file(dir.join("w.txt"), "cannot write", e))
//!     }
//!     fn save_state(&self, _w: &mut CheckpointWriter) {}
//!     fn load_state(&mut self, _c: &Checkpoint) -> recur::Result<()> { Ok(()) }
//! }
//!
//! let out = std::env::temp_dir().join(format!("recur-train-doc-{}", std::process::id()));
//! # let _ = std::fs::remove_dir_all(&out);
//! let mut config = TrainConfig::new(&out).steps(20);
//! config.optimizer = OptimizerConfig::Sgd(SgdConfig::default().lr(0.75));
//! config.eval_every = Some(5);
//! let mut task = Fit { w: vec![0.0, 1.0, 5.0], g: vec![0.0; 3] };
//! let summary = run(&mut task, &config, &mut ()).unwrap();
//! assert_eq!(summary.steps, 20);
//! assert!(summary.best.as_ref().unwrap().metrics[0].1 < 1e-6);
//! assert!(out.join("metrics.json").exists() && out.join("checkpoint.safetensors").exists());
//! # std::fs::remove_dir_all(&out).unwrap();
//! ```

pub mod checkpoint;
mod comm;
mod config;
mod hooks;
mod report;
mod runner;

pub use comm::{Communicator, GradBuffer, GradReady, Local};
pub use config::{Length, NonFinite, TrainConfig};
pub use hooks::{Evaluation, Finished, Hooks, Start};
pub use report::{fmt_metrics, fmt_value, json_f64, metric_json};
pub use runner::{run, run_on, Point, Summary, CHECKPOINT_FILE, METRICS_FILE};

use crate::error::{Error, Result};
use checkpoint::{Checkpoint, CheckpointWriter};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// What one training step did (on one rank: its shard of the batch).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepStats {
    /// The mean loss of the batch (of the shard).
    pub loss: f64,
    /// Targets in the batch or shard (characters, tokens, sequences): the weight of its mean
    /// loss and gradient in the reduction over ranks, and the rates.
    pub units: u64,
}

/// A named set of metrics, in order. The first is the one that picks the best model.
pub type Metrics = Vec<(String, f64)>;

/// One parameter buffer and its gradient.
pub struct Part<'a> {
    /// The name of the buffer in checkpoints (`param.<name>`) and gradient statistics.
    pub name: &'static str,
    /// The parameters.
    pub params: &'a mut [f32],
    /// Their gradients, as long as `params`.
    pub grads: &'a mut [f32],
}

/// A parameter buffer kept in f64 (for example the expRNN's recurrent parameters, whose
/// matrix exponential is computed in f64), and the fraction of the learning rate it learns at.
///
/// Why a second kind of part instead of a generic [`Part`]: the loop keeps one optimizer for
/// all the f32 parts (the state its checkpoints hold, unchanged for the tasks that have only
/// those) and one per f64 part, each at `lr_scale` times the scheduled rate; clipping by the
/// global norm takes all of them together, so an f64 part is clipped exactly as if it were
/// one more buffer of the model. Converting such a buffer to f32 would change the model.
pub struct Part64<'a> {
    /// The name of the buffer in checkpoints (`param.<name>`).
    pub name: &'static str,
    /// The parameters.
    pub params: &'a mut [f64],
    /// Their gradients, as long as `params`.
    pub grads: &'a mut [f64],
    /// This buffer's learning rate is the schedule's times this.
    pub lr_scale: f64,
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

/// Which part of every batch a rank computes: rank `rank` of `ranks`.
///
/// Every rank walks the same sequence of global batches (same data cursor, same generators,
/// so the task's state is the same on every rank and rank 0's checkpoint resumes them all)
/// and computes the loss and gradients of its own rows only ([`Shard::range`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This rank, `0..ranks`.
    pub rank: usize,
    /// The number of ranks (1: one process computes whole batches).
    pub ranks: usize,
}

impl Shard {
    /// The whole batch: rank 0 of 1.
    pub const WHOLE: Shard = Shard { rank: 0, ranks: 1 };

    /// The rows of a global batch of `batch` rows that this rank computes: the batch split
    /// evenly, the first `batch % ranks` ranks taking one row more. Ranks past the end of a
    /// small batch get an empty range.
    ///
    /// ```
    /// use recur::train::Shard;
    /// let s = |rank| Shard { rank, ranks: 3 }.range(8);
    /// assert_eq!((s(0), s(1), s(2)), (0..3, 3..6, 6..8));
    /// assert_eq!(Shard::WHOLE.range(8), 0..8);
    /// ```
    pub fn range(&self, batch: usize) -> Range<usize> {
        let ranks = self.ranks.max(1);
        let (base, extra) = (batch / ranks, batch % ranks);
        let start = self.rank * base + self.rank.min(extra);
        let len = base + usize::from(self.rank < extra);
        start.min(batch)..(start + len).min(batch)
    }

    /// Whether this is the whole batch (one rank).
    pub fn is_whole(&self) -> bool {
        self.ranks <= 1
    }

    /// An error for a task (`name`) that computes whole batches only, when there are several
    /// ranks.
    pub fn require_whole(&self, name: &str) -> Result<()> {
        if self.is_whole() {
            Ok(())
        } else {
            Err(Error::Config(format!(
                "the {name} task computes whole batches only: it cannot train on {} ranks",
                self.ranks
            )))
        }
    }
}

/// A model trained by [`run`].
pub trait Task {
    /// The task's name (e.g. `lm`).
    fn name(&self) -> &'static str;
    /// What the units of [`StepStats::units`] are, e.g. "char".
    fn unit(&self) -> &'static str;
    /// What the training loss is, for the axis of plots.
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
    /// Zeroes the gradients, then computes the mean loss and the gradients of this rank's
    /// shard of the next training batch (and moves to the batch after it). A task that
    /// computes whole batches only returns an error for more than one rank
    /// ([`Shard::require_whole`]).
    fn train_batch(&mut self, shard: Shard) -> Result<StepStats>;
    /// [`Task::train_batch`], telling `ready` during the backward pass which parts' gradients
    /// are final ([`GradReady::parts_final`]: the head's, then the recurrent stack's, ...),
    /// so that with several ranks their all-reduce overlaps the rest of the backward pass.
    /// The default is [`Task::train_batch`], announcing nothing: the loop sends every part
    /// after the step.
    fn train_batch_announcing(
        &mut self,
        shard: Shard,
        ready: &mut dyn GradReady,
    ) -> Result<StepStats> {
        let _ = ready;
        self.train_batch(shard)
    }
    /// Called when the loop skips the step just computed (non-finite loss or gradient).
    fn discard_step(&mut self) {}
    /// The parameters and gradients, in a fixed order.
    fn parts(&mut self) -> Vec<Part<'_>>;
    /// The parameters kept in f64, in a fixed order (none by default). They are clipped with
    /// the f32 parts by one global norm, each has its own optimizer (the run's, at the part's
    /// [`Part64::lr_scale`]), and checkpoints hold them; [`Hooks::gradients`] sees only the
    /// f32 parts.
    fn parts_f64(&mut self) -> Vec<Part64<'_>> {
        Vec::new()
    }
    /// Polled after every evaluation: `true` ends the run there, as finished (the best model
    /// saved, metrics.json written, [`Summary::solved_at`] set), before its last step. A task
    /// with a goal (a loss under a mark) stops once it reaches it. With several ranks every
    /// rank must give the same answer (it follows from evaluations that are the same on
    /// every rank).
    fn solved(&self) -> bool {
        false
    }
    /// Metrics on the validation data.
    fn evaluate(&mut self) -> Result<Metrics>;
    /// Writes the model (weights, config.json with `training` in it, vocabulary) into `dir`.
    fn save_model(&self, dir: &Path, training: &serde_json::Value) -> Result<()>;
    /// Adds the task's state besides the parameters (which the loop saves from
    /// [`Task::parts`]): data cursor, carried state, generators.
    fn save_state(&self, w: &mut CheckpointWriter);
    /// Restores what [`Task::save_state`] wrote.
    fn load_state(&mut self, c: &Checkpoint) -> Result<()>;
    /// With several ranks, called on every rank before rank 0 writes a checkpoint: a task
    /// whose state besides the parameters is split over the ranks (the carried state of the
    /// streams each rank computes) gathers it here, so that rank 0's [`Task::save_state`]
    /// saves the whole of it.
    fn gather_state(&mut self, comm: &dyn Communicator) -> Result<()> {
        let _ = comm;
        Ok(())
    }
    /// After training: reports on the best model saved in `dir` (test metrics, samples), with
    /// lines for the log ([`Hooks::line`]) and metrics for metrics.json's `report`.
    fn finish(&mut self, dir: &Path, log: &mut dyn Hooks) -> Result<Metrics> {
        let _ = (dir, log);
        Ok(Vec::new())
    }
}

/// Why a training run could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Resuming, but the directory has no checkpoint.
    #[error("no checkpoint in {} (expected {CHECKPOINT_FILE})", dir.display())]
    NoCheckpoint {
        /// The output directory.
        dir: PathBuf,
    },
    /// Not resuming, but the directory holds the checkpoint of a run.
    #[error("{} holds the checkpoint of another run", dir.display())]
    CheckpointExists {
        /// The output directory.
        dir: PathBuf,
    },
    /// The checkpoint was written by a run with other data or options.
    #[error("{} was written by a run with other data or options ({})", path.display(), differences.join("; "))]
    OtherRun {
        /// The checkpoint.
        path: PathBuf,
        /// `key: a in the checkpoint, b now`, for every option that differs.
        differences: Vec<String>,
    },
    /// The checkpoint is at the end of the run already.
    #[error("the checkpoint is at step {step} already, and this run has {total} steps")]
    Done {
        /// The checkpoint's step.
        step: u64,
        /// The steps of the run.
        total: u64,
    },
    /// A non-finite loss or gradient norm, without [`NonFinite::Skip`].
    #[error("non-finite {what} at step {step}: stopped; {}; the best model so far is in {}", kept(last_checkpoint), out.display())]
    NonFinite {
        /// `loss NaN`, `gradient norm inf`, ...
        what: String,
        /// The step that was not taken.
        step: u64,
        /// The step and path of the last checkpoint written, if any.
        last_checkpoint: Option<(u64, PathBuf)>,
        /// The output directory.
        out: PathBuf,
    },
    /// Too many non-finite steps in a row with [`NonFinite::Skip`].
    #[error(
        "{count} non-finite steps in a row up to step {step}: stopped; {}",
        kept(last_checkpoint)
    )]
    TooManyNonFinite {
        /// The steps in a row.
        count: u64,
        /// The last of them.
        step: u64,
        /// The step and path of the last checkpoint written, if any.
        last_checkpoint: Option<(u64, PathBuf)>,
    },
    /// No evaluation gave a finite value of the first metric: no model was kept.
    #[error("no evaluation gave a finite {metric}; nothing was saved")]
    NoFiniteMetric {
        /// The first metric's name.
        metric: String,
    },
    /// The ranks were started with different configurations.
    #[error("rank {rank} was started with other data or options than rank 0 ({})", differences.join("; "))]
    RanksDiffer {
        /// The first rank that differs.
        rank: usize,
        /// `key: a on rank 0, b on rank r`, for every option that differs.
        differences: Vec<String>,
    },
}

fn kept(last: &Option<(u64, PathBuf)>) -> String {
    match last {
        Some((s, p)) => format!("the last good checkpoint (step {s}) is {}", p.display()),
        None => "no checkpoint was written yet".into(),
    }
}
