//! Splitting text into tokens: English words ([`WordTokenizer`]) or characters
//! ([`chars`]).
//!
//! The word tokenizer follows the Penn Treebank conventions closely enough for training
//! models, without a lexicon:
//! - whitespace separates tokens and is dropped;
//! - a word is a run of letters, digits and combining marks, which may contain a hyphen
//!   between a letter or digit and a word character (`well-known`, `COVID-19`), a `.` or `,`
//!   between digits (`3.14`, `1,000`) and apostrophes between word characters (`'` or `’`);
//! - every other character is a token of its own, except that a run of the same character is
//!   one token (`...`, `!!`, `--`);
//! - with [`Contractions::Split`] (the default) the English clitics `n't`, `'s`, `'m`, `'d`,
//!   `'ll`, `'re` and `'ve` (matched case-insensitively) become tokens of their own:
//!   `don't` → `do` `n't`, `it's` → `it` `'s`, `shouldn't've` → `should` `n't` `'ve`, and, as
//!   in the Penn Treebank, `can't` → `ca` `n't`, `won't` → `wo` `n't`. Other words with
//!   apostrophes stay whole (`o'clock`, `rock'n'roll`); an apostrophe at the start or end of
//!   a word is a token of its own (`'em` → `'` `em`, `dogs'` → `dogs` `'`). With
//!   [`Contractions::Keep`], `don't` stays one token.
//! - `lowercase` lowercases every token (after splitting).
//!
//! URLs, e-mail addresses, emoticons and HTML entities get no special treatment.
//!
//! ```
//! use recur::data::tokenize::WordTokenizer;
//! let t = WordTokenizer::default();
//! assert_eq!(
//!     t.tokenize("I don't like it's price... (3.5 dollars)!"),
//!     ["i", "do", "n't", "like", "it", "'s", "price", "...", "(", "3.5", "dollars", ")", "!"]
//! );
//! ```

/// What to do with English contractions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Contractions {
    /// `don't` → `do` `n't`, `it's` → `it` `'s` (Penn Treebank style).
    #[default]
    Split,
    /// `don't` stays one token.
    Keep,
}

/// A word tokenizer for English text (see the [module documentation](self) for the rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WordTokenizer {
    /// Lowercase every token. Default: true.
    pub lowercase: bool,
    /// Split contractions or keep them whole. Default: split.
    pub contractions: Contractions,
}

impl Default for WordTokenizer {
    fn default() -> WordTokenizer {
        WordTokenizer {
            lowercase: true,
            contractions: Contractions::Split,
        }
    }
}

/// Splits text into tokens: words or characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tokenizer {
    /// Words, by a [`WordTokenizer`].
    Words(WordTokenizer),
    /// Every character (`char`, not grapheme clusters; whitespace included) is a token.
    Chars {
        /// Lowercase the text first.
        lowercase: bool,
    },
}

impl Tokenizer {
    /// The tokens of `text`.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        match self {
            Tokenizer::Words(w) => w.tokenize(text),
            Tokenizer::Chars { lowercase } => chars(text, *lowercase),
        }
    }
}

/// Every character of `text` as a token (Unicode scalar values, not grapheme clusters;
/// whitespace included), lowercased first if asked.
pub fn chars(text: &str, lowercase: bool) -> Vec<String> {
    if lowercase {
        text.to_lowercase().chars().map(String::from).collect()
    } else {
        text.chars().map(String::from).collect()
    }
}

/// Combining marks (diacritics, and the vowel signs of Indic and Southeast Asian scripts),
/// which belong to the word they follow.
fn is_mark(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05C7 | 0x0610..=0x061A | 0x064B..=0x065F
        | 0x0670 | 0x0900..=0x0DFF | 0x0E31..=0x0E3A | 0x0E47..=0x0E4E | 0x1AB0..=0x1AFF
        | 0x1DC0..=0x1DFF | 0x200C | 0x200D | 0x20D0..=0x20FF | 0xFE20..=0xFE2F)
        && !c.is_whitespace()
}

fn is_word(c: char) -> bool {
    c.is_alphanumeric() || is_mark(c)
}

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

const CLITICS: [&str; 6] = ["s", "m", "d", "ll", "re", "ve"];

impl WordTokenizer {
    /// The tokens of `text`.
    pub fn tokenize(&self, text: &str) -> Vec<String> {
        let cs: Vec<char> = text.chars().collect();
        let n = cs.len();
        let mut out = Vec::new();
        let mut i = 0;
        while i < n {
            let c = cs[i];
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            if !is_word(c) {
                let mut j = i + 1;
                while j < n && cs[j] == c {
                    j += 1;
                }
                self.emit(&cs[i..j], &mut out);
                i = j;
                continue;
            }
            let mut j = i + 1;
            loop {
                if j < n && is_word(cs[j]) {
                    j += 1;
                    continue;
                }
                if j + 1 < n && is_word(cs[j + 1]) {
                    let (p, q, x) = (cs[j - 1], cs[j + 1], cs[j]);
                    let joins = (x == '-' && p.is_alphanumeric())
                        || ((x == '.' || x == ',') && p.is_numeric() && q.is_numeric())
                        || is_apostrophe(x);
                    if joins {
                        j += 2;
                        continue;
                    }
                }
                break;
            }
            self.word(&cs[i..j], &mut out);
            i = j;
        }
        out
    }

    fn emit(&self, cs: &[char], out: &mut Vec<String>) {
        let s: String = cs.iter().collect();
        out.push(if self.lowercase { s.to_lowercase() } else { s });
    }

    /// Emits a word, splitting off clitics at its end.
    fn word(&self, cs: &[char], out: &mut Vec<String>) {
        if self.contractions == Contractions::Keep {
            return self.emit(cs, out);
        }
        let mut end = cs.len();
        let mut clitics: Vec<&[char]> = Vec::new();
        while let Some(k) = cs[..end].iter().rposition(|&c| is_apostrophe(c)) {
            let suffix: String = cs[k + 1..end].iter().collect::<String>().to_lowercase();
            if suffix == "t" && k >= 2 && matches!(cs[k - 1], 'n' | 'N') {
                // n't, with a stem before it
                clitics.push(&cs[k - 1..end]);
                end = k - 1;
            } else if CLITICS.contains(&suffix.as_str()) && k >= 1 {
                clitics.push(&cs[k..end]);
                end = k;
            } else {
                break;
            }
        }
        self.emit(&cs[..end], out);
        for c in clitics.into_iter().rev() {
            self.emit(c, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contractions_keep_or_split() {
        let keep = WordTokenizer {
            lowercase: false,
            contractions: Contractions::Keep,
        };
        assert_eq!(keep.tokenize("Don't go"), ["Don't", "go"]);
        let split = WordTokenizer::default();
        assert_eq!(split.tokenize("Don't"), ["do", "n't"]);
        assert_eq!(split.tokenize("n't"), ["n't"]);
    }
}
