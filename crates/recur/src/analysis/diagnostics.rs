//! Gradient-flow diagnostics: where along a sequence the loss stops depending on the state, and
//! why.
//!
//! - [`HiddenGrads`]: d loss / d h_t at every step, layer and direction, recorded by
//!   [`Rnn::backward_with`] (the total derivative, through the output at t and through
//!   h_{t+1}); its [`HiddenGrads::norms`] show at which distance from the loss the signal dies.
//! - [`singular_values`] (one-sided Jacobi) and [`spectral_norm`] (power iteration) of any
//!   matrix, and [`recurrent_spectra`]: those of every recurrent matrix `weight_hh`, whole and
//!   per gate block.
//! - [`StepJacobian`]: the Jacobian of one step of a cell, d state_t / d state_{t-1}, applied
//!   to vectors from the cell equations (never formed), with its spectral norm by power
//!   iteration; [`step_jacobian_norms`] follows it along a sequence.
//! - [`GradStats`]: per training step, the global gradient norm, the norm of every named
//!   parameter, spikes against a running median, non-finite values and how often clipping
//!   fired.
//!
//! Everything here computes in f64.

use crate::core::config::Mode;
use crate::core::layout::ParamLayout;
use crate::core::rnn::Rnn;
use crate::error::{Error, Result};
use recur_kernels::Real;
use std::collections::VecDeque;

/// d loss / d h_t for every step t of every (layer, direction), recorded by
/// [`Rnn::backward_with`].
///
/// For each (layer, direction) a buffer (T, B, H_out), time-major and in the caller's batch
/// order whatever `batch_first` says (B = 1 for unbatched input), zero where a sequence is not
/// running. The value at step t is the total derivative: the gradient that reaches h_t through
/// the output at t and through h_{t+1} (and, for an LSTM, through c_{t+1}), i.e. the `dh` the
/// backward time loop holds at step t.
///
/// ```
/// use recur::analysis::diagnostics::HiddenGrads;
/// use recur::{Dropout, Rnn, RnnConfig, Tensor};
/// let rnn: Rnn<f64> = Rnn::new(RnnConfig::gru(2, 3), 0).unwrap();
/// let x = Tensor::new(&[4, 1, 2], vec![0.5; 8]).unwrap(); // (T=4, B=1, I=2)
/// let (out, tape) = rnn.forward_train(&x, None, None, Dropout::Off).unwrap();
/// // L = sum(h_n): the loss only sees the last step directly.
/// let ones = Tensor::new(out.h_n.shape(), vec![1.0; 3]).unwrap();
/// let mut grads = rnn.zeros_like_params();
/// let mut rec = HiddenGrads::new();
/// rnn.backward_with(&tape, None, Some(&ones), None, &mut grads, &mut rec).unwrap();
/// let norms = rec.norms(0, 0); // (T): ||dL/dh_t|| over the batch
/// assert_eq!(norms.len(), 4);
/// assert!((norms[3] - 3f64.sqrt()).abs() < 1e-12); // dL/dh_3 = (1, 1, 1)
/// ```
#[derive(Clone, Debug, Default)]
pub struct HiddenGrads<T> {
    num_layers: usize,
    num_directions: usize,
    t: usize,
    hout: usize,
    /// (B): each sequence's length, in the caller's order.
    lengths: Vec<usize>,
    /// One (T, B, H_out) buffer per (layer, direction), index `layer * D + direction`.
    grads: Vec<Vec<T>>,
}

impl<T: Real> crate::core::rnn::BackwardObserver<T> for HiddenGrads<T> {
    fn start(
        &mut self,
        num_layers: usize,
        num_directions: usize,
        seq_len: usize,
        hidden_size: usize,
        lengths: Vec<usize>,
    ) {
        self.reset(num_layers, num_directions, seq_len, hidden_size, lengths);
    }

    fn hidden_grads(&mut self, layer: usize, direction: usize, grads: &[T]) {
        self.grads[layer * self.num_directions + direction].copy_from_slice(grads);
    }
}

impl<T: Real> HiddenGrads<T> {
    /// An empty record, to pass to [`Rnn::backward_with`].
    pub fn new() -> HiddenGrads<T> {
        HiddenGrads {
            num_layers: 0,
            num_directions: 0,
            t: 0,
            hout: 0,
            lengths: Vec::new(),
            grads: Vec::new(),
        }
    }

