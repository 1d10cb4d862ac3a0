//! The regularized layers: layer normalization inside the cell, variational (recurrent) dropout,
//! zoneout, weight drop and locked dropout between layers ([`Regularizers`]), forward and BPTT.
//!
//! [`crate::Rnn`] runs these instead of its fused engine when its configuration has any of them
//! (in evaluation, only when the layers differ from PyTorch's there: layer norm, zoneout), and
//! always for the cell variants of ONNX and Keras ([`crate::core::config::CellOptions`]:
//! GRU `linear_before_reset = false`, LSTM peepholes and `input_forget`, `clip`, the ONNX
//! activations per direction); a configuration without them never reaches this module. The
//! layers may be bidirectional when no regularizer is on (the reverse direction runs each
//! sequence reversed within its length).
//!
//! With cell variants, in the equations below σ, tanh (candidate) and tanh (LSTM output) are the
//! activations f, g, h; every activation's input is first bounded to [-clip, clip]; LSTM
//! peepholes add `p_i ⊙ c` and `p_f ⊙ c` to the inputs of i and f and `p_o ⊙ c'` (the new cell
//! state) to the input of o; `input_forget` sets f = 1 - i; a GRU with
//! `linear_before_reset = false` has `n = g(a_n + (r ⊙ h̃) W_hnᵀ + b_hn)`. The input projections of all steps
//! are one matrix product, the recurrent product is one per step, both through the
//! `recur_kernels` GEMM; the rest is plain loops. A batch of 16 rows or more is split into row
//! groups (`row_groups`: one per thread, at least 8 rows each) whose time loops run side by
//! side, forward and backward; the weight gradients are summed over the groups in group order,
//! so a result depends on the thread count only through that order of the sums.
//!
//! One layer, one step, for a batch row with `x` (its input) and `h, c` (its state):
//!
//! ```text
//! x̃ = x ⊙ m_x                              input dropout (one mask per sequence)
//! h̃ = h ⊙ m_h                              recurrent dropout (one mask per sequence)
//! W = W_hh ⊙ M                             weight drop (one mask per forward pass)
//! a = LN_ih(x̃ W_ihᵀ) + b_ih                LN(v) = γ (v - mean v) / sqrt(var v + 1e-5) + β
//! b = LN_hh(h̃ Wᵀ) + b_hh                   over all G·H gate pre-activations of the row
//! LSTM: i, f, g, o = σ, σ, tanh, σ of (a + b);  c' = LN_c(f c + i g);  h' = o tanh(c')
//! GRU:  r, z = σ(a_r + b_r), σ(a_z + b_z);  n = tanh(a_n + r b_n);  h' = (1 - z) n + z h
//! RNN:  h' = tanh or relu of (a + b)
//! zoneout: h ← d_h h + (1 - d_h) h',  c ← d_c c + (1 - d_c) c'
//! ```
//!
//! (without layer norm, `LN(v) = v`). In training the zoneout masks `d` are 1 (keep the
//! previous value) with probability p, drawn at every step; in evaluation `d = p`, the
//! expectation. Between layers, the dropout of [`RnnConfig::dropout`] is applied to the
//! layer's output, with one mask per sequence when `locked_dropout` is set. Dropout masks hold
//! 0 or 1/(1-p) (inverted scaling, as `nn.Dropout`).
//!
//! The masks of one pass, drawn from the caller's generator ([`Masks::sample`]) in a fixed
//! order: layer by layer, input, recurrent, weight, zoneout h, zoneout c, between-layer output;
//! each element by `rng.gen::<f64>()`, as [`crate::Dropout::Sample`] draws its masks. The same
//! generator state gives the same masks.

use crate::core::config::{Activation, Mode, Regularizers, RnnConfig};
use crate::core::layout::LnLayout;
use crate::core::rnn::{check_input, BackwardObserver, InputGrads, Output, Rnn, State};
use crate::core::tensor::Tensor;
use crate::error::{Error, Result};
use rand::{Rng, RngCore};
use rayon::prelude::*;
use recur_kernels::gemm::{matmul, MatMut, MatRef, Par};
use recur_kernels::packed::PackedB;
use recur_kernels::pool::Buf;
use recur_kernels::Real;
use std::ops::Range;

/// The `eps` of the layer norms (`nn.LayerNorm`'s default).
pub const LN_EPS: f64 = 1e-5;

/// The masks of one layer for one forward pass; batch rows in the caller's order. `None` is
/// "no mask" (all ones; for zoneout: always take the new value).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct LayerMasks<T> {
    /// Input dropout, (B, input size of the layer): 0 or 1/(1-p).
    pub input: Option<Vec<T>>,
    /// Recurrent dropout on h_{t-1}, (B, H): 0 or 1/(1-p).
    pub recurrent: Option<Vec<T>>,
    /// Weight drop on `weight_hh`, (G·H, H): 0 or 1/(1-p).
    pub weight_hh: Option<Vec<T>>,
    /// Zoneout on h, (T, B, H): the weight of the previous value (1 or 0 in training, p in
    /// evaluation).
    pub zoneout_h: Option<Vec<T>>,
    /// Zoneout on c (LSTM), (T, B, H), as `zoneout_h`.
    pub zoneout_c: Option<Vec<T>>,
    /// Dropout on this layer's output, towards the next layer (never on the last layer):
    /// (B, D·H) when locked, else (T, B, D·H): 0 or 1/(1-p).
    pub output: Option<Vec<T>>,
}

/// The masks of every layer for one forward pass of `T` steps over a batch of `B`.
#[derive(Clone, Debug, PartialEq)]
pub struct Masks<T> {
    /// One per layer.
    pub layers: Vec<LayerMasks<T>>,
}

fn dropout_mask<T: Real>(rng: &mut dyn RngCore, n: usize, p: f64) -> Vec<T> {
    let keep = 1.0 - p;
    let scale = T::from_f64(1.0 / keep);
    (0..n)
        .map(|_| {
            if rng.gen::<f64>() < keep {
                scale
            } else {
                T::ZERO
            }
        })
        .collect()
}

fn zoneout_mask<T: Real>(rng: &mut dyn RngCore, n: usize, p: f64) -> Vec<T> {
    (0..n)
        .map(|_| {
            if rng.gen::<f64>() < p {
                T::ONE
            } else {
                T::ZERO
            }
        })
        .collect()
}

impl<T: Real> Masks<T> {
    /// Training masks for `t` steps of a batch of `b`, drawn from `rng` (see the module
    /// documentation for the order).
    pub fn sample(config: &RnnConfig, t: usize, b: usize, rng: &mut dyn RngCore) -> Masks<T> {
        let r = &config.regular;
        let (h, nl) = (config.hidden_size, config.num_layers);
        let gh = config.mode.gates() * h;
        let layers = (0..nl)
            .map(|l| {
                let input = config.layer_input_size(l);
                let mut m = LayerMasks::default();
                if r.input_dropout > 0.0 {
                    m.input = Some(dropout_mask(rng, b * input, r.input_dropout));
                }
                if r.recurrent_dropout > 0.0 {
                    m.recurrent = Some(dropout_mask(rng, b * h, r.recurrent_dropout));
                }
                if r.weight_drop > 0.0 {
                    m.weight_hh = Some(dropout_mask(rng, gh * h, r.weight_drop));
                }
                if r.zoneout_h > 0.0 {
                    m.zoneout_h = Some(zoneout_mask(rng, t * b * h, r.zoneout_h));
                }
                if r.zoneout_c > 0.0 {
                    m.zoneout_c = Some(zoneout_mask(rng, t * b * h, r.zoneout_c));
                }
                if l + 1 < nl && config.dropout > 0.0 {
                    let dh = config.num_directions() * h;
                    let n = if r.locked_dropout { b * dh } else { t * b * dh };
                    m.output = Some(if config.dropout >= 1.0 {
                        vec![T::ZERO; n]
                    } else {
                        dropout_mask(rng, n, config.dropout)
                    });
                }
                m
            })
            .collect();
        Masks { layers }
    }

