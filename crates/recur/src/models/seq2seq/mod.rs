//! Encoder-decoder sequence-to-sequence models: [`Seq2Seq`], source Embedding → encoder
//! [`Rnn`] → its final state starts the decoder [`Rnn`] over the embedded, shifted target
//! (`<bos> y1 y2 ...`) → optional Luong attention over the encoder outputs → Linear head →
//! logits over the target vocabulary. Trained with teacher forcing (the whole target runs in
//! one pass) and backpropagation through both recurrent stacks; decoded step by step, greedily
//! or with beam search.
//!
//! ```
//! use recur::data::TokenVocab;
//! use recur::models::seq2seq::{Attention, Batch, Seq2Seq, Seq2SeqConfig};
//! use recur::nn::{Adam, AdamConfig};
//! use recur::Mode;
//!
//! // Ids 0..4 are <pad>, <unk>, <bos>, <eos>; 4.. are tokens.
//! let config = Seq2SeqConfig::new(Mode::Gru, 8, 8)
//!     .embed_size(8)
//!     .hidden_size(16)
//!     .attention(Attention::Dot);
//! let mut model: Seq2Seq<f32> = Seq2Seq::new(config, 0).unwrap();
//! let sources = vec![vec![4, 5, 6], vec![7, 5]];
//! let targets = vec![vec![6, 5, 4], vec![5, 7]]; // reversed
//! let batch = Batch::new(&sources, &targets, TokenVocab::BOS, TokenVocab::EOS).unwrap();
//! let mut opt = Adam::new(model.num_params(), AdamConfig::default().lr(1e-2));
//! let mut grads = model.zeros_like_grads();
//! for _ in 0..5 {
//!     grads.zero();
//!     let loss = model.loss_and_grad(&batch, None, &mut grads).unwrap();
//!     assert!(loss.is_finite());
//!     grads.clip_norm(5.0);
//!     opt.step_parts(&mut model.parts(&grads));
//! }
//! let out = model.greedy(&sources, 10).unwrap();
//! assert_eq!(out.len(), 2);
//! ```

mod attention;
mod decode;
mod metrics;

pub use decode::{BeamOptions, Hypothesis};
pub use metrics::{levenshtein, ErrorCounts};

use crate::core::config::{activation_count, CellOptions, Mode, RnnConfig};
use crate::core::rnn::{Dropout, Output, Rnn, State, Tape};
use crate::core::tensor::Tensor;
use crate::data::TokenVocab;
use crate::error::{fmt_shape, Error, Result};
use crate::io::state_dict::{describe, load_rnn, state_dict, LoadOptions, TensorFile};
pub use crate::models::lm::LmRegularizers;
use crate::models::rows::RowMasks;
use crate::models::ModelKind;
use crate::nn::{clip_grad_norm, softmax_cross_entropy, Embedding, Linear, DEFAULT_IGNORE_INDEX};
use attention::AttnDims;
use rand::{Rng, RngCore};
use recur_kernels::Real;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

pub use crate::models::{CONFIG_FILE, WEIGHTS_FILE};
/// The source vocabulary file of a model directory.
pub const SRC_VOCAB_FILE: &str = "src_vocab.json";
/// The target vocabulary file of a model directory.
pub const TGT_VOCAB_FILE: &str = "tgt_vocab.json";

/// The attention of the decoder over the encoder outputs (Luong et al. 2015, global
/// attention, without input feeding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Attention {
    /// No attention: the head reads the decoder output.
    None,
    /// `score(h_t, h̄_s) = h_tᵀ h̄_s`
    Dot,
    /// `score(h_t, h̄_s) = h_tᵀ W_a h̄_s` (`attn`, nn.Linear(H, H, bias=False))
    General,
}

impl Attention {
    /// `"none"`, `"dot"` or `"general"`.
    pub fn name(self) -> &'static str {
        match self {
            Attention::None => "none",
            Attention::Dot => "dot",
            Attention::General => "general",
        }
    }
}

impl crate::models::Named for Attention {
    fn as_name(&self) -> &'static str {
        self.name()
    }
}

impl fmt::Display for Attention {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Attention {
    type Err = Error;
    fn from_str(s: &str) -> Result<Attention> {
        match s {
            "none" => Ok(Attention::None),
            "dot" => Ok(Attention::Dot),
            "general" => Ok(Attention::General),
            _ => Err(Error::Config(format!(
                "unknown attention '{s}': expected none, dot or general"
            ))),
        }
    }
}

/// The shape of a [`Seq2Seq`]; in `config.json` (serde) with the cell's name under
/// `"cell"`. Directories from before `"bidirectional"` and `"dropout"` were written read
/// them as false and 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seq2SeqConfig {
    /// The recurrent cell of the encoder and the decoder.
    #[serde(rename = "cell", with = "crate::models::by_name")]
    pub mode: Mode,
    /// Ids of the source vocabulary: rows of `src_embed`.
    pub src_vocab_size: usize,
    /// Ids of the target vocabulary: rows of `tgt_embed`, outputs of the head.
    pub tgt_vocab_size: usize,
    /// Size of the source and target embeddings.
    pub embed_size: usize,
    /// Hidden size of the decoder's layers, of the attention's vectors, and of the encoder's
    /// layers (of each direction of a bidirectional encoder: `hidden_size / 2`).
    pub hidden_size: usize,
    /// Recurrent layers of the encoder, and of the decoder (its state starts from the
    /// encoder's, layer by layer).
    pub num_layers: usize,
    /// A bidirectional encoder: each layer runs both ways with `hidden_size / 2` features
    /// each, and the decoder's layer starts from the two final states side by side
    /// `[forward; backward]`.
    #[serde(default)]
    pub bidirectional: bool,
    /// Dropout probability, in training, between recurrent layers and on the decoder's output.
    #[serde(default)]
    pub dropout: f64,
    /// The attention over the encoder outputs.
    #[serde(with = "crate::models::by_name")]
    pub attention: Attention,
    /// The target id that starts every decoder input.
    pub bos_id: usize,
    /// The target id that ends every target.
    pub eos_id: usize,
    /// The regularizers beyond dropout (all off by default), the language model's set: those
    /// inside the recurrent layers ([`crate::core::regular`]; a unidirectional encoder only)
    /// in the encoder and the decoder, embedding dropout on both embeddings (one mask per
    /// batch each), AR on the decoder's output after dropout and TAR on it before dropout,
    /// over the valid steps. In `config.json` each key beside the others, written only when
    /// it is on.
    #[serde(flatten)]
    pub regular: LmRegularizers,
    /// The cell variants of the encoder and the decoder (PyTorch's cells by default; in
    /// `config.json` under `"cell_options"`, written only when not the default). Both use
    /// the same activation functions: one set, as many as the cell takes.
    #[serde(default, skip_serializing_if = "CellOptions::is_default")]
    pub cell_options: CellOptions,
}

