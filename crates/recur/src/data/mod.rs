//! Data sets from text files: readers that never panic, tokenizers and vocabularies.
//!
//! | reader | format | records |
//! | --- | --- | --- |
//! | [`tsv::parse_labelled`] | `label<TAB>text` (columns and score labels configurable) | [`LabelledText`] |
//! | [`jsonl::parse_labelled`] | one JSON object per line, named label and text fields | [`LabelledText`] |
//! | [`tsv::parse_pairs`] | `source<TAB>target` (columns configurable, optional header) | [`TextPair`] |
//! | [`cmudict::parse`] | the CMU Pronouncing Dictionary, `word PH1 PH2 ...` | [`cmudict::Pronunciation`] |
//! | [`ts::parse`] | sktime `.ts` multivariate series with class labels | [`ts::TsSeries`] |
//! | [`conllu::parse`] | CoNLL-U treebanks | [`conllu::Sentence`] |
//! | [`csv::parse`] | numeric columns of a CSV file with a header | [`csv::Table`] |
//!
//! Every reader has a `read` form taking a path and a `parse` form taking the bytes and a
//! `source` name used in messages. Errors name the source and the line, as in
//! `train.tsv:12: expected 3 tab-separated fields, found 1`: invalid UTF-8, a wrong number of
//! fields, NaN or infinity in numeric data and an empty data set are all errors, never a
//! panic and never a silent lossy read. With `skip_bad_lines`, malformed records are skipped
//! instead and counted in the [`ReadReport`], which keeps the first few of them.
//!
//! Lines end with `\n` or `\r\n`; a UTF-8 byte-order mark at the start of a file is ignored.
//!
//! [`tokenize`] splits English text into words or characters; [`vocab`] maps tokens and class
//! labels to ids and back, and saves them as JSON.
//!
//! ```
//! use recur::data::tsv::{parse_labelled, LabelledTsv, ScoreLabels};
//! // id<TAB>score<TAB>text; the sign of the score is the label, zero scores are dropped.
//! let file = "1\t2.5\tGreat fun\n2\t-1.0\tDull\n3\t0\tMeh\n";
//! let opts = LabelledTsv {
//!     label: 1.into(),
//!     text: 2.into(),
//!     score: Some(ScoreLabels::sign("pos", "neg")),
//!     ..LabelledTsv::default()
//! };
//! let data = parse_labelled(file.as_bytes(), "vader.tsv", &opts).unwrap();
//! assert_eq!(data.records.len(), 2);
//! assert_eq!((data.records[1].label.as_str(), data.records[1].text.as_str()), ("neg", "Dull"));
//! assert_eq!(data.report.dropped, 1);
//! ```

pub mod cmudict;
pub mod conllu;
pub mod csv;
pub mod jsonl;
pub mod text;
pub mod tokenize;
pub mod ts;
pub mod tsv;
pub mod vocab;

pub use tokenize::{Tokenizer, WordTokenizer};
pub use vocab::{LabelSet, TokenVocab};

use crate::error::{Error, Result};
use std::fmt;
use std::path::Path;

/// How many skipped records a [`ReadReport`] keeps (with their line and message).
pub const REPORTED_SKIPS: usize = 10;

/// A record that was skipped because it was malformed (with `skip_bad_lines`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skipped {
    /// The line (1-based) where the problem is.
    pub line: usize,
    /// What was wrong, as the error would have said it (without the file and line).
    pub message: String,
}

/// What a reader did: how many lines it read, how many records it returned, and what it
/// skipped or dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadReport {
    /// The file name (or the `source` given to a `parse` function).
    pub source: String,
    /// Lines in the input.
    pub lines: usize,
    /// Records returned.
    pub records: usize,
    /// Malformed records skipped (only with `skip_bad_lines`; otherwise the first one is an
    /// error).
    pub skipped: usize,
    /// The first [`REPORTED_SKIPS`] skipped records, in file order.
    pub first_skipped: Vec<Skipped>,
    /// Well-formed records left out on purpose by an option (e.g. a score of zero when zero
    /// scores are dropped).
    pub dropped: usize,
}

