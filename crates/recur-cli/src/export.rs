//! `recur export`: writes a model directory of `recur train` (`--model DIR`), or a PyTorch
//! `nn.RNN`/`nn.LSTM`/`nn.GRU` state_dict (`--weights W.safetensors`), as ONNX (see
//! `recur_onnx::export`).
//!
//! ```text
//! recur export --onnx OUT.onnx --model DIR [--initial-state] [--opset N] [--precision f32|f64]
//! recur export --onnx OUT.onnx --weights W.safetensors [--prefix P] [--nonlinearity relu]
//!     [--batch-first] [--initial-state] [--lengths] [--opset N] [--precision f32|f64]
//! ```
//!
//! A sequence-to-sequence model is written as two graphs, `OUT.encoder.onnx` and
//! `OUT.decoder.onnx` (OUT is the `--onnx` path without its `.onnx`).

use clap::Args as ClapArgs;
use recur::io::state_dict::{describe, load_rnn, LoadOptions, TensorFile};
use recur::Rnn;
use recur_onnx::export::{export_model_dir, export_rnn, ExportOptions, ModelExportOptions};
use std::path::{Path, PathBuf};

/// Options of `recur export`.
#[derive(ClapArgs)]
pub struct Args {
    /// Where to write the ONNX model (a sequence-to-sequence model: OUT.encoder.onnx and
    /// OUT.decoder.onnx).
    #[arg(long, value_name = "OUT.onnx")]
    onnx: PathBuf,
    /// A model directory written by `recur train` (lm, classify, tag, forecast, seq2seq).
    #[arg(long, value_name = "DIR", conflicts_with = "weights")]
    model: Option<PathBuf>,
    /// The PyTorch state_dict (safetensors) of an nn.RNN, nn.LSTM or nn.GRU.
    #[arg(long, value_name = "W.safetensors", required_unless_present = "model")]
    weights: Option<PathBuf>,
    /// The module prefix of the recurrent layer's keys (e.g. `encoder.rnn`); found from the
    /// keys when there is only one recurrent layer.
    #[arg(long, value_name = "P", conflicts_with = "model")]
    prefix: Option<String>,
    /// The nonlinearity of RNN weights: `tanh` (default) or `relu`.
    #[arg(long, value_name = "tanh|relu", conflicts_with = "model")]
    nonlinearity: Option<String>,
    /// The model's input and output are (batch, seq, feature) (PyTorch's batch_first=True).
    #[arg(long, conflicts_with = "model")]
    batch_first: bool,
    /// The graph takes the initial states `h0` (and `c0`), (num_layers·D, batch, H); for a
    /// language model (--model), so that a client can stream by feeding h_n (c_n) back.
    #[arg(long)]
    initial_state: bool,
    /// The graph takes `lengths` (int32, one per sequence), with PackedSequence semantics
    /// (model directories of sequence models always take `lengths`).
    #[arg(long, conflicts_with = "model")]
    lengths: bool,
    /// The ONNX opset to declare (14 to 22).
    #[arg(long, default_value_t = 17)]
    opset: i64,
    /// The element type of the graph: f32 (default) or f64.
    #[arg(long, value_name = "f32|f64", default_value = "f32")]
    precision: String,
}

/// `OUT.onnx` → `OUT.<part>.onnx`.
fn part_path(out: &Path, part: &str) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let stem = name.strip_suffix(".onnx").unwrap_or(&name);
    out.with_file_name(format!("{stem}.{part}.onnx"))
}

fn run_model(a: &Args, dir: &Path, double: bool) -> Result<(), String> {
    let o = ModelExportOptions {
        opset: a.opset,
        initial_state: a.initial_state,
        double,
    };
    let m = export_model_dir(dir, &o).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for g in &m.graphs {
        let path = match g.part {
            None => a.onnx.clone(),
            Some(p) => part_path(&a.onnx, p),
        };
        let bytes = g.to_bytes();
        recur::io::state_dict::write_atomic(&path, &bytes).map_err(|e| e.to_string())?;
        written.push(format!("{} ({} bytes)", path.display(), bytes.len()));
    }
    println!(
        "{} exported to {} (opset {})",
        m.description,
        written.join(" and "),
        a.opset
    );
    Ok(())
}

pub fn run(a: Args) -> Result<(), String> {
    let double = crate::forward::parse_precision(&a.precision)?;
    if let Some(dir) = &a.model {
        return run_model(&a, dir, double);
    }
    let weights = a
        .weights
        .as_ref()
        .ok_or("--weights or --model: what to export")?;
    let relu = crate::forward::parse_nonlinearity(a.nonlinearity.as_deref())?;
    let file = TensorFile::read(weights).map_err(|e| e.to_string())?;
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
    let bytes = export_rnn(&rnn, &eo).map_err(|e| format!("{}: {e}", weights.display()))?;
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
