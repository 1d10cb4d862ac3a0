//! A character-level language model in the style of char-rnn: [`CharLm`], Embedding →
//! [`Rnn`] (LSTM, GRU or RNN; dropout between layers) → dropout → Linear → logits over the
//! vocabulary, trained with truncated backpropagation through time over the chunks of
//! [`Batches`].
//!
//! ```
//! use recur::models::lm::{CharLm, CharLmConfig, SampleOptions};
//! use recur::nn::{Adam, AdamConfig};
//! use recur::data::text::{Batches, Vocab};
//! use recur::Mode;
//!
//! let text = "abcabcabcabcabcabcabcabcabcabcabcabc";
//! let vocab = Vocab::from_text(text);
//! let ids = vocab.encode(text);
//! let config = CharLmConfig::new(Mode::Gru, vocab.len())
//!     .embed_size(8)
//!     .hidden_size(16)
//!     .num_layers(1);
//! let mut model: CharLm<f32> = CharLm::new(config, 0).unwrap();
//! let mut opt = Adam::new(model.num_params(), AdamConfig::default().lr(1e-2));
//! let mut grads = model.zeros_like_grads();
//! let batches = Batches::new(&ids, 4, 4).unwrap();
//! for _epoch in 0..5 {
//!     let mut state = None; // a new pass starts from zero states
//!     for chunk in batches.iter() {
//!         grads.zero();
//!         let (_loss, next) = model.loss_and_grad(&chunk, state.as_ref(), None, &mut grads).unwrap();
//!         grads.clip_norm(5.0);
//!         opt.step_parts(&mut model.parts(&grads));
//!         state = Some(next); // carried to the next chunk, without gradient
//!     }
//! }
//! let eval = model.evaluate(&ids, 4, 8).unwrap();
//! assert!(eval.bpc.is_finite());
//! let prime = vocab.encode("ab");
//! let out = model.sample(&prime, 10, &SampleOptions::default()).unwrap();
//! assert_eq!(out.len(), 10);
//! ```

use crate::core::config::{CellOptions, Mode, RnnConfig};
use crate::core::regular::{LayerMasks, Masks};
use crate::core::rnn::{Dropout, Rnn, State};
use crate::core::stream::Stream;
use crate::core::tensor::Tensor;
use crate::data::text::{Batches, Chunk, Vocab};
use crate::error::{Error, Result};
use crate::io::state_dict::{describe, state_dict};
use crate::models::grads::EmbedRnnHeadGrads;
use crate::models::rows::RowMasks;
use crate::models::ModelKind;
use crate::nn::{softmax_cross_entropy, Embedding, Linear, DEFAULT_IGNORE_INDEX};
use rand::{Rng, SeedableRng};
use recur_kernels::Real;
use serde::{Deserialize, Serialize};
use std::ops::Range;
use std::path::Path;

/// The trait of the generators [`CharLm::loss_and_grad`] draws dropout masks from
/// (re-exported so that callers need no random-number crate of their own).
pub use rand::RngCore;

