//! Optimizers over flat parameter buffers, with the update formulas of `torch.optim`.
//!
//! One [`Optimizer`] holds what every optimizer has (the learning rate, the step count, the
//! state buffers, the layout of the parts) and applies an [`UpdateRule`]: [`SgdConfig`],
//! [`AdamConfig`], [`AdamWConfig`], [`RmsPropConfig`] and [`AdagradConfig`] are the rules of
//! `torch.optim.SGD`, `Adam`, `AdamW`, `RMSprop` and `Adagrad` ([`Sgd`], [`Adam`], ... name the
//! optimizer with each), and [`OptimizerConfig`] is any of them, chosen at run time.
//!
//! Every optimizer keeps its state (moments, momentum buffers, sums) in flat buffers with the
//! parameters' layout. A model made of several modules can pass its buffers as parts
//! (`step_parts`): the state covers the parts back to back, in the order given, which must be
//! the same at every step.
//!
//! The arithmetic follows PyTorch's single-tensor implementation (`foreach=False`, what
//! `torch.optim` uses for CPU tensors) operation by operation: the scalars PyTorch computes as
//! Python floats (bias corrections, `1 - β`, `lr · weight_decay`, Adagrad's decayed lr) are
//! computed in f64 and rounded to `T` once; the element-wise operations run in `T` in
//! PyTorch's order (`addcmul` is `a + (s·b)·c`, `addcdiv` is `a + (s·b)/c`, `lerp` uses
//! PyTorch's two-sided formula). In f64 the results agree with PyTorch to the last bits
//! (PyTorch's vectorised kernels fuse some multiply-adds, which can move the last bit).
//!
//! [`Optimizer::state`] exports the state as named buffers with PyTorch's state names
//! (`exp_avg`, `exp_avg_sq`, `momentum_buffer`, ...) and the step count;
//! [`Optimizer::load_state`] imports it into a fresh optimizer, so that a run can be resumed
//! with bit-identical results.

use super::{parse_bool, parse_f64, split_spec};
use crate::error::{Error, Result};
use crate::io::state_dict::{write_tensors, OutTensor, TensorFile};
use recur_kernels::Real;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// Checks that the parts cover exactly `n` values and that each part's parameters and
/// gradients have the same length.
fn check_parts<T>(what: &str, parts: &[(&mut [T], &[T])], n: usize) {
    let mut total = 0;
    for (k, (p, g)) in parts.iter().enumerate() {
        assert_eq!(
            p.len(),
            g.len(),
            "{what}.step: part {k} has {} parameters but {} gradients",
            p.len(),
            g.len()
        );
        total += p.len();
    }
    assert_eq!(
        total, n,
        "{what}.step: the optimizer was made for {n} parameters, got {total}"
    );
}

/// `torch.lerp(a, b, w)` with PyTorch's two-sided formula: `a + w·(b - a)` for `|w| < 0.5`,
/// otherwise `b - (b - a)·(1 - w)`.
#[inline]
fn lerp<T: Real>(a: T, b: T, w: T) -> T {
    if w.abs() < T::from_f64(0.5) {
        a + w * (b - a)
    } else {
        b - (b - a) * (T::ONE - w)
    }
}

/// `torch.maximum(a, b)`: NaN if either is NaN.
#[inline]
fn maximum<T: Real>(a: T, b: T) -> T {
    if a.partial_cmp(&b).is_none() {
        T::from_f64(f64::NAN)
    } else if b > a {
        b
    } else {
        a
    }
}

// ---------------------------------------------------------------------------------------------
// Exported state

/// The state of an optimizer, for exact resume: the step count and named flat buffers, each
/// covering all the parameters (n values) in the order of the parts.
///
/// Buffer names are PyTorch's per-parameter state names: `momentum_buffer` (SGD, RMSprop),
/// `exp_avg`, `exp_avg_sq`, `max_exp_avg_sq` (Adam, AdamW), `square_avg`, `grad_avg`
/// (RMSprop), `sum` (Adagrad).
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizerState<T> {
    /// The `torch.optim` class name: `SGD`, `Adam`, `AdamW`, `RMSprop` or `Adagrad`.
    pub optimizer: String,
    /// The number of steps taken.
    pub steps: u64,
    /// `(name, values)`, each (n), sorted by name.
    pub buffers: Vec<(String, Vec<T>)>,
}

