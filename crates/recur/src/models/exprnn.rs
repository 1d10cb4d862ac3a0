//! expRNN (Lezcano-Casado & Martínez-Rubio 2019): a recurrent layer whose recurrent matrix is
//! orthogonal by construction and stays so during training.
//!
//! ```text
//! A   = S − Sᵀ            S strictly upper triangular: the H(H−1)/2 parameters `a`
//! W   = expm(A)            orthogonal, since A is skew-symmetric
//! z_t = W h_{t−1} + U x_t
//! h_t = modrelu(z_t, b)    = sign(z) · max(|z| + b, 0), elementwise
//! ```
//!
//! Parameters, in this order in [`ExpRnn::params`]: `a` (H(H−1)/2, row-major over i < j),
//! `U` (H × I, row-major), `b` (H). Everything is computed in f64; the layer takes and gives
//! f32 tensors to sit in the same models as [`crate::core::rnn::Rnn`].
//!
//! The gradient with respect to `A` goes through the matrix exponential: for a loss L with
//! G = dL/dW, dL/dA = L_exp(Aᵀ, G), the Fréchet derivative of expm at Aᵀ in the direction G,
//! which is the upper-right block of expm([[Aᵀ, G], [0, Aᵀ]]) (Mathias 1996; Higham, *Functions
//! of Matrices*, §3.2). Then dL/da_ij = (dL/dA)_ij − (dL/dA)_ji.
//!
//! The matrix exponential is scaling and squaring with a degree-18 Taylor polynomial: A is
//! scaled by 2^−s until its 1-norm is at most 1/2, where the truncation error is under 1e-22
//! relative.

use crate::analysis::diagnostics::HiddenGrads;
use crate::core::rnn::{BackwardObserver, Output};
use crate::core::tensor::Tensor;
use crate::error::{Error, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recur_kernels::gemm::{matmul, MatMut, MatRef, Par};

/// `C = A·B` (or `C += A·B`) for dense row-major f64 matrices.
fn mm(c: &mut [f64], a: &[f64], b: &[f64], m: usize, k: usize, n: usize, acc: bool) {
    matmul(
        MatMut::new(c, m, n),
        MatRef::new(a, m, k),
        MatRef::new(b, k, n),
        acc,
        Par::Seq,
    );
}

/// `C (m, n) [+]= Aᵀ·B` with A (k, m), B (k, n).
fn mm_tn(c: &mut [f64], a: &[f64], b: &[f64], k: usize, m: usize, n: usize, acc: bool) {
    matmul(
        MatMut::new(c, m, n),
        MatRef::new(a, k, m).t(),
        MatRef::new(b, k, n),
        acc,
        Par::Seq,
    );
}

/// `C (m, n) [+]= A·Bᵀ` with A (m, k), B (n, k).
fn mm_nt(c: &mut [f64], a: &[f64], b: &[f64], m: usize, k: usize, n: usize, acc: bool) {
    matmul(
        MatMut::new(c, m, n),
        MatRef::new(a, m, k),
        MatRef::new(b, n, k).t(),
        acc,
        Par::Seq,
    );
}

/// Degree of the Taylor polynomial of [`expm`].
const TAYLOR_DEGREE: usize = 18;

/// The matrix exponential of the dense row-major n × n matrix `a`.
pub fn expm(a: &[f64], n: usize) -> Vec<f64> {
    assert_eq!(a.len(), n * n, "expm: a is not n × n");
    // The 1-norm: the largest column sum of absolute values.
    let norm = (0..n)
        .map(|j| (0..n).map(|i| a[i * n + j].abs()).sum::<f64>())
        .fold(0.0f64, f64::max);
    let mut s = 0i32;
    while norm / 2f64.powi(s) > 0.5 {
        s += 1;
    }
    let scale = 2f64.powi(-s);
    let x: Vec<f64> = a.iter().map(|v| v * scale).collect();
    // Horner: e = I + x/1 (I + x/2 (I + … (I + x/d))).
    let mut e = vec![0.0; n * n];
    for i in 0..n {
        e[i * n + i] = 1.0;
    }
    let mut t = vec![0.0; n * n];
    for k in (1..=TAYLOR_DEGREE).rev() {
        mm(&mut t, &x, &e, n, n, n, false);
        let inv = 1.0 / k as f64;
        for (ev, tv) in e.iter_mut().zip(&t) {
            *ev = tv * inv;
        }
        for i in 0..n {
            e[i * n + i] += 1.0;
        }
    }
    for _ in 0..s {
        mm(&mut t, &e, &e, n, n, n, false);
        std::mem::swap(&mut e, &mut t);
    }
    e
}

/// The gradient through W = expm(A): given G = dL/dW, returns dL/dA = L_exp(Aᵀ, G), the
/// upper-right n × n block of expm([[Aᵀ, G], [0, Aᵀ]]).
pub fn expm_grad(a: &[f64], g: &[f64], n: usize) -> Vec<f64> {
    assert_eq!(a.len(), n * n, "expm_grad: a is not n × n");
    assert_eq!(g.len(), n * n, "expm_grad: g is not n × n");
    let m = 2 * n;
    let mut big = vec![0.0; m * m];
    for i in 0..n {
        for j in 0..n {
            let at = a[j * n + i];
            big[i * m + j] = at;
            big[(n + i) * m + n + j] = at;
            big[i * m + n + j] = g[i * n + j];
        }
    }
    let e = expm(&big, m);
    let mut out = vec![0.0; n * n];
    for i in 0..n {
        out[i * n..(i + 1) * n].copy_from_slice(&e[i * m + n..i * m + 2 * n]);
    }
    out
}

/// The non-linearity of an [`ExpRnn`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// modrelu(z, b) = sign(z) · max(|z| + b, 0) (Arjovsky et al. 2016), as the paper.
    ModRelu,
    /// tanh(z + b).
    Tanh,
}

