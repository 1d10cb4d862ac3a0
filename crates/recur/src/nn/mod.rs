//! Building blocks around the recurrent layers: output heads, losses, optimizers.
//!
//! In the style of llm.c: every block is an explicit forward/backward pair over flat row-major
//! buffers, with the shape of each buffer in a comment. Parameters and gradients are flat
//! slices; backward passes **add** parameter gradients into the caller's buffer (as PyTorch
//! accumulates into `.grad`), so one buffer can hold the gradients of a whole model.
//!
//! - [`Linear`], `nn.Linear`, `y = x Wᵀ + b`;
//! - [`Embedding`], `nn.Embedding`: rows of a table gathered by token id;
//! - [`softmax_cross_entropy`], `F.cross_entropy(reduction='mean', ignore_index=...)` and its
//!   gradient; [`softmax`] for probabilities; [`mse_loss`] and [`l1_loss`] (`F.mse_loss`,
//!   `F.l1_loss`, mean or sum, with an optional mask of the positions that count);
//! - [`clip_grad_norm`], `nn.utils.clip_grad_norm_` ([`clip_grad_norm_checked`] with
//!   `error_if_nonfinite=True`), and [`clip_grad_value`], `nn.utils.clip_grad_value_`;
//! - [`Optimizer`], one optimizer over an [`UpdateRule`]: [`Sgd`], [`Adam`], [`AdamW`],
//!   [`RmsProp`] and [`Adagrad`] are it with the `torch.optim` rules of the same names, and
//!   `Optimizer` with an [`OptimizerConfig`] is any of them (parsed from a name and options,
//!   e.g. `adamw:lr=1e-3,weight_decay=0.01`), with its state exported and imported for exact
//!   resume ([`OptimizerState`]);
//! - [`Schedule`]: learning-rate schedules of `torch.optim.lr_scheduler` (StepLR, MultiStepLR,
//!   ExponentialLR, CosineAnnealingLR, LinearLR, and a warm-up followed by any of them as
//!   SequentialLR), parsed from a short string such as `cosine:eta_min=1e-5`.
//!
//! ```
//! use recur::nn::{softmax_cross_entropy, Adam, AdamConfig, Linear};
//! // nn.Linear(3, 2); one Adam step on a batch of 2 rows.
//! let mut fc: Linear<f64> = Linear::new(3, 2, true, 0);
//! let x = [0.5, -1.0, 2.0, 1.0, 0.0, -0.5]; // (N=2, in=3)
//! let mut logits = vec![0.0; 4]; // (N=2, out=2)
//! fc.forward(&x, 2, &mut logits);
//! let (loss, dlogits) = softmax_cross_entropy(&logits, 2, &[1, 0], -100).unwrap();
//! assert!(loss > 0.0);
//! let mut grads = fc.zeros_like_params();
//! fc.backward(&x, &dlogits, 2, &mut grads, None);
//! let mut opt = Adam::new(fc.num_params(), AdamConfig::default());
//! opt.step(fc.params_mut(), &grads);
//! ```

mod clip;
mod embedding;
mod linear;
mod loss;
mod optim;
mod schedule;

pub use clip::{clip_grad_norm, clip_grad_norm_checked, clip_grad_norm_flat, clip_grad_value};
pub(crate) use embedding::normal_values;
pub use embedding::Embedding;
pub use linear::Linear;
pub use loss::{
    l1_loss, mse_loss, softmax, softmax_cross_entropy, Reduction, DEFAULT_IGNORE_INDEX,
};
pub use optim::{
    Adagrad, AdagradConfig, Adam, AdamConfig, AdamW, AdamWConfig, NewOptimizer, Optimizer,
    OptimizerArgs, OptimizerConfig, OptimizerState, RmsProp, RmsPropConfig, Sgd, SgdConfig,
    StepInfo, UpdateRule,
};
pub use schedule::{LrScheduler, Schedule};

use crate::error::{Error, Result};

/// Splits a specification `name[:key=value[,key=value]...]` into the name and its options.
/// `what` names the kind of specification in errors (e.g. "optimizer").
pub(crate) fn split_spec<'a>(
    what: &str,
    spec: &'a str,
) -> Result<(&'a str, Vec<(&'a str, &'a str)>)> {
    let spec = spec.trim();
    let (name, rest) = match spec.split_once(':') {
        Some((n, r)) => (n.trim(), Some(r)),
        None => (spec, None),
    };
    if name.is_empty() {
        return Err(Error::Config(format!(
            "{what} '{spec}': expected a name, as in name[:key=value,...]"
        )));
    }
    let mut opts: Vec<(&str, &str)> = Vec::new();
    for item in rest.into_iter().flat_map(|r| r.split(',')) {
        let item = item.trim();
        if item.is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            return Err(Error::Config(format!(
                "{what} '{spec}': option '{item}' is not of the form key=value"
            )));
        };
        let (k, v) = (k.trim(), v.trim());
        if opts.iter().any(|(seen, _)| *seen == k) {
            return Err(Error::Config(format!(
                "{what} '{spec}': option '{k}' is given twice"
            )));
        }
        opts.push((k, v));
    }
    Ok((name, opts))
}

/// Parses the value of option `key` as a finite number.
pub(crate) fn parse_f64(what: &str, key: &str, v: &str) -> Result<f64> {
    match v.parse::<f64>() {
        Ok(x) if x.is_finite() => Ok(x),
        _ => Err(Error::Config(format!(
            "{what}: {key}={v} is not a finite number"
        ))),
    }
}

/// Parses the value of option `key` as a non-negative integer.
pub(crate) fn parse_u64(what: &str, key: &str, v: &str) -> Result<u64> {
    v.parse::<u64>()
        .map_err(|_| Error::Config(format!("{what}: {key}={v} is not a non-negative integer")))
}

/// Parses the value of option `key` as `true`/`false` (also `1`/`0`).
pub(crate) fn parse_bool(what: &str, key: &str, v: &str) -> Result<bool> {
    match v {
        "true" | "True" | "1" => Ok(true),
        "false" | "False" | "0" => Ok(false),
        _ => Err(Error::Config(format!(
            "{what}: {key}={v} is not true or false"
        ))),
    }
}
