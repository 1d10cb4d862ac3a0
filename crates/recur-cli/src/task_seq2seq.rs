//! `recur train seq2seq`: an encoder-decoder model ([`recur::models::seq2seq::Seq2Seq`]) trained on
//! (source, target) pairs with teacher forcing, evaluated by decoding the validation sources
//! (greedy or beam search) against their references: exact match, token error rate, and for
//! CMUdict the word error rate.
//!
//! ```text
//! recur train seq2seq --train FILE [--valid FILE] [--test FILE] --out DIR
//!     [--format tsv|cmudict] [--tokens char|word|space] [--src-tokens ..] [--tgt-tokens ..]
//!     [--src-column 0] [--tgt-column 1] [--header] [--skip-bad-lines] [--max-train-len N]
//!     [--cell lstm] [--hidden-size 256] [--num-layers 1] [--bidirectional] [--embed-size 64]
//!     [--dropout 0]
//!     [--attention none|dot|general] [--batch-size 64] [--beam 1] [--length-penalty 0]
//!     [training options: --lr, --optimizer, --steps/--epochs, --resume, ...]
//! ```
//!
//! Formats (read by [`recur::data`]): `tsv` has one pair per line, `source<TAB>target` (other
//! columns with `--src-column`/`--tgt-column`, by index or, with `--header`, by name);
//! `cmudict` is the CMU Pronouncing Dictionary, `word PH1 PH2 ...`, read as the characters of
//! the word → the phones (alternative pronunciations `word(2)` are further references of the
//! same word). Tokens: `char` (every character), `word` (words and punctuation, by
//! [`recur::data::WordTokenizer`], case kept) or `space` (split at whitespace); outputs are
//! joined back with nothing (char) or one space between tokens.
//! A source listed several times has several correct outputs: a prediction is right if it is
//! any of them.
//!
//! Without `--valid` / `--test`, a deterministic 5% of the distinct sources (by a hash of the
//! source text, so the split does not depend on the order of the file) is held out for each.
//!
//! `DIR` gets `model.safetensors` (PyTorch names: `src_embed.weight`, `encoder.weight_ih_l0`,
//! ..., `tgt_embed.weight`, `decoder.*`, `attn.weight`, `attn_combine.weight`, `head.weight`,
//! `head.bias`), `config.json` (with the data format under `"data"`), `src_vocab.json`,
//! `tgt_vocab.json`, `metrics.json`, the curves and the checkpoint.

use crate::limits::{self, block_params, check_params};
use crate::model_opts::{ModelDefaults, ModelOpts, WithModelDefaults};
use crate::regular_opts::{self, RegularArgs};
use crate::run::{Log, Metrics, Part, StepStats, Task, TrainOpts};
use clap::Args as ClapArgs;
use recur::data::cmudict::CmudictOptions;
use recur::data::tokenize::{chars, Contractions, WordTokenizer};
use recur::data::tsv::PairTsv;
use recur::data::{Column, TokenVocab};
use recur::models::seq2seq::{
    load_dir, save_dir, Attention, Batch, BeamOptions, ErrorCounts, Seq2Seq, Seq2SeqConfig,
    Seq2SeqGrads,
};
use recur::train::checkpoint::{
    rng_from_state, rng_state, seeded, Checkpoint, CheckpointWriter, TrainRng,
};
use recur::Mode;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The model options' defaults of `recur train seq2seq`: an encoder and a decoder of one
/// layer of 256 over embeddings of 64.
const MODEL: ModelDefaults = ModelDefaults {
    hidden_size: 256,
    num_layers: 1,
    embed_size: Some(64),
    bidirectional: Some(false),
    dropout: 0.0,
    help: &[
        (
            "cell",
            "Recurrent cell of the encoder and decoder: lstm, gru, rnn_tanh or rnn_relu",
        ),
        (
            "hidden_size",
            "Hidden size of the decoder and the attention (and of the encoder: of each \
             direction, half of it, with --bidirectional)",
        ),
        (
            "num_layers",
            "Recurrent layers of the encoder and of the decoder",
        ),
        (
            "bidirectional",
            "A bidirectional encoder (hidden-size / 2 per direction; the decoder starts from \
             both directions' final states side by side)",
        ),
        ("embed_size", "Size of the source and target embeddings"),
        (
            "dropout",
            "Dropout probability between recurrent layers and on the decoder's output \
             (training only)",
        ),
    ],
};

