//! `recur train lm`: a character-level language model trained on a text file, the way char-rnn
//! does it: the text cut into `--batch-size` streams, read `--seq-len` characters at a time
//! with the state carried from chunk to chunk (truncated BPTT), evaluation on a validation
//! text in bits per character, and a sample from the best model at the end.
//!
//! ```text
//! recur train lm --train FILE [--valid FILE] --out DIR [--cell lstm] [--hidden-size 192]
//!     [--num-layers 2] [--embed-size 64] [--dropout 0] [--layer-norm true] [--seq-len 64]
//!     [--batch-size 32] [--lr 0.004] [--lr-schedule cosine]
//!     [training options: --optimizer, --steps/--epochs, --resume, ...]
//! ```
//!
//! The defaults are a layer-normalized LSTM of 2×192 at Adam(0.004) with a cosine schedule,
//! the best setting measured on the Austen novels (docs/regularization.md). PyTorch's plain
//! `nn.LSTM` (the model that loads into `torch.nn.LSTM`, runs in int8 and exports to ONNX) is
//! `--layer-norm=false`; `--layer-norm=false --hidden-size 128 --lr 0.002 --lr-schedule
//! constant` is the char-rnn model of the earlier defaults.
//!
//! `DIR` gets `model.safetensors` (PyTorch names: `embed.weight`, `rnn.weight_ih_l0`, ...,
//! `head.weight`, `head.bias`), `config.json`, `vocab.json`, `metrics.json`, the curves and
//! the checkpoint.

use crate::limits::{self, block_params, check_params};
use crate::model_opts::{ModelDefaults, ModelOpts, WithModelDefaults};
use crate::regular_opts::{self, RegularArgs};
use crate::run::{embed_rnn_head, Log, Metrics, Part, StepStats, Task, TrainOpts};
use crate::shared::fingerprint;
use clap::Args as ClapArgs;
use recur::data::text::{unigram_bits, Batches, Vocab};
use recur::data::tokenize::WordTokenizer;
use recur::data::vocab::TokenVocab;
use recur::models::lm::{
    CharLm, CharLmConfig, CharLmGrads, SampleOptions, CONFIG_FILE, VOCAB_FILE,
};
use recur::train::checkpoint::{
    rng_from_state, rng_state, seeded, Checkpoint, CheckpointWriter, TrainRng,
};
use recur::{Mode, State, Tensor};
use std::path::{Path, PathBuf};

/// The model options' defaults of `recur train lm`: two layers of 192 (with layer norm, about
/// the cost of a plain 2×256 LSTM).
const MODEL: ModelDefaults = ModelDefaults {
    hidden_size: 192,
    num_layers: 2,
    embed_size: Some(64),
    bidirectional: None,
    dropout: 0.0,
    help: &[
        ("hidden_size", "Hidden size of every recurrent layer"),
        ("embed_size", "Size of the character embeddings"),
        (
            "dropout",
            "Dropout probability between recurrent layers and before the head (training only)",
        ),
    ],
};

/// The training defaults of `recur train lm` that differ from the other tasks': layer norm on,
/// Adam at 0.004, cosine schedule (with [`MODEL`]'s 2×192: 1.78 bpc on a held-out Austen novel
/// in 3000 steps of 32×100, at less than the time of a plain 2×256 LSTM).
const TRAINING: &[(&str, &str)] = &[
    ("layer_norm", "true"),
    ("lr", "0.004"),
    ("lr_schedule", "cosine"),
];

/// The help of `--layer-norm` in `recur train lm`, with the way back to PyTorch's plain LSTM.
const LAYER_NORM_HELP: &str = "Layer normalization inside every recurrent cell (input and recurrent pre-activations, and the LSTM cell state); --layer-norm=false gives PyTorch's plain nn.LSTM, which loads into torch.nn.LSTM, runs in int8 and exports to ONNX";

/// [`TRAINING`] as a method of the command, for `#[command(lm_training_defaults())]`.
trait WithLmTrainingDefaults {
    fn lm_training_defaults(self) -> Self;
}

