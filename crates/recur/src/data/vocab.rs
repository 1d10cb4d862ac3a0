//! Token vocabularies ([`TokenVocab`]) and class label sets ([`LabelSet`]), built from
//! training data and saved as JSON next to a model.
//!
//! ```
//! use recur::data::vocab::{LabelSet, TokenVocab};
//! let train = [vec!["the", "cat"], vec!["the", "dog"]];
//! let v = TokenVocab::build(&train, 1, None).unwrap();
//! // Specials first, then by count (descending), then by token.
//! assert_eq!(v.tokens(), ["<pad>", "<unk>", "<bos>", "<eos>", "the", "cat", "dog"]);
//! assert_eq!(v.encode(&["the", "bird"]), [4, TokenVocab::UNK]);
//! assert_eq!(v.decode(&[4, 6]), ["the", "dog"]);
//!
//! let labels = LabelSet::from_labels(["pos", "neg", "pos"]).unwrap();
//! assert_eq!(labels.names(), ["neg", "pos"]);
//! let e = labels.id("neutral").unwrap_err();
//! assert_eq!(e.to_string(), "unknown label \"neutral\"; the known labels are: neg, pos");
//! ```

use crate::error::{Error, Result};
use crate::io::state_dict::write_atomic;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The special tokens of a [`TokenVocab`], in id order.
pub const SPECIALS: [&str; 4] = ["<pad>", "<unk>", "<bos>", "<eos>"];

/// A token vocabulary: ids 0..4 are the specials `<pad>`, `<unk>`, `<bos>`, `<eos>`; then the
/// tokens of the training data by count (most frequent first), ties broken by the token
/// (byte order), so the same data always gives the same ids.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenVocab {
    /// `tokens[id]`, specials included.
    tokens: Vec<String>,
    index: HashMap<String, usize>,
}

impl TokenVocab {
    /// The id of `<pad>`.
    pub const PAD: usize = 0;
    /// The id of `<unk>`, which every unknown token gets.
    pub const UNK: usize = 1;
    /// The id of `<bos>` (beginning of sequence).
    pub const BOS: usize = 2;
    /// The id of `<eos>` (end of sequence).
    pub const EOS: usize = 3;

    /// Builds a vocabulary from tokenized training sequences: the tokens seen at least
    /// `min_freq` times, at most `max_size` ids in all (specials included; `None`: no limit),
    /// the most frequent kept. Tokens spelled like a special are counted as that special and
    /// not added again. Errors if `min_freq` is 0 or `max_size` leaves no room for the
    /// specials.
    pub fn build<S: AsRef<str>, Seq: AsRef<[S]>>(
        sequences: &[Seq],
        min_freq: usize,
        max_size: Option<usize>,
    ) -> Result<TokenVocab> {
        if min_freq == 0 {
            return Err(Error::Config(
                "vocabulary: min_freq must be at least 1".into(),
            ));
        }
        if let Some(m) = max_size.filter(|&m| m < SPECIALS.len()) {
            return Err(Error::Config(format!(
                "vocabulary: max_size {m} leaves no room for the {} special tokens",
                SPECIALS.len()
            )));
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for seq in sequences {
            for t in seq.as_ref() {
                *counts.entry(t.as_ref()).or_insert(0) += 1;
            }
        }
        let mut order: Vec<(&str, usize)> = counts
            .into_iter()
            .filter(|(t, c)| *c >= min_freq && !SPECIALS.contains(t))
            .collect();
        order.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let room = max_size.map_or(usize::MAX, |m| m - SPECIALS.len());
        let tokens = SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(order.into_iter().take(room).map(|(t, _)| t.to_string()))
            .collect();
        Ok(TokenVocab::from_list(tokens))
    }

    /// A vocabulary of exactly these tokens after the specials (ids 4, 5, ...); an error if a
    /// token occurs twice or is a special.
    pub fn from_tokens<S: AsRef<str>>(tokens: &[S]) -> Result<TokenVocab> {
        let mut all: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).collect();
        all.extend(tokens.iter().map(|t| t.as_ref().to_string()));
        check_unique(&all).map_err(|m| Error::Input(format!("vocabulary: {m}")))?;
        Ok(TokenVocab::from_list(all))
    }

    fn from_list(tokens: Vec<String>) -> TokenVocab {
        let index = tokens
            .iter()
            .enumerate()
            .map(|(k, t)| (t.clone(), k))
            .collect();
        TokenVocab { tokens, index }
    }