/// Options of `recur train seq2seq`.
#[derive(ClapArgs)]
#[command(model_defaults(MODEL))]
pub struct Seq2SeqArgs {
    /// The training pairs.
    #[arg(long, value_name = "FILE")]
    pub train: PathBuf,
    /// The validation pairs; by default 5% of the training sources are held out.
    #[arg(long, value_name = "FILE")]
    pub valid: Option<PathBuf>,
    /// The test pairs, decoded by the best model at the end; by default 5% of the training
    /// sources are held out.
    #[arg(long, value_name = "FILE")]
    pub test: Option<PathBuf>,
    /// File format: tsv (source<TAB>target) or cmudict (word PH1 PH2 ...).
    #[arg(long, default_value = "tsv")]
    pub format: String,
    /// Tokens of both sides: char, word (words and punctuation) or space (split at
    /// whitespace); cmudict reads characters → phones whatever this says.
    #[arg(long, default_value = "char")]
    pub tokens: String,
    /// Tokens of the source side (default: --tokens).
    #[arg(long)]
    pub src_tokens: Option<String>,
    /// Tokens of the target side (default: --tokens).
    #[arg(long)]
    pub tgt_tokens: Option<String>,
    /// tsv: the column of the sources, a 0-based index or (with --header) a name.
    #[arg(long, default_value = "0")]
    pub src_column: String,
    /// tsv: the column of the targets, a 0-based index or (with --header) a name.
    #[arg(long, default_value = "1")]
    pub tgt_column: String,
    /// tsv: the first line of every file is a header (column names).
    #[arg(long)]
    pub header: bool,
    /// Skip malformed lines (counted in the log) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Leave out training pairs with more tokens than this on either side.
    #[arg(long, value_name = "N")]
    pub max_train_len: Option<usize>,
    #[command(flatten)]
    pub model: ModelOpts,
    /// Attention over the encoder outputs: none, dot or general (Luong).
    #[arg(long, default_value = "general")]
    pub attention: String,
    /// Pairs per training batch (pairs of similar lengths are batched together).
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    /// Beam width of the decoding in evaluations (1: greedy).
    #[arg(long, default_value_t = 1)]
    pub beam: usize,
    /// Length normalization α of the beam search (score = log p / length^α).
    #[arg(long, default_value_t = 0.0)]
    pub length_penalty: f64,
    /// Longest decoded output, in tokens (default: the longest training target + 10).
    #[arg(long, value_name = "N")]
    pub max_len: Option<usize>,
    #[command(flatten)]
    pub opts: TrainOpts,
    // The model's regularizers, a block of their own.
    #[command(flatten)]
    pub regular: RegularArgs,
}

/// How a side of the data is cut into tokens, and joined back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokens {
    /// Every character; joined with nothing.
    Char,
    /// Words and punctuation ([`WordTokenizer`], case and contractions kept); joined with
    /// spaces.
    Word,
    /// Whatever whitespace separates; joined with spaces.
    Space,
}

impl Tokens {
    fn parse(flag: &str, s: &str) -> Result<Tokens, String> {
        match s {
            "char" => Ok(Tokens::Char),
            "word" => Ok(Tokens::Word),
            "space" => Ok(Tokens::Space),
            _ => Err(format!(
                "{flag}: unknown tokens '{s}': expected char, word or space"
            )),
        }
    }
    fn name(self) -> &'static str {
        match self {
            Tokens::Char => "char",
            Tokens::Word => "word",
            Tokens::Space => "space",
        }
    }
    /// The tokens of `text`.
    pub fn split(self, text: &str) -> Vec<String> {
        match self {
            Tokens::Char => chars(text, false),
            Tokens::Word => WordTokenizer {
                lowercase: false,
                contractions: Contractions::Keep,
            }
            .tokenize(text),
            Tokens::Space => text.split_whitespace().map(String::from).collect(),
        }
    }
    /// The text of `tokens`.
    pub fn join(self, tokens: &[&str]) -> String {
        match self {
            Tokens::Char => tokens.concat(),
            Tokens::Word | Tokens::Space => tokens.join(" "),
        }
    }
}

/// A tsv column from the command line: digits are an index, anything else a name.
fn column(s: &str) -> Column {
    match s.parse::<usize>() {
        Ok(i) => Column::Index(i),
        Err(_) => Column::Name(s.to_string()),
    }
}

/// How a data file is read.
#[derive(Clone, Debug, PartialEq)]
pub struct DataFormat {
    /// `tsv` or `cmudict`.
    pub format: String,
    pub src_tokens: Tokens,
    pub tgt_tokens: Tokens,
    pub src_column: String,
    pub tgt_column: String,
    pub header: bool,
}

impl DataFormat {
    fn from_args(a: &Seq2SeqArgs) -> Result<DataFormat, String> {
        let both = Tokens::parse("--tokens", &a.tokens)?;
        let side = |flag: &str, v: &Option<String>| {
            v.as_deref().map_or(Ok(both), |s| Tokens::parse(flag, s))
        };
        let (src_tokens, tgt_tokens) = match a.format.as_str() {
            "cmudict" => (Tokens::Char, Tokens::Space),
            "tsv" => (
                side("--src-tokens", &a.src_tokens)?,
                side("--tgt-tokens", &a.tgt_tokens)?,
            ),
            other => {
                return Err(format!(
                    "--format: unknown format '{other}': expected tsv or cmudict"
                ))
            }
        };
        if a.format == "tsv" && column(&a.src_column) == column(&a.tgt_column) {
            return Err(format!(
                "--src-column and --tgt-column are both {}: give two different columns",
                a.src_column
            ));
        }
        Ok(DataFormat {
            format: a.format.clone(),
            src_tokens,
            tgt_tokens,
            src_column: a.src_column.clone(),
            tgt_column: a.tgt_column.clone(),
            header: a.header,
        })
    }