    /// Sizes the record for a backward pass and zeroes it (reusing its buffers).
    pub(crate) fn reset(
        &mut self,
        num_layers: usize,
        num_directions: usize,
        t: usize,
        hout: usize,
        lengths: Vec<usize>,
    ) {
        let n = t * lengths.len() * hout;
        self.num_layers = num_layers;
        self.num_directions = num_directions;
        self.t = t;
        self.hout = hout;
        self.lengths = lengths;
        self.grads
            .resize_with(num_layers * num_directions, Vec::new);
        for g in &mut self.grads {
            g.clear();
            g.resize(n, T::ZERO);
        }
    }

    /// Layers recorded.
    pub fn num_layers(&self) -> usize {
        self.num_layers
    }
    /// Directions recorded (2 for a bidirectional model).
    pub fn num_directions(&self) -> usize {
        self.num_directions
    }
    /// T, the number of time steps.
    pub fn seq_len(&self) -> usize {
        self.t
    }
    /// B, the number of sequences.
    pub fn batch_size(&self) -> usize {
        self.lengths.len()
    }
    /// The size of h (H_out).
    pub fn hidden_size(&self) -> usize {
        self.hout
    }
    /// (B): the length of every sequence, in the caller's order.
    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    fn index(&self, layer: usize, direction: usize) -> usize {
        assert!(
            layer < self.num_layers && direction < self.num_directions,
            "HiddenGrads: (layer {layer}, direction {direction}) is not recorded: there are {} \
             layers and {} directions",
            self.num_layers,
            self.num_directions
        );
        layer * self.num_directions + direction
    }

    /// d loss / d h_t of (layer, direction): (T, B, H_out), time-major, zero at padding.
    /// Panics if the pair was not recorded.
    pub fn get(&self, layer: usize, direction: usize) -> &[T] {
        &self.grads[self.index(layer, direction)]
    }

    /// (T): at every step the norm of d loss / d h_t over the whole batch,
    /// `sqrt(Σ_b Σ_j (dL/dh_t)[b, j]²)`.
    pub fn norms(&self, layer: usize, direction: usize) -> Vec<f64> {
        let g = self.get(layer, direction);
        let row = self.lengths.len() * self.hout;
        (0..self.t)
            .map(|t| {
                g[t * row..(t + 1) * row]
                    .iter()
                    .map(|v| v.to_f64() * v.to_f64())
                    .sum::<f64>()
                    .sqrt()
            })
            .collect()
    }

    /// (T, B): the norm of d loss / d h_t of every sequence at every step (0 where the sequence
    /// is not running).
    pub fn seq_norms(&self, layer: usize, direction: usize) -> Vec<f64> {
        let g = self.get(layer, direction);
        g.chunks_exact(self.hout.max(1))
            .map(|r| {
                r.iter()
                    .map(|v| v.to_f64() * v.to_f64())
                    .sum::<f64>()
                    .sqrt()
            })
            .collect()
    }
}

