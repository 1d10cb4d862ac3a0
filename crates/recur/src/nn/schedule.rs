//! Learning-rate schedules with the semantics of `torch.optim.lr_scheduler`.
//!
//! See [`Schedule`] for the semantics and the text syntax.

use super::{parse_f64, parse_u64, split_spec};
use crate::error::{Error, Result};
use std::f64::consts::PI;
use std::fmt;
use std::sync::Mutex;

/// One scheduler of `torch.optim.lr_scheduler`, with PyTorch's parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum LrScheduler {
    /// The base learning rate at every step (as `ConstantLR(factor=1.0, total_iters=0)`).
    Constant,
    /// `StepLR(step_size, gamma)`: multiplied by `gamma` every `step_size` steps.
    Step {
        /// Period of the decay (>= 1).
        step_size: u64,
        /// Factor of the decay.
        gamma: f64,
    },
    /// `MultiStepLR(milestones, gamma)`: multiplied by `gamma` at each milestone (by
    /// `gamma^k` at a milestone listed k times).
    MultiStep {
        /// Steps at which the rate decays.
        milestones: Vec<u64>,
        /// Factor of the decay.
        gamma: f64,
    },
    /// `ExponentialLR(gamma)`: multiplied by `gamma` every step.
    Exponential {
        /// Factor of the decay.
        gamma: f64,
    },
    /// `CosineAnnealingLR(T_max, eta_min)`: half a cosine from the base rate down to
    /// `eta_min` over `t_max` steps (and back up over the next `t_max`, as PyTorch does).
    CosineAnnealing {
        /// Half period (>= 1).
        t_max: u64,
        /// Minimum rate.
        eta_min: f64,
    },
    /// `LinearLR(start_factor, end_factor, total_iters)`: the base rate times a factor going
    /// linearly from `start_factor` to `end_factor` over `total_iters` steps, then constant.
    Linear {
        /// Factor at step 0, in (0, 1].
        start_factor: f64,
        /// Factor from step `total_iters` on, in [0, 1].
        end_factor: f64,
        /// Length of the ramp (>= 1).
        total_iters: u64,
    },
}

fn cfg(msg: String) -> Error {
    Error::Config(format!("lr schedule: {msg}"))
}

fn finite(what: &str, name: &str, v: f64) -> Result<()> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(cfg(format!("{what}: {name} = {v} must be finite")))
    }
}

impl LrScheduler {
    /// The checks of PyTorch's constructors (and sizes PyTorch would divide by, >= 1).
    pub fn validate(&self) -> Result<()> {
        match self {
            LrScheduler::Constant => Ok(()),
            LrScheduler::Step { step_size, gamma } => {
                if *step_size == 0 {
                    return Err(cfg("StepLR: step_size must be >= 1, got 0".into()));
                }
                finite("StepLR", "gamma", *gamma)
            }
            LrScheduler::MultiStep { gamma, .. } => finite("MultiStepLR", "gamma", *gamma),
            LrScheduler::Exponential { gamma } => finite("ExponentialLR", "gamma", *gamma),
            LrScheduler::CosineAnnealing { t_max, eta_min } => {
                if *t_max == 0 {
                    return Err(cfg("CosineAnnealingLR: T_max must be >= 1, got 0".into()));
                }
                finite("CosineAnnealingLR", "eta_min", *eta_min)
            }
            LrScheduler::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => {
                if !(*start_factor > 0.0 && *start_factor <= 1.0) {
                    return Err(cfg(format!(
                        "LinearLR: start_factor = {start_factor} must be in (0, 1]"
                    )));
                }
                if !(0.0..=1.0).contains(end_factor) {
                    return Err(cfg(format!(
                        "LinearLR: end_factor = {end_factor} must be in [0, 1]"
                    )));
                }
                if *total_iters == 0 {
                    return Err(cfg("LinearLR: total_iters must be >= 1, got 0".into()));
                }
                Ok(())
            }
        }
    }

    /// The rate set when the scheduler is made (`last_epoch` 0, `_is_initial`), from the
    /// optimizer's rate `lr`.
    fn initial(&self, lr: f64) -> f64 {
        match self {
            LrScheduler::Constant => lr * 1.0,
            LrScheduler::MultiStep { .. } => self.next(lr, 0),
            LrScheduler::Linear { start_factor, .. } => lr * start_factor,
            LrScheduler::Step { .. }
            | LrScheduler::Exponential { .. }
            | LrScheduler::CosineAnnealing { .. } => lr,
        }
    }

