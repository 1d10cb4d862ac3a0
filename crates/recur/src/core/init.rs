//! The initializations the long-range results depend on:
//!
//! - [`irnn`]: the identity recurrent matrix of a ReLU RNN, with zero biases (IRNN: Le, Jaitly
//!   & Hinton 2015, "A simple way to initialize recurrent networks of rectified linear units");
//! - [`orthogonal_recurrent`]: every gate block of every recurrent matrix orthogonal, drawn as
//!   `torch.nn.init.orthogonal_` draws a matrix (QR of a Gaussian matrix, signs fixed so that
//!   R has a positive diagonal), see [`orthogonal`];
//! - [`forget_gate_bias`]: an LSTM's forget-gate bias set to a value (usually 1; Gers et al.
//!   2000, Jozefowicz et al. 2015).
//!
//! Each changes the parameters of an existing model in place and leaves the others as they
//! are (e.g. PyTorch's default U(-1/√H, 1/√H) for `weight_ih`).

use crate::core::config::Mode;
use crate::core::layout::ParamKind;
use crate::core::rnn::Rnn;
use crate::error::{Error, Result};
use crate::nn::normal_values;
use recur_kernels::Real;

/// IRNN: every recurrent matrix `weight_hh_l*` set to `scale · I` and every bias (`bias_ih`,
/// `bias_hh`) to 0. Le et al. use `scale = 1` with a ReLU RNN (`Mode::RnnRelu`); a tanh RNN is
/// accepted too. An error for an LSTM or GRU, whose recurrent matrix stacks several gates.
pub fn irnn<T: Real>(rnn: &mut Rnn<T>, scale: f64) -> Result<()> {
    let mode = rnn.config().mode;
    if !matches!(mode, Mode::RnnRelu | Mode::RnnTanh) {
        return Err(Error::Config(format!(
            "the identity initialization (IRNN) needs a plain RNN (rnn_relu or rnn_tanh), not {mode}"
        )));
    }
    let h = rnn.config().hidden_size;
    let entries = rnn.layout().entries().to_vec();
    let p = rnn.params_mut();
    for e in entries {
        match e.kind {
            ParamKind::WeightHh => {
                let w = &mut p[e.range()];
                w.fill(T::ZERO);
                for k in 0..h {
                    w[k * h + k] = T::from_f64(scale);
                }
            }
            ParamKind::BiasIh | ParamKind::BiasHh => p[e.range()].fill(T::ZERO),
            _ => {}
        }
    }
    Ok(())
}

/// The Q factor of the QR decomposition of the (rows, cols) row-major matrix `a`, rows ≥ cols,
/// with the signs of its columns chosen so that R has a non-negative diagonal: (rows, cols) with
/// orthonormal columns, `a = Q R`. Householder reflections in f64. For a full-rank `a` this Q is
/// unique, so it equals what `torch.linalg.qr` followed by `q *= diag(r).sign()` gives.
pub fn qr_q(a: &[f64], rows: usize, cols: usize) -> Vec<f64> {
    assert!(
        rows >= cols,
        "qr_q: needs rows >= cols, got ({rows}, {cols})"
    );
    assert_eq!(a.len(), rows * cols, "qr_q: a must be (rows, cols)");
    let (m, n) = (rows, cols);
    let mut r = a.to_vec();
    // The Householder vectors, v_k over rows k..m, and the diagonal of R.
    let mut vs: Vec<Vec<f64>> = Vec::with_capacity(n);
    let mut diag = vec![0.0; n];
    for k in 0..n {
        let x: Vec<f64> = (k..m).map(|i| r[i * n + k]).collect();
        let nx = x.iter().map(|v| v * v).sum::<f64>().sqrt();
        if nx == 0.0 {
            vs.push(Vec::new());
            continue;
        }
        // alpha = -sign(x0)·‖x‖ avoids cancellation; H x = alpha e1.
        let alpha = if x[0] >= 0.0 { -nx } else { nx };
        let mut v = x;
        v[0] -= alpha;
        let nv = v.iter().map(|t| t * t).sum::<f64>().sqrt();
        v.iter_mut().for_each(|t| *t /= nv);
        // R[k.., k..] -= 2 v (vᵀ R[k.., k..])
        for j in k..n {
            let s: f64 = (k..m).map(|i| v[i - k] * r[i * n + j]).sum();
            for i in k..m {
                r[i * n + j] -= 2.0 * v[i - k] * s;
            }
        }
        diag[k] = alpha;
        vs.push(v);
    }
    // Q = H_0 H_1 ... H_{n-1} [I; 0]: apply the reflections to the thin identity, last first.
    let mut q = vec![0.0; m * n];
    for k in 0..n {
        q[k * n + k] = 1.0;
    }
    for k in (0..n).rev() {
        let v = &vs[k];
        if v.is_empty() {
            continue;
        }
        for j in 0..n {
            let s: f64 = (k..m).map(|i| v[i - k] * q[i * n + j]).sum();
            for i in k..m {
                q[i * n + j] -= 2.0 * v[i - k] * s;
            }
        }
    }
    // Sign correction: column k times sign(R_kk).
    for (k, &d) in diag.iter().enumerate() {
        if d < 0.0 {
            for i in 0..m {
                q[i * n + k] = -q[i * n + k];
            }
        }
    }
    q
}