impl Seq2SeqConfig {
    /// A configuration with defaults: embeddings of 64, 1 layer of 128, no dropout, general
    /// attention, `<bos>` and `<eos>` at the ids of [`TokenVocab`].
    pub fn new(mode: Mode, src_vocab_size: usize, tgt_vocab_size: usize) -> Seq2SeqConfig {
        Seq2SeqConfig {
            mode,
            src_vocab_size,
            tgt_vocab_size,
            embed_size: 64,
            hidden_size: 128,
            num_layers: 1,
            bidirectional: false,
            dropout: 0.0,
            attention: Attention::General,
            bos_id: TokenVocab::BOS,
            eos_id: TokenVocab::EOS,
            regular: LmRegularizers::default(),
            cell_options: CellOptions::default(),
        }
    }
    /// Sets the cell variants of the encoder and the decoder ([`CellOptions`]).
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
    /// Sets `bidirectional`.
    pub fn bidirectional(mut self, b: bool) -> Self {
        self.bidirectional = b;
        self
    }
    /// Sets `dropout`.
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }
    /// Sets `attention`.
    pub fn attention(mut self, a: Attention) -> Self {
        self.attention = a;
        self
    }
    /// Sets `bos_id` and `eos_id`.
    pub fn special_ids(mut self, bos: usize, eos: usize) -> Self {
        self.bos_id = bos;
        self.eos_id = eos;
        self
    }

    /// Checks every size is positive, `dropout` is in [0, 1), and `<bos>`/`<eos>` are two
    /// distinct target ids.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        for (name, v) in [
            ("src_vocab_size", self.src_vocab_size),
            ("tgt_vocab_size", self.tgt_vocab_size),
            ("embed_size", self.embed_size),
            ("hidden_size", self.hidden_size),
            ("num_layers", self.num_layers),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), got {}", self.dropout));
        }
        if self.bidirectional && !self.hidden_size.is_multiple_of(2) {
            return bad(format!(
                "a bidirectional encoder needs an even hidden_size (hidden_size / 2 per direction), got {}",
                self.hidden_size
            ));
        }
        let v = self.tgt_vocab_size;
        if self.bos_id >= v || self.eos_id >= v {
            return bad(format!(
                "bos_id {} and eos_id {} must be target ids (below tgt_vocab_size {v})",
                self.bos_id, self.eos_id
            ));
        }
        if self.bos_id == self.eos_id {
            return bad(format!(
                "bos_id and eos_id must differ, both are {}",
                self.bos_id
            ));
        }
        let r = &self.regular;
        if !(0.0..1.0).contains(&r.embed_dropout) {
            return bad(format!(
                "embed_dropout must be in [0, 1), got {}",
                r.embed_dropout
            ));
        }
        for (name, x) in [("ar", r.ar), ("tar", r.tar)] {
            if !(x.is_finite() && x >= 0.0) {
                return bad(format!("{name} must be a number >= 0, got {x}"));
            }
        }
        let (n, k) = (
            activation_count(self.mode),
            self.cell_options.activations.len(),
        );
        if k != 0 && k != n {
            return bad(format!(
                "activations: the encoder and the decoder share one set, and a {} takes {n} function(s), got {k}",
                self.mode
            ));
        }
        self.encoder_config().validate()?;
        self.decoder_config().validate()
    }

    /// The encoder: `nn.<cell>(embed_size, hidden_size, num_layers, dropout)`, or with
    /// `bidirectional` `nn.<cell>(embed_size, hidden_size / 2, num_layers, dropout,
    /// bidirectional=True)`; time-major.
    pub fn encoder_config(&self) -> RnnConfig {
        let h = if self.bidirectional {
            self.hidden_size / 2
        } else {
            self.hidden_size
        };
        with_regular(
            RnnConfig::new(self.mode, self.embed_size, h)
                .num_layers(self.num_layers)
                .dropout(self.dropout)
                .bidirectional(self.bidirectional),
            &self.regular,
        )
        .cell_options(self.cell_options.clone())
    }

    /// The decoder: `nn.<cell>(embed_size, hidden_size, num_layers, dropout)`, time-major.
    pub fn decoder_config(&self) -> RnnConfig {
        with_regular(
            RnnConfig::new(self.mode, self.embed_size, self.hidden_size)
                .num_layers(self.num_layers)
                .dropout(self.dropout),
            &self.regular,
        )
        .cell_options(self.cell_options.clone())
    }

    /// The configuration as a JSON object: `{"model": "seq2seq", "cell": "lstm",
    /// "src_vocab_size": ..., "tgt_vocab_size": ..., "embed_size": ..., "hidden_size": ...,
    /// "num_layers": ..., "bidirectional": false, "dropout": ..., "attention": "general",
    /// "bos_id": 2, "eos_id": 3}` ([`crate::models::config_json`]).
    pub fn to_json(&self) -> serde_json::Value {
        crate::models::config_json(ModelKind::Seq2seq, self)
    }

    /// Reads the object of [`Seq2SeqConfig::to_json`] (other keys are ignored;
    /// [`crate::models::parse_config`]) and checks it; `source` names it in error messages.
    pub fn from_json(v: &serde_json::Value, source: &str) -> Result<Seq2SeqConfig> {
        let c: Seq2SeqConfig = crate::models::parse_config(v, ModelKind::Seq2seq, source)?;
        c.validate()
            .map_err(|e| Error::Input(format!("{source}: {e}")))?;
        Ok(c)
    }
}

/// `c` with the regularizers inside the layers of `r`.
fn with_regular(c: RnnConfig, r: &LmRegularizers) -> RnnConfig {
    c.layer_norm(r.layer_norm)
        .input_dropout(r.input_dropout)
        .recurrent_dropout(r.recurrent_dropout)
        .zoneout(r.zoneout)
        .weight_drop(r.weight_drop)
        .locked_dropout(r.locked_dropout)
}

/// A batch of (source, target) pairs for teacher forcing, padded and time-major.
///
/// Target `y1 .. yn` becomes the decoder input `<bos> y1 .. yn` and the predicted sequence
/// `y1 .. yn <eos>`, both of length n + 1.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// (S, B): source ids, 0 at padding (padded steps are never read).
    src: Vec<usize>,
    /// (B)
    src_lengths: Vec<usize>,
    /// (T, B): `<bos> y1 .. yn`, 0 at padding.
    dec_input: Vec<usize>,
    /// (T, B): `y1 .. yn <eos>`, [`DEFAULT_IGNORE_INDEX`] at padding.
    target: Vec<i64>,
    /// (B): n + 1
    tgt_lengths: Vec<usize>,
    s: usize,
    t: usize,
    b: usize,
}

impl Batch {
    /// Pads the pairs `(sources[k], targets[k])`; every source needs at least one id (a target
    /// may be empty: it is then `<eos>` alone).
    pub fn new<A: AsRef<[usize]>, B: AsRef<[usize]>>(
        sources: &[A],
        targets: &[B],
        bos: usize,
        eos: usize,
    ) -> Result<Batch> {
        if sources.len() != targets.len() {
            return Err(Error::Input(format!(
                "batch: {} sources but {} targets",
                sources.len(),
                targets.len()
            )));
        }
        if sources.is_empty() {
            return Err(Error::Input("batch: no pairs".into()));
        }
        let src_lengths = source_lengths(sources)?;
        let b = sources.len();
        let s = *src_lengths.iter().max().expect("b > 0");
        let tgt_lengths: Vec<usize> = targets.iter().map(|y| y.as_ref().len() + 1).collect();
        let t = *tgt_lengths.iter().max().expect("b > 0");
        let src = pad_time_major(sources, s);
        let mut dec_input = vec![0; t * b];
        let mut target = vec![DEFAULT_IGNORE_INDEX; t * b];
        for (bi, y) in targets.iter().enumerate() {
            let y = y.as_ref();
            dec_input[bi] = bos;
            for (ti, &id) in y.iter().enumerate() {
                dec_input[(ti + 1) * b + bi] = id;
                target[ti * b + bi] = id as i64;
            }
            target[y.len() * b + bi] = eos as i64;
        }
        Ok(Batch {
            src,
            src_lengths,
            dec_input,
            target,
            tgt_lengths,
            s,
            t,
            b,
        })
    }

    /// The number of pairs, B.
    pub fn len(&self) -> usize {
        self.b
    }
    /// Always false: a batch has at least one pair.
    pub fn is_empty(&self) -> bool {
        self.b == 0
    }
    /// Source steps S (the longest source).
    pub fn src_steps(&self) -> usize {
        self.s
    }
    /// Target steps T (the longest target, plus one).
    pub fn tgt_steps(&self) -> usize {
        self.t
    }
    /// (S, B): the source ids, time-major, 0 at padding.
    pub fn src(&self) -> &[usize] {
        &self.src
    }
    /// (B): the source lengths.
    pub fn src_lengths(&self) -> &[usize] {
        &self.src_lengths
    }
    /// (T, B): the decoder input `<bos> y1 .. yn`, time-major, 0 at padding.
    pub fn dec_input(&self) -> &[usize] {
        &self.dec_input
    }
    /// (T, B): the ids to predict `y1 .. yn <eos>`, time-major, [`DEFAULT_IGNORE_INDEX`] at
    /// padding.
    pub fn target(&self) -> &[i64] {
        &self.target
    }
    /// (B): the target lengths n + 1.
    pub fn tgt_lengths(&self) -> &[usize] {
        &self.tgt_lengths
    }
    /// The number of predicted ids, Σ (n + 1).
    pub fn num_targets(&self) -> usize {
        self.tgt_lengths.iter().sum()
    }
}

/// The lengths of `sources`, each at least 1.
fn source_lengths<A: AsRef<[usize]>>(sources: &[A]) -> Result<Vec<usize>> {
    sources
        .iter()
        .enumerate()
        .map(|(k, x)| match x.as_ref().len() {
            0 => Err(Error::Input(format!(
                "source {k} is empty: every source needs at least one id"
            ))),
            n => Ok(n),
        })
        .collect()
}

/// (steps, B) time-major ids, 0 at padding.
fn pad_time_major<A: AsRef<[usize]>>(seqs: &[A], steps: usize) -> Vec<usize> {
    let b = seqs.len();
    let mut out = vec![0; steps * b];
    for (bi, x) in seqs.iter().enumerate() {
        for (ti, &id) in x.as_ref().iter().enumerate() {
            out[ti * b + bi] = id;
        }
    }
    out
}

