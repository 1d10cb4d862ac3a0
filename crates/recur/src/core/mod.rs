//! The PyTorch-exact layers and their BPTT: the configuration ([`config`]), the parameter
//! layout ([`layout`]), the tensor type, the fused engine behind [`rnn::Rnn`], the single-step
//! cells, streaming, and initialization. Nothing here imports from the floors above it
//! (`nn`, `data`, `io`, `analysis`, `train`, `models`).

pub mod cell;
mod compact;
pub mod config;
mod engine;
pub mod init;
pub mod layout;
#[cfg(any(test, feature = "testing"))]
pub mod reference;
pub mod regular;
pub mod rnn;
pub mod stream;
pub mod tensor;
#[cfg(any(test, feature = "testing"))]
pub mod tolerance;
