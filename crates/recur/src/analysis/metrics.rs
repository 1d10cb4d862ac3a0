//! Evaluation metrics: accuracy, a confusion matrix with per-class precision, recall and F1
//! (and their macro average), token accuracy split by known and unknown words, and the errors
//! of a forecast (MAE, RMSE) next to the naive "repeat the last value" baseline.
//!
//! ```
//! use recur::analysis::metrics::Confusion;
//! // gold, predicted
//! let pairs = [(0, 0), (0, 1), (1, 1), (1, 1), (2, 1)];
//! let mut m = Confusion::new(3);
//! for (g, p) in pairs {
//!     m.add(g, p).unwrap();
//! }
//! assert_eq!(m.accuracy(), 3.0 / 5.0);
//! assert_eq!(m.recall(1), 1.0);
//! assert_eq!(m.precision(1), 2.0 / 4.0);
//! // Class 2 is never predicted: precision 0 (sklearn's zero_division=0), so F1 is 0.
//! assert_eq!(m.f1(2), 0.0);
//! ```

use crate::error::{Error, Result};

/// The fraction of positions where `pred` equals `gold`; an error if the lengths differ or
/// there are none.
pub fn accuracy(pred: &[usize], gold: &[usize]) -> Result<f64> {
    if pred.len() != gold.len() {
        return Err(Error::Input(format!(
            "accuracy: {} predictions for {} gold labels",
            pred.len(),
            gold.len()
        )));
    }
    if gold.is_empty() {
        return Err(Error::Input("accuracy: no examples".into()));
    }
    let ok = pred.iter().zip(gold).filter(|(p, g)| p == g).count();
    Ok(ok as f64 / gold.len() as f64)
}

/// `a / b`, 0 when `b` is 0 (sklearn's `zero_division=0`).
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Precision, recall and F1 of one class, with its support (gold count).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClassScores {
    /// Correct predictions of the class / predictions of the class (0 if never predicted).
    pub precision: f64,
    /// Correct predictions of the class / gold examples of the class (0 if none).
    pub recall: f64,
    /// Harmonic mean of precision and recall (0 if both are 0).
    pub f1: f64,
    /// Gold examples of the class.
    pub support: u64,
}

/// A confusion matrix over `n` classes: `count(gold, pred)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confusion {
    n: usize,
    /// (n, n): row = gold class, column = predicted class.
    counts: Vec<u64>,
}

impl Confusion {
    /// An empty matrix over `n` classes.
    pub fn new(n: usize) -> Confusion {
        Confusion {
            n,
            counts: vec![0; n * n],
        }
    }

    /// The matrix of paired predictions and gold labels; an error if the lengths differ or a
    /// class is out of range.
    pub fn from_pairs(n: usize, pred: &[usize], gold: &[usize]) -> Result<Confusion> {
        if pred.len() != gold.len() {
            return Err(Error::Input(format!(
                "confusion matrix: {} predictions for {} gold labels",
                pred.len(),
                gold.len()
            )));
        }
        let mut m = Confusion::new(n);
        for (&p, &g) in pred.iter().zip(gold) {
            m.add(g, p)?;
        }
        Ok(m)
    }

    /// Counts one example of class `gold` predicted as `pred`.
    pub fn add(&mut self, gold: usize, pred: usize) -> Result<()> {
        if gold >= self.n || pred >= self.n {
            return Err(Error::Input(format!(
                "confusion matrix: class {} is out of range for {} classes",
                gold.max(pred),
                self.n
            )));
        }
        self.counts[gold * self.n + pred] += 1;
        Ok(())
    }