impl<T: Real> OptimizerState<T> {
    /// The buffer `name`, if present.
    pub fn buffer(&self, name: &str) -> Option<&[T]> {
        self.buffers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| &v[..])
    }

    /// Writes the state to a safetensors file (atomically): one 1-D tensor per buffer (in `T`),
    /// `step` as an I64 tensor of shape (1,), and the optimizer's name in the metadata under
    /// `optimizer`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let step = [self.steps as i64];
        let data: Vec<(String, Vec<f64>)> = self
            .buffers
            .iter()
            .map(|(k, v)| (k.clone(), v.iter().map(|x| x.to_f64()).collect()))
            .collect();
        let narrow: Vec<Vec<f32>> = data
            .iter()
            .map(|(_, v)| v.iter().map(|&x| x as f32).collect())
            .collect();
        let mut tensors = vec![("step".to_string(), vec![1], OutTensor::I64(&step))];
        for ((name, wide), narrow) in data.iter().zip(&narrow) {
            let t = if T::DTYPE == "F64" {
                OutTensor::F64(wide)
            } else {
                OutTensor::F32(narrow)
            };
            tensors.push((name.clone(), vec![wide.len()], t));
        }
        write_tensors(path, &tensors, &[("optimizer", &self.optimizer)])
    }

    /// Reads a state written by [`OptimizerState::save`]; an error naming the file if it is
    /// not one.
    pub fn load(path: impl AsRef<Path>) -> Result<OptimizerState<T>> {
        let path = path.as_ref();
        let file = TensorFile::read(path)?;
        let optimizer = file.metadata().get("optimizer").cloned().ok_or_else(|| {
            Error::Weights(format!(
                "{}: no 'optimizer' in the metadata; not an optimizer state",
                path.display()
            ))
        })?;
        let step = file.lengths("step")?;
        if step.len() != 1 {
            return Err(Error::Weights(format!(
                "{}: tensor 'step' must hold 1 value, got {}",
                path.display(),
                step.len()
            )));
        }
        let mut buffers = Vec::new();
        for name in file.names().filter(|n| *n != "step") {
            let t = file.float::<T>(name)?;
            if t.shape().len() != 1 {
                return Err(Error::Weights(format!(
                    "{}: buffer '{name}' must be 1-D, got shape {}",
                    path.display(),
                    crate::error::fmt_shape(t.shape())
                )));
            }
            buffers.push((name.to_string(), t.into_data()));
        }
        buffers.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(OptimizerState {
            optimizer,
            steps: step[0] as u64,
            buffers,
        })
    }

    /// Checks that the state is one of `optimizer` for `n` parameters holding exactly the
    /// buffers `expected`.
    fn check(&self, optimizer: &str, n: usize, expected: &[&str]) -> Result<()> {
        if self.optimizer != optimizer {
            return Err(Error::Input(format!(
                "optimizer state: saved by {}, loading into {optimizer}",
                self.optimizer
            )));
        }
        for (k, (name, v)) in self.buffers.iter().enumerate() {
            if !expected.contains(&name.as_str()) {
                return Err(Error::Input(format!(
                    "optimizer state of {optimizer}: unexpected buffer '{name}' (expected {} after {} steps)",
                    list_or_none(expected),
                    self.steps
                )));
            }
            if self.buffers[..k].iter().any(|(seen, _)| seen == name) {
                return Err(Error::Input(format!(
                    "optimizer state of {optimizer}: buffer '{name}' is given twice"
                )));
            }
            if v.len() != n {
                return Err(Error::Input(format!(
                    "optimizer state of {optimizer}: buffer '{name}' has {} values, expected {n} (one per parameter)",
                    v.len()
                )));
            }
        }
        for name in expected {
            if self.buffer(name).is_none() {
                return Err(Error::Input(format!(
                    "optimizer state of {optimizer}: missing buffer '{name}' (expected {} after {} steps)",
                    list_or_none(expected),
                    self.steps
                )));
            }
        }
        Ok(())
    }

    /// The buffer `name`, copied (present after [`OptimizerState::check`]).
    fn take(&self, name: &str) -> Vec<T> {
        self.buffer(name).expect("checked").to_vec()
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "no buffers".into()
    } else {
        names
            .iter()
            .map(|n| format!("'{n}'"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A Python boolean.
fn py_bool(b: bool) -> &'static str {
    if b {
        "True"
    } else {
        "False"
    }
}

fn config_err(opt: &str, msg: String) -> Error {
    Error::Config(format!("{opt}: {msg}"))
}

fn check_non_negative(opt: &str, name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(config_err(
            opt,
            format!("{name} = {v} must be a finite number >= 0"),
        ))
    }
}

fn check_betas(opt: &str, (b1, b2): (f64, f64)) -> Result<()> {
    for (k, b) in [b1, b2].into_iter().enumerate() {
        if !(0.0..1.0).contains(&b) {
            return Err(config_err(
                opt,
                format!("betas[{k}] = {b} must be in [0, 1)"),
            ));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// SGD

/// The hyper-parameters of [`Sgd`], with PyTorch's names and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Dampening for momentum (default 0).
    pub dampening: f64,
    /// L2 penalty, added to the gradient as `weight_decay · param` (default 0).
    pub weight_decay: f64,
    /// Nesterov momentum (default false).
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            lr: 1e-3,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        }
    }
}

impl SgdConfig {
    /// Sets `lr`.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Sets `momentum`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Sets `dampening`.
    pub fn dampening(mut self, dampening: f64) -> Self {
        self.dampening = dampening;
        self
    }
    /// Sets `weight_decay`.
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
    /// Sets `nesterov`.
    pub fn nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }
    /// The checks of `torch.optim.SGD`: lr, momentum and weight_decay >= 0; Nesterov needs
    /// momentum > 0 and zero dampening.
    pub fn validate(&self) -> Result<()> {
        check_non_negative("SGD", "lr", self.lr)?;
        check_non_negative("SGD", "momentum", self.momentum)?;
        check_non_negative("SGD", "weight_decay", self.weight_decay)?;
        if !self.dampening.is_finite() {
            return Err(config_err(
                "SGD",
                format!("dampening = {} must be finite", self.dampening),
            ));
        }
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(config_err(
                "SGD",
                format!(
                    "Nesterov momentum requires momentum > 0 and dampening = 0, got momentum = {} and dampening = {}",
                    self.momentum, self.dampening
                ),
            ));
        }
        Ok(())
    }
}

/// `torch.optim.SGD` (maximize=False), for every element:
///
/// ```text
/// g   = grad + weight_decay · p                  (if weight_decay ≠ 0)
/// buf = g                                        (first step, if momentum ≠ 0)
/// buf = momentum · buf + (1 - dampening) · g     (later steps)
/// g   = g + momentum · buf  (nesterov)  or  buf  (otherwise)
/// p   = p - lr · g
/// ```
pub type Sgd<T = f32> = Optimizer<T, SgdConfig>;

impl<T: Real> UpdateRule<T> for SgdConfig {
    fn name(&self) -> &'static str {
        "sgd"
    }
    fn torch_name(&self) -> &'static str {
        "SGD"
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn validate(&self) -> Result<()> {
        SgdConfig::validate(self)
    }
    /// `momentum_buffer` once a step with momentum has run.
    fn buffers(&self, steps: u64) -> Vec<(&'static str, f64)> {
        if self.momentum != 0.0 && steps > 0 {
            vec![("momentum_buffer", 0.0)]
        } else {
            Vec::new()
        }
    }
    fn options(&self) -> String {
        format!(
            "lr={:?},momentum={:?},dampening={:?},weight_decay={:?},nesterov={}",
            self.lr, self.momentum, self.dampening, self.weight_decay, self.nesterov
        )
    }
    fn torch_args(&self) -> String {
        format!(
            "lr={:?}, momentum={:?}, dampening={:?}, weight_decay={:?}, nesterov={}",
            self.lr,
            self.momentum,
            self.dampening,
            self.weight_decay,
            py_bool(self.nesterov)
        )
    }
    fn update(&self, h: &StepInfo, params: &mut [T], grads: &[T], state: &mut [&mut [T]]) {
        let neg_lr = T::from_f64(-h.lr);
        let wd = (self.weight_decay != 0.0).then(|| T::from_f64(self.weight_decay));
        let mom = T::from_f64(self.momentum);
        let keep = T::from_f64(1.0 - self.dampening);
        let first = h.step == 1;
        let mut buf = state.first_mut();
        for (k, (p, &g)) in params.iter_mut().zip(grads.iter()).enumerate() {
            let mut g = match wd {
                Some(wd) => g + wd * *p,
                None => g,
            };
            if let Some(buf) = buf.as_mut() {
                let b = &mut buf[k];
                *b = if first { g } else { *b * mom + keep * g };
                g = if self.nesterov { g + mom * *b } else { *b };
            }
            // param.add_(grad, alpha=-lr)
            *p += neg_lr * g;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Adam and AdamW

/// The hyper-parameters of [`Adam`], with PyTorch's names and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moment estimates (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty, added to the gradient as `weight_decay · param` (default 0; this is Adam's
    /// coupled weight decay, not AdamW's).
    pub weight_decay: f64,
    /// Use the maximum of the second moments so far in the denominator (AMSGrad; default
    /// false).
    pub amsgrad: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
            amsgrad: false,
        }
    }
}

/// The hyper-parameters of [`AdamW`], with PyTorch's names and defaults (those of Adam, but
/// weight_decay 1e-2, decoupled from the gradient).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// Learning rate (default 1e-3).
    pub lr: f64,
    /// Decay rates of the first and second moment estimates (default (0.9, 0.999)).
    pub betas: (f64, f64),
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// Decoupled weight decay: every step multiplies the parameters by `1 - lr · weight_decay`
    /// (default 1e-2).
    pub weight_decay: f64,
    /// AMSGrad (default false).
    pub amsgrad: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 1e-2,
            amsgrad: false,
        }
    }
}