    /// The format as JSON, stored in config.json under `"training"."data"`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "format": self.format,
            "src_tokens": self.src_tokens.name(),
            "tgt_tokens": self.tgt_tokens.name(),
            "src_column": self.src_column,
            "tgt_column": self.tgt_column,
            "header": self.header,
        })
    }

    /// Reads [`DataFormat::to_json`]; `source` names it in messages.
    pub fn from_json(v: &serde_json::Value, source: &str) -> Result<DataFormat, String> {
        let bad = |k: &str| format!("{source}: \"training.data.{k}\" is missing or invalid");
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).ok_or_else(|| bad(k));
        let tok = |k: &str| Tokens::parse(k, s(k)?).map_err(|_| bad(k));
        let format = s("format")?.to_string();
        if format != "tsv" && format != "cmudict" {
            return Err(bad("format"));
        }
        Ok(DataFormat {
            format,
            src_tokens: tok("src_tokens")?,
            tgt_tokens: tok("tgt_tokens")?,
            src_column: s("src_column")?.to_string(),
            tgt_column: s("tgt_column")?.to_string(),
            header: v.get("header").and_then(|x| x.as_bool()).unwrap_or(false),
        })
    }
}

/// One source and every target listed for it, in file order, as tokens.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The source text (the key the held-out split hashes).
    pub source: String,
    pub src: Vec<String>,
    pub targets: Vec<Vec<String>>,
}

