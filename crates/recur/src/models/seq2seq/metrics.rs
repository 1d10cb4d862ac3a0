//! Metrics of predicted sequences against references: exact match (sequence accuracy), token
//! error rate (Levenshtein distance over reference length) and, for tasks where every source
//! is one word (grapheme-to-phoneme), the word error rate.

/// The Levenshtein distance between `a` and `b`: the fewest insertions, deletions and
/// substitutions that turn one into the other.
///
/// ```
/// use recur::models::seq2seq::levenshtein;
/// assert_eq!(levenshtein(b"kitten", b"sitting"), 3);
/// assert_eq!(levenshtein::<u8>(b"", b"abc"), 3);
/// ```
pub fn levenshtein<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    // row[j] = distance between a[..i] and b[..j], one row of the table at a time.
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, x) in a.iter().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, y) in b.iter().enumerate() {
            let sub = diag + usize::from(x != y);
            diag = row[j + 1];
            row[j + 1] = sub.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Counts for [`ErrorCounts::exact_match`], [`ErrorCounts::token_error_rate`] and
/// [`ErrorCounts::word_error_rate`], summed over a set of predictions.
///
/// A source may have several correct outputs (CMUdict lists alternative pronunciations): a
/// prediction is exactly right if it equals any of them, and its token errors are counted
/// against the closest one (the shorter on ties).
///
/// ```
/// use recur::models::seq2seq::ErrorCounts;
/// let mut m = ErrorCounts::default();
/// m.add(&[1, 2, 3], &[vec![1, 2, 3]]);
/// m.add(&[1, 2], &[vec![1, 5, 2, 4], vec![1, 2, 4]]); // 1 edit from the second reference
/// assert_eq!(m.exact_match(), 0.5);
/// assert_eq!(m.token_error_rate(), 1.0 / 6.0);
/// assert_eq!(m.word_error_rate(), 0.5);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Predictions counted.
    pub sequences: usize,
    /// Predictions equal to one of their references.
    pub exact: usize,
    /// Sum of the Levenshtein distances to the closest reference.
    pub edits: usize,
    /// Sum of the lengths of those references.
    pub ref_tokens: usize,
}

impl ErrorCounts {
    /// Counts one prediction against its references (at least one; with none, the prediction
    /// is compared with the empty sequence).
    pub fn add<T: PartialEq, R: AsRef<[T]>>(&mut self, prediction: &[T], references: &[R]) {
        let best = references
            .iter()
            .map(|r| (levenshtein(prediction, r.as_ref()), r.as_ref().len()))
            .min()
            .unwrap_or((prediction.len(), 0));
        self.sequences += 1;
        self.exact += usize::from(best.0 == 0);
        self.edits += best.0;
        self.ref_tokens += best.1;
    }
    /// Adds the counts of another set.
    pub fn merge(&mut self, other: &ErrorCounts) {
        self.sequences += other.sequences;
        self.exact += other.exact;
        self.edits += other.edits;
        self.ref_tokens += other.ref_tokens;
    }
    /// The share of predictions that are exactly right (0 for an empty set).
    pub fn exact_match(&self) -> f64 {
        if self.sequences == 0 {
            0.0
        } else {
            self.exact as f64 / self.sequences as f64
        }
    }
    /// Total edit distance over total reference length (0 when there is nothing to count).
    pub fn token_error_rate(&self) -> f64 {
        if self.ref_tokens == 0 {
            if self.edits == 0 {
                0.0
            } else {
                f64::INFINITY
            }
        } else {
            self.edits as f64 / self.ref_tokens as f64
        }
    }
    /// The share of predictions that are not exactly right: the word error rate of tasks where
    /// every source is one word (1 for an empty set).
    pub fn word_error_rate(&self) -> f64 {
        1.0 - self.exact_match()
    }
}
