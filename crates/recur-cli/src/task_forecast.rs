//! `recur train forecast`: forecasting a numeric series (a column of a CSV file). The series
//! is cut in time into training, validation and test parts; the model reads a window of
//! `--window` standardised values and predicts the next `--horizon` values (mean squared
//! error). Evaluation reports MAE and RMSE next to those of the naive forecast that repeats
//! the last value of the window.
//!
//! ```text
//! recur train forecast --train FILE.csv --column NAME|INDEX --out DIR [--header=false]
//!     [--window 24] [--horizon 1] [--stride 1] [--valid-fraction 0.1] [--test-fraction 0.1]
//!     [--cell lstm] [--hidden-size 64] [--num-layers 1] [--dropout 0] [--batch-size 32]
//!     [--lr-schedule cosine] [training options: --lr, --optimizer, --steps/--epochs, --resume, ...]
//! ```
//!
//! `DIR` gets `model.safetensors` (PyTorch names: `rnn.weight_ih_l0`, ..., `head.weight`,
//! `head.bias`), `config.json`, `normalization.safetensors` (the training part's mean and
//! deviation), `metrics.json`, the curves and the checkpoint.

use crate::model_opts::{ModelDefaults, ModelOpts, WithModelDefaults};
use crate::regular_opts::{self, RegularArgs};
use crate::run::{Log, Metrics, TrainOpts};
use crate::shared::fingerprint;
use crate::task_seq::{
    check_fraction, check_model_opts, check_size, chunks, column, load_model, task_str, Examples,
    Inputs, Kind, Outputs, SeqTask,
};
use clap::{ArgAction, Args as ClapArgs};
use recur::analysis::metrics::ForecastReport;
use recur::data::csv::CsvOptions;
use recur::models::seqmodel::{
    forecast_windows, Head, Normalization, Pooling, SeqModel, SeqModelConfig,
};
use std::path::{Path, PathBuf};

/// The model options' defaults of `recur train forecast`: one layer of 64 reading the values
/// (no embedding).
const MODEL: ModelDefaults = ModelDefaults {
    hidden_size: 64,
    num_layers: 1,
    embed_size: None,
    bidirectional: Some(false),
    dropout: 0.0,
    help: &[
        (
            "hidden_size",
            "Hidden size of every recurrent layer (per direction)",
        ),
        ("bidirectional", "Read every window in both directions too"),
    ],
};

/// The training defaults of `recur train forecast` that differ from the other tasks': a cosine
/// schedule (on the monthly sunspots it gives a lower validation RMSE than the constant rate,
/// docs/regularization.md).
const TRAINING: &[(&str, &str)] = &[("lr_schedule", "cosine")];

/// [`TRAINING`] as a method of the command, for `#[command(forecast_training_defaults())]`.
trait WithForecastTrainingDefaults {
    fn forecast_training_defaults(self) -> Self;
}

impl WithForecastTrainingDefaults for clap::Command {
    fn forecast_training_defaults(self) -> clap::Command {
        TRAINING.iter().fold(self, |cmd, (id, v)| {
            cmd.mut_arg(*id, |a| a.default_value(*v))
        })
    }
}

/// Options of `recur train forecast`.
#[derive(ClapArgs)]
#[command(model_defaults(MODEL), forecast_training_defaults())]
pub struct ForecastArgs {
    /// The series: a CSV file with a header line (see --header).
    #[arg(long, value_name = "FILE")]
    pub train: PathBuf,
    /// The column of the series: its name in the header, or a 0-based index.
    #[arg(long)]
    pub column: String,
    /// The first line names the columns (`--header=false`: no header line; choose the column
    /// by index).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub header: bool,
    /// Skip malformed rows (counted) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Values the model reads to make a forecast.
    #[arg(long, default_value_t = 24)]
    pub window: usize,
    /// Values it predicts after the window.
    #[arg(long, default_value_t = 1)]
    pub horizon: usize,
    /// Steps between the starts of consecutive training windows.
    #[arg(long, default_value_t = 1)]
    pub stride: usize,
    /// The part of the series (after the training part) used for validation.
    #[arg(long, default_value_t = 0.1)]
    pub valid_fraction: f64,
    /// The last part of the series, held out for the final test (0: none).
    #[arg(long, default_value_t = 0.1)]
    pub test_fraction: f64,
    /// Standardise the values with the training part's mean and deviation.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub normalize: bool,
    #[command(flatten)]
    pub model: ModelOpts,
    /// Windows per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub opts: TrainOpts,
    // The model's regularizers, a block of their own.
    #[command(flatten)]
    pub regular: RegularArgs,
}

