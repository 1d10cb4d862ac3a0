//! `nn.Linear`: `y = x Wᵀ + b`.

use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use recur_kernels::gemm::{matmul, MatMut, MatRef, Par};
use recur_kernels::Real;

/// Multiplies with at least this many multiply-adds may use several threads.
const PAR_THRESHOLD: usize = 1 << 20;

fn par(n: usize, k: usize, m: usize) -> Par {
    if n.saturating_mul(k).saturating_mul(m) >= PAR_THRESHOLD {
        Par::Threads
    } else {
        Par::Seq
    }
}

/// A fully connected layer, the equivalent of `torch.nn.Linear(in_features, out_features,
/// bias)`.
///
/// Parameters live in one flat buffer: `weight` (out, in) followed by `bias` (out), the order
/// of `nn.Linear.state_dict()`. Gradients use the same layout.
#[derive(Clone, Debug)]
pub struct Linear<T = f32> {
    in_features: usize,
    out_features: usize,
    bias: bool,
    /// (out·in [+ out]): weight (out, in), then bias (out).
    params: Vec<T>,
}

impl<T: Real> Linear<T> {
    /// A new layer with PyTorch's default initialization: `kaiming_uniform_(a=√5)` for the
    /// weight, which is U(-1/√in, 1/√in), and U(-1/√in, 1/√in) for the bias; drawn (weight
    /// first, then bias) from a generator seeded with `seed`.
    pub fn new(in_features: usize, out_features: usize, bias: bool, seed: u64) -> Linear<T> {
        // kaiming_uniform(a=√5): gain = √(2 / (1 + a²)) = √(1/3), bound = gain · √3 / √fan_in
        // = 1/√fan_in. The bias bound is 1/√fan_in too (0 when fan_in is 0).
        let k = if in_features > 0 {
            1.0 / (in_features as f64).sqrt()
        } else {
            0.0
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = out_features * in_features + if bias { out_features } else { 0 };
        let params = (0..n)
            .map(|_| {
                if k > 0.0 {
                    T::from_f64(rng.gen_range(-k..k))
                } else {
                    T::ZERO
                }
            })
            .collect();
        Linear {
            in_features,
            out_features,
            bias,
            params,
        }
    }

    /// A layer with the given flat parameters: weight (out, in) then bias (out).
    pub fn from_params(
        in_features: usize,
        out_features: usize,
        bias: bool,
        params: Vec<T>,
    ) -> Result<Linear<T>> {
        let want = out_features * in_features + if bias { out_features } else { 0 };
        if params.len() != want {
            return Err(Error::Input(format!(
                "Linear({in_features}, {out_features}, bias={bias}) parameters: expected {want} values, got {}",
                params.len()
            )));
        }
        Ok(Linear {
            in_features,
            out_features,
            bias,
            params,
        })
    }

    /// `in_features`
    pub fn in_features(&self) -> usize {
        self.in_features
    }
    /// `out_features`
    pub fn out_features(&self) -> usize {
        self.out_features
    }
    /// Whether the layer has a bias.
    pub fn has_bias(&self) -> bool {
        self.bias
    }
    /// The number of parameters: out·in (+ out with a bias).
    pub fn num_params(&self) -> usize {
        self.params.len()
    }
    /// All parameters, flat: weight (out, in), then bias (out).
    pub fn params(&self) -> &[T] {
        &self.params
    }
    /// All parameters, flat, mutable (for optimizers).
    pub fn params_mut(&mut self) -> &mut [T] {
        &mut self.params
    }
    /// The weight, (out, in) row-major.
    pub fn weight(&self) -> &[T] {
        &self.params[..self.out_features * self.in_features]
    }
    /// The bias, (out), if any.
    pub fn bias(&self) -> Option<&[T]> {
        self.bias
            .then(|| &self.params[self.out_features * self.in_features..])
    }
    /// A zeroed gradient buffer with the parameters' layout.
    pub fn zeros_like_params(&self) -> Vec<T> {
        vec![T::ZERO; self.params.len()]
    }

    /// Forward: `y = x Wᵀ + b` for the `n` rows of `x`.
    ///
    /// - `x`: (n, in)
    /// - `y`: (n, out), overwritten
    ///
    /// Panics if a buffer has the wrong size.
    pub fn forward(&self, x: &[T], n: usize, y: &mut [T]) {
        let (i, o) = (self.in_features, self.out_features);
        assert_eq!(
            x.len(),
            n * i,
            "Linear.forward: x must be (n, in) = ({n}, {i})"
        );
        assert_eq!(
            y.len(),
            n * o,
            "Linear.forward: y must be (n, out) = ({n}, {o})"
        );
        // y (n, out) = b broadcast over rows, then += x (n, in) · Wᵀ (in, out)
        match self.bias() {
            Some(b) if o > 0 => {
                for row in y.chunks_exact_mut(o) {
                    row.copy_from_slice(b);
                }
            }
            _ => y.fill(T::ZERO),
        }
        let w_t = MatRef::new(self.weight(), o, i).t(); // (in, out)
        matmul(
            MatMut::new(y, n, o),
            MatRef::new(x, n, i),
            w_t,
            true,
            par(n, i, o),
        );
    }

    /// Backward of [`Linear::forward`] for the same `x`.
    ///
    /// - `x`: (n, in), the forward input
    /// - `dy`: (n, out), d loss / d y
    /// - `grads`: (out·in [+ out]), the parameter layout; `dW += dyᵀ x`, `db += Σ_rows dy`
    /// - `dx`: (n, in), overwritten with `dy W`, if given
    ///
    /// Panics if a buffer has the wrong size.
    pub fn backward(&self, x: &[T], dy: &[T], n: usize, grads: &mut [T], dx: Option<&mut [T]>) {
        let (i, o) = (self.in_features, self.out_features);
        assert_eq!(
            x.len(),
            n * i,
            "Linear.backward: x must be (n, in) = ({n}, {i})"
        );
        assert_eq!(
            dy.len(),
            n * o,
            "Linear.backward: dy must be (n, out) = ({n}, {o})"
        );
        assert_eq!(
            grads.len(),
            self.params.len(),
            "Linear.backward: grads must have the parameters' length"
        );
        let (dw, db) = grads.split_at_mut(o * i);
        // dW (out, in) += dyᵀ (out, n) · x (n, in)
        matmul(
            MatMut::new(dw, o, i),
            MatRef::new(dy, n, o).t(),
            MatRef::new(x, n, i),
            true,
            par(n, i, o),
        );
        // db (out) += Σ_rows dy
        if self.bias && o > 0 {
            for row in dy.chunks_exact(o) {
                for (g, &d) in db.iter_mut().zip(row) {
                    *g += d;
                }
            }
        }
        // dx (n, in) = dy (n, out) · W (out, in)
        if let Some(dx) = dx {
            assert_eq!(
                dx.len(),
                n * i,
                "Linear.backward: dx must be (n, in) = ({n}, {i})"
            );
            matmul(
                MatMut::new(dx, n, i),
                MatRef::new(dy, n, o),
                MatRef::new(self.weight(), o, i),
                false,
                par(n, i, o),
            );
        }
    }
}
