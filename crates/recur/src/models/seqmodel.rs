//! Sequence models for classification, tagging and forecasting: [`SeqModel`], an input layer →
//! [`Rnn`] (any cell, stacked, bidirectional, dropout between layers) → dropout → a linear
//! head.
//!
//! - **Input**: token ids through an [`Embedding`] (text), or numeric features used directly,
//!   optionally standardised with a mean and standard deviation measured on the training data
//!   ([`Normalization`]).
//! - **Head**: per sequence (many-to-one: the last layer's final hidden state, both directions
//!   concatenated, or the mean of its outputs over the valid steps), or per step
//!   (many-to-many: the output at every valid step).
//! - **Loss**: softmax cross-entropy over classes, or mean squared error (regression;
//!   forecasting predicts the next values of a series from a window, [`forecast_windows`]).
//!
//! Sequences of different lengths are padded into a [`SeqBatch`] and their lengths passed to
//! the recurrent stack, so nothing is computed on padding.
//!
//! ```
//! use recur::models::seqmodel::{SeqBatch, SeqModel, SeqModelConfig, Targets};
//! use recur::nn::{Adam, AdamConfig};
//!
//! // Is there a 3 in the sequence? Token ids 0..5, two classes.
//! let seqs: Vec<Vec<usize>> = vec![vec![1, 3, 2], vec![4, 4], vec![2, 1, 1, 0], vec![3]];
//! let labels = vec![1, 0, 0, 1];
//! let batch = SeqBatch::<f32>::from_tokens(&seqs).unwrap();
//! let targets = Targets::Classes(labels.clone());
//! let config = SeqModelConfig::text_classifier(5, 2).embed_size(8).hidden_size(16);
//! let mut model: SeqModel<f32> = SeqModel::new(config, 0).unwrap();
//! let mut opt = Adam::new(model.num_params(), AdamConfig::default().lr(0.05));
//! let mut grads = model.zeros_like_grads();
//! for _ in 0..60 {
//!     grads.zero();
//!     model.loss_and_grad(&batch, &targets, None, &mut grads).unwrap();
//!     opt.step_parts(&mut model.parts(&grads));
//! }
//! assert_eq!(model.classify(&batch).unwrap(), labels);
//! ```

use crate::core::config::{CellOptions, Mode, RnnConfig};
use crate::core::regular::{LayerMasks, Masks};
use crate::core::rnn::{Dropout, Rnn, Tape};
use crate::core::tensor::Tensor;
use crate::error::{fmt_shape, Error, Result};
use crate::io::state_dict::{describe, write_tensors, OutTensor, TensorFile};
use crate::models::grads::EmbedRnnHeadGrads;
pub use crate::models::lm::LmRegularizers;
use crate::models::rows::RowMasks;
use crate::models::ModelKind;
use crate::nn::{softmax_cross_entropy, Embedding, Linear, DEFAULT_IGNORE_INDEX};
use rand::{Rng, RngCore};
use recur_kernels::Real;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The target of a position that does not count in the loss (PyTorch's `ignore_index`).
pub const IGNORE: usize = usize::MAX;

pub use crate::models::{CONFIG_FILE, WEIGHTS_FILE};
/// The file of the standardisation statistics (f64 tensors `input.mean`, `input.std`,
/// `target.mean`, `target.std`), in a model directory that has them.
pub const NORMALIZATION_FILE: &str = "normalization.safetensors";

/// What a [`SeqModel`] reads at every step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// Token ids in `0..vocab_size`, looked up in an embedding of `embed_size`.
    Tokens {
        /// Rows of the embedding.
        vocab_size: usize,
        /// Size of each embedding vector, the input size of the recurrent stack.
        embed_size: usize,
    },
    /// `num_features` numbers per step, fed to the recurrent stack directly.
    Features {
        /// Numbers per step.
        num_features: usize,
    },
}

impl InputKind {
    /// The input size of the recurrent stack.
    pub fn rnn_input_size(&self) -> usize {
        match *self {
            InputKind::Tokens { embed_size, .. } => embed_size,
            InputKind::Features { num_features } => num_features,
        }
    }
}

/// How a per-sequence head summarises the recurrent outputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pooling {
    /// The last layer's final hidden state `h_n`: for a bidirectional stack the forward
    /// direction's state after the last valid step and the backward direction's state after
    /// the first, concatenated (`torch.cat([h_n[-2], h_n[-1]], 1)`).
    Last,
    /// The mean of the last layer's outputs over the valid steps.
    Mean,
}

/// Where the head makes its predictions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    /// One prediction per sequence (many-to-one): classification, forecasting.
    PerSequence(Pooling),
    /// One prediction per valid step (many-to-many, aligned): tagging.
    PerStep,
}

/// The training loss.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Loss {
    /// `F.cross_entropy` over `output_size` classes (mean over the counted targets).
    CrossEntropy,
    /// `F.mse_loss` over `output_size` values per prediction (mean over every value), on
    /// standardised targets when the model has a target [`Normalization`].
    Mse,
}

/// The shape of a [`SeqModel`].
#[derive(Clone, Debug, PartialEq)]
pub struct SeqModelConfig {
    /// The input layer.
    pub input: InputKind,
    /// The recurrent cell.
    pub mode: Mode,
    /// Hidden size of every recurrent layer (per direction).
    pub hidden_size: usize,
    /// Recurrent layers.
    pub num_layers: usize,
    /// Whether every layer also runs backwards (outputs of both directions concatenated).
    pub bidirectional: bool,
    /// Dropout probability, in training, between recurrent layers and on the head's input.
    pub dropout: f64,
    /// Per sequence or per step.
    pub head: Head,
    /// Cross-entropy or mean squared error.
    pub loss: Loss,
    /// Classes (cross-entropy) or values (regression) predicted each time.
    pub output_size: usize,
    /// The regularizers beyond dropout (all off by default), the language model's set
    /// ([`LmRegularizers`]): those inside the recurrent layers ([`crate::core::regular`]:
    /// unidirectional stacks only), embedding dropout (token inputs only), and the AR/TAR
    /// loss terms on the last layer's output sequence (before the head's dropout, at the
    /// valid steps; TAR between consecutive valid steps of each sequence).
    pub regular: LmRegularizers,
    /// The cell variants of the recurrent stack (PyTorch's cells by default).
    pub cell_options: CellOptions,
}

impl SeqModelConfig {
    /// A configuration with an LSTM of 1 layer of 128, one direction, no dropout.
    pub fn new(input: InputKind, head: Head, loss: Loss, output_size: usize) -> SeqModelConfig {
        SeqModelConfig {
            input,
            mode: Mode::Lstm,
            hidden_size: 128,
            num_layers: 1,
            bidirectional: false,
            dropout: 0.0,
            head,
            loss,
            output_size,
            regular: LmRegularizers::default(),
            cell_options: CellOptions::default(),
        }
    }
    /// Text classification: token ids (embeddings of 64) → final hidden state → classes.
    pub fn text_classifier(vocab_size: usize, num_classes: usize) -> SeqModelConfig {
        SeqModelConfig::new(
            InputKind::Tokens {
                vocab_size,
                embed_size: 64,
            },
            Head::PerSequence(Pooling::Last),
            Loss::CrossEntropy,
            num_classes,
        )
    }
    /// Tagging: token ids (embeddings of 64) → a bidirectional stack → one class per token.
    pub fn tagger(vocab_size: usize, num_tags: usize) -> SeqModelConfig {
        SeqModelConfig::new(
            InputKind::Tokens {
                vocab_size,
                embed_size: 64,
            },
            Head::PerStep,
            Loss::CrossEntropy,
            num_tags,
        )
        .bidirectional(true)
    }
    /// Classification of numeric sequences: features → final hidden state → classes.
    pub fn series_classifier(num_features: usize, num_classes: usize) -> SeqModelConfig {
        SeqModelConfig::new(
            InputKind::Features { num_features },
            Head::PerSequence(Pooling::Last),
            Loss::CrossEntropy,
            num_classes,
        )
    }
    /// Forecasting: a window of features → final hidden state → the next `horizon` values
    /// (mean squared error).
    pub fn forecaster(num_features: usize, horizon: usize) -> SeqModelConfig {
        SeqModelConfig::new(
            InputKind::Features { num_features },
            Head::PerSequence(Pooling::Last),
            Loss::Mse,
            horizon,
        )
    }
    /// Sets `mode`.
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }
    /// Sets `hidden_size`.
    pub fn hidden_size(mut self, n: usize) -> Self {
        self.hidden_size = n;
        self
    }
    /// Sets `num_layers`.
    pub fn num_layers(mut self, n: usize) -> Self {
        self.num_layers = n;
        self
    }
    /// Sets `bidirectional`.
    pub fn bidirectional(mut self, b: bool) -> Self {
        self.bidirectional = b;
        self
    }
    /// Sets the cell variants of the recurrent stack ([`CellOptions`]).
    pub fn cell_options(mut self, o: CellOptions) -> Self {
        self.cell_options = o;
        self
    }
    /// Sets `dropout`.
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }
    /// Sets the embedding size of a token input (no effect on a feature input).
    pub fn embed_size(mut self, n: usize) -> Self {
        if let InputKind::Tokens { embed_size, .. } = &mut self.input {
            *embed_size = n;
        }
        self
    }
    /// Sets `head`.
    pub fn head(mut self, head: Head) -> Self {
        self.head = head;
        self
    }
    /// Sets `loss`.
    pub fn loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    /// 2 if bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
    /// The size of the head's input: directions × hidden size.
    pub fn feature_size(&self) -> usize {
        self.num_directions() * self.hidden_size
    }

    /// Checks every size is positive and `dropout` is in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        match self.input {
            InputKind::Tokens {
                vocab_size,
                embed_size,
            } => {
                if vocab_size == 0 {
                    return bad("vocab_size must be at least 1".into());
                }
                if embed_size == 0 {
                    return bad("embed_size must be at least 1".into());
                }
            }
            InputKind::Features { num_features } => {
                if num_features == 0 {
                    return bad("num_features must be at least 1".into());
                }
            }
        }
        if self.hidden_size == 0 {
            return bad("hidden_size must be at least 1".into());
        }
        if self.num_layers == 0 {
            return bad("num_layers must be at least 1".into());
        }
        if self.output_size == 0 {
            return bad(match self.loss {
                Loss::CrossEntropy => "a classifier needs at least 1 class (output_size 0)".into(),
                Loss::Mse => "output_size must be at least 1".into(),
            });
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        let r = &self.regular;
        if !(0.0..1.0).contains(&r.embed_dropout) {
            return bad(format!(
                "embed_dropout must be in [0, 1), got {}",
                r.embed_dropout
            ));
        }
        if r.embed_dropout > 0.0 && matches!(self.input, InputKind::Features { .. }) {
            return bad(
                "embed_dropout applies to a model of token ids; this one reads numeric features (no embedding)"
                    .into(),
            );
        }
        for (name, v) in [("ar", r.ar), ("tar", r.tar)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be a number >= 0, got {v}"));
            }
        }
        self.rnn_config().validate()
    }

    /// True when a training pass draws random masks: dropout or a random regularizer.
    pub fn is_random(&self) -> bool {
        let r = &self.regular;
        self.dropout > 0.0
            || r.input_dropout > 0.0
            || r.recurrent_dropout > 0.0
            || r.zoneout > 0.0
            || r.weight_drop > 0.0
            || r.embed_dropout > 0.0
    }

    /// The recurrent stack: `nn.<cell>(input, hidden_size, num_layers, dropout,
    /// bidirectional, batch_first=True)`.
    pub fn rnn_config(&self) -> RnnConfig {
        let r = &self.regular;
        RnnConfig::new(self.mode, self.input.rnn_input_size(), self.hidden_size)
            .num_layers(self.num_layers)
            .bidirectional(self.bidirectional)
            .dropout(self.dropout)
            .batch_first(true)
            .layer_norm(r.layer_norm)
            .input_dropout(r.input_dropout)
            .recurrent_dropout(r.recurrent_dropout)
            .zoneout(r.zoneout)
            .weight_drop(r.weight_drop)
            .locked_dropout(r.locked_dropout)
            .cell_options(self.cell_options.clone())
    }

    /// The configuration as a JSON object: `{"model": "seq_model", "input": "tokens" |
    /// "features", "vocab_size", "embed_size" | "num_features", "cell", "hidden_size",
    /// "num_layers", "bidirectional", "dropout", "head": "sequence" | "step", "pooling":
    /// "last" | "mean" (per-sequence heads), "loss": "cross_entropy" | "mse",
    /// "output_size"}` and the regularizers that are on (`"layer_norm": true`,
    /// `"zoneout": 0.1`, ..., the keys of the language model's) ([`crate::models::config_json`]
    /// of its serde form).
    pub fn to_json(&self) -> serde_json::Value {
        crate::models::config_json(ModelKind::SeqModel, &SeqModelFile::from(self))
    }

    /// Reads the object of [`SeqModelConfig::to_json`] (other keys are ignored;
    /// [`crate::models::parse_config`]) and checks it; `source` names it in error messages.
    pub fn from_json(v: &serde_json::Value, source: &str) -> Result<SeqModelConfig> {
        let f: SeqModelFile = crate::models::parse_config(v, ModelKind::SeqModel, source)?;
        let c = SeqModelConfig::try_from(f).map_err(|m| Error::Input(format!("{source}: {m}")))?;
        c.validate()
            .map_err(|e| Error::Input(format!("{source}: {e}")))?;
        Ok(c)
    }
}