    /// `_get_closed_form_lr()` at `last_epoch` 0: what SequentialLR sets when this scheduler
    /// takes over at its milestone.
    fn closed_form_at_zero(&self, base: f64) -> f64 {
        match self {
            LrScheduler::Constant => base * (1.0 + 1.0 * 0.0),
            LrScheduler::Step { gamma, .. } | LrScheduler::Exponential { gamma } => {
                base * gamma.powf(0.0)
            }
            LrScheduler::MultiStep { milestones, gamma } => {
                let k = milestones.iter().filter(|&&m| m == 0).count();
                base * gamma.powf(k as f64)
            }
            LrScheduler::CosineAnnealing { t_max, eta_min } => {
                eta_min + (base - eta_min) * (1.0 + (PI * 0.0 / *t_max as f64).cos()) / 2.0
            }
            LrScheduler::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => base * (start_factor + (end_factor - start_factor) * 0.0 / *total_iters as f64),
        }
    }

    /// `get_lr()` at `last_epoch = e` (after `e` steps of this scheduler), from the rate `lr`
    /// of step `e - 1`; `base` is the optimizer's initial rate.
    fn next_with_base(&self, lr: f64, e: u64, base: f64) -> f64 {
        match self {
            LrScheduler::CosineAnnealing { t_max, eta_min } => {
                let (t, ei) = (*t_max as i64, e as i64);
                let tf = *t_max as f64;
                if (ei - 1 - t).rem_euclid(2 * t) == 0 {
                    lr + (base - eta_min) * (1.0 - (PI / tf).cos()) / 2.0
                } else {
                    (1.0 + (PI * e as f64 / tf).cos()) / (1.0 + (PI * (ei - 1) as f64 / tf).cos())
                        * (lr - eta_min)
                        + eta_min
                }
            }
            _ => self.next(lr, e),
        }
    }

    /// `get_lr()` of the schedulers whose recursion does not use the base rate.
    fn next(&self, lr: f64, e: u64) -> f64 {
        match self {
            LrScheduler::Constant | LrScheduler::CosineAnnealing { .. } => lr,
            LrScheduler::Step { step_size, gamma } => {
                if e == 0 || !e.is_multiple_of(*step_size) {
                    lr
                } else {
                    lr * gamma
                }
            }
            LrScheduler::MultiStep { milestones, gamma } => {
                let k = milestones.iter().filter(|&&m| m == e).count();
                if k == 0 {
                    lr
                } else {
                    lr * gamma.powf(k as f64)
                }
            }
            LrScheduler::Exponential { gamma } => lr * gamma,
            LrScheduler::Linear {
                start_factor: s,
                end_factor: f,
                total_iters,
            } => {
                if e > *total_iters {
                    lr
                } else {
                    lr * (1.0 + (f - s) / (*total_iters as f64 * s + (e - 1) as f64 * (f - s)))
                }
            }
        }
    }
}

/// The PyTorch constructor, e.g. `CosineAnnealingLR(optimizer, T_max=900, eta_min=0.0001)`.
impl fmt::Display for LrScheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LrScheduler::Constant => write!(f, "ConstantLR(optimizer, factor=1.0, total_iters=0)"),
            LrScheduler::Step { step_size, gamma } => write!(
                f,
                "StepLR(optimizer, step_size={step_size}, gamma={gamma:?})"
            ),
            LrScheduler::MultiStep { milestones, gamma } => write!(
                f,
                "MultiStepLR(optimizer, milestones={milestones:?}, gamma={gamma:?})"
            ),
            LrScheduler::Exponential { gamma } => {
                write!(f, "ExponentialLR(optimizer, gamma={gamma:?})")
            }
            LrScheduler::CosineAnnealing { t_max, eta_min } => write!(
                f,
                "CosineAnnealingLR(optimizer, T_max={t_max}, eta_min={eta_min:?})"
            ),
            LrScheduler::Linear {
                start_factor,
                end_factor,
                total_iters,
            } => write!(
                f,
                "LinearLR(optimizer, start_factor={start_factor:?}, end_factor={end_factor:?}, total_iters={total_iters})"
            ),
        }
    }
}

/// The position [`Schedule::lr`] last reached.
#[derive(Clone, Copy, Debug)]
struct Cursor {
    step: u64,
    lr: f64,
}

