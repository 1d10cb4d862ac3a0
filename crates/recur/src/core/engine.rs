//! The forward and backward passes over flat buffers.
//!
//! Everything here is time-major, `(T, B, ·)`, with the batch sorted by decreasing length, so
//! that the sequences still running at step t are the first `batch_sizes[t]` rows (the layout of
//! a PyTorch `PackedSequence`). The public API in [`crate::core::rnn`] sorts and transposes on the way
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

use crate::core::config::Mode;
use recur_kernels::cells;
use recur_kernels::gemm::{matmul, MatMut, MatRef, Par};
use recur_kernels::gru;
use recur_kernels::lstm::LstmPackedB;
use recur_kernels::packed::PackedB;
use recur_kernels::pool::Buf;
use recur_kernels::rnn;
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

/// One group of rows: a sub-batch whose time loop runs on its own thread.
#[derive(Clone, Debug)]
pub(crate) struct Group {
    /// First internal batch position of the group.
    pub off: usize,
    /// Number of rows.
    pub b: usize,
    /// (T): how many of the group's rows still run at step t (they are sorted by length).
    pub batch_sizes: Vec<usize>,
}

/// The internal order of a batch: sorted by decreasing length, then dealt round-robin into
/// groups (so that every group gets long and short sequences alike). Buffers of shape
/// (T, B, ·) are stored group after group: group g's rows are one contiguous (T, b_g, ·) block.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub t: usize,
    pub b: usize,
    pub groups: Vec<Group>,
    /// internal position p → (group, row within the group)
    pos: Vec<(usize, usize)>,
}

impl Plan {
    /// `sorted_lengths` in decreasing order, each in 1..=t; `n_groups` ≥ 1.
    pub fn new(t: usize, sorted_lengths: &[usize], n_groups: usize) -> Plan {
        let b = sorted_lengths.len();
        let ng = n_groups.clamp(1, b.max(1));
        let mut groups = Vec::with_capacity(ng);
        let mut off = 0;
        for g in 0..ng {
            // Sorted positions g, g + ng, g + 2ng, ... belong to group g.
            let lens: Vec<usize> = sorted_lengths.iter().skip(g).step_by(ng).copied().collect();
            let batch_sizes = (0..t)
                .map(|s| lens.iter().filter(|&&l| l > s).count())
                .collect();
            groups.push(Group {
                off,
                b: lens.len(),
                batch_sizes,
            });
            off += lens.len();
        }
        let mut pos = vec![(0, 0); b];
        for (g, gr) in groups.iter().enumerate() {
            for r in 0..gr.b {
                pos[gr.off + r] = (g, r);
            }
        }
        Plan { t, b, groups, pos }
    }
    /// The position in decreasing-length order of internal position p.
    pub fn sorted_pos(&self, p: usize) -> usize {
        let (g, r) = self.pos[p];
        r * self.groups.len() + g
    }
    /// Row of (time t, internal position p) in a (T·B, ·) buffer.
    pub fn row(&self, t: usize, p: usize) -> usize {
        let (g, r) = self.pos[p];
        let gr = &self.groups[g];
        gr.off * self.t + t * gr.b + r
    }
}

/// Splits `buf` into one chunk per group, of `b_g · per_row` elements each (empty chunks for an
/// empty, unused buffer).
fn group_chunks<'a, T>(mut buf: &'a mut [T], plan: &Plan, per_row: usize) -> Vec<&'a mut [T]> {
    let mut out = Vec::with_capacity(plan.groups.len());
    if buf.is_empty() {
        out.resize_with(plan.groups.len(), || &mut [][..]);
        return out;
    }
    for g in &plan.groups {
        let (a, rest) = std::mem::take(&mut buf).split_at_mut(g.b * per_row);
        out.push(a);
        buf = rest;
    }
    out
}

/// [`group_chunks`] for a read-only buffer.
fn group_chunks_ref<'a, T>(mut buf: &'a [T], plan: &Plan, per_row: usize) -> Vec<&'a [T]> {
    let mut out = Vec::with_capacity(plan.groups.len());
    if buf.is_empty() {
        out.resize(plan.groups.len(), &[][..]);
        return out;
    }
    for g in &plan.groups {
        let (a, rest) = buf.split_at(g.b * per_row);
        out.push(a);
        buf = rest;
    }
    out
}

