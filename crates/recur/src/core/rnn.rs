//! `Rnn`: the equivalent of `torch.nn.RNN`, `torch.nn.LSTM` and `torch.nn.GRU`.

use crate::core::config::{Mode, RnnConfig};
use crate::core::engine::{
    self, BwdWork, Dims, DirGrads, DirParams, DirState, DyView, ForwardWeights, Plan,
};
use crate::core::layout::{DirLayout, Naming, ParamLayout};
use crate::core::regular::{self, MaskSource, Masks, RegTape};
use crate::core::tensor::Tensor;
use crate::error::{fmt_shape, Error, Result};
use rand::{Rng, RngCore, SeedableRng};
use recur_kernels::pool::Buf;
use recur_kernels::Real;
use std::sync::OnceLock;

/// A stack of recurrent layers with PyTorch's semantics, parameters and names.
///
/// Parameters live in one flat buffer laid out by [`ParamLayout`] (PyTorch's registration
/// order); gradients use the same layout.
///
/// ```
/// use recur::{Rnn, RnnConfig, Tensor};
/// // nn.LSTM(3, 5, num_layers=2)
/// let lstm: Rnn<f32> = Rnn::new(RnnConfig::lstm(3, 5).num_layers(2), 0).unwrap();
/// let x = Tensor::zeros(&[7, 2, 3]); // (seq, batch, input)
/// let out = lstm.forward(&x, None, None).unwrap();
/// assert_eq!(out.output.shape(), &[7, 2, 5]);
/// assert_eq!(out.h_n.shape(), &[2, 2, 5]);
/// ```
#[derive(Clone, Debug)]
pub struct Rnn<T = f32> {
    config: RnnConfig,
    layout: ParamLayout,
    params: Vec<T>,
    /// The forward pass's packed weights of each (layer, direction), made on first use and
    /// dropped whenever the parameters may change ([`Rnn::params_mut`]).
    packed: PackCache<T>,
    /// The weights in a compact precision, once [`Rnn::set_precision`] made them so
    /// (`core::compact`); dropped with the packed weights.
    pub(crate) compact: Option<std::sync::Arc<crate::core::compact::Compact>>,
}

/// Per (layer, direction): the packed forward weights, once made.
#[derive(Clone)]
struct PackCache<T>(Vec<OnceLock<ForwardWeights<T>>>);

impl<T> PackCache<T> {
    fn new(config: &RnnConfig) -> PackCache<T> {
        let dirs = config.num_layers * if config.bidirectional { 2 } else { 1 };
        PackCache((0..dirs).map(|_| OnceLock::new()).collect())
    }
    fn clear(&mut self) {
        for c in &mut self.0 {
            c.take();
        }
    }
}

impl<T> std::fmt::Debug for PackCache<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let made = self.0.iter().filter(|c| c.get().is_some()).count();
        write!(f, "PackCache({made} of {} packed)", self.0.len())
    }
}

/// The recurrent state: `h` (L·D, B, H_out) and, for an LSTM, `c` (L·D, B, H), indexed
/// `layer * D + direction`. Without a batch dimension for unbatched input.
#[derive(Clone, Debug, PartialEq)]
pub struct State<T> {
    /// Hidden state.
    pub h: Tensor<T>,
    /// Cell state (LSTM only).
    pub c: Option<Tensor<T>>,
}

/// What a forward pass returns.
#[derive(Clone, Debug, PartialEq)]
pub struct Output<T> {
    /// The last layer's h at every step: (T, B, D·H_out), or (B, T, D·H_out) if batch_first;
    /// zero at padded positions.
    pub output: Tensor<T>,
    /// The final hidden state, (L·D, B, H_out), taken at each sequence's last step.
    pub h_n: Tensor<T>,
    /// The final cell state (LSTM only), (L·D, B, H).
    pub c_n: Option<Tensor<T>>,
}

impl<T: Real> Output<T> {
    /// The final state, to start the next chunk of a sequence (truncated BPTT: no gradient
    /// flows back through it).
    pub fn state(&self) -> State<T> {
        State {
            h: self.h_n.clone(),
            c: self.c_n.clone(),
        }
    }
}

/// Gradients with respect to the inputs of a forward pass.
#[derive(Clone, Debug, PartialEq)]
pub struct InputGrads<T> {
    /// d loss / d input, shaped as the input (zero at padded positions).
    pub input: Tensor<T>,
    /// d loss / d h0, shaped as h0.
    pub h0: Tensor<T>,
    /// d loss / d c0 (LSTM only).
    pub c0: Option<Tensor<T>>,
}

