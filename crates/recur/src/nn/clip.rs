//! Gradient clipping by global L2 norm.

use recur_kernels::Real;

/// `torch.nn.utils.clip_grad_norm_(params, max_norm)` (norm_type 2): scales every gradient by
/// `min(1, max_norm / (total_norm + 1e-6))`, where `total_norm` is the L2 norm of all the
/// gradients together, and returns `total_norm` (before clipping).
///
/// - `grads`: any number of flat gradient buffers (e.g. one per module)
///
/// Squares are summed in f64. As in PyTorch (with `error_if_nonfinite=False`), a non-finite
/// norm is returned as is and turns the gradients into NaN.
pub fn clip_grad_norm<T: Real>(grads: &mut [&mut [T]], max_norm: f64) -> T {
    let sq: f64 = grads
        .iter()
        .flat_map(|g| g.iter())
        .map(|&v| {
            let v = v.to_f64();
            v * v
        })
        .sum();
    let total = sq.sqrt();
    // coef = clamp(max_norm / (total + 1e-6), max=1); PyTorch multiplies even when it is 1.
    let coef = (max_norm / (total + 1e-6)).min(1.0);
    let coef = if total.is_nan() { f64::NAN } else { coef };
    let c = T::from_f64(coef);
    for g in grads.iter_mut() {
        for v in g.iter_mut() {
            *v *= c;
        }
    }
    T::from_f64(total)
}

/// [`clip_grad_norm`] over one flat gradient buffer.
pub fn clip_grad_norm_flat<T: Real>(grads: &mut [T], max_norm: f64) -> T {
    clip_grad_norm(&mut [grads], max_norm)
}
