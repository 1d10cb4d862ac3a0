//! Character-level text for language models: a vocabulary ([`Vocab`]), a truncated-BPTT
//! batcher ([`Batches`]) and unigram baselines.
//!
//! ```
//! use recur::data::text::{Batches, Vocab};
//! let text = "abcdefghij";
//! let vocab = Vocab::from_text(text);
//! let ids = vocab.encode(text);
//! // Two streams of 4 steps each, in chunks of up to 3 steps.
//! let batches = Batches::new(&ids, 2, 3).unwrap();
//! let chunks: Vec<_> = batches.iter().collect();
//! assert_eq!(chunks.len(), 2);
//! // Time-major (steps, batch): stream 0 reads "abcd", stream 1 reads "efgh".
//! assert_eq!(vocab.decode(&chunks[0].input), "aebfcg");
//! assert_eq!(vocab.decode(&chunks[0].target), "bfcgdh");
//! assert_eq!(vocab.decode(&chunks[1].input), "dh");
//! assert_eq!(vocab.decode(&chunks[1].target), "ei");
//! ```

use crate::error::{Error, Result};
use crate::io::state_dict::write_atomic;
use std::collections::HashMap;
use std::path::Path;

/// The token of unknown characters in [`Vocab`] files.
pub const UNK_TOKEN: &str = "<unk>";

/// A character vocabulary: id 0 is `<unk>` (every character the vocabulary does not know),
/// ids 1.. are the known characters in increasing code-point order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vocab {
    /// The known characters; `chars[k]` has id k + 1.
    chars: Vec<char>,
    index: HashMap<char, usize>,
}

impl Vocab {
    /// The id of unknown characters.
    pub const UNK: usize = 0;

    /// The vocabulary of the distinct characters of `text`.
    pub fn from_text(text: &str) -> Vocab {
        let mut chars: Vec<char> = text.chars().collect();
        chars.sort_unstable();
        chars.dedup();
        Vocab::build(chars)
    }

    /// A vocabulary of the given characters, in this order (ids 1, 2, ...); an error if one
    /// occurs twice.
    pub fn from_chars(chars: &[char]) -> Result<Vocab> {
        let mut seen = std::collections::HashSet::new();
        for &c in chars {
            if !seen.insert(c) {
                return Err(Error::Input(format!(
                    "vocabulary: the character {c:?} occurs twice"
                )));
            }
        }
        Ok(Vocab::build(chars.to_vec()))
    }

    fn build(chars: Vec<char>) -> Vocab {
        let index = chars.iter().enumerate().map(|(k, &c)| (c, k + 1)).collect();
        Vocab { chars, index }
    }