    /// The number of ids, specials included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    /// Always false: the specials are always there.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Every token, in id order (specials first).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }
    /// The id of `token`, [`TokenVocab::UNK`] if it is unknown.
    pub fn id(&self, token: &str) -> usize {
        self.get(token).unwrap_or(TokenVocab::UNK)
    }
    /// The id of `token`, `None` if it is unknown.
    pub fn get(&self, token: &str) -> Option<usize> {
        self.index.get(token).copied()
    }
    /// The token of `id`, `None` if out of range.
    pub fn token(&self, id: usize) -> Option<&str> {
        self.tokens.get(id).map(|s| s.as_str())
    }
    /// The ids of `tokens` (unknown ones become [`TokenVocab::UNK`]).
    pub fn encode<S: AsRef<str>>(&self, tokens: &[S]) -> Vec<usize> {
        tokens.iter().map(|t| self.id(t.as_ref())).collect()
    }
    /// `<bos>`, the ids of `tokens`, `<eos>`.
    pub fn encode_with_bounds<S: AsRef<str>>(&self, tokens: &[S]) -> Vec<usize> {
        let mut ids = Vec::with_capacity(tokens.len() + 2);
        ids.push(TokenVocab::BOS);
        ids.extend(tokens.iter().map(|t| self.id(t.as_ref())));
        ids.push(TokenVocab::EOS);
        ids
    }
    /// How many of `tokens` are unknown.
    pub fn count_unknown<S: AsRef<str>>(&self, tokens: &[S]) -> usize {
        tokens
            .iter()
            .filter(|t| self.get(t.as_ref()).is_none())
            .count()
    }
    /// The tokens of `ids` (an id out of range becomes `<unk>`).
    pub fn decode(&self, ids: &[usize]) -> Vec<&str> {
        ids.iter()
            .map(|&i| self.token(i).unwrap_or(SPECIALS[TokenVocab::UNK]))
            .collect()
    }

    /// The vocabulary as JSON: `{"type": "tokens", "specials": ["<pad>", "<unk>", "<bos>",
    /// "<eos>"], "tokens": ["<pad>", ..., "the", ...]}`, where `tokens[id]` is the token of
    /// `id`.
    pub fn to_json(&self) -> String {
        let v = serde_json::json!({
            "type": "tokens",
            "specials": SPECIALS,
            "tokens": self.tokens,
        });
        serde_json::to_string_pretty(&v).expect("JSON of a vocabulary")
    }

    /// Reads the JSON of [`TokenVocab::to_json`]; `source` names it in error messages.
    pub fn from_json(text: &str, source: &str) -> Result<TokenVocab> {
        let bad = |m: String| Error::Input(format!("{source}: not a token vocabulary: {m}"));
        let v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON ({e})")))?;
        if v.get("type").and_then(|t| t.as_str()) != Some("tokens") {
            return Err(bad("expected \"type\": \"tokens\"".into()));
        }
        let specials = strings(&v, "specials").map_err(&bad)?;
        if specials != SPECIALS {
            return Err(bad(format!(
                "expected \"specials\": {SPECIALS:?}, found {specials:?}"
            )));
        }
        let tokens = strings(&v, "tokens").map_err(&bad)?;
        if tokens.len() < SPECIALS.len() || tokens[..SPECIALS.len()] != SPECIALS {
            return Err(bad(format!(
                "\"tokens\" must start with the specials {SPECIALS:?}"
            )));
        }
        check_unique(&tokens).map_err(bad)?;
        Ok(TokenVocab::from_list(tokens))
    }

    /// Writes [`TokenVocab::to_json`] to `path` (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), self.to_json().as_bytes())
    }

    /// Reads a vocabulary written by [`TokenVocab::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<TokenVocab> {
        let path = path.as_ref();
        TokenVocab::from_json(&read_text(path)?, &path.display().to_string())
    }
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::file(path, "cannot read", e))?;
    String::from_utf8(bytes).map_err(|e| {
        Error::Input(format!(
            "{}: invalid UTF-8 at byte {}",
            path.display(),
            e.utf8_error().valid_up_to() + 1
        ))
    })
}

/// The list of strings `v[key]`.
fn strings(v: &Value, key: &str) -> std::result::Result<Vec<String>, String> {
    let list = v
        .get(key)
        .and_then(|t| t.as_array())
        .ok_or_else(|| format!("no \"{key}\" list"))?;
    list.iter()
        .enumerate()
        .map(|(k, t)| {
            t.as_str()
                .map(str::to_string)
                .ok_or_else(|| format!("{key}[{k}] is not a string"))
        })
        .collect()
}