macro_rules! adam_builders {
    ($cfg:ident, $name:literal) => {
        impl $cfg {
            /// Sets `lr`.
            pub fn lr(mut self, lr: f64) -> Self {
                self.lr = lr;
                self
            }
            /// Sets `betas`.
            pub fn betas(mut self, beta1: f64, beta2: f64) -> Self {
                self.betas = (beta1, beta2);
                self
            }
            /// Sets `eps`.
            pub fn eps(mut self, eps: f64) -> Self {
                self.eps = eps;
                self
            }
            /// Sets `weight_decay`.
            pub fn weight_decay(mut self, wd: f64) -> Self {
                self.weight_decay = wd;
                self
            }
            /// Sets `amsgrad`.
            pub fn amsgrad(mut self, amsgrad: bool) -> Self {
                self.amsgrad = amsgrad;
                self
            }
            #[doc = concat!("The checks of `torch.optim.", $name, "`: lr, eps and weight_decay >= 0, betas in [0, 1).")]
            pub fn validate(&self) -> Result<()> {
                check_non_negative($name, "lr", self.lr)?;
                check_non_negative($name, "eps", self.eps)?;
                check_non_negative($name, "weight_decay", self.weight_decay)?;
                check_betas($name, self.betas)
            }
        }
    };
}
adam_builders!(AdamConfig, "Adam");
adam_builders!(AdamWConfig, "AdamW");

/// The hyper-parameters of one Adam(W) step.
struct AdamStep {
    betas: (f64, f64),
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
    amsgrad: bool,
}

impl AdamStep {
    fn buffers(&self) -> Vec<(&'static str, f64)> {
        let mut b = vec![("exp_avg", 0.0), ("exp_avg_sq", 0.0)];
        if self.amsgrad {
            b.push(("max_exp_avg_sq", 0.0));
        }
        b
    }

    /// PyTorch's `_single_tensor_adam` over one part; `state` holds exp_avg, exp_avg_sq and,
    /// with AMSGrad, max_exp_avg_sq.
    fn update<T: Real>(&self, h: &StepInfo, params: &mut [T], grads: &[T], state: &mut [&mut [T]]) {
        let (b1, b2) = self.betas;
        let t = h.step as f64;
        let bias_correction1 = 1.0 - b1.powf(t);
        let bias_correction2 = 1.0 - b2.powf(t);
        let step_size = h.lr / bias_correction1;
        // bias_correction2 ** 0.5, a Python float power
        let bc2_sqrt = T::from_f64(bias_correction2.powf(0.5));
        let neg_step_size = T::from_f64(-step_size);
        let w1 = T::from_f64(1.0 - b1);
        let b2t = T::from_f64(b2);
        let w2 = T::from_f64(1.0 - b2);
        let eps = T::from_f64(self.eps);
        let (decay, l2) = match (self.weight_decay != 0.0, self.decoupled) {
            (false, _) => (None, None),
            (true, true) => (Some(T::from_f64(1.0 - h.lr * self.weight_decay)), None),
            (true, false) => (None, Some(T::from_f64(self.weight_decay))),
        };
        let [m, v, rest @ ..] = state else {
            panic!("Adam: the state holds exp_avg and exp_avg_sq");
        };
        let mut vmax = rest.first_mut();
        for (k, (((p, &g), m), v)) in params
            .iter_mut()
            .zip(grads.iter())
            .zip(m.iter_mut())
            .zip(v.iter_mut())
            .enumerate()
        {
            // param.mul_(1 - lr · weight_decay)  (AdamW)
            if let Some(d) = decay {
                *p *= d;
            }
            // grad = grad.add(param, alpha=weight_decay)  (Adam)
            let g = match l2 {
                Some(wd) => g + wd * *p,
                None => g,
            };
            // exp_avg.lerp_(grad, 1 - β1)
            *m = lerp(*m, g, w1);
            // exp_avg_sq.mul_(β2).addcmul_(grad, grad, value=1 - β2)
            *v = *v * b2t + w2 * g * g;
            // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps), or with
            // max_exp_avg_sq = maximum(max_exp_avg_sq, exp_avg_sq) for AMSGrad
            let second = match vmax.as_mut() {
                Some(vm) => {
                    vm[k] = maximum(vm[k], *v);
                    vm[k]
                }
                None => *v,
            };
            let denom = second.sqrt() / bc2_sqrt + eps;
            // param.addcdiv_(exp_avg, denom, value=-step_size)
            *p += neg_step_size * *m / denom;
        }
    }
}

/// The two rules of the Adam family share their update ([`AdamStep`]) and differ only in how
/// the weight decay is applied (`decoupled`).
macro_rules! adam_rule {
    ($config:ident, $name:literal, $torch:literal, $decoupled:literal) => {
        impl $config {
            fn step_rule(&self) -> AdamStep {
                AdamStep {
                    betas: self.betas,
                    eps: self.eps,
                    weight_decay: self.weight_decay,
                    decoupled: $decoupled,
                    amsgrad: self.amsgrad,
                }
            }
        }

        impl<T: Real> UpdateRule<T> for $config {
            fn name(&self) -> &'static str {
                $name
            }
            fn torch_name(&self) -> &'static str {
                $torch
            }
            fn lr(&self) -> f64 {
                self.lr
            }
            fn set_lr(&mut self, lr: f64) {
                self.lr = lr;
            }
            fn validate(&self) -> Result<()> {
                $config::validate(self)
            }
            /// `exp_avg`, `exp_avg_sq` (and `max_exp_avg_sq` with AMSGrad), zeroed at first.
            fn buffers(&self, _steps: u64) -> Vec<(&'static str, f64)> {
                self.step_rule().buffers()
            }
            fn options(&self) -> String {
                format!(
                    "lr={:?},beta1={:?},beta2={:?},eps={:?},weight_decay={:?},amsgrad={}",
                    self.lr, self.betas.0, self.betas.1, self.eps, self.weight_decay, self.amsgrad
                )
            }
            fn torch_args(&self) -> String {
                format!(
                    "lr={:?}, betas=({:?}, {:?}), eps={:?}, weight_decay={:?}, amsgrad={}",
                    self.lr,
                    self.betas.0,
                    self.betas.1,
                    self.eps,
                    self.weight_decay,
                    py_bool(self.amsgrad)
                )
            }
            fn update(&self, h: &StepInfo, params: &mut [T], grads: &[T], state: &mut [&mut [T]]) {
                self.step_rule().update(h, params, grads, state)
            }
        }
    };
}

adam_rule!(AdamConfig, "adam", "Adam", false);
adam_rule!(AdamWConfig, "adamw", "AdamW", true);

/// `torch.optim.Adam` (maximize=False), with the arithmetic of PyTorch's single-tensor CPU
/// implementation. At step t (from 1), for every element:
///
/// ```text
/// g  = grad + weight_decay · p                   (if weight_decay ≠ 0)
/// m  = lerp(m, g, 1 - β1)                        (= β1·m + (1-β1)·g)
/// v  = β2·v + (1-β2)·g·g
/// v̂  = max(v̂, v)                                 (AMSGrad; v̂ = v otherwise)
/// step_size = lr / (1 - β1^t)
/// denom     = √v̂ / √(1 - β2^t) + eps
/// p  = p - step_size · m / denom
/// ```
///
/// The bias corrections are computed in f64 (Python floats in PyTorch), the rest in `T`.
pub type Adam<T = f32> = Optimizer<T, AdamConfig>;

/// `torch.optim.AdamW` (maximize=False): Adam whose weight decay multiplies the parameters
/// instead of entering the gradient. At step t, for every element, first
///
/// ```text
/// p  = p · (1 - lr · weight_decay)               (if weight_decay ≠ 0)
/// ```
///
/// then the [`Adam`] update with the plain gradient.
pub type AdamW<T = f32> = Optimizer<T, AdamWConfig>;

// ---------------------------------------------------------------------------------------------
// RMSprop