/// The (source, target) pairs of a file, grouped by source (first appearance order); the
/// second value says what the reader skipped (with `skip_bad_lines`).
pub fn read_groups(
    flag: &str,
    path: &Path,
    f: &DataFormat,
    skip_bad_lines: bool,
) -> Result<(Vec<Group>, String), String> {
    let name = path.display();
    let fail = |e: recur::Error| format!("{flag} {e}");
    // (source text, target tokens, line)
    let (pairs, report): (Vec<(String, Vec<String>, usize)>, _) = match f.format.as_str() {
        "cmudict" => {
            let d = recur::data::cmudict::read(path, &CmudictOptions { skip_bad_lines })
                .map_err(fail)?;
            let pairs = d
                .records
                .into_iter()
                .map(|p| (p.word, p.phones, p.line))
                .collect();
            (pairs, d.report)
        }
        _ => {
            let opts = PairTsv {
                source: column(&f.src_column),
                target: column(&f.tgt_column),
                header: f.header,
                fields: None,
                skip_bad_lines,
            };
            let d = recur::data::tsv::read_pairs(path, &opts).map_err(fail)?;
            let mut pairs = Vec::with_capacity(d.records.len());
            for p in d.records {
                let tgt = f.tgt_tokens.split(&p.target);
                if tgt.is_empty() {
                    return Err(format!(
                        "{flag} {name}:{}: the target has no {} tokens",
                        p.line,
                        f.tgt_tokens.name()
                    ));
                }
                pairs.push((p.source, tgt, p.line));
            }
            (pairs, d.report)
        }
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (source, tgt, line) in pairs {
        let k = match index.get(&source) {
            Some(&k) => k,
            None => {
                let src = f.src_tokens.split(&source);
                if src.is_empty() {
                    return Err(format!(
                        "{flag} {name}:{line}: the source has no {} tokens",
                        f.src_tokens.name()
                    ));
                }
                index.insert(source.clone(), groups.len());
                groups.push(Group {
                    source,
                    src,
                    targets: Vec::new(),
                });
                groups.len() - 1
            }
        };
        groups[k].targets.push(tgt);
    }
    Ok((groups, report.to_string()))
}

/// 64-bit FNV-1a of a string.
fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in s.as_bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Which held-out part a source belongs to: 0 = test, 1 = validation (5% each), else training.
fn holdout_bucket(source: &str) -> u64 {
    fnv(source) % 20
}

/// A source and its references, as ids.
#[derive(Clone, Debug)]
struct EncodedGroup {
    src: Vec<usize>,
    refs: Vec<Vec<usize>>,
}

fn encode_groups(groups: &[Group], sv: &TokenVocab, tv: &TokenVocab) -> Vec<EncodedGroup> {
    groups
        .iter()
        .map(|g| EncodedGroup {
            src: sv.encode(&g.src),
            refs: g.targets.iter().map(|t| tv.encode(t)).collect(),
        })
        .collect()
}

/// What decoding a set of groups measured.
struct Scores {
    counts: ErrorCounts,
    /// Mean cross-entropy per predicted id over every (source, reference) pair.
    loss: f64,
}

/// Decodes every source, in batches of similar lengths (greedy when `beam.beam_size` is 1).
fn decode_all(
    model: &Seq2Seq<f32>,
    sources: &[&[usize]],
    beam: &BeamOptions,
    batch_size: usize,
) -> recur::Result<Vec<Vec<usize>>> {
    let mut order: Vec<usize> = (0..sources.len()).collect();
    order.sort_by_key(|&k| sources[k].len());
    let mut outputs = vec![Vec::new(); sources.len()];
    // Beam search runs beam_size rows per source.
    let per = (4 * batch_size / beam.beam_size.max(1)).max(1);
    for chunk in order.chunks(per) {
        let srcs: Vec<&[usize]> = chunk.iter().map(|&k| sources[k]).collect();
        let outs = if beam.beam_size == 1 {
            model.greedy(&srcs, beam.max_len)?
        } else {
            model
                .beam_search(&srcs, beam)?
                .into_iter()
                .map(|h| h.tokens)
                .collect()
        };
        for (&k, o) in chunk.iter().zip(outs) {
            outputs[k] = o;
        }
    }
    Ok(outputs)
}

/// Decodes every source and scores it against its references; the loss is over every
/// (source, reference) pair with teacher forcing.
fn score(
    model: &Seq2Seq<f32>,
    groups: &[EncodedGroup],
    beam: &BeamOptions,
    batch_size: usize,
) -> recur::Result<(Scores, Vec<Vec<usize>>)> {
    let sources: Vec<&[usize]> = groups.iter().map(|g| &g.src[..]).collect();
    let outputs = decode_all(model, &sources, beam, batch_size)?;
    let mut counts = ErrorCounts::default();
    for (g, o) in groups.iter().zip(&outputs) {
        counts.add(o, &g.refs);
    }
    let pairs: Vec<(&[usize], &[usize])> = groups
        .iter()
        .flat_map(|g| g.refs.iter().map(move |r| (&g.src[..], &r[..])))
        .collect();
    let (mut total, mut n) = (0.0, 0usize);
    for chunk in pairs.chunks(4 * batch_size) {
        let s: Vec<&[usize]> = chunk.iter().map(|p| p.0).collect();
        let t: Vec<&[usize]> = chunk.iter().map(|p| p.1).collect();
        let (l, c) = model.loss(&model.batch(&s, &t)?)?;
        total += l;
        n += c;
    }
    Ok((
        Scores {
            counts,
            loss: total / n.max(1) as f64,
        },
        outputs,
    ))
}

/// The metrics of a set, named with `prefix` (`valid`, `test`): CMUdict reports the word
/// error rate and phone error rate, other formats the token error rate and exact match.
fn metrics(prefix: &str, format: &str, s: &Scores) -> Metrics {
    let c = &s.counts;
    if format == "cmudict" {
        vec![
            (format!("{prefix}_wer"), c.word_error_rate()),
            (format!("{prefix}_per"), c.token_error_rate()),
            (format!("{prefix}_loss"), s.loss),
        ]
    } else {
        vec![
            (format!("{prefix}_ter"), c.token_error_rate()),
            (format!("{prefix}_exact"), c.exact_match()),
            (format!("{prefix}_loss"), s.loss),
        ]
    }
}

/// A random permutation of `0..n` drawn from `seed` (Fisher–Yates over SplitMix64).
fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut x = seed;
    let mut next = move || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (next() % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// The sequence-to-sequence task of the runner.
pub struct Seq2SeqTask {
    model: Seq2Seq<f32>,
    grads: Seq2SeqGrads<f32>,
    src_vocab: TokenVocab,
    tgt_vocab: TokenVocab,
    format: DataFormat,
    /// Training pairs, (source, target) ids.
    pairs: Vec<(Vec<usize>, Vec<usize>)>,
    /// Batches of pair indices, of similar lengths.
    batches: Vec<Vec<usize>>,
    valid: Vec<EncodedGroup>,
    test: Vec<EncodedGroup>,
    test_name: String,
    /// Batches trained so far; the next is batch `order(epoch)[cursor % batches]`.
    cursor: u64,
    /// The batch order of the current epoch.
    order: Vec<usize>,
    order_epoch: u64,
    rng: TrainRng,
    beam: BeamOptions,
    batch_size: usize,
    seed: u64,
    config_json: serde_json::Value,
}

impl Seq2SeqTask {
    /// Reads the data and builds the model; prints what it read.
    pub fn new(a: &Seq2SeqArgs, log: &mut Log) -> Result<Seq2SeqTask, String> {
        let mode: Mode = a.model.mode();
        // Checked before the data is read: the flags against the cell.
        a.model.cell_options()?;
        let attention: Attention = a
            .attention
            .parse()
            .map_err(|e: recur::Error| format!("--attention: {e}"))?;
        limits::check_model(
            &a.model,
            &[("--batch-size", a.batch_size), ("--beam", a.beam)],
        )?;
        if a.max_len == Some(0) || a.max_train_len == Some(0) {
            return Err("--max-len and --max-train-len must be at least 1".into());
        }
        if let Some(m) = a.max_len {
            limits::in_range("--max-len", m, limits::MAX_DECODE_LEN)?;
        }
        limits::in_range("--beam", a.beam, limits::MAX_BEAM)?;
        let params = |src: usize, tgt: usize| {
            // The encoder and decoder blocks (a lower bound: the attention adds more).
            let dirs = if a.model.bidirectional { 2 } else { 1 };
            let enc_hidden = a.model.hidden_size / dirs;
            block_params(
                mode,
                src,
                a.model.embed(),
                0,
                enc_hidden,
                a.model.num_layers,
                dirs,
                0,
            )
            .saturating_add(block_params(
                mode,
                tgt,
                a.model.embed(),
                0,
                a.model.hidden_size,
                a.model.num_layers,
                1,
                tgt,
            ))
        };
        let sizes = format!(
            "--embed-size {}, --hidden-size {}, --num-layers {}",
            a.model.embed(),
            a.model.hidden_size,
            a.model.num_layers
        );
        check_params(params(1, 1), &sizes)?;
        if !(a.length_penalty.is_finite() && a.length_penalty >= 0.0) {
            return Err(format!(
                "--length-penalty must be a number >= 0, got {}",
                a.length_penalty
            ));
        }
        let format = DataFormat::from_args(a)?;
        let skip = a.skip_bad_lines;
        let (all, train_report) = read_groups("--train", &a.train, &format, skip)?;
        let mut reports = vec![train_report];
        let (mut train, mut valid, mut test) = (Vec::new(), Vec::new(), Vec::new());
        for g in all {
            match holdout_bucket(&g.source) {
                0 if a.test.is_none() => test.push(g),
                1 if a.valid.is_none() => valid.push(g),
                _ => train.push(g),
            }
        }
        if let Some(p) = &a.valid {
            let (g, r) = read_groups("--valid", p, &format, skip)?;
            valid = g;
            reports.push(r);
        }
        if let Some(p) = &a.test {
            let (g, r) = read_groups("--test", p, &format, skip)?;
            test = g;
            reports.push(r);
        }
        if skip {
            for r in &reports {
                log.line(&format!("read {r}"));
            }
        }
        let describe = |flag: &str, given: &Option<PathBuf>| match given {
            Some(p) => p.display().to_string(),
            None => format!("5% of the sources of --train held out ({flag} not given)"),
        };
        if train.is_empty() || valid.is_empty() {
            return Err(format!(
                "--train {}: {} sources are too few to hold out 5% for validation and 5% for test; give --valid and --test",
                a.train.display(),
                train.len() + valid.len() + test.len()
            ));
        }
        let src_seqs: Vec<&[String]> = train.iter().map(|g| &g.src[..]).collect();
        let tgt_seqs: Vec<&[String]> = train
            .iter()
            .flat_map(|g| g.targets.iter().map(|t| &t[..]))
            .collect();
        let src_vocab = TokenVocab::build(&src_seqs, 1, None).map_err(|e| e.to_string())?;
        let tgt_vocab = TokenVocab::build(&tgt_seqs, 1, None).map_err(|e| e.to_string())?;
        let mut pairs = Vec::new();
        let mut too_long = 0;
        for g in encode_groups(&train, &src_vocab, &tgt_vocab) {
            for r in g.refs {
                if a.max_train_len
                    .is_some_and(|m| g.src.len() > m || r.len() > m)
                {
                    too_long += 1;
                } else {
                    pairs.push((g.src.clone(), r));
                }
            }
        }
        if pairs.is_empty() {
            return Err(format!(
                "--max-train-len {}: every training pair is longer",
                a.max_train_len.unwrap_or(0)
            ));
        }
        let longest = pairs.iter().map(|p| p.1.len()).max().unwrap_or(0);
        let max_len = a.max_len.unwrap_or(longest + 10);
        // Batches of similar lengths: sorted by (source, target) length, cut in order.
        let mut idx: Vec<usize> = (0..pairs.len()).collect();
        idx.sort_by_key(|&k| (pairs[k].0.len(), pairs[k].1.len(), k));
        let batches: Vec<Vec<usize>> = idx.chunks(a.batch_size).map(|c| c.to_vec()).collect();
        let valid = encode_groups(&valid, &src_vocab, &tgt_vocab);
        let test = encode_groups(&test, &src_vocab, &tgt_vocab);
        let unknown = |gs: &[EncodedGroup]| {
            gs.iter()
                .map(|g| g.src.iter().filter(|&&t| t == TokenVocab::UNK).count())
                .sum::<usize>()
        };
        check_params(
            params(src_vocab.len(), tgt_vocab.len()),
            &format!(
                "vocabularies {} and {}, {sizes}",
                src_vocab.len(),
                tgt_vocab.len()
            ),
        )?;
        let mut config = Seq2SeqConfig::new(mode, src_vocab.len(), tgt_vocab.len())
            .embed_size(a.model.embed())
            .hidden_size(a.model.hidden_size)
            .num_layers(a.model.num_layers)
            .bidirectional(a.model.bidirectional)
            .dropout(a.model.dropout)
            .attention(attention);
        config.regular = a.regular.seq("seq2seq", true, a.model.bidirectional)?;
        config.cell_options = a
            .model
            .cell_options_with_layer_norm(config.regular.layer_norm)?;
        let model: Seq2Seq<f32> = Seq2Seq::new(config.clone(), a.opts.seed).map_err(|e| {
            if a.model.bidirectional && !a.model.hidden_size.is_multiple_of(2) {
                format!(
                    "--bidirectional needs an even --hidden-size, got {}",
                    a.model.hidden_size
                )
            } else {
                e.to_string()
            }
        })?;
        log.line(&format!(
            "data ({}): {} training pairs of {} sources ({}){}; validation {} sources ({}); test {} sources ({})",
            format.format,
            pairs.len(),
            train.len(),
            a.train.display(),
            if too_long > 0 {
                format!(", {too_long} longer than --max-train-len left out")
            } else {
                String::new()
            },
            valid.len(),
            describe("--valid", &a.valid),
            test.len(),
            describe("--test", &a.test),
        ));
        log.line(&format!(
            "vocabularies (with <pad> <unk> <bos> <eos>): source {} ({} tokens), target {} ({} tokens); unknown source tokens: {} in validation, {} in test",
            src_vocab.len(),
            format.src_tokens.name(),
            tgt_vocab.len(),
            format.tgt_tokens.name(),
            unknown(&valid),
            unknown(&test)
        ));
        log.line(&format!(
            "model: Embedding({}, {}) -> encoder {} -> decoder {} from its final state, {} attention -> Linear({}, {}); {} parameters",
            src_vocab.len(),
            a.model.embed(),
            recur::io::state_dict::describe(&config.encoder_config()),
            recur::io::state_dict::describe(&config.decoder_config()),
            attention,
            a.model.hidden_size,
            tgt_vocab.len(),
            model.num_params()
        ));
        if config.regular.any() {
            log.line(&format!(
                "regularizers: {}",
                regular_opts::describe(&config.regular)
            ));
        }
        log.line(&format!(
            "batches: {} of up to {} pairs; decoding: {}, at most {max_len} tokens",
            batches.len(),
            a.batch_size,
            if a.beam == 1 {
                "greedy".to_string()
            } else {
                format!("beam {} (length penalty {})", a.beam, a.length_penalty)
            }
        ));
        let config_json = serde_json::json!({
            "model": config.to_json(),
            "data": format.to_json(),
            "train": crate::shared::fingerprint(&format!("{:?}", pairs)),
            "valid": crate::shared::fingerprint(&format!("{:?}", valid.iter().map(|g| (&g.src, &g.refs)).collect::<Vec<_>>())),
            "batch_size": a.batch_size,
            "beam": a.beam,
            "length_penalty": a.length_penalty,
            "max_len": max_len,
        });
        Ok(Seq2SeqTask {
            grads: model.zeros_like_grads(),
            model,
            src_vocab,
            tgt_vocab,
            test_name: describe("--test", &a.test),
            format,
            pairs,
            batches,
            valid,
            test,
            cursor: 0,
            order: Vec::new(),
            order_epoch: u64::MAX,
            rng: seeded(a.opts.seed ^ 0x5e25_e25e_25e2_5e25),
            beam: BeamOptions {
                beam_size: a.beam,
                max_len,
                length_penalty: a.length_penalty,
            },
            batch_size: a.batch_size,
            seed: a.opts.seed,
            config_json,
        })
    }

    /// One training step on this rank's rows of the next batch (data parallelism): every
    /// rank walks the same batches (the epoch's order follows from the seed) and computes
    /// the rows [`Shard::range`](recur::train::Shard::range) gives it; dropout is drawn row
    /// by row from a key of the step ([`Seq2Seq::loss_and_grad_rows`]), so it does not
    /// depend on the number of ranks. With `ready`, the backward pass announces the parts
    /// whose gradients are final as it goes (their all-reduce starts while it computes the
    /// rest).
    fn step(
        &mut self,
        shard: recur::train::Shard,
        mut ready: Option<&mut dyn recur::train::GradReady>,
    ) -> recur::Result<StepStats> {
        let idx = self.next_batch().to_vec();
        let key = recur::models::lm::RngCore::next_u64(&mut self.rng);
        if self.model.config().regular.any() {
            // The regularizers' masks are drawn for the whole batch from the run's generator.
            shard.require_whole(self.name())?;
            self.grads.zero();
            self.cursor += 1;
            let s: Vec<&[usize]> = idx.iter().map(|&k| &self.pairs[k].0[..]).collect();
            let t: Vec<&[usize]> = idx.iter().map(|&k| &self.pairs[k].1[..]).collect();
            let batch: Batch = self.model.batch(&s, &t)?;
            let loss = self
                .model
                .loss_and_grad(&batch, Some(&mut self.rng), &mut self.grads)?;
            return Ok(StepStats {
                loss,
                units: batch.num_targets() as u64,
            });
        }
        let rows = shard.range(idx.len());
        self.grads.zero();
        self.cursor += 1;
        if rows.is_empty() {
            return Ok(StepStats {
                loss: 0.0,
                units: 0,
            });
        }
        let share = &idx[rows.clone()];
        let s: Vec<&[usize]> = share.iter().map(|&k| &self.pairs[k].0[..]).collect();
        let t: Vec<&[usize]> = share.iter().map(|&k| &self.pairs[k].1[..]).collect();
        let batch: Batch = self.model.batch(&s, &t)?;
        let units = batch.num_targets() as u64;
        let dropout = (self.model.config().dropout > 0.0).then_some(key);
        // The model's buffer k is part `part[k]` of `parts()`, which leaves out the empty ones.
        let lens = self.model.params().map(|p| p.len());
        let loss = self.model.loss_and_grad_rows(
            &batch,
            rows.start,
            dropout,
            &mut self.grads,
            &mut |k, g| {
                let Some(ready) = ready.as_deref_mut() else {
                    return Ok(());
                };
                let bufs = [
                    &g.src_embed,
                    &g.encoder,
                    &g.tgt_embed,
                    &g.decoder,
                    &g.attn,
                    &g.attn_combine,
                    &g.head,
                ];
                let first = lens[..k].iter().filter(|&&n| n > 0).count();
                let grads: Vec<&[f32]> = bufs[k..]
                    .iter()
                    .filter(|b| !b.is_empty())
                    .map(|b| &b[..])
                    .collect();
                ready.parts_final(first, units, &grads)
            },
        )?;
        Ok(StepStats { loss, units })
    }

    /// The batch the cursor points at: epochs visit the batches in a new order each.
    fn next_batch(&mut self) -> &[usize] {
        let n = self.batches.len() as u64;
        let epoch = self.cursor / n;
        if epoch != self.order_epoch {
            self.order = permutation(
                self.batches.len(),
                self.seed ^ epoch.wrapping_mul(0x2545_f491_4f6c_dd1d),
            );
            self.order_epoch = epoch;
        }
        &self.batches[self.order[(self.cursor % n) as usize]]
    }
}

impl Task for Seq2SeqTask {
    fn name(&self) -> &'static str {
        "seq2seq"
    }
    fn unit(&self) -> &'static str {
        "token"
    }
    fn steps_per_epoch(&self) -> u64 {
        self.batches.len() as u64
    }
    fn higher_is_better(&self) -> bool {
        false
    }
    fn config_json(&self) -> serde_json::Value {
        self.config_json.clone()
    }

    fn train_batch(&mut self, shard: recur::train::Shard) -> recur::Result<StepStats> {
        self.step(shard, None)
    }

    fn train_batch_announcing(
        &mut self,
        shard: recur::train::Shard,
        ready: &mut dyn recur::train::GradReady,
    ) -> recur::Result<StepStats> {
        self.step(shard, Some(ready))
    }

    fn parts(&mut self) -> Vec<Part<'_>> {
        let names = [
            "src_embed",
            "encoder",
            "tgt_embed",
            "decoder",
            "attn",
            "attn_combine",
            "head",
        ];
        let g = &mut self.grads;
        let grads: [&mut [f32]; 7] = [
            &mut g.src_embed,
            &mut g.encoder,
            &mut g.tgt_embed,
            &mut g.decoder,
            &mut g.attn,
            &mut g.attn_combine,
            &mut g.head,
        ];
        self.model
            .params_mut()
            .into_iter()
            .zip(grads)
            .zip(names)
            .filter(|((p, _), _)| !p.is_empty())
            .map(|((params, grads), name)| Part {
                name,
                params,
                grads,
            })
            .collect()
    }

    fn evaluate(&mut self) -> recur::Result<Metrics> {
        let (s, _) = score(&self.model, &self.valid, &self.beam, self.batch_size)?;
        Ok(metrics("valid", &self.format.format, &s))
    }

    fn save_model(&self, dir: &Path, training: &serde_json::Value) -> recur::Result<()> {
        let mut t = training.clone();
        t["data"] = self.format.to_json();
        t["decoding"] = serde_json::json!({
            "beam": self.beam.beam_size,
            "max_len": self.beam.max_len,
            "length_penalty": self.beam.length_penalty,
        });
        save_dir(dir, &self.model, &self.src_vocab, &self.tgt_vocab, Some(&t))
    }

    fn save_state(&self, w: &mut CheckpointWriter) {
        w.meta_mut()["task"] = serde_json::json!({
            "cursor": self.cursor,
            "rng": rng_state(&self.rng),
        });
    }

    fn load_state(&mut self, c: &Checkpoint) -> recur::Result<()> {
        let t = c.field("task")?;
        self.cursor = t.get("cursor").and_then(|x| x.as_u64()).ok_or_else(|| {
            recur::Error::Input(format!("{}: task.cursor is missing", c.source()))
        })?;
        self.rng = rng_from_state(&t["rng"], &format!("{}: task.rng", c.source()))?;
        Ok(())
    }

    fn finish(&mut self, dir: &Path, log: &mut dyn recur::train::Hooks) -> recur::Result<Metrics> {
        let best = load_dir::<f32>(dir)?;
        let t0 = std::time::Instant::now();
        let (s, outputs) = score(&best.model, &self.test, &self.beam, self.batch_size)?;
        let m = metrics("test", &self.format.format, &s);
        log.line(&format!(
            "test ({}, {} sources, best model, {}): {} in {:.1}s",
            self.test_name,
            self.test.len(),
            if self.beam.beam_size == 1 {
                "greedy".to_string()
            } else {
                format!("beam {}", self.beam.beam_size)
            },
            crate::run::fmt_metrics(&m),
            t0.elapsed().as_secs_f64()
        ));
        for (g, o) in self.test.iter().zip(&outputs).take(5) {
            log.line(&format!(
                "  {} -> {}  (reference: {})",
                self.format.src_tokens.join(&self.src_vocab.decode(&g.src)),
                self.format.tgt_tokens.join(&self.tgt_vocab.decode(o)),
                self.format
                    .tgt_tokens
                    .join(&self.tgt_vocab.decode(&g.refs[0]))
            ));
        }
        Ok(m)
    }
}