    /// Adds the counts of `other` (same number of classes).
    pub fn merge(&mut self, other: &Confusion) -> Result<()> {
        if other.n != self.n {
            return Err(Error::Input(format!(
                "confusion matrix: cannot add {} classes to {}",
                other.n, self.n
            )));
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        Ok(())
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.n
    }
    /// How many examples of class `gold` were predicted as `pred`.
    pub fn count(&self, gold: usize, pred: usize) -> u64 {
        self.counts[gold * self.n + pred]
    }
    /// The number of examples.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }
    /// Correct predictions (the diagonal).
    pub fn correct(&self) -> u64 {
        (0..self.n).map(|k| self.count(k, k)).sum()
    }
    /// The fraction of correct predictions (0 without examples).
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct(), self.total())
    }
    /// Gold examples of class `k` (its row sum).
    pub fn support(&self, k: usize) -> u64 {
        (0..self.n).map(|p| self.count(k, p)).sum()
    }
    /// Predictions of class `k` (its column sum).
    pub fn predicted(&self, k: usize) -> u64 {
        (0..self.n).map(|g| self.count(g, k)).sum()
    }
    /// Precision of class `k`: 0 if it is never predicted.
    pub fn precision(&self, k: usize) -> f64 {
        ratio(self.count(k, k), self.predicted(k))
    }
    /// Recall of class `k`: 0 if it has no gold examples.
    pub fn recall(&self, k: usize) -> f64 {
        ratio(self.count(k, k), self.support(k))
    }
    /// F1 of class `k`: `2·p·r / (p + r)`, 0 when `p + r` is 0.
    pub fn f1(&self, k: usize) -> f64 {
        let (p, r) = (self.precision(k), self.recall(k));
        if p + r == 0.0 {
            0.0
        } else {
            2.0 * p * r / (p + r)
        }
    }
    /// Precision, recall, F1 and support of class `k`.
    pub fn scores(&self, k: usize) -> ClassScores {
        ClassScores {
            precision: self.precision(k),
            recall: self.recall(k),
            f1: self.f1(k),
            support: self.support(k),
        }
    }
    /// The unweighted mean of the F1 of every class (sklearn's `f1_score(average='macro')`,
    /// with `labels` = every class; classes without gold examples or predictions count as 0).
    pub fn macro_f1(&self) -> f64 {
        if self.n == 0 {
            return 0.0;
        }
        (0..self.n).map(|k| self.f1(k)).sum::<f64>() / self.n as f64
    }
    /// The mean of the F1 of every class weighted by its support
    /// (`f1_score(average='weighted')`).
    pub fn weighted_f1(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            return 0.0;
        }
        (0..self.n)
            .map(|k| self.f1(k) * self.support(k) as f64)
            .sum::<f64>()
            / total as f64
    }

    /// The matrix as text: one row per gold class, one column per predicted class, with the
    /// class names (or ids when `names` is too short) truncated to 12 characters.
    pub fn pretty(&self, names: &[String]) -> String {
        let name = |k: usize| -> String {
            let s = names.get(k).cloned().unwrap_or_else(|| k.to_string());
            s.chars().take(12).collect()
        };
        let label_w = (0..self.n)
            .map(|k| name(k).chars().count())
            .chain(["gold \\ pred".len()])
            .max()
            .unwrap_or(0);
        let max_count = self.counts.iter().max().copied().unwrap_or(0);
        let col_w = (0..self.n)
            .map(|k| name(k).chars().count())
            .chain([max_count.to_string().len()])
            .max()
            .unwrap_or(1);
        let mut s = format!("{:<label_w$}", "gold \\ pred");
        for k in 0..self.n {
            s += &format!(" {:>col_w$}", name(k));
        }
        s.push('\n');
        for g in 0..self.n {
            s += &format!("{:<label_w$}", name(g));
            for p in 0..self.n {
                s += &format!(" {:>col_w$}", self.count(g, p));
            }
            s.push('\n');
        }
        s
    }

    /// A per-class report like sklearn's `classification_report`: precision, recall, F1 and
    /// support of every class, then accuracy, the macro and the weighted averages.
    pub fn report(&self, names: &[String]) -> String {
        let name = |k: usize| names.get(k).cloned().unwrap_or_else(|| k.to_string());
        let w = (0..self.n)
            .map(|k| name(k).chars().count())
            .chain(["weighted avg".len()])
            .max()
            .unwrap_or(0);
        let mut s = format!(
            "{:>w$} {:>9} {:>9} {:>9} {:>9}\n",
            "", "precision", "recall", "f1-score", "support"
        );
        for k in 0..self.n {
            let c = self.scores(k);
            s += &format!(
                "{:>w$} {:>9.4} {:>9.4} {:>9.4} {:>9}\n",
                name(k),
                c.precision,
                c.recall,
                c.f1,
                c.support
            );
        }
        let total = self.total();
        let (mp, mr) = if self.n == 0 {
            (0.0, 0.0)
        } else {
            (
                (0..self.n).map(|k| self.precision(k)).sum::<f64>() / self.n as f64,
                (0..self.n).map(|k| self.recall(k)).sum::<f64>() / self.n as f64,
            )
        };
        let weighted = |f: &dyn Fn(usize) -> f64| {
            if total == 0 {
                0.0
            } else {
                (0..self.n)
                    .map(|k| f(k) * self.support(k) as f64)
                    .sum::<f64>()
                    / total as f64
            }
        };
        s += &format!(
            "\n{:>w$} {:>9} {:>9} {:>9.4} {:>9}\n",
            "accuracy",
            "",
            "",
            self.accuracy(),
            total
        );
        s += &format!(
            "{:>w$} {:>9.4} {:>9.4} {:>9.4} {:>9}\n",
            "macro avg",
            mp,
            mr,
            self.macro_f1(),
            total
        );
        s += &format!(
            "{:>w$} {:>9.4} {:>9.4} {:>9.4} {:>9}\n",
            "weighted avg",
            weighted(&|k| self.precision(k)),
            weighted(&|k| self.recall(k)),
            self.weighted_f1(),
            total
        );
        s
    }
}

