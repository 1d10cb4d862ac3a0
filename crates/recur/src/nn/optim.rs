//! Optimizers over flat parameter buffers: `torch.optim.Adam` and `torch.optim.SGD`.
//!
//! Both keep their state (moments, momentum buffers) in flat buffers with the parameters'
//! layout. A model made of several modules can pass its buffers as parts (`step_parts`): the
//! state covers the parts back to back, in the order given, which must be the same at every
//! step.

use recur_kernels::Real;

/// Checks that the parts cover exactly `n` values and that each part's parameters and
/// gradients have the same length.
fn check_parts<T>(what: &str, parts: &[(&mut [T], &[T])], n: usize) {
    let mut total = 0;
    for (k, (p, g)) in parts.iter().enumerate() {
        assert_eq!(
            p.len(),
            g.len(),
            "{what}: part {k} has {} parameters but {} gradients",
            p.len(),
            g.len()
        );
        total += p.len();
    }
    assert_eq!(
        total, n,
        "{what}: the optimizer was made for {n} parameters, got {total}"
    );
}

/// The hyper-parameters of [`Adam`], with PyTorch's names and defaults.
#[derive(Clone, Debug, PartialEq)]
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
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 1e-3,
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamConfig {
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
}

/// `torch.optim.Adam` (amsgrad=False, maximize=False), with the arithmetic of PyTorch's
/// single-tensor CPU implementation. At step t (from 1), for every element:
///
/// ```text
/// g  = grad + weight_decay · p                   (if weight_decay ≠ 0)
/// m  = lerp(m, g, 1 - β1)                        (= β1·m + (1-β1)·g)
/// v  = β2·v + (1-β2)·g·g
/// step_size = lr / (1 - β1^t)
/// denom     = √v / √(1 - β2^t) + eps
/// p  = p - step_size · m / denom
/// ```
///
/// The bias corrections are computed in f64 (Python floats in PyTorch), the rest in `T`.
#[derive(Clone, Debug)]
pub struct Adam<T = f32> {
    config: AdamConfig,
    step: u64,
    /// (n): exp_avg
    m: Vec<T>,
    /// (n): exp_avg_sq
    v: Vec<T>,
}

impl<T: Real> Adam<T> {
    /// An optimizer for `n` parameters, with zeroed moments.
    pub fn new(n: usize, config: AdamConfig) -> Adam<T> {
        Adam {
            config,
            step: 0,
            m: vec![T::ZERO; n],
            v: vec![T::ZERO; n],
        }
    }
    /// The hyper-parameters.
    pub fn config(&self) -> &AdamConfig {
        &self.config
    }
    /// Changes the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    /// The number of steps taken.
    pub fn steps(&self) -> u64 {
        self.step
    }
    /// The first moments `exp_avg`, (n).
    pub fn exp_avg(&self) -> &[T] {
        &self.m
    }
    /// The second moments `exp_avg_sq`, (n).
    pub fn exp_avg_sq(&self) -> &[T] {
        &self.v
    }

    /// One step over one flat buffer: `params` (n) updated in place from `grads` (n).
    ///
    /// Panics if the lengths differ from the optimizer's.
    pub fn step(&mut self, params: &mut [T], grads: &[T]) {
        self.step_parts(&mut [(params, grads)]);
    }