/// A seeded generator (ChaCha8) for dropout masks: `Some(&mut seeded_rng(seed))`.
pub fn seeded_rng(seed: u64) -> impl RngCore + Clone {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

pub use crate::models::{CONFIG_FILE, WEIGHTS_FILE};
/// The vocabulary file of a model directory.
pub const VOCAB_FILE: &str = "vocab.json";

/// Where the dropout of a training step comes from.
enum LmDrop<'a, T> {
    Off,
    Sample(&'a mut dyn RngCore),
    /// The masks between layers, each (steps, batch, width), and the one on the output,
    /// (steps·batch, hidden).
    Masks {
        layers: Vec<Tensor<T>>,
        output: Vec<T>,
    },
    /// Every mask given (a share of a batch with the regularizers): the embedding's, the
    /// recurrent stack's, the output's (steps·batch, hidden).
    Given {
        embed: Option<Vec<T>>,
        rnn: RnnMasks<T>,
        output: Option<Vec<T>>,
    },
}

/// The recurrent stack's masks of [`LmDrop::Given`].
enum RnnMasks<T> {
    /// No dropout in the fused layers.
    Off,
    /// The fused layers' dropout between layers, (steps, batch, width) each.
    Between(Vec<Tensor<T>>),
    /// The regularized layers' ([`Masks`]).
    Regular(Masks<T>),
}

/// Rows `rows` of `v`, laid out (blocks, batch, width): (blocks, rows.len(), width).
fn take_rows<T: Copy>(v: &[T], blocks: usize, batch: usize, rows: &Range<usize>) -> Vec<T> {
    let w = v.len() / (blocks * batch).max(1);
    let mut out = Vec::with_capacity(blocks * rows.len() * w);
    for k in 0..blocks {
        out.extend_from_slice(&v[(k * batch + rows.start) * w..(k * batch + rows.end) * w]);
    }
    out
}

/// The shape of a [`CharLm`]; in `config.json` (serde) with the cell's name under `"cell"`
/// and the regularizers that are on beside the other keys (`"layer_norm": true`,
/// `"zoneout": 0.1`, ...; a model without them has none of these keys). Directories from
/// before `"dropout"` or the regularizers were written read them as off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(from = "CharLmConfigJson", into = "CharLmConfigJson")]
pub struct CharLmConfig {
    /// The recurrent cell.
    #[serde(rename = "cell", with = "crate::models::by_name")]
    pub mode: Mode,
    /// Ids of the vocabulary (`<unk>` included): rows of the embedding, outputs of the head.
    pub vocab_size: usize,
    /// Size of the character embeddings, the input size of the recurrent stack.
    pub embed_size: usize,
    /// Hidden size of every recurrent layer.
    pub hidden_size: usize,
    /// Recurrent layers.
    pub num_layers: usize,
    /// Dropout probability, in training, between recurrent layers and on the last layer's
    /// output (before the head).
    pub dropout: f64,
    /// The regularizers beyond dropout (all off by default).
    pub regular: LmRegularizers,
    /// The cell variants of the recurrent stack (PyTorch's cells by default; in
    /// `config.json` under `"cell_options"`, written only when not the default).
    pub cell_options: CellOptions,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

fn is_false(x: &bool) -> bool {
    !*x
}

/// `config.json`'s keys of a [`CharLmConfig`], flat and in the order written: the
/// regularizers' keys sit beside the others, each written only when it is on (a field of the
/// struct itself, not a flattened one, so that an error names the key).
#[derive(Clone, Serialize, Deserialize)]
struct CharLmConfigJson {
    #[serde(rename = "cell", with = "crate::models::by_name")]
    mode: Mode,
    vocab_size: usize,
    embed_size: usize,
    hidden_size: usize,
    num_layers: usize,
    #[serde(default)]
    dropout: f64,
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
    #[serde(default, skip_serializing_if = "CellOptions::is_default")]
    cell_options: CellOptions,
}

impl From<CharLmConfigJson> for CharLmConfig {
    fn from(j: CharLmConfigJson) -> CharLmConfig {
        CharLmConfig {
            mode: j.mode,
            vocab_size: j.vocab_size,
            embed_size: j.embed_size,
            hidden_size: j.hidden_size,
            num_layers: j.num_layers,
            dropout: j.dropout,
            regular: LmRegularizers {
                layer_norm: j.layer_norm,
                input_dropout: j.input_dropout,
                recurrent_dropout: j.recurrent_dropout,
                zoneout: j.zoneout,
                weight_drop: j.weight_drop,
                locked_dropout: j.locked_dropout,
                embed_dropout: j.embed_dropout,
                ar: j.ar,
                tar: j.tar,
            },
            cell_options: j.cell_options,
        }
    }
}

impl From<CharLmConfig> for CharLmConfigJson {
    fn from(c: CharLmConfig) -> CharLmConfigJson {
        let r = c.regular;
        CharLmConfigJson {
            mode: c.mode,
            vocab_size: c.vocab_size,
            embed_size: c.embed_size,
            hidden_size: c.hidden_size,
            num_layers: c.num_layers,
            dropout: c.dropout,
            layer_norm: r.layer_norm,
            input_dropout: r.input_dropout,
            recurrent_dropout: r.recurrent_dropout,
            zoneout: r.zoneout,
            weight_drop: r.weight_drop,
            locked_dropout: r.locked_dropout,
            embed_dropout: r.embed_dropout,
            ar: r.ar,
            tar: r.tar,
            cell_options: c.cell_options,
        }
    }
}

/// The regularizers of a language model beyond `dropout`, all off by default. In the
/// recurrent stack they are [`crate::Regularizers`] (see [`crate::core::regular`]); the others
/// are the embedding dropout and the AR/TAR loss terms of AWD-LSTM (Merity, Keskar & Socher
/// 2017).
///
/// As JSON (the keys a model's `config.json` holds beside the others, when flattened): each
/// key written only when it is on, a missing key off.
#[derive(Clone, Debug, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct LmRegularizers {
    /// Layer normalization inside every recurrent cell.
    #[serde(default, skip_serializing_if = "is_false")]
    pub layer_norm: bool,
    /// Variational dropout on each recurrent layer's input (one mask per sequence).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub input_dropout: f64,
    /// Variational dropout on h_{t-1} (one mask per sequence).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub recurrent_dropout: f64,
    /// Zoneout on h (and on c for an LSTM).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub zoneout: f64,
    /// DropConnect on every `weight_hh` (one mask per batch).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub weight_drop: f64,
    /// `dropout` keeps one mask per sequence for all steps (locked dropout), between layers
    /// and before the head.
    #[serde(default, skip_serializing_if = "is_false")]
    pub locked_dropout: bool,
    /// Embedding dropout: whole rows of the embedding (words, characters) dropped with this
    /// probability, one mask per batch, the others scaled by 1/(1-p).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub embed_dropout: f64,
    /// Activation regularization: adds `ar · mean(y²)` to the loss, `y` the last layer's
    /// output after dropout.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub ar: f64,
    /// Temporal activation regularization: adds `tar · mean((h_t - h_{t-1})²)` to the loss,
    /// `h` the last layer's output before dropout, over the steps of a chunk.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tar: f64,
}

impl LmRegularizers {
    /// True when something is on.
    pub fn any(&self) -> bool {
        *self != LmRegularizers::default()
    }
}

impl CharLmConfig {
    /// A configuration with char-rnn-like defaults: embeddings of 64, 2 layers of 128, no
    /// dropout.
    pub fn new(mode: Mode, vocab_size: usize) -> CharLmConfig {
        CharLmConfig {
            mode,
            vocab_size,
            embed_size: 64,
            hidden_size: 128,
            num_layers: 2,
            dropout: 0.0,
            regular: LmRegularizers::default(),
            cell_options: CellOptions::default(),
        }
    }
    /// Sets the cell variants of the recurrent stack ([`CellOptions`]).
    pub fn cell_options(mut self, o: CellOptions) -> Self {
        self.cell_options = o;
        self
    }
    /// Sets `embed_size`.
    pub fn embed_size(mut self, n: usize) -> Self {
        self.embed_size = n;
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
    /// Sets `dropout`.
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }

    /// Checks every size is positive and `dropout` is in [0, 1).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.vocab_size == 0 {
            return bad("vocab_size must be at least 1".into());
        }
        if self.embed_size == 0 {
            return bad("embed_size must be at least 1".into());
        }
        if self.hidden_size == 0 {
            return bad("hidden_size must be at least 1".into());
        }
        if self.num_layers == 0 {
            return bad("num_layers must be at least 1".into());
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
        for (name, v) in [("ar", r.ar), ("tar", r.tar)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(format!("{name} must be a number >= 0, got {v}"));
            }
        }
        self.rnn_config().validate()
    }

    /// The recurrent stack: `nn.<cell>(embed_size, hidden_size, num_layers, dropout)`,
    /// time-major.
    pub fn rnn_config(&self) -> RnnConfig {
        let r = &self.regular;
        RnnConfig::new(self.mode, self.embed_size, self.hidden_size)
            .num_layers(self.num_layers)
            .dropout(self.dropout)
            .layer_norm(r.layer_norm)
            .input_dropout(r.input_dropout)
            .recurrent_dropout(r.recurrent_dropout)
            .zoneout(r.zoneout)
            .weight_drop(r.weight_drop)
            .locked_dropout(r.locked_dropout)
            .cell_options(self.cell_options.clone())
    }

    /// The configuration as a JSON object: `{"model": "char_lm", "cell": "lstm",
    /// "vocab_size": ..., "embed_size": ..., "hidden_size": ..., "num_layers": ...,
    /// "dropout": ...}` and the regularizers that are on ([`crate::models::config_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        crate::models::config_json(ModelKind::CharLm, self)
    }

    /// Reads the object of [`CharLmConfig::to_json`] (other keys are ignored;
    /// [`crate::models::parse_config`]) and checks it; `source` names it in error messages.
    pub fn from_json(v: &serde_json::Value, source: &str) -> Result<CharLmConfig> {
        let c: CharLmConfig = crate::models::parse_config(v, ModelKind::CharLm, source)?;
        c.validate()
            .map_err(|e| Error::Input(format!("{source}: {e}")))?;
        Ok(c)
    }
}

