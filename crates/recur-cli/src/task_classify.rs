//! `recur train classify`: sequence classification. Texts (TSV or JSON Lines) are split into
//! words (or characters) and looked up in an embedding; numeric series (sktime `.ts`) are
//! standardised with the training data's mean and deviation. A recurrent stack reads each
//! sequence and a linear head classifies its final hidden state (or the mean of its outputs).
//! Evaluation reports accuracy, macro F1, per-class precision / recall / F1 and the confusion
//! matrix.
//!
//! ```text
//! recur train classify --train FILE [--valid FILE] [--test FILE] --out DIR
//!     [--format auto|tsv|jsonl|ts] [--label-column 0] [--text-column 1] [--header]
//!     [--score [--score-threshold 0]] [--label-field label] [--text-field text,...]
//!     [--valid-fraction 0.1] [--test-fraction 0] [--tokenizer words|chars] [--min-freq 2]
//!     [--cell lstm] [--hidden-size 128] [--num-layers 1] [--embed-size 100]
//!     [--bidirectional[=false]] [--pooling last|mean] [--dropout 0.3] [--batch-size 32]
//!     [training options: --lr, --optimizer, --steps/--epochs, --resume, ...]
//! ```
//!
//! `DIR` gets `model.safetensors` (PyTorch names: `embed.weight`, `rnn.weight_ih_l0`, ...,
//! `head.weight`, `head.bias`), `config.json` (with the data format under `"task"`),
//! `labels.json`, `vocab.json` (texts) or `normalization.safetensors` (series),
//! `metrics.json`, the curves and the checkpoint.

use crate::model_opts::{ModelDefaults, ModelOpts, WithModelDefaults};
use crate::regular_opts::{self, RegularArgs};
use crate::run::{Log, Metrics, TrainOpts};
use crate::shared::{fingerprint, neg_log_softmax};
use crate::task_seq::{
    check_fraction, check_model_opts, check_size, chunks, column, load_model, split, task_str,
    Examples, Inputs, Kind, Outputs, SeqTask, LABELS_FILE, VOCAB_FILE,
};
use clap::{ArgAction, Args as ClapArgs};
use recur::analysis::metrics::Confusion;
use recur::data::jsonl::LabelledJsonl;
use recur::data::tokenize::WordTokenizer;
use recur::data::ts::TsOptions;
use recur::data::tsv::{LabelledTsv, ScoreLabels};
use recur::data::{LabelSet, LabelledText, ReadReport, TokenVocab, Tokenizer};
use recur::models::seqmodel::{Head, Normalization, Pooling, SeqModel, SeqModelConfig};
use std::path::{Path, PathBuf};

/// The model options' defaults of `recur train classify`: a bidirectional layer of 128 over
/// word embeddings of 100, dropout 0.3.
const MODEL: ModelDefaults = ModelDefaults {
    hidden_size: 128,
    num_layers: 1,
    embed_size: Some(100),
    bidirectional: Some(true),
    dropout: 0.3,
    help: &[("embed_size", "Texts: size of the word embeddings")],
};