impl ReadReport {
    fn new(source: &str) -> ReadReport {
        ReadReport {
            source: source.to_string(),
            ..ReadReport::default()
        }
    }
    /// The line numbers of the first skipped records.
    pub fn skipped_lines(&self) -> Vec<usize> {
        self.first_skipped.iter().map(|s| s.line).collect()
    }
}

impl fmt::Display for ReadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} lines, {} records, {} skipped, {} dropped",
            self.source, self.lines, self.records, self.skipped, self.dropped
        )?;
        if !self.first_skipped.is_empty() {
            let lines: Vec<String> = self
                .first_skipped
                .iter()
                .map(|s| s.line.to_string())
                .collect();
            let more = if self.skipped > self.first_skipped.len() {
                ", ..."
            } else {
                ""
            };
            write!(f, " (skipped lines {}{more})", lines.join(", "))?;
        }
        Ok(())
    }
}

/// The records a reader found, with its [`ReadReport`].
#[derive(Clone, Debug, PartialEq)]
pub struct Records<T> {
    /// The records, in file order.
    pub records: Vec<T>,
    /// What was read, skipped and dropped.
    pub report: ReadReport,
}

/// A text with its class label (classification data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelledText {
    /// The class label.
    pub label: String,
    /// The text.
    pub text: String,
    /// The line (1-based) the record comes from.
    pub line: usize,
}

/// A source text and its target text (sequence-to-sequence data).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextPair {
    /// The input sequence.
    pub source: String,
    /// The output sequence.
    pub target: String,
    /// The line (1-based) the pair comes from.
    pub line: usize,
}

/// A column of a delimited file: by 0-based index, or by its name in the header line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// The 0-based field index.
    Index(usize),
    /// The name in the header line (the file must have one).
    Name(String),
}

impl From<usize> for Column {
    fn from(i: usize) -> Column {
        Column::Index(i)
    }
}
impl From<&str> for Column {
    fn from(s: &str) -> Column {
        Column::Name(s.to_string())
    }
}
impl From<String> for Column {
    fn from(s: String) -> Column {
        Column::Name(s)
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Index(i) => write!(f, "column {i}"),
            Column::Name(n) => write!(f, "column '{n}'"),
        }
    }
}

impl Column {
    /// The 0-based index of this column, given the header's field names (if the file has a
    /// header). `what` and `source` name it in errors.
    pub(crate) fn resolve(&self, header: Option<&[String]>, source: &str) -> Result<usize> {
        match (self, header) {
            (Column::Index(i), Some(h)) if *i >= h.len() => Err(Error::Input(format!(
                "{source}:1: column index {i} is out of range: the header has {} fields ({})",
                h.len(),
                h.join(", ")
            ))),
            (Column::Index(i), _) => Ok(*i),
            (Column::Name(n), Some(h)) => h.iter().position(|x| x == n).ok_or_else(|| {
                Error::Input(format!(
                    "{source}:1: no column '{n}' in the header; it has {}",
                    h.join(", ")
                ))
            }),
            (Column::Name(n), None) => Err(Error::Config(format!(
                "{source}: column '{n}' is chosen by name, but the file is read without a header \
                 line (set header: true or choose the column by index)"
            ))),
        }
    }
}

/// Reads a whole file; an [`Error::Io`] naming it if that fails.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::file(path, "cannot read", e))
}

/// The lines of `bytes` with their 1-based numbers. Lines end at `\n`; a `\r` before it is
/// removed; a final line without `\n` counts; nothing after a final `\n` does. A UTF-8
/// byte-order mark at the start is removed.
pub(crate) fn lines(bytes: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let empty = bytes.is_empty();
    body.split(|&b| b == b'\n')
        .take(if empty { 0 } else { usize::MAX })
        .enumerate()
        .map(|(k, l)| (k + 1, l.strip_suffix(b"\r").unwrap_or(l)))
}

/// The line as UTF-8 text, or a message naming the first invalid byte.
pub(crate) fn utf8(line: &[u8]) -> std::result::Result<&str, String> {
    std::str::from_utf8(line).map_err(|e| {
        format!(
            "invalid UTF-8 at byte {} of the line (byte 0x{:02X})",
            e.valid_up_to() + 1,
            line[e.valid_up_to()]
        )
    })
}