/// The largest singular value of the (rows, cols) row-major matrix `a`, by power iteration on
/// `AᵀA` from a fixed start vector: at most `max_iters` iterations, stopping when the estimate
/// changes by less than `tol` (relative). 0 for an empty or zero matrix.
pub fn spectral_norm(a: &[f64], rows: usize, cols: usize, max_iters: usize, tol: f64) -> f64 {
    assert_eq!(
        a.len(),
        rows * cols,
        "spectral_norm: a must be (rows, cols)"
    );
    power_iteration(
        cols,
        rows,
        |v, out| {
            for (r, o) in out.iter_mut().enumerate() {
                *o = dot(&a[r * cols..(r + 1) * cols], v);
            }
        },
        |u, out| {
            out.fill(0.0);
            for (r, &ur) in u.iter().enumerate() {
                for (o, &w) in out.iter_mut().zip(&a[r * cols..(r + 1) * cols]) {
                    *o += w * ur;
                }
            }
        },
        max_iters,
        tol,
    )
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// The largest singular value of a linear map from `n_in` to `n_out` values, given `apply`
/// (v → A v) and `apply_t` (u → Aᵀ u): power iteration on AᵀA from a fixed start vector with
/// every element non-zero.
fn power_iteration(
    n_in: usize,
    n_out: usize,
    mut apply: impl FnMut(&[f64], &mut [f64]),
    mut apply_t: impl FnMut(&[f64], &mut [f64]),
    max_iters: usize,
    tol: f64,
) -> f64 {
    if n_in == 0 || n_out == 0 {
        return 0.0;
    }
    // A start vector that is not orthogonal to any particular direction in practice.
    let mut v: Vec<f64> = (0..n_in)
        .map(|k| 1.0 + 0.5 * ((k as f64 + 1.0) * 0.618_033_988_749_895).fract())
        .collect();
    let nv = norm(&v);
    v.iter_mut().for_each(|x| *x /= nv);
    let mut u = vec![0.0; n_out];
    let mut sigma = 0.0;
    for _ in 0..max_iters.max(1) {
        apply(&v, &mut u);
        let s = norm(&u);
        if s == 0.0 || !s.is_finite() {
            return s;
        }
        apply_t(&u, &mut v);
        let nv = norm(&v);
        if nv == 0.0 {
            return s;
        }
        v.iter_mut().for_each(|x| *x /= nv);
        let done = (s - sigma).abs() <= tol * s;
        sigma = s;
        if done {
            break;
        }
    }
    apply(&v, &mut u);
    norm(&u)
}

/// All singular values of the (rows, cols) row-major matrix `a`, largest first:
/// one-sided Jacobi (Hestenes) on the columns of `a` (of `aᵀ` when rows < cols), sweeping until
/// every pair of columns is orthogonal to machine precision. Accurate to a few ulps of the
/// largest singular value; fine up to about 1024 columns.
pub fn singular_values(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    assert_eq!(
        a.len(),
        rows * cols,
        "singular_values: a must be (rows, cols)"
    );
    // Work on n columns of length m, m ≥ n, stored column after column.
    let (m, n) = (rows.max(cols), rows.min(cols));
    let mut u = vec![0.0; m * n];
    for r in 0..rows {
        for c in 0..cols {
            if rows >= cols {
                u[c * m + r] = a[r * cols + c];
            } else {
                u[r * m + c] = a[r * cols + c];
            }
        }
    }
    for _sweep in 0..60 {
        let mut rotated = false;
        for p in 0..n {
            for q in p + 1..n {
                let (lo, hi) = u.split_at_mut(q * m);
                let cp = &mut lo[p * m..(p + 1) * m];
                let cq = &mut hi[..m];
                let alpha = dot(cp, cp);
                let beta = dot(cq, cq);
                let gamma = dot(cp, cq);
                if gamma == 0.0 || gamma.abs() <= f64::EPSILON * (alpha * beta).sqrt() {
                    continue;
                }
                rotated = true;
                // The rotation that makes columns p and q orthogonal.
                let zeta = (beta - alpha) / (2.0 * gamma);
                let t = zeta.signum() / (zeta.abs() + (1.0 + zeta * zeta).sqrt());
                let c = 1.0 / (1.0 + t * t).sqrt();
                let s = c * t;
                for (x, y) in cp.iter_mut().zip(cq.iter_mut()) {
                    let (xp, xq) = (*x, *y);
                    *x = c * xp - s * xq;
                    *y = s * xp + c * xq;
                }
            }
        }
        if !rotated {
            break;
        }
    }
    let mut sv: Vec<f64> = u.chunks_exact(m.max(1)).take(n).map(norm).collect();
    sv.sort_by(|a, b| b.total_cmp(a));
    sv
}

/// The gate names of each mode, in PyTorch's order of the row blocks of `weight_hh`.
pub fn gate_names(mode: Mode) -> &'static [&'static str] {
    match mode {
        Mode::RnnTanh | Mode::RnnRelu => &["h"],
        Mode::Lstm => &["i", "f", "g", "o"],
        Mode::Gru => &["r", "z", "n"],
    }
}

/// The singular values of one recurrent matrix or one of its gate blocks.
#[derive(Clone, Debug, PartialEq)]
pub struct Spectrum {
    /// The parameter, e.g. `weight_hh_l0`.
    pub param: String,
    /// The gate block (`i`, `f`, `g`, `o` / `r`, `z`, `n`), or None for the whole matrix. For
    /// an RNN the whole matrix is the only block.
    pub gate: Option<&'static str>,
    /// (rows, cols) of the matrix.
    pub shape: (usize, usize),
    /// The largest singular value (the spectral norm), by power iteration.
    pub largest: f64,
    /// All singular values, largest first (empty unless asked for).
    pub singular_values: Vec<f64>,
}

/// The spectrum of every recurrent matrix `weight_hh_l{k}[_reverse]` of `rnn` (G·H, H_out):
/// for an LSTM or GRU the whole matrix and each gate block (H, H_out); for an RNN the matrix.
/// `all`: also compute every singular value (one-sided Jacobi), not only the largest.
pub fn recurrent_spectra<T: Real>(rnn: &Rnn<T>, all: bool) -> Vec<Spectrum> {
    let c = rnn.config();
    let (h, hout) = (c.hidden_size, c.h_out());
    let gates = gate_names(c.mode);
    let mut out = Vec::new();
    for e in rnn.layout().entries() {
        if e.kind != crate::core::layout::ParamKind::WeightHh {
            continue;
        }
        let w: Vec<f64> = rnn.params()[e.range()].iter().map(|v| v.to_f64()).collect();
        let mut push = |gate: Option<&'static str>, m: &[f64], rows: usize| {
            out.push(Spectrum {
                param: e.name.clone(),
                gate,
                shape: (rows, hout),
                largest: spectral_norm(m, rows, hout, 500, 1e-12),
                singular_values: if all {
                    singular_values(m, rows, hout)
                } else {
                    Vec::new()
                },
            });
        };
        push(None, &w, gates.len() * h);
        if gates.len() > 1 {
            for (k, &g) in gates.iter().enumerate() {
                push(Some(g), &w[k * h * hout..(k + 1) * h * hout], h);
            }
        }
    }
    out
}

