//! `recur`: the command-line tool. A thin layer over the `recur` library.

use clap::{Parser, Subcommand};
use run::Failure;
use std::process::ExitCode;

mod bench;
mod demo;
mod eval;
mod experiment;
mod export;
mod forward;
mod gradients;
mod run;
mod sample;
mod task_classify;
mod task_forecast;
mod task_lm;
mod task_seq;
mod task_seq2seq;
mod task_tag;
mod train;

/// Counts allocated bytes, for the peak memory `recur bench` reports.
#[global_allocator]
static ALLOC: recur_kernels::alloc::Tracking = recur_kernels::alloc::Tracking;

/// Recurrent neural networks (RNN, LSTM, GRU) with PyTorch's semantics, fast on the CPU.
#[derive(Parser)]
#[command(name = "recur", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train a small model on built-in generated data, report what it learned and show it.
    Demo(demo::Args),
    /// Run a PyTorch state_dict (safetensors) on inputs from a safetensors file; with
    /// gradients in the inputs, run backpropagation through time as well.
    Forward(forward::Args),
    /// Write a PyTorch RNN/LSTM/GRU state_dict (safetensors) as an ONNX model.
    Export(export::Args),
    /// Time recur on the benchmark grid (bench/grid.json): ms per iteration, GFLOP/s, peak memory.
    Bench(bench::Args),
    /// Train a model: `recur train lm` trains a character-level language model on a text file.
    Train(Box<train::Args>),
    /// Evaluate a model trained by `recur train` on a data file: prints its metrics.
    Eval(eval::EvalArgs),
    /// Run a model trained by `recur train` on inputs, one per line: prints one prediction
    /// per line.
    Predict(eval::PredictArgs),
    /// Generate text from a character-level language model trained by `recur train lm`.
    Sample(sample::Args),
    /// Long-range benchmarks (adding, copy, digits): every cell at every length, a table and plots.
    Experiment(experiment::Args),
    /// Vanishing and exploding gradients: dL/dh_t per step, recurrent spectra, step Jacobians.
    Gradients(gradients::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => demo::run(a).map_err(Failure::from),
        Command::Forward(a) => forward::run(a).map_err(Failure::from),
        Command::Export(a) => export::run(a).map_err(Failure::from),
        Command::Bench(a) => bench::run(a).map_err(Failure::from),
        Command::Train(a) => train::run(*a),
        Command::Eval(a) => eval::run_eval(a),
        Command::Predict(a) => eval::run_predict(a),
        Command::Sample(a) => sample::run(a).map_err(Failure::from),
        Command::Experiment(a) => experiment::run(a).map_err(Failure::from),
        Command::Gradients(a) => gradients::run(a).map_err(Failure::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.status)
        }
    }
}
