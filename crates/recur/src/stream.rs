//! Streaming: advance a recurrent state one input at a time, with no allocation per step.

use crate::config::Mode;
use crate::engine::{self, Dims, StepWeights};
use crate::error::{Error, Result};
use crate::rnn::{Rnn, State};
use crate::tensor::Tensor;
use recur_kernels::gemm::MatRef;
use recur_kernels::packed::PackedB;
use recur_kernels::Real;

/// A running state of a unidirectional [`Rnn`] for a batch of `B` streams.
///
/// Every buffer is allocated by [`Stream::new`]; [`Stream::step`] only computes. It gives the
/// same numbers as [`Rnn::forward`] over the whole sequence (up to floating-point rounding of
/// differently blocked matrix products).
///
/// ```
/// use recur::{Rnn, RnnConfig, Stream};
/// let gru: Rnn<f32> = Rnn::new(RnnConfig::gru(2, 3), 0).unwrap();
/// let mut s = Stream::new(&gru, 1).unwrap();
/// for x in [[0.5f32, -1.0], [0.25, 0.0]] {
///     let h = s.step(&x).unwrap();
///     assert_eq!(h.len(), 3);
/// }
/// ```
pub struct Stream<'m, T> {
    model: &'m Rnn<T>,
    b: usize,
    /// (L, B, H_out): h of every layer.
    h: Vec<T>,
    /// LSTM: (L, B, H): c of every layer.
    c: Vec<T>,
    /// (B, G·H): gate pre-activations of the current layer.
    gates: Vec<T>,
    /// (B, H_out): the new h of the current layer.
    h_new: Vec<T>,
    /// LSTM: (B, H): the new c of the current layer.
    c_new: Vec<T>,
    /// LSTM with projection: (B, H).
    m: Vec<T>,
    /// GRU: (B, H).
    hn: Vec<T>,
    /// GRU: (B, 3H).
    gh: Vec<T>,
    /// Per layer: the recurrent weights packed once, for every step.
    packed: Vec<StepWeights<T>>,
    /// Per layer: W_ihᵀ (in, G·H) packed once, for the input projection of every step.
    ih_t: Vec<PackedB<T>>,
}