/// A learning-rate schedule: one [`LrScheduler`], or several one after the other
/// (`SequentialLR`), from a base rate.
///
/// A [`Schedule`] gives the learning rate of every optimizer step as a pure function of the
/// step: [`Schedule::lr`]`(t)` is the rate PyTorch's scheduler holds after `t` calls of
/// `scheduler.step()` (`scheduler.get_last_lr()`), i.e. the rate the optimizer uses at its
/// step `t` (counted from 0) in the usual loop
///
/// ```text
/// for t in 0..steps { opt.step(); scheduler.step(); }
/// ```
///
/// so a run resumed at step `t` continues with exactly the rates of an uninterrupted one.
///
/// PyTorch computes most schedules recursively (each rate from the previous one, e.g.
/// CosineAnnealingLR multiplies by a ratio of cosines); the closed forms in its documentation
/// differ from those recursions by rounding (measured for cosines over 1000 and 1800 steps: up
/// to 3.7e-15 relative). `Schedule` evaluates PyTorch's recursions with the same operations in
/// f64, so its rates are PyTorch's to the last bit (the fixtures of `tests/fixtures/nn` agree
/// exactly).
/// It remembers the last step it computed, so asking for steps in increasing order costs O(1)
/// each; asking for an earlier step replays from step 0.
///
/// # The specification syntax ([`Schedule::parse`])
///
/// `name[:key=value[,key=value]...]`, with `total_steps` (the length of the run) and
/// `warmup_steps` given alongside:
///
/// | spec | PyTorch |
/// |---|---|
/// | `constant` | no scheduler |
/// | `step:step_size=N[,gamma=G]` | `StepLR(step_size=N, gamma=G)`, gamma 0.1 by default |
/// | `multistep:milestones=A/B/C[,gamma=G]` | `MultiStepLR(milestones=[A, B, C], gamma=G)`, gamma 0.1 by default |
/// | `exponential:gamma=G` (or `exp`) | `ExponentialLR(gamma=G)` |
/// | `cosine[:t_max=N][,eta_min=E]` | `CosineAnnealingLR(T_max=N, eta_min=E)`; `t_max` defaults to the steps after the warm-up, `eta_min` to 0 |
/// | `linear[:start_factor=S][,end_factor=E][,total_iters=N]` | `LinearLR(...)`; defaults 1, 0 and the steps after the warm-up: a linear decay to 0 |
///
/// With `warmup_steps = W > 0` the schedule becomes
/// `SequentialLR([LinearLR(start_factor=1/(W+1), end_factor=1, total_iters=W), main],
/// milestones=[W])`: the rate climbs linearly as `base·(t+1)/(W+1)` for `t < W`, then `main`
/// starts at step W as if from step 0.
///
/// ```
/// use recur::nn::Schedule;
/// // lr 0.1; 1000 steps: 100 of warm-up, then a cosine over the remaining 900 down to 1e-4.
/// let s = Schedule::parse("cosine:eta_min=1e-4", 0.1, 1000, 100).unwrap();
/// assert!((s.lr(0) - 0.1 / 101.0).abs() < 1e-15);
/// assert!((s.lr(100) - 0.1).abs() < 1e-15);
/// assert!((s.lr(1000) - 1e-4).abs() < 1e-15);
/// ```
pub struct Schedule {
    base_lr: f64,
    /// The schedulers, one per phase.
    phases: Vec<LrScheduler>,
    /// The steps at which phase k + 1 takes over from phase k; strictly increasing, >= 1.
    milestones: Vec<u64>,
    cursor: Mutex<Cursor>,
}

impl Clone for Schedule {
    fn clone(&self) -> Schedule {
        Schedule {
            base_lr: self.base_lr,
            phases: self.phases.clone(),
            milestones: self.milestones.clone(),
            cursor: Mutex::new(self.cursor()),
        }
    }
}

impl PartialEq for Schedule {
    fn eq(&self, o: &Schedule) -> bool {
        self.base_lr == o.base_lr && self.phases == o.phases && self.milestones == o.milestones
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Schedule")
            .field("base_lr", &self.base_lr)
            .field("phases", &self.phases)
            .field("milestones", &self.milestones)
            .finish()
    }
}

/// The PyTorch code that makes the same schedule, e.g.
/// `SequentialLR(optimizer, [LinearLR(...), CosineAnnealingLR(...)], milestones=[100])`.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.phases.len() == 1 {
            return write!(f, "{}", self.phases[0]);
        }
        let phases: Vec<String> = self.phases.iter().map(|p| p.to_string()).collect();
        write!(
            f,
            "SequentialLR(optimizer, [{}], milestones={:?})",
            phases.join(", "),
            self.milestones
        )
    }
}

impl Schedule {
    /// One scheduler over an optimizer whose learning rate is `base_lr`.
    pub fn new(base_lr: f64, scheduler: LrScheduler) -> Result<Schedule> {
        Schedule::sequential(base_lr, vec![scheduler], vec![])
    }