/// The input of a [`SeqModelConfig`] in `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum InputName {
    Tokens,
    Features,
}

/// The head of a [`SeqModelConfig`] in `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum HeadName {
    Sequence,
    Step,
}

/// The pooling of a per-sequence head in `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PoolingName {
    Last,
    Mean,
}

/// The loss in `config.json`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum LossName {
    CrossEntropy,
    Mse,
}

/// A [`SeqModelConfig`] as `config.json` holds it: one flat object, the sizes of the input
/// kind beside `"input"`, `"pooling"` beside a per-sequence `"head"`. Directories from before
/// `"bidirectional"` and `"dropout"` were written read them as false and 0, and those from
/// before the regularizers had none (each key is written only when it is on).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct SeqModelFile {
    input: InputName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vocab_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    embed_size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    num_features: Option<usize>,
    #[serde(with = "crate::models::by_name")]
    cell: Mode,
    hidden_size: usize,
    num_layers: usize,
    #[serde(default)]
    bidirectional: bool,
    #[serde(default)]
    dropout: f64,
    head: HeadName,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pooling: Option<PoolingName>,
    loss: LossName,
    output_size: usize,
    #[serde(default, skip_serializing_if = "CellOptions::is_default")]
    cell_options: CellOptions,
    #[serde(default, skip_serializing_if = "is_false")]
    layer_norm: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    input_dropout: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    recurrent_dropout: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    zoneout: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    weight_drop: f64,
    #[serde(default, skip_serializing_if = "is_false")]
    locked_dropout: bool,
    #[serde(default, skip_serializing_if = "is_zero")]
    embed_dropout: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    ar: f64,
    #[serde(default, skip_serializing_if = "is_zero")]
    tar: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_false(x: &bool) -> bool {
    !*x
}

impl From<&SeqModelConfig> for SeqModelFile {
    fn from(c: &SeqModelConfig) -> SeqModelFile {
        let (input, vocab_size, embed_size, num_features) = match c.input {
            InputKind::Tokens {
                vocab_size,
                embed_size,
            } => (InputName::Tokens, Some(vocab_size), Some(embed_size), None),
            InputKind::Features { num_features } => {
                (InputName::Features, None, None, Some(num_features))
            }
        };
        let (head, pooling) = match c.head {
            Head::PerSequence(Pooling::Last) => (HeadName::Sequence, Some(PoolingName::Last)),
            Head::PerSequence(Pooling::Mean) => (HeadName::Sequence, Some(PoolingName::Mean)),
            Head::PerStep => (HeadName::Step, None),
        };
        SeqModelFile {
            input,
            vocab_size,
            embed_size,
            num_features,
            cell: c.mode,
            hidden_size: c.hidden_size,
            num_layers: c.num_layers,
            bidirectional: c.bidirectional,
            dropout: c.dropout,
            head,
            pooling,
            loss: match c.loss {
                Loss::CrossEntropy => LossName::CrossEntropy,
                Loss::Mse => LossName::Mse,
            },
            output_size: c.output_size,
            layer_norm: c.regular.layer_norm,
            input_dropout: c.regular.input_dropout,
            recurrent_dropout: c.regular.recurrent_dropout,
            zoneout: c.regular.zoneout,
            weight_drop: c.regular.weight_drop,
            locked_dropout: c.regular.locked_dropout,
            embed_dropout: c.regular.embed_dropout,
            ar: c.regular.ar,
            tar: c.regular.tar,
            cell_options: c.cell_options.clone(),
        }
    }
}

impl TryFrom<SeqModelFile> for SeqModelConfig {
    type Error = String;
    /// An error names the field the input kind or the head needs and does not have.
    fn try_from(f: SeqModelFile) -> std::result::Result<SeqModelConfig, String> {
        let need = |v: Option<usize>, k: &str, of: &str| {
            v.ok_or_else(|| format!("missing field \"{k}\" (of {of})"))
        };
        let input = match f.input {
            InputName::Tokens => InputKind::Tokens {
                vocab_size: need(f.vocab_size, "vocab_size", "\"input\": \"tokens\"")?,
                embed_size: need(f.embed_size, "embed_size", "\"input\": \"tokens\"")?,
            },
            InputName::Features => InputKind::Features {
                num_features: need(f.num_features, "num_features", "\"input\": \"features\"")?,
            },
        };
        let head = match (f.head, f.pooling) {
            (HeadName::Step, _) => Head::PerStep,
            (HeadName::Sequence, Some(PoolingName::Last)) => Head::PerSequence(Pooling::Last),
            (HeadName::Sequence, Some(PoolingName::Mean)) => Head::PerSequence(Pooling::Mean),
            (HeadName::Sequence, None) => {
                return Err("missing field \"pooling\" (of \"head\": \"sequence\")".into())
            }
        };
        Ok(SeqModelConfig {
            input,
            mode: f.cell,
            hidden_size: f.hidden_size,
            num_layers: f.num_layers,
            bidirectional: f.bidirectional,
            dropout: f.dropout,
            head,
            loss: match f.loss {
                LossName::CrossEntropy => Loss::CrossEntropy,
                LossName::Mse => Loss::Mse,
            },
            output_size: f.output_size,
            regular: LmRegularizers {
                layer_norm: f.layer_norm,
                input_dropout: f.input_dropout,
                recurrent_dropout: f.recurrent_dropout,
                zoneout: f.zoneout,
                weight_drop: f.weight_drop,
                locked_dropout: f.locked_dropout,
                embed_dropout: f.embed_dropout,
                ar: f.ar,
                tar: f.tar,
            },
            cell_options: f.cell_options,
        })
    }
}

/// The standardisation flags of a [`SeqModel`]'s `config.json` (written by [`save_dir`];
/// directories without them have no statistics).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct NormalizationFlags {
    #[serde(default)]
    input_normalization: bool,
    #[serde(default)]
    target_normalization: bool,
}

/// Per-column standardisation `(x - mean) / std`, with statistics measured on training data.
#[derive(Clone, Debug, PartialEq)]
pub struct Normalization {
    /// (size): the mean of every column.
    pub mean: Vec<f64>,
    /// (size): the standard deviation of every column (1 for a constant column).
    pub std: Vec<f64>,
}

