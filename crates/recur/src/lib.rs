//! # recur
//!
//! Recurrent neural networks on the CPU with PyTorch's exact semantics: `nn.RNN` (tanh and
//! relu), `nn.LSTM` (with `proj_size`), `nn.GRU` and their single-step cells, forward and
//! backpropagation through time, variable-length batches, streaming, and PyTorch state_dicts
//! in and out (safetensors).
//!
//! ```
//! use recur::{Rnn, RnnConfig, Tensor, Dropout};
//! // nn.GRU(4, 8, num_layers=2, bidirectional=True, batch_first=True)
//! let cfg = RnnConfig::gru(4, 8).num_layers(2).bidirectional(true).batch_first(true);
//! let gru: Rnn<f32> = Rnn::new(cfg, 42).unwrap();
//! let x = Tensor::new(&[2, 5, 4], (0..40).map(|i| i as f32 / 40.0).collect()).unwrap();
//! // Two sequences of lengths 5 and 3 (PackedSequence semantics).
//! let (out, tape) = gru.forward_train(&x, None, Some(&[5, 3]), Dropout::Off).unwrap();
//! assert_eq!(out.output.shape(), &[2, 5, 16]);
//! // Loss = sum(output): its gradient is all ones.
//! let ones = Tensor::new(out.output.shape(), vec![1.0; 160]).unwrap();
//! let mut grads = gru.zeros_like_params();
//! let dx = gru.backward(&tape, Some(&ones), None, None, &mut grads).unwrap();
//! assert_eq!(dx.input.shape(), x.shape());
//! ```

#![forbid(unsafe_code)]

pub mod analysis;
pub mod core;
pub mod data;
pub mod error;
pub mod io;
pub mod models;
pub mod nn;
pub mod train;

pub use crate::core::cell::Cell;
pub use crate::core::config::{Mode, Regularizers, RnnConfig};
pub use crate::core::layout::{Naming, ParamEntry, ParamKind, ParamLayout};
pub use crate::core::rnn::{BackwardObserver, Dropout, InputGrads, Output, Rnn, State, Tape};
pub use crate::core::stream::{Precision, Stream};
pub use crate::core::tensor::Tensor;
pub use error::{Error, Result};
pub use recur_kernels::{num_threads, set_num_threads, Real};

/// Frees the scratch buffers recur keeps between calls. Forward and backward passes reuse
/// their buffers (up to 2 GiB per element type) to avoid re-mapping memory on every call;
/// call this after a large job to give that memory back.
pub fn release_buffers() {
    <f32 as Real>::pool().clear();
    <f64 as Real>::pool().clear();
}
