//! `recur train tag`: part-of-speech tagging of CoNLL-U treebanks. Every word is looked up in
//! an embedding (lowercased; a word rare or absent in the training data gets the id of its word
//! class: capitalisation, digits, hyphens, a common suffix), a bidirectional recurrent stack
//! reads the sentence and a linear head tags every word. Evaluation reports token accuracy
//! and the accuracy on unknown words: words not in the vocabulary, that is, seen fewer than
//! `--min-freq` times (default 2) in the training data.
//!
//! ```text
//! recur train tag --train FILE.conllu [--valid FILE] [--test FILE] --out DIR
//!     [--column upos|xpos] [--valid-fraction 0.1] [--min-freq 2] [--word-classes true]
//!     [--rare-count 2] [--rare-dropout 0.25] [--cell lstm] [--hidden-size 128]
//!     [--num-layers 1] [--embed-size 100] [--bidirectional[=false]] [--dropout 0.33]
//!     [--batch-size 32] [training options: --lr, --optimizer, --steps/--epochs, --resume, ...]
//! ```
//!
//! `DIR` gets `model.safetensors` (PyTorch names), `config.json`, `vocab.json`,
//! `labels.json` (the tag set), `metrics.json`, the curves and the checkpoint.

use crate::model_opts::{ModelDefaults, ModelOpts, WithModelDefaults};
use crate::regular_opts::{self, RegularArgs};
use crate::run::{Log, Metrics, TrainOpts};
use crate::shared::fingerprint;
use crate::task_seq::{
    check_fraction, check_model_opts, check_size, chunks, load_model, split, task_str, Examples,
    Inputs, Kind, Outputs, SeqTask, LABELS_FILE, NO_ALT, VOCAB_FILE,
};
use clap::{ArgAction, Args as ClapArgs};
use recur::analysis::metrics::{Confusion, TokenAccuracy};
use recur::data::conllu::{ConlluOptions, Sentence};
use recur::data::{LabelSet, TokenVocab};
use recur::models::seqmodel::{SeqModel, SeqModelConfig};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The model options' defaults of `recur train tag`: a bidirectional layer of 128 over word
/// embeddings of 100, dropout 0.33.
const MODEL: ModelDefaults = ModelDefaults {
    hidden_size: 128,
    num_layers: 1,
    embed_size: Some(100),
    bidirectional: Some(true),
    dropout: 0.33,
    help: &[
        ("embed_size", "Size of the word embeddings"),
        ("bidirectional", "Read every sentence in both directions"),
    ],
};

/// Options of `recur train tag`.
#[derive(ClapArgs)]
#[command(model_defaults(MODEL))]
pub struct TagArgs {
    /// The training treebank (CoNLL-U).
    #[arg(long, value_name = "FILE")]
    pub train: PathBuf,
    /// The validation treebank; by default --valid-fraction of the training sentences are
    /// held out.
    #[arg(long, value_name = "FILE")]
    pub valid: Option<PathBuf>,
    /// A test treebank, evaluated on the best model at the end.
    #[arg(long, value_name = "FILE")]
    pub test: Option<PathBuf>,
    /// The tags to learn: upos (universal part-of-speech tags) or xpos (language-specific).
    #[arg(long, default_value = "upos")]
    pub column: String,
    /// Skip sentences with malformed lines (counted) instead of stopping at the first.
    #[arg(long)]
    pub skip_bad_lines: bool,
    /// Without --valid: the fraction of the training sentences held out for validation (an
    /// evenly spread, deterministic choice that does not depend on --seed).
    #[arg(long, default_value_t = 0.1)]
    pub valid_fraction: f64,
    /// Words seen fewer times in training get no embedding of their own: they are unknown
    /// words, read as their word class (see --word-classes).
    #[arg(long, default_value_t = 2)]
    pub min_freq: usize,
    /// Words without an embedding get the one of their word class (shape and suffix) rather
    /// than <unk>.
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub word_classes: bool,
    /// Words seen at most this many times in training are rare (see --rare-dropout).
    #[arg(long, default_value_t = 2)]
    pub rare_count: usize,
    /// In training, replace each rare word by its word class (or <unk>) with this probability,
    /// so that those embeddings learn what unknown words look like.
    #[arg(long, default_value_t = 0.25)]
    pub rare_dropout: f64,
    #[command(flatten)]
    pub model: ModelOpts,
    /// Sentences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    #[command(flatten)]
    pub opts: TrainOpts,
    // The model's regularizers, a block of their own.
    #[command(flatten)]
    pub regular: RegularArgs,
}