/// The hyper-parameters of [`RmsProp`], with PyTorch's names and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RmsPropConfig {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Smoothing constant of the running average of squared gradients (default 0.99).
    pub alpha: f64,
    /// Added to the denominator (default 1e-8).
    pub eps: f64,
    /// L2 penalty, added to the gradient as `weight_decay · param` (default 0).
    pub weight_decay: f64,
    /// Momentum factor (default 0).
    pub momentum: f64,
    /// Normalise by the estimated variance of the gradient instead of its second moment
    /// (default false).
    pub centered: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        RmsPropConfig {
            lr: 1e-2,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        }
    }
}

impl RmsPropConfig {
    /// Sets `lr`.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Sets `alpha`.
    pub fn alpha(mut self, alpha: f64) -> Self {
        self.alpha = alpha;
        self
    }
    /// Sets `eps`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// Sets `weight_decay`.
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
    /// Sets `momentum`.
    pub fn momentum(mut self, momentum: f64) -> Self {
        self.momentum = momentum;
        self
    }
    /// Sets `centered`.
    pub fn centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }
    /// The checks of `torch.optim.RMSprop`: lr, eps, momentum, weight_decay and alpha >= 0.
    pub fn validate(&self) -> Result<()> {
        check_non_negative("RMSprop", "lr", self.lr)?;
        check_non_negative("RMSprop", "eps", self.eps)?;
        check_non_negative("RMSprop", "momentum", self.momentum)?;
        check_non_negative("RMSprop", "weight_decay", self.weight_decay)?;
        check_non_negative("RMSprop", "alpha", self.alpha)
    }
}

/// `torch.optim.RMSprop` (maximize=False), for every element:
///
/// ```text
/// g   = grad + weight_decay · p                  (if weight_decay ≠ 0)
/// s   = α·s + (1-α)·g·g                          (square_avg)
/// ḡ   = lerp(ḡ, g, 1 - α)                        (grad_avg, if centered)
/// avg = √(s - ḡ·ḡ) + eps  (centered)  or  √s + eps
/// buf = momentum · buf + g / avg;  p = p - lr · buf     (if momentum > 0)
/// p   = p - lr · g / avg                                (otherwise)
/// ```
pub type RmsProp<T = f32> = Optimizer<T, RmsPropConfig>;

impl<T: Real> UpdateRule<T> for RmsPropConfig {
    fn name(&self) -> &'static str {
        "rmsprop"
    }
    fn torch_name(&self) -> &'static str {
        "RMSprop"
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn validate(&self) -> Result<()> {
        RmsPropConfig::validate(self)
    }
    /// `grad_avg` (centered), `momentum_buffer` (momentum > 0), `square_avg`; zeroed at
    /// first.
    fn buffers(&self, _steps: u64) -> Vec<(&'static str, f64)> {
        let mut b = Vec::new();
        if self.centered {
            b.push(("grad_avg", 0.0));
        }
        if self.momentum > 0.0 {
            b.push(("momentum_buffer", 0.0));
        }
        b.push(("square_avg", 0.0));
        b
    }
    fn options(&self) -> String {
        format!(
            "lr={:?},alpha={:?},eps={:?},weight_decay={:?},momentum={:?},centered={}",
            self.lr, self.alpha, self.eps, self.weight_decay, self.momentum, self.centered
        )
    }
    fn torch_args(&self) -> String {
        format!(
            "lr={:?}, alpha={:?}, eps={:?}, weight_decay={:?}, momentum={:?}, centered={}",
            self.lr,
            self.alpha,
            self.eps,
            self.weight_decay,
            self.momentum,
            py_bool(self.centered)
        )
    }
    fn update(&self, h: &StepInfo, params: &mut [T], grads: &[T], state: &mut [&mut [T]]) {
        let neg_lr = T::from_f64(-h.lr);
        let wd = (self.weight_decay != 0.0).then(|| T::from_f64(self.weight_decay));
        let alpha = T::from_f64(self.alpha);
        let w = T::from_f64(1.0 - self.alpha);
        let eps = T::from_f64(self.eps);
        let mom = T::from_f64(self.momentum);
        let neg_one = -T::ONE;
        let mut it = state.iter_mut();
        let mut ga = if self.centered { it.next() } else { None };
        let mut buf = if self.momentum > 0.0 { it.next() } else { None };
        let sq = it.next().expect("RMSprop: the state holds square_avg");
        for (k, ((p, &g), s)) in params
            .iter_mut()
            .zip(grads.iter())
            .zip(sq.iter_mut())
            .enumerate()
        {
            let g = match wd {
                Some(wd) => g + wd * *p,
                None => g,
            };
            // square_avg.mul_(α).addcmul_(grad, grad, value=1 - α)
            *s = *s * alpha + w * g * g;
            let avg = match ga.as_mut() {
                Some(ga) => {
                    // grad_avg.lerp_(grad, 1 - α);
                    // avg = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
                    ga[k] = lerp(ga[k], g, w);
                    (*s + neg_one * ga[k] * ga[k]).sqrt()
                }
                None => s.sqrt(),
            };
            // avg.add_(eps)
            let avg = avg + eps;
            match buf.as_mut() {
                Some(b) => {
                    // buf.mul_(momentum).addcdiv_(grad, avg); param.add_(buf, alpha=-lr)
                    b[k] = b[k] * mom + g / avg;
                    *p += neg_lr * b[k];
                }
                // param.addcdiv_(grad, avg, value=-lr)
                None => *p += neg_lr * g / avg,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Adagrad

/// The hyper-parameters of [`Adagrad`], with PyTorch's names and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdagradConfig {
    /// Learning rate (default 1e-2).
    pub lr: f64,
    /// Learning-rate decay: step t uses `lr / (1 + (t - 1) · lr_decay)` (default 0).
    pub lr_decay: f64,
    /// L2 penalty, added to the gradient as `weight_decay · param` (default 0).
    pub weight_decay: f64,
    /// The starting value of the sums of squared gradients (default 0).
    pub initial_accumulator_value: f64,
    /// Added to the denominator (default 1e-10).
    pub eps: f64,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        AdagradConfig {
            lr: 1e-2,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
        }
    }
}

impl AdagradConfig {
    /// Sets `lr`.
    pub fn lr(mut self, lr: f64) -> Self {
        self.lr = lr;
        self
    }
    /// Sets `lr_decay`.
    pub fn lr_decay(mut self, lr_decay: f64) -> Self {
        self.lr_decay = lr_decay;
        self
    }
    /// Sets `weight_decay`.
    pub fn weight_decay(mut self, wd: f64) -> Self {
        self.weight_decay = wd;
        self
    }
    /// Sets `initial_accumulator_value`.
    pub fn initial_accumulator_value(mut self, v: f64) -> Self {
        self.initial_accumulator_value = v;
        self
    }
    /// Sets `eps`.
    pub fn eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }
    /// The checks of `torch.optim.Adagrad`: every value >= 0.
    pub fn validate(&self) -> Result<()> {
        check_non_negative("Adagrad", "lr", self.lr)?;
        check_non_negative("Adagrad", "lr_decay", self.lr_decay)?;
        check_non_negative("Adagrad", "weight_decay", self.weight_decay)?;
        check_non_negative(
            "Adagrad",
            "initial_accumulator_value",
            self.initial_accumulator_value,
        )?;
        check_non_negative("Adagrad", "eps", self.eps)
    }
}