/// How the skew-symmetric A starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExpInit {
    /// Henaff, Szlam & LeCun (2016): A block-diagonal with 2 × 2 blocks [[0, θ], [−θ, 0]],
    /// θ ~ U(−π, π), so W is a direct sum of plane rotations (the paper's choice for the copy
    /// task).
    Henaff,
    /// A = 0: W = I.
    Identity,
    /// Every a_ij ~ U(−r, r) (for tests: a dense A).
    Uniform(f64),
}

/// An expRNN layer. See the module documentation.
#[derive(Clone, Debug)]
pub struct ExpRnn {
    input_size: usize,
    hidden_size: usize,
    activation: Activation,
    params: Vec<f64>,
}

/// What [`ExpRnn::forward_f64`] keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct ExpTape {
    t: usize,
    b: usize,
    /// (T, B, I)
    x: Vec<f64>,
    /// W = expm(A), (H, H).
    w: Vec<f64>,
    /// A, (H, H).
    a: Vec<f64>,
    /// (T, B, H): the pre-activations.
    z: Vec<f64>,
    /// (T + 1, B, H): h_{−1} = 0, then h_0 … h_{T−1}.
    h: Vec<f64>,
}

impl ExpTape {
    /// (T, B, H): the hidden state at every step.
    pub fn output(&self) -> &[f64] {
        let n = self.b * (self.h.len() / ((self.t + 1) * self.b.max(1)));
        &self.h[n..]
    }
    /// (B, H): the last hidden state.
    pub fn h_n(&self) -> &[f64] {
        let n = self.h.len() / (self.t + 1);
        &self.h[self.t * n..]
    }
}