impl WithLmTrainingDefaults for clap::Command {
    fn lm_training_defaults(self) -> clap::Command {
        TRAINING
            .iter()
            .fold(self, |cmd, (id, v)| {
                cmd.mut_arg(*id, |a| a.default_value(*v))
            })
            .mut_arg("layer_norm", |a| a.help(LAYER_NORM_HELP))
    }
}

/// Options of `recur train lm`.
#[derive(ClapArgs)]
#[command(model_defaults(MODEL), lm_training_defaults())]
pub struct LmArgs {
    /// The training text (UTF-8).
    #[arg(long, value_name = "FILE")]
    pub train: PathBuf,
    /// The validation text (UTF-8); by default the last 5% of the training text is held out.
    #[arg(long, value_name = "FILE")]
    pub valid: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelOpts,
    /// Steps of backpropagation through time: characters per stream in a chunk.
    #[arg(long, default_value_t = 64)]
    pub seq_len: usize,
    /// Streams read in parallel (the text is cut into this many contiguous parts).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens: char (char-rnn) or word (lowercased words and punctuation, `<eos>` at each
    /// line end; metric: perplexity).
    #[arg(long, default_value = "char", value_parser = ["char", "word"])]
    pub tokens: String,
    /// Word tokens: the largest vocabulary (the most frequent words; the others read as
    /// `<unk>`).
    #[arg(long, default_value_t = 10000, value_name = "N")]
    pub max_vocab: usize,
    /// Tokens of the sample printed at the end (0: none).
    #[arg(long, default_value_t = 200)]
    pub sample_length: usize,
    #[command(flatten)]
    pub opts: TrainOpts,
    // The model's regularizers, a block of their own.
    #[command(flatten)]
    pub regular: RegularArgs,
}

/// Reads a UTF-8 text file for `flag`; one-line errors for a missing, empty or non-UTF-8 file.
pub(crate) fn read_text(flag: &str, path: &Path) -> Result<String, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("{flag} {}: cannot read: {e}", path.display()))?;
    if bytes.is_empty() {
        return Err(format!("{flag} {}: the file is empty", path.display()));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..valid].iter().filter(|&&b| b == b'\n').count() + 1;
        format!(
            "{flag} {}:{line}: not UTF-8 text (invalid byte at offset {valid}); give a UTF-8 text file",
            path.display(),
        )
    })
}

/// The first character to prime the final sample with: a newline if the vocabulary has one.
pub(crate) fn default_prime(vocab: &Vocab) -> String {
    if vocab.contains('\n') {
        "\n".into()
    } else {
        vocab
            .chars()
            .first()
            .map_or_else(String::new, |c| c.to_string())
    }
}

/// The tokens of a language model: characters, or words with `<eos>` at line ends.
pub(crate) enum LmVocab {
    Chars(Vocab),
    Words(TokenVocab),
}

