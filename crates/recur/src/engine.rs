//! The forward and backward passes over flat buffers.
//!
//! Everything here is time-major, `(T, B, ·)`, with the batch sorted by decreasing length, so
//! that the sequences still running at step t are the first `batch_sizes[t]` rows (the layout of
//! a PyTorch `PackedSequence`). The public API in [`crate::rnn`] sorts and transposes on the way
//! in and undoes it on the way out.
//!
//! Per (layer, direction):
//! - forward: the input projection `X W_ihᵀ + b` for all T·B rows is one GEMM before the time
//!   loop; inside it only `h_{t-1} W_hhᵀ` (and the LSTM projection) and the fused gate kernel run;
//! - backward: only `dh_{t-1} = dG_t W_hh` runs in the time loop; `dW_ih`, `dW_hh`, `dW_hr`, the
//!   biases and `dx` are each one GEMM (or column sum) over all T·B rows after it;
//! - nothing is allocated inside the time loop: every buffer is sized before it.
//!
//! State buffers `hs` (T+1, B, H_out) hold the states in time order. The forward direction
//! starts at slot 0 and writes slot t+1 at time t; the reverse direction starts at slot T and
//! writes slot t at time t. So the state before time t is always one contiguous block of the
//! buffer: `hs[0..T]` (forward) or `hs[1..T+1]` (reverse), which makes `dW_hh` one GEMM.
//! Rows that are not running at time t copy their state forward unchanged (a finished sequence
//! keeps its final state; in the reverse direction a sequence not yet started keeps h0).

use crate::config::Mode;
use recur_kernels::cells;
use recur_kernels::gemm::{matmul, MatMut, MatRef, Par};
use recur_kernels::Real;

/// Sizes of one (layer, direction).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dims {
    pub mode: Mode,
    /// hidden_size H
    pub h: usize,
    /// size of h: P for a projected LSTM, else H
    pub hout: usize,
    /// input size of this layer
    pub input: usize,
}

impl Dims {
    /// G·H: the width of the gate pre-activations.
    pub fn gh(&self) -> usize {
        self.mode.gates() * self.h
    }
    pub fn proj(&self) -> bool {
        self.hout != self.h
    }
}

/// How many sequences run at each step (lengths sorted in decreasing order).
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub t: usize,
    pub b: usize,
    /// (T): the number of sequences whose length exceeds t.
    pub batch_sizes: Vec<usize>,
}

impl Plan {
    /// `sorted_lengths` must be in decreasing order, each in 1..=t.
    pub fn new(t: usize, sorted_lengths: &[usize]) -> Plan {
        let batch_sizes = (0..t)
            .map(|s| sorted_lengths.iter().filter(|&&l| l > s).count())
            .collect();
        Plan {
            t,
            b: sorted_lengths.len(),
            batch_sizes,
        }
    }
}

/// The parameters of one (layer, direction), as slices of the flat buffer.
pub(crate) struct DirParams<'a, T> {
    /// (G·H, in)
    pub w_ih: &'a [T],
    /// (G·H, H_out)
    pub w_hh: &'a [T],
    /// (G·H)
    pub b_ih: Option<&'a [T]>,
    /// (G·H)
    pub b_hh: Option<&'a [T]>,
    /// (P, H)
    pub w_hr: Option<&'a [T]>,
}

/// The gradients of one (layer, direction), as slices of the flat gradient buffer.
pub(crate) struct DirGrads<'a, T> {
    pub w_ih: &'a mut [T],
    pub w_hh: &'a mut [T],
    pub b_ih: Option<&'a mut [T]>,
    pub b_hh: Option<&'a mut [T]>,
    pub w_hr: Option<&'a mut [T]>,
}

/// What the forward pass of one (layer, direction) keeps for the backward pass.
#[derive(Clone, Debug, Default)]
pub(crate) struct DirState<T> {
    /// (T, B, G·H): LSTM `[i f g o]`, GRU `[r z n]` after activation; RNN pre-activations.
    pub gates: Vec<T>,
    /// (T+1, B, H_out): states, in time order (see the module docs).
    pub hs: Vec<T>,
    /// LSTM: (T+1, B, H) cell states, same order as `hs`.
    pub cs: Vec<T>,
    /// LSTM with projection: (T, B, H), `o * tanh(c)` before the projection.
    pub ms: Vec<T>,
    /// GRU: (T, B, H), `W_hn h + b_hn`.
    pub hn: Vec<T>,
    /// GRU scratch: (B, 3H), `h W_hhᵀ`.
    pub scratch: Vec<T>,
}