/// `(rows, cols) · v` for a row-major matrix.
fn matvec(w: &[f64], rows: usize, cols: usize, v: &[f64], out: &mut [f64]) {
    for (r, o) in out[..rows].iter_mut().enumerate() {
        *o = dot(&w[r * cols..(r + 1) * cols], v);
    }
}

/// `(rows, cols)ᵀ · u`, added to `out` (cols).
fn matvec_t_add(w: &[f64], rows: usize, cols: usize, u: &[f64], out: &mut [f64]) {
    for (r, &ur) in u[..rows].iter().enumerate() {
        for (o, &x) in out.iter_mut().zip(&w[r * cols..(r + 1) * cols]) {
            *o += x * ur;
        }
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// One step of a cell at a given point (input and previous state), with everything needed to
/// apply its Jacobian d state_t / d state_{t-1} to a vector.
///
/// The state is `h` (H_out) for an RNN or GRU and `[h; c]` (H_out + H) for an LSTM: the
/// gradient of an LSTM flows back through both. [`StepJacobian::jvp`] and
/// [`StepJacobian::vjp`] apply J and Jᵀ from the cell equations (PyTorch's, as in
/// `recur::core::reference`), without forming J.
#[derive(Clone, Debug)]
pub struct StepJacobian<'a> {
    mode: Mode,
    h: usize,
    hout: usize,
    /// (G·H, H_out)
    w_hh: &'a [f64],
    /// (P, H)
    w_hr: Option<&'a [f64]>,
    /// (H_out): h_{t-1}
    h_prev: Vec<f64>,
    /// LSTM (H): c_{t-1}
    c_prev: Vec<f64>,
    /// (G·H): the gates after activation (LSTM i f g o, GRU r z n; RNN: h_t).
    act: Vec<f64>,
    /// GRU (H): W_hn h + b_hn; LSTM (H): c_t
    extra: Vec<f64>,
    /// (H_out): h_t
    h_new: Vec<f64>,
    relu_mask: Vec<f64>,
}

impl<'a> StepJacobian<'a> {
    /// The step of (layer, direction) `params` of `rnn` at input `x` (the layer's input size),
    /// state `h_prev` (H_out) and, for an LSTM, `c_prev` (H; empty otherwise).
    pub fn new(
        rnn: &'a Rnn<f64>,
        layer: usize,
        direction: usize,
        x: &[f64],
        h_prev: &[f64],
        c_prev: &[f64],
    ) -> Result<StepJacobian<'a>> {
        let c = rnn.config();
        if layer >= c.num_layers || direction >= c.num_directions() {
            return Err(Error::Input(format!(
                "step Jacobian: (layer {layer}, direction {direction}) does not exist in a model \
                 with {} layers and {} directions",
                c.num_layers,
                c.num_directions()
            )));
        }
        let (h, hout) = (c.hidden_size, c.h_out());
        let input = c.layer_input_size(layer);
        let lstm = c.mode == Mode::Lstm;
        for (what, got, want) in [
            ("x", x.len(), input),
            ("h_prev", h_prev.len(), hout),
            ("c_prev", c_prev.len(), if lstm { h } else { 0 }),
        ] {
            if got != want {
                return Err(Error::Input(format!(
                    "step Jacobian of layer {layer}: {what} must have {want} values, got {got}"
                )));
            }
        }
        let l = rnn.layout().dir(layer, direction);
        let p = rnn.params();
        let w_ih = &p[l.w_ih.clone()];
        let w_hh = &p[l.w_hh.clone()];
        let b_ih = l.b_ih.clone().map(|r| &p[r]);
        let b_hh = l.b_hh.clone().map(|r| &p[r]);
        let w_hr = l.w_hr.clone().map(|r| &p[r]);
        let g = c.mode.gates() * h;
        // a = W_ih x + b_ih, b = W_hh h + b_hh, both (G·H)
        let mut a = vec![0.0; g];
        matvec(w_ih, g, input, x, &mut a);
        let mut bh = vec![0.0; g];
        matvec(w_hh, g, hout, h_prev, &mut bh);
        for k in 0..g {
            a[k] += b_ih.map_or(0.0, |b| b[k]);
            bh[k] += b_hh.map_or(0.0, |b| b[k]);
        }
        let mut act = vec![0.0; g];
        let mut extra = Vec::new();
        let mut relu_mask = Vec::new();
        let h_new = match c.mode {
            Mode::RnnTanh | Mode::RnnRelu => {
                let relu = c.mode == Mode::RnnRelu;
                for k in 0..h {
                    let s = a[k] + bh[k];
                    act[k] = if relu { s.max(0.0) } else { s.tanh() };
                    if relu {
                        relu_mask.push(if s > 0.0 { 1.0 } else { 0.0 });
                    }
                }
                act.clone()
            }
            Mode::Gru => {
                extra = bh[2 * h..].to_vec();
                let mut hn = vec![0.0; h];
                for j in 0..h {
                    let r = sigmoid(a[j] + bh[j]);
                    let z = sigmoid(a[h + j] + bh[h + j]);
                    let n = (a[2 * h + j] + r * bh[2 * h + j]).tanh();
                    act[j] = r;
                    act[h + j] = z;
                    act[2 * h + j] = n;
                    hn[j] = (1.0 - z) * n + z * h_prev[j];
                }
                hn
            }
            Mode::Lstm => {
                let mut c_new = vec![0.0; h];
                let mut m = vec![0.0; h];
                for j in 0..h {
                    let pre = |k: usize| a[k * h + j] + bh[k * h + j];
                    let (i, f, gg, o) = (
                        sigmoid(pre(0)),
                        sigmoid(pre(1)),
                        pre(2).tanh(),
                        sigmoid(pre(3)),
                    );
                    act[j] = i;
                    act[h + j] = f;
                    act[2 * h + j] = gg;
                    act[3 * h + j] = o;
                    c_new[j] = f * c_prev[j] + i * gg;
                    m[j] = o * c_new[j].tanh();
                }
                extra = c_new;
                match w_hr {
                    Some(w) => {
                        let mut out = vec![0.0; hout];
                        matvec(w, hout, h, &m, &mut out);
                        out
                    }
                    None => m,
                }
            }
        };
        Ok(StepJacobian {
            mode: c.mode,
            h,
            hout,
            w_hh,
            w_hr,
            h_prev: h_prev.to_vec(),
            c_prev: c_prev.to_vec(),
            act,
            extra,
            h_new,
            relu_mask,
        })
    }

    /// The size of the state: H_out, or H_out + H for an LSTM (`[h; c]`).
    pub fn state_size(&self) -> usize {
        if self.mode == Mode::Lstm {
            self.hout + self.h
        } else {
            self.hout
        }
    }
    /// h_t, the new hidden state.
    pub fn h_new(&self) -> &[f64] {
        &self.h_new
    }
    /// c_t, the new cell state (LSTM; empty otherwise).
    pub fn c_new(&self) -> &[f64] {
        if self.mode == Mode::Lstm {
            &self.extra
        } else {
            &[]
        }
    }

    /// J v: the change of the new state for a change `v` (state size) of the previous one.
    pub fn jvp(&self, v: &[f64]) -> Vec<f64> {
        assert_eq!(
            v.len(),
            self.state_size(),
            "jvp: v must have the state size"
        );
        let (h, hout) = (self.h, self.hout);
        let g = self.mode.gates() * h;
        // d(W_hh h) (G·H)
        let mut dpre = vec![0.0; g];
        matvec(self.w_hh, g, hout, &v[..hout], &mut dpre);
        match self.mode {
            Mode::RnnTanh => (0..h)
                .map(|k| (1.0 - self.act[k] * self.act[k]) * dpre[k])
                .collect(),
            Mode::RnnRelu => (0..h).map(|k| self.relu_mask[k] * dpre[k]).collect(),
            Mode::Gru => (0..h)
                .map(|j| {
                    let (r, z, n) = (self.act[j], self.act[h + j], self.act[2 * h + j]);
                    let dr = r * (1.0 - r) * dpre[j];
                    let dz = z * (1.0 - z) * dpre[h + j];
                    let dn = (1.0 - n * n) * (dr * self.extra[j] + r * dpre[2 * h + j]);
                    dz * (self.h_prev[j] - n) + (1.0 - z) * dn + z * v[j]
                })
                .collect(),
            Mode::Lstm => {
                let dc_prev = &v[hout..];
                let mut dc = vec![0.0; h];
                let mut dm = vec![0.0; h];
                for j in 0..h {
                    let (i, f, gg, o) = (
                        self.act[j],
                        self.act[h + j],
                        self.act[2 * h + j],
                        self.act[3 * h + j],
                    );
                    let di = i * (1.0 - i) * dpre[j];
                    let df = f * (1.0 - f) * dpre[h + j];
                    let dg = (1.0 - gg * gg) * dpre[2 * h + j];
                    let d_o = o * (1.0 - o) * dpre[3 * h + j];
                    dc[j] = df * self.c_prev[j] + f * dc_prev[j] + di * gg + i * dg;
                    let tc = self.extra[j].tanh();
                    dm[j] = d_o * tc + o * (1.0 - tc * tc) * dc[j];
                }
                let mut out = match self.w_hr {
                    Some(w) => {
                        let mut dh = vec![0.0; hout];
                        matvec(w, hout, h, &dm, &mut dh);
                        dh
                    }
                    None => dm,
                };
                out.extend_from_slice(&dc);
                out
            }
        }
    }

    /// Jᵀ u: the gradient with respect to the previous state of a gradient `u` (state size)
    /// of the new one.
    pub fn vjp(&self, u: &[f64]) -> Vec<f64> {
        assert_eq!(
            u.len(),
            self.state_size(),
            "vjp: u must have the state size"
        );
        let (h, hout) = (self.h, self.hout);
        let g = self.mode.gates() * h;
        // d loss / d(W_hh h) (G·H), then d h_prev = W_hhᵀ that (+ direct paths)
        let mut dpre = vec![0.0; g];
        let mut out = vec![0.0; self.state_size()];
        match self.mode {
            Mode::RnnTanh => {
                for k in 0..h {
                    dpre[k] = (1.0 - self.act[k] * self.act[k]) * u[k];
                }
            }
            Mode::RnnRelu => {
                for k in 0..h {
                    dpre[k] = self.relu_mask[k] * u[k];
                }
            }
            Mode::Gru => {
                for j in 0..h {
                    let (r, z, n) = (self.act[j], self.act[h + j], self.act[2 * h + j]);
                    let gz = u[j] * (self.h_prev[j] - n) * z * (1.0 - z);
                    let gn = u[j] * (1.0 - z) * (1.0 - n * n);
                    dpre[j] = gn * self.extra[j] * r * (1.0 - r);
                    dpre[h + j] = gz;
                    dpre[2 * h + j] = gn * r;
                    out[j] = z * u[j];
                }
            }
            Mode::Lstm => {
                let um = match self.w_hr {
                    Some(w) => {
                        let mut um = vec![0.0; h];
                        matvec_t_add(w, hout, h, &u[..hout], &mut um);
                        um
                    }
                    None => u[..hout].to_vec(),
                };
                let uc_in = &u[hout..];
                for j in 0..h {
                    let (i, f, gg, o) = (
                        self.act[j],
                        self.act[h + j],
                        self.act[2 * h + j],
                        self.act[3 * h + j],
                    );
                    let tc = self.extra[j].tanh();
                    let uc = uc_in[j] + um[j] * o * (1.0 - tc * tc);
                    dpre[j] = uc * gg * i * (1.0 - i);
                    dpre[h + j] = uc * self.c_prev[j] * f * (1.0 - f);
                    dpre[2 * h + j] = uc * i * (1.0 - gg * gg);
                    dpre[3 * h + j] = um[j] * tc * o * (1.0 - o);
                    out[hout + j] = uc * f;
                }
            }
        }
        matvec_t_add(self.w_hh, g, hout, &dpre, &mut out[..hout]);
        out
    }

    /// ‖J‖₂, the spectral norm of the whole step Jacobian (for an LSTM, of the state
    /// `[h; c]`), by power iteration with [`StepJacobian::jvp`] and [`StepJacobian::vjp`].
    pub fn spectral_norm(&self, max_iters: usize, tol: f64) -> f64 {
        let n = self.state_size();
        power_iteration(
            n,
            n,
            |v, out| out.copy_from_slice(&self.jvp(v)),
            |u, out| out.copy_from_slice(&self.vjp(u)),
            max_iters,
            tol,
        )
    }

    /// ‖∂h_t/∂h_{t-1}‖₂: the spectral norm of the h → h block (for an LSTM, with c_{t-1} held
    /// fixed and c_t ignored; for an RNN or GRU this is [`StepJacobian::spectral_norm`]).
    pub fn hh_spectral_norm(&self, max_iters: usize, tol: f64) -> f64 {
        let (n, hout) = (self.state_size(), self.hout);
        power_iteration(
            hout,
            hout,
            |v, out| {
                let mut full = vec![0.0; n];
                full[..hout].copy_from_slice(v);
                out.copy_from_slice(&self.jvp(&full)[..hout]);
            },
            |u, out| {
                let mut full = vec![0.0; n];
                full[..hout].copy_from_slice(u);
                out.copy_from_slice(&self.vjp(&full)[..hout]);
            },
            max_iters,
            tol,
        )
    }
}