/// `torch.optim.Adagrad` (dense gradients, maximize=False). At step t (from 1), for every
/// element:
///
/// ```text
/// g   = grad + weight_decay · p                  (if weight_decay ≠ 0)
/// clr = lr / (1 + (t - 1) · lr_decay)            (f64)
/// sum = sum + g·g                                (starts at initial_accumulator_value)
/// p   = p - clr · g / (√sum + eps)
/// ```
pub type Adagrad<T = f32> = Optimizer<T, AdagradConfig>;

impl<T: Real> UpdateRule<T> for AdagradConfig {
    fn name(&self) -> &'static str {
        "adagrad"
    }
    fn torch_name(&self) -> &'static str {
        "Adagrad"
    }
    fn lr(&self) -> f64 {
        self.lr
    }
    fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }
    fn validate(&self) -> Result<()> {
        AdagradConfig::validate(self)
    }
    /// `sum`, filled with `initial_accumulator_value` at first.
    fn buffers(&self, _steps: u64) -> Vec<(&'static str, f64)> {
        vec![("sum", self.initial_accumulator_value)]
    }
    fn options(&self) -> String {
        format!(
            "lr={:?},lr_decay={:?},weight_decay={:?},initial_accumulator_value={:?},eps={:?}",
            self.lr, self.lr_decay, self.weight_decay, self.initial_accumulator_value, self.eps
        )
    }
    fn torch_args(&self) -> String {
        format!(
            "lr={:?}, lr_decay={:?}, weight_decay={:?}, initial_accumulator_value={:?}, eps={:?}",
            self.lr, self.lr_decay, self.weight_decay, self.initial_accumulator_value, self.eps
        )
    }
    fn update(&self, h: &StepInfo, params: &mut [T], grads: &[T], state: &mut [&mut [T]]) {
        let clr = h.lr / (1.0 + (h.step as f64 - 1.0) * self.lr_decay);
        let neg_clr = T::from_f64(-clr);
        let wd = (self.weight_decay != 0.0).then(|| T::from_f64(self.weight_decay));
        let eps = T::from_f64(self.eps);
        let sum = state.first_mut().expect("Adagrad: the state holds sum");
        for ((p, &g), s) in params.iter_mut().zip(grads.iter()).zip(sum.iter_mut()) {
            let g = match wd {
                Some(wd) => g + wd * *p,
                None => g,
            };
            // state_sum.addcmul_(grad, grad, value=1)
            *s += T::ONE * g * g;
            // std = state_sum.sqrt().add_(eps); param.addcdiv_(grad, std, value=-clr)
            let std = s.sqrt() + eps;
            *p += neg_clr * g / std;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The update rules and the one optimizer over them

/// Where an update is: the learning rate of the step and its number `t` (from 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepInfo {
    /// The learning rate of this step.
    pub lr: f64,
    /// The step's number, from 1 (PyTorch's `state['step']` after its increment).
    pub step: u64,
}

/// One `torch.optim` update formula: the hyper-parameters (the implementing type, e.g.
/// [`AdamConfig`]), the state buffers it keeps, and the element-wise update of one part.
/// [`Optimizer`] holds the rest (learning rate, step count, the buffers, the parts' layout).
pub trait UpdateRule<T: Real>: fmt::Debug {
    /// The name [`OptimizerConfig::parse`] reads: `sgd`, `adam`, ...
    fn name(&self) -> &'static str;
    /// The `torch.optim` class name: `SGD`, `Adam`, `AdamW`, `RMSprop`, `Adagrad`.
    fn torch_name(&self) -> &'static str;
    /// The learning rate.
    fn lr(&self) -> f64;
    /// Sets the learning rate.
    fn set_lr(&mut self, lr: f64);
    /// The checks PyTorch's constructor makes.
    fn validate(&self) -> Result<()>;
    /// The state buffers after `steps` steps, with PyTorch's names in alphabetical order,
    /// each with the value it starts from.
    fn buffers(&self, steps: u64) -> Vec<(&'static str, f64)>;
    /// Every hyper-parameter as `key=value,...` ([`OptimizerConfig::spec`] without the name).
    fn options(&self) -> String;
    /// The arguments of the PyTorch constructor call, e.g. `lr=0.001, betas=(0.9, 0.999)`.
    fn torch_args(&self) -> String;
    /// Step `h` over one part: `params` updated in place from `grads`, with the part's slice
    /// of every buffer of [`UpdateRule::buffers`]`(h.step)`, in that order.
    fn update(&self, h: &StepInfo, params: &mut [T], grads: &[T], state: &mut [&mut [T]]);
}

/// What [`Optimizer::new`] returns for a rule: the configuration of one optimizer
/// ([`AdamConfig`], ...) is used as given and gives the optimizer itself; an
/// [`OptimizerConfig`] is checked first, as PyTorch's constructors check, and gives a
/// `Result`.
pub trait NewOptimizer: Sized {
    /// `O`, or `Result<O>`.
    type Output<O>;
    /// `build(self)`, checked or not.
    fn new_optimizer<O>(self, build: impl FnOnce(Self) -> O) -> Self::Output<O>;
}

macro_rules! unchecked {
    ($($config:ident),*) => {$(
        impl NewOptimizer for $config {
            type Output<O> = O;
            fn new_optimizer<O>(self, build: impl FnOnce(Self) -> O) -> O {
                build(self)
            }
        }
    )*};
}
unchecked!(
    SgdConfig,
    AdamConfig,
    AdamWConfig,
    RmsPropConfig,
    AdagradConfig
);

impl NewOptimizer for OptimizerConfig {
    type Output<O> = Result<O>;
    fn new_optimizer<O>(self, build: impl FnOnce(Self) -> O) -> Result<O> {
        self.validate()?;
        Ok(build(self))
    }
}

/// The configuration of any of the optimizers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum OptimizerConfig {
    /// `torch.optim.SGD`
    Sgd(SgdConfig),
    /// `torch.optim.Adam`
    Adam(AdamConfig),
    /// `torch.optim.AdamW`
    AdamW(AdamWConfig),
    /// `torch.optim.RMSprop`
    RmsProp(RmsPropConfig),
    /// `torch.optim.Adagrad`
    Adagrad(AdagradConfig),
}

impl OptimizerConfig {
    /// The rule of the configuration: the one place that looks at which optimizer it is.
    pub fn rule<T: Real>(&self) -> &dyn UpdateRule<T> {
        match self {
            OptimizerConfig::Sgd(c) => c,
            OptimizerConfig::Adam(c) => c,
            OptimizerConfig::AdamW(c) => c,
            OptimizerConfig::RmsProp(c) => c,
            OptimizerConfig::Adagrad(c) => c,
        }
    }

    /// The hyper-parameters, whatever the element type (they do not depend on it).
    fn hyper(&self) -> &dyn UpdateRule<f64> {
        self.rule::<f64>()
    }

    /// The name [`OptimizerConfig::parse`] accepts: `sgd`, `adam`, `adamw`, `rmsprop`,
    /// `adagrad`.
    pub fn name(&self) -> &'static str {
        self.hyper().name()
    }

    /// The `torch.optim` class name: `SGD`, `Adam`, `AdamW`, `RMSprop`, `Adagrad`.
    pub fn torch_name(&self) -> &'static str {
        self.hyper().torch_name()
    }

    /// The learning rate.
    pub fn lr(&self) -> f64 {
        self.hyper().lr()
    }

    /// The checks PyTorch's constructor makes (non-negative rates, betas in [0, 1), ...).
    pub fn validate(&self) -> Result<()> {
        self.hyper().validate()
    }
}

