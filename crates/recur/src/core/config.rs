//! Layer configuration, with PyTorch's argument names and defaults.

use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// The recurrent cell: PyTorch's `mode` strings are `RNN_TANH`, `RNN_RELU`, `LSTM`, `GRU`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// `h' = tanh(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)` (`nn.RNN`, the default nonlinearity)
    RnnTanh,
    /// `h' = relu(x W_ihᵀ + b_ih + h W_hhᵀ + b_hh)` (`nn.RNN(nonlinearity='relu')`)
    RnnRelu,
    /// `nn.LSTM`: gates `[i | f | g | o]`, optional projection
    Lstm,
    /// `nn.GRU`: gates `[r | z | n]`, reset applied after the hidden matmul
    Gru,
}

impl Mode {
    /// The number of gate blocks stacked along the rows of `weight_ih`/`weight_hh`.
    pub fn gates(self) -> usize {
        match self {
            Mode::RnnTanh | Mode::RnnRelu => 1,
            Mode::Lstm => 4,
            Mode::Gru => 3,
        }
    }
    /// The lower-case name used on the command line and in files: `rnn_tanh`, `rnn_relu`,
    /// `lstm`, `gru`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::RnnTanh => "rnn_tanh",
            Mode::RnnRelu => "rnn_relu",
            Mode::Lstm => "lstm",
            Mode::Gru => "gru",
        }
    }
    /// Whether the cell carries a cell state `c` (LSTM only).
    pub fn has_cell_state(self) -> bool {
        self == Mode::Lstm
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Mode> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "rnn_tanh" | "rnn" | "tanh" => Ok(Mode::RnnTanh),
            "rnn_relu" | "relu" => Ok(Mode::RnnRelu),
            "lstm" => Ok(Mode::Lstm),
            "gru" => Ok(Mode::Gru),
            _ => Err(Error::Config(format!(
                "unknown cell '{s}': expected one of rnn_tanh, rnn_relu, lstm, gru"
            ))),
        }
    }
}

/// The configuration of a recurrent layer stack: the arguments of `torch.nn.RNN`,
/// `torch.nn.LSTM` and `torch.nn.GRU`, with the same names and defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct RnnConfig {
    /// Which cell.
    pub mode: Mode,
    /// Features of each input element.
    pub input_size: usize,
    /// Features of the hidden state (of the cell state for an LSTM with projections).
    pub hidden_size: usize,
    /// Stacked layers (default 1).
    pub num_layers: usize,
    /// Whether the layers have `bias_ih` and `bias_hh` (default true).
    pub bias: bool,
    /// Input and output are (batch, seq, feature) instead of (seq, batch, feature); never
    /// applies to the states (default false).
    pub batch_first: bool,
    /// Dropout on the outputs of every layer but the last, in training only (default 0).
    pub dropout: f64,
    /// Run a second, reverse-direction layer and concatenate (default false).
    pub bidirectional: bool,
    /// LSTM only: project the hidden state to this size (default 0 = no projection).
    pub proj_size: usize,
    /// The regularizers PyTorch's layers do not have (all off by default, and then the layer is
    /// exactly PyTorch's, with the same parameters).
    pub regular: Regularizers,
}

/// Regularizers inside the recurrent layers (see [`crate::core::regular`] for the exact
/// equations). All off by default. Every probability is in [0, 1).
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Regularizers {
    /// Layer normalization (Ba, Kiros & Hinton 2016) of the input pre-activations `x W_ihᵀ`
    /// and of the recurrent pre-activations `h W_hhᵀ`, separately, over all gates; for an LSTM
    /// also of the new cell state. Each with a gain and a bias (parameters `ln_ih_weight_l0`,
    /// `ln_ih_bias_l0`, `ln_hh_weight_l0`, `ln_hh_bias_l0`, `ln_c_weight_l0`, `ln_c_bias_l0`).
    pub layer_norm: bool,
    /// Variational dropout on each layer's input (Gal & Ghahramani 2016; Keras `dropout`): one
    /// mask per sequence, reused at every step, in training only.
    pub input_dropout: f64,
    /// Variational dropout on `h_{t-1}` in the recurrent product (Keras `recurrent_dropout`):
    /// one mask per sequence, reused at every step, in training only.
    pub recurrent_dropout: f64,
    /// Zoneout on h (Krueger et al. 2016): in training each unit keeps its previous value with
    /// this probability at each step; in evaluation `h = p h_{t-1} + (1 - p) h̃`.
    pub zoneout_h: f64,
    /// Zoneout on the LSTM cell state c, as `zoneout_h`.
    pub zoneout_c: f64,
    /// DropConnect on `weight_hh` (Merity et al. 2017, AWD-LSTM's WeightDrop): one mask per
    /// forward pass (per batch), inverted scaling, in training only.
    pub weight_drop: f64,
    /// The dropout between layers (`RnnConfig::dropout`) keeps one mask per sequence for all
    /// steps (locked dropout) instead of one per step.
    pub locked_dropout: bool,
}

