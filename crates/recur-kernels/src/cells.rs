//! The element-wise part of one time step of each cell, forward and backward, for `n` rows
//! (batch elements) at once. The matrix products around them are done by the caller with
//! [`crate::gemm::matmul`]; these kernels are what runs between them while the data is in cache.
//!
//! Notation (PyTorch's): H = hidden size; every buffer is row-major with one row per batch
//! element; LSTM gate blocks are `[i | f | g | o]`, GRU blocks `[r | z | n]`.

use crate::Real;

/// LSTM step, forward.
///
/// - `gates` (n, 4H): in: the pre-activations `x W_ihᵀ + b_ih + h W_hhᵀ + b_hh`;
///   out: the activations `[i | f | g | o]` (kept for the backward pass).
/// - `c_prev` (n, H): the previous cell state; `c_new` (n, H): out, `f*c_prev + i*g`.
/// - `m` (n, H): out, `o * tanh(c_new)` (the hidden state before any projection).
pub fn lstm_forward<T: Real>(
    n: usize,
    h: usize,
    gates: &mut [T],
    c_prev: &[T],
    c_new: &mut [T],
    m: &mut [T],
) {
    let gates = &mut gates[..n * 4 * h];
    let (c_prev, c_new, m) = (&c_prev[..n * h], &mut c_new[..n * h], &mut m[..n * h]);
    for r in 0..n {
        let g = &mut gates[r * 4 * h..(r + 1) * 4 * h];
        for j in 0..h {
            let i = g[j].sigmoid();
            let f = g[h + j].sigmoid();
            let gg = g[2 * h + j].tanh();
            let o = g[3 * h + j].sigmoid();
            g[j] = i;
            g[h + j] = f;
            g[2 * h + j] = gg;
            g[3 * h + j] = o;
            let c = f * c_prev[r * h + j] + i * gg;
            c_new[r * h + j] = c;
            m[r * h + j] = o * c.tanh();
        }
    }
}

/// LSTM step, backward.
///
/// - `gates` (n, 4H): the activations saved by [`lstm_forward`]; `c_prev`, `c_new` (n, H).
/// - `dm` (n, H): the gradient with respect to `m = o * tanh(c_new)`.
/// - `dc` (n, H): in: the gradient reaching `c_new` from the next step; out: the gradient with
///   respect to `c_prev`.
/// - `dgates` (n, 4H): out, the gradient with respect to the pre-activations.
#[allow(clippy::too_many_arguments)]
pub fn lstm_backward<T: Real>(
    n: usize,
    h: usize,
    gates: &[T],
    c_prev: &[T],
    c_new: &[T],
    dm: &[T],
    dc: &mut [T],
    dgates: &mut [T],
) {
    for r in 0..n {
        let g = &gates[r * 4 * h..(r + 1) * 4 * h];
        let dg = &mut dgates[r * 4 * h..(r + 1) * 4 * h];
        for j in 0..h {
            let (i, f, gg, o) = (g[j], g[h + j], g[2 * h + j], g[3 * h + j]);
            let k = r * h + j;
            let tc = c_new[k].tanh();
            let dmk = dm[k];
            let dct = dc[k] + dmk * o * (T::ONE - tc * tc);
            dg[j] = dct * gg * i * (T::ONE - i);
            dg[h + j] = dct * c_prev[k] * f * (T::ONE - f);
            dg[2 * h + j] = dct * i * (T::ONE - gg * gg);
            dg[3 * h + j] = dmk * tc * o * (T::ONE - o);
            dc[k] = dct * f;
        }
    }
}

