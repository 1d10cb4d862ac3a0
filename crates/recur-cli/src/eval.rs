//! `recur eval` and `recur predict`: run a trained model directory on new data. The kind of
//! model is read from its config.json (`"model"`), and the task that trained it does the work.

use crate::limits;
use crate::opts::{line_error, Predictor};
pub use crate::opts::{EvalArgs, PredictArgs};
use crate::run::{fmt_metrics, Failure, Metrics};
use recur::models::{read_config, ModelConfig, ModelKind};
use std::io::{BufRead, Write};
use std::path::Path;

/// Loads a model for `recur predict`.
type MakePredictor = fn(&PredictArgs, &ModelConfig) -> Result<Box<dyn Predictor>, String>;

/// What each kind of model directory does for `recur eval` and `recur predict`: the one table
/// from a [`ModelKind`] to the task file that knows it.
struct Entry {
    kind: ModelKind,
    eval: fn(&EvalArgs, &ModelConfig) -> Result<Metrics, String>,
    predictor: MakePredictor,
    /// The largest `--max-len` of `recur predict`.
    max_len: usize,
}

const KINDS: [Entry; 3] = [
    Entry {
        kind: ModelKind::CharLm,
        eval: crate::task_lm::eval,
        predictor: crate::task_lm::predictor,
        max_len: limits::MAX_PREDICT_LEN,
    },
    Entry {
        kind: ModelKind::SeqModel,
        eval: seq_eval,
        predictor: seq_predictor,
        max_len: limits::MAX_PREDICT_LEN,
    },
    Entry {
        kind: ModelKind::Seq2seq,
        eval: crate::task_seq2seq::eval,
        predictor: crate::task_seq2seq::predictor,
        max_len: limits::MAX_DECODE_LEN,
    },
];

/// `recur eval` of a sequence model: the task that trained it reads the data and measures.
fn seq_eval(a: &EvalArgs, cfg: &recur::models::ModelConfig) -> Result<Metrics, String> {
    let task = crate::task_seq::task_of(cfg)?;
    match crate::task_seq::task_str(&task, "kind")? {
        "classify" => crate::task_classify::eval(a, cfg, &task),
        "tag" => crate::task_tag::eval(a, cfg, &task),
        "forecast" => crate::task_forecast::eval(a, cfg, &task),
        other => Err(format!(
            "config.json: unknown task kind '{other}' (expected classify, tag or forecast)"
        )),
    }
}

/// `recur predict` of a sequence model: the task that trained it answers each line.
fn seq_predictor(
    a: &PredictArgs,
    cfg: &recur::models::ModelConfig,
) -> Result<Box<dyn Predictor>, String> {
    let task = crate::task_seq::task_of(cfg)?;
    match crate::task_seq::task_str(&task, "kind")? {
        "classify" => crate::task_classify::predictor(a, cfg, &task),
        "tag" => crate::task_tag::predictor(a, cfg, &task),
        "forecast" => crate::task_forecast::predictor(a, cfg, &task),
        other => Err(format!(
            "config.json: unknown task kind '{other}' (expected classify, tag or forecast)"
        )),
    }
}

/// Reads `dir/config.json` (once), applies `--precision`, and finds its kind in [`KINDS`].
fn open(dir: &Path, precision: Option<&str>) -> Result<(ModelConfig, &'static Entry), Failure> {
    let mut cfg = read_config(dir).map_err(|e| format!("--model {e}"))?;
    crate::quantize::apply_precision(&mut cfg, precision)?;
    let entry = KINDS
        .iter()
        .find(|e| e.kind == cfg.kind)
        .expect("every kind has an entry");
    Ok((cfg, entry))
}

pub fn run_eval(a: EvalArgs) -> Result<(), Failure> {
    if a.batch_size == 0 {
        return Err("--batch-size must be at least 1".to_string().into());
    }
    let (cfg, entry) = open(&a.model, a.precision.as_deref())?;
    let metrics: Metrics = (entry.eval)(&a, &cfg)?;
    if a.json {
        let m: serde_json::Map<String, serde_json::Value> = metrics
            .iter()
            .map(|(k, v)| (k.clone(), crate::run::metric_json(k, *v)))
            .collect();
        println!("{}", serde_json::Value::Object(m));
    } else {
        println!("{}", fmt_metrics(&metrics));
    }
    Ok(())
}

pub fn run_predict(a: PredictArgs) -> Result<(), Failure> {
    limits::in_range("--beam", a.beam, limits::MAX_BEAM)?;
    if !(a.temperature.is_finite() && a.temperature >= 0.0) {
        return Err(format!("--temperature must be a number >= 0, got {}", a.temperature).into());
    }
    let (cfg, entry) = open(&a.model, a.precision.as_deref())?;
    limits::in_range("--max-len", a.max_len, entry.max_len)?;
    let mut predictor = (entry.predictor)(&a, &cfg)?;
    let input: Box<dyn BufRead> = match &a.input {
        Some(p) => Box::new(std::io::BufReader::new(
            std::fs::File::open(p)
                .map_err(|e| format!("--input {}: cannot read: {e}", p.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let out: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|e| format!("--output {}: cannot write: {e}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    answer_lines(input, out, predictor.as_mut(), &a)
}

/// Answers each line of `input` as soon as it is read, writing one line to `out` (flushed)
/// for each, so that `recur predict` can sit in a pipe. A line that cannot be answered is
/// reported on stderr with its number and gets an empty output line (the outputs stay in
/// step with the inputs); the others are answered, and the command fails at the end.
fn answer_lines(
    mut input: Box<dyn BufRead>,
    mut out: Box<dyn Write>,
    predictor: &mut dyn Predictor,
    a: &PredictArgs,
) -> Result<(), Failure> {
    let write_err = |e: std::io::Error| match &a.output {
        Some(p) => format!("--output {}: {e}", p.display()),
        None => format!("standard output: {e}"),
    };
    let mut buf = Vec::new();
    let (mut line_no, mut bad) = (0usize, 0usize);
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .map_err(|e| match &a.input {
                Some(p) => format!("--input {}: {e}", p.display()),
                None => format!("standard input: {e}"),
            })?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if buf.last() == Some(&b'\n') {
            buf.pop();
            if buf.last() == Some(&b'\r') {
                buf.pop();
            }
        }
        let answer = match std::str::from_utf8(&buf) {
            Ok(line) => predictor.answer(line_no, line),
            Err(_) => Err(line_error(line_no, "not UTF-8 text")),
        };
        let text = answer.unwrap_or_else(|e| {
            eprintln!("error: {e}");
            bad += 1;
            String::new()
        });
        writeln!(out, "{text}").map_err(write_err)?;
        out.flush().map_err(write_err)?;
    }
    if bad > 0 {
        return Err(format!(
            "{bad} of {line_no} input lines could not be answered (each is reported above; its output line is empty)"
        )
        .into());
    }
    Ok(())
}
