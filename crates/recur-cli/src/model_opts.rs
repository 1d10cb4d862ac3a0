//! The options of the model that every `recur train` task shares ([`ModelOpts`], flattened
//! into each task's arguments) and the recurrent cell they name ([`Cell`]). Like `opts` and
//! `shared`, this module imports no other file of the command line.
//!
//! One struct declares the flags, their names, kinds and help; a task whose model is
//! conventionally of another size states its own defaults with [`ModelDefaults`] (`recur
//! train <task> --help` shows them), and the options a task's model does not have are hidden
//! from its help and refused when given (`--embed-size` of a forecaster, `--bidirectional` of a
//! language model). The size checks are [`crate::limits::check_model`].

use clap::builder::{PossibleValue, TypedValueParser};
use clap::{ArgAction, Args as ClapArgs, ValueEnum};

/// A recurrent cell: `nn.RNN(nonlinearity='tanh')`, `nn.RNN(nonlinearity='relu')`,
/// `nn.LSTM`, `nn.GRU`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Cell {
    // Elman RNN with tanh (also: rnn, tanh, rnn-tanh, in any case, as the library reads it).
    #[value(name = "rnn_tanh", alias = "rnn", alias = "tanh")]
    RnnTanh,
    // Elman RNN with ReLU (also: relu).
    #[value(name = "rnn_relu", alias = "relu")]
    RnnRelu,
    Lstm,
    Gru,
}

impl From<Cell> for recur::Mode {
    fn from(c: Cell) -> recur::Mode {
        match c {
            Cell::RnnTanh => recur::Mode::RnnTanh,
            Cell::RnnRelu => recur::Mode::RnnRelu,
            Cell::Lstm => recur::Mode::Lstm,
            Cell::Gru => recur::Mode::Gru,
        }
    }
}

impl From<recur::Mode> for Cell {
    fn from(m: recur::Mode) -> Cell {
        match m {
            recur::Mode::RnnTanh => Cell::RnnTanh,
            recur::Mode::RnnRelu => Cell::RnnRelu,
            recur::Mode::Lstm => Cell::Lstm,
            recur::Mode::Gru => Cell::Gru,
        }
    }
}

/// The parser of `--cell`: the names of [`Cell`] (shown in the help and in completions),
/// read as the library reads a cell name (any case, `-` for `_`, the aliases `rnn`, `tanh`,
/// `relu`), and one message listing the valid names for anything else.
#[derive(Clone, Copy, Debug)]
pub struct CellParser;

impl TypedValueParser for CellParser {
    type Value = Cell;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Cell, clap::Error> {
        // The library's message lists the names: "unknown cell 'x': expected one of ...".
        clap::builder::StringValueParser::new()
            .try_map(|s| s.parse::<recur::Mode>().map(Cell::from))
            .parse_ref(cmd, arg, value)
    }

    fn possible_values(&self) -> Option<Box<dyn Iterator<Item = PossibleValue> + '_>> {
        Some(Box::new(
            Cell::value_variants()
                .iter()
                .filter_map(|c| c.to_possible_value()),
        ))
    }
}

/// The model options of `recur train <task>`.
///
/// Each task sets its own defaults ([`ModelDefaults`]); the help below is the one of the
/// sequence models, and a task whose model reads an option differently says so in its own
/// words ([`ModelDefaults::help`]).
#[derive(ClapArgs, Clone, Debug)]
pub struct ModelOpts {
    /// Recurrent cell: lstm, gru, rnn_tanh or rnn_relu.
    #[arg(long, default_value = "lstm", value_parser = CellParser, hide_possible_values = true)]
    pub cell: Cell,
    /// Hidden size of every recurrent layer (per direction).
    #[arg(long, default_value_t = 128)]
    pub hidden_size: usize,
    /// Recurrent layers.
    #[arg(long, default_value_t = 1)]
    pub num_layers: usize,
    /// Size of the token embeddings.
    #[arg(long)]
    pub embed_size: Option<usize>,
    /// Read every sequence in both directions.
    #[arg(long, default_value_t = false, action = ArgAction::Set)]
    pub bidirectional: bool,
    /// Dropout between recurrent layers and before the head (training only).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// GRU: apply the reset gate after the recurrent product (PyTorch's GRU, ONNX
    /// linear_before_reset=1: the default); false: before it, h̃ = tanh(W x + W_h (r ⊙ h) + b)
    /// (ONNX's default, Keras reset_after=False).
    #[arg(long, value_name = "BOOL", action = ArgAction::Set)]
    pub gru_linear_before_reset: Option<bool>,
    /// LSTM: peephole connections from the cell state to the gates (parameters
    /// weight_peephole_l{k}).
    #[arg(long, default_value_t = false, action = ArgAction::SetTrue)]
    pub peepholes: bool,
    /// LSTM: coupled input and forget gates, f = 1 - i.
    #[arg(long, default_value_t = false, action = ArgAction::SetTrue)]
    pub input_forget: bool,
    /// Bound every activation's input in the recurrent cells to [-X, X] (ONNX's clip).
    #[arg(long, value_name = "X")]
    pub cell_clip: Option<f64>,
    /// The cell's activation functions, comma-free list separated by '/': RNN f; GRU f/g;
    /// LSTM f/g/h (ONNX's order), each one of relu, tanh, sigmoid, affine:A,B, leaky_relu:A,
    /// thresholded_relu:A, scaled_tanh:A,B, hard_sigmoid:A,B, elu:A, softsign, softplus.
    #[arg(long, value_name = "F/G/H")]
    pub activations: Option<String>,
}

