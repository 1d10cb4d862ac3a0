//! `Cell`: the equivalent of `torch.nn.RNNCell`, `torch.nn.LSTMCell` and `torch.nn.GRUCell`:
//! one step, parameters named `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh`.

use crate::core::config::{Mode, RnnConfig};
use crate::core::layout::{Naming, ParamLayout};
use crate::core::rnn::{Dropout, Rnn, State, Tape};
use crate::core::tensor::Tensor;
use crate::error::{Error, Result};
use recur_kernels::Real;

/// A single-step recurrent cell.
///
/// ```
/// use recur::{Cell, Mode, Tensor};
/// // nn.LSTMCell(3, 4)
/// let cell: Cell<f32> = Cell::new(Mode::Lstm, 3, 4, true, 0).unwrap();
/// let x = Tensor::zeros(&[2, 3]);
/// let (h, c) = cell.forward(&x, None, None).unwrap();
/// assert_eq!(h.shape(), &[2, 4]);
/// assert_eq!(c.unwrap().shape(), &[2, 4]);
/// ```
#[derive(Clone, Debug)]
pub struct Cell<T = f32> {
    inner: Rnn<T>,
}

/// What a cell's training forward pass keeps for [`Cell::backward`].
#[derive(Clone, Debug)]
pub struct CellTape<T: Real> {
    tape: Tape<T>,
    unbatched: bool,
}

/// Gradients with respect to a cell's inputs.
#[derive(Clone, Debug, PartialEq)]
pub struct CellGrads<T> {
    /// d loss / d x, shaped as x.
    pub input: Tensor<T>,
    /// d loss / d h, shaped as h.
    pub h: Tensor<T>,
    /// d loss / d c (LSTM).
    pub c: Option<Tensor<T>>,
}

impl<T: Real> Cell<T> {
    /// A new cell with PyTorch's default initialization, U(-1/√hidden, 1/√hidden).
    pub fn new(
        mode: Mode,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        seed: u64,
    ) -> Result<Cell<T>> {
        let cfg = RnnConfig::new(mode, input_size, hidden_size).bias(bias);
        Ok(Cell {
            inner: Rnn::new_named(cfg, Naming::Cell, seed)?,
        })
    }
    /// A cell with the given flat parameters (in [`ParamLayout`] order).
    pub fn from_params(
        mode: Mode,
        input_size: usize,
        hidden_size: usize,
        bias: bool,
        params: Vec<T>,
    ) -> Result<Cell<T>> {
        let cfg = RnnConfig::new(mode, input_size, hidden_size).bias(bias);
        Ok(Cell {
            inner: Rnn::from_params_named(cfg, Naming::Cell, params)?,
        })
    }
    /// The configuration (one layer, one direction).
    pub fn config(&self) -> &RnnConfig {
        self.inner.config()
    }
    /// The parameter table.
    pub fn layout(&self) -> &ParamLayout {
        self.inner.layout()
    }
    /// All parameters, flat.
    pub fn params(&self) -> &[T] {
        self.inner.params()
    }
    /// All parameters, flat, mutable.
    pub fn params_mut(&mut self) -> &mut [T] {
        self.inner.params_mut()
    }
    /// A zeroed gradient buffer.
    pub fn zeros_like_params(&self) -> Vec<T> {
        self.inner.zeros_like_params()
    }

    fn wrap(
        &self,
        x: &Tensor<T>,
        h: Option<&Tensor<T>>,
        c: Option<&Tensor<T>>,
    ) -> Result<(Tensor<T>, Option<State<T>>, bool)> {
        let cfg = self.inner.config();
        let unbatched = match x.shape().len() {
            1 => true,
            2 => false,
            _ => {
                return Err(Error::Input(format!(
                    "cell input: expected (batch, {}) or ({},), got shape {}",
                    cfg.input_size,
                    cfg.input_size,
                    crate::error::fmt_shape(x.shape())
                )))
            }
        };
        if x.shape().last() != Some(&cfg.input_size) {
            let want: Vec<usize> = if unbatched {
                vec![cfg.input_size]
            } else {
                vec![x.shape()[0], cfg.input_size]
            };
            return Err(Error::shape("cell input", &want, x.shape()));
        }
        let b = if unbatched { 1 } else { x.shape()[0] };
        let xs = x.clone().reshape(&[1, b, *x.shape().last().unwrap()])?;
        let want: Vec<usize> = if unbatched {
            vec![cfg.hidden_size]
        } else {
            vec![b, cfg.hidden_size]
        };
        let lift = |what: &str, t: &Tensor<T>| -> Result<Tensor<T>> {
            if t.shape() != want.as_slice() {
                return Err(Error::shape(what, &want, t.shape()));
            }
            t.clone().reshape(&[1, b, cfg.hidden_size])
        };
        let state = match (h, c) {
            (None, None) => None,
            (h, c) => {
                if c.is_some() && cfg.mode != Mode::Lstm {
                    return Err(Error::Input(format!(
                        "c was given, but a {} cell has no cell state",
                        cfg.mode
                    )));
                }
                let h = match h {
                    Some(h) => lift("h", h)?,
                    None => Tensor::zeros(&[1, b, cfg.hidden_size]),
                };
                let c = match c {
                    Some(c) => Some(lift("c", c)?),
                    None => None,
                };
                Some(State { h, c })
            }
        };
        Ok((xs, state, unbatched))
    }