/// A (rows, cols) matrix drawn as `torch.nn.init.orthogonal_(w, gain)` draws it: a Gaussian
/// matrix (transposed when rows < cols), its Q factor with the sign correction of [`qr_q`]
/// (transposed back), times `gain`. Orthonormal rows or columns, whichever are fewer.
/// Gaussians come from a generator seeded with `seed`.
pub fn orthogonal(rows: usize, cols: usize, gain: f64, seed: u64) -> Vec<f64> {
    let (m, n) = (rows.max(cols), rows.min(cols));
    let g = normal_values(m * n, seed);
    let q = qr_q(&g, m, n);
    let mut out = vec![0.0; rows * cols];
    for i in 0..m {
        for j in 0..n {
            let v = gain * q[i * n + j];
            if rows >= cols {
                out[i * cols + j] = v;
            } else {
                out[j * cols + i] = v;
            }
        }
    }
    out
}

/// Every gate block (H, H_out) of every recurrent matrix `weight_hh_l*` set to an independent
/// [`orthogonal`] matrix times `gain`, one block per gate (LSTM `i, f, g, o`; GRU `r, z, n`;
/// RNN: the whole matrix). Block k of parameter number p uses the seed `seed + 16 p + k`.
pub fn orthogonal_recurrent<T: Real>(rnn: &mut Rnn<T>, gain: f64, seed: u64) -> Result<()> {
    let c = rnn.config().clone();
    let (h, hout, gates) = (c.hidden_size, c.h_out(), c.mode.gates());
    let entries = rnn.layout().entries().to_vec();
    let p = rnn.params_mut();
    for (pi, e) in entries
        .iter()
        .filter(|e| e.kind == ParamKind::WeightHh)
        .enumerate()
    {
        let w = &mut p[e.range()];
        for k in 0..gates {
            let block = orthogonal(h, hout, gain, seed.wrapping_add(16 * pi as u64 + k as u64));
            for (dst, &v) in w[k * h * hout..(k + 1) * h * hout].iter_mut().zip(&block) {
                *dst = T::from_f64(v);
            }
        }
    }
    Ok(())
}

/// An LSTM's forget-gate bias: in every layer and direction, the forget block (rows H..2H in
/// PyTorch's gate order `i, f, g, o`) of `bias_ih` set to `value` and that of `bias_hh` to 0,
/// so the forget gate starts at sigmoid(value + w·x + u·h). An error for other cells or without
/// biases.
pub fn forget_gate_bias<T: Real>(rnn: &mut Rnn<T>, value: f64) -> Result<()> {
    let c = rnn.config().clone();
    if c.mode != Mode::Lstm {
        return Err(Error::Config(format!(
            "a forget-gate bias needs an LSTM, not {}",
            c.mode
        )));
    }
    if !c.bias {
        return Err(Error::Config(
            "a forget-gate bias needs an LSTM with biases (bias=True)".into(),
        ));
    }
    let h = c.hidden_size;
    let entries = rnn.layout().entries().to_vec();
    let p = rnn.params_mut();
    for e in entries {
        let fill = match e.kind {
            ParamKind::BiasIh => value,
            ParamKind::BiasHh => 0.0,
            _ => continue,
        };
        p[e.range()][h..2 * h].fill(T::from_f64(fill));
    }
    Ok(())
}