/// The defaults of [`ModelOpts`] a task states for its own model, applied to its command with
/// [`ModelDefaults::apply`] (or `#[command(model_defaults(..))]`, [`WithModelDefaults`]).
/// `embed_size: None`: the task's model reads numbers (no embedding); `bidirectional: None`:
/// it reads in one direction only.
#[derive(Clone, Copy, Debug)]
pub struct ModelDefaults {
    pub hidden_size: usize,
    pub num_layers: usize,
    pub embed_size: Option<usize>,
    pub bidirectional: Option<bool>,
    pub dropout: f64,
    /// The task's own help of some options: (field name, help), e.g. `("embed_size", "Size
    /// of the character embeddings")`.
    pub help: &'static [(&'static str, &'static str)],
}

/// [`ModelDefaults::apply`] as a method of the command, for a task's arguments to say
/// `#[command(model_defaults(DEFAULTS))]` after flattening [`ModelOpts`].
pub trait WithModelDefaults {
    /// The command with the model defaults `d`.
    fn model_defaults(self, d: ModelDefaults) -> Self;
}

impl WithModelDefaults for clap::Command {
    fn model_defaults(self, d: ModelDefaults) -> clap::Command {
        d.apply(self)
    }
}

impl ModelDefaults {
    /// `cmd` (a task's command, with [`ModelOpts`] flattened into it) with these defaults;
    /// the options the task's model does not have are hidden from its help.
    pub fn apply(self, cmd: clap::Command) -> clap::Command {
        let cmd = cmd
            .mut_arg("hidden_size", |a| {
                a.default_value(self.hidden_size.to_string())
            })
            .mut_arg("num_layers", |a| {
                a.default_value(self.num_layers.to_string())
            })
            .mut_arg("dropout", |a| a.default_value(self.dropout.to_string()))
            .mut_arg("embed_size", |a| match self.embed_size {
                Some(n) => a.default_value(n.to_string()),
                None => a.hide(true),
            });
        let cmd = cmd.mut_arg("bidirectional", |a| match self.bidirectional {
            Some(b) => a.default_value(b.to_string()),
            None => a.hide(true),
        });
        self.help
            .iter()
            .fold(cmd, |cmd, (id, help)| cmd.mut_arg(*id, |a| a.help(*help)))
    }
}

impl ModelOpts {
    /// The cell variants the flags ask for (`--gru-linear-before-reset`, `--peepholes`,
    /// `--input-forget`, `--cell-clip`, `--activations`), checked against the cell.
    pub fn cell_options(&self) -> Result<recur::core::config::CellOptions, String> {
        let mut o = recur::core::config::CellOptions::default();
        let mode = self.mode();
        if let Some(lbr) = self.gru_linear_before_reset {
            if mode != recur::Mode::Gru {
                return Err(format!(
                    "--gru-linear-before-reset is for --cell gru, not {mode}"
                ));
            }
            o.linear_before_reset = lbr;
        }
        for (on, flag) in [
            (self.peepholes, "--peepholes"),
            (self.input_forget, "--input-forget"),
        ] {
            if on && mode != recur::Mode::Lstm {
                return Err(format!("{flag} is for --cell lstm, not {mode}"));
            }
        }
        o.peepholes = self.peepholes;
        o.input_forget = self.input_forget;
        o.clip = self.cell_clip;
        if let Some(a) = &self.activations {
            o.activations = a
                .split('/')
                .map(|f| {
                    f.parse()
                        .map_err(|e: recur::Error| format!("--activations: {e}"))
                })
                .collect::<Result<_, _>>()?;
        }
        let probe = recur::RnnConfig::new(mode, 1, 1)
            .bidirectional(self.bidirectional)
            .cell_options(o.clone());
        probe.validate().map_err(|e| format!("cell options: {e}"))?;
        Ok(o)
    }