/// Reads the series: one column of a CSV file.
fn read_series(
    flag: &str,
    path: &Path,
    col: &str,
    header: bool,
    skip: bool,
    log: Option<&mut Log>,
) -> Result<(Vec<f64>, String), String> {
    let opts = CsvOptions {
        header,
        skip_bad_lines: skip,
        ..CsvOptions::column(column(col))
    };
    let t = recur::data::csv::read(path, &opts).map_err(|e| format!("{flag} {e}"))?;
    let name = t.names.first().cloned().unwrap_or_default();
    match log {
        Some(log) => log.line(&format!("read {}", t.report)),
        None => eprintln!("read {}", t.report),
    }
    Ok((t.column(0), name))
}

/// Windows of `series` whose targets start at `from..` (inputs may reach back before
/// `from`), every `stride` steps.
fn windows(
    series: &[f64],
    from: usize,
    window: usize,
    horizon: usize,
    stride: usize,
) -> recur::Result<(Vec<f64>, Vec<f64>)> {
    let start = from.saturating_sub(window);
    forecast_windows(&series[start..], window, horizon, stride)
}

fn examples(inputs: &[f64], targets: &[f64], window: usize, horizon: usize) -> Examples {
    Examples {
        inputs: Inputs::Features {
            values: inputs
                .chunks_exact(window)
                .map(|w| w.iter().map(|&v| v as f32).collect())
                .collect(),
            num_features: 1,
        },
        outputs: Outputs::Values(
            targets
                .chunks_exact(horizon)
                .map(|w| w.iter().map(|&v| v as f32).collect())
                .collect(),
        ),
        unknown: Vec::new(),
    }
}

/// Forecasting: RMSE (which picks the best model), MAE, and both for the naive forecast.
pub struct ForecastKind {
    pub window: usize,
    pub horizon: usize,
    pub task: serde_json::Value,
}

/// The model's forecasts for every example, (N, horizon), in the data's units.
fn forecasts(model: &SeqModel<f32>, data: &Examples, batch_size: usize) -> recur::Result<Vec<f64>> {
    let mut out = Vec::new();
    for idx in chunks(data.len(), batch_size) {
        let (batch, _) = data.batch(&idx, None)?;
        out.extend(model.forward(&batch)?.iter().map(|&v| v as f64));
    }
    Ok(out)
}

impl Kind for ForecastKind {
    fn name(&self) -> &'static str {
        "forecast"
    }
    fn loss_label(&self) -> &'static str {
        "mean squared error (standardised values)"
    }
    fn unit(&self) -> &'static str {
        "value"
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn metrics(
        &self,
        model: &SeqModel<f32>,
        data: &Examples,
        batch_size: usize,
        prefix: &str,
    ) -> recur::Result<(Metrics, String)> {
        let pred = forecasts(model, data, batch_size)?;
        // The validation loss, in the training loss's units (MSE of standardised values).
        let (mut sum, mut count) = (0.0, 0usize);
        for idx in chunks(data.len(), batch_size) {
            let (batch, targets) = data.batch(&idx, None)?;
            let l = model.loss(&batch, &targets)?;
            sum += l.loss * l.count as f64;
            count += l.count;
        }
        let loss = sum / count.max(1) as f64;
        let (Inputs::Features { values, .. }, Outputs::Values(targets)) =
            (&data.inputs, &data.outputs)
        else {
            unreachable!("forecasting examples are windows of values")
        };
        let inputs: Vec<f64> = values.iter().flatten().map(|&v| v as f64).collect();
        let targets: Vec<f64> = targets.iter().flatten().map(|&v| v as f64).collect();
        let r = ForecastReport::new(&inputs, self.window, &pred, &targets, self.horizon)?;
        let report = format!(
            "{} windows, horizon {}:\n  model                  MAE {:>10.4}  RMSE {:>10.4}\n  naive (repeat last)    MAE {:>10.4}  RMSE {:>10.4}\n  skill (1 - RMSE / naive RMSE) {:.4}",
            data.len(),
            self.horizon,
            r.model.mae,
            r.model.rmse,
            r.naive.mae,
            r.naive.rmse,
            r.skill()
        );
        Ok((
            vec![
                (format!("{prefix}rmse"), r.model.rmse),
                (format!("{prefix}mae"), r.model.mae),
                (format!("{prefix}naive_rmse"), r.naive.rmse),
                (format!("{prefix}naive_mae"), r.naive.mae),
                (format!("{prefix}skill"), r.skill()),
                (format!("{prefix}loss"), loss),
            ],
            report,
        ))
    }
    fn task_json(&self) -> serde_json::Value {
        self.task.clone()
    }
    fn save_files(&self, _dir: &Path) -> recur::Result<()> {
        Ok(())
    }
}

