//! Token vocabularies for sequence-to-sequence models: ids for `<pad>`, `<unk>`, `<bos>`,
//! `<eos>` and the tokens of a corpus, with the tokenizer that cuts text into those tokens.

use crate::error::{Error, Result};
use crate::state_dict::write_atomic;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

/// How a text is cut into tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tokenizer {
    /// Every character is a token; tokens join back with nothing between them.
    Char,
    /// Tokens are separated by whitespace; they join back with one space.
    Word,
}

impl Tokenizer {
    /// `"char"` or `"word"`.
    pub fn name(self) -> &'static str {
        match self {
            Tokenizer::Char => "char",
            Tokenizer::Word => "word",
        }
    }
    /// The tokens of `text`.
    pub fn split(self, text: &str) -> Vec<String> {
        match self {
            Tokenizer::Char => text.chars().map(|c| c.to_string()).collect(),
            Tokenizer::Word => text.split_whitespace().map(str::to_string).collect(),
        }
    }
    /// The text of `tokens` (the inverse of [`Tokenizer::split`] up to whitespace).
    pub fn join<S: AsRef<str>>(self, tokens: &[S]) -> String {
        let parts: Vec<&str> = tokens.iter().map(|t| t.as_ref()).collect();
        match self {
            Tokenizer::Char => parts.concat(),
            Tokenizer::Word => parts.join(" "),
        }
    }
}

impl fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Tokenizer {
    type Err = Error;
    fn from_str(s: &str) -> Result<Tokenizer> {
        match s {
            "char" => Ok(Tokenizer::Char),
            "word" => Ok(Tokenizer::Word),
            _ => Err(Error::Config(format!(
                "unknown tokenizer '{s}': expected char or word"
            ))),
        }
    }
}

/// The special tokens, in id order: `<pad>` = 0, `<unk>` = 1, `<bos>` = 2, `<eos>` = 3.
pub const SPECIALS: [&str; 4] = ["<pad>", "<unk>", "<bos>", "<eos>"];

/// A token vocabulary: ids 0..4 are [`SPECIALS`], ids 4.. the known tokens in the order
/// given (sorted when built from a corpus). It also records the [`Tokenizer`] of its texts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenVocab {
    tokenizer: Tokenizer,
    /// Every token, specials first: `tokens[id]`.
    tokens: Vec<String>,
    index: HashMap<String, usize>,
}

impl TokenVocab {
    /// The id of padding.
    pub const PAD: usize = 0;
    /// The id of unknown tokens.
    pub const UNK: usize = 1;
    /// The id that starts every decoder input.
    pub const BOS: usize = 2;
    /// The id that ends every target.
    pub const EOS: usize = 3;

    /// The vocabulary of the distinct tokens of `texts` cut by `tokenizer`, sorted (a token
    /// spelled like a special token is the special token).
    pub fn from_texts<S: AsRef<str>>(tokenizer: Tokenizer, texts: &[S]) -> TokenVocab {
        let mut all: Vec<String> = texts
            .iter()
            .flat_map(|t| tokenizer.split(t.as_ref()))
            .filter(|t| !SPECIALS.contains(&t.as_str()))
            .collect();
        all.sort_unstable();
        all.dedup();
        TokenVocab::build(tokenizer, all)
    }

    /// A vocabulary of the given tokens (ids 4, 5, ... in this order); an error if a token
    /// occurs twice, is empty, or is a special token.
    pub fn from_tokens<S: AsRef<str>>(tokenizer: Tokenizer, tokens: &[S]) -> Result<TokenVocab> {
        let mut seen = std::collections::HashSet::new();
        for (k, t) in tokens.iter().enumerate() {
            let t = t.as_ref();
            if t.is_empty() {
                return Err(Error::Input(format!("vocabulary: token {k} is empty")));
            }
            if SPECIALS.contains(&t) {
                return Err(Error::Input(format!(
                    "vocabulary: token {k} is the special token {t}"
                )));
            }
            if !seen.insert(t) {
                return Err(Error::Input(format!(
                    "vocabulary: the token {t:?} occurs twice"
                )));
            }
        }
        Ok(TokenVocab::build(
            tokenizer,
            tokens.iter().map(|t| t.as_ref().to_string()).collect(),
        ))
    }

    fn build(tokenizer: Tokenizer, known: Vec<String>) -> TokenVocab {
        let tokens: Vec<String> = SPECIALS
            .iter()
            .map(|s| s.to_string())
            .chain(known)
            .collect();
        let index = tokens
            .iter()
            .enumerate()
            .map(|(k, t)| (t.clone(), k))
            .collect();
        TokenVocab {
            tokenizer,
            tokens,
            index,
        }
    }

