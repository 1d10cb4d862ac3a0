//! Tab-separated text: labelled texts for classification ([`parse_labelled`]) and
//! source/target pairs for sequence-to-sequence models ([`parse_pairs`]).
//!
//! Fields are separated by single tabs, with no quoting: a field cannot hold a tab or a line
//! break. Every line must have exactly the expected number of fields: the header's count when
//! there is a header line, else `fields` if given, else one more than the largest column
//! index used. Blank lines (nothing or only whitespace) are skipped. Labels, sources and
//! targets are trimmed of surrounding whitespace and must not be empty; texts are trimmed and
//! must not be empty either.
//!
//! ```
//! use recur::data::tsv::{parse_pairs, PairTsv};
//! // ref<TAB>en_kjv<TAB>en_web, with a header: pairs of the last two columns, chosen by name.
//! let file = "ref\ten_kjv\ten_web\nGen 1:3\tLet there be light\tLet there be light.\n";
//! let opts = PairTsv {
//!     source: "en_kjv".into(),
//!     target: "en_web".into(),
//!     header: true,
//!     ..PairTsv::default()
//! };
//! let pairs = parse_pairs(file.as_bytes(), "bible.tsv", &opts).unwrap();
//! assert_eq!(pairs.records[0].target, "Let there be light.");
//! assert_eq!(pairs.records[0].line, 2);
//! ```

use super::{lines, number, read_file, utf8, Collector, Column, LabelledText, Records, TextPair};
use crate::error::{Error, Result};
use std::path::Path;

/// Turns a numeric score into a class label: `positive` above `threshold`, `negative` below
/// `-threshold`, otherwise `neutral`, or the record is dropped (counted in
/// [`ReadReport::dropped`](super::ReadReport::dropped)) if `neutral` is `None`.
#[derive(Clone, Debug, PartialEq)]
pub struct ScoreLabels {
    /// Scores with `|score| <= threshold` are neutral (0 by default: only exact zeros).
    pub threshold: f64,
    /// The label of scores above `threshold`.
    pub positive: String,
    /// The label of scores below `-threshold`.
    pub negative: String,
    /// The label of the scores in between; `None` drops those records.
    pub neutral: Option<String>,
}

impl ScoreLabels {
    /// The sign of the score: `positive` if > 0, `negative` if < 0, zeros dropped.
    pub fn sign(positive: &str, negative: &str) -> ScoreLabels {
        ScoreLabels {
            threshold: 0.0,
            positive: positive.to_string(),
            negative: negative.to_string(),
            neutral: None,
        }
    }

    /// The label of `score`, `None` if it is dropped.
    pub fn label(&self, score: f64) -> Option<&str> {
        if score > self.threshold {
            Some(&self.positive)
        } else if score < -self.threshold {
            Some(&self.negative)
        } else {
            self.neutral.as_deref()
        }
    }

    fn check(&self, source: &str) -> Result<()> {
        if !(self.threshold.is_finite() && self.threshold >= 0.0) {
            return Err(Error::Config(format!(
                "{source}: the score threshold must be a finite number >= 0, got {}",
                self.threshold
            )));
        }
        Ok(())
    }
}

/// How to read labelled texts from a tab-separated file.
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledTsv {
    /// The column of the label (or of the score, with `score`). Default: 0.
    pub label: Column,
    /// The column of the text. Default: 1.
    pub text: Column,
    /// Whether the first line is a header (column names) rather than data. Default: false.
    pub header: bool,
    /// The number of fields of every line, when there is no header; `None`: one more than the
    /// largest column index used.
    pub fields: Option<usize>,
    /// Turn a numeric score in the label column into a label. Default: `None` (the label
    /// column is the label).
    pub score: Option<ScoreLabels>,
    /// Skip malformed lines (counted in the report) instead of failing on the first.
    pub skip_bad_lines: bool,
}

impl Default for LabelledTsv {
    fn default() -> LabelledTsv {
        LabelledTsv {
            label: Column::Index(0),
            text: Column::Index(1),
            header: false,
            fields: None,
            score: None,
            skip_bad_lines: false,
        }
    }
}

/// How to read source/target pairs from a tab-separated file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PairTsv {
    /// The column of the source sequence. Default: 0.
    pub source: Column,
    /// The column of the target sequence. Default: 1.
    pub target: Column,
    /// Whether the first line is a header (column names) rather than data. Default: false.
    pub header: bool,
    /// The number of fields of every line, when there is no header; `None`: one more than the
    /// largest column index used.
    pub fields: Option<usize>,
    /// Skip malformed lines (counted in the report) instead of failing on the first.
    pub skip_bad_lines: bool,
}

impl Default for PairTsv {
    fn default() -> PairTsv {
        PairTsv {
            source: Column::Index(0),
            target: Column::Index(1),
            header: false,
            fields: None,
            skip_bad_lines: false,
        }
    }
}

/// The layout of a file: the fields every line has, the two chosen columns and their names.
struct Layout {
    fields: usize,
    cols: [usize; 2],
    names: [String; 2],
}