impl ExpRnn {
    /// A layer with `hidden_size` units on `input_size` features: A as `init` says, U with
    /// entries ~ N(0, 2 / I) (He), b ~ U(−0.01, 0.01) for modrelu (0 for tanh).
    pub fn new(
        input_size: usize,
        hidden_size: usize,
        activation: Activation,
        init: ExpInit,
        seed: u64,
    ) -> Result<ExpRnn> {
        if input_size == 0 || hidden_size == 0 {
            return Err(Error::Config(format!(
                "expRNN: input_size and hidden_size must be at least 1, got {input_size}, \
                 {hidden_size}"
            )));
        }
        let h = hidden_size;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut layer = ExpRnn {
            input_size,
            hidden_size,
            activation,
            params: vec![0.0; h * (h - 1) / 2 + h * input_size + h],
        };
        let mut a = vec![0.0; h * h];
        match init {
            ExpInit::Identity => {}
            ExpInit::Henaff => {
                for k in 0..h / 2 {
                    let th = rng.gen_range(-std::f64::consts::PI..std::f64::consts::PI);
                    a[(2 * k) * h + 2 * k + 1] = th;
                }
            }
            ExpInit::Uniform(r) => {
                for i in 0..h {
                    for j in i + 1..h {
                        a[i * h + j] = rng.gen_range(-r..=r);
                    }
                }
            }
        }
        let na = layer.num_a();
        let mut k = 0;
        for i in 0..h {
            for j in i + 1..h {
                layer.params[k] = a[i * h + j];
                k += 1;
            }
        }
        let std = (2.0 / input_size as f64).sqrt();
        for v in &mut layer.params[na..na + h * input_size] {
            // Box–Muller.
            let (u1, u2): (f64, f64) = (rng.gen_range(f64::EPSILON..1.0), rng.gen());
            *v = std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        }
        if activation == Activation::ModRelu {
            for v in &mut layer.params[na + h * input_size..] {
                *v = rng.gen_range(-0.01..0.01);
            }
        }
        Ok(layer)
    }

    /// Features per step.
    pub fn input_size(&self) -> usize {
        self.input_size
    }
    /// Units.
    pub fn hidden_size(&self) -> usize {
        self.hidden_size
    }
    /// The non-linearity.
    pub fn activation(&self) -> Activation {
        self.activation
    }
    /// Number of entries of `a`: H(H−1)/2.
    pub fn num_a(&self) -> usize {
        self.hidden_size * (self.hidden_size - 1) / 2
    }
    /// All parameters: `a`, `U`, `b`.
    pub fn params(&self) -> &[f64] {
        &self.params
    }
    /// All parameters, to update: `a`, `U`, `b`. Any values keep W orthogonal.
    pub fn params_mut(&mut self) -> &mut [f64] {
        &mut self.params
    }
    /// Zeroed gradients, in the layout of [`ExpRnn::params`].
    pub fn zeros_like_params(&self) -> Vec<f64> {
        vec![0.0; self.params.len()]
    }

    /// The skew-symmetric A, (H, H) row-major.
    pub fn skew(&self) -> Vec<f64> {
        let h = self.hidden_size;
        let mut a = vec![0.0; h * h];
        let mut k = 0;
        for i in 0..h {
            for j in i + 1..h {
                a[i * h + j] = self.params[k];
                a[j * h + i] = -self.params[k];
                k += 1;
            }
        }
        a
    }

    /// The recurrent matrix W = expm(A), (H, H) row-major.
    pub fn recurrent_matrix(&self) -> Vec<f64> {
        expm(&self.skew(), self.hidden_size)
    }

    fn check_input(&self, x: &[f64], t: usize, b: usize) -> Result<()> {
        if t == 0 || b == 0 || x.len() != t * b * self.input_size {
            return Err(Error::Input(format!(
                "expRNN: expected an input of {t} × {b} × {} values (T, B, input_size) with T, B \
                 ≥ 1, got {}",
                self.input_size,
                x.len()
            )));
        }
        Ok(())
    }

