//! Layer configuration, with PyTorch's argument names and defaults.

use crate::error::{Error, Result};
use recur_kernels::Real;
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
    /// The cell variants of ONNX and Keras (all off by default: PyTorch's cells).
    pub cell: CellOptions,
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
            cell: CellOptions::default(),
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
    /// Sets the cell variants ([`CellOptions`]).
    pub fn cell_options(mut self, o: CellOptions) -> Self {
        self.cell = o;
        self
    }
    /// GRU: sets `linear_before_reset` ([`CellOptions::linear_before_reset`]).
    pub fn linear_before_reset(mut self, on: bool) -> Self {
        self.cell.linear_before_reset = on;
        self
    }
    /// LSTM: sets peephole connections ([`CellOptions::peepholes`]).
    pub fn peepholes(mut self, on: bool) -> Self {
        self.cell.peepholes = on;
        self
    }
    /// LSTM: sets the coupled input and forget gate ([`CellOptions::input_forget`]).
    pub fn input_forget(mut self, on: bool) -> Self {
        self.cell.input_forget = on;
        self
    }
    /// Sets the bound of the activations' inputs ([`CellOptions::clip`]).
    pub fn clip(mut self, c: Option<f64>) -> Self {
        self.cell.clip = c;
        self
    }
    /// Sets the activation functions ([`CellOptions::activations`]).
    pub fn activations(mut self, a: Vec<Activation>) -> Self {
        self.cell.activations = a;
        self
    }
    /// True when the cells are not PyTorch's ([`CellOptions`] other than the defaults).
    pub fn has_cell_variants(&self) -> bool {
        !self.cell.is_default()
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
            if self.mode == Mode::Lstm && self.cell.peepholes {
                n = n.checked_add(self.hidden_size.checked_mul(3)?)?;
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
        self.validate_cell()?;
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

impl RnnConfig {
    /// Checks the cell variants against the mode and the other options.
    fn validate_cell(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let o = &self.cell;
        let lstm = self.mode == Mode::Lstm;
        if o.peepholes && !lstm {
            return bad(format!("peepholes are for an LSTM, not {}", self.mode));
        }
        if o.input_forget && !lstm {
            return bad(format!(
                "input_forget (f = 1 - i) is for an LSTM, not {}",
                self.mode
            ));
        }
        if !o.linear_before_reset && self.mode != Mode::Gru {
            return bad(format!(
                "linear_before_reset = false is for a GRU, not {}",
                self.mode
            ));
        }
        if let Some(c) = o.clip {
            if !(c > 0.0 && c.is_finite()) {
                return bad(format!("clip must be a positive finite number, got {c}"));
            }
        }
        let n = activation_count(self.mode);
        let k = o.activations.len();
        if k != 0 && k != n && !(k == 2 * n && self.bidirectional) {
            return bad(format!(
                "activations: a {} takes {n} function(s) ({}){}, got {k}",
                self.mode,
                match self.mode {
                    Mode::Lstm => "f for i, f, o; g for the candidate; h for the output",
                    Mode::Gru => "f for z and r; g for the candidate",
                    _ => "f",
                },
                if self.bidirectional {
                    format!(", or {} with the reverse direction's", 2 * n)
                } else {
                    String::new()
                }
            ));
        }
        for a in &o.activations {
            let (alpha, beta) = match *a {
                Activation::Affine { alpha, beta }
                | Activation::ScaledTanh { alpha, beta }
                | Activation::HardSigmoid { alpha, beta } => (alpha, beta),
                Activation::LeakyRelu { alpha }
                | Activation::ThresholdedRelu { alpha }
                | Activation::Elu { alpha } => (alpha, 0.0),
                _ => (0.0, 0.0),
            };
            if !alpha.is_finite() || !beta.is_finite() {
                return bad(format!("activation {a}: alpha and beta must be finite"));
            }
        }
        if !o.is_default() {
            if self.proj_size > 0 {
                return bad("the cell variants (peepholes, input_forget, clip, activations, linear_before_reset = false) are for layers without projection (proj_size 0)".into());
            }
            if !o.linear_before_reset && self.regular.layer_norm {
                return bad("layer norm is not supported with linear_before_reset = false (the reset gate sits inside the normalized recurrent product)".into());
            }
        }
        Ok(())
    }
}

/// An activation function of the ONNX recurrent operators, with its parameters (ONNX's
/// `activations`, `activation_alpha`, `activation_beta`). In files it is written as
/// `{"name": "leaky_relu", "alpha": 0.1}`, on the command line as `leaky_relu:0.1`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "name", rename_all = "snake_case", deny_unknown_fields)]
pub enum Activation {
    /// max(0, x)
    Relu,
    /// tanh(x)
    Tanh,
    /// 1 / (1 + e^-x)
    Sigmoid,
    /// α x + β
    Affine {
        /// α
        alpha: f64,
        /// β
        beta: f64,
    },
    /// x for x ≥ 0, else α x
    LeakyRelu {
        /// α
        alpha: f64,
    },
    /// x for x > α, else 0
    ThresholdedRelu {
        /// α
        alpha: f64,
    },
    /// α tanh(β x)
    ScaledTanh {
        /// α
        alpha: f64,
        /// β
        beta: f64,
    },
    /// min(1, max(0, α x + β))
    HardSigmoid {
        /// α
        alpha: f64,
        /// β
        beta: f64,
    },
    /// x for x ≥ 0, else α (eˣ - 1)
    Elu {
        /// α
        alpha: f64,
    },
    /// x / (1 + |x|)
    Softsign,
    /// log(1 + eˣ)
    Softplus,
}

impl Activation {
    /// The snake-case name (`hard_sigmoid`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
            Activation::Affine { .. } => "affine",
            Activation::LeakyRelu { .. } => "leaky_relu",
            Activation::ThresholdedRelu { .. } => "thresholded_relu",
            Activation::ScaledTanh { .. } => "scaled_tanh",
            Activation::HardSigmoid { .. } => "hard_sigmoid",
            Activation::Elu { .. } => "elu",
            Activation::Softsign => "softsign",
            Activation::Softplus => "softplus",
        }
    }

    /// The function at `x`.
    #[inline]
    pub fn apply<T: Real>(self, x: T) -> T {
        let c = T::from_f64;
        match self {
            Activation::Relu => x.relu(),
            Activation::Tanh => x.tanh(),
            Activation::Sigmoid => x.sigmoid(),
            Activation::Affine { alpha, beta } => c(alpha) * x + c(beta),
            Activation::LeakyRelu { alpha } => {
                if x >= T::ZERO {
                    x
                } else {
                    c(alpha) * x
                }
            }
            Activation::ThresholdedRelu { alpha } => {
                if x > c(alpha) {
                    x
                } else {
                    T::ZERO
                }
            }
            Activation::ScaledTanh { alpha, beta } => c(alpha) * (c(beta) * x).tanh(),
            Activation::HardSigmoid { alpha, beta } => {
                let v = c(alpha) * x + c(beta);
                if v < T::ZERO {
                    T::ZERO
                } else if v > T::ONE {
                    T::ONE
                } else {
                    v
                }
            }
            Activation::Elu { alpha } => {
                if x >= T::ZERO {
                    x
                } else {
                    c(alpha) * (x.exp() - T::ONE)
                }
            }
            Activation::Softsign => x / (T::ONE + x.abs()),
            Activation::Softplus => {
                // log(1 + eˣ) without overflow: x + log(1 + e⁻ˣ) for x > 0.
                let v = x.to_f64();
                c(if v > 0.0 {
                    v + (-v).exp().ln_1p()
                } else {
                    v.exp().ln_1p()
                })
            }
        }
    }

    /// The function on every element of `v` (tanh and sigmoid by the vectorized kernels).
    pub fn apply_slice<T: Real>(self, v: &mut [T]) {
        match self {
            Activation::Tanh => recur_kernels::cells::tanh_inplace(v),
            Activation::Sigmoid => recur_kernels::cells::sigmoid_inplace(v),
            a => v.iter_mut().for_each(|x| *x = a.apply(*x)),
        }
    }

    /// The derivative at the input `x`, given the output `y = f(x)` (tanh and sigmoid use `y`
    /// only, as PyTorch's backward does).
    #[inline]
    pub fn grad<T: Real>(self, x: T, y: T) -> T {
        let c = T::from_f64;
        match self {
            Activation::Relu => {
                if y > T::ZERO {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            Activation::Tanh => T::ONE - y * y,
            Activation::Sigmoid => y * (T::ONE - y),
            Activation::Affine { alpha, .. } => c(alpha),
            Activation::LeakyRelu { alpha } => {
                if x >= T::ZERO {
                    T::ONE
                } else {
                    c(alpha)
                }
            }
            Activation::ThresholdedRelu { alpha } => {
                if x > c(alpha) {
                    T::ONE
                } else {
                    T::ZERO
                }
            }
            Activation::ScaledTanh { alpha, beta } => {
                let t = (c(beta) * x).tanh();
                c(alpha) * c(beta) * (T::ONE - t * t)
            }
            Activation::HardSigmoid { alpha, beta } => {
                let v = c(alpha) * x + c(beta);
                if v > T::ZERO && v < T::ONE {
                    c(alpha)
                } else {
                    T::ZERO
                }
            }
            Activation::Elu { alpha } => {
                if x >= T::ZERO {
                    T::ONE
                } else {
                    y + c(alpha)
                }
            }
            Activation::Softsign => {
                let d = T::ONE + x.abs();
                T::ONE / (d * d)
            }
            Activation::Softplus => x.sigmoid(),
        }
    }

    /// Whether the derivative needs the input `x` (not only the output).
    pub fn needs_input(self) -> bool {
        !matches!(
            self,
            Activation::Tanh | Activation::Sigmoid | Activation::Relu
        )
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        match *self {
            Activation::Affine { alpha, beta }
            | Activation::ScaledTanh { alpha, beta }
            | Activation::HardSigmoid { alpha, beta } => write!(f, ":{alpha},{beta}"),
            Activation::LeakyRelu { alpha }
            | Activation::ThresholdedRelu { alpha }
            | Activation::Elu { alpha } => write!(f, ":{alpha}"),
            _ => Ok(()),
        }
    }
}

impl FromStr for Activation {
    type Err = Error;
    /// `tanh`, `leaky_relu:0.1`, `hard_sigmoid:0.2,0.5`, ... (names case-insensitive, `-` or
    /// `_` or none between words, as ONNX's `LeakyRelu`). Parameters left out take the ONNX
    /// operator's defaults: Affine 1, 0; LeakyRelu 0.01; ThresholdedRelu 1; ScaledTanh 1, 1;
    /// HardSigmoid 0.2, 0.5; Elu 1.
    fn from_str(s: &str) -> Result<Activation> {
        let (name, params) = match s.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (s, None),
        };
        let bad = |m: String| Error::Config(format!("activation '{s}': {m}"));
        let vals: Vec<f64> = match params {
            None => Vec::new(),
            Some(p) => p
                .split(',')
                .map(|v| {
                    v.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| bad(format!("'{v}' is not a finite number")))
                })
                .collect::<Result<_>>()?,
        };
        let key = name.trim().to_ascii_lowercase().replace(['_', '-'], "");
        let (n, make): (usize, fn(f64, f64) -> Activation) = match key.as_str() {
            "relu" => (0, |_, _| Activation::Relu),
            "tanh" => (0, |_, _| Activation::Tanh),
            "sigmoid" => (0, |_, _| Activation::Sigmoid),
            "softsign" => (0, |_, _| Activation::Softsign),
            "softplus" => (0, |_, _| Activation::Softplus),
            "affine" => (2, |alpha, beta| Activation::Affine { alpha, beta }),
            "leakyrelu" => (1, |alpha, _| Activation::LeakyRelu { alpha }),
            "thresholdedrelu" => (1, |alpha, _| Activation::ThresholdedRelu { alpha }),
            "scaledtanh" => (2, |alpha, beta| Activation::ScaledTanh { alpha, beta }),
            "hardsigmoid" => (2, |alpha, beta| Activation::HardSigmoid { alpha, beta }),
            "elu" => (1, |alpha, _| Activation::Elu { alpha }),
            _ => return Err(bad("unknown function: expected one of relu, tanh, sigmoid, affine, leaky_relu, thresholded_relu, scaled_tanh, hard_sigmoid, elu, softsign, softplus".into())),
        };
        if vals.len() > n {
            return Err(bad(format!("takes {n} parameter(s), got {}", vals.len())));
        }
        let defaults = make(f64::NAN, f64::NAN).defaults();
        let alpha = vals.first().copied().unwrap_or(defaults.0);
        let beta = vals.get(1).copied().unwrap_or(defaults.1);
        Ok(make(alpha, beta))
    }
}

