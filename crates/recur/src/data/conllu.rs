//! CoNLL-U treebanks (Universal Dependencies): sentences of words with their part-of-speech
//! tags.
//!
//! Every word line has 10 tab-separated fields `ID FORM LEMMA UPOS XPOS FEATS HEAD DEPREL DEPS
//! MISC`; sentences end at a blank line (or at the end of the file). Comment lines (`#`) are
//! skipped, except that `# sent_id = ...` names the sentence. Multiword-token lines (IDs like
//! `3-4`) and empty nodes (IDs like `8.1`) are checked for their column count and skipped, so
//! a sentence holds its syntactic words, whose IDs must run 1, 2, 3, ... FORM and UPOS must
//! not be empty.
//!
//! With `skip_bad_lines`, a malformed line drops its whole sentence (the report names the
//! line).
//!
//! ```
//! use recur::data::conllu::parse;
//! let file = "# sent_id = s1\n\
//!             1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_\n\
//!             1\tdo\tdo\tAUX\tVBP\t_\t0\troot\t_\t_\n\
//!             2\tn't\tnot\tPART\tRB\t_\t1\tadvmod\t_\t_\n\n";
//! let s = &parse(file.as_bytes(), "x.conllu", &Default::default()).unwrap().records[0];
//! assert_eq!(s.id.as_deref(), Some("s1"));
//! assert_eq!(s.forms(), ["do", "n't"]);
//! assert_eq!(s.upos(), ["AUX", "PART"]);
//! ```

use super::{lines, read_file, show, utf8, Collector, Records};
use crate::error::Result;
use std::path::Path;

/// How to read a CoNLL-U file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConlluOptions {
    /// Skip sentences with a malformed line (counted in the report) instead of failing.
    pub skip_bad_lines: bool,
}

/// One syntactic word.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// FORM: the word as written.
    pub form: String,
    /// UPOS: the universal part-of-speech tag.
    pub upos: String,
    /// XPOS: the language-specific tag (`_` if none).
    pub xpos: String,
    /// DEPREL: the dependency relation to the head (`_` if none).
    pub deprel: String,
    /// False if MISC holds `SpaceAfter=No`.
    pub space_after: bool,
}

/// One sentence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    /// The `# sent_id = ...` comment, if there is one.
    pub id: Option<String>,
    /// The line (1-based) of its first word.
    pub line: usize,
    /// The words, in order.
    pub tokens: Vec<Token>,
}

impl Sentence {
    /// The FORM of every word.
    pub fn forms(&self) -> Vec<&str> {
        self.tokens.iter().map(|t| t.form.as_str()).collect()
    }
    /// The UPOS tag of every word.
    pub fn upos(&self) -> Vec<&str> {
        self.tokens.iter().map(|t| t.upos.as_str()).collect()
    }
    /// The XPOS tag of every word.
    pub fn xpos(&self) -> Vec<&str> {
        self.tokens.iter().map(|t| t.xpos.as_str()).collect()
    }

    /// The sentence with inflectional groups merged into words: a token whose DEPREL is `ig`
    /// is joined to the next one, and the word takes the tags, DEPREL and spacing of its last
    /// group (treebanks whose tokens are inflectional groups, such as the Turkish treebanks,
    /// split `bitirmenin` into `bit` / `ir` / `menin` this way). A trailing `ig` token at the
    /// end of the sentence stays a word of its own.
    pub fn merge_inflectional_groups(&self) -> Sentence {
        let mut tokens: Vec<Token> = Vec::with_capacity(self.tokens.len());
        let mut pending = String::new();
        for t in &self.tokens {
            if t.deprel == "ig" {
                pending.push_str(&t.form);
                continue;
            }
            let mut w = t.clone();
            if !pending.is_empty() {
                w.form = std::mem::take(&mut pending) + &t.form;
            }
            tokens.push(w);
        }
        if !pending.is_empty() {
            if let Some(last) = self.tokens.last() {
                let mut w = last.clone();
                w.form = pending;
                tokens.push(w);
            }
        }
        Sentence {
            id: self.id.clone(),
            line: self.line,
            tokens,
        }
    }
}