/// Options of `recur train classify`.
#[derive(ClapArgs)]
#[command(model_defaults(MODEL))]
pub struct ClassifyArgs {
    /// The training data: labelled texts (TSV, JSON Lines) or labelled series (sktime .ts).
    #[arg(long, value_name = "FILE")]
    pub train: PathBuf,
    /// The validation data (same format); by default --valid-fraction of --train is held out.
    #[arg(long, value_name = "FILE")]
    pub valid: Option<PathBuf>,
    /// Test data (same format), evaluated on the best model at the end; by default
    /// --test-fraction of --train is held out (none if 0).
    #[arg(long, value_name = "FILE")]
    pub test: Option<PathBuf>,
    /// The file format: tsv, jsonl, ts, or auto (from the extension: .ts, .jsonl/.json, else
    /// tsv).
    #[arg(long, default_value = "auto")]
    pub format: String,
    /// TSV: the column of the label (0-based index, or a name with --header).
    #[arg(long, default_value = "0")]
    pub label_column: String,
    /// TSV: the column of the text.
    #[arg(long, default_value = "1")]
    pub text_column: String,
    /// TSV: the first line names the columns.
    #[arg(long)]
    pub header: bool,
    /// TSV: the label column is a numeric score; the label is `positive` above
    /// --score-threshold, `negative` below minus it, and the rest is dropped.
    #[arg(long)]
    pub score: bool,
    /// TSV with --score: scores with |score| <= this are dropped.
    #[arg(long, default_value_t = 0.0)]
    pub score_threshold: f64,
    /// JSON Lines: the field of the label.
    #[arg(long, default_value = "label")]
    pub label_field: String,
    /// JSON Lines: the fields of the text, joined by a newline (comma-separated).
    #[arg(long, default_value = "text", value_delimiter = ',')]
    pub text_field: Vec<String>,
    /// Skip malformed lines (counted) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Without --valid: the fraction of --train held out for validation (an evenly spread,
    /// deterministic choice that does not depend on --seed).
    #[arg(long, default_value_t = 0.1)]
    pub valid_fraction: f64,
    /// Without --test: the fraction of --train held out for the final test.
    #[arg(long, default_value_t = 0.0)]
    pub test_fraction: f64,
    /// Texts: split into `words` (lowercased English words and punctuation) or `chars`.
    #[arg(long, default_value = "words")]
    pub tokenizer: String,
    /// Texts: tokens seen fewer times in training become <unk>.
    #[arg(long, default_value_t = 2)]
    pub min_freq: usize,
    /// Texts: at most this many ids in the vocabulary (the most frequent tokens).
    #[arg(long)]
    pub max_vocab: Option<usize>,
    /// Texts: keep the first N tokens of each text (0: all).
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub max_tokens: usize,
    /// Texts: in training, replace each token by <unk> with this probability.
    #[arg(long, default_value_t = 0.0)]
    pub word_dropout: f64,
    /// Series: standardise every feature with the training data's mean and deviation.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub normalize: bool,
    #[command(flatten)]
    pub model: ModelOpts,
    /// What the head classifies: `last` (the final hidden state of each direction) or `mean`
    /// (the mean output over the steps).
    #[arg(long, default_value = "last")]
    pub pooling: String,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub opts: TrainOpts,
    // The model's regularizers, a block of their own.
    #[command(flatten)]
    pub regular: RegularArgs,
}

/// How labelled data is read: saved in config.json so that `recur eval` reads alike.
#[derive(Clone, Debug, PartialEq)]
pub struct Format {
    /// `tsv`, `jsonl` or `ts`.
    pub format: String,
    pub label_column: String,
    pub text_column: String,
    pub header: bool,
    /// The score threshold, when the label column is a score.
    pub score: Option<f64>,
    pub label_field: String,
    pub text_field: Vec<String>,
    /// `words` or `chars`.
    pub tokenizer: String,
    pub max_tokens: usize,
}

impl Format {
    fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": self.format,
            "label_column": self.label_column,
            "text_column": self.text_column,
            "header": self.header,
            "score_threshold": self.score,
            "label_field": self.label_field,
            "text_field": self.text_field,
            "tokenizer": self.tokenizer,
            "max_tokens": self.max_tokens,
        })
    }

    fn from_json(t: &serde_json::Value) -> Result<Format, String> {
        let s = |k: &str| task_str(t, k).map(String::from);
        let text_field = t
            .get("text_field")
            .and_then(|v| v.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_str().map(String::from))
                    .collect::<Option<Vec<String>>>()
            })
            .ok_or("config.json: task.text_field must be a list of strings")?;
        Ok(Format {
            format: s("format")?,
            label_column: s("label_column")?,
            text_column: s("text_column")?,
            header: t.get("header").and_then(|v| v.as_bool()).unwrap_or(false),
            score: t.get("score_threshold").and_then(|v| v.as_f64()),
            label_field: s("label_field")?,
            text_field,
            tokenizer: s("tokenizer")?,
            max_tokens: t.get("max_tokens").and_then(|v| v.as_u64()).unwrap_or(0) as usize,
        })
    }

    fn tokenizer(&self) -> Tokenizer {
        match self.tokenizer.as_str() {
            "chars" => Tokenizer::Chars { lowercase: true },
            _ => Tokenizer::Words(WordTokenizer::default()),
        }
    }

    /// The tokens of a text: tokenized, cut to `max_tokens`; `<unk>` alone for a text without
    /// tokens.
    pub fn tokens(&self, text: &str) -> Vec<String> {
        let mut t = self.tokenizer().tokenize(text);
        if self.max_tokens > 0 {
            t.truncate(self.max_tokens);
        }
        if t.is_empty() {
            t.push("<unk>".into());
        }
        t
    }
}