impl Activation {
    /// The ONNX operator's default (α, β) for this function's kind.
    fn defaults(self) -> (f64, f64) {
        match self {
            Activation::Affine { .. } => (1.0, 0.0),
            Activation::LeakyRelu { .. } => (0.01, 0.0),
            Activation::ThresholdedRelu { .. } => (1.0, 0.0),
            Activation::ScaledTanh { .. } => (1.0, 1.0),
            Activation::HardSigmoid { .. } => (0.2, 0.5),
            Activation::Elu { .. } => (1.0, 0.0),
            _ => (0.0, 0.0),
        }
    }
}

/// The cell variants of the ONNX recurrent operators (and of Keras) that PyTorch's layers lack.
/// All off by default, and then the cell is exactly PyTorch's. Any other setting runs on the
/// general layer ([`crate::core::regular`]), forward, BPTT and streaming; see docs/onnx.md.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CellOptions {
    /// GRU: apply the reset gate after the recurrent product, `n = g(W_n x + b_in + r ⊙ (W_hn
    /// h + b_hn))` (PyTorch's form, ONNX `linear_before_reset = 1`; the default). `false` is
    /// ONNX's default and Keras `reset_after=False`: `n = g(W_n x + b_in + W_hn (r ⊙ h) + b_hn)`.
    pub linear_before_reset: bool,
    /// LSTM: peephole connections, parameters `weight_peephole_l{k}` of shape (3, H), rows in
    /// the order i, f, o (PyTorch's gate order; ONNX's `P` is i, o, f): `i = f(… + p_i ⊙ c)`,
    /// `f = f(… + p_f ⊙ c)`, `o = f(… + p_o ⊙ c')` with `c'` the new cell state.
    pub peepholes: bool,
    /// LSTM: coupled input and forget gates, `f = 1 - i` (ONNX `input_forget`); the forget
    /// gate's weights stay in the layout and get zero gradients.
    pub input_forget: bool,
    /// Bounds every activation's input to [-clip, clip] (ONNX `clip`; not the cell state's
    /// `h(c)`). Its gradient is 0 where the bound is active.
    pub clip: Option<f64>,
    /// The activation functions, ONNX's `activations`: empty for the mode's own (RNN: tanh or
    /// relu; GRU: sigmoid, tanh; LSTM: sigmoid, tanh, tanh), else one per function of the cell
    /// (RNN: f; GRU: f for z and r, g for the candidate; LSTM: f for i, f, o, g for the
    /// candidate, h for the output) and, for a bidirectional layer, optionally as many again for
    /// the reverse direction (without them it uses the forward direction's).
    pub activations: Vec<Activation>,
}

