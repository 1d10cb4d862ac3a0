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
//!   gradient; [`softmax`] for probabilities;
//! - [`clip_grad_norm`], `nn.utils.clip_grad_norm_`;
//! - [`Adam`] and [`Sgd`]: `torch.optim.Adam` and `torch.optim.SGD`.
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

pub use clip::{clip_grad_norm, clip_grad_norm_flat};
pub(crate) use embedding::normal_values;
pub use embedding::Embedding;
pub use linear::Linear;
pub use loss::{softmax, softmax_cross_entropy, DEFAULT_IGNORE_INDEX};
pub use optim::{Adam, AdamConfig, Sgd, SgdConfig};