/// Runs `f` on every item, on separate threads when there is more than one.
fn for_each_group<I: Send>(items: Vec<I>, f: impl Fn(I) + Sync + Send) {
    use rayon::prelude::*;
    if items.len() > 1 {
        items.into_par_iter().for_each(f);
    } else {
        items.into_iter().for_each(f);
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

/// The recurrent weights of one (layer, direction) packed for the per-step products of the
/// forward pass: `W_hhᵀ` (H_out, G·H) — for the LSTM gate-interleaved, for its fused step —
/// and, for a projected LSTM, `W_hrᵀ` (H, P).
#[derive(Clone, Debug, Default)]
pub(crate) struct StepWeights<T> {
    /// GRU and RNN: `W_hhᵀ`
    pub hh_t: PackedB<T>,
    /// LSTM: `W_hhᵀ`
    pub lstm: LstmPackedB<T>,
    pub hr_t: Option<PackedB<T>>,
}

impl<T: Real> StepWeights<T> {
    pub fn new(d: &Dims, p: &DirParams<'_, T>) -> StepWeights<T> {
        let mut hh_t = PackedB::new();
        let mut lstm = LstmPackedB::new();
        if d.mode == Mode::Lstm {
            lstm.pack(p.w_hh, d.h, d.hout);
        } else {
            hh_t.pack(MatRef::new(p.w_hh, d.gh(), d.hout).t());
        }
        let hr_t = p.w_hr.map(|w| {
            let mut pb = PackedB::new();
            pb.pack(MatRef::new(w, d.hout, d.h).t());
            pb
        });
        StepWeights { hh_t, lstm, hr_t }
    }
}

/// Everything the forward pass of one (layer, direction) packs from its weights: `W_ihᵀ` for
/// the input projection and the [`StepWeights`]. Packed once per weight version: a model keeps
/// them until its parameters are changed (see `Rnn::params_mut`).
#[derive(Clone, Debug)]
pub(crate) struct ForwardWeights<T> {
    /// `W_ihᵀ` (in, G·H)
    pub ih_t: PackedB<T>,
    pub step: StepWeights<T>,
}

impl<T: Real> ForwardWeights<T> {
    pub fn new(d: &Dims, p: &DirParams<'_, T>) -> ForwardWeights<T> {
        let mut ih_t = PackedB::new();
        ih_t.pack(MatRef::new(p.w_ih, d.gh(), d.input).t());
        ForwardWeights {
            ih_t,
            step: StepWeights::new(d, p),
        }
    }
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
pub(crate) struct DirState<T: Real> {
    /// (T, B, G·H): LSTM `[i f g o]`, GRU `[r z n]` after activation; RNN pre-activations.
    pub gates: Buf<T>,
    /// (T+1, B, H_out): states, in time order (see the module docs).
    pub hs: Buf<T>,
    /// LSTM: (T+1, B, H) cell states, same order as `hs`.
    pub cs: Buf<T>,
    /// LSTM with projection: (T, B, H), `o * tanh(c)` before the projection.
    pub ms: Buf<T>,
    /// GRU: (T, B, H), `W_hn h + b_hn`.
    pub hn: Buf<T>,
    /// GRU scratch: (B, 3H), `h W_hhᵀ`.
    pub scratch: Buf<T>,
}

impl<T: Real> DirState<T> {
    pub fn new(d: &Dims, plan: &Plan) -> DirState<T> {
        let (t, b) = (plan.t, plan.b);
        let lstm = d.mode == Mode::Lstm;
        let gru = d.mode == Mode::Gru;
        DirState {
            gates: Buf::any(t * b * d.gh()),
            hs: Buf::any((t + 1) * b * d.hout),
            cs: if lstm {
                Buf::any((t + 1) * b * d.h)
            } else {
                Buf::empty()
            },
            // rows not running at a step are never written, and dW_hr reads them (times 0)
            ms: if lstm && d.proj() {
                Buf::zeroed(t * b * d.h)
            } else {
                Buf::empty()
            },
            hn: if gru {
                Buf::any(t * b * d.h)
            } else {
                Buf::empty()
            },
            scratch: if gru {
                Buf::any(b * d.gh())
            } else {
                Buf::empty()
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

/// The biases added to the input projection `x W_ihᵀ`, in order: `b_ih`, then for the LSTM
/// and the RNN `b_hh` (folded in here; the GRU adds `b_hh` inside its gate kernel, its n block
/// needs it apart).
pub(crate) fn biases<'a, T: Real>(
    d: &Dims,
    p: &DirParams<'a, T>,
) -> (Option<&'a [T]>, Option<&'a [T]>) {
    let hh = if d.mode == Mode::Gru { None } else { p.b_hh };
    (p.b_ih, hh)
}

/// One time step for rows 0..n. `gates` (n, G·H) holds `x W_ihᵀ` plus the biases of
/// [`biases`]; on return it holds what the backward pass needs (with `keep`; an LSTM step
/// without `keep` may leave the pre-activations there instead). `m` (n, H) is used by a
/// projected LSTM, `hn` (n, H) and `gh` (n, 3H) by the GRU; pass empty slices otherwise.
/// `threads`: the products may be split across threads (false when each thread already runs
/// its own group of rows).
#[allow(clippy::too_many_arguments)]
pub(crate) fn step<T: Real>(
    d: &Dims,
    p: &DirParams<'_, T>,
    w: &StepWeights<T>,
    n: usize,
    gates: &mut [T],
    h_prev: &[T],
    h_new: &mut [T],
    c_prev: &[T],
    c_new: &mut [T],
    m: &mut [T],
    hn: &mut [T],
    gh: &mut [T],
    keep: bool,
    threads: bool,
) {
    let (h, hout, g) = (d.h, d.hout, d.gh());
    match d.mode {
        Mode::Lstm => {
            // gates (n, 4H) + h_prev (n, H_out) · W_hhᵀ, then the cell, in one kernel
            if let Some(hr_t) = &w.hr_t {
                w.lstm
                    .step(n, h_prev, hout, gates, c_prev, c_new, m, keep, threads);
                // h_new (n, P) = m (n, H) · W_hrᵀ
                hr_t.matmul_with(n, m, h, h_new, hout, false, threads);
            } else {
                w.lstm
                    .step(n, h_prev, hout, gates, c_prev, c_new, h_new, keep, threads);
            }
        }
        Mode::Gru => {
            // gh (n, 3H) = h_prev · W_hhᵀ
            w.hh_t.matmul_with(n, h_prev, hout, gh, g, false, threads);
            cells::gru_forward(n, h, gates, gh, p.b_hh, h_prev, hn, h_new);
        }
        Mode::RnnTanh | Mode::RnnRelu => {
            w.hh_t.matmul_with(n, h_prev, hout, gates, g, true, threads);
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
/// `x` (T·B, in) is the layer input in the plan's order, zero at padded positions; `h0`
/// (B, H_out), `c0` (B, H). `keep`: `s.gates` must hold the activations for the backward
/// pass (training); otherwise only the states are needed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn dir_forward<T: Real>(
    d: &Dims,
    p: &DirParams<'_, T>,
    w: &ForwardWeights<T>,
    plan: &Plan,
    x: &[T],
    h0: &[T],
    c0: &[T],
    reverse: bool,
    keep: bool,
    s: &mut DirState<T>,
) {
    let (tn, g, h, hout) = (plan.t, d.gh(), d.h, d.hout);
    // W_ihᵀ packed (once per weight version, by the caller); each group projects its own rows
    // (one GEMM over all its T·b rows, before its time loop, on its own thread).
    let (ih_t, sw) = (&w.ih_t, &w.step);
    let lstm = d.mode == Mode::Lstm;
    let many = plan.groups.len() > 1;
    let jobs: Vec<_> = plan
        .groups
        .iter()
        .zip(group_chunks(&mut s.gates, plan, tn * g))
        .zip(group_chunks(&mut s.hs, plan, (tn + 1) * hout))
        .zip(group_chunks(&mut s.cs, plan, (tn + 1) * h))
        .zip(group_chunks(&mut s.ms, plan, tn * h))
        .zip(group_chunks(&mut s.hn, plan, tn * h))
        .zip(group_chunks(&mut s.scratch, plan, g))
        .map(|((((((gr, gates), hs), cs), ms), hn), scratch)| GroupFwd {
            gr,
            gates,
            hs,
            cs,
            ms,
            hn,
            scratch,
        })
        .collect();
    for_each_group(jobs, |j: GroupFwd<'_, T>| {
        // Input projection for every step at once: gates (T·b, G·H) = x (T·b, in) · W_ihᵀ + b.
        let rows = tn * j.gr.b;
        let xg = &x[j.gr.off * tn * d.input..(j.gr.off + j.gr.b) * tn * d.input];
        let (b1, b2) = biases(d, p);
        ih_t.matmul_bias(rows, xg, d.input, j.gates, g, b1, b2, !many);
        let h0g = &h0[j.gr.off * hout..(j.gr.off + j.gr.b) * hout];
        let c0g: &[T] = if lstm {
            &c0[j.gr.off * h..(j.gr.off + j.gr.b) * h]
        } else {
            &[]
        };
        group_forward(d, p, sw, tn, j, h0g, c0g, reverse, keep, !many);
    });
}

/// The buffers of one group, for [`group_forward`].
struct GroupFwd<'a, T> {
    gr: &'a Group,
    /// (T, b, G·H)
    gates: &'a mut [T],
    /// (T+1, b, H_out)
    hs: &'a mut [T],
    /// LSTM: (T+1, b, H)
    cs: &'a mut [T],
    /// projected LSTM: (T, b, H)
    ms: &'a mut [T],
    /// GRU: (T, b, H)
    hn: &'a mut [T],
    /// GRU: (b, 3H)
    scratch: &'a mut [T],
}

/// The time loop of one group (a sub-batch of `j.gr.b` rows).
#[allow(clippy::too_many_arguments)]
fn group_forward<T: Real>(
    d: &Dims,
    p: &DirParams<'_, T>,
    sw: &StepWeights<T>,
    tn: usize,
    j: GroupFwd<'_, T>,
    h0: &[T],
    c0: &[T],
    reverse: bool,
    keep: bool,
    threads: bool,
) {
    let (b, g, h, hout) = (j.gr.b, d.gh(), d.h, d.hout);
    let init = if reverse { tn } else { 0 };
    j.hs[init * b * hout..(init + 1) * b * hout].copy_from_slice(h0);
    let lstm = d.mode == Mode::Lstm;
    // Every cell but the projected LSTM: the whole loop in one kernel, its steps split across
    // threads by hidden units when this group is the only one.
    let team = if threads {
        recur_kernels::num_threads()
    } else {
        1
    };
    let bs = &j.gr.batch_sizes;
    if lstm {
        j.cs[init * b * h..(init + 1) * b * h].copy_from_slice(c0);
        if !d.proj() {
            sw.lstm
                .sequence(b, bs, reverse, j.gates, j.hs, j.cs, keep, team);
            return;
        }
    }
    match d.mode {
        Mode::Gru => {
            let gates = &mut *j.gates;
            gru::sequence(
                &sw.hh_t, p.b_hh, b, bs, reverse, gates, j.hs, j.hn, j.scratch, team,
            );
            return;
        }
        Mode::RnnTanh | Mode::RnnRelu => {
            let relu = d.mode == Mode::RnnRelu;
            rnn::sequence(&sw.hh_t, relu, b, bs, reverse, j.gates, j.hs, team);
            return;
        }
        Mode::Lstm => {}
    }
    for k in 0..tn {
        let t = if reverse { tn - 1 - k } else { k };
        let n = j.gr.batch_sizes[t];
        let (prev, new) = if reverse { (t + 1, t) } else { (t, t + 1) };
        let (hp, hnw) = two_slots(j.hs, prev, new, b * hout);
        hnw[n * hout..].copy_from_slice(&hp[n * hout..]);
        let (cp, cnw): (&[T], &mut [T]) = if lstm {
            let (cp, cnw) = two_slots(j.cs, prev, new, b * h);
            cnw[n * h..].copy_from_slice(&cp[n * h..]);
            (cp, cnw)
        } else {
            (&[], &mut [])
        };
        let m: &mut [T] = if j.ms.is_empty() {
            &mut []
        } else {
            &mut j.ms[t * b * h..(t + 1) * b * h]
        };
        let hn: &mut [T] = if j.hn.is_empty() {
            &mut []
        } else {
            &mut j.hn[t * b * h..(t + 1) * b * h]
        };
        step(
            d,
            p,
            sw,
            n,
            &mut j.gates[t * b * g..(t + 1) * b * g],
            hp,
            hnw,
            cp,
            cnw,
            m,
            hn,
            j.scratch,
            keep,
            threads,
        );
    }
}

/// Scratch space of the backward pass of one (layer, direction), sized once per call.
#[derive(Debug, Default)]
pub(crate) struct BwdWork<T: Real> {
    /// (T, B, G·H): gradient of the input-side pre-activations.
    dg: Buf<T>,
    /// GRU: (T, B, H): gradient of `W_hn h + b_hn` (the hidden side's n block; its r and z
    /// blocks equal the input side's).
    dhn: Buf<T>,
    /// LSTM with projection: (T, B, P): gradient of h at every step, for `dW_hr`.
    dhs: Buf<T>,
    /// LSTM with projection: (B, H): gradient of m.
    dm: Buf<T>,
    /// W_hh (G·H, H_out) packed once per call for the per-step `dG W_hh` (GRU: its r and z
    /// row blocks only, (2H, H_out)).
    hh: PackedB<T>,
    /// GRU: the n row block of W_hh, (H, H_out).
    hh_n: PackedB<T>,
    /// LSTM with projection: W_hr (P, H) packed once per call for the per-step `dh W_hr`.
    hr: PackedB<T>,
}

impl<T: Real> BwdWork<T> {
    pub fn new(d: &Dims, plan: &Plan) -> BwdWork<T> {
        let (t, b) = (plan.t, plan.b);
        let lstm = d.mode == Mode::Lstm;
        BwdWork {
            dg: Buf::any(t * b * d.gh()),
            dhn: if d.mode == Mode::Gru {
                Buf::any(t * b * d.h)
            } else {
                Buf::empty()
            },
            dhs: if lstm && d.proj() {
                Buf::any(t * b * d.hout)
            } else {
                Buf::empty()
            },
            hh: PackedB::new(),
            hh_n: PackedB::new(),
            hr: PackedB::new(),
            dm: if lstm && d.proj() {
                Buf::any(b * d.h)
            } else {
                Buf::empty()
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
/// accumulates the input gradient into `dx` (T·B, in; skipped when `dx` is empty), and writes the initial-state gradients
/// `dh0` (B, H_out) and `dc0` (B, H). If `rec` (T·B, H_out) is not empty, it receives d loss /
/// d h_t at every step (zero where a sequence is not running).
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
    rec: &mut [T],
    w: &mut BwdWork<T>,
) {
    let (tn, g, h, hout) = (plan.t, d.gh(), d.h, d.hout);
    let rows = tn * plan.b;
    let lstm = d.mode == Mode::Lstm;
    match dh_n {
        Some(v) => dh0.copy_from_slice(v),
        None => dh0.fill(T::ZERO),
    }
    if lstm {
        match dc_n {
            Some(v) => dc0.copy_from_slice(v),
            None => dc0.fill(T::ZERO),
        }
    }
    if d.mode == Mode::Gru {
        w.hh.pack(MatRef::new(&p.w_hh[..2 * h * hout], 2 * h, hout));
        w.hh_n.pack(MatRef::new(&p.w_hh[2 * h * hout..], h, hout));
    } else {
        w.hh.pack(MatRef::new(p.w_hh, g, hout));
    }
    if let Some(w_hr) = p.w_hr {
        w.hr.pack(MatRef::new(w_hr, hout, h));
    }
    {
        let many = plan.groups.len() > 1;
        let BwdWork {
            dg,
            dhn,
            dhs,
            dm,
            hh,
            hh_n,
            hr,
        } = w;
        let (hh, hh_n, hr) = (&*hh, &*hh_n, &*hr);
        let jobs: Vec<_> = plan
            .groups
            .iter()
            .zip(group_chunks(dg, plan, tn * g))
            .zip(group_chunks(dhn, plan, tn * h))
            .zip(group_chunks(dhs, plan, tn * hout))
            .zip(group_chunks(dm, plan, h))
            .zip(group_chunks(dh0, plan, hout))
            .zip(group_chunks(dc0, plan, h))
            .zip(group_chunks(rec, plan, tn * hout))
            .map(|(((((((gr, dg), dhn), dhs), dm), dh), dc), rec)| GroupBwd {
                gr,
                dg,
                dhn,
                dhs,
                dm,
                dh,
                dc,
                rec,
            })
            .collect();
        let views: Vec<_> = group_chunks_ref(&s.gates, plan, tn * g)
            .into_iter()
            .zip(group_chunks_ref(&s.hs, plan, (tn + 1) * hout))
            .zip(group_chunks_ref(&s.cs, plan, (tn + 1) * h))
            .zip(group_chunks_ref(&s.hn, plan, tn * h))
            .collect();
        let work: Vec<_> = jobs.into_iter().zip(views).collect();
        for_each_group(work, |(j, (((gates, hs), cs), hn))| {
            let dyg = dy.as_ref().map(|v| DyView {
                data: &v.data[j.gr.off * tn * v.ld..],
                ld: v.ld,
                col: v.col,
            });
            group_backward(
                d,
                hh,
                hh_n,
                hr,
                p.w_hr.is_some(),
                tn,
                reverse,
                j,
                gates,
                hs,
                cs,
                hn,
                dyg,
                !many,
            );
        });
    }
    // Everything below is one GEMM (or column sum) over all T·B rows, except dW_hh: one per
    // group, since each group's states sit in their own (T+1, b, H_out) block.
    let dg = MatRef::new(&w.dg, rows, g);
    // dW_ih (G·H, in) += dGᵀ · x
    matmul(
        MatMut::new(gr.w_ih, g, d.input),
        dg.t(),
        MatRef::new(x, rows, d.input),
        true,
        Par::Threads,
    );
    // dW_hh (G·H, H_out) += dG_hᵀ · h_prev, h_prev = hs[0..T] or hs[1..T+1] of each group. The
    // hidden-side gradient dG_h equals dG except, for the GRU, in its n block (kept apart in
    // `dhn`): those rows of dW_hh take dhnᵀ · h_prev.
    let gru = d.mode == Mode::Gru;
    let g_shared = if gru { 2 * h } else { g };
    for grp in &plan.groups {
        let hs = &s.hs[grp.off * (tn + 1) * hout..(grp.off + grp.b) * (tn + 1) * hout];
        let hprev = MatRef::new(
            if reverse {
                &hs[grp.b * hout..]
            } else {
                &hs[..tn * grp.b * hout]
            },
            tn * grp.b,
            hout,
        );
        let dg_g = MatRef::strided(
            &w.dg[grp.off * tn * g..(grp.off + grp.b) * tn * g],
            tn * grp.b,
            g_shared,
            g,
        );
        matmul(
            MatMut::new(&mut gr.w_hh[..g_shared * hout], g_shared, hout),
            dg_g.t(),
            hprev,
            true,
            Par::Threads,
        );
        if gru {
            let dhn_g = MatRef::new(
                &w.dhn[grp.off * tn * h..(grp.off + grp.b) * tn * h],
                tn * grp.b,
                h,
            );
            matmul(
                MatMut::new(&mut gr.w_hh[2 * h * hout..], h, hout),
                dhn_g.t(),
                hprev,
                true,
                Par::Threads,
            );
        }
    }
    if let Some(db) = gr.b_ih {
        col_sum(&w.dg, g, db);
    }
    if let Some(db) = gr.b_hh {
        if gru {
            // [da_r | da_z] as on the input side, then the n block from dhn.
            for row in w.dg.chunks_exact(g) {
                for (o, &v) in db[..2 * h].iter_mut().zip(&row[..2 * h]) {
                    *o += v;
                }
            }
            col_sum(&w.dhn, h, &mut db[2 * h..]);
        } else {
            col_sum(&w.dg, g, db);
        }
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
    // dx (T·B, in) += dG · W_ih, unless the caller needs no input gradient (empty dx). With
    // W_ih packed, the packed kernel beats the general GEMM on this shape (a long inner
    // dimension G·H, few columns).
    if !dx.is_empty() {
        let mut ih = PackedB::new();
        ih.pack(MatRef::new(p.w_ih, g, d.input));
        ih.matmul(rows, &w.dg, g, dx, d.input, true);
    }
}

/// The backward buffers of one group, for [`group_backward`].
struct GroupBwd<'a, T> {
    gr: &'a Group,
    /// (T, b, G·H)
    dg: &'a mut [T],
    /// GRU: (T, b, H)
    dhn: &'a mut [T],
    /// projected LSTM: (T, b, P)
    dhs: &'a mut [T],
    /// projected LSTM: (b, H)
    dm: &'a mut [T],
    /// (b, H_out): in: d h_n; running; out: d h0
    dh: &'a mut [T],
    /// LSTM: (b, H): in: d c_n; running; out: d c0
    dc: &'a mut [T],
    /// (T, b, H_out): d loss / d h_t at every step, when recording (else empty)
    rec: &'a mut [T],
}

/// The backward time loop of one group. `gates` (T, b, G·H), `hs` (T+1, b, H_out), `cs`
/// (T+1, b, H), `hn` (T, b, H) are the group's saved activations.
#[allow(clippy::too_many_arguments)]
fn group_backward<T: Real>(
    d: &Dims,
    hh: &PackedB<T>,
    hh_n: &PackedB<T>,
    hr: &PackedB<T>,
    proj: bool,
    tn: usize,
    reverse: bool,
    j: GroupBwd<'_, T>,
    gates_all: &[T],
    hs: &[T],
    cs: &[T],
    hn_all: &[T],
    dy: Option<DyView<'_, T>>,
    threads: bool,
) {
    let (b, g, h, hout) = (j.gr.b, d.gh(), d.h, d.hout);
    for k in 0..tn {
        let t = if reverse { k } else { tn - 1 - k };
        let n = j.gr.batch_sizes[t];
        let (prev, new) = if reverse { (t + 1, t) } else { (t, t + 1) };
        if let Some(dy) = &dy {
            for r in 0..n {
                let src = &dy.data[(t * b + r) * dy.ld + dy.col..][..hout];
                for (a, &v) in j.dh[r * hout..(r + 1) * hout].iter_mut().zip(src) {
                    *a += v;
                }
            }
        }
        // j.dh now holds the total d loss / d h_t (through the output and through h_{t+1}).
        if !j.rec.is_empty() {
            let r = &mut j.rec[t * b * hout..(t + 1) * b * hout];
            r[..n * hout].copy_from_slice(&j.dh[..n * hout]);
            r[n * hout..].fill(T::ZERO);
        }
        let dgt = &mut j.dg[t * b * g..(t + 1) * b * g];
        dgt[n * g..].fill(T::ZERO);
        let gates = &gates_all[t * b * g..(t + 1) * b * g];
        match d.mode {
            Mode::Lstm => {
                let cp = &cs[prev * b * h..(prev + 1) * b * h];
                let cn = &cs[new * b * h..(new + 1) * b * h];
                if proj {
                    let dhs = &mut j.dhs[t * b * hout..(t + 1) * b * hout];
                    dhs[..n * hout].copy_from_slice(&j.dh[..n * hout]);
                    dhs[n * hout..].fill(T::ZERO);
                    // dm (n, H) = dh (n, P) · W_hr
                    hr.matmul_with(n, j.dh, hout, j.dm, h, false, threads);
                    cells::lstm_backward(n, h, gates, cp, cn, j.dm, j.dc, dgt);
                } else {
                    cells::lstm_backward(n, h, gates, cp, cn, j.dh, j.dc, dgt);
                }
                // dh_prev (n, H_out) = dG (n, 4H) · W_hh
                hh.matmul_with(n, dgt, g, j.dh, hout, false, threads);
            }
            Mode::Gru => {
                let dhnt = &mut j.dhn[t * b * h..(t + 1) * b * h];
                dhnt[n * h..].fill(T::ZERO);
                let hp = &hs[prev * b * hout..(prev + 1) * b * hout];
                let hn = &hn_all[t * b * h..(t + 1) * b * h];
                cells::gru_backward(n, h, gates, hn, hp, j.dh, dgt, dhnt);
                // dh_prev += [da_r | da_z] · W_hh[r, z rows] + dhn · W_hh[n rows]
                hh.matmul_with(n, dgt, g, j.dh, hout, true, threads);
                hh_n.matmul_with(n, dhnt, h, j.dh, hout, true, threads);
            }
            Mode::RnnTanh | Mode::RnnRelu => {
                let hnw = &hs[new * b * hout..(new + 1) * b * hout];
                cells::rnn_backward(
                    &hnw[..n * h],
                    &j.dh[..n * h],
                    &mut dgt[..n * h],
                    d.mode == Mode::RnnRelu,
                );
                hh.matmul_with(n, dgt, g, j.dh, hout, false, threads);
            }
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
