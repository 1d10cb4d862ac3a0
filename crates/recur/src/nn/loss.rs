//! Softmax and cross-entropy; regression losses (squared and absolute error).

use crate::error::{Error, Result};
use recur_kernels::Real;

/// PyTorch's default `ignore_index` for `F.cross_entropy`.
pub const DEFAULT_IGNORE_INDEX: i64 = -100;

/// Row-wise softmax, numerically stable (the row maximum is subtracted before `exp`).
///
/// - `logits`: (n, c)
/// - returns the probabilities, (n, c)
///
/// Panics if `logits.len()` is not a multiple of `c` (or `c` is 0 with a non-empty input).
pub fn softmax<T: Real>(logits: &[T], c: usize) -> Vec<T> {
    let mut p = logits.to_vec();
    if c == 0 {
        assert!(
            logits.is_empty(),
            "softmax: c is 0 but logits are not empty"
        );
        return p;
    }
    assert_eq!(logits.len() % c, 0, "softmax: logits must be (n, {c})");
    for row in p.chunks_exact_mut(c) {
        let m = row_max(row);
        let mut sum = T::ZERO;
        for v in row.iter_mut() {
            *v = (*v - m).exp();
            sum += *v;
        }
        for v in row.iter_mut() {
            *v = *v / sum;
        }
    }
    p
}

fn row_max<T: Real>(row: &[T]) -> T {
    row.iter()
        .copied()
        .fold(row[0], |m, v| if v > m { v } else { m })
}

/// Mean cross-entropy of softmax(logits) against class indices, and its gradient: the
/// equivalent of `F.cross_entropy(logits, targets, reduction='mean', ignore_index=ignore_index)`
/// followed by `.backward()`.
///
/// - `logits`: (n, c)
/// - `targets`: (n), class indices in `0..c`, or `ignore_index` for rows that do not count
/// - returns `(loss, dlogits)`: the mean of `-log softmax(logits)[r, targets[r]]` over the rows
///   that are not ignored, and d loss / d logits, (n, c): `(softmax(row) - onehot(target)) / k`
///   for the k counted rows, 0 on ignored rows.
///
/// Every row is shifted by its maximum before `exp`, so large logits do not overflow. As in
/// PyTorch, when every row is ignored the loss is NaN (0/0) and the gradient is zero.
///
/// Errors if a buffer has the wrong size or a target is out of range.
pub fn softmax_cross_entropy<T: Real>(
    logits: &[T],
    c: usize,
    targets: &[i64],
    ignore_index: i64,
) -> Result<(T, Vec<T>)> {
    let n = targets.len();
    if logits.len() != n * c {
        return Err(Error::Input(format!(
            "cross_entropy: logits must be (n, c) = ({n}, {c}) for {n} targets, got {} values",
            logits.len()
        )));
    }
    if c == 0 && n > 0 {
        return Err(Error::Input(
            "cross_entropy: there are no classes (c = 0)".into(),
        ));
    }
    if let Some((r, &t)) = targets
        .iter()
        .enumerate()
        .find(|(_, &t)| t != ignore_index && !(0..c as i64).contains(&t))
    {
        return Err(Error::Input(format!(
            "cross_entropy: targets[{r}] = {t} is out of bounds for {c} classes"
        )));
    }
    let counted = targets.iter().filter(|&&t| t != ignore_index).count();
    // dlogits (n, c): the softmax of each counted row minus the one-hot target, scaled by 1/k
    let mut d = vec![T::ZERO; n * c];
    let mut total = 0.0f64;
    let scale = T::from_f64(1.0 / counted as f64);
    for (r, &t) in targets.iter().enumerate() {
        if t == ignore_index {
            continue;
        }
        let t = t as usize;
        let row = &logits[r * c..(r + 1) * c];
        let drow = &mut d[r * c..(r + 1) * c];
        let m = row_max(row);
        // sum = Σ exp(z - m); log softmax(z)_t = (z_t - m) - log(sum)
        let mut sum = T::ZERO;
        for (dv, &z) in drow.iter_mut().zip(row) {
            *dv = (z - m).exp();
            sum += *dv;
        }
        let log_sum = sum.to_f64().ln();
        total += log_sum - (row[t] - m).to_f64();
        for dv in drow.iter_mut() {
            *dv = *dv / sum * scale;
        }
        drow[t] -= scale;
    }
    let loss = T::from_f64(total / counted as f64);
    Ok((loss, d))
}

/// How a loss reduces the per-position losses that count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// The mean (PyTorch's default, `reduction='mean'`).
    Mean,
    /// The sum (`reduction='sum'`).
    Sum,
}