/// The gradients of a [`Seq2Seq`], one flat buffer per module (each in its module's layout;
/// empty for a module the model does not have).
#[derive(Clone, Debug)]
pub struct Seq2SeqGrads<T> {
    /// `src_embed.weight`, (src_vocab, embed)
    pub src_embed: Vec<T>,
    /// The encoder, in its [`ParamLayout`](crate::ParamLayout) order.
    pub encoder: Vec<T>,
    /// `tgt_embed.weight`, (tgt_vocab, embed)
    pub tgt_embed: Vec<T>,
    /// The decoder, in its [`ParamLayout`](crate::ParamLayout) order.
    pub decoder: Vec<T>,
    /// `attn.weight` (H, H), general attention only.
    pub attn: Vec<T>,
    /// `attn_combine.weight` (H, 2H), with attention only.
    pub attn_combine: Vec<T>,
    /// `head.weight` (tgt_vocab, H), then `head.bias` (tgt_vocab).
    pub head: Vec<T>,
}

impl<T: Real> Seq2SeqGrads<T> {
    #[cfg(test)]
    fn buffers(&self) -> [&[T]; 7] {
        [
            &self.src_embed,
            &self.encoder,
            &self.tgt_embed,
            &self.decoder,
            &self.attn,
            &self.attn_combine,
            &self.head,
        ]
    }
    fn buffers_mut(&mut self) -> [&mut [T]; 7] {
        [
            &mut self.src_embed,
            &mut self.encoder,
            &mut self.tgt_embed,
            &mut self.decoder,
            &mut self.attn,
            &mut self.attn_combine,
            &mut self.head,
        ]
    }
    /// Sets every gradient to zero (backward passes add into the buffers).
    pub fn zero(&mut self) {
        for g in self.buffers_mut() {
            g.fill(T::ZERO);
        }
    }
    /// `clip_grad_norm_(model.parameters(), max_norm)`: returns the norm before clipping.
    pub fn clip_norm(&mut self, max_norm: f64) -> f64 {
        clip_grad_norm(&mut self.buffers_mut(), max_norm).to_f64()
    }
}

/// The modules of a [`Seq2Seq`], for [`Seq2Seq::from_modules`].
#[derive(Clone, Debug)]
pub struct Seq2SeqModules<T> {
    /// nn.Embedding(src_vocab, embed)
    pub src_embed: Embedding<T>,
    /// nn.LSTM/GRU/RNN(embed, hidden, num_layers), or (embed, hidden / 2, num_layers,
    /// bidirectional=True)
    pub encoder: Rnn<T>,
    /// nn.Embedding(tgt_vocab, embed)
    pub tgt_embed: Embedding<T>,
    /// nn.LSTM/GRU/RNN(embed, hidden, num_layers)
    pub decoder: Rnn<T>,
    /// nn.Linear(hidden, hidden, bias=False), general attention only
    pub attn: Option<Linear<T>>,
    /// nn.Linear(2·hidden, hidden, bias=False), with attention only
    pub attn_combine: Option<Linear<T>>,
    /// nn.Linear(hidden, tgt_vocab)
    pub head: Linear<T>,
}

/// An encoder-decoder model with optional Luong attention.
///
/// Its state_dict has the names of the PyTorch module
///
/// ```text
/// class Seq2Seq(nn.Module):
///     def __init__(self, Vs, Vt, E, H, L, p, attention, bidirectional):
///         super().__init__()
///         D = 2 if bidirectional else 1
///         self.src_embed = nn.Embedding(Vs, E)
///         self.encoder = nn.LSTM(E, H // D, num_layers=L, dropout=p, bidirectional=bidirectional)
///         self.tgt_embed = nn.Embedding(Vt, E)
///         self.decoder = nn.LSTM(E, H, num_layers=L, dropout=p)
///         if attention == 'general':
///             self.attn = nn.Linear(H, H, bias=False)          # W_a
///         if attention != 'none':
///             self.attn_combine = nn.Linear(2 * H, H, bias=False)  # W_c
///         self.drop = nn.Dropout(p)
///         self.head = nn.Linear(H, Vt)
///     def forward(self, src, src_len, dec_in, tgt_len):  # (S, B), (B), (T, B), (B)
///         x = pack_padded_sequence(self.src_embed(src), src_len, enforce_sorted=False)
///         enc, state = self.encoder(x)                     # state: (h, c) for an LSTM
///         enc, _ = pad_packed_sequence(enc, total_length=src.shape[0])     # (S, B, H)
///         if bidirectional:  # each layer's two directions side by side: (L, B, H)
///             state = tuple(s.view(L, 2, -1, H // 2).transpose(1, 2).reshape(L, -1, H)
///                           for s in state)
///         y = pack_padded_sequence(self.tgt_embed(dec_in), tgt_len, enforce_sorted=False)
///         dec, _ = self.decoder(y, state)
///         dec, _ = pad_packed_sequence(dec, total_length=dec_in.shape[0])  # (T, B, H)
///         dec = self.drop(dec)
///         if attention != 'none':
///             keys = self.attn(enc) if attention == 'general' else enc
///             score = torch.einsum('tbh,sbh->bts', dec, keys)
///             pad = torch.arange(src.shape[0])[None, None, :] >= src_len[:, None, None]
///             a = score.masked_fill(pad, float('-inf')).softmax(-1)       # (B, T, S)
///             ctx = torch.einsum('bts,sbh->tbh', a, enc)
///             dec = torch.tanh(self.attn_combine(torch.cat([ctx, dec], -1)))
///         return self.head(dec)                                            # (T, B, Vt)
/// ```
#[derive(Clone, Debug)]
pub struct Seq2Seq<T: Real = f32> {
    config: Seq2SeqConfig,
    src_embed: Embedding<T>,
    encoder: Rnn<T>,
    tgt_embed: Embedding<T>,
    decoder: Rnn<T>,
    attn: Option<Linear<T>>,
    attn_combine: Option<Linear<T>>,
    head: Linear<T>,
}

/// Where the dropout of a training pass comes from.
enum S2sDrop<'a> {
    Off,
    /// One generator over the whole batch.
    Sample(&'a mut dyn RngCore),
    /// Row by row ([`RowMasks`]): the batch's row `r` is row `first + r` of the whole batch.
    Rows {
        key: u64,
        first: usize,
    },
}

/// Row-by-row dropout masks of a batch (0 at padding).
struct RowDrop<T> {
    /// The encoder's masks between layers, (S, B, D·H_out) each.
    enc: Vec<Tensor<T>>,
    /// The decoder's, (T, B, H) each.
    dec: Vec<Tensor<T>>,
    /// (T, B, H): the mask on the decoder's output.
    out: Vec<T>,
}

/// What a forward pass over a [`Batch`] keeps for the backward pass.
struct Forward<T: Real> {
    d: AttnDims,
    /// (S, B, H): the encoder outputs, zero at padding.
    enc: Vec<T>,
    enc_tape: Option<Tape<T>>,
    dec_tape: Option<Tape<T>>,
    /// (T, B, H): the decoder outputs after dropout, zero at padding.
    dec: Vec<T>,
    /// (T, B, H): the dropout mask on the decoder outputs.
    dec_mask: Option<Vec<T>>,
    /// (T, B, H): the decoder outputs before dropout, kept for TAR.
    dec_raw: Option<Vec<T>>,
    /// The embedding-dropout masks over the source and the target vocabularies.
    src_mask: Option<Vec<T>>,
    tgt_mask: Option<Vec<T>>,
    /// (S, B, H): `attn(enc)`, general attention only.
    keys: Option<Vec<T>>,
    /// (B, T, S): the attention weights.
    probs: Vec<T>,
    /// (T, B, 2H): `[c_t; h_t]`.
    cat: Vec<T>,
    /// (T, B, H): the head's input (`h̃_t` with attention, the decoder output without).
    out: Vec<T>,
    /// (T·B, Vt)
    logits: Vec<T>,
}

impl<T: Real> Seq2Seq<T> {
    /// A new model with PyTorch's default initializations, seeded with `seed` (src_embed),
    /// `seed + 1` (encoder), `seed + 2` (tgt_embed), `seed + 3` (decoder), `seed + 4` (attn),
    /// `seed + 5` (attn_combine) and `seed + 6` (head).
    pub fn new(config: Seq2SeqConfig, seed: u64) -> Result<Seq2Seq<T>> {
        config.validate()?;
        let (e, h) = (config.embed_size, config.hidden_size);
        let s = |k: u64| seed.wrapping_add(k);
        let modules = Seq2SeqModules {
            src_embed: Embedding::new(config.src_vocab_size, e, s(0)),
            encoder: Rnn::new(config.encoder_config(), s(1))?,
            tgt_embed: Embedding::new(config.tgt_vocab_size, e, s(2)),
            decoder: Rnn::new(config.decoder_config(), s(3))?,
            attn: (config.attention == Attention::General).then(|| Linear::new(h, h, false, s(4))),
            attn_combine: (config.attention != Attention::None)
                .then(|| Linear::new(2 * h, h, false, s(5))),
            head: Linear::new(h, config.tgt_vocab_size, true, s(6)),
        };
        Seq2Seq::from_modules(config, modules)
    }