    /// The number of ids, `<unk>` included.
    pub fn len(&self) -> usize {
        self.chars.len() + 1
    }
    /// Always false: `<unk>` is always there.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// The known characters, in id order (the first has id 1).
    pub fn chars(&self) -> &[char] {
        &self.chars
    }
    /// The id of `c`, [`Vocab::UNK`] if it is not known.
    pub fn id(&self, c: char) -> usize {
        self.index.get(&c).copied().unwrap_or(Vocab::UNK)
    }
    /// Whether `c` has an id of its own.
    pub fn contains(&self, c: char) -> bool {
        self.index.contains_key(&c)
    }
    /// The character of `id`; `None` for `<unk>` and ids out of range.
    pub fn char(&self, id: usize) -> Option<char> {
        id.checked_sub(1).and_then(|k| self.chars.get(k).copied())
    }
    /// The ids of the characters of `text` (unknown characters become [`Vocab::UNK`]).
    pub fn encode(&self, text: &str) -> Vec<usize> {
        text.chars().map(|c| self.id(c)).collect()
    }
    /// How many characters of `text` the vocabulary does not know.
    pub fn count_unknown(&self, text: &str) -> usize {
        text.chars().filter(|c| !self.contains(*c)).count()
    }
    /// The text of `ids`; `<unk>` (and any id out of range) becomes U+FFFD `�`.
    pub fn decode(&self, ids: &[usize]) -> String {
        ids.iter()
            .map(|&id| self.char(id).unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect()
    }

    /// The vocabulary as JSON: `{"type": "char", "unk_id": 0, "tokens": ["<unk>", "\n", " ",
    /// ...]}`, where `tokens[id]` is the token of `id`.
    pub fn to_json(&self) -> String {
        let mut tokens = vec![serde_json::Value::from(UNK_TOKEN)];
        tokens.extend(
            self.chars
                .iter()
                .map(|c| serde_json::Value::from(c.to_string())),
        );
        let v = serde_json::json!({
            "type": "char",
            "unk_id": Vocab::UNK,
            "tokens": tokens,
        });
        serde_json::to_string_pretty(&v).expect("JSON of a vocabulary")
    }

    /// Reads the JSON of [`Vocab::to_json`]; `source` names it in error messages.
    pub fn from_json(text: &str, source: &str) -> Result<Vocab> {
        let bad = |m: String| Error::Input(format!("{source}: not a character vocabulary: {m}"));
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| bad(format!("invalid JSON ({e})")))?;
        if v.get("type").and_then(|t| t.as_str()) != Some("char") {
            return Err(bad("expected \"type\": \"char\"".into()));
        }
        if v.get("unk_id").and_then(|t| t.as_u64()) != Some(Vocab::UNK as u64) {
            return Err(bad(format!("expected \"unk_id\": {}", Vocab::UNK)));
        }
        let tokens = v
            .get("tokens")
            .and_then(|t| t.as_array())
            .ok_or_else(|| bad("no \"tokens\" list".into()))?;
        if tokens.first().and_then(|t| t.as_str()) != Some(UNK_TOKEN) {
            return Err(bad(format!("tokens[0] must be \"{UNK_TOKEN}\"")));
        }
        let mut chars = Vec::with_capacity(tokens.len());
        for (k, t) in tokens.iter().enumerate().skip(1) {
            let s = t
                .as_str()
                .ok_or_else(|| bad(format!("tokens[{k}] is not a string")))?;
            let mut it = s.chars();
            match (it.next(), it.next()) {
                (Some(c), None) => chars.push(c),
                _ => return Err(bad(format!("tokens[{k}] = {s:?} is not one character"))),
            }
        }
        Vocab::from_chars(&chars).map_err(|e| bad(e.to_string()))
    }

    /// Writes [`Vocab::to_json`] to `path` (atomically).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        write_atomic(path.as_ref(), self.to_json().as_bytes())
    }

    /// Reads a vocabulary written by [`Vocab::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<Vocab> {
        let path = path.as_ref();
        let text =
            std::fs::read_to_string(path).map_err(|e| Error::file(path, "cannot read", e))?;
        Vocab::from_json(&text, &path.display().to_string())
    }
}

/// A text cut into `batch_size` contiguous streams, read in chunks of up to `seq_len` steps
/// for truncated backpropagation through time (char-rnn; PyTorch's word_language_model
/// `batchify` + `get_batch`).
///
/// With `n` ids and `B` streams, every stream has `L = (n - 1) / B` steps: stream `b` reads
/// ids `b·L .. b·L + L` and predicts ids `b·L + 1 ..= b·L + L`. Unlike `batchify`, a stream
/// also predicts the first id of the next stream, so every id but the first is a target
/// exactly once (up to `B - 1` ids at the end are dropped, as in `batchify`). Chunk `k` covers
/// steps `k·seq_len ..` of every stream, so the state at the end of a chunk is the state at the
/// start of the next: carry it (without gradient) from chunk to chunk, in order.
#[derive(Clone, Debug)]
pub struct Batches {
    /// (L + 1, B), time-major: `data[t·B + b]` is step t of stream b.
    data: Vec<usize>,
    batch: usize,
    /// L: input steps per stream.
    len: usize,
    seq_len: usize,
}

/// One chunk of [`Batches`]: inputs and targets, (steps, batch) time-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// (steps, batch): `input[t·batch + b]` is the id stream b reads at step t.
    pub input: Vec<usize>,
    /// (steps, batch): the id that follows each input.
    pub target: Vec<usize>,
    /// Steps in this chunk (`seq_len`, or fewer for the last chunk).
    pub steps: usize,
    /// Streams.
    pub batch: usize,
    /// The step of the streams this chunk starts at.
    pub start: usize,
}

