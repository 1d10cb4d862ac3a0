//! `recur`: the command-line tool. A thin layer over the `recur` library.

#![forbid(unsafe_code)]

use clap::{ArgAction, CommandFactory, FromArgMatches, Subcommand};
use run::Failure;
use std::process::ExitCode;

mod bench;
mod demo;
mod eval;
mod experiment;
mod export;
mod forward;
mod gradients;
mod limits;
mod opts;
mod regular_opts;
mod run;
mod sample;
mod shared;
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
#[derive(clap::Parser)]
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
    /// Train a model on a data file into a model directory: `recur train lm|classify|tag|
    /// seq2seq|forecast` (language model, classifier, tagger, encoder-decoder, forecaster).
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

/// The conventions every option of every command follows, applied once to the whole command
/// tree rather than spelled out on each option:
/// - every boolean option is `--name [true|false]`: `--name` alone turns it on, `--name=false`
///   (or `--name false`) turns it off, whatever its default;
/// - a value may start with a minus (`--lr -1` reaches recur's own check of the value, which
///   says what is allowed, instead of the parser's "unexpected argument").
fn conventions(cmd: clap::Command) -> clap::Command {
    cmd.mut_args(|a| {
        let a = a.allow_negative_numbers(true);
        match a.get_action() {
            ArgAction::SetTrue => a
                .action(ArgAction::Set)
                .num_args(0..=1)
                .require_equals(false)
                .value_name("BOOL")
                .default_value("false")
                .default_missing_value("true")
                .value_parser(clap::value_parser!(bool)),
            ArgAction::Set
                if a.get_value_parser().type_id()
                    == clap::builder::ValueParser::bool().type_id() =>
            {
                a.num_args(0..=1)
                    .value_name("BOOL")
                    .default_missing_value("true")
            }
            _ => a,
        }
    })
    .mut_subcommands(conventions)
}

fn main() -> ExitCode {
    let matches = conventions(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
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
