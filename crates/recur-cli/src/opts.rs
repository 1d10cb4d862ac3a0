//! Argument types that several command files share: the options of `recur eval` and
//! `recur predict`, and the [`Predictor`] each kind of model gives `recur predict`. This
//! module imports no other file of the command line, so every task file can use it without
//! an import loop.

use clap::Args as ClapArgs;
use std::path::PathBuf;

/// Options of `recur eval`.
#[derive(ClapArgs)]
pub struct EvalArgs {
    /// The model directory written by `recur train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// The data to evaluate on, in the format the model was trained on.
    #[arg(long, value_name = "FILE")]
    pub data: PathBuf,
    /// Sequences (or streams) per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Print the metrics as one line of JSON.
    #[arg(long)]
    pub json: bool,
    /// Store the recurrent weights as f16, bf16 or int8 for this run (docs/precision.md);
    /// default: as the model directory stores them.
    #[arg(long, value_name = "f32|f16|bf16|int8")]
    pub precision: Option<String>,
}

/// Options of `recur predict`.
#[derive(ClapArgs)]
pub struct PredictArgs {
    /// The model directory written by `recur train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Inputs, one per line (default: standard input, answered line by line as it arrives).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Where to write the predictions, one line per input line (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Beam width for sequence outputs (1: greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Longest output sequence (language models: characters generated after each input).
    #[arg(long, default_value_t = 100)]
    pub max_len: usize,
    /// Sampling temperature of language models (as `recur sample`: 1 draws from the model's
    /// distribution, 0 always takes the most likely character).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Seed of sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Store the recurrent weights as f16, bf16 or int8 for this run (docs/precision.md);
    /// default: as the model directory stores them.
    #[arg(long, value_name = "f32|f16|bf16|int8")]
    pub precision: Option<String>,
}

/// A loaded model answering `recur predict` one input line at a time.
pub trait Predictor {
    /// The answer to input line number `line_no` (1-based; language models seed their
    /// sampling with it): one line of text, without its line end. An error is the whole
    /// message for that line (`input line N: ...`); the other lines are still answered.
    fn answer(&mut self, line_no: usize, line: &str) -> Result<String, String>;
}

/// `input line {line_no}: {msg}`, the start of every error about one input line.
pub fn line_error(line_no: usize, msg: impl std::fmt::Display) -> String {
    format!("input line {line_no}: {msg}")
}
