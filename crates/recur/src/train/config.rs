//! The configuration of a training run.

use crate::error::{Error, Result};
use crate::nn::{AdamConfig, OptimizerConfig, Schedule};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// How long a run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Length {
    /// This many training steps (batches).
    Steps(u64),
    /// This many passes over the training data ([`crate::train::Task::steps_per_epoch`]
    /// steps each).
    Epochs(u64),
}

/// What a step with a non-finite loss or gradient norm does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NonFinite {
    /// Stop the run with an error naming the last good checkpoint.
    Stop,
    /// Skip the step (no update) and count it; stop after `max_in_a_row` such steps in a row.
    Skip {
        /// The most non-finite steps in a row before the run stops.
        max_in_a_row: u64,
    },
}

/// Everything [`crate::train::run`] needs besides the task: the run's length, the optimizer
/// and its schedule, clipping, evaluation and checkpoints. Serializable (JSON: every field
/// optional, with the defaults of [`TrainConfig::new`]).
///
/// ```
/// use recur::train::{Length, TrainConfig};
/// let c: TrainConfig = serde_json::from_str(
///     r#"{"out": "model", "length": {"steps": 500}, "optimizer": {"name": "sgd", "lr": 0.1}}"#,
/// ).unwrap();
/// assert_eq!(c.length, Length::Steps(500));
/// assert_eq!(c.optimizer.lr(), 0.1);
/// assert_eq!(c.clip_grad_norm, 5.0);
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The directory the run writes: the best model on validation, `metrics.json`,
    /// `checkpoint.safetensors`.
    pub out: PathBuf,
    /// Steps or epochs (default 10 epochs).
    pub length: Length,
    /// Evaluate every N steps, and at the end (default: 10 evaluations per run).
    pub eval_every: Option<u64>,
    /// Write a checkpoint every N steps (default: at every evaluation), and always at the end
    /// and when stopped.
    pub checkpoint_every: Option<u64>,
    /// Continue the run whose checkpoint is in `out` (same task and options; the run may be
    /// longer).
    pub resume: bool,
    /// Write checkpoints (default true). Without them the run cannot be resumed, and `out`
    /// may hold the checkpoint of an earlier run (which is left as it is).
    pub checkpoints: bool,
    /// The seed the task used (recorded with the options a resumed run must keep).
    pub seed: u64,
    /// The optimizer and its hyper-parameters; its learning rate is the schedule's base
    /// (default: Adam with PyTorch's defaults, lr 2e-3).
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule, stepped once per training step, as
    /// [`Schedule::parse`] reads it: `constant` (default), `cosine` (to 0 at the last step),
    /// `linear`, `exp:gamma=G`, `step:step_size=N,gamma=G`, `multistep:milestones=A/B,gamma=G`,
    /// `cosine:t_max=N,eta_min=X`.
    pub lr_schedule: String,
    /// Steps of linear warm-up before the schedule.
    pub warmup_steps: u64,
    /// Clip the global gradient norm to this value (0: no clipping; default 5).
    pub clip_grad_norm: f64,
    /// Clip every gradient value to [-V, V], before the norm.
    pub clip_grad_value: Option<f64>,
    /// What a non-finite loss or gradient does (default: stop).
    pub non_finite: NonFinite,
    /// Threads of the matrix products (0: all cores; `None`: leave the setting as it is).
    pub threads: Option<usize>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            out: PathBuf::new(),
            length: Length::Epochs(10),
            eval_every: None,
            checkpoint_every: None,
            resume: false,
            checkpoints: true,
            seed: 0,
            optimizer: OptimizerConfig::Adam(AdamConfig::default().lr(2e-3)),
            lr_schedule: "constant".into(),
            warmup_steps: 0,
            clip_grad_norm: 5.0,
            clip_grad_value: None,
            non_finite: NonFinite::Stop,
            threads: None,
        }
    }
}

impl TrainConfig {
    /// The defaults, writing into `out`.
    pub fn new(out: impl AsRef<Path>) -> TrainConfig {
        TrainConfig {
            out: out.as_ref().to_path_buf(),
            ..TrainConfig::default()
        }
    }

    /// Sets the length to `steps` steps.
    pub fn steps(mut self, steps: u64) -> TrainConfig {
        self.length = Length::Steps(steps);
        self
    }

    /// Sets the length to `epochs` epochs.
    pub fn epochs(mut self, epochs: u64) -> TrainConfig {
        self.length = Length::Epochs(epochs);
        self
    }

    /// The run's steps, for a task of `steps_per_epoch` steps per epoch.
    pub fn total_steps(&self, steps_per_epoch: u64) -> u64 {
        match self.length {
            Length::Steps(s) => s,
            Length::Epochs(e) => e.saturating_mul(steps_per_epoch.max(1)),
        }
    }

    /// The steps between evaluations, for a run of `total` steps.
    pub fn eval_interval(&self, total: u64) -> u64 {
        self.eval_every.unwrap_or_else(|| total.div_ceil(10).max(1))
    }

    /// The learning-rate schedule of a run of `total` steps.
    pub fn schedule(&self, total: u64) -> Result<Schedule> {
        Schedule::parse(
            &self.lr_schedule,
            self.optimizer.lr(),
            total,
            self.warmup_steps,
        )
        .map_err(|e| Error::Config(format!("lr_schedule: {e}")))
    }

    /// Checks every value: counts at least 1, a positive learning rate, clipping thresholds,
    /// the optimizer's hyper-parameters and the schedule (with the run's length when it is
    /// given in steps).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.out.as_os_str().is_empty() {
            return bad("out: no output directory given".into());
        }
        match self.length {
            Length::Steps(0) => return bad("steps must be at least 1".into()),
            Length::Epochs(0) => return bad("epochs must be at least 1".into()),
            _ => {}
        }
        for (name, v) in [
            ("eval_every", self.eval_every),
            ("checkpoint_every", self.checkpoint_every),
        ] {
            if v == Some(0) {
                return bad(format!("{name} must be at least 1"));
            }
        }
        let lr = self.optimizer.lr();
        if !(lr.is_finite() && lr > 0.0) {
            return bad(format!("lr must be a positive number, got {lr}"));
        }
        self.optimizer.validate()?;
        if !(self.clip_grad_norm.is_finite() && self.clip_grad_norm >= 0.0) {
            return bad(format!(
                "clip_grad_norm must be a number >= 0 (0: no clipping), got {}",
                self.clip_grad_norm
            ));
        }
        if let Some(v) = self.clip_grad_value {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!(
                    "clip_grad_value must be a positive number, got {v}"
                ));
            }
        }
        if self.resume && !self.checkpoints {
            return bad("resume needs checkpoints".into());
        }
        if let NonFinite::Skip { max_in_a_row: 0 } = self.non_finite {
            return bad("non_finite: max_in_a_row must be at least 1".into());
        }
        let steps = match self.length {
            Length::Steps(s) => s,
            Length::Epochs(_) => u64::MAX,
        };
        self.schedule(steps)?;
        Ok(())
    }
}