/// The step Jacobian norms of one (layer, direction) along a sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct JacobianTrace {
    /// Layer.
    pub layer: usize,
    /// 0 = forward, 1 = reverse.
    pub direction: usize,
    /// (len): ‖d state_t / d state_{t-1}‖₂ at every step t (in time order; for the reverse
    /// direction step t follows step t+1).
    pub state: Vec<f64>,
    /// (len): ‖∂h_t/∂h_{t-1}‖₂ (equal to `state` for an RNN or GRU).
    pub hh: Vec<f64>,
    /// (len, H_out): the hidden state h_t at every step (what the Jacobians were taken at).
    pub h: Vec<f64>,
}

/// Runs `rnn` (evaluation mode, zero initial state) over one sequence `x` (len, input_size),
/// time-major, and returns for every (layer, direction) the norm of the step Jacobian at every
/// step, by power iteration (`max_iters`, relative tolerance 1e-9).
pub fn step_jacobian_norms(
    rnn: &Rnn<f64>,
    x: &[f64],
    len: usize,
    max_iters: usize,
) -> Result<Vec<JacobianTrace>> {
    let c = rnn.config();
    if len == 0 || x.len() != len * c.input_size {
        return Err(Error::Input(format!(
            "step_jacobian_norms: x must be (len, input_size) = ({len}, {}) with len ≥ 1, got {} \
             values",
            c.input_size,
            x.len()
        )));
    }
    let (nd, hout) = (c.num_directions(), c.h_out());
    let lstm = c.mode == Mode::Lstm;
    let mut seq: Vec<Vec<f64>> = x.chunks_exact(c.input_size).map(|r| r.to_vec()).collect();
    let mut out = Vec::new();
    for layer in 0..c.num_layers {
        let mut next = vec![vec![0.0; nd * hout]; len];
        for dir in 0..nd {
            let mut h = vec![0.0; hout];
            let mut cc = if lstm {
                vec![0.0; c.hidden_size]
            } else {
                vec![]
            };
            let mut state = vec![0.0; len];
            let mut hh = vec![0.0; len];
            let mut hs = vec![0.0; len * hout];
            let steps: Vec<usize> = if dir == 0 {
                (0..len).collect()
            } else {
                (0..len).rev().collect()
            };
            for t in steps {
                let j = StepJacobian::new(rnn, layer, dir, &seq[t], &h, &cc)?;
                state[t] = j.spectral_norm(max_iters, 1e-9);
                hh[t] = if lstm {
                    j.hh_spectral_norm(max_iters, 1e-9)
                } else {
                    state[t]
                };
                h = j.h_new().to_vec();
                cc = j.c_new().to_vec();
                hs[t * hout..(t + 1) * hout].copy_from_slice(&h);
                next[t][dir * hout..(dir + 1) * hout].copy_from_slice(&h);
            }
            out.push(JacobianTrace {
                layer,
                direction: dir,
                state,
                hh,
                h: hs,
            });
        }
        seq = next;
    }
    Ok(out)
}