impl Normalization {
    /// The mean and (population) standard deviation of every column of `rows`, (n, size);
    /// a column whose deviation is below 1e-12 of its scale gets 1 (it is only centred).
    /// An error if there are no rows or a value is not finite.
    pub fn fit<T: Real>(rows: &[T], size: usize) -> Result<Normalization> {
        if size == 0 || rows.is_empty() || !rows.len().is_multiple_of(size) {
            return Err(Error::Input(format!(
                "normalisation: expected rows of {size} values, got {} values",
                rows.len()
            )));
        }
        if let Some(k) = rows.iter().position(|v| !v.is_finite()) {
            return Err(Error::Input(format!(
                "normalisation: value {k} (row {}, column {}) is not finite",
                k / size,
                k % size
            )));
        }
        let n = (rows.len() / size) as f64;
        let mut mean = vec![0.0f64; size];
        for row in rows.chunks_exact(size) {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += x.to_f64();
            }
        }
        for m in mean.iter_mut() {
            *m /= n;
        }
        let mut var = vec![0.0f64; size];
        for row in rows.chunks_exact(size) {
            for ((s, x), m) in var.iter_mut().zip(row).zip(&mean) {
                let d = x.to_f64() - m;
                *s += d * d;
            }
        }
        let std = var
            .iter()
            .zip(&mean)
            .map(|(&s, &m)| {
                let sd = (s / n).sqrt();
                if sd > 1e-12 * m.abs().max(1.0) {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Normalization { mean, std })
    }

    /// Statistics given directly; an error if the lengths differ or a deviation is not a
    /// positive finite number.
    pub fn new(mean: Vec<f64>, std: Vec<f64>) -> Result<Normalization> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(Error::Input(format!(
                "normalisation: {} means and {} standard deviations",
                mean.len(),
                std.len()
            )));
        }
        if let Some(k) = mean.iter().position(|m| !m.is_finite()) {
            return Err(Error::Input(format!(
                "normalisation: mean[{k}] = {} is not finite",
                mean[k]
            )));
        }
        if let Some(k) = std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(Error::Input(format!(
                "normalisation: std[{k}] = {} must be a positive number",
                std[k]
            )));
        }
        Ok(Normalization { mean, std })
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.mean.len()
    }
    /// Whether there are no columns (never, for a checked value).
    pub fn is_empty(&self) -> bool {
        self.mean.is_empty()
    }

    /// Standardises every row of `x`, (n, size), in place.
    pub fn apply<T: Real>(&self, x: &mut [T]) {
        let n = self.len();
        for row in x.chunks_exact_mut(n) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = T::from_f64((v.to_f64() - m) / s);
            }
        }
    }

    /// Undoes [`Normalization::apply`] on every row of `x`, (n, size), in place.
    pub fn invert<T: Real>(&self, x: &mut [T]) {
        let n = self.len();
        for row in x.chunks_exact_mut(n) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = T::from_f64(v.to_f64() * s + m);
            }
        }
    }
}

/// The inputs of a batch, padded to the longest sequence, batch-major.
#[derive(Clone, Debug, PartialEq)]
pub enum SeqInput<T> {
    /// (B, T) token ids; the ids at padded positions are never read.
    Tokens(Vec<usize>),
    /// (B, T, F) values; the values at padded positions are never read.
    Features(Vec<T>),
}

/// A batch of sequences of different lengths, padded to the longest.
#[derive(Clone, Debug, PartialEq)]
pub struct SeqBatch<T> {
    input: SeqInput<T>,
    lengths: Vec<usize>,
    steps: usize,
    num_features: usize,
}

impl<T: Real> SeqBatch<T> {
    /// A batch of token sequences (each at least one token), padded with id 0.
    pub fn from_tokens<S: AsRef<[usize]>>(seqs: &[S]) -> Result<SeqBatch<T>> {
        let lengths: Vec<usize> = seqs.iter().map(|s| s.as_ref().len()).collect();
        let steps = check_lengths(&lengths)?;
        let mut ids = vec![0usize; seqs.len() * steps];
        for (row, s) in ids.chunks_exact_mut(steps).zip(seqs) {
            row[..s.as_ref().len()].copy_from_slice(s.as_ref());
        }
        Ok(SeqBatch {
            input: SeqInput::Tokens(ids),
            lengths,
            steps,
            num_features: 0,
        })
    }

    /// A batch of numeric sequences, each (T_b, num_features) row-major with T_b ≥ 1, padded
    /// with zeros; an error if a length is not a multiple of `num_features` or a value is not
    /// finite.
    pub fn from_features<S: AsRef<[T]>>(seqs: &[S], num_features: usize) -> Result<SeqBatch<T>> {
        if num_features == 0 {
            return Err(Error::Input("num_features must be at least 1".into()));
        }
        let mut lengths = Vec::with_capacity(seqs.len());
        for (b, s) in seqs.iter().enumerate() {
            let s = s.as_ref();
            if s.len() % num_features != 0 {
                return Err(Error::Input(format!(
                    "sequence {b}: {} values is not a whole number of steps of {num_features} features",
                    s.len()
                )));
            }
            if let Some(k) = s.iter().position(|v| !v.is_finite()) {
                return Err(Error::Input(format!(
                    "sequence {b}: step {}, feature {} is not finite ({})",
                    k / num_features,
                    k % num_features,
                    s[k].to_f64()
                )));
            }
            lengths.push(s.len() / num_features);
        }
        let steps = check_lengths(&lengths)?;
        let row = steps * num_features;
        let mut x = vec![T::ZERO; seqs.len() * row];
        for (dst, s) in x.chunks_exact_mut(row).zip(seqs) {
            dst[..s.as_ref().len()].copy_from_slice(s.as_ref());
        }
        Ok(SeqBatch {
            input: SeqInput::Features(x),
            lengths,
            steps,
            num_features,
        })
    }

    /// A batch from padded inputs: `input` (B, steps) ids or (B, steps, num_features)
    /// values, and one length in `1..=steps` per sequence.
    pub fn new(
        input: SeqInput<T>,
        lengths: Vec<usize>,
        steps: usize,
        num_features: usize,
    ) -> Result<SeqBatch<T>> {
        let max = check_lengths(&lengths)?;
        if max > steps {
            return Err(Error::Input(format!(
                "lengths: a sequence has {max} steps, more than the batch's {steps}"
            )));
        }
        let b = lengths.len();
        let (got, want, shape) = match &input {
            SeqInput::Tokens(ids) => (ids.len(), b * steps, vec![b, steps]),
            SeqInput::Features(v) => {
                if num_features == 0 {
                    return Err(Error::Input("num_features must be at least 1".into()));
                }
                (
                    v.len(),
                    b * steps * num_features,
                    vec![b, steps, num_features],
                )
            }
        };
        if got != want {
            return Err(Error::Input(format!(
                "input: expected shape {} ({want} values), got {got} values",
                fmt_shape(&shape)
            )));
        }
        let num_features = match input {
            SeqInput::Tokens(_) => 0,
            SeqInput::Features(_) => num_features,
        };
        Ok(SeqBatch {
            input,
            lengths,
            steps,
            num_features,
        })
    }

    /// The padded inputs.
    pub fn input(&self) -> &SeqInput<T> {
        &self.input
    }
    /// The length of every sequence, (B).
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }
    /// The padded length T (the longest sequence).
    pub fn steps(&self) -> usize {
        self.steps
    }
    /// The number of sequences B.
    pub fn batch_size(&self) -> usize {
        self.lengths.len()
    }
    /// The number of valid steps, Σ lengths.
    pub fn num_valid(&self) -> usize {
        self.lengths.iter().sum()
    }
    /// Features per step (0 for tokens).
    pub fn num_features(&self) -> usize {
        self.num_features
    }
}

/// Checks there is at least one sequence and every length is positive; returns the longest.
fn check_lengths(lengths: &[usize]) -> Result<usize> {
    if lengths.is_empty() {
        return Err(Error::Input("the batch has no sequences".into()));
    }
    if let Some(b) = lengths.iter().position(|&l| l == 0) {
        return Err(Error::Input(format!(
            "sequence {b} is empty: every sequence needs at least one step"
        )));
    }
    Ok(*lengths.iter().max().unwrap())
}

/// What a batch should predict.
#[derive(Clone, Debug, PartialEq)]
pub enum Targets<T> {
    /// Class ids in `0..output_size`, or [`IGNORE`]: (B) for a per-sequence head, (B, T)
    /// for a per-step head (padded positions are ignored whatever they hold).
    Classes(Vec<usize>),
    /// Values: (B, output_size) for a per-sequence head, (B, T, output_size) for a per-step
    /// head (padded positions are ignored), in the data's units.
    Values(Vec<T>),
}

impl<T: Real> Targets<T> {
    /// Per-step classes of sequences of different lengths, padded with [`IGNORE`] to `steps`.
    pub fn step_classes<S: AsRef<[usize]>>(seqs: &[S], steps: usize) -> Targets<T> {
        let mut out = vec![IGNORE; seqs.len() * steps];
        for (row, s) in out.chunks_exact_mut(steps.max(1)).zip(seqs) {
            let s = s.as_ref();
            let n = s.len().min(steps);
            row[..n].copy_from_slice(&s[..n]);
        }
        Targets::Classes(out)
    }
}

/// The mean loss of a batch and how many targets it averages.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchLoss {
    /// Mean cross-entropy (nats) over the counted targets, or mean squared error over every
    /// predicted value (in standardised units when the model standardises its targets).
    pub loss: f64,
    /// Counted targets: classes that are not ignored, or predicted values.
    pub count: usize,
    /// The activation-regularization term added to the objective in training (0 when off
    /// and in evaluation); `loss` does not include it.
    pub ar: f64,
    /// The temporal activation-regularization term, as `ar`.
    pub tar: f64,
}

/// The gradients of a [`SeqModel`]: embed, rnn, head (the shared [`EmbedRnnHeadGrads`]).
pub type SeqModelGrads<T> = EmbedRnnHeadGrads<T>;

/// The callback of [`SeqModel::loss_and_grad_rows_announcing`]: `(k, count, grads)` when
/// the buffers `k..` of `grads` are final.
pub type FinalFrom<'a, T> = dyn FnMut(usize, usize, &SeqModelGrads<T>) -> Result<()> + 'a;