impl LmVocab {
    fn build(words: bool, train: &str, max_vocab: usize) -> recur::Result<LmVocab> {
        if !words {
            return Ok(LmVocab::Chars(Vocab::from_text(train)));
        }
        let lines: Vec<Vec<String>> = train.lines().map(word_tokens).collect();
        Ok(LmVocab::Words(TokenVocab::build(
            &lines,
            1,
            Some(max_vocab),
        )?))
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            LmVocab::Chars(v) => v.len(),
            LmVocab::Words(v) => v.len(),
        }
    }

    /// What a token is called in messages.
    pub(crate) fn unit(&self) -> &'static str {
        match self {
            LmVocab::Chars(_) => "char",
            LmVocab::Words(_) => "word",
        }
    }

    /// The ids of a text; words get `<eos>` after each line.
    pub(crate) fn encode(&self, text: &str) -> Vec<usize> {
        match self {
            LmVocab::Chars(v) => v.encode(text),
            LmVocab::Words(v) => text
                .lines()
                .flat_map(|l| {
                    let mut ids = v.encode(&word_tokens(l));
                    ids.push(TokenVocab::EOS);
                    ids
                })
                .collect(),
        }
    }

    /// The ids of a priming text: as [`LmVocab::encode`], without the final `<eos>` of words
    /// (a prime is continued, not ended); an empty prime starts a new line.
    pub(crate) fn encode_prime(&self, prime: &str) -> Vec<usize> {
        match self {
            LmVocab::Chars(v) if prime.is_empty() => v.encode(&default_prime(v)),
            LmVocab::Chars(v) => v.encode(prime),
            LmVocab::Words(_) if prime.trim().is_empty() => vec![TokenVocab::EOS],
            LmVocab::Words(_) => {
                let mut ids = self.encode(prime);
                ids.pop();
                ids
            }
        }
    }

    pub(crate) fn decode(&self, ids: &[usize]) -> String {
        match self {
            LmVocab::Chars(v) => v.decode(ids),
            LmVocab::Words(v) => {
                let mut out = String::new();
                for &id in ids {
                    if id == TokenVocab::EOS {
                        out.push('\n');
                        continue;
                    }
                    if !(out.is_empty() || out.ends_with('\n')) {
                        out.push(' ');
                    }
                    out += v.token(id).unwrap_or("<unk>");
                }
                out
            }
        }
    }

    /// The text of one more id after others, for text that streams out token by token:
    /// the same as [`LmVocab::decode`] of all of them, piece by piece. `line_start` says
    /// whether the text so far is empty or ends a line (words are joined by spaces).
    pub(crate) fn decode_next(&self, id: usize, line_start: &mut bool) -> String {
        match self {
            LmVocab::Chars(v) => v.decode(&[id]),
            LmVocab::Words(_) if id == TokenVocab::EOS => {
                *line_start = true;
                "\n".into()
            }
            LmVocab::Words(_) => {
                let sep = if *line_start { "" } else { " " };
                *line_start = false;
                format!("{sep}{}", self.decode(&[id]))
            }
        }
    }

    /// Tokens of `text` that are not in the vocabulary.
    pub(crate) fn count_unknown(&self, text: &str) -> usize {
        match self {
            LmVocab::Chars(v) => v.count_unknown(text),
            LmVocab::Words(v) => text.lines().map(|l| v.count_unknown(&word_tokens(l))).sum(),
        }
    }

    /// Ids never to sample.
    pub(crate) fn exclude(&self) -> Vec<usize> {
        match self {
            LmVocab::Chars(_) => vec![Vocab::UNK],
            LmVocab::Words(_) => vec![TokenVocab::UNK, TokenVocab::PAD, TokenVocab::BOS],
        }
    }
}

fn word_tokens(line: &str) -> Vec<String> {
    WordTokenizer::default().tokenize(line)
}

/// Writes a model directory: weights, config.json (with `"tokens"` and `training`), and the
/// vocabulary, each atomically.
fn save_lm(
    dir: &Path,
    model: &CharLm<f32>,
    vocab: &LmVocab,
    training: &serde_json::Value,
) -> recur::Result<()> {
    match vocab {
        LmVocab::Chars(v) => recur::models::lm::save_dir(dir, model, v, Some(training)),
        LmVocab::Words(v) => {
            std::fs::create_dir_all(dir)
                .map_err(|e| recur::Error::file(dir, "cannot create the directory", e))?;
            v.save(dir.join(VOCAB_FILE))?;
            let mut cfg = model.config().to_json();
            cfg["tokens"] = "word".into();
            cfg["training"] = training.clone();
            recur::models::write_config(dir, cfg)?;
            model.save_weights(dir.join(recur::models::lm::WEIGHTS_FILE))
        }
    }
}

/// Reads a model directory written by `recur train lm` (character or word tokens).
pub(crate) fn load_lm(dir: &Path) -> recur::Result<(CharLm<f32>, LmVocab)> {
    load_lm_from(dir, &recur::models::read_config(dir)?)
}