    fn unwrap_state(&self, t: Tensor<T>, unbatched: bool) -> Tensor<T> {
        let hsz = self.inner.config().hidden_size;
        let shape: Vec<usize> = if unbatched {
            vec![hsz]
        } else {
            vec![t.shape()[1], hsz]
        };
        t.reshape(&shape).expect("cell state shape")
    }

    /// One step: `x` (B, input_size) or (input_size,), `h`/`c` (B, hidden) or zeros.
    /// Returns h' and, for an LSTM cell, c'.
    pub fn forward(
        &self,
        x: &Tensor<T>,
        h: Option<&Tensor<T>>,
        c: Option<&Tensor<T>>,
    ) -> Result<(Tensor<T>, Option<Tensor<T>>)> {
        let (xs, st, ub) = self.wrap(x, h, c)?;
        let out = self.inner.forward(&xs, st.as_ref(), None)?;
        Ok((
            self.unwrap_state(out.h_n, ub),
            out.c_n.map(|c| self.unwrap_state(c, ub)),
        ))
    }

    /// One step, keeping what [`Cell::backward`] needs.
    #[allow(clippy::type_complexity)]
    pub fn forward_train(
        &self,
        x: &Tensor<T>,
        h: Option<&Tensor<T>>,
        c: Option<&Tensor<T>>,
    ) -> Result<((Tensor<T>, Option<Tensor<T>>), CellTape<T>)> {
        let (xs, st, ub) = self.wrap(x, h, c)?;
        let (out, tape) = self
            .inner
            .forward_train(&xs, st.as_ref(), None, Dropout::Off)?;
        Ok((
            (
                self.unwrap_state(out.h_n, ub),
                out.c_n.map(|c| self.unwrap_state(c, ub)),
            ),
            CellTape {
                tape,
                unbatched: ub,
            },
        ))
    }

    /// Given d loss / d h' (and d loss / d c'), adds the parameter gradients to `grads` and
    /// returns the gradients with respect to x, h and c.
    pub fn backward(
        &self,
        tape: &CellTape<T>,
        grad_h: Option<&Tensor<T>>,
        grad_c: Option<&Tensor<T>>,
        grads: &mut [T],
    ) -> Result<CellGrads<T>> {
        let hsz = self.inner.config().hidden_size;
        let lift = |what: &str, t: &Tensor<T>| -> Result<Tensor<T>> {
            let b = if tape.unbatched {
                1
            } else {
                t.shape().first().copied().unwrap_or(0)
            };
            let want: Vec<usize> = if tape.unbatched {
                vec![hsz]
            } else {
                vec![b, hsz]
            };
            if t.shape() != want.as_slice() {
                return Err(Error::shape(what, &want, t.shape()));
            }
            t.clone().reshape(&[1, b, hsz])
        };
        let gh = grad_h.map(|g| lift("grad_h", g)).transpose()?;
        let gc = grad_c.map(|g| lift("grad_c", g)).transpose()?;
        let g = self
            .inner
            .backward(&tape.tape, None, gh.as_ref(), gc.as_ref(), grads)?;
        let ub = tape.unbatched;
        let isz = self.inner.config().input_size;
        let b = g.input.shape()[1];
        let input = g
            .input
            .reshape(&if ub { vec![isz] } else { vec![b, isz] })?;
        Ok(CellGrads {
            input,
            h: self.unwrap_state(g.h0, ub),
            c: g.c0.map(|c| self.unwrap_state(c, ub)),
        })
    }

    /// The cell as a one-layer unidirectional [`Rnn`] with layer names (`weight_ih_l0`, ...):
    /// the same parameters, for running whole sequences or streaming.
    pub fn to_layer(&self) -> Rnn<T> {
        Rnn::from_params(self.inner.config().clone(), self.inner.params().to_vec())
            .expect("same layout")
    }
}