/// Reads the CoNLL-U file at `path` (see [`parse`]).
pub fn read(path: impl AsRef<Path>, opts: &ConlluOptions) -> Result<Records<Sentence>> {
    let path = path.as_ref();
    parse(&read_file(path)?, &path.display().to_string(), opts)
}

/// What a word line is.
enum Line {
    Word(Token),
    /// A multiword token or an empty node: checked, then skipped.
    Skip,
}

fn word(text: &str, expected_id: usize) -> std::result::Result<Line, String> {
    let mut f = [""; 10];
    let mut found = 0;
    for (k, part) in text.split('\t').enumerate() {
        if let Some(slot) = f.get_mut(k) {
            *slot = part;
        }
        found += 1;
    }
    if found != 10 {
        return Err(format!("expected 10 tab-separated fields, found {found}"));
    }
    let id = f[0];
    let is_num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if let Some((a, b)) = id.split_once('-') {
        if is_num(a) && is_num(b) {
            return Ok(Line::Skip);
        }
    } else if let Some((a, b)) = id.split_once('.') {
        if is_num(a) && is_num(b) {
            return Ok(Line::Skip);
        }
    } else if is_num(id) {
        if id.parse::<usize>().ok() != Some(expected_id) {
            return Err(format!(
                "expected word ID {expected_id}, found {}",
                show(id)
            ));
        }
        if f[1].is_empty() {
            return Err("FORM (field 2) is empty".into());
        }
        if f[3].is_empty() {
            return Err("UPOS (field 4) is empty".into());
        }
        return Ok(Line::Word(Token {
            form: f[1].to_string(),
            upos: f[3].to_string(),
            xpos: f[4].to_string(),
            deprel: f[7].to_string(),
            space_after: !f[9].split('|').any(|m| m == "SpaceAfter=No"),
        }));
    }
    Err(format!(
        "ID (field 1) must be an integer, a range like 3-4 or an empty node like 8.1, found {}",
        show(id)
    ))
}

/// Reads a CoNLL-U file from its bytes; `source` names it in messages.
pub fn parse(bytes: &[u8], source: &str, opts: &ConlluOptions) -> Result<Records<Sentence>> {
    let mut c = Collector::new(source, opts.skip_bad_lines);
    let mut cur = Sentence {
        id: None,
        line: 0,
        tokens: Vec::new(),
    };
    // Set when a line of the current sentence was malformed (with skip_bad_lines).
    let mut broken = false;
    let mut n = 0;
    let end = |c: &mut Collector<Sentence>, cur: &mut Sentence, broken: &mut bool| {
        let s = std::mem::replace(
            cur,
            Sentence {
                id: None,
                line: 0,
                tokens: Vec::new(),
            },
        );
        if !*broken && !s.tokens.is_empty() {
            c.push(s);
        }
        *broken = false;
    };
    for (no, line) in lines(bytes) {
        n = no;
        let text = match utf8(line) {
            Ok(t) => t,
            Err(m) => {
                c.bad(no, m)?;
                broken = true;
                continue;
            }
        };
        if text.trim().is_empty() {
            end(&mut c, &mut cur, &mut broken);
            continue;
        }
        if let Some(comment) = text.strip_prefix('#') {
            if let Some(id) = comment.trim().strip_prefix("sent_id") {
                if let Some(id) = id.trim_start().strip_prefix('=') {
                    cur.id = Some(id.trim().to_string());
                }
            }
            continue;
        }
        if broken {
            continue;
        }
        match word(text, cur.tokens.len() + 1) {
            Ok(Line::Word(t)) => {
                if cur.tokens.is_empty() {
                    cur.line = no;
                }
                cur.tokens.push(t);
            }
            Ok(Line::Skip) => {}
            Err(m) => {
                c.bad(no, m)?;
                broken = true;
            }
        }
    }
    end(&mut c, &mut cur, &mut broken);
    c.set_lines(n);
    c.finish("sentences")
}