impl<T: Real> DirState<T> {
    pub fn new(d: &Dims, plan: &Plan) -> DirState<T> {
        let (t, b) = (plan.t, plan.b);
        let lstm = d.mode == Mode::Lstm;
        let gru = d.mode == Mode::Gru;
        DirState {
            gates: vec![T::ZERO; t * b * d.gh()],
            hs: vec![T::ZERO; (t + 1) * b * d.hout],
            cs: if lstm {
                vec![T::ZERO; (t + 1) * b * d.h]
            } else {
                vec![]
            },
            ms: if lstm && d.proj() {
                vec![T::ZERO; t * b * d.h]
            } else {
                vec![]
            },
            hn: if gru {
                vec![T::ZERO; t * b * d.h]
            } else {
                vec![]
            },
            scratch: if gru {
                vec![T::ZERO; b * d.gh()]
            } else {
                vec![]
            },
        }
    }
    /// The final state slot: T for the forward direction, 0 for the reverse.
    pub fn last_slot(&self, plan: &Plan, reverse: bool) -> usize {
        if reverse {
            0
        } else {
            plan.t
        }
    }
}

/// (slot a of `buf`, slot b of `buf`, mutable), slots of `len` elements, a != b.
fn two_slots<T>(buf: &mut [T], a: usize, b: usize, len: usize) -> (&[T], &mut [T]) {
    if a < b {
        let (lo, hi) = buf.split_at_mut(b * len);
        (&lo[a * len..(a + 1) * len], &mut hi[..len])
    } else {
        let (lo, hi) = buf.split_at_mut(a * len);
        (&hi[..len], &mut lo[b * len..(b + 1) * len])
    }
}

/// Adds the biases to `rows` rows of gate pre-activations `g` (rows, G·H). LSTM and RNN fold
/// `b_hh` in here; the GRU adds `b_hh` inside its gate kernel (its n block needs it apart).
pub(crate) fn add_biases<T: Real>(d: &Dims, p: &DirParams<'_, T>, g: &mut [T], rows: usize) {
    let gh = d.gh();
    let fold_hh = d.mode != Mode::Gru;
    for row in g[..rows * gh].chunks_exact_mut(gh) {
        if let Some(b) = p.b_ih {
            for (x, &bi) in row.iter_mut().zip(b) {
                *x += bi;
            }
        }
        if fold_hh {
            if let Some(b) = p.b_hh {
                for (x, &bh) in row.iter_mut().zip(b) {
                    *x += bh;
                }
            }
        }
    }
}

/// One time step for rows 0..n. `gates` (n, G·H) holds `x W_ihᵀ` plus the biases of
/// [`add_biases`]; on return it holds what the backward pass needs. `m` (n, H) is used by a
/// projected LSTM, `hn` (n, H) and `gh` (n, 3H) by the GRU; pass empty slices otherwise.
#[allow(clippy::too_many_arguments)]
pub(crate) fn step<T: Real>(
    d: &Dims,
    p: &DirParams<'_, T>,
    n: usize,
    gates: &mut [T],
    h_prev: &[T],
    h_new: &mut [T],
    c_prev: &[T],
    c_new: &mut [T],
    m: &mut [T],
    hn: &mut [T],
    gh: &mut [T],
) {
    let (h, hout, g) = (d.h, d.hout, d.gh());
    let hp = MatRef::new(h_prev, n, hout);
    let w_hh_t = MatRef::new(p.w_hh, g, hout).t();
    match d.mode {
        Mode::Lstm => {
            matmul(MatMut::new(gates, n, g), hp, w_hh_t, true, Par::Seq);
            if let Some(w_hr) = p.w_hr {
                cells::lstm_forward(n, h, gates, c_prev, c_new, m);
                let w_hr_t = MatRef::new(w_hr, hout, h).t();
                matmul(
                    MatMut::new(h_new, n, hout),
                    MatRef::new(m, n, h),
                    w_hr_t,
                    false,
                    Par::Seq,
                );
            } else {
                cells::lstm_forward(n, h, gates, c_prev, c_new, h_new);
            }
        }
        Mode::Gru => {
            matmul(MatMut::new(gh, n, g), hp, w_hh_t, false, Par::Seq);
            cells::gru_forward(n, h, gates, gh, p.b_hh, h_prev, hn, h_new);
        }
        Mode::RnnTanh | Mode::RnnRelu => {
            matmul(MatMut::new(gates, n, g), hp, w_hh_t, true, Par::Seq);
            cells::rnn_forward(
                &gates[..n * h],
                &mut h_new[..n * h],
                d.mode == Mode::RnnRelu,
            );
        }
    }
}