/// Token-level accuracy of a tagger, split into the tokens seen in training (known) and the
/// others (unknown words).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TokenAccuracy {
    /// Tokens counted.
    pub total: u64,
    /// Tokens tagged correctly.
    pub correct: u64,
    /// Unknown tokens counted.
    pub unknown_total: u64,
    /// Unknown tokens tagged correctly.
    pub unknown_correct: u64,
}

impl TokenAccuracy {
    /// Counts one token: its predicted and gold tag, and whether it is unknown.
    pub fn add(&mut self, pred: usize, gold: usize, unknown: bool) {
        let ok = (pred == gold) as u64;
        self.total += 1;
        self.correct += ok;
        if unknown {
            self.unknown_total += 1;
            self.unknown_correct += ok;
        }
    }
    /// Counts a sentence: predicted tags, gold tags and which tokens are unknown (all three
    /// of the same length).
    pub fn add_sequence(&mut self, pred: &[usize], gold: &[usize], unknown: &[bool]) -> Result<()> {
        if pred.len() != gold.len() || unknown.len() != gold.len() {
            return Err(Error::Input(format!(
                "token accuracy: {} predictions, {} gold tags and {} unknown flags",
                pred.len(),
                gold.len(),
                unknown.len()
            )));
        }
        for ((&p, &g), &u) in pred.iter().zip(gold).zip(unknown) {
            self.add(p, g, u);
        }
        Ok(())
    }
    /// The fraction of tokens tagged correctly (0 without tokens).
    pub fn accuracy(&self) -> f64 {
        ratio(self.correct, self.total)
    }
    /// The fraction of unknown tokens tagged correctly; `None` without unknown tokens.
    pub fn unknown_accuracy(&self) -> Option<f64> {
        (self.unknown_total > 0).then(|| ratio(self.unknown_correct, self.unknown_total))
    }
    /// The fraction of known tokens tagged correctly; `None` without known tokens.
    pub fn known_accuracy(&self) -> Option<f64> {
        let n = self.total - self.unknown_total;
        (n > 0).then(|| ratio(self.correct - self.unknown_correct, n))
    }
    /// The fraction of tokens that are unknown (0 without tokens).
    pub fn unknown_rate(&self) -> f64 {
        ratio(self.unknown_total, self.total)
    }
}