impl Default for CellOptions {
    fn default() -> CellOptions {
        CellOptions {
            linear_before_reset: true,
            peepholes: false,
            input_forget: false,
            clip: None,
            activations: Vec::new(),
        }
    }
}

impl CellOptions {
    /// True when the cell is PyTorch's.
    pub fn is_default(&self) -> bool {
        *self == CellOptions::default()
    }

    /// The activations of direction `d` of a `mode` cell: (f, g, h); entries a cell does not
    /// use are the defaults.
    pub fn activations_of(&self, mode: Mode, d: usize) -> [Activation; 3] {
        let n = activation_count(mode);
        let own = match mode {
            Mode::RnnTanh => [Activation::Tanh; 3],
            Mode::RnnRelu => [Activation::Relu; 3],
            Mode::Gru | Mode::Lstm => [Activation::Sigmoid, Activation::Tanh, Activation::Tanh],
        };
        let a = &self.activations;
        let set = if a.len() == 2 * n && d == 1 {
            &a[n..]
        } else if a.len() >= n {
            &a[..n]
        } else {
            return own;
        };
        let mut out = own;
        out[..n].copy_from_slice(set);
        out
    }
}

/// How many activation functions a cell has (ONNX: RNN 1, GRU 2, LSTM 3).
pub fn activation_count(mode: Mode) -> usize {
    match mode {
        Mode::RnnTanh | Mode::RnnRelu => 1,
        Mode::Gru => 2,
        Mode::Lstm => 3,
    }
}