/// The named slices of a flat gradient buffer laid out by `layout`: `(name, values)` for every
/// parameter, in registration order, with the names prefixed by `prefix` (e.g. `"rnn."`).
pub fn named_grads<'a, T>(
    layout: &'a ParamLayout,
    grads: &'a [T],
    prefix: &str,
) -> Vec<(String, &'a [T])> {
    layout
        .entries()
        .iter()
        .map(|e| (format!("{prefix}{}", e.name), &grads[e.range()]))
        .collect()
}

/// Settings of [`GradStats`].
#[derive(Clone, Debug, PartialEq)]
pub struct GradStatsConfig {
    /// How many recent finite global norms the running median covers (default 50).
    pub window: usize,
    /// A step is a spike when its global norm exceeds `spike_factor` × the running median
    /// (default 10).
    pub spike_factor: f64,
    /// No spike is reported before this many finite norms have been seen (default 10).
    pub min_history: usize,
}

impl Default for GradStatsConfig {
    fn default() -> Self {
        GradStatsConfig {
            window: 50,
            spike_factor: 10.0,
            min_history: 10,
        }
    }
}

/// Something unusual about one step's gradients.
#[derive(Clone, Debug, PartialEq)]
pub enum GradWarning {
    /// NaN or infinity in these parameters' gradients.
    NonFinite {
        /// The parameters whose gradient norm is not finite.
        params: Vec<String>,
    },
    /// The global norm jumped far above its recent median.
    Spike {
        /// This step's global norm.
        norm: f64,
        /// The running median before this step.
        median: f64,
    },
}

