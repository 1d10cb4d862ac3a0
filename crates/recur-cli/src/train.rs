//! `recur train <task>`: each task builds its data and model, and the runner
//! ([`crate::run`]) trains it.

use crate::run::{check_opts, train_on, Failure, Log};
use clap::{Args as ClapArgs, Subcommand};
use recur::train::Communicator;

/// Options of `recur train`.
#[derive(ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    what: What,
    /// On several ranks (MPI): end the run when a rank waits more than SECS seconds for the
    /// others in a training step's all-reduce (a rank that hangs); off by default.
    #[arg(long, global = true, value_name = "SECS")]
    pub dist_timeout: Option<f64>,
}

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)]
enum What {
    /// Train a character-level language model on a text file (char-rnn style: embedding,
    /// recurrent layers, linear head; truncated BPTT over contiguous streams).
    Lm(crate::task_lm::LmArgs),
    /// Train an encoder-decoder model on (source, target) pairs: TSV or CMUdict.
    Seq2seq(crate::task_seq2seq::Seq2SeqArgs),
    /// Classify sequences: labelled texts (TSV, JSON Lines) or numeric series (.ts).
    Classify(crate::task_classify::ClassifyArgs),
    /// Tag every word of CoNLL-U sentences (part of speech), bidirectional by default.
    Tag(crate::task_tag::TagArgs),
    /// Forecast the next values of a series (a CSV column) from a window of past values.
    Forecast(crate::task_forecast::ForecastArgs),
}

/// The file name of `path` (for plot titles).
fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Trains as `a` says, as a rank of `comm`.
pub fn run(a: Args, comm: &dyn Communicator) -> Result<(), Failure> {
    match a.what {
        What::Lm(a) => {
            check_opts(&a.opts)?;
            let mut a = a;
            a.opts.data_name = file_name(&a.train);
            let mut log = Log::new(a.opts.json);
            let mut task = crate::task_lm::LmTask::new(&a, &mut log)?;
            train_on(&mut task, &a.opts, &mut log, comm)?;
        }
        What::Seq2seq(a) => {
            check_opts(&a.opts)?;
            let mut a = a;
            a.opts.data_name = file_name(&a.train);
            let mut log = Log::new(a.opts.json);
            let mut task = crate::task_seq2seq::Seq2SeqTask::new(&a, &mut log)?;
            train_on(&mut task, &a.opts, &mut log, comm)?;
        }
        What::Classify(a) => {
            check_opts(&a.opts)?;
            let mut a = a;
            a.opts.data_name = file_name(&a.train);
            let mut log = Log::new(a.opts.json);
            let mut task = crate::task_classify::task(&a, &mut log)?;
            train_on(&mut task, &a.opts, &mut log, comm)?;
        }
        What::Tag(a) => {
            check_opts(&a.opts)?;
            let mut a = a;
            a.opts.data_name = file_name(&a.train);
            let mut log = Log::new(a.opts.json);
            let mut task = crate::task_tag::task(&a, &mut log)?;
            train_on(&mut task, &a.opts, &mut log, comm)?;
        }
        What::Forecast(a) => {
            check_opts(&a.opts)?;
            let mut a = a;
            a.opts.data_name = file_name(&a.train);
            let mut log = Log::new(a.opts.json);
            let mut task = crate::task_forecast::task(&a, &mut log)?;
            train_on(&mut task, &a.opts, &mut log, comm)?;
        }
    }
    Ok(())
}