    /// Evaluation: no dropout, zoneout by its expectation.
    pub fn eval(config: &RnnConfig, t: usize, b: usize) -> Masks<T> {
        let r = &config.regular;
        let h = config.hidden_size;
        let constant = |p: f64| (p > 0.0).then(|| vec![T::from_f64(p); t * b * h]);
        let layers = (0..config.num_layers)
            .map(|_| LayerMasks {
                zoneout_h: constant(r.zoneout_h),
                zoneout_c: constant(r.zoneout_c),
                ..LayerMasks::default()
            })
            .collect();
        Masks { layers }
    }

    fn check(&self, config: &RnnConfig, t: usize, b: usize) -> Result<()> {
        let nl = config.num_layers;
        if self.layers.len() != nl {
            return Err(Error::Input(format!(
                "masks: expected one per layer ({nl}), got {}",
                self.layers.len()
            )));
        }
        let h = config.hidden_size;
        let gh = config.mode.gates() * h;
        for (l, m) in self.layers.iter().enumerate() {
            let dh = config.num_directions() * h;
            let out = if config.regular.locked_dropout {
                b * dh
            } else {
                t * b * dh
            };
            let c_ok = m.zoneout_c.is_none() || config.mode == Mode::Lstm;
            let out_ok = m.output.is_none() || l + 1 < nl;
            if !c_ok || !out_ok {
                return Err(Error::Input(format!(
                    "masks of layer {l}: {}",
                    if c_ok {
                        "the last layer has no output dropout"
                    } else {
                        "zoneout on c needs an LSTM"
                    }
                )));
            }
            for (what, v, n) in [
                ("input", &m.input, b * config.layer_input_size(l)),
                ("recurrent", &m.recurrent, b * h),
                ("weight_hh", &m.weight_hh, gh * h),
                ("zoneout_h", &m.zoneout_h, t * b * h),
                ("zoneout_c", &m.zoneout_c, t * b * h),
                ("output", &m.output, out),
            ] {
                if let Some(v) = v {
                    if v.len() != n {
                        return Err(Error::Input(format!(
                            "{what} mask of layer {l}: expected {n} values, got {}",
                            v.len()
                        )));
                    }
                }
            }
        }
        Ok(())
    }
}

/// What the regularized training forward pass keeps for its BPTT.
#[derive(Clone, Debug)]
pub(crate) struct RegTape<T: Real> {
    t: usize,
    b: usize,
    /// Each sequence's length.
    lengths: Vec<usize>,
    unbatched: bool,
    input_shape: Vec<usize>,
    /// One per (layer, direction), index `layer * D + direction`: the tape of each row group.
    layers: Vec<Vec<GroupTape<T>>>,
    /// The dropout of each layer's output towards the next layer (the last: `None`).
    out_masks: Vec<Option<Vec<T>>>,
}

/// The tape of one group of batch rows ([`row_groups`]) of one (layer, direction): the group's
/// own time loop, buffers (T, rows, ·).
#[derive(Clone, Debug)]
struct GroupTape<T: Real> {
    rows: Range<usize>,
    tape: LayerTape<T>,
}

/// The groups of batch rows whose time loops run side by side, one per thread: contiguous,
/// of equal size (±1), at least 8 rows each (as the fused engine's groups); one group below
/// 16 rows or with one thread. Rows never interact in a step, so every group's loop is the
/// whole layer's loop restricted to its rows; the weight gradients are the groups' sums.
fn row_groups(b: usize) -> Vec<Range<usize>> {
    let n = recur_kernels::num_threads().min(b / 8).max(1);
    (0..n).map(|g| g * b / n..(g + 1) * b / n).collect()
}

/// Rows `r` of a time-major (t, b, n) buffer, as (t, |r|, n).
fn gather_rows<T: Copy>(v: &[T], t: usize, b: usize, n: usize, r: &Range<usize>) -> Vec<T> {
    let mut out = Vec::with_capacity(t * r.len() * n);
    for ti in 0..t {
        out.extend_from_slice(&v[(ti * b + r.start) * n..(ti * b + r.end) * n]);
    }
    out
}

/// Writes a (t, |r|, n) buffer into rows `r` of a time-major (t, b, n) buffer.
fn scatter_rows<T: Copy>(src: &[T], t: usize, b: usize, n: usize, r: &Range<usize>, dst: &mut [T]) {
    let k = r.len() * n;
    for ti in 0..t {
        dst[(ti * b + r.start) * n..][..k].copy_from_slice(&src[ti * k..][..k]);
    }
}

/// Runs `f` on every item, on the rayon threads when there is more than one.
fn map_groups<I: Sync, R: Send>(items: &[I], f: impl Fn(&I) -> R + Sync + Send) -> Vec<R> {
    if items.len() > 1 {
        items.par_iter().map(f).collect()
    } else {
        items.iter().map(f).collect()
    }
}

impl<T: Real> LayerMasks<T> {
    /// The masks of batch rows `r` (of `b`), for a group's time loop; no output mask.
    fn rows(&self, t: usize, b: usize, input: usize, h: usize, r: &Range<usize>) -> LayerMasks<T> {
        let per_row = |m: &Vec<T>, n: usize| m[r.start * n..r.end * n].to_vec();
        LayerMasks {
            input: self.input.as_ref().map(|m| per_row(m, input)),
            recurrent: self.recurrent.as_ref().map(|m| per_row(m, h)),
            weight_hh: self.weight_hh.clone(),
            zoneout_h: self.zoneout_h.as_ref().map(|m| gather_rows(m, t, b, h, r)),
            zoneout_c: self.zoneout_c.as_ref().map(|m| gather_rows(m, t, b, h, r)),
            output: None,
        }
    }
}

#[derive(Clone, Debug)]
struct LayerTape<T: Real> {
    masks: LayerMasks<T>,
    /// (T·B, in): the input after input dropout (the reverse direction: each sequence
    /// reversed within its length).
    xd: Vec<T>,
    /// LN: the normalized input pre-activations (T·B, G·H) and 1/σ of each row (T·B).
    ih_hat: Buf<T>,
    ih_rstd: Buf<T>,
    /// LN: the normalized recurrent pre-activations and 1/σ.
    hh_hat: Buf<T>,
    hh_rstd: Buf<T>,
    /// (T·B, H): h_{t-1} after recurrent dropout.
    hd: Buf<T>,
    /// (T·B, G·H): the gate activations (RNN: h').
    gates: Buf<T>,
    /// Cell variants (T·B, G·H): every activation's input, before the clip.
    pre: Buf<T>,
    /// GRU (T·B, H): the recurrent pre-activation of n (after LN and bias).
    ghn: Buf<T>,
    /// GRU with `linear_before_reset = false` (T·B, H): r ⊙ h̃.
    rh: Buf<T>,
    /// LSTM LN: the normalized new cell state f c + i g (T·B, H) and 1/σ (T·B).
    c_hat: Buf<T>,
    c_rstd: Buf<T>,
    /// LSTM (T·B, H): h(c'), and with cell variants c' itself.
    tc: Buf<T>,
    cnew: Buf<T>,
    /// ((T+1)·B, H): h and c after each step (slot 0: the initial state).
    hs: Buf<T>,
    cs: Buf<T>,
    /// The dropped `weight_hh` (weight drop only).
    w_eff: Option<Vec<T>>,
}

/// The parameters of one layer and direction.
struct LayerParams<'a, T> {
    w_ih: &'a [T],
    w_hh: &'a [T],
    b_ih: Option<&'a [T]>,
    b_hh: Option<&'a [T]>,
    ln: Option<LnParams<'a, T>>,
    /// LSTM peepholes (3H): p_i, p_f, p_o.
    peep: Option<&'a [T]>,
    cell: CellOpts<T>,
}

/// The cell variants of one direction, resolved.
#[derive(Clone, Copy, Debug)]
struct CellOpts<T> {
    /// Anything other than PyTorch's cell (then `pre` is kept).
    general: bool,
    /// Gates (σ), candidate (tanh), LSTM output (tanh).
    f: Activation,
    g: Activation,
    hf: Activation,
    clip: Option<T>,
    linear_before_reset: bool,
    input_forget: bool,
}

