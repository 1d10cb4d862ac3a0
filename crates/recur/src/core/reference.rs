//! A plain reference implementation, in f64, written straight from PyTorch's equations: one
//! sequence at a time, one step at a time, explicit loops, no GEMM, no sorting, no shared
//! buffers. It is slow on purpose; tests check the fast engine against it and check the
//! engine's gradients against its finite differences.

use crate::core::config::Mode;
use crate::core::rnn::Rnn;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// `y = W x (+ b)` for W (rows, x.len()) row-major.
fn affine(w: &[f64], x: &[f64], b: Option<&[f64]>) -> Vec<f64> {
    let rows = w.len() / x.len().max(1);
    (0..rows)
        .map(|r| {
            let dot: f64 = (0..x.len()).map(|k| w[r * x.len() + k] * x[k]).sum();
            dot + b.map_or(0.0, |b| b[r])
        })
        .collect()
}

/// The parameters of one cell (one layer, one direction).
pub struct CellParams<'a> {
    /// (G·H, in)
    pub w_ih: &'a [f64],
    /// (G·H, H_out)
    pub w_hh: &'a [f64],
    /// (G·H)
    pub b_ih: Option<&'a [f64]>,
    /// (G·H)
    pub b_hh: Option<&'a [f64]>,
    /// (P, H)
    pub w_hr: Option<&'a [f64]>,
}

/// One step of `nn.RNNCell`: `h' = act(W_ih x + b_ih + W_hh h + b_hh)`.
pub fn rnn_cell(p: &CellParams<'_>, x: &[f64], h: &[f64], relu: bool) -> Vec<f64> {
    let a = affine(p.w_ih, x, p.b_ih);
    let b = affine(p.w_hh, h, p.b_hh);
    a.iter()
        .zip(&b)
        .map(|(u, v)| {
            if relu {
                (u + v).max(0.0)
            } else {
                (u + v).tanh()
            }
        })
        .collect()
}

/// One step of `nn.LSTMCell` (with PyTorch's projection when `w_hr` is given):
/// `i, f, g, o` from the four row blocks; `c' = f c + i g`; `h' = o tanh(c')` (then `W_hr h'`).
pub fn lstm_cell(p: &CellParams<'_>, x: &[f64], h: &[f64], c: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let hs = c.len();
    let a = affine(p.w_ih, x, p.b_ih);
    let b = affine(p.w_hh, h, p.b_hh);
    let pre = |k: usize, j: usize| a[k * hs + j] + b[k * hs + j];
    let mut c2 = vec![0.0; hs];
    let mut m = vec![0.0; hs];
    for j in 0..hs {
        let i = sigmoid(pre(0, j));
        let f = sigmoid(pre(1, j));
        let g = pre(2, j).tanh();
        let o = sigmoid(pre(3, j));
        c2[j] = f * c[j] + i * g;
        m[j] = o * c2[j].tanh();
    }
    let h2 = match p.w_hr {
        Some(w) => affine(w, &m, None),
        None => m,
    };
    (h2, c2)
}

/// One step of `nn.GRUCell`: `r, z` from the first two blocks,
/// `n = tanh(W_in x + b_in + r (W_hn h + b_hn))`, `h' = (1 - z) n + z h`.
pub fn gru_cell(p: &CellParams<'_>, x: &[f64], h: &[f64]) -> Vec<f64> {
    let hs = h.len();
    let a = affine(p.w_ih, x, p.b_ih);
    let b = affine(p.w_hh, h, p.b_hh);
    (0..hs)
        .map(|j| {
            let r = sigmoid(a[j] + b[j]);
            let z = sigmoid(a[hs + j] + b[hs + j]);
            let n = (a[2 * hs + j] + r * b[2 * hs + j]).tanh();
            (1.0 - z) * n + z * h[j]
        })
        .collect()
}