/// English suffixes that hint at a word's part of speech, longest first where they overlap.
const SUFFIXES: [&str; 18] = [
    "ness", "ment", "able", "ible", "ing", "ion", "ity", "ous", "ive", "est", "ful", "ed", "ly",
    "er", "al", "ic", "s", "y",
];

/// The class of a word from its shape: `<unk` then `-cap` (capitalised), `-num` (has a
/// digit), `-dash` (has a hyphen), `-punct` (no letter or digit), and at most one common
/// suffix (`-ing`, `-ed`, `-ly`, ...), then `>`. A word with none of these is `<unk>`.
pub fn word_class(form: &str) -> String {
    let mut s = String::from("<unk");
    let first = form.chars().next();
    if first.is_some_and(|c| c.is_uppercase()) {
        s += "-cap";
    }
    if form.chars().any(|c| c.is_numeric()) {
        s += "-num";
    }
    if form.contains('-') {
        s += "-dash";
    }
    if !form.chars().any(|c| c.is_alphanumeric()) {
        s += "-punct";
    }
    let lower = form.to_lowercase();
    let n = lower.chars().count();
    if let Some(suf) = SUFFIXES
        .iter()
        .find(|suf| lower.ends_with(*suf) && n > suf.len() + 2)
    {
        s += "-";
        s += suf;
    }
    s + ">"
}

/// How words are mapped to ids: the vocabulary of lowercased training words, then word
/// classes.
pub struct Lexicon {
    pub vocab: TokenVocab,
    pub word_classes: bool,
}

impl Lexicon {
    /// The id of a word, and whether it is unknown (not a word of the vocabulary).
    pub fn id(&self, form: &str) -> (usize, bool) {
        if let Some(i) = self.vocab.get(&form.to_lowercase()) {
            return (i, false);
        }
        (self.class_id(form), true)
    }
    /// The id of a word's class (`<unk>` without word classes).
    pub fn class_id(&self, form: &str) -> usize {
        if self.word_classes {
            self.vocab.get(&word_class(form)).unwrap_or(TokenVocab::UNK)
        } else {
            TokenVocab::UNK
        }
    }
}

/// The tags of a sentence in `column`.
fn tags(s: &Sentence, column: &str) -> Vec<String> {
    s.tokens
        .iter()
        .map(|t| {
            if column == "xpos" {
                t.xpos.clone()
            } else {
                t.upos.clone()
            }
        })
        .collect()
}

fn read(
    flag: &str,
    path: &Path,
    skip: bool,
    log: Option<&mut Log>,
) -> Result<Vec<Sentence>, String> {
    let r = recur::data::conllu::read(
        path,
        &ConlluOptions {
            skip_bad_lines: skip,
        },
    )
    .map_err(|e| format!("{flag} {e}"))?;
    match log {
        Some(log) => log.line(&format!("read {}", r.report)),
        None => eprintln!("read {}", r.report),
    }
    Ok(r.records)
}

/// The examples of `sentences`: word ids (rare training words replaceable by their class when
/// `counts` is given), tag ids, unknown flags.
fn examples(
    sentences: &[Sentence],
    lex: &Lexicon,
    tagset: &LabelSet,
    column: &str,
    counts: Option<(&HashMap<String, usize>, usize)>,
    what: &str,
) -> Result<Examples, String> {
    let mut ids = Vec::with_capacity(sentences.len());
    let mut alt = Vec::new();
    let mut unknown = Vec::with_capacity(sentences.len());
    let mut gold = Vec::with_capacity(sentences.len());
    for s in sentences {
        let (i, u): (Vec<usize>, Vec<bool>) = s.tokens.iter().map(|t| lex.id(&t.form)).unzip();
        ids.push(i);
        unknown.push(u);
        gold.push(
            tagset
                .encode(&tags(s, column))
                .map_err(|e| format!("{what}, sentence at line {}: {e}", s.line))?,
        );
        if let Some((counts, rare)) = counts {
            alt.push(
                s.tokens
                    .iter()
                    .map(|t| {
                        let c = counts.get(&t.form.to_lowercase()).copied().unwrap_or(0);
                        if c <= rare {
                            lex.class_id(&t.form)
                        } else {
                            NO_ALT
                        }
                    })
                    .collect(),
            );
        }
    }
    Ok(Examples {
        inputs: Inputs::Tokens { ids, alt },
        outputs: Outputs::Tags(gold),
        unknown,
    })
}