impl<T: Real> CellOpts<T> {
    fn of(c: &RnnConfig, d: usize) -> CellOpts<T> {
        let [f, g, hf] = c.cell.activations_of(c.mode, d);
        CellOpts {
            general: !c.cell.is_default(),
            f,
            g,
            hf,
            clip: c.cell.clip.map(T::from_f64),
            linear_before_reset: c.cell.linear_before_reset,
            input_forget: c.cell.input_forget,
        }
    }
    /// Bounds `v` in place (ONNX's clip).
    #[inline]
    fn clip(&self, v: &mut [T]) {
        if let Some(c) = self.clip {
            for x in v {
                if *x > c {
                    *x = c;
                } else if *x < -c {
                    *x = -c;
                }
            }
        }
    }
    /// d f(clip(x)) / d f: 0 where the bound is active, else f'(x).
    #[inline]
    fn grad(&self, a: Activation, x: T, y: T) -> T {
        match self.clip {
            Some(c) if x > c || x < -c => T::ZERO,
            _ => a.grad(x, y),
        }
    }
}

struct LnParams<'a, T> {
    ih_w: &'a [T],
    ih_b: &'a [T],
    hh_w: &'a [T],
    hh_b: &'a [T],
    c_w: Option<&'a [T]>,
    c_b: Option<&'a [T]>,
}

fn layer_params<T: Real>(rnn: &Rnn<T>, l: usize, dir: usize) -> LayerParams<'_, T> {
    let d = rnn.layout().dir(l, dir);
    let p = rnn.params();
    LayerParams {
        w_ih: &p[d.w_ih.clone()],
        w_hh: &p[d.w_hh.clone()],
        b_ih: d.b_ih.clone().map(|r| &p[r]),
        b_hh: d.b_hh.clone().map(|r| &p[r]),
        ln: d.ln.as_ref().map(|ln| LnParams {
            ih_w: &p[ln.ih_weight.clone()],
            ih_b: &p[ln.ih_bias.clone()],
            hh_w: &p[ln.hh_weight.clone()],
            hh_b: &p[ln.hh_bias.clone()],
            c_w: ln.c_weight.clone().map(|r| &p[r]),
            c_b: ln.c_bias.clone().map(|r| &p[r]),
        }),
        peep: d.peephole.clone().map(|r| &p[r]),
        cell: CellOpts::of(rnn.config(), dir),
    }
}

/// Reverses each sequence of a time-major (T·B, n) buffer within its length (rows past it
/// stay where they are). Its own inverse.
fn reverse_seqs<T: Real>(v: &[T], t: usize, b: usize, n: usize, lens: &[usize]) -> Vec<T> {
    let mut out = v.to_vec();
    for (bi, &len) in lens.iter().enumerate() {
        for ti in 0..len.min(t) {
            let (from, to) = ((ti * b + bi) * n, ((len - 1 - ti) * b + bi) * n);
            out[to..to + n].copy_from_slice(&v[from..from + n]);
        }
    }
    out
}

/// The sum of `v` in eight lanes (so that it vectorizes).
fn lane_sum<T: Real>(v: &[T], f: impl Fn(T) -> T) -> T {
    let mut acc = [T::ZERO; 8];
    let mut it = v.chunks_exact(8);
    for c in &mut it {
        for k in 0..8 {
            acc[k] += f(c[k]);
        }
    }
    let mut s = T::ZERO;
    for &x in it.remainder() {
        s += f(x);
    }
    for a in acc {
        s += a;
    }
    s
}

/// Normalizes `v` in place to `γ v̂ + β`, writing v̂ to `hat` and returning 1/σ.
fn ln_row<T: Real>(v: &mut [T], gain: &[T], bias: &[T], hat: &mut [T]) -> T {
    let n = T::from_f64(v.len() as f64);
    let mean = lane_sum(v, |x| x) / n;
    let var = lane_sum(v, |x| (x - mean) * (x - mean)) / n;
    let rstd = T::ONE / (var + T::from_f64(LN_EPS)).sqrt();
    for (((x, xh), &g), &b) in v.iter_mut().zip(hat.iter_mut()).zip(gain).zip(bias) {
        *xh = (*x - mean) * rstd;
        *x = g * *xh + b;
    }
    rstd
}

/// The backward pass of one row of `ln_row`: `dy` (d loss / d output) in, d loss / d input
/// written to `dx`; adds to the gain's and bias's gradients.
fn ln_row_back<T: Real>(
    dy: &[T],
    hat: &[T],
    rstd: T,
    gain: &[T],
    dgain: &mut [T],
    dbias: &mut [T],
    dx: &mut [T],
) {
    let n = T::from_f64(dy.len() as f64);
    let (mut m1, mut m2) = (T::ZERO, T::ZERO);
    for k in 0..dy.len() {
        dgain[k] += dy[k] * hat[k];
        dbias[k] += dy[k];
        let g = dy[k] * gain[k];
        m1 += g;
        m2 += g * hat[k];
    }
    m1 = m1 / n;
    m2 = m2 / n;
    for k in 0..dy.len() {
        dx[k] = rstd * (dy[k] * gain[k] - m1 - hat[k] * m2);
    }
}

/// Whether a pass runs here: with cell variants always, with any regularizer in training
/// (masks drawn), with layer norm or zoneout always.
pub(crate) fn applies(config: &RnnConfig, training: bool) -> bool {
    let r: &Regularizers = &config.regular;
    if config.has_cell_variants() {
        true
    } else if training {
        r.any()
    } else {
        r.any_in_eval()
    }
}

