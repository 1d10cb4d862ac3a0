//! `recur export`: writes a PyTorch `nn.RNN`/`nn.LSTM`/`nn.GRU` state_dict as an ONNX model
//! (one ONNX recurrent node per layer; see `recur_onnx::export`).
//!
//! ```text
//! recur export --onnx OUT.onnx --weights W.safetensors [--prefix P] [--nonlinearity relu]
//!     [--batch-first] [--initial-state] [--lengths] [--opset N] [--precision f32|f64]
//! ```

use clap::Args as ClapArgs;
use recur::io::state_dict::{describe, load_rnn, LoadOptions, TensorFile};
use recur::Rnn;
use recur_onnx::export::{export_rnn, ExportOptions};
use std::path::PathBuf;

/// Options of `recur export`.
#[derive(ClapArgs)]
pub struct Args {
    /// Where to write the ONNX model.
    #[arg(long, value_name = "OUT.onnx")]
    onnx: PathBuf,
    /// The PyTorch state_dict (safetensors) of an nn.RNN, nn.LSTM or nn.GRU.
    #[arg(long, value_name = "W.safetensors")]
    weights: PathBuf,
    /// The module prefix of the recurrent layer's keys (e.g. `encoder.rnn`); found from the
    /// keys when there is only one recurrent layer.
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// The nonlinearity of RNN weights: `tanh` (default) or `relu`.
    #[arg(long, value_name = "tanh|relu")]
    nonlinearity: Option<String>,
    /// The model's input and output are (batch, seq, feature) (PyTorch's batch_first=True).
    #[arg(long)]
    batch_first: bool,
    /// The graph takes the initial states `h0` (and `c0`), (num_layers·D, batch, H).
    #[arg(long)]
    initial_state: bool,
    /// The graph takes `lengths` (int32, one per sequence), with PackedSequence semantics.
    #[arg(long)]
    lengths: bool,
    /// The ONNX opset to declare (14 to 22).
    #[arg(long, default_value_t = 17)]
    opset: i64,
    /// The element type of the graph: f32 (default) or f64.
    #[arg(long, value_name = "f32|f64", default_value = "f32")]
    precision: String,
}

pub fn run(a: Args) -> Result<(), String> {
    let relu = crate::forward::parse_nonlinearity(a.nonlinearity.as_deref())?;
    let double = crate::forward::parse_precision(&a.precision)?;
    let file = TensorFile::read(&a.weights).map_err(|e| e.to_string())?;
    let opts = LoadOptions {
        prefix: a.prefix.clone(),
        relu,
        batch_first: a.batch_first,
    };
    let rnn: Rnn<f64> = load_rnn(&file, &opts).map_err(|e| e.to_string())?;
    let eo = ExportOptions {
        batch_first: a.batch_first,
        initial_state: a.initial_state,
        lengths: a.lengths,
        opset: a.opset,
        double,
    };
    let bytes = export_rnn(&rnn, &eo).map_err(|e| format!("{}: {e}", a.weights.display()))?;
    recur::io::state_dict::write_atomic(&a.onnx, &bytes).map_err(|e| e.to_string())?;
    println!(
        "{} exported to {} (opset {}, {} nodes of ONNX {}, {} bytes)",
        describe(rnn.config()),
        a.onnx.display(),
        a.opset,
        rnn.config().num_layers,
        match rnn.config().mode {
            recur::Mode::Lstm => "LSTM",
            recur::Mode::Gru => "GRU",
            _ => "RNN",
        },
        bytes.len()
    );
    Ok(())
}