/// The gradients of a [`CharLm`]: embed, rnn, head (the shared [`EmbedRnnHeadGrads`]).
pub type CharLmGrads<T> = EmbedRnnHeadGrads<T>;

/// The terms of the training objective of one chunk ([`CharLm::loss_terms_and_grad`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossTerms {
    /// Mean cross-entropy of the targets, nats per token.
    pub cross_entropy: f64,
    /// The activation-regularization term (0 when off).
    pub ar: f64,
    /// The temporal activation-regularization term (0 when off).
    pub tar: f64,
}

/// Mean loss over a text, from [`CharLm::evaluate`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Eval {
    /// Mean cross-entropy, in nats per character.
    pub loss: f64,
    /// The same in bits per character: `loss / ln 2`.
    pub bpc: f64,
    /// How many characters were predicted.
    pub targets: usize,
}

/// How [`CharLm::sample`] draws characters.
#[derive(Clone, Debug, PartialEq)]
pub struct SampleOptions {
    /// Divides the logits before the softmax: below 1 sharper, above 1 flatter; 0 always
    /// takes the most likely character (default 1).
    pub temperature: f64,
    /// Draw only among the `k` most likely ids (default: all).
    pub top_k: Option<usize>,
    /// Seed of the generator (default 0).
    pub seed: u64,
    /// Ids never drawn (e.g. [`Vocab::UNK`]).
    pub exclude: Vec<usize>,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            temperature: 1.0,
            top_k: None,
            seed: 0,
            exclude: vec![],
        }
    }
}

/// A character-level language model: `embed` (nn.Embedding) → `rnn` (nn.LSTM/GRU/RNN,
/// time-major) → dropout → `head` (nn.Linear(hidden, vocab)).
///
/// Its state_dict has the names of the PyTorch module
///
/// ```text
/// class CharLm(nn.Module):
///     def __init__(self, V, E, H, L, p):
///         super().__init__()
///         self.embed = nn.Embedding(V, E)
///         self.rnn = nn.LSTM(E, H, num_layers=L, dropout=p)
///         self.drop = nn.Dropout(p)
///         self.head = nn.Linear(H, V)
///     def forward(self, x, state):            # x: (T, B) ids
///         y, state = self.rnn(self.embed(x), state)
///         return self.head(self.drop(y)), state
/// ```
#[derive(Clone, Debug)]
pub struct CharLm<T: Real = f32> {
    config: CharLmConfig,
    embed: Embedding<T>,
    rnn: Rnn<T>,
    head: Linear<T>,
}

impl<T: Real> CharLm<T> {
    /// A new model with PyTorch's default initializations, seeded with `seed` (the embedding),
    /// `seed + 1` (the recurrent stack) and `seed + 2` (the head).
    pub fn new(config: CharLmConfig, seed: u64) -> Result<CharLm<T>> {
        config.validate()?;
        let embed = Embedding::new(config.vocab_size, config.embed_size, seed);
        let rnn = Rnn::new(config.rnn_config(), seed.wrapping_add(1))?;
        let head = Linear::new(
            config.hidden_size,
            config.vocab_size,
            true,
            seed.wrapping_add(2),
        );
        Ok(CharLm {
            config,
            embed,
            rnn,
            head,
        })
    }