/// Where the masks come from.
pub(crate) enum MaskSource<'a, T> {
    Eval,
    Sample(&'a mut dyn RngCore),
    Given(&'a Masks<T>),
}

/// Row of (time, batch) in the caller's layout.
fn user_row(batch_first: bool, ti: usize, bi: usize, t: usize, b: usize) -> usize {
    if batch_first {
        bi * t + ti
    } else {
        ti * b + bi
    }
}

fn state_in<T: Real>(
    rnn: &Rnn<T>,
    what: &str,
    s: Option<&Tensor<T>>,
    b: usize,
    unbatched: bool,
    cell: bool,
) -> Result<Vec<T>> {
    let want = rnn.state_shape(if unbatched { None } else { Some(b) }, cell);
    match s {
        None => Ok(vec![T::ZERO; want.iter().product()]),
        Some(s) if s.shape() == want.as_slice() => Ok(s.data().to_vec()),
        Some(s) => Err(Error::shape(what, &want, s.shape())),
    }
}

/// The forward pass over the stack; `keep` keeps the tape.
pub(crate) fn run<T: Real>(
    rnn: &Rnn<T>,
    input: &Tensor<T>,
    state: Option<&State<T>>,
    lengths: Option<&[usize]>,
    masks: MaskSource<'_, T>,
    keep: bool,
) -> Result<(Output<T>, Option<RegTape<T>>)> {
    let c = rnn.config();
    let (t, b, unbatched, lens) = check_input(c, input, lengths)?;
    let (nl, h) = (c.num_layers, c.hidden_size);
    let nd = c.num_directions();
    let lstm = c.mode == Mode::Lstm;
    let h0 = state_in(rnn, "h0", state.map(|s| &s.h), b, unbatched, false)?;
    let c0 = match (lstm, state.and_then(|s| s.c.as_ref())) {
        (true, c0) => state_in(rnn, "c0", c0, b, unbatched, true)?,
        (false, Some(_)) => {
            return Err(Error::Input(format!(
                "c0 was given, but a {} has no cell state",
                c.mode
            )))
        }
        (false, None) => Vec::new(),
    };
    let masks = match masks {
        MaskSource::Eval => Masks::eval(c, t, b),
        MaskSource::Sample(rng) => Masks::sample(c, t, b, rng),
        MaskSource::Given(m) => {
            m.check(c, t, b)?;
            m.clone()
        }
    };
    // The input, time-major (T·B, I), zero at padding.
    let i = c.input_size;
    let mut x = vec![T::ZERO; t * b * i];
    for bi in 0..b {
        for ti in 0..lens[bi] {
            let from = user_row(c.batch_first, ti, bi, t, b) * i;
            x[(ti * b + bi) * i..][..i].copy_from_slice(&input.data()[from..from + i]);
        }
    }
    let dh = nd * h;
    let mut hn = vec![T::ZERO; nl * nd * b * h];
    let mut cn = vec![T::ZERO; if lstm { nl * nd * b * h } else { 0 }];
    let mut tapes = Vec::new();
    let mut out_masks = Vec::new();
    let groups = row_groups(b);
    let par = groups.len() == 1;
    let mut layer_in = x;
    for (l, m) in masks.layers.into_iter().enumerate() {
        let out_mask = m.output.clone();
        // This layer's output: h after each step of every direction, zero at padding.
        let mut y = vec![T::ZERO; t * b * dh];
        let mut m = Some(m);
        for d in 0..nd {
            let p = layer_params(rnn, l, d);
            let s = (l * nd + d) * b * h;
            let c0l = if lstm { &c0[s..][..b * h] } else { &[][..] };
            let xd = if d == 1 {
                reverse_seqs(&layer_in, t, b, c.layer_input_size(l), &lens)
            } else {
                layer_in.clone()
            };
            // The regularizers are for unidirectional layers: direction 1 has no masks.
            let mut dm = m.take().unwrap_or_default();
            dm.output = None;
            let inp = c.layer_input_size(l);
            // Each group of rows runs its own time loop (one thread each; with one group the
            // products inside use every thread).
            let parts: Vec<GroupTape<T>> = if par {
                let tape = layer_forward(
                    c.mode,
                    h,
                    inp,
                    &p,
                    t,
                    b,
                    &lens,
                    xd,
                    &h0[s..][..b * h],
                    c0l,
                    dm,
                    true,
                );
                vec![GroupTape { rows: 0..b, tape }]
            } else {
                map_groups(&groups, |r| {
                    let (bg, rs) = (r.len(), r.start * h..r.end * h);
                    let tape = layer_forward(
                        c.mode,
                        h,
                        inp,
                        &p,
                        t,
                        bg,
                        &lens[r.clone()],
                        gather_rows(&xd, t, b, inp, r),
                        &h0[s..][..b * h][rs.clone()],
                        if lstm { &c0l[rs] } else { &[][..] },
                        dm.rows(t, b, inp, h, r),
                        false,
                    );
                    GroupTape {
                        rows: r.clone(),
                        tape,
                    }
                })
            };
            // h after each step (T, B, H), and the final h and c.
            let mut hs = vec![T::ZERO; t * b * h];
            for gt in &parts {
                let (r, bg) = (&gt.rows, gt.rows.len());
                scatter_rows(&gt.tape.hs[bg * h..], t, b, h, r, &mut hs);
                hn[s + r.start * h..][..bg * h].copy_from_slice(&gt.tape.hs[t * bg * h..]);
                if lstm {
                    cn[s + r.start * h..][..bg * h].copy_from_slice(&gt.tape.cs[t * bg * h..]);
                }
            }
            if d == 1 {
                hs = reverse_seqs(&hs, t, b, h, &lens);
            }
            for ti in 0..t {
                for (bi, &len) in lens.iter().enumerate() {
                    if ti < len {
                        let r = ti * b + bi;
                        y[r * dh + d * h..][..h].copy_from_slice(&hs[r * h..][..h]);
                    }
                }
            }
            tapes.push(parts);
        }
        // The dropout towards the next layer.
        if let Some(om) = &out_mask {
            for ti in 0..t {
                for (bi, &len) in lens.iter().enumerate() {
                    if ti < len {
                        let r = (ti * b + bi) * dh;
                        let mr = if c.regular.locked_dropout { bi * dh } else { r };
                        for (v, &mv) in y[r..r + dh].iter_mut().zip(&om[mr..mr + dh]) {
                            *v *= mv;
                        }
                    }
                }
            }
        }
        out_masks.push(out_mask);
        layer_in = y;
    }
    // Output in the caller's layout.
    let mut out = vec![T::ZERO; t * b * dh];
    for bi in 0..b {
        for ti in 0..t {
            out[user_row(c.batch_first, ti, bi, t, b) * dh..][..dh]
                .copy_from_slice(&layer_in[(ti * b + bi) * dh..][..dh]);
        }
    }
    let mut oshape = input.shape().to_vec();
    *oshape.last_mut().unwrap() = dh;
    let sshape = rnn.state_shape(if unbatched { None } else { Some(b) }, false);
    let output = Output {
        output: Tensor::new(&oshape, out).expect("output shape"),
        h_n: Tensor::new(&sshape, hn).expect("state shape"),
        c_n: lstm.then(|| Tensor::new(&sshape, cn).expect("state shape")),
    };
    let tape = keep.then(|| RegTape {
        t,
        b,
        lengths: lens,
        unbatched,
        input_shape: input.shape().to_vec(),
        layers: tapes,
        out_masks,
    });
    Ok((output, tape))
}

#[allow(clippy::too_many_arguments)]
fn layer_forward<T: Real>(
    mode: Mode,
    h: usize,
    input: usize,
    p: &LayerParams<'_, T>,
    t: usize,
    b: usize,
    lens: &[usize],
    mut xd: Vec<T>,
    h0: &[T],
    c0: &[T],
    masks: LayerMasks<T>,
    par: bool,
) -> LayerTape<T> {
    let threads = if par { Par::Threads } else { Par::Seq };
    let g = mode.gates();
    let gh = g * h;
    let tb = t * b;
    let lstm = mode == Mode::Lstm;
    let gru = mode == Mode::Gru;
    let cv = p.cell;
    // GRU with linear_before_reset = false: n's recurrent product is of r ⊙ h̃, after r.
    let reset_first = gru && !cv.linear_before_reset;
    let ln = p.ln.as_ref();
    if let Some(m) = &masks.input {
        for (r, row) in xd.chunks_exact_mut(input).enumerate() {
            let bi = r % b;
            for (v, &mv) in row.iter_mut().zip(&m[bi * input..][..input]) {
                *v *= mv;
            }
        }
    }
    // a = LN_ih(x̃ W_ihᵀ) + b_ih for every step at once.
    let mut pih = Buf::zeroed(tb * gh);
    matmul(
        MatMut::new(&mut pih, tb, gh),
        MatRef::new(&xd, tb, input),
        MatRef::new(p.w_ih, gh, input).t(),
        false,
        threads,
    );
    let (mut ih_hat, mut ih_rstd) = (Buf::empty(), Buf::empty());
    if let Some(ln) = ln {
        ih_hat = Buf::zeroed(tb * gh);
        ih_rstd = Buf::zeroed(tb);
        for r in 0..tb {
            ih_rstd[r] = ln_row(
                &mut pih[r * gh..][..gh],
                ln.ih_w,
                ln.ih_b,
                &mut ih_hat[r * gh..][..gh],
            );
        }
    }
    if let Some(bias) = p.b_ih {
        for row in pih.chunks_exact_mut(gh) {
            for (v, &bv) in row.iter_mut().zip(bias) {
                *v += bv;
            }
        }
    }
    let w_eff = masks
        .weight_hh
        .as_ref()
        .map(|m| p.w_hh.iter().zip(m).map(|(&w, &mv)| w * mv).collect());
    let w: &[T] = w_eff.as_deref().unwrap_or(p.w_hh);
    // Wᵀ packed once for the per-step products.
    let mut w_t = PackedB::new();
    w_t.pack(MatRef::new(w, gh, h).t());
    let mut hs = Buf::zeroed((t + 1) * b * h);
    hs[..b * h].copy_from_slice(h0);
    let mut cs = Buf::zeroed(if lstm { (t + 1) * b * h } else { 0 });
    if lstm {
        cs[..b * h].copy_from_slice(c0);
    }
    let mut hd = Buf::zeroed(tb * h);
    let (mut hh_hat, mut hh_rstd) = if ln.is_some() {
        (Buf::zeroed(tb * gh), Buf::zeroed(tb))
    } else {
        (Buf::empty(), Buf::empty())
    };
    let mut gates = Buf::zeroed(tb * gh);
    let mut pre = Buf::zeroed(if cv.general { tb * gh } else { 0 });
    let mut ghn = Buf::zeroed(if gru { tb * h } else { 0 });
    let mut rh = Buf::zeroed(if reset_first { tb * h } else { 0 });
    let mut rhw = Buf::zeroed(if reset_first { b * h } else { 0 });
    let ln_c = ln.filter(|_| lstm);
    let (mut c_hat, mut c_rstd) = if ln_c.is_some() {
        (Buf::zeroed(tb * h), Buf::zeroed(tb))
    } else {
        (Buf::empty(), Buf::empty())
    };
    let mut tc = Buf::zeroed(if lstm { tb * h } else { 0 });
    let mut cnew_all = Buf::zeroed(if lstm && cv.general { tb * h } else { 0 });
    let mut phh = Buf::zeroed(b * gh);
    let mut cnew = Buf::zeroed(h);
    // Activation inputs: kept in `pre` (cell variants), then clipped in `gt`.
    let keep_pre = |pre: &mut [T], r: usize, from: usize, v: &[T]| {
        if cv.general {
            pre[r * gh + from..][..v.len()].copy_from_slice(v);
        }
    };
    for ti in 0..t {
        let (past, future) = hs.split_at_mut((ti + 1) * b * h);
        let hp = &past[ti * b * h..];
        let hnext = &mut future[..b * h];
        let hdt = &mut hd[ti * b * h..][..b * h];
        hdt.copy_from_slice(hp);
        if let Some(m) = &masks.recurrent {
            for (v, &mv) in hdt.iter_mut().zip(m) {
                *v *= mv;
            }
        }
        w_t.matmul_with(b, hdt, h, &mut phh, gh, false, par);
        for bi in 0..b {
            let row = &mut phh[bi * gh..][..gh];
            let r = ti * b + bi;
            if let Some(ln) = ln {
                hh_rstd[r] = ln_row(row, ln.hh_w, ln.hh_b, &mut hh_hat[r * gh..][..gh]);
            }
            if let Some(bias) = p.b_hh {
                for (v, &bv) in row.iter_mut().zip(bias) {
                    *v += bv;
                }
            }
        }
        for bi in 0..b {
            let r = ti * b + bi;
            let hpr = &hp[bi * h..][..h];
            if ti >= lens[bi] {
                hnext[bi * h..][..h].copy_from_slice(hpr);
                if lstm {
                    let (cp, cf) = cs.split_at_mut((ti + 1) * b * h);
                    cf[bi * h..][..h].copy_from_slice(&cp[(ti * b + bi) * h..][..h]);
                }
                continue;
            }
            let a = &pih[r * gh..][..gh];
            let bb = &phh[bi * gh..][..gh];
            let gt = &mut gates[r * gh..][..gh];
            let zh = masks.zoneout_h.as_ref().map(|m| &m[r * h..][..h]);
            match mode {
                Mode::Lstm => {
                    for k in 0..gh {
                        gt[k] = a[k] + bb[k];
                    }
                    let (cp, cf) = cs.split_at_mut((ti + 1) * b * h);
                    let cpr = &cp[(ti * b + bi) * h..][..h];
                    if let Some(pp) = p.peep {
                        for j in 0..h {
                            gt[j] += pp[j] * cpr[j];
                            gt[h + j] += pp[h + j] * cpr[j];
                        }
                    }
                    keep_pre(&mut pre, r, 0, &gt[..3 * h]);
                    cv.clip(&mut gt[..3 * h]);
                    cv.f.apply_slice(&mut gt[..h]);
                    if cv.input_forget {
                        for j in 0..h {
                            gt[h + j] = T::ONE - gt[j];
                        }
                    } else {
                        cv.f.apply_slice(&mut gt[h..2 * h]);
                    }
                    cv.g.apply_slice(&mut gt[2 * h..3 * h]);
                    for j in 0..h {
                        cnew[j] = gt[h + j] * cpr[j] + gt[j] * gt[2 * h + j];
                    }
                    if let Some(ln) = ln_c {
                        c_rstd[r] = ln_row(
                            &mut cnew,
                            ln.c_w.unwrap(),
                            ln.c_b.unwrap(),
                            &mut c_hat[r * h..][..h],
                        );
                    }
                    // The output gate sees the new cell state through its peephole.
                    if let Some(pp) = p.peep {
                        for j in 0..h {
                            gt[3 * h + j] += pp[2 * h + j] * cnew[j];
                        }
                    }
                    keep_pre(&mut pre, r, 3 * h, &gt[3 * h..]);
                    cv.clip(&mut gt[3 * h..]);
                    cv.f.apply_slice(&mut gt[3 * h..]);
                    if cv.general {
                        cnew_all[r * h..][..h].copy_from_slice(&cnew);
                    }
                    let zc = masks.zoneout_c.as_ref().map(|m| &m[r * h..][..h]);
                    let cout = &mut cf[bi * h..][..h];
                    let tcr = &mut tc[r * h..][..h];
                    tcr.copy_from_slice(&cnew);
                    cv.hf.apply_slice(tcr);
                    for j in 0..h {
                        let hnew = gt[3 * h + j] * tcr[j];
                        cout[j] = match zc {
                            Some(d) => d[j] * cpr[j] + (T::ONE - d[j]) * cnew[j],
                            None => cnew[j],
                        };
                        hnext[bi * h + j] = match zh {
                            Some(d) => d[j] * hpr[j] + (T::ONE - d[j]) * hnew,
                            None => hnew,
                        };
                    }
                }
                Mode::Gru => {
                    for k in 0..2 * h {
                        gt[k] = a[k] + bb[k];
                    }
                    keep_pre(&mut pre, r, 0, &gt[..2 * h]);
                    cv.clip(&mut gt[..2 * h]);
                    cv.f.apply_slice(&mut gt[..2 * h]);
                    if reset_first {
                        // n waits for (r ⊙ h̃) W_hnᵀ of every row, below.
                        let hdr = &hd[r * h..][..h];
                        for j in 0..h {
                            rh[r * h + j] = gt[j] * hdr[j];
                        }
                        continue;
                    }
                    for j in 0..h {
                        let bn = bb[2 * h + j];
                        ghn[r * h + j] = bn;
                        gt[2 * h + j] = a[2 * h + j] + gt[j] * bn;
                    }
                    gru_finish(&cv, &mut pre, r, gt, h, hpr, zh, &mut hnext[bi * h..][..h]);
                }
                Mode::RnnTanh | Mode::RnnRelu => {
                    for j in 0..h {
                        gt[j] = a[j] + bb[j];
                    }
                    keep_pre(&mut pre, r, 0, gt);
                    cv.clip(gt);
                    cv.f.apply_slice(gt);
                    for j in 0..h {
                        let hnew = gt[j];
                        hnext[bi * h + j] = match zh {
                            Some(d) => d[j] * hpr[j] + (T::ONE - d[j]) * hnew,
                            None => hnew,
                        };
                    }
                }
            }
        }
        if reset_first {
            // (r ⊙ h̃) W_hnᵀ + b_hn for every row at once.
            matmul(
                MatMut::new(&mut rhw, b, h),
                MatRef::new(&rh[ti * b * h..][..b * h], b, h),
                MatRef::new(&w[2 * h * h..], h, h).t(),
                false,
                Par::Seq,
            );
            for bi in (0..b).filter(|&bi| ti < lens[bi]) {
                let r = ti * b + bi;
                let a = &pih[r * gh..][..gh];
                let gt = &mut gates[r * gh..][..gh];
                for j in 0..h {
                    let bn = rhw[bi * h + j] + p.b_hh.map_or(T::ZERO, |bh| bh[2 * h + j]);
                    ghn[r * h + j] = bn;
                    gt[2 * h + j] = a[2 * h + j] + bn;
                }
                let zh = masks.zoneout_h.as_ref().map(|m| &m[r * h..][..h]);
                gru_finish(
                    &cv,
                    &mut pre,
                    r,
                    gt,
                    h,
                    &hp[bi * h..][..h],
                    zh,
                    &mut hnext[bi * h..][..h],
                );
            }
        }
    }
    LayerTape {
        masks,
        xd,
        ih_hat,
        ih_rstd,
        hh_hat,
        hh_rstd,
        hd,
        gates,
        pre,
        ghn,
        rh,
        c_hat,
        c_rstd,
        tc,
        cnew: cnew_all,
        hs,
        cs,
        w_eff,
    }
}

/// The GRU's candidate from its input in `gt[2H..]`, and the new h.
#[allow(clippy::too_many_arguments)]
fn gru_finish<T: Real>(
    cv: &CellOpts<T>,
    pre: &mut [T],
    r: usize,
    gt: &mut [T],
    h: usize,
    hpr: &[T],
    zh: Option<&[T]>,
    hnext: &mut [T],
) {
    if cv.general {
        pre[(r * 3 + 2) * h..][..h].copy_from_slice(&gt[2 * h..]);
    }
    cv.clip(&mut gt[2 * h..]);
    cv.g.apply_slice(&mut gt[2 * h..]);
    for j in 0..h {
        let n = gt[2 * h + j];
        let z = gt[h + j];
        let hnew = (T::ONE - z) * n + z * hpr[j];
        hnext[j] = match zh {
            Some(d) => d[j] * hpr[j] + (T::ONE - d[j]) * hnew,
            None => hnew,
        };
    }
}

/// The gradients of one layer's parameters, summed over the pass.
struct LayerGrads<T> {
    w_ih: Vec<T>,
    w_hh: Vec<T>,
    b_ih: Vec<T>,
    b_hh: Vec<T>,
    ln_ih_w: Vec<T>,
    ln_ih_b: Vec<T>,
    ln_hh_w: Vec<T>,
    ln_hh_b: Vec<T>,
    ln_c_w: Vec<T>,
    ln_c_b: Vec<T>,
    peep: Vec<T>,
}

impl<T: Real> LayerGrads<T> {
    /// Adds another group's gradients.
    fn add(&mut self, o: &LayerGrads<T>) {
        let pairs = [
            (&mut self.w_ih, &o.w_ih),
            (&mut self.w_hh, &o.w_hh),
            (&mut self.b_ih, &o.b_ih),
            (&mut self.b_hh, &o.b_hh),
            (&mut self.ln_ih_w, &o.ln_ih_w),
            (&mut self.ln_ih_b, &o.ln_ih_b),
            (&mut self.ln_hh_w, &o.ln_hh_w),
            (&mut self.ln_hh_b, &o.ln_hh_b),
            (&mut self.ln_c_w, &o.ln_c_w),
            (&mut self.ln_c_b, &o.ln_c_b),
            (&mut self.peep, &o.peep),
        ];
        for (a, b) in pairs {
            for (x, &y) in a.iter_mut().zip(b) {
                *x += y;
            }
        }
    }
}

/// BPTT through the stack: adds every parameter's gradient to `grads` (flat, layout order).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward<T: Real>(
    rnn: &Rnn<T>,
    tape: &RegTape<T>,
    grad_output: Option<&Tensor<T>>,
    grad_h_n: Option<&Tensor<T>>,
    grad_c_n: Option<&Tensor<T>>,
    grads: &mut [T],
    mut record: Option<&mut dyn BackwardObserver<T>>,
    input_grad: bool,
) -> Result<InputGrads<T>> {
    let c = rnn.config();
    let (t, b) = (tape.t, tape.b);
    let (nl, h) = (c.num_layers, c.hidden_size);
    let nd = c.num_directions();
    let dh = nd * h;
    let lens = &tape.lengths;
    let lstm = c.mode == Mode::Lstm;
    let layout = rnn.layout();
    if grads.len() != layout.total() {
        return Err(Error::Input(format!(
            "grads: expected {} values (the parameter count), got {}",
            layout.total(),
            grads.len()
        )));
    }
    let mut oshape = tape.input_shape.clone();
    *oshape.last_mut().unwrap() = dh;
    let sshape = rnn.state_shape(if tape.unbatched { None } else { Some(b) }, false);
    let mut dy: Vec<T> = vec![T::ZERO; t * b * dh];
    if let Some(g) = grad_output {
        if g.shape() != oshape.as_slice() {
            return Err(Error::shape("grad_output", &oshape, g.shape()));
        }
        for bi in 0..b {
            for ti in 0..lens[bi] {
                dy[(ti * b + bi) * dh..][..dh]
                    .copy_from_slice(&g.data()[user_row(c.batch_first, ti, bi, t, b) * dh..][..dh]);
            }
        }
    }
    let state_grad = |what: &str, g: Option<&Tensor<T>>| -> Result<Option<Vec<T>>> {
        match g {
            None => Ok(None),
            Some(g) if g.shape() == sshape.as_slice() => Ok(Some(g.data().to_vec())),
            Some(g) => Err(Error::shape(what, &sshape, g.shape())),
        }
    };
    let dhn = state_grad("grad_h_n", grad_h_n)?;
    let dcn = match (lstm, grad_c_n) {
        (true, g) => state_grad("grad_c_n", g)?,
        (false, Some(_)) => {
            return Err(Error::Input(format!(
                "grad_c_n was given, but a {} has no cell state",
                c.mode
            )))
        }
        (false, None) => None,
    };
    if let Some(r) = record.as_deref_mut() {
        r.start(nl, nd, t, h, lens.clone());
    }
    let mut dh0 = vec![T::ZERO; nl * nd * b * h];
    let mut dc0 = vec![T::ZERO; if lstm { nl * nd * b * h } else { 0 }];
    let mut dx_final = Vec::new();
    for l in (0..nl).rev() {
        let input = c.layer_input_size(l);
        let want_dx = l > 0 || input_grad;
        let mut dx_sum = vec![T::ZERO; if want_dx { t * b * input } else { 0 }];
        for d in 0..nd {
            let p = layer_params(rnn, l, d);
            let parts = &tape.layers[l * nd + d];
            let s = (l * nd + d) * b * h;
            // This direction's share of d output, in its own time order.
            let mut dyd = vec![T::ZERO; t * b * h];
            for (r, row) in dyd.chunks_exact_mut(h).enumerate() {
                row.copy_from_slice(&dy[r * dh + d * h..][..h]);
            }
            if d == 1 {
                dyd = reverse_seqs(&dyd, t, b, h, lens);
            }
            let mut rec = record.as_ref().map(|_| vec![T::ZERO; t * b * h]);
            let recording = rec.is_some();
            // Each group's backward loop on its own rows (one thread each), as in the forward.
            let one = parts.len() == 1;
            let mut results = map_groups(parts, |gt| {
                let (r, bg) = (&gt.rows, gt.rows.len());
                let rs = s + r.start * h..s + r.end * h;
                let dy_g = if one {
                    None
                } else {
                    Some(gather_rows(&dyd, t, b, h, r))
                };
                let mut rec_g = recording.then(|| vec![T::ZERO; t * bg * h]);
                let out = layer_backward(
                    c.mode,
                    h,
                    input,
                    &p,
                    t,
                    bg,
                    &lens[r.clone()],
                    &gt.tape,
                    dy_g.as_deref().unwrap_or(&dyd),
                    dhn.as_ref().map(|v| &v[rs.clone()]),
                    dcn.as_ref().map(|v| &v[rs.clone()]),
                    want_dx,
                    rec_g.as_deref_mut(),
                    one,
                );
                (out, rec_g)
            });
            let mut dx = vec![T::ZERO; if want_dx && !one { t * b * input } else { 0 }];
            for (gt, ((_, dx_g, dh0g, dc0g), rec_g)) in parts.iter().zip(&results) {
                let (r, bg) = (&gt.rows, gt.rows.len());
                dh0[s + r.start * h..][..bg * h].copy_from_slice(dh0g);
                if lstm {
                    dc0[s + r.start * h..][..bg * h].copy_from_slice(dc0g);
                }
                if let (Some(all), Some(part)) = (rec.as_mut(), rec_g) {
                    scatter_rows(part, t, b, h, r, all);
                }
                if want_dx && !one {
                    scatter_rows(dx_g, t, b, input, r, &mut dx);
                }
            }
            let ((mut g, dx_one, _, _), _) = results.remove(0);
            for ((gg, _, _, _), _) in &results {
                g.add(gg);
            }
            let dx = if one { dx_one } else { dx };
            if let (Some(r), Some(rec)) = (record.as_deref_mut(), &rec) {
                if d == 1 {
                    r.hidden_grads(l, d, &reverse_seqs(rec, t, b, h, lens));
                } else {
                    r.hidden_grads(l, d, rec);
                }
            }
            let dl = layout.dir(l, d);
            let add = |grads: &mut [T], r: &std::ops::Range<usize>, v: &[T]| {
                for (a, &x) in grads[r.clone()].iter_mut().zip(v) {
                    *a += x;
                }
            };
            add(grads, &dl.w_ih, &g.w_ih);
            add(grads, &dl.w_hh, &g.w_hh);
            if let Some(r) = &dl.b_ih {
                add(grads, r, &g.b_ih);
            }
            if let Some(r) = &dl.b_hh {
                add(grads, r, &g.b_hh);
            }
            if let Some(r) = &dl.peephole {
                add(grads, r, &g.peep);
            }
            if let Some(LnLayout {
                ih_weight,
                ih_bias,
                hh_weight,
                hh_bias,
                c_weight,
                c_bias,
            }) = &dl.ln
            {
                add(grads, ih_weight, &g.ln_ih_w);
                add(grads, ih_bias, &g.ln_ih_b);
                add(grads, hh_weight, &g.ln_hh_w);
                add(grads, hh_bias, &g.ln_hh_b);
                if let (Some(w), Some(bb)) = (c_weight, c_bias) {
                    add(grads, w, &g.ln_c_w);
                    add(grads, bb, &g.ln_c_b);
                }
            }
            if want_dx {
                let dx = if d == 1 {
                    reverse_seqs(&dx, t, b, input, lens)
                } else {
                    dx
                };
                for (a, &v) in dx_sum.iter_mut().zip(&dx) {
                    *a += v;
                }
            }
        }
        if l > 0 {
            let mut dx = dx_sum;
            if let Some(m) = &tape.out_masks[l - 1] {
                for (r, row) in dx.chunks_exact_mut(dh).enumerate() {
                    let mr = if c.regular.locked_dropout {
                        (r % b) * dh
                    } else {
                        r * dh
                    };
                    for (v, &mv) in row.iter_mut().zip(&m[mr..mr + dh]) {
                        *v *= mv;
                    }
                }
            }
            dy = dx;
        } else {
            dx_final = dx_sum;
        }
    }
    let input = if input_grad {
        let i = c.input_size;
        let mut out = vec![T::ZERO; t * b * i];
        for bi in 0..b {
            for ti in 0..lens[bi] {
                out[user_row(c.batch_first, ti, bi, t, b) * i..][..i]
                    .copy_from_slice(&dx_final[(ti * b + bi) * i..][..i]);
            }
        }
        Tensor::new(&tape.input_shape, out).expect("input shape")
    } else {
        Tensor::new(&[0], Vec::new()).expect("empty tensor")
    };
    Ok(InputGrads {
        input,
        h0: Tensor::new(&sshape, dh0).expect("state shape"),
        c0: lstm.then(|| Tensor::new(&sshape, dc0).expect("state shape")),
    })
}

