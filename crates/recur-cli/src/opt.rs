//! The optimizer and learning-rate schedule of `recur train`, chosen by name.

use recur::nn::{Adam, AdamConfig, Sgd, SgdConfig};

/// An optimizer over the flat parameter vector of a model.
pub enum Optimizer {
    Adam(Adam<f32>),
    Sgd(Sgd<f32>),
}

impl Optimizer {
    pub fn new(
        name: &str,
        n: usize,
        lr: f64,
        weight_decay: f64,
        momentum: f64,
    ) -> Result<Optimizer, String> {
        match name {
            "adam" => Ok(Optimizer::Adam(Adam::new(
                n,
                AdamConfig::default().lr(lr).weight_decay(weight_decay),
            ))),
            "sgd" => Ok(Optimizer::Sgd(Sgd::new(
                n,
                SgdConfig::default()
                    .lr(lr)
                    .weight_decay(weight_decay)
                    .momentum(momentum),
            ))),
            other => Err(format!("expected adam or sgd, got '{other}'")),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            Optimizer::Adam(o) => format!("Adam(lr={})", o.config().lr),
            Optimizer::Sgd(o) => format!("SGD(lr={})", o.config().lr),
        }
    }
    pub fn set_lr(&mut self, lr: f64) {
        match self {
            Optimizer::Adam(o) => o.set_lr(lr),
            Optimizer::Sgd(o) => o.set_lr(lr),
        }
    }
    pub fn step_parts(&mut self, parts: &mut [(&mut [f32], &[f32])]) {
        match self {
            Optimizer::Adam(o) => o.step_parts(parts),
            Optimizer::Sgd(o) => o.step_parts(parts),
        }
    }
    pub fn state(&self) -> (Vec<(String, Vec<f32>)>, serde_json::Value) {
        (Vec::new(), serde_json::Value::Null)
    }
    pub fn state_names(&self) -> Vec<(String, usize)> {
        Vec::new()
    }
    pub fn load_state(
        &mut self,
        _b: Vec<(String, Vec<f32>)>,
        _s: &serde_json::Value,
    ) -> Result<(), String> {
        Err("optimizer state cannot be restored".into())
    }
}

pub fn clip_grad_value(g: &mut [f32], v: f64) {
    let v = v as f32;
    for x in g {
        *x = x.clamp(-v, v);
    }
}

pub struct Schedule {
    lr: f64,
}

impl Schedule {
    pub fn parse(s: &str, lr: f64, _warmup: u64, _total: u64) -> Result<Schedule, String> {
        match s {
            "constant" => Ok(Schedule { lr }),
            other => Err(format!("unknown schedule '{other}'")),
        }
    }
    pub fn lr(&self, _step: u64) -> f64 {
        self.lr
    }
}