/// The model directory's data format and decoding options, from its config.json.
fn saved_format(dir: &Path, json: &serde_json::Value) -> Result<(DataFormat, BeamOptions), String> {
    let source = dir
        .join(recur::models::seq2seq::CONFIG_FILE)
        .display()
        .to_string();
    let t = &json["training"];
    let format = DataFormat::from_json(&t["data"], &source)?;
    let d = &t["decoding"];
    let beam = BeamOptions {
        beam_size: d.get("beam").and_then(|x| x.as_u64()).unwrap_or(1) as usize,
        max_len: d.get("max_len").and_then(|x| x.as_u64()).unwrap_or(100) as usize,
        length_penalty: d
            .get("length_penalty")
            .and_then(|x| x.as_f64())
            .unwrap_or(0.0),
    };
    Ok((format, beam))
}

/// `recur eval` of a sequence-to-sequence model: the data file (in the format the model was
/// trained on) decoded as in training's evaluations, with its metrics.
pub fn eval(
    a: &crate::opts::EvalArgs,
    cfg: &recur::models::ModelConfig,
) -> Result<Metrics, String> {
    let loaded =
        recur::models::seq2seq::load_from::<f32>(&a.model, cfg).map_err(|e| e.to_string())?;
    let (format, beam) = saved_format(&a.model, &loaded.config_json)?;
    let (groups, _) = read_groups("--data", &a.data, &format, false)?;
    let enc = encode_groups(&groups, &loaded.src_vocab, &loaded.tgt_vocab);
    let (s, _) = score(&loaded.model, &enc, &beam, a.batch_size)
        .map_err(|e| format!("--data {}: {e}", a.data.display()))?;
    let mut m = metrics("", &format.format, &s);
    for (k, _) in m.iter_mut() {
        *k = k.trim_start_matches('_').to_string();
    }
    m.push(("exact_match".into(), s.counts.exact_match()));
    m.push(("sources".into(), groups.len() as f64));
    Ok(m)
}