impl std::fmt::Display for GradWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GradWarning::NonFinite { params } => {
                write!(f, "non-finite gradient in {}", params.join(", "))
            }
            GradWarning::Spike { norm, median } => write!(
                f,
                "gradient norm spike: {norm:.4e} is {:.1}x the running median {median:.4e}",
                norm / median
            ),
        }
    }
}

/// What [`GradStats::observe`] measured at one step.
#[derive(Clone, Debug, PartialEq)]
pub struct GradStep {
    /// The step number (1 for the first observed step).
    pub step: u64,
    /// The L2 norm of all gradients together (before clipping), as `clip_grad_norm_` computes
    /// it.
    pub global_norm: f64,
    /// (name, L2 norm) of every parameter's gradient, in the order given.
    pub param_norms: Vec<(String, f64)>,
    /// Whether clipping to the given max norm changed the gradients (`global_norm > max_norm`).
    pub clipped: bool,
    /// Spikes and non-finite values found at this step.
    pub warnings: Vec<GradWarning>,
}

/// Gradient statistics over a training run: call [`GradStats::observe`] with the gradients
/// of every step (before clipping).
#[derive(Clone, Debug)]
pub struct GradStats {
    config: GradStatsConfig,
    /// The last `window` finite global norms.
    recent: VecDeque<f64>,
    steps: u64,
    clipped: u64,
    spikes: u64,
    non_finite: u64,
}