/// Reads the header (if any) and works out the layout. Returns the layout and the number of
/// the first data line's predecessor (1 with a header, 0 without).
fn layout(
    bytes: &[u8],
    source: &str,
    header: bool,
    fields: Option<usize>,
    cols: [&Column; 2],
) -> Result<(Layout, usize)> {
    if header {
        let Some((_, first)) = lines(bytes).next() else {
            return Err(Error::Input(format!(
                "{source}: empty file: expected a header line"
            )));
        };
        let first = utf8(first).map_err(|m| Error::Input(format!("{source}:1: {m}")))?;
        let names: Vec<String> = first.split('\t').map(|s| s.trim().to_string()).collect();
        if let Some(n) = fields.filter(|&n| n != names.len()) {
            return Err(Error::Input(format!(
                "{source}:1: expected a header of {n} tab-separated fields, found {}",
                names.len()
            )));
        }
        let a = cols[0].resolve(Some(&names), source)?;
        let b = cols[1].resolve(Some(&names), source)?;
        let l = Layout {
            fields: names.len(),
            cols: [a, b],
            names: [names[a].clone(), names[b].clone()],
        };
        Ok((l, 1))
    } else {
        let a = cols[0].resolve(None, source)?;
        let b = cols[1].resolve(None, source)?;
        let need = a.max(b) + 1;
        let n = fields.unwrap_or(need);
        if n < need {
            return Err(Error::Config(format!(
                "{source}: lines have {n} fields, but column {} is chosen",
                a.max(b)
            )));
        }
        let l = Layout {
            fields: n,
            cols: [a, b],
            names: [format!("field {}", a + 1), format!("field {}", b + 1)],
        };
        Ok((l, 0))
    }
}

/// Splits a data line into its two chosen fields (trimmed, non-empty).
fn split<'a>(line: &'a [u8], l: &Layout) -> std::result::Result<[&'a str; 2], String> {
    let text = utf8(line)?;
    let found = text.split('\t').count();
    if found != l.fields {
        return Err(format!(
            "expected {} tab-separated fields, found {found}",
            l.fields
        ));
    }
    let mut out = [""; 2];
    for (k, slot) in out.iter_mut().enumerate() {
        let s = text.split('\t').nth(l.cols[k]).unwrap_or("").trim();
        if s.is_empty() {
            return Err(format!("{} is empty", l.names[k]));
        }
        *slot = s;
    }
    Ok(out)
}

/// Reads labelled texts from the file at `path` (see [`parse_labelled`]).
pub fn read_labelled(path: impl AsRef<Path>, opts: &LabelledTsv) -> Result<Records<LabelledText>> {
    let path = path.as_ref();
    parse_labelled(&read_file(path)?, &path.display().to_string(), opts)
}

/// Reads labelled texts from the bytes of a tab-separated file; `source` names it in
/// messages. Each data line gives one [`LabelledText`] (label, text, line number), unless its
/// score is dropped by [`ScoreLabels`].
pub fn parse_labelled(
    bytes: &[u8],
    source: &str,
    opts: &LabelledTsv,
) -> Result<Records<LabelledText>> {
    if let Some(s) = &opts.score {
        s.check(source)?;
    }
    let (l, skip) = layout(
        bytes,
        source,
        opts.header,
        opts.fields,
        [&opts.label, &opts.text],
    )?;
    let mut c = Collector::new(source, opts.skip_bad_lines);
    let mut n = 0;
    for (no, line) in lines(bytes) {
        n = no;
        if no <= skip || line.trim_ascii().is_empty() {
            continue;
        }
        let [label, text] = match split(line, &l) {
            Ok(f) => f,
            Err(m) => {
                c.bad(no, m)?;
                continue;
            }
        };
        let label = match &opts.score {
            None => label,
            Some(s) => match number(label) {
                Err(m) => {
                    c.bad(no, format!("{} (score): {m}", l.names[0]))?;
                    continue;
                }
                Ok(v) => match s.label(v) {
                    Some(lab) => lab,
                    None => {
                        c.drop_one();
                        continue;
                    }
                },
            },
        };
        c.push(LabelledText {
            label: label.to_string(),
            text: text.to_string(),
            line: no,
        });
    }
    c.set_lines(n);
    c.finish("labelled texts")
}

/// Reads source/target pairs from the file at `path` (see [`parse_pairs`]).
pub fn read_pairs(path: impl AsRef<Path>, opts: &PairTsv) -> Result<Records<TextPair>> {
    let path = path.as_ref();
    parse_pairs(&read_file(path)?, &path.display().to_string(), opts)
}

/// Reads source/target pairs from the bytes of a tab-separated file; `source` names it in
/// messages.
pub fn parse_pairs(bytes: &[u8], source: &str, opts: &PairTsv) -> Result<Records<TextPair>> {
    let (l, skip) = layout(
        bytes,
        source,
        opts.header,
        opts.fields,
        [&opts.source, &opts.target],
    )?;
    let mut c = Collector::new(source, opts.skip_bad_lines);
    let mut n = 0;
    for (no, line) in lines(bytes) {
        n = no;
        if no <= skip || line.trim_ascii().is_empty() {
            continue;
        }
        let r = split(line, &l).map(|[s, t]| TextPair {
            source: s.to_string(),
            target: t.to_string(),
            line: no,
        });
        c.take(no, r)?;
    }
    c.set_lines(n);
    c.finish("pairs")
}