/// Dropout between layers.
pub enum Dropout<'a, T> {
    /// Evaluation mode: no dropout.
    Off,
    /// Training mode: masks drawn from `rng` with the configured probability (inverted
    /// scaling, as `nn.Dropout`).
    Sample(&'a mut dyn RngCore),
    /// Training mode with given masks: one per layer but the last, each (T, B, D·H_out),
    /// time-major whatever `batch_first` says, holding 0 or 1/(1-p).
    Masks(&'a [Tensor<T>]),
}

/// What a training forward pass keeps for [`Rnn::backward`].
#[derive(Clone, Debug)]
pub struct Tape<T: Real> {
    kind: TapeKind<T>,
}

#[derive(Clone, Debug)]
enum TapeKind<T: Real> {
    /// The fused engine's.
    Fast {
        prep: Prepared,
        layers: Vec<LayerTape<T>>,
    },
    /// The regularized layers' ([`crate::core::regular`]).
    Regular(Box<RegTape<T>>),
}

#[derive(Clone, Debug)]
struct LayerTape<T: Real> {
    /// (T·B, in): the layer input (after dropout), sorted, time-major, zero at padding.
    input: Buf<T>,
    dirs: Vec<DirState<T>>,
    /// (T·B, D·H_out): the dropout mask applied to this layer's output, if any.
    mask: Option<Buf<T>>,
}

/// Shapes and batch order of one call.
#[derive(Clone, Debug)]
struct Prepared {
    plan: Plan,
    /// internal position → original batch index; None when it is the identity.
    order: Option<Vec<usize>>,
    /// (B): lengths in internal order.
    lengths: Vec<usize>,
    unbatched: bool,
    /// The user's input shape.
    input_shape: Vec<usize>,
}

impl Prepared {
    fn orig(&self, s: usize) -> usize {
        self.order.as_ref().map_or(s, |o| o[s])
    }
}

/// What [`Rnn::backward_with`] tells about the pass it runs: d loss / d h_t at every step of
/// every layer and direction. The core layers know nothing of what is done with it;
/// [`crate::analysis::diagnostics::HiddenGrads`] keeps it for the vanishing-gradient plots.
pub trait BackwardObserver<T> {
    /// Called once before the layers: `num_layers` × `num_directions` gradients of
    /// (`seq_len`, B, `hidden_size`) follow, B = `lengths.len()`, each sequence's length in
    /// the caller's batch order.
    fn start(
        &mut self,
        num_layers: usize,
        num_directions: usize,
        seq_len: usize,
        hidden_size: usize,
        lengths: Vec<usize>,
    );
    /// d loss / d h_t of (`layer`, `direction`): (T, B, H_out), time-major, in the caller's
    /// batch order, zero at padding. Called for every direction of a layer, from the top
    /// layer down.
    fn hidden_grads(&mut self, layer: usize, direction: usize, grads: &[T]);
}

impl<T: Real> Rnn<T> {
    /// A new model with PyTorch's default initialization: every parameter drawn from
    /// U(-1/√hidden_size, 1/√hidden_size), from a generator seeded with `seed`.
    pub fn new(config: RnnConfig, seed: u64) -> Result<Rnn<T>> {
        Rnn::new_named(config, Naming::Layer, seed)
    }

    pub(crate) fn new_named(config: RnnConfig, naming: Naming, seed: u64) -> Result<Rnn<T>> {
        config.validate()?;
        let layout = ParamLayout::new(&config, naming);
        let k = 1.0 / (config.hidden_size as f64).sqrt();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut params = Vec::new();
        params.try_reserve_exact(layout.total()).map_err(|_| {
            Error::Config(format!(
                "cannot allocate the {} parameters ({} bytes) of the recurrent layers",
                layout.total(),
                layout.total().saturating_mul(std::mem::size_of::<T>())
            ))
        })?;
        params.extend((0..layout.total()).map(|_| T::from_f64(rng.gen_range(-k..k))));
        // Layer-norm gains start at 1 and biases at 0, as nn.LayerNorm's.
        for e in layout.entries() {
            if let Some(v) = e.kind.layer_norm_init() {
                params[e.range()].fill(T::from_f64(v));
            }
        }
        Ok(Rnn {
            packed: PackCache::new(&config),
            config,
            layout,
            params,
            compact: None,
        })
    }

    /// A model with the given flat parameters (in [`ParamLayout`] order).
    pub fn from_params(config: RnnConfig, params: Vec<T>) -> Result<Rnn<T>> {
        Rnn::from_params_named(config, Naming::Layer, params)
    }

    pub(crate) fn from_params_named(
        config: RnnConfig,
        naming: Naming,
        params: Vec<T>,
    ) -> Result<Rnn<T>> {
        config.validate()?;
        let layout = ParamLayout::new(&config, naming);
        if params.len() != layout.total() {
            return Err(Error::Input(format!(
                "parameters: expected {} values for this configuration, got {}",
                layout.total(),
                params.len()
            )));
        }
        Ok(Rnn {
            packed: PackCache::new(&config),
            config,
            layout,
            params,
            compact: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RnnConfig {
        &self.config
    }
    /// Sets `batch_first` (it changes no parameter).
    pub fn set_batch_first(&mut self, batch_first: bool) {
        self.config.batch_first = batch_first;
    }
    /// Sets the dropout probability between layers (it changes no parameter).
    pub fn set_dropout(&mut self, p: f64) -> Result<()> {
        let c = self.config.clone().dropout(p);
        c.validate()?;
        self.config = c;
        Ok(())
    }
    /// Sets the regularizers ([`crate::Regularizers`]); layer norm, which has parameters,
    /// cannot be switched on or off here (an error).
    pub fn set_regularizers(&mut self, r: crate::core::config::Regularizers) -> Result<()> {
        if r.layer_norm != self.config.regular.layer_norm {
            return Err(Error::Config(
                "layer norm has parameters: it cannot be switched on or off in an existing model"
                    .into(),
            ));
        }
        let mut c = self.config.clone();
        c.regular = r;
        c.validate()?;
        self.config = c;
        Ok(())
    }
    /// The parameter table.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }
    /// All parameters, flat, in [`ParamLayout`] order.
    pub fn params(&self) -> &[T] {
        &self.params
    }
    /// All parameters, flat, mutable (for optimizers). Drops the weights packed for the
    /// forward pass (they are packed again, once, by the next call).
    pub fn params_mut(&mut self) -> &mut [T] {
        self.packed.clear();
        self.compact = None;
        &mut self.params
    }
    /// The parameter called `name` (a PyTorch name such as `weight_hh_l0`).
    pub fn param(&self, name: &str) -> Option<&[T]> {
        self.layout.get(name).map(|e| &self.params[e.range()])
    }
    /// A zeroed gradient buffer with the parameters' layout.
    pub fn zeros_like_params(&self) -> Vec<T> {
        vec![T::ZERO; self.layout.total()]
    }
    /// The same model in another precision.
    pub fn cast<U: Real>(&self) -> Rnn<U> {
        Rnn {
            packed: PackCache::new(&self.config),
            config: self.config.clone(),
            layout: self.layout.clone(),
            params: self
                .params
                .iter()
                .map(|&x| U::from_f64(x.to_f64()))
                .collect(),
            compact: None,
        }
    }

    fn dims(&self, layer: usize) -> Dims {
        Dims {
            mode: self.config.mode,
            h: self.config.hidden_size,
            hout: self.config.h_out(),
            input: self.config.layer_input_size(layer),
        }
    }

    /// The packed forward weights of (layer, direction): made on first use after a change.
    fn forward_weights(&self, layer: usize, dir: usize) -> &ForwardWeights<T> {
        let nd = if self.config.bidirectional { 2 } else { 1 };
        self.packed.0[layer * nd + dir]
            .get_or_init(|| ForwardWeights::new(&self.dims(layer), &self.dir_params(layer, dir)))
    }

    pub(crate) fn dir_params(&self, layer: usize, dir: usize) -> DirParams<'_, T> {
        let l = self.layout.dir(layer, dir);
        let p = &self.params;
        DirParams {
            w_ih: &p[l.w_ih.clone()],
            w_hh: &p[l.w_hh.clone()],
            b_ih: l.b_ih.clone().map(|r| &p[r]),
            b_hh: l.b_hh.clone().map(|r| &p[r]),
            w_hr: l.w_hr.clone().map(|r| &p[r]),
        }
    }

    /// The shape of h0/h_n for a batch of `b` (None = unbatched).
    pub fn state_shape(&self, b: Option<usize>, cell: bool) -> Vec<usize> {
        let ld = self.config.num_layers * self.config.num_directions();
        let last = if cell {
            self.config.hidden_size
        } else {
            self.config.h_out()
        };
        match b {
            Some(b) => vec![ld, b, last],
            None => vec![ld, last],
        }
    }

    /// Inference (evaluation mode): runs the stack over `input` and returns every output and
    /// the final states.
    ///
    /// - `input`: (T, B, input_size), or (B, T, input_size) if `batch_first`, or unbatched
    ///   (T, input_size);
    /// - `state`: the initial state (zeros when `None`);
    /// - `lengths`: one length per sequence (each in 1..=T), with the semantics of a PyTorch
    ///   `PackedSequence`: each sequence runs to its own length, the reverse direction starts at
    ///   its last element, padded outputs are 0, and the final state is taken at its last step.
    pub fn forward(
        &self,
        input: &Tensor<T>,
        state: Option<&State<T>>,
        lengths: Option<&[usize]>,
    ) -> Result<Output<T>> {
        if let Some(c) = crate::core::compact::takes_over(&self.compact) {
            return crate::core::compact::forward(self, c, input, state, lengths);
        }
        self.run(input, state, lengths, Dropout::Off, false)
            .map(|(o, _)| o)
    }

    /// Training forward pass: like [`Rnn::forward`], with dropout between layers as `dropout`
    /// says, and keeps what [`Rnn::backward`] needs.
    pub fn forward_train(
        &self,
        input: &Tensor<T>,
        state: Option<&State<T>>,
        lengths: Option<&[usize]>,
        dropout: Dropout<'_, T>,
    ) -> Result<(Output<T>, Tape<T>)> {
        self.check_trainable()?;
        let (o, t) = self.run(input, state, lengths, dropout, true)?;
        Ok((o, t.expect("tape kept")))
    }

    /// Training forward pass with the given masks of every regularizer (see
    /// [`crate::core::regular`]): for configurations with [`crate::Regularizers`]; masks drawn
    /// by [`Masks::sample`] give what [`Rnn::forward_train`] with `Dropout::Sample` gives, and
    /// [`Masks::eval`] gives evaluation mode.
    pub fn forward_train_masked(
        &self,
        input: &Tensor<T>,
        state: Option<&State<T>>,
        lengths: Option<&[usize]>,
        masks: &Masks<T>,
    ) -> Result<(Output<T>, Tape<T>)> {
        self.check_trainable()?;
        let (o, t) = regular::run(self, input, state, lengths, MaskSource::Given(masks), true)?;
        Ok((
            o,
            Tape {
                kind: TapeKind::Regular(Box::new(t.expect("tape kept"))),
            },
        ))
    }

    fn prepare(&self, input: &Tensor<T>, lengths: Option<&[usize]>) -> Result<(Prepared, Buf<T>)> {
        let c = &self.config;
        let shape = input.shape();
        let (t, b, unbatched, lens) = check_input(c, input, lengths)?;
        let i = c.input_size;
        // Sort by decreasing length (stable), then deal the batch into groups of rows whose
        // time loops run on separate threads (see engine::Plan).
        let mut by_len: Vec<usize> = (0..b).collect();
        if lengths.is_some() {
            by_len.sort_by(|&x, &y| lens[y].cmp(&lens[x]));
        }
        let len_of = |ob: usize| lens[ob];
        let sorted: Vec<usize> = by_len.iter().map(|&ob| len_of(ob)).collect();
        let plan = Plan::new(t, &sorted, n_groups(b, self.config.num_directions()));
        let order: Vec<usize> = (0..b).map(|p| by_len[plan.sorted_pos(p)]).collect();
        let lengths_int: Vec<usize> = order.iter().map(|&ob| len_of(ob)).collect();
        let identity = order.iter().enumerate().all(|(p, &ob)| p == ob);
        let prep = Prepared {
            plan,
            order: (!identity).then_some(order),
            lengths: lengths_int,
            unbatched,
            input_shape: shape.to_vec(),
        };
        // Gather into the plan's (T, B, I) order, zero at padding (no padding: every row is
        // written, so no zeroing pass).
        let src = input.data();
        let mut x = if prep.lengths.iter().all(|&l| l == t) {
            Buf::any(t * b * i)
        } else {
            Buf::zeroed(t * b * i)
        };
        for s in 0..b {
            let ob = prep.orig(s);
            for ti in 0..prep.lengths[s] {
                let from = self.user_index(ti, ob, t, b) * i;
                let to = prep.plan.row(ti, s) * i;
                x[to..to + i].copy_from_slice(&src[from..from + i]);
            }
        }
        Ok((prep, x))
    }

    /// Row index of (time, batch) in the user's layout.
    fn user_index(&self, t: usize, b: usize, tn: usize, bn: usize) -> usize {
        if self.config.batch_first {
            b * tn + t
        } else {
            t * bn + b
        }
    }

    /// The inverse of [`Rnn::user_index`]: (time, batch) of user row `u`.
    fn user_pos(&self, u: usize, tn: usize, bn: usize) -> (usize, usize) {
        if self.config.batch_first {
            (u % tn, u / tn)
        } else {
            (u / bn, u % bn)
        }
    }

    /// Takes a state tensor (L·D, B, n) in user order to sorted order.
    fn gather_state(
        &self,
        prep: &Prepared,
        what: &str,
        s: &Tensor<T>,
        cell: bool,
    ) -> Result<Buf<T>> {
        let b = prep.plan.b;
        let want = self.state_shape(if prep.unbatched { None } else { Some(b) }, cell);
        if s.shape() != want.as_slice() {
            return Err(Error::shape(what, &want, s.shape()));
        }
        let n = *want.last().unwrap();
        let ld = want[0];
        let mut out = Buf::any(ld * b * n);
        for l in 0..ld {
            for sb in 0..b {
                let ob = prep.orig(sb);
                out[(l * b + sb) * n..][..n].copy_from_slice(&s.data()[(l * b + ob) * n..][..n]);
            }
        }
        Ok(out)
    }

    /// The inverse of `gather_state`.
    fn scatter_state(&self, prep: &Prepared, v: &[T], cell: bool) -> Tensor<T> {
        let b = prep.plan.b;
        let shape = self.state_shape(if prep.unbatched { None } else { Some(b) }, cell);
        let n = *shape.last().unwrap();
        // A fresh allocation of exactly this size: the tensor leaves with the caller, and
        // taking a buffer from the pool would take away one that the next call needs.
        let mut out = vec![T::ZERO; v.len()];
        for l in 0..shape[0] {
            for sb in 0..b {
                let ob = prep.orig(sb);
                out[(l * b + ob) * n..][..n].copy_from_slice(&v[(l * b + sb) * n..][..n]);
            }
        }
        Tensor::new(&shape, out).expect("state shape")
    }

    /// Takes a sorted (T·B, n) buffer to the user's layout (T, B, n) / (B, T, n) / (T, n).
    fn scatter_seq(&self, prep: &Prepared, v: &[T], n: usize) -> Tensor<T> {
        let (t, b) = (prep.plan.t, prep.plan.b);
        let out = if prep.lengths.iter().all(|&l| l == t) {
            // No padding: the rows appended in the user's order (nothing to zero first).
            let mut sorted = vec![0; b];
            for s in 0..b {
                sorted[prep.orig(s)] = s;
            }
            let mut out = Vec::with_capacity(t * b * n);
            for u in 0..t * b {
                let (ti, ob) = self.user_pos(u, t, b);
                out.extend_from_slice(&v[prep.plan.row(ti, sorted[ob]) * n..][..n]);
            }
            out
        } else {
            // Fresh, for the same reason as in `scatter_state`.
            let mut out = vec![T::ZERO; t * b * n];
            for s in 0..b {
                let ob = prep.orig(s);
                for ti in 0..prep.lengths[s] {
                    let to = self.user_index(ti, ob, t, b) * n;
                    out[to..to + n].copy_from_slice(&v[prep.plan.row(ti, s) * n..][..n]);
                }
            }
            out
        };
        let mut shape = prep.input_shape.clone();
        *shape.last_mut().unwrap() = n;
        Tensor::new(&shape, out).expect("sequence shape")
    }

    /// Takes a user-layout tensor shaped like the output to sorted (T·B, n).
    fn gather_seq(&self, prep: &Prepared, what: &str, v: &Tensor<T>, n: usize) -> Result<Buf<T>> {
        let mut want = prep.input_shape.clone();
        *want.last_mut().unwrap() = n;
        if v.shape() != want.as_slice() {
            return Err(Error::shape(what, &want, v.shape()));
        }
        let (t, b) = (prep.plan.t, prep.plan.b);
        let mut out = Buf::any(t * b * n);
        for s in 0..b {
            let ob = prep.orig(s);
            for ti in 0..prep.lengths[s] {
                let from = self.user_index(ti, ob, t, b) * n;
                out[prep.plan.row(ti, s) * n..][..n].copy_from_slice(&v.data()[from..from + n]);
            }
        }
        Ok(out)
    }

    fn run(
        &self,
        input: &Tensor<T>,
        state: Option<&State<T>>,
        lengths: Option<&[usize]>,
        dropout: Dropout<'_, T>,
        keep: bool,
    ) -> Result<(Output<T>, Option<Tape<T>>)> {
        let c = &self.config;
        // Dropout::Off is evaluation mode: the regularized layers only where they differ there.
        if regular::applies(c, !matches!(dropout, Dropout::Off)) {
            let given;
            let source = match dropout {
                Dropout::Off => MaskSource::Eval,
                Dropout::Sample(rng) => MaskSource::Sample(rng),
                // Cell variants alone: the between-layer masks are all there is.
                Dropout::Masks(m) if !c.regular.any() => {
                    if m.len() + 1 != c.num_layers {
                        return Err(Error::Input(format!(
                            "dropout masks: expected {} (one per layer but the last), got {}",
                            c.num_layers - 1,
                            m.len()
                        )));
                    }
                    given = Masks {
                        layers: (0..c.num_layers)
                            .map(|l| regular::LayerMasks {
                                output: m.get(l).map(|t| t.data().to_vec()),
                                ..Default::default()
                            })
                            .collect(),
                    };
                    MaskSource::Given(&given)
                }
                Dropout::Masks(_) => {
                    return Err(Error::Input(
                        "dropout masks between layers: this configuration has regularizers inside the layers; give all their masks with Rnn::forward_train_masked".into(),
                    ))
                }
            };
            let (o, t) = regular::run(self, input, state, lengths, source, keep)?;
            return Ok((
                o,
                t.map(|t| Tape {
                    kind: TapeKind::Regular(Box::new(t)),
                }),
            ));
        }
        let (prep, x) = self.prepare(input, lengths)?;
        let (t, b) = (prep.plan.t, prep.plan.b);
        let (nl, nd, h, hout) = (c.num_layers, c.num_directions(), c.hidden_size, c.h_out());
        let lstm = c.mode == Mode::Lstm;
        let h0 = match state {
            Some(s) => self.gather_state(&prep, "h0", &s.h, false)?,
            None => Buf::zeroed(nl * nd * b * hout),
        };
        let c0 = match (lstm, state.and_then(|s| s.c.as_ref())) {
            (true, Some(c0)) => self.gather_state(&prep, "c0", c0, true)?,
            (true, None) => Buf::zeroed(nl * nd * b * h),
            (false, Some(_)) => {
                return Err(Error::Input(format!(
                    "c0 was given, but a {} has no cell state",
                    c.mode
                )))
            }
            (false, None) => Buf::empty(),
        };
        let width = nd * hout;
        let mut masks: Vec<Option<Buf<T>>> = (0..nl).map(|_| None).collect();
        match dropout {
            Dropout::Off => {}
            Dropout::Sample(rng) => {
                if c.dropout > 0.0 {
                    let keep_p = 1.0 - c.dropout;
                    let scale = if keep_p > 0.0 {
                        T::from_f64(1.0 / keep_p)
                    } else {
                        T::ZERO
                    };
                    for m in masks.iter_mut().take(nl - 1) {
                        let mut v = Buf::any(t * b * width);
                        for x in v.iter_mut() {
                            *x = if rng.gen::<f64>() < keep_p {
                                scale
                            } else {
                                T::ZERO
                            };
                        }
                        *m = Some(v);
                    }
                }
            }
            Dropout::Masks(given) => {
                if given.len() != nl - 1 {
                    return Err(Error::Input(format!(
                        "dropout masks: expected {} (one per layer but the last), got {}",
                        nl - 1,
                        given.len()
                    )));
                }
                for (l, m) in given.iter().enumerate() {
                    let want = [t, b, width];
                    if m.shape() != want {
                        return Err(Error::shape(&format!("dropout mask {l}"), &want, m.shape()));
                    }
                    let mut v = Buf::any(t * b * width);
                    for ti in 0..t {
                        for s in 0..b {
                            let ob = prep.orig(s);
                            v[prep.plan.row(ti, s) * width..][..width]
                                .copy_from_slice(&m.data()[(ti * b + ob) * width..][..width]);
                        }
                    }
                    masks[l] = Some(v);
                }
            }
        }

        let mut layer_in = x;
        let mut hn = Buf::any(nl * nd * b * hout);
        let mut cn = Buf::any(if lstm { nl * nd * b * h } else { 0 });
        let mut tapes = Vec::new();
        for (l, layer_mask) in masks.iter_mut().enumerate() {
            let d = self.dims(l);
            let mut y = Buf::zeroed(t * b * width);
            let mut dirs: Vec<DirState<T>> =
                (0..nd).map(|_| DirState::new(&d, &prep.plan)).collect();
            let run_dir = |dir: usize, s: &mut DirState<T>| {
                let k = l * nd + dir;
                let c0k = if lstm {
                    &c0[k * b * h..(k + 1) * b * h]
                } else {
                    &[][..]
                };
                engine::dir_forward(
                    &d,
                    &self.dir_params(l, dir),
                    self.forward_weights(l, dir),
                    &prep.plan,
                    &layer_in,
                    &h0[k * b * hout..(k + 1) * b * hout],
                    c0k,
                    dir == 1,
                    keep,
                    s,
                );
            };
            if let [s0, s1] = &mut dirs[..] {
                if both_dirs_at_once(nd) {
                    rayon::join(|| run_dir(0, s0), || run_dir(1, s1));
                } else {
                    run_dir(0, s0);
                    run_dir(1, s1);
                }
            } else {
                run_dir(0, &mut dirs[0]);
            }
            for (dir, s) in dirs.iter().enumerate() {
                let reverse = dir == 1;
                let k = l * nd + dir;
                let last = s.last_slot(&prep.plan, reverse);
                for g in &prep.plan.groups {
                    // The group's states: (T+1, b_g, ·) blocks; its final state is slot `last`.
                    let hs = &s.hs[g.off * (t + 1) * hout..];
                    hn[(k * b + g.off) * hout..][..g.b * hout]
                        .copy_from_slice(&hs[last * g.b * hout..][..g.b * hout]);
                    if lstm {
                        let cs = &s.cs[g.off * (t + 1) * h..];
                        cn[(k * b + g.off) * h..][..g.b * h]
                            .copy_from_slice(&cs[last * g.b * h..][..g.b * h]);
                    }
                    // The output at time t is the state written at time t.
                    for ti in 0..t {
                        let slot = if reverse { ti } else { ti + 1 };
                        for r in 0..g.batch_sizes[ti] {
                            y[(g.off * t + ti * g.b + r) * width + dir * hout..][..hout]
                                .copy_from_slice(&hs[(slot * g.b + r) * hout..][..hout]);
                        }
                    }
                }
            }
            let mask = layer_mask.take();
            let mut next = y;
            if let Some(m) = &mask {
                for (v, &mv) in next.iter_mut().zip(m.iter()) {
                    *v *= mv;
                }
            }
            if keep {
                tapes.push(LayerTape {
                    input: std::mem::take(&mut layer_in),
                    dirs,
                    mask,
                });
            }
            layer_in = next;
        }
        let output = self.scatter_seq(&prep, &layer_in, width);
        let h_n = self.scatter_state(&prep, &hn, false);
        let c_n = if lstm {
            Some(self.scatter_state(&prep, &cn, true))
        } else {
            None
        };
        let tape = if keep {
            Some(Tape {
                kind: TapeKind::Fast {
                    prep,
                    layers: tapes,
                },
            })
        } else {
            None
        };
        Ok((Output { output, h_n, c_n }, tape))
    }

    /// Backpropagation through time.
    ///
    /// Given the gradient of the loss with respect to the output (and optionally to h_n and
    /// c_n), **adds** the gradient of every parameter to `grads` (flat, [`ParamLayout`] order,
    /// as PyTorch accumulates into `.grad`) and returns the gradients with respect to the input
    /// and the initial states.
    pub fn backward(
        &self,
        tape: &Tape<T>,
        grad_output: Option<&Tensor<T>>,
        grad_h_n: Option<&Tensor<T>>,
        grad_c_n: Option<&Tensor<T>>,
        grads: &mut [T],
    ) -> Result<InputGrads<T>> {
        self.backward_impl(tape, grad_output, grad_h_n, grad_c_n, grads, None, true)
    }

    /// [`Rnn::backward`] for the parameters only: adds the gradient of every parameter to
    /// `grads` and skips the gradient with respect to the input (one matrix product per
    /// direction of the first layer), as PyTorch does for an input that does not require a
    /// gradient. Use it when nothing upstream of the RNN learns.
    pub fn backward_params(
        &self,
        tape: &Tape<T>,
        grad_output: Option<&Tensor<T>>,
        grad_h_n: Option<&Tensor<T>>,
        grad_c_n: Option<&Tensor<T>>,
        grads: &mut [T],
    ) -> Result<()> {
        self.backward_impl(tape, grad_output, grad_h_n, grad_c_n, grads, None, false)
            .map(|_| ())
    }

    /// [`Rnn::backward`] that also hands d loss / d h_t, the total derivative (through the
    /// output at t and through h_{t+1}), at every step of every layer and direction to
    /// `record` (a [`BackwardObserver`], e.g. [`crate::analysis::diagnostics::HiddenGrads`]).
    pub fn backward_with(
        &self,
        tape: &Tape<T>,
        grad_output: Option<&Tensor<T>>,
        grad_h_n: Option<&Tensor<T>>,
        grad_c_n: Option<&Tensor<T>>,
        grads: &mut [T],
        record: &mut dyn BackwardObserver<T>,
    ) -> Result<InputGrads<T>> {
        self.backward_impl(
            tape,
            grad_output,
            grad_h_n,
            grad_c_n,
            grads,
            Some(record),
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn backward_impl(
        &self,
        tape: &Tape<T>,
        grad_output: Option<&Tensor<T>>,
        grad_h_n: Option<&Tensor<T>>,
        grad_c_n: Option<&Tensor<T>>,
        grads: &mut [T],
        mut record: Option<&mut dyn BackwardObserver<T>>,
        input_grad: bool,
    ) -> Result<InputGrads<T>> {
        let c = &self.config;
        let (prep, layers) = match &tape.kind {
            TapeKind::Fast { prep, layers } => (prep, layers),
            TapeKind::Regular(t) => {
                return regular::backward(
                    self,
                    t,
                    grad_output,
                    grad_h_n,
                    grad_c_n,
                    grads,
                    record,
                    input_grad,
                )
            }
        };
        let (t, b) = (prep.plan.t, prep.plan.b);
        let (nl, nd, h, hout) = (c.num_layers, c.num_directions(), c.hidden_size, c.h_out());
        let lstm = c.mode == Mode::Lstm;
        let width = nd * hout;
        if grads.len() != self.layout.total() {
            return Err(Error::Input(format!(
                "grads: expected {} values (the parameter count), got {}",
                self.layout.total(),
                grads.len()
            )));
        }
        let mut dy = match grad_output {
            Some(g) => Some(self.gather_seq(prep, "grad_output", g, width)?),
            None => None,
        };
        let dhn = match grad_h_n {
            Some(g) => Some(self.gather_state(prep, "grad_h_n", g, false)?),
            None => None,
        };
        let dcn = match (lstm, grad_c_n) {
            (true, Some(g)) => Some(self.gather_state(prep, "grad_c_n", g, true)?),
            (false, Some(_)) => {
                return Err(Error::Input(format!(
                    "grad_c_n was given, but a {} has no cell state",
                    c.mode
                )))
            }
            _ => None,
        };
        let mut dh0 = Buf::any(nl * nd * b * hout);
        let mut dc0 = Buf::any(if lstm { nl * nd * b * h } else { 0 });
        let mut dx_final = Buf::empty();
        if let Some(r) = record.as_deref_mut() {
            let mut user_lengths = vec![0; b];
            for (s, &len) in prep.lengths.iter().enumerate() {
                user_lengths[prep.orig(s)] = len;
            }
            r.start(nl, nd, t, hout, user_lengths);
        }
        for l in (0..nl).rev() {
            let d = self.dims(l);
            let lt = &layers[l];
            // Empty: the first layer's input gradient is not wanted.
            let want_dx = l > 0 || input_grad;
            let mut dx = if want_dx {
                Buf::zeroed(t * b * d.input)
            } else {
                Buf::empty()
            };
            let at_once = both_dirs_at_once(nd);
            // With both directions at once, the reverse one adds its dx into a buffer of its
            // own, summed after.
            let mut dx_rev = if at_once && want_dx {
                Buf::zeroed(t * b * d.input)
            } else {
                Buf::empty()
            };
            let mut recs: Vec<Buf<T>> = (0..nd)
                .map(|_| match record {
                    Some(_) => Buf::zeroed(t * b * hout),
                    None => Buf::empty(),
                })
                .collect();
            let run_dir = |dir: usize,
                           gr: DirGrads<'_, T>,
                           dx: &mut [T],
                           dh0k: &mut [T],
                           dc0k: &mut [T],
                           rec: &mut [T]| {
                let k = l * nd + dir;
                let mut work = BwdWork::new(&d, &prep.plan);
                let dyv = dy.as_deref().map(|data| DyView {
                    data,
                    ld: width,
                    col: dir * hout,
                });
                engine::dir_backward(
                    &d,
                    &self.dir_params(l, dir),
                    &prep.plan,
                    &lt.input,
                    &lt.dirs[dir],
                    dir == 1,
                    dyv,
                    dhn.as_ref().map(|v| &v[k * b * hout..(k + 1) * b * hout]),
                    dcn.as_ref().map(|v| &v[k * b * h..(k + 1) * b * h]),
                    gr,
                    dx,
                    dh0k,
                    dc0k,
                    rec,
                    &mut work,
                );
            };
            // This layer's blocks of dh0 and dc0, one per direction.
            let dh0l = &mut dh0[l * nd * b * hout..(l + 1) * nd * b * hout];
            let dc0l: &mut [T] = if lstm {
                &mut dc0[l * nd * b * h..(l + 1) * nd * b * h]
            } else {
                &mut []
            };
            if let [rec0, rec1] = &mut recs[..] {
                // The reverse direction's parameters follow the forward one's.
                let start1 = self.layout.dir(l, 1).w_ih.start;
                let (g0, g1) = grads.split_at_mut(start1);
                let gr0 = split_grads(g0, self.layout.dir(l, 0), 0);
                let gr1 = split_grads(g1, self.layout.dir(l, 1), start1);
                let (dh00, dh01) = dh0l.split_at_mut(b * hout);
                let (dc00, dc01) = dc0l.split_at_mut(dc0l.len() / 2);
                if at_once {
                    rayon::join(
                        || run_dir(0, gr0, &mut dx, dh00, dc00, rec0),
                        || run_dir(1, gr1, &mut dx_rev, dh01, dc01, rec1),
                    );
                    for (a, &v) in dx.iter_mut().zip(dx_rev.iter()) {
                        *a += v;
                    }
                } else {
                    run_dir(0, gr0, &mut dx, dh00, dc00, rec0);
                    run_dir(1, gr1, &mut dx, dh01, dc01, rec1);
                }
            } else {
                let gr = split_grads(grads, self.layout.dir(l, 0), 0);
                run_dir(0, gr, &mut dx, dh0l, dc0l, &mut recs[0]);
            }
            if let Some(r) = record.as_deref_mut() {
                let mut out = vec![T::ZERO; t * b * hout];
                for (dir, rec) in recs.iter().enumerate() {
                    // (T·B, H_out) in the plan's order → (T, B, H_out) in the user's batch order.
                    out.fill(T::ZERO);
                    for s in 0..b {
                        let ob = prep.orig(s);
                        for ti in 0..prep.lengths[s] {
                            out[(ti * b + ob) * hout..][..hout]
                                .copy_from_slice(&rec[prep.plan.row(ti, s) * hout..][..hout]);
                        }
                    }
                    r.hidden_grads(l, dir, &out);
                }
            }
            if l > 0 {
                if let Some(m) = &layers[l - 1].mask {
                    for (v, &mv) in dx.iter_mut().zip(m.iter()) {
                        *v *= mv;
                    }
                }
                dy = Some(dx);
            } else {
                dx_final = dx;
            }
        }
        let input = if input_grad {
            self.scatter_seq(prep, &dx_final, c.input_size)
        } else {
            Tensor::new(&[0], Vec::new()).expect("empty tensor")
        };
        let h0 = self.scatter_state(prep, &dh0, false);
        let c0 = if lstm {
            Some(self.scatter_state(prep, &dc0, true))
        } else {
            None
        };
        Ok(InputGrads { input, h0, c0 })
    }
}

/// How many groups of rows (one per thread) a batch of `b` is split into: up to the thread
/// count (half of it when the two directions run at once), with at least 8 rows per group
/// (smaller groups waste the matrix kernels' tiles).
fn n_groups(b: usize, nd: usize) -> usize {
    let threads = recur_kernels::num_threads();
    let per_dir = if both_dirs_at_once(nd) {
        threads / 2
    } else {
        threads
    };
    per_dir.min(b / 8).max(1)
}

/// Whether the two directions of a bidirectional layer run at the same time, each on its own
/// threads (from 2 threads on): then each direction's time loop keeps all its rows together.
fn both_dirs_at_once(nd: usize) -> bool {
    nd == 2 && recur_kernels::num_threads() >= 2
}

/// Splits the gradient buffer into the disjoint slices of one (layer, direction); `grads`
/// starts at position `base` of the flat buffer. The layout stores them in the order w_ih,
/// w_hh, b_ih, b_hh, w_hr, back to back.
fn split_grads<'a, T>(grads: &'a mut [T], l: &DirLayout, base: usize) -> DirGrads<'a, T> {
    let start = l.w_ih.start;
    let end = [
        Some(&l.w_hh),
        l.b_ih.as_ref(),
        l.b_hh.as_ref(),
        l.w_hr.as_ref(),
    ]
    .into_iter()
    .flatten()
    .map(|r| r.end)
    .max()
    .unwrap();
    let rest = &mut grads[start - base..end - base];
    let (w_ih, rest) = rest.split_at_mut(l.w_ih.len());
    let (w_hh, mut rest) = rest.split_at_mut(l.w_hh.len());
    let mut take = |r: &Option<std::ops::Range<usize>>| {
        r.as_ref().map(|r| {
            let (a, b) = std::mem::take(&mut rest).split_at_mut(r.len());
            rest = b;
            a
        })
    };
    let b_ih = take(&l.b_ih);
    let b_hh = take(&l.b_hh);
    let w_hr = take(&l.w_hr);
    DirGrads {
        w_ih,
        w_hh,
        b_ih,
        b_hh,
        w_hr,
    }
}

/// Checks the input and lengths of one call (PyTorch's shapes, lengths as for a
/// `PackedSequence`): returns `(T, B, unbatched, the length of every sequence)`.
pub(crate) fn check_input<T: Real>(
    config: &RnnConfig,
    input: &Tensor<T>,
    lengths: Option<&[usize]>,
) -> Result<(usize, usize, bool, Vec<usize>)> {
    let shape = input.shape();
    let (t, b, unbatched) = match shape.len() {
        2 => (shape[0], 1, true),
        3 if config.batch_first => (shape[1], shape[0], false),
        3 => (shape[0], shape[1], false),
        _ => {
            return Err(Error::Input(format!(
                "input: expected 3 dimensions {} (or 2 for an unbatched sequence), got shape {}",
                if config.batch_first {
                    "(batch, seq, input_size)"
                } else {
                    "(seq, batch, input_size)"
                },
                fmt_shape(shape)
            )))
        }
    };
    let i = *shape.last().unwrap();
    if i != config.input_size {
        return Err(Error::Input(format!(
            "input: the last dimension must equal input_size: expected {}, got {} (shape {})",
            config.input_size,
            i,
            fmt_shape(shape)
        )));
    }
    if t == 0 {
        return Err(Error::Input(format!(
            "input: the sequence length is 0 (shape {}); give at least one step",
            fmt_shape(shape)
        )));
    }
    if b == 0 {
        return Err(Error::Input(format!(
            "input: the batch is empty (shape {})",
            fmt_shape(shape)
        )));
    }
    let lens = match lengths {
        None => vec![t; b],
        Some(l) => {
            if l.len() != b {
                return Err(Error::Input(format!(
                    "lengths: expected one length per sequence ({b}), got {}",
                    l.len()
                )));
            }
            if let Some((k, &v)) = l.iter().enumerate().find(|(_, &v)| v == 0 || v > t) {
                return Err(Error::Input(if v == 0 {
                    format!("lengths[{k}] is 0: every sequence needs at least one step")
                } else {
                    format!("lengths[{k}] is {v}, longer than the input's {t} steps")
                }));
            }
            l.to_vec()
        }
    };
    Ok((t, b, unbatched, lens))
}