fn check_unique(items: &[String]) -> std::result::Result<(), String> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(items.len());
    for (k, t) in items.iter().enumerate() {
        if let Some(first) = seen.insert(t.as_str(), k) {
            return Err(format!("{t:?} occurs twice (at {first} and {k})"));
        }
    }
    Ok(())
}

/// The class labels of a classification task: names ↔ ids 0, 1, ... Built from training
/// labels, the names are sorted (numerically if every label is an integer, so `2` comes before
/// `10`; else by bytes). Saved with the model so that ids keep their meaning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSet {
    names: Vec<String>,
    index: HashMap<String, usize>,
}

/// How many names an unknown-label error lists.
const LISTED: usize = 20;

impl LabelSet {
    /// The distinct labels of `labels`, sorted (see [`LabelSet`]); an error if there are none
    /// or one is empty.
    pub fn from_labels<S: AsRef<str>>(labels: impl IntoIterator<Item = S>) -> Result<LabelSet> {
        let mut names: Vec<String> = labels.into_iter().map(|s| s.as_ref().to_string()).collect();
        if names.iter().all(|n| n.parse::<i64>().is_ok()) {
            names.sort_unstable_by(|a, b| {
                let (x, y) = (a.parse::<i64>().unwrap_or(0), b.parse::<i64>().unwrap_or(0));
                x.cmp(&y).then_with(|| a.cmp(b))
            });
        } else {
            names.sort_unstable();
        }
        names.dedup();
        LabelSet::new(names)
    }

    /// A label set of these names in this order (ids 0, 1, ...); an error if there are none,
    /// one is empty or one occurs twice.
    pub fn new(names: Vec<String>) -> Result<LabelSet> {
        if names.is_empty() {
            return Err(Error::Input("label set: no labels".into()));
        }
        if names.iter().any(|n| n.is_empty()) {
            return Err(Error::Input("label set: a label is empty".into()));
        }
        check_unique(&names).map_err(|m| Error::Input(format!("label set: {m}")))?;
        let index = names
            .iter()
            .enumerate()
            .map(|(k, t)| (t.clone(), k))
            .collect();
        Ok(LabelSet { names, index })
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.names.len()
    }
    /// Always false: a label set has at least one label.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
    /// The names, in id order.
    pub fn names(&self) -> &[String] {
        &self.names
    }
    /// The name of `id`, `None` if out of range.
    pub fn name(&self, id: usize) -> Option<&str> {
        self.names.get(id).map(|s| s.as_str())
    }
    /// Whether `label` is known.
    pub fn contains(&self, label: &str) -> bool {
        self.index.contains_key(label)
    }
    /// The id of `label`; an error naming it and listing the known labels if it is unknown.
    pub fn id(&self, label: &str) -> Result<usize> {
        self.index.get(label).copied().ok_or_else(|| {
            let mut known = self.names[..self.names.len().min(LISTED)].join(", ");
            if self.names.len() > LISTED {
                known.push_str(&format!(", ... ({} in all)", self.names.len()));
            }
            Error::Input(format!(
                "unknown label {label:?}; the known labels are: {known}"
            ))
        })
    }
    /// The ids of `labels`; an error for the first unknown one.
    pub fn encode<S: AsRef<str>>(&self, labels: &[S]) -> Result<Vec<usize>> {
        labels.iter().map(|l| self.id(l.as_ref())).collect()
    }

    /// The label set as JSON: `{"type": "labels", "labels": ["neg", "pos"]}`, where
    /// `labels[id]` is the name of `id`.
    pub fn to_json(&self) -> String {
        let v = serde_json::json!({ "type": "labels", "labels": self.names });
        serde_json::to_string_pretty(&v).expect("JSON of a label set")
    }

    /// Reads the JSON of [`LabelSet::to_json`]; `source` names it in error messages.
    pub fn from_json(text: &str, source: &str) -> Result<LabelSet> {
        let bad = |m: String| Error::Input(format!("{source}: not a label set: {m}"));
        let v: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON ({e})")))?;
        if v.get("type").and_then(|t| t.as_str()) != Some("labels") {
            return Err(bad("expected \"type\": \"labels\"".into()));
        }
        let names = strings(&v, "labels").map_err(&bad)?;
        LabelSet::new(names).map_err(|e| bad(e.to_string()))
    }

    /// Writes [`LabelSet::to_json`] to `path` (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), self.to_json().as_bytes())
    }

    /// Reads a label set written by [`LabelSet::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<LabelSet> {
        let path = path.as_ref();
        LabelSet::from_json(&read_text(path)?, &path.display().to_string())
    }
}
