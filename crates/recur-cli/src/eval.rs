//! `recur eval` and `recur predict`: run a trained model directory on new data. The kind of
//! model is read from its config.json (`"model"`), and the task that trained it does the work.

use crate::run::{fmt_metrics, Failure, Metrics};
use clap::Args as ClapArgs;
use std::path::{Path, PathBuf};

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
}

/// Options of `recur predict`.
#[derive(ClapArgs)]
pub struct PredictArgs {
    /// The model directory written by `recur train`.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Inputs, one per line (default: standard input).
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Where to write the predictions, one per input (default: standard output).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Beam width for sequence outputs (1: greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Longest output sequence (language models: characters generated after each input).
    #[arg(long, default_value_t = 100)]
    pub max_len: usize,
    /// Sampling temperature of language models (0: always the most likely character).
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Seed of sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// The `"model"` field of `dir/config.json`.
pub fn model_kind(dir: &Path) -> Result<String, String> {
    let path = dir.join("config.json");
    if !dir.is_dir() {
        return Err(format!(
            "--model {}: no such model directory",
            dir.display()
        ));
    }
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{}: invalid JSON ({e})", path.display()))?;
    v.get("model")
        .and_then(|m| m.as_str())
        .map(String::from)
        .ok_or_else(|| format!("{}: no \"model\" field: not a recur model", path.display()))
}

fn unknown(kind: &str) -> Failure {
    Failure::from(format!(
        "this recur does not know models of kind '{kind}' (from its config.json)"
    ))
}

pub fn run_eval(a: EvalArgs) -> Result<(), Failure> {
    if a.batch_size == 0 {
        return Err("--batch-size must be at least 1".to_string().into());
    }
    let kind = model_kind(&a.model)?;
    let metrics: Metrics = match kind.as_str() {
        "char_lm" => crate::task_lm::eval(&a)?,
        "seq2seq" => crate::task_seq2seq::eval(&a)?,
        "seq_model" => crate::task_seq::eval(&a)?,
        other => return Err(unknown(other)),
    };
    if a.json {
        let m: serde_json::Map<String, serde_json::Value> = metrics
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        println!("{}", serde_json::Value::Object(m));
    } else {
        println!("{}", fmt_metrics(&metrics));
    }
    Ok(())
}

/// The input lines of `recur predict` (from --input or stdin).
pub fn read_inputs(a: &PredictArgs) -> Result<Vec<String>, String> {
    use std::io::Read;
    let (bytes, name) = match &a.input {
        Some(p) => (
            std::fs::read(p).map_err(|e| format!("--input {}: cannot read: {e}", p.display()))?,
            p.display().to_string(),
        ),
        None => {
            let mut b = Vec::new();
            std::io::stdin()
                .read_to_end(&mut b)
                .map_err(|e| format!("standard input: {e}"))?;
            (b, "standard input".to_string())
        }
    };
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        format!("{name}:{line}: not UTF-8 text")
    })?;
    Ok(text.lines().map(String::from).collect())
}

/// Writes one prediction per line to --output or stdout.
pub fn write_outputs(a: &PredictArgs, lines: &[String]) -> Result<(), String> {
    use std::io::Write;
    let mut text = lines.join("\n");
    text.push('\n');
    match &a.output {
        Some(p) => recur::state_dict::write_atomic(p, text.as_bytes()).map_err(|e| e.to_string()),
        None => std::io::stdout()
            .lock()
            .write_all(text.as_bytes())
            .map_err(|e| format!("standard output: {e}")),
    }
}

pub fn run_predict(a: PredictArgs) -> Result<(), Failure> {
    if a.beam == 0 {
        return Err("--beam must be at least 1".to_string().into());
    }
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        return Err(format!("--temperature must be a number >= 0, got {}", a.temperature).into());
    }
    let kind = model_kind(&a.model)?;
    let lines = read_inputs(&a)?;
    let out = match kind.as_str() {
        "char_lm" => crate::task_lm::predict(&a, &lines)?,
        "seq2seq" => crate::task_seq2seq::predict(&a, &lines)?,
        "seq_model" => crate::task_seq::predict(&a, &lines)?,
        other => return Err(unknown(other)),
    };
    write_outputs(&a, &out)?;
    Ok(())
}