impl GradStats {
    /// Empty statistics.
    pub fn new(config: GradStatsConfig) -> GradStats {
        GradStats {
            config,
            recent: VecDeque::new(),
            steps: 0,
            clipped: 0,
            spikes: 0,
            non_finite: 0,
        }
    }

    /// The median of the recent finite global norms (None before any).
    pub fn running_median(&self) -> Option<f64> {
        if self.recent.is_empty() {
            return None;
        }
        let mut v: Vec<f64> = self.recent.iter().copied().collect();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        Some(if n % 2 == 1 {
            v[n / 2]
        } else {
            0.5 * (v[n / 2 - 1] + v[n / 2])
        })
    }

    /// Measures one step's gradients `params` (name, flat gradient), with clipping to
    /// `max_norm` if given (the step counts as clipped when the global norm exceeds it, when
    /// `clip_grad_norm_` scales the gradients down).
    pub fn observe<T: Real>(
        &mut self,
        params: &[(String, &[T])],
        max_norm: Option<f64>,
    ) -> GradStep {
        self.steps += 1;
        let param_norms: Vec<(String, f64)> = params
            .iter()
            .map(|(name, g)| {
                let sq: f64 = g.iter().map(|v| v.to_f64() * v.to_f64()).sum();
                (name.clone(), sq.sqrt())
            })
            .collect();
        let global_norm = param_norms.iter().map(|(_, n)| n * n).sum::<f64>().sqrt();
        let mut warnings = Vec::new();
        let bad: Vec<String> = param_norms
            .iter()
            .filter(|(_, n)| !n.is_finite())
            .map(|(name, _)| name.clone())
            .collect();
        if !bad.is_empty() {
            self.non_finite += 1;
            warnings.push(GradWarning::NonFinite { params: bad });
        }
        let clipped = max_norm.is_some_and(|m| global_norm.is_finite() && global_norm > m);
        if clipped {
            self.clipped += 1;
        }
        if global_norm.is_finite() {
            if self.recent.len() >= self.config.min_history.max(1) {
                let median = self.running_median().unwrap_or(0.0);
                if median > 0.0 && global_norm > self.config.spike_factor * median {
                    self.spikes += 1;
                    warnings.push(GradWarning::Spike {
                        norm: global_norm,
                        median,
                    });
                }
            }
            self.recent.push_back(global_norm);
            while self.recent.len() > self.config.window.max(1) {
                self.recent.pop_front();
            }
        }
        GradStep {
            step: self.steps,
            global_norm,
            param_norms,
            clipped,
            warnings,
        }
    }

    /// Steps observed.
    pub fn steps(&self) -> u64 {
        self.steps
    }
    /// Steps at which clipping fired.
    pub fn clipped(&self) -> u64 {
        self.clipped
    }
    /// Steps reported as spikes.
    pub fn spikes(&self) -> u64 {
        self.spikes
    }
    /// Steps with a non-finite gradient.
    pub fn non_finite(&self) -> u64 {
        self.non_finite
    }
    /// The fraction of steps at which clipping fired (0 before any step).
    pub fn clip_rate(&self) -> f64 {
        if self.steps == 0 {
            0.0
        } else {
            self.clipped as f64 / self.steps as f64
        }
    }
}