impl Regularizers {
    /// True when something in training differs from PyTorch's layer.
    pub fn any(&self) -> bool {
        self.layer_norm
            || self.input_dropout > 0.0
            || self.recurrent_dropout > 0.0
            || self.zoneout_h > 0.0
            || self.zoneout_c > 0.0
            || self.weight_drop > 0.0
            || self.locked_dropout
    }
    /// True when evaluation differs from PyTorch's layer (layer norm, zoneout).
    pub fn any_in_eval(&self) -> bool {
        self.layer_norm || self.zoneout_h > 0.0 || self.zoneout_c > 0.0
    }
}

impl RnnConfig {
    /// A single-layer configuration with PyTorch's defaults.
    pub fn new(mode: Mode, input_size: usize, hidden_size: usize) -> RnnConfig {
        RnnConfig {
            mode,
            input_size,
            hidden_size,
            num_layers: 1,
            bias: true,
            batch_first: false,
            dropout: 0.0,
            bidirectional: false,
            proj_size: 0,
            regular: Regularizers::default(),
        }
    }
    /// `nn.LSTM(input_size, hidden_size)`
    pub fn lstm(input_size: usize, hidden_size: usize) -> RnnConfig {
        RnnConfig::new(Mode::Lstm, input_size, hidden_size)
    }
    /// `nn.GRU(input_size, hidden_size)`
    pub fn gru(input_size: usize, hidden_size: usize) -> RnnConfig {
        RnnConfig::new(Mode::Gru, input_size, hidden_size)
    }
    /// `nn.RNN(input_size, hidden_size)` (tanh)
    pub fn rnn(input_size: usize, hidden_size: usize) -> RnnConfig {
        RnnConfig::new(Mode::RnnTanh, input_size, hidden_size)
    }
    /// Sets `num_layers`.
    pub fn num_layers(mut self, n: usize) -> Self {
        self.num_layers = n;
        self
    }
    /// Sets `bias`.
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
    /// Sets `batch_first`.
    pub fn batch_first(mut self, b: bool) -> Self {
        self.batch_first = b;
        self
    }
    /// Sets `dropout`.
    pub fn dropout(mut self, p: f64) -> Self {
        self.dropout = p;
        self
    }
    /// Sets `bidirectional`.
    pub fn bidirectional(mut self, b: bool) -> Self {
        self.bidirectional = b;
        self
    }
    /// Sets `proj_size` (LSTM only).
    pub fn proj_size(mut self, p: usize) -> Self {
        self.proj_size = p;
        self
    }
    /// Sets layer normalization inside the cells ([`Regularizers::layer_norm`]).
    pub fn layer_norm(mut self, on: bool) -> Self {
        self.regular.layer_norm = on;
        self
    }
    /// Sets variational dropout on each layer's input ([`Regularizers::input_dropout`]).
    pub fn input_dropout(mut self, p: f64) -> Self {
        self.regular.input_dropout = p;
        self
    }
    /// Sets variational dropout on h_{t-1} ([`Regularizers::recurrent_dropout`]).
    pub fn recurrent_dropout(mut self, p: f64) -> Self {
        self.regular.recurrent_dropout = p;
        self
    }
    /// Sets zoneout on h and, for an LSTM, on c ([`Regularizers::zoneout_h`]).
    pub fn zoneout(mut self, p: f64) -> Self {
        self.regular.zoneout_h = p;
        self.regular.zoneout_c = if self.mode == Mode::Lstm { p } else { 0.0 };
        self
    }
    /// Sets DropConnect on `weight_hh` ([`Regularizers::weight_drop`]).
    pub fn weight_drop(mut self, p: f64) -> Self {
        self.regular.weight_drop = p;
        self
    }
    /// Sets locked (one mask per sequence) dropout between layers.
    pub fn locked_dropout(mut self, on: bool) -> Self {
        self.regular.locked_dropout = on;
        self
    }
    /// 2 if bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }
    /// The size of h: `proj_size` if it is set, else `hidden_size`.
    pub fn h_out(&self) -> usize {
        if self.proj_size > 0 {
            self.proj_size
        } else {
            self.hidden_size
        }
    }
    /// The input size of layer `k`: `input_size` for layer 0, `D * h_out` above.
    pub fn layer_input_size(&self, k: usize) -> usize {
        if k == 0 {
            self.input_size
        } else {
            self.num_directions() * self.h_out()
        }
    }
    /// The number of parameters, or `None` when it (or its size in bytes as f64) does not fit
    /// in a `usize`: computed in checked arithmetic, so that absurd sizes are an error rather
    /// than an overflow or a failed allocation.
    pub fn checked_num_params(&self) -> Option<usize> {
        let gh = self.mode.gates().checked_mul(self.hidden_size)?;
        let per_direction = |input: usize| -> Option<usize> {
            let mut n = gh
                .checked_mul(input)?
                .checked_add(gh.checked_mul(self.h_out())?)?;
            if self.regular.layer_norm {
                n = n.checked_add(gh.checked_mul(4)?)?;
                if self.mode == Mode::Lstm {
                    n = n.checked_add(self.hidden_size.checked_mul(2)?)?;
                }
            }
            if self.bias {
                n = n.checked_add(gh.checked_mul(2)?)?;
            }
            if self.mode == Mode::Lstm && self.proj_size > 0 {
                n = n.checked_add(self.proj_size.checked_mul(self.hidden_size)?)?;
            }
            Some(n)
        };
        let d = self.num_directions();
        let first = per_direction(self.input_size)?;
        let above = match self.num_layers {
            0 | 1 => 0,
            l => per_direction(d.checked_mul(self.h_out())?)?.checked_mul(l - 1)?,
        };
        let n = first.checked_add(above)?.checked_mul(d)?;
        (n.checked_mul(std::mem::size_of::<f64>())? <= isize::MAX as usize).then_some(n)
    }