    /// The forward pass in f64 from h_{−1} = 0: `x` is (T, B, I), time-major.
    pub fn forward_f64(&self, x: &[f64], t: usize, b: usize) -> Result<ExpTape> {
        self.check_input(x, t, b)?;
        let (h, i) = (self.hidden_size, self.input_size);
        let a = self.skew();
        let w = expm(&a, h);
        let na = self.num_a();
        let u = &self.params[na..na + h * i];
        let bias = &self.params[na + h * i..];
        // All input projections at once: (T·B, H) = x (T·B, I) · Uᵀ.
        let mut z = vec![0.0; t * b * h];
        mm_nt(&mut z, x, u, t * b, i, h, false);
        let mut hs = vec![0.0; (t + 1) * b * h];
        for s in 0..t {
            let (prev, rest) = hs.split_at_mut((s + 1) * b * h);
            let prev = &prev[s * b * h..];
            let zs = &mut z[s * b * h..(s + 1) * b * h];
            // z += h_{t−1} Wᵀ
            mm_nt(zs, prev, &w, b, h, h, true);
            let hn = &mut rest[..b * h];
            for ((o, &zv), k) in hn.iter_mut().zip(zs.iter()).zip(0..) {
                *o = self.act(zv, bias[k % h]);
            }
        }
        Ok(ExpTape {
            t,
            b,
            x: x.to_vec(),
            w,
            a,
            z,
            h: hs,
        })
    }

    fn act(&self, z: f64, b: f64) -> f64 {
        match self.activation {
            Activation::ModRelu => {
                let m = z.abs() + b;
                if m > 0.0 {
                    z.signum() * m
                } else {
                    0.0
                }
            }
            Activation::Tanh => (z + b).tanh(),
        }
    }

    /// (dh/dz, dh/db) at z.
    fn act_grad(&self, z: f64, b: f64) -> (f64, f64) {
        match self.activation {
            Activation::ModRelu => {
                if z.abs() + b > 0.0 {
                    (1.0, z.signum())
                } else {
                    (0.0, 0.0)
                }
            }
            Activation::Tanh => {
                let y = (z + b).tanh();
                let d = 1.0 - y * y;
                (d, d)
            }
        }
    }

    /// Backpropagation through time in f64: `grad_output` (T, B, H) and `grad_h_n` (B, H) are
    /// d loss / d h_t and d loss / d h_{T−1} from outside (either may be absent). **Adds** the
    /// parameter gradients into `grads` (layout of [`ExpRnn::params`]); `record` gets the total
    /// d loss / d h_t at every step, if given.
    pub fn backward_f64(
        &self,
        tape: &ExpTape,
        grad_output: Option<&[f64]>,
        grad_h_n: Option<&[f64]>,
        grads: &mut [f64],
        mut record: Option<&mut Vec<Vec<f64>>>,
    ) -> Result<()> {
        let (h, i, t, b) = (self.hidden_size, self.input_size, tape.t, tape.b);
        if grads.len() != self.params.len()
            || grad_output.is_some_and(|g| g.len() != t * b * h)
            || grad_h_n.is_some_and(|g| g.len() != b * h)
        {
            return Err(Error::Input(format!(
                "expRNN backward: expected {} gradients, grad_output of {} and grad_h_n of {} \
                 values",
                self.params.len(),
                t * b * h,
                b * h
            )));
        }
        let na = self.num_a();
        let bias = &self.params[na + h * i..];
        let mut dw = vec![0.0; h * h];
        let mut du = vec![0.0; h * i];
        let mut db = vec![0.0; h];
        let mut dh = vec![0.0; b * h];
        if let Some(g) = grad_h_n {
            dh.copy_from_slice(g);
        }
        let mut dz = vec![0.0; b * h];
        if let Some(r) = record.as_deref_mut() {
            r.clear();
            r.resize(t, Vec::new());
        }
        for s in (0..t).rev() {
            if let Some(g) = grad_output {
                for (d, &v) in dh.iter_mut().zip(&g[s * b * h..(s + 1) * b * h]) {
                    *d += v;
                }
            }
            if let Some(r) = record.as_deref_mut() {
                r[s] = dh.clone();
            }
            let zs = &tape.z[s * b * h..(s + 1) * b * h];
            for (k, ((dzv, &zv), &dhv)) in dz.iter_mut().zip(zs).zip(&dh).enumerate() {
                let (gz, gb) = self.act_grad(zv, bias[k % h]);
                *dzv = dhv * gz;
                db[k % h] += dhv * gb;
            }
            let prev = &tape.h[s * b * h..(s + 1) * b * h];
            // dW += dzᵀ h_{t−1}; dU += dzᵀ x_t; dh_{t−1} = dz W
            mm_tn(&mut dw, &dz, prev, b, h, h, true);
            mm_tn(
                &mut du,
                &dz,
                &tape.x[s * b * i..(s + 1) * b * i],
                b,
                h,
                i,
                true,
            );
            mm(&mut dh, &dz, &tape.w, b, h, h, false);
        }
        let da = expm_grad(&tape.a, &dw, h);
        let mut k = 0;
        for r in 0..h {
            for c in r + 1..h {
                grads[k] += da[r * h + c] - da[c * h + r];
                k += 1;
            }
        }
        for (g, v) in grads[na..na + h * i].iter_mut().zip(&du) {
            *g += v;
        }
        for (g, v) in grads[na + h * i..].iter_mut().zip(&db) {
            *g += v;
        }
        Ok(())
    }

