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