    /// A model made of the given modules; an error if they do not fit `config`.
    pub fn from_modules(config: Seq2SeqConfig, m: Seq2SeqModules<T>) -> Result<Seq2Seq<T>> {
        config.validate()?;
        let (vs, vt, e, h) = (
            config.src_vocab_size,
            config.tgt_vocab_size,
            config.embed_size,
            config.hidden_size,
        );
        for (name, emb, v) in [
            ("src_embed", &m.src_embed, vs),
            ("tgt_embed", &m.tgt_embed, vt),
        ] {
            if emb.num_embeddings() != v || emb.embedding_dim() != e {
                return Err(Error::Config(format!(
                    "{name} is ({}, {}), expected ({v}, embed_size {e})",
                    emb.num_embeddings(),
                    emb.embedding_dim()
                )));
            }
        }
        let mut rnns = [m.encoder, m.decoder];
        let wants = [config.encoder_config(), config.decoder_config()];
        for ((name, rnn), mut want) in ["encoder", "decoder"]
            .iter()
            .zip(rnns.iter_mut())
            .zip(wants)
        {
            want.batch_first = rnn.config().batch_first;
            want.dropout = rnn.config().dropout;
            if *rnn.config() != want {
                return Err(Error::Config(format!(
                    "the {name} is {}, expected {}",
                    describe(rnn.config()),
                    describe(&want)
                )));
            }
            rnn.set_batch_first(false);
            rnn.set_dropout(config.dropout)?;
        }
        let [encoder, decoder] = rnns;
        let linear = |name: &str, l: Option<&Linear<T>>, want: Option<(usize, usize, bool)>| {
            let got = l.map(|l| (l.in_features(), l.out_features(), l.has_bias()));
            if got == want {
                return Ok(());
            }
            let show = |x: Option<(usize, usize, bool)>| match x {
                Some((i, o, b)) => format!("Linear({i}, {o}, bias={b})"),
                None => "absent".to_string(),
            };
            Err(Error::Config(format!(
                "{name} is {}, expected {} for {} attention",
                show(got),
                show(want),
                config.attention
            )))
        };
        let att = config.attention;
        linear(
            "attn",
            m.attn.as_ref(),
            (att == Attention::General).then_some((h, h, false)),
        )?;
        linear(
            "attn_combine",
            m.attn_combine.as_ref(),
            (att != Attention::None).then_some((2 * h, h, false)),
        )?;
        linear("head", Some(&m.head), Some((h, vt, true)))?;
        Ok(Seq2Seq {
            config,
            src_embed: m.src_embed,
            encoder,
            tgt_embed: m.tgt_embed,
            decoder,
            attn: m.attn,
            attn_combine: m.attn_combine,
            head: m.head,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Seq2SeqConfig {
        &self.config
    }
    /// The modules (cloned).
    pub fn modules(&self) -> Seq2SeqModules<T> {
        Seq2SeqModules {
            src_embed: self.src_embed.clone(),
            encoder: self.encoder.clone(),
            tgt_embed: self.tgt_embed.clone(),
            decoder: self.decoder.clone(),
            attn: self.attn.clone(),
            attn_combine: self.attn_combine.clone(),
            head: self.head.clone(),
        }
    }
    /// The encoder.
    pub fn encoder(&self) -> &Rnn<T> {
        &self.encoder
    }
    /// The decoder.
    pub fn decoder(&self) -> &Rnn<T> {
        &self.decoder
    }

    /// Every parameter buffer, mutable, in state_dict order: src_embed, encoder, tgt_embed,
    /// decoder, attn, attn_combine, head (empty for absent modules).
    pub fn params_mut(&mut self) -> [&mut [T]; 7] {
        [
            self.src_embed.params_mut(),
            self.encoder.params_mut(),
            self.tgt_embed.params_mut(),
            self.decoder.params_mut(),
            self.attn.as_mut().map_or(&mut [][..], |l| l.params_mut()),
            self.attn_combine
                .as_mut()
                .map_or(&mut [][..], |l| l.params_mut()),
            self.head.params_mut(),
        ]
    }
    /// Every parameter buffer, in the order of [`Seq2Seq::params_mut`].
    pub fn params(&self) -> [&[T]; 7] {
        [
            self.src_embed.params(),
            self.encoder.params(),
            self.tgt_embed.params(),
            self.decoder.params(),
            self.attn.as_ref().map_or(&[][..], |l| l.params()),
            self.attn_combine.as_ref().map_or(&[][..], |l| l.params()),
            self.head.params(),
        ]
    }
    /// The number of parameters.
    pub fn num_params(&self) -> usize {
        self.params().iter().map(|p| p.len()).sum()
    }
    /// Zeroed gradient buffers.
    pub fn zeros_like_grads(&self) -> Seq2SeqGrads<T> {
        let [src_embed, encoder, tgt_embed, decoder, attn, attn_combine, head] =
            self.params().map(|p| vec![T::ZERO; p.len()]);
        Seq2SeqGrads {
            src_embed,
            encoder,
            tgt_embed,
            decoder,
            attn,
            attn_combine,
            head,
        }
    }
    /// The `(parameters, gradients)` pairs of the modules, in the order of
    /// [`Seq2Seq::params_mut`], for `Adam::step_parts` / `Sgd::step_parts`.
    pub fn parts<'a>(&'a mut self, grads: &'a Seq2SeqGrads<T>) -> [(&'a mut [T], &'a [T]); 7] {
        let [a, b, c, d, e, f, g] = self.params_mut();
        [
            (a, &grads.src_embed[..]),
            (b, &grads.encoder[..]),
            (c, &grads.tgt_embed[..]),
            (d, &grads.decoder[..]),
            (e, &grads.attn[..]),
            (f, &grads.attn_combine[..]),
            (g, &grads.head[..]),
        ]
    }

    /// A [`Batch`] with this model's `<bos>` and `<eos>`.
    pub fn batch<A: AsRef<[usize]>, B: AsRef<[usize]>>(
        &self,
        sources: &[A],
        targets: &[B],
    ) -> Result<Batch> {
        Batch::new(sources, targets, self.config.bos_id, self.config.eos_id)
    }

    fn check_src_ids(&self, what: &str, ids: &[usize]) -> Result<()> {
        check_ids(what, ids, self.config.src_vocab_size, "source")
    }

    fn check_batch(&self, batch: &Batch) -> Result<()> {
        self.check_src_ids("source", &batch.src)?;
        check_ids(
            "decoder input",
            &batch.dec_input,
            self.config.tgt_vocab_size,
            "target",
        )?;
        let v = self.config.tgt_vocab_size as i64;
        if let Some((k, &id)) = batch
            .target
            .iter()
            .enumerate()
            .find(|(_, &id)| id != DEFAULT_IGNORE_INDEX && !(0..v).contains(&id))
        {
            return Err(Error::Input(format!(
                "target: id {id} (step {}, sequence {}) is out of range for a target vocabulary of {v}",
                k / batch.b,
                k % batch.b
            )));
        }
        Ok(())
    }

    /// Embeds `ids` ((steps, B) time-major) into (steps, B, E).
    fn embed(
        emb: &Embedding<T>,
        ids: &[usize],
        steps: usize,
        b: usize,
        e: usize,
    ) -> Result<Tensor<T>> {
        let mut x = vec![T::ZERO; ids.len() * e];
        emb.forward(ids, &mut x)?;
        Tensor::new(&[steps, b, e], x)
    }

    /// The forward pass over a batch: with `train`, dropout (drawn from `rng` when given) and
    /// tapes for the backward pass.
    fn run(&self, batch: &Batch, drop: S2sDrop<'_>, train: bool) -> Result<Forward<T>> {
        self.check_batch(batch)?;
        let (s, t, b) = (batch.s, batch.t, batch.b);
        let (e, h, v) = (
            self.config.embed_size,
            self.config.hidden_size,
            self.config.tgt_vocab_size,
        );
        let d = AttnDims { s, t, b, h };
        let p = self.config.dropout;
        let r = &self.config.regular;
        let random = p > 0.0
            || r.input_dropout > 0.0
            || r.recurrent_dropout > 0.0
            || r.zoneout > 0.0
            || r.weight_drop > 0.0
            || r.embed_dropout > 0.0;
        let (mut rng, rows) = match drop {
            S2sDrop::Sample(r) => (Some(r), None),
            S2sDrop::Rows { key, first } => (None, Some(self.row_masks(batch, key, first)?)),
            S2sDrop::Off => (None, None),
        };
        let rows = rows.filter(|_| train && p > 0.0);
        let sample = train && random && rng.is_some();
        // Embedding dropout: one mask over each vocabulary's rows for the whole batch.
        let (src_mask, tgt_mask) = match rng {
            Some(ref mut g) if sample && r.embed_dropout > 0.0 => (
                Some(dropout_mask(
                    &mut **g,
                    self.config.src_vocab_size,
                    r.embed_dropout,
                )),
                Some(dropout_mask(
                    &mut **g,
                    self.config.tgt_vocab_size,
                    r.embed_dropout,
                )),
            ),
            _ => (None, None),
        };
        // Encoder over the sources.
        let mut xs = Self::embed(&self.src_embed, &batch.src, s, b, e)?;
        if let Some(m) = &src_mask {
            mask_rows(xs.data_mut(), &batch.src, m, e);
        }
        let (enc_out, enc_tape) = run_rnn(
            &self.encoder,
            &xs,
            None,
            &batch.src_lengths,
            train,
            match (&mut rng, &rows) {
                (Some(r), _) if sample => Dropout::Sample(&mut **r),
                (_, Some(m)) => Dropout::Masks(&m.enc),
                _ => Dropout::Off,
            },
        )?;
        let state = bridge(enc_out.state(), self.config.bidirectional);
        let enc = enc_out.output.into_data();
        // Decoder over the shifted targets, from the encoder's final state.
        let mut xt = Self::embed(&self.tgt_embed, &batch.dec_input, t, b, e)?;
        if let Some(m) = &tgt_mask {
            mask_rows(xt.data_mut(), &batch.dec_input, m, e);
        }
        let (dec_out, dec_tape) = run_rnn(
            &self.decoder,
            &xt,
            Some(&state),
            &batch.tgt_lengths,
            train,
            match (&mut rng, &rows) {
                (Some(r), _) if sample => Dropout::Sample(&mut **r),
                (_, Some(m)) => Dropout::Masks(&m.dec),
                _ => Dropout::Off,
            },
        )?;
        let mut dec = dec_out.output.into_data();
        let dec_raw = (train && r.tar > 0.0).then(|| dec.clone());
        let dec_mask = match (rng, rows) {
            (_, Some(m)) => {
                for (x, &k) in dec.iter_mut().zip(&m.out) {
                    *x *= k;
                }
                Some(m.out)
            }
            (Some(r), _) if sample && p > 0.0 => {
                // nn.Dropout(p): keep with probability 1 - p, scaled by 1/(1-p).
                let keep = 1.0 - p;
                let scale = T::from_f64(1.0 / keep);
                let mask: Vec<T> = (0..t * b * h)
                    .map(|_| {
                        if r.gen::<f64>() < keep {
                            scale
                        } else {
                            T::ZERO
                        }
                    })
                    .collect();
                for (x, &m) in dec.iter_mut().zip(&mask) {
                    *x *= m;
                }
                Some(mask)
            }
            _ => None,
        };
        let n = t * b;
        let mut keys = None;
        let mut probs = vec![];
        let mut cat = vec![];
        let out = match &self.attn_combine {
            None => dec.clone(),
            Some(combine) => {
                if let Some(attn) = &self.attn {
                    let mut k = vec![T::ZERO; s * b * h];
                    attn.forward(&enc, s * b, &mut k);
                    keys = Some(k);
                }
                probs = vec![T::ZERO; b * t * s];
                cat = vec![T::ZERO; n * 2 * h];
                attention::forward(
                    d,
                    &dec,
                    &enc,
                    keys.as_deref().unwrap_or(&enc),
                    &batch.src_lengths,
                    &batch.tgt_lengths,
                    &mut probs,
                    &mut cat,
                );
                // h̃ = tanh(W_c [c; h])
                let mut z = vec![T::ZERO; n * h];
                combine.forward(&cat, n, &mut z);
                for x in z.iter_mut() {
                    *x = x.tanh();
                }
                z
            }
        };
        let mut logits = vec![T::ZERO; n * v];
        self.head.forward(&out, n, &mut logits);
        Ok(Forward {
            d,
            enc,
            enc_tape,
            dec_tape,
            dec,
            dec_mask,
            dec_raw,
            src_mask,
            tgt_mask,
            keys,
            probs,
            cat,
            out,
            logits,
        })
    }

    /// Training step over one batch: forward with teacher forcing, the mean cross-entropy of
    /// the predicted ids (padding ignored), and backward; **adds** the parameter gradients into
    /// `grads`. Returns the loss (nats per predicted id).
    ///
    /// Dropout (training mode) is drawn from `rng` when it is given and the configured
    /// probability is positive (or a random regularizer is on): first the embedding-dropout
    /// masks (source, then target), then the encoder's masks (between layers, or those of
    /// [`crate::core::regular::Masks::sample`]), then the decoder's, then the mask on the
    /// decoder's output. Without `rng`, nothing is dropped (zoneout by its expectation). The
    /// returned loss is the cross-entropy alone; the gradients include the AR and TAR terms.
    pub fn loss_and_grad(
        &self,
        batch: &Batch,
        rng: Option<&mut dyn RngCore>,
        grads: &mut Seq2SeqGrads<T>,
    ) -> Result<f64> {
        self.loss_terms_and_grad(batch, rng, grads)
            .map(|l| l.cross_entropy)
    }

    /// [`Seq2Seq::loss_and_grad`] that returns every term of the objective whose gradient it
    /// adds: the cross-entropy, the AR term and the TAR term (see [`Seq2SeqConfig::regular`]).
    pub fn loss_terms_and_grad(
        &self,
        batch: &Batch,
        rng: Option<&mut dyn RngCore>,
        grads: &mut Seq2SeqGrads<T>,
    ) -> Result<crate::models::lm::LossTerms> {
        if grads.params_lens() != self.params().map(|p| p.len()) {
            return Err(Error::Input(
                "grads: the buffers do not fit this model (use zeros_like_grads)".into(),
            ));
        }
        let drop = match rng {
            Some(r) => S2sDrop::Sample(r),
            None => S2sDrop::Off,
        };
        self.train_step(batch, drop, grads, &mut |_, _| Ok(()))
    }

    /// [`Seq2Seq::loss_and_grad`] of a share of a larger batch (data parallelism): `batch`
    /// holds rows `first..first + batch.len()` of it. Returns the mean loss over the share's
    /// predicted ids ([`Batch::num_targets`]).
    ///
    /// Dropout, when `dropout_key` is given and the configured probability is positive, is
    /// drawn row by row ([`RowMasks`]): row `first + r` gets the masks of generator
    /// `first + r` of the key, at its own steps only: the encoder's masks between layers
    /// (layer by layer, step by step), then the decoder's, then the mask on the decoder's
    /// output. So a row's masks do not depend on the rows beside it nor on the padding, and
    /// the gradients of the shares of a batch, weighted by their targets, sum to those of
    /// the whole batch.
    ///
    /// `final_from(k, grads)` is called during the backward pass each time the buffers
    /// `k..` of [`Seq2SeqGrads`] (in the order of [`Seq2Seq::params`]) are final for this
    /// batch: 6 (the head), 5 (`attn_combine`), 4 (`attn`), 3 (the decoder), 2
    /// (`tgt_embed`), 1 (the encoder), in that order (the ones without attention skipped),
    /// so that their all-reduce can start while the rest is computed.
    pub fn loss_and_grad_rows(
        &self,
        batch: &Batch,
        first: usize,
        dropout_key: Option<u64>,
        grads: &mut Seq2SeqGrads<T>,
        final_from: &mut dyn FnMut(usize, &Seq2SeqGrads<T>) -> Result<()>,
    ) -> Result<f64> {
        if self.config.regular.any() {
            return Err(Error::Input(
                "a sequence-to-sequence model with regularizers (layer norm, variational \
                 dropout, zoneout, weight drop, embedding dropout, AR/TAR) trains on whole \
                 batches only: draw its masks with loss_and_grad"
                    .into(),
            ));
        }
        let drop = match dropout_key {
            Some(key) => S2sDrop::Rows { key, first },
            None => S2sDrop::Off,
        };
        self.train_step(batch, drop, grads, final_from)
            .map(|l| l.cross_entropy)
    }

    fn train_step(
        &self,
        batch: &Batch,
        drop: S2sDrop<'_>,
        grads: &mut Seq2SeqGrads<T>,
        final_from: &mut dyn FnMut(usize, &Seq2SeqGrads<T>) -> Result<()>,
    ) -> Result<crate::models::lm::LossTerms> {
        if grads.params_lens() != self.params().map(|p| p.len()) {
            return Err(Error::Input(
                "grads: the buffers do not fit this model (use zeros_like_grads)".into(),
            ));
        }
        let f = self.run(batch, drop, true)?;
        let v = self.config.tgt_vocab_size;
        let (loss, dlogits) =
            softmax_cross_entropy(&f.logits, v, &batch.target, DEFAULT_IGNORE_INDEX)?;
        let (ar, tar) = self.backward(batch, &f, &dlogits, grads, final_from)?;
        Ok(crate::models::lm::LossTerms {
            cross_entropy: loss.to_f64(),
            ar,
            tar,
        })
    }

    /// The row-by-row dropout masks of `batch`, rows `first..` of the whole batch.
    fn row_masks(&self, batch: &Batch, key: u64, first: usize) -> Result<RowDrop<T>> {
        let m = RowMasks::new(key, self.config.dropout);
        let (s, t, b, h) = (batch.s, batch.t, batch.b, self.config.hidden_size);
        let (ec, dc) = (self.encoder.config(), self.decoder.config());
        let ew = ec.h_out() * ec.num_directions();
        let dw = dc.h_out() * dc.num_directions();
        let mut enc: Vec<Vec<T>> = (1..ec.num_layers)
            .map(|_| vec![T::ZERO; s * b * ew])
            .collect();
        let mut dec: Vec<Vec<T>> = (1..dc.num_layers)
            .map(|_| vec![T::ZERO; t * b * dw])
            .collect();
        let mut out = vec![T::ZERO; t * b * h];
        for r in 0..b {
            let mut rng = m.rng(first + r);
            for layer in enc.iter_mut() {
                for ti in 0..batch.src_lengths[r] {
                    m.fill(&mut rng, &mut layer[(ti * b + r) * ew..][..ew]);
                }
            }
            for layer in dec.iter_mut() {
                for ti in 0..batch.tgt_lengths[r] {
                    m.fill(&mut rng, &mut layer[(ti * b + r) * dw..][..dw]);
                }
            }
            for ti in 0..batch.tgt_lengths[r] {
                m.fill(&mut rng, &mut out[(ti * b + r) * h..][..h]);
            }
        }
        let tensors = |v: Vec<Vec<T>>, steps: usize, w: usize| {
            v.into_iter()
                .map(|x| Tensor::new(&[steps, b, w], x))
                .collect::<Result<Vec<_>>>()
        };
        Ok(RowDrop {
            enc: tensors(enc, s, ew)?,
            dec: tensors(dec, t, dw)?,
            out,
        })
    }

    fn backward(
        &self,
        batch: &Batch,
        f: &Forward<T>,
        dlogits: &[T],
        grads: &mut Seq2SeqGrads<T>,
        final_from: &mut dyn FnMut(usize, &Seq2SeqGrads<T>) -> Result<()>,
    ) -> Result<(f64, f64)> {
        let AttnDims { s, t, b, h } = f.d;
        let n = t * b;
        // dout (T·B, H)
        let mut dout = vec![T::ZERO; n * h];
        self.head
            .backward(&f.out, dlogits, n, &mut grads.head, Some(&mut dout));
        final_from(6, grads)?;
        // ddec (T, B, H), denc (S, B, H)
        let mut denc = None;
        let mut ddec = match &self.attn_combine {
            None => dout,
            Some(combine) => {
                // dz = dh̃ ⊙ (1 - h̃²)
                for (g, &o) in dout.iter_mut().zip(&f.out) {
                    *g *= T::ONE - o * o;
                }
                let mut dcat = vec![T::ZERO; n * 2 * h];
                combine.backward(&f.cat, &dout, n, &mut grads.attn_combine, Some(&mut dcat));
                final_from(5, grads)?;
                let mut ddec = vec![T::ZERO; n * h];
                let mut de = vec![T::ZERO; s * b * h];
                let mut dkeys = vec![T::ZERO; s * b * h];
                attention::backward(
                    f.d,
                    &f.dec,
                    &f.enc,
                    f.keys.as_deref().unwrap_or(&f.enc),
                    &batch.src_lengths,
                    &batch.tgt_lengths,
                    &f.probs,
                    &dcat,
                    &mut ddec,
                    &mut de,
                    &mut dkeys,
                );
                let dk_enc = match &self.attn {
                    Some(attn) => {
                        let mut dk = vec![T::ZERO; s * b * h];
                        attn.backward(&f.enc, &dkeys, s * b, &mut grads.attn, Some(&mut dk));
                        dk
                    }
                    None => dkeys,
                };
                if self.attn.is_some() {
                    final_from(4, grads)?;
                }
                for (x, &y) in de.iter_mut().zip(&dk_enc) {
                    *x += y;
                }
                denc = Some(Tensor::new(&[s, b, h], de)?);
                ddec
            }
        };
        // AR: ar · mean(dec²) of the (dropped) decoder outputs at the valid steps (the others
        // are 0).
        let r = &self.config.regular;
        let valid: usize = batch.tgt_lengths.iter().sum();
        let mut ar = 0.0;
        if r.ar > 0.0 {
            let k = 2.0 * r.ar / (valid * h) as f64;
            ar = r.ar * f.dec.iter().map(|x| x.to_f64().powi(2)).sum::<f64>() / (valid * h) as f64;
            let k = T::from_f64(k);
            for (g, &y) in ddec.iter_mut().zip(&f.dec) {
                *g += k * y;
            }
        }
        if let Some(m) = &f.dec_mask {
            for (x, &y) in ddec.iter_mut().zip(m) {
                *x *= y;
            }
        }
        // TAR: tar · mean((h_t - h_{t-1})²) of the decoder outputs before dropout, over the
        // consecutive valid steps of each target.
        let mut tar = 0.0;
        if let Some(raw) = &f.dec_raw {
            let pairs: usize = batch.tgt_lengths.iter().map(|&l| l - 1).sum();
            if pairs > 0 {
                let n = (pairs * h) as f64;
                let k = T::from_f64(2.0 * r.tar / n);
                for (bi, &len) in batch.tgt_lengths.iter().enumerate() {
                    for ti in 1..len {
                        for u in 0..h {
                            let (j, i) = ((ti * b + bi) * h + u, ((ti - 1) * b + bi) * h + u);
                            let dlt = raw[j] - raw[i];
                            tar += dlt.to_f64().powi(2);
                            ddec[j] += k * dlt;
                            ddec[i] -= k * dlt;
                        }
                    }
                }
                tar *= r.tar / n;
            }
        }
        let ddec = Tensor::new(&[t, b, h], ddec)?;
        let dec_tape = f
            .dec_tape
            .as_ref()
            .expect("a training pass keeps its tapes");
        let gd = self
            .decoder
            .backward(dec_tape, Some(&ddec), None, None, &mut grads.decoder)?;
        final_from(3, grads)?;
        let mut dxt = gd.input.data().to_vec();
        if let Some(m) = &f.tgt_mask {
            mask_rows(&mut dxt, &batch.dec_input, m, self.config.embed_size);
        }
        self.tgt_embed
            .backward(&batch.dec_input, &dxt, &mut grads.tgt_embed)?;
        final_from(2, grads)?;
        // The bridge: the decoder's initial state is the encoder's final state.
        let enc_tape = f
            .enc_tape
            .as_ref()
            .expect("a training pass keeps its tapes");
        let bi = self.config.bidirectional;
        let ge = self.encoder.backward(
            enc_tape,
            denc.as_ref(),
            Some(&unbridge(&gd.h0, bi)),
            gd.c0.as_ref().map(|c| unbridge(c, bi)).as_ref(),
            &mut grads.encoder,
        )?;
        final_from(1, grads)?;
        let mut dxs = ge.input.into_data();
        if let Some(m) = &f.src_mask {
            mask_rows(&mut dxs, &batch.src, m, self.config.embed_size);
        }
        self.src_embed
            .backward(&batch.src, &dxs, &mut grads.src_embed)?;
        Ok((ar, tar))
    }

    /// Evaluation-mode logits of a batch with teacher forcing: (T·B, Vt), time-major rows
    /// (rows past a target's length hold the head's output for a zero input).
    pub fn logits(&self, batch: &Batch) -> Result<Vec<T>> {
        Ok(self.run(batch, S2sDrop::Off, false)?.logits)
    }

    /// Evaluation-mode log-likelihood of every target given its source (teacher forcing):
    /// `Σ_t log p(y_t | y_<t, x)` over `y1 .. yn <eos>`, in nats, one per pair.
    pub fn log_likelihood(&self, batch: &Batch) -> Result<Vec<f64>> {
        let logits = self.logits(batch)?;
        let v = self.config.tgt_vocab_size;
        let mut out = vec![0.0; batch.b];
        for (r, (row, &y)) in logits.chunks_exact(v).zip(&batch.target).enumerate() {
            if y != DEFAULT_IGNORE_INDEX {
                out[r % batch.b] -= nll(row, y as usize);
            }
        }
        Ok(out)
    }

    /// Evaluation-mode loss of a batch: the summed cross-entropy of the predicted ids, in
    /// nats, and their number (divide for the mean; sum over batches first).
    pub fn loss(&self, batch: &Batch) -> Result<(f64, usize)> {
        let ll = self.log_likelihood(batch)?;
        Ok((-ll.iter().sum::<f64>(), batch.num_targets()))
    }

    /// The state_dict: `src_embed.weight`, `encoder.weight_ih_l0`, ..., `tgt_embed.weight`,
    /// `decoder.weight_ih_l0`, ..., `attn.weight`, `attn_combine.weight`, `head.weight`,
    /// `head.bias` (PyTorch names and order), with shapes and values.
    pub fn state_dict(&self) -> Vec<(String, Vec<usize>, &[T])> {
        let c = &self.config;
        let (vs, vt, e, h) = (
            c.src_vocab_size,
            c.tgt_vocab_size,
            c.embed_size,
            c.hidden_size,
        );
        let mut out = vec![(
            "src_embed.weight".to_string(),
            vec![vs, e],
            self.src_embed.weight(),
        )];
        out.extend(state_dict(
            self.encoder.layout(),
            self.encoder.params(),
            "encoder",
        ));
        out.push((
            "tgt_embed.weight".into(),
            vec![vt, e],
            self.tgt_embed.weight(),
        ));
        out.extend(state_dict(
            self.decoder.layout(),
            self.decoder.params(),
            "decoder",
        ));
        if let Some(a) = &self.attn {
            out.push(("attn.weight".into(), vec![h, h], a.weight()));
        }
        if let Some(a) = &self.attn_combine {
            out.push(("attn_combine.weight".into(), vec![h, 2 * h], a.weight()));
        }
        out.push(("head.weight".into(), vec![vt, h], self.head.weight()));
        out.push((
            "head.bias".into(),
            vec![vt],
            self.head.bias().expect("the head has a bias"),
        ));
        out
    }

    /// Writes the state_dict to a safetensors file in f32, atomically.
    pub fn save_weights(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::state_dict::save_named(&self.state_dict(), path)
    }

    /// Reads the weights written by [`Seq2Seq::save_weights`] for a model of `config`; every
    /// tensor is checked against it, and a tensor the model does not have is an error.
    pub fn load_weights(path: impl AsRef<Path>, config: &Seq2SeqConfig) -> Result<Seq2Seq<T>> {
        let file = TensorFile::read(path)?;
        Seq2Seq::from_tensor_file(&file, "", config)
    }

    /// Builds a model of `config` from the tensors of `file` whose names start with `prefix`
    /// (e.g. `""`, or `"model."` for a state_dict saved from a module that holds the model as
    /// `model`); every tensor is checked against the configuration, and a tensor under the
    /// prefix that the model does not have is an error.
    pub fn from_tensor_file(
        file: &TensorFile,
        prefix: &str,
        config: &Seq2SeqConfig,
    ) -> Result<Seq2Seq<T>> {
        config.validate()?;
        let src = file.source().to_string();
        let misfit = |m: String| {
            Error::Weights(format!(
                "{src}: the weights do not fit the configuration: {m}"
            ))
        };
        let relu = match config.mode {
            Mode::RnnTanh => Some(false),
            Mode::RnnRelu => Some(true),
            _ => None,
        };
        let rnn = |name: &str, mut want: RnnConfig| -> Result<Rnn<T>> {
            want.dropout = 0.0;
            let opts = LoadOptions {
                prefix: Some(format!("{prefix}{name}")),
                relu,
                batch_first: false,
            };
            let mut r = load_rnn::<T>(file, &opts)?;
            // The regularizers without parameters are not in the weights: they come from
            // the configuration.
            if r.config().regular.layer_norm == want.regular.layer_norm {
                r.set_regularizers(want.regular.clone())?;
            }
            // So are the cell variants other than peepholes.
            if r.config().cell.peepholes == want.cell.peepholes && r.config().cell != want.cell {
                let cfg = r.config().clone().cell_options(want.cell.clone());
                r = Rnn::from_params(cfg, r.params().to_vec())?;
            }
            if *r.config() != want {
                return Err(misfit(format!(
                    "the {name} is {}, expected {}",
                    describe(r.config()),
                    describe(&want)
                )));
            }
            Ok(r)
        };
        let tensor = |name: &str, shape: &[usize]| -> Result<Vec<T>> {
            let full = format!("{prefix}{name}");
            let t = file.float::<T>(&full)?;
            if t.shape() != shape {
                return Err(misfit(format!(
                    "tensor '{full}' has shape {}, expected {}",
                    fmt_shape(t.shape()),
                    fmt_shape(shape)
                )));
            }
            Ok(t.into_data())
        };
        let c = config;
        let (vs, vt, e, h) = (
            c.src_vocab_size,
            c.tgt_vocab_size,
            c.embed_size,
            c.hidden_size,
        );
        let general = c.attention == Attention::General;
        let attends = c.attention != Attention::None;
        let mut head = tensor("head.weight", &[vt, h])?;
        head.extend(tensor("head.bias", &[vt])?);
        let modules = Seq2SeqModules {
            src_embed: Embedding::from_params(vs, e, tensor("src_embed.weight", &[vs, e])?)?,
            encoder: rnn("encoder", config.encoder_config())?,
            tgt_embed: Embedding::from_params(vt, e, tensor("tgt_embed.weight", &[vt, e])?)?,
            decoder: rnn("decoder", config.decoder_config())?,
            attn: if general {
                Some(Linear::from_params(
                    h,
                    h,
                    false,
                    tensor("attn.weight", &[h, h])?,
                )?)
            } else {
                None
            },
            attn_combine: if attends {
                Some(Linear::from_params(
                    2 * h,
                    h,
                    false,
                    tensor("attn_combine.weight", &[h, 2 * h])?,
                )?)
            } else {
                None
            },
            head: Linear::from_params(h, vt, true, head)?,
        };
        let model =
            Seq2Seq::from_modules(config.clone(), modules).map_err(|e| misfit(e.to_string()))?;
        let known: Vec<String> = model
            .state_dict()
            .into_iter()
            .map(|(n, _, _)| format!("{prefix}{n}"))
            .collect();
        if let Some(extra) = file
            .names()
            .find(|n| n.starts_with(prefix) && !known.iter().any(|k| k == n))
        {
            return Err(Error::Weights(format!(
                "{src}: unexpected tensor '{extra}' (not a parameter of this model with {} attention)",
                config.attention
            )));
        }
        Ok(model)
    }
}

impl<T: Real> Seq2SeqGrads<T> {
    fn params_lens(&self) -> [usize; 7] {
        [
            self.src_embed.len(),
            self.encoder.len(),
            self.tgt_embed.len(),
            self.decoder.len(),
            self.attn.len(),
            self.attn_combine.len(),
            self.head.len(),
        ]
    }
}

/// The decoder's initial state from the encoder's final state: the same for a unidirectional
/// encoder; for a bidirectional one, each layer's two directions side by side,
/// (2L, B, H/2) → (L, B, H), as `h.view(L, 2, B, H/2).transpose(1, 2).reshape(L, B, H)`.
fn bridge<T: Real>(s: State<T>, bidirectional: bool) -> State<T> {
    if !bidirectional {
        return s;
    }
    let join = |t: &Tensor<T>| {
        let (ld, b, h2) = (t.shape()[0], t.shape()[1], t.shape()[2]);
        let l = ld / 2;
        let mut out = vec![T::ZERO; ld * b * h2];
        for li in 0..l {
            for bi in 0..b {
                for d in 0..2 {
                    let from = ((li * 2 + d) * b + bi) * h2;
                    let to = (li * b + bi) * 2 * h2 + d * h2;
                    out[to..to + h2].copy_from_slice(&t.data()[from..from + h2]);
                }
            }
        }
        Tensor::new(&[l, b, 2 * h2], out).expect("bridged state shape")
    };
    State {
        h: join(&s.h),
        c: s.c.as_ref().map(join),
    }
}

/// The gradient of [`bridge`]: (L, B, H) → (2L, B, H/2) for a bidirectional encoder.
fn unbridge<T: Real>(g: &Tensor<T>, bidirectional: bool) -> Tensor<T> {
    if !bidirectional {
        return g.clone();
    }
    let (l, b, h) = (g.shape()[0], g.shape()[1], g.shape()[2]);
    let h2 = h / 2;
    let mut out = vec![T::ZERO; l * b * h];
    for li in 0..l {
        for bi in 0..b {
            for d in 0..2 {
                let from = (li * b + bi) * h + d * h2;
                let to = ((li * 2 + d) * b + bi) * h2;
                out[to..to + h2].copy_from_slice(&g.data()[from..from + h2]);
            }
        }
    }
    Tensor::new(&[2 * l, b, h2], out).expect("encoder state shape")
}

/// A recurrent stack over `x`: evaluation mode, or with `train` a training pass that keeps its
/// tape, with `dropout`.
fn run_rnn<T: Real>(
    rnn: &Rnn<T>,
    x: &Tensor<T>,
    state: Option<&State<T>>,
    lengths: &[usize],
    train: bool,
    dropout: Dropout<'_, T>,
) -> Result<(Output<T>, Option<Tape<T>>)> {
    if !train {
        return Ok((rnn.forward(x, state, Some(lengths))?, None));
    }
    let (o, tape) = rnn.forward_train(x, state, Some(lengths), dropout)?;
    Ok((o, Some(tape)))
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

/// Multiplies row `k` of `x` (rows of `e`) by the mask of its id `ids[k]`.
fn mask_rows<T: Real>(x: &mut [T], ids: &[usize], mask: &[T], e: usize) {
    for (row, &id) in x.chunks_exact_mut(e).zip(ids) {
        for a in row {
            *a *= mask[id];
        }
    }
}

/// An error if an id of `ids` is not below `v`.
fn check_ids(what: &str, ids: &[usize], v: usize, side: &str) -> Result<()> {
    if let Some((k, &id)) = ids.iter().enumerate().find(|(_, &id)| id >= v) {
        return Err(Error::Input(format!(
            "{what}[{k}] = {id} is out of range for a {side} vocabulary of {v}"
        )));
    }
    Ok(())
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

/// log softmax(row), in f64, into `out`.
fn log_softmax<T: Real>(row: &[T], out: &mut [f64]) {
    let m = row
        .iter()
        .map(|x| x.to_f64())
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = row.iter().map(|x| (x.to_f64() - m).exp()).sum();
    let lse = m + sum.ln();
    for (o, &x) in out.iter_mut().zip(row) {
        *o = x.to_f64() - lse;
    }
}

/// Writes a model directory: `src_vocab.json`, `tgt_vocab.json` (the vocabularies of
/// [`TokenVocab`]: `<pad>`, `<unk>`, `<bos>`, `<eos>` first), `config.json` (the model's
/// configuration, with `training` under the key `"training"` if given) and
/// `model.safetensors`, each atomically.
pub fn save_dir<T: Real>(
    dir: impl AsRef<Path>,
    model: &Seq2Seq<T>,
    src_vocab: &TokenVocab,
    tgt_vocab: &TokenVocab,
    training: Option<&serde_json::Value>,
) -> Result<()> {
    let dir = dir.as_ref();
    let c = model.config();
    for (side, vocab, n) in [
        ("source", src_vocab, c.src_vocab_size),
        ("target", tgt_vocab, c.tgt_vocab_size),
    ] {
        if vocab.len() != n {
            return Err(Error::Input(format!(
                "the {side} vocabulary has {} ids but the model {n}",
                vocab.len()
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::file(dir, "cannot create the directory", e))?;
    src_vocab.save(dir.join(SRC_VOCAB_FILE))?;
    tgt_vocab.save(dir.join(TGT_VOCAB_FILE))?;
    let mut cfg = c.to_json();
    if let Some(t) = training {
        cfg["training"] = t.clone();
    }
    crate::models::write_config(dir, cfg)?;
    model.save_weights(dir.join(WEIGHTS_FILE))
}

/// A model directory read by [`load_dir`].
#[derive(Clone, Debug)]
pub struct Loaded<T: Real> {
    /// The model.
    pub model: Seq2Seq<T>,
    /// The source vocabulary.
    pub src_vocab: TokenVocab,
    /// The target vocabulary.
    pub tgt_vocab: TokenVocab,
    /// The whole `config.json` (with `"training"` if it was saved).
    pub config_json: serde_json::Value,
}

/// Reads a model directory written by [`save_dir`].
pub fn load_dir<T: Real>(dir: impl AsRef<Path>) -> Result<Loaded<T>> {
    let dir = dir.as_ref();
    if !dir.is_dir() {
        return Err(Error::Io(format!(
            "{}: no such model directory",
            dir.display()
        )));
    }
    load_from(dir, &crate::models::read_config(dir)?)
}

/// [`load_dir`] with the configuration already read by [`crate::models::read_config`].
pub fn load_from<T: Real>(
    dir: impl AsRef<Path>,
    cfg: &crate::models::ModelConfig,
) -> Result<Loaded<T>> {
    let dir = dir.as_ref();
    let (json, source) = (&cfg.json, &cfg.source);
    let config = Seq2SeqConfig::from_json(json, source)?;
    let src_vocab = TokenVocab::load(dir.join(SRC_VOCAB_FILE))?;
    let tgt_vocab = TokenVocab::load(dir.join(TGT_VOCAB_FILE))?;
    for (file, vocab, n, key) in [
        (
            SRC_VOCAB_FILE,
            &src_vocab,
            config.src_vocab_size,
            "src_vocab_size",
        ),
        (
            TGT_VOCAB_FILE,
            &tgt_vocab,
            config.tgt_vocab_size,
            "tgt_vocab_size",
        ),
    ] {
        if vocab.len() != n {
            return Err(Error::Input(format!(
                "{}: {} ids, but {source} says {key} {n}",
                dir.join(file).display(),
                vocab.len(),
            )));
        }
    }
    let model = Seq2Seq::load_weights(dir.join(WEIGHTS_FILE), &config)?;
    Ok(Loaded {
        model,
        src_vocab,
        tgt_vocab,
        config_json: json.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shares of a batch, each padded to its own longest pair, with row-by-row dropout:
    /// their gradients weighted by their targets sum to the whole batch's (f64: only the
    /// order of the sums differs), and the backward pass announces the buffers from the
    /// head down, each final when announced.
    #[test]
    fn shares_of_a_batch_sum_to_the_whole_batch_and_announce_their_final_buffers() {
        let cfg = Seq2SeqConfig::new(Mode::Lstm, 7, 8)
            .embed_size(3)
            .hidden_size(4)
            .num_layers(2)
            .bidirectional(true)
            .dropout(0.3)
            .attention(Attention::General);
        let model: Seq2Seq<f64> = Seq2Seq::new(cfg, 5).unwrap();
        let src: Vec<Vec<usize>> = vec![vec![3, 4, 5], vec![2], vec![6, 2, 3, 4, 5], vec![3, 3]];
        let tgt: Vec<Vec<usize>> = vec![vec![2, 3], vec![4, 5, 6, 7], vec![3], vec![]];
        let whole_batch = model.batch(&src, &tgt).unwrap();
        let mut whole = model.zeros_like_grads();
        let mut order = Vec::new();
        let loss = model
            .loss_and_grad_rows(&whole_batch, 0, Some(11), &mut whole, &mut |k, _| {
                order.push(k);
                Ok(())
            })
            .unwrap();
        assert_eq!(order, [6, 5, 4, 3, 2, 1]);
        let n = whole_batch.num_targets() as f64;
        let mut sum = model.zeros_like_grads();
        let mut loss_sum = 0.0;
        for rows in [0..1, 1..3, 3..4] {
            let b = model.batch(&src[rows.clone()], &tgt[rows.clone()]).unwrap();
            let mut g = model.zeros_like_grads();
            let mut seen: Vec<(usize, Vec<f64>)> = Vec::new();
            let l = model
                .loss_and_grad_rows(&b, rows.start, Some(11), &mut g, &mut |k, g| {
                    seen.push((k, g.buffers()[k].to_vec()));
                    Ok(())
                })
                .unwrap();
            for (k, v) in &seen {
                assert_eq!(v, &g.buffers()[*k], "buffer {k} changed after it was final");
            }
            let w = b.num_targets() as f64;
            loss_sum += l * w;
            for (s, x) in sum.buffers_mut().into_iter().zip(g.buffers()) {
                for (a, &y) in s.iter_mut().zip(x) {
                    *a += y * w / n;
                }
            }
        }
        assert!(
            (loss_sum / n - loss).abs() < 1e-12,
            "{} {loss}",
            loss_sum / n
        );
        for (k, (a, b)) in sum.buffers().iter().zip(whole.buffers()).enumerate() {
            for (x, y) in a.iter().zip(b.iter()) {
                assert!((x - y).abs() < 1e-12, "buffer {k}: {x} against {y}");
            }
        }
        // Another key drops other values.
        let mut other = model.zeros_like_grads();
        model
            .loss_and_grad_rows(&whole_batch, 0, Some(12), &mut other, &mut |_, _| Ok(()))
            .unwrap();
        assert_ne!(other.decoder, whole.decoder);
    }
}