/// What [`forward`] returns, in the same layouts as [`Rnn::forward`] with time-major input:
/// output (T, B, D·H_out), h_n (L·D, B, H_out), c_n (L·D, B, H).
pub struct RefOutput {
    /// (T, B, D·H_out), zero at padded positions.
    pub output: Vec<f64>,
    /// (L·D, B, H_out)
    pub h_n: Vec<f64>,
    /// (L·D, B, H), LSTM only (else empty).
    pub c_n: Vec<f64>,
}

/// The whole stack, the plain way: for each sequence b separately, for each layer, for each
/// direction, step through the sequence's own `lengths[b]` elements (reverse direction from its
/// last element back to the first). `x` is time-major (T, B, I); `h0`/`c0` as in
/// [`Rnn::forward`] (zeros when empty); `masks[l]` (T, B, D·H_out) multiplies layer l's output.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    model: &Rnn<f64>,
    x: &[f64],
    t: usize,
    b: usize,
    h0: &[f64],
    c0: &[f64],
    lengths: &[usize],
    masks: &[Vec<f64>],
) -> RefOutput {
    forward_perturbed(model, x, t, b, h0, c0, lengths, masks, None)
}

/// Where [`forward_perturbed`] adds a small number to one hidden state.
#[derive(Clone, Copy, Debug)]
pub struct Perturb {
    /// Layer.
    pub layer: usize,
    /// 0 = forward, 1 = reverse.
    pub direction: usize,
    /// Sequence (batch index).
    pub seq: usize,
    /// Time step: the state written at this step (the output at this step).
    pub time: usize,
    /// Element of h (0..H_out).
    pub unit: usize,
    /// What is added.
    pub eps: f64,
}

/// [`forward`] with `eps` added to one element of the hidden state h_t right after step t
/// computed it, before it is output, fed to step t+1 and (at the last step) returned as h_n.
/// The central difference of a loss over ±eps is the total derivative d loss / d h_t.
#[allow(clippy::too_many_arguments)]
pub fn forward_perturbed(
    model: &Rnn<f64>,
    x: &[f64],
    t: usize,
    b: usize,
    h0: &[f64],
    c0: &[f64],
    lengths: &[usize],
    masks: &[Vec<f64>],
    perturb: Option<Perturb>,
) -> RefOutput {
    let c = model.config();
    let (nl, nd, hsz, hout) = (c.num_layers, c.num_directions(), c.hidden_size, c.h_out());
    let width = nd * hout;
    let mut output = vec![0.0; t * b * width];
    let mut h_n = vec![0.0; nl * nd * b * hout];
    let mut c_n = vec![
        0.0;
        if c.mode == Mode::Lstm {
            nl * nd * b * hsz
        } else {
            0
        }
    ];
    for s in 0..b {
        let len = lengths[s];
        // seq[t] = the input of the current layer at step t for this sequence
        let mut seq: Vec<Vec<f64>> = (0..len)
            .map(|ti| x[(ti * b + s) * c.input_size..][..c.input_size].to_vec())
            .collect();
        for l in 0..nl {
            let mut out = vec![vec![0.0; width]; len];
            for d in 0..nd {
                let lay = model.layout().dir(l, d);
                let pr = model.params();
                let p = CellParams {
                    w_ih: &pr[lay.w_ih.clone()],
                    w_hh: &pr[lay.w_hh.clone()],
                    b_ih: lay.b_ih.clone().map(|r| &pr[r]),
                    b_hh: lay.b_hh.clone().map(|r| &pr[r]),
                    w_hr: lay.w_hr.clone().map(|r| &pr[r]),
                };
                let k = l * nd + d;
                let mut h = if h0.is_empty() {
                    vec![0.0; hout]
                } else {
                    h0[(k * b + s) * hout..][..hout].to_vec()
                };
                let mut cc = if c0.is_empty() {
                    vec![0.0; hsz]
                } else {
                    c0[(k * b + s) * hsz..][..hsz].to_vec()
                };
                let steps: Vec<usize> = if d == 0 {
                    (0..len).collect()
                } else {
                    (0..len).rev().collect()
                };
                for ti in steps {
                    match c.mode {
                        Mode::RnnTanh | Mode::RnnRelu => {
                            h = rnn_cell(&p, &seq[ti], &h, c.mode == Mode::RnnRelu)
                        }
                        Mode::Gru => h = gru_cell(&p, &seq[ti], &h),
                        Mode::Lstm => (h, cc) = lstm_cell(&p, &seq[ti], &h, &cc),
                    }
                    if let Some(q) = perturb {
                        if (q.layer, q.direction, q.seq, q.time) == (l, d, s, ti) {
                            h[q.unit] += q.eps;
                        }
                    }
                    out[ti][d * hout..(d + 1) * hout].copy_from_slice(&h);
                }
                h_n[(k * b + s) * hout..][..hout].copy_from_slice(&h);
                if c.mode == Mode::Lstm {
                    c_n[(k * b + s) * hsz..][..hsz].copy_from_slice(&cc);
                }
            }
            if l + 1 < nl {
                if let Some(m) = masks.get(l) {
                    for (ti, row) in out.iter_mut().enumerate() {
                        for (j, v) in row.iter_mut().enumerate() {
                            *v *= m[(ti * b + s) * width + j];
                        }
                    }
                }
            }
            seq = out;
        }
        for (ti, row) in seq.iter().enumerate() {
            output[(ti * b + s) * width..][..width].copy_from_slice(row);
        }
    }
    RefOutput { output, h_n, c_n }
}