/// Forward pass of one (layer, direction) over the whole sequence.
///
/// `x` (T·B, in) is the layer input, zero at padded positions; `h0` (B, H_out), `c0` (B, H).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dir_forward<T: Real>(
    d: &Dims,
    p: &DirParams<'_, T>,
    plan: &Plan,
    x: &[T],
    h0: &[T],
    c0: &[T],
    reverse: bool,
    s: &mut DirState<T>,
) {
    let (tn, b, g, h, hout) = (plan.t, plan.b, d.gh(), d.h, d.hout);
    let rows = tn * b;
    // Input projection for every step at once: gates (T·B, G·H) = x (T·B, in) · W_ihᵀ.
    matmul(
        MatMut::new(&mut s.gates, rows, g),
        MatRef::new(x, rows, d.input),
        MatRef::new(p.w_ih, g, d.input).t(),
        false,
        Par::Threads,
    );
    add_biases(d, p, &mut s.gates, rows);
    let init = if reverse { tn } else { 0 };
    s.hs[init * b * hout..(init + 1) * b * hout].copy_from_slice(h0);
    let lstm = d.mode == Mode::Lstm;
    if lstm {
        s.cs[init * b * h..(init + 1) * b * h].copy_from_slice(c0);
    }
    let mut empty: [T; 0] = [];
    for k in 0..tn {
        let t = if reverse { tn - 1 - k } else { k };
        let n = plan.batch_sizes[t];
        let (prev, new) = if reverse { (t + 1, t) } else { (t, t + 1) };
        let (hp, hnw) = two_slots(&mut s.hs, prev, new, b * hout);
        hnw[n * hout..].copy_from_slice(&hp[n * hout..]);
        let (cp, cnw): (&[T], &mut [T]) = if lstm {
            let (cp, cnw) = two_slots(&mut s.cs, prev, new, b * h);
            cnw[n * h..].copy_from_slice(&cp[n * h..]);
            (cp, cnw)
        } else {
            (&[], &mut [])
        };
        let m: &mut [T] = if s.ms.is_empty() {
            &mut empty
        } else {
            &mut s.ms[t * b * h..(t + 1) * b * h]
        };
        let hn: &mut [T] = if s.hn.is_empty() {
            &mut []
        } else {
            &mut s.hn[t * b * h..(t + 1) * b * h]
        };
        step(
            d,
            p,
            n,
            &mut s.gates[t * b * g..(t + 1) * b * g],
            hp,
            hnw,
            cp,
            cnw,
            m,
            hn,
            &mut s.scratch,
        );
    }
}

/// Scratch space of the backward pass of one (layer, direction), sized once per call.
#[derive(Debug, Default)]
pub(crate) struct BwdWork<T> {
    /// (T, B, G·H): gradient of the input-side pre-activations.
    dg: Vec<T>,
    /// GRU: (T, B, 3H): gradient of the hidden-side pre-activations `h W_hhᵀ + b_hh`.
    dgh: Vec<T>,
    /// LSTM with projection: (T, B, P): gradient of h at every step, for `dW_hr`.
    dhs: Vec<T>,
    /// (B, H_out): gradient of the running h.
    dh: Vec<T>,
    /// LSTM: (B, H): gradient of the running c.
    dc: Vec<T>,
    /// LSTM with projection: (B, H): gradient of m.
    dm: Vec<T>,
    /// (H_out, G·H): W_hh transposed once per call, so that the per-step product
    /// `dG W_hh = dG (W_hhᵀ)ᵀ` reads it with the same layout as the forward pass.
    w_hh_t: Vec<T>,
    /// LSTM with projection: (H, P): W_hr transposed once per call.
    w_hr_t: Vec<T>,
}