    /// A model made of the given modules; an error if they do not fit `config`.
    pub fn from_parts(
        config: CharLmConfig,
        embed: Embedding<T>,
        mut rnn: Rnn<T>,
        head: Linear<T>,
    ) -> Result<CharLm<T>> {
        config.validate()?;
        let (v, e, h) = (config.vocab_size, config.embed_size, config.hidden_size);
        if embed.num_embeddings() != v || embed.embedding_dim() != e {
            return Err(Error::Config(format!(
                "the embedding is ({}, {}), expected (vocab_size {v}, embed_size {e})",
                embed.num_embeddings(),
                embed.embedding_dim()
            )));
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
        rnn.set_batch_first(false);
        rnn.set_dropout(config.dropout)?;
        if head.in_features() != h || head.out_features() != v || !head.has_bias() {
            return Err(Error::Config(format!(
                "the head is Linear({}, {}, bias={}), expected Linear({h}, {v}, bias=true)",
                head.in_features(),
                head.out_features(),
                head.has_bias()
            )));
        }
        Ok(CharLm {
            config,
            embed,
            rnn,
            head,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &CharLmConfig {
        &self.config
    }
    /// The embedding.
    pub fn embed(&self) -> &Embedding<T> {
        &self.embed
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
    pub fn embed_mut(&mut self) -> &mut Embedding<T> {
        &mut self.embed
    }
    /// The recurrent stack, mutable.
    pub fn rnn_mut(&mut self) -> &mut Rnn<T> {
        &mut self.rnn
    }
    /// The output head, mutable.
    pub fn head_mut(&mut self) -> &mut Linear<T> {
        &mut self.head
    }
    /// The number of parameters.
    pub fn num_params(&self) -> usize {
        self.embed.num_params() + self.rnn.params().len() + self.head.num_params()
    }
    /// Zeroed gradient buffers.
    pub fn zeros_like_grads(&self) -> CharLmGrads<T> {
        CharLmGrads {
            embed: self.embed.zeros_like_params(),
            rnn: self.rnn.zeros_like_params(),
            head: self.head.zeros_like_params(),
        }
    }
    /// The `(parameters, gradients)` pairs of the three modules, in the order embed, rnn,
    /// head, for `Adam::step_parts` / `Sgd::step_parts`.
    pub fn parts<'a>(&'a mut self, grads: &'a CharLmGrads<T>) -> [(&'a mut [T], &'a [T]); 3] {
        [
            (self.embed.params_mut(), &grads.embed[..]),
            (self.rnn.params_mut(), &grads.rnn[..]),
            (self.head.params_mut(), &grads.head[..]),
        ]
    }

    /// The parameters of the three modules, each in its own layout: embed, rnn, head.
    pub fn params_mut(&mut self) -> [&mut [T]; 3] {
        [
            self.embed.params_mut(),
            self.rnn.params_mut(),
            self.head.params_mut(),
        ]
    }

    fn check_ids(&self, what: &str, ids: &[usize], steps: usize, batch: usize) -> Result<()> {
        if ids.len() != steps * batch {
            return Err(Error::Input(format!(
                "{what}: expected (steps {steps}, batch {batch}) = {} ids, got {}",
                steps * batch,
                ids.len()
            )));
        }
        if steps == 0 || batch == 0 {
            return Err(Error::Input(format!(
                "{what}: empty chunk (steps {steps}, batch {batch})"
            )));
        }
        let v = self.config.vocab_size;
        if let Some((k, &id)) = ids.iter().enumerate().find(|(_, &id)| id >= v) {
            return Err(Error::Input(format!(
                "{what}[{k}] = {id} is out of range for a vocabulary of {v}"
            )));
        }
        Ok(())
    }

    /// The embeddings of `ids`, as the recurrent input (steps, batch, embed).
    fn embed_ids(&self, ids: &[usize], steps: usize, batch: usize) -> Result<Tensor<T>> {
        let mut x = vec![T::ZERO; ids.len() * self.config.embed_size];
        self.embed.forward(ids, &mut x)?;
        Tensor::new(&[steps, batch, self.config.embed_size], x)
    }

    /// Evaluation-mode forward pass over `steps` steps of `batch` streams.
    ///
    /// - `input`: (steps, batch) ids, time-major
    /// - `state`: the state at the start (zeros when `None`)
    /// - returns the logits, (steps·batch, vocab), and the state at the end
    pub fn forward(
        &self,
        input: &[usize],
        steps: usize,
        batch: usize,
        state: Option<&State<T>>,
    ) -> Result<(Vec<T>, State<T>)> {
        self.check_ids("input", input, steps, batch)?;
        let x = self.embed_ids(input, steps, batch)?;
        let out = self.rnn.forward(&x, state, None)?;
        let n = steps * batch;
        let mut logits = vec![T::ZERO; n * self.config.vocab_size];
        self.head.forward(out.output.data(), n, &mut logits);
        Ok((logits, out.state()))
    }

    /// Training step over one chunk: forward with the carried `state`, mean cross-entropy of
    /// the targets, and backward; **adds** the parameter gradients into `grads`. Returns the
    /// loss (nats per character) and the state at the end of the chunk, to carry to the next
    /// chunk (no gradient flows back through it).
    ///
    /// Dropout (training mode) is drawn from `rng` when it is given and the configured
    /// probability is positive (or a regularizer is on): first the embedding-dropout mask (if
    /// any), then the recurrent stack's masks ([`crate::core::regular::Masks::sample`], or
    /// between layers only), then the mask on its output. Without `rng`, nothing is dropped
    /// (evaluation mode, zoneout by its expectation). The returned loss is the cross-entropy
    /// alone; the gradients include the AR and TAR terms.
    pub fn loss_and_grad(
        &self,
        chunk: &Chunk,
        state: Option<&State<T>>,
        rng: Option<&mut dyn RngCore>,
        grads: &mut CharLmGrads<T>,
    ) -> Result<(f64, State<T>)> {
        self.loss_terms_and_grad(chunk, state, rng, grads)
            .map(|(l, next)| (l.cross_entropy, next))
    }

    /// [`CharLm::loss_and_grad`] that returns every term of the objective whose gradient it
    /// adds: the cross-entropy, the AR term and the TAR term.
    pub fn loss_terms_and_grad(
        &self,
        chunk: &Chunk,
        state: Option<&State<T>>,
        rng: Option<&mut dyn RngCore>,
        grads: &mut CharLmGrads<T>,
    ) -> Result<(LossTerms, State<T>)> {
        let sampled = self.config.dropout > 0.0 || self.has_regularizers();
        let drop = match rng {
            Some(rng) if sampled => LmDrop::Sample(rng),
            _ => LmDrop::Off,
        };
        self.step(chunk, state, drop, grads, &mut |_, _| Ok(()))
    }

    /// [`CharLm::loss_and_grad`] over the streams `rows` of `chunk` only (a rank's share of a
    /// batch): `state` holds the carried state of those streams (`rows.len()` of them), the
    /// loss is the mean over their targets, and the returned state is theirs.
    ///
    /// Dropout, when `dropout_key` is given and the configured probability is positive, is
    /// drawn row by row ([`RowMasks`]): stream `b` of the chunk gets the masks of generator
    /// `b` of the key (the masks between layers, then the one on the output), whatever other
    /// streams are computed with it. So the gradients of the shares of a batch sum, weighted
    /// by their targets, to those of the whole batch (`rows` = `0..chunk.batch`).
    pub fn loss_and_grad_rows(
        &self,
        chunk: &Chunk,
        rows: Range<usize>,
        state: Option<&State<T>>,
        dropout_key: Option<u64>,
        grads: &mut CharLmGrads<T>,
    ) -> Result<(f64, State<T>)> {
        self.loss_and_grad_rows_announcing(chunk, rows, state, dropout_key, grads, &mut |_, _| {
            Ok(())
        })
    }

    /// [`CharLm::loss_and_grad_rows`] that tells the caller during the backward pass which
    /// gradient buffers are final for this chunk: `final_from(k, grads)` is called when the
    /// buffers `k..` (in the order embed, rnn, head of [`CharLm::parts`]) are, with 2 (the
    /// head, before the recurrent stack's backward pass), 1 (the recurrent stack, before
    /// the embedding's) and 0, in that order, so that their all-reduce can start while the
    /// rest is computed. The buffers are not written again after their call.
    pub fn loss_and_grad_rows_announcing(
        &self,
        chunk: &Chunk,
        rows: Range<usize>,
        state: Option<&State<T>>,
        dropout_key: Option<u64>,
        grads: &mut CharLmGrads<T>,
        final_from: &mut dyn FnMut(usize, &CharLmGrads<T>) -> Result<()>,
    ) -> Result<(f64, State<T>)> {
        if self.has_regularizers() {
            return Err(Error::Config(
                "the regularizers beyond dropout (layer norm, variational dropout, zoneout, \
                 weight drop, locked dropout, embedding dropout, AR, TAR) do not run on a \
                 share of a batch yet"
                    .into(),
            ));
        }
        let (steps, batch) = (chunk.steps, chunk.batch);
        self.check_ids("input", &chunk.input, steps, batch)?;
        self.check_ids("target", &chunk.target, steps, batch)?;
        if rows.is_empty() || rows.end > batch {
            return Err(Error::Input(format!(
                "rows {}..{} of a chunk of {batch} streams",
                rows.start, rows.end
            )));
        }
        let b = rows.len();
        let pick = |v: &[usize]| -> Vec<usize> {
            (0..steps)
                .flat_map(|t| {
                    v[t * batch + rows.start..t * batch + rows.end]
                        .iter()
                        .copied()
                })
                .collect()
        };
        let sub = Chunk {
            input: pick(&chunk.input),
            target: pick(&chunk.target),
            steps,
            batch: b,
            start: chunk.start,
        };
        let drop = match dropout_key {
            Some(key) if self.config.dropout > 0.0 => {
                let m = RowMasks::new(key, self.config.dropout);
                let rc = self.rnn.config();
                let width = rc.h_out() * rc.num_directions();
                let h = self.config.hidden_size;
                let mut layers: Vec<Vec<T>> = (1..rc.num_layers)
                    .map(|_| vec![T::ZERO; steps * b * width])
                    .collect();
                let mut output = vec![T::ZERO; steps * b * h];
                for s in 0..b {
                    let mut rng = m.rng(rows.start + s);
                    for layer in layers.iter_mut() {
                        for t in 0..steps {
                            m.fill(&mut rng, &mut layer[(t * b + s) * width..][..width]);
                        }
                    }
                    for t in 0..steps {
                        m.fill(&mut rng, &mut output[(t * b + s) * h..][..h]);
                    }
                }
                LmDrop::Masks {
                    layers: layers
                        .into_iter()
                        .map(|v| Tensor::new(&[steps, b, width], v))
                        .collect::<Result<_>>()?,
                    output,
                }
            }
            _ => LmDrop::Off,
        };
        self.step(&sub, state, drop, grads, final_from)
            .map(|(l, next)| (l.cross_entropy, next))
    }

    /// [`CharLm::loss_terms_and_grad`] with the regularizers over the streams `rows` of
    /// `chunk` only (a rank's share of a batch; `state` and the returned state are those
    /// streams'; the terms are means over their targets).
    ///
    /// Every mask is drawn from `rng` for the whole batch, in the order
    /// [`CharLm::loss_and_grad`] draws them (the embedding's over the vocabulary, the
    /// recurrent stack's, as [`Masks::sample`] or the fused layers' dropout between layers,
    /// then the one on the output), and the share takes its streams' rows of them. So ranks
    /// whose generators are in the same state use the masks of one process computing the
    /// whole batch, and the gradients of the shares, weighted by their targets, sum to its
    /// gradient (the AR and TAR terms are means over the same targets).
    pub fn loss_terms_and_grad_regular_rows(
        &self,
        chunk: &Chunk,
        rows: Range<usize>,
        state: Option<&State<T>>,
        rng: &mut dyn RngCore,
        grads: &mut CharLmGrads<T>,
    ) -> Result<(LossTerms, State<T>)> {
        let (steps, batch) = (chunk.steps, chunk.batch);
        self.check_ids("input", &chunk.input, steps, batch)?;
        self.check_ids("target", &chunk.target, steps, batch)?;
        if rows.is_empty() || rows.end > batch {
            return Err(Error::Input(format!(
                "rows {}..{} of a chunk of {batch} streams",
                rows.start, rows.end
            )));
        }
        let (v, h) = (self.config.vocab_size, self.config.hidden_size);
        let p = self.config.dropout;
        let r = &self.config.regular;
        let draw = |rng: &mut dyn RngCore, n: usize, p: f64| -> Vec<T> {
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
        };
        // The whole batch's masks, in the order of the one-process step.
        let embed = (r.embed_dropout > 0.0).then(|| draw(&mut *rng, v, r.embed_dropout));
        let rc = self.rnn.config();
        let rnn_masks = if rc.regular.any() {
            let m: Masks<T> = Masks::sample(rc, steps, batch, &mut *rng);
            let (locked, blocks) = (rc.regular.locked_dropout, steps);
            RnnMasks::Regular(Masks {
                layers: m
                    .layers
                    .iter()
                    .map(|l| LayerMasks {
                        input: l.input.as_ref().map(|x| take_rows(x, 1, batch, &rows)),
                        recurrent: l.recurrent.as_ref().map(|x| take_rows(x, 1, batch, &rows)),
                        weight_hh: l.weight_hh.clone(),
                        zoneout_h: l
                            .zoneout_h
                            .as_ref()
                            .map(|x| take_rows(x, blocks, batch, &rows)),
                        zoneout_c: l
                            .zoneout_c
                            .as_ref()
                            .map(|x| take_rows(x, blocks, batch, &rows)),
                        output: l
                            .output
                            .as_ref()
                            .map(|x| take_rows(x, if locked { 1 } else { blocks }, batch, &rows)),
                    })
                    .collect(),
            })
        } else if rc.dropout > 0.0 {
            // The fused layers draw (steps, batch, width) per layer but the last, in this
            // order when no lengths sort the rows.
            let width = rc.h_out() * rc.num_directions();
            let layers = (1..rc.num_layers)
                .map(|_| {
                    let m = draw(&mut *rng, steps * batch * width, rc.dropout);
                    Tensor::new(
                        &[steps, rows.len(), width],
                        take_rows(&m, steps, batch, &rows),
                    )
                })
                .collect::<Result<Vec<_>>>()?;
            RnnMasks::Between(layers)
        } else {
            RnnMasks::Off
        };
        let output = (p > 0.0).then(|| {
            if r.locked_dropout {
                let m = take_rows(&draw(&mut *rng, batch * h, p), 1, batch, &rows);
                let bh = rows.len() * h;
                (0..steps * bh).map(|k| m[k % bh]).collect()
            } else {
                take_rows(&draw(&mut *rng, steps * batch * h, p), steps, batch, &rows)
            }
        });
        let pick = |x: &[usize]| -> Vec<usize> {
            (0..steps)
                .flat_map(|t| {
                    x[t * batch + rows.start..t * batch + rows.end]
                        .iter()
                        .copied()
                })
                .collect()
        };
        let sub = Chunk {
            input: pick(&chunk.input),
            target: pick(&chunk.target),
            steps,
            batch: rows.len(),
            start: chunk.start,
        };
        let drop = LmDrop::Given {
            embed,
            rnn: rnn_masks,
            output,
        };
        self.step(&sub, state, drop, grads, &mut |_, _| Ok(()))
    }

    /// True when a regularizer beyond `dropout` is on (which [`CharLm::loss_and_grad_rows`]
    /// does not run).
    pub fn has_regularizers(&self) -> bool {
        self.config.regular.any() || self.rnn.config().regular.any()
    }

    fn step(
        &self,
        chunk: &Chunk,
        state: Option<&State<T>>,
        drop: LmDrop<'_, T>,
        grads: &mut CharLmGrads<T>,
        final_from: &mut dyn FnMut(usize, &CharLmGrads<T>) -> Result<()>,
    ) -> Result<(LossTerms, State<T>)> {
        let (steps, batch) = (chunk.steps, chunk.batch);
        self.check_ids("input", &chunk.input, steps, batch)?;
        self.check_ids("target", &chunk.target, steps, batch)?;
        if grads.embed.len() != self.embed.num_params()
            || grads.rnn.len() != self.rnn.params().len()
            || grads.head.len() != self.head.num_params()
        {
            return Err(Error::Input(
                "grads: the buffers do not fit this model (use zeros_like_grads)".into(),
            ));
        }
        let (v, h) = (self.config.vocab_size, self.config.hidden_size);
        let n = steps * batch;
        let mut x = self.embed_ids(&chunk.input, steps, batch)?;
        let p = self.config.dropout;
        let r = &self.config.regular;
        let draw = |rng: &mut dyn RngCore, n: usize, p: f64| -> Vec<T> {
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
        };
        let (out, tape, mask, embed_mask) = match drop {
            LmDrop::Sample(rng) => {
                // Embedding dropout: one mask over the vocabulary rows for the whole chunk.
                let embed_mask =
                    (r.embed_dropout > 0.0).then(|| draw(&mut *rng, v, r.embed_dropout));
                if let Some(m) = &embed_mask {
                    let e = self.config.embed_size;
                    let xd = x.data_mut();
                    for (row, &id) in xd.chunks_exact_mut(e).zip(&chunk.input) {
                        for a in row {
                            *a *= m[id];
                        }
                    }
                }
                let (out, tape) =
                    self.rnn
                        .forward_train(&x, state, None, Dropout::Sample(&mut *rng))?;
                // nn.Dropout(p) on the output: keep with probability 1 - p, scaled by 1/(1-p);
                // locked: one mask per stream, the same at every step.
                let mask = (p > 0.0).then(|| {
                    if r.locked_dropout {
                        let m = draw(&mut *rng, batch * h, p);
                        (0..n * h).map(|k| m[k % (batch * h)]).collect()
                    } else {
                        draw(&mut *rng, n * h, p)
                    }
                });
                (out, tape, mask, embed_mask)
            }
            LmDrop::Masks { layers, output } => {
                let (out, tape) =
                    self.rnn
                        .forward_train(&x, state, None, Dropout::Masks(&layers))?;
                (out, tape, Some(output), None)
            }
            LmDrop::Given { embed, rnn, output } => {
                if let Some(m) = &embed {
                    let e = self.config.embed_size;
                    let xd = x.data_mut();
                    for (row, &id) in xd.chunks_exact_mut(e).zip(&chunk.input) {
                        for a in row {
                            *a *= m[id];
                        }
                    }
                }
                let (out, tape) = match &rnn {
                    RnnMasks::Off => self.rnn.forward_train(&x, state, None, Dropout::Off)?,
                    RnnMasks::Between(l) => {
                        self.rnn.forward_train(&x, state, None, Dropout::Masks(l))?
                    }
                    RnnMasks::Regular(m) => self.rnn.forward_train_masked(&x, state, None, m)?,
                };
                (out, tape, output, embed)
            }
            LmDrop::Off => {
                let (out, tape) = self.rnn.forward_train(&x, state, None, Dropout::Off)?;
                (out, tape, None, None)
            }
        };
        let next = out.state();
        // y (n, H): the last layer's output, after dropout.
        let raw = out.output.into_data();
        let mut y = raw.clone();
        if let Some(m) = &mask {
            for (a, &b) in y.iter_mut().zip(m) {
                *a *= b;
            }
        }
        // logits (n, V)
        let mut logits = vec![T::ZERO; n * v];
        self.head.forward(&y, n, &mut logits);
        let targets: Vec<i64> = chunk.target.iter().map(|&t| t as i64).collect();
        let (loss, dlogits) = softmax_cross_entropy(&logits, v, &targets, DEFAULT_IGNORE_INDEX)?;
        // dy (n, H)
        let mut dy = vec![T::ZERO; n * h];
        self.head
            .backward(&y, &dlogits, n, &mut grads.head, Some(&mut dy));
        final_from(2, grads)?;
        let mean_sq = |v: &mut dyn Iterator<Item = f64>, n: usize| {
            v.map(|a| a * a).sum::<f64>() / n.max(1) as f64
        };
        let ar = if r.ar > 0.0 {
            r.ar * mean_sq(&mut y.iter().map(|a| a.to_f64()), n * h)
        } else {
            0.0
        };
        let tar = if r.tar > 0.0 && steps > 1 {
            let bh = batch * h;
            r.tar
                * mean_sq(
                    &mut (bh..n * h).map(|j| raw[j].to_f64() - raw[j - bh].to_f64()),
                    (steps - 1) * bh,
                )
        } else {
            0.0
        };
        // AR: ar · mean(y²) over the dropped output.
        if r.ar > 0.0 {
            let k = T::from_f64(2.0 * r.ar / (n * h) as f64);
            for (d, &a) in dy.iter_mut().zip(&y) {
                *d += k * a;
            }
        }
        if let Some(m) = &mask {
            for (a, &b) in dy.iter_mut().zip(m) {
                *a *= b;
            }
        }
        // TAR: tar · mean((h_t - h_{t-1})²) over the output before dropout, rows t·B + b.
        if r.tar > 0.0 && steps > 1 {
            let k = T::from_f64(2.0 * r.tar / ((steps - 1) * batch * h) as f64);
            let bh = batch * h;
            for j in bh..n * h {
                let g = k * (raw[j] - raw[j - bh]);
                dy[j] += g;
                dy[j - bh] -= g;
            }
        }
        let dy = Tensor::new(&[steps, batch, h], dy)?;
        let dx = self
            .rnn
            .backward(&tape, Some(&dy), None, None, &mut grads.rnn)?;
        final_from(1, grads)?;
        let mut dx = dx.input.into_data();
        if let Some(m) = &embed_mask {
            let e = self.config.embed_size;
            for (row, &id) in dx.chunks_exact_mut(e).zip(&chunk.input) {
                for a in row {
                    *a *= m[id];
                }
            }
        }
        self.embed.backward(&chunk.input, &dx, &mut grads.embed)?;
        final_from(0, grads)?;
        Ok((
            LossTerms {
                cross_entropy: loss.to_f64(),
                ar,
                tar,
            },
            next,
        ))
    }

    /// Mean loss over a text in evaluation mode: `ids` is cut into `batch_size` streams (fewer
    /// if the text is short) read `seq_len` steps at a time with the state carried from chunk
    /// to chunk, as in training ([`Batches`]); every id but the first is predicted once, up to
    /// `batch_size - 1` ids at the end that do not fill the streams.
    pub fn evaluate(&self, ids: &[usize], batch_size: usize, seq_len: usize) -> Result<Eval> {
        if ids.len() < 2 {
            return Err(Error::Input(format!(
                "evaluation needs a text of at least 2 characters, got {}",
                ids.len()
            )));
        }
        let b = batch_size.clamp(1, ids.len() - 1);
        let batches = Batches::new(ids, b, seq_len)?;
        let v = self.config.vocab_size;
        let mut state: Option<State<T>> = None;
        let mut total = 0.0f64;
        for chunk in batches.iter() {
            let (logits, next) =
                self.forward(&chunk.input, chunk.steps, chunk.batch, state.as_ref())?;
            for (row, &t) in logits.chunks_exact(v).zip(&chunk.target) {
                total += nll(row, t);
            }
            state = Some(next);
        }
        let targets = batches.num_targets();
        let loss = total / targets as f64;
        Ok(Eval {
            loss,
            bpc: loss / std::f64::consts::LN_2,
            targets,
        })
    }

    /// Generates `length` ids after `prime` (at least one id): the prime runs through the
    /// model in one forward pass, then each drawn id is fed back one step at a time through a
    /// [`Stream`]. The same options (seed included) give the same ids.
    pub fn sample(
        &self,
        prime: &[usize],
        length: usize,
        opts: &SampleOptions,
    ) -> Result<Vec<usize>> {
        let mut out = Vec::new();
        self.sample_each(prime, length, opts, |id| {
            out.push(id);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`CharLm::sample`] that hands each id to `each` as soon as it is drawn instead of
    /// collecting them: memory stays constant whatever `length` is, and the caller can show
    /// the text as it is made. An error from `each` stops the sampling and is returned.
    pub fn sample_each(
        &self,
        prime: &[usize],
        length: usize,
        opts: &SampleOptions,
        mut each: impl FnMut(usize) -> Result<()>,
    ) -> Result<()> {
        let v = self.config.vocab_size;
        if prime.is_empty() {
            return Err(Error::Input(
                "sampling needs a priming text of at least one character".into(),
            ));
        }
        if !(opts.temperature.is_finite() && opts.temperature >= 0.0) {
            return Err(Error::Input(format!(
                "temperature must be a number >= 0, got {}",
                opts.temperature
            )));
        }
        if opts.top_k == Some(0) {
            return Err(Error::Input("top_k must be at least 1".into()));
        }
        if (0..v).all(|id| opts.exclude.contains(&id)) {
            return Err(Error::Input(
                "every id is excluded: nothing left to sample".into(),
            ));
        }
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(opts.seed);
        let (logits, state) = self.forward(prime, prime.len(), 1, None)?;
        let mut cur: Vec<T> = logits[(prime.len() - 1) * v..].to_vec();
        let mut stream = Stream::new(&self.rnn, 1)?;
        stream.set_state(&state)?;
        let mut x = vec![T::ZERO; self.config.embed_size];
        for k in 0..length {
            let id = pick(&cur, opts, &mut rng);
            each(id)?;
            if k + 1 == length {
                break;
            }
            self.embed.forward(&[id], &mut x)?;
            let hid = stream.step(&x)?;
            self.head.forward(hid, 1, &mut cur);
        }
        Ok(())
    }

    /// The state_dict: `embed.weight`, `rnn.weight_ih_l0`, ... (PyTorch names and order),
    /// `head.weight`, `head.bias`, with shapes and values.
    pub fn state_dict(&self) -> Vec<(String, Vec<usize>, &[T])> {
        let (v, e, h) = (
            self.config.vocab_size,
            self.config.embed_size,
            self.config.hidden_size,
        );
        let mut out = vec![("embed.weight".to_string(), vec![v, e], self.embed.weight())];
        out.extend(state_dict(self.rnn.layout(), self.rnn.params(), "rnn"));
        out.push(("head.weight".into(), vec![v, h], self.head.weight()));
        out.push((
            "head.bias".into(),
            vec![v],
            self.head.bias().expect("the head has a bias"),
        ));
        out
    }

    /// Writes the state_dict to a safetensors file in f32, atomically.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::state_dict::save_named(&self.state_dict(), path)
    }

    /// Reads the weights written by [`CharLm::save_weights`] for a model of `config`; every
    /// tensor is checked against it, and a tensor the model does not have is an error.
    pub fn load_weights(path: impl AsRef<Path>, config: &CharLmConfig) -> Result<CharLm<T>> {
        config.validate()?;
        let f = crate::io::state_dict::ModelFile::read(path)?;
        let rnn = f.stack::<T>("rnn", &config.rnn_config())?;
        let (v, e, h) = (config.vocab_size, config.embed_size, config.hidden_size);
        let embed = Embedding::from_params(v, e, f.tensor("embed.weight", &[v, e])?)?;
        let mut head_params = f.tensor("head.weight", &[v, h])?;
        head_params.extend(f.tensor::<T>("head.bias", &[v])?);
        let head = Linear::from_params(h, v, true, head_params)?;
        let model = CharLm::from_parts(config.clone(), embed, rnn, head);
        let known: Vec<String> = match &model {
            Ok(m) => m.state_dict().into_iter().map(|(n, _, _)| n).collect(),
            Err(_) => Vec::new(),
        };
        f.finish(model, &known)
    }
}

/// -log softmax(row)[t], in f64.
fn nll<T: Real>(row: &[T], t: usize) -> f64 {
    let m = row
        .iter()
        .map(|x| x.to_f64())
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = row.iter().map(|x| (x.to_f64() - m).exp()).sum();
    sum.ln() - (row[t].to_f64() - m)
}

/// Draws one id from `logits` as `opts` says.
fn pick<T: Real>(logits: &[T], opts: &SampleOptions, rng: &mut impl Rng) -> usize {
    let mut cand: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(id, _)| !opts.exclude.contains(id))
        .map(|(id, z)| (id, z.to_f64()))
        .collect();
    // The most likely first (ties: the smaller id first).
    cand.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if opts.temperature == 0.0 {
        return cand[0].0;
    }
    if let Some(k) = opts.top_k {
        cand.truncate(k);
    }
    let m = cand[0].1;
    let w: Vec<f64> = cand
        .iter()
        .map(|&(_, z)| ((z - m) / opts.temperature).exp())
        .collect();
    let total: f64 = w.iter().sum();
    let mut u = rng.gen::<f64>() * total;
    for (&(id, _), &wi) in cand.iter().zip(&w) {
        if u < wi {
            return id;
        }
        u -= wi;
    }
    cand[cand.len() - 1].0
}

/// Writes a model directory: `vocab.json`, `config.json` (the model's configuration, with
/// `training` under the key `"training"` if given) and `model.safetensors`, each atomically.
pub fn save_dir<T: Real>(
    dir: impl AsRef<Path>,
    model: &CharLm<T>,
    vocab: &Vocab,
    training: Option<&serde_json::Value>,
) -> Result<()> {
    let dir = dir.as_ref();
    if vocab.len() != model.config().vocab_size {
        return Err(Error::Input(format!(
            "the vocabulary has {} ids but the model {}",
            vocab.len(),
            model.config().vocab_size
        )));
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, "cannot create the directory", e))?;
    vocab.save(dir.join(VOCAB_FILE))?;
    let mut cfg = model.config().to_json();
    if let Some(t) = training {
        cfg["training"] = t.clone();
    }
    crate::models::write_config(dir, cfg)?;
    model.save_weights(dir.join(WEIGHTS_FILE))
}

/// Reads a model directory written by [`save_dir`]: the model and its vocabulary.
pub fn load_dir<T: Real>(dir: impl AsRef<Path>) -> Result<(CharLm<T>, Vocab)> {
    let dir = dir.as_ref();
    load_from(dir, &crate::models::read_config(dir)?)
}

/// [`load_dir`] with the configuration already read by [`crate::models::read_config`].
pub fn load_from<T: Real>(
    dir: impl AsRef<Path>,
    cfg: &crate::models::ModelConfig,
) -> Result<(CharLm<T>, Vocab)> {
    let dir = dir.as_ref();
    let (json, source) = (&cfg.json, &cfg.source);
    let config = CharLmConfig::from_json(json, source)?;
    let vocab = Vocab::load(dir.join(VOCAB_FILE))?;
    if vocab.len() != config.vocab_size {
        return Err(Error::Input(format!(
            "{}: {} ids, but {source} says vocab_size {}",
            dir.join(VOCAB_FILE).display(),
            vocab.len(),
            config.vocab_size
        )));
    }
    let mut model = CharLm::load_weights(dir.join(WEIGHTS_FILE), &config)?;
    model.rnn_mut().set_precision(super::precision_of(cfg)?)?;
    Ok((model, vocab))
}