/// `s` for an error message: quoted, and cut to 40 characters.
pub(crate) fn show(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        format!("{s:?}")
    } else {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}...")
    }
}

/// Parses a finite number; the message says what was found.
pub(crate) fn number(s: &str) -> std::result::Result<f64, String> {
    let t = s.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(v) => Err(format!("expected a finite number, found {} ({v})", show(t))),
        Err(_) if t.is_empty() => Err("missing value (empty field)".to_string()),
        Err(_) => Err(format!("expected a number, found {}", show(t))),
    }
}

/// Collects the records of one reader and turns a malformed line into an error, or, with
/// `skip_bad_lines`, into an entry of the report.
pub(crate) struct Collector<T> {
    records: Vec<T>,
    report: ReadReport,
    skip_bad_lines: bool,
}

impl<T> Collector<T> {
    pub(crate) fn new(source: &str, skip_bad_lines: bool) -> Collector<T> {
        Collector {
            records: Vec::new(),
            report: ReadReport::new(source),
            skip_bad_lines,
        }
    }
    /// An error at `line` of the source.
    pub(crate) fn error(&self, line: usize, message: &str) -> Error {
        Error::Input(format!("{}:{line}: {message}", self.report.source))
    }
    /// A malformed record at `line`: an error, or skipped and counted.
    pub(crate) fn bad(&mut self, line: usize, message: String) -> Result<()> {
        if !self.skip_bad_lines {
            return Err(self.error(line, &message));
        }
        self.report.skipped += 1;
        if self.report.first_skipped.len() < REPORTED_SKIPS {
            self.report.first_skipped.push(Skipped { line, message });
        }
        Ok(())
    }
    /// Keeps a good record, or reports a malformed one.
    pub(crate) fn take(&mut self, line: usize, r: std::result::Result<T, String>) -> Result<()> {
        match r {
            Ok(v) => {
                self.records.push(v);
                Ok(())
            }
            Err(m) => self.bad(line, m),
        }
    }
    pub(crate) fn push(&mut self, v: T) {
        self.records.push(v);
    }
    pub(crate) fn drop_one(&mut self) {
        self.report.dropped += 1;
    }
    pub(crate) fn set_lines(&mut self, n: usize) {
        self.report.lines = n;
    }
    /// The records, or an error if there are none.
    pub(crate) fn finish(mut self, what: &str) -> Result<Records<T>> {
        self.report.records = self.records.len();
        if self.records.is_empty() {
            let r = &self.report;
            let mut m = format!(
                "{}: no {what} found ({} lines read, {} skipped, {} dropped)",
                r.source, r.lines, r.skipped, r.dropped
            );
            if let Some(s) = r.first_skipped.first() {
                m.push_str(&format!(
                    "; the first skipped line is {}: {}",
                    s.line, s.message
                ));
            }
            return Err(Error::Input(m));
        }
        Ok(Records {
            records: self.records,
            report: self.report,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_on_lf_and_crlf() {
        let v: Vec<_> = lines(b"a\r\nb\n\nc").collect();
        assert_eq!(
            v,
            vec![
                (1, &b"a"[..]),
                (2, &b"b"[..]),
                (3, &b""[..]),
                (4, &b"c"[..])
            ]
        );
        assert_eq!(lines(b"").count(), 0);
        assert_eq!(lines(b"\n").collect::<Vec<_>>(), vec![(1, &b""[..])]);
        assert_eq!(
            lines(b"\xEF\xBB\xBFx\n").collect::<Vec<_>>(),
            vec![(1, &b"x"[..])]
        );
    }

    #[test]
    fn numbers_must_be_finite() {
        assert_eq!(number(" 2.5 "), Ok(2.5));
        assert!(number("nan").unwrap_err().contains("finite"));
        assert!(number("1e999").unwrap_err().contains("finite"));
        assert!(number("").unwrap_err().contains("missing"));
        assert!(number("x1").unwrap_err().contains("\"x1\""));
    }
}
