//! The CMU Pronouncing Dictionary: words and their ARPAbet pronunciations (grapheme to
//! phoneme pairs).
//!
//! Each line is `word PH1 PH2 ...`, separated by spaces; alternative pronunciations are
//! written `word(2)`, `word(3)`, ...; a `#` starts a comment that runs to the end of the line;
//! lines starting with `;;;` are comments; blank lines are skipped. A phone is upper-case
//! letters with an optional stress digit 0, 1 or 2 (`AH0`, `NG`).
//!
//! ```
//! use recur::data::cmudict::parse;
//! let file = ";;; comment\nread R IY1 D\nread(2) R EH1 D # past tense\n";
//! let d = parse(file.as_bytes(), "cmudict.dict", &Default::default()).unwrap();
//! assert_eq!(d.records[1].word, "read");
//! assert_eq!(d.records[1].variant, 2);
//! assert_eq!(d.records[1].phones, ["R", "EH1", "D"]);
//! ```

use super::{lines, read_file, show, utf8, Collector, Records};
use crate::error::Result;
use std::path::Path;

/// How to read a pronouncing dictionary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CmudictOptions {
    /// Skip malformed lines (counted in the report) instead of failing on the first.
    pub skip_bad_lines: bool,
}

/// One pronunciation of a word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pronunciation {
    /// The word, without the `(n)` of alternatives.
    pub word: String,
    /// 1 for the first pronunciation, n for `word(n)`.
    pub variant: u32,
    /// The phones, e.g. `["R", "EH1", "D"]`.
    pub phones: Vec<String>,
    /// The line (1-based) it comes from.
    pub line: usize,
}

/// Reads the dictionary at `path` (see [`parse`]).
pub fn read(path: impl AsRef<Path>, opts: &CmudictOptions) -> Result<Records<Pronunciation>> {
    let path = path.as_ref();
    parse(&read_file(path)?, &path.display().to_string(), opts)
}

fn is_phone(p: &str) -> bool {
    let b = p.as_bytes();
    let letters = match b.last() {
        Some(b'0'..=b'2') => &b[..b.len() - 1],
        _ => b,
    };
    !letters.is_empty() && letters.iter().all(|c| c.is_ascii_uppercase())
}

fn entry(text: &str, no: usize) -> std::result::Result<Pronunciation, String> {
    let mut words = text.split_whitespace();
    let head = words.next().unwrap_or("");
    let (word, variant) = match head.strip_suffix(')').and_then(|h| h.rsplit_once('(')) {
        Some((w, v)) if !w.is_empty() => match v.parse::<u32>() {
            Ok(n) if n >= 2 => (w, n),
            _ => {
                return Err(format!(
                    "alternative pronunciation {}: expected word(n) with n >= 2",
                    show(head)
                ))
            }
        },
        _ => (head, 1),
    };
    let mut phones = Vec::new();
    for p in words {
        if !is_phone(p) {
            return Err(format!(
                "{}: expected phones like AH0 or NG (upper-case letters and an optional stress \
                 digit 0-2), found {}",
                show(word),
                show(p)
            ));
        }
        phones.push(p.to_string());
    }
    if phones.is_empty() {
        return Err(format!("{} has no phones", show(head)));
    }
    Ok(Pronunciation {
        word: word.to_string(),
        variant,
        phones,
        line: no,
    })
}

/// Reads a pronouncing dictionary from its bytes; `source` names it in messages.
pub fn parse(bytes: &[u8], source: &str, opts: &CmudictOptions) -> Result<Records<Pronunciation>> {
    let mut c = Collector::new(source, opts.skip_bad_lines);
    let mut n = 0;
    for (no, line) in lines(bytes) {
        n = no;
        let r = utf8(line).and_then(|text| {
            let text = text.split('#').next().unwrap_or("").trim();
            if text.is_empty() || text.starts_with(";;;") {
                Ok(None)
            } else {
                entry(text, no).map(Some)
            }
        });
        match r {
            Ok(Some(p)) => c.push(p),
            Ok(None) => {}
            Err(m) => c.bad(no, m)?,
        }
    }
    c.set_lines(n);
    c.finish("pronunciations")
}