/// A recurrent model of sequences: input layer → `rnn` → dropout → `head`.
///
/// Its state_dict has the names of the PyTorch module (here a bidirectional LSTM classifier of
/// token ids; `embed` is absent for numeric inputs, which are fed to `rnn` directly)
///
/// ```text
/// class SeqModel(nn.Module):
///     def __init__(self, V, E, H, L, C, p):
///         super().__init__()
///         self.embed = nn.Embedding(V, E)
///         self.rnn = nn.LSTM(E, H, num_layers=L, dropout=p, bidirectional=True,
///                            batch_first=True)
///         self.drop = nn.Dropout(p)
///         self.head = nn.Linear(2 * H, C)
///     def forward(self, x, lengths):          # x: (B, T) ids, padded
///         packed = pack_padded_sequence(self.embed(x), lengths, batch_first=True,
///                                       enforce_sorted=False)
///         out, (h_n, c_n) = self.rnn(packed)
///         # per sequence, last state:  feat = torch.cat([h_n[-2], h_n[-1]], 1)
///         # per sequence, mean:        feat = pad_packed_sequence(out)[0].sum(1) / lengths
///         # per step:                  feat = pad_packed_sequence(out)[0]
///         return self.head(self.drop(feat))
/// ```
#[derive(Clone, Debug)]
pub struct SeqModel<T: Real = f32> {
    config: SeqModelConfig,
    embed: Option<Embedding<T>>,
    rnn: Rnn<T>,
    head: Linear<T>,
    input_norm: Option<Normalization>,
    target_norm: Option<Normalization>,
}

/// What a forward pass keeps for the backward pass.
/// Where the dropout of a training pass comes from.
enum SeqDrop<'a> {
    Off,
    Sample(&'a mut dyn RngCore),
    /// Row by row ([`RowMasks`]): the batch's row `s` is row `first + s` of the whole batch.
    Rows {
        key: u64,
        first: usize,
    },
}

/// The dropout mask on the head's input: none, drawn from a generator, or given.
enum HeadMask<'a, T> {
    Off,
    Sample(&'a mut dyn RngCore),
    Given(Vec<T>),
}

struct Pass<T: Real> {
    /// (n, D·H): the head's input, after dropout; n = B per sequence, Σ lengths per step.
    feat: Vec<T>,
    /// (n, out): the head's output.
    out: Vec<T>,
    /// (n, D·H): the dropout mask on the head's input (0 or 1/(1-p)), if any.
    mask: Option<Vec<T>>,
    tape: Option<Tape<T>>,
    /// (B, T, W): the last layer's output sequence, kept in training when AR or TAR is on.
    seq: Option<Vec<T>>,
    /// (V): the embedding-dropout mask over the vocabulary, if any.
    embed_mask: Option<Vec<T>>,
}

/// The AR and TAR terms of the output sequence `y`, (B, T, W) batch-first, and their
/// gradient with respect to `y` (zero at padding): AR = `ar · mean(y²)` over the valid steps,
/// TAR = `tar · mean((y_t - y_{t-1})²)` over the pairs of consecutive valid steps of each
/// sequence (0 when there are none).
fn ar_tar<T: Real>(
    r: &LmRegularizers,
    y: &[T],
    lengths: &[usize],
    t: usize,
    w: usize,
) -> ((f64, f64), Vec<T>) {
    let mut g = vec![T::ZERO; y.len()];
    let valid: usize = lengths.iter().sum();
    let pairs: usize = lengths.iter().map(|&l| l.saturating_sub(1)).sum();
    let (mut ar, mut tar) = (0.0, 0.0);
    if r.ar > 0.0 && valid > 0 {
        let n = (valid * w) as f64;
        let k = T::from_f64(2.0 * r.ar / n);
        for (s, &len) in lengths.iter().enumerate() {
            for j in s * t * w..(s * t + len) * w {
                let a = y[j].to_f64();
                ar += a * a;
                g[j] += k * y[j];
            }
        }
        ar *= r.ar / n;
    }
    if r.tar > 0.0 && pairs > 0 {
        let n = (pairs * w) as f64;
        let k = T::from_f64(2.0 * r.tar / n);
        for (s, &len) in lengths.iter().enumerate() {
            for j in (s * t + 1) * w..(s * t + len) * w {
                let d = y[j].to_f64() - y[j - w].to_f64();
                tar += d * d;
                let gj = k * (y[j] - y[j - w]);
                g[j] += gj;
                g[j - w] -= gj;
            }
        }
        tar *= r.tar / n;
    }
    ((ar, tar), g)
}

/// An inverted-dropout mask of `n` values drawn from `rng`: 0 with probability `p`, else
/// `1 / (1 - p)` (as `nn.Dropout`).
fn dropout_mask<T: Real>(rng: &mut dyn RngCore, n: usize, p: f64) -> Vec<T> {
    let keep = 1.0 - p;
    let scale = T::from_f64(1.0 / keep);
    (0..n)
        .map(|_| {
            if rng.gen::<f64>() < keep {
                scale
            } else {
                T::ZERO
            }
        })
        .collect()
}

impl<T: Real> SeqModel<T> {
    /// A new model with PyTorch's default initializations, seeded with `seed` (the embedding),
    /// `seed + 1` (the recurrent stack) and `seed + 2` (the head).
    pub fn new(config: SeqModelConfig, seed: u64) -> Result<SeqModel<T>> {
        config.validate()?;
        let embed = match config.input {
            InputKind::Tokens {
                vocab_size,
                embed_size,
            } => Some(Embedding::new(vocab_size, embed_size, seed)),
            InputKind::Features { .. } => None,
        };
        let rnn = Rnn::new(config.rnn_config(), seed.wrapping_add(1))?;
        let head = Linear::new(
            config.feature_size(),
            config.output_size,
            true,
            seed.wrapping_add(2),
        );
        Ok(SeqModel {
            config,
            embed,
            rnn,
            head,
            input_norm: None,
            target_norm: None,
        })
    }