impl<'m, T: Real> Stream<'m, T> {
    /// A stream of `batch` sequences starting from zero states.
    pub fn new(model: &'m Rnn<T>, batch: usize) -> Result<Stream<'m, T>> {
        let c = model.config();
        if c.bidirectional {
            return Err(Error::Config(
                "a bidirectional model cannot stream: its reverse direction needs the whole sequence; use Rnn::forward".into(),
            ));
        }
        if batch == 0 {
            return Err(Error::Input("a stream needs a batch of at least 1".into()));
        }
        let (l, h, hout, g) = (
            c.num_layers,
            c.hidden_size,
            c.h_out(),
            c.mode.gates() * c.hidden_size,
        );
        let lstm = c.mode == Mode::Lstm;
        Ok(Stream {
            model,
            b: batch,
            h: vec![T::ZERO; l * batch * hout],
            c: if lstm {
                vec![T::ZERO; l * batch * h]
            } else {
                vec![]
            },
            gates: vec![T::ZERO; batch * g],
            h_new: vec![T::ZERO; batch * hout],
            c_new: if lstm {
                vec![T::ZERO; batch * h]
            } else {
                vec![]
            },
            m: if lstm && c.proj_size > 0 {
                vec![T::ZERO; batch * h]
            } else {
                vec![]
            },
            hn: if c.mode == Mode::Gru {
                vec![T::ZERO; batch * h]
            } else {
                vec![]
            },
            gh: if c.mode == Mode::Gru {
                vec![T::ZERO; batch * g]
            } else {
                vec![]
            },
            packed: (0..l)
                .map(|k| {
                    let d = Dims {
                        mode: c.mode,
                        h,
                        hout,
                        input: c.layer_input_size(k),
                    };
                    StepWeights::new(&d, &model.dir_params(k, 0))
                })
                .collect(),
            ih_t: (0..l)
                .map(|k| {
                    let mut pb = PackedB::new();
                    pb.pack(MatRef::new(model.dir_params(k, 0).w_ih, g, c.layer_input_size(k)).t());
                    pb
                })
                .collect(),
        })
    }

    /// Sets every state back to zero.
    pub fn reset(&mut self) {
        self.h.fill(T::ZERO);
        self.c.fill(T::ZERO);
    }

    /// The current state, shaped as `h_n`/`c_n` of [`Rnn::forward`]: (L, B, H_out), (L, B, H).
    pub fn state(&self) -> State<T> {
        let m = self.model;
        State {
            h: Tensor::new(&m.state_shape(Some(self.b), false), self.h.clone()).expect("shape"),
            c: if self.c.is_empty() {
                None
            } else {
                Some(
                    Tensor::new(&m.state_shape(Some(self.b), true), self.c.clone()).expect("shape"),
                )
            },
        }
    }

    /// Replaces the current state (e.g. with `h_n`/`c_n` of a forward pass).
    pub fn set_state(&mut self, s: &State<T>) -> Result<()> {
        let m = self.model;
        let want = m.state_shape(Some(self.b), false);
        if s.h.shape() != want.as_slice() {
            return Err(Error::shape("h", &want, s.h.shape()));
        }
        match (&s.c, self.c.is_empty()) {
            (Some(c), false) => {
                let wc = m.state_shape(Some(self.b), true);
                if c.shape() != wc.as_slice() {
                    return Err(Error::shape("c", &wc, c.shape()));
                }
                self.c.copy_from_slice(c.data());
            }
            (None, false) => self.c.fill(T::ZERO),
            (Some(_), true) => {
                return Err(Error::Input(
                    "c was given, but the model has no cell state".into(),
                ))
            }
            (None, true) => {}
        }
        self.h.copy_from_slice(s.h.data());
        Ok(())
    }

    /// Advances every stream by one input: `x` is (B, input_size), row-major. Returns the last
    /// layer's new h, (B, H_out).
    pub fn step(&mut self, x: &[T]) -> Result<&[T]> {
        let cfg = self.model.config();
        let b = self.b;
        if x.len() != b * cfg.input_size {
            return Err(Error::Input(format!(
                "step input: expected (batch {b}, input_size {}) = {} values, got {}",
                cfg.input_size,
                b * cfg.input_size,
                x.len()
            )));
        }
        let (h, hout, g) = (
            cfg.hidden_size,
            cfg.h_out(),
            cfg.mode.gates() * cfg.hidden_size,
        );
        for l in 0..cfg.num_layers {
            let d = Dims {
                mode: cfg.mode,
                h,
                hout,
                input: cfg.layer_input_size(l),
            };
            let p = self.model.dir_params(l, 0);
            let (below, this_and_above) = self.h.split_at_mut(l * b * hout);
            let xin: &[T] = if l == 0 {
                x
            } else {
                &below[(l - 1) * b * hout..]
            };
            // gates (B, G·H) = x (B, in) · W_ihᵀ
            let (b1, b2) = engine::biases(&d, &p);
            self.ih_t[l].matmul_bias(b, xin, d.input, &mut self.gates, g, b1, b2, true);
            let h_prev = &mut this_and_above[..b * hout];
            let (c_prev, c_new): (&mut [T], &mut [T]) = if self.c.is_empty() {
                (&mut [], &mut [])
            } else {
                (&mut self.c[l * b * h..(l + 1) * b * h], &mut self.c_new)
            };
            engine::step(
                &d,
                &p,
                &self.packed[l],
                b,
                &mut self.gates,
                h_prev,
                &mut self.h_new,
                c_prev,
                c_new,
                &mut self.m,
                &mut self.hn,
                &mut self.gh,
                false,
                true,
            );
            h_prev.copy_from_slice(&self.h_new);
            c_prev.copy_from_slice(c_new);
        }
        let l = cfg.num_layers - 1;
        Ok(&self.h[l * b * hout..(l + 1) * b * hout])
    }
}