/// Tagging: token accuracy, accuracy on unknown words and the mean cross-entropy per token;
/// the report adds per-tag precision, recall and F1.
pub struct TagKind {
    pub lexicon: Lexicon,
    pub tagset: LabelSet,
    pub task: serde_json::Value,
}

/// Token accuracy, the tag confusion matrix and the mean cross-entropy per token.
fn score(
    model: &SeqModel<f32>,
    data: &Examples,
    n_tags: usize,
    batch_size: usize,
) -> recur::Result<(TokenAccuracy, Confusion, f64)> {
    let Outputs::Tags(gold) = &data.outputs else {
        unreachable!("tagging examples have tags")
    };
    let mut acc = TokenAccuracy::default();
    let mut conf = Confusion::new(n_tags);
    let mut nll = 0.0;
    for idx in chunks(data.len(), batch_size) {
        let (batch, _) = data.batch(&idx, None)?;
        let t = batch.steps();
        let logits = model.forward(&batch)?; // (B, T, tags)
        for (b, &i) in idx.iter().enumerate() {
            for (k, &g) in gold[i].iter().enumerate() {
                let row = &logits[(b * t + k) * n_tags..][..n_tags];
                let p = recur::models::seqmodel::argmax_rows(row, n_tags)[0];
                let unknown = data.unknown.get(i).is_some_and(|u| u[k]);
                acc.add(p, g, unknown);
                conf.add(g, p)?;
                nll += crate::shared::neg_log_softmax(row, g);
            }
        }
    }
    let n = acc.total.max(1) as f64;
    Ok((acc, conf, nll / n))
}

impl Kind for TagKind {
    fn name(&self) -> &'static str {
        "tag"
    }
    fn unit(&self) -> &'static str {
        "token"
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
        let (acc, conf, loss) = score(model, data, self.tagset.len(), batch_size)?;
        let mut m = vec![(format!("{prefix}accuracy"), acc.accuracy())];
        if let Some(u) = acc.unknown_accuracy() {
            m.push((format!("{prefix}unknown_accuracy"), u));
        }
        m.push((format!("{prefix}loss"), loss));
        let report = format!(
            "token accuracy {:.4} ({} of {}); unknown words {} ({:.2}% of tokens){}; known words {}\n{}",
            acc.accuracy(),
            acc.correct,
            acc.total,
            acc.unknown_total,
            100.0 * acc.unknown_rate(),
            acc.unknown_accuracy()
                .map(|u| format!(", accuracy {u:.4}"))
                .unwrap_or_default(),
            acc.known_accuracy()
                .map(|k| format!("accuracy {k:.4}"))
                .unwrap_or_else(|| "none".into()),
            conf.report(self.tagset.names())
        );
        Ok((m, report))
    }
    fn task_json(&self) -> serde_json::Value {
        self.task.clone()
    }
    fn save_files(&self, dir: &Path) -> recur::Result<()> {
        self.tagset.save(dir.join(LABELS_FILE))?;
        self.lexicon.vocab.save(dir.join(VOCAB_FILE))
    }
}