#[allow(clippy::too_many_arguments)]
fn layer_backward<T: Real>(
    mode: Mode,
    h: usize,
    input: usize,
    p: &LayerParams<'_, T>,
    t: usize,
    b: usize,
    lens: &[usize],
    lt: &LayerTape<T>,
    dy: &[T],
    dhn: Option<&[T]>,
    dcn: Option<&[T]>,
    want_dx: bool,
    mut rec: Option<&mut [T]>,
    par: bool,
) -> (LayerGrads<T>, Vec<T>, Vec<T>, Vec<T>) {
    let threads = if par { Par::Threads } else { Par::Seq };
    let gh = mode.gates() * h;
    let tb = t * b;
    let lstm = mode == Mode::Lstm;
    let cv = p.cell;
    let reset_first = mode == Mode::Gru && !cv.linear_before_reset;
    let ln = p.ln.as_ref();
    let ln_c = ln.filter(|_| lstm);
    let w: &[T] = lt.w_eff.as_deref().unwrap_or(p.w_hh);
    let zeros = |n: usize| vec![T::ZERO; n];
    let mut g = LayerGrads {
        w_ih: zeros(gh * input),
        w_hh: zeros(gh * h),
        b_ih: zeros(gh),
        b_hh: zeros(gh),
        ln_ih_w: zeros(if ln.is_some() { gh } else { 0 }),
        ln_ih_b: zeros(if ln.is_some() { gh } else { 0 }),
        ln_hh_w: zeros(if ln.is_some() { gh } else { 0 }),
        ln_hh_b: zeros(if ln.is_some() { gh } else { 0 }),
        ln_c_w: zeros(if ln_c.is_some() { h } else { 0 }),
        ln_c_b: zeros(if ln_c.is_some() { h } else { 0 }),
        peep: zeros(if p.peep.is_some() { 3 * h } else { 0 }),
    };
    let mut dh = dhn.map_or_else(|| zeros(b * h), |v| v.to_vec());
    let mut dc = if lstm {
        dcn.map_or_else(|| zeros(b * h), |v| v.to_vec())
    } else {
        Vec::new()
    };
    let mut dpih = zeros(tb * gh);
    let mut dbm = zeros(tb * gh);
    let mut dphh = zeros(b * gh);
    let mut dh_prev = zeros(b * h);
    let mut dc_prev = zeros(if lstm { b * h } else { 0 });
    let mut dhd = zeros(b * h);
    let mut drh = zeros(if reset_first { b * h } else { 0 });
    let mut dcn_row = zeros(h);
    let mut dct = zeros(h);
    for ti in (0..t).rev() {
        dphh.fill(T::ZERO);
        for bi in 0..b {
            let r = ti * b + bi;
            let dhr = &mut dh[bi * h..][..h];
            let (dhp, dcp) = (&mut dh_prev[bi * h..][..h], &mut dc_prev[..]);
            if ti >= lens[bi] {
                dhp.copy_from_slice(dhr);
                if lstm {
                    dcp[bi * h..][..h].copy_from_slice(&dc[bi * h..][..h]);
                }
                continue;
            }
            for (v, &d) in dhr.iter_mut().zip(&dy[r * h..][..h]) {
                *v += d;
            }
            if let Some(rec) = rec.as_deref_mut() {
                rec[r * h..][..h].copy_from_slice(dhr);
            }
            let hp = &lt.hs[r * h..][..h];
            let gt = &lt.gates[r * gh..][..gh];
            // The activations' inputs (without cell variants only tanh, sigmoid and relu,
            // whose derivatives need the outputs alone).
            let pr = if cv.general {
                &lt.pre[r * gh..][..gh]
            } else {
                gt
            };
            let zh = lt.masks.zoneout_h.as_ref().map(|m| &m[r * h..][..h]);
            // dh' and the share of dh that goes straight to h_{t-1}.
            for j in 0..h {
                let d = zh.map_or(T::ZERO, |z| z[j]);
                dhp[j] = d * dhr[j];
                dhr[j] = (T::ONE - d) * dhr[j];
            }
            let dpi = &mut dpih[r * gh..][..gh];
            let dph = &mut dphh[bi * gh..][..gh];
            match mode {
                Mode::Lstm => {
                    let cp = &lt.cs[r * h..][..h];
                    let tc = &lt.tc[r * h..][..h];
                    let cn = if cv.general {
                        &lt.cnew[r * h..][..h]
                    } else {
                        tc
                    };
                    let zc = lt.masks.zoneout_c.as_ref().map(|m| &m[r * h..][..h]);
                    let dcr = &dc[bi * h..][..h];
                    let dcpr = &mut dcp[bi * h..][..h];
                    for j in 0..h {
                        let d = zc.map_or(T::ZERO, |z| z[j]);
                        dcpr[j] = d * dcr[j];
                        let o = gt[3 * h + j];
                        let dpo = dhr[j] * tc[j] * cv.grad(cv.f, pr[3 * h + j], o);
                        dpi[3 * h + j] = dpo;
                        dcn_row[j] = (T::ONE - d) * dcr[j] + dhr[j] * o * cv.hf.grad(cn[j], tc[j]);
                        if let Some(pp) = p.peep {
                            dcn_row[j] += dpo * pp[2 * h + j];
                            g.peep[2 * h + j] += dpo * cn[j];
                        }
                    }
                    match ln_c {
                        Some(ln) => ln_row_back(
                            &dcn_row,
                            &lt.c_hat[r * h..][..h],
                            lt.c_rstd[r],
                            ln.c_w.unwrap(),
                            &mut g.ln_c_w,
                            &mut g.ln_c_b,
                            &mut dct,
                        ),
                        None => dct.copy_from_slice(&dcn_row),
                    }
                    for j in 0..h {
                        let (i, f, gg) = (gt[j], gt[h + j], gt[2 * h + j]);
                        let d = dct[j];
                        dcpr[j] += d * f;
                        let (mut di, mut df) = (d * gg, d * cp[j]);
                        if cv.input_forget {
                            di -= df;
                            df = T::ZERO;
                        }
                        dpi[j] = di * cv.grad(cv.f, pr[j], i);
                        dpi[h + j] = if cv.input_forget {
                            T::ZERO
                        } else {
                            df * cv.grad(cv.f, pr[h + j], f)
                        };
                        dpi[2 * h + j] = d * i * cv.grad(cv.g, pr[2 * h + j], gg);
                        if let Some(pp) = p.peep {
                            dcpr[j] += dpi[j] * pp[j] + dpi[h + j] * pp[h + j];
                            g.peep[j] += dpi[j] * cp[j];
                            g.peep[h + j] += dpi[h + j] * cp[j];
                        }
                    }
                    dph.copy_from_slice(dpi);
                }
                Mode::Gru => {
                    let bn = &lt.ghn[r * h..][..h];
                    for j in 0..h {
                        let (rr, z, n) = (gt[j], gt[h + j], gt[2 * h + j]);
                        let dhn_ = dhr[j];
                        dhp[j] += dhn_ * z;
                        let dn = dhn_ * (T::ONE - z);
                        let dz = dhn_ * (hp[j] - n);
                        let dpn = dn * cv.grad(cv.g, pr[2 * h + j], n);
                        dpi[2 * h + j] = dpn;
                        dpi[h + j] = dz * cv.grad(cv.f, pr[h + j], z);
                        dph[h + j] = dpi[h + j];
                        if reset_first {
                            // d(W_hn (r ⊙ h̃) + b_hn); r's share follows the product below.
                            dph[2 * h + j] = dpn;
                        } else {
                            dph[2 * h + j] = dpn * rr;
                            dpi[j] = dpn * bn[j] * cv.grad(cv.f, pr[j], rr);
                            dph[j] = dpi[j];
                        }
                    }
                }
                Mode::RnnTanh | Mode::RnnRelu => {
                    for j in 0..h {
                        dpi[j] = dhr[j] * cv.grad(cv.f, pr[j], gt[j]);
                        dph[j] = dpi[j];
                    }
                }
            }
        }
        dhd.fill(T::ZERO);
        if reset_first {
            // d(r ⊙ h̃) = d n_pre W_hn; then r's gradient and h̃'s share.
            matmul(
                MatMut::new(&mut drh, b, h),
                MatRef::strided(&dphh[2 * h..], b, h, gh),
                MatRef::new(&w[2 * h * h..], h, h),
                false,
                Par::Seq,
            );
            for bi in (0..b).filter(|&bi| ti < lens[bi]) {
                let r = ti * b + bi;
                let gt = &lt.gates[r * gh..][..gh];
                let pr = &lt.pre[r * gh..][..gh];
                let hdr = &lt.hd[r * h..][..h];
                for j in 0..h {
                    let d = drh[bi * h + j];
                    let v = d * hdr[j] * cv.grad(cv.f, pr[j], gt[j]);
                    dpih[r * gh + j] = v;
                    dphh[bi * gh + j] = v;
                    dhd[bi * h + j] = d * gt[j];
                }
            }
        }
        for bi in (0..b).filter(|&bi| ti < lens[bi]) {
            let r = ti * b + bi;
            let dph = &dphh[bi * gh..][..gh];
            for (a, &v) in g.b_hh.iter_mut().zip(dph.iter()) {
                *a += v;
            }
            let dbmr = &mut dbm[r * gh..][..gh];
            match ln {
                Some(ln) => ln_row_back(
                    dph,
                    &lt.hh_hat[r * gh..][..gh],
                    lt.hh_rstd[r],
                    ln.hh_w,
                    &mut g.ln_hh_w,
                    &mut g.ln_hh_b,
                    dbmr,
                ),
                None => dbmr.copy_from_slice(dph),
            }
        }
        // d h̃ = d(h̃ Wᵀ) W (without n's block when it multiplies r ⊙ h̃), then through the
        // recurrent dropout to h_{t-1}.
        let cols = if reset_first { 2 * h } else { gh };
        matmul(
            MatMut::new(&mut dhd, b, h),
            MatRef::strided(&dbm[ti * b * gh..][..b * gh], b, cols, gh),
            MatRef::new(&w[..cols * h], cols, h),
            reset_first,
            Par::Seq,
        );
        if let Some(m) = &lt.masks.recurrent {
            for (v, &mv) in dhd.iter_mut().zip(m) {
                *v *= mv;
            }
        }
        for (a, &v) in dh_prev.iter_mut().zip(&dhd) {
            *a += v;
        }
        std::mem::swap(&mut dh, &mut dh_prev);
        if lstm {
            std::mem::swap(&mut dc, &mut dc_prev);
        }
    }
    // d W = Σ_t d(h̃ Wᵀ)ᵀ h̃ (n's block: d(..)ᵀ (r ⊙ h̃)), then through the weight drop.
    if reset_first {
        let (w_rz, w_n) = g.w_hh.split_at_mut(2 * h * h);
        matmul(
            MatMut::new(w_rz, 2 * h, h),
            MatRef::strided(&dbm, tb, 2 * h, gh).t(),
            MatRef::new(&lt.hd, tb, h),
            false,
            threads,
        );
        matmul(
            MatMut::new(w_n, h, h),
            MatRef::strided(&dbm[2 * h..], tb, h, gh).t(),
            MatRef::new(&lt.rh, tb, h),
            false,
            threads,
        );
    } else {
        matmul(
            MatMut::new(&mut g.w_hh, gh, h),
            MatRef::new(&dbm, tb, gh).t(),
            MatRef::new(&lt.hd, tb, h),
            false,
            threads,
        );
    }
    if let Some(m) = &lt.masks.weight_hh {
        for (v, &mv) in g.w_hh.iter_mut().zip(m) {
            *v *= mv;
        }
    }
    for row in dpih.chunks_exact(gh) {
        for (a, &v) in g.b_ih.iter_mut().zip(row) {
            *a += v;
        }
    }
    let mut da = if let Some(ln) = ln {
        let mut da = zeros(tb * gh);
        for r in 0..tb {
            ln_row_back(
                &dpih[r * gh..][..gh],
                &lt.ih_hat[r * gh..][..gh],
                lt.ih_rstd[r],
                ln.ih_w,
                &mut g.ln_ih_w,
                &mut g.ln_ih_b,
                &mut da[r * gh..][..gh],
            );
        }
        da
    } else {
        std::mem::take(&mut dpih)
    };
    matmul(
        MatMut::new(&mut g.w_ih, gh, input),
        MatRef::new(&da, tb, gh).t(),
        MatRef::new(&lt.xd, tb, input),
        false,
        threads,
    );
    let mut dx = Vec::new();
    if want_dx {
        dx = zeros(tb * input);
        matmul(
            MatMut::new(&mut dx, tb, input),
            MatRef::new(&da, tb, gh),
            MatRef::new(p.w_ih, gh, input),
            false,
            threads,
        );
        if let Some(m) = &lt.masks.input {
            for (r, row) in dx.chunks_exact_mut(input).enumerate() {
                let bi = r % b;
                for (v, &mv) in row.iter_mut().zip(&m[bi * input..][..input]) {
                    *v *= mv;
                }
            }
        }
    }
    da.clear();
    (g, dx, dh, dc)
}