/// Checks the sizes of a regression loss's buffers and returns how many consecutive values
/// each mask entry covers.
fn check_regression<T>(
    what: &str,
    input: &[T],
    target: &[T],
    mask: Option<&[bool]>,
) -> Result<usize> {
    if input.len() != target.len() {
        return Err(Error::Input(format!(
            "{what}: input has {} values but target has {}; they must have the same shape",
            input.len(),
            target.len()
        )));
    }
    let Some(mask) = mask else { return Ok(1) };
    if mask.is_empty() {
        return if input.is_empty() {
            Ok(1)
        } else {
            Err(Error::Input(format!(
                "{what}: the mask is empty but the input has {} values",
                input.len()
            )))
        };
    }
    if !input.len().is_multiple_of(mask.len()) {
        return Err(Error::Input(format!(
            "{what}: the mask has {} entries, which does not divide the {} input values (the mask's shape must be a leading part of the input's, e.g. (T, B) for (T, B, F))",
            mask.len(),
            input.len()
        )));
    }
    Ok(input.len() / mask.len())
}

/// The per-value losses of [`mse_loss`] and [`l1_loss`].
#[derive(Clone, Copy)]
enum Regression {
    Squared,
    Absolute,
}

/// A masked, reduced regression loss and its gradient with respect to the input.
fn regression<T: Real>(
    kind: Regression,
    input: &[T],
    target: &[T],
    mask: Option<&[bool]>,
    reduction: Reduction,
) -> Result<(T, Vec<T>)> {
    let what = match kind {
        Regression::Squared => "mse_loss",
        Regression::Absolute => "l1_loss",
    };
    let width = check_regression(what, input, target, mask)?;
    let counts = |i: usize| mask.is_none_or(|m| m[i / width]);
    let k = (0..input.len()).filter(|&i| counts(i)).count();
    // The factor of the gradient, as PyTorch computes it: mse_loss_backward's
    // `norm = 2/k` (mean) or 2 (sum); for l1, the mean's backward `1/k` (or 1).
    let norm = match (kind, reduction) {
        (Regression::Squared, Reduction::Mean) => T::from_f64(2.0 / k as f64),
        (Regression::Squared, Reduction::Sum) => T::from_f64(2.0),
        (Regression::Absolute, Reduction::Mean) => T::ONE / T::from_f64(k as f64),
        (Regression::Absolute, Reduction::Sum) => T::ONE,
    };
    let mut d = vec![T::ZERO; input.len()];
    let mut total = 0.0f64;
    for (i, ((&x, &y), dv)) in input.iter().zip(target).zip(d.iter_mut()).enumerate() {
        if !counts(i) {
            continue;
        }
        let diff = x - y;
        let v = diff.to_f64();
        match kind {
            Regression::Squared => {
                total += v * v;
                // norm · (input - target)
                *dv = norm * diff;
            }
            Regression::Absolute => {
                total += v.abs();
                // norm · sgn(input - target), sgn(0) = 0 (and NaN stays NaN)
                *dv = if diff > T::ZERO {
                    norm
                } else if diff < T::ZERO {
                    -norm
                } else {
                    diff * norm
                };
            }
        }
    }
    let value = match reduction {
        Reduction::Mean => total / k as f64,
        Reduction::Sum => total,
    };
    Ok((T::from_f64(value), d))
}

/// Mean squared error and its gradient: `F.mse_loss(input[mask], target[mask],
/// reduction=...)` followed by `.backward()`.
///
/// - `input`, `target`: the same number of values, any shape
/// - `mask`: `None` (every value counts), or one flag per leading position, m entries for n
///   values with m dividing n: entry `i` covers values `i·n/m .. (i+1)·n/m` (a (T, B) mask of
///   padded steps for a (T, B, F) input); only the positions whose flag is true count
/// - returns `(loss, dinput)`: the mean (or sum) of `(x - y)²` over the counted values, and
///   d loss / d input, same shape as `input`: `2·(x - y)/k` for the mean over k counted
///   values (`2·(x - y)` for the sum), 0 at positions that do not count.
///
/// As in PyTorch, the mean over no values is NaN and its gradient zero. Squares are summed in
/// f64. Errors if the sizes do not fit.
pub fn mse_loss<T: Real>(
    input: &[T],
    target: &[T],
    mask: Option<&[bool]>,
    reduction: Reduction,
) -> Result<(T, Vec<T>)> {
    regression(Regression::Squared, input, target, mask, reduction)
}

/// Mean absolute error and its gradient: `F.l1_loss(input[mask], target[mask],
/// reduction=...)` followed by `.backward()`. Arguments as for [`mse_loss`]; the gradient is
/// `sign(x - y)/k` for the mean (`sign(x - y)` for the sum), with sign(0) = 0 as PyTorch's.
pub fn l1_loss<T: Real>(
    input: &[T],
    target: &[T],
    mask: Option<&[bool]>,
    reduction: Reduction,
) -> Result<(T, Vec<T>)> {
    regression(Regression::Absolute, input, target, mask, reduction)
}