/// Mean absolute error and root mean squared error of predictions against targets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Errors {
    /// Mean of `|pred - target|`.
    pub mae: f64,
    /// Square root of the mean of `(pred - target)²`.
    pub rmse: f64,
    /// Values compared.
    pub count: usize,
}

/// The MAE and RMSE of `pred` against `target`; an error if the lengths differ, there are no
/// values or one is not finite.
pub fn errors(pred: &[f64], target: &[f64]) -> Result<Errors> {
    if pred.len() != target.len() {
        return Err(Error::Input(format!(
            "errors: {} predictions for {} targets",
            pred.len(),
            target.len()
        )));
    }
    if target.is_empty() {
        return Err(Error::Input("errors: no values".into()));
    }
    if let Some(k) = pred
        .iter()
        .zip(target)
        .position(|(p, t)| !(p.is_finite() && t.is_finite()))
    {
        return Err(Error::Input(format!(
            "errors: value {k} is not finite (prediction {}, target {})",
            pred[k], target[k]
        )));
    }
    let n = target.len() as f64;
    let (mut abs, mut sq) = (0.0f64, 0.0f64);
    for (p, t) in pred.iter().zip(target) {
        let e = p - t;
        abs += e.abs();
        sq += e * e;
    }
    Ok(Errors {
        mae: abs / n,
        rmse: (sq / n).sqrt(),
        count: target.len(),
    })
}

/// The mean absolute error of `pred` against `target`.
pub fn mae(pred: &[f64], target: &[f64]) -> Result<f64> {
    errors(pred, target).map(|e| e.mae)
}

/// The root mean squared error of `pred` against `target`.
pub fn rmse(pred: &[f64], target: &[f64]) -> Result<f64> {
    errors(pred, target).map(|e| e.rmse)
}

/// The naive forecast: every one of the `horizon` predicted values repeats the last value of
/// its window. `inputs` holds windows of `window` values, (N, window); returns (N, horizon).
pub fn repeat_last(inputs: &[f64], window: usize, horizon: usize) -> Result<Vec<f64>> {
    if window == 0 || !inputs.len().is_multiple_of(window) {
        return Err(Error::Input(format!(
            "naive forecast: {} values is not a whole number of windows of {window}",
            inputs.len()
        )));
    }
    Ok(inputs
        .chunks_exact(window)
        .flat_map(|w| std::iter::repeat_n(w[window - 1], horizon))
        .collect())
}

/// A forecast's errors next to those of the naive forecast on the same windows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ForecastReport {
    /// The model's errors.
    pub model: Errors,
    /// The errors of [`repeat_last`].
    pub naive: Errors,
}

impl ForecastReport {
    /// Compares `pred`, (N, horizon), with the naive forecast of `inputs`, (N, window),
    /// against `target`, (N, horizon).
    pub fn new(
        inputs: &[f64],
        window: usize,
        pred: &[f64],
        target: &[f64],
        horizon: usize,
    ) -> Result<ForecastReport> {
        let naive = repeat_last(inputs, window, horizon)?;
        Ok(ForecastReport {
            model: errors(pred, target)?,
            naive: errors(&naive, target)?,
        })
    }
    /// `1 - RMSE_model / RMSE_naive`: above 0 when the model beats the naive forecast.
    pub fn skill(&self) -> f64 {
        if self.naive.rmse == 0.0 {
            if self.model.rmse == 0.0 {
                0.0
            } else {
                f64::NEG_INFINITY
            }
        } else {
            1.0 - self.model.rmse / self.naive.rmse
        }
    }
}