/// [`load_lm`] with the configuration already read.
pub(crate) fn load_lm_from(
    dir: &Path,
    cfg: &recur::models::ModelConfig,
) -> recur::Result<(CharLm<f32>, LmVocab)> {
    cfg.expect(recur::models::ModelKind::CharLm)?;
    if cfg.json["tokens"] != "word" {
        let (m, v) = recur::models::lm::load_from::<f32>(dir, cfg)?;
        return Ok((m, LmVocab::Chars(v)));
    }
    let cfg_path = dir.join(CONFIG_FILE);
    let config = CharLmConfig::from_json(&cfg.json, &cfg.source)?;
    let vocab = TokenVocab::load(dir.join(VOCAB_FILE))?;
    if vocab.len() != config.vocab_size {
        return Err(recur::Error::Input(format!(
            "{}: {} tokens, but {} says vocab_size {}",
            dir.join(VOCAB_FILE).display(),
            vocab.len(),
            cfg_path.display(),
            config.vocab_size
        )));
    }
    let mut model = CharLm::load_weights(dir.join(recur::models::lm::WEIGHTS_FILE), &config)?;
    model
        .rnn_mut()
        .set_precision(recur::models::precision_of(cfg)?)?;
    Ok((model, LmVocab::Words(vocab)))
}

/// The language-model task of the runner.
pub struct LmTask {
    model: CharLm<f32>,
    grads: CharLmGrads<f32>,
    vocab: LmVocab,
    batches: Batches,
    valid_ids: Vec<usize>,
    /// The state carried from chunk to chunk (none at the start of a pass).
    state: Option<State<f32>>,
    /// Chunks trained so far; the next is `cursor % chunks`.
    cursor: u64,
    /// The streams this rank computes (all of them in one process).
    rows: std::ops::Range<usize>,
    rng: TrainRng,
    config_json: serde_json::Value,
    batch_size: usize,
    seq_len: usize,
    sample_length: usize,
    seed: u64,
    unigram: f64,
    valid_unknown: usize,
    /// Training ids, and validation targets of the last evaluation (for the report).
    train_len: usize,
    valid_targets: usize,
}