    /// The forward pass on an f32 tensor (T, B, I) from a zero state: `output` (T, B, H),
    /// `h_n` (1, B, H), no `c_n`; and the tape for [`ExpRnn::backward`].
    pub fn forward_train(&self, x: &Tensor<f32>) -> Result<(Output<f32>, ExpTape)> {
        let sh = x.shape();
        if sh.len() != 3 || sh[2] != self.input_size {
            return Err(Error::Input(format!(
                "expRNN: expected an input of shape (T, B, {}), got {sh:?}",
                self.input_size
            )));
        }
        let (t, b) = (sh[0], sh[1]);
        let xd: Vec<f64> = x.data().iter().map(|&v| v as f64).collect();
        let tape = self.forward_f64(&xd, t, b)?;
        let h = self.hidden_size;
        let out: Vec<f32> = tape.output().iter().map(|&v| v as f32).collect();
        let hn: Vec<f32> = tape.h_n().iter().map(|&v| v as f32).collect();
        Ok((
            Output {
                output: Tensor::new(&[t, b, h], out)?,
                h_n: Tensor::new(&[1, b, h], hn)?,
                c_n: None,
            },
            tape,
        ))
    }

    /// [`ExpRnn::backward_f64`] with f32 output gradients (`grad_output` (T, B, H), `grad_h_n`
    /// (1, B, H)); `record` gets d loss / d h_t as [`HiddenGrads`] does for the fused layers.
    pub fn backward(
        &self,
        tape: &ExpTape,
        grad_output: Option<&Tensor<f32>>,
        grad_h_n: Option<&Tensor<f32>>,
        grads: &mut [f64],
        record: Option<&mut HiddenGrads<f32>>,
    ) -> Result<()> {
        let up = |g: &Tensor<f32>| g.data().iter().map(|&v| v as f64).collect::<Vec<f64>>();
        let go = grad_output.map(up);
        let gh = grad_h_n.map(up);
        match record {
            Some(r) => {
                let mut steps = Vec::new();
                self.backward_f64(tape, go.as_deref(), gh.as_deref(), grads, Some(&mut steps))?;
                r.start(1, 1, tape.t, self.hidden_size, vec![tape.t; tape.b]);
                let flat: Vec<f32> = steps.iter().flatten().map(|&v| v as f32).collect();
                r.hidden_grads(0, 0, &flat);
                Ok(())
            }
            None => self.backward_f64(tape, go.as_deref(), gh.as_deref(), grads, None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max)
    }

    #[test]
    fn expm_of_a_rotation_generator_and_a_nilpotent() {
        // expm([[0, θ], [−θ, 0]]) = [[cos θ, sin θ], [−sin θ, cos θ]]
        let th = 2.5f64;
        let e = expm(&[0.0, th, -th, 0.0], 2);
        let want = [th.cos(), th.sin(), -th.sin(), th.cos()];
        assert!(max_abs_diff(&e, &want) < 1e-14, "{e:?}");
        // expm of a nilpotent: [[0, 1, 0], [0, 0, 1], [0, 0, 0]] → I + N + N²/2.
        let e = expm(&[0.0, 3.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0], 3);
        let want = [1.0, 3.0, 3.0, 0.0, 1.0, 2.0, 0.0, 0.0, 1.0];
        assert!(max_abs_diff(&e, &want) < 1e-13, "{e:?}");
    }
}