    /// The base rate at every step.
    pub fn constant(base_lr: f64) -> Result<Schedule> {
        Schedule::new(base_lr, LrScheduler::Constant)
    }

    /// `SequentialLR(optimizer, phases, milestones)`: `phases[k + 1]` takes over at step
    /// `milestones[k]`, starting as if at its own step 0. Needs one milestone less than
    /// phases, strictly increasing and >= 1.
    pub fn sequential(
        base_lr: f64,
        phases: Vec<LrScheduler>,
        milestones: Vec<u64>,
    ) -> Result<Schedule> {
        if !(base_lr.is_finite() && base_lr >= 0.0) {
            return Err(cfg(format!(
                "the base learning rate {base_lr} must be a finite number >= 0"
            )));
        }
        if phases.is_empty() {
            return Err(cfg("expected at least one scheduler, got none".into()));
        }
        if milestones.len() + 1 != phases.len() {
            return Err(cfg(format!(
                "{} schedulers need {} milestones, got {}",
                phases.len(),
                phases.len() - 1,
                milestones.len()
            )));
        }
        if milestones.first() == Some(&0) || milestones.windows(2).any(|w| w[0] >= w[1]) {
            return Err(cfg(format!(
                "milestones {milestones:?} must be strictly increasing and >= 1"
            )));
        }
        for p in &phases {
            p.validate()?;
        }
        let lr = phases[0].initial(base_lr);
        Ok(Schedule {
            base_lr,
            phases,
            milestones,
            cursor: Mutex::new(Cursor { step: 0, lr }),
        })
    }

    /// A linear warm-up over `warmup_steps` steps, from `base_lr / (warmup_steps + 1)` up to
    /// `base_lr`, then `then` from step `warmup_steps` on (`SequentialLR` of `LinearLR` and
    /// `then`); just `then` if `warmup_steps` is 0.
    pub fn with_warmup(base_lr: f64, warmup_steps: u64, then: LrScheduler) -> Result<Schedule> {
        if warmup_steps == 0 {
            return Schedule::new(base_lr, then);
        }
        let warmup = LrScheduler::Linear {
            start_factor: 1.0 / (warmup_steps as f64 + 1.0),
            end_factor: 1.0,
            total_iters: warmup_steps,
        };
        Schedule::sequential(base_lr, vec![warmup, then], vec![warmup_steps])
    }