impl LmTask {
    /// Reads the data and builds the model; prints what it read.
    pub fn new(a: &LmArgs, log: &mut Log) -> Result<LmTask, String> {
        let m = &a.model;
        m.refuse_missing("a language model", true, false)?;
        // Checked before the data is read: the flags against the cell.
        m.cell_options()?;
        limits::check_model(
            m,
            &[("--seq-len", a.seq_len), ("--batch-size", a.batch_size)],
        )?;
        let mode: Mode = m.mode();
        let sizes = format!(
            "--embed-size {}, --hidden-size {}, --num-layers {}",
            a.model.embed(),
            a.model.hidden_size,
            a.model.num_layers
        );
        let params = |vocab: usize| {
            block_params(
                mode,
                vocab,
                a.model.embed(),
                0,
                a.model.hidden_size,
                a.model.num_layers,
                1,
                vocab,
            )
        };
        // Before the data: with the smallest vocabulary; after it: with the real one.
        check_params(params(1), &sizes)?;
        limits::in_range(
            "--sample-length",
            a.sample_length.max(1),
            limits::MAX_GENERATE,
        )?;
        let full = read_text("--train", &a.train)?;
        let (train_text, valid_text, held_out) = match &a.valid {
            Some(p) => (full.as_str(), read_text("--valid", p)?, false),
            None => {
                let n = full.chars().count();
                if n < 4 {
                    return Err(format!(
                        "--train {}: {n} characters are too few to hold out 5% for validation; give --valid FILE",
                        a.train.display()
                    ));
                }
                let n_valid = n.div_ceil(20).max(2);
                let split = full
                    .char_indices()
                    .nth(n - n_valid)
                    .map(|(i, _)| i)
                    .unwrap_or(full.len());
                (&full[..split], full[split..].to_string(), true)
            }
        };
        if a.max_vocab < 5 {
            return Err(format!(
                "--max-vocab must be at least 5, got {}",
                a.max_vocab
            ));
        }
        let vocab = LmVocab::build(a.tokens == "word", train_text, a.max_vocab)
            .map_err(|e| e.to_string())?;
        let unit = vocab.unit();
        let train_ids = vocab.encode(train_text);
        let valid_ids = vocab.encode(&valid_text);
        if valid_ids.len() < 2 {
            return Err(format!(
                "--valid {}: the validation text needs at least 2 {unit}s",
                a.valid.as_deref().unwrap_or(&a.train).display()
            ));
        }
        let unknown = vocab.count_unknown(&valid_text);
        let batches = Batches::new(&train_ids, a.batch_size, a.seq_len).map_err(|_| {
            format!(
                "the training text ({} {unit}s) is too short for --batch-size {}: it needs at least {}",
                train_ids.len(),
                a.batch_size,
                a.batch_size + 1
            )
        })?;
        check_params(
            params(vocab.len()),
            &format!("vocabulary {}, {sizes}", vocab.len()),
        )?;
        let mut config = CharLmConfig::new(mode, vocab.len())
            .embed_size(a.model.embed())
            .hidden_size(a.model.hidden_size)
            .num_layers(a.model.num_layers)
            .dropout(a.model.dropout);
        config.regular = a.regular.lm()?;
        config.cell_options = m.cell_options_with_layer_norm(config.regular.layer_norm)?;
        config.validate().map_err(|e| e.to_string())?;
        let model: CharLm<f32> =
            CharLm::new(config.clone(), a.opts.seed).map_err(|e| e.to_string())?;
        let unigram = unigram_bits(&train_ids, &valid_ids, vocab.len());
        log.line(&format!(
            "data: {} training {unit}s ({}), {} validation {unit}s ({}{}); vocabulary {} (with <unk>)",
            train_ids.len(),
            a.train.display(),
            valid_ids.len(),
            if held_out {
                format!("the last 5% of {}", a.train.display())
            } else {
                a.valid.as_ref().expect("a validation file").display().to_string()
            },
            if unknown > 0 {
                format!(", {unknown} not in the vocabulary")
            } else {
                String::new()
            },
            vocab.len()
        ));
        log.line(&format!(
            "model: Embedding({}, {}) -> {} -> Dropout({}) -> Linear({}, {}); {} parameters",
            vocab.len(),
            a.model.embed(),
            recur::io::state_dict::describe(&config.rnn_config()),
            a.model.dropout,
            a.model.hidden_size,
            vocab.len(),
            model.num_params()
        ));
        if config.regular.any() {
            log.line(&format!(
                "regularizers: {}",
                regular_opts::describe(&config.regular)
            ));
        }
        log.line(&format!(
            "batches: {} streams x {} steps, {} chunks per pass; unigram baseline on the validation text: {}",
            a.batch_size,
            a.seq_len,
            batches.num_chunks(),
            if unit == "char" {
                format!("{unigram:.4} bpc")
            } else {
                format!("perplexity {:.1}", unigram.exp2())
            }
        ));
        let config_json = serde_json::json!({
            "model": config.to_json(),
            "train": fingerprint(train_text),
            "valid": fingerprint(&valid_text),
            "seq_len": a.seq_len,
            "batch_size": a.batch_size,
            "tokens": a.tokens,
            "max_vocab": a.max_vocab,
        });
        Ok(LmTask {
            grads: model.zeros_like_grads(),
            model,
            vocab,
            batches,
            valid_ids,
            state: None,
            cursor: 0,
            rows: 0..a.batch_size,
            // The dropout generator is apart from the initialization's.
            rng: seeded(a.opts.seed ^ 0xd50b_0d50_b0d5_0b0d),
            config_json,
            batch_size: a.batch_size,
            seq_len: a.seq_len,
            sample_length: a.sample_length,
            seed: a.opts.seed,
            unigram,
            valid_unknown: unknown,
            train_len: train_ids.len(),
            valid_targets: 0,
        })
    }

