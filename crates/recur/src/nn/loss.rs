//! Softmax and cross-entropy.

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