/// Reads the series and builds the model and the runner task; prints what it read.
pub fn task(a: &ForecastArgs, log: &mut Log) -> Result<SeqTask, String> {
    a.model.refuse_missing("a forecaster", false, true)?;
    let mode = check_model_opts(
        &a.model,
        &[
            ("--batch-size", a.batch_size),
            ("--window", a.window),
            ("--horizon", a.horizon),
            ("--stride", a.stride),
        ],
    )?;
    let mut config = SeqModelConfig::forecaster(1, a.horizon)
        .mode(mode)
        .hidden_size(a.model.hidden_size)
        .num_layers(a.model.num_layers)
        .bidirectional(a.model.bidirectional)
        .dropout(a.model.dropout)
        .cell_options(a.model.cell_options()?)
        .head(Head::PerSequence(Pooling::Last));
    config.regular = a.regular.seq("forecast", false, a.model.bidirectional)?;
    check_size(&config)?;
    check_fraction("--valid-fraction", a.valid_fraction)?;
    check_fraction("--test-fraction", a.test_fraction)?;
    if a.valid_fraction == 0.0 {
        return Err("--valid-fraction must be above 0: the best model is picked on it".into());
    }
    let (series, name) = read_series(
        "--train",
        &a.train,
        &a.column,
        a.header,
        a.skip_bad_lines,
        Some(log),
    )?;
    let n = series.len();
    let n_test = (n as f64 * a.test_fraction).round() as usize;
    let n_valid = (n as f64 * a.valid_fraction).round() as usize;
    let train_end = n.saturating_sub(n_test + n_valid);
    let valid_end = train_end + n_valid;
    let need = a.window + a.horizon;
    let short = |part: &str, len: usize| {
        format!(
            "--train {}: the {part} part has {len} values, too few for --window {} and --horizon {}; use a longer series or other fractions",
            a.train.display(),
            a.window,
            a.horizon
        )
    };
    if train_end < need {
        return Err(short("training", train_end));
    }
    if n_valid < a.horizon {
        return Err(short("validation", n_valid));
    }
    let (tx, ty) = forecast_windows(&series[..train_end], a.window, a.horizon, a.stride)
        .map_err(|e| e.to_string())?;
    let (vx, vy) = windows(&series[..valid_end], train_end, a.window, a.horizon, 1)
        .map_err(|e| e.to_string())?;
    let test = if n_test >= a.horizon {
        let (x, y) =
            windows(&series, valid_end, a.window, a.horizon, 1).map_err(|e| e.to_string())?;
        Some((
            format!("the last {n_test} values"),
            examples(&x, &y, a.window, a.horizon),
        ))
    } else {
        None
    };
    let mut model: SeqModel<f32> =
        SeqModel::new(config.clone(), a.opts.seed).map_err(|e| e.to_string())?;
    if a.normalize {
        let norm = Normalization::fit(&series[..train_end], 1).map_err(|e| e.to_string())?;
        let target =
            Normalization::new(vec![norm.mean[0]; a.horizon], vec![norm.std[0]; a.horizon])
                .map_err(|e| e.to_string())?;
        log.line(&format!(
            "standardised with the training part's mean {:.4} and deviation {:.4}",
            norm.mean[0], norm.std[0]
        ));
        model
            .set_input_norm(Some(norm))
            .map_err(|e| e.to_string())?;
        model
            .set_target_norm(Some(target))
            .map_err(|e| e.to_string())?;
    }
    let train_ex = examples(&tx, &ty, a.window, a.horizon);
    let valid_ex = examples(&vx, &vy, a.window, a.horizon);
    log.line(&format!(
        "data: {n} values of '{name}' ({}): training {train_end} values ({} windows), validation {n_valid} ({} windows), test {n_test}{}",
        a.train.display(),
        train_ex.len(),
        valid_ex.len(),
        test.as_ref().map(|(_, t)| format!(" ({} windows)", t.len())).unwrap_or_default()
    ));
    log.line(&format!(
        "model: {}; {} parameters",
        model.describe(),
        model.num_params()
    ));
    if config.regular.any() {
        log.line(&format!(
            "regularizers: {}",
            regular_opts::describe(&config.regular)
        ));
    }
    let task_json = serde_json::json!({
        "kind": "forecast",
        "column": a.column,
        "header": a.header,
        "window": a.window,
        "horizon": a.horizon,
    });
    let text: String = series.iter().map(|v| format!("{v:?}\n")).collect();
    let config_json = serde_json::json!({
        "model": config.to_json(),
        "task": task_json,
        "series": fingerprint(&text),
        "valid_fraction": a.valid_fraction,
        "test_fraction": a.test_fraction,
        "stride": a.stride,
        "batch_size": a.batch_size,
        "normalize": a.normalize,
    });
    let kind = ForecastKind {
        window: a.window,
        horizon: a.horizon,
        task: task_json,
    };
    Ok(SeqTask::new(
        Box::new(kind),
        model,
        train_ex,
        valid_ex,
        test,
        a.batch_size,
        0.0,
        a.opts.seed,
        config_json,
    ))
}