    /// One training step (see [`Task::train_batch`]). With `ready`, the plain path's
    /// backward pass announces the parts whose gradients are final as it goes (their
    /// all-reduce starts while it computes the rest); the paths with regularizers leave the
    /// announcing to the loop (all parts at the end).
    fn step(
        &mut self,
        shard: recur::train::Shard,
        mut ready: Option<&mut dyn recur::train::GradReady>,
    ) -> recur::Result<StepStats> {
        let k = (self.cursor % self.batches.num_chunks() as u64) as usize;
        if k == 0 {
            self.state = None; // a new pass over the text starts from zero states
        }
        let chunk = self.batches.chunk(k);
        self.grads.zero();
        if self.model.has_regularizers() && !shard.is_whole() {
            // Every rank draws the masks of the whole batch from the task's generator (the
            // same on every rank) and uses its streams' rows of them. A rank without streams
            // (fewer streams than ranks) computes stream 0 to keep its generator in step with
            // the others, and sends nothing.
            let rows = shard.range(chunk.batch);
            let (compute, units) = if rows.is_empty() {
                (0..1, 0)
            } else {
                (rows.clone(), chunk.steps * rows.len())
            };
            self.rows = rows.clone();
            let state = match &self.state {
                Some(s) => Some(crate::shard::state_rows(s, &compute)?),
                None => None,
            };
            let (terms, next) = self.model.loss_terms_and_grad_regular_rows(
                &chunk,
                compute.clone(),
                state.as_ref(),
                &mut self.rng,
                &mut self.grads,
            )?;
            if !rows.is_empty() {
                self.state = Some(crate::shard::with_rows(
                    self.state.take(),
                    next,
                    &rows,
                    chunk.batch,
                )?);
            }
            self.cursor += 1;
            return Ok(StepStats {
                loss: terms.cross_entropy,
                units: units as u64,
            });
        }
        if self.model.has_regularizers() {
            self.rows = 0..chunk.batch;
            let (loss, next) = self.model.loss_and_grad(
                &chunk,
                self.state.as_ref(),
                Some(&mut self.rng),
                &mut self.grads,
            )?;
            self.state = Some(next);
            self.cursor += 1;
            return Ok(StepStats {
                loss,
                units: (chunk.steps * chunk.batch) as u64,
            });
        }
        let key = recur::models::lm::RngCore::next_u64(&mut self.rng);
        let rows = shard.range(chunk.batch);
        self.rows = rows.clone();
        if rows.is_empty() {
            self.cursor += 1;
            return Ok(StepStats {
                loss: 0.0,
                units: 0,
            });
        }
        let state = match &self.state {
            Some(s) => Some(crate::shard::state_rows(s, &rows)?),
            None => None,
        };
        let dropout = (self.model.config().dropout > 0.0).then_some(key);
        let units = (chunk.steps * rows.len()) as u64;
        let (loss, next) = self.model.loss_and_grad_rows_announcing(
            &chunk,
            rows.clone(),
            state.as_ref(),
            dropout,
            &mut self.grads,
            &mut |k, g| match ready.as_deref_mut() {
                Some(ready) => {
                    let bufs = [&g.embed[..], &g.rnn[..], &g.head[..]];
                    ready.parts_final(k, units, &bufs[k..])
                }
                None => Ok(()),
            },
        )?;
        self.state = Some(crate::shard::with_rows(
            self.state.take(),
            next,
            &rows,
            chunk.batch,
        )?);
        self.cursor += 1;
        Ok(StepStats { loss, units })
    }
}

