//! # recur-onnx
//!
//! ONNX in and out for recurrent models:
//!
//! - [`reader`]: decodes an ONNX file (protobuf through `prost`) and checks it before anything
//!   large is allocated;
//! - [`Model`]: runs the graph: the `RNN`, `GRU` and `LSTM` operators with every attribute
//!   up to opset 22 ([`recurrent`]), and the glue operators exporters write around them;
//! - [`export`]: writes a PyTorch `nn.RNN`/`nn.LSTM`/`nn.GRU` ([`recur::Rnn`]) as a chain of
//!   ONNX recurrent nodes.

#![forbid(unsafe_code)]

pub mod error;
pub mod exec;
pub mod export;
pub mod io;
mod ops;
pub mod proto;
pub mod reader;
pub mod recurrent;
pub mod value;

pub use error::{Error, Result};
pub use exec::Model;
pub use value::{DType, Data, Value};