/// Reads the treebanks and builds the model and the runner task; prints what it read.
pub fn task(a: &TagArgs, log: &mut Log) -> Result<SeqTask, String> {
    let mode = check_model_opts(
        &a.model,
        &[("--batch-size", a.batch_size), ("--min-freq", a.min_freq)],
    )?;
    if !["upos", "xpos"].contains(&a.column.as_str()) {
        return Err(format!("--column: '{}' (expected upos or xpos)", a.column));
    }
    let regular = a.regular.seq("tag", true, a.model.bidirectional)?;
    check_size(
        &SeqModelConfig::tagger(1, 1)
            .embed_size(a.model.embed())
            .mode(mode)
            .hidden_size(a.model.hidden_size)
            .num_layers(a.model.num_layers)
            .bidirectional(a.model.bidirectional),
    )?;
    check_fraction("--valid-fraction", a.valid_fraction)?;
    if !(0.0..1.0).contains(&a.rare_dropout) {
        return Err(format!(
            "--rare-dropout must be in [0, 1), got {}",
            a.rare_dropout
        ));
    }
    let full = read("--train", &a.train, a.skip_bad_lines, Some(log))?;
    let (train, valid, valid_name) = match &a.valid {
        Some(p) => (
            full,
            read("--valid", p, a.skip_bad_lines, Some(log))?,
            p.display().to_string(),
        ),
        None => {
            let (tr, va, _) = split(full.len(), a.valid_fraction, 0.0);
            if va.is_empty() || tr.is_empty() {
                return Err(format!(
                    "--train {}: {} sentences are too few to hold out {} for validation; give --valid FILE",
                    a.train.display(),
                    full.len(),
                    a.valid_fraction
                ));
            }
            let pick = |idx: &[usize]| idx.iter().map(|&i| full[i].clone()).collect::<Vec<_>>();
            (
                pick(&tr),
                pick(&va),
                format!("{} sentences held out of {}", va.len(), a.train.display()),
            )
        }
    };
    let test = match &a.test {
        Some(p) => Some((
            p.display().to_string(),
            read("--test", p, a.skip_bad_lines, Some(log))?,
        )),
        None => None,
    };
    let forms: Vec<Vec<String>> = train
        .iter()
        .map(|s| s.tokens.iter().map(|t| t.form.to_lowercase()).collect())
        .collect();
    let mut counts: HashMap<String, usize> = HashMap::new();
    for f in forms.iter().flatten() {
        *counts.entry(f.clone()).or_insert(0) += 1;
    }
    let words = TokenVocab::build(&forms, a.min_freq, None).map_err(|e| e.to_string())?;
    let vocab = if a.word_classes {
        let mut classes: Vec<String> = train
            .iter()
            .flat_map(|s| s.tokens.iter().map(|t| word_class(&t.form)))
            .filter(|c| c != "<unk>" && words.get(c).is_none())
            .collect();
        classes.sort();
        classes.dedup();
        let mut tokens: Vec<String> = words.tokens()[recur::data::vocab::SPECIALS.len()..].to_vec();
        tokens.extend(classes);
        TokenVocab::from_tokens(&tokens).map_err(|e| e.to_string())?
    } else {
        words
    };
    let lexicon = Lexicon {
        vocab,
        word_classes: a.word_classes,
    };
    let tagset = LabelSet::from_labels(train.iter().flat_map(|s| tags(s, &a.column)))
        .map_err(|e| format!("--train {e}"))?;
    let train_ex = examples(
        &train,
        &lexicon,
        &tagset,
        &a.column,
        Some((&counts, a.rare_count)),
        "--train",
    )?;
    let valid_ex = examples(
        &valid,
        &lexicon,
        &tagset,
        &a.column,
        None,
        "validation data",
    )?;
    let test_ex = match &test {
        Some((name, s)) => Some((
            name.clone(),
            examples(s, &lexicon, &tagset, &a.column, None, "--test")?,
        )),
        None => None,
    };
    let mut config = SeqModelConfig::tagger(lexicon.vocab.len(), tagset.len())
        .embed_size(a.model.embed())
        .mode(mode)
        .hidden_size(a.model.hidden_size)
        .num_layers(a.model.num_layers)
        .bidirectional(a.model.bidirectional)
        .dropout(a.model.dropout)
        .cell_options(a.model.cell_options()?);
    config.regular = regular;
    check_size(&config)?;
    let model: SeqModel<f32> =
        SeqModel::new(config.clone(), a.opts.seed).map_err(|e| e.to_string())?;
    let n_tokens = |s: &[Sentence]| s.iter().map(|x| x.tokens.len()).sum::<usize>();
    let unknown: usize = valid_ex.unknown.iter().flatten().filter(|&&u| u).count();
    log.line(&format!(
        "data: {} training sentences ({} tokens), {} validation sentences ({} tokens, {unknown} unknown; {valid_name}){}; {} {} tags",
        train.len(),
        n_tokens(&train),
        valid.len(),
        n_tokens(&valid),
        test.as_ref()
            .map(|(n, s)| format!(", {} test sentences ({n})", s.len()))
            .unwrap_or_default(),
        tagset.len(),
        a.column.to_uppercase()
    ));
    log.line(&format!(
        "vocabulary: {} ids (lowercased words seen at least {} times{})",
        lexicon.vocab.len(),
        a.min_freq,
        if a.word_classes {
            ", then word classes"
        } else {
            ""
        }
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
        "kind": "tag",
        "column": a.column,
        "word_classes": a.word_classes,
    });
    let text_of = |s: &[Sentence]| {
        fingerprint(
            &s.iter()
                .map(|x| {
                    x.tokens
                        .iter()
                        .map(|t| format!("{}/{}/{}", t.form, t.upos, t.xpos))
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
                .join("\n"),
        )
    };
    let config_json = serde_json::json!({
        "model": config.to_json(),
        "task": task_json,
        "train": text_of(&train),
        "valid": text_of(&valid),
        "batch_size": a.batch_size,
        "min_freq": a.min_freq,
        "rare_count": a.rare_count,
        "rare_dropout": a.rare_dropout,
    });
    let kind = TagKind {
        lexicon,
        tagset,
        task: task_json,
    };
    Ok(SeqTask::new(
        Box::new(kind),
        model,
        train_ex,
        valid_ex,
        test_ex,
        a.batch_size,
        a.rare_dropout,
        a.opts.seed,
        config_json,
    ))
}

/// The model directory's lexicon and tag set.
fn load_kind(dir: &Path, task: &serde_json::Value) -> Result<TagKind, String> {
    let vocab = TokenVocab::load(dir.join(VOCAB_FILE)).map_err(|e| e.to_string())?;
    let tagset = LabelSet::load(dir.join(LABELS_FILE)).map_err(|e| e.to_string())?;
    let word_classes = task
        .get("word_classes")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    Ok(TagKind {
        lexicon: Lexicon {
            vocab,
            word_classes,
        },
        tagset,
        task: task.clone(),
    })
}

/// `recur eval` of a tagger on a CoNLL-U file: token accuracy, unknown-word accuracy and
/// loss; the per-tag report goes to stderr.
pub fn eval(
    a: &crate::opts::EvalArgs,
    cfg: &recur::models::ModelConfig,
    task: &serde_json::Value,
) -> Result<Metrics, String> {
    let model = load_model(&a.model, cfg)?;
    let kind = load_kind(&a.model, task)?;
    let column = task_str(task, "column")?;
    let sentences = read("--data", &a.data, false, None)?;
    let what = format!("--data {}", a.data.display());
    let ex = examples(&sentences, &kind.lexicon, &kind.tagset, column, None, &what)?;
    let (mut m, report) = kind
        .metrics(&model, &ex, a.batch_size, "")
        .map_err(|e| format!("{what}: {e}"))?;
    eprintln!("{report}");
    m.push(("sentences".into(), ex.len() as f64));
    Ok(m)
}

/// `recur predict` of a tagger: one sentence per line, words separated by whitespace; one
/// line of tags (separated by spaces) per sentence. An empty line gives an empty line.
/// The tagger of `recur predict`: each line is a sentence of words separated by spaces,
/// answered by one tag per word (an empty line by an empty line).
pub fn predictor(
    a: &crate::opts::PredictArgs,
    cfg: &recur::models::ModelConfig,
    task: &serde_json::Value,
) -> Result<Box<dyn crate::opts::Predictor>, String> {
    Ok(Box::new(TagPredictor {
        model: load_model(&a.model, cfg)?,
        kind: load_kind(&a.model, task)?,
    }))
}

struct TagPredictor {
    model: SeqModel<f32>,
    kind: TagKind,
}

impl crate::opts::Predictor for TagPredictor {
    fn answer(&mut self, line_no: usize, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.is_empty() {
            return Ok(String::new());
        }
        let ex = Examples {
            inputs: Inputs::Tokens {
                ids: vec![words.iter().map(|w| self.kind.lexicon.id(w).0).collect()],
                alt: Vec::new(),
            },
            outputs: Outputs::Tags(vec![vec![0; words.len()]]),
            unknown: Vec::new(),
        };
        let fail = |e: recur::Error| crate::opts::line_error(line_no, e);
        let (batch, _) = ex.batch(&[0], None).map_err(fail)?;
        let tagged = self.model.tag(&batch).map_err(fail)?;
        Ok(tagged
            .first()
            .map(|t| {
                t.iter()
                    .map(|&id| self.kind.tagset.name(id).unwrap_or("?"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::word_class;

    #[test]
    fn word_classes_by_hand() {
        assert_eq!(word_class("Walking"), "<unk-cap-ing>");
        assert_eq!(word_class("COVID-19"), "<unk-cap-num-dash>");
        assert_eq!(word_class("quickly"), "<unk-ly>");
        assert_eq!(word_class("dogs"), "<unk-s>");
        assert_eq!(word_class("..."), "<unk-punct>");
        assert_eq!(word_class("zap"), "<unk>");
        // Too short for a suffix: "is" does not end in "-s" here.
        assert_eq!(word_class("is"), "<unk>");
        assert_eq!(word_class("1984"), "<unk-num>");
    }
}
