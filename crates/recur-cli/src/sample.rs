//! `recur sample`: generates text from a model directory written by `recur train lm`
//! (character or word tokens).
//!
//! ```text
//! recur sample --model DIR [--prime TEXT] [--length N] [--temperature T] [--top-k K] [--seed S]
//! ```
//!
//! Prints the priming text followed by the generated characters. The same options (seed
//! included) print the same text.

use crate::task_lm::load_lm_from;
use clap::Args as ClapArgs;
use recur::models::lm::SampleOptions;
use std::io::Write;
use std::path::PathBuf;

/// Options of `recur sample`.
#[derive(ClapArgs)]
pub struct Args {
    /// The model directory written by `recur train lm`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// The text to start from (default: a newline).
    #[arg(long, value_name = "TEXT")]
    prime: Option<String>,
    /// Characters to generate after the priming text.
    #[arg(long, default_value_t = 500)]
    length: usize,
    /// Softmax temperature: below 1 more conservative, above 1 more varied; 0 always takes
    /// the most likely character.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Draw only among the K most likely characters.
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Seed of the generator.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Store the recurrent weights as f16, bf16 or int8 (docs/precision.md); default: as the
    /// model directory stores them.
    #[arg(long, value_name = "f32|f16|bf16|int8")]
    precision: Option<String>,
}

pub fn run(a: Args) -> Result<(), String> {
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        return Err(format!(
            "--temperature must be a number >= 0, got {}",
            a.temperature
        ));
    }
    if a.top_k == Some(0) {
        return Err("--top-k must be at least 1".into());
    }
    crate::limits::in_range("--length", a.length.max(1), crate::limits::MAX_GENERATE)?;
    let mut cfg = recur::models::read_config(&a.model).map_err(|e| format!("--model {e}"))?;
    crate::quantize::apply_precision(&mut cfg, a.precision.as_deref())?;
    let (model, vocab) = load_lm_from(&a.model, &cfg).map_err(|e| e.to_string())?;
    let prime = a.prime.unwrap_or_default();
    let unknown = vocab.count_unknown(&prime);
    if unknown > 0 {
        let unit = if vocab.unit() == "char" {
            "character"
        } else {
            "word"
        };
        eprintln!(
            "note: {unknown} {unit}{} of --prime {} not in the model's vocabulary (read as <unk>)",
            if unknown > 1 { "s" } else { "" },
            if unknown > 1 { "are" } else { "is" }
        );
    }
    let opts = SampleOptions {
        temperature: a.temperature,
        top_k: a.top_k,
        seed: a.seed,
        exclude: vocab.exclude(),
    };
    let prime_ids = vocab.encode_prime(&prime);
    let shown = if prime.is_empty() {
        vocab.decode(&prime_ids)
    } else {
        prime
    };
    let sep = if vocab.unit() == "word" && !shown.ends_with('\n') {
        " "
    } else {
        ""
    };
    // The text streams out as it is drawn: nothing is held but the current token.
    let mut out = std::io::stdout().lock();
    let io = |e: std::io::Error| format!("standard output: {e}");
    write!(out, "{shown}{sep}").map_err(io)?;
    let mut line_start = true;
    let mut io_error = None;
    let sampled = model.sample_each(&prime_ids, a.length, &opts, |id| {
        let piece = vocab.decode_next(id, &mut line_start);
        let written = out.write_all(piece.as_bytes()).and_then(|()| {
            if piece.contains('\n') {
                out.flush()
            } else {
                Ok(())
            }
        });
        written.map_err(|e| {
            let msg = io(e);
            io_error = Some(msg.clone());
            recur::Error::Input(msg)
        })
    });
    if let Some(e) = io_error {
        return Err(e);
    }
    sampled.map_err(|e| e.to_string())?;
    writeln!(out).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(())
}