    /// Checks the configuration the way PyTorch's constructor does.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.hidden_size == 0 {
            return bad("hidden_size must be greater than zero".into());
        }
        if self.input_size == 0 {
            return bad("input_size must be greater than zero".into());
        }
        if self.num_layers == 0 {
            return bad("num_layers must be greater than zero".into());
        }
        if self.checked_num_params().is_none() {
            return bad(format!(
                "input_size {}, hidden_size {}, num_layers {}: more parameters than memory can address",
                self.input_size, self.hidden_size, self.num_layers
            ));
        }
        if !(0.0..=1.0).contains(&self.dropout) {
            return bad(format!(
                "dropout should be a number in range [0, 1] representing the probability of an element being zeroed, got {}",
                self.dropout
            ));
        }
        let r = &self.regular;
        for (name, p) in [
            ("input_dropout", r.input_dropout),
            ("recurrent_dropout", r.recurrent_dropout),
            ("zoneout_h", r.zoneout_h),
            ("zoneout_c", r.zoneout_c),
            ("weight_drop", r.weight_drop),
        ] {
            if !(0.0..1.0).contains(&p) {
                return bad(format!("{name} must be a probability in [0, 1), got {p}"));
            }
        }
        if r.zoneout_c > 0.0 && self.mode != Mode::Lstm {
            return bad(format!(
                "zoneout on the cell state needs an LSTM, not {}",
                self.mode
            ));
        }
        if r.any() && (self.bidirectional || self.proj_size > 0) {
            return bad(
                "layer norm, variational dropout, zoneout, weight drop and locked dropout are for unidirectional layers without projection".into(),
            );
        }
        if self.proj_size > 0 {
            if self.mode != Mode::Lstm {
                return bad(format!(
                    "proj_size is only supported by LSTM, not {}",
                    self.mode
                ));
            }
            if self.proj_size >= self.hidden_size {
                return bad(format!(
                    "proj_size ({}) has to be smaller than hidden_size ({})",
                    self.proj_size, self.hidden_size
                ));
            }
        }
        Ok(())
    }
}