impl Task for LmTask {
    fn name(&self) -> &'static str {
        "lm"
    }
    fn unit(&self) -> &'static str {
        self.vocab.unit()
    }
    fn steps_per_epoch(&self) -> u64 {
        self.batches.num_chunks() as u64
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn config_json(&self) -> serde_json::Value {
        self.config_json.clone()
    }

    /// Every rank reads the same chunk and computes the streams
    /// [`Shard::range`](recur::train::Shard::range) gives it, carrying their state; dropout is
    /// drawn stream by stream from a key of the step, so that it does not depend on the
    /// number of ranks.
    fn train_batch(&mut self, shard: recur::train::Shard) -> recur::Result<StepStats> {
        self.step(shard, None)
    }

    /// [`Task::train_batch`] whose backward pass announces the head's gradients before the
    /// recurrent stack's backward pass, then the stack's, then the embedding's (on the
    /// paths with regularizers, all of them at the end).
    fn train_batch_announcing(
        &mut self,
        shard: recur::train::Shard,
        ready: &mut dyn recur::train::GradReady,
    ) -> recur::Result<StepStats> {
        self.step(shard, Some(ready))
    }

    fn gather_state(&mut self, comm: &dyn recur::train::Communicator) -> recur::Result<()> {
        match &mut self.state {
            Some(s) => crate::shard::gather_rows(s, &self.rows, comm),
            None => Ok(()),
        }
    }

    fn discard_step(&mut self) {
        // A state computed from a non-finite step would poison the next ones.
        self.state = None;
    }

    fn parts(&mut self) -> Vec<Part<'_>> {
        let g = &mut self.grads;
        embed_rnn_head(
            self.model.params_mut(),
            [&mut g.embed, &mut g.rnn, &mut g.head],
        )
    }

    fn evaluate(&mut self) -> recur::Result<Metrics> {
        let e = self
            .model
            .evaluate(&self.valid_ids, self.batch_size, self.seq_len)?;
        self.valid_targets = e.targets;
        Ok(match self.vocab {
            LmVocab::Chars(_) => vec![("valid_bpc".into(), e.bpc), ("valid_loss".into(), e.loss)],
            LmVocab::Words(_) => vec![
                ("valid_ppl".into(), e.loss.exp()),
                ("valid_loss".into(), e.loss),
            ],
        })
    }

    fn save_model(&self, dir: &Path, training: &serde_json::Value) -> recur::Result<()> {
        save_lm(dir, &self.model, &self.vocab, training)
    }

    fn save_state(&self, w: &mut CheckpointWriter) {
        if let Some(s) = &self.state {
            w.f32("state.h", s.h.shape(), s.h.data().to_vec());
            if let Some(c) = &s.c {
                w.f32("state.c", c.shape(), c.data().to_vec());
            }
        }
        w.meta_mut()["task"] = serde_json::json!({
            "cursor": self.cursor,
            "rng": rng_state(&self.rng),
        });
    }

    fn load_state(&mut self, c: &Checkpoint) -> recur::Result<()> {
        let state = |cell: bool| -> recur::Result<Tensor<f32>> {
            let shape = self.model.rnn().state_shape(Some(self.batch_size), cell);
            let n = shape.iter().product();
            let name = if cell { "state.c" } else { "state.h" };
            Tensor::new(&shape, c.f32(name, n)?)
        };
        self.state = if c.contains("state.h") {
            let cell = if c.contains("state.c") {
                Some(state(true)?)
            } else {
                None
            };
            Some(State {
                h: state(false)?,
                c: cell,
            })
        } else {
            None
        };
        let t = c.field("task")?;
        self.cursor = t.get("cursor").and_then(|x| x.as_u64()).ok_or_else(|| {
            recur::Error::Input(format!("{}: task.cursor is missing", c.source()))
        })?;
        self.rng = rng_from_state(&t["rng"], &format!("{}: task.rng", c.source()))?;
        Ok(())
    }

    fn finish(&mut self, dir: &Path, log: &mut dyn recur::train::Hooks) -> recur::Result<Metrics> {
        let words = matches!(self.vocab, LmVocab::Words(_));
        log.line(&if words {
            format!(
                "unigram baseline on the validation text: perplexity {:.1}",
                self.unigram.exp2()
            )
        } else {
            format!(
                "unigram baseline on the validation text: {:.4} bpc",
                self.unigram
            )
        });
        if self.sample_length > 0 {
            let (best, vocab) = load_lm(dir)?;
            let opts = SampleOptions {
                temperature: 0.8,
                top_k: None,
                seed: self.seed,
                exclude: vocab.exclude(),
            };
            let prime = vocab.encode_prime("");
            let ids = best.sample(&prime, self.sample_length, &opts)?;
            log.line(&format!(
                "sample (best model, temperature 0.8, seed {}):\n{}{}",
                self.seed,
                vocab.decode(&prime),
                vocab.decode(&ids)
            ));
        }
        let unit = self.vocab.unit();
        let sizes: Metrics = vec![
            (format!("train_{unit}s"), self.train_len as f64),
            (format!("valid_{unit}s"), self.valid_ids.len() as f64),
            ("valid_targets".into(), self.valid_targets as f64),
            ("vocab_size".into(), self.vocab.len() as f64),
            ("num_params".into(), self.model.num_params() as f64),
        ];
        let mut m: Metrics = if words {
            vec![
                ("unigram_ppl".into(), self.unigram.exp2()),
                (format!("valid_unknown_{unit}s"), self.valid_unknown as f64),
            ]
        } else {
            vec![
                ("unigram_bpc".into(), self.unigram),
                (format!("valid_unknown_{unit}s"), self.valid_unknown as f64),
            ]
        };
        m.extend(sizes);
        Ok(m)
    }
}

