//! The tolerances every parity and gradient test uses: one place, so they cannot drift apart.
//!
//! A value `a` matches the reference `r` when `|a - r| <= abs + rel * |r|`.

/// A pair of absolute and relative tolerances.
#[derive(Clone, Copy, Debug)]
pub struct Tol {
    /// Absolute floor.
    pub abs: f64,
    /// Relative part.
    pub rel: f64,
}

impl Tol {
    /// Whether `a` matches the reference `r`.
    pub fn ok(&self, a: f64, r: f64) -> bool {
        (a - r).abs() <= self.abs + self.rel * r.abs()
    }
}

/// recur in f64 against PyTorch in f64: the same equations give the same numbers to rounding.
pub const F64_VS_TORCH: Tol = Tol {
    abs: 1e-12,
    rel: 1e-10,
};
/// recur's f32 forward (outputs and states) against PyTorch in f64.
pub const F32_FORWARD: Tol = Tol {
    abs: 1e-5,
    rel: 1e-5,
};
/// recur's f32 gradients against PyTorch in f64.
pub const F32_GRAD: Tol = Tol {
    abs: 1e-4,
    rel: 1e-4,
};
/// Central finite differences in f64 (step [`FD_STEP`]) against the analytic gradient.
pub const FINITE_DIFF: Tol = Tol {
    abs: 1e-7,
    rel: 1e-6,
};
/// Step of the central finite differences.
pub const FD_STEP: f64 = 1e-6;
/// The streaming step API against the sequence API (both f32; the GEMMs may block differently).
pub const F32_STREAM: Tol = Tol {
    abs: 1e-6,
    rel: 1e-5,
};