    /// One step over several buffers, `(params, grads)` pairs whose lengths add up to n.
    ///
    /// Panics if the lengths do not match.
    pub fn step_parts(&mut self, parts: &mut [(&mut [T], &[T])]) {
        check_parts("Adam.step", parts, self.m.len());
        self.step += 1;
        let c = &self.config;
        let (b1, b2) = c.betas;
        let t = self.step as f64;
        let bias_correction1 = 1.0 - b1.powf(t);
        let bias_correction2 = 1.0 - b2.powf(t);
        let step_size = c.lr / bias_correction1;
        let bc2_sqrt = T::from_f64(bias_correction2.sqrt());
        let neg_step_size = T::from_f64(-step_size);
        let w1 = T::from_f64(1.0 - b1);
        let b2t = T::from_f64(b2);
        let w2 = T::from_f64(1.0 - b2);
        let eps = T::from_f64(c.eps);
        let wd = (c.weight_decay != 0.0).then(|| T::from_f64(c.weight_decay));
        let half = T::from_f64(0.5);
        let mut off = 0;
        for (params, grads) in parts.iter_mut() {
            let n = params.len();
            let m = &mut self.m[off..off + n];
            let v = &mut self.v[off..off + n];
            off += n;
            for (((p, &g), m), v) in params.iter_mut().zip(grads.iter()).zip(m).zip(v) {
                let g = match wd {
                    Some(wd) => g + wd * *p,
                    None => g,
                };
                // exp_avg.lerp_(grad, 1 - β1), with PyTorch's two-sided lerp formula.
                *m = if w1.abs() < half {
                    *m + w1 * (g - *m)
                } else {
                    g - (g - *m) * (T::ONE - w1)
                };
                // exp_avg_sq.mul_(β2).addcmul_(grad, grad, value=1 - β2)
                *v = *v * b2t + w2 * g * g;
                // denom = exp_avg_sq.sqrt() / √bias_correction2 + eps
                let denom = v.sqrt() / bc2_sqrt + eps;
                // param.addcdiv_(exp_avg, denom, value=-step_size)
                *p += neg_step_size * *m / denom;
            }
        }
    }
}

/// The hyper-parameters of [`Sgd`], with PyTorch's names and defaults.
#[derive(Clone, Debug, PartialEq)]
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
#[derive(Clone, Debug)]
pub struct Sgd<T = f32> {
    config: SgdConfig,
    n: usize,
    /// (n): momentum_buffer; None before the first step or without momentum.
    buf: Option<Vec<T>>,
}

impl<T: Real> Sgd<T> {
    /// An optimizer for `n` parameters.
    pub fn new(n: usize, config: SgdConfig) -> Sgd<T> {
        Sgd {
            config,
            n,
            buf: None,
        }
    }
    /// The hyper-parameters.
    pub fn config(&self) -> &SgdConfig {
        &self.config
    }
    /// Changes the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }
    /// The momentum buffers, (n), once a step with momentum has run.
    pub fn momentum_buffer(&self) -> Option<&[T]> {
        self.buf.as_deref()
    }

    /// One step over one flat buffer: `params` (n) updated in place from `grads` (n).
    ///
    /// Panics if the lengths differ from the optimizer's.
    pub fn step(&mut self, params: &mut [T], grads: &[T]) {
        self.step_parts(&mut [(params, grads)]);
    }

    /// One step over several buffers, `(params, grads)` pairs whose lengths add up to n.
    ///
    /// Panics if the lengths do not match.
    pub fn step_parts(&mut self, parts: &mut [(&mut [T], &[T])]) {
        check_parts("SGD.step", parts, self.n);
        let c = &self.config;
        let neg_lr = T::from_f64(-c.lr);
        let wd = (c.weight_decay != 0.0).then(|| T::from_f64(c.weight_decay));
        let mom = T::from_f64(c.momentum);
        let keep = T::from_f64(1.0 - c.dampening);
        let use_momentum = c.momentum != 0.0;
        let first = self.buf.is_none();
        if use_momentum && first {
            self.buf = Some(vec![T::ZERO; self.n]);
        }
        let mut off = 0;
        for (params, grads) in parts.iter_mut() {
            let n = params.len();
            let mut buf = self.buf.as_mut().map(|b| &mut b[off..off + n]);
            off += n;
            for (k, (p, &g)) in params.iter_mut().zip(grads.iter()).enumerate() {
                let mut g = match wd {
                    Some(wd) => g + wd * *p,
                    None => g,
                };
                if use_momentum {
                    let b = &mut buf.as_mut().expect("momentum buffer")[k];
                    *b = if first { g } else { *b * mom + keep * g };
                    g = if c.nesterov { g + mom * *b } else { *b };
                }
                // param.add_(grad, alpha=-lr)
                *p += neg_lr * g;
            }
        }
    }
}