fn size(task: &serde_json::Value, k: &str) -> Result<usize, String> {
    task.get(k)
        .and_then(|v| v.as_u64())
        .map(|v| v as usize)
        .filter(|&v| v > 0)
        .ok_or_else(|| format!("config.json: task.{k} must be a positive integer"))
}

/// `recur eval` of a forecaster on a CSV file (the column it was trained on): every window
/// of the series, against the naive forecast.
pub fn eval(
    a: &crate::opts::EvalArgs,
    cfg: &recur::models::ModelConfig,
    task: &serde_json::Value,
) -> Result<Metrics, String> {
    let model = load_model(&a.model, cfg)?;
    let (window, horizon) = (size(task, "window")?, size(task, "horizon")?);
    let header = task.get("header").and_then(|v| v.as_bool()).unwrap_or(true);
    let (series, _) = read_series(
        "--data",
        &a.data,
        task_str(task, "column")?,
        header,
        false,
        None,
    )?;
    let (x, y) = forecast_windows(&series, window, horizon, 1)
        .map_err(|e| format!("--data {}: {e}", a.data.display()))?;
    let ex = examples(&x, &y, window, horizon);
    let kind = ForecastKind {
        window,
        horizon,
        task: task.clone(),
    };
    let (mut m, report) = kind
        .metrics(&model, &ex, a.batch_size, "")
        .map_err(|e| format!("--data {}: {e}", a.data.display()))?;
    eprintln!("{report}");
    m.push(("windows".into(), ex.len() as f64));
    Ok(m)
}

/// `recur predict` of a forecaster: each input line holds comma-separated values (at least
/// the window; the last `window` are read); each output line the `horizon` forecasts.
/// The forecaster of `recur predict`: each line is a series of comma-separated values (at
/// least the model's window; the last window is read), answered by the forecast of the
/// next `horizon` values.
pub fn predictor(
    a: &crate::opts::PredictArgs,
    cfg: &recur::models::ModelConfig,
    task: &serde_json::Value,
) -> Result<Box<dyn crate::opts::Predictor>, String> {
    Ok(Box::new(ForecastPredictor {
        model: load_model(&a.model, cfg)?,
        window: size(task, "window")?,
        horizon: size(task, "horizon")?,
    }))
}

struct ForecastPredictor {
    model: SeqModel<f32>,
    window: usize,
    horizon: usize,
}

impl crate::opts::Predictor for ForecastPredictor {
    fn answer(&mut self, line_no: usize, line: &str) -> Result<String, String> {
        let (window, horizon) = (self.window, self.horizon);
        let v = line
            .split(',')
            .map(|x| {
                let x = x.trim();
                x.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        crate::opts::line_error(line_no, format!("'{x}' is not a finite number"))
                    })
            })
            .collect::<Result<Vec<f64>, String>>()?;
        if v.len() < window {
            return Err(crate::opts::line_error(
                line_no,
                format!("{} values, the model reads windows of {window}", v.len()),
            ));
        }
        let ex = examples(&v[v.len() - window..], &vec![0.0; horizon], window, horizon);
        let pred =
            forecasts(&self.model, &ex, 1).map_err(|e| crate::opts::line_error(line_no, e))?;
        Ok(pred
            .iter()
            .map(|v| format!("{v:.6}"))
            .collect::<Vec<_>>()
            .join(","))
    }
}