impl<T: Real> BwdWork<T> {
    pub fn new(d: &Dims, plan: &Plan) -> BwdWork<T> {
        let (t, b) = (plan.t, plan.b);
        let lstm = d.mode == Mode::Lstm;
        BwdWork {
            dg: vec![T::ZERO; t * b * d.gh()],
            dgh: if d.mode == Mode::Gru {
                vec![T::ZERO; t * b * d.gh()]
            } else {
                vec![]
            },
            dhs: if lstm && d.proj() {
                vec![T::ZERO; t * b * d.hout]
            } else {
                vec![]
            },
            w_hh_t: vec![T::ZERO; d.hout * d.gh()],
            w_hr_t: if lstm && d.proj() {
                vec![T::ZERO; d.h * d.hout]
            } else {
                vec![]
            },
            dh: vec![T::ZERO; b * d.hout],
            dc: if lstm { vec![T::ZERO; b * d.h] } else { vec![] },
            dm: if lstm && d.proj() {
                vec![T::ZERO; b * d.h]
            } else {
                vec![]
            },
        }
    }
}

/// The upstream gradient of one direction's output: rows of `ld` elements, this direction's
/// H_out columns starting at `col`.
pub(crate) struct DyView<'a, T> {
    pub data: &'a [T],
    pub ld: usize,
    pub col: usize,
}