/// `recur predict` of a sequence-to-sequence model: each input line is a source; the output
/// line is the decoded target (`--beam 1`: greedy).
/// The model of `recur predict`: each input line is a source, answered by its decoding
/// (greedy, or a beam search with `--beam`).
pub fn predictor(
    a: &crate::opts::PredictArgs,
    cfg: &recur::models::ModelConfig,
) -> Result<Box<dyn crate::opts::Predictor>, String> {
    let loaded =
        recur::models::seq2seq::load_from::<f32>(&a.model, cfg).map_err(|e| e.to_string())?;
    let (format, _) = saved_format(&a.model, &loaded.config_json)?;
    Ok(Box::new(Seq2SeqPredictor {
        loaded,
        format,
        beam: BeamOptions {
            beam_size: a.beam,
            max_len: a.max_len,
            length_penalty: 0.0,
        },
    }))
}

struct Seq2SeqPredictor {
    loaded: recur::models::seq2seq::Loaded<f32>,
    format: DataFormat,
    beam: BeamOptions,
}

impl crate::opts::Predictor for Seq2SeqPredictor {
    fn answer(&mut self, line_no: usize, line: &str) -> Result<String, String> {
        let text = if self.format.format == "cmudict" {
            line.trim().to_lowercase()
        } else {
            line.trim().to_string()
        };
        let ids = self
            .loaded
            .src_vocab
            .encode(&self.format.src_tokens.split(&text));
        if ids.is_empty() {
            return Err(crate::opts::line_error(line_no, "empty source"));
        }
        let outputs = decode_all(&self.loaded.model, &[&ids[..]], &self.beam, 1)
            .map_err(|e| crate::opts::line_error(line_no, e))?;
        let out = outputs.first().map(|o| &o[..]).unwrap_or(&[]);
        Ok(self
            .format
            .tgt_tokens
            .join(&self.loaded.tgt_vocab.decode(out)))
    }
}