/// The format a file name suggests: `ts`, `jsonl` or `tsv`.
fn guess_format(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("ts") => "ts",
        Some("jsonl") | Some("json") => "jsonl",
        _ => "tsv",
    }
}

/// Labelled data: texts or series.
enum Labelled {
    Texts(Vec<LabelledText>),
    /// (values (T, dims), label), with the number of dims.
    Series(Vec<(Vec<f64>, String)>, usize),
}

impl Labelled {
    fn len(&self) -> usize {
        match self {
            Labelled::Texts(t) => t.len(),
            Labelled::Series(s, _) => s.len(),
        }
    }
    fn labels(&self) -> Vec<&str> {
        match self {
            Labelled::Texts(t) => t.iter().map(|r| r.label.as_str()).collect(),
            Labelled::Series(s, _) => s.iter().map(|r| r.1.as_str()).collect(),
        }
    }
    fn subset(&self, idx: &[usize]) -> Labelled {
        match self {
            Labelled::Texts(t) => Labelled::Texts(idx.iter().map(|&i| t[i].clone()).collect()),
            Labelled::Series(s, d) => {
                Labelled::Series(idx.iter().map(|&i| s[i].clone()).collect(), *d)
            }
        }
    }
}

/// Reads labelled data in `fmt`; `flag` names the option in errors.
fn read(
    flag: &str,
    path: &Path,
    fmt: &Format,
    skip: bool,
) -> Result<(Labelled, ReadReport), String> {
    let e = |e: recur::Error| format!("{flag} {e}");
    match fmt.format.as_str() {
        "tsv" => {
            let opts = LabelledTsv {
                label: column(&fmt.label_column),
                text: column(&fmt.text_column),
                header: fmt.header,
                fields: None,
                score: fmt.score.map(|t| ScoreLabels {
                    threshold: t,
                    ..ScoreLabels::sign("positive", "negative")
                }),
                skip_bad_lines: skip,
            };
            let r = recur::data::tsv::read_labelled(path, &opts).map_err(e)?;
            Ok((Labelled::Texts(r.records), r.report))
        }
        "jsonl" => {
            let opts = LabelledJsonl {
                label: fmt.label_field.clone(),
                text: fmt.text_field.clone(),
                separator: "\n".into(),
                skip_bad_lines: skip,
            };
            let r = recur::data::jsonl::read_labelled(path, &opts).map_err(e)?;
            Ok((Labelled::Texts(r.records), r.report))
        }
        "ts" => {
            let d = recur::data::ts::read(
                path,
                &TsOptions {
                    skip_bad_lines: skip,
                },
            )
            .map_err(e)?;
            let dims = d.dims;
            let s = d.series.into_iter().map(|s| (s.values, s.label)).collect();
            Ok((Labelled::Series(s, dims), d.report))
        }
        other => Err(format!(
            "--format: unknown format '{other}' (expected auto, tsv, jsonl or ts)"
        )),
    }
}

/// The examples of `data`: token ids (unknown tokens → `<unk>`, every token replaceable by
/// `<unk>` in training) or features; classes from `labels`.
fn examples(
    data: &Labelled,
    fmt: &Format,
    vocab: Option<&TokenVocab>,
    labels: &LabelSet,
    what: &str,
) -> Result<Examples, String> {
    let classes = data
        .labels()
        .iter()
        .map(|l| labels.id(l))
        .collect::<recur::Result<Vec<usize>>>()
        .map_err(|e| format!("{what}: {e}"))?;
    let inputs = match data {
        Labelled::Texts(t) => {
            let vocab = vocab.expect("texts have a vocabulary");
            let ids: Vec<Vec<usize>> = t
                .iter()
                .map(|r| vocab.encode(&fmt.tokens(&r.text)))
                .collect();
            let alt = ids.iter().map(|s| vec![TokenVocab::UNK; s.len()]).collect();
            Inputs::Tokens { ids, alt }
        }
        Labelled::Series(s, dims) => Inputs::Features {
            values: s
                .iter()
                .map(|(v, _)| v.iter().map(|&x| x as f32).collect())
                .collect(),
            num_features: *dims,
        },
    };
    Ok(Examples {
        inputs,
        outputs: Outputs::Classes(classes),
        unknown: Vec::new(),
    })
}

