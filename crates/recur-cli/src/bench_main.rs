//! `recur-bench`: the program `recur bench` runs. It is the only one that counts the bytes it
//! allocates (the peak memory of every benchmark row), so that every other command of `recur`
//! allocates through the system allocator without the counting's atomic operations.

#![forbid(unsafe_code)]

use clap::{CommandFactory, FromArgMatches};
use std::process::ExitCode;

#[path = "bench.rs"]
mod bench;
#[path = "conventions.rs"]
mod conventions;

/// Counts allocated bytes, for the peak memory the benchmark reports.
#[global_allocator]
static ALLOC: recur_kernels::alloc::Tracking = recur_kernels::alloc::Tracking;

/// Time recur on the benchmark grid (bench/grid.json): ms per iteration, GFLOP/s, peak memory.
/// Run as `recur bench`.
#[derive(clap::Parser)]
#[command(name = "recur bench", version)]
struct Cli {
    #[command(flatten)]
    args: bench::Args,
}

fn main() -> ExitCode {
    let matches = conventions::apply(Cli::command()).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    match bench::run(cli.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