    /// A model made of the given modules (`embed` for a token input only); an error if they
    /// do not fit `config`.
    pub fn from_parts(
        config: SeqModelConfig,
        embed: Option<Embedding<T>>,
        mut rnn: Rnn<T>,
        head: Linear<T>,
    ) -> Result<SeqModel<T>> {
        config.validate()?;
        match (config.input, &embed) {
            (
                InputKind::Tokens {
                    vocab_size,
                    embed_size,
                },
                Some(e),
            ) => {
                if e.num_embeddings() != vocab_size || e.embedding_dim() != embed_size {
                    return Err(Error::Config(format!(
                        "the embedding is ({}, {}), expected (vocab_size {vocab_size}, embed_size {embed_size})",
                        e.num_embeddings(),
                        e.embedding_dim()
                    )));
                }
            }
            (InputKind::Tokens { .. }, None) => {
                return Err(Error::Config(
                    "a model of token ids needs an embedding".into(),
                ))
            }
            (InputKind::Features { .. }, Some(_)) => {
                return Err(Error::Config(
                    "a model of numeric features has no embedding".into(),
                ))
            }
            (InputKind::Features { .. }, None) => {}
        }
        let mut want = config.rnn_config();
        want.batch_first = rnn.config().batch_first;
        want.dropout = rnn.config().dropout;
        if *rnn.config() != want {
            return Err(Error::Config(format!(
                "the recurrent layers are {}, expected {}",
                describe(rnn.config()),
                describe(&want)
            )));
        }
        rnn.set_batch_first(true);
        rnn.set_dropout(config.dropout)?;
        let (w, o) = (config.feature_size(), config.output_size);
        if head.in_features() != w || head.out_features() != o || !head.has_bias() {
            return Err(Error::Config(format!(
                "the head is Linear({}, {}, bias={}), expected Linear({w}, {o}, bias=true)",
                head.in_features(),
                head.out_features(),
                head.has_bias()
            )));
        }
        Ok(SeqModel {
            config,
            embed,
            rnn,
            head,
            input_norm: None,
            target_norm: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SeqModelConfig {
        &self.config
    }
    /// The embedding (token inputs only).
    pub fn embed(&self) -> Option<&Embedding<T>> {
        self.embed.as_ref()
    }
    /// The recurrent stack.
    pub fn rnn(&self) -> &Rnn<T> {
        &self.rnn
    }
    /// The output head.
    pub fn head(&self) -> &Linear<T> {
        &self.head
    }
    /// The embedding, mutable.
    pub fn embed_mut(&mut self) -> Option<&mut Embedding<T>> {
        self.embed.as_mut()
    }
    /// The recurrent stack, mutable.
    pub fn rnn_mut(&mut self) -> &mut Rnn<T> {
        &mut self.rnn
    }
    /// The output head, mutable.
    pub fn head_mut(&mut self) -> &mut Linear<T> {
        &mut self.head
    }
    /// The standardisation of the input features, if any.
    pub fn input_norm(&self) -> Option<&Normalization> {
        self.input_norm.as_ref()
    }
    /// The standardisation of the regression targets, if any.
    pub fn target_norm(&self) -> Option<&Normalization> {
        self.target_norm.as_ref()
    }

    /// Standardises the input features with `norm` (one column per feature) from now on;
    /// an error for a token input or a wrong size.
    pub fn set_input_norm(&mut self, norm: Option<Normalization>) -> Result<()> {
        if let Some(n) = &norm {
            match self.config.input {
                InputKind::Features { num_features } if n.len() == num_features => {}
                InputKind::Features { num_features } => {
                    return Err(Error::Config(format!(
                        "input normalisation: {} columns, expected num_features {num_features}",
                        n.len()
                    )))
                }
                InputKind::Tokens { .. } => {
                    return Err(Error::Config(
                        "input normalisation applies to numeric features, not token ids".into(),
                    ))
                }
            }
        }
        self.input_norm = norm;
        Ok(())
    }

    /// Trains on standardised regression targets from now on: the loss compares the head's
    /// output with `(y - mean) / std` and [`SeqModel::forward`] returns `out · std + mean`.
    /// An error for a classifier or a wrong size (one column per output value).
    pub fn set_target_norm(&mut self, norm: Option<Normalization>) -> Result<()> {
        if let Some(n) = &norm {
            if self.config.loss != Loss::Mse {
                return Err(Error::Config(
                    "target normalisation applies to regression (mse), not classes".into(),
                ));
            }
            if n.len() != self.config.output_size {
                return Err(Error::Config(format!(
                    "target normalisation: {} columns, expected output_size {}",
                    n.len(),
                    self.config.output_size
                )));
            }
        }
        self.target_norm = norm;
        Ok(())
    }

    /// The number of parameters.
    pub fn num_params(&self) -> usize {
        self.embed.as_ref().map_or(0, |e| e.num_params())
            + self.rnn.params().len()
            + self.head.num_params()
    }
    /// Zeroed gradient buffers.
    pub fn zeros_like_grads(&self) -> SeqModelGrads<T> {
        SeqModelGrads {
            embed: self
                .embed
                .as_ref()
                .map_or_else(Vec::new, |e| e.zeros_like_params()),
            rnn: self.rnn.zeros_like_params(),
            head: self.head.zeros_like_params(),
        }
    }
    /// The parameters of the three modules, each in its own layout: embed (empty for a
    /// feature input), rnn, head.
    pub fn params_mut(&mut self) -> [&mut [T]; 3] {
        let embed: &mut [T] = match &mut self.embed {
            Some(e) => e.params_mut(),
            None => &mut [],
        };
        [embed, self.rnn.params_mut(), self.head.params_mut()]
    }
    /// The `(parameters, gradients)` pairs of the three modules, in the order embed (empty
    /// for a feature input), rnn, head, for `Adam::step_parts` / `Sgd::step_parts`.
    pub fn parts<'a>(&'a mut self, grads: &'a SeqModelGrads<T>) -> [(&'a mut [T], &'a [T]); 3] {
        let embed: &mut [T] = match &mut self.embed {
            Some(e) => e.params_mut(),
            None => &mut [],
        };
        [
            (embed, &grads.embed[..]),
            (self.rnn.params_mut(), &grads.rnn[..]),
            (self.head.params_mut(), &grads.head[..]),
        ]
    }

    /// Checks that `batch` fits the model's input.
    fn check_batch(&self, batch: &SeqBatch<T>) -> Result<()> {
        match (self.config.input, &batch.input) {
            (InputKind::Tokens { vocab_size, .. }, SeqInput::Tokens(ids)) => {
                let t = batch.steps;
                for (b, &len) in batch.lengths.iter().enumerate() {
                    if let Some(k) = ids[b * t..b * t + len]
                        .iter()
                        .position(|&i| i >= vocab_size)
                    {
                        return Err(Error::Input(format!(
                            "sequence {b}, step {k}: token id {} is out of range for a vocabulary of {vocab_size}",
                            ids[b * t + k]
                        )));
                    }
                }
                Ok(())
            }
            (InputKind::Features { num_features }, SeqInput::Features(_)) => {
                if batch.num_features != num_features {
                    return Err(Error::Input(format!(
                        "input: expected {num_features} features per step, got {}",
                        batch.num_features
                    )));
                }
                Ok(())
            }
            (InputKind::Tokens { .. }, SeqInput::Features(_)) => Err(Error::Input(
                "input: the model reads token ids, got numeric features".into(),
            )),
            (InputKind::Features { .. }, SeqInput::Tokens(_)) => Err(Error::Input(
                "input: the model reads numeric features, got token ids".into(),
            )),
        }
    }

    /// The recurrent stack's input, (B, T, in): embeddings or (standardised) features at the
    /// valid steps, zeros at padding.
    fn rnn_input(&self, batch: &SeqBatch<T>) -> Result<Tensor<T>> {
        let (b, t) = (batch.batch_size(), batch.steps);
        let i = self.config.input.rnn_input_size();
        let mut x = vec![T::ZERO; b * t * i];
        match (&self.embed, &batch.input) {
            (Some(e), SeqInput::Tokens(ids)) => {
                for (s, &len) in batch.lengths.iter().enumerate() {
                    let rows = s * t..s * t + len;
                    e.forward(&ids[rows.clone()], &mut x[rows.start * i..rows.end * i])?;
                }
            }
            (None, SeqInput::Features(v)) => {
                for (s, &len) in batch.lengths.iter().enumerate() {
                    let r = s * t * i..(s * t + len) * i;
                    x[r.clone()].copy_from_slice(&v[r.clone()]);
                    if let Some(n) = &self.input_norm {
                        n.apply(&mut x[r]);
                    }
                }
            }
            _ => unreachable!("check_batch matched the input kinds"),
        }
        Tensor::new(&[b, t, i], x)
    }

    /// The number of rows the head sees: B per sequence, Σ lengths per step.
    fn head_rows(&self, batch: &SeqBatch<T>) -> usize {
        match self.config.head {
            Head::PerSequence(_) => batch.batch_size(),
            Head::PerStep => batch.num_valid(),
        }
    }

    /// Forward pass: training mode (dropout from `rng`, a tape kept) when `train`.
    fn run(&self, batch: &SeqBatch<T>, train: bool, drop: SeqDrop<'_>) -> Result<Pass<T>> {
        self.check_batch(batch)?;
        let c = &self.config;
        let r = &c.regular;
        let (b, t) = (batch.batch_size(), batch.steps);
        let (nd, h, w) = (c.num_directions(), c.hidden_size, c.feature_size());
        let mut x = self.rnn_input(batch)?;
        let lengths = Some(&batch.lengths[..]);
        let p = c.dropout;
        let n = self.head_rows(batch);
        let random = train && c.is_random();
        let in_layers = self.rnn.config().regular.any();
        let (out, tape, head_mask, embed_mask) = match drop {
            _ if !train => (
                self.rnn.forward(&x, None, lengths)?,
                None,
                HeadMask::Off,
                None,
            ),
            SeqDrop::Sample(rng) if random => {
                // Embedding dropout: one mask over the vocabulary rows for the whole batch.
                let embed_mask = match c.input {
                    InputKind::Tokens { vocab_size, .. } if r.embed_dropout > 0.0 => {
                        Some(dropout_mask(&mut *rng, vocab_size, r.embed_dropout))
                    }
                    _ => None,
                };
                if let Some(m) = &embed_mask {
                    self.apply_embed_mask(batch, m, x.data_mut());
                }
                let (o, tape) =
                    self.rnn
                        .forward_train(&x, None, lengths, Dropout::Sample(&mut *rng))?;
                let head = if p > 0.0 {
                    HeadMask::Sample(rng)
                } else {
                    HeadMask::Off
                };
                (o, Some(tape), head, embed_mask)
            }
            SeqDrop::Rows { key, first } if random => {
                // The masks of the whole batch (weight drop, embedding dropout) come from
                // the stream after every row's.
                let mut shared = RowMasks::new(key, 0.0).rng(usize::MAX);
                let rc = self.rnn.config();
                let width = rc.h_out() * rc.num_directions();
                let mut masks = in_layers.then(|| self.layer_masks_shared(&mut shared));
                let embed_mask = match c.input {
                    InputKind::Tokens { vocab_size, .. } if r.embed_dropout > 0.0 => {
                        Some(dropout_mask(&mut shared, vocab_size, r.embed_dropout))
                    }
                    _ => None,
                };
                let mut layers: Vec<Vec<T>> = if in_layers {
                    Vec::new()
                } else {
                    (1..rc.num_layers)
                        .map(|_| vec![T::ZERO; t * b * width])
                        .collect()
                };
                let mut head = (p > 0.0).then(|| vec![T::ZERO; n * w]);
                let m = RowMasks::new(key, p);
                let mut row = 0;
                for (s, &len) in batch.lengths.iter().enumerate() {
                    let mut rng = m.rng(first + s);
                    if let Some(masks) = &mut masks {
                        self.layer_masks_row(masks, &mut rng, s, b, t, len);
                    }
                    for layer in layers.iter_mut() {
                        for ti in 0..len {
                            m.fill(&mut rng, &mut layer[(ti * b + s) * width..][..width]);
                        }
                    }
                    if let Some(head) = &mut head {
                        match c.head {
                            Head::PerSequence(_) => m.fill(&mut rng, &mut head[s * w..][..w]),
                            Head::PerStep => {
                                m.fill(&mut rng, &mut head[row * w..(row + len) * w]);
                            }
                        }
                    }
                    row += len;
                }
                if let Some(e) = &embed_mask {
                    self.apply_embed_mask(batch, e, x.data_mut());
                }
                let (o, tape) = match &masks {
                    Some(masks) => self.rnn.forward_train_masked(&x, None, lengths, masks)?,
                    None => {
                        let layers = layers
                            .into_iter()
                            .map(|v| Tensor::new(&[t, b, width], v))
                            .collect::<Result<Vec<_>>>()?;
                        self.rnn
                            .forward_train(&x, None, lengths, Dropout::Masks(&layers))?
                    }
                };
                let head = match head {
                    Some(m) => HeadMask::Given(m),
                    None => HeadMask::Off,
                };
                (o, Some(tape), head, embed_mask)
            }
            _ => {
                let (o, tape) = self.rnn.forward_train(&x, None, lengths, Dropout::Off)?;
                (o, Some(tape), HeadMask::Off, None)
            }
        };
        // feat (n, W): the head's input.
        let mut feat = vec![T::ZERO; n * w];
        let y = out.output.data(); // (B, T, W)
        match c.head {
            Head::PerSequence(Pooling::Last) => {
                // h_n (L·D, B, H): the last layer's rows are (L-1)·D + dir.
                let hn = out.h_n.data();
                for s in 0..b {
                    for dir in 0..nd {
                        let k = (c.num_layers - 1) * nd + dir;
                        feat[s * w + dir * h..][..h].copy_from_slice(&hn[(k * b + s) * h..][..h]);
                    }
                }
            }
            Head::PerSequence(Pooling::Mean) => {
                for (s, &len) in batch.lengths.iter().enumerate() {
                    let f = &mut feat[s * w..(s + 1) * w];
                    for ti in 0..len {
                        for (a, &v) in f.iter_mut().zip(&y[(s * t + ti) * w..][..w]) {
                            *a += v;
                        }
                    }
                    let inv = T::from_f64(1.0 / len as f64);
                    for a in f.iter_mut() {
                        *a *= inv;
                    }
                }
            }
            Head::PerStep => {
                let mut r = 0;
                for (s, &len) in batch.lengths.iter().enumerate() {
                    feat[r * w..(r + len) * w].copy_from_slice(&y[s * t * w..(s * t + len) * w]);
                    r += len;
                }
            }
        }
        // nn.Dropout(p) on the head's input: keep with probability 1 - p, scaled by 1/(1-p).
        let mask = match head_mask {
            HeadMask::Off => None,
            HeadMask::Given(m) => Some(m),
            HeadMask::Sample(rng) => Some(dropout_mask(rng, n * w, p)),
        };
        if let Some(m) = &mask {
            for (a, &k) in feat.iter_mut().zip(m) {
                *a *= k;
            }
        }
        let mut o = vec![T::ZERO; n * c.output_size];
        self.head.forward(&feat, n, &mut o);
        let seq = (train && (r.ar > 0.0 || r.tar > 0.0)).then(|| out.output.into_data());
        Ok(Pass {
            feat,
            out: o,
            mask,
            tape,
            seq,
            embed_mask,
        })
    }

    /// Multiplies the embedding rows of `x` (B, T, E) at the valid steps by the mask of
    /// their token ids.
    fn apply_embed_mask(&self, batch: &SeqBatch<T>, mask: &[T], x: &mut [T]) {
        let (SeqInput::Tokens(ids), InputKind::Tokens { embed_size: e, .. }) =
            (&batch.input, self.config.input)
        else {
            return;
        };
        let t = batch.steps;
        for (s, &len) in batch.lengths.iter().enumerate() {
            for ti in 0..len {
                let k = mask[ids[s * t + ti]];
                for a in &mut x[(s * t + ti) * e..][..e] {
                    *a *= k;
                }
            }
        }
    }

    /// The masks of the recurrent layers that are one per batch (weight drop, layer by
    /// layer), drawn from `rng`; the others are allocated and filled row by row
    /// ([`SeqModel::layer_masks_row`]).
    fn layer_masks_shared(&self, rng: &mut dyn RngCore) -> Masks<T> {
        let rc = self.rnn.config();
        let gh = rc.mode.gates() * rc.hidden_size;
        let layers = (0..rc.num_layers)
            .map(|_| LayerMasks {
                weight_hh: (rc.regular.weight_drop > 0.0)
                    .then(|| dropout_mask(&mut *rng, gh * rc.hidden_size, rc.regular.weight_drop)),
                ..LayerMasks::default()
            })
            .collect();
        Masks { layers }
    }

    /// Draws the masks of batch row `s` (of `b`, `len` valid steps of `t`) from its own
    /// generator, layer by layer: input dropout, recurrent dropout, zoneout on h at its
    /// steps, zoneout on c, the dropout towards the next layer (one mask when locked, else
    /// one per step). Masks of padded steps stay 0.
    fn layer_masks_row(
        &self,
        masks: &mut Masks<T>,
        rng: &mut dyn RngCore,
        s: usize,
        b: usize,
        t: usize,
        len: usize,
    ) {
        let rc = self.rnn.config();
        let rg = &rc.regular;
        let (h, nl) = (rc.hidden_size, rc.num_layers);
        for (l, m) in masks.layers.iter_mut().enumerate() {
            let input = rc.layer_input_size(l);
            if rg.input_dropout > 0.0 {
                let v = m.input.get_or_insert_with(|| vec![T::ZERO; b * input]);
                v[s * input..][..input].copy_from_slice(&dropout_mask(
                    rng,
                    input,
                    rg.input_dropout,
                ));
            }
            if rg.recurrent_dropout > 0.0 {
                let v = m.recurrent.get_or_insert_with(|| vec![T::ZERO; b * h]);
                v[s * h..][..h].copy_from_slice(&dropout_mask(rng, h, rg.recurrent_dropout));
            }
            for (z, p) in [
                (&mut m.zoneout_h, rg.zoneout_h),
                (&mut m.zoneout_c, rg.zoneout_c),
            ] {
                if p > 0.0 {
                    let v = z.get_or_insert_with(|| vec![T::ZERO; t * b * h]);
                    for ti in 0..len {
                        for a in &mut v[(ti * b + s) * h..][..h] {
                            *a = if rng.gen::<f64>() < p {
                                T::ONE
                            } else {
                                T::ZERO
                            };
                        }
                    }
                }
            }
            if l + 1 < nl && rc.dropout > 0.0 {
                if rg.locked_dropout {
                    let v = m.output.get_or_insert_with(|| vec![T::ZERO; b * h]);
                    v[s * h..][..h].copy_from_slice(&dropout_mask(rng, h, rc.dropout));
                } else {
                    let v = m.output.get_or_insert_with(|| vec![T::ZERO; t * b * h]);
                    for ti in 0..len {
                        v[(ti * b + s) * h..][..h]
                            .copy_from_slice(&dropout_mask(rng, h, rc.dropout));
                    }
                }
            }
        }
    }

    /// The loss of the head's output `out`, (n, out), against `targets`, and its gradient.
    fn loss_of(
        &self,
        batch: &SeqBatch<T>,
        out: &[T],
        targets: &Targets<T>,
    ) -> Result<(BatchLoss, Vec<T>)> {
        let c = &self.config;
        let (b, t, o) = (batch.batch_size(), batch.steps, c.output_size);
        let per_step = c.head == Head::PerStep;
        let want = if per_step { b * t } else { b };
        match (c.loss, targets) {
            (Loss::CrossEntropy, Targets::Classes(y)) => {
                if y.len() != want {
                    return Err(Error::Input(format!(
                        "targets: expected {} classes ({}), got {}",
                        want,
                        if per_step {
                            format!("batch {b} × steps {t}")
                        } else {
                            format!("one per sequence, batch {b}")
                        },
                        y.len()
                    )));
                }
                // Class ids of the head's rows, with IGNORE → ignore_index.
                let mut ids = Vec::with_capacity(out.len() / o);
                let mut push = |pos: usize, what: String| -> Result<()> {
                    let v = y[pos];
                    if v == IGNORE {
                        ids.push(DEFAULT_IGNORE_INDEX);
                    } else if v >= o {
                        return Err(Error::Input(format!(
                            "targets: {what} is class {v}, out of range for {o} classes"
                        )));
                    } else {
                        ids.push(v as i64);
                    }
                    Ok(())
                };
                if per_step {
                    for (s, &len) in batch.lengths.iter().enumerate() {
                        for ti in 0..len {
                            push(s * t + ti, format!("sequence {s}, step {ti}"))?;
                        }
                    }
                } else {
                    for s in 0..b {
                        push(s, format!("sequence {s}"))?;
                    }
                }
                let count = ids.iter().filter(|&&v| v != DEFAULT_IGNORE_INDEX).count();
                if count == 0 {
                    return Err(Error::Input(
                        "targets: every target is ignored; nothing to learn from".into(),
                    ));
                }
                let (loss, d) = softmax_cross_entropy(out, o, &ids, DEFAULT_IGNORE_INDEX)?;
                Ok((
                    BatchLoss {
                        loss: loss.to_f64(),
                        count,
                        ar: 0.0,
                        tar: 0.0,
                    },
                    d,
                ))
            }
            (Loss::Mse, Targets::Values(y)) => {
                if y.len() != want * o {
                    return Err(Error::Input(format!(
                        "targets: expected shape {} ({} values), got {}",
                        fmt_shape(&if per_step { vec![b, t, o] } else { vec![b, o] }),
                        want * o,
                        y.len()
                    )));
                }
                // (n, out): the valid targets in the head's row order, standardised.
                let mut yv: Vec<T> = if per_step {
                    let mut v = Vec::with_capacity(out.len());
                    for (s, &len) in batch.lengths.iter().enumerate() {
                        v.extend_from_slice(&y[s * t * o..(s * t + len) * o]);
                    }
                    v
                } else {
                    y.clone()
                };
                if let Some(k) = yv.iter().position(|v| !v.is_finite()) {
                    return Err(Error::Input(format!(
                        "targets: value {k} (row {}, column {}) is not finite",
                        k / o,
                        k % o
                    )));
                }
                if let Some(n) = &self.target_norm {
                    n.apply(&mut yv);
                }
                let count = yv.len();
                let scale = T::from_f64(2.0 / count as f64);
                let mut total = 0.0f64;
                let d: Vec<T> = out
                    .iter()
                    .zip(&yv)
                    .map(|(&p, &y)| {
                        let e = p - y;
                        total += e.to_f64() * e.to_f64();
                        e * scale
                    })
                    .collect();
                Ok((
                    BatchLoss {
                        loss: total / count as f64,
                        count,
                        ar: 0.0,
                        tar: 0.0,
                    },
                    d,
                ))
            }
            (Loss::CrossEntropy, Targets::Values(_)) => Err(Error::Input(
                "targets: a classifier needs class ids, got values".into(),
            )),
            (Loss::Mse, Targets::Classes(_)) => Err(Error::Input(
                "targets: a regression model needs values, got class ids".into(),
            )),
        }
    }

    /// Training step over one batch: forward, loss against `targets` and backward; **adds**
    /// the parameter gradients into `grads` and returns the loss.
    ///
    /// Dropout (training mode) is drawn from `rng` when it is given and the configured
    /// probability is positive: first the recurrent stack's masks between layers, then the
    /// mask on the head's input. Without `rng`, nothing is dropped.
    pub fn loss_and_grad(
        &self,
        batch: &SeqBatch<T>,
        targets: &Targets<T>,
        rng: Option<&mut dyn RngCore>,
        grads: &mut SeqModelGrads<T>,
    ) -> Result<BatchLoss> {
        let drop = match rng {
            Some(rng) => SeqDrop::Sample(rng),
            None => SeqDrop::Off,
        };
        self.step(batch, targets, drop, grads, &mut |_, _, _| Ok(()))
    }

    /// [`SeqModel::loss_and_grad`] of a share of a larger batch (data parallelism): `batch`
    /// holds rows `first..first + batch.batch_size()` of it. Dropout, when `dropout_key` is
    /// given and the configured probability is positive, is drawn row by row
    /// ([`RowMasks`]): row `first + s` gets the masks of generator `first + s` of the key,
    /// at its own steps only (the masks between layers, then the one on the head's input),
    /// whatever other rows, and padding, come with it. So the gradients of the shares of a
    /// batch sum, weighted by their [`BatchLoss::count`], to those of the whole batch.
    pub fn loss_and_grad_rows(
        &self,
        batch: &SeqBatch<T>,
        targets: &Targets<T>,
        first: usize,
        dropout_key: Option<u64>,
        grads: &mut SeqModelGrads<T>,
    ) -> Result<BatchLoss> {
        self.loss_and_grad_rows_announcing(
            batch,
            targets,
            first,
            dropout_key,
            grads,
            &mut |_, _, _| Ok(()),
        )
    }

    /// [`SeqModel::loss_and_grad_rows`] that tells the caller during the backward pass which
    /// gradient buffers are final for this batch: `final_from(k, count, grads)` is called
    /// when the buffers `k..` (in the order embed, rnn, head of [`SeqModel::params_mut`])
    /// are, with 2 (the head, before the recurrent stack's backward pass), 1 (the recurrent
    /// stack, before the embedding's) and 0, in that order, so that their all-reduce can
    /// start while the rest is computed; `count` is the [`BatchLoss::count`] the call
    /// returns. The buffers are not written again after their call.
    pub fn loss_and_grad_rows_announcing(
        &self,
        batch: &SeqBatch<T>,
        targets: &Targets<T>,
        first: usize,
        dropout_key: Option<u64>,
        grads: &mut SeqModelGrads<T>,
        final_from: &mut FinalFrom<'_, T>,
    ) -> Result<BatchLoss> {
        let drop = match dropout_key {
            Some(key) => SeqDrop::Rows { key, first },
            None => SeqDrop::Off,
        };
        self.step(batch, targets, drop, grads, final_from)
    }

    fn step(
        &self,
        batch: &SeqBatch<T>,
        targets: &Targets<T>,
        drop: SeqDrop<'_>,
        grads: &mut SeqModelGrads<T>,
        final_from: &mut FinalFrom<'_, T>,
    ) -> Result<BatchLoss> {
        if grads.embed.len() != self.embed.as_ref().map_or(0, |e| e.num_params())
            || grads.rnn.len() != self.rnn.params().len()
            || grads.head.len() != self.head.num_params()
        {
            return Err(Error::Input(
                "grads: the buffers do not fit this model (use zeros_like_grads)".into(),
            ));
        }
        let c = &self.config;
        let pass = self.run(batch, true, drop)?;
        let (mut loss, dout) = self.loss_of(batch, &pass.out, targets)?;
        let (b, t) = (batch.batch_size(), batch.steps);
        let (nd, h, w) = (c.num_directions(), c.hidden_size, c.feature_size());
        let n = self.head_rows(batch);
        // dfeat (n, W)
        let mut dfeat = vec![T::ZERO; n * w];
        self.head
            .backward(&pass.feat, &dout, n, &mut grads.head, Some(&mut dfeat));
        final_from(2, loss.count, grads)?;
        if let Some(m) = &pass.mask {
            for (a, &k) in dfeat.iter_mut().zip(m) {
                *a *= k;
            }
        }
        // AR and TAR on the output sequence y (B, T, W): their terms and gradient.
        let dseq = match &pass.seq {
            Some(y) => {
                let (terms, g) = ar_tar(&c.regular, y, &batch.lengths, t, w);
                (loss.ar, loss.tar) = terms;
                Some(g)
            }
            None => None,
        };
        let tape = pass.tape.as_ref().expect("a training pass keeps its tape");
        // The input gradient only feeds the embedding; numeric series need none.
        let embedded = match (&self.embed, &batch.input) {
            (Some(e), SeqInput::Tokens(ids)) => Some((e, ids)),
            _ => None,
        };
        let rnn_backward = |gy: Option<&Tensor<T>>, gh: Option<&Tensor<T>>, g: &mut [T]| {
            if embedded.is_some() {
                self.rnn.backward(tape, gy, gh, None, g).map(Some)
            } else {
                self.rnn
                    .backward_params(tape, gy, gh, None, g)
                    .map(|_| None)
            }
        };
        // grad_output (B, T, W): the head's (per step, or mean) plus AR/TAR's.
        let mut gseq = dseq;
        let dx = match c.head {
            Head::PerSequence(Pooling::Last) => {
                // grad_h_n (L·D, B, H): only the last layer's rows.
                let shape = self.rnn.state_shape(Some(b), false);
                let mut g = vec![T::ZERO; shape.iter().product()];
                for s in 0..b {
                    for dir in 0..nd {
                        let k = (c.num_layers - 1) * nd + dir;
                        g[(k * b + s) * h..][..h].copy_from_slice(&dfeat[s * w + dir * h..][..h]);
                    }
                }
                let g = Tensor::new(&shape, g)?;
                let gy = gseq.map(|v| Tensor::new(&[b, t, w], v)).transpose()?;
                rnn_backward(gy.as_ref(), Some(&g), &mut grads.rnn)?
            }
            Head::PerSequence(Pooling::Mean) => {
                // dfeat / length at every valid step.
                let g = gseq.get_or_insert_with(|| vec![T::ZERO; b * t * w]);
                for (s, &len) in batch.lengths.iter().enumerate() {
                    let inv = T::from_f64(1.0 / len as f64);
                    let src = &dfeat[s * w..(s + 1) * w];
                    for ti in 0..len {
                        for (a, &v) in g[(s * t + ti) * w..][..w].iter_mut().zip(src) {
                            *a += v * inv;
                        }
                    }
                }
                let g = Tensor::new(&[b, t, w], gseq.take().expect("just made"))?;
                rnn_backward(Some(&g), None, &mut grads.rnn)?
            }
            Head::PerStep => {
                let g = gseq.get_or_insert_with(|| vec![T::ZERO; b * t * w]);
                let mut r = 0;
                for (s, &len) in batch.lengths.iter().enumerate() {
                    for (a, &v) in g[s * t * w..(s * t + len) * w]
                        .iter_mut()
                        .zip(&dfeat[r * w..(r + len) * w])
                    {
                        *a += v;
                    }
                    r += len;
                }
                let g = Tensor::new(&[b, t, w], gseq.take().expect("just made"))?;
                rnn_backward(Some(&g), None, &mut grads.rnn)?
            }
        };
        final_from(1, loss.count, grads)?;
        if let (Some((e, ids)), Some(dx)) = (embedded, dx) {
            let i = e.embedding_dim();
            let mut dxd = dx.input.into_data(); // (B, T, E)
            if let Some(m) = &pass.embed_mask {
                self.apply_embed_mask(batch, m, &mut dxd);
            }
            for (s, &len) in batch.lengths.iter().enumerate() {
                let rows = s * t..s * t + len;
                e.backward(
                    &ids[rows.clone()],
                    &dxd[rows.start * i..rows.end * i],
                    &mut grads.embed,
                )?;
            }
        }
        final_from(0, loss.count, grads)?;
        Ok(loss)
    }

    /// The loss of a batch in evaluation mode (no dropout, no gradient).
    pub fn loss(&self, batch: &SeqBatch<T>, targets: &Targets<T>) -> Result<BatchLoss> {
        let pass = self.run(batch, false, SeqDrop::Off)?;
        Ok(self.loss_of(batch, &pass.out, targets)?.0)
    }

    /// Evaluation-mode predictions: logits over the classes, or values in the data's units
    /// (standardisation undone). Per sequence (B, out); per step (B, T, out), zero at padded
    /// positions.
    pub fn forward(&self, batch: &SeqBatch<T>) -> Result<Vec<T>> {
        let pass = self.run(batch, false, SeqDrop::Off)?;
        let o = self.config.output_size;
        let mut out = pass.out;
        if let Some(n) = &self.target_norm {
            n.invert(&mut out);
        }
        match self.config.head {
            Head::PerSequence(_) => Ok(out),
            Head::PerStep => {
                let t = batch.steps;
                let mut padded = vec![T::ZERO; batch.batch_size() * t * o];
                let mut r = 0;
                for (s, &len) in batch.lengths.iter().enumerate() {
                    padded[s * t * o..(s * t + len) * o]
                        .copy_from_slice(&out[r * o..(r + len) * o]);
                    r += len;
                }
                Ok(padded)
            }
        }
    }

    fn check_classifier(&self, head: Head, what: &str) -> Result<()> {
        let same = matches!(
            (self.config.head, head),
            (Head::PerSequence(_), Head::PerSequence(_)) | (Head::PerStep, Head::PerStep)
        );
        if self.config.loss != Loss::CrossEntropy || !same {
            return Err(Error::Config(format!(
                "{what} needs a {} classifier, this model is {}",
                match head {
                    Head::PerStep => "per-step",
                    Head::PerSequence(_) => "per-sequence",
                },
                self.describe()
            )));
        }
        Ok(())
    }

    /// The most likely class of every sequence (per-sequence classifiers).
    pub fn classify(&self, batch: &SeqBatch<T>) -> Result<Vec<usize>> {
        self.check_classifier(Head::PerSequence(Pooling::Last), "classify")?;
        let pass = self.run(batch, false, SeqDrop::Off)?;
        Ok(argmax_rows(&pass.out, self.config.output_size))
    }

    /// The most likely class at every valid step of every sequence (per-step classifiers).
    pub fn tag(&self, batch: &SeqBatch<T>) -> Result<Vec<Vec<usize>>> {
        self.check_classifier(Head::PerStep, "tag")?;
        let pass = self.run(batch, false, SeqDrop::Off)?;
        let best = argmax_rows(&pass.out, self.config.output_size);
        let mut out = Vec::with_capacity(batch.batch_size());
        let mut r = 0;
        for &len in &batch.lengths {
            out.push(best[r..r + len].to_vec());
            r += len;
        }
        Ok(out)
    }

    /// A one-line description: `tokens(V→E) → nn.LSTM(...) → per sequence (last) →
    /// Linear(W, C) [cross_entropy]`.
    pub fn describe(&self) -> String {
        let c = &self.config;
        let input = match c.input {
            InputKind::Tokens {
                vocab_size,
                embed_size,
            } => format!("Embedding({vocab_size}, {embed_size})"),
            InputKind::Features { num_features } => format!("{num_features} features"),
        };
        let head = match c.head {
            Head::PerSequence(Pooling::Last) => "per sequence (last state)",
            Head::PerSequence(Pooling::Mean) => "per sequence (mean over steps)",
            Head::PerStep => "per step",
        };
        let mut rc = c.rnn_config();
        rc.batch_first = false;
        format!(
            "{input} → {} → {head} → Linear({}, {}) [{}]",
            describe(&rc),
            c.feature_size(),
            c.output_size,
            match c.loss {
                Loss::CrossEntropy => "cross_entropy",
                Loss::Mse => "mse",
            }
        )
    }

    /// The state_dict: `embed.weight` (token inputs), `rnn.weight_ih_l0`, ... (PyTorch names
    /// and order), `head.weight`, `head.bias`, with shapes and values.
    pub fn state_dict(&self) -> Vec<(String, Vec<usize>, &[T])> {
        let mut out = Vec::new();
        if let Some(e) = &self.embed {
            out.push((
                "embed.weight".to_string(),
                vec![e.num_embeddings(), e.embedding_dim()],
                e.weight(),
            ));
        }
        out.extend(crate::io::state_dict::state_dict(
            self.rnn.layout(),
            self.rnn.params(),
            "rnn",
        ));
        let (w, o) = (self.config.feature_size(), self.config.output_size);
        out.push(("head.weight".into(), vec![o, w], self.head.weight()));
        out.push((
            "head.bias".into(),
            vec![o],
            self.head.bias().expect("the head has a bias"),
        ));
        out
    }

    /// Writes the state_dict to a safetensors file in f32, atomically.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::state_dict::save_named(&self.state_dict(), path)
    }

    /// Reads the weights written by [`SeqModel::save_weights`] for a model of `config`; every
    /// tensor is checked against it, and a tensor the model does not have is an error.
    pub fn load_weights(path: impl AsRef<Path>, config: &SeqModelConfig) -> Result<SeqModel<T>> {
        config.validate()?;
        let f = crate::io::state_dict::ModelFile::read(path)?;
        let rnn = f.stack::<T>("rnn", &config.rnn_config())?;
        let embed = match config.input {
            InputKind::Tokens {
                vocab_size,
                embed_size,
            } => Some(Embedding::from_params(
                vocab_size,
                embed_size,
                f.tensor("embed.weight", &[vocab_size, embed_size])?,
            )?),
            InputKind::Features { .. } => None,
        };
        let (w, o) = (config.feature_size(), config.output_size);
        let mut head_params = f.tensor("head.weight", &[o, w])?;
        head_params.extend(f.tensor::<T>("head.bias", &[o])?);
        let head = Linear::from_params(w, o, true, head_params)?;
        let model = SeqModel::from_parts(config.clone(), embed, rnn, head);
        let known: Vec<String> = match &model {
            Ok(m) => m.state_dict().into_iter().map(|(n, _, _)| n).collect(),
            Err(_) => Vec::new(),
        };
        f.finish(model, &known)
    }
}

/// The index of the largest value of every row of `x`, (n, c) (the first on ties).
pub fn argmax_rows<T: Real>(x: &[T], c: usize) -> Vec<usize> {
    if c == 0 {
        return Vec::new();
    }
    x.chunks_exact(c)
        .map(|row| {
            let mut best = 0;
            for (k, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = k;
                }
            }
            best
        })
        .collect()
}