/// Backward pass of one (layer, direction): accumulates the parameter gradients into `gr`,
/// accumulates the input gradient into `dx` (T·B, in), and writes the initial-state gradients
/// `dh0` (B, H_out) and `dc0` (B, H).
#[allow(clippy::too_many_arguments)]
pub(crate) fn dir_backward<T: Real>(
    d: &Dims,
    p: &DirParams<'_, T>,
    plan: &Plan,
    x: &[T],
    s: &DirState<T>,
    reverse: bool,
    dy: Option<DyView<'_, T>>,
    dh_n: Option<&[T]>,
    dc_n: Option<&[T]>,
    gr: DirGrads<'_, T>,
    dx: &mut [T],
    dh0: &mut [T],
    dc0: &mut [T],
    w: &mut BwdWork<T>,
) {
    let (tn, b, g, h, hout) = (plan.t, plan.b, d.gh(), d.h, d.hout);
    let rows = tn * b;
    match dh_n {
        Some(v) => w.dh.copy_from_slice(v),
        None => w.dh.fill(T::ZERO),
    }
    if d.mode == Mode::Lstm {
        match dc_n {
            Some(v) => w.dc.copy_from_slice(v),
            None => w.dc.fill(T::ZERO),
        }
    }
    transpose(p.w_hh, g, hout, &mut w.w_hh_t);
    let w_hh = MatRef::new(&w.w_hh_t[..], hout, g).t();
    if let Some(w_hr) = p.w_hr {
        transpose(w_hr, hout, h, &mut w.w_hr_t);
    }
    let w_hr = MatRef::new(&w.w_hr_t[..], h, hout).t();
    for k in 0..tn {
        let t = if reverse { k } else { tn - 1 - k };
        let n = plan.batch_sizes[t];
        let (prev, new) = if reverse { (t + 1, t) } else { (t, t + 1) };
        if let Some(dy) = &dy {
            for r in 0..n {
                let src = &dy.data[(t * b + r) * dy.ld + dy.col..][..hout];
                for (a, &v) in w.dh[r * hout..(r + 1) * hout].iter_mut().zip(src) {
                    *a += v;
                }
            }
        }
        let dgt = &mut w.dg[t * b * g..(t + 1) * b * g];
        dgt[n * g..].fill(T::ZERO);
        let gates = &s.gates[t * b * g..(t + 1) * b * g];
        match d.mode {
            Mode::Lstm => {
                let cp = &s.cs[prev * b * h..(prev + 1) * b * h];
                let cn = &s.cs[new * b * h..(new + 1) * b * h];
                if p.w_hr.is_some() {
                    let dhs = &mut w.dhs[t * b * hout..(t + 1) * b * hout];
                    dhs[..n * hout].copy_from_slice(&w.dh[..n * hout]);
                    dhs[n * hout..].fill(T::ZERO);
                    matmul(
                        MatMut::new(&mut w.dm, n, h),
                        MatRef::new(&w.dh, n, hout),
                        w_hr,
                        false,
                        Par::Seq,
                    );
                    cells::lstm_backward(n, h, gates, cp, cn, &w.dm, &mut w.dc, dgt);
                } else {
                    cells::lstm_backward(n, h, gates, cp, cn, &w.dh, &mut w.dc, dgt);
                }
                matmul(
                    MatMut::new(&mut w.dh, n, hout),
                    MatRef::new(dgt, n, g),
                    w_hh,
                    false,
                    Par::Seq,
                );
            }
            Mode::Gru => {
                let dght = &mut w.dgh[t * b * g..(t + 1) * b * g];
                dght[n * g..].fill(T::ZERO);
                let hp = &s.hs[prev * b * hout..(prev + 1) * b * hout];
                let hn = &s.hn[t * b * h..(t + 1) * b * h];
                cells::gru_backward(n, h, gates, hn, hp, &mut w.dh, dgt, dght);
                matmul(
                    MatMut::new(&mut w.dh, n, hout),
                    MatRef::new(dght, n, g),
                    w_hh,
                    true,
                    Par::Seq,
                );
            }
            Mode::RnnTanh | Mode::RnnRelu => {
                let hnw = &s.hs[new * b * hout..(new + 1) * b * hout];
                cells::rnn_backward(
                    &hnw[..n * h],
                    &w.dh[..n * h],
                    &mut dgt[..n * h],
                    d.mode == Mode::RnnRelu,
                );
                matmul(
                    MatMut::new(&mut w.dh, n, hout),
                    MatRef::new(dgt, n, g),
                    w_hh,
                    false,
                    Par::Seq,
                );
            }
        }
    }
    dh0.copy_from_slice(&w.dh);
    if d.mode == Mode::Lstm {
        dc0.copy_from_slice(&w.dc);
    }
    // Everything below is one GEMM (or column sum) over all T·B rows.
    let dg = MatRef::new(&w.dg, rows, g);
    let dgh = if d.mode == Mode::Gru {
        MatRef::new(&w.dgh[..], rows, g)
    } else {
        dg
    };
    // dW_ih (G·H, in) += dGᵀ · x
    matmul(
        MatMut::new(gr.w_ih, g, d.input),
        dg.t(),
        MatRef::new(x, rows, d.input),
        true,
        Par::Threads,
    );
    // dW_hh (G·H, H_out) += dG_hᵀ · h_prev, h_prev = hs[0..T] or hs[1..T+1]
    let hprev = if reverse {
        &s.hs[b * hout..]
    } else {
        &s.hs[..rows * hout]
    };
    matmul(
        MatMut::new(gr.w_hh, g, hout),
        dgh.t(),
        MatRef::new(hprev, rows, hout),
        true,
        Par::Threads,
    );
    if let Some(db) = gr.b_ih {
        col_sum(&w.dg, g, db);
    }
    if let Some(db) = gr.b_hh {
        col_sum(dgh.data, g, db);
    }
    if let Some(dw_hr) = gr.w_hr {
        // dW_hr (P, H) += dhsᵀ · m
        matmul(
            MatMut::new(dw_hr, hout, h),
            MatRef::new(&w.dhs, rows, hout).t(),
            MatRef::new(&s.ms, rows, h),
            true,
            Par::Threads,
        );
    }
    // dx (T·B, in) += dG · W_ih
    matmul(
        MatMut::new(dx, rows, d.input),
        dg,
        MatRef::new(p.w_ih, g, d.input),
        true,
        Par::Threads,
    );
}

/// `dst` (cols, rows) = `src` (rows, cols) transposed.
fn transpose<T: Real>(src: &[T], rows: usize, cols: usize, dst: &mut [T]) {
    for r in 0..rows {
        for c in 0..cols {
            dst[c * rows + r] = src[r * cols + c];
        }
    }
}

/// `out[j] += Σ_rows m[row, j]` for a (rows, cols) matrix `m`.
fn col_sum<T: Real>(m: &[T], cols: usize, out: &mut [T]) {
    for row in m.chunks_exact(cols) {
        for (o, &v) in out.iter_mut().zip(row) {
            *o += v;
        }
    }
}