/// `recur eval` of a language model: bits per character (or word perplexity) on a text file,
/// read the way training reads its validation text.
pub fn eval(
    a: &crate::opts::EvalArgs,
    cfg: &recur::models::ModelConfig,
) -> Result<Metrics, String> {
    let (model, vocab) = load_lm_from(&a.model, cfg).map_err(|e| e.to_string())?;
    let text = read_text("--data", &a.data)?;
    let ids = vocab.encode(&text);
    let seq_len = 64;
    let e = model
        .evaluate(&ids, a.batch_size, seq_len)
        .map_err(|e| format!("--data {}: {e}", a.data.display()))?;
    let unit = vocab.unit();
    let mut m: Metrics = match vocab {
        LmVocab::Chars(_) => vec![("bpc".into(), e.bpc)],
        LmVocab::Words(_) => vec![("ppl".into(), e.loss.exp())],
    };
    m.push(("loss".into(), e.loss));
    m.push((format!("{unit}s"), ids.len() as f64));
    m.push((
        format!("unknown_{unit}s"),
        vocab.count_unknown(&text) as f64,
    ));
    Ok(m)
}

/// `recur predict` of a language model: each input line continued by `--max-len` tokens
/// (most likely ones at temperature 0, sampled otherwise).
/// The language model of `recur predict`: each input line is a priming text, answered by
/// itself and `--max-len` generated tokens (line ends shown as spaces).
pub fn predictor(
    a: &crate::opts::PredictArgs,
    cfg: &recur::models::ModelConfig,
) -> Result<Box<dyn crate::opts::Predictor>, String> {
    let (model, vocab) = load_lm_from(&a.model, cfg).map_err(|e| e.to_string())?;
    Ok(Box::new(LmPredictor {
        model,
        vocab,
        max_len: a.max_len,
        temperature: a.temperature,
        seed: a.seed,
    }))
}

struct LmPredictor {
    model: CharLm<f32>,
    vocab: LmVocab,
    max_len: usize,
    temperature: f64,
    seed: u64,
}

impl crate::opts::Predictor for LmPredictor {
    fn answer(&mut self, line_no: usize, line: &str) -> Result<String, String> {
        let opts = SampleOptions {
            temperature: self.temperature,
            top_k: None,
            // Line k (0-based) samples with seed + k, whatever came before it.
            seed: self.seed.wrapping_add(line_no as u64 - 1),
            exclude: self.vocab.exclude(),
        };
        let ids = self
            .model
            .sample(&self.vocab.encode_prime(line), self.max_len, &opts)
            .map_err(|e| crate::opts::line_error(line_no, e))?;
        // One line out per line in: line ends in the continuation are shown as spaces.
        let sep = if matches!(self.vocab, LmVocab::Words(_)) && !line.is_empty() {
            " "
        } else {
            ""
        };
        Ok(format!(
            "{line}{sep}{}",
            self.vocab.decode(&ids).replace('\n', " ").trim_end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::LmVocab;

    /// Text streamed token by token is the text decoded at once.
    #[test]
    fn decode_next_pieces_make_the_decoded_text() {
        let text = "the dog sees a cat .\na cat sees the dog !\n";
        for words in [false, true] {
            let v = LmVocab::build(words, text, 100).unwrap();
            let ids = v.encode(text);
            let mut line_start = true;
            let streamed: String = ids
                .iter()
                .map(|&id| v.decode_next(id, &mut line_start))
                .collect();
            assert_eq!(streamed, v.decode(&ids), "words: {words}");
            assert!(streamed.contains("sees"));
        }
    }
}