/// Classification: accuracy, macro F1 and the mean cross-entropy; the report has the
/// confusion matrix and the per-class scores.
pub struct ClassifyKind {
    pub labels: LabelSet,
    pub vocab: Option<TokenVocab>,
    pub task: serde_json::Value,
}

/// The confusion matrix and mean cross-entropy of `model` on `data`.
fn confusion(
    model: &SeqModel<f32>,
    data: &Examples,
    n_classes: usize,
    batch_size: usize,
) -> recur::Result<(Confusion, f64)> {
    let mut m = Confusion::new(n_classes);
    let mut nll = 0.0;
    let Outputs::Classes(gold) = &data.outputs else {
        unreachable!("classification examples have classes")
    };
    for idx in chunks(data.len(), batch_size) {
        let (batch, _) = data.batch(&idx, None)?;
        let logits = model.forward(&batch)?;
        for (row, &i) in logits.chunks_exact(n_classes).zip(&idx) {
            let best = recur::models::seqmodel::argmax_rows(row, n_classes)[0];
            m.add(gold[i], best)?;
            nll += neg_log_softmax(row, gold[i]);
        }
    }
    Ok((m, nll / data.len().max(1) as f64))
}

impl Kind for ClassifyKind {
    fn name(&self) -> &'static str {
        "classify"
    }
    fn unit(&self) -> &'static str {
        "seq"
    }
    fn higher_is_better(&self) -> bool {
        true
    }
    fn metrics(
        &self,
        model: &SeqModel<f32>,
        data: &Examples,
        batch_size: usize,
        prefix: &str,
    ) -> recur::Result<(Metrics, String)> {
        let (m, loss) = confusion(model, data, self.labels.len(), batch_size)?;
        let names = self.labels.names();
        let report = format!(
            "accuracy {:.4} ({} of {}), macro F1 {:.4}\n{}\n{}",
            m.accuracy(),
            m.correct(),
            m.total(),
            m.macro_f1(),
            m.report(names),
            m.pretty(names)
        );
        Ok((
            vec![
                (format!("{prefix}accuracy"), m.accuracy()),
                (format!("{prefix}macro_f1"), m.macro_f1()),
                (format!("{prefix}loss"), loss),
            ],
            report,
        ))
    }
    fn final_metrics(
        &self,
        model: &SeqModel<f32>,
        data: &Examples,
        batch_size: usize,
        prefix: &str,
    ) -> recur::Result<(Metrics, String)> {
        let (mut m, report) = self.metrics(model, data, batch_size, prefix)?;
        let (c, _) = confusion(model, data, self.labels.len(), batch_size)?;
        for (k, name) in self.labels.names().iter().enumerate() {
            let s = c.scores(k);
            m.push((format!("{prefix}precision.{name}"), s.precision));
            m.push((format!("{prefix}recall.{name}"), s.recall));
            m.push((format!("{prefix}f1.{name}"), s.f1));
        }
        Ok((m, report))
    }
    fn task_json(&self) -> serde_json::Value {
        self.task.clone()
    }
    fn save_files(&self, dir: &Path) -> recur::Result<()> {
        self.labels.save(dir.join(LABELS_FILE))?;
        if let Some(v) = &self.vocab {
            v.save(dir.join(VOCAB_FILE))?;
        }
        Ok(())
    }
}