    /// The tokenizer of this vocabulary's texts.
    pub fn tokenizer(&self) -> Tokenizer {
        self.tokenizer
    }
    /// The number of ids, the special tokens included.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }
    /// Always false: the special tokens are always there.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Every token in id order (the special tokens first).
    pub fn tokens(&self) -> &[String] {
        &self.tokens
    }
    /// The id of `token`, [`TokenVocab::UNK`] if it is not known.
    pub fn id(&self, token: &str) -> usize {
        self.index.get(token).copied().unwrap_or(TokenVocab::UNK)
    }
    /// The token of `id`, if in range.
    pub fn token(&self, id: usize) -> Option<&str> {
        self.tokens.get(id).map(|s| s.as_str())
    }
    /// The id of a token read from a text: a known token's id, [`TokenVocab::UNK`] for
    /// anything else, the spelling of a special token included.
    fn text_id(&self, token: &str) -> usize {
        match self.index.get(token) {
            Some(&id) if id >= SPECIALS.len() => id,
            _ => TokenVocab::UNK,
        }
    }
    /// The ids of the tokens of `text` (unknown tokens, and text spelling a special token,
    /// become [`TokenVocab::UNK`]).
    pub fn encode(&self, text: &str) -> Vec<usize> {
        self.tokenizer
            .split(text)
            .iter()
            .map(|t| self.text_id(t))
            .collect()
    }
    /// How many tokens of `text` [`TokenVocab::encode`] makes `<unk>`.
    pub fn count_unknown(&self, text: &str) -> usize {
        self.encode(text)
            .iter()
            .filter(|&&id| id == TokenVocab::UNK)
            .count()
    }
    /// The tokens of `ids` (ids out of range become `<unk>`).
    pub fn decode_tokens(&self, ids: &[usize]) -> Vec<&str> {
        ids.iter()
            .map(|&id| self.token(id).unwrap_or(SPECIALS[TokenVocab::UNK]))
            .collect()
    }
    /// The text of `ids`, joined as the tokenizer says.
    pub fn decode(&self, ids: &[usize]) -> String {
        self.tokenizer.join(&self.decode_tokens(ids))
    }

    /// The vocabulary as JSON: `{"type": "tokens", "tokenizer": "char", "specials": {"pad": 0,
    /// "unk": 1, "bos": 2, "eos": 3}, "tokens": ["<pad>", "<unk>", "<bos>", "<eos>", ...]}`,
    /// where `tokens[id]` is the token of `id`.
    pub fn to_json(&self) -> String {
        let v = serde_json::json!({
            "type": "tokens",
            "tokenizer": self.tokenizer.name(),
            "specials": {"pad": TokenVocab::PAD, "unk": TokenVocab::UNK, "bos": TokenVocab::BOS, "eos": TokenVocab::EOS},
            "tokens": self.tokens,
        });
        serde_json::to_string_pretty(&v).expect("JSON of a vocabulary")
    }

    /// Reads the JSON of [`TokenVocab::to_json`]; `source` names it in error messages.
    pub fn from_json(text: &str, source: &str) -> Result<TokenVocab> {
        let bad = |m: String| Error::Input(format!("{source}: not a token vocabulary: {m}"));
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON ({e})")))?;
        if v.get("type").and_then(|t| t.as_str()) != Some("tokens") {
            return Err(bad("expected \"type\": \"tokens\"".into()));
        }
        let tokenizer: Tokenizer = v
            .get("tokenizer")
            .and_then(|t| t.as_str())
            .ok_or_else(|| bad("no \"tokenizer\" string".into()))?
            .parse()
            .map_err(|e: Error| bad(e.to_string()))?;
        let tokens = v
            .get("tokens")
            .and_then(|t| t.as_array())
            .ok_or_else(|| bad("no \"tokens\" list".into()))?;
        let mut all = Vec::with_capacity(tokens.len());
        for (k, t) in tokens.iter().enumerate() {
            all.push(
                t.as_str()
                    .ok_or_else(|| bad(format!("tokens[{k}] is not a string")))?,
            );
        }
        for (k, s) in SPECIALS.iter().enumerate() {
            if all.get(k) != Some(s) {
                return Err(bad(format!(
                    "tokens[{k}] must be \"{s}\", found {:?}",
                    all.get(k)
                )));
            }
        }
        TokenVocab::from_tokens(tokenizer, &all[SPECIALS.len()..]).map_err(|e| bad(e.to_string()))
    }

    /// Writes [`TokenVocab::to_json`] to `path` (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), self.to_json().as_bytes())
    }

    /// Reads a vocabulary written by [`TokenVocab::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<TokenVocab> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io(format!("{}: cannot read: {e}", path.display())))?;
        TokenVocab::from_json(&text, &path.display().to_string())
    }
}