/// `nn.LayerNorm` of one vector (biased variance, eps 1e-5), with gain and bias.
fn layer_norm(v: &[f64], gain: &[f64], bias: &[f64]) -> Vec<f64> {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    let s = (var + crate::core::regular::LN_EPS).sqrt();
    (0..v.len())
        .map(|k| gain[k] * (v[k] - mean) / s + bias[k])
        .collect()
}

/// The regularized stack of [`crate::core::regular`], the plain way: one sequence at a time,
/// one step at a time, from the equations in that module's documentation, with the given
/// masks. Layouts as in [`forward`] (unidirectional, no projection).
#[allow(clippy::too_many_arguments)]
pub fn regular_forward(
    model: &Rnn<f64>,
    x: &[f64],
    t: usize,
    b: usize,
    h0: &[f64],
    c0: &[f64],
    lengths: &[usize],
    masks: &crate::core::regular::Masks<f64>,
) -> RefOutput {
    let c = model.config();
    let (nl, hs) = (c.num_layers, c.hidden_size);
    let g = c.mode.gates() * hs;
    let lstm = c.mode == Mode::Lstm;
    let pr = model.params();
    let mut output = vec![0.0; t * b * hs];
    let mut h_n = vec![0.0; nl * b * hs];
    let mut c_n = vec![0.0; if lstm { nl * b * hs } else { 0 }];
    for s in 0..b {
        let len = lengths[s];
        let isz = c.input_size;
        let mut seq: Vec<Vec<f64>> = (0..len)
            .map(|ti| x[(ti * b + s) * isz..][..isz].to_vec())
            .collect();
        for l in 0..nl {
            let m = &masks.layers[l];
            let lay = model.layout().dir(l, 0);
            let isz = c.layer_input_size(l);
            // Weight drop: the recurrent matrix of this pass.
            let w_hh: Vec<f64> = pr[lay.w_hh.clone()]
                .iter()
                .enumerate()
                .map(|(k, w)| w * m.weight_hh.as_ref().map_or(1.0, |mm| mm[k]))
                .collect();
            let b_ih = lay.b_ih.clone().map(|r| &pr[r]);
            let b_hh = lay.b_hh.clone().map(|r| &pr[r]);
            let ln = lay.ln.as_ref();
            let mut h = if h0.is_empty() {
                vec![0.0; hs]
            } else {
                h0[(l * b + s) * hs..][..hs].to_vec()
            };
            let mut cc = if c0.is_empty() {
                vec![0.0; hs]
            } else {
                c0[(l * b + s) * hs..][..hs].to_vec()
            };
            let mut out = Vec::new();
            for (ti, xin) in seq.iter().enumerate() {
                let xd: Vec<f64> = (0..isz)
                    .map(|k| xin[k] * m.input.as_ref().map_or(1.0, |mm| mm[s * isz + k]))
                    .collect();
                let hd: Vec<f64> = (0..hs)
                    .map(|k| h[k] * m.recurrent.as_ref().map_or(1.0, |mm| mm[s * hs + k]))
                    .collect();
                let mut a = affine(&pr[lay.w_ih.clone()], &xd, None);
                let mut bb = affine(&w_hh, &hd, None);
                if let Some(ln) = ln {
                    a = layer_norm(&a, &pr[ln.ih_weight.clone()], &pr[ln.ih_bias.clone()]);
                    bb = layer_norm(&bb, &pr[ln.hh_weight.clone()], &pr[ln.hh_bias.clone()]);
                }
                for k in 0..g {
                    a[k] += b_ih.map_or(0.0, |v| v[k]);
                    bb[k] += b_hh.map_or(0.0, |v| v[k]);
                }
                let zone = |mm: &Option<Vec<f64>>, j: usize| {
                    mm.as_ref().map_or(0.0, |mm| mm[(ti * b + s) * hs + j])
                };
                let mut hnew = vec![0.0; hs];
                match c.mode {
                    Mode::Lstm => {
                        let pre = |k: usize, j: usize| a[k * hs + j] + bb[k * hs + j];
                        let mut cn: Vec<f64> = (0..hs)
                            .map(|j| {
                                sigmoid(pre(1, j)) * cc[j] + sigmoid(pre(0, j)) * pre(2, j).tanh()
                            })
                            .collect();
                        if let Some(ln) = ln {
                            let (w, bi) =
                                (ln.c_weight.clone().unwrap(), ln.c_bias.clone().unwrap());
                            cn = layer_norm(&cn, &pr[w], &pr[bi]);
                        }
                        for j in 0..hs {
                            hnew[j] = sigmoid(pre(3, j)) * cn[j].tanh();
                            let d = zone(&m.zoneout_c, j);
                            cc[j] = d * cc[j] + (1.0 - d) * cn[j];
                        }
                    }
                    Mode::Gru => {
                        for j in 0..hs {
                            let r = sigmoid(a[j] + bb[j]);
                            let z = sigmoid(a[hs + j] + bb[hs + j]);
                            let n = (a[2 * hs + j] + r * bb[2 * hs + j]).tanh();
                            hnew[j] = (1.0 - z) * n + z * h[j];
                        }
                    }
                    Mode::RnnTanh => {
                        for j in 0..hs {
                            hnew[j] = (a[j] + bb[j]).tanh();
                        }
                    }
                    Mode::RnnRelu => {
                        for j in 0..hs {
                            hnew[j] = (a[j] + bb[j]).max(0.0);
                        }
                    }
                }
                for j in 0..hs {
                    let d = zone(&m.zoneout_h, j);
                    h[j] = d * h[j] + (1.0 - d) * hnew[j];
                }
                let mut y = h.clone();
                if let Some(om) = &m.output {
                    let base = if c.regular.locked_dropout {
                        s * hs
                    } else {
                        (ti * b + s) * hs
                    };
                    for (j, v) in y.iter_mut().enumerate() {
                        *v *= om[base + j];
                    }
                }
                out.push(y);
            }
            h_n[(l * b + s) * hs..][..hs].copy_from_slice(&h);
            if lstm {
                c_n[(l * b + s) * hs..][..hs].copy_from_slice(&cc);
            }
            seq = out;
        }
        for (ti, row) in seq.iter().enumerate() {
            output[(ti * b + s) * hs..][..hs].copy_from_slice(row);
        }
    }
    RefOutput { output, h_n, c_n }
}