impl<T: Real> UpdateRule<T> for OptimizerConfig {
    fn name(&self) -> &'static str {
        self.rule::<T>().name()
    }
    fn torch_name(&self) -> &'static str {
        self.rule::<T>().torch_name()
    }
    fn lr(&self) -> f64 {
        self.rule::<T>().lr()
    }
    fn set_lr(&mut self, lr: f64) {
        // Every variant's learning rate is its field `lr`.
        let (OptimizerConfig::Sgd(SgdConfig { lr: l, .. })
        | OptimizerConfig::Adam(AdamConfig { lr: l, .. })
        | OptimizerConfig::AdamW(AdamWConfig { lr: l, .. })
        | OptimizerConfig::RmsProp(RmsPropConfig { lr: l, .. })
        | OptimizerConfig::Adagrad(AdagradConfig { lr: l, .. })) = self;
        *l = lr;
    }
    fn validate(&self) -> Result<()> {
        self.rule::<T>().validate()
    }
    fn buffers(&self, steps: u64) -> Vec<(&'static str, f64)> {
        self.rule::<T>().buffers(steps)
    }
    fn options(&self) -> String {
        self.rule::<T>().options()
    }
    fn torch_args(&self) -> String {
        self.rule::<T>().torch_args()
    }
    fn update(&self, h: &StepInfo, params: &mut [T], grads: &[T], state: &mut [&mut [T]]) {
        self.rule::<T>().update(h, params, grads, state)
    }
}

/// Optional hyper-parameters for [`OptimizerConfig::from_args`], e.g. from command-line flags;
/// the ones left `None` keep PyTorch's defaults. Each optimizer accepts only its own options:
///
/// | optimizer | options |
/// |---|---|
/// | `sgd` | lr, momentum, dampening, weight_decay, nesterov |
/// | `adam`, `adamw` | lr, beta1, beta2, eps, weight_decay, amsgrad |
/// | `rmsprop` | lr, alpha, eps, weight_decay, momentum, centered |
/// | `adagrad` | lr, lr_decay, weight_decay, initial_accumulator_value, eps |
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OptimizerArgs {
    /// Learning rate.
    pub lr: Option<f64>,
    /// Weight decay (L2 penalty; decoupled for AdamW).
    pub weight_decay: Option<f64>,
    /// Momentum factor (SGD, RMSprop).
    pub momentum: Option<f64>,
    /// Dampening (SGD).
    pub dampening: Option<f64>,
    /// Nesterov momentum (SGD).
    pub nesterov: Option<bool>,
    /// β1 (Adam, AdamW).
    pub beta1: Option<f64>,
    /// β2 (Adam, AdamW).
    pub beta2: Option<f64>,
    /// Added to denominators (Adam, AdamW, RMSprop, Adagrad).
    pub eps: Option<f64>,
    /// AMSGrad (Adam, AdamW).
    pub amsgrad: Option<bool>,
    /// Smoothing constant (RMSprop).
    pub alpha: Option<f64>,
    /// Centered RMSprop.
    pub centered: Option<bool>,
    /// Learning-rate decay (Adagrad).
    pub lr_decay: Option<f64>,
    /// Starting value of the sums (Adagrad).
    pub initial_accumulator_value: Option<f64>,
}

const NAMES: &str = "sgd, adam, adamw, rmsprop, adagrad";

impl OptimizerArgs {
    /// Splits `name[:key=value,...]` into the optimizer's name and the options given (the
    /// keys are the fields' names); an error for an unknown key or a value that is not a
    /// number (or a boolean). [`OptimizerConfig::from_args`] checks that the options belong
    /// to the optimizer.
    pub fn parse(spec: &str) -> Result<(String, OptimizerArgs)> {
        let what = format!("optimizer '{spec}'");
        let (name, opts) = split_spec("optimizer", spec)?;
        let mut args = OptimizerArgs::default();
        for (k, v) in opts {
            if !args.set(&what, k, v)? {
                let known = options_of(&name.to_ascii_lowercase())
                    .map(|o| format!("options of {name}: {}", o.join(", ")))
                    .unwrap_or_else(|| format!("optimizers: {NAMES}"));
                return Err(Error::Config(format!(
                    "{what}: unknown option '{k}' ({known})"
                )));
            }
        }
        Ok((name.to_string(), args))
    }