/// Sliding windows over a series for forecasting: window `k` reads `series[k·stride ..
/// k·stride + window]` and predicts the `horizon` values that follow. Returns the inputs
/// (N, window) and the targets (N, horizon); an error if the series is too short for one
/// window or a size is 0.
pub fn forecast_windows(
    series: &[f64],
    window: usize,
    horizon: usize,
    stride: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    if window == 0 || horizon == 0 || stride == 0 {
        return Err(Error::Input(format!(
            "forecast windows: window ({window}), horizon ({horizon}) and stride ({stride}) must be at least 1"
        )));
    }
    if series.len() < window + horizon {
        return Err(Error::Input(format!(
            "forecast windows: a series of {} values is too short for a window of {window} and a horizon of {horizon}",
            series.len()
        )));
    }
    let n = (series.len() - window - horizon) / stride + 1;
    let mut inputs = Vec::with_capacity(n * window);
    let mut targets = Vec::with_capacity(n * horizon);
    for k in 0..n {
        let s = k * stride;
        inputs.extend_from_slice(&series[s..s + window]);
        targets.extend_from_slice(&series[s + window..s + window + horizon]);
    }
    Ok((inputs, targets))
}

/// Writes a model directory: `config.json` (the model's configuration, plus every key of the
/// JSON object `extra` if given, e.g. `"task"` and `"training"`), `model.safetensors` and,
/// when the model standardises its inputs or targets, `normalization.safetensors`; each
/// atomically. Vocabularies and label names are the caller's to add.
///
/// An error if `extra` is not an object or one of its keys is a key of the configuration.
pub fn save_dir<T: Real>(
    dir: impl AsRef<Path>,
    model: &SeqModel<T>,
    extra: Option<&serde_json::Value>,
) -> Result<()> {
    let dir = dir.as_ref();
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, "cannot create the directory", e))?;
    let mut cfg = model.config().to_json();
    let flags = NormalizationFlags {
        input_normalization: model.input_norm.is_some(),
        target_normalization: model.target_norm.is_some(),
    };
    for (k, v) in serde_json::to_value(flags)
        .expect("two flags")
        .as_object()
        .expect("an object")
    {
        cfg[k] = v.clone();
    }
    if let Some(extra) = extra {
        let obj = extra.as_object().ok_or_else(|| {
            Error::Input("the extra keys of config.json must be a JSON object".into())
        })?;
        for (k, v) in obj {
            if cfg.get(k).is_some() {
                return Err(Error::Input(format!(
                    "config.json: the extra key \"{k}\" is a key of the model's configuration"
                )));
            }
            cfg[k] = v.clone();
        }
    }
    let norm_path = dir.join(NORMALIZATION_FILE);
    let norms: Vec<(&str, &Normalization)> = [
        ("input", model.input_norm.as_ref()),
        ("target", model.target_norm.as_ref()),
    ]
    .into_iter()
    .filter_map(|(k, n)| n.map(|n| (k, n)))
    .collect();
    if norms.is_empty() {
        if norm_path.exists() {
            std::fs::remove_file(&norm_path)
                .map_err(|e| Error::file(&norm_path, "cannot remove", e))?;
        }
    } else {
        let mut tensors = Vec::new();
        for (k, n) in &norms {
            tensors.push((
                format!("{k}.mean"),
                vec![n.len()],
                OutTensor::F64(&n.mean[..]),
            ));
            tensors.push((
                format!("{k}.std"),
                vec![n.len()],
                OutTensor::F64(&n.std[..]),
            ));
        }
        write_tensors(&norm_path, &tensors, &[])?;
    }
    crate::models::write_config(dir, cfg)?;
    model.save_weights(dir.join(WEIGHTS_FILE))
}

