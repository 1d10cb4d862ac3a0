//! What a terminal (or any caller) sees of a run.

use super::{Metrics, Point};
use crate::error::Result;
use std::path::Path;

/// The run about to start (after a resume, at its step).
pub struct Start<'a> {
    /// The task's name.
    pub task: &'a str,
    /// What the task's units are (e.g. `char`).
    pub unit: &'a str,
    /// What the training loss is (for plots).
    pub loss_label: &'a str,
    /// The names of the parameter parts, in order.
    pub parts: &'a [&'static str],
    /// The steps of the run.
    pub total_steps: u64,
    /// The step the run starts at (0, or the checkpoint's).
    pub start_step: u64,
    /// Steps per epoch.
    pub steps_per_epoch: u64,
    /// Steps between evaluations.
    pub eval_every: u64,
    /// Steps between checkpoints.
    pub checkpoint_every: u64,
    /// Whether the run continues a checkpoint.
    pub resumed: bool,
}

/// One evaluation.
pub struct Evaluation<'a> {
    /// The point just added to the curve.
    pub point: &'a Point,
    /// Whether this model is the best so far (and was saved).
    pub improved: bool,
    /// Every evaluation so far, this one last.
    pub curve: &'a [Point],
    /// The step of the model kept so far.
    pub kept: Option<u64>,
    /// The output directory.
    pub out: &'a Path,
}

/// The training steps are done (before the task's final report).
pub struct Finished<'a> {
    /// The steps done (the run's last step).
    pub steps: u64,
    /// The step this process started at.
    pub start_step: u64,
    /// Wall-clock seconds since this process started the run, evaluations and checkpoints
    /// included.
    pub seconds: f64,
    /// Units trained since this process started the run.
    pub units: u64,
    /// Steps whose gradient norm was clipped (the whole run).
    pub clipped_steps: u64,
    /// Non-finite steps skipped (the whole run).
    pub skipped_steps: u64,
    /// The model kept, if an evaluation gave a finite first metric.
    pub best: Option<&'a Point>,
    /// Why it was kept.
    pub reason: &'a str,
    /// The last evaluation.
    pub last: Option<&'a Point>,
    /// The output directory.
    pub out: &'a Path,
}

/// What [`crate::train::run`] reports while it runs. Every method does nothing by default;
/// `()` is the hooks that do nothing. With several ranks only rank 0's hooks are called,
/// except [`Hooks::should_stop`], which every rank polls (a stop on any rank stops all).
pub trait Hooks {
    /// Before the first step.
    fn start(&mut self, start: &Start<'_>) -> Result<()> {
        let _ = start;
        Ok(())
    }
    /// A line for the log (resuming, the run's settings, a skipped step, the task's report).
    fn line(&mut self, line: &str) {
        let _ = line;
    }
    /// The gradients of step `step` (from 1), after the reduction over ranks and before
    /// clipping: `(part name, gradient)`.
    fn gradients(&mut self, step: u64, grads: &[(&str, &[f32])]) -> Result<()> {
        let _ = (step, grads);
        Ok(())
    }
    /// The global gradient norm of step `step` (from 1), f32 and f64 parts together, before
    /// clipping (after the reduction over ranks); called for every step whose loss is
    /// finite, also when the norm is not.
    fn grad_norm(&mut self, step: u64, norm: f64) {
        let _ = (step, norm);
    }
    /// After every step taken: the step (from 1), its loss, and the units trained since this
    /// process started the run.
    fn step(&mut self, step: u64, loss: f64, units: u64) {
        let _ = (step, loss, units);
    }
    /// After every evaluation (and after metrics.json was written).
    fn evaluation(&mut self, e: &Evaluation<'_>) {
        let _ = e;
    }
    /// After a checkpoint was written.
    fn checkpoint(&mut self, step: u64, path: &Path) {
        let _ = (step, path);
    }
    /// Polled after every step: `true` writes a checkpoint and ends the run (unfinished).
    fn should_stop(&mut self) -> bool {
        false
    }
    /// After the last step, before the task's final report ([`crate::train::Task::finish`]).
    fn finished(&mut self, f: &Finished<'_>) -> Result<()> {
        let _ = f;
        Ok(())
    }
    /// The task's final report (the metrics of `metrics.json`'s `report`).
    fn report(&mut self, report: &Metrics) {
        let _ = report;
    }
}

impl Hooks for () {}