    /// [`ModelOpts::cell_options`] for a model with layer normalization on or off
    /// (`layer_norm`, the value of `--layer-norm`): a GRU whose reset gate comes before the
    /// recurrent product cannot be normalized, and the error says how to choose.
    pub fn cell_options_with_layer_norm(
        &self,
        layer_norm: bool,
    ) -> Result<recur::core::config::CellOptions, String> {
        let o = self.cell_options()?;
        if layer_norm && !o.linear_before_reset {
            return Err("--gru-linear-before-reset false: layer normalization (--layer-norm, on by default in recur train lm) normalizes the recurrent product, which the reset gate sits inside of here; add --layer-norm=false, or keep the reset gate after the product (--gru-linear-before-reset true)".into());
        }
        Ok(o)
    }

    /// The cell as the library names it.
    pub fn mode(&self) -> recur::Mode {
        self.cell.into()
    }

    /// The embedding size of a task whose model has an embedding (its default is set by
    /// [`ModelDefaults::apply`], so it is always there).
    pub fn embed(&self) -> usize {
        self.embed_size.unwrap_or(0)
    }

    /// An error if an option the task's model does not have was given: `--embed-size` for a
    /// model of numbers (`embeds` false), `--bidirectional` for one that reads in one
    /// direction only (`two_way` false). `what` names the model in the message.
    pub fn refuse_missing(&self, what: &str, embeds: bool, two_way: bool) -> Result<(), String> {
        if !embeds && self.embed_size.is_some() {
            return Err(format!(
                "--embed-size: {what} reads numbers, not tokens: it has no embedding"
            ));
        }
        if !two_way && self.bidirectional {
            return Err(format!(
                "--bidirectional: {what} reads in one direction only"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_name_of_the_library_parses_and_the_help_lists_the_four() {
        for (s, m) in [
            ("lstm", recur::Mode::Lstm),
            ("GRU", recur::Mode::Gru),
            ("rnn", recur::Mode::RnnTanh),
            ("tanh", recur::Mode::RnnTanh),
            ("rnn-tanh", recur::Mode::RnnTanh),
            ("rnn_relu", recur::Mode::RnnRelu),
            ("relu", recur::Mode::RnnRelu),
        ] {
            let cmd = clap::Command::new("t");
            let c = CellParser
                .parse_ref(&cmd, None, std::ffi::OsStr::new(s))
                .unwrap();
            assert_eq!(recur::Mode::from(c), m, "{s}");
            assert_eq!(Cell::from(m), c);
        }
        let names: Vec<String> = CellParser
            .possible_values()
            .unwrap()
            .map(|p| p.get_name().to_string())
            .collect();
        assert_eq!(names, ["rnn_tanh", "rnn_relu", "lstm", "gru"]);
        // The names of the value enum are the library's names of the cells.
        for c in Cell::value_variants() {
            let name = c.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(recur::Mode::from(*c).name(), name);
        }
    }

    /// The files every task uses import no task file, and a task file imports no other task
    /// file but the runner of the sequence tasks they share (`task_seq`).
    #[test]
    fn no_task_file_imports_a_sibling() {
        let imports = |src: &str, what: &str| -> Vec<String> {
            let mut found: Vec<String> = src
                .match_indices(what)
                .map(|(i, _)| {
                    src[i..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect()
                })
                .collect();
            found.sort();
            found.dedup();
            found
        };
        for (name, src) in [
            ("model_opts.rs", include_str!("model_opts.rs")),
            ("limits.rs", include_str!("limits.rs")),
            ("opts.rs", include_str!("opts.rs")),
            ("shared.rs", include_str!("shared.rs")),
            ("conventions.rs", include_str!("conventions.rs")),
            ("task_lm.rs", include_str!("task_lm.rs")),
            ("task_seq2seq.rs", include_str!("task_seq2seq.rs")),
            ("task_seq.rs", include_str!("task_seq.rs")),
        ] {
            let what = ["crate", "::task_"].concat();
            assert_eq!(imports(src, &what), Vec::<String>::new(), "{name}");
        }
        for (name, src) in [
            ("task_classify.rs", include_str!("task_classify.rs")),
            ("task_tag.rs", include_str!("task_tag.rs")),
            ("task_forecast.rs", include_str!("task_forecast.rs")),
        ] {
            let what = ["crate", "::task_"].concat();
            assert_eq!(imports(src, &what), [[&what, "seq::"].concat()], "{name}");
        }
    }
}