/// GRU step, forward (PyTorch's "reset-after" form).
///
/// - `gi` (n, 3H): in: `x W_ihᵀ + b_ih`; out: the activations `[r | z | n]`.
/// - `gh` (n, 3H): `h_prev W_hhᵀ` without bias; `b_hh` (3H) is added here when present.
/// - `h_prev` (n, H); `hn` (n, H): out, `W_hn h_prev + b_hn` (kept for the backward pass);
///   `h_new` (n, H): out, `(1 - z) * n + z * h_prev`.
#[allow(clippy::too_many_arguments)]
pub fn gru_forward<T: Real>(
    n: usize,
    h: usize,
    gi: &mut [T],
    gh: &[T],
    b_hh: Option<&[T]>,
    h_prev: &[T],
    hn: &mut [T],
    h_new: &mut [T],
) {
    for r in 0..n {
        let a = &mut gi[r * 3 * h..(r + 1) * 3 * h];
        let b = &gh[r * 3 * h..(r + 1) * 3 * h];
        for j in 0..h {
            let (br, bz, bn) = match b_hh {
                Some(bias) => (bias[j], bias[h + j], bias[2 * h + j]),
                None => (T::ZERO, T::ZERO, T::ZERO),
            };
            let rg = (a[j] + b[j] + br).sigmoid();
            let zg = (a[h + j] + b[h + j] + bz).sigmoid();
            let hnj = b[2 * h + j] + bn;
            let ng = (a[2 * h + j] + rg * hnj).tanh();
            a[j] = rg;
            a[h + j] = zg;
            a[2 * h + j] = ng;
            let k = r * h + j;
            hn[k] = hnj;
            h_new[k] = (T::ONE - zg) * ng + zg * h_prev[k];
        }
    }
}

/// GRU step, backward.
///
/// - `gates` (n, 3H): `[r | z | n]` from [`gru_forward`]; `hn` (n, H); `h_prev` (n, H).
/// - `dh` (n, H): in: the gradient with respect to `h_new`; out: its direct part
///   `dh * z` of the gradient with respect to `h_prev` (the caller adds `dgh W_hh`).
/// - `dgi` (n, 3H): out, the gradient with respect to `x W_ihᵀ + b_ih`.
/// - `dgh` (n, 3H): out, the gradient with respect to `h_prev W_hhᵀ + b_hh`.
#[allow(clippy::too_many_arguments)]
pub fn gru_backward<T: Real>(
    n: usize,
    h: usize,
    gates: &[T],
    hn: &[T],
    h_prev: &[T],
    dh: &mut [T],
    dgi: &mut [T],
    dgh: &mut [T],
) {
    for r in 0..n {
        let g = &gates[r * 3 * h..(r + 1) * 3 * h];
        let di = &mut dgi[r * 3 * h..(r + 1) * 3 * h];
        let dhh = &mut dgh[r * 3 * h..(r + 1) * 3 * h];
        for j in 0..h {
            let (rg, zg, ng) = (g[j], g[h + j], g[2 * h + j]);
            let k = r * h + j;
            let d = dh[k];
            let dan = d * (T::ONE - zg) * (T::ONE - ng * ng);
            let daz = d * (h_prev[k] - ng) * zg * (T::ONE - zg);
            let dar = dan * hn[k] * rg * (T::ONE - rg);
            di[j] = dar;
            di[h + j] = daz;
            di[2 * h + j] = dan;
            dhh[j] = dar;
            dhh[h + j] = daz;
            dhh[2 * h + j] = dan * rg;
            dh[k] = d * zg;
        }
    }
}

/// Elman RNN step, forward: `h_new = act(a)` with act = tanh or relu; `a` and `h_new` hold
/// `len` elements.
pub fn rnn_forward<T: Real>(a: &[T], h_new: &mut [T], relu: bool) {
    if relu {
        for (y, &x) in h_new.iter_mut().zip(a) {
            *y = x.relu();
        }
    } else {
        for (y, &x) in h_new.iter_mut().zip(a) {
            *y = x.tanh();
        }
    }
}

/// Elman RNN step, backward: `da = dh * act'(a)`, computed from the output `h_new`
/// (tanh: `1 - h²`; relu: `1[h > 0]`, as PyTorch's threshold backward).
pub fn rnn_backward<T: Real>(h_new: &[T], dh: &[T], da: &mut [T], relu: bool) {
    for ((d, &y), &g) in da.iter_mut().zip(h_new).zip(dh) {
        *d = if relu {
            if y > T::ZERO {
                g
            } else {
                T::ZERO
            }
        } else {
            g * (T::ONE - y * y)
        };
    }
}