/// Reads a model directory written by [`save_dir`].
pub fn load_dir<T: Real>(dir: impl AsRef<Path>) -> Result<SeqModel<T>> {
    let dir = dir.as_ref();
    load_from(dir, &crate::models::read_config(dir)?)
}

/// [`load_dir`] with the configuration already read by [`crate::models::read_config`].
pub fn load_from<T: Real>(
    dir: impl AsRef<Path>,
    cfg: &crate::models::ModelConfig,
) -> Result<SeqModel<T>> {
    let dir = dir.as_ref();
    let (json, source) = (&cfg.json, &cfg.source);
    let config = SeqModelConfig::from_json(json, source)?;
    let flags: NormalizationFlags = cfg.parse(ModelKind::SeqModel)?;
    let mut model = SeqModel::load_weights(dir.join(WEIGHTS_FILE), &config)?;
    let (want_in, want_out) = (flags.input_normalization, flags.target_normalization);
    if want_in || want_out {
        let file = TensorFile::read(dir.join(NORMALIZATION_FILE))?;
        let read = |k: &str| -> Result<Normalization> {
            let get = |name: String| -> Result<Vec<f64>> {
                let t = file.float::<f64>(&name)?;
                if t.shape().len() != 1 {
                    return Err(Error::Weights(format!(
                        "{}: tensor '{name}' must be 1-D, got shape {}",
                        file.source(),
                        fmt_shape(t.shape())
                    )));
                }
                Ok(t.into_data())
            };
            Normalization::new(get(format!("{k}.mean"))?, get(format!("{k}.std"))?)
                .map_err(|e| Error::Weights(format!("{}: {k}: {e}", file.source())))
        };
        let wrap = |e: Error| Error::Weights(format!("{}: {e}", file.source()));
        if want_in {
            model.set_input_norm(Some(read("input")?)).map_err(wrap)?;
        }
        if want_out {
            model.set_target_norm(Some(read("target")?)).map_err(wrap)?;
        }
    }
    model
        .rnn_mut()
        .set_precision(crate::models::precision_of(cfg)?)?;
    Ok(model)
}
