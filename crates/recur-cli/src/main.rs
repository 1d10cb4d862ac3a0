//! `recur`: the command-line tool. A thin layer over the `recur` library.

#![forbid(unsafe_code)]

use clap::{CommandFactory, FromArgMatches, Subcommand};
use run::Failure;
use std::process::ExitCode;

// `recur bench` runs the `recur-bench` program (src/bench_main.rs), which is the one that
// counts allocations; here only its options are used, to check them and show its help.
#[allow(dead_code)]
mod bench;
mod conventions;
mod demo;
mod dist;
mod eval;
mod experiment;
mod export;
mod forward;
mod gradients;
mod limits;
mod model_opts;
#[cfg(feature = "mpi")]
mod mpi_comm;
mod opts;
mod plot_runs;
mod progress;
mod quantize;
mod regular_opts;
mod run;
mod sample;
mod shard;
mod shared;
mod task_classify;
mod task_forecast;
mod task_lm;
mod task_seq;
mod task_seq2seq;
mod task_tag;
mod train;

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
    /// Write a model directory of `recur train`, or a PyTorch RNN/LSTM/GRU state_dict, as ONNX.
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
    /// Write a copy of a model directory with its recurrent weights stored as int8, f16 or
    /// bf16, for inference.
    Quantize(quantize::Args),
    /// Long-range benchmarks (adding, copy, digits): every cell at every length, a table and plots.
    Experiment(experiment::Args),
    /// Vanishing and exploding gradients: dL/dh_t per step, recurrent spectra, step Jacobians.
    Gradients(gradients::Args),
    /// Compare runs of `recur train`: their validation curves at equal steps and at equal
    /// wall-clock time in one figure, and each run's best value.
    Plot(plot_runs::Args),
    /// Time the training loop's gradient all-reduce under mpirun (scripts/mpi_scaling.sh).
    #[cfg(feature = "mpi")]
    #[command(hide = true)]
    AllreduceBench(mpi_comm::BenchArgs),
}

/// A bad value of an option as one line, as recur's own checks say it: `--cell transformer:
/// unknown cell 'transformer': expected one of rnn_tanh, rnn_relu, lstm, gru`, `--tokens x:
/// expected one of char, word`. `None` for the parser's other errors (an unknown option, a
/// missing value, `--help`), which it prints itself.
fn value_error(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let string = |k: ContextKind| match e.get(k) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    // "--cell <CELL>" → "--cell".
    let arg = string(ContextKind::InvalidArg)?;
    let arg = arg.split_whitespace().next().unwrap_or(&arg).to_string();
    let value = string(ContextKind::InvalidValue)?;
    let why = match e.kind() {
        ErrorKind::ValueValidation => std::error::Error::source(e)?.to_string(),
        ErrorKind::InvalidValue => match e.get(ContextKind::ValidValue) {
            Some(ContextValue::Strings(v)) => format!("expected one of {}", v.join(", ")),
            _ => return None,
        },
        _ => return None,
    };
    Some(format!("{arg} {value}: {why}"))
}

/// `recur bench`: runs `recur-bench` (installed beside `recur`) with the same options, so
/// that only the benchmark counts the bytes it allocates, and every other command allocates
/// through the system allocator. Its output is the benchmark's; its exit status is recur's.
fn run_bench() -> ExitCode {
    let name = format!("recur-bench{}", std::env::consts::EXE_SUFFIX);
    let exe = match std::env::current_exe() {
        Ok(p) => p.with_file_name(&name),
        Err(e) => {
            eprintln!("error: recur bench: cannot find the recur program's directory: {e}");
            return ExitCode::from(2);
        }
    };
    // `recur bench ARGS...`: the subcommand is always the first argument.
    let args = std::env::args_os().skip(2);
    match std::process::Command::new(&exe).args(args).status() {
        Ok(s) => match s.code() {
            Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
            None => ExitCode::from(130), // ended by a signal (Ctrl-C)
        },
        Err(e) => {
            eprintln!(
                "error: recur bench runs {}, installed beside recur: {e} (cargo build or \
                 cargo install of recur-cli builds both)",
                exe.display()
            );
            ExitCode::from(2)
        }
    }
}

fn main() -> ExitCode {
    let matches = match conventions::apply(Cli::command()).try_get_matches() {
        Ok(m) => m,
        Err(e) => match value_error(&e) {
            Some(line) => {
                eprintln!("error: {line}");
                return ExitCode::from(2);
            }
            None => e.exit(),
        },
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    #[cfg(feature = "mpi")]
    let parallel = matches!(cli.command, Command::Train(_) | Command::AllreduceBench(_));
    #[cfg(not(feature = "mpi"))]
    let parallel = matches!(cli.command, Command::Train(_));
    let dist = match dist::Dist::start(parallel) {
        Ok(d) => d,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(2);
        }
    };
    dist::set_rank(dist.rank());
    let result = match cli.command {
        Command::Demo(a) => demo::run(a).map_err(Failure::from),
        Command::Forward(a) => forward::run(a).map_err(Failure::from),
        Command::Export(a) => export::run(a).map_err(Failure::from),
        Command::Bench(_) => return run_bench(),
        Command::Train(a) => match dist.comm_within(a.dist_timeout) {
            Ok(comm) => train::run(*a, &*comm),
            Err(message) => Err(Failure::from(message)),
        },
        Command::Eval(a) => eval::run_eval(a),
        Command::Predict(a) => eval::run_predict(a),
        Command::Sample(a) => sample::run(a).map_err(Failure::from),
        Command::Quantize(a) => quantize::run(a),
        Command::Experiment(a) => experiment::run(a).map_err(Failure::from),
        Command::Gradients(a) => gradients::run(a).map_err(Failure::from),
        Command::Plot(a) => plot_runs::run(a),
        #[cfg(feature = "mpi")]
        Command::AllreduceBench(a) => mpi_comm::bench(a).map_err(Failure::from),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            // An interrupted run stops at the same step on every rank (the ranks agree on
            // it), after rank 0's checkpoint: the ranks end together. Any other failure may
            // be this rank's alone: it ends every rank, naming this one.
            if f.status != 130 {
                dist.fail(&f.message, f.status);
            }
            if dist::rank() == 0 {
                eprintln!("error: {}", f.message);
            }
            ExitCode::from(f.status)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command's options are consistent (clap's own checks), and every task parses with
    /// the defaults it gives the shared model options.
    #[test]
    fn the_command_tree_passes_the_parsers_checks() {
        conventions::apply(Cli::command()).debug_assert();
        for task in ["lm", "classify", "tag", "forecast", "seq2seq"] {
            let mut args = vec!["recur", "train", task, "--train", "x", "--out", "y"];
            if task == "forecast" {
                args.extend(["--column", "v"]);
            }
            let m = conventions::apply(Cli::command())
                .try_get_matches_from(args)
                .unwrap();
            assert!(matches!(
                Cli::from_arg_matches(&m).unwrap().command,
                Command::Train(_)
            ));
        }
    }
}