    /// Parses a schedule from the text syntax (see [`Schedule`]), e.g.
    /// `cosine`, `cosine:t_max=5000,eta_min=1e-5`, `step:step_size=1000,gamma=0.5`,
    /// `multistep:milestones=3000/6000`, `exp:gamma=0.999`, `linear`, `constant`, for a run
    /// of `total_steps` steps at base rate `base_lr`, with a linear warm-up over the first
    /// `warmup_steps` (0 for none).
    pub fn parse(
        spec: &str,
        base_lr: f64,
        total_steps: u64,
        warmup_steps: u64,
    ) -> Result<Schedule> {
        let (name, opts) = split_spec("lr schedule", spec)?;
        let what = format!("lr schedule '{spec}'");
        if warmup_steps > total_steps {
            return Err(cfg(format!(
                "the warm-up ({warmup_steps} steps) is longer than the run ({total_steps} steps)"
            )));
        }
        let name = name.to_ascii_lowercase();
        let allowed: &[&str] = match name.as_str() {
            "constant" => &[],
            "step" => &["step_size", "gamma"],
            "multistep" => &["milestones", "gamma"],
            "exponential" | "exp" => &["gamma"],
            "cosine" => &["t_max", "eta_min"],
            "linear" => &["start_factor", "end_factor", "total_iters"],
            _ => {
                return Err(cfg(format!(
                    "unknown schedule '{name}' in '{spec}' (expected constant, step, multistep, exponential, cosine or linear)"
                )))
            }
        };
        for (k, _) in &opts {
            if !allowed.contains(k) {
                return Err(cfg(format!(
                    "'{spec}': {name} has no option '{k}' (its options: {})",
                    if allowed.is_empty() {
                        "none".to_string()
                    } else {
                        allowed.join(", ")
                    }
                )));
            }
        }
        let get = |k: &str| opts.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
        let float = |k: &str, default: Option<f64>| -> Result<f64> {
            match get(k) {
                Some(v) => parse_f64(&what, k, v),
                None => default.ok_or_else(|| cfg(format!("'{spec}': {name} needs {k}=..."))),
            }
        };
        let remaining = || -> Result<u64> {
            if total_steps > warmup_steps {
                Ok(total_steps - warmup_steps)
            } else {
                Err(cfg(format!(
                    "'{spec}': the length of {name} defaults to the steps after the warm-up, but there are none (total steps {total_steps}, warm-up steps {warmup_steps})"
                )))
            }
        };
        let int = |k: &str, default: &dyn Fn() -> Result<u64>| -> Result<u64> {
            match get(k) {
                Some(v) => parse_u64(&what, k, v),
                None => default(),
            }
        };
        let required =
            |k: &str| -> Result<u64> { Err(cfg(format!("'{spec}': {name} needs {k}=..."))) };
        let main = match name.as_str() {
            "constant" => LrScheduler::Constant,
            "step" => LrScheduler::Step {
                step_size: int("step_size", &|| required("step_size"))?,
                gamma: float("gamma", Some(0.1))?,
            },
            "multistep" => {
                let Some(list) = get("milestones") else {
                    return Err(cfg(format!("'{spec}': multistep needs milestones=A/B/...")));
                };
                let milestones = list
                    .split('/')
                    .map(|m| parse_u64(&what, "milestones", m.trim()))
                    .collect::<Result<Vec<u64>>>()?;
                LrScheduler::MultiStep {
                    milestones,
                    gamma: float("gamma", Some(0.1))?,
                }
            }
            "exponential" | "exp" => LrScheduler::Exponential {
                gamma: float("gamma", None)?,
            },
            "cosine" => LrScheduler::CosineAnnealing {
                t_max: int("t_max", &remaining)?,
                eta_min: float("eta_min", Some(0.0))?,
            },
            _ => LrScheduler::Linear {
                start_factor: float("start_factor", Some(1.0))?,
                end_factor: float("end_factor", Some(0.0))?,
                total_iters: int("total_iters", &remaining)?,
            },
        };
        // The text syntax is for training runs, where a factor at or below 0 (a rate that
        // vanishes or changes sign) or milestones out of order are mistakes, although
        // PyTorch's constructors accept them.
        if let LrScheduler::Step { gamma, .. }
        | LrScheduler::MultiStep { gamma, .. }
        | LrScheduler::Exponential { gamma } = &main
        {
            if !(gamma.is_finite() && *gamma > 0.0) {
                return Err(cfg(format!(
                    "'{spec}': gamma must be a positive number, got {gamma}"
                )));
            }
        }
        if let LrScheduler::MultiStep { milestones, .. } = &main {
            if let Some(w) = milestones.windows(2).find(|w| w[1] < w[0]) {
                return Err(cfg(format!(
                    "'{spec}': milestones must be in increasing order ({} comes after {})",
                    w[1], w[0]
                )));
            }
        }
        Schedule::with_warmup(base_lr, warmup_steps, main)
    }

    /// The base learning rate (the optimizer's `initial_lr`).
    pub fn base_lr(&self) -> f64 {
        self.base_lr
    }

    /// The schedulers, one per phase.
    pub fn phases(&self) -> &[LrScheduler] {
        &self.phases
    }

    /// The steps at which each phase after the first takes over.
    pub fn milestones(&self) -> &[u64] {
        &self.milestones
    }

    fn cursor(&self) -> Cursor {
        *self.cursor.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The learning rate of optimizer step `step` (from 0): PyTorch's `get_last_lr()` after
    /// `step` calls of `scheduler.step()`.
    pub fn lr(&self, step: u64) -> f64 {
        let mut guard = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let mut c = *guard;
        if c.step > step {
            c = Cursor {
                step: 0,
                lr: self.phases[0].initial(self.base_lr),
            };
        }
        while c.step < step {
            c.step += 1;
            c.lr = self.advance(c.lr, c.step);
        }
        *guard = c;
        c.lr
    }

    /// The learning rates of steps `0..n`.
    pub fn lrs(&self, n: u64) -> Vec<f64> {
        (0..n).map(|t| self.lr(t)).collect()
    }

    /// `SequentialLR.step()` (or the single scheduler's `step()`) arriving at step `e`, from
    /// the rate `lr` of step `e - 1`.
    fn advance(&self, lr: f64, e: u64) -> f64 {
        // bisect_right(milestones, e)
        let idx = self.milestones.partition_point(|&m| m <= e);
        let phase = &self.phases[idx];
        if idx > 0 && self.milestones[idx - 1] == e {
            return phase.closed_form_at_zero(self.base_lr);
        }
        let start = if idx == 0 {
            0
        } else {
            self.milestones[idx - 1]
        };
        phase.next_with_base(lr, e - start, self.base_lr)
    }
}