impl Batches {
    /// Cuts `ids` into `batch_size` streams read `seq_len` steps at a time.
    ///
    /// Errors if `batch_size` or `seq_len` is 0, or if the text is too short to give every
    /// stream one step (`ids.len() < batch_size + 1`).
    pub fn new(ids: &[usize], batch_size: usize, seq_len: usize) -> Result<Batches> {
        if batch_size == 0 {
            return Err(Error::Input("batch_size must be at least 1".into()));
        }
        if seq_len == 0 {
            return Err(Error::Input("seq_len must be at least 1".into()));
        }
        let len = ids.len().saturating_sub(1) / batch_size;
        if len == 0 {
            return Err(Error::Input(format!(
                "a text of {} characters is too short for {batch_size} streams: it needs at \
                 least {} (one input and one target per stream)",
                ids.len(),
                batch_size + 1
            )));
        }
        let mut data = vec![0; (len + 1) * batch_size];
        for b in 0..batch_size {
            for t in 0..=len {
                data[t * batch_size + b] = ids[b * len + t];
            }
        }
        Ok(Batches {
            data,
            batch: batch_size,
            len,
            seq_len,
        })
    }

    /// The number of streams.
    pub fn batch_size(&self) -> usize {
        self.batch
    }
    /// The longest chunk.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }
    /// Input steps per stream, L.
    pub fn stream_len(&self) -> usize {
        self.len
    }
    /// Chunks per pass over the text, ⌈L / seq_len⌉.
    pub fn num_chunks(&self) -> usize {
        self.len.div_ceil(self.seq_len)
    }
    /// Targets per pass over the text, B·L.
    pub fn num_targets(&self) -> usize {
        self.batch * self.len
    }
    /// The L + 1 ids of stream `b` (its inputs, then its last target).
    pub fn stream(&self, b: usize) -> Vec<usize> {
        assert!(b < self.batch, "stream {b} of {}", self.batch);
        (0..=self.len)
            .map(|t| self.data[t * self.batch + b])
            .collect()
    }

    /// Chunk `k` (in `0..num_chunks()`).
    pub fn chunk(&self, k: usize) -> Chunk {
        assert!(k < self.num_chunks(), "chunk {k} of {}", self.num_chunks());
        let start = k * self.seq_len;
        let steps = self.seq_len.min(self.len - start);
        let b = self.batch;
        Chunk {
            input: self.data[start * b..(start + steps) * b].to_vec(),
            target: self.data[(start + 1) * b..(start + 1 + steps) * b].to_vec(),
            steps,
            batch: b,
            start,
        }
    }

    /// Every chunk, in order.
    pub fn iter(&self) -> impl Iterator<Item = Chunk> + '_ {
        (0..self.num_chunks()).map(|k| self.chunk(k))
    }
}

/// The entropy, in bits per character, of the distribution of ids in `ids`.
pub fn entropy_bits(ids: &[usize]) -> f64 {
    let mut counts: HashMap<usize, usize> = HashMap::new();
    for &id in ids {
        *counts.entry(id).or_default() += 1;
    }
    let n = ids.len() as f64;
    counts
        .values()
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

/// The unigram baseline: the cross-entropy, in bits per character, of `eval` under the
/// character frequencies of `train` with add-one smoothing over `vocab_size` ids (so that an
/// id never seen in `train` has a finite cost).
pub fn unigram_bits(train: &[usize], eval: &[usize], vocab_size: usize) -> f64 {
    let mut counts = vec![1.0f64; vocab_size];
    for &id in train {
        if id < vocab_size {
            counts[id] += 1.0;
        }
    }
    let total: f64 = counts.iter().sum();
    let bits: f64 = eval
        .iter()
        .map(|&id| -(counts.get(id).copied().unwrap_or(1.0) / total).log2())
        .sum();
    bits / eval.len().max(1) as f64
}
