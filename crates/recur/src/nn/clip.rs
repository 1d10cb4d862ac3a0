//! Gradient clipping, by global L2 norm and by value.

use crate::error::{Error, Result};
use recur_kernels::Real;

/// The L2 norm of all the gradients together, with squares summed in f64.
fn total_norm<T: Real>(grads: &[&mut [T]]) -> f64 {
    let sq: f64 = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&v| {
            let v = v.to_f64();
            v * v
        })
        .sum();
    sq.sqrt()
}

/// Scales every gradient by `min(1, max_norm / (total + 1e-6))` (NaN if `total` is NaN).
fn scale<T: Real>(grads: &mut [&mut [T]], max_norm: f64, total: f64) {
    // coef = clamp(max_norm / (total + 1e-6), max=1); PyTorch multiplies even when it is 1.
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    let coef = if total.is_nan() { f64::NAN } else { coef };
    let c = T::from_f64(coef);
    for g in grads.iter_mut() {
        for v in g.iter_mut() {
            *v *= c;
        }
    }
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)` (norm_type 2): scales every gradient by
/// `min(1, max_norm / (total_norm + 1e-6))`, where `total_norm` is the L2 norm of all the
/// gradients together, and returns `total_norm` (before clipping).
///
/// - `grads`: any number of flat gradient buffers (e.g. one per module)
///
/// Squares are summed in f64. As in PyTorch (with `error_if_nonfinite=False`), a non-finite
/// norm is returned as is and turns the gradients into NaN; [`clip_grad_norm_checked`] makes
/// it an error instead.
pub fn clip_grad_norm<T: Real>(grads: &mut [&mut [T]], max_norm: f64) -> T {
    let total = total_norm(grads);
    scale(grads, max_norm, total);
    T::from_f64(total)
}

/// [`clip_grad_norm`] over one flat gradient buffer.
pub fn clip_grad_norm_flat<T: Real>(grads: &mut [T], max_norm: f64) -> T {
    clip_grad_norm(&mut [grads], max_norm)
}

/// `torch.nn.utils.clip_grad_norm_(params, max_norm, error_if_nonfinite=True)`: as
/// [`clip_grad_norm`], but when the total norm is NaN or infinite the gradients are left
/// unchanged and the error names the first non-finite gradient (buffer and index).
pub fn clip_grad_norm_checked<T: Real>(grads: &mut [&mut [T]], max_norm: f64) -> Result<T> {
    let total = total_norm(grads);
    if !total.is_finite() {
        let first = grads.iter().enumerate().find_map(|(k, g)| {
            g.iter()
                .position(|v| !v.is_finite())
                .map(|i| format!("buffer {k} holds {} at index {i}", g[i]))
        });
        let why = first.unwrap_or_else(|| {
            "every gradient is finite but the sum of their squares overflows".into()
        });
        return Err(Error::Input(format!(
            "clip_grad_norm: the total L2 norm of the gradients is {total}, so it cannot be clipped ({why})"
        )));
    }
    scale(grads, max_norm, total);
    Ok(T::from_f64(total))
}

/// `torch.nn.utils.clip_grad_value_(params, clip_value)`: clamps every gradient into
/// `[-clip_value, clip_value]` in place (NaN stays NaN). An error if `clip_value` is negative
/// or NaN.
pub fn clip_grad_value<T: Real>(grads: &mut [&mut [T]], clip_value: f64) -> Result<()> {
    if clip_value.is_nan() || clip_value < 0.0 {
        return Err(Error::Input(format!(
            "clip_grad_value: clip_value must be >= 0, got {clip_value}"
        )));
    }
    let (lo, hi) = (T::from_f64(-clip_value), T::from_f64(clip_value));
    for g in grads.iter_mut() {
        for v in g.iter_mut() {
            // clamp_(min=-clip_value, max=clip_value)
            if *v < lo {
                *v = lo;
            } else if *v > hi {
                *v = hi;
            }
        }
    }
    Ok(())
}