/// Reads the data and builds the model and the runner task; prints what it read.
pub fn task(a: &ClassifyArgs, log: &mut Log) -> Result<SeqTask, String> {
    let mode = check_model_opts(
        &a.model,
        &[("--batch-size", a.batch_size), ("--min-freq", a.min_freq)],
    )?;
    let smallest = |c: SeqModelConfig| {
        c.mode(mode)
            .hidden_size(a.model.hidden_size)
            .num_layers(a.model.num_layers)
            .bidirectional(a.model.bidirectional)
    };
    let series =
        a.format == "ts" || (a.format == "auto" && a.train.extension().is_some_and(|e| e == "ts"));
    check_size(&smallest(if series {
        SeqModelConfig::series_classifier(1, 2)
    } else {
        SeqModelConfig::text_classifier(1, 2).embed_size(a.model.embed())
    }))?;
    let regular = a.regular.seq("classify", !series, a.model.bidirectional)?;
    check_fraction("--valid-fraction", a.valid_fraction)?;
    check_fraction("--test-fraction", a.test_fraction)?;
    if !(0.0..1.0).contains(&a.word_dropout) {
        return Err(format!(
            "--word-dropout must be in [0, 1), got {}",
            a.word_dropout
        ));
    }
    if !(a.score_threshold.is_finite() && a.score_threshold >= 0.0) {
        return Err(format!(
            "--score-threshold must be a number >= 0, got {}",
            a.score_threshold
        ));
    }
    let pooling = match a.pooling.as_str() {
        "last" => Pooling::Last,
        "mean" => Pooling::Mean,
        other => return Err(format!("--pooling: '{other}' (expected last or mean)")),
    };
    if !["words", "chars"].contains(&a.tokenizer.as_str()) {
        return Err(format!(
            "--tokenizer: '{}' (expected words or chars)",
            a.tokenizer
        ));
    }
    let format = if a.format == "auto" {
        guess_format(&a.train).to_string()
    } else {
        a.format.clone()
    };
    let fmt = Format {
        format,
        label_column: a.label_column.clone(),
        text_column: a.text_column.clone(),
        header: a.header,
        score: a.score.then_some(a.score_threshold),
        label_field: a.label_field.clone(),
        text_field: a.text_field.clone(),
        tokenizer: a.tokenizer.clone(),
        max_tokens: a.max_tokens,
    };
    let (full, report) = read("--train", &a.train, &fmt, a.skip_bad_lines)?;
    log.line(&format!("read {report}"));
    let (train_idx, valid_idx, test_idx) = split(
        full.len(),
        if a.valid.is_some() {
            0.0
        } else {
            a.valid_fraction
        },
        if a.test.is_some() {
            0.0
        } else {
            a.test_fraction
        },
    );
    let labels = LabelSet::from_labels(full.labels()).map_err(|e| format!("--train {e}"))?;
    let train = full.subset(&train_idx);
    if train.len() == 0 {
        return Err(format!(
            "--train {}: no training examples are left after holding out validation and test data",
            a.train.display()
        ));
    }
    let mut held = |flag: &str,
                    path: &Option<PathBuf>,
                    idx: &[usize]|
     -> Result<Option<(String, Labelled)>, String> {
        match path {
            Some(p) => {
                let (d, r) = read(flag, p, &fmt, a.skip_bad_lines)?;
                log.line(&format!("read {r}"));
                Ok(Some((p.display().to_string(), d)))
            }
            None if idx.is_empty() => Ok(None),
            None => Ok(Some((
                format!("{} examples held out of {}", idx.len(), a.train.display()),
                full.subset(idx),
            ))),
        }
    };
    let (valid_name, valid) = held("--valid", &a.valid, &valid_idx)?.ok_or_else(|| {
        format!(
            "--train {}: too few examples to hold out {} for validation; give --valid FILE",
            a.train.display(),
            a.valid_fraction
        )
    })?;
    let test = held("--test", &a.test, &test_idx)?;
    let vocab = match &train {
        Labelled::Texts(t) => {
            let toks: Vec<Vec<String>> = t.iter().map(|r| fmt.tokens(&r.text)).collect();
            Some(TokenVocab::build(&toks, a.min_freq, a.max_vocab).map_err(|e| e.to_string())?)
        }
        Labelled::Series(..) => None,
    };
    let train_ex = examples(&train, &fmt, vocab.as_ref(), &labels, "--train")?;
    let valid_ex = examples(&valid, &fmt, vocab.as_ref(), &labels, "validation data")?;
    let test_ex = match &test {
        Some((name, d)) => Some((
            name.clone(),
            examples(d, &fmt, vocab.as_ref(), &labels, "test data")?,
        )),
        None => None,
    };
    let (config, input, norm) = match (&train, &vocab) {
        (Labelled::Texts(_), Some(v)) => (
            SeqModelConfig::text_classifier(v.len(), labels.len()).embed_size(a.model.embed()),
            "text",
            None,
        ),
        (Labelled::Series(s, dims), _) => {
            let rows: Vec<f64> = s.iter().flat_map(|(v, _)| v.iter().copied()).collect();
            let norm = if a.normalize {
                Some(Normalization::fit(&rows, *dims).map_err(|e| format!("--train {e}"))?)
            } else {
                None
            };
            (
                SeqModelConfig::series_classifier(*dims, labels.len()),
                "series",
                norm,
            )
        }
        _ => unreachable!("texts have a vocabulary"),
    };
    let mut config = config
        .mode(mode)
        .hidden_size(a.model.hidden_size)
        .num_layers(a.model.num_layers)
        .bidirectional(a.model.bidirectional)
        .dropout(a.model.dropout)
        .cell_options(a.model.cell_options()?)
        .head(Head::PerSequence(pooling));
    config.regular = regular;
    check_size(&config)?;
    let mut model: SeqModel<f32> =
        SeqModel::new(config.clone(), a.opts.seed).map_err(|e| e.to_string())?;
    model.set_input_norm(norm).map_err(|e| e.to_string())?;
    let counts = |l: &Labelled| -> String {
        let mut c = vec![0usize; labels.len()];
        for x in l.labels() {
            if let Ok(k) = labels.id(x) {
                c[k] += 1;
            }
        }
        labels
            .names()
            .iter()
            .zip(&c)
            .map(|(n, k)| format!("{n} {k}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    log.line(&format!(
        "data: {} training examples ({}), {} validation ({valid_name}){}; {} classes",
        train.len(),
        counts(&train),
        valid.len(),
        test.as_ref()
            .map(|(n, d)| format!(", {} test ({n})", d.len()))
            .unwrap_or_default(),
        labels.len()
    ));
    if let Some(v) = &vocab {
        let (unk, total) = match &valid_ex.inputs {
            Inputs::Tokens { ids, .. } => (
                ids.iter()
                    .flatten()
                    .filter(|&&i| i == TokenVocab::UNK)
                    .count(),
                ids.iter().map(|s| s.len()).sum::<usize>(),
            ),
            _ => (0, 0),
        };
        log.line(&format!(
            "vocabulary: {} {} (min frequency {}); {unk} of {total} validation tokens are <unk>",
            v.len(),
            fmt.tokenizer,
            a.min_freq
        ));
    }
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
    let mut task_json = fmt.json();
    task_json["kind"] = "classify".into();
    task_json["input"] = input.into();
    let fingerprints = |l: &Labelled| -> String {
        match l {
            Labelled::Texts(t) => fingerprint(
                &t.iter()
                    .map(|r| format!("{}\t{}", r.label, r.text))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
            Labelled::Series(s, _) => fingerprint(
                &s.iter()
                    .map(|(v, l)| format!("{l}:{v:?}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            ),
        }
    };
    let config_json = serde_json::json!({
        "model": config.to_json(),
        "task": task_json,
        "train": fingerprints(&train),
        "valid": fingerprints(&valid),
        "batch_size": a.batch_size,
        "min_freq": a.min_freq,
        "max_vocab": a.max_vocab,
        "word_dropout": a.word_dropout,
        "normalize": a.normalize,
    });
    let kind = ClassifyKind {
        labels,
        vocab,
        task: task_json,
    };
    Ok(SeqTask::new(
        Box::new(kind),
        model,
        train_ex,
        valid_ex,
        test_ex,
        a.batch_size,
        a.word_dropout,
        a.opts.seed,
        config_json,
    ))
}

/// The model directory's labels and vocabulary.
fn load_files(dir: &Path, fmt_input: &str) -> Result<(LabelSet, Option<TokenVocab>), String> {
    let labels = LabelSet::load(dir.join(LABELS_FILE)).map_err(|e| e.to_string())?;
    let vocab = if fmt_input == "text" {
        Some(TokenVocab::load(dir.join(VOCAB_FILE)).map_err(|e| e.to_string())?)
    } else {
        None
    };
    Ok((labels, vocab))
}

/// `recur eval` of a classifier: accuracy, macro F1 and loss on a data file read as in
/// training; the per-class report and the confusion matrix go to stderr.
pub fn eval(
    a: &crate::opts::EvalArgs,
    cfg: &recur::models::ModelConfig,
    task: &serde_json::Value,
) -> Result<Metrics, String> {
    let fmt = Format::from_json(task)?;
    let model = load_model(&a.model, cfg)?;
    let (labels, vocab) = load_files(&a.model, task_str(task, "input")?)?;
    let (data, report) = read("--data", &a.data, &fmt, false)?;
    eprintln!("read {report}");
    let ex = examples(
        &data,
        &fmt,
        vocab.as_ref(),
        &labels,
        &format!("--data {}", a.data.display()),
    )?;
    let kind = ClassifyKind {
        labels,
        vocab,
        task: task.clone(),
    };
    let (mut m, report) = kind
        .metrics(&model, &ex, a.batch_size, "")
        .map_err(|e| format!("--data {}: {e}", a.data.display()))?;
    eprintln!("{report}");
    m.push(("examples".into(), ex.len() as f64));
    Ok(m)
}

/// Parses one series for `recur predict`: dimensions separated by `:`, values by `,` (the
/// data lines of a `.ts` file, without the label).
fn parse_series(line: &str, dims: usize, k: usize) -> Result<Vec<f32>, String> {
    let parts: Vec<&str> = line.trim().split(':').collect();
    if parts.len() != dims {
        return Err(format!(
            "input line {k}: expected {dims} dimensions separated by ':', found {}",
            parts.len()
        ));
    }
    let mut cols: Vec<Vec<f32>> = Vec::with_capacity(dims);
    for (d, p) in parts.iter().enumerate() {
        let v = p
            .split(',')
            .map(|x| {
                let x = x.trim();
                x.parse::<f32>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        format!("input line {k}, dimension {d}: '{x}' is not a finite number")
                    })
            })
            .collect::<Result<Vec<f32>, String>>()?;
        cols.push(v);
    }
    let t = cols[0].len();
    if let Some(d) = cols.iter().position(|c| c.len() != t) {
        return Err(format!(
            "input line {k}: dimension {d} has {} values, dimension 0 has {t}",
            cols[d].len()
        ));
    }
    Ok((0..t)
        .flat_map(|i| cols.iter().map(move |c| c[i]))
        .collect())
}

/// `recur predict` of a classifier: one input per line (a text, or a series as
/// `v,v,...:v,v,...` with one group per dimension), one `label<TAB>probability` per line.
/// The classifier of `recur predict`: each line is a text (or a series, `v,v,...:v,v,...`
/// one part per feature), answered by `label<TAB>probability`. An empty line is an error
/// for that line.
pub fn predictor(
    a: &crate::opts::PredictArgs,
    cfg: &recur::models::ModelConfig,
    task: &serde_json::Value,
) -> Result<Box<dyn crate::opts::Predictor>, String> {
    let fmt = Format::from_json(task)?;
    let model = load_model(&a.model, cfg)?;
    let input = task_str(task, "input")?;
    let (labels, vocab) = load_files(&a.model, input)?;
    if vocab.is_none()
        && !matches!(
            model.config().input,
            recur::models::seqmodel::InputKind::Features { .. }
        )
    {
        return Err("config.json: a text classifier without a vocabulary".into());
    }
    Ok(Box::new(ClassifyPredictor {
        fmt,
        model,
        labels,
        vocab,
    }))
}

struct ClassifyPredictor {
    fmt: Format,
    model: SeqModel<f32>,
    labels: LabelSet,
    vocab: Option<TokenVocab>,
}

impl crate::opts::Predictor for ClassifyPredictor {
    fn answer(&mut self, line_no: usize, line: &str) -> Result<String, String> {
        if line.trim().is_empty() {
            return Err(crate::opts::line_error(
                line_no,
                "empty input: nothing to classify",
            ));
        }
        let n_classes = self.labels.len();
        let inputs = match (&self.vocab, self.model.config().input) {
            (Some(v), _) => Inputs::Tokens {
                ids: vec![v.encode(&self.fmt.tokens(line))],
                alt: Vec::new(),
            },
            (None, recur::models::seqmodel::InputKind::Features { num_features }) => {
                Inputs::Features {
                    values: vec![parse_series(line, num_features, line_no)?],
                    num_features,
                }
            }
            _ => unreachable!("checked when the predictor was made"),
        };
        let ex = Examples {
            inputs,
            outputs: Outputs::Classes(vec![0]),
            unknown: Vec::new(),
        };
        let fail = |e: recur::Error| crate::opts::line_error(line_no, e);
        let (batch, _) = ex.batch(&[0], None).map_err(fail)?;
        let logits = self.model.forward(&batch).map_err(fail)?;
        let row = &logits[..n_classes];
        let k = recur::models::seqmodel::argmax_rows(row, n_classes)[0];
        let p = (-neg_log_softmax(row, k)).exp();
        Ok(format!("{}\t{p:.4}", self.labels.name(k).unwrap_or("?")))
    }
}