    /// `(key, given)` for every option.
    fn given(&self) -> [(&'static str, bool); 13] {
        [
            ("lr", self.lr.is_some()),
            ("weight_decay", self.weight_decay.is_some()),
            ("momentum", self.momentum.is_some()),
            ("dampening", self.dampening.is_some()),
            ("nesterov", self.nesterov.is_some()),
            ("beta1", self.beta1.is_some()),
            ("beta2", self.beta2.is_some()),
            ("eps", self.eps.is_some()),
            ("amsgrad", self.amsgrad.is_some()),
            ("alpha", self.alpha.is_some()),
            ("centered", self.centered.is_some()),
            ("lr_decay", self.lr_decay.is_some()),
            (
                "initial_accumulator_value",
                self.initial_accumulator_value.is_some(),
            ),
        ]
    }

    /// Sets option `key` from its text `value`.
    fn set(&mut self, what: &str, key: &str, value: &str) -> Result<bool> {
        let f = |v: &str| parse_f64(what, key, v);
        let b = |v: &str| parse_bool(what, key, v);
        match key {
            "lr" => self.lr = Some(f(value)?),
            "weight_decay" => self.weight_decay = Some(f(value)?),
            "momentum" => self.momentum = Some(f(value)?),
            "dampening" => self.dampening = Some(f(value)?),
            "nesterov" => self.nesterov = Some(b(value)?),
            "beta1" => self.beta1 = Some(f(value)?),
            "beta2" => self.beta2 = Some(f(value)?),
            "eps" => self.eps = Some(f(value)?),
            "amsgrad" => self.amsgrad = Some(b(value)?),
            "alpha" => self.alpha = Some(f(value)?),
            "centered" => self.centered = Some(b(value)?),
            "lr_decay" => self.lr_decay = Some(f(value)?),
            "initial_accumulator_value" => self.initial_accumulator_value = Some(f(value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

/// The options each optimizer accepts, by name.
fn options_of(name: &str) -> Option<&'static [&'static str]> {
    Some(match name {
        "sgd" => &["lr", "momentum", "dampening", "weight_decay", "nesterov"],
        "adam" | "adamw" => &["lr", "beta1", "beta2", "eps", "weight_decay", "amsgrad"],
        "rmsprop" => &["lr", "alpha", "eps", "weight_decay", "momentum", "centered"],
        "adagrad" => &[
            "lr",
            "lr_decay",
            "weight_decay",
            "initial_accumulator_value",
            "eps",
        ],
        _ => return None,
    })
}

impl OptimizerConfig {
    /// The optimizer `name` (`sgd`, `adam`, `adamw`, `rmsprop`, `adagrad`; any case) with
    /// PyTorch's defaults, overridden by the options given in `args`. An error if the name is
    /// unknown, an option does not belong to that optimizer (e.g. momentum for Adam), or a
    /// value is out of range.
    pub fn from_args(name: &str, args: &OptimizerArgs) -> Result<OptimizerConfig> {
        let key = name.trim().to_ascii_lowercase();
        let Some(allowed) = options_of(&key) else {
            return Err(Error::Config(format!(
                "unknown optimizer '{name}' (expected one of {NAMES})"
            )));
        };
        for (opt, given) in args.given() {
            if given && !allowed.contains(&opt) {
                return Err(Error::Config(format!(
                    "optimizer {key} has no option '{opt}' (its options: {})",
                    allowed.join(", ")
                )));
            }
        }
        let a = args;
        let cfg = match key.as_str() {
            "sgd" => {
                let d = SgdConfig::default();
                OptimizerConfig::Sgd(SgdConfig {
                    lr: a.lr.unwrap_or(d.lr),
                    momentum: a.momentum.unwrap_or(d.momentum),
                    dampening: a.dampening.unwrap_or(d.dampening),
                    weight_decay: a.weight_decay.unwrap_or(d.weight_decay),
                    nesterov: a.nesterov.unwrap_or(d.nesterov),
                })
            }
            "adam" => {
                let d = AdamConfig::default();
                OptimizerConfig::Adam(AdamConfig {
                    lr: a.lr.unwrap_or(d.lr),
                    betas: (a.beta1.unwrap_or(d.betas.0), a.beta2.unwrap_or(d.betas.1)),
                    eps: a.eps.unwrap_or(d.eps),
                    weight_decay: a.weight_decay.unwrap_or(d.weight_decay),
                    amsgrad: a.amsgrad.unwrap_or(d.amsgrad),
                })
            }
            "adamw" => {
                let d = AdamWConfig::default();
                OptimizerConfig::AdamW(AdamWConfig {
                    lr: a.lr.unwrap_or(d.lr),
                    betas: (a.beta1.unwrap_or(d.betas.0), a.beta2.unwrap_or(d.betas.1)),
                    eps: a.eps.unwrap_or(d.eps),
                    weight_decay: a.weight_decay.unwrap_or(d.weight_decay),
                    amsgrad: a.amsgrad.unwrap_or(d.amsgrad),
                })
            }
            "rmsprop" => {
                let d = RmsPropConfig::default();
                OptimizerConfig::RmsProp(RmsPropConfig {
                    lr: a.lr.unwrap_or(d.lr),
                    alpha: a.alpha.unwrap_or(d.alpha),
                    eps: a.eps.unwrap_or(d.eps),
                    weight_decay: a.weight_decay.unwrap_or(d.weight_decay),
                    momentum: a.momentum.unwrap_or(d.momentum),
                    centered: a.centered.unwrap_or(d.centered),
                })
            }
            _ => {
                let d = AdagradConfig::default();
                OptimizerConfig::Adagrad(AdagradConfig {
                    lr: a.lr.unwrap_or(d.lr),
                    lr_decay: a.lr_decay.unwrap_or(d.lr_decay),
                    weight_decay: a.weight_decay.unwrap_or(d.weight_decay),
                    initial_accumulator_value: a
                        .initial_accumulator_value
                        .unwrap_or(d.initial_accumulator_value),
                    eps: a.eps.unwrap_or(d.eps),
                })
            }
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Parses `name[:key=value,...]`, e.g. `adamw:lr=1e-3,weight_decay=0.01,amsgrad=true` or
    /// `sgd:lr=0.1,momentum=0.9,nesterov=true`; the keys are the fields of
    /// [`OptimizerArgs`] (PyTorch's argument names, with `beta1` and `beta2` for `betas`).
    /// [`OptimizerConfig::spec`] gives this form back.
    pub fn parse(spec: &str) -> Result<OptimizerConfig> {
        let (name, args) = OptimizerArgs::parse(spec)?;
        OptimizerConfig::from_args(&name, &args)
    }

    /// Every hyper-parameter in the form [`OptimizerConfig::parse`] reads, e.g.
    /// `adam:lr=0.001,beta1=0.9,beta2=0.999,eps=1e-8,weight_decay=0.0,amsgrad=false`.
    pub fn spec(&self) -> String {
        format!("{}:{}", self.name(), self.hyper().options())
    }
}

/// The PyTorch constructor call, e.g. `AdamW(lr=0.001, betas=(0.9, 0.999), eps=1e-8,
/// weight_decay=0.01, amsgrad=False)`.
impl fmt::Display for OptimizerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.torch_name(), self.hyper().torch_args())
    }
}

/// An optimizer over flat parameter buffers: the update rule `R` ([`SgdConfig`],
/// [`AdamConfig`], ..., or [`OptimizerConfig`], any of them), the learning rate, the step
/// count, the state buffers (each covering all n parameters) and the layout of the parts it
/// is stepped with. [`Sgd`], [`Adam`], [`AdamW`], [`RmsProp`] and [`Adagrad`] name it with
/// their rules.
///
/// Every rule follows PyTorch's single-tensor implementation (`foreach=False`, what
/// `torch.optim` uses for CPU tensors) operation by operation: the scalars PyTorch computes as
/// Python floats are computed in f64 and rounded to `T` once, the element-wise operations run
/// in `T` in PyTorch's order. In f64 the parameters and states agree with PyTorch's to about
/// 1e-16 (the fixtures of `tests/fixtures/nn`). [`Optimizer::state`] and
/// [`Optimizer::load_state`] carry the whole state across a restart: a resumed run is
/// bit-identical to an uninterrupted one.
///
/// ```
/// use recur::nn::{Optimizer, OptimizerConfig};
/// let config = OptimizerConfig::parse("adamw:lr=0.01,weight_decay=0.1").unwrap();
/// let mut opt: Optimizer<f64> = Optimizer::new(2, config).unwrap();
/// let mut p = vec![1.0, -0.5];
/// for _ in 0..3 {
///     let g: Vec<f64> = p.iter().map(|v| v - 0.5).collect();
///     opt.step_parts(&mut [(&mut p[..], &g[..])]);
/// }
/// assert_eq!(opt.steps(), 3);
/// // Resume: a fresh optimizer that imports the state continues exactly.
/// let mut resumed: Optimizer<f64> = Optimizer::new(2, opt.config()).unwrap();
/// resumed.load_state(&opt.state()).unwrap();
/// assert_eq!(resumed.state(), opt.state());
/// ```
#[derive(Clone, Debug)]
pub struct Optimizer<T = f32, R = OptimizerConfig> {
    rule: R,
    lr: f64,
    n: usize,
    steps: u64,
    /// `(name, values (n))` in the order of [`UpdateRule::buffers`].
    state: Vec<(&'static str, Vec<T>)>,
    /// The lengths of the parts of the steps so far (the parameter groups), once stepped.
    groups: Option<Vec<usize>>,
}

impl<T: Real, R: UpdateRule<T> + NewOptimizer + Clone> Optimizer<T, R> {
    /// An optimizer for `n` parameters with fresh state. With an [`OptimizerConfig`], a
    /// `Result`: an error if the configuration is out of range (see
    /// [`OptimizerConfig::validate`]); with the configuration of one optimizer, the optimizer.
    pub fn new(n: usize, rule: R) -> R::Output<Self> {
        rule.new_optimizer(|rule| {
            let state = rule
                .buffers(0)
                .into_iter()
                .map(|(name, init)| (name, vec![T::from_f64(init); n]))
                .collect();
            Optimizer {
                lr: rule.lr(),
                rule,
                n,
                steps: 0,
                state,
                groups: None,
            }
        })
    }
}

impl<T: Real, R: UpdateRule<T> + Clone> Optimizer<T, R> {
    /// The configuration (with the current learning rate).
    pub fn config(&self) -> R {
        let mut c = self.rule.clone();
        c.set_lr(self.lr);
        c
    }

    /// The current learning rate.
    pub fn lr(&self) -> f64 {
        self.lr
    }

    /// Changes the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// The number of steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The number of parameters.
    pub fn len(&self) -> usize {
        self.n
    }

    /// Whether the optimizer is for no parameters.
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// The state buffer `name` (e.g. `exp_avg`), (n), if the rule keeps it now.
    pub fn buffer(&self, name: &str) -> Option<&[T]> {
        self.state
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| &v[..])
    }

    /// One step over one flat buffer: `params` (n) updated in place from `grads` (n).
    ///
    /// Panics if the lengths differ from the optimizer's.
    pub fn step(&mut self, params: &mut [T], grads: &[T]) {
        self.step_parts(&mut [(params, grads)]);
    }

    /// One step over several buffers, `(params, grads)` pairs whose lengths add up to n, in
    /// the same order at every step (the state covers the parts back to back).
    ///
    /// Panics if the lengths do not match.
    pub fn step_parts(&mut self, parts: &mut [(&mut [T], &[T])]) {
        let what = self.rule.torch_name();
        check_parts(what, parts, self.n);
        match &self.groups {
            Some(g)
                if g.len() == parts.len()
                    && g.iter().zip(parts.iter()).all(|(n, p)| *n == p.0.len()) => {}
            Some(g) => {
                let layout: Vec<usize> = parts.iter().map(|(p, _)| p.len()).collect();
                panic!("{what}.step: parts of lengths {layout:?}, but the earlier steps had {g:?}")
            }
            None => self.groups = Some(parts.iter().map(|(p, _)| p.len()).collect()),
        }
        self.steps += 1;
        self.ensure_buffers();
        let h = StepInfo {
            lr: self.lr,
            step: self.steps,
        };
        let mut off = 0;
        for (params, grads) in parts.iter_mut() {
            let len = params.len();
            let mut slices: Vec<&mut [T]> = self
                .state
                .iter_mut()
                .map(|(_, v)| &mut v[off..off + len])
                .collect();
            self.rule.update(&h, params, grads, &mut slices);
            off += len;
        }
    }

    /// Makes the state hold the buffers of the rule at the current step count, new ones
    /// filled with their starting values.
    fn ensure_buffers(&mut self) {
        let want = self.rule.buffers(self.steps);
        if want.len() == self.state.len() && want.iter().zip(&self.state).all(|(a, b)| a.0 == b.0) {
            return;
        }
        let mut old = std::mem::take(&mut self.state);
        self.state = want
            .into_iter()
            .map(
                |(name, init)| match old.iter().position(|(k, _)| *k == name) {
                    Some(i) => old.swap_remove(i),
                    None => (name, vec![T::from_f64(init); self.n]),
                },
            )
            .collect();
    }

    /// The state (step count and named buffers), for [`Optimizer::load_state`].
    pub fn state(&self) -> OptimizerState<T> {
        OptimizerState {
            optimizer: self.rule.torch_name().into(),
            steps: self.steps,
            buffers: self
                .state
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }

    /// Replaces the state by `state`, exported by an optimizer of the same kind,
    /// configuration and size; an error naming the buffer if a name or length does not match
    /// (the optimizer is left unchanged then).
    pub fn load_state(&mut self, state: &OptimizerState<T>) -> Result<()> {
        let want = self.rule.buffers(state.steps);
        let names: Vec<&str> = want.iter().map(|(k, _)| *k).collect();
        state.check(self.rule.torch_name(), self.n, &names)?;
        self.steps = state.steps;
        self.state = want
            .into_iter()
            .map(|(name, _)| (name, state.take(name)))
            .collect();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The buffer names and their order after 0 and 2 steps: what checkpoints hold under
    /// `optimizer.<name>` (and list in their metadata), the same as before the optimizers
    /// shared one type, so that older checkpoints still load.
    #[test]
    fn the_state_layout_of_every_optimizer_is_the_checkpoints() {
        let cases: [(&str, &[&str], &[&str]); 8] = [
            ("sgd", &[], &[]),
            ("sgd:momentum=0.9", &[], &["momentum_buffer"]),
            (
                "adam",
                &["exp_avg", "exp_avg_sq"],
                &["exp_avg", "exp_avg_sq"],
            ),
            (
                "adamw:amsgrad=true",
                &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
                &["exp_avg", "exp_avg_sq", "max_exp_avg_sq"],
            ),
            ("rmsprop", &["square_avg"], &["square_avg"]),
            (
                "rmsprop:centered=true,momentum=0.5",
                &["grad_avg", "momentum_buffer", "square_avg"],
                &["grad_avg", "momentum_buffer", "square_avg"],
            ),
            (
                "rmsprop:momentum=0.5",
                &["momentum_buffer", "square_avg"],
                &["momentum_buffer", "square_avg"],
            ),
            ("adagrad:initial_accumulator_value=0.5", &["sum"], &["sum"]),
        ];
        for (spec, before, after) in cases {
            let config = OptimizerConfig::parse(spec).unwrap();
            let mut opt: Optimizer<f32> = Optimizer::new(3, config.clone()).unwrap();
            let names = |o: &Optimizer<f32>| -> Vec<String> {
                o.state().buffers.into_iter().map(|b| b.0).collect()
            };
            assert_eq!(names(&opt), before, "{spec}");
            let mut p = [1.0f32, 2.0, 3.0];
            opt.step(&mut p, &[0.1, 0.2, 0.3]);
            opt.step(&mut p, &[0.1, 0.2, 0.3]);
            assert_eq!(names(&opt), after, "{spec}");
            let s = opt.state();
            assert_eq!((s.optimizer.as_str(), s.steps), (config.torch_name(), 2));
            if spec.starts_with("adagrad") {
                assert_eq!(
                    Optimizer::<f32>::new(3, config).unwrap().state().buffers[0].1,
                    [0.5; 3]
                );
            }
        }
    }

    #[test]
    fn the_config_round_trips_through_json() {
        for spec in [
            "sgd:lr=0.1,momentum=0.9,nesterov=true",
            "adamw:beta2=0.98",
            "rmsprop:centered=true",
            "adagrad:lr_decay=0.1",
            "adam:amsgrad=true",
        ] {
            let c = OptimizerConfig::parse(spec).unwrap();
            let json = serde_json::to_string(&c).unwrap();
            assert_eq!(
                serde_json::from_str::<OptimizerConfig>(&json).unwrap(),
                c,
                "{json}"
            );
        }
        let c: OptimizerConfig = serde_json::from_str(r#"{"name": "adamw", "lr": 0.01}"#).unwrap();
        assert_eq!(c, OptimizerConfig::AdamW(AdamWConfig::default().lr(0.01)));
        let e = serde_json::from_str::<OptimizerConfig>(r#"{"name": "adam", "momentum": 0.9}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown field `momentum`"), "{e}");
    }

    #[test]
    #[should_panic(expected = "parts of lengths [1, 2], but the earlier steps had [3]")]
    fn the_parts_keep_their_layout() {
        let mut opt = Adam::<f32>::new(3, AdamConfig::default());
        let mut p = [0.0f32; 3];
        opt.step(&mut p, &[1.0; 3]);
        let (a, b) = p.split_at_mut(1);
        opt.step_parts(&mut [(a, &[1.0][..]), (b, &[1.0, 1.0][..])]);
    }
}
